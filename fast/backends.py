"""One backend resolver: does a computation run in torch or in a fused Triton kernel?

Three choices, the same everywhere (flows, the VAE's log-likelihood, evaluation, the CLI):

- "torch": plain PyTorch, any device and dtype.
- "triton": the fused kernels of `vaeprior.fast.kernels`. They need a CUDA tensor (or, on the
  CPU, Triton's interpreter: TRITON_INTERPRET=1, slow, for tests) and an importable Triton;
  otherwise a one-line error says what to do.
- "auto": "triton" for float32 / bfloat16 CUDA tensors when the kernels import (where they are
  the fast path), else "torch". float64 stays on torch: the kernels support it, but cuBLAS is as
  good at fp64 and the reference comparisons run there.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

BACKENDS = ("auto", "torch", "triton")
DEVICE_HELP = "cpu, cuda or cuda:N (default: cuda when available, else cpu)"
_AUTO_DTYPES = (torch.float32, torch.bfloat16)


def check(backend: str) -> str:
    """`backend` if it is one of BACKENDS, else a ValueError naming the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


def kernels(name: str) -> ModuleType:
    """`vaeprior.fast.kernels.<name>`, or a ValueError saying why Triton is unavailable."""
    try:
        return importlib.import_module(f"vaeprior.fast.kernels.{name}")
    except (ImportError, RuntimeError) as e:  # no Triton, or no usable backend for it
        raise ValueError(f"backend triton is unavailable ({e}): use backend torch") from None


def _runnable(t: torch.Tensor) -> bool:
    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def resolve(backend: str, t: torch.Tensor, kernel: str) -> str:
    """Resolve `backend` to "torch" or "triton" for `t` (device, dtype) and kernels `kernel`.

    Raises ValueError when "triton" is asked for and cannot run (CPU tensor without the
    interpreter, or Triton not importable).
    """
    if check(backend) == "torch":
        return "torch"
    if backend == "auto":
        if not (t.is_cuda and t.dtype in _AUTO_DTYPES):
            return "torch"
        try:
            kernels(kernel)
        except ValueError:
            return "torch"
        return "triton"
    if not _runnable(t):
        raise ValueError(
            f"backend triton needs a CUDA device (or TRITON_INTERPRET=1), got a {t.device.type} "
            "tensor: use backend torch or auto"
        )
    kernels(kernel)
    return "triton"


def resolve_device(device: str | None) -> torch.device:
    """'cpu', 'cuda' or None (cuda when available)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}: use cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available: use --device cpu")
    return torch.device(device)
