"""Generators, discriminators and adversarial losses, plain torch (no Lightning).

Every generator maps noise [B, in_features] to images [B, C, S, S] in [-1, 1] (a tanh
output); every discriminator maps images in [-1, 1] to one unnormalised score per image [B]:
a logit for the GAN losses, a critic value for the Wasserstein and hinge losses.

The convolutional pair follows Radford et al. (DCGAN): strided convolutions instead of
pooling, batch norm, ReLU in the generator with a tanh output, LeakyReLU(0.2) in the
discriminator, weights drawn from N(0, 0.02). Options add what WGAN-GP and SAGAN change:
another normalisation (or none) in the discriminator, spectral normalisation of every
weight, and a self-attention block (Zhang et al.) at half the image resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from genlab.errors import ConfigError

NORMS = ("batch", "layer", "none")
GENERATOR_LOSSES = ("nonsaturating", "minimax")
# The smallest feature map the convolutional stacks start (generator) or end (discriminator) at.
MIN_START_SIZE = 4


def conv_layout(image_size: int) -> tuple[int, int]:
    """(start size s₀, number of stride-2 layers n) with image_size = s₀·2ⁿ, halving while the
    size is even and stays at least 4: 28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4)."""
    start, layers = image_size, 0
    while start % 2 == 0 and start // 2 >= MIN_START_SIZE:
        start //= 2
        layers += 1
    if layers == 0:
        raise ConfigError(
            f"the convolutional GANs need an even data.image_size of at least 8 (got "
            f"{image_size}); 28 (MNIST), 32 (CIFAR-10) and 64 work"
        )
    return start, layers


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ConfigError(
            f"normalisation {norm!r} (model.critic_norm) is not one of {', '.join(NORMS)}"
        )


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":
        # Normalises each image over all its channels and pixels, independently of the batch.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def _maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.'s initialisation: conv and linear weights from N(0, 0.02), norm scales
    from N(1, 0.02), biases zero. Use with ``module.apply``."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class SelfAttention(nn.Module):
    """Self-attention over the pixels of a feature map (Zhang et al., SAGAN).

    x [B, C, H, W]: query and key are 1x1 convolutions to C/8 channels, the value one to C/2
    channels, and the attended values go back to C channels through a fourth 1x1
    convolution. The block returns x + γ·o with a learned scalar γ that starts at 0, so the
    network first relies on local convolutions and mixes in distant pixels as γ grows.
    """

    def __init__(self, channels: int, *, spectral: bool = False) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = _maybe_sn(nn.Conv2d(channels, inner, 1, bias=False), spectral)
        self.key = _maybe_sn(nn.Conv2d(channels, inner, 1, bias=False), spectral)
        self.value = _maybe_sn(nn.Conv2d(channels, max(1, channels // 2), 1, bias=False), spectral)
        self.out = _maybe_sn(nn.Conv2d(max(1, channels // 2), channels, 1, bias=False), spectral)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # [B, HW, C/8]
        k = self.key(x).flatten(2)  # [B, C/8, HW]
        v = self.value(x).flatten(2)  # [B, C/2, HW]
        # attention[b, i, j]: how much output pixel i draws on input pixel j; rows sum to 1.
        attention = torch.softmax(q @ k, dim=-1)
        o = (v @ attention.transpose(1, 2)).view(b, -1, h, w)
        return x + self.gamma * self.out(o)


class MLPGenerator(nn.Module):
    """Noise [B, in_features] -> images [B, *image_shape] in [-1, 1]: Linear + ReLU per
    hidden layer, then a linear layer with tanh."""

    def __init__(
        self, *, in_features: int, hidden_dims: Sequence[int], image_shape: Sequence[int]
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        dims = [in_features, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers += [nn.Linear(dims[-1], math.prod(self.image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """Flat inputs [B, in_features] -> scores [B]: Linear + LeakyReLU(0.2) + dropout per
    hidden layer (Goodfellow et al. trained theirs with dropout), then a linear output."""

    def __init__(self, *, in_features: int, hidden_dims: Sequence[int], dropout: float) -> None:
        super().__init__()
        dims = [in_features, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:], strict=False):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dims[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


class ConvGenerator(nn.Module):
    """Noise [B, latent] -> images [B, C, S, S] in [-1, 1], DCGAN style.

    A transposed convolution projects z (as a 1x1 map) to s₀ x s₀ with ``width``·2ⁿ⁻¹
    channels; each of the n stride-2 transposed convolutions (kernel 4) then doubles the size
    and halves the channels, the last one to C channels with tanh and no norm
    (``conv_layout`` gives s₀ and n). ``self_attention`` adds a block after the layer at S/2.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        out_channels: int,
        image_size: int,
        width: int = 64,
        norm: str = "batch",
        spectral: bool = False,
        self_attention: bool = False,
    ) -> None:
        super().__init__()
        check_norm(norm)
        start, layers = conv_layout(image_size)
        channels = width * 2 ** (layers - 1)
        # A bias before a norm layer would be cancelled by its mean subtraction.
        bias = norm == "none"
        blocks: list[nn.Module] = [
            _maybe_sn(nn.ConvTranspose2d(latent_dim, channels, start, bias=bias), spectral),
            _norm_layer(norm, channels),
            nn.ReLU(),
        ]
        for _ in range(layers - 1):
            up = nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=bias)
            blocks += [
                _maybe_sn(up, spectral),
                _norm_layer(norm, channels // 2),
                nn.ReLU(),
            ]
            channels //= 2
        if self_attention:
            blocks.append(SelfAttention(channels, spectral=spectral))
        blocks += [
            _maybe_sn(nn.ConvTranspose2d(channels, out_channels, 4, 2, 1), spectral),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*blocks)
        self.latent_dim = latent_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.view(-1, self.latent_dim, 1, 1))


class ConvDiscriminator(nn.Module):
    """Images [B, C, S, S] -> scores [B], the mirror of ``ConvGenerator``.

    n stride-2 convolutions (kernel 4) halve the size and double the channels, from
    ``width``; the first has no norm (as in DCGAN), the others ``norm``; LeakyReLU(0.2)
    after each. A last convolution with an s₀ x s₀ kernel gives one score, with no sigmoid:
    the losses take logits or critic values. ``self_attention`` adds a block after the
    first layer, at S/2.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        width: int = 64,
        norm: str = "batch",
        spectral: bool = False,
        self_attention: bool = False,
    ) -> None:
        super().__init__()
        check_norm(norm)
        start, layers = conv_layout(image_size)
        blocks: list[nn.Module] = [
            _maybe_sn(nn.Conv2d(in_channels, width, 4, 2, 1), spectral),
            nn.LeakyReLU(0.2),
        ]
        if self_attention:
            blocks.append(SelfAttention(width, spectral=spectral))
        channels = width
        for _ in range(layers - 1):
            down = nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=norm == "none")
            blocks += [
                _maybe_sn(down, spectral),
                _norm_layer(norm, channels * 2),
                nn.LeakyReLU(0.2),
            ]
            channels *= 2
        blocks.append(_maybe_sn(nn.Conv2d(channels, 1, start), spectral))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()


def discriminator_bce_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """−[log D(x) + log(1 − D(G(z)))], batch means, with D = sigmoid(logits): the negated
    objective the discriminator ascends in Algorithm 1 of Goodfellow et al."""
    # log sigmoid(l) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l), without overflow.
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_bce_loss(fake_logits: Tensor, kind: str = "nonsaturating") -> Tensor:
    """The generator's loss on D's logits for its samples, a batch mean.

    ``minimax`` is Algorithm 1's log(1 − D(G(z))), to be minimised: its gradient vanishes
    where D confidently rejects the samples, which early in training is almost everywhere.
    ``nonsaturating`` is −log D(G(z)), the paper's practical alternative with the same fixed
    point and strong gradients exactly there.
    """
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    raise ConfigError(f"g_loss={kind!r} is not one of {', '.join(GENERATOR_LOSSES)}")


def critic_wasserstein_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[f(G(z))] − E[f(x)]: the critic minimises it, maximising its Wasserstein estimate."""
    return fake_scores.mean() - real_scores.mean()


def discriminator_hinge_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))], the SAGAN discriminator loss."""
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def generator_score_loss(fake_scores: Tensor) -> Tensor:
    """−E[D(G(z))], the generator loss of WGAN and of the hinge GAN."""
    return -fake_scores.mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, *, eps: Tensor | None = None
) -> Tensor:
    """E[(‖∇ₓ̂ f(x̂)‖₂ − 1)²] at x̂ = ε·x + (1 − ε)·x̃ (Gulrajani et al.), a scalar.

    ``real`` and ``fake`` are [B, ...]; ``eps`` [B] holds one coefficient per pair, drawn
    from U[0, 1] when None. The gradient keeps its graph, so the penalty trains the critic.
    """
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    eps = eps.view(-1, *[1] * (real.dim() - 1))
    # A fresh leaf: the penalty trains the critic only, whatever real and fake are attached to.
    mixed = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


def dcgan_networks(
    *, latent_dim: int, channels: int, image_size: int, width: int, critic_norm: str = "batch"
) -> tuple[ConvGenerator, ConvDiscriminator]:
    """The DCGAN generator and discriminator (or critic, with ``critic_norm``), initialised
    as Radford et al. do: the layout dcgan, wgan and wgan_gp share."""
    generator = ConvGenerator(
        latent_dim=latent_dim, out_channels=channels, image_size=image_size, width=width
    )
    discriminator = ConvDiscriminator(
        in_channels=channels, image_size=image_size, width=width, norm=critic_norm
    )
    generator.apply(dcgan_init)
    discriminator.apply(dcgan_init)
    return generator, discriminator
