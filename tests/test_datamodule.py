"""The DataModule: seeded splits, class filters, index-tensor batching, shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genlab.data import ImageDataModule
from genlab.data.tensors import IndexBatchSampler
from genlab.errors import ConfigError


def setup(root: Path, **kwargs) -> ImageDataModule:
    dm = ImageDataModule(dataset="mnist", root=str(root), **kwargs)
    dm.setup("fit")
    return dm


def test_split_sizes_and_seeded_split(tiny_mnist: Path) -> None:
    a = setup(tiny_mnist, val_fraction=0.25, seed=1)
    b = setup(tiny_mnist, val_fraction=0.25, seed=1)
    c = setup(tiny_mnist, val_fraction=0.25, seed=2)
    assert (len(a.splits["train"]), len(a.splits["val"]), len(a.splits["test"])) == (72, 24, 40)
    assert torch.equal(a.splits["val"].images, b.splits["val"].images)
    assert not torch.equal(a.splits["val"].images, c.splits["val"].images)


def test_batches_are_float_images_in_unit_range(tiny_mnist: Path) -> None:
    dm = setup(tiny_mnist, batch_size=32)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28)
    assert x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert y.dtype == torch.int64


def test_one_epoch_visits_each_training_image_once(tiny_mnist: Path) -> None:
    dm = setup(tiny_mnist, batch_size=10, val_fraction=0.2)
    seen = torch.cat([y for _, y in dm.val_dataloader()])
    assert len(seen) == len(dm.splits["val"])
    sampler = IndexBatchSampler(23, batch_size=5, shuffle=True, drop_last=False, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    assert sorted(torch.cat(batches).tolist()) == list(range(23))
    assert [
        len(b) for b in IndexBatchSampler(23, batch_size=5, shuffle=True, drop_last=True, seed=0)
    ] == [5] * 4
    # A new order every epoch.
    assert not torch.equal(torch.cat(list(sampler)), torch.cat(batches))


@pytest.mark.parametrize("classes", [[3, 7], ["3", "7"]])
def test_class_filter_keeps_only_those_labels(tiny_mnist: Path, classes: list) -> None:
    dm = setup(tiny_mnist, classes=classes)
    for split in ("train", "val", "test"):
        assert set(dm.splits[split].labels.unique().tolist()) <= {3, 7}
    assert len(dm.splits["test"]) == 8


def test_resize_and_channels(tiny_mnist: Path) -> None:
    dm = setup(tiny_mnist, image_size=32, channels=3)
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape[1:] == (3, 32, 32)


def test_default_dataset_tests_on_val() -> None:
    dm = ImageDataModule()
    dm.setup("fit")
    assert "test" not in dm.splits
    assert len(dm.splits["train"]) + len(dm.splits["val"]) == 5000
    assert len(dm.test_dataloader().dataset) == 500


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"dataset": "mnist"}, "data.root is required"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"channels": 2}, "data.channels"),
        ({"batch_size": 0}, "data.batch_size"),
    ],
)
def test_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ImageDataModule(**kwargs)


def test_dynamic_binarisation_draws_fresh_binary_pixels(tiny_mnist: Path) -> None:
    dm = setup(tiny_mnist, binarize=True)
    index = torch.arange(8)
    first, _ = dm.splits["train"][index]
    second, _ = dm.splits["train"][index]
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    grey = dm.splits["train"].images[index].float() / 255
    draws = torch.stack([dm.splits["train"][index][0] for _ in range(400)]).mean(0)
    torch.testing.assert_close(draws, grey, atol=0.1, rtol=0)
