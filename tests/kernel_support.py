"""Shared set-up of the Triton kernel tests: the CPU interpreter and NaN-poisoned outputs.

On a machine without CUDA the kernels must run in Triton's interpreter, which Triton picks when
a kernel is decorated, i.e. when its module is imported with TRITON_INTERPRET=1. The flag is
set only for that import (and, through `poison_and_interpret`, during the kernel tests), so it
never leaks into other test modules.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
import torch

from vaeprior.fast.kernels import launch

CPU = not torch.cuda.is_available()
#: where kernel tests put their tensors: compiled kernels on a CUDA machine, the interpreter on
#: CPU. No test hands CPU tensors to a compiled kernel.
DEVICE = torch.device("cpu" if CPU else "cuda")


def import_kernels(name: str, kernel: str) -> ModuleType:
    """`vaeprior.fast.kernels.<name>`, re-imported under the interpreter on CPU if needed.

    `kernel` names one of its @triton.jit functions, to tell whether it was decorated for the
    interpreter (the module may have been imported earlier without the flag).
    """
    previous = os.environ.get("TRITON_INTERPRET")
    if CPU:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        from triton.runtime.interpreter import InterpretedFunction

        mod = importlib.import_module(f"vaeprior.fast.kernels.{name}")
        if CPU and not isinstance(getattr(mod, kernel), InterpretedFunction):
            mod = importlib.reload(mod)
    finally:
        if previous is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = previous
    return mod


@pytest.fixture
def device() -> torch.device:
    """The device of the kernel tests' tensors (CUDA when present, else the CPU interpreter)."""
    return DEVICE


def poison_and_interpret(monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN-fill every kernel output; on CPU keep the interpreter flag set during the test."""
    monkeypatch.setattr(launch, "POISON_OUTPUTS", True)
    if CPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
