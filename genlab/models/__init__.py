"""LightningModules: the one base (``GenlabModule``), the capabilities a model declares, and
genlab's model families, one family a module.

A config names its model by ``_target_``; checkpoints are rebuilt the same way, from genlab's
classes or from modules the user trusted (see genlab.trust), never from a closed table.
"""

from genlab.models.autoencoders import (
    Autoencoder,
    ContractiveAutoencoder,
    ConvAutoencoder,
    DenoisingAutoencoder,
    SparseAutoencoder,
)
from genlab.models.base import GenlabModule
from genlab.models.classifier import Classifier
from genlab.models.gans import GAN, WGAN, WGANGP, ConditionalGAN
from genlab.models.iwae import IWAE, TwoLayerIWAE
from genlab.models.reconstruction import ReconstructionModel
from genlab.models.tcvae import BetaTCVAE
from genlab.models.translation import CycleGAN, Pix2Pix
from genlab.models.vae import ConvVariationalAutoencoder, VariationalAutoencoder

__all__ = [
    "GAN",
    "WGAN",
    "WGANGP",
    "IWAE",
    "Autoencoder",
    "BetaTCVAE",
    "Classifier",
    "ConditionalGAN",
    "ContractiveAutoencoder",
    "ConvAutoencoder",
    "ConvVariationalAutoencoder",
    "CycleGAN",
    "DenoisingAutoencoder",
    "GenlabModule",
    "Pix2Pix",
    "ReconstructionModel",
    "SparseAutoencoder",
    "TwoLayerIWAE",
    "VariationalAutoencoder",
]
