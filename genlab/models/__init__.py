"""LightningModules, one family a file. `MODELS` maps a config's name to its class."""

from genlab.models.autoencoders import (
    Autoencoder,
    ContractiveAutoencoder,
    ConvAutoencoder,
    DenoisingAutoencoder,
    SparseAutoencoder,
)
from genlab.models.base import ReconstructionModel

__all__ = [
    "Autoencoder",
    "ContractiveAutoencoder",
    "ConvAutoencoder",
    "DenoisingAutoencoder",
    "ReconstructionModel",
    "SparseAutoencoder",
]
