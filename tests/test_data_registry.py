"""The dataset registry and splits of Appendix B.1, on the real files and on synthetic ones.

Real-file tests read $VAEPRIOR_DATA (CI: ../shared/datasets) and skip with the reason when it
or a file is missing; MNIST is loaded once per module. Omniglot's chardata.mat is not available
offline, so its registry path runs on a full-size synthetic file written with scipy.io.savemat.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from vaeprior.reference.data import (
    DATASETS,
    Dataset,
    DatasetError,
    DatasetFileMissingError,
    binarize,
    binarize_test,
    load_dataset,
    parse_amat,
    parse_idx_images,
    registry,
    resolve_data_dir,
    sources,
)

# ---------------------------------------------------------------------------------------------
# helpers and fixtures


def real_root(*relpaths: str) -> Path:
    """The real data folder, or skip naming what is missing."""
    if not os.environ.get("VAEPRIOR_DATA"):
        pytest.skip("VAEPRIOR_DATA is not set: no real dataset files to test against")
    root = resolve_data_dir()
    missing = [p for p in relpaths if not (root / p).is_file()]
    if missing:
        pytest.skip(f"dataset file(s) {missing} not present under {root}")
    return root


def files_of(name: str) -> list[str]:
    spec = registry.SPECS[name]
    return [f"{spec.folder}/{f}" for f in spec.files]


def row_keys(x: np.ndarray) -> np.ndarray:
    """Exact integer fingerprint of each row of pixel/255 intensities (integer matmul)."""
    weights = np.random.default_rng(123).integers(1, 2**20, x.shape[1]).astype(np.float64)
    return np.rint(x * 255).astype(np.float64) @ weights  # (N,), < 2^53: exact in any order


def recover_indices(full: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Row positions of ``part``'s rows inside ``full`` (rows of ``full`` must be unique)."""
    keys = row_keys(full)
    order = np.argsort(keys)
    assert np.all(np.diff(keys[order]) != 0), "rows of the full set are not unique"
    pos = np.searchsorted(keys[order], row_keys(part))
    pos = np.minimum(pos, len(keys) - 1)
    assert np.all(keys[order][pos] == row_keys(part)), "a row is not in the full set"
    return order[pos]


def write_file(root: Path, relpath: str, raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write a synthetic dataset file and make the checksum table accept it."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    monkeypatch.setitem(sources.CHECKSUMS, relpath, ("sha256", hashlib.sha256(raw).hexdigest()))


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1)


def write_mnist_like(
    root: Path, monkeypatch: pytest.MonkeyPatch, n_train: int, n_test: int, n_labels: int = 0
) -> np.ndarray:
    """Synthetic mnist/ IDX files; returns the train images (n_train, 784) uint8."""
    rng = np.random.default_rng(7)
    train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    parts = {
        "train-images-idx3-ubyte.gz": train,
        "train-labels-idx1-ubyte.gz": np.zeros(n_labels or n_train, np.uint8),
        "t10k-images-idx3-ubyte.gz": test,
        "t10k-labels-idx1-ubyte.gz": np.zeros(n_test, np.uint8),
    }
    for name, arr in parts.items():
        write_file(root, f"mnist/{name}", idx_gz(arr), monkeypatch)
    return train.reshape(n_train, 784)


def small_spec(monkeypatch: pytest.MonkeyPatch, name: str, **sizes: int) -> None:
    monkeypatch.setitem(registry.SPECS, name, dataclasses.replace(registry.SPECS[name], **sizes))


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    root = real_root(*files_of("mnist"))
    return load_dataset("mnist", root, download=False)


@pytest.fixture(scope="module")
def mnist_val() -> Dataset:
    root = real_root(*files_of("mnist"))
    return load_dataset("mnist", root, validation=True, split_seed=0, download=False)


@pytest.fixture(scope="module")
def mnist_test_intensities() -> np.ndarray:
    root = real_root(*files_of("mnist"))
    raw = (root / "mnist/t10k-images-idx3-ubyte.gz").read_bytes()
    return parse_idx_images(raw, "t10k", n=10_000).astype(np.float32) / np.float32(255)


# ---------------------------------------------------------------------------------------------
# data directory and API


def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAEPRIOR_DATA", raising=False)
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "vaeprior"
    monkeypatch.setenv("VAEPRIOR_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEPRIOR_DATA", "rel/data")
    assert resolve_data_dir() == tmp_path / "rel" / "data"


def test_registry_sizes_are_the_papers() -> None:
    """Appendix B.1 split sizes; dynamic binarization everywhere except static-mnist."""
    sizes = {k: (s.n_train, s.n_validation, s.n_test, s.dynamic) for k, s in registry.SPECS.items()}
    assert DATASETS == ("mnist", "static-mnist", "fashion-mnist", "omniglot")
    assert sizes == {
        "mnist": (60_000, 10_000, 10_000, True),
        "fashion-mnist": (60_000, 10_000, 10_000, True),
        "static-mnist": (50_000, 10_000, 10_000, False),
        "omniglot": (24_345, 4_000, 8_070, True),
    }


def test_unknown_dataset() -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'cifar': choose one of \('mnist'"):
        load_dataset("cifar")


def test_missing_file_without_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileMissingError) as info:
        load_dataset("static-mnist", tmp_path, download=False)
    msg = str(info.value)
    path = tmp_path / "static-mnist" / "binarized_mnist_train.amat"
    assert f"not found at {path}" in msg and f"place it at {path}" in msg
    assert sources.STATIC_MNIST_URL + "binarized_mnist_train.amat" in msg
    assert "sha256 ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d" in msg


# ---------------------------------------------------------------------------------------------
# registry on synthetic files


def test_synthetic_mnist_splits_and_seeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    small_spec(monkeypatch, "mnist", n_train=40, n_test=6, n_validation=10)
    train = write_mnist_like(tmp_path, monkeypatch, 40, 6).astype(np.float32) / 255
    full = load_dataset("mnist", tmp_path, download=False)
    a = load_dataset("mnist", tmp_path, validation=True, split_seed=3, download=False)
    b = load_dataset("mnist", tmp_path, validation=True, split_seed=3, download=False)
    c = load_dataset("mnist", tmp_path, validation=True, split_seed=4, download=False)
    np.testing.assert_array_equal(full.train, train)
    assert (
        full.validation is None and a.train.shape == (30, 784) and a.validation.shape == (10, 784)
    )
    tr, va = recover_indices(train, a.train), recover_indices(train, a.validation)
    assert set(tr).isdisjoint(va) and sorted([*tr, *va]) == list(range(40))
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)  # original order kept
    np.testing.assert_array_equal(va, np.sort(np.random.default_rng(3).permutation(40)[:10]))
    np.testing.assert_array_equal(a.validation, b.validation)  # reproducible for a seed
    assert not np.array_equal(recover_indices(train, c.validation), va)
    np.testing.assert_array_equal(a.test, full.test)  # test_seed 0 both times
    t1 = load_dataset("mnist", tmp_path, test_seed=1, download=False).test
    assert t1.shape == (60, 784) and not np.array_equal(t1, full.test)
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.train = train  # type: ignore[misc]


def test_wrong_image_count_for_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_mnist_like(tmp_path, monkeypatch, 12, 4)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: expected 60000 images"):
        load_dataset("mnist", tmp_path, download=False)


def test_labels_images_mismatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    small_spec(monkeypatch, "mnist", n_train=12, n_test=4)
    write_mnist_like(tmp_path, monkeypatch, 12, 4, n_labels=11)
    with pytest.raises(DatasetError, match=r"labels of train-images.*expected 12 labels, found 11"):
        load_dataset("mnist", tmp_path, download=False)


def test_truncated_gzip_through_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    small_spec(monkeypatch, "mnist", n_train=12, n_test=4)
    write_mnist_like(tmp_path, monkeypatch, 12, 4)
    raw = (tmp_path / "mnist/t10k-images-idx3-ubyte.gz").read_bytes()
    write_file(tmp_path, "mnist/t10k-images-idx3-ubyte.gz", raw[:-20], monkeypatch)
    with pytest.raises(
        DatasetError, match=r"t10k-images-idx3-ubyte\.gz: corrupt or truncated gzip"
    ):
        load_dataset("mnist", tmp_path, download=False)


def test_synthetic_file_fails_published_checksum(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_mnist_like(tmp_path, monkeypatch, 12, 4)
    monkeypatch.undo()  # drop the overrides: the published checksums apply again
    with pytest.raises(
        DatasetError, match=r"train-images-idx3-ubyte\.gz: sha256 mismatch .*440fca"
    ):
        load_dataset("mnist", tmp_path, download=False)


def test_static_mnist_bad_value_names_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    small_spec(monkeypatch, "static-mnist", n_train=3, n_validation=2, n_test=2)
    bits = np.random.default_rng(0).integers(0, 2, (3, 784))
    for part, n in (("train", 3), ("valid", 2), ("test", 2)):
        lines = "".join(" ".join(map(str, r)) + "\n" for r in bits[:n])
        if part == "valid":
            lines = lines.replace("1", "0.5", 1)
        write_file(
            tmp_path, f"static-mnist/binarized_mnist_{part}.amat", lines.encode(), monkeypatch
        )
    with pytest.raises(
        DatasetError, match=r"binarized_mnist_valid\.amat: line 1 holds the value '0\.5'"
    ):
        load_dataset("static-mnist", tmp_path, download=False)


# ---------------------------------------------------------------------------------------------
# Omniglot (synthetic full-size chardata.mat: same keys, shapes and value range as Burda's)


@pytest.fixture(scope="module")
def omniglot_mat(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """(file, train, test): upright images (N, 28, 28) in [0, 1]; pixel 0 encodes the index."""
    rng = np.random.default_rng(5)

    def images(n: int) -> np.ndarray:
        x = np.zeros((n, 28, 28), np.float32)
        x[:, 0, 1:] = 1.0  # a bar on the top row: shows orientation
        x[np.repeat(np.arange(n), 15), rng.integers(1, 28, 15 * n), rng.integers(0, 28, 15 * n)] = (
            rng.integers(1, 5, 15 * n) / 4
        )
        x[:, 0, 0] = np.arange(n) / 32768  # exact in float32: a row's index
        return x

    train, test = images(24_345), images(8_070)
    path = tmp_path_factory.mktemp("omniglot") / "chardata.mat"
    column_major = {"data": train.reshape(len(train), -1, order="F").T}
    column_major["testdata"] = test.reshape(len(test), -1, order="F").T
    scipy.io.savemat(path, column_major)
    return path, train.reshape(-1, 784), test.reshape(-1, 784)


@pytest.fixture
def omniglot_dir(
    omniglot_mat: tuple[Path, np.ndarray, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A data_dir with omniglot/chardata.mat (a link to the synthetic file), md5 overridden."""
    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "chardata.mat").symlink_to(omniglot_mat[0])
    md5 = hashlib.md5(omniglot_mat[0].read_bytes()).hexdigest()
    monkeypatch.setitem(sources.CHECKSUMS, "omniglot/chardata.mat", ("md5", md5))
    return tmp_path


def test_omniglot_registry(omniglot_dir: Path, omniglot_mat: tuple) -> None:
    _, train, test = omniglot_mat
    ds = load_dataset("omniglot", omniglot_dir, download=False, test_seed=2)
    assert ds.dynamic and ds.validation is None and ds.train.dtype == np.float32
    np.testing.assert_array_equal(ds.train, train)  # upright, in file order
    assert ds.test.shape == (80_700, 784) and ds.test.dtype == np.uint8
    np.testing.assert_array_equal(ds.test, binarize_test(test, 2))  # same stream
    assert np.all(ds.test.reshape(-1, 28, 28)[:, 0, 1:] == 1)  # top row bar survives


def test_omniglot_validation_split(omniglot_dir: Path) -> None:
    ds = load_dataset("omniglot", omniglot_dir, validation=True, split_seed=1, download=False)
    assert ds.train.shape == (20_345, 784) and ds.validation.shape == (4_000, 784)
    tr = np.rint(ds.train[:, 0] * 32768).astype(int)
    va = np.rint(ds.validation[:, 0] * 32768).astype(int)
    assert set(tr).isdisjoint(va) and sorted([*tr, *va]) == list(range(24_345))


def test_omniglot_synthetic_fails_published_md5(
    omniglot_mat: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "chardata.mat").symlink_to(omniglot_mat[0])
    with pytest.raises(
        DatasetError, match=r"md5 mismatch .*expected 21ecaf34373511aa7691cf2e0802aa3d"
    ):
        load_dataset("omniglot", tmp_path, download=False)


def test_omniglot_real_file() -> None:
    root = real_root("omniglot/chardata.mat")
    ds = load_dataset("omniglot", root, validation=True, download=False)
    assert ds.train.shape == (20_345, 784) and ds.validation.shape == (4_000, 784)
    assert ds.test.shape == (80_700, 784)
    assert 0.0 <= ds.train.min() and ds.train.max() <= 1.0


# ---------------------------------------------------------------------------------------------
# real MNIST, Fashion-MNIST, static MNIST


def test_mnist_shapes_and_ranges(mnist: Dataset) -> None:
    assert mnist.name == "mnist" and mnist.dynamic and mnist.validation is None
    assert mnist.train.shape == (60_000, 784) and mnist.train.dtype == np.float32
    assert mnist.train.min() == 0.0 and mnist.train.max() == 1.0
    head = mnist.train[:5000]
    np.testing.assert_array_equal(np.rint(head * 255) / np.float32(255), head)  # k / 255
    assert mnist.test.shape == (100_000, 784) and mnist.test.dtype == np.uint8
    assert mnist.test.min() == 0 and mnist.test.max() == 1
    assert abs(mnist.train.mean() - 0.1307) < 1e-4  # the well-known MNIST pixel mean


def test_mnist_validation_split_is_disjoint_and_seeded(mnist: Dataset, mnist_val: Dataset) -> None:
    assert mnist_val.train.shape == (50_000, 784) and mnist_val.validation.shape == (10_000, 784)
    tr = recover_indices(mnist.train, mnist_val.train)
    va = recover_indices(mnist.train, mnist_val.validation)
    assert set(tr).isdisjoint(va) and np.array_equal(np.sort(np.r_[tr, va]), np.arange(60_000))
    np.testing.assert_array_equal(
        va, np.sort(np.random.default_rng(0).permutation(60_000)[:10_000])
    )


def test_mnist_test_is_binarized_10x_and_fixed(
    mnist: Dataset, mnist_val: Dataset, mnist_test_intensities: np.ndarray
) -> None:
    p = mnist_test_intensities  # (10000, 784)
    copies = mnist.test.reshape(10, 10_000, 784).transpose(1, 0, 2)  # row j N + i: copy j of i
    np.testing.assert_array_equal(mnist_val.test, mnist.test)  # two loads, same test_seed
    assert np.all((copies == 0) | (p[:, None, :] > 0))  # intensity 0: never 1
    assert np.all((copies == 1) | (p[:, None, :] < 1))  # intensity 1: always 1
    ones = copies.sum(axis=1)  # (10000, 784): ~ Binomial(10, p)
    var = 10 * p * (1 - p)
    assert abs(ones.sum() - 10 * p.sum()) < 5 * np.sqrt(var.sum())
    z = (ones - 10 * p)[var > 0] / np.sqrt(var[var > 0])
    assert abs(z.std() - 1) < 0.01  # 1.5 M pixels
    assert not np.array_equal(binarize_test(p[:100], 1)[:100], mnist.test[:100])  # seed matters


def test_mnist_binarization_statistics(mnist: Dataset) -> None:
    """Mean of M = 400 binarizations ~ intensity: |z| < 6 per pixel, z ~ N(0, 1) overall."""
    p = mnist.train[:100]  # (100, 784)
    m = 400
    mean = binarize(np.broadcast_to(p, (m, *p.shape)), np.random.default_rng(0)).mean(axis=0)
    inner = (p > 0) & (p < 1)
    z = (mean - p)[inner] / np.sqrt(p * (1 - p) / m)[inner]
    np.testing.assert_array_equal(mean[~inner], p[~inner])  # 0 and 1 are deterministic
    assert np.abs(z).max() < 6.0 and abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.std() - 1) < 0.05


def test_fashion_mnist() -> None:
    root = real_root(*files_of("fashion-mnist"))
    ds = load_dataset("fashion-mnist", root, validation=True, split_seed=1, download=False)
    assert ds.dynamic and ds.train.shape == (50_000, 784) and ds.validation.shape == (10_000, 784)
    assert ds.test.shape == (100_000, 784) and ds.test.min() == 0 and ds.test.max() == 1
    assert ds.train.dtype == np.float32 and ds.train.min() == 0.0 and ds.train.max() == 1.0
    mean = (ds.train.sum(dtype=np.float64) + ds.validation.sum(dtype=np.float64)) / (60_000 * 784)
    assert abs(mean - 0.2860) < 1e-4  # the well-known Fashion-MNIST pixel mean


def test_static_mnist() -> None:
    root = real_root(*files_of("static-mnist"))
    ds = load_dataset("static-mnist", root, download=False)
    assert not ds.dynamic and ds.train.dtype == np.float32 and ds.test.dtype == np.uint8
    assert ds.train.shape == (50_000, 784) and ds.validation.shape == (10_000, 784)
    assert ds.test.shape == (10_000, 784)
    for x in (ds.train, ds.validation, ds.test):
        assert x.min() == 0 and x.max() == 1 and np.all((x == 0) | (x == 1))
    valid = np.loadtxt(root / "static-mnist/binarized_mnist_valid.amat", dtype=np.uint8)
    np.testing.assert_array_equal(ds.validation, valid)  # the fast parser == np.loadtxt
    again = load_dataset("static-mnist", root, validation=True, split_seed=5, download=False)
    np.testing.assert_array_equal(again.test, ds.test)  # used as is: no seeds involved
    np.testing.assert_array_equal(again.train, ds.train)


def test_static_mnist_parser_on_real_test_file() -> None:
    root = real_root("static-mnist/binarized_mnist_test.amat")
    raw = (root / "static-mnist/binarized_mnist_test.amat").read_bytes()
    general = parse_amat(raw.replace(b" \n", b"\n").replace(b"\n", b" \r\n"), "t")  # slow path
    np.testing.assert_array_equal(parse_amat(raw, "t"), general)
