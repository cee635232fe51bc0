"""Lightning's progress bar, counting training batches under fused steps."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

from genlab.data.datamodule import InMemoryDataModule


def fused_data(trainer: pl.Trainer) -> InMemoryDataModule | None:
    """The data module when it hands out chunks of batches (performance.steps_per_execution),
    else None."""
    data = trainer.datamodule
    return data if isinstance(data, InMemoryDataModule) and data.chunked else None


class BatchProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` whose training bar counts batches, not Lightning's iterations:
    under fused steps an iteration trains a chunk of them, and the bar would otherwise show
    an epoch of mnist_5k as 3 iterations rather than 35 batches. Without fusion it is
    Lightning's bar as it is."""

    @property
    def total_train_batches(self) -> int | float:
        data = fused_data(self.trainer)
        if data is None:
            return super().total_train_batches
        batches = data.batches_per_epoch()
        trainer = self.trainer
        if trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0:
            return min(batches, trainer.max_steps - trainer.global_step)
        return batches

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        data = fused_data(trainer)
        # The batches of the epoch trained so far, as batch_idx + 1 counts iterations.
        index = batch_idx if data is None else data.trained - 1
        super().on_train_batch_end(trainer, pl_module, outputs, batch, index)
