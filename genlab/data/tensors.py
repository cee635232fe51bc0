"""In-memory image datasets batched by index tensors, with no per-item Python work."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


class TensorImageDataset(Dataset):
    """uint8 images [N, C, H, W] and labels [N]; indexing with a tensor of indices returns a
    whole batch of float images in [0, 1], so batching is one gather and one division.

    With ``binarize=True`` each fetch draws pixels from Bernoulli(intensity): the dynamic
    binarisation under which VAE likelihoods on MNIST are usually reported.
    """

    def __init__(self, images: Tensor, labels: Tensor, *, binarize: bool = False) -> None:
        self.images = images
        self.labels = labels
        self.binarize = binarize

    def __len__(self) -> int:
        return self.images.shape[0]

    def nbytes(self) -> int:
        return self.images.nbytes + self.labels.nbytes

    def to(self, device: torch.device) -> TensorImageDataset:
        """The same images and labels on ``device`` (a batch is then gathered there)."""
        return TensorImageDataset(
            self.images.to(device), self.labels.to(device), binarize=self.binarize
        )

    def gather(self, index: Tensor | int) -> tuple[Tensor, Tensor]:
        """The uint8 images and the labels at ``index``, as stored."""
        if isinstance(index, Tensor) and index.device != self.images.device:
            index = index.to(self.images.device, non_blocking=True)
        return self.images[index], self.labels[index]

    def convert(self, images: Tensor) -> Tensor:
        """uint8 images -> float images in [0, 1] (binarised when ``binarize``)."""
        x = images.float().div_(255.0)
        return torch.bernoulli(x) if self.binarize else x

    def __getitem__(self, index: Tensor | int) -> tuple[Tensor, Tensor]:
        images, labels = self.gather(index)
        return self.convert(images), labels


class StoredImages(Dataset):
    """A TensorImageDataset whose fetches stay uint8 (``gather``): the training data of
    fused steps (genlab.models.fusion), which converts each batch of a chunk just before
    its step, so that its float images are still in the cache when the step reads them and
    a chunk moves to a GPU as a quarter of the bytes."""

    def __init__(self, dataset: TensorImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Tensor | int) -> tuple[Tensor, Tensor]:
        return self.dataset.gather(index)


class IndexBatchSampler(Sampler[Tensor]):
    """Yields one index tensor per batch; shuffled in every epoch by a permutation that
    depends only on (seed, epoch), so a resumed run draws the order the uninterrupted run
    drew. ``skip=(epoch, k)`` leaves out the first k batches of that epoch: the ones a run
    stopped mid-epoch had already trained on.

    Used as a DataLoader's ``sampler`` with ``batch_size=None``. Lightning tells it the
    epoch (``set_epoch``); where it cannot (under DDP Lightning wraps the sampler), each
    pass over it counts as the next epoch. Under DDP each process takes its share.

    ``chunk`` = K > 1 yields the indices of K consecutive batches at once (the last chunk of
    an epoch may hold fewer), for a model that takes K optimizer steps per Lightning
    iteration (``performance.steps_per_execution``): one gather then serves K steps, and the
    batches are exactly those of ``chunk=1``. ``limit`` keeps the first batches of every
    epoch, as ``trainer.limit_train_batches`` does (an int: that many; a float: that share),
    counted in batches whatever the chunk.
    """

    def __init__(
        self,
        size: int,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        skip: tuple[int, int] | None = None,
        chunk: int = 1,
        limit: int | float | None = None,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.skip = skip
        self.chunk = chunk
        self.limit = limit
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def all_batches(self) -> int:
        """The batches of a whole epoch, before ``limit``."""
        if self.drop_last:
            return self.size // self.batch_size
        return -(-self.size // self.batch_size)

    def batches_per_epoch(self) -> int:
        """The batches of an epoch, ``limit`` applied (Lightning's rounding for a float)."""
        batches = self.all_batches()
        if self.limit is None:
            return batches
        if isinstance(self.limit, float):
            return int(batches * self.limit)
        return min(batches, self.limit)

    def __len__(self) -> int:
        return -(-self.batches_per_epoch() // self.chunk)

    def next_epoch(self) -> tuple[int, torch.Generator]:
        """The epoch this pass draws, counted on, and its order's generator, seeded by
        (seed, epoch) alone."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        return epoch, torch.Generator().manual_seed((self.seed * 100_003 + epoch) % (1 << 63))

    def first_batch(self, epoch: int) -> int:
        """The batches of ``epoch`` to leave out: those a resumed run had trained on."""
        if self.skip is not None and self.skip[0] == epoch:
            first, self.skip = self.skip[1], None
            return first
        return 0

    def __iter__(self) -> Iterator[Tensor]:
        epoch, generator = self.next_epoch()
        if self.shuffle:
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        batches = self.batches_per_epoch()
        order = order[: min(batches * self.batch_size, self.size)]
        # Batch i is order[i·B : (i+1)·B], and a chunk of K consecutive batches one slice.
        step = self.batch_size * self.chunk
        yield from order[self.first_batch(epoch) * self.batch_size :].split(step)
