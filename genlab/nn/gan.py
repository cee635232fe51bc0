"""Generators and discriminators, plain torch (no Lightning); the losses that train them live
in genlab.models.gans.losses.

Every generator maps noise [B, latent_dim] to images [B, C, S, S] in [-1, 1] (a tanh
output); every discriminator maps images in [-1, 1] to one unnormalised score per image [B]:
a logit or a raw score, as the loss reads it. The fully connected pair can also take a
condition [B, condition_dim] (a one-hot label), concatenated to its input.

The convolutional pair follows Radford et al. (DCGAN): strided convolutions instead of
pooling, batch norm, ReLU in the generator with a tanh output, LeakyReLU(0.2) in the
discriminator, weights drawn from N(0, 0.02) (``init: dcgan``). Options add what WGAN-GP and
SAGAN change: another normalisation (or none) in the discriminator, spectral normalisation
of every weight, a self-attention block (Zhang et al.) at half the image resolution, and
PyTorch's default initialisation (``init: default``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from genlab.errors import ConfigError
from genlab.nn.network import Network

NORMS = ("batch", "layer", "none")
INITS = ("dcgan", "default")
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


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise ConfigError(
            f"{what} {value!r} (model.generator.{what} / model.discriminator.{what}) is not "
            f"one of {', '.join(choices)}"
        )


def _conv_plan(image_size: int, *, norm: str, init: str) -> tuple[int, int]:
    """``conv_layout(image_size)``, once the options are checked."""
    _check_choice(norm, NORMS, "norm")
    _check_choice(init, INITS, "init")
    return conv_layout(image_size)


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
        # A spectrally normalised weight is computed from its ``original``: draw that one.
        weight = (
            module.parametrizations.weight.original
            if parametrize.is_parametrized(module, "weight")
            else module.weight
        )
        with torch.no_grad():
            nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _initialise(network: nn.Module, init: str) -> None:
    if init == "dcgan":
        network.apply(dcgan_init)


def _conditioned(x: Tensor, condition: Tensor | None, condition_dim: int, name: str) -> Tensor:
    """``x`` [B, F] with the condition [B, condition_dim] appended, checked against the
    network's ``condition_dim``."""
    if condition_dim == 0:
        if condition is not None:
            raise ValueError(f"this {name} has condition_dim=0 and takes no condition")
        return x
    if condition is None or condition.shape[-1] != condition_dim:
        raise ValueError(f"this {name} needs a condition [B, {condition_dim}] (a one-hot label)")
    return torch.cat([x, condition.to(x.dtype)], dim=1)


class SelfAttention(Network):
    """Self-attention over the pixels of a feature map (Zhang et al., SAGAN).

    x [B, C, H, W]: query and key are 1x1 convolutions to C/8 channels, the value one to C/2
    channels, and the attended values go back to C channels through a fourth 1x1
    convolution. The block returns x + γ·o with a learned scalar γ that starts at 0, so the
    network first relies on local convolutions and mixes in distant pixels as γ grows.
    """

    def __init__(self, *, channels: int, spectral: bool = False) -> None:
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


class MLPGenerator(Network):
    """Noise [B, latent_dim] (and a condition [B, condition_dim]) -> images [B, C, S, S] in
    [-1, 1]: Linear + ReLU per hidden layer, then a linear layer with tanh. PyTorch's default
    initialisation, as Goodfellow et al. did not prescribe one."""

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        image_size: int,
        hidden_dims: Sequence[int],
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.condition_dim = condition_dim
        self.image_shape = (channels, image_size, image_size)
        dims = [latent_dim + condition_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers += [nn.Linear(dims[-1], channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        h = _conditioned(z, condition, self.condition_dim, "generator")
        return self.net(h).view(-1, *self.image_shape)


class MLPDiscriminator(Network):
    """Images [B, C, S, S] (and a condition [B, condition_dim]) -> scores [B]: the flattened
    image, Linear + LeakyReLU(0.2) + dropout per hidden layer (Goodfellow et al. trained
    theirs with dropout), then a linear output."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        hidden_dims: Sequence[int],
        dropout: float = 0.0,
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ConfigError(
                f"model.discriminator.dropout must lie in [0, 1) (got {dropout}); try 0.3"
            )
        self.condition_dim = condition_dim
        dims = [channels * image_size * image_size + condition_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:], strict=False):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dims[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        h = _conditioned(x.flatten(1), condition, self.condition_dim, "discriminator")
        return self.net(h).squeeze(1)


class ConvGenerator(Network):
    """Noise [B, latent_dim] -> images [B, C, S, S] in [-1, 1], DCGAN style.

    A transposed convolution projects z (as a 1x1 map) to s₀ x s₀ with ``width``·2ⁿ⁻¹
    channels; each of the n stride-2 transposed convolutions (kernel 4) then doubles the size
    and halves the channels, the last one to C channels with tanh and no norm
    (``conv_layout`` gives s₀ and n). ``self_attention`` adds a block after the layer at S/2.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        image_size: int,
        width: int = 64,
        norm: str = "batch",
        spectral: bool = False,
        self_attention: bool = False,
        init: str = "dcgan",
    ) -> None:
        super().__init__()
        start, layers = _conv_plan(image_size, norm=norm, init=init)
        hidden = width * 2 ** (layers - 1)
        # A bias before a norm layer would be cancelled by its mean subtraction.
        bias = norm == "none"
        blocks: list[nn.Module] = [
            _maybe_sn(nn.ConvTranspose2d(latent_dim, hidden, start, bias=bias), spectral),
            _norm_layer(norm, hidden),
            nn.ReLU(),
        ]
        for _ in range(layers - 1):
            up = nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1, bias=bias)
            blocks += [_maybe_sn(up, spectral), _norm_layer(norm, hidden // 2), nn.ReLU()]
            hidden //= 2
        if self_attention:
            blocks.append(SelfAttention(channels=hidden, spectral=spectral))
        blocks += [
            _maybe_sn(nn.ConvTranspose2d(hidden, channels, 4, 2, 1), spectral),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*blocks)
        self.latent_dim = latent_dim
        _initialise(self, init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.view(-1, self.latent_dim, 1, 1))


class ConvDiscriminator(Network):
    """Images [B, C, S, S] -> scores [B], the mirror of ``ConvGenerator``.

    n stride-2 convolutions (kernel 4) halve the size and double the channels, from
    ``width``; the first has no norm (as in DCGAN), the others ``norm``; LeakyReLU(0.2)
    after each. A last convolution with an s₀ x s₀ kernel gives one score, with no sigmoid:
    the losses take logits or raw scores. ``self_attention`` adds a block after the first
    layer, at S/2.
    """

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        width: int = 64,
        norm: str = "batch",
        spectral: bool = False,
        self_attention: bool = False,
        init: str = "dcgan",
    ) -> None:
        super().__init__()
        start, layers = _conv_plan(image_size, norm=norm, init=init)
        blocks: list[nn.Module] = [
            _maybe_sn(nn.Conv2d(channels, width, 4, 2, 1), spectral),
            nn.LeakyReLU(0.2),
        ]
        if self_attention:
            blocks.append(SelfAttention(channels=width, spectral=spectral))
        hidden = width
        for _ in range(layers - 1):
            down = nn.Conv2d(hidden, hidden * 2, 4, 2, 1, bias=norm == "none")
            blocks += [_maybe_sn(down, spectral), _norm_layer(norm, hidden * 2), nn.LeakyReLU(0.2)]
            hidden *= 2
        blocks.append(_maybe_sn(nn.Conv2d(hidden, 1, start), spectral))
        self.net = nn.Sequential(*blocks)
        _initialise(self, init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()
