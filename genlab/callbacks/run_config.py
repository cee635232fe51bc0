"""Store the run's whole resolved config in every checkpoint, so that the checkpoint
commands rebuild the model and its data without the user repeating any override."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from genlab.models.base import CONFIG_KEY


class RunConfig(pl.Callback):
    """``config`` is a plain dict (``OmegaConf.to_container(cfg, resolve=True)``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
