"""Stop at the first NaN or infinite loss, before it reaches the weights.

The check runs before the backward pass, so the parameters and every checkpoint already
written are still the last good ones.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from genlab.errors import NonFiniteLossError


class NonFiniteLossGuard(pl.Callback):
    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        if torch.isfinite(loss).all():
            return
        last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        where = (
            f"The last good checkpoint is {last}."
            if last
            else "No checkpoint had been written yet."
        )
        raise NonFiniteLossError(
            f"the training loss became {loss.item()} at epoch {trainer.current_epoch}, "
            f"step {trainer.global_step}; training stopped before the bad step touched the "
            f"weights. {where} Try a lower learning rate (optimizer.lr; model.optimizer_g.lr "
            "and model.optimizer_d.lr for GANs), gradient clipping (trainer.gradient_clip_val=1.0;"
            " model.grad_clip_norm=1.0 for GANs) or trainer.precision=32-true."
        )
