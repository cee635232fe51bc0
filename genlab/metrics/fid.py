"""The Fréchet distance between Gaussians fitted to two feature sets (FID, Heusel et al.
2017), in whatever feature space the features come from.

d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.errors import ConfigError


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [F] and unbiased covariance [F, F] of features [N, F], in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ConfigError(
            "a Gaussian fit needs at least two feature vectors [N, F] "
            f"(got shape {tuple(features.shape)})"
        )
    features = features.double()
    mean = features.mean(dim=0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix; rounding can
    leave tiny negative eigenvalues, which are clamped to zero."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """d² between N(mean1, cov1) and N(mean2, cov2).

    Tr (Σ₁Σ₂)^½ is computed as Σ √λ over the eigenvalues λ of Σ₁^½ Σ₂ Σ₁^½, which has the
    same spectrum as Σ₁Σ₂ but is symmetric, so no complex square root can arise.
    """
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mean1 - mean2).square().sum() + cov1.trace() + cov2.trace() - 2 * trace_sqrt
    # Never below zero in exact arithmetic; rounding can take identical sets a hair under.
    return max(float(distance), 0.0)


def fid(features1: Tensor, features2: Tensor) -> float:
    """FID between two feature sets [N₁, F] and [N₂, F]."""
    if features1.shape[1] != features2.shape[1]:
        raise ConfigError(
            f"feature sets of different widths: {features1.shape[1]} and {features2.shape[1]}"
        )
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))
