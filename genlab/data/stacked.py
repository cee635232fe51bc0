"""Stacked MNIST (``data=stacked_mnist``): the 1000-mode dataset on which VEEGAN
(Srivastava et al. 2017) and PacGAN (Lin et al. 2018) measure mode collapse.

Each image's three channels are three MNIST digits drawn independently and uniformly, with
replacement, from a split's digits; its label is the mode 100a + 10b + c, a being the digit
in channel 0, and its class name the three digits ("000" to "999"). The draws depend on
``data.seed`` alone, so every run with the same seed sees the same images.

The splits follow MNIST's: the training digits are split into training and validation
digits exactly as ``data=mnist`` splits them with the same seed and ``val_fraction``, and
each split's stacks are drawn from its own digits (the test stacks from MNIST's test
digits), so no digit image is shared between splits. Sizes: ``stacked_size`` training
images (128,000 by default: the PacGAN authors' Stacked MNIST training set, drawn there from
all 70,000 MNIST digits), ``round(val_fraction · stacked_size)`` validation images and
``stacked_test_size`` test images (10,000, MNIST's test size).

Memory: a stack is 3 x 28 x 28 bytes = 2,352 B as uint8, so the default splits hold 301 MB
(training), 30 MB (validation) and 24 MB (test), about 355 MB, besides the 55 MB of MNIST
digits read to draw them; at ``image_size: 32`` (3,072 B an image) 464 MB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genlab.data.datamodule import ImageDataModule
from genlab.data.readers import MNIST_CLASSES, ImageSet, load_idx_dataset
from genlab.errors import ConfigError

# The digits stacked into one image, one per channel.
CHANNELS = 3
# Class names: the three digits of a mode, channel 0 first.
STACKED_CLASSES = [f"{mode:03d}" for mode in range(len(MNIST_CLASSES) ** CHANNELS)]
# The PacGAN authors' training set size.
DEFAULT_SIZE = 128_000


def stack_digits(digits: ImageSet, *, count: int, rng: np.random.Generator) -> ImageSet:
    """``count`` images [count, 3, H, W] whose channels are digits of ``digits`` (uint8
    [N, 1, H, W] with labels 0-9) drawn independently and uniformly with replacement, each
    labelled with its mode 100a + 10b + c (a: channel 0's digit)."""
    n, _, height, width = digits.images.shape
    picks = rng.integers(0, n, size=(count, CHANNELS))
    images = digits.images[picks.reshape(-1), 0].reshape(count, CHANNELS, height, width)
    base = len(MNIST_CLASSES)
    modes = (digits.labels[picks] * base ** np.arange(CHANNELS - 1, -1, -1)).sum(axis=1)
    return ImageSet(images, modes.astype(np.int64), list(STACKED_CLASSES))


def _count(value: object, key: str, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"data.{key}, the stacked images drawn for a split, must be a positive integer "
            f"(got {value!r}); e.g. data.{key}={example}"
        )
    return value


class StackedMNISTDataModule(ImageDataModule):
    """MNIST digits stacked three to an image (see the module's docstring); everything else
    (``classes`` by index or name such as "370", ``image_size`` 32 by resizing, batching,
    resume) works as in ``ImageDataModule``. ``root`` is the MNIST folder, as for
    ``data=mnist``; ``channels`` is 3 by construction."""

    def __init__(
        self,
        *,
        root: str | None = None,
        download: bool = False,
        mirrors: Sequence[str] | None = None,
        stacked_size: int = DEFAULT_SIZE,
        stacked_test_size: int = 10_000,
        image_size: int = 28,
        channels: int = CHANNELS,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        classes: Sequence[int | str] | None = None,
        seed: int | None = 0,
        pin_memory: bool = False,
        binarize: bool = False,
    ) -> None:
        if channels != CHANNELS:
            raise ConfigError(
                f"data.channels of stacked_mnist is {CHANNELS}, one digit per channel (got "
                f"{channels}); leave it out"
            )
        if not root:
            raise ConfigError(
                "data.root is required for stacked_mnist: the folder of the MNIST IDX files, "
                "as for data=mnist (data.root=DIR)"
            )
        self.stacked_size = _count(stacked_size, "stacked_size", DEFAULT_SIZE)
        self.stacked_test_size = _count(stacked_test_size, "stacked_test_size", 10_000)
        super().__init__(
            dataset="mnist",
            root=root,
            download=download,
            mirrors=mirrors,
            image_size=image_size,
            channels=CHANNELS,
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            classes=classes,
            seed=seed,
            pin_memory=pin_memory,
            binarize=binarize,
        )
        # The base records every __init__'s arguments of the class chain; this class takes
        # no dataset, so a model trained from Python rebuilds it without one.
        self.remove_ignored_hparams(["dataset"])
        # The name messages give; the digits are read by ``_digits``.
        self.dataset = "stacked_mnist"

    def _digits(self, *, download: bool) -> dict[str, ImageSet]:
        return load_idx_dataset(
            self.root_path(), flavour="mnist", download=download, mirrors=self.mirrors
        )

    def prepare_data(self) -> None:
        if self.download:
            self._digits(download=True)

    def load(self) -> dict[str, ImageSet]:
        """Stacks of the training, validation and test digits, each split from its own."""
        mnist = self._digits(download=False)
        train = mnist["train"]
        order = self.validation_order(len(train.labels)).numpy()
        n_val = max(1, int(round(len(order) * self.val_fraction)))
        sources = {
            "train": _subset(train, order[n_val:]),
            "val": _subset(train, order[:n_val]),
            "test": mnist["test"],
        }
        counts = {
            "train": self.stacked_size,
            "val": max(1, int(round(self.stacked_size * self.val_fraction))),
            "test": self.stacked_test_size,
        }
        # One independent stream per split, so a split's images do not depend on the
        # other splits' sizes.
        root = self.seed % (1 << 64)
        return {
            name: stack_digits(
                sources[name], count=counts[name], rng=np.random.default_rng([root, index])
            )
            for index, name in enumerate(("train", "val", "test"))
        }


def _subset(images: ImageSet, indices: np.ndarray) -> ImageSet:
    return ImageSet(images.images[indices], images.labels[indices], images.classes)
