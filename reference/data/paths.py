"""Where dataset files live: explicit argument > $VAEPRIOR_DATA > ~/.cache/vaeprior."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "VAEPRIOR_DATA"
DEFAULT_DIR = Path("~/.cache/vaeprior")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root; files sit below it as ``<root>/mnist/train-images-idx3-ubyte.gz``.

    Precedence: ``data_dir`` if given, else the environment variable ``VAEPRIOR_DATA``
    (relative paths resolve against the current directory), else ``~/.cache/vaeprior``.
    The folder need not exist yet (downloads create it).
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(os.path.abspath(Path(data_dir).expanduser()))  # normalises "..", keeps links
