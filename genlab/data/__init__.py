"""Dataset readers and the one LightningDataModule every dataset goes through."""

from genlab.data.datamodule import ImageDataModule

__all__ = ["ImageDataModule"]
