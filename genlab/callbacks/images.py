"""Every validation epoch: a genlab model's image grids (``model.image_grids`` of a fixed
validation batch: reconstructions, samples, ...) to TensorBoard and as PNGs in the run
directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from genlab.data.protocols import FixedImages, PairedBatches, SplitImages
from genlab.models.base import GenlabModule
from genlab.viz import rows_grid, save_png


class ImageGridCallback(pl.Callback):
    def __init__(
        self,
        *,
        num_images: int = 16,
        directory: str | None = None,
        tag: str = "val/reconstructions",
    ) -> None:
        self.num_images = num_images
        self.directory = Path(directory) if directory else None
        self.tag = tag
        self._batch: torch.Tensor | None = None

    def _fixed_batch(self, trainer: pl.Trainer) -> Any:
        """The first validation images: a tensor, or for translation data (PairedBatches)
        the (a, b) pairs the translation models draw their rows from."""
        if self._batch is None:
            datamodule = trainer.datamodule
            if isinstance(datamodule, FixedImages):
                # Streamed data (data=streaming) holds no split: a few images it reads.
                self._batch = datamodule.fixed_images("val", self.num_images)
                return self._batch
            if not isinstance(datamodule, SplitImages) or "val" not in datamodule.splits:
                return None
            if isinstance(datamodule, PairedBatches):
                self._batch = tuple(datamodule.fixed_batch("val", self.num_images))
            else:
                val = datamodule.splits["val"]
                self._batch, _ = val[torch.arange(min(self.num_images, len(val)))]
        return self._batch

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(pl_module, GenlabModule):
            return
        batch = self._fixed_batch(trainer)
        if batch is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        if isinstance(batch, tuple):
            batch = tuple(t.to(pl_module.device) for t in batch)
        else:
            batch = batch.to(pl_module.device)
        grids = pl_module.image_grids(batch)
        pl_module.train(was_training)
        for tag, rows in grids.items():
            grid = rows_grid([r.float().cpu() for r in rows])
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(tag, grid, global_step=trainer.global_step)
            if self.directory is not None:
                name = f"{tag.replace('/', '_')}_epoch{trainer.current_epoch:03d}.png"
                save_png(grid, self.directory / name)
