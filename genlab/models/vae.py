"""Variational autoencoders, the lecture's part 2: the encoder outputs the mean μ and the
log-variance log σ² of q(z|x) = N(μ, diag σ²), the sampling layer draws z = μ + σ·ε, and
training maximises the ELBO E_q[log p(x|z)] − KL(q(z|x) ‖ N(0, I)).

Every term is summed over pixels or latent dimensions and averaged over the batch, so the
logged ``recon``, ``kl`` and ``elbo`` read in nats per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.base import OptimizerFactory, ReconstructionModel
from genlab.nn.conv import KerasConvDecoder, KerasConvEncoder, code_size
from genlab.nn.mlp import MLPDecoder, MLPEncoder

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


def _standard_normal(
    shape: Sequence[int],
    generator: torch.Generator | None,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """N(0, I) noise on ``device``, drawn where ``generator`` lives: a seeded CPU generator
    gives the same draws whether the model runs on the CPU or a GPU."""
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source, dtype=dtype).to(device)


def check_vae_options(
    *,
    latent_dim: int,
    likelihood: str,
    sigma: float,
    learn_variance: bool,
    beta: float,
    kl_warmup_steps: int,
) -> None:
    if latent_dim < 1:
        raise ConfigError(f"model.latent_dim must be at least 1 (got {latent_dim}); try 16")
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


class VAEBase(ReconstructionModel):
    """What both variational autoencoders share: the sampling layer, the prior, the
    likelihoods, the ELBO and the image grids.

    Subclasses build their networks and implement ``encode_distribution`` (images
    [B, C, H, W] -> μ, log σ² [B, latent]) and ``decode_logits`` (codes -> logits
    [B, C, H, W]). The decoder's output is a sigmoid for both likelihoods: pixel
    probabilities for ``bernoulli``, and for ``gaussian`` a mean kept in the pixel range so
    the decoded mean is itself the image shown.

    ``encode`` is the mean code μ, so ``reconstruct`` and ``score`` are deterministic: the
    decoding of μ and the negative log-likelihood of x under it.
    """

    has_prior = True
    # The grid of samples decodes the same codes every epoch, so epochs compare directly.
    NUM_FIXED_SAMPLES = 64
    SAMPLES_PER_ROW = 8

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        latent_dim: int,
        likelihood: str,
        sigma: float,
        learn_variance: bool,
        beta: float,
        kl_warmup_steps: int,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        check_vae_options(
            latent_dim=latent_dim,
            likelihood=likelihood,
            sigma=sigma,
            learn_variance=learn_variance,
            beta=beta,
            kl_warmup_steps=kl_warmup_steps,
        )
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            loss=_BASE_LOSS[likelihood],
            output_activation="sigmoid",
            optimizer=optimizer,
        )
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.beta = beta
        self.kl_warmup_steps = kl_warmup_steps
        if likelihood == "gaussian":
            logvar = torch.full((in_channels, 1, 1), 2 * math.log(sigma))
            if learn_variance:
                self.output_logvar = nn.Parameter(logvar)
            else:
                # Fixed by the config, which the checkpoint stores anyway.
                self.register_buffer("output_logvar", logvar, persistent=False)
        # Its own generator: the codes are the same whatever the run's seed, and drawing
        # them leaves the global random stream (and so the weights' seeding) untouched.
        generator = torch.Generator().manual_seed(0)
        self.register_buffer(
            "fixed_z", torch.randn(self.NUM_FIXED_SAMPLES, latent_dim, generator=generator)
        )

    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images [B, C, H, W] -> (μ, log σ²), each [B, latent]."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        """The mean code μ [B, latent]."""
        return self.encode_distribution(x)[0]

    def reparameterize(
        self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The sampling layer: z = μ + σ·ε with ε ~ N(0, I), differentiable in μ and σ."""
        eps = _standard_normal(mu.shape, generator, device=mu.device, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * eps

    def sample_latent(
        self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """n codes [n, latent] from the prior N(0, I), their spread scaled by ``temperature``."""
        eps = _standard_normal(
            (n, self.latent_dim), generator, device=self.device, dtype=self.dtype
        )
        return temperature * eps

    @torch.no_grad()
    def sample(
        self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """n new images [n, C, H, W]: the decoded means of codes drawn from the prior."""
        return self.decode(self.sample_latent(n, temperature=temperature, generator=generator))

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
    """Fully connected VAE: hidden layers ``hidden_dims``, then two linear heads for μ and
    log σ²; the decoder mirrors the hidden layers.

    ``likelihood=bernoulli`` treats pixels in [0, 1] as probabilities (cross-entropy);
    ``gaussian`` is N(x̂, σ²) with σ fixed at ``sigma`` or, with ``learn_variance``, a
    learned value per channel starting at ``sigma``. σ sets the exchange rate between the
    two terms, each squared pixel error costing 1/(2σ²) nats: with pixels in [0, 1] a σ near
    1 lets the KL term win (blurry, average digits), a tiny σ makes it a plain autoencoder;
    the default 0.1 is of the order of a decent reconstruction's per-pixel error.
    ``beta`` weighs the KL term (1: the ELBO) and ``kl_warmup_steps`` ramps it up from 0.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 16,
        hidden_dims: Sequence[int] = (512, 256),
        activation: str = "relu",
        likelihood: str = "bernoulli",
        sigma: float = 0.1,
        learn_variance: bool = False,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            likelihood=likelihood,
            sigma=sigma,
            learn_variance=learn_variance,
            beta=beta,
            kl_warmup_steps=kl_warmup_steps,
            optimizer=optimizer,
        )
        features = in_channels * image_size * image_size
        hidden = list(hidden_dims)
        if hidden:
            # Every hidden layer; the last one stands where a plain autoencoder has its code.
            self.encoder: nn.Module = MLPEncoder(
                in_features=features,
                hidden_dims=hidden[:-1],
                latent_dim=hidden[-1],
                hidden_activation=activation,
                latent_activation=activation,
            )
        else:
            self.encoder = nn.Identity()
        width = hidden[-1] if hidden else features
        self.mu_head = nn.Linear(width, latent_dim)
        self.logvar_head = nn.Linear(width, latent_dim)
        self.decoder = MLPDecoder(
            latent_dim=latent_dim,
            hidden_dims=hidden,
            out_features=features,
            hidden_activation=activation,
        )

    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x.flatten(1))
        return self.mu_head(h), self.logvar_head(h)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.image_shape)


class ConvVariationalAutoencoder(VAEBase):
    """The lecture's Keras convolutional autoencoder made variational.

    Encoder: the Keras conv encoder's convolutions, flattened, then two linear heads for μ
    and log σ² in place of its dense code layer. Decoder: a linear layer to the Keras
    decoder's (image_size/4)² inputs, then that decoder with a sigmoid output (see
    ``VAEBase``). Options as for ``VariationalAutoencoder``.

    Both ReLU dense layers of the Keras model are left out: trained as a VAE, over 80% of
    the encoder's 49 code units and about half of a ReLU layer after z died within three
    epochs on MNIST, and reconstructions came out as one mean digit.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 16,
        likelihood: str = "bernoulli",
        sigma: float = 0.1,
        learn_variance: bool = False,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        bn_momentum: float = 0.1,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            likelihood=likelihood,
            sigma=sigma,
            learn_variance=learn_variance,
            beta=beta,
            kl_warmup_steps=kl_warmup_steps,
            optimizer=optimizer,
        )
        keras = KerasConvEncoder(in_channels=in_channels, image_size=image_size)
        # Up to its flattened convolutions: the heads replace the dense code layer that ends it.
        self.encoder = keras.net[:-2]
        features = keras.net[-2].in_features
        self.mu_head = nn.Linear(features, latent_dim)
        self.logvar_head = nn.Linear(features, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, code_size(image_size)),
            KerasConvDecoder(
                out_channels=in_channels, image_size=image_size, bn_momentum=bn_momentum
            ),
        )

    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)
