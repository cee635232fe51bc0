"""Reconstruction errors and regularisers, each per image so they serve as anomaly scores.

Reconstruction errors are summed over pixels (one number per image, as in the lecture's
J = Σ ‖x̂ − x‖²); the training loss is their mean over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import ConfigError

RECONSTRUCTION_LOSSES = ("mse", "bce")


def check_reconstruction_loss(loss: str, output_activation: str) -> None:
    if loss not in RECONSTRUCTION_LOSSES:
        raise ConfigError(f"model.loss={loss!r} is not one of {', '.join(RECONSTRUCTION_LOSSES)}")
    if loss == "bce" and output_activation != "sigmoid":
        raise ConfigError(
            "model.loss=bce treats the decoder output as pixel probabilities, so it needs "
            f"model.output_activation=sigmoid (got {output_activation!r}); or use model.loss=mse"
        )


def reconstruction_error(logits: Tensor, target: Tensor, *, loss: str, output: Tensor) -> Tensor:
    """Per-image error [B] between a decoder's output and the target images [B, C, H, W].

    ``logits`` is the decoder's pre-activation and ``output`` its image; cross-entropy is
    computed from the logits for numerical stability, squared error from the image.
    """
    if loss == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    else:
        per_pixel = (output - target).square()
    return per_pixel.flatten(1).sum(dim=1)


def kl_sparsity_penalty(mean_activation: Tensor, rho: float, eps: float = 1e-6) -> Tensor:
    """Σ_j KL(ρ ‖ ρ̂_j) between Bernoulli(ρ) and Bernoulli(ρ̂_j), ρ̂ the mean unit activations."""
    rho_hat = mean_activation.clamp(eps, 1 - eps)
    kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
    return kl.sum()
