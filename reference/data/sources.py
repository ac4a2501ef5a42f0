"""Where each dataset file comes from and its checksum (Appendix B.1 datasets).

Both tables are keyed by the file's path below the data directory and are plain module-level
dicts, so tests (or users with a private mirror) can override them. URLs are tried in order.
Checksums are ``(algorithm, hexdigest)``; SHA-256 from ``shared/datasets/SHA256SUMS``, except
Omniglot, for which only the MD5 is published (``shared/datasets/README.md``), so its file
is verified by MD5.
"""

from __future__ import annotations

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # maintained mirror (used by torchvision)
    "http://yann.lecun.com/exdb/mnist/",  # the original publisher, often unreachable
)
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
STATIC_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
OMNIGLOT_URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/"

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
AMAT_FILES = tuple(f"binarized_mnist_{part}.amat" for part in ("train", "valid", "test"))

URLS: dict[str, tuple[str, ...]] = {
    **{f"mnist/{f}": tuple(base + f for base in MNIST_MIRRORS) for f in IDX_FILES},
    **{f"fashion-mnist/{f}": (FASHION_MNIST_URL + f,) for f in IDX_FILES},
    **{f"static-mnist/{f}": (STATIC_MNIST_URL + f,) for f in AMAT_FILES},
    "omniglot/chardata.mat": (OMNIGLOT_URL + "chardata.mat",),
}

# Verbatim copy of shared/datasets/SHA256SUMS (`sha256sum -c` format: digest, two spaces, path).
_SHA256SUMS = """\
8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  mnist/t10k-images-idx3-ubyte.gz
f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  mnist/t10k-labels-idx1-ubyte.gz
440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  mnist/train-images-idx3-ubyte.gz
3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  mnist/train-labels-idx1-ubyte.gz
346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073  fashion-mnist/t10k-images-idx3-ubyte.gz
67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5  fashion-mnist/t10k-labels-idx1-ubyte.gz
3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84  fashion-mnist/train-images-idx3-ubyte.gz
a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845  fashion-mnist/train-labels-idx1-ubyte.gz
e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c  static-mnist/binarized_mnist_test.amat
ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d  static-mnist/binarized_mnist_train.amat
1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2  static-mnist/binarized_mnist_valid.amat
"""  # noqa: E501


CHECKSUMS: dict[str, tuple[str, str]] = {
    **{path: ("sha256", digest) for digest, path in map(str.split, _SHA256SUMS.splitlines())},
    "omniglot/chardata.mat": ("md5", "21ecaf34373511aa7691cf2e0802aa3d"),
}
