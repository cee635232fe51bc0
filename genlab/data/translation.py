"""Image-to-image translation data: pairs (Pix2Pix) and two unpaired domains (CycleGAN).

One LightningDataModule serves both, from folders laid out as the papers' public datasets
are, or from tasks built on the embedded ``mnist_5k`` digits whose right answer is known,
so a translator can be trained offline and scored exactly.

Every batch is a tuple ``(a, b)`` of float images in [0, 1], each [B, C, S, S] with
S = ``image_size``. For paired data ``b`` is ``a``'s target (``direction=BtoA`` swaps the
two); for unpaired data they are independent draws from the two domains.

The images are held in memory as uint8, the training split at ``load_size`` when it is
augmented and every other split at ``image_size``. Augmentation runs on the whole batch
at fetch time, as one gather: a random ``image_size`` crop and a random horizontal flip
per image, the same for an image and its pair. Its random numbers come from a generator
seeded by (seed, epoch, batch), carried with the batch's indices by the sampler, so a run
resumed mid-epoch, or one with worker processes, draws the crops the uninterrupted run
drew. Val and test are never augmented: their images are resized whole to
``image_size``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from genlab.data import readers
from genlab.data.datamodule import InMemoryDataModule
from genlab.data.tensors import IndexBatchSampler
from genlab.data.transforms import to_shape
from genlab.errors import ConfigError, DataError
from genlab.progress import Progress

DATASETS = ("paired_folder", "unpaired_folder", "mnist_5k")
TASKS = ("edges", "invert")
DIRECTIONS = ("AtoB", "BtoA")
SPLITS = ("train", "val", "test")
# The papers resize 256-pixel images to 286 before cropping 256 back out.
LOAD_RATIO = 286 / 256
# Names listed when A/ and B/ do not match, before "...".
_SHOWN_NAMES = 5

PAIRED_LAYOUT = (
    "root/train/, root/val/, root/test/ of images holding A and B side by side (A left), "
    "or root/A/ and root/B/ of images with matching names (each flat or with train/, val/, "
    "test/ sub-folders)"
)
UNPAIRED_LAYOUT = (
    "root/trainA/ and root/trainB/, with optional root/valA/ + root/valB/ and root/testA/ "
    "+ root/testB/"
)

# A paired file list: (A file, B file), or (file, None) for an image holding A and B side by
# side. An unpaired one: (A files, B files).
PairList = list[tuple[Path, Path | None]]
DomainLists = tuple[list[Path], list[Path]]


def default_load_size(image_size: int) -> int:
    """The size images are loaded at before the random crop: 286 for 256, as the papers."""
    return int(round(image_size * LOAD_RATIO))


def default_memory_limit_bytes() -> int:
    """Half the machine's RAM: what the uint8 images may take before loading is refused."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30  # no sysconf (Windows): assume 8 GB
    return ram // 2


# ---------------------------------------------------------------------------------------------
# Edge maps and the embedded tasks


def _cross_dilate(x: Tensor) -> Tensor:
    # A 3x3 cross is the union of a vertical and a horizontal 3-pixel line.
    vertical = F.max_pool2d(x, kernel_size=(3, 1), stride=1, padding=(1, 0))
    horizontal = F.max_pool2d(x, kernel_size=(1, 3), stride=1, padding=(0, 1))
    return torch.maximum(vertical, horizontal)


def edge_map(images: Tensor) -> Tensor:
    """The morphological gradient (dilation minus erosion, 3x3 cross) of ``images`` [N, 1,
    H, W] in [0, 1] after a threshold at 0.5: thin outlines as floats in {0, 1}."""
    binary = (images >= 0.5).float()
    return _cross_dilate(binary) - (1.0 - _cross_dilate(1.0 - binary))


def digits_at_size(digits: np.ndarray, image_size: int) -> Tensor:
    """28x28 uint8 digits [N, 1, 28, 28] at ``image_size``: padded with 2 black pixels a side
    for 32 (no resampling, so pixels stay crisp), resized for any other size."""
    if image_size == digits.shape[-1] + 4:
        return F.pad(torch.from_numpy(digits), (2, 2, 2, 2))
    return torch.from_numpy(
        np.ascontiguousarray(to_shape(digits, channels=1, image_size=image_size))
    )


def task_pairs(digits: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """(A, B) of ``task`` for uint8 digits [N, 1, S, S], as uint8: ``edges``: A = the
    digit's edge map, B = the digit; ``invert``: A = the digit, B = 255 - the digit."""
    if task == "edges":
        # In chunks: at 256 pixels the float maps of all 5,000 digits would take gigabytes.
        edges = torch.cat(
            [(edge_map(chunk.float() / 255.0) * 255).to(torch.uint8) for chunk in digits.split(256)]
        )
        return edges, digits
    if task == "invert":
        return digits, 255 - digits
    raise ConfigError(f"data.task must be one of {', '.join(TASKS)} (got {task!r})")


def _to_uint8(images: Tensor) -> Tensor:
    return (images.detach().float().cpu() * 255.0).round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# Batches


# Small batches and large images are cropped image by image (a copy of a view each), the
# rest with one gather. Measured on this machine's CPU: 16x3x286->256 0.16 ms by slices,
# 1.3 ms by gather; 64x1x36->32 0.30 ms by slices, 0.05 ms by gather.
_SLICED_UP_TO = 4
_SLICED_FROM_SIZE = 64


def crop_and_flip(
    images: Tensor,
    top: Tensor,
    left: Tensor,
    flip: Tensor,
    size: int,
    *,
    sliced: bool | None = None,
) -> Tensor:
    """Per image i, the ``size`` x ``size`` window at (top[i], left[i]) of ``images`` [N, C,
    H, W], mirrored left-right where flip[i]. ``sliced`` forces the per-image path (True) or
    the single gather (False); by default the batch and image size pick the cheaper."""
    n, channels, height, width = images.shape
    if sliced is None:
        sliced = n <= _SLICED_UP_TO or size >= _SLICED_FROM_SIZE
    if sliced:
        out = images.new_empty((n, channels, size, size))
        for i, (y, x, mirror) in enumerate(
            zip(top.tolist(), left.tolist(), flip.tolist(), strict=True)
        ):
            window = images[i, :, y : y + size, x : x + size]
            out[i] = window.flip(-1) if mirror else window
        return out
    device = images.device
    top, left, flip = top.to(device), left.to(device), flip.to(device)
    steps = torch.arange(size, device=device)
    rows = top[:, None] + steps
    cols = left[:, None] + torch.where(flip[:, None], size - 1 - steps, steps)
    flat = (rows[:, :, None] * width + cols[:, None, :]).reshape(n, 1, size * size)
    pixels = images.reshape(n, channels, height * width)
    return pixels.gather(2, flat.expand(-1, channels, -1)).reshape(n, channels, size, size)


class TranslationDataset(Dataset):
    """uint8 images of domain A [Na, C, L, L] and of B [Nb, C, L, L] as float batches in
    [0, 1] at ``image_size``.

    Paired (``paired=True``): item i is (a[i], b[i]). Unpaired: the dataset is as long as
    the longer domain, and item i is (a[i mod Na], b[i mod Nb]). Indexed with a tensor of
    indices it returns that batch, centre-cropped to ``image_size`` when L is larger; indexed
    with ``(indices_a, indices_b, seed)`` (what ``TranslationBatchSampler`` yields) it
    returns that batch, with random crops and flips drawn from ``seed`` when ``augment``.
    """

    def __init__(
        self, a: Tensor, b: Tensor, *, paired: bool, image_size: int, augment: bool = False
    ) -> None:
        if paired and len(a) != len(b):
            raise DataError(f"a paired split needs as many A as B images ({len(a)} != {len(b)})")
        self.a = a
        self.b = b
        self.paired = paired
        self.image_size = image_size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.a) if self.paired else max(len(self.a), len(self.b))

    def nbytes(self) -> int:
        return self.a.nbytes + self.b.nbytes

    def to(self, device: torch.device) -> TranslationDataset:
        """The same images on ``device``: batches are then gathered, cropped and flipped
        there."""
        return TranslationDataset(
            self.a.to(device),
            self.b.to(device),
            paired=self.paired,
            image_size=self.image_size,
            augment=self.augment,
        )

    def __getitem__(self, key: Tensor | Sequence[int] | tuple) -> tuple[Tensor, Tensor]:
        seed: int | None = None
        if isinstance(key, tuple) and len(key) == 3 and isinstance(key[0], Tensor):
            index_a, index_b, seed = key
        else:
            index = torch.as_tensor(key, dtype=torch.int64).reshape(-1)
            index_a = index % len(self.a)
            index_b = index_a if self.paired else index % len(self.b)
        device = self.a.device
        index_a, index_b = index_a.to(device), index_b.to(device)
        # index_select, not a[index]: this torch indexes uint8 by tensor ~1000x slower.
        a, b = self.a.index_select(0, index_a), self.b.index_select(0, index_b)
        if a.shape[-1] != self.image_size:
            a, b = self._crop(a, b, seed)
        return a.float().div_(255.0), b.float().div_(255.0)

    def _crop(self, a: Tensor, b: Tensor, seed: int | None) -> tuple[Tensor, Tensor]:
        size, n = self.image_size, len(a)
        room = a.shape[-1] - size
        if seed is None or not self.augment:
            centre = torch.full((n,), room // 2)
            unflipped = torch.zeros(n, dtype=torch.bool)
            return (
                crop_and_flip(a, centre, centre, unflipped, size),
                crop_and_flip(b, centre, centre, unflipped, size),
            )
        generator = torch.Generator().manual_seed(seed)
        draws = 1 if self.paired else 2
        top, left = torch.randint(0, room + 1, (2, draws, n), generator=generator)
        flip = torch.rand(draws, n, generator=generator) < 0.5
        other = 0 if self.paired else 1
        return (
            crop_and_flip(a, top[0], left[0], flip[0], size),
            crop_and_flip(b, top[other], left[other], flip[other], size),
        )


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """The seed of one batch's augmentation: a function of (seed, epoch, batch) only."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + batch) % (1 << 63)


class TranslationBatchSampler(IndexBatchSampler):
    """Yields ``(indices_a, indices_b, seed)`` per batch: for paired data one shuffled order
    for both; for unpaired data an epoch of max(Na, Nb) images, in which the shorter domain
    is cycled, each pass with its own permutation (as CycleGAN does). Orders depend only on
    (seed, epoch); ``skip=(epoch, k)`` leaves out the first k batches of that epoch (those a
    stopped run had trained on), keeping the later batches' seeds. Otherwise it behaves like
    genlab.data.tensors.IndexBatchSampler (epochs, length, drop_last)."""

    def __init__(
        self,
        size_a: int,
        size_b: int,
        *,
        paired: bool,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        skip: tuple[int, int] | None = None,
    ) -> None:
        size = size_a if paired else max(size_a, size_b)
        super().__init__(
            size, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed, skip=skip
        )
        self.size_a = size_a
        self.size_b = size_b
        self.paired = paired

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, int]]:  # type: ignore[override]
        epoch, generator = self.next_epoch()
        if self.shuffle:
            order_a = _cycled(self.size_a, self.size, generator)
            order_b = order_a if self.paired else _cycled(self.size_b, self.size, generator)
        else:
            order_a = torch.arange(self.size) % self.size_a
            order_b = order_a if self.paired else torch.arange(self.size) % self.size_b
        end = len(self) * self.batch_size
        batches = zip(
            order_a[:end].split(self.batch_size), order_b[:end].split(self.batch_size), strict=True
        )
        first = self.first_batch(epoch)
        for k, (index_a, index_b) in enumerate(batches):
            if k >= first:
                yield index_a, index_b, batch_seed(self.seed, epoch, k)


def _cycled(size: int, length: int, generator: torch.Generator) -> Tensor:
    passes = -(-length // size)
    return torch.cat([torch.randperm(size, generator=generator) for _ in range(passes)])[:length]


# ---------------------------------------------------------------------------------------------
# Folders


def _images(folder: Path, *, what: str) -> list[Path]:
    paths = readers._images_in(folder)
    if not paths:
        raise DataError(
            f"{folder} holds no images ({what}): expected files ending in "
            f"{', '.join(readers.IMAGE_EXTENSIONS)} (any case) directly in it."
        )
    return paths


def _by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _images(folder, what="one image per pair"):
        if path.stem in found:
            raise DataError(
                f"{folder} holds both {found[path.stem].name} and {path.name}; A/ and B/ images "
                "are paired by name without extension, so each name must occur once."
            )
        found[path.stem] = path
    return found


def _matched(folder_a: Path, folder_b: Path) -> PairList:
    if not folder_b.is_dir():
        raise DataError(
            f"{folder_a} has no counterpart {folder_b}; the A/ and B/ layout needs the same "
            "sub-folders in both."
        )
    a, b = _by_stem(folder_a), _by_stem(folder_b)
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:

        def some(names: list[str], paths: dict[str, Path]) -> str:
            shown = ", ".join(paths[n].name for n in names[:_SHOWN_NAMES])
            return shown + (", ..." if len(names) > _SHOWN_NAMES else "") if names else "none"

        raise DataError(
            f"the names in {folder_a} and {folder_b} do not match (pairs are matched by name "
            f"without extension): {len(only_a)} only in {folder_a.name}/ ({some(only_a, a)}), "
            f"{len(only_b)} only in {folder_b.name}/ ({some(only_b, b)}); rename or remove "
            "them so that every image has its partner."
        )
    return [(a[name], b[name]) for name in sorted(a)]


def _missing_root(root: Path, layout: str) -> DataError:
    return DataError(
        f"translation data folder {root} does not exist or is not a directory; point "
        f"data.root=... at a folder laid out as {layout}."
    )


def _split_off(items: list, fraction: float, seed: int, *, where: Path) -> tuple[list, list]:
    """(train, val) of ``items``, val a seeded ``fraction`` of them, both in listed order."""
    n_val = max(1, int(round(len(items) * fraction)))
    if len(items) - n_val < 1:
        raise DataError(
            f"{where} has only {len(items)} image(s), too few to split off a validation set; "
            "add images, or give the val split its own folder."
        )
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))
    val = set(order[:n_val].tolist())
    return (
        [x for i, x in enumerate(items) if i not in val],
        [x for i, x in enumerate(items) if i in val],
    )


def paired_files(root: Path, *, val_fraction: float, seed: int) -> dict[str, PairList]:
    """The files of each split of a paired folder (see PAIRED_LAYOUT). Without val/ the
    val split is a seeded ``val_fraction`` of train; without test/ test is val."""
    if not root.is_dir():
        raise _missing_root(root, PAIRED_LAYOUT)
    splits: dict[str, PairList] = {}
    if (root / "A").is_dir() or (root / "B").is_dir():
        folder_a, folder_b = root / "A", root / "B"
        if not (folder_a.is_dir() and folder_b.is_dir()):
            raise DataError(
                f"{root} has only one of A/ and B/; the paired layout needs both, holding "
                "images with matching names."
            )
        if (folder_a / "train").is_dir():
            for split in SPLITS:
                if (folder_a / split).is_dir():
                    splits[split] = _matched(folder_a / split, folder_b / split)
        else:
            splits["train"] = _matched(folder_a, folder_b)
    elif (root / "train").is_dir():
        for split in SPLITS:
            if (root / split).is_dir():
                what = "A and B side by side"
                splits[split] = [(p, None) for p in _images(root / split, what=what)]
    else:
        raise DataError(
            f"{root} has neither train/ nor A/ and B/ folders; paired data is laid out as "
            f"{PAIRED_LAYOUT}."
        )
    if "val" not in splits:
        splits["train"], splits["val"] = _split_off(splits["train"], val_fraction, seed, where=root)
    splits.setdefault("test", splits["val"])
    return splits


def unpaired_files(root: Path, *, val_fraction: float, seed: int) -> dict[str, DomainLists]:
    """The files of each split of an unpaired folder (see UNPAIRED_LAYOUT). Without valA/
    and valB/ each domain's val split is a seeded ``val_fraction`` of its train; without
    testA/ and testB/ test is val."""
    if not root.is_dir():
        raise _missing_root(root, UNPAIRED_LAYOUT)
    splits: dict[str, DomainLists] = {}
    for split in SPLITS:
        folders = (root / f"{split}A", root / f"{split}B")
        present = [f.is_dir() for f in folders]
        if split == "train" and not all(present):
            missing = " and ".join(
                f.name + "/" for f, p in zip(folders, present, strict=True) if not p
            )
            raise DataError(
                f"{root} has no {missing}; unpaired data is laid out as {UNPAIRED_LAYOUT}."
            )
        if any(present) and not all(present):
            there, absent = (folders[0], folders[1]) if present[0] else (folders[1], folders[0])
            raise DataError(
                f"{root} has {there.name}/ but no {absent.name}/; give both domains the split, "
                "or neither."
            )
        if all(present):
            what = "one domain of the unpaired data"
            splits[split] = (_images(folders[0], what=what), _images(folders[1], what=what))
    if "val" not in splits:
        seeds = (seed, seed + 1)
        (train_a, val_a), (train_b, val_b) = (
            _split_off(files, val_fraction, s, where=root / f"train{d}")
            for files, s, d in zip(splits["train"], seeds, "AB", strict=True)
        )
        splits["train"], splits["val"] = (train_a, train_b), (val_a, val_b)
    splits.setdefault("test", splits["val"])
    return splits


def open_image(path: Path, mode: str) -> Image.Image:
    """The image at ``path`` decoded and converted to ``mode`` ("L" or "RGB"), or a
    DataError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode)
    except Exception as err:
        # Pillow reports damaged files with many exception types (OSError, SyntaxError, ...).
        raise DataError(
            f"cannot decode image {path} ({type(err).__name__}: {err}); delete or replace it, "
            f"or move it out of {path.parent}."
        ) from err


def split_side_by_side(img: Image.Image, path: Path) -> tuple[Image.Image, Image.Image]:
    """(A, B) of an image holding A and B side by side (width 2W, A on the left)."""
    width, height = img.size
    if width % 2:
        raise DataError(
            f"{path} is {width} pixels wide, an odd width, so it cannot hold A and B "
            "side by side (width 2W, A on the left); crop it to an even width or "
            "remove it."
        )
    return img.crop((0, 0, width // 2, height)), img.crop((width // 2, 0, width, height))


def _pixels(img: Image.Image, size: int) -> np.ndarray:
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(img)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def load_pairs(
    pairs: PairList, *, channels: int, size: int, bar: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 A and B images [N, channels, size, size] of ``pairs``, decoded one file at a
    time into preallocated arrays."""
    mode = "L" if channels == 1 else "RGB"
    a = np.empty((len(pairs), channels, size, size), dtype=np.uint8)
    b = np.empty_like(a)
    for i, (path_a, path_b) in enumerate(pairs):
        if path_b is None:
            left, right = split_side_by_side(open_image(path_a, mode), path_a)
        else:
            left, right = open_image(path_a, mode), open_image(path_b, mode)
            if left.size != right.size:
                raise DataError(
                    f"{path_a} is {left.size[0]}x{left.size[1]} but its pair {path_b} is "
                    f"{right.size[0]}x{right.size[1]}; the two images of a pair must have the "
                    "same size. Resize one of them, or remove the pair."
                )
        a[i], b[i] = _pixels(left, size), _pixels(right, size)
        if bar is not None:
            bar.update(1)
    return a, b


def load_images(paths: list[Path], *, channels: int, size: int, bar: Any = None) -> np.ndarray:
    """uint8 images [N, channels, size, size] of ``paths``, one file at a time."""
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(paths), channels, size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = _pixels(open_image(path, mode), size)
        if bar is not None:
            bar.update(1)
    return out


# ---------------------------------------------------------------------------------------------
# The data module


class TranslationDataModule(InMemoryDataModule):
    """Pairs or two unpaired domains of images; batches ``(a, b)`` in [0, 1], each
    [B, channels, image_size, image_size] (see the module docstring).

    ``dataset``: ``paired_folder`` or ``unpaired_folder`` (under ``root``), or ``mnist_5k``:
    the embedded digits with ``task`` (``edges``: A = the digit's edge map, B = the digit;
    ``invert``: B = 1 - A), ``paired`` or unpaired (A and B from disjoint, class-balanced
    halves of the training digits; val and test keep the pairs, so a translation can be
    scored against the right answer). The embedded set has no test split: test is val.

    After ``setup``: ``splits`` (split -> TranslationDataset), ``shape``, ``paired``,
    ``direction``, ``fixed_batch``, ``right_answer``, ``test_pairs``.
    """

    def __init__(
        self,
        *,
        dataset: str = "mnist_5k",
        root: str | None = None,
        paired: bool | None = None,
        task: str | None = "edges",
        image_size: int = 32,
        load_size: int | None = None,
        channels: int = 1,
        batch_size: int = 64,
        augment: bool = True,
        direction: str = "AtoB",
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int | None = 0,
        max_memory_gb: float | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        if dataset not in DATASETS:
            raise ConfigError(
                f"unknown translation dataset {dataset!r}; choose one of {', '.join(DATASETS)} "
                "(e.g. data=paired_folder data.root=DIR, or data=mnist_edges)"
            )
        folder_paired = {"paired_folder": True, "unpaired_folder": False}.get(dataset)
        if folder_paired is not None and paired is not None and paired != folder_paired:
            raise ConfigError(
                f"data.paired={paired} contradicts dataset {dataset!r}; leave data.paired "
                "unset for folders (it follows the layout)"
            )
        if folder_paired is not None and not root:
            raise ConfigError(f"data.root is required for dataset {dataset!r}: data.root=DIR")
        if dataset == "mnist_5k" and task not in TASKS:
            raise ConfigError(f"data.task must be one of {', '.join(TASKS)} (got {task!r})")
        if direction not in DIRECTIONS:
            raise ConfigError(f"data.direction must be AtoB or BtoA (got {direction!r})")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3 (got {channels})")
        if image_size < 1:
            raise ConfigError(f"data.image_size must be at least 1 (got {image_size})")
        load_size = default_load_size(image_size) if load_size is None else load_size
        if load_size < image_size:
            raise ConfigError(
                f"data.load_size ({load_size}) must be at least data.image_size ({image_size}): "
                "images are loaded at load_size and cropped to image_size; e.g. "
                f"data.load_size={default_load_size(image_size)}"
            )
        if not 0 < val_fraction < 1:
            raise ConfigError(f"data.val_fraction must lie in (0, 1) (got {val_fraction})")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1 (got {batch_size})")
        if max_memory_gb is not None and max_memory_gb <= 0:
            raise ConfigError(f"data.max_memory_gb must be positive, or null (got {max_memory_gb})")
        self.dataset = dataset
        self.root = root
        self.paired: bool = folder_paired if folder_paired is not None else paired is not False
        self.task = task if dataset == "mnist_5k" else None
        self.image_size = image_size
        self.load_size = load_size
        self.channels = channels
        self.batch_size = batch_size
        self.augment = augment
        self.direction = direction
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.seed = 0 if seed is None else seed
        self.max_memory_bytes = (
            default_memory_limit_bytes() if max_memory_gb is None else int(max_memory_gb * 2**30)
        )
        self.pin_memory = pin_memory
        # No classes: present so the checkpoint commands' checks of a data module pass.
        self.class_names: list[str] = []
        self.splits: dict[str, TranslationDataset] = {}
        # Bytes the uint8 images take, known after setup.
        self.memory_bytes = 0
        # For the embedded task: indices into mnist_5k of each split's A and B images.
        self.source_indices: dict[str, Tensor] = {}
        self._answers: dict[bytes, Tensor] = {}
        self._resume_at: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def has_right_answer(self) -> bool:
        """Whether ``right_answer`` knows the B of an A image (the embedded tasks)."""
        return self.dataset == "mnist_5k"

    def root_path(self) -> Path:
        return Path(self.root).expanduser()

    def _train_size(self) -> int:
        return self.load_size if self.augment else self.image_size

    # Set-up.

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.dataset == "mnist_5k":
            self._setup_embedded()
        elif self.dataset == "paired_folder":
            self._setup_paired_folder()
        else:
            self._setup_unpaired_folder()
        self.memory_bytes = sum(
            t.numel() for d in {id(d): d for d in self.splits.values()}.values() for t in (d.a, d.b)
        )

    def _check_memory(self, count: int, size: int, *, where: Path, extra: int = 0) -> None:
        need = count * self.channels * size * size + extra
        if need > self.max_memory_bytes:
            raise DataError(
                f"{where} would take {need / 2**30:.2f} GB in memory as uint8 images "
                f"({count} images at {size}x{size}x{self.channels} and the smaller val/test), "
                f"over the ceiling of {self.max_memory_bytes / 2**30:.2f} GB (data.max_memory_gb, "
                "by default half the machine's RAM). Lower data.load_size (or data.augment=false "
                "to hold training images at image_size), use fewer images, or raise "
                "data.max_memory_gb if the machine has the room."
            )

    def _dataset(
        self, a: np.ndarray | Tensor, b: np.ndarray | Tensor, *, paired: bool, train: bool
    ) -> TranslationDataset:
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        if self.direction == "BtoA":
            a, b = b, a
        return TranslationDataset(
            a, b, paired=paired, image_size=self.image_size, augment=train and self.augment
        )

    def _sizes(self, counts: dict[str, int]) -> tuple[int, int]:
        """(train images, bytes of val and test) for the memory estimate."""
        eval_bytes = sum(counts[s] for s in ("val", "test")) * self.channels * self.image_size**2
        return counts["train"], eval_bytes

    def _setup_paired_folder(self) -> None:
        root = self.root_path()
        files = paired_files(root, val_fraction=self.val_fraction, seed=self.seed)
        shared_test = files["test"] is files["val"]
        counts = {s: 2 * len(files[s]) for s in SPLITS}
        if shared_test:
            counts["test"] = 0
        train_count, eval_bytes = self._sizes(counts)
        self._check_memory(train_count, self._train_size(), where=root, extra=eval_bytes)
        bar = Progress("data").bar("decoding images", total=sum(counts.values()) // 2)
        splits: dict[str, TranslationDataset] = {}  # set whole, so a failed set-up leaves none
        with bar:
            for split in SPLITS:
                if split == "test" and shared_test:
                    splits["test"] = splits["val"]
                    continue
                train = split == "train"
                size = self._train_size() if train else self.image_size
                a, b = load_pairs(files[split], channels=self.channels, size=size, bar=bar)
                splits[split] = self._dataset(a, b, paired=True, train=train)
        self.splits = splits

    def _setup_unpaired_folder(self) -> None:
        root = self.root_path()
        files = unpaired_files(root, val_fraction=self.val_fraction, seed=self.seed)
        shared_test = files["test"] is files["val"]
        counts = {s: len(files[s][0]) + len(files[s][1]) for s in SPLITS}
        if shared_test:
            counts["test"] = 0
        train_count, eval_bytes = self._sizes(counts)
        self._check_memory(train_count, self._train_size(), where=root, extra=eval_bytes)
        bar = Progress("data").bar("decoding images", total=sum(counts.values()))
        splits: dict[str, TranslationDataset] = {}
        with bar:
            for split in SPLITS:
                if split == "test" and shared_test:
                    splits["test"] = splits["val"]
                    continue
                train = split == "train"
                size = self._train_size() if train else self.image_size
                a, b = (
                    load_images(paths, channels=self.channels, size=size, bar=bar)
                    for paths in files[split]
                )
                splits[split] = self._dataset(a, b, paired=False, train=train)
        self.splits = splits

    def _setup_embedded(self) -> None:
        loaded = readers.load_mnist_5k()["train"]
        digits = digits_at_size(loaded.images, self.image_size)
        labels = torch.from_numpy(loaded.labels)
        a_all, b_all = task_pairs(digits, self.task)
        if self.task == "edges":
            # The B of each edge map, looked up by its pixels (right_answer, direction AtoB).
            self._answers = {e.numpy().tobytes(): b for e, b in zip(a_all, b_all, strict=True)}
        if self.channels == 3:
            a_all, b_all = a_all.expand(-1, 3, -1, -1), b_all.expand(-1, 3, -1, -1)
        n = len(digits)
        n_val = max(1, int(round(n * self.val_fraction)))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = order[:n_val], order[n_val:]  # val unsorted: mixed digits in grids
        if self.paired:
            train_a = train_b = train_idx.sort().values
        else:
            train_a, train_b = balanced_halves(train_idx, labels, seed=self.seed)
        pad = self._train_size() - self.image_size
        padding = (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)
        train = self._dataset(
            # Padded with black, not resized, so the random crop only shifts the digit.
            F.pad(a_all[train_a], padding).contiguous(),
            F.pad(b_all[train_b], padding).contiguous(),
            paired=self.paired,
            train=True,
        )
        val = self._dataset(
            a_all[val_idx].contiguous(), b_all[val_idx].contiguous(), paired=True, train=False
        )
        self.splits = {"train": train, "val": val, "test": val}
        if self.direction == "BtoA":
            train_a, train_b = train_b, train_a
        self.source_indices = {
            "train_a": train_a,
            "train_b": train_b,
            "val": val_idx,
            "test": val_idx,
        }

    # What models and commands ask of translation data.

    def fixed_batch(self, split: str = "val", n: int = 8) -> tuple[Tensor, Tensor]:
        """(a, b) of the first ``n`` images of ``split`` (fewer if it is shorter), never
        augmented: the same images at every call, for image grids."""
        self.setup()
        dataset = self.splits[split]
        return dataset[torch.arange(min(n, len(dataset)))]

    def test_pairs(self) -> TranslationDataset | None:
        """The test split as (a, b_target) pairs (index it with a tensor of indices), or
        None where B is no target of A (unpaired folders)."""
        self.setup()
        test = self.splits["test"]
        return test if test.paired else None

    def right_answer(self, a: Tensor) -> Tensor | None:
        """The known B of A images [k, C, S, S] in [0, 1] (the embedded tasks; None for
        folders). ``edges`` AtoB: the digits whose edge maps these are, looked up by their
        pixels (so ``a`` must be unchanged images of the task); BtoA: their edge maps.
        ``invert``: 1 - a."""
        if not self.has_right_answer:
            return None
        if self.task == "invert":
            return 1.0 - a
        grey = a[:, :1]
        if self.direction == "BtoA":
            answer = edge_map(grey.float())
        else:
            self.setup()
            answers = []
            for i, image in enumerate(_to_uint8(grey)):
                found = self._answers.get(image.numpy().tobytes())
                if found is None:
                    raise DataError(
                        f"image {i} of the batch is not an edge map of the embedded task "
                        "(augmented, resized or changed?); right_answer knows only the task's "
                        "own images, e.g. those of test_pairs() or fixed_batch()."
                    )
                answers.append(found)
            answer = torch.stack(answers).float().div_(255.0)
        return answer.expand(-1, a.shape[1], -1, -1).to(a.device, a.dtype)

    # Batches (resume state and loaders: genlab.data.datamodule.InMemoryDataModule).

    def sampler(
        self, split: str, *, train: bool, skip: tuple[int, int] | None
    ) -> TranslationBatchSampler:
        dataset = self.splits[split]
        return TranslationBatchSampler(
            len(dataset.a),
            len(dataset.b),
            paired=dataset.paired,
            batch_size=self.batch_size,
            shuffle=train,
            # A last batch of one image would break batch norm; drop the remainder in training.
            drop_last=train and len(dataset) > self.batch_size,
            seed=self.seed,
            skip=skip,
        )


def balanced_halves(indices: Tensor, labels: Tensor, *, seed: int) -> tuple[Tensor, Tensor]:
    """Two disjoint halves of ``indices``, each holding half of every class (by a seeded
    permutation within each class), sorted."""
    generator = torch.Generator().manual_seed(seed + 1)
    first, second = [], []
    for label in labels[indices].unique():
        members = indices[labels[indices] == label]
        members = members[torch.randperm(len(members), generator=generator)]
        half = len(members) // 2
        first.append(members[:half])
        second.append(members[half:])
    return torch.cat(first).sort().values, torch.cat(second).sort().values
