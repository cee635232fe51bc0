"""Latent-space tools shared by the commands: draws from N(0, I), truncated or not, paths
between codes, a Gaussian fitted to an autoencoder's codes (it has no prior of its own), the
2-D manifold grid, and PCA.

Truncation (the "truncation trick" of BigGAN, Brock et al. 2019): each entry of z ~ N(0, I)
whose magnitude exceeds the threshold T is drawn again until every entry lies in [−T, T].
Smaller T keeps G to the dense middle of its prior: each image looks better and the set
varies less. The draws come from the given generator (on its device, then moved), so a
seeded generator gives the same truncated codes on a CPU and a GPU. A model whose prior is
not N(0, I) applies it to its standardised draw (``GaussianCodeModel``: to ε of
mean + ε·Lᵀ).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from genlab.errors import ConfigError

METHODS = ("linear", "slerp")


def check_truncation(truncation: object) -> None:
    """A truncation threshold is a positive number (or None, for none)."""
    if truncation is None:
        return
    if (
        isinstance(truncation, bool)
        or not isinstance(truncation, int | float)
        or not truncation > 0
    ):
        raise ConfigError(
            f"truncation, the threshold |z_i| <= T of the prior's draws, must be a positive "
            f"number or null for none (got {truncation!r}); e.g. truncation=0.5"
        )


def gaussian_draws(
    shape: Sequence[int],
    *,
    truncation: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """N(0, I) draws of ``shape`` on ``device``, made where ``generator`` lives; with a
    ``truncation`` T every entry outside [−T, T] is drawn again until none is.

    (Each round redraws only what is still outside, a share 2·Φ(−T) of the round before:
    the draws total about N / (1 − 2·Φ(−T)), 1.5 N for T = 1, 125 N for T = 0.01.)"""
    check_truncation(truncation)
    source = generator.device if generator is not None else device
    z = torch.randn(tuple(shape), generator=generator, device=source, dtype=dtype)
    if truncation is not None:
        flat = z.view(-1)
        # The entries still outside, in order; each round touches only those.
        outside = (flat.abs() > truncation).nonzero().squeeze(1)
        while outside.numel():
            redrawn = torch.randn(outside.numel(), generator=generator, device=source, dtype=dtype)
            flat[outside] = redrawn
            outside = outside[redrawn.abs() > truncation]
    return z.to(device)


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
        self,
        n: int,
        *,
        temperature: float = 1.0,
        truncation: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n codes [n, D]: mean + temperature·ε·Lᵀ with ε ~ N(0, I), truncated at
        ±``truncation`` when given (in the standardised coordinates ε)."""
        eps = gaussian_draws(
            (n, self.mean.shape[0]), truncation=truncation, generator=generator, dtype=torch.float64
        )
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
