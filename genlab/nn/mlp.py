"""Fully connected encoder and decoder, with optional tied weights (W' = Wᵀ)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nn.activations import activation


class MLPEncoder(nn.Module):
    """x [B, D] -> h [B, latent]: hidden layers, then the code layer."""

    def __init__(
        self,
        *,
        in_features: int,
        hidden_dims: Sequence[int],
        latent_dim: int,
        hidden_activation: str,
        latent_activation: str,
    ) -> None:
        super().__init__()
        dims = [in_features, *hidden_dims, latent_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.activations = nn.ModuleList(
            [activation(hidden_activation) for _ in hidden_dims] + [activation(latent_activation)]
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer, act in zip(self.layers, self.activations, strict=True):
            x = act(layer(x))
        return x


class MLPDecoder(nn.Module):
    """h [B, latent] -> logits [B, D], mirroring an encoder's hidden sizes.

    With ``tied_to`` the decoder owns only biases and uses the transposed weights of the
    encoder's layers, in reverse order.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        hidden_dims: Sequence[int],
        out_features: int,
        hidden_activation: str,
        tied_to: MLPEncoder | None = None,
    ) -> None:
        super().__init__()
        dims = [latent_dim, *reversed(list(hidden_dims)), out_features]
        self.activations = nn.ModuleList(activation(hidden_activation) for _ in hidden_dims)
        # A plain attribute list, not a ModuleList: the encoder owns (and saves) these weights.
        self._tied = list(reversed(tied_to.layers)) if tied_to is not None else None
        if self._tied is None:
            self.layers = nn.ModuleList(
                nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False)
            )
        else:
            self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in dims[1:])

    def _linear(self, i: int, h: Tensor) -> Tensor:
        if self._tied is None:
            return self.layers[i](h)
        return F.linear(h, self._tied[i].weight.t(), self.biases[i])

    def forward(self, h: Tensor) -> Tensor:
        for i, act in enumerate(self.activations):
            h = act(self._linear(i, h))
        return self._linear(len(self.activations), h)
