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

    def __getitem__(self, index: Tensor | int) -> tuple[Tensor, Tensor]:
        x = self.images[index].float().div_(255.0)
        return (torch.bernoulli(x) if self.binarize else x), self.labels[index]


class IndexBatchSampler(Sampler[Tensor]):
    """Yields one index tensor per batch; reshuffled every epoch from a seeded generator.

    Used as a DataLoader's ``sampler`` with ``batch_size=None``. Under DDP, Lightning wraps
    it so that each process takes its share of the batches.
    """

    def __init__(
        self, size: int, *, batch_size: int, shuffle: bool, drop_last: bool, seed: int
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.batch_size
        return -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        order = (
            torch.randperm(self.size, generator=self.generator)
            if self.shuffle
            else torch.arange(self.size)
        )
        yield from order[: len(self) * self.batch_size if self.drop_last else None].split(
            self.batch_size
        )
