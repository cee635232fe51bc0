"""The networks of image-to-image translation: Pix2Pix's U-Net and PatchGAN, CycleGAN's ResNet
generator, and CycleGAN's pool of past fakes. Plain torch; the models that train them live in
genlab.models.

Pix2Pix (Isola et al. 2017, appendix 6.1) translates an image A into B with a U-Net: an
encoder-decoder whose mirrored layers are joined by skip connections, so that the low-level
structure shared by input and output (edges, positions) need not squeeze through the
bottleneck. Its discriminator, the PatchGAN, scores overlapping N×N patches instead of whole
images: the L1 term already gets the low frequencies right, the adversarial term only has to
judge local texture. CycleGAN (Zhu et al. 2017, appendix 7.2) uses the same PatchGAN and a
ResNet generator (Johnson et al. 2016): downsample twice, residual blocks, upsample twice.

Every generator maps images [B, C_in, H, W] in [-1, 1] to images [B, C_out, H, W] in [-1, 1]
(tanh output); the discriminator maps [B, C, H, W] to patch logits [B, 1, h, w] (no sigmoid:
the losses take logits or, for least squares, raw scores). Both papers draw the weights from
N(0, 0.02) (``init: normal``); ``init: default`` keeps PyTorch's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from genlab.errors import CheckpointError, ConfigError
from genlab.nn.network import Network

INITS = ("normal", "default")
GENERATOR_NORMS = ("batch", "instance")
DISCRIMINATOR_NORMS = ("batch", "instance", "none")
# The paper's channel cap: no layer is wider than 8·width.
MAX_WIDTH_FACTOR = 8


# -- shared pieces -----------------------------------------------------------------------------


def _check_choice(value: str, choices: Sequence[str], network: str, option: str) -> None:
    if value not in choices:
        raise ConfigError(
            f"{network}: {option}={value!r} is not one of {', '.join(choices)}; set the "
            f"network's `{option}` (e.g. model.generator.{option} or "
            f"model.discriminator.{option}) to one of them"
        )


def _check_positive(value: int, network: str, option: str, hint: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{network}: {option} must be a positive integer (got {value!r}); {hint}")


def _check_dropout(value: float, network: str) -> None:
    if not 0 <= value < 1:
        raise ConfigError(
            f"{network}: dropout must lie in [0, 1) (got {value}); the papers use 0.5 "
            "(U-Net) and 0 (ResNet generator)"
        )


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        # As CycleGAN's code: no learned scale and shift, no running statistics, so training
        # and evaluation normalise alike, each image by its own statistics.
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


def translation_init(module: nn.Module) -> None:
    """Both papers' initialisation: convolution weights from N(0, 0.02), biases zero, and the
    scales of affine norms from N(1, 0.02). Use with ``module.apply``."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.InstanceNorm2d) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _initialise(network: nn.Module, init: str) -> None:
    if init == "normal":
        network.apply(translation_init)


class NoiseDropout(nn.Module):
    """Dropout that can stay on in evaluation mode.

    Pix2Pix has no input noise z: the generator ignored it in the authors' experiments, and
    dropout in the decoder is the only source of randomness, applied "at both training and
    test time". With ``at_eval`` the layer keeps dropping under ``model.eval()``, so a
    trained generator samples like the paper's; without it, it is ordinary ``nn.Dropout``.
    """

    def __init__(self, p: float, *, at_eval: bool) -> None:
        super().__init__()
        self.p = p
        self.at_eval = at_eval

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, training=self.training or self.at_eval)

    def extra_repr(self) -> str:
        return f"p={self.p}, at_eval={self.at_eval}"


# -- Pix2Pix: U-Net generator ------------------------------------------------------------------


def unet_depth(image_size: int) -> int:
    """The automatic U-Net depth: enough stride-2 layers to bring the image (padded up to the
    next power of two) to 1x1. 256 -> 8, 128 -> 7, 64 -> 6, 32 -> 5, 28 -> 5 (padded to 32)."""
    return max(2, math.ceil(math.log2(image_size)))


class UNetGenerator(Network):
    """Images [B, in_channels, H, W] -> images [B, out_channels, H, W] in [-1, 1] (Pix2Pix).

    Encoder: ``depth`` layers Conv 4x4 stride 2 - Norm - LeakyReLU(0.2), halving the size;
    channels width, 2·width, 4·width, 8·width, then 8·width (capped, as the paper's
    C64-C128-C256-C512-C512-C512-C512-C512). No norm on the first layer (as the paper) nor
    on the innermost one, 1x1 at the automatic depth: batch norm of a 1x1 map at batch 1 would
    zero it (the authors removed it in their code for that reason).

    Decoder: ``depth - 1`` layers ConvTranspose 4x4 stride 2 - Norm - [Dropout] - ReLU, each
    output concatenated with the encoder output of the same size (the skip connection), so a
    layer's input holds twice the channels of its mirror; a last ConvTranspose to
    ``out_channels`` and tanh. The first ``dropout_layers`` decoder layers (3, as the paper's
    CD512-CD1024-CD1024) drop with probability ``dropout``; with ``dropout_at_eval`` they keep
    dropping under ``eval()``, since that dropout is the model's noise. ``skip_channels``
    lists the channels each skip adds.

    ``depth: null`` follows the image size (``unet_depth``): 256 -> 8 layers down to 1x1, as
    the paper; 32 -> 5. A size that is not a power of two (MNIST's 28) is padded up to the
    next multiple of 2^depth by repeating the border pixels, and the output cropped back, so
    the output always has the input's size. Padding was chosen over a shallower net (28 ->
    14 -> 7 and stop): it keeps the paper's 1x1 bottleneck, whose units see the whole image,
    while a 7x7 bottleneck would see 10x10 windows only; MNIST's borders are background,
    so repeating them adds nothing a digit could be confused with. An explicit ``depth``
    between 2 and the automatic one works on any size the same way.

    Where genlab departs from the paper: the activations follow the paper's text (Conv-Norm-
    Act), where the authors' code puts them before each convolution, which only changes
    whether skip features reach the decoder through a LeakyReLU or a ReLU; the number of
    dropout layers is ``min(dropout_layers, depth - 1)`` at every depth, where the authors'
    code drops in ``depth - 5`` layers (none at 32x32, leaving a small U-Net without noise);
    convolutions are without bias before any norm, instance norm included, since its mean
    subtraction cancels a bias exactly (the authors keep it there).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        image_size: int,
        depth: int | None = None,
        width: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_layers: int = 3,
        dropout_at_eval: bool = True,
        init: str = "normal",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_choice(norm, GENERATOR_NORMS, name, "norm")
        _check_choice(init, INITS, name, "init")
        _check_dropout(dropout, name)
        _check_positive(image_size, name, "image_size", "it is data.image_size")
        _check_positive(width, name, "width", "the paper uses 64")
        if not isinstance(dropout_layers, int) or dropout_layers < 0:
            raise ConfigError(
                f"{name}: dropout_layers must be an integer >= 0 (got {dropout_layers!r}); "
                "the paper drops in the first 3 decoder layers"
            )
        auto = unet_depth(image_size)
        if depth is None:
            depth = auto
        elif not isinstance(depth, int) or not 2 <= depth <= auto:
            raise ConfigError(
                f"{name}: depth={depth!r} does not fit image_size {image_size}: it must lie "
                f"between 2 and {auto} (the depth that brings {image_size}x{image_size} to "
                "1x1; deeper would only pad the image); use depth: null for that one"
            )
        self.depth = depth
        self.multiple = 2**depth
        bias = False  # every encoder and decoder convolution is followed by a norm layer

        widths = [width * min(2**i, MAX_WIDTH_FACTOR) for i in range(depth)]
        encoder: list[nn.Module] = []
        for i, channels in enumerate(widths):
            first, innermost = i == 0, i == depth - 1
            plain = first or innermost
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels if first else widths[i - 1], channels, 4, 2, 1, bias=plain),
            ]
            if not plain:
                layers.append(_norm_layer(norm, channels))
            layers.append(nn.LeakyReLU(0.2))
            encoder.append(nn.Sequential(*layers))
        self.encoder = nn.ModuleList(encoder)

        # Decoder layer j brings the map to the size of encoder layer depth-2-j and is joined
        # with that layer's output.
        self.skip_channels = [widths[depth - 2 - j] for j in range(depth - 1)]
        decoder: list[nn.Module] = []
        incoming = widths[-1]
        for j, channels in enumerate(self.skip_channels):
            layers = [
                nn.ConvTranspose2d(incoming, channels, 4, 2, 1, bias=bias),
                _norm_layer(norm, channels),
            ]
            if j < dropout_layers and dropout > 0:
                layers.append(NoiseDropout(dropout, at_eval=dropout_at_eval))
            layers.append(nn.ReLU())
            decoder.append(nn.Sequential(*layers))
            incoming = 2 * channels
        self.decoder = nn.ModuleList(decoder)
        self.output = nn.Sequential(nn.ConvTranspose2d(incoming, out_channels, 4, 2, 1), nn.Tanh())
        _initialise(self, init)

    @property
    def decoder_in_channels(self) -> list[int]:
        """The input channels of each decoder layer and of the output layer: after the
        innermost, a layer's own channels plus its skip's."""
        layers = [block[0] for block in self.decoder] + [self.output[0]]
        return [layer.in_channels for layer in layers]

    def padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) pixels that bring an image to a multiple of 2^depth."""
        pad_h = -height % self.multiple
        pad_w = -width % self.multiple
        return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        left, right, top, bottom = self.padding(height, width)
        padded = left or right or top or bottom
        h = F.pad(x, (left, right, top, bottom), mode="replicate") if padded else x
        skips = []
        for layer in self.encoder:
            h = layer(h)
            skips.append(h)
        skips.pop()  # the innermost output is h itself
        for layer in self.decoder:
            h = torch.cat([layer(h), skips.pop()], dim=1)
        out = self.output(h)
        if padded:
            out = out[..., top : top + height, left : left + width]
        return out


# -- PatchGAN discriminator --------------------------------------------------------------------


def patch_layers(n_layers: int) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) of each convolution of a PatchGAN with ``n_layers``
    stride-2 layers: those, one stride-1 layer, and the stride-1 output layer."""
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ConfigError(
            f"PatchDiscriminator: n_layers must be an integer >= 1 (got {n_layers!r}); 3 "
            "gives the paper's 70x70 patches"
        )
    return [(4, 2, 1)] * n_layers + [(4, 1, 1), (4, 1, 1)]


def receptive_field(n_layers: int) -> int:
    """The side of the input square one output logit of the PatchGAN sees, computed from
    its layers back to front (r ← (r - 1)·stride + kernel): 16, 34, 70, 142 for 1-4."""
    field = 1
    for kernel, stride, _ in reversed(patch_layers(n_layers)):
        field = (field - 1) * stride + kernel
    return field


def patch_output_size(n_layers: int, size: int) -> int:
    """The side of the logit map for an input side ``size`` (0 or less: too small)."""
    for kernel, stride, padding in patch_layers(n_layers):
        size = (size + 2 * padding - kernel) // stride + 1
        if size < 1:
            return 0
    return size


def min_patch_input_size(n_layers: int) -> int:
    """The smallest input side that still gives a 1x1 logit map: each layer needs
    (out - 1)·stride + kernel - 2·padding inputs for ``out`` outputs. 24 for 3 layers."""
    size = 1
    for kernel, stride, padding in reversed(patch_layers(n_layers)):
        size = (size - 1) * stride + kernel - 2 * padding
    return size


class PatchDiscriminator(Network):
    """Images [B, in_channels, H, W] -> patch logits [B, 1, h, w] (Pix2Pix's PatchGAN).

    C64 - C128 - C256 (stride 2), C512 (stride 1), then a stride-1 convolution to one
    channel; 4x4 kernels, LeakyReLU(0.2), no norm on the first layer, channels doubling
    from ``width`` up to 8·width. ``n_layers`` counts the stride-2 layers; each logit sees a
    ``receptive_field(n_layers)`` square of the input: 70x70 for the paper's 3 layers, 34
    for 2, 16 for 1, 142 for 4. Pix2Pix's discriminator is conditional: the model feeds it
    the channel concatenation of (A, B), so ``in_channels`` is the sum of both domains'
    channels; CycleGAN's sees one domain.

    ``image_size`` is checked at construction: an image smaller than
    ``min_patch_input_size(n_layers)`` gives no logit at all (24 for 3 layers). A 28x28
    image with 3 layers gives one 1x1 logit whose 70-pixel field covers the whole image,
    i.e. an image-level discriminator; 2 layers give 5x5 logits on 34-pixel patches.

    Where genlab departs from the paper: none in the layers; convolutions are without bias
    before a norm, instance norm included (its mean subtraction cancels a bias; the
    authors' code keeps it there).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        n_layers: int = 3,
        width: int = 64,
        norm: str = "batch",
        init: str = "normal",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_choice(norm, DISCRIMINATOR_NORMS, name, "norm")
        _check_choice(init, INITS, name, "init")
        _check_positive(width, name, "width", "the paper uses 64")
        plan = patch_layers(n_layers)
        self.n_layers = n_layers
        self.min_size = min_patch_input_size(n_layers)
        if image_size < self.min_size:
            fitting = [n for n in range(1, n_layers) if min_patch_input_size(n) <= image_size]
            hint = (
                f"use n_layers: {fitting[-1]} (patches of {receptive_field(fitting[-1])} pixels)"
                if fitting
                else f"images of at least {min_patch_input_size(1)} pixels are needed"
            )
            raise ConfigError(
                f"{name}: {image_size}x{image_size} images are too small for n_layers="
                f"{n_layers}, which needs at least {self.min_size}x{self.min_size} to give one "
                f"logit; {hint} (model.discriminator.n_layers)"
            )

        bias = norm == "none"
        blocks: list[nn.Module] = []
        channels = in_channels
        # Every layer but the output one: the stride-2 ones, then the stride-1 one.
        for i, (kernel, stride, padding) in enumerate(plan[:-1]):
            out = width * min(2**i, MAX_WIDTH_FACTOR)
            first = i == 0
            blocks.append(nn.Conv2d(channels, out, kernel, stride, padding, bias=first or bias))
            if not first:
                blocks.append(_norm_layer(norm, out))
            blocks.append(nn.LeakyReLU(0.2))
            channels = out
        kernel, stride, padding = plan[-1]
        blocks.append(nn.Conv2d(channels, 1, kernel, stride, padding))
        self.net = nn.Sequential(*blocks)
        _initialise(self, init)

    @property
    def receptive_field(self) -> int:
        """The side of the input square each output logit sees."""
        return receptive_field(self.n_layers)

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"PatchDiscriminator with n_layers={self.n_layers} needs images of at least "
                f"{self.min_size}x{self.min_size}, got {tuple(x.shape[-2:])}"
            )
        return self.net(x)


# -- CycleGAN: ResNet generator ----------------------------------------------------------------


class ResidualBlock(nn.Module):
    """x + F(x), F = reflect-pad, conv 3x3, norm, ReLU, [dropout], reflect-pad, conv 3x3, norm:
    the identity path lets the block start close to the identity."""

    def __init__(self, channels: int, *, norm: str, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            _norm_layer(norm, channels),
            nn.ReLU(),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            _norm_layer(norm, channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(Network):
    """Images [B, in_channels, H, W] -> images [B, out_channels, H, W] in [-1, 1] (CycleGAN,
    after Johnson et al.).

    c7s1-64, d128, d256, R256 × ``n_blocks``, u128, u64, c7s1-3 in the paper's notation:
    a 7x7 convolution on a reflection-padded image, ``n_downsampling`` stride-2 3x3
    convolutions doubling the channels, residual blocks (``ResidualBlock``) at the bottom,
    as many stride-2 transposed convolutions back up, and a 7x7 convolution to
    ``out_channels`` with tanh; every hidden layer Norm - ReLU. The paper uses 6 blocks
    at 128x128 and 9 at 256x256; ``n_blocks`` defaults to 9 and the configs choose.
    H and W must be multiples of 2^n_downsampling (28 with 2: 28 -> 14 -> 7 and back).

    Where genlab departs from the paper: nothing in the layers; convolutions before a norm
    have no bias (instance norm's mean subtraction cancels it), and ``dropout`` (0 by
    default, as the paper) is there because the authors' code offers it too.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        image_size: int,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        width: int = 64,
        norm: str = "instance",
        dropout: float = 0.0,
        init: str = "normal",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_choice(norm, GENERATOR_NORMS, name, "norm")
        _check_choice(init, INITS, name, "init")
        _check_dropout(dropout, name)
        _check_positive(width, name, "width", "the paper uses 64")
        if not isinstance(n_blocks, int) or n_blocks < 0:
            raise ConfigError(
                f"{name}: n_blocks must be an integer >= 0 (got {n_blocks!r}); the paper uses "
                "6 at 128x128 and 9 at 256x256"
            )
        if not isinstance(n_downsampling, int) or n_downsampling < 0:
            raise ConfigError(
                f"{name}: n_downsampling must be an integer >= 0 (got {n_downsampling!r}); "
                "the paper uses 2"
            )
        self.multiple = 2**n_downsampling
        if image_size % self.multiple:
            fitting = max(n for n in range(n_downsampling + 1) if image_size % 2**n == 0)
            raise ConfigError(
                f"{name}: image_size {image_size} is not a multiple of 2^n_downsampling = "
                f"{self.multiple}; use n_downsampling: {fitting} or an image size divisible "
                f"by {self.multiple}"
            )
        self.n_blocks = n_blocks
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, width, 7, bias=False),
            _norm_layer(norm, width),
            nn.ReLU(),
        ]
        channels = width
        for _ in range(n_downsampling):
            layers += [
                nn.Conv2d(channels, 2 * channels, 3, 2, 1, bias=False),
                _norm_layer(norm, 2 * channels),
                nn.ReLU(),
            ]
            channels *= 2
        layers += [ResidualBlock(channels, norm=norm, dropout=dropout) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 3, 2, 1, output_padding=1, bias=False),
                _norm_layer(norm, channels // 2),
                nn.ReLU(),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _initialise(self, init)

    @property
    def blocks(self) -> list[ResidualBlock]:
        """The residual blocks, in order."""
        return [m for m in self.net if isinstance(m, ResidualBlock)]

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        if height % self.multiple or width % self.multiple:
            raise ValueError(
                f"ResnetGenerator needs image sides divisible by {self.multiple}, got "
                f"{height}x{width}"
            )
        return self.net(x)


# -- CycleGAN: the image pool ------------------------------------------------------------------


class ImagePool:
    """A history of generated images for the discriminator (Shrivastava et al. 2017, used by
    CycleGAN with 50 images).

    Showing the discriminator some older fakes, rather than only the latest generator's,
    keeps it from chasing the generator's newest mode and so damps oscillation. ``query``
    goes image by image: while the pool holds fewer than ``size`` images it stores the
    image and returns it; once full, with probability 1/2 it returns a stored image picked
    uniformly and puts the new one in its place, else it returns the new one. ``size`` 0
    turns the pool off (``query`` returns its input).

    Random draws come from the pool's own ``torch.Generator`` when it has a ``seed``, else
    from torch's global generator. Everything the pool returns and stores is detached: it
    feeds the discriminator only. ``state_dict`` holds the stored images (CPU), their count
    and the pool's own generator state, so a resumed run continues exactly.
    """

    def __init__(self, size: int = 50, *, seed: int | None = None) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ConfigError(
                f"the image pool size must be an integer >= 0 (got {size!r}); CycleGAN uses "
                "50, and 0 turns the pool off"
            )
        self.size = size
        self.images: list[Tensor] = []
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        """``images`` [B, ...] -> [B, ...]: for each, itself or a stored image (see class)."""
        images = images.detach()
        if self.size == 0:
            return images
        returned = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                returned.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator).item())
                returned.append(self.images[index].to(image.device, image.dtype))
                self.images[index] = image.clone()
            else:
                returned.append(image)
        return torch.stack(returned)

    def state_dict(self) -> dict[str, Any]:
        """The stored images [count, ...] on the CPU, their count, the size and the state of
        the pool's own generator (None without a seed)."""
        stored = torch.stack([i.cpu() for i in self.images]) if self.images else torch.empty(0)
        return {
            "size": self.size,
            "count": len(self.images),
            "images": stored,
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; the images stay on the CPU until queried
        with images on another device, which takes them there one by one as they leave."""
        if state["size"] != self.size:
            raise CheckpointError(
                f"the checkpoint's image pool has size {state['size']} but this model's has "
                f"{self.size}; resume with the pool size the run was trained with"
            )
        count = int(state["count"])
        images = state["images"]
        if len(images) != count:
            raise CheckpointError(
                f"the checkpoint's image pool says it holds {count} images but has "
                f"{len(images)}; the checkpoint is damaged"
            )
        self.images = [image.clone() for image in images[:count]]
        generator_state = state.get("generator")
        if generator_state is not None:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(generator_state)
