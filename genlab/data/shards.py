"""The on-disk format of streamed data: WebDataset tar shards and the index beside them.

``genlab prepare-data`` writes a folder of images once as shards, and ``data=streaming``
trains from them without ever holding a split in memory. A shard is a plain tar file (so
``tar tf`` lists it, and any WebDataset reader reads it) whose samples are pairs of members
``KEY.png`` (or ``KEY.jpg``, or ``KEY.u8``: the raw uint8 pixels) and ``KEY.cls`` (the label
as text); KEY is the sample's position in its split, nine digits.

``index.json`` says everything a reader must know before opening a shard: the image size
and channels, the class names, each split's shards with their sample count and per-class
counts. The counts let every DDP rank work out, from the index alone, how many batches each
rank will get in an epoch, so that all ranks step the same number of times.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genlab.errors import ConfigError, DataError

INDEX = "index.json"
FORMAT = "genlab-shards"
VERSION = 1
# format= of prepare-data -> the member extension holding a sample's pixels.
EXTENSIONS = {"png": "png", "jpeg": "jpg", "raw": "u8"}
INSTALL = "pip install 'genlab[streaming]'"


def require_webdataset(what: str) -> None:
    """Fail at once, with the install line, when the streaming extra is missing (looked up
    without importing anything, so it answers before torch is loaded)."""
    if importlib.util.find_spec("webdataset") is None:
        raise ConfigError(f"{what} needs WebDataset, which is not installed: {INSTALL}")


def encode(pixels: np.ndarray, image_format: str, *, quality: int = 95) -> tuple[str, bytes]:
    """(member extension, bytes) of uint8 pixels [C, H, W] in ``image_format``."""
    ext = EXTENSIONS[image_format]
    if image_format == "raw":
        return ext, np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=quality)
    return ext, buffer.getvalue()


def decode(sample: dict[str, Any], shape: tuple[int, int, int], *, source: str) -> np.ndarray:
    """uint8 pixels [C, H, W] of a sample read from a shard (a dict of member bytes)."""
    channels, height, width = shape
    try:
        if "u8" in sample:
            return np.frombuffer(sample["u8"], dtype=np.uint8).reshape(shape)
        data = sample.get("png", sample.get("jpg"))
        if data is None:
            raise ValueError(f"no .png, .jpg or .u8 member, only {sorted(sample)}")
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except Exception as err:  # noqa: BLE001 - Pillow and numpy fail with many types
        raise DataError(
            f"cannot decode sample {sample.get('__key__')!r} of {source} ({type(err).__name__}: "
            f"{err}); the shard is damaged: write the shards again with genlab prepare-data"
        ) from err
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if pixels.shape != shape:
        raise DataError(
            f"sample {sample.get('__key__')!r} of {source} is {list(pixels.shape)}, but the "
            f"index says {list(shape)}; write the shards again with genlab prepare-data"
        )
    return pixels


def label_of(sample: dict[str, Any], classes: int, *, source: str) -> int:
    """The integer label of a shard's sample."""
    try:
        label = int(sample["cls"])
    except (KeyError, ValueError) as err:
        raise DataError(
            f"sample {sample.get('__key__')!r} of {source} has no readable .cls label ({err}); "
            "write the shards again with genlab prepare-data"
        ) from None
    if not 0 <= label < classes:
        raise DataError(
            f"sample {sample.get('__key__')!r} of {source} has label {label}, outside the "
            f"index's {classes} classes; write the shards again with genlab prepare-data"
        )
    return label


def read_index(root: str | Path) -> dict[str, Any]:
    """The index of the shards in ``root``, checked; a DataError that says what to do when
    the folder is not one that prepare-data wrote."""
    root = Path(root).expanduser()
    path = root / INDEX
    hint = (
        "point data.root=... at a folder written by `genlab prepare-data data=folder "
        "data.root=IMAGES out=SHARDS`"
    )
    if not path.is_file():
        what = "does not exist" if not root.exists() else f"has no {INDEX}"
        raise DataError(f"shard folder {root} {what}; {hint}")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} ({err}); {hint}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path} is not a genlab shard index; {hint}")
    if index.get("version") != VERSION:
        raise DataError(
            f"{path} is version {index.get('version')} of the shard format; this genlab reads "
            f"version {VERSION}: write the shards again with this genlab's prepare-data"
        )
    for split in index["splits"].values():
        for shard in split["shards"]:
            if not (root / shard["file"]).is_file():
                raise DataError(
                    f"shard {root / shard['file']} listed in {path} is missing; copy the whole "
                    "folder, or write it again with genlab prepare-data"
                )
    return index


def labels_kept(shard: dict[str, Any], keep: set[int] | None) -> int:
    """The samples of a shard whose labels are in ``keep`` (all when None)."""
    if keep is None:
        return int(shard["count"])
    return sum(n for label, n in enumerate(shard["labels"]) if label in keep)
