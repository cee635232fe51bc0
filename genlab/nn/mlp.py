"""Fully connected encoder and decoder of images; the decoder can take the encoder's weights
transposed (tied weights, W' = Wᵀ)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.nn.activations import activation
from genlab.nn.network import Network


class MLPEncoder(Network):
    """Images [B, C, S, S] (or flattened, [B, C·S·S]) -> codes [B, latent_dim]: the hidden
    layers ``hidden_dims``, then the code layer; each a linear layer and its activation."""

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        latent_dim: int,
        hidden_dims: Sequence[int] = (),
        hidden_activation: str = "relu",
        latent_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        dims = [in_channels * image_size * image_size, *hidden_dims, latent_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.activations = nn.ModuleList(
            [activation(hidden_activation) for _ in hidden_dims] + [activation(latent_activation)]
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for layer, act in zip(self.layers, self.activations, strict=True):
            x = act(layer(x))
        return x


class MLPDecoder(Network):
    """Codes [B, latent_dim] -> logits [B, C, S, S], the mirror of an ``MLPEncoder``:
    ``hidden_dims`` are given in the encoder's order (from the image to the code) and
    applied in reverse, so one config value describes both networks.

    ``tie_to(encoder)`` (called by the model when tied weights are asked for) drops the
    decoder's own weight matrices: it then keeps only biases and uses the transposed weights
    of the encoder's layers, in reverse order.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        out_channels: int,
        image_size: int,
        hidden_dims: Sequence[int] = (),
        hidden_activation: str = "relu",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.out_shape = (out_channels, image_size, image_size)
        dims = [latent_dim, *reversed(list(hidden_dims)), out_channels * image_size * image_size]
        self.activations = nn.ModuleList(activation(hidden_activation) for _ in hidden_dims)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        # The encoder's layers once tied: a plain list, not a ModuleList, because the encoder
        # owns (and saves) those weights.
        self._tied: list[nn.Linear] | None = None

    def tie_to(self, encoder: nn.Module) -> None:
        """From now on use ``encoder``'s weights transposed; the biases start at zero."""
        mirror = list(reversed(getattr(encoder, "layers", [])))
        wanted = [tuple(layer.weight.shape[::-1]) for layer in self.layers]
        found = [tuple(getattr(layer, "weight", torch.empty(0)).shape) for layer in mirror]
        if found != wanted:
            raise ConfigError(
                "model.tied_weights=true needs the decoder to mirror the encoder layer for "
                f"layer (encoder weights {found}, decoder weights, transposed, {wanted}); give "
                "both the same hidden_dims and latent_dim, or set model.tied_weights=false"
            )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(layer.out_features)) for layer in self.layers
        )
        del self.layers
        self._tied = mirror

    def _linear(self, i: int, h: Tensor) -> Tensor:
        if self._tied is None:
            return self.layers[i](h)
        return F.linear(h, self._tied[i].weight.t(), self.biases[i])

    def forward(self, h: Tensor) -> Tensor:
        for i, act in enumerate(self.activations):
            h = act(self._linear(i, h))
        return self._linear(len(self.activations), h).unflatten(1, self.out_shape)
