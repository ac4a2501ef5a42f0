"""Stochastic binarization (Appendix B.1): pixel = 1 with probability equal to its intensity."""

from __future__ import annotations

import numpy as np

from .errors import DatasetError

TEST_COPIES = 10  # the test set is binarized 10 times over (Appendix B.1)


CHUNK_ELEMENTS = 1 << 22  # uniforms drawn per step: bounds memory, keeps pages warm


def binarize(intensities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw x ~ Bernoulli(intensities) elementwise; returns uint8 in {0, 1}, same shape.

    Dynamic binarization (Appendix B.1) calls this anew each epoch on train/validation.
    ``x = u < p`` with ``u ~ U[0, 1)`` is 1 with probability exactly ``p`` (0: never, 1: always).
    The uniforms are ``rng.random(shape, dtype)`` in C order (float32, or float64 for float64
    input), drawn in row chunks: the result equals ``rng.random(p.shape, dtype) < p``.
    """
    p = np.asarray(intensities)
    if p.size and not (np.min(p) >= 0.0 and np.max(p) <= 1.0):  # also rejects NaN
        raise DatasetError(
            f"binarize: intensities must lie in [0, 1], got range [{np.min(p)}, {np.max(p)}]; "
            "scale raw uint8 pixels by 1/255 first"
        )
    if p.ndim == 0:
        return (rng.random(dtype=np.float32) < p).astype(np.uint8)
    dtype = np.float64 if p.dtype == np.float64 else np.float32
    out = np.empty(p.shape, dtype=bool)
    step = max(1, CHUNK_ELEMENTS // max(1, p[0].size if len(p) else 1))
    for i in range(0, len(p), step):
        chunk = p[i : i + step]
        np.less(rng.random(chunk.shape, dtype=dtype), chunk, out=out[i : i + step])
    return out.view(np.uint8)


def binarize_test(intensities: np.ndarray, seed: int, copies: int = TEST_COPIES) -> np.ndarray:
    """The fixed, enlarged test set (Appendix B.1): each image binarized ``copies`` times.

    Row ``j * N + i`` is the j-th binarization of test image i (``(copies * N, D)`` uint8),
    drawn from ``np.random.default_rng(seed)``, so it is identical on every load. Copy-major
    order: the first N rows hold one binarization of every image, so a ``--limit n`` evaluation
    (n <= N) sees n distinct images.
    """
    n, d = intensities.shape
    repeated = np.broadcast_to(intensities[None, :, :], (copies, n, d))  # (copies, N, D), no copy
    return binarize(repeated, np.random.default_rng(seed)).reshape(copies * n, d)
