"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov, "Importance Weighted
Autoencoders", 2016): a VAE's networks trained on a tighter bound.

With k draws z₁..z_k from q(z|x) and log-weights log w_i = log p(x|z_i) + log p(z_i) −
log q(z_i|x), the k-sample bound is

    L_k = log (1/k) Σ_i w_i = logsumexp_i log w_i − log k.

By Jensen's inequality L_k ≥ (1/k) Σ_i log w_i for every set of draws, and its expectation
rises with k towards log p(x); at k = 1 it is the one-draw ELBO estimate. Training follows
the reparameterised gradient of L_k: each draw's gradient weighed by its normalised weight
w_i / Σ_j w_j, so the encoder is no longer pushed to cover the posterior with one Gaussian
at any cost.

The model is ``VariationalAutoencoder`` with that loss: the same encoder, decoder,
likelihoods, prior, ``negative_elbo`` and image grids, so `genlab evaluate` reports its ELBO
and importance-weighted log p(x) bound (genlab.metrics.likelihood, the same estimator with
evaluate's ``k``) and `genlab anomaly` its −ELBO. The k draws of a batch of B images are
decoded as one batch of k·B.

One stochastic layer only. The paper's two-layer model (q(h₁|x) q(h₂|h₁), p(h₂) p(h₁|h₂)
p(x|h₁)) has neither a Gaussian q(z|x) nor an N(0, I) prior over its whole code, which is what
the ``Variational`` interface, and evaluate's bound built on it, assume: it would need that
interface to hand the log-weights to the model first (see the README's VAE section).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from genlab.errors import ConfigError
from genlab.latent import gaussian_draws
from genlab.models.vae import VariationalAutoencoder, kl_divergence

_LOG_2PI = math.log(2 * math.pi)


def iwae_bound(log_weights: Tensor) -> Tensor:
    """L_k [B] from log-weights [k, B]: logsumexp over the k draws minus log k."""
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


class IWAE(VariationalAutoencoder):
    """A fully connected VAE trained on the k-sample importance-weighted bound.

    ``k`` is the importance samples per image in training and validation (the paper's 50;
    1 trains the VAE's objective with a sampled KL). ``beta`` and ``kl_warmup_steps`` keep
    their VAE meaning through log p(z) − log q(z|x) inside each weight, which they scale:
    with beta 1 and no warm-up (the defaults) the loss is −L_k exactly.

    Logged per stage: ``loss`` (−L_k, so the best checkpoint has the highest bound),
    ``iwae_bound`` (L_k, nats per image, never weighted), and the ELBO's terms as a VAE
    logs them: ``recon`` (−log p(x|z) averaged over the k draws), ``kl`` (exact) and
    ``elbo`` = −(recon + kl). Other options as for ``VAEBase``.
    """

    def __init__(self, *, k: int = 50, **vae: Any) -> None:
        super().__init__(**vae)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(
                f"model.k, the importance samples per image, must be a whole number >= 1 "
                f"(got {k!r}); the paper trains with k=50, and k=1 is the VAE's objective"
            )
        self.k = k

    def importance_terms(
        self, x: Tensor, *, k: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """For k draws z_i ~ q(z|x) per image [B, C, H, W]: ``log_lik`` log p(x|z_i) and
        ``log_ratio`` log p(z_i) − log q(z_i|x), each [k, B], and q's ``mu`` and ``logvar``.

        The draws are ε [k, B, latent] from ``generator`` (drawn where it lives), z = μ + σ·ε,
        in the order and shape genlab.metrics.likelihood draws them, so one seed gives the
        same bound here and in `genlab evaluate`.
        """
        if k < 1:
            raise ConfigError(f"the importance-weighted bound needs k >= 1 draws (got {k})")
        mu, logvar = self.encode_distribution(x)
        eps = gaussian_draws((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps
        logits = self.decode_logits(z.flatten(0, 1))
        targets = x.expand(k, *x.shape).flatten(0, 1)
        log_lik = -self.reconstruction_nll(logits, targets).view(k, x.shape[0])
        # log N(z; μ, σ²) at z = μ + σ·ε is −½ Σ (ε² + log σ² + log 2π): written through ε,
        # it has the same value and the same gradient in μ and σ.
        log_q = -0.5 * (eps.square() + logvar + _LOG_2PI).sum(dim=-1)
        log_p = -0.5 * (z.square() + _LOG_2PI).sum(dim=-1)
        return {"log_lik": log_lik, "log_ratio": log_p - log_q, "mu": mu, "logvar": logvar}

    def log_weights(
        self, x: Tensor, *, k: int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """log w_i = log p(x, z_i) − log q(z_i|x) [k, B] (``k`` None: the model's)."""
        terms = self.importance_terms(x, k=self.k if k is None else k, generator=generator)
        return terms["log_lik"] + terms["log_ratio"]

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        terms = self.importance_terms(x, k=self.k)
        log_lik, log_ratio = terms["log_lik"], terms["log_ratio"]
        bound = iwae_bound(log_lik + log_ratio).mean()
        # As in VAEBase: the warm-up ramps the weight in training only, so val/loss is the
        # same objective in every epoch.
        weight = self.kl_weight(self.global_step) if self.training else self.beta
        loss = -bound if weight == 1 else -iwae_bound(log_lik + weight * log_ratio).mean()
        recon = -log_lik.mean()
        kl = kl_divergence(terms["mu"], terms["logvar"]).mean()
        return {
            "loss": loss,
            "iwae_bound": bound,
            "recon": recon,
            "kl": kl,
            "elbo": -(recon + kl),
        }
