"""Launcher helpers shared by the kernels: output allocation, dtypes, grid sizing.

`POISON_OUTPUTS` (set True by the tests) fills every kernel output with NaN before the launch,
so an element a kernel fails to write shows up as NaN instead of stale memory.
"""

from __future__ import annotations

import torch

#: set True (tests) to fill outputs with NaN before every launch, so unwritten elements fail
POISON_OUTPUTS = False

#: compile option of every launch: a * b + c as one fused multiply-add. The resource table and
#: the cost model were made with it, Triton <= 3.9 defaults to it, and 3.10 turns the default
#: off; passed explicitly, the kernels compile the same on every version.
FP_FUSION = {"enable_fp_fusion": True}


def empty(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An output buffer on `like`'s device (NaN-filled when POISON_OUTPUTS)."""
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), device=like.device, dtype=dtype)
    return torch.empty(shape, device=like.device, dtype=dtype)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; float32/bf16/fp16 accumulate in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def input_precision(dtype: torch.dtype) -> str:
    """tl.dot precision: TF32 for float32 when torch allows it for matmuls, else IEEE."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def max_programs(device: torch.device) -> int:
    """Programs of a persistent grid: one per SM on CUDA, 4 in the CPU interpreter."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    import os

    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def l2_bytes(device: torch.device) -> int:
    """L2 cache size: the CUDA device's, else an H100's 50 MB (the interpreter and the sm_90
    ahead-of-time compile size their grids as for an H100)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).L2_cache_size
    return 50_000_000
