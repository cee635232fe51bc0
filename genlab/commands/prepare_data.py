"""`genlab prepare-data data=folder data.root=DIR out=SHARDS`: write a folder of images once
as WebDataset shards, which ``data=streaming data.root=SHARDS`` trains from without holding
the dataset in memory.

The folder is read as ``data=folder`` reads it (train/ and test/ splits, one class per
sub-folder; genlab.data.readers), each image converted to ``data.channels`` and resized to
``data.image_size`` once, here, so training only decodes. The validation split is cut off
train by the same seeded permutation ImageDataModule uses, so it holds the same images as a
``data=folder`` run with the same ``data.seed`` and ``data.val_fraction``; the train split
is written in that permuted order, so every shard mixes the classes. Only one image at a
time is in memory.

Everything is written into a hidden folder beside ``out`` and renamed to ``out`` at the
end: a failed or interrupted run leaves no half-written shards behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from genlab.commands.common import (
    CONFIG_DIR,
    check_bool,
    check_choice,
    check_int,
    run_command,
)
from genlab.errors import ConfigError, DataError, OutputError

FORMATS = ("png", "jpeg", "raw")


def check_options(cfg: DictConfig) -> None:
    if str(cfg.data.get("dataset")) != "folder":
        raise ConfigError(
            f"prepare-data shards a folder of images (data=folder data.root=DIR); "
            f"data={cfg.data.get('dataset')} is read into memory by genlab train directly"
        )
    if not cfg.data.get("root"):
        raise ConfigError("data.root is required: the folder of images, data.root=DIR")
    if not str(cfg.out or "").strip():
        raise ConfigError("out is required: the folder to write the shards to, out=SHARDS")
    check_int(cfg, "shard_size", minimum=1, example=1000, what="the images per shard")
    check_choice(cfg, "format", FORMATS)
    check_int(cfg, "quality", minimum=1, example=95, what="the JPEG quality")
    check_bool(cfg, "overwrite")
    check_int(cfg, "data.image_size", minimum=1, example=64)
    if cfg.data.channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 or 3 (got {cfg.data.channels!r})")
    fraction = cfg.data.get("val_fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise ConfigError(f"data.val_fraction must lie in (0, 1) (got {fraction!r})")
    check_int(cfg, "data.seed", optional=True, what="the seed of the validation split")


def scan(root: Path, classes: list | None) -> tuple[dict[str, list[tuple[Path, int]]], list[str]]:
    """(split -> [(file, label)], class names) of an image folder, as data=folder reads
    it, with only the labels of ``classes`` when given."""
    from genlab.data import readers
    from genlab.data.datamodule import class_indices

    root = root.expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist or is not a directory; point data.root=... at "
            "a folder of images (optionally with train/ and test/ sub-folders)."
        )
    folders = {name: root / name for name in ("train", "test") if (root / name).is_dir()}
    if "train" not in folders:
        folders = {"train": root}
    names: list[str] = []
    splits = {}
    for split, folder in folders.items():
        groups = readers._scan_split(folder, default_class=root.name or "images")
        names = names or list(groups)
        unknown = [name for name in groups if name not in names]
        if unknown:
            raise DataError(
                f"{folder} has classes {unknown} that the train split lacks (train classes: "
                f"{names}); give train/ and test/ the same class sub-folders."
            )
        splits[split] = [(p, names.index(name)) for name, paths in groups.items() for p in paths]
    if classes is not None:
        keep = set(class_indices(classes, names, source="data.classes"))
        splits = {s: [(p, y) for p, y in items if y in keep] for s, items in splits.items()}
    return splits, names


def write_split(
    items: list[tuple[Path, int]],
    folder: Path,
    split: str,
    *,
    cfg: DictConfig,
    classes: int,
    bar: Any,
) -> dict[str, Any]:
    """Write one split's images as shards in ``folder``; its entry of the index."""
    from webdataset import TarWriter

    from genlab.data import readers, shards

    mode = "L" if cfg.data.channels == 1 else "RGB"
    entries = []
    for first in range(0, len(items), cfg.shard_size):
        name = f"{split}-{first // cfg.shard_size:06d}.tar"
        labels = [0] * classes
        with open(folder / name, "wb") as stream, TarWriter(stream, encoder=False) as tar:
            for key, (path, label) in enumerate(items[first : first + cfg.shard_size], first):
                pixels = readers._load_image(path, mode=mode, size=cfg.data.image_size)
                ext, data = shards.encode(pixels, cfg.format, quality=cfg.quality)
                tar.write({"__key__": f"{key:09d}", ext: data, "cls": str(label).encode()})
                labels[label] += 1
                bar.update(1)
        entries.append({"file": name, "count": sum(labels), "labels": labels})
    return {"count": len(items), "shards": entries}


def prepare_data(cfg: DictConfig) -> dict[str, Any]:
    # Before torch is imported: a mistyped option or a missing extra is answered at once.
    check_options(cfg)
    from genlab.data import shards

    shards.require_webdataset("genlab prepare-data")
    out = Path(str(cfg.out)).expanduser().resolve()
    if out.exists() and not cfg.overwrite:
        raise OutputError(
            f"out={out} already exists; choose a new folder, or pass overwrite=true to "
            "replace it once the new shards are complete"
        )
    import torch

    from genlab.atomic import write_json
    from genlab.progress import Progress

    progress = Progress("prepare-data", quiet=cfg.get("quiet", False))
    classes = list(cfg.data.classes) if cfg.data.get("classes") is not None else None
    splits, names = scan(Path(str(cfg.data.root)), classes)
    train = splits["train"]
    n_val = max(1, int(round(len(train) * cfg.data.val_fraction)))
    if len(train) - n_val < 1:
        raise DataError(
            f"{cfg.data.root} has only {len(train)} training images; too few to split off a "
            "validation set"
        )
    seed = 0 if cfg.data.get("seed") is None else int(cfg.data.seed)
    # The permutation ImageDataModule draws: the same validation images as data=folder.
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    splits = {
        "train": [train[i] for i in order[n_val:]],
        "val": [train[i] for i in order[:n_val]],
        **({"test": splits["test"]} if "test" in splits else {}),
    }

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = out.with_name(f".{out.name}.part-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
    except OSError as exc:
        raise OutputError(
            f"cannot create {out.parent / ('.' + out.name)}*: {exc.strerror or exc}; check that "
            f"{out.parent} is writable, or choose another out=..."
        ) from None
    try:
        index_splits = {}
        for split, items in splits.items():
            what = (
                f"{len(items)} {split} images at {cfg.data.image_size} px into "
                f"{-(-len(items) // cfg.shard_size)} shard(s) of up to {cfg.shard_size} "
                f"({cfg.format})"
            )
            with progress.phase(split, what, total=len(items)) as bar:
                index_splits[split] = write_split(
                    items, work, split, cfg=cfg, classes=len(names), bar=bar
                )
        index = {
            "format": shards.FORMAT,
            "version": shards.VERSION,
            "image_size": int(cfg.data.image_size),
            "channels": int(cfg.data.channels),
            "image_format": str(cfg.format),
            "class_names": names,
            "source": str(Path(str(cfg.data.root)).expanduser().resolve()),
            "seed": seed,
            "val_fraction": float(cfg.data.val_fraction),
            "splits": index_splits,
        }
        write_json(work / shards.INDEX, index)
        replaced = out.with_name(f".{out.name}.old-{os.getpid()}") if out.exists() else None
        if replaced is not None:
            os.replace(out, replaced)
        os.replace(work, out)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(
                f"cannot write the shards to {out}: {exc.strerror or exc}; nothing was left "
                f"there. Free space or choose another out=..."
            ) from None
        raise
    counts = ", ".join(f"{len(items)} {split}" for split, items in splits.items())
    size = sum(f.stat().st_size for f in out.iterdir())
    print(
        f"genlab prepare-data: {counts} images ({len(names)} classes, "
        f"{cfg.data.channels}x{cfg.data.image_size}x{cfg.data.image_size}, "
        f"{size / 2**20:.1f} MiB) in {out}; train with data=streaming data.root={out} "
        f"data.image_size={cfg.data.image_size} data.channels={cfg.data.channels}"
    )
    return {"out": str(out), **{split: len(items) for split, items in splits.items()}}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="prepare-data")
def main(cfg: DictConfig) -> None:
    run_command(prepare_data, cfg)


if __name__ == "__main__":
    main()
