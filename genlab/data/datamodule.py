"""One LightningDataModule for every dataset: load once, hold as uint8 tensors, split with
a seeded permutation, batch by index tensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from genlab.data import readers
from genlab.data.tensors import IndexBatchSampler, StoredImages, TensorImageDataset
from genlab.data.transforms import to_shape
from genlab.errors import ConfigError, DataError

Loader = Callable[["ImageDataModule", bool], dict[str, readers.ImageSet]]

LOADERS: dict[str, Loader] = {
    "mnist_5k": lambda dm, download: readers.load_mnist_5k(),
    "mnist": lambda dm, download: readers.load_idx_dataset(
        dm.root_path(), flavour="mnist", download=download, mirrors=dm.mirrors
    ),
    "fashion_mnist": lambda dm, download: readers.load_idx_dataset(
        dm.root_path(), flavour="fashion_mnist", download=download, mirrors=dm.mirrors
    ),
    "cifar10": lambda dm, download: readers.load_cifar10(
        dm.root_path(), download=download, mirrors=dm.mirrors
    ),
    "folder": lambda dm, download: readers.load_image_folder(
        dm.root_path(), image_size=dm.image_size, channels=dm.channels
    ),
}


def class_indices(classes: Sequence[int | str], names: list[str], *, source: str) -> list[int]:
    """The label indices of ``classes``, each given as an index or a class name."""
    indices = []
    for c in classes:
        if isinstance(c, str) and c in names:
            indices.append(names.index(c))
        elif isinstance(c, int) and 0 <= c < len(names):
            indices.append(c)
        else:
            raise ConfigError(
                f"{source} has {c!r}, which is not a class of this dataset; its classes are "
                f"0..{len(names) - 1}: {', '.join(names)}"
            )
    return indices


class InMemoryDataModule(pl.LightningDataModule):
    """What genlab's data modules share: splits held in memory and batched by an index
    sampler (no per-item work, so no worker processes are needed), whose order depends on
    (seed, epoch) alone, and the place in it saved in checkpoints, so that a resumed run
    continues with the batches the stopped one had not trained on.

    Subclasses fill ``splits`` in ``setup`` and say how a split is sampled (``sampler``) and
    which split tests (``test_split``); they set ``batch_size``, ``seed``, ``num_workers``
    and ``pin_memory``."""

    splits: dict
    batch_size: int
    seed: int
    num_workers: int
    pin_memory: bool
    # (epoch, batches done) of the checkpoint a run resumes from.
    _resume_at: tuple[int, int] | None = None
    # Set through ``take_chunks`` for a model that takes several optimizer steps per
    # Lightning iteration (performance.steps_per_execution; genlab.models.fusion).
    chunk: int = 1
    train_limit: int | float | None = None
    # The batches of the current epoch trained so far, counted by such a model (a chunk
    # that max_steps cuts short counts only the batches it trained); None: one a Lightning
    # iteration, read from the loop.
    trained: int | None = None

    def sampler(self, split: str, *, train: bool, skip: tuple[int, int] | None) -> Any:
        raise NotImplementedError

    def test_split(self) -> str:
        return "test"

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the data: the epoch and the batches of it already
        trained on (saved in checkpoints, so a resumed run continues the same order)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = self.trained
        if done is None:
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": trainer.current_epoch, "batches": done * trainer.world_size}

    # Whether ``sampler`` yields chunks of batches (``take_chunks``).
    chunks_batches = False

    @property
    def chunked(self) -> bool:
        """Whether training hands out chunks of several batches (``take_chunks``)."""
        return self.chunk > 1

    def take_chunks(self, chunk: int, limit: int | float | None) -> None:
        """Has the training sampler yield ``chunk`` batches at once and keep ``limit`` batches
        an epoch (None: all), and counts ``trained`` while chunks are handed out."""
        self.chunk = chunk
        self.train_limit = limit
        self.trained = 0 if self.chunked else None

    def resumed_batches(self, epoch: int) -> int:
        """The batches of ``epoch`` that the checkpoint this run resumes from had trained."""
        resumed = self._resume_at
        return resumed[1] if resumed is not None and resumed[0] == epoch else 0

    def start_epoch(self, epoch: int) -> None:
        """Restarts ``trained`` for ``epoch``: the batches a resumed run had trained on."""
        self.trained = self.resumed_batches(epoch)

    def batches_per_epoch(self) -> int:
        """The training batches of an epoch (limit applied), whatever the chunk."""
        return self.sampler("train", train=True, skip=None).batches_per_epoch()

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self._resume_at = (int(state["epoch"]), int(state["batches"]))

    def resident_bytes(self) -> int:
        """The bytes of every split's tensors (uint8 images, labels), after ``setup``."""
        return sum(split.nbytes() for split in self.splits.values())

    def keep_on(self, device: torch.device) -> None:
        """Moves every split's tensors to ``device``, so batches are gathered (and
        binarised, cropped, flipped) there; worker processes and pinned memory are then
        pointless and turned off (performance.data_on_device)."""
        self.splits = {name: split.to(device) for name, split in self.splits.items()}
        self.num_workers = 0
        self.pin_memory = False

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """A batch of tensors already on ``device`` (every CPU run, and data kept on the
        GPU) is passed on as it is: Lightning's own transfer walks the batch with its
        generic collection code, a few hundred microseconds a step, as long as a whole step
        of a small MLP."""
        if isinstance(batch, tuple | list) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _loader(self, split: str, *, train: bool) -> DataLoader:
        dataset = self.splits[split]
        if train and self.chunked and isinstance(dataset, TensorImageDataset):
            dataset = StoredImages(dataset)  # converted batch by batch (fusion)
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=self.sampler(split, train=train, skip=self._resume_at if train else None),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split(), train=False)


class ImageDataModule(InMemoryDataModule):
    """Images in [0, 1] as float tensors [B, C, image_size, image_size] with int64 labels.

    ``classes`` keeps only those labels (given as indices or class names) in every split.
    ``binarize`` samples every pixel from Bernoulli(intensity) at each fetch.
    Datasets without a test split (mnist_5k, a folder without ``test/``) test on val.
    """

    def __init__(
        self,
        *,
        dataset: str = "mnist_5k",
        root: str | None = None,
        download: bool = False,
        mirrors: Sequence[str] | None = None,
        image_size: int = 28,
        channels: int = 1,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        classes: Sequence[int | str] | None = None,
        seed: int | None = 0,
        pin_memory: bool = False,
        binarize: bool = False,
    ) -> None:
        super().__init__()
        # Recorded in checkpoints, so a model trained from Python still names its data.
        self.save_hyperparameters(logger=False)
        if dataset not in LOADERS:
            raise ConfigError(
                f"unknown dataset {dataset!r}; choose one of {', '.join(LOADERS)} "
                "(e.g. data=mnist or data=folder data.root=DIR)"
            )
        if dataset in ("mnist", "fashion_mnist", "cifar10", "folder") and not root:
            raise ConfigError(f"data.root is required for dataset {dataset!r}: data.root=DIR")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"data.val_fraction must lie in (0, 1) (got {val_fraction})")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1 (got {batch_size})")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3 (got {channels})")
        self.dataset = dataset
        self.root = root
        self.download = download
        self.mirrors = list(mirrors) if mirrors else None
        self.image_size = image_size
        self.channels = channels
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.classes = list(classes) if classes is not None else None
        self.seed = 0 if seed is None else seed
        self.pin_memory = pin_memory
        self.binarize = binarize
        self.class_names: list[str] = []
        self.splits: dict[str, TensorImageDataset] = {}
        # (epoch, batches done) of the checkpoint a run resumes from.
        self._resume_at: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def root_path(self) -> Path:
        return Path(self.root).expanduser()

    def prepare_data(self) -> None:
        # Runs on one process only: the place to download.
        if self.download:
            LOADERS[self.dataset](self, True)

    def load(self) -> dict[str, readers.ImageSet]:
        """The dataset's splits as read: ``train``, ``test`` where it has one, and ``val``
        where it brings its own (otherwise ``setup`` splits it off ``train``)."""
        return LOADERS[self.dataset](self, False)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        loaded = self.load()
        self.class_names = list(loaded["train"].classes)
        keep = self._class_indices(self.class_names)
        train_x, train_y = self._prepare(loaded["train"], keep)
        if "val" in loaded:
            # Its own validation images (stacked_mnist draws them from digits of their own).
            val_x, val_y = self._prepare(loaded["val"], keep)
            if not (len(train_y) and len(val_y)):
                raise DataError(
                    f"dataset {self.dataset!r} has {len(train_y)} training and {len(val_y)} "
                    f"validation images after filtering classes {self.classes}; keep more "
                    "classes or draw more images"
                )
        else:
            n_val = max(1, int(round(len(train_y) * self.val_fraction)))
            if len(train_y) - n_val < 1:
                raise DataError(
                    f"dataset {self.dataset!r} has only {len(train_y)} images after filtering "
                    f"classes {self.classes}; too few to split off a validation set"
                )
            order = self.validation_order(len(train_y))
            val_idx, train_idx = order[:n_val], order[n_val:]
            train_x, train_y, val_x, val_y = (
                train_x[train_idx],
                train_y[train_idx],
                train_x[val_idx],
                train_y[val_idx],
            )
        self.splits = {
            "train": TensorImageDataset(train_x, train_y, binarize=self.binarize),
            "val": TensorImageDataset(val_x, val_y, binarize=self.binarize),
        }
        if "test" in loaded:
            self.splits["test"] = TensorImageDataset(
                *self._prepare(loaded["test"], keep), binarize=self.binarize
            )

    def validation_order(self, size: int) -> torch.Tensor:
        """A permutation of ``size`` training images, seeded by ``seed``, whose first
        ``round(size · val_fraction)`` form the validation split."""
        return torch.randperm(size, generator=torch.Generator().manual_seed(self.seed))

    def _class_indices(self, names: list[str]) -> np.ndarray | None:
        if self.classes is None:
            return None
        return np.asarray(class_indices(self.classes, names, source="data.classes"))

    def _prepare(
        self, images: readers.ImageSet, keep: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = images.images, images.labels
        if keep is not None:
            mask = np.isin(y, keep)
            x, y = x[mask], y[mask]
        x = to_shape(x, channels=self.channels, image_size=self.image_size)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))

    chunks_batches = True

    def sampler(self, split: str, *, train: bool, skip: tuple[int, int] | None) -> Any:
        return IndexBatchSampler(
            len(self.splits[split]),
            batch_size=self.batch_size,
            shuffle=train,
            # A last batch of one image would break batch norm; drop the remainder in training.
            drop_last=train and len(self.splits[split]) > self.batch_size,
            seed=self.seed,
            skip=skip,
            chunk=self.chunk if train else 1,
            limit=self.train_limit if train else None,
        )

    def test_split(self) -> str:
        return "test" if "test" in self.splits else "val"
