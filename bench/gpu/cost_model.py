"""Roofline cost model of every kernel configuration, beside eager PyTorch for the same op.

    python -m vaeprior.bench.gpu.cost_model [--json] [--family flow|iw_nll] [--results FILE]

No GPU is needed and nothing is timed: the launches are those the compile test captures
(`vaeprior.bench.gpu.aot`: the public kernel functions called on `meta` tensors at production
shapes), and each is *counted* from the kernel's actual tiling, loop order and grid by the
family's model (`cost_flow.py`, `cost_iw_nll.py`):

- bytes:        HBM bytes read + written by the kernel as launched (see "L2" below);
- min_bytes:    the op's minimum: each input read once, each output written once;
- flops:        FLOPs issued, padding of power-of-two tiles included (2 per multiply-add);
- useful_flops: FLOPs of the unpadded math the op needs (recomputation the op cannot avoid
                counted once, say the family models where that applies);
- predicted_us: the kernel's roofline on an H100 SXM, max(bytes / bandwidth, flops / peak of
                the precision its dots run at);
- eager_predicted_us: the same op as eager PyTorch runs it, one roofline per separate kernel
                (each reads its inputs from and writes its outputs to HBM), summed.

Device (H100 SXM, NVIDIA's dense figures): 3.35 TB/s HBM3; TF32 495, BF16 990, FP32 (CUDA
cores) 67, FP64 67 TFLOP/s; 50 MB L2. L2: data that one launch re-reads and that fits in L2
with room to spare (weights streamed by every program) is counted once; data written and later
re-read (partial sums, scratch) is counted on every write and every read. Launch latency and
occupancy are ignored: this bounds time from below for large shapes, it does not predict small
ones, which are latency-bound.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

# --------------------------------------------------------------------------------------------
# the device
# --------------------------------------------------------------------------------------------
HBM_BYTES_PER_S = 3.35e12
L2_BYTES = 50e6
PEAK_FLOPS = {"tf32": 495e12, "bf16": 990e12, "fp32": 67e12, "fp64": 67e12}
L2_REUSE_LIMIT = 0.5 * L2_BYTES  # re-read sets up to half the L2 count once


def precision(dtype: torch.dtype, input_precision: str = "ieee") -> str:
    """Key of PEAK_FLOPS for dots on `dtype` inputs at Triton's `input_precision`."""
    if dtype == torch.float64:
        return "fp64"
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16"
    return "tf32" if input_precision.startswith("tf32") else "fp32"


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# --------------------------------------------------------------------------------------------
# costs
# --------------------------------------------------------------------------------------------
@dataclass
class Cost:
    """One kernel's traffic and work: HBM bytes, FLOPs, and the precision of its dots."""

    bytes: float
    flops: float
    precision: str = "fp32"  # key of PEAK_FLOPS
    what: str = ""

    def us(self) -> float:
        """Roofline time in microseconds: max(bytes / bandwidth, flops / peak)."""
        return 1e6 * max(self.bytes / HBM_BYTES_PER_S, self.flops / PEAK_FLOPS[self.precision])


def copy(numel: int, dtype: torch.dtype) -> Cost:
    """A device copy of `numel` elements: read once, written once, no FLOPs."""
    return Cost(2 * numel * itemsize(dtype), 0.0, "fp32", "copy")


def gemm(m: int, n: int, k: int, dtype: torch.dtype, prec: str, *, bias: bool = False) -> Cost:
    """(m, k) @ (k, n) [+ bias] as one cuBLAS call: A, B (and bias) read once, C written once."""
    b = itemsize(dtype)
    return Cost(b * (m * k + k * n + m * n + (n if bias else 0)), 2.0 * m * n * k, prec, "gemm")


def elementwise(
    numel: int, n_in: int, n_out: int, dtype: torch.dtype, flops_per: float = 1.0
) -> Cost:
    """An element-wise kernel over `numel` elements reading `n_in` and writing `n_out` tensors."""
    return Cost((n_in + n_out) * numel * itemsize(dtype), flops_per * numel, "fp32", "elementwise")


def reduction(numel: int, n_out: int, dtype: torch.dtype) -> Cost:
    """A reduction of `numel` elements to `n_out` values."""
    return Cost((numel + n_out) * itemsize(dtype), float(numel), "fp32", "reduction")


def l2_once(set_bytes: float, readers: int) -> float:
    """HBM bytes for a set of `set_bytes` that `readers` programs each read.

    Counted once when it fits in L2 with room to spare (later readers hit L2), else once per
    reader (the set is evicted between them).
    """
    return set_bytes if set_bytes <= L2_REUSE_LIMIT else set_bytes * readers


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for positive integers: tiles needed to cover a."""
    return -(-a // b)


class LaunchView:
    """One captured launch's numbers by name: constexprs, scalar arguments, tensors, grid."""

    def __init__(self, launch) -> None:
        self.launch = launch
        self.c = launch.constexprs()
        self.s = launch.scalar_args()
        self.t = launch.tensor_args()
        self.grid = launch.grid

    def isz(self, name: str) -> int:
        """Bytes per element of tensor argument `name`."""
        return itemsize(self.t[name].dtype)


@dataclass
class KernelCost:
    """The model's row for one captured launch."""

    kernel: str
    config: str
    bytes: float
    min_bytes: float
    flops: float
    useful_flops: float
    precision: str
    eager: list[Cost] = field(default_factory=list)  # the same op as eager PyTorch's kernels
    scenario: str = ""

    @property
    def predicted_us(self) -> float:
        return Cost(self.bytes, self.flops, self.precision).us()

    @property
    def eager_predicted_us(self) -> float:
        return sum(c.us() for c in self.eager)

    def row(self) -> dict:
        """The JSON object of `--json`."""
        return {
            "kernel": self.kernel,
            "config": self.config,
            "bytes": self.bytes,
            "min_bytes": self.min_bytes,
            "flops": self.flops,
            "useful_flops": self.useful_flops,
            "predicted_us": self.predicted_us,
            "eager_predicted_us": self.eager_predicted_us,
        }

    def targets(self) -> dict[str, float]:
        """The design targets: bytes/min <= 1.25, flops/useful <= 1.10, fused/eager <= 1/3."""
        return {
            "bytes_ratio": self.bytes / self.min_bytes if self.min_bytes else 1.0,
            "flops_ratio": self.flops / self.useful_flops if self.useful_flops else 1.0,
            "time_ratio": self.predicted_us / self.eager_predicted_us
            if self.eager_predicted_us
            else 0.0,
        }


# --------------------------------------------------------------------------------------------
# all launches
# --------------------------------------------------------------------------------------------
FAMILIES = ("flow", "iw_nll")


def _models(families: tuple[str, ...]) -> dict:
    """kernel name -> model(launch) -> KernelCost, from the family modules cost_<family>.py."""
    import importlib

    out = {}
    for f in families:
        out |= importlib.import_module(f"vaeprior.bench.gpu.cost_{f}").MODELS
    return out


def model_all(family: str | None = None) -> list[KernelCost]:
    """A KernelCost for every captured launch of every scenario (of one family)."""
    from vaeprior.bench.gpu import aot

    models, out = _models(FAMILIES if family is None else (family,)), []
    for sc in aot.scenarios(family):
        for launch in aot.capture(sc):
            if launch.kernel not in models:
                raise KeyError(f"no cost model for kernel {launch.kernel} (launched by {sc.name})")
            kc = models[launch.kernel](launch)
            kc.scenario = sc.name
            out.append(kc)
    return out


def markdown(costs: list[KernelCost]) -> str:
    lines = [
        "| scenario | kernel | MB | min MB | GFLOP | useful GFLOP | bytes/min | flops/useful "
        "| fused µs | eager µs | fused/eager |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in costs:
        t = c.targets()
        lines.append(
            f"| {c.scenario} | {c.kernel} | {c.bytes / 1e6:.2f} | {c.min_bytes / 1e6:.2f} "
            f"| {c.flops / 1e9:.2f} | {c.useful_flops / 1e9:.2f} | {t['bytes_ratio']:.2f} "
            f"| {t['flops_ratio']:.2f} | {c.predicted_us:.1f} | {c.eager_predicted_us:.1f} "
            f"| {t['time_ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


HEADING = "## Cost model (H100 SXM roofline, no GPU)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vaeprior.bench.gpu.cost_model")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.add_argument("--family", choices=FAMILIES, default=None, help="one kernel family")
    p.add_argument(
        "--results", default=None, help="write the markdown table into this file's section"
    )
    args = p.parse_args(argv)
    costs = model_all(args.family)
    if args.json:
        print(json.dumps([c.row() for c in costs], indent=1))
        return 0
    table = markdown(costs)
    if args.results:
        from vaeprior.bench.gpu.compile_report import write_section

        cmd = "python -m vaeprior.bench.gpu.cost_model --results bench/RESULTS.md"
        write_section(Path(args.results), f"{HEADING}\n\nCommand: `{cmd}`.\n\n{table}", HEADING)
        print(f"wrote {HEADING!r} into {args.results}")
    else:
        print(table)
    return 0


__all__ = ["Cost", "KernelCost", "copy", "elementwise", "gemm", "l2_once", "model_all"]

if __name__ == "__main__":
    sys.exit(main())
