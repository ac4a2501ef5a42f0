"""Device-resident datasets with per-epoch dynamic binarization (Appendix B.1).

The whole dataset lives on the training device as float intensities; each epoch draws a fresh
binarization x ~ Bernoulli(intensities) and a fresh shuffle with one `torch.Generator`, so a
run is reproducible from its seed and its generator state (saved in checkpoints).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaeprior.reference.data import SPLITS, load_dataset


@dataclass
class DeviceData:
    """Intensities of train/validation (float32) and the fixed binarized test set on a device."""

    train: torch.Tensor  # (N, 784) intensities in [0, 1]
    validation: torch.Tensor | None  # (Nv, 784) intensities, or None
    test: torch.Tensor  # (Nt, 784) uint8 in {0, 1}, binarized once by the data layer
    dynamic: bool  # re-binarize train/validation each epoch


def to_device(a: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """A (N, 784) array on `device`: binarized uint8 images stay uint8 (4x smaller than float32;
    evaluation converts each batch as it uses it), intensities become float32."""
    dtype = torch.uint8 if a.dtype == np.uint8 else torch.float32
    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)


def load_device_data(
    dataset: str,
    data_dir: str | Path | None,
    device: torch.device | str,
    *,
    validation: bool = False,
    train_limit: int | None = None,
) -> DeviceData:
    """Load `dataset` with the data layer and move it to `device` (first `train_limit` rows)."""
    ds = load_dataset(dataset, data_dir, validation=validation)
    train = ds.train if train_limit is None else ds.train[:train_limit]
    val = None if ds.validation is None else to_device(ds.validation, device)
    return DeviceData(to_device(train, device), val, to_device(ds.test, device), bool(ds.dynamic))


def binarize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x ~ Bernoulli(intensities), elementwise, drawn on x's device (Appendix B.1)."""
    return torch.bernoulli(x, generator=generator)


def epoch_batches(
    x: torch.Tensor, batch_size: int, generator: torch.Generator, *, dynamic: bool
) -> Iterator[torch.Tensor]:
    """One epoch: re-binarize (if `dynamic`), shuffle, and yield (B, 784) batches.

    The last batch may be smaller. Draws from `generator` in a fixed order (binarization,
    then permutation) so resumed runs see exactly the batches of an uninterrupted one.
    """
    xb = binarize(x, generator) if dynamic else x
    perm = torch.randperm(x.shape[0], generator=generator, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        yield xb[perm[start : start + batch_size]]


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch of `n` rows (last one partial)."""
    return -(-n // batch_size)


def fixed_binarization(x: torch.Tensor, seed: int, dynamic: bool) -> torch.Tensor:
    """One reproducible binarization of train/validation rows (Appendix B.1), for evaluation and
    the analyses: drawn on the CPU from a generator seeded with `seed`, so every device and every
    caller (training's results.json, `vaeprior evaluate`, `vaeprior analyze`) sees the same
    images. uint8 in {0, 1}, on x's device."""
    if not dynamic:
        return x if x.dtype == torch.uint8 else x.to(torch.uint8)
    g = torch.Generator().manual_seed(seed)
    xb = torch.bernoulli(x.detach().to("cpu", torch.float32), generator=g)
    return xb.to(x.device, torch.uint8)


def split_tensor(data: DeviceData, split: str, seed: int = 0) -> torch.Tensor:
    """The binarized rows of `split` ('train', 'validation' or 'test') for evaluation."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")
    if split == "test":
        return data.test
    x = data.train if split == "train" else data.validation
    if x is None:
        raise ValueError(f"dataset has no {split} split loaded: load it with validation=True")
    return fixed_binarization(x, seed, data.dynamic)
