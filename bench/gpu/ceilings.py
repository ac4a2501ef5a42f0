"""The device ceilings bench/RESULTS.md divides by, measured on the device (never quoted).

- copy bandwidth: a large device-to-device copy, counting bytes read + bytes written;
- matmul rate: 8192^3 products in TF32 (float32 inputs, allow_tf32) and bf16, float32 IEEE at
  4096^3, float64 at 4096^3, on random data.

Usage: python -m vaeprior.bench.gpu.ceilings --out ceilings.json
(`--device cpu --tiny` measures small sizes on the CPU: the dry run of run_all.py.)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from vaeprior.bench.gpu.report import emit


def _time_ms(fn, device: torch.device, iters: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) * 1e3 / iters
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def copy_bandwidth_gbs(device: torch.device, n_bytes: int = 4 << 30) -> float:
    """GB/s of a device-to-device copy (read + write counted)."""
    src = torch.empty(n_bytes // 4, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    ms = _time_ms(lambda: dst.copy_(src), device)
    return 2 * n_bytes / (ms * 1e-3) / 1e9


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, tf32: bool = False) -> float:
    """TFLOP/s of an n^3 matrix product (2 n^3 FLOPs) on random inputs."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        ms = _time_ms(lambda: a @ b, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * n**3 / (ms * 1e-3) / 1e12


def measure(device: torch.device, tiny: bool = False) -> dict:
    """The ceilings of `device` (small sizes when `tiny`)."""
    big, mid = (256, 128) if tiny else (8192, 4096)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name, sms = props.name, props.multi_processor_count
    else:
        name, sms = "cpu", None
    return {
        "device": name,
        "sms": sms,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "copy_GBps": copy_bandwidth_gbs(device, (8 << 20) if tiny else (4 << 30)),
        "fp32_ieee_TFLOPs": matmul_tflops(device, torch.float32, mid, tf32=False),
        "tf32_TFLOPs": matmul_tflops(device, torch.float32, big, tf32=True),
        "bf16_TFLOPs": matmul_tflops(device, torch.bfloat16, big),
        "fp64_TFLOPs": matmul_tflops(device, torch.float64, mid),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="small sizes (a dry run)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device: use --device cpu --tiny for a dry run", file=sys.stderr)
        return 2
    emit(measure(device, args.tiny), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
