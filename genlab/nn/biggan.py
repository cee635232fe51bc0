"""BigGAN's networks (Brock et al. 2019, section 3 and appendix B): a class-conditional
residual generator and a projection discriminator. Plain torch; genlab.models.gans.biggan
trains them.

The generator splits z into one chunk per place it enters (the hierarchical latent,
"skip-z"): the first chunk goes through a dense layer to the 4x4 starting map, and each
residual up-block receives [shared class embedding ; its own chunk]. A block turns that
vector, through two linear layers, into the gains (1 + ...) and biases of its
class-conditional batch norms (batch norm without its own affine parameters), so the class
and the noise steer every resolution, not just the first layer. The embedding is one table
shared by all blocks, which is cheaper than a table per norm layer and, as the paper found,
trains faster.

The discriminator is a stack of residual down-blocks ending in global sum pooling to a
feature vector h(x); its score is a linear function of h plus the projection term
<embed(y), h(x)> of Miyato & Koyama (2018), which compares the features with a learned
vector of the claimed class instead of concatenating the label to the input.

Both networks put one self-attention block (SAGAN's, genlab.nn.gan.SelfAttention) at a
configurable resolution, spectrally normalise every convolution and linear layer (and D's
class embedding), and start from orthogonal weights, as the paper does. The one weight left
without spectral norm is G's shared embedding: it is a lookup table, not a layer whose
Lipschitz constant matters, and the authors' code leaves it plain too, noting that
normalising it hurt G.

The channel layouts, as multiples of ``width`` (the paper's ch, 96 at 128 px), follow the
paper's table for 128 px and the authors' code for 32 and 64 px:

| size | G: dense to 4x4, then up-blocks | D: blocks (↓ halves the size) |
|------|---------------------------------|-------------------------------|
| 32   | 4 → 4, 4, 4                     | 4↓, 4↓, 4, 4                  |
| 64   | 16 → 16, 8, 4, 2                | 1↓, 2↓, 4↓, 8↓, 16            |
| 128  | 16 → 16, 8, 4, 2, 1             | 1↓, 2↓, 4↓, 8↓, 16↓, 16       |

Labels are class indices [B] (int64), looked up in the embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from genlab.errors import ConfigError
from genlab.nn.gan import SelfAttention
from genlab.nn.network import Network

# The size of the generator's first feature map, and so the discriminator's smallest.
START_SIZE = 4
# Image size -> (channels of the dense layer's map, output channels of each up-block), in
# units of width.
GENERATOR_LAYOUTS: dict[int, tuple[int, tuple[int, ...]]] = {
    32: (4, (4, 4, 4)),
    64: (16, (16, 8, 4, 2)),
    128: (16, (16, 8, 4, 2, 1)),
}
# Image size -> output channels of each down-block (in units of width) and whether it halves
# the size.
DISCRIMINATOR_LAYOUTS: dict[int, tuple[tuple[int, ...], tuple[bool, ...]]] = {
    32: ((4, 4, 4, 4), (True, True, False, False)),
    64: ((1, 2, 4, 8, 16), (True, True, True, True, False)),
    128: ((1, 2, 4, 8, 16, 16), (True, True, True, True, True, False)),
}


def _check_size(image_size: int, network: str) -> None:
    if image_size not in GENERATOR_LAYOUTS:
        sizes = ", ".join(str(s) for s in GENERATOR_LAYOUTS)
        hint = (
            "; MNIST's 28x28 digits are resized by the data module: set data.image_size=32"
            if image_size < 32
            else f"; set data.image_size to one of {sizes}"
        )
        raise ConfigError(
            f"BigGAN's {network} has architectures for {sizes} pixels, not "
            f"data.image_size={image_size}{hint}"
        )


def _attention_at(resolution: int | None, sizes: Sequence[int], network: str) -> int | None:
    """The index of the first block whose output is ``resolution`` pixels wide; None for no
    attention. A resolution no block produces is a ConfigError listing those that are."""
    if resolution is None:
        return None
    if resolution in sizes:
        return list(sizes).index(resolution)
    choices = ", ".join(str(s) for s in dict.fromkeys(sizes))
    raise ConfigError(
        f"model.{network}.attention_resolution={resolution} is not a resolution of its "
        f"blocks at this image size; choose one of {choices}, or null for no self-attention"
    )


def _orthogonal_then_normalised(
    network: nn.Module, *, spectral: bool, unnormalised: Sequence[nn.Module] = ()
) -> None:
    """Orthogonal initial weights for every convolution, linear layer and embedding of
    ``network`` (Saxe et al., as BigGAN), then spectral norm on each (when ``spectral``)
    except the modules in ``unnormalised``. Biases keep PyTorch's initialisation."""
    layers = [m for m in network.modules() if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding)]
    for layer in layers:
        # Initialised before the norm is attached, so its power iteration starts from the
        # final weight.
        with torch.no_grad():
            nn.init.orthogonal_(layer.weight)
        if spectral and not any(layer is m for m in unnormalised):
            spectral_norm(layer)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose per-channel gain and bias come from a condition vector.

    x [B, C, H, W] and c [B, D] -> (1 + W_γ c) ⊙ BN(x) + W_β c, with BN without affine
    parameters and W_γ, W_β linear maps without bias: at c = 0 the layer is a plain batch
    norm, so the condition shifts the network away from it rather than having to learn
    gains of one from scratch.
    """

    def __init__(self, channels: int, condition_dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(condition_dim, channels, bias=False)
        self.bias = nn.Linear(condition_dim, channels, bias=False)

    def gains_and_biases(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """The gains 1 + W_γ c and biases W_β c, each [B, C]."""
        return 1 + self.gain(c), self.bias(c)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        gain, bias = self.gains_and_biases(c)
        return self.norm(x) * gain[:, :, None, None] + bias[:, :, None, None]


class GeneratorBlock(nn.Module):
    """BigGAN's residual up-block (the paper's figure 15b): CBN, ReLU, 2x nearest upsampling,
    conv 3x3, CBN, ReLU, conv 3x3; the skip path upsamples and maps the channels with a
    1x1 convolution. Both norms take the block's condition c."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int) -> None:
        super().__init__()
        self.norm1 = ConditionalBatchNorm(in_channels, condition_dim)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ConditionalBatchNorm(out_channels, condition_dim)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.norm1(x, c)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), c)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DiscriminatorBlock(nn.Module):
    """BigGAN's residual down-block (figure 15c): ReLU, conv 3x3, ReLU, conv 3x3, then 2x2
    average pooling when it ``downsample``s. The skip path is a learned 1x1 convolution
    where the block pools or changes the channels, else the identity. The first block of
    D sees the image itself and omits its leading ReLU (``preactivation=False``); it pools
    its skip path before the 1x1 convolution (cheaper on the full-size image), the others
    after, as the authors' code does."""

    def __init__(
        self, in_channels: int, out_channels: int, *, downsample: bool, preactivation: bool
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.preactivation = preactivation
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        learned = downsample or in_channels != out_channels
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if learned else None

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.skip is None:
            return x
        return self._pool(self.skip(x)) if self.preactivation else self.skip(self._pool(x))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        return h + self._shortcut(x)


class BigGenerator(Network):
    """Noise z [B, latent_dim] and class indices y [B] -> images [B, C, S, S] in [-1, 1].

    z is split into 1 + (number of up-blocks) equal chunks, so ``latent_dim`` must divide by
    that count (4 at 32 px, 5 at 64, 6 at 128; the paper's 120 divides by all three). The
    first chunk feeds a dense layer to a 4x4 map of ``width``·m₀ channels; block i is
    conditioned on [embed(y) ; chunk i+1], embed being the shared class embedding of
    ``embedding_dim`` values. After the block at ``attention_resolution`` (null: none) sits
    a self-attention block; the output is BN, ReLU, conv 3x3 to C channels and tanh.
    ``spectral`` (true) spectrally normalises every convolution and linear layer.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        image_size: int,
        num_classes: int,
        width: int = 32,
        embedding_dim: int = 128,
        attention_resolution: int | None = 16,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        _check_size(image_size, "generator")
        start, multipliers = GENERATOR_LAYOUTS[image_size]
        chunks = len(multipliers) + 1
        if latent_dim % chunks:
            raise ConfigError(
                f"model.latent_dim={latent_dim} does not split into {chunks} equal chunks, one "
                f"for BigGAN's dense layer and one per up-block at {image_size} px; use a "
                f"multiple of {chunks}, e.g. 120 (the paper's, which fits 32, 64 and 128 px)"
            )
        for name, value in (("width", width), ("embedding_dim", embedding_dim)):
            if value < 1:
                raise ConfigError(f"model.generator.{name} must be at least 1 (got {value})")
        sizes = [START_SIZE * 2 ** (i + 1) for i in range(len(multipliers))]
        attend = _attention_at(attention_resolution, sizes, "generator")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.chunk_size = latent_dim // chunks
        self.start_channels = start * width
        self.shared = nn.Embedding(num_classes, embedding_dim)
        self.dense = nn.Linear(self.chunk_size, self.start_channels * START_SIZE**2)
        condition_dim = embedding_dim + self.chunk_size
        ins = [start * width] + [m * width for m in multipliers[:-1]]
        self.blocks = nn.ModuleList(
            GeneratorBlock(i, m * width, condition_dim)
            for i, m in zip(ins, multipliers, strict=True)
        )
        self.attention_index = attend
        self.attention = (
            SelfAttention(channels=multipliers[attend] * width) if attend is not None else None
        )
        last = multipliers[-1] * width
        self.output = nn.Sequential(
            nn.BatchNorm2d(last), nn.ReLU(), nn.Conv2d(last, channels, 3, padding=1), nn.Tanh()
        )
        _orthogonal_then_normalised(self, spectral=spectral, unnormalised=[self.shared])

    @property
    def condition_dim(self) -> int:
        """The size of the one-hot label the class indices stand for: genlab's conditional
        GANs check it against ``model.num_classes``."""
        return self.num_classes

    def block_conditions(self, z: Tensor, y: Tensor) -> list[Tensor]:
        """The condition of each up-block: [embed(y) ; its chunk of z], each [B, D]."""
        embedded = self.shared(y)
        chunks = z.split(self.chunk_size, dim=1)[1:]
        return [torch.cat([embedded, chunk], dim=1) for chunk in chunks]

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        first = z[:, : self.chunk_size]
        h = self.dense(first).view(-1, self.start_channels, START_SIZE, START_SIZE)
        for i, (block, c) in enumerate(zip(self.blocks, self.block_conditions(z, y), strict=True)):
            h = block(h, c)
            if i == self.attention_index:
                h = self.attention(h)
        return self.output(h)


class BigDiscriminator(Network):
    """Images x [B, C, S, S] in [-1, 1] and class indices y [B] -> scores [B].

    Residual down-blocks (the first without its leading ReLU), a self-attention block after
    the first block at ``attention_resolution`` (null: none), ReLU and a sum over the pixels
    give the features h(x) [B, F]; the score is w·h(x) + b + <embed(y), h(x)>, the
    projection discriminator. ``spectral`` (true) spectrally normalises every convolution,
    the linear output and the class embedding.
    """

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        num_classes: int,
        width: int = 32,
        attention_resolution: int | None = 16,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        _check_size(image_size, "discriminator")
        if width < 1:
            raise ConfigError(f"model.discriminator.width must be at least 1 (got {width})")
        multipliers, downsample = DISCRIMINATOR_LAYOUTS[image_size]
        sizes, size = [], image_size
        for down in downsample:
            size = size // 2 if down else size
            sizes.append(size)
        self.attention_index = _attention_at(attention_resolution, sizes, "discriminator")
        self.num_classes = num_classes
        outs = [m * width for m in multipliers]
        ins = [channels, *outs[:-1]]
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(i, o, downsample=down, preactivation=k > 0)
            for k, (i, o, down) in enumerate(zip(ins, outs, downsample, strict=True))
        )
        self.attention = (
            SelfAttention(channels=outs[self.attention_index])
            if self.attention_index is not None
            else None
        )
        self.linear = nn.Linear(outs[-1], 1)
        self.embed = nn.Embedding(num_classes, outs[-1])
        _orthogonal_then_normalised(self, spectral=spectral)

    @property
    def condition_dim(self) -> int:
        """The size of the one-hot label the class indices stand for: genlab's conditional
        GANs check it against ``model.num_classes``."""
        return self.num_classes

    def features(self, x: Tensor) -> Tensor:
        """h(x) [B, F]: the blocks, ReLU, and the sum over the pixels."""
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.attention_index:
                h = self.attention(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.features(x)
        projection = (self.embed(y) * h).sum(dim=1)
        return self.linear(h).squeeze(1) + projection


def embedding_parameters(network: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters of every embedding table in ``network`` (a spectrally normalised
    one's stored original included)."""
    for module in network.modules():
        if isinstance(module, nn.Embedding):
            yield from module.parameters()
