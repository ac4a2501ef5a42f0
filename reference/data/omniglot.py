"""Reader for Burda et al.'s Omniglot ``chardata.mat`` (IWAE preprocessing, Appendix B.1).

Keys ``data`` (784 x 24345) and ``testdata`` (784 x 8070), grayscale values in [0, 1],
one image per column. Orientation: the IWAE loader (``iwae/datasets.py``) does
``data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='fortran')``, i.e. each 28x28
image in the file is stored column-major (MATLAB order). We do the same, written as a
per-image transpose, so that ``x.reshape(-1, 28, 28)`` (row-major, like MNIST) is upright.
"""

from __future__ import annotations

import io

import numpy as np
import scipy.io

from .errors import DatasetError

TRAIN_KEY, TEST_KEY = "data", "testdata"


def parse_chardata(raw: bytes, name: str = "<chardata.mat>") -> tuple[np.ndarray, np.ndarray]:
    """Parse ``chardata.mat`` bytes into ``(train, test)``, each ``(N, 784)`` float32 in [0, 1]."""
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw))
    except Exception as err:  # scipy raises ValueError/TypeError/OSError/... on bad files
        raise DatasetError(
            f"{name}: not a readable MATLAB .mat file ({type(err).__name__}: {err}); "
            "download chardata.mat again"
        ) from None
    missing = [key for key in (TRAIN_KEY, TEST_KEY) if key not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(
            f"{name}: missing key(s) {missing} (found {found}); expected Burda's IWAE "
            "chardata.mat with 'data' (784 x 24345) and 'testdata' (784 x 8070)"
        )
    return column_images(mat[TRAIN_KEY], f"{name}['data']"), column_images(
        mat[TEST_KEY], f"{name}['testdata']"
    )


def column_images(columns: np.ndarray, name: str) -> np.ndarray:
    """``(784, N)`` column-major-stored images -> ``(N, 784)`` float32, row-major and upright."""
    if columns.ndim != 2 or columns.shape[0] != 784 or columns.dtype.kind not in "biuf":
        raise DatasetError(
            f"{name}: expected a numeric (784, N) matrix (one image per column), "
            f"got {columns.dtype} {columns.shape}"
        )
    images = columns.T.reshape(-1, 28, 28).transpose(0, 2, 1)  # (N, 28, 28), upright
    images = np.ascontiguousarray(images, dtype=np.float32).reshape(-1, 784)  # (N, 784)
    if images.size and not (images.min() >= 0.0 and images.max() <= 1.0):
        raise DatasetError(
            f"{name}: pixel values must lie in [0, 1], found range [{images.min()}, {images.max()}]"
        )
    return images
