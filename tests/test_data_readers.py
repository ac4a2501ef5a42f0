"""Readers (IDX, .amat, chardata.mat) and binarization on small synthetic files (Appendix B.1).

Every reader is checked against an independent truth (hand-built bytes, np.loadtxt, the IWAE
loader's own reshape expression), and every malformed input must give a DatasetError with a
message naming the problem, never a raw NumPy/gzip traceback.
"""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
import scipy.io

from vaeprior.reference.data import (
    DatasetError,
    binarize,
    binarize_test,
    parse_amat,
    parse_chardata,
    parse_idx,
    parse_idx_images,
    parse_idx_labels,
)


def idx_bytes(array: np.ndarray, type_code: int = 0x08, big_endian: str = ">u1") -> bytes:
    """Hand-built IDX file: 00 00 <type> <ndim>, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(big_endian).tobytes()


def amat_bytes(x: np.ndarray, sep: str = " ", end: str = "\n") -> bytes:
    return "".join(sep.join(map(str, row)) + end for row in x).encode()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)


# --- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_idx_images_roundtrip(images: np.ndarray, compress: bool) -> None:
    raw = idx_bytes(images)
    raw = gzip.compress(raw) if compress else raw
    out = parse_idx_images(raw, "x", n=7)
    assert out.dtype == np.uint8 and out.shape == (7, 784)
    np.testing.assert_array_equal(out, images.reshape(7, 784))


@pytest.mark.parametrize(
    ("code", "big"), [(0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")]
)
def test_idx_other_types_are_byteswapped(code: int, big: str) -> None:
    values = np.arange(-6, 6).reshape(3, 4)
    out = parse_idx(idx_bytes(values, code, big), "x")
    assert out.dtype.isnative and out.shape == (3, 4)
    np.testing.assert_array_equal(out, values)


def test_idx_labels() -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx_labels(gzip.compress(idx_bytes(labels)), "l"), labels)


def test_idx_wrong_magic(images: np.ndarray) -> None:
    raw = b"\x08\x03" + idx_bytes(images)[2:]
    with pytest.raises(DatasetError, match=r"bad\.gz: not an IDX file \(magic bytes 0803"):
        parse_idx(raw, "bad.gz")


def test_idx_truncated_gzip(images: np.ndarray) -> None:
    raw = gzip.compress(idx_bytes(images))
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        parse_idx(raw[: len(raw) // 2], "cut.gz")


def test_idx_payload_shorter_than_header_says(images: np.ndarray) -> None:
    with pytest.raises(DatasetError, match=r"shape \(7, 28, 28\) \(5488 data bytes\).*5487"):
        parse_idx(idx_bytes(images)[:-1], "short")


def test_idx_header_truncated() -> None:
    with pytest.raises(DatasetError, match="header truncated"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00", "h")


def test_idx_labels_given_as_images() -> None:
    with pytest.raises(DatasetError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        parse_idx_images(idx_bytes(np.zeros(5, np.uint8)), "labels.gz")


def test_idx_wrong_count(images: np.ndarray) -> None:
    with pytest.raises(DatasetError, match="expected 60000 images, found 7"):
        parse_idx_images(idx_bytes(images), "imgs", n=60000)
    with pytest.raises(DatasetError, match="expected 7 labels, found 5"):
        parse_idx_labels(idx_bytes(np.zeros(5, np.uint8)), "labs", n=7)


# --- .amat -------------------------------------------------------------------------------------


@pytest.fixture
def bits() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 2, (6, 784), dtype=np.uint8)


@pytest.mark.parametrize(
    ("sep", "end"), [(" ", "\n"), (" ", " \n"), ("\t", "\r\n"), ("  ", "\n\n")], ids=str
)
def test_amat_matches_loadtxt(bits: np.ndarray, sep: str, end: str) -> None:
    raw = amat_bytes(bits, sep, end)
    expected = np.loadtxt(io.BytesIO(raw), dtype=np.uint8)
    out = parse_amat(raw, "x")
    assert out.dtype == np.uint8 and out.shape == (6, 784)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, bits)


def test_amat_last_line_without_newline(bits: np.ndarray) -> None:
    np.testing.assert_array_equal(parse_amat(amat_bytes(bits)[:-1], "x"), bits)


@pytest.mark.parametrize("token", ["2", "1.0", "10", "-1", "0.5", "x"])
def test_amat_rejects_non_binary_values(bits: np.ndarray, token: str) -> None:
    lines = amat_bytes(bits).decode().splitlines()
    values = lines[3].split()
    values[100] = token
    lines[3] = " ".join(values)
    raw = "\n".join(lines).encode()
    with pytest.raises(DatasetError, match=rf"f\.amat: line 4 holds the value '{token}'"):
        parse_amat(raw, "f.amat")


@pytest.mark.parametrize("width", [783, 785])
def test_amat_rejects_wrong_line_length(bits: np.ndarray, width: int) -> None:
    lines = amat_bytes(bits).decode().splitlines()
    lines[2] = " ".join(["1"] * width)
    with pytest.raises(DatasetError, match=rf"line 3 has {width} values, expected 784"):
        parse_amat("\n".join(lines).encode(), "f.amat")


# --- chardata.mat (Omniglot) -------------------------------------------------------------------


def chardata(train: np.ndarray, test: np.ndarray) -> bytes:
    """Write upright (N, 28, 28) images the way Burda's file stores them: one column-major
    (MATLAB-order) image per column of a (784, N) matrix."""
    buf = io.BytesIO()
    scipy.io.savemat(
        buf,
        {
            "data": train.reshape(len(train), -1, order="F").T,
            "testdata": test.reshape(len(test), -1, order="F").T,
        },
    )
    return buf.getvalue()


def upright_images(n: int, seed: int) -> np.ndarray:
    """Images with an unmistakable orientation: a bar on the top row, a stub in the left column."""
    x = np.random.default_rng(seed).random((n, 28, 28)) * 0.5
    x[:, 0, :] = 1.0  # top row
    x[:, :10, 0] = 0.75  # upper part of the left column
    return x


def test_chardata_images_come_out_upright() -> None:
    train, test = upright_images(5, 0), upright_images(3, 1)
    out_train, out_test = parse_chardata(chardata(train, test), "c.mat")
    assert (
        out_train.dtype == np.float32 and out_train.shape == (5, 784) and out_test.shape == (3, 784)
    )
    np.testing.assert_allclose(out_train, train.reshape(5, 784), rtol=1e-7)
    np.testing.assert_allclose(out_test, test.reshape(3, 784), rtol=1e-7)
    upright = out_train.reshape(5, 28, 28)  # row-major, as for MNIST
    assert np.all(upright[:, 0, 1:] == 1.0) and np.all(upright[:, 1:10, 0] == 0.75)
    assert not np.all(upright[:, 1:, 0] == 1.0)  # transposed images would fail this


def test_chardata_matches_iwae_loader_expression() -> None:
    """IWAE datasets.py: data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='fortran')."""
    data = np.random.default_rng(2).random((784, 9))
    raw = io.BytesIO()
    scipy.io.savemat(raw, {"data": data, "testdata": data[:, :2]})
    iwae = data.T.reshape((-1, 28, 28)).reshape((-1, 28 * 28), order="F")
    np.testing.assert_allclose(parse_chardata(raw.getvalue())[0], iwae, rtol=1e-7)


def test_chardata_missing_key() -> None:
    raw = io.BytesIO()
    scipy.io.savemat(raw, {"data": np.zeros((784, 2)), "test": np.zeros((784, 2))})
    with pytest.raises(
        DatasetError, match=r"missing key\(s\) \['testdata'\] \(found \['data', 'test'\]\)"
    ):
        parse_chardata(raw.getvalue(), "c.mat")


def test_chardata_wrong_shape_and_range() -> None:
    raw = io.BytesIO()
    scipy.io.savemat(raw, {"data": np.zeros((783, 2)), "testdata": np.zeros((784, 2))})
    with pytest.raises(DatasetError, match=r"\['data'\]: expected a numeric \(784, N\) matrix"):
        parse_chardata(raw.getvalue(), "c.mat")
    raw = io.BytesIO()
    scipy.io.savemat(raw, {"data": np.zeros((784, 2)), "testdata": np.full((784, 2), 255.0)})
    with pytest.raises(DatasetError, match=r"\['testdata'\]: pixel values must lie in \[0, 1\]"):
        parse_chardata(raw.getvalue(), "c.mat")


def test_chardata_not_a_mat_file() -> None:
    with pytest.raises(DatasetError, match=r"c\.mat: not a readable MATLAB \.mat file"):
        parse_chardata(b"<html>404 Not Found</html>" * 10, "c.mat")


# --- binarization ------------------------------------------------------------------------------


def test_binarize_is_uniform_threshold_across_chunks() -> None:
    """Chunked drawing equals the one-shot definition x = U[0,1) < p with the same stream."""
    p = np.random.default_rng(3).random((6000, 784), dtype=np.float32)  # > 1 chunk (2^22)
    expected = np.random.default_rng(9).random(p.shape, dtype=np.float32) < p
    out = binarize(p, np.random.default_rng(9))
    assert out.dtype == np.uint8 and out.shape == p.shape
    np.testing.assert_array_equal(out, expected)


def test_binarize_statistics() -> None:
    """Mean of M binarizations ~ p: per-pixel z-scores of a Binomial(M, p)/M are ~ N(0, 1)."""
    rng = np.random.default_rng(4)
    p = rng.random((50, 784)).astype(np.float32)  # 39,200 pixels
    m = 400
    mean = binarize(np.broadcast_to(p, (m, *p.shape)), rng).mean(axis=0)
    z = (mean - p) / np.sqrt(p * (1 - p) / m)  # (50, 784)
    assert np.abs(z).max() < 6.0  # P(any |z| > 6 of 39,200) ~ 8e-5
    assert abs(z.mean()) < 5 / np.sqrt(z.size)  # 0.025
    assert (
        abs(z.std() - 1) < 0.03
    )  # std of the sample std: 1/sqrt(2 * 39,200) = 0.0036 (+ discreteness)


def test_binarize_extremes_and_bad_input() -> None:
    p = np.array([[0.0, 1.0] * 392], dtype=np.float32)
    out = binarize(np.repeat(p, 1000, axis=0), np.random.default_rng(5))
    np.testing.assert_array_equal(out, np.repeat(p, 1000, axis=0).astype(np.uint8))
    for bad in (np.array([0.5, 1.5]), np.array([-0.1]), np.array([np.nan])):
        with pytest.raises(DatasetError, match=r"intensities must lie in \[0, 1\]"):
            binarize(bad, np.random.default_rng(0))


def test_binarize_test_layout_and_determinism() -> None:
    """Row j N + i is the j-th binarization of image i, from default_rng(seed)."""
    p = np.random.default_rng(6).random((30, 784), dtype=np.float32)
    out = binarize_test(p, seed=11)
    expected = np.random.default_rng(11).random((10, 30, 784), dtype=np.float32) < p[None, :, :]
    assert out.shape == (300, 784) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected.reshape(300, 784))
    np.testing.assert_array_equal(out, binarize_test(p, seed=11))
    assert not np.array_equal(out, binarize_test(p, seed=12))
