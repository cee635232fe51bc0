"""A VAE's ELBO and its importance-weighted log-likelihood bound (Burda et al. 2016), in nats
per image.

With z₁..z_k drawn from q(z|x) and weights w_i = p(x, z_i) / q(z_i|x),

    log p(x) ≥ log (1/k) Σ_i w_i ≥ ELBO,

the middle bound tightening towards log p(x) as k grows (k = 1 is the ELBO in
expectation). Papers report −log p(x) from this bound with k in the thousands.

For a one-layer VAE (q(z|x) one Gaussian, p(z) = N(0, I)) the weights are built here from
the model's encoder distribution and decoder likelihood. A model with more stochastic layers
declares ``ImportanceWeighted`` and computes its own weights; its ELBO is then the mean of
the k log-weights, a Monte Carlo estimate where the one-layer ELBO has the exact KL.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.errors import ConfigError
from genlab.models.capabilities import ImportanceWeighted, Variational, require

_LOG_2PI = math.log(2 * math.pi)


def check_variational(model: torch.nn.Module) -> None:
    require(
        model,
        Variational,
        to="be given an ELBO or likelihood: that needs an encoder distribution q(z|x) and a "
        "decoder likelihood p(x|z) (model=vae, conv_vae, iwae or iwae2)",
    )


def _standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z.square() + _LOG_2PI).sum(dim=-1)


def likelihood_bounds(
    model: torch.nn.Module,
    x: Tensor,
    *,
    k: int,
    generator: torch.Generator | None = None,
    max_decodes: int = 4096,
) -> tuple[Tensor, Tensor]:
    """ELBO [B] and importance-weighted bound [B] on log p(x), in nats, for images
    [B, C, H, W], from the same k draws of z per image; ``model`` in eval mode.

    The ELBO uses the exact KL and the Monte-Carlo mean of log p(x|z) over the draws. The
    draws are decoded in batches of at most ``max_decodes`` images (whole images times
    draws) to bound memory.

    An ``ImportanceWeighted`` model gives its own log-weights, asked for ``max_decodes // B``
    draws at a time from the same generator; its ELBO is the mean of its k log-weights (a
    Monte Carlo ELBO: there is no closed-form KL to use).
    """
    check_variational(model)
    if k < 1:
        raise ConfigError(f"k, the importance samples per image, must be at least 1 (got {k})")
    if isinstance(model, ImportanceWeighted):
        return _bounds_from_own_weights(model, x, k=k, generator=generator, max_decodes=max_decodes)
    from genlab.models.vae import kl_divergence

    batch = x.shape[0]
    with torch.inference_mode():
        mu, logvar = model.encode_distribution(x)
        std = (0.5 * logvar).exp()
        # log q(z|x) of z = mu + std * eps, without the eps-dependent part.
        log_q_norm = -0.5 * (logvar + _LOG_2PI).sum(dim=-1)
        per_round = max(1, max_decodes // batch)
        # Noise drawn where the generator lives, so a seed gives the same draws on any device.
        source = generator.device if generator is not None else mu.device
        log_weights, log_px_z = [], []
        for start in range(0, k, per_round):
            draws = min(per_round, k - start)
            eps = torch.randn(
                (draws, *mu.shape), generator=generator, device=source, dtype=mu.dtype
            ).to(mu.device)
            z = mu + std * eps
            logits = model.decode_logits(z.flatten(0, 1))
            targets = x.expand(draws, *x.shape).flatten(0, 1)
            log_lik = -model.reconstruction_nll(logits, targets).view(draws, batch)
            log_q = log_q_norm - 0.5 * eps.square().sum(dim=-1)
            log_weights.append(log_lik + _standard_normal_log_density(z) - log_q)
            log_px_z.append(log_lik)
        log_weights = torch.cat(log_weights)
        iw_bound = torch.logsumexp(log_weights, dim=0) - math.log(k)
        elbo = torch.cat(log_px_z).mean(dim=0) - kl_divergence(mu, logvar)
    return elbo, iw_bound


def _bounds_from_own_weights(
    model: ImportanceWeighted,
    x: Tensor,
    *,
    k: int,
    generator: torch.Generator | None,
    max_decodes: int,
) -> tuple[Tensor, Tensor]:
    """``likelihood_bounds`` of a model that computes its own log-weights: the mean of the k
    log-weights [B] and their importance-weighted bound [B]."""
    per_round = max(1, max_decodes // x.shape[0])
    with torch.inference_mode():
        log_weights = torch.cat(
            [
                model.log_weights(x, k=min(per_round, k - start), generator=generator)
                for start in range(0, k, per_round)
            ]
        )
    return log_weights.mean(dim=0), torch.logsumexp(log_weights, dim=0) - math.log(k)
