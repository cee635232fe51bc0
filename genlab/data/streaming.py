"""``data=streaming``: train from WebDataset shards written by ``genlab prepare-data``,
for image folders too large for memory. Nothing is held but the shuffle buffer.

Batches are (images [B, C, H, W], labels [B]) as with ImageDataModule; the images travel
as uint8 (a quarter of the bytes between the worker processes and to the GPU) and become
floats in [0, 1] in ``on_after_batch_transfer``, on the device.

Who reads what, in an epoch of training (``ShardStream``):

- The train shards are permuted by (seed, epoch); rank r of W ranks (all nodes counted)
  takes shards r, r + W, ...; each DataLoader worker of a rank takes every n-th of those.
  No sample is read by two ranks or two workers: they are disjoint by construction.
- Each worker shuffles its samples through a buffer seeded by (seed, epoch, rank, worker).
- Every rank must step the same number of times, or DDP waits for ever on the rank that
  stopped. The index (genlab.data.shards) has each shard's per-class counts, so every rank
  computes, without reading a shard, the number of full batches that the poorest rank of
  any epoch's permutation can make, and every rank stops there. What an epoch leaves out
  (at most about a shard per rank) differs from epoch to epoch.

Validation and testing split by sample instead (sample i goes to rank i mod W), so that
every rank has some even when a split has fewer shards than there are ranks; nothing is
left out there, and the ranks' batch counts may differ by one, which is fine since
genlab's models reduce their validation metrics once per epoch.

Not supported: the checkpoint commands (evaluate, embed, ...) read whole splits, which
streamed data does not hold; they say so and ask for ``data=folder``. A run resumed from a
mid-epoch checkpoint starts that epoch's order from its first batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from genlab.data import shards as fmt
from genlab.data.datamodule import class_indices
from genlab.errors import ConfigError, DataError

# Lightning warns that a length may be wrong when workers are not given their own data;
# here each worker reads its own shards and stops at its share of len(), so it is exact.
warnings.filterwarnings("ignore", message=r".*IterableDataset. has .__len__. defined.*")


def rank_shards(
    n_shards: int, *, seed: int, epoch: int, rank: int, world_size: int, shuffle: bool
) -> list[int]:
    """The shards rank ``rank`` of ``world_size`` reads in ``epoch``."""
    order = (
        np.random.default_rng([seed, epoch]).permutation(n_shards)
        if shuffle
        else np.arange(n_shards)
    )
    return [int(i) for i in order[rank::world_size]]


def train_batches(counts: Sequence[int], *, world_size: int, workers: int, batch_size: int) -> int:
    """Full batches every rank can make in any epoch: the poorest rank gets the smallest
    ``len(counts) // world_size`` shards, and each of its workers may waste a partial
    batch."""
    per_rank = len(counts) // world_size
    if per_rank == 0:
        return 0
    poorest = sum(sorted(counts)[:per_rank])
    return max(0, poorest // batch_size - (min(max(workers, 1), per_rank) - 1))


def worker_quotas(samples: Sequence[int], *, batches: int, batch_size: int) -> list[int]:
    """How many of a rank's ``batches`` each worker makes, one at a time in turn, so that
    the DataLoader's round robin over the workers stays even."""
    capacity = [n // batch_size for n in samples]
    quotas = [0] * len(samples)
    left = batches
    while left > 0 and any(q < c for q, c in zip(quotas, capacity, strict=True)):
        for w, cap in enumerate(capacity):
            if left > 0 and quotas[w] < cap:
                quotas[w] += 1
                left -= 1
    return quotas


class ShardStream(IterableDataset):
    """One split of the shards as batches of (uint8 images [B, C, H, W], labels [B]) for
    rank ``rank`` of ``world_size``; ``train`` shuffles by (seed, epoch) and makes exactly
    ``len(self)`` full batches, else every sample of this rank is read once in order."""

    def __init__(
        self,
        root: str | Path,
        index: dict[str, Any],
        split: str,
        *,
        batch_size: int,
        train: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        keep: set[int] | None = None,
    ) -> None:
        self.root = Path(root)
        self.shards = list(index["splits"][split]["shards"])
        self.shape = (int(index["channels"]), int(index["image_size"]), int(index["image_size"]))
        self.classes = len(index["class_names"])
        self.split = split
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.keep = keep
        self.epoch = 0
        self.counts = [fmt.labels_kept(shard, keep) for shard in self.shards]

    def __len__(self) -> int:
        if not self.train:
            raise TypeError("an evaluation stream has no length known in advance")
        return train_batches(
            self.counts,
            world_size=self.world_size,
            workers=self.num_workers,
            batch_size=self.batch_size,
        )

    def _samples(self, shard_ids: Sequence[int], *, rank_filter: bool) -> Iterator[dict]:
        from webdataset.tariterators import tarfile_samples

        for i in shard_ids:
            path = self.root / self.shards[i]["file"]
            for sample in tarfile_samples([{"url": str(path)}]):
                if rank_filter and int(sample["__key__"]) % self.world_size != self.rank:
                    continue
                label = fmt.label_of(sample, self.classes, source=str(path))
                if self.keep is None or label in self.keep:
                    sample["__label__"] = label
                    sample["__source__"] = str(path)
                    yield sample

    def _shuffled(self, samples: Iterator[dict], rng: np.random.Generator) -> Iterator[dict]:
        buffer: list[dict] = []
        for sample in samples:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            i = int(rng.integers(len(buffer)))
            buffer[i], sample = sample, buffer[i]
            yield sample
        rng.shuffle(buffer)
        yield from buffer

    def _batch(self, samples: list[dict]) -> tuple[Tensor, Tensor]:
        images = np.stack([fmt.decode(s, self.shape, source=s["__source__"]) for s in samples])
        labels = np.array([s["__label__"] for s in samples], dtype=np.int64)
        return torch.from_numpy(images), torch.from_numpy(labels)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.train:
            mine = rank_shards(
                len(self.shards),
                seed=self.seed,
                epoch=self.epoch,
                rank=self.rank,
                world_size=self.world_size,
                shuffle=True,
            )
            per_worker = [mine[w::workers] for w in range(workers)]
            quotas = worker_quotas(
                [sum(self.counts[i] for i in ids) for ids in per_worker],
                batches=len(self),
                batch_size=self.batch_size,
            )
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
            samples = self._shuffled(self._samples(per_worker[worker], rank_filter=False), rng)
            limit = quotas[worker]
        else:
            ids = list(range(len(self.shards)))[worker::workers]
            samples = self._samples(ids, rank_filter=True)
            limit = None
        batch: list[dict] = []
        made = 0
        for sample in samples:
            if limit is not None and made >= limit:
                return
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self._batch(batch)
                batch, made = [], made + 1
        if batch and not self.train:
            yield self._batch(batch)


class EpochLoader(DataLoader):
    """A DataLoader that tells its ShardStream the epoch before each pass (the workers get
    a copy of the dataset as it is then): the trainer's epoch when ``epoch_of`` gives one,
    else the count of passes so far."""

    def __init__(self, *args: Any, epoch_of: Callable[[], int | None] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.epoch_of = epoch_of
        self.passes = 0

    def __iter__(self) -> Any:
        epoch = self.epoch_of() if self.epoch_of is not None else None
        self.dataset.epoch = self.passes if epoch is None else epoch
        self.passes += 1
        return super().__iter__()


class StreamingDataModule(pl.LightningDataModule):
    """Batches streamed from the shards in ``root`` (see the module's docstring).

    ``image_size`` and ``channels`` are the models' (configs interpolate them); null takes
    the shards', and a value that differs from the shards' is an error. ``classes`` keeps
    only those labels; ``binarize`` samples every pixel from Bernoulli(intensity)."""

    def __init__(
        self,
        *,
        root: str,
        dataset: str = "streaming",
        image_size: int | None = None,
        channels: int | None = None,
        batch_size: int = 128,
        num_workers: int = 2,
        shuffle_buffer: int = 2000,
        classes: Sequence[int | str] | None = None,
        seed: int | None = 0,
        pin_memory: bool = False,
        binarize: bool = False,
    ) -> None:
        super().__init__()
        fmt.require_webdataset("data=streaming")
        self.save_hyperparameters(logger=False)
        if not root:
            raise ConfigError("data.root is required for data=streaming: data.root=SHARDS")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1 (got {batch_size!r})")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"data.num_workers must be 0 or more (got {num_workers!r})")
        self.root = str(Path(root).expanduser().resolve())
        self.index = fmt.read_index(self.root)
        for key, value in (("image_size", image_size), ("channels", channels)):
            if value is not None and value != self.index[key]:
                raise ConfigError(
                    f"data.{key}={value}, but the shards in {self.root} hold images with "
                    f"{key} {self.index[key]}; pass data.{key}={self.index[key]} (or write "
                    f"the shards again with prepare-data data.{key}={value})"
                )
        self.dataset = dataset
        self.image_size = int(self.index["image_size"])
        self.channels = int(self.index["channels"])
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.seed = 0 if seed is None else seed
        self.pin_memory = pin_memory
        self.binarize = binarize
        self.class_names: list[str] = list(self.index["class_names"])
        self.classes = list(classes) if classes is not None else None
        self.keep = (
            None
            if classes is None
            else set(class_indices(classes, self.class_names, source="data.classes"))
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is None:
            # Only genlab's checkpoint commands set a data module up without a trainer.
            raise ConfigError(
                f"this checkpoint was trained from streamed shards ({self.root}), which hold "
                "no split in memory; the checkpoint commands read whole splits: name the "
                "images on the command line, e.g. data=folder data.root=IMAGES "
                f"data.image_size={self.image_size} data.channels={self.channels}"
            )

    def stream(self, split: str, *, train: bool, rank: int = 0, world_size: int = 1) -> ShardStream:
        """One split as a ShardStream for ``rank`` of ``world_size``."""
        if split not in self.index["splits"]:
            raise DataError(f"the shards in {self.root} have no {split!r} split")
        return ShardStream(
            self.root,
            self.index,
            split,
            batch_size=self.batch_size,
            train=train,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            num_workers=self.num_workers,
            shuffle_buffer=self.shuffle_buffer,
            keep=self.keep,
        )

    def _loader(self, split: str, *, train: bool) -> EpochLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        stream = self.stream(split, train=train, rank=rank, world_size=world)
        if train and len(stream) == 0:
            raise DataError(
                f"the {len(stream.shards)} train shards in {self.root} cannot give each of the "
                f"{world} ranks ({self.num_workers} workers each) a full batch of "
                f"{self.batch_size}: write smaller shards (prepare-data shard_size=N), or "
                "lower data.batch_size or data.num_workers"
            )
        return EpochLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            epoch_of=(lambda: trainer.current_epoch) if train and trainer else None,
        )

    def train_dataloader(self) -> EpochLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> EpochLoader:
        return self._loader("val", train=False)

    def test_split(self) -> str:
        return "test" if "test" in self.index["splits"] else "val"

    def test_dataloader(self) -> EpochLoader:
        return self._loader(self.test_split(), train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
            if self.binarize:
                images = torch.bernoulli(images)
        return images, labels

    def fixed_images(self, split: str = "val", n: int = 16) -> Tensor:
        """The first ``n`` images of a split, floats in [0, 1]: the fixed batch whose image
        grids are drawn every validation epoch (read from the first shards only)."""
        stream = self.stream(split, train=False)
        stream.batch_size = max(1, n)
        images, _ = next(iter(stream))
        return images.float().div_(255.0)
