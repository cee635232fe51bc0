"""Latent-space tools shared by the commands: paths between codes, a Gaussian fitted to an
autoencoder's codes (it has no prior of its own), the 2-D manifold grid, and PCA."""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.errors import ConfigError

METHODS = ("linear", "slerp")


def path_between(z0: Tensor, z1: Tensor, *, steps: int, method: str = "linear") -> Tensor:
    """``steps`` points from z0 to z1 (both [D]), endpoints included: [steps, D].

    ``slerp`` follows the great circle between the two directions while interpolating the
    norm linearly, which keeps points at the typical radius of a Gaussian prior instead of
    cutting through its low-density centre.
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not one of {', '.join(METHODS)}")
    if steps < 2:
        raise ConfigError(f"steps must be at least 2 (got {steps})")
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device).unsqueeze(1)
    if method == "linear":
        return (1 - t) * z0 + t * z1
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0.clamp_min(1e-12), z1 / n1.clamp_min(1e-12)
    omega = torch.arccos((u0 * u1).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


class GaussianCodeModel:
    """A full-covariance Gaussian fitted to codes [N, D]: the stand-in prior for sampling
    from plain autoencoders."""

    def __init__(self, codes: Tensor, *, jitter: float = 1e-5) -> None:
        if codes.shape[0] < 2:
            raise ConfigError("fitting a Gaussian to the codes needs at least two images")
        codes = codes.double()
        self.mean = codes.mean(0)
        centred = codes - self.mean
        cov = centred.T @ centred / (codes.shape[0] - 1)
        eye = torch.eye(codes.shape[1], dtype=cov.dtype)
        self.scale_tril = torch.linalg.cholesky(cov + jitter * cov.diagonal().mean() * eye)

    def sample(
        self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        eps = torch.randn(n, self.mean.shape[0], generator=generator, dtype=torch.float64)
        return (self.mean + temperature * eps @ self.scale_tril.T).float()


def manifold_grid(side: int, *, extent: float = 2.0) -> Tensor:
    """A side x side grid of 2-D codes over [-extent, extent]², row-major, the first row at
    the top (largest z₂), as in the lecture's manifold figure: [side², 2]."""
    if side < 2:
        raise ConfigError(f"the manifold needs at least 2 points per side (got n={side})")
    values = torch.linspace(-extent, extent, side)
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


def pca(codes: Tensor, dims: int = 2) -> tuple[Tensor, Tensor]:
    """Project codes [N, D] on their first principal axes: (projection [N, dims], the share
    of variance each axis explains [dims])."""
    centred = codes.double() - codes.double().mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    explained = singular.square() / singular.square().sum().clamp_min(1e-12)
    return (centred @ vh[:dims].T).float(), explained[:dims].float()
