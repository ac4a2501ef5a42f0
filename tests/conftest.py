"""Shared fixtures: the real data folder (skip when absent) and a tiny synthetic dataset."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vaeprior.fast.config import ModelConfig

REPO = Path(__file__).resolve().parents[1]


def _import_triton_for_the_interpreter() -> None:
    """Without CUDA the kernel tests run in Triton's CPU interpreter, which can call
    triton.language's own @jit helpers (tl.zeros, tl.sum, ...) only if they were decorated with
    TRITON_INTERPRET=1, i.e. if triton was first imported under the flag. Import it so here,
    before a test module (the sm_90 compile test) imports it without; compiling works either way.
    """
    import torch

    if torch.cuda.is_available():
        return
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        for name in ("triton.language", "triton.experimental.gluon"):  # gluon wraps those
            try:  # helpers at its import (the sm_90 compile imports it) and accepts
                importlib.import_module(name)  # interpreted ones only under the flag
            except ImportError:  # no Triton (the kernel tests skip), or no gluon
                pass
    finally:
        if previous is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = previous


_import_triton_for_the_interpreter()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """$VAEPRIOR_DATA (relative to the repo root) holding MNIST, or skip with the reason."""
    env = os.environ.get("VAEPRIOR_DATA")
    if not env:
        pytest.skip("VAEPRIOR_DATA is not set: point it at the datasets folder")
    root = (REPO / env).resolve()
    needed = root / "mnist" / "train-images-idx3-ubyte.gz"
    if not needed.is_file():
        pytest.skip(f"{needed} is missing: place MNIST under $VAEPRIOR_DATA/mnist")
    return root


def synthetic_dataset(
    n_train: int = 192, n_val: int = 64, n_test: int = 48, *, dynamic: bool = True, seed: int = 0
) -> SimpleNamespace:
    """Data-layer-like dataset: blurry random 'strokes' as intensities, a binarized test set."""
    rng = np.random.default_rng(seed)
    protos = rng.random((4, 784)) ** 3  # 4 prototype images

    def draw(n: int) -> np.ndarray:
        k = rng.integers(0, 4, n)
        return np.clip(protos[k] + 0.1 * rng.random((n, 784)), 0, 1).astype(np.float32)

    train, val = draw(n_train), draw(n_val)
    if not dynamic:
        train, val = (train > 0.5).astype(np.float32), (val > 0.5).astype(np.float32)
    test = (rng.random((n_test, 784)) < draw(n_test)).astype(np.uint8)
    return SimpleNamespace(train=train, validation=val, test=test, dynamic=dynamic)


@pytest.fixture
def synthetic(monkeypatch: pytest.MonkeyPatch):
    """Route `vaeprior.fast.data.load_dataset` to a synthetic dataset; returns a setter."""
    import vaeprior.fast.data as fdata

    def use(**kw) -> SimpleNamespace:
        ds = synthetic_dataset(**kw)

        def load(name, data_dir=None, *, validation=False, **_):
            return SimpleNamespace(
                train=ds.train,
                validation=ds.validation if validation or not ds.dynamic else None,
                test=ds.test,
                dynamic=ds.dynamic,
            )

        monkeypatch.setattr(fdata, "load_dataset", load)
        return ds

    use()
    return use


def tiny_model(**kw) -> ModelConfig:
    """A small DenseVAE (fast on CPU) with the paper's structure."""
    base = {"z_dim": 4, "hidden": 24, "flow_depth": 2, "flow_hidden": 16}
    return ModelConfig(**{**base, **kw})
