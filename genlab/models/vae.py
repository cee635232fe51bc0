"""Variational autoencoders, the lecture's part 2: the encoder outputs the mean μ and the
log-variance log σ² of q(z|x) = N(μ, diag σ²), the sampling layer draws z = μ + σ·ε, and
training maximises the ELBO E_q[log p(x|z)] − KL(q(z|x) ‖ N(0, I)).

Every term is summed over pixels or latent dimensions and averaged over the batch, so the
logged ``recon``, ``kl`` and ``elbo`` read in nats per image.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.latent import gaussian_draws
from genlab.models.capabilities import HasPrior, Variational
from genlab.models.reconstruction import ReconstructionModel

LIKELIHOODS = ("bernoulli", "gaussian")
# The base class's name for the reconstruction error each likelihood generalises.
_BASE_LOSS = {"bernoulli": "bce", "gaussian": "mse"}
_LOG_2PI = math.log(2 * math.pi)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per row [B], for μ and log σ² [B, latent]."""
    # The exact form; the lecture's slide writes Σ σ² + μ² − log σ − 1 (no ½, log σ not log σ²).
    return 0.5 * (logvar.exp() + mu.square() - logvar - 1).sum(dim=1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """−log p(x|z) [B] for pixel probabilities sigmoid(logits), images [B, C, H, W]."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def gaussian_nll(mean: Tensor, x: Tensor, logvar: Tensor) -> Tensor:
    """−log N(x; mean, σ²) [B] summed over pixels, constant included, so it reads in nats.

    ``logvar`` (log σ²) broadcasts against the images: a scalar or one value per channel.
    """
    logvar = logvar.expand_as(x)
    per_pixel = 0.5 * ((x - mean).square() / logvar.exp() + logvar + _LOG_2PI)
    return per_pixel.flatten(1).sum(dim=1)


def check_vae_options(
    *,
    likelihood: str,
    sigma: float,
    learn_variance: bool,
    beta: float,
    kl_warmup_steps: int,
) -> None:
    if likelihood not in LIKELIHOODS:
        raise ConfigError(
            f"model.likelihood={likelihood!r} is not one of {', '.join(LIKELIHOODS)}; "
            "bernoulli suits pixels in [0, 1] such as MNIST"
        )
    if sigma <= 0:
        raise ConfigError(f"model.sigma is a standard deviation and must be positive (got {sigma})")
    if learn_variance and likelihood != "gaussian":
        raise ConfigError(
            "model.learn_variance=true learns the pixel variance of a Gaussian decoder, so it "
            "needs model.likelihood=gaussian (a Bernoulli decoder has no variance to learn)"
        )
    if beta < 0:
        raise ConfigError(f"model.beta weighs the KL term and must be non-negative (got {beta})")
    if kl_warmup_steps < 0:
        raise ConfigError(
            f"model.kl_warmup_steps must be non-negative (got {kl_warmup_steps}); 0 turns it off"
        )


class VAEBase(ReconstructionModel, HasPrior, Variational):
    """A variational autoencoder: the sampling layer, the prior, the likelihoods, the ELBO
    and the image grids.

    ``encoder`` maps images [B, C, H, W] to (μ, log σ²), each [B, latent_dim] (a
    genlab.nn.gaussian encoder); ``decoder`` maps codes to logits [B, C, H, W]. The decoded
    image is a sigmoid of the logits for both likelihoods: pixel probabilities for
    ``bernoulli``, and for ``gaussian`` a mean kept in the pixel range so the decoded mean is
    itself the image shown.

    ``likelihood=bernoulli`` treats pixels in [0, 1] as probabilities (cross-entropy);
    ``gaussian`` is N(x̂, σ²) with σ fixed at ``sigma`` or, with ``learn_variance``, a
    learned value per channel starting at ``sigma``. σ sets the exchange rate between the
    two terms, each squared pixel error costing 1/(2σ²) nats: with pixels in [0, 1] a σ near
    1 lets the KL term win (blurry, average digits), a tiny σ makes it a plain autoencoder;
    the default 0.1 is of the order of a decent reconstruction's per-pixel error.
    ``beta`` weighs the KL term (1: the ELBO) and ``kl_warmup_steps`` ramps it up from 0.

    ``encode`` is the mean code μ, so ``reconstruct`` and ``score`` are deterministic: the
    decoding of μ and the negative log-likelihood of x under it.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        likelihood: str = "bernoulli",
        sigma: float = 0.1,
        learn_variance: bool = False,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        **networks_and_shape: Any,
    ) -> None:
        # encoder, decoder, in_channels, image_size and optimizer: ReconstructionModel's.
        super().__init__(**networks_and_shape)
        check_vae_options(
            likelihood=likelihood,
            sigma=sigma,
            learn_variance=learn_variance,
            beta=beta,
            kl_warmup_steps=kl_warmup_steps,
        )
        self.set_latent_dim(latent_dim)
        self.use_reconstruction_loss(_BASE_LOSS[likelihood], "sigmoid")
        self.likelihood = likelihood
        self.beta = beta
        self.kl_warmup_steps = kl_warmup_steps
        if likelihood == "gaussian":
            logvar = torch.full((self.image_shape[0], 1, 1), 2 * math.log(sigma))
            if learn_variance:
                self.output_logvar = nn.Parameter(logvar)
            else:
                # Fixed by the config, which the checkpoint stores anyway.
                self.register_buffer("output_logvar", logvar, persistent=False)
        self.register_fixed_noise(latent_dim)

    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images [B, C, H, W] -> (μ, log σ²), each [B, latent]."""
        out = self.encoder(x)
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise ConfigError(
                f"a VAE's encoder must return the pair (mu, logvar); {type(self.encoder).__name__}"
                " does not. Use a Gaussian encoder (genlab.nn.gaussian) for model.encoder"
            )
        return out[0], out[1]

    def encode(self, x: Tensor) -> Tensor:
        """The mean code μ [B, latent]."""
        return self.encode_distribution(x)[0]

    def reparameterize(
        self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The sampling layer: z = μ + σ·ε with ε ~ N(0, I), differentiable in μ and σ."""
        eps = gaussian_draws(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * eps

    def sample_latent(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        truncation: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n codes [n, latent] from the prior N(0, I), truncated at ±``truncation`` when given
        (see genlab.latent.gaussian_draws), their spread scaled by ``temperature``."""
        z = self.noise(n, self.latent_dim, generator=generator, truncation=truncation)
        return temperature * z

    def reconstruction_nll(self, logits: Tensor, x: Tensor) -> Tensor:
        """−log p(x|z) [B] for decoder logits and images [B, C, H, W]."""
        if self.likelihood == "bernoulli":
            return bernoulli_nll(logits, x)
        return gaussian_nll(self.output(logits), x, self.output_logvar)

    def reconstruction_terms(self, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """The deterministic reconstruction: ``recon`` [B] is −log p(targets | z = μ)."""
        code = self.encode(inputs)
        return {"code": code, "recon": self.reconstruction_nll(self.decode_logits(code), targets)}

    def kl_weight(self, step: int) -> float:
        """The KL weight after ``step`` optimizer steps: linear from 0 to beta over the first
        ``kl_warmup_steps``, then beta."""
        if step >= self.kl_warmup_steps:
            return self.beta
        return self.beta * step / self.kl_warmup_steps

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.encode_distribution(x)
        # One draw of z per image: an unbiased estimate of the expected log-likelihood.
        recon = self.reconstruction_nll(self.decode_logits(self.reparameterize(mu, logvar)), x)
        recon = recon.mean()
        kl = kl_divergence(mu, logvar).mean()
        # Validation and test weigh the KL by the full beta: val/loss picks the best
        # checkpoint, so it must be the same objective in every epoch.
        weight = self.kl_weight(self.global_step) if self.training else self.beta
        return {"loss": recon + weight * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    @torch.no_grad()
    def negative_elbo(
        self, x: Tensor, *, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """−ELBO [B] in nats per image, an anomaly score that also counts how unlikely the
        code is under the prior.

        The KL is exact; the expected reconstruction term is a Monte-Carlo average over
        ``num_samples`` draws of z ~ q(z|x): unbiased, its noise falling as 1/√num_samples.
        """
        if num_samples < 1:
            raise ConfigError(f"negative_elbo needs num_samples >= 1 (got {num_samples})")
        mu, logvar = self.encode_distribution(x)
        recon = torch.stack(
            [
                self.reconstruction_nll(
                    self.decode_logits(self.reparameterize(mu, logvar, generator)), x
                )
                for _ in range(num_samples)
            ]
        ).mean(dim=0)
        return recon + kl_divergence(mu, logvar)

    @torch.no_grad()
    def interpolation_rows(self, x: Tensor, *, steps: int = 10) -> list[Tensor]:
        """One row per pair of images (x₀, x₁), (x₂, x₃), at most two: x_a, the decodings of
        ``steps`` evenly spaced points on the line between their mean codes, x_b."""
        pairs = min(2, x.shape[0] // 2)
        mu = self.encode(x[: 2 * pairs])
        t = torch.linspace(0, 1, steps, device=mu.device, dtype=mu.dtype).unsqueeze(1)
        rows = []
        for i in range(pairs):
            codes = (1 - t) * mu[2 * i] + t * mu[2 * i + 1]
            rows.append(
                torch.cat([x[2 * i : 2 * i + 1], self.decode(codes), x[2 * i + 1 : 2 * i + 2]])
            )
        return rows

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        """Reconstructions of ``x``, samples decoded from ``fixed_z``, and interpolations
        between the mean codes of the first images of ``x``."""
        grids = super().image_grids(x)
        grids["val/samples"] = list(self.decode(self.fixed_z).split(self.SAMPLES_PER_ROW))
        interpolation = self.interpolation_rows(x)
        if interpolation:
            grids["val/interpolation"] = interpolation
        return grids


class VariationalAutoencoder(VAEBase):
    """The fully connected VAE: hidden layers, then two linear heads for μ and log σ²
    (genlab.nn.gaussian.MLPGaussianEncoder); the decoder mirrors the hidden layers
    (genlab.nn.mlp.MLPDecoder). Options as for ``VAEBase``."""


class ConvVariationalAutoencoder(VAEBase):
    """The lecture's Keras convolutional autoencoder made variational: its convolutions,
    flattened, then two linear heads for μ and log σ² in place of its dense code layer
    (genlab.nn.gaussian.ConvGaussianEncoder); a linear layer to the Keras decoder's
    (image_size/4)² inputs, then that decoder (genlab.nn.conv.KerasConvDecoder with
    ``latent_dim``). Options as for ``VAEBase``.

    Both ReLU dense layers of the Keras model are left out: trained as a VAE, over 80% of
    the encoder's 49 code units and about half of a ReLU layer after z died within three
    epochs on MNIST, and reconstructions came out as one mean digit.
    """
