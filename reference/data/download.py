"""Get a dataset file's bytes: read it from the data directory, or download it, verified.

Downloads stream into a temporary file in the destination folder and are moved into place
with ``os.replace`` only after the checksum matched, so no partial or wrong file is ever
left under the final name (the temporary file is removed on every failure). A failed download
also removes the folders it created when they are still empty, so an offline first run leaves
the data directory as it found it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import sources
from .errors import DatasetError, DatasetFileMissingError

CHUNK = 1 << 20
TIMEOUT_S = 60.0


def read_dataset_file(
    relpath: str,
    root: Path,
    *,
    download: bool = True,
    urls: Mapping[str, Sequence[str]] | None = None,
    checksums: Mapping[str, tuple[str, str]] | None = None,
) -> bytes:
    """Bytes of ``root / relpath`` after checking them against the checksum table.

    A missing file is downloaded from ``urls[relpath]`` (default: ``sources.URLS``) when
    ``download`` is true; otherwise, or when every URL fails, DatasetFileMissingError says
    what to place where. A checksum of None in the table skips verification.
    """
    urls = sources.URLS if urls is None else urls
    checksums = sources.CHECKSUMS if checksums is None else checksums
    path, checksum = root / relpath, checksums.get(relpath)
    candidates = tuple(urls.get(relpath, ()))
    if not path.is_file():
        created = missing_folders(path.parent)
        failures = download_file(path, candidates, checksum) if download else ["download=False"]
        if failures:
            remove_empty(created)
            raise missing_error(relpath, path, candidates, checksum, failures)
    raw = path.read_bytes()
    if checksum is not None and digest(raw, checksum[0]) != checksum[1]:
        raise DatasetError(
            f"{path}: {checksum[0]} mismatch (got {digest(raw, checksum[0])}, expected "
            f"{checksum[1]}); the file is corrupt or a different version: delete it to "
            f"download it again from {candidates[0] if candidates else 'its publisher'}"
        )
    return raw


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove each of ``folders`` (deepest first) while it exists and is empty."""
    for folder in folders:
        if not folder.is_dir():
            continue
        if any(folder.iterdir()):
            return
        folder.rmdir()


def digest(raw: bytes, algorithm: str) -> str:
    """Hex digest of ``raw`` ('sha256' or 'md5')."""
    return hashlib.new(algorithm, raw).hexdigest()


def download_file(path: Path, urls: Sequence[str], checksum: tuple[str, str] | None) -> list[str]:
    """Try each URL in turn; returns [] on success, else one failure reason per URL."""
    failures = []
    for url in urls:
        try:
            fetch_verified(url, path, checksum)
            return []
        except (OSError, http.client.HTTPException, ValueError) as err:  # URLError is OSError
            failures.append(f"{url}: {err}")
    return failures or ["no download URL known for this file"]


def fetch_verified(url: str, path: Path, checksum: tuple[str, str] | None) -> None:
    """Stream ``url`` into a temporary file beside ``path``; move it there if the checksum fits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        print(f"vaeprior: downloading {url} -> {path}", file=sys.stderr)
        hasher = hashlib.new(checksum[0] if checksum else "sha256")
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            expected_size, size = resp.headers.get("Content-Length"), 0
            while chunk := resp.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if expected_size is not None and size != int(expected_size):
            raise OSError(f"connection closed after {size} of {expected_size} bytes")
        if checksum is not None and hasher.hexdigest() != checksum[1]:
            raise DatasetError(
                f"{checksum[0]} mismatch (got {hasher.hexdigest()}, expected {checksum[1]})"
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def missing_error(
    relpath: str,
    path: Path,
    urls: Sequence[str],
    checksum: tuple[str, str] | None,
    failures: Sequence[str],
) -> DatasetFileMissingError:
    """One error saying which file, where we looked, the URLs, the checksum and the fix."""
    expected = f"{checksum[0]} {checksum[1]}" if checksum else "no checksum on record"
    return DatasetFileMissingError(
        f"dataset file {relpath!r} not found at {path} and not downloaded "
        f"({'; '.join(failures)}). Get it from {' or '.join(urls) or 'its publisher'} "
        f"(expected {expected}) and place it at {path}, or point VAEPRIOR_DATA / data_dir "
        f"at a folder holding {relpath}"
    )
