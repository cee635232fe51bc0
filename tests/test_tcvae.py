"""β-TCVAE: the minibatch-weighted KL decomposition and the weighted objective."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from conftest import mlp_vae

from genlab.errors import ConfigError
from genlab.models.tcvae import BetaTCVAE, gaussian_log_density, kl_decomposition


def tcvae(**options) -> BetaTCVAE:
    return mlp_vae(BetaTCVAE, hidden_dims=[32], latent_dim=3, **options)


def test_the_three_terms_sum_to_the_monte_carlo_kl() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(64, 3), torch.randn(64, 3) * 0.3
    z = mu + (0.5 * logvar).exp() * torch.randn(64, 3)
    parts = kl_decomposition(z, mu, logvar, dataset_size=1000)
    log_q = gaussian_log_density(z, mu, logvar).sum(1)
    log_p = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    assert float(sum(parts.values())) == pytest.approx(float((log_q - log_p).mean()), abs=1e-5)


def test_the_estimator_matches_a_direct_computation() -> None:
    torch.manual_seed(1)
    m, n, d = 5, 50, 2
    mu, logvar = torch.randn(m, d), torch.randn(m, d) * 0.2
    z = mu + (0.5 * logvar).exp() * torch.randn(m, d)
    parts = kl_decomposition(z, mu, logvar, dataset_size=n)

    def log_normal(v: float, m_: float, lv: float) -> float:
        return -0.5 * ((v - m_) ** 2 / math.exp(lv) + lv + math.log(2 * math.pi))

    total_tc = 0.0
    for i in range(m):
        joint = [
            sum(log_normal(z[i, k], mu[j, k], logvar[j, k]) for k in range(d)) for j in range(m)
        ]
        log_qz = math.log(sum(math.exp(v) for v in joint)) - math.log(n * m)
        log_marg = sum(
            math.log(sum(math.exp(log_normal(z[i, k], mu[j, k], logvar[j, k])) for j in range(m)))
            - math.log(n * m)
            for k in range(d)
        )
        total_tc += log_qz - log_marg
    assert float(parts["tc"]) == pytest.approx(total_tc / m, abs=1e-4)


def test_with_unit_weights_the_loss_is_the_negative_elbo_estimate() -> None:
    model = tcvae(beta=1.0, dataset_size=100).eval()
    torch.manual_seed(2)
    terms = model.loss_terms(torch.rand(16, 1, 28, 28))
    assert terms["loss"].item() == pytest.approx(
        float(terms["recon"] + terms["kl_estimate"]), rel=1e-5
    )
    assert {"mi", "tc", "dim_kl", "kl", "elbo"} <= set(terms)


def test_a_step_lowers_the_loss() -> None:
    torch.manual_seed(3)
    model = tcvae(optimizer=functools.partial(torch.optim.Adam, lr=3e-3), dataset_size=64)
    x = (torch.rand(64, 1, 28, 28) > 0.7).float()
    optimizer = model.configure_optimizers()
    before = float(model.loss_terms(x)["loss"])
    for _ in range(20):
        optimizer.zero_grad()
        model.loss_terms(x)["loss"].backward()
        optimizer.step()
    assert float(model.loss_terms(x)["loss"]) < before
    assert "HasPrior" in model.capabilities and "Variational" in model.capabilities


def test_negative_weights_are_refused() -> None:
    with pytest.raises(ConfigError, match="model.alpha"):
        tcvae(alpha=-1.0)
