"""Measure the device ceilings that bench/RESULTS.md divides by (measured on the device, never quoted).

- copy bandwidth: a large device-to-device copy, counting bytes read + bytes written;
- matmul rate: 8192^3 products in TF32 (float32 inputs, allow_tf32) and bf16, on random data.

Usage: python -m vaeprior.bench.gpu.ceilings --out ceilings.json   (needs CUDA)
"""

from __future__ import annotations

import argparse
import sys

import torch

from vaeprior.bench.gpu.report import emit


def _time_ms(fn, iters: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def copy_bandwidth_gbs(n_bytes: int = 4 << 30) -> float:
    """GB/s of a device-to-device copy (read + write counted)."""
    src = torch.empty(n_bytes // 4, device="cuda", dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    ms = _time_ms(lambda: dst.copy_(src))
    return 2 * n_bytes / (ms * 1e-3) / 1e9


def matmul_tflops(dtype: torch.dtype, n: int = 8192, tf32: bool = False) -> float:
    """TFLOP/s of an n^3 matrix product (2 n^3 FLOPs) on random inputs."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    ms = _time_ms(lambda: a @ b)
    torch.backends.cuda.matmul.allow_tf32 = False
    return 2 * n**3 / (ms * 1e-3) / 1e12


def measure() -> dict:
    props = torch.cuda.get_device_properties(0)
    return {
        "device": props.name,
        "sms": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "copy_GBps": copy_bandwidth_gbs(),
        "fp32_ieee_TFLOPs": matmul_tflops(torch.float32, 4096, tf32=False),
        "tf32_TFLOPs": matmul_tflops(torch.float32, tf32=True),
        "bf16_TFLOPs": matmul_tflops(torch.bfloat16),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device: the ceilings are measured on a GPU only", file=sys.stderr)
        return 2
    emit(measure(), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
