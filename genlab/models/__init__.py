"""LightningModules, one family a file. `MODEL_CLASSES` maps a config's `_target_` to its class."""

from genlab.models.autoencoders import (
    Autoencoder,
    ContractiveAutoencoder,
    ConvAutoencoder,
    DenoisingAutoencoder,
    SparseAutoencoder,
)
from genlab.models.base import ReconstructionModel
from genlab.models.vae import ConvVariationalAutoencoder, VariationalAutoencoder

# Every class a checkpoint may name: checkpoints are rebuilt through this table only.
MODEL_CLASSES: dict[str, type[ReconstructionModel]] = {
    f"genlab.models.{cls.__name__}": cls
    for cls in (
        Autoencoder,
        ContractiveAutoencoder,
        ConvAutoencoder,
        DenoisingAutoencoder,
        SparseAutoencoder,
    )
}

__all__ = [
    "MODEL_CLASSES",
    "Autoencoder",
    "ContractiveAutoencoder",
    "ConvAutoencoder",
    "ConvVariationalAutoencoder",
    "DenoisingAutoencoder",
    "ReconstructionModel",
    "SparseAutoencoder",
    "VariationalAutoencoder",
]
