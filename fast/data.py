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
from vaeprior.reference.data.binarize import TEST_COPIES


@dataclass
class DeviceData:
    """Intensities of train/validation (float32) and the fixed binarized test set on a device."""

    train: torch.Tensor  # (N, 784) intensities in [0, 1]
    validation: torch.Tensor | None  # (Nv, 784) intensities, or None
    test: torch.Tensor  # (Nt, 784) uint8 in {0, 1}, binarized once by the data layer
    dynamic: bool  # re-binarize train/validation each epoch
    test_copies: int = 1  # binarizations per test image, stored copy-major (Appendix B.1)


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
    test = to_device(ds.test, device)
    return DeviceData(to_device(train, device), val, test, bool(ds.dynamic), test_copies(ds))


def test_copies(ds) -> int:
    """Binarizations per image in `ds.test`: 10 for the dynamic datasets (copy-major), else 1."""
    dynamic = bool(getattr(ds, "dynamic", False))
    return TEST_COPIES if dynamic and len(ds.test) % TEST_COPIES == 0 else 1


def spread_rows(
    n_rows: int, limit: int | None, copies: int = 1, *, jitter: bool = False
) -> np.ndarray:
    """Indices of `limit` rows spread over a split, the same for every model of a table.

    The split holds `copies` binarizations of N = n_rows / copies images, copy-major (row
    j * N + i is copy j of image i). Row k of the subset is image floor(k N / limit) in copy
    k mod copies: distinct images (while limit <= N) evenly spaced over the whole split, every
    binarization used, never the first rows of one copy, whose images are not a representative
    sample (MNIST's first 1,000 test images are 8 % less dense than the whole set). `jitter`
    picks instead one image at random (fixed seed) inside each of the `limit` equal strata,
    for splits whose order has a period (MNIST's training set: every 60th image is 5 % less
    dense than the average). With limit None or >= n_rows: every row, in order.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if limit is None or limit >= n_rows:
        return np.arange(n_rows)
    n_img = n_rows // copies
    k = np.arange(limit)
    image = (k * n_img) // limit
    if jitter:
        width = ((k + 1) * n_img) // limit - image
        image = image + (np.random.default_rng(0).random(limit) * width).astype(np.int64)
    return (k % copies) * n_img + image


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


def split_tensor(
    data: DeviceData, split: str, seed: int = 0, limit: int | None = None
) -> torch.Tensor:
    """The binarized rows of `split` ('train', 'validation' or 'test') for evaluation, uint8:
    all of them, or `limit` rows spread over the split (`spread_rows`: evenly over the test
    images and their binarizations; one per stratum, seeded, over train and validation)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")
    if split == "test":
        rows = spread_rows(data.test.shape[0], limit, data.test_copies)
        return data.test if limit is None else data.test[torch.as_tensor(rows)]
    x = data.train if split == "train" else data.validation
    if x is None:
        raise ValueError(f"dataset has no {split} split loaded: load it with validation=True")
    xb = fixed_binarization(x, seed, data.dynamic)
    return xb if limit is None else xb[torch.as_tensor(spread_rows(len(xb), limit, jitter=True))]
