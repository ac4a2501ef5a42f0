"""Reader for LeCun's IDX format (``*-idx3-ubyte.gz`` images, ``*-idx1-ubyte.gz`` labels).

Layout (yann.lecun.com/exdb/mnist): magic = two zero bytes, a type code, the number of
dimensions; then one big-endian uint32 per dimension; then the data, big-endian, C order.
Gzip-compressed files (magic ``1f 8b``) are decompressed first.
"""

from __future__ import annotations

import gzip
import zlib

import numpy as np

from .errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def decompress_if_gzip(raw: bytes, name: str) -> bytes:
    """Gunzip ``raw`` when it starts with the gzip magic; truncated/corrupt gzip -> DatasetError."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DatasetError(
            f"{name}: corrupt or truncated gzip data ({err}); delete the file and download it again"
        ) from None


def parse_idx(raw: bytes, name: str = "<idx>") -> np.ndarray:
    """Parse IDX bytes (gzip or plain) into an array of the stored shape and native dtype."""
    data = decompress_if_gzip(raw, name)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_TYPES:
        raise DatasetError(
            f"{name}: not an IDX file (magic bytes {data[:4].hex() or 'missing'}, expected "
            "0000<type><ndim> with type 08/09/0b/0c/0d/0e); is it the right file?"
        )
    dtype, ndim = np.dtype(IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{name}: IDX header truncated ({len(data)} bytes for {ndim} dims)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(
            f"{name}: IDX header says shape {shape} ({expected} data bytes) but the file holds "
            f"{len(data) - header}; the file is truncated or corrupt, download it again"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=dtype.itemsize > 1)


def parse_idx_images(raw: bytes, name: str, n: int | None = None) -> np.ndarray:
    """IDX images ``(N, 28, 28)`` uint8 -> ``(N, 784)`` uint8, checking N when ``n`` is given."""
    images = parse_idx(raw, name)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DatasetError(
            f"{name}: expected uint8 images of shape (N, 28, 28), got {images.dtype} "
            f"{images.shape}; is this an images (idx3) file?"
        )
    check_count(images, n, name, "images")
    return images.reshape(len(images), 784)


def parse_idx_labels(raw: bytes, name: str, n: int | None = None) -> np.ndarray:
    """IDX labels ``(N,)`` uint8, checking N when ``n`` is given."""
    labels = parse_idx(raw, name)
    if labels.ndim != 1:
        raise DatasetError(
            f"{name}: expected 1-D labels, got shape {labels.shape}; is this a labels (idx1) file?"
        )
    check_count(labels, n, name, "labels")
    return labels


def check_count(array: np.ndarray, n: int | None, name: str, what: str) -> None:
    """Raise DatasetError unless ``len(array) == n`` (skipped when ``n`` is None)."""
    if n is not None and len(array) != n:
        raise DatasetError(f"{name}: expected {n} {what}, found {len(array)}; wrong or cut file?")
