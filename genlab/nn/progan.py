"""ProGAN's networks (Karras et al., 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation"), plain torch; the model that grows them is
genlab.models.gans.progan.

Both networks are built whole, every resolution from 4x4 up to ``image_size``, and take the
growth ``stage`` (0 = 4x4, k = 4·2ᵏ pixels) and the fade-in weight ``alpha`` as arguments
of ``forward``. Growing thus adds no module and re-initialises nothing: the blocks of the
lower resolutions keep training where they were, the block of a new resolution has waited
at its initial weights, and one optimizer holds every parameter from the start (a parameter
outside the stage gets no gradient, and Adam leaves it alone). Stage and alpha stay outside
the networks, so a copy of G (its moving average) runs at the stage the model says.

The paper's details:
- equalised learning rate: every weight is drawn from N(0, 1) and multiplied at run time by
  the He constant ``gain/sqrt(fan_in)`` (gain √2, and 1 for the layers before no
  activation: G's toRGB and D's score), biases start at zero. Adam's step is invariant to
  a weight's scale, so stored weights of equal scale learn at equal speed;
- pixelwise feature normalisation in G, after every convolution: each pixel's feature
  vector divided by its root mean square over the channels (and z normalised the same way);
- a minibatch standard-deviation channel in D's last block (``MinibatchStdDev``);
- LeakyReLU(0.2), nearest-neighbour upsampling in G, average pooling in D; G's toRGB output
  is linear (no tanh), as in the paper.

Widths (``stage_channels``): ``max_channels`` at 4x4 and up to ``halve_above`` pixels,
halving with every doubling above it; the paper's 512 up to 32x32, 256 at 64x64 and so on
is ``max_channels=512, halve_above=32``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.nn.network import Network

# He's gain for (leaky) ReLU layers; the layers that feed no activation use 1.
RELU_GAIN = math.sqrt(2.0)
LEAK = 0.2
FIRST_RESOLUTION = 4


def growth_stages(image_size: int) -> int:
    """The number of stages growing 4x4 to ``image_size`` by doubling: 32 -> 4 (4, 8, 16,
    32). A ConfigError unless ``image_size`` is a power of two of at least 8."""
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or image_size < 2 * FIRST_RESOLUTION
        or image_size & (image_size - 1)
    ):
        raise ConfigError(
            f"progressive growing doubles 4x4 images up to data.image_size, which must be a "
            f"power of two of at least 8 (got {image_size!r}); MNIST and CIFAR-10: "
            "data.image_size=32, image folders: 32, 64 or 128"
        )
    return int(math.log2(image_size)) - 1


def stage_resolution(stage: int) -> int:
    """The side of stage ``stage``'s images: 4·2^stage."""
    return FIRST_RESOLUTION * 2**stage


def stage_channels(resolution: int, *, max_channels: int, halve_above: int) -> int:
    """Feature maps of the block at ``resolution``: ``max_channels`` up to ``halve_above``
    pixels, halved with every doubling above (at least 1)."""
    if resolution <= halve_above:
        return max_channels
    return max(1, max_channels * halve_above // resolution)


def _check_widths(max_channels: int, halve_above: int) -> None:
    if max_channels < 1:
        raise ConfigError(
            f"model.generator.max_channels / model.discriminator.max_channels must be at "
            f"least 1 (got {max_channels}); the paper uses 512"
        )
    if halve_above < FIRST_RESOLUTION:
        raise ConfigError(
            f"halve_above (model.generator / model.discriminator) is the resolution above "
            f"which the widths halve, at least 4 (got {halve_above}); the paper uses 32"
        )


class EqualizedConv2d(Network):
    """A convolution with the equalised learning rate: its stored weight is N(0, 1), scaled
    by ``gain/sqrt(in_channels·kernel²)`` at every forward pass; 'same' padding; bias from 0."""

    def __init__(
        self, *, in_channels: int, out_channels: int, kernel_size: int, gain: float = RELU_GAIN
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(Network):
    """A dense layer with the equalised learning rate: N(0, 1) weights scaled by
    ``gain/sqrt(in_features)`` at run time; bias from 0 (none with ``bias=False``)."""

    def __init__(
        self, *, in_features: int, out_features: int, gain: float = RELU_GAIN, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(Network):
    """Each pixel's feature vector divided by its root mean square over the channels:
    x / sqrt(mean_c x² + eps), so every pixel leaves with unit mean square. (Dimension 1 holds
    the features, for maps [B, C, H, W] and vectors [B, C] alike.)"""

    def __init__(self, *, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(Network):
    """Appends one feature map telling D how varied its batch is.

    The batch is cut into groups of ``group_size`` consecutive images (the paper's 4). In
    each group, the standard deviation of every feature at every pixel is taken over the
    group's images (the population one, sqrt(mean of squared deviations + 1e-8)), averaged
    over features and pixels into one number, and that number becomes a constant extra
    channel of each of the group's images: [B, C, H, W] -> [B, C + 1, H, W]. A generator
    whose images vary less than real ones gives itself away.

    The paper's code needs a batch divisible by the group size; here the images left over
    (fewer than a group) join the last full group, and a batch smaller than a group is one
    group, so any batch works and no group has a single image (unless the batch has one)."""

    def __init__(self, *, group_size: int = 4) -> None:
        super().__init__()
        if group_size < 2:
            raise ConfigError(
                f"model.discriminator.group_size, the images per minibatch-stddev group, must "
                f"be at least 2 (got {group_size}); the paper uses 4"
            )
        self.group_size = group_size

    def group_ids(self, n: int, device: torch.device | None = None) -> Tensor:
        """Each of ``n`` images' group [n]: consecutive runs of ``group_size``, the rest in
        the last group."""
        groups = max(1, n // self.group_size)
        ids = torch.arange(n, device=device) // self.group_size
        return ids.clamp_(max=groups - 1)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        ids = self.group_ids(n, x.device)
        groups = max(1, n // self.group_size)
        sizes = torch.bincount(ids, minlength=groups).to(x.dtype).view(-1, 1, 1, 1)
        mean = x.new_zeros(groups, *x.shape[1:]).index_add(0, ids, x) / sizes
        squared = (x - mean[ids]).square()
        variance = x.new_zeros(groups, *x.shape[1:]).index_add(0, ids, squared) / sizes
        std = (variance + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [groups]
        feature = std[ids].view(n, 1, 1, 1).expand(n, 1, *x.shape[2:])
        return torch.cat([x, feature], dim=1)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(LEAK)


class _FirstGeneratorBlock(nn.Module):
    """z -> 4x4 features: z pixel-normalised, a dense layer to C x 4 x 4 (the paper's 'conv
    4x4' on a 1x1 input) with one bias per channel, then a 3x3 convolution; LeakyReLU and
    pixel norm after each."""

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.norm = PixelNorm()
        self.dense = EqualizedLinear(in_features=latent_dim, out_features=channels * 16, bias=False)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.conv = EqualizedConv2d(in_channels=channels, out_channels=channels, kernel_size=3)
        self.act = _lrelu()

    def forward(self, z: Tensor) -> Tensor:
        h = self.dense(self.norm(z)).view(-1, self.channels, 4, 4) + self.bias.view(1, -1, 1, 1)
        h = self.norm(self.act(h))
        return self.norm(self.act(self.conv(h)))


class _GeneratorBlock(nn.Module):
    """Doubles the resolution: nearest upsampling, then two 3x3 convolutions, LeakyReLU and
    pixel norm after each."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(
            in_channels=in_channels, out_channels=out_channels, kernel_size=3
        )
        self.conv2 = EqualizedConv2d(
            in_channels=out_channels, out_channels=out_channels, kernel_size=3
        )
        self.norm = PixelNorm()
        self.act = _lrelu()

    def forward(self, h: Tensor) -> Tensor:
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.norm(self.act(self.conv1(h)))
        return self.norm(self.act(self.conv2(h)))


class _DiscriminatorBlock(nn.Module):
    """Halves the resolution: two 3x3 convolutions (the second to the lower resolution's
    width), LeakyReLU after each, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = EqualizedConv2d(
            in_channels=in_channels, out_channels=in_channels, kernel_size=3
        )
        self.conv2 = EqualizedConv2d(
            in_channels=in_channels, out_channels=out_channels, kernel_size=3
        )
        self.act = _lrelu()

    def forward(self, h: Tensor) -> Tensor:
        h = self.act(self.conv2(self.act(self.conv1(h))))
        return F.avg_pool2d(h, 2)


class _LastDiscriminatorBlock(nn.Module):
    """4x4 features -> one score: the minibatch-stddev channel, a 3x3 convolution, a dense
    layer from C x 4 x 4 to C (the paper's 'conv 4x4'), LeakyReLU after both, and a linear
    score (gain 1)."""

    def __init__(self, channels: int, group_size: int) -> None:
        super().__init__()
        self.stddev = MinibatchStdDev(group_size=group_size)
        self.conv = EqualizedConv2d(in_channels=channels + 1, out_channels=channels, kernel_size=3)
        self.dense = EqualizedLinear(in_features=channels * 16, out_features=channels)
        self.score = EqualizedLinear(in_features=channels, out_features=1, gain=1.0)
        self.act = _lrelu()

    def forward(self, h: Tensor) -> Tensor:
        h = self.act(self.conv(self.stddev(h)))
        h = self.act(self.dense(h.flatten(1)))
        return self.score(h).squeeze(1)


class ProGenerator(Network):
    """Noise [B, latent_dim] -> images [B, C, r, r] at the stage's resolution r = 4·2^stage.

    ``blocks[0]`` makes 4x4 features from z, ``blocks[k]`` doubles them to 4·2ᵏ, and
    ``to_rgb[k]`` (a 1x1 convolution, linear) turns the features of stage k into an image.
    At stage k with alpha < 1 (a fade) the image is
    (1 − alpha)·upsample(toRGB_{k−1}(h_{k−1})) + alpha·toRGB_k(h_k): the new block enters
    through a residual path whose weight rises from 0 to 1. The output is not squashed:
    real images are in [−1, 1] and G learns that range (``decode`` clamps).
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        image_size: int,
        max_channels: int = 512,
        halve_above: int = 32,
    ) -> None:
        super().__init__()
        self.num_stages = growth_stages(image_size)
        _check_widths(max_channels, halve_above)
        self.latent_dim = latent_dim
        self.image_size = image_size
        widths = [
            stage_channels(stage_resolution(k), max_channels=max_channels, halve_above=halve_above)
            for k in range(self.num_stages)
        ]
        blocks: list[nn.Module] = [_FirstGeneratorBlock(latent_dim, widths[0])]
        blocks += [_GeneratorBlock(a, b) for a, b in zip(widths, widths[1:], strict=False)]
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(
            EqualizedConv2d(in_channels=w, out_channels=channels, kernel_size=1, gain=1.0)
            for w in widths
        )

    def forward(self, z: Tensor, stage: int | None = None, alpha: float = 1.0) -> Tensor:
        """Images at ``stage`` (default: the last, ``image_size``), faded in by ``alpha``."""
        stage = self.num_stages - 1 if stage is None else _checked_stage(stage, self.num_stages)
        h = self.blocks[0](z)
        for k in range(1, stage):
            h = self.blocks[k](h)
        if stage == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[stage](self.blocks[stage](h))
        if alpha >= 1:
            return new
        old = F.interpolate(self.to_rgb[stage - 1](h), scale_factor=2, mode="nearest")
        return torch.lerp(old, new, float(alpha))


class ProDiscriminator(Network):
    """Images [B, C, r, r] at the stage's resolution r = 4·2^stage -> scores [B], the mirror
    of ``ProGenerator``.

    ``from_rgb[k]`` (a 1x1 convolution and LeakyReLU) turns stage k's images into features,
    ``blocks[k]`` halves them to stage k−1, and ``blocks[0]`` scores the 4x4 features (with
    the minibatch-stddev channel). At stage k with alpha < 1 the features entering
    ``blocks[k−1]`` are (1 − alpha)·fromRGB_{k−1}(avgpool(x)) + alpha·blocks[k](fromRGB_k(x)).
    """

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        max_channels: int = 512,
        halve_above: int = 32,
        group_size: int = 4,
    ) -> None:
        super().__init__()
        self.num_stages = growth_stages(image_size)
        _check_widths(max_channels, halve_above)
        self.image_size = image_size
        widths = [
            stage_channels(stage_resolution(k), max_channels=max_channels, halve_above=halve_above)
            for k in range(self.num_stages)
        ]
        blocks: list[nn.Module] = [_LastDiscriminatorBlock(widths[0], group_size)]
        blocks += [_DiscriminatorBlock(b, a) for a, b in zip(widths, widths[1:], strict=False)]
        self.blocks = nn.ModuleList(blocks)
        self.from_rgb = nn.ModuleList(
            nn.Sequential(
                EqualizedConv2d(in_channels=channels, out_channels=w, kernel_size=1), _lrelu()
            )
            for w in widths
        )

    def forward(self, x: Tensor, stage: int | None = None, alpha: float = 1.0) -> Tensor:
        """Scores of images at ``stage``'s resolution (default: the last, ``image_size``)."""
        stage = self.num_stages - 1 if stage is None else _checked_stage(stage, self.num_stages)
        size = stage_resolution(stage)
        if tuple(x.shape[-2:]) != (size, size):
            raise ValueError(
                f"the discriminator at stage {stage} takes {size}x{size} images, got "
                f"{tuple(x.shape[-2:])}"
            )
        h = self.from_rgb[stage](x)
        if stage > 0:
            h = self.blocks[stage](h)
            if alpha < 1:
                old = self.from_rgb[stage - 1](F.avg_pool2d(x, 2))
                h = torch.lerp(old, h, float(alpha))
        for k in range(stage - 1, 0, -1):
            h = self.blocks[k](h)
        return self.blocks[0](h)


def _checked_stage(stage: int, num_stages: int) -> int:
    if not 0 <= stage < num_stages:
        raise ValueError(f"stage must lie in 0..{num_stages - 1} (got {stage})")
    return int(stage)
