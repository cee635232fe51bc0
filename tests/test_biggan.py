"""BigGAN: conditional batch norm and the hierarchical latent, the projection discriminator,
the orthogonality penalty against hand computations, the architectures and their errors,
the config's settings, the D/G step rhythm, and training, sampling one class and the
per-class grid through `genlab train` and `genlab sample`."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST, new_run
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from genlab.commands.common import CONFIG_DIR
from genlab.data import ImageDataModule
from genlab.errors import ConfigError
from genlab.models.capabilities import Conditional, HasPrior
from genlab.models.gans import BigGAN
from genlab.models.gans.biggan import off_diagonal_orthogonality
from genlab.nn.biggan import (
    BigDiscriminator,
    BigGenerator,
    ConditionalBatchNorm,
    DiscriminatorBlock,
    GeneratorBlock,
)
from genlab.nn.gan import MLPGenerator, SelfAttention

ADAM = functools.partial(torch.optim.Adam, lr=1e-4, betas=(0.0, 0.999))
# Narrow networks for the training tests.
TINY = ["model.generator.width=4", "model.discriminator.width=4", "model.ema_start=0"]


def networks(size: int = 32, *, width: int = 4, latent_dim: int = 120, **options):
    """A small (G, D) pair for grey images of ``size`` pixels and 10 classes."""
    g = BigGenerator(
        latent_dim=latent_dim, channels=1, image_size=size, num_classes=10, width=width, **options
    )
    d = BigDiscriminator(channels=1, image_size=size, num_classes=10, width=width, **options)
    return g, d


def small_biggan(**kwargs) -> BigGAN:
    g, d = networks()
    options = {"optimizer_g": ADAM, "optimizer_d": ADAM, "loss": "hinge", **kwargs}
    return BigGAN(generator=g, discriminator=d, image_size=32, latent_dim=120, **options)


def model_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=["data=mnist", "model=biggan", *overrides])


def build(*overrides: str) -> BigGAN:
    try:
        return instantiate(model_config(*overrides).model)
    except InstantiationException as exc:
        raise (exc.__cause__ or exc) from None


# Conditional batch norm and the hierarchical latent


def test_conditional_batch_norm_is_a_batch_norm_scaled_and_shifted_by_the_condition() -> None:
    torch.manual_seed(0)
    norm = ConditionalBatchNorm(3, 5)
    x, c = torch.randn(4, 3, 2, 2), torch.randn(4, 5)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    gain = 1 + c @ norm.gain.weight.T
    bias = c @ norm.bias.weight.T
    expected = normalised * gain[:, :, None, None] + bias[:, :, None, None]
    torch.testing.assert_close(norm(x, c), expected)
    # No affine parameters of its own: a zero condition leaves the plain batch norm.
    assert not norm.norm.affine
    torch.testing.assert_close(norm(x, torch.zeros(4, 5)), normalised)


def test_two_classes_give_different_images_for_the_same_noise() -> None:
    torch.manual_seed(0)
    g, _ = networks()
    g.eval()
    z = torch.randn(1, 120).expand(3, -1)
    images = g(z, torch.tensor([2, 2, 7]))
    torch.testing.assert_close(images[0], images[1])
    assert (images[0] - images[2]).abs().max() > 1e-3
    # The class reaches the image through the blocks' norms: their gains differ by class.
    c = g.block_conditions(z, torch.tensor([2, 2, 7]))[0]
    gains, _ = g.blocks[0].norm1.gains_and_biases(c)
    torch.testing.assert_close(gains[0], gains[1])
    assert not torch.allclose(gains[0], gains[2])


def test_a_later_chunk_of_z_enters_only_through_its_blocks_norms() -> None:
    torch.manual_seed(0)
    g, _ = networks()
    g.eval()
    assert g.chunk_size == 30  # 120 = 4 chunks of 30 at 32 px: the dense layer and 3 blocks
    seen: dict[int, list[tuple[torch.Tensor, ...]]] = {}

    def record(i: int, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen.setdefault(i, []).append((args[0], args[1], output))

    for i, block in enumerate(g.blocks):
        block.register_forward_hook(functools.partial(record, i))
    z, y = torch.randn(2, 120), torch.tensor([1, 4])
    changed = z.clone()
    changed[:, 60:90] = torch.randn(2, 30)  # the chunk of block 1 (the 2nd block)
    first, second = g(z, y), g(changed, y)
    assert not torch.allclose(first, second)
    (h0, c0, out0), (h0b, c0b, out0b) = seen[0]
    # Block 0 sees the same map and condition, and so gives the same output.
    torch.testing.assert_close(c0, c0b)
    torch.testing.assert_close(out0, out0b)
    (h1, c1, out1), (h1b, c1b, out1b) = seen[1]
    # Block 1 gets the same map but another condition: its norms' gains and biases differ.
    torch.testing.assert_close(h1, h1b)
    torch.testing.assert_close(c1[:, :128], c1b[:, :128])  # the class embedding
    assert not torch.allclose(c1[:, 128:], c1b[:, 128:])  # its chunk
    for norm in (g.blocks[1].norm1, g.blocks[1].norm2):
        assert not torch.allclose(norm.gains_and_biases(c1)[0], norm.gains_and_biases(c1b)[0])
    assert not torch.allclose(out1, out1b)
    # Block 2's condition is unchanged; only its input map differs.
    torch.testing.assert_close(seen[2][0][1], seen[2][1][1])


# The projection discriminator


def test_the_projection_term_by_hand() -> None:
    torch.manual_seed(0)
    _, d = networks(spectral=False)
    d.eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    h = d.features(x)
    assert h.shape == (3, 16)  # 4·width channels at 32 px, summed over the pixels
    with torch.no_grad():
        d.linear.weight.zero_()
        d.linear.bias.fill_(0.5)
        d.embed.weight.zero_()
        d.embed.weight[1] = 1.0
        d.embed.weight[2, :4] = torch.tensor([2.0, 0.0, -1.0, 3.0])
    y = torch.tensor([0, 1, 2])
    expected = torch.stack(
        [
            torch.tensor(0.5),
            0.5 + h[1].sum(),
            0.5 + 2 * h[2, 0] - h[2, 2] + 3 * h[2, 3],
        ]
    )
    torch.testing.assert_close(d(x, y), expected)


def test_the_class_enters_d_only_through_the_projection() -> None:
    torch.manual_seed(0)
    _, d = networks()  # spectrally normalised: the embedding used is the normalised one
    d.eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    h = d.features(x)
    for label in range(3):
        y = torch.full((2,), label)
        projection = (d.embed.weight[y] * h).sum(dim=1)
        torch.testing.assert_close(d(x, y), d.linear(h).squeeze(1) + projection)


# The orthogonality penalty


def test_the_penalty_is_zero_for_orthogonal_filters_whatever_their_norms() -> None:
    conv = torch.empty(4, 2, 3, 3)
    nn.init.orthogonal_(conv)  # 4 orthonormal filters of 18 values
    assert off_diagonal_orthogonality(conv).item() == pytest.approx(0.0, abs=1e-10)
    # Only the off-diagonal terms count: orthogonal filters of any lengths cost nothing.
    assert off_diagonal_orthogonality(torch.diag(torch.tensor([2.0, 3.0]))).item() == 0.0
    scaled = conv * torch.tensor([1.0, 5.0, 0.1, 2.0]).view(4, 1, 1, 1)
    assert off_diagonal_orthogonality(scaled).item() == pytest.approx(0.0, abs=1e-8)


def test_the_penalty_of_a_small_matrix_by_hand() -> None:
    # Filters (rows) (1, 2) and (3, 4): their inner product 11 appears twice off the diagonal.
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert off_diagonal_orthogonality(w).item() == 2 * 11**2
    # Three filters of a 1x1 convolution: (1, 0), (1, 1), (0, 2) -> products 1, 0, 2.
    conv = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]).view(3, 2, 1, 1)
    assert off_diagonal_orthogonality(conv).item() == 2 * (1**2 + 0**2 + 2**2)


def test_the_model_penalises_gs_weights_but_not_its_embedding() -> None:
    torch.manual_seed(0)
    model = small_biggan(orthogonal_reg=1e-4)
    covered = {id(p) for p in model.regularised_weights()}
    names = {n for n, p in model.generator.named_parameters() if id(p) in covered}
    assert not any(n.startswith("shared.") for n in names)
    # The dense layer, the convolutions, the norms' projections and self-attention's
    # convolutions (their stored weights, before spectral norm), but no bias or gain vector.
    for part in ("dense.", "blocks.0.conv1.", "blocks.0.skip.", "blocks.2.norm2.gain."):
        assert any(n.startswith(part) and n.endswith("original") for n in names), part
    assert any(n.startswith("attention.query.") for n in names)
    assert all(model.generator.get_parameter(n).dim() >= 2 for n in names)
    expected = 1e-4 * sum(off_diagonal_orthogonality(p) for p in model.regularised_weights())
    torch.testing.assert_close(model.orthogonal_penalty(), expected)
    before = model.orthogonal_penalty()
    with torch.no_grad():
        model.generator.shared.weight.fill_(1.0)  # far from orthogonal, and not penalised
    torch.testing.assert_close(model.orthogonal_penalty(), before)
    # Its gradient reaches G's weights; beta = 0 turns the term off.
    model.orthogonal_penalty().backward()
    assert model.generator.dense.parametrizations.weight.original.grad.abs().sum() > 0
    assert small_biggan(orthogonal_reg=0.0).generator_penalty() is None


# Architectures, options and errors


@pytest.mark.parametrize(("size", "blocks"), [(32, 3), (64, 4), (128, 5)])
def test_shapes_at_each_size(size: int, blocks: int) -> None:
    attention = {32: 16, 64: 32, 128: 64}[size]
    g, d = networks(size, width=2, attention_resolution=attention)
    assert len(g.blocks) == blocks and g.chunk_size == 120 // (blocks + 1)
    z, y = torch.randn(2, 120), torch.tensor([0, 9])
    images = g(z, y)
    assert images.shape == (2, 1, size, size)
    assert images.abs().max() <= 1
    assert d(images, y).shape == (2,)
    assert isinstance(g.attention, SelfAttention) and isinstance(d.attention, SelfAttention)


def test_the_layouts_follow_the_paper() -> None:
    g, d = networks(128, width=1)
    # G at 128: a dense layer to 16·ch at 4x4, then 16, 8, 4, 2, 1 (x ch); D: 1, 2, 4, 8, 16, 16.
    assert g.dense.out_features == 16 * 4 * 4
    assert [b.conv2.out_channels for b in g.blocks] == [16, 8, 4, 2, 1]
    assert [b.conv2.out_channels for b in d.blocks] == [1, 2, 4, 8, 16, 16]
    assert [b.downsample for b in d.blocks] == [True] * 5 + [False]
    # D's first block sees the image itself, without a ReLU before it.
    assert [b.preactivation for b in d.blocks] == [False] + [True] * 5
    # The skip path is learned where a block pools or changes width; the last is the identity.
    assert all(isinstance(b.skip, nn.Conv2d) for b in d.blocks[:-1])
    assert d.blocks[-1].skip is None
    assert all(isinstance(b, GeneratorBlock) for b in g.blocks)
    assert all(isinstance(b, DiscriminatorBlock) for b in d.blocks)
    # The paper's split at 128 px: z of 120 in 6 chunks of 20; each block's norms see the
    # 128-value class embedding and their chunk.
    assert g.dense.in_features == 20 and g.blocks[0].norm1.gain.in_features == 20 + 128


def test_the_papers_128_pixel_model_has_its_parameter_count() -> None:
    # ch 96, 1000 classes, attention at 64x64: the paper's Table 1 lists 158.3M parameters.
    # Built on the meta device: shapes only, no memory and no initialisation work.
    with torch.device("meta"):
        g = BigGenerator(
            latent_dim=120,
            channels=3,
            image_size=128,
            num_classes=1000,
            width=96,
            attention_resolution=64,
        )
        d = BigDiscriminator(
            channels=3, image_size=128, num_classes=1000, width=96, attention_resolution=64
        )
    counts = [sum(p.numel() for p in n.parameters()) for n in (g, d)]
    assert counts == [70_433_988, 87_982_370]
    assert sum(counts) / 1e6 == pytest.approx(158.3, abs=0.15)


def test_spectral_norm_and_orthogonal_initialisation() -> None:
    torch.manual_seed(0)
    g, d = networks()
    for network in (g, d):
        layers = [m for m in network.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        assert layers and all(hasattr(m, "parametrizations") for m in layers)
    # D's class embedding is normalised too; G's shared embedding is a plain table.
    assert hasattr(d.embed, "parametrizations")
    assert not hasattr(g.shared, "parametrizations")
    # Orthogonal starting weights: each conv's filters are orthonormal.
    w = g.blocks[0].conv1.parametrizations.weight.original.flatten(1)
    torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-5, rtol=0)
    # The shared embedding too: 10 orthonormal class codes.
    e = g.shared.weight
    torch.testing.assert_close(e @ e.T, torch.eye(10), atol=1e-5, rtol=0)
    plain, _ = networks(spectral=False)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


@pytest.mark.parametrize(
    ("build_networks", "match"),
    [
        (lambda: networks(28), "data.image_size=32"),
        (lambda: networks(48), "32, 64, 128 pixels"),
        (lambda: networks(latent_dim=122), "model.latent_dim=122 does not split into 4"),
        (lambda: networks(attention_resolution=4), "attention_resolution=4.*8, 16, 32"),
        (lambda: networks(width=0), "width must be at least 1"),
    ],
)
def test_bad_network_options_get_clear_errors(build_networks, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_networks()


def test_the_model_checks_its_networks_classes() -> None:
    g, d = networks()
    with pytest.raises(ConfigError, match="has 10 classes but model.num_classes=5"):
        BigGAN(generator=g, discriminator=d, image_size=32, latent_dim=120, num_classes=5)
    mlp = MLPGenerator(latent_dim=120, channels=1, image_size=32, hidden_dims=[8], condition_dim=10)
    with pytest.raises(ConfigError, match="does not take class indices"):
        BigGAN(generator=mlp, discriminator=d, image_size=32, latent_dim=120)
    with pytest.raises(ConfigError, match="model.orthogonal_reg"):
        small_biggan(orthogonal_reg=-1.0)


def test_a_biggan_built_in_python_rebuilds_from_its_own_config() -> None:
    # Optimizer factories serve training only and stay out of the config, as for every GAN.
    model = small_biggan(d_steps=2, orthogonal_reg=1e-3, optimizer_g=None, optimizer_d=None)
    rebuilt = instantiate(model.model_config())
    assert type(rebuilt) is BigGAN
    assert dict(rebuilt.hparams) == dict(model.hparams)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


# The config


def test_the_config_keeps_the_papers_settings() -> None:
    cfg = model_config()
    assert cfg.data.image_size == 32  # MNIST resized
    model = build()
    assert type(model) is BigGAN
    assert isinstance(model, Conditional) and isinstance(model, HasPrior)
    assert model.adversarial_loss.name == "hinge"
    assert (model.d_steps, model.latent_dim, model.orthogonal_reg) == (2, 120, 1e-4)
    assert (model.hparams.ema_decay, model.hparams.ema_start) == (0.999, 2000)
    assert model.generator_ema is not None
    opt_g, opt_d = model.configure_optimizers()
    for optimizer, lr in ((opt_g, 5e-5), (opt_d, 2e-4)):
        group = optimizer.param_groups[0]
        assert (group["lr"], tuple(group["betas"]), group["eps"]) == (lr, (0.0, 0.999), 1e-6)
    counts = [
        sum(p.numel() for p in n.parameters()) for n in (model.generator, model.discriminator)
    ]
    assert counts == [394_242, 269_250]
    # A larger size picks the larger layout; the user's size wins over the config's 32.
    wider = build("data.image_size=64", "model.generator.width=2", "model.discriminator.width=2")
    assert len(wider.generator.blocks) == 4
    with pytest.raises(ConfigError, match="data.image_size=32"):
        build("data.image_size=28")


def test_the_class_labels_and_grid_work_as_for_cgan() -> None:
    torch.manual_seed(0)
    model = small_biggan().eval()
    grid = model.image_grids(torch.rand(4, 1, 32, 32))["val/samples"]
    assert len(grid) == 10 and all(row.shape == (8, 1, 32, 32) for row in grid)
    z = torch.randn(3, 120)
    torch.testing.assert_close(model.decode(z, 7), model.decode(z, torch.tensor([7, 7, 7])))
    assert not torch.allclose(model.decode(z, 7), model.decode(z, 3))
    assert model.sample(5, labels=2).shape == (5, 1, 32, 32)
    with pytest.raises(ConfigError, match="label=10 is out of range"):
        model.sample(2, labels=10)


# Training


def test_one_step_lowers_each_players_loss() -> None:
    torch.manual_seed(0)
    model = small_biggan()
    loss = model.adversarial_loss
    real, y = torch.rand(8, 1, 32, 32) * 2 - 1, torch.arange(8) % 10
    z = model.sample_latent(8)
    with torch.no_grad():
        fake = model.generate(z, y)

    def d_loss() -> torch.Tensor:
        return loss.discriminator(model.discriminate(real, y), model.discriminate(fake, y))

    def g_loss() -> torch.Tensor:
        return loss.generator(model.discriminate(model.generate(z, y), y))

    for objective, network in ((d_loss, model.discriminator), (g_loss, model.generator)):
        optimizer = torch.optim.SGD(network.parameters(), lr=1e-5)
        before = objective()
        assert torch.isfinite(before)
        optimizer.zero_grad()
        before.backward()
        optimizer.step()
        assert objective() < before, type(network).__name__


def test_two_discriminator_steps_per_generator_step(workdir: Path) -> None:
    model = small_biggan(d_steps=2)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=5,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = ImageDataModule(
        dataset="mnist", root=str(workdir / "mnist"), image_size=32, batch_size=8
    )
    trainer.fit(model, datamodule=data)
    assert (model.d_updates, model.g_updates) == (5, 2)
    opt_g, opt_d = trainer.optimizers
    assert {float(s["step"]) for s in opt_g.state.values()} == {2}
    assert {float(s["step"]) for s in opt_d.state.values()} == {5}
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.fixture(scope="module")
def biggan_run(workdir: Path) -> Path:
    run, _ = new_run(
        workdir,
        "train",
        "data=mnist",
        f"data.root={workdir / 'mnist'}",
        *FAST,
        "data.batch_size=16",
        "model=biggan",
        *TINY,
        "test=false",
    )
    return run


def test_training_through_genlab_train(biggan_run: Path) -> None:
    checkpoint = torch.load(biggan_run / "checkpoints" / "last.ckpt", weights_only=True)
    # 96 images, 10% held out: 5 batches of 16, a G step after the 2nd and the 4th.
    assert checkpoint["gan_updates"] == {"d": 5, "g": 2, "d_batches": 0}
    # The moving average of G is saved with it.
    assert any(k.startswith("generator_ema.") for k in checkpoint["state_dict"])
    events = EventAccumulator(str(biggan_run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/d_loss", "train/g_loss", "train/ortho", "val/d_real"} <= scalars
    assert all(e.value > 0 for e in events.Scalars("train/ortho"))
    grid = events.Images("val/samples")[-1]
    # One row per class, 8 columns of 32-pixel images (2-pixel padding).
    assert (grid.height, grid.width) == (10 * 34 + 2, 8 * 34 + 2)
    assert checkpoint["genlab_config"]["model"]["_target_"] == "genlab.models.gans.BigGAN"
    assert checkpoint["genlab_config"]["data"]["image_size"] == 32
    assert (biggan_run / "images" / "val_samples_epoch000.png").is_file()


def test_sample_one_class_from_a_biggan_checkpoint(workdir: Path, biggan_run: Path) -> None:
    ckpt = biggan_run / "checkpoints" / "last.ckpt"
    run, _ = new_run(workdir, "sample", f"ckpt={ckpt}", "label=3", "n=6")
    saved = torch.load(run / "samples.pt", weights_only=True)
    assert saved["images"].shape == (6, 1, 32, 32)
    assert saved["labels"].tolist() == [3] * 6
    assert (run / "samples.png").is_file()
    run, _ = new_run(workdir, "sample", f"ckpt={ckpt}", "n=12")
    saved = torch.load(run / "samples.pt", weights_only=True)
    assert saved["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert (run / "samples_by_class.png").is_file()
