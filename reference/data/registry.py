"""The four datasets of the paper and their splits (Appendix B.1), behind ``load_dataset``.

- mnist, fashion-mnist: 60,000 train / 10,000 test grayscale images (intensity = pixel/255),
  or a random 50,000 / 10,000 train/validation split (``split_seed``); dynamic binarization.
- static-mnist: Larochelle's fixed binarization, 50,000 / 10,000 / 10,000 as published.
- omniglot: Burda's 28x28 images, 24,345 train / 8,070 test, or 20,345 / 4,000 train/validation.

The test set of the dynamic datasets is binarized once, 10 times over (``binarize_test``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .amat import parse_amat
from .binarize import binarize_test
from .download import read_dataset_file
from .errors import DatasetError
from .idx import check_count, parse_idx_images, parse_idx_labels
from .omniglot import parse_chardata
from .paths import resolve_data_dir
from .sources import AMAT_FILES, IDX_FILES

DATASETS = ("mnist", "static-mnist", "fashion-mnist", "omniglot")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset, ready for training: flat ``(N, 784)`` images (DESIGN.md, Shapes and data).

    train / validation: float32 intensities in [0, 1] (already 0/1 for static-mnist);
    validation is None unless asked for (static-mnist always has its own 10,000).
    test: uint8 in {0, 1}, already binarized (dynamic datasets: 10 copies per image,
    copy-major, row j*N + i is copy j of image i).
    dynamic: True -> re-binarize train/validation each epoch with ``binarize``.
    """

    name: str
    train: np.ndarray
    validation: np.ndarray | None
    test: np.ndarray
    dynamic: bool


@dataclass(frozen=True)
class DatasetSpec:
    """Files and split sizes of one dataset (Appendix B.1)."""

    folder: str
    files: tuple[str, ...]
    n_train: int  # all training images in the published files
    n_test: int
    n_validation: int  # held out of n_train when validation=True (static-mnist: its own file)
    dynamic: bool
    reader: str  # "idx", "amat" or "chardata"


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", IDX_FILES, 60_000, 10_000, 10_000, True, "idx"),
    "fashion-mnist": DatasetSpec("fashion-mnist", IDX_FILES, 60_000, 10_000, 10_000, True, "idx"),
    "static-mnist": DatasetSpec("static-mnist", AMAT_FILES, 50_000, 10_000, 10_000, False, "amat"),
    "omniglot": DatasetSpec("omniglot", ("chardata.mat",), 24_345, 8_070, 4_000, True, "chardata"),
}

# (train, validation or None, test), each (N, 784): intensities, or 0/1 for static-mnist
Parts = tuple[np.ndarray, np.ndarray | None, np.ndarray]


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    validation: bool = False,
    split_seed: int = 0,
    test_seed: int = 0,
    download: bool = True,
) -> Dataset:
    """Load ``name`` (one of DATASETS) with the paper's splits (Appendix B.1).

    Files are read from ``resolve_data_dir(data_dir) / <name> / ...`` and downloaded there
    when missing (``download=True``). ``split_seed`` fixes the random validation split,
    ``test_seed`` the 10x test binarization. static-mnist ignores all three: it always has
    its published validation file and its test set as is.
    """
    if name not in SPECS:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {DATASETS}")
    spec = SPECS[name]
    root = resolve_data_dir(data_dir)

    def read(file: str) -> tuple[bytes, str]:
        relpath = f"{spec.folder}/{file}"
        return read_dataset_file(relpath, root, download=download), str(root / relpath)

    train, val, test = READERS[spec.reader](spec, read)
    if spec.dynamic:
        if validation:
            train, val = split_validation(train, spec.n_validation, split_seed)
        test = binarize_test(test, test_seed)
    return Dataset(name=name, train=train, validation=val, test=test, dynamic=spec.dynamic)


def split_validation(x: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split: ``n_val`` rows chosen by ``default_rng(seed)``.

    Both parts keep the original order of their rows.
    """
    perm = np.random.default_rng(seed).permutation(len(x))
    return x[np.sort(perm[n_val:])], x[np.sort(perm[:n_val])]


def read_idx_dataset(spec: DatasetSpec, read: Callable[[str], tuple[bytes, str]]) -> Parts:
    """MNIST / Fashion-MNIST: images scaled to [0, 1]; label counts cross-checked."""
    parts = []
    for images_file, labels_file, n in (
        (spec.files[0], spec.files[1], spec.n_train),
        (spec.files[2], spec.files[3], spec.n_test),
    ):
        images = parse_idx_images(*read(images_file), n=n)  # (n, 784) uint8
        labels_raw, labels_name = read(labels_file)
        parse_idx_labels(labels_raw, f"{labels_name} (labels of {images_file})", n=len(images))
        parts.append(images.astype(np.float32) / np.float32(255.0))
    return parts[0], None, parts[1]


def read_amat_dataset(spec: DatasetSpec, read: Callable[[str], tuple[bytes, str]]) -> Parts:
    """Static MNIST: the published binarized train/valid/test files, as is."""
    parts = []
    for file, n in zip(spec.files, (spec.n_train, spec.n_validation, spec.n_test), strict=True):
        raw, name = read(file)
        parts.append(parse_amat(raw, name))
        check_count(parts[-1], n, name, "images")
    train, val, test = parts
    return train.astype(np.float32), val.astype(np.float32), test


def read_chardata_dataset(spec: DatasetSpec, read: Callable[[str], tuple[bytes, str]]) -> Parts:
    """Omniglot: train/test intensities from chardata.mat, sizes checked."""
    raw, name = read(spec.files[0])
    train, test = parse_chardata(raw, name)
    check_count(train, spec.n_train, f"{name}['data']", "images")
    check_count(test, spec.n_test, f"{name}['testdata']", "images")
    return train, None, test


READERS = {"idx": read_idx_dataset, "amat": read_amat_dataset, "chardata": read_chardata_dataset}
