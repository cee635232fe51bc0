"""Dataset readers and the one LightningDataModule every dataset goes through."""

from genlab.data.datamodule import ImageDataModule
from genlab.data.streaming import StreamingDataModule
from genlab.data.translation import TranslationDataModule

__all__ = ["ImageDataModule", "StreamingDataModule", "TranslationDataModule"]
