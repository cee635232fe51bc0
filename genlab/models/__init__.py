"""LightningModules, one family a file.

`MODEL_CLASSES` maps a config's `_target_` to its class: every LightningModule imported here.
Checkpoints are rebuilt through this table only, so a new family needs one import line.
"""

import pytorch_lightning as _pl

from genlab.models.autoencoders import (
    Autoencoder,
    ContractiveAutoencoder,
    ConvAutoencoder,
    DenoisingAutoencoder,
    SparseAutoencoder,
)
from genlab.models.base import ReconstructionModel
from genlab.models.classifier import Classifier
from genlab.models.gans import DCGAN, GAN, SAGAN, WGAN, WGANGP, ConditionalGAN
from genlab.models.vae import ConvVariationalAutoencoder, VariationalAutoencoder

__all__ = [
    "MODEL_CLASSES",
    "Autoencoder",
    "Classifier",
    "ConditionalGAN",
    "ContractiveAutoencoder",
    "ConvAutoencoder",
    "ConvVariationalAutoencoder",
    "DCGAN",
    "DenoisingAutoencoder",
    "GAN",
    "ReconstructionModel",
    "SAGAN",
    "SparseAutoencoder",
    "VariationalAutoencoder",
    "WGAN",
    "WGANGP",
]

MODEL_CLASSES: dict[str, type[_pl.LightningModule]] = {
    f"genlab.models.{name}": obj
    for name, obj in list(globals().items())
    if isinstance(obj, type)
    and issubclass(obj, _pl.LightningModule)
    and obj is not ReconstructionModel
}
