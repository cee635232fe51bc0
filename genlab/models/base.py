"""What every reconstruction model shares: the encode/decode interface, the Lightning steps
that log each named loss term, the optimizer built from the config, and the run config
stored in each checkpoint so later commands can rebuild the model without overrides."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from genlab.errors import ConfigError
from genlab.nn.activations import activation
from genlab.nn.losses import check_reconstruction_loss, reconstruction_error

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class ReconstructionModel(pl.LightningModule):
    """Base class of the autoencoder family.

    Subclasses build their networks and implement ``encode`` (images [B, C, H, W] -> codes
    [B, latent]) and ``decode_logits`` (codes -> pre-activation images); they may extend
    ``loss_terms`` with regularisers. ``loss_terms`` returns a dict whose ``loss`` entry is
    optimised; every entry is logged as ``stage/name``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        loss: str,
        output_activation: str,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__()
        check_reconstruction_loss(loss, output_activation)
        # The optimizer is a factory from the config, not data: keep it out of checkpoints.
        self.save_hyperparameters(ignore=["optimizer"])
        self.image_shape = (in_channels, image_size, image_size)
        self.loss_name = loss
        self.output = activation(output_activation)
        self.optimizer_factory = optimizer
        self.run_config: dict[str, Any] | None = None

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def decode_logits(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Codes [B, latent] -> images [B, C, H, W]."""
        return self.output(self.decode_logits(z))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)

    def reconstruction_terms(self, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Encode ``inputs`` and compare the decoding with ``targets``; per-image ``recon``."""
        code = self.encode(inputs)
        logits = self.decode_logits(code)
        recon = reconstruction_error(
            logits, targets, loss=self.loss_name, output=self.output(logits)
        )
        return {"code": code, "recon": recon}

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        recon = self.reconstruction_terms(x, x)["recon"].mean()
        return {"loss": recon, "recon": recon}

    @torch.no_grad()
    def score(self, x: Tensor) -> Tensor:
        """Per-image reconstruction error [B]: the anomaly score."""
        return self.reconstruction_terms(x, x)["recon"]

    @torch.no_grad()
    def image_rows(self, x: Tensor) -> list[Tensor]:
        """Rows of the training image grid: inputs, then reconstructions."""
        return [x, self.reconstruct(x)]

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        """The grids logged every validation epoch, by tag; each a list of equally long
        image rows [n, C, H, W] in [0, 1]. ``x`` is a fixed validation batch."""
        return {"val/reconstructions": self.image_rows(x)}

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, _ = batch
        terms = self.loss_terms(x)
        sync = stage != "train"
        for name, value in terms.items():
            self.log(
                f"{stage}/{name}",
                value.detach(),
                batch_size=x.shape[0],
                prog_bar=name == "loss",
                sync_dist=sync,
            )
        return terms["loss"]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            raise ConfigError(
                "the model has no optimizer; pass one (e.g. optimizer=adam) or build the model "
                "with optimizer=functools.partial(torch.optim.Adam, lr=1e-3)"
            )
        return self.optimizer_factory(params=self.trainable_parameters())

    def trainable_parameters(self) -> Iterable[torch.nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain dicts, lists and scalars only, so checkpoints load with weights_only=True.
        if self.run_config is not None:
            checkpoint["genlab_config"] = self.run_config
