"""The networks of Pix2Pix and CycleGAN and the image pool: the U-Net's shapes, depth, skip
connections and test-time dropout; the PatchGAN's receptive field, computed and measured; the
ResNet generator's shapes and blocks; the pool's fill-then-swap rule, its statistics and its
state round trip; both papers' initialisation; and the options' errors."""

from __future__ import annotations

import io

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from genlab.errors import CheckpointError, ConfigError
from genlab.nn.translation import (
    ImagePool,
    NoiseDropout,
    PatchDiscriminator,
    ResidualBlock,
    ResnetGenerator,
    UNetGenerator,
    min_patch_input_size,
    patch_output_size,
    receptive_field,
    unet_depth,
)

# -- U-Net ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "depth", "batch", "width"),
    [(28, 5, 2, 16), (32, 5, 2, 16), (64, 6, 2, 16), (256, 8, 1, 8)],
)
def test_unet_output_has_the_input_size(size: int, depth: int, batch: int, width: int) -> None:
    torch.manual_seed(0)
    net = UNetGenerator(in_channels=1, out_channels=3, image_size=size, width=width)
    assert net.depth == depth == unet_depth(size)
    out = net(torch.randn(batch, 1, size, size))
    assert out.shape == (batch, 3, size, size)
    assert out.abs().max() <= 1


def test_unet_pads_sizes_that_are_not_powers_of_two() -> None:
    net = UNetGenerator(in_channels=1, out_channels=1, image_size=28, width=8)
    assert net.padding(28, 28) == (2, 2, 2, 2)  # 28 -> 32, centred
    assert net.padding(32, 32) == (0, 0, 0, 0)
    # A shallower explicit depth needs no padding at 28 (28 -> 14 -> 7) and keeps the size.
    shallow = UNetGenerator(in_channels=1, out_channels=1, image_size=28, width=8, depth=2)
    assert shallow.padding(28, 28) == (0, 0, 0, 0)
    assert shallow(torch.randn(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    # Non-square and odd sizes come back at their own size too.
    assert net(torch.randn(1, 1, 28, 20)).shape == (1, 1, 28, 20)
    assert net(torch.randn(1, 1, 27, 33)).shape == (1, 1, 27, 33)


def test_unet_paper_channels_at_256() -> None:
    """The paper's 256x256 U-Net: encoder C64-C128-C256-C512-C512-C512-C512-C512, decoder
    CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128 counting the concatenated skips."""
    with torch.device("meta"):
        net = UNetGenerator(in_channels=3, out_channels=3, image_size=256)
    encoder = [block[0].out_channels for block in net.encoder]
    assert encoder == [64, 128, 256, 512, 512, 512, 512, 512]
    assert net.decoder_in_channels == [512, 1024, 1024, 1024, 1024, 512, 256, 128]
    # Every decoder layer after the innermost takes its own output plus its mirror's.
    assert net.skip_channels == [512, 512, 512, 512, 256, 128, 64]
    assert net.decoder_in_channels[1:] == [2 * c for c in net.skip_channels]
    dropping = [any(isinstance(m, NoiseDropout) for m in block) for block in net.decoder]
    assert dropping == [True, True, True, False, False, False, False]
    # No norm on the first and the innermost encoder layers, a norm everywhere in between.
    has_norm = [any(isinstance(m, nn.BatchNorm2d) for m in block) for block in net.encoder]
    assert has_norm == [False, True, True, True, True, True, True, False]
    # No bias before a batch norm; the output layer has one.
    assert all(block[0].bias is None for block in net.decoder)
    assert net.output[0].bias is not None


def test_unet_skip_connections_carry_the_input() -> None:
    """With the innermost encoder layer zeroed, nothing reaches the decoder through the
    bottleneck: the output still follows the input only through the skips."""
    torch.manual_seed(0)
    net = UNetGenerator(
        in_channels=1, out_channels=1, image_size=32, width=8, norm="instance", dropout=0.0
    ).eval()
    innermost = net.encoder[-1][0]
    with torch.no_grad():
        innermost.weight.zero_()
        innermost.bias.zero_()
        a, b = torch.randn(1, 1, 32, 32), torch.randn(1, 1, 32, 32)
        assert net.encoder[-1](torch.randn(1, innermost.in_channels, 2, 2)).abs().max() == 0
        assert not torch.allclose(net(a), net(b), atol=1e-4)


def test_unet_dropout_stays_on_in_eval_when_asked() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 32)
    noisy = UNetGenerator(in_channels=1, out_channels=1, image_size=32, width=8).eval()
    with torch.no_grad():
        assert not torch.allclose(noisy(x), noisy(x))
    plain = UNetGenerator(
        in_channels=1, out_channels=1, image_size=32, width=8, dropout_at_eval=False
    ).eval()
    with torch.no_grad():
        assert torch.equal(plain(x), plain(x))
        plain.train()
        assert not torch.allclose(plain(x), plain(x))
    none = UNetGenerator(in_channels=1, out_channels=1, image_size=32, width=8, dropout=0.0)
    assert not any(isinstance(m, NoiseDropout) for m in none.modules())
    # At depth 2 only one decoder layer precedes the output: at most one dropout.
    shallow = UNetGenerator(in_channels=1, out_channels=1, image_size=28, width=8, depth=2)
    assert sum(isinstance(m, NoiseDropout) for m in shallow.modules()) == 1


def test_unet_instance_norm_has_no_affine_or_running_stats() -> None:
    net = UNetGenerator(in_channels=1, out_channels=1, image_size=32, width=8, norm="instance")
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and not any(m.affine or m.track_running_stats for m in norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": 6}, "between 2 and 5"),
        ({"depth": 1}, "between 2 and 5"),
        ({"norm": "layer"}, "norm='layer' is not one of batch, instance"),
        ({"dropout": 1.0}, "dropout must lie in [0, 1)"),
        ({"init": "xavier"}, "init='xavier'"),
        ({"width": 0}, "width must be a positive integer"),
    ],
)
def test_unet_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        UNetGenerator(in_channels=1, out_channels=1, image_size=28, **options)


# -- PatchGAN ------------------------------------------------------------------------------------


def test_receptive_field_computed_from_the_layers() -> None:
    assert [receptive_field(n) for n in (1, 2, 3, 4)] == [16, 34, 70, 142]
    net = PatchDiscriminator(in_channels=6, image_size=256)
    assert net.receptive_field == 70
    # The paper's C64-C128-C256-C512 and the 1-channel output, 4x4 kernels throughout.
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
def test_receptive_field_measured(n_layers: int) -> None:
    """The input pixels one logit depends on (its gradient), on a net with positive weights
    and no norm: a square as wide as the computed receptive field."""
    field = receptive_field(n_layers)
    size = 2 * field + 2 ** (n_layers + 1)
    net = PatchDiscriminator(
        in_channels=1, image_size=size, n_layers=n_layers, width=2, norm="none"
    ).double()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(0.1)
                module.bias.zero_()
    x = torch.rand(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = net(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    seen = x.grad[0, 0] != 0
    rows = seen.any(dim=1).nonzero().flatten()
    cols = seen.any(dim=0).nonzero().flatten()
    # Away from the border (no padding inside the field), contiguous and field wide.
    assert rows.min() > 0 and rows.max() < size - 1
    assert rows.max() - rows.min() + 1 == field == len(rows)
    assert cols.max() - cols.min() + 1 == field == len(cols)
    assert seen.sum() == field * field


@pytest.mark.parametrize(("size", "n_layers"), [(256, 3), (64, 3), (28, 3), (28, 2), (24, 3)])
def test_patch_output_shape(size: int, n_layers: int) -> None:
    net = PatchDiscriminator(in_channels=2, image_size=size, n_layers=n_layers, width=8)
    out = net(torch.randn(2, 2, size, size))
    side = patch_output_size(n_layers, size)
    assert out.shape == (2, 1, side, side)
    assert side == {(256, 3): 30, (64, 3): 6, (28, 3): 1, (28, 2): 5, (24, 3): 1}[size, n_layers]


def test_patch_discriminator_refuses_too_small_images() -> None:
    assert min_patch_input_size(3) == 24
    assert patch_output_size(3, 23) == 0
    with pytest.raises(ConfigError, match=r"20x20 .* n_layers=3.* 24x24.*n_layers: 2"):
        PatchDiscriminator(in_channels=2, image_size=20)
    with pytest.raises(ConfigError, match="at least 6 pixels"):
        PatchDiscriminator(in_channels=2, image_size=5, n_layers=1)
    net = PatchDiscriminator(in_channels=2, image_size=28, width=8)
    with pytest.raises(ValueError, match="at least 24x24"):
        net(torch.randn(1, 2, 16, 16))
    with pytest.raises(ConfigError, match="n_layers must be an integer >= 1"):
        PatchDiscriminator(in_channels=2, image_size=28, n_layers=0)


def test_patch_discriminator_norms() -> None:
    def norms(norm: str) -> list[type]:
        net = PatchDiscriminator(in_channels=2, image_size=64, width=8, norm=norm)
        return [type(m) for m in net.net if isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d)]

    assert norms("batch") == [nn.BatchNorm2d] * 3  # none on the first layer
    assert norms("instance") == [nn.InstanceNorm2d] * 3
    assert norms("none") == []
    with pytest.raises(ConfigError, match="norm='layer'"):
        PatchDiscriminator(in_channels=2, image_size=64, norm="layer")


# -- ResNet generator ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 32, 64])
def test_resnet_generator_shapes(size: int) -> None:
    torch.manual_seed(0)
    net = ResnetGenerator(in_channels=1, out_channels=3, image_size=size, n_blocks=6, width=8)
    out = net(torch.randn(2, 1, size, size))
    assert out.shape == (2, 3, size, size)
    assert out.abs().max() <= 1


def test_resnet_generator_blocks_and_layers() -> None:
    for n_blocks in (6, 9):
        net = ResnetGenerator(in_channels=3, out_channels=3, image_size=64, n_blocks=n_blocks)
        assert len(net.blocks) == n_blocks
        assert sum(isinstance(m, ResidualBlock) for m in net.modules()) == n_blocks
    # c7s1-64, d128, d256, R256, u128, u64, c7s1-3
    convs = [m for m in net.net if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert [(c.kernel_size[0], c.stride[0], c.out_channels) for c in convs] == [
        (7, 1, 64),
        (3, 2, 128),
        (3, 2, 256),
        (3, 2, 128),
        (3, 2, 64),
        (7, 1, 3),
    ]
    assert all(b.body[1].in_channels == 256 for b in net.blocks)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in net.modules()) == 2 + 2 * 9
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 5 + 2 * 9 and not any(m.affine for m in norms)


def test_resnet_block_is_residual() -> None:
    block = ResidualBlock(4, norm="instance", dropout=0.0)
    with torch.no_grad():
        block.body[-2].weight.zero_()  # the second convolution: F(x) = norm(0) = 0
        x = torch.randn(2, 4, 7, 7)
        assert torch.equal(block(x), x)


def test_resnet_generator_size_checks() -> None:
    with pytest.raises(ConfigError, match="not a multiple of 2\\^n_downsampling = 4.*n_down"):
        ResnetGenerator(in_channels=1, out_channels=1, image_size=30)
    net = ResnetGenerator(in_channels=1, out_channels=1, image_size=30, n_downsampling=1)
    assert net(torch.randn(1, 1, 30, 30)).shape == (1, 1, 30, 30)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 1, 31, 31))
    with pytest.raises(ConfigError, match="n_blocks must be an integer >= 0"):
        ResnetGenerator(in_channels=1, out_channels=1, image_size=32, n_blocks=-1)
    with pytest.raises(ConfigError, match="dropout"):
        ResnetGenerator(in_channels=1, out_channels=1, image_size=32, dropout=-0.1)
    dropping = ResnetGenerator(
        in_channels=1, out_channels=1, image_size=32, n_blocks=2, dropout=0.5
    )
    assert sum(isinstance(m, nn.Dropout) for m in dropping.modules()) == 2


# -- initialisation and rebuilding ---------------------------------------------------------------


def _conv_weights(net: nn.Module) -> torch.Tensor:
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    return torch.cat([c.weight.flatten() for c in convs])


@pytest.mark.parametrize(
    "build",
    [
        lambda init: UNetGenerator(
            in_channels=3, out_channels=3, image_size=64, width=16, init=init
        ),
        lambda init: PatchDiscriminator(in_channels=6, image_size=64, width=16, init=init),
        lambda init: ResnetGenerator(
            in_channels=3,
            out_channels=3,
            image_size=32,
            n_blocks=2,
            width=16,
            init=init,
            norm="batch",
        ),
    ],
    ids=["unet", "patch", "resnet"],
)
def test_normal_init_statistics(build) -> None:
    torch.manual_seed(0)
    net = build("normal")
    weights = _conv_weights(net)
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert abs(weights.mean().item()) < 1e-3
    biases = [m.bias for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert all(torch.all(b == 0) for b in biases if b is not None)
    scales = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01)
    assert scales.std().item() == pytest.approx(0.02, rel=0.25)
    # PyTorch's default init: norm scales at 1, biases drawn, the spread set by fan-in.
    default = build("default")
    assert all(torch.all(m.weight == 1) for m in default.modules() if isinstance(m, nn.BatchNorm2d))
    biases = [m.bias for m in default.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert any(torch.any(b != 0) for b in biases if b is not None)


def test_networks_rebuild_from_their_build_config() -> None:
    nets = [
        UNetGenerator(in_channels=1, out_channels=2, image_size=28, width=8, norm="instance"),
        PatchDiscriminator(in_channels=3, image_size=28, n_layers=2, width=8),
        ResnetGenerator(in_channels=1, out_channels=1, image_size=28, n_blocks=3, width=8),
    ]
    for net in nets:
        config = net.build_config()
        copy = instantiate(config)
        assert type(copy) is type(net)
        copy.load_state_dict(net.state_dict())  # same parameters and buffers, same shapes
        assert copy.build_config() == config


# -- image pool ----------------------------------------------------------------------------------


def tagged(*tags: float) -> torch.Tensor:
    """Images [len(tags), 1, 2, 2] filled with their tag, to tell them apart."""
    return torch.tensor(tags, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()


def tags(images: torch.Tensor | list[torch.Tensor]) -> list[float]:
    return [float(image.flatten()[0]) for image in images]


def test_pool_returns_new_images_until_full() -> None:
    pool = ImagePool(5, seed=0)
    assert tags(pool.query(tagged(0, 1, 2))) == [0, 1, 2]
    assert tags(pool.query(tagged(3, 4))) == [3, 4]
    assert len(pool) == 5 and tags(pool.images) == [0, 1, 2, 3, 4]


def test_pool_swaps_with_probability_one_half() -> None:
    """Once full, each query returns the new image (pool unchanged) or a stored one, whose
    place the new image takes; the swaps happen about half the time."""
    size, queries = 10, 4000
    pool = ImagePool(size, seed=123)
    pool.query(tagged(*range(size)))
    swapped = 0
    for k in range(size, size + queries):
        before = tags(pool.images)
        (returned,) = tags(pool.query(tagged(k)))
        after = tags(pool.images)
        if returned == k:
            assert after == before
        else:
            swapped += 1
            index = before.index(returned)
            assert after == before[:index] + [k] + before[index + 1 :]
    # Binomial(4000, 1/2): standard deviation ~32 swaps; 5 sigma is 160.
    assert abs(swapped - queries / 2) < 160
    # The stored images are spread over the pool's slots, not always the same one.
    assert len(set(tags(pool.images))) == size and max(tags(pool.images)) > size


def test_pool_batch_queries_go_image_by_image() -> None:
    pool = ImagePool(3, seed=1)
    # Part of the batch fills the pool, the rest is already subject to swaps.
    out = tags(pool.query(tagged(0, 1, 2, 3, 4, 5, 6, 7)))
    assert out[:3] == [0, 1, 2]
    assert all(t in {0, 1, 2, 3, 4, 5, 6, 7} for t in out)
    # Each image is returned or stored, the first three both (while filling); a stored image
    # leaves the pool only by being returned: nothing is lost or duplicated.
    assert sorted(out + tags(pool.images)) == sorted([*range(8), 0, 1, 2])


def test_pool_is_reproducible_and_detached() -> None:
    def run(pool: ImagePool) -> list[float]:
        return [t for k in range(40) for t in tags(pool.query(tagged(k, k + 0.5)))]

    assert run(ImagePool(4, seed=7)) == run(ImagePool(4, seed=7))
    assert run(ImagePool(4, seed=7)) != run(ImagePool(4, seed=8))
    # Without a seed, torch's global generator decides.
    torch.manual_seed(3)
    first = run(ImagePool(4))
    torch.manual_seed(3)
    assert run(ImagePool(4)) == first

    fake = tagged(1, 2).requires_grad_()
    pool = ImagePool(1, seed=0)
    assert not pool.query(fake * 2).requires_grad
    assert not pool.images[0].requires_grad


def test_pool_of_size_zero_passes_images_through() -> None:
    pool = ImagePool(0)
    images = torch.randn(3, 1, 4, 4)
    assert torch.equal(pool.query(images), images)
    assert len(pool) == 0
    with pytest.raises(ConfigError, match="pool size must be an integer >= 0"):
        ImagePool(-1)


def test_pool_state_dict_round_trip() -> None:
    pool = ImagePool(6, seed=5)
    for k in range(10):
        pool.query(tagged(k))
    state = pool.state_dict()
    assert state["count"] == 6 and state["images"].shape == (6, 1, 2, 2)
    assert state["images"].device.type == "cpu"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = ImagePool(6, seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert tags(restored.images) == tags(pool.images)
    # Same stored images and same generator state: the same answers from here on.
    for k in range(10, 40):
        assert tags(restored.query(tagged(k))) == tags(pool.query(tagged(k)))
    assert tags(restored.images) == tags(pool.images)

    partial = ImagePool(6, seed=0)
    partial.query(tagged(1, 2))
    empty = ImagePool(6, seed=0)
    empty.load_state_dict(partial.state_dict())
    assert tags(empty.images) == [1, 2]
    assert tags(empty.query(tagged(3))) == [3]  # still filling
    fresh = ImagePool(6)
    fresh.load_state_dict(ImagePool(6).state_dict())
    assert len(fresh) == 0
    with pytest.raises(CheckpointError, match="size 6 but this model's has 4"):
        ImagePool(4).load_state_dict(state)
