"""Encoders of a variational autoencoder: images -> the mean μ and the log-variance log σ² of
q(z|x) = N(μ, diag σ²), each [B, latent_dim]."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from genlab.nn.conv import conv_feature_size, keras_conv_features
from genlab.nn.mlp import MLPEncoder
from genlab.nn.network import Network


class GaussianEncoder(Network):
    """A feature network ``body``, then two linear heads, ``mu`` and ``logvar``, on its
    features. Subclasses build the body and call ``add_heads``."""

    body: nn.Module

    def add_heads(self, features: int, latent_dim: int) -> None:
        self.latent_dim = latent_dim
        self.mu = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class MLPGaussianEncoder(GaussianEncoder):
    """Fully connected: the hidden layers ``hidden_dims`` (linear, then the activation), then
    the heads; with no hidden layers the heads read the flattened pixels."""

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        latent_dim: int,
        hidden_dims: Sequence[int] = (512, 256),
        hidden_activation: str = "relu",
    ) -> None:
        super().__init__()
        hidden = list(hidden_dims)
        if hidden:
            # Every hidden layer; the last one stands where a plain autoencoder has its code.
            self.body = MLPEncoder(
                in_channels=in_channels,
                image_size=image_size,
                hidden_dims=hidden[:-1],
                latent_dim=hidden[-1],
                hidden_activation=hidden_activation,
                latent_activation=hidden_activation,
            )
        else:
            self.body = nn.Flatten()
        self.add_heads(hidden[-1] if hidden else in_channels * image_size**2, latent_dim)


class ConvGaussianEncoder(GaussianEncoder):
    """The Keras encoder's convolutions, flattened (genlab.nn.conv), then the heads in place
    of its dense ReLU code layer.

    That layer is left out on purpose: trained as a VAE, over 80% of its 49 units died
    within three epochs on MNIST, and reconstructions came out as one mean digit.
    """

    def __init__(self, *, in_channels: int, image_size: int, latent_dim: int) -> None:
        super().__init__()
        features = conv_feature_size(image_size)
        self.body = nn.Sequential(*keras_conv_features(in_channels))
        self.add_heads(features, latent_dim)
