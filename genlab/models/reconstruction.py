"""What every reconstruction model shares: an injected encoder and decoder, encode / decode /
reconstruct, the per-image reconstruction error (also the anomaly score), and the Lightning
steps that log each named loss term."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.base import GenlabModule, OptimizerFactory
from genlab.models.capabilities import Decodes, Encodes, Reconstructs, ScoresAnomalies
from genlab.nn.activations import activation
from genlab.nn.losses import check_reconstruction_loss, reconstruction_error


class ReconstructionModel(GenlabModule, Encodes, Decodes, Reconstructs, ScoresAnomalies):
    """Base class of the autoencoder family.

    ``encoder`` maps images [B, C, H, W] to codes [B, latent_dim] and ``decoder`` maps codes
    to pre-activation images (logits) [B, C, H, W]; both are built elsewhere (a config node
    with its own ``_target_``, or Python) and handed in. In their ``__init__`` subclasses
    call ``set_latent_dim`` and ``use_reconstruction_loss``; they may extend ``loss_terms``
    with regularisers. ``loss_terms`` returns a dict whose ``loss`` entry is optimised; every
    entry is logged as ``stage/name``.

    Only arguments that every subclass takes too belong in this ``__init__``: the base
    records the arguments of the whole constructor chain as the model's hyperparameters, and
    a checkpoint rebuilds the model by passing them all to the subclass.
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder: nn.Module,
        in_channels: int,
        image_size: int,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.image_shape = (in_channels, image_size, image_size)
        self.optimizer_factory = optimizer

    def set_latent_dim(self, latent_dim: int) -> None:
        """Set ``latent_dim``, refusing a network that states another code size: the mismatch
        would otherwise surface as a shape error at the first batch."""
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be at least 1 (got {latent_dim})")
        for name in ("encoder", "decoder"):
            size = getattr(getattr(self, name), "latent_dim", latent_dim)
            if size != latent_dim:
                raise ConfigError(
                    f"model.{name} makes codes of {size} units but model.latent_dim={latent_dim};"
                    f" give the {name} node latent_dim: ${{..latent_dim}}"
                )
        self.latent_dim = latent_dim

    def use_reconstruction_loss(self, loss: str, output_activation: str) -> None:
        """The pixel activation of ``decode`` and the error ``reconstruction_terms`` measures
        (genlab.nn.losses)."""
        check_reconstruction_loss(loss, output_activation)
        self.loss_name = loss
        self.output = activation(output_activation)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)

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
    def score_and_reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``score(x)`` and ``reconstruct(x)`` from one encode and decode where they share
        them (every autoencoder here); a subclass that changes either (a VAE scores with a
        sampled code and reconstructs from the mean) gets the two calls."""
        shared = all(
            getattr(type(self), name) is getattr(ReconstructionModel, name)
            for name in ("score", "reconstruct", "reconstruction_terms", "encode", "decode")
        )
        if not shared:
            return self.score(x), self.reconstruct(x)
        logits = self.decode_logits(self.encode(x))
        images = self.output(logits)
        return reconstruction_error(logits, x, loss=self.loss_name, output=images), images

    @torch.no_grad()
    def image_rows(self, x: Tensor) -> list[Tensor]:
        """Rows of the training image grid: inputs, then reconstructions."""
        return [x, self.reconstruct(x)]

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        return {"val/reconstructions": self.image_rows(x)}

    def step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, _ = batch
        terms = self.loss_terms(x)
        self.log_terms(terms, stage, batch_size=x.shape[0])
        return terms["loss"]
