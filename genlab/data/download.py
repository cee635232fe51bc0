"""Fetching dataset archives from mirrors, checked against published md5 sums."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from genlab.errors import DataError

MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
FASHION_MNIST_MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
CIFAR10_MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]

MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
}

_CHUNK_BYTES = 1 << 20
# Everything urlopen and the socket read can raise for a bad URL or a failing server.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


def md5sum(path: str | Path) -> str:
    """Hex md5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    filename: str, dest_dir: Path, *, mirrors: list[str], md5: str, timeout: float = 30.0
) -> Path:
    """Download ``filename`` from the first mirror that serves it with the right md5."""
    dest_dir = Path(dest_dir)
    target = dest_dir / filename
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create the download directory {dest_dir}: {err}. "
            f"Choose a writable data.root, or place {filename} there by hand."
        ) from err
    failures = []
    for base in mirrors:
        url = base if base.endswith("/") else base + "/"
        url += filename
        try:
            part = _download(url, dest_dir, timeout=timeout)
        except _NETWORK_ERRORS as err:
            failures.append(f"{url}: {err}")
            continue
        found = md5sum(part)
        if found != md5:
            part.unlink(missing_ok=True)
            failures.append(f"{url}: md5 {found}, expected {md5}")
            continue
        os.replace(part, target)
        return target
    raise _fetch_failed(filename, target, md5, failures)


def _download(url: str, dest_dir: Path, *, timeout: float) -> Path:
    """Stream ``url`` into a hidden temporary file in ``dest_dir`` and return its path."""
    fd, name = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".part")
    part = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, _CHUNK_BYTES)
    except BaseException:
        # Interrupted or failed transfers must not leave stray partial files behind.
        part.unlink(missing_ok=True)
        raise
    return part


def _fetch_failed(filename: str, target: Path, md5: str, failures: list[str]) -> DataError:
    tried = "\n".join(f"  - {line}" for line in failures) or "  (no mirrors were given)"
    return DataError(
        f"could not download {filename}; every mirror failed:\n{tried}\n"
        f"Download {filename} by hand (its md5 must be {md5}) and place it at {target}, "
        "then run again with the same data.root."
    )
