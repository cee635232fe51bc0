"""Latent-space helpers: paths between codes, the fitted Gaussian, the manifold grid, PCA."""

from __future__ import annotations

import pytest
import torch

from genlab.errors import ConfigError
from genlab.latent import GaussianCodeModel, manifold_grid, path_between, pca


def test_linear_path_hits_both_ends_evenly() -> None:
    z0, z1 = torch.zeros(3), torch.tensor([2.0, 4.0, -2.0])
    path = path_between(z0, z1, steps=5)
    assert path.shape == (5, 3)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    torch.testing.assert_close(path[2], z1 / 2)


def test_slerp_follows_the_arc() -> None:
    z0, z1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    path = path_between(z0, z1, steps=3, method="slerp")
    torch.testing.assert_close(path[1], torch.tensor([0.5**0.5, 0.5**0.5]))
    torch.testing.assert_close(path.norm(dim=1), torch.ones(3))
    # Norms are interpolated linearly between different radii.
    scaled = path_between(z0, 3 * z1, steps=3, method="slerp")
    torch.testing.assert_close(scaled.norm(dim=1), torch.tensor([1.0, 2.0, 3.0]))


def test_path_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="method"):
        path_between(torch.zeros(2), torch.ones(2), steps=3, method="cubic")
    with pytest.raises(ConfigError, match="steps"):
        path_between(torch.zeros(2), torch.ones(2), steps=1)


def test_gaussian_code_model_recovers_mean_and_covariance() -> None:
    generator = torch.Generator().manual_seed(0)
    mean = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]])
    codes = mean + torch.randn(20000, 2, generator=generator) @ torch.linalg.cholesky(cov).T
    fitted = GaussianCodeModel(codes)
    draws = fitted.sample(20000, generator=generator)
    torch.testing.assert_close(draws.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), cov, atol=0.06, rtol=0)
    cold = fitted.sample(20000, temperature=0.5, generator=generator)
    torch.testing.assert_close(torch.cov(cold.T), cov / 4, atol=0.03, rtol=0)


def test_manifold_grid_covers_the_square_top_row_first() -> None:
    grid = manifold_grid(5, extent=2.0)
    assert grid.shape == (25, 2)
    torch.testing.assert_close(grid[0], torch.tensor([-2.0, 2.0]))
    torch.testing.assert_close(grid[4], torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(grid[-1], torch.tensor([2.0, -2.0]))


def test_pca_finds_the_long_axis() -> None:
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(1000, 3, generator=generator) * torch.tensor([10.0, 1.0, 0.1])
    points, explained = pca(codes)
    assert points.shape == (1000, 2)
    assert explained[0] > 0.95
    torch.testing.assert_close(
        points[:, 0].abs(), (codes[:, 0] - codes[:, 0].mean()).abs(), atol=0.2, rtol=0.05
    )
