"""What the checkpoint commands need of a data module: named splits of images they can
index, and the class names. genlab's ImageDataModule provides both; a user's own
LightningDataModule that does can be scored, sampled against and embedded the same way."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class NamesClasses(Protocol):
    """``class_names``: one name per label (enough for a classifier to check its size)."""

    class_names: list


@runtime_checkable
class SplitImages(NamesClasses, Protocol):
    """``splits``: split name -> dataset indexable by a tensor of indices, returning
    (images [k, C, H, W] in [0, 1], labels [k]), with ``labels`` and ``images`` attributes;
    ``class_names``: one name per label. Both are ready after ``setup("test")``."""

    splits: dict
    class_names: list


@runtime_checkable
class PairedBatches(Protocol):
    """Translation data (genlab.data.TranslationDataModule): batches are (a, b) image
    pairs, and ``fixed_batch(split, n)`` gives the first n pairs of a split, never
    augmented, which the image grids of Pix2Pix and CycleGAN draw their rows from.
    ``paired``: whether b is a's target (Pix2Pix needs it) or an independent draw."""

    paired: bool

    def fixed_batch(self, split: str = "val", n: int = 8) -> tuple: ...


@runtime_checkable
class FixedImages(Protocol):
    """Streamed data (genlab.data.StreamingDataModule) holds no split in memory; it reads
    the first n images of a split for the image grids with ``fixed_images(split, n)``."""

    def fixed_images(self, split: str, n: int) -> Any: ...


@runtime_checkable
class KnowsRightAnswers(Protocol):
    """Translation data whose B of an A image may be known (genlab's embedded tasks):
    ``right_answer(a)`` gives it, or None where it is not known (folders), and `genlab
    evaluate` then scores translations against it."""

    def right_answer(self, a: Any) -> Any: ...
