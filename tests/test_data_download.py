"""Verified, atomic downloads against a local http.server and file:// URLs.

A download must land under its final name only when its checksum matches; every failure
(404, checksum mismatch, connection cut mid-file, unreachable host) must leave no file, no
temporary file, and one error naming the file, the folder, the URL(s) and the checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vaeprior.reference.data import (
    DatasetError,
    DatasetFileMissingError,
    load_dataset,
    registry,
    sources,
)
from vaeprior.reference.data.download import read_dataset_file

PAYLOAD = b"synthetic dataset file \x00\x01\x02" * 1000
SHA = ("sha256", hashlib.sha256(PAYLOAD).hexdigest())


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; /cut sends a Content-Length of 100,000 but only 10 bytes."""

    def do_GET(self) -> None:
        if self.path == "/cut":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder) of an http.server on 127.0.0.1, an ephemeral port, a thread."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "good.bin").write_bytes(PAYLOAD)

    def handler(*args: object) -> Handler:
        return Handler(*args, directory=str(served))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def fetch(root: Path, *urls: str, checksum: tuple[str, str] | None = SHA) -> bytes:
    return read_dataset_file(
        "ds/file.bin", root, urls={"ds/file.bin": urls}, checksums={"ds/file.bin": checksum}
    )


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "ds").iterdir()) if (root / "ds").exists() else []


def test_http_download_verified_and_atomic(server: tuple[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "data"
    assert fetch(root, server[0] + "good.bin") == PAYLOAD
    assert (root / "ds" / "file.bin").read_bytes() == PAYLOAD
    assert leftovers(root) == ["file.bin"]  # no temporary file left
    # present now: read, verified, no network needed (the URL is dead)
    assert fetch(root, "http://127.0.0.1:9/none") == PAYLOAD


def test_file_url_and_md5(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    md5 = ("md5", hashlib.md5(PAYLOAD).hexdigest())
    assert fetch(tmp_path / "data", src.as_uri(), checksum=md5) == PAYLOAD


def test_checksum_mismatch_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "data"
    wrong = ("sha256", "0" * 64)
    with pytest.raises(DatasetFileMissingError) as info:
        fetch(root, server[0] + "good.bin", checksum=wrong)
    msg = str(info.value)
    assert f"sha256 mismatch (got {SHA[1]}, expected {'0' * 64})" in msg
    assert str(root / "ds" / "file.bin") in msg and "good.bin" in msg
    assert leftovers(root) == []


def test_404_gives_one_clear_error(server: tuple[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "data"
    url = server[0] + "missing.bin"
    with pytest.raises(DatasetFileMissingError) as info:
        fetch(root, url)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    assert "'ds/file.bin' not found at " + str(root / "ds" / "file.bin") in msg
    assert f"{url}: HTTP Error 404" in msg and f"expected sha256 {SHA[1]}" in msg
    assert f"place it at {root / 'ds' / 'file.bin'}" in msg
    assert leftovers(root) == []


def test_fallback_url_after_404(server: tuple[str, Path], tmp_path: Path) -> None:
    assert fetch(tmp_path / "d", server[0] + "missing.bin", server[0] + "good.bin") == PAYLOAD


def test_connection_cut_mid_file_leaves_no_partial_file(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "data"
    with pytest.raises(
        DatasetFileMissingError, match=r"/cut: connection closed after 10 of 100000 bytes"
    ):
        fetch(root, server[0] + "cut", checksum=None)
    assert leftovers(root) == []


def test_failed_download_removes_the_folders_it_created(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    """Offline first use leaves no empty data folder behind, but keeps folders that existed or
    that hold another file."""
    root = tmp_path / "data" / "nested"
    with pytest.raises(DatasetFileMissingError):
        fetch(root, server[0] + "missing.bin")
    assert not (tmp_path / "data").exists()
    (root / "ds").mkdir(parents=True)  # there before: kept, even empty
    with pytest.raises(DatasetFileMissingError):
        fetch(root, server[0] + "missing.bin")
    assert (root / "ds").is_dir() and leftovers(root) == []
    fresh = tmp_path / "fresh"
    assert fetch(fresh, server[0] + "good.bin") == PAYLOAD  # creates fresh/ds
    with pytest.raises(DatasetFileMissingError):
        read_dataset_file(
            "ds/other.bin", fresh, urls={"ds/other.bin": (server[0] + "missing.bin",)}, checksums={}
        )
    assert leftovers(fresh) == ["file.bin"]


def test_unreachable_host(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileMissingError, match=r"http://127\.0\.0\.1:9/x: <urlopen error"):
        fetch(tmp_path / "data", "http://127.0.0.1:9/x")


def test_download_disabled(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileMissingError, match=r"\(download=False\)\. Get it from http://u"):
        read_dataset_file(
            "ds/f", tmp_path, download=False, urls={"ds/f": ("http://u",)}, checksums={}
        )


def test_local_file_with_wrong_checksum(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "file.bin").write_bytes(PAYLOAD + b"x")
    with pytest.raises(DatasetError, match=r"file\.bin: sha256 mismatch .* delete it to download"):
        fetch(tmp_path, "http://127.0.0.1:9/none")


def test_default_tables_cover_every_dataset_file() -> None:
    """Each registry file has URLs and a checksum; the SHA256SUMS copy parses to 11 entries."""
    for spec in registry.SPECS.values():
        for file in spec.files:
            key = f"{spec.folder}/{file}"
            assert sources.URLS[key] and sources.CHECKSUMS[key][0] in ("sha256", "md5"), key
    assert sum(algo == "sha256" for algo, _ in sources.CHECKSUMS.values()) == 11
    assert sources.CHECKSUMS["omniglot/chardata.mat"] == ("md5", "21ecaf34373511aa7691cf2e0802aa3d")
    assert sources.URLS["mnist/train-images-idx3-ubyte.gz"][0].startswith("https://ossci-datasets")


def test_load_dataset_downloads_missing_files(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: an empty data dir, a tiny 'mnist' served locally, loaded through the registry."""
    base, served = server
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", 12), ("t10k", 4)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            head = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
            files[f"{prefix}-{kind}-ubyte.gz"] = gzip.compress(head + arr.tobytes())
    for name, raw in files.items():
        (served / name).write_bytes(raw)
        monkeypatch.setitem(sources.URLS, f"mnist/{name}", (base + name,))
        monkeypatch.setitem(
            sources.CHECKSUMS, f"mnist/{name}", ("sha256", hashlib.sha256(raw).hexdigest())
        )
    spec = registry.SPECS["mnist"]
    monkeypatch.setitem(
        registry.SPECS,
        "mnist",
        registry.DatasetSpec(spec.folder, spec.files, 12, 4, 3, True, "idx"),
    )
    ds = load_dataset("mnist", tmp_path / "data", validation=True)
    assert (
        ds.train.shape == (9, 784)
        and ds.validation.shape == (3, 784)
        and ds.test.shape == (40, 784)
    )
    assert sorted(os.listdir(tmp_path / "data" / "mnist")) == sorted(files)
