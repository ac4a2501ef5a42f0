"""Dataset layer (Appendix B.1): readers for the publishers' formats, the registry of the four
datasets with the paper's splits, dynamic binarization, and verified downloads. NumPy only.

    from vaeprior.reference.data import load_dataset, binarize
    ds = load_dataset("mnist", validation=True)            # ds.train (50000, 784) float32
    x = binarize(ds.train[:128], np.random.default_rng(0))  # (128, 784) uint8, fresh each epoch
"""

from .amat import parse_amat
from .binarize import binarize, binarize_test
from .errors import DatasetError, DatasetFileMissingError
from .idx import parse_idx, parse_idx_images, parse_idx_labels
from .omniglot import parse_chardata
from .paths import resolve_data_dir
from .registry import DATASETS, SPECS, SPLITS, Dataset, DatasetSpec, load_dataset, split_validation

__all__ = [
    "DATASETS",
    "SPECS",
    "SPLITS",
    "Dataset",
    "DatasetError",
    "DatasetFileMissingError",
    "DatasetSpec",
    "binarize",
    "binarize_test",
    "load_dataset",
    "parse_amat",
    "parse_chardata",
    "parse_idx",
    "parse_idx_images",
    "parse_idx_labels",
    "resolve_data_dir",
    "split_validation",
]
