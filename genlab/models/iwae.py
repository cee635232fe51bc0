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

``IWAE`` is ``VariationalAutoencoder`` with that loss: the same encoder, decoder,
likelihoods, prior, ``negative_elbo`` and image grids, so `genlab evaluate` reports its ELBO
and importance-weighted log p(x) bound (genlab.metrics.likelihood, the same estimator with
evaluate's ``k``) and `genlab anomaly` its −ELBO. The k draws of a batch of B images are
decoded as one batch of k·B.

``TwoLayerIWAE`` is the paper's model with two stochastic layers, q(h₁|x) q(h₂|h₁) and
p(h₂) p(h₁|h₂) p(x|h₁), each conditional a diagonal Gaussian (Bernoulli for x) from an MLP.
Its q over (h₁, h₂) is not one Gaussian of x and its prior over h₁ is not N(0, I), so no
caller can build its log-weights from ``Variational``'s one-layer methods: it declares
``ImportanceWeighted`` and hands them over whole, and evaluate's ELBO for it is the mean
log-weight (sampled, as the hierarchy has no closed-form KL). Trained with k = 1 it is the
paper's two-layer VAE.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.latent import gaussian_draws
from genlab.models.capabilities import ImportanceWeighted
from genlab.models.vae import VariationalAutoencoder, kl_divergence

_LOG_2PI = math.log(2 * math.pi)


def iwae_bound(log_weights: Tensor) -> Tensor:
    """L_k [B] from log-weights [k, B]: logsumexp over the k draws minus log k."""
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


def draw_gaussian(
    mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """A reparameterised draw h = μ + σ·ε of N(μ, diag σ²), ε from ``generator`` (drawn where
    it lives) in μ's shape, and its log-density summed over the last dimension.

    log N(h; μ, σ²) at h = μ + σ·ε is −½ Σ (ε² + log σ² + log 2π): written through ε, it has
    the same value and the same gradient in μ and σ."""
    eps = gaussian_draws(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    h = mu + (0.5 * logvar).exp() * eps
    return h, -0.5 * (eps.square() + logvar + _LOG_2PI).sum(dim=-1)


def gaussian_log_density(h: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(h; μ, diag σ²) summed over the last dimension."""
    return -0.5 * ((h - mu).square() / logvar.exp() + logvar + _LOG_2PI).sum(dim=-1)


def check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(
            f"model.k, the importance samples per image, must be a whole number >= 1 "
            f"(got {k!r}); the paper trains with k=50, and k=1 is the VAE's objective"
        )


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
        check_k(k)
        self.k = k

    def importance_terms(
        self, x: Tensor, *, k: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """For k draws z_i ~ q(z|x) per image [B, C, H, W]: ``log_lik`` log p(x|z_i) and
        ``log_ratio`` log p(z_i) − log q(z_i|x), each [k, B], and ``kl`` [B], the ELBO's
        KL(q(z|x) ‖ N(0, I)) (exact).

        The draws are ε [k, B, latent] from ``generator`` (drawn where it lives), z = μ + σ·ε,
        in the order and shape genlab.metrics.likelihood draws them, so one seed gives the
        same bound here and in `genlab evaluate`.
        """
        if k < 1:
            raise ConfigError(f"the importance-weighted bound needs k >= 1 draws (got {k})")
        mu, logvar = self.encode_distribution(x)
        z, log_q = draw_gaussian(mu.expand(k, *mu.shape), logvar.expand(k, *mu.shape), generator)
        logits = self.decode_logits(z.flatten(0, 1))
        targets = x.expand(k, *x.shape).flatten(0, 1)
        log_lik = -self.reconstruction_nll(logits, targets).view(k, x.shape[0])
        log_p = -0.5 * (z.square() + _LOG_2PI).sum(dim=-1)
        return {"log_lik": log_lik, "log_ratio": log_p - log_q, "kl": kl_divergence(mu, logvar)}

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
        kl = terms["kl"].mean()
        return {
            "loss": loss,
            "iwae_bound": bound,
            "recon": recon,
            "kl": kl,
            "elbo": -(recon + kl),
        }


class TwoLayerIWAE(IWAE, ImportanceWeighted):
    """The IWAE paper's model with two stochastic layers h₁ and h₂, on the k-sample bound.

    Four networks: ``encoder`` q(h₁|x) and ``decoder`` p(x|h₁) (logits), as in ``IWAE`` but
    working in h₁ (their ``latent_dim`` is h₁'s size);
    ``upper_encoder`` q(h₂|h₁) and ``upper_decoder`` p(h₁|h₂), Gaussian encoders of a vector
    (genlab.nn.gaussian.MLPGaussianEncoder reading it as a 1×1 image with one channel per
    unit). p(h₂) = N(0, I). With h₁ ~ q(h₁|x) and h₂ ~ q(h₂|h₁), both reparameterised,

        log w = log p(x|h₁) + log p(h₁|h₂) + log p(h₂) − log q(h₁|x) − log q(h₂|h₁).

    The code is h₂, the layer with the N(0, I) prior: ``latent_dim`` is its size, and it is
    what ``sample_latent`` draws (temperature and truncation act on it), ``encode`` gives
    and ``decode`` takes, so sample, interpolate (from the prior or between images),
    arithmetic and embed work in h₂. ``decode`` follows the means, not draws, down the
    hierarchy: h₁ = the mean of p(h₁|h₂), then the pixel probabilities sigmoid(logits) of
    p(x|h₁); a draw of h₁ would add pixel-sized noise to every image. ``encode`` likewise is
    the mean of q(h₂|h₁) at h₁ = the mean of q(h₁|x). The reconstructions and the anomaly
    ``score`` are a VAE's through that code: decode(encode(x)), through both layers.

    ``encode_distribution`` is q(h₁|x), the one Gaussian conditional on x; the bounds never
    come from it alone, but from ``log_weights`` (genlab.metrics.likelihood asks for those).
    Logged as for ``IWAE``, except that ``kl`` is sampled: −(mean over the k draws of
    log p(h₁|h₂) + log p(h₂) − log q(h₁|x) − log q(h₂|h₁)), so ``elbo`` is the mean
    log-weight. ``beta`` and ``kl_warmup_steps`` scale that ratio inside each weight.
    """

    def __init__(
        self, *, upper_encoder: nn.Module, upper_decoder: nn.Module, k: int = 50, **vae: Any
    ) -> None:
        super().__init__(k=k, **vae)
        self.upper_encoder = upper_encoder
        self.upper_decoder = upper_decoder
        self.check_layer_sizes()

    def set_latent_dim(self, latent_dim: int) -> None:
        """The code is h₂; the encoder and decoder work in h₁, which ``check_layer_sizes``
        checks once the upper networks are in place."""
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be at least 1 (got {latent_dim})")
        self.latent_dim = latent_dim

    def check_layer_sizes(self) -> None:
        """Refuse networks whose sizes do not chain x → h₁ → h₂ → h₁ → x, where they state
        them (``latent_dim``, and the first linear layer's inputs): the mismatch would
        otherwise surface as a shape error at the first batch."""
        h1 = getattr(self.encoder, "latent_dim", None)
        expected = {
            # network: (its code size, its input size), None where not checked
            "decoder": (h1, None),
            "upper_encoder": (self.latent_dim, h1),
            "upper_decoder": (h1, self.latent_dim),
        }
        for name, (out_size, in_size) in expected.items():
            network = getattr(self, name)
            size = getattr(network, "latent_dim", None)
            if None not in (size, out_size) and size != out_size:
                raise ConfigError(
                    f"model.{name}.latent_dim is {size} where the layers need {out_size} "
                    f"(h₁: model.encoder.latent_dim={h1}, h₂: model.latent_dim="
                    f"{self.latent_dim}); set model.{name}.latent_dim={out_size}"
                )
            first = next((m for m in network.modules() if isinstance(m, nn.Linear)), None)
            if first is not None and None not in (in_size, size) and first.in_features != in_size:
                raise ConfigError(
                    f"model.{name} reads {first.in_features} inputs but its layer below has "
                    f"{in_size} units; set model.{name}.in_channels={in_size} (and image_size 1)"
                )

    def encode(self, x: Tensor) -> Tensor:
        """The code h₂ [B, latent_dim]: the mean of q(h₂|h₁) at h₁ = the mean of q(h₁|x)."""
        return self.upper_encoder(self.encode_distribution(x)[0])[0]

    def decode_logits(self, z: Tensor) -> Tensor:
        """Codes h₂ [B, latent_dim] -> the logits of p(x|h₁) [B, C, H, W] at h₁ = the mean
        of p(h₁|h₂)."""
        return self.decoder(self.upper_decoder(z)[0])

    def importance_terms(
        self, x: Tensor, *, k: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """For k draws per image [B, C, H, W], h₁ ~ q(h₁|x) then h₂ ~ q(h₂|h₁): ``log_lik``
        log p(x|h₁) and ``log_ratio`` log p(h₁|h₂) + log p(h₂) − log q(h₁|x) − log q(h₂|h₁),
        each [k, B], and ``kl`` [B], −(the mean of ``log_ratio``): the ELBO's KL, sampled.

        The noise, from ``generator`` where it lives: ε₁ [k, B, h₁], then ε₂ [k, B, h₂].
        """
        if k < 1:
            raise ConfigError(f"the importance-weighted bound needs k >= 1 draws (got {k})")
        batch = x.shape[0]
        mu1, logvar1 = self.encode_distribution(x)
        h1, log_q1 = draw_gaussian(
            mu1.expand(k, *mu1.shape), logvar1.expand(k, *mu1.shape), generator
        )
        h1 = h1.flatten(0, 1)  # [k·B, h₁]: every network below takes the draws as one batch
        mu2, logvar2 = self.upper_encoder(h1)
        h2, log_q2 = draw_gaussian(mu2.view(k, batch, -1), logvar2.view(k, batch, -1), generator)
        h2 = h2.flatten(0, 1)
        prior_mu1, prior_logvar1 = self.upper_decoder(h2)
        log_p1 = gaussian_log_density(h1, prior_mu1, prior_logvar1).view(k, batch)
        log_p2 = -0.5 * (h2.square() + _LOG_2PI).sum(dim=-1).view(k, batch)
        targets = x.expand(k, *x.shape).flatten(0, 1)
        log_lik = -self.reconstruction_nll(self.decoder(h1), targets).view(k, batch)
        log_ratio = log_p1 + log_p2 - log_q1 - log_q2
        return {"log_lik": log_lik, "log_ratio": log_ratio, "kl": -log_ratio.mean(dim=0)}

    @torch.no_grad()
    def negative_elbo(
        self, x: Tensor, *, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """−ELBO [B] in nats per image: −(the mean of ``num_samples`` log-weights), an
        unbiased estimate whose noise falls as 1/√num_samples (no KL here is exact)."""
        if num_samples < 1:
            raise ConfigError(f"negative_elbo needs num_samples >= 1 (got {num_samples})")
        return -self.log_weights(x, k=num_samples, generator=generator).mean(dim=0)
