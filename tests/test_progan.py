"""ProGAN: the equalised-LR layers, pixel norm and the minibatch-stddev channel against hand
computations, the fade-in of G's output and D's input, the growth schedule and the staged
real images, a growth step that keeps the trained weights, a run resumed mid-fade against an
uninterrupted one, per-resolution batch sizes, and `genlab train` and `sample stage=K`."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import FAST, TINY_VAE, new_run, run_in_process, train_checkpoint
from hydra.utils import instantiate

from genlab.checkpoint import load_model
from genlab.data import ImageDataModule
from genlab.errors import ConfigError
from genlab.models.capabilities import Grows
from genlab.models.gans import ProGAN
from genlab.nn.progan import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
    ProDiscriminator,
    ProGenerator,
    stage_channels,
)

ADAM = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.99))
LATENT = 8
# `genlab train model=progan` with narrow networks and phases of a few batches.
TINY_PROGAN = (
    "model=progan",
    f"model.latent_dim={LATENT}",
    "model.generator.max_channels=8",
    "model.fade_images=16",
    "model.stable_images=16",
)


def tiny_progan(image_size: int = 16, *, seed: int = 0, **options) -> ProGAN:
    """A ProGAN with 8 channels at every resolution, the same weights for every call."""
    torch.manual_seed(seed)
    widths = {"max_channels": 8, "halve_above": image_size}
    return ProGAN(
        generator=ProGenerator(latent_dim=LATENT, channels=1, image_size=image_size, **widths),
        discriminator=ProDiscriminator(channels=1, image_size=image_size, **widths),
        in_channels=1,
        image_size=image_size,
        latent_dim=LATENT,
        **{"optimizer_g": ADAM, "optimizer_d": ADAM, **options},
    )


# The layers


@pytest.mark.parametrize("gain", [math.sqrt(2), 1.0])
def test_equalised_layers_scale_n01_weights_by_the_he_constant(gain: float) -> None:
    torch.manual_seed(0)
    conv = EqualizedConv2d(in_channels=64, out_channels=64, kernel_size=3, gain=gain)
    linear = EqualizedLinear(in_features=576, out_features=256, gain=gain)
    for layer, fan_in in ((conv, 64 * 9), (linear, 576)):
        # The stored weights are N(0, 1) and the biases 0; the scale is applied at run time.
        assert abs(layer.weight.std().item() - 1) < 0.02
        assert abs(layer.weight.mean().item()) < 0.02
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        assert layer.scale == pytest.approx(gain / math.sqrt(fan_in))
    x = torch.randn(8, 64, 12, 12)
    v = torch.randn(512, 576)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * conv.scale, padding=1))
    torch.testing.assert_close(linear(v), v @ (linear.weight * linear.scale).T)
    # So a unit-variance input leaves with the gain as its spread (He et al.'s point), at
    # the inner pixels, which the 'same' padding leaves whole.
    assert conv(x)[:, :, 1:-1, 1:-1].std().item() == pytest.approx(gain, rel=0.05)
    assert linear(v).std().item() == pytest.approx(gain, rel=0.05)


def test_pixel_norm_gives_each_pixel_unit_mean_square() -> None:
    x = 7 * torch.randn(3, 16, 5, 5) + 2
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(3, 5, 5))
    # Each pixel's vector keeps its direction: y = x / its root mean square.
    rms = x.square().mean(dim=1, keepdim=True).sqrt()
    torch.testing.assert_close(y, x / rms)
    # Vectors [B, C] (the latent) too.
    torch.testing.assert_close(PixelNorm()(x[:, :, 0, 0]).square().mean(dim=1), torch.ones(3))


def hand_stddev(images: list[torch.Tensor]) -> float:
    """The mean over features and pixels of the population standard deviation over the
    group's images, element by element in Python."""
    c, h, w = images[0].shape
    total = 0.0
    for i in range(c):
        for j in range(h):
            for k in range(w):
                values = [float(x[i, j, k]) for x in images]
                mean = sum(values) / len(values)
                variance = sum((v - mean) ** 2 for v in values) / len(values)
                total += math.sqrt(variance + 1e-8)
    return total / (c * h * w)


@pytest.mark.parametrize(
    ("n", "groups"),
    [(8, [range(0, 4), range(4, 8)]), (10, [range(0, 4), range(4, 10)]), (3, [range(0, 3)])],
)
def test_minibatch_stddev_channel_matches_a_hand_computation(n: int, groups: list) -> None:
    x = torch.randn(n, 3, 2, 2, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    y = MinibatchStdDev(group_size=4)(x)
    assert y.shape == (n, 4, 2, 2)
    assert torch.equal(y[:, :3], x)
    # Groups of 4 consecutive images; the rest of a batch not divisible by 4 joins the last.
    for group in groups:
        expected = hand_stddev([x[i] for i in group])
        for i in group:
            torch.testing.assert_close(y[i, 3], torch.full((2, 2), expected, dtype=x.dtype))


def test_widths_halve_above_a_resolution() -> None:
    paper = [stage_channels(4 * 2**k, max_channels=512, halve_above=32) for k in range(9)]
    assert paper == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    g = ProGenerator(latent_dim=4, channels=1, image_size=32, max_channels=16, halve_above=8)
    assert [rgb.weight.shape[1] for rgb in g.to_rgb] == [16, 16, 8, 4]


# Fade-in


def test_generator_fades_the_new_resolution_in() -> None:
    torch.manual_seed(0)
    g = ProGenerator(latent_dim=LATENT, channels=1, image_size=16, max_channels=8)
    z = torch.randn(5, LATENT)
    with torch.no_grad():
        h1 = g.blocks[1](g.blocks[0](z))
        old = F.interpolate(g.to_rgb[1](h1), scale_factor=2, mode="nearest")
        new = g.to_rgb[2](g.blocks[2](h1))
        assert g(z, 2, 0.0).shape == (5, 1, 16, 16)
        # alpha = 0: the upsampled image of the stage before; alpha = 1: the new block's.
        assert torch.equal(g(z, 2, 0.0), old)
        torch.testing.assert_close(g(z, 2, 0.0), F.interpolate(g(z, 1, 1.0), scale_factor=2))
        assert torch.equal(g(z, 2, 1.0), new)
        torch.testing.assert_close(g(z, 2, 0.25), 0.75 * old + 0.25 * new)
        assert torch.equal(g(z), g(z, 2, 1.0))  # the full resolution by default
        # At alpha = 1 the old toRGB plays no part.
        g.to_rgb[1].weight.add_(1.0)
        assert torch.equal(g(z, 2, 1.0), new)
        assert not torch.equal(g(z, 2, 0.0), old)


def test_discriminator_fades_the_new_resolution_in() -> None:
    torch.manual_seed(0)
    d = ProDiscriminator(channels=1, image_size=16, max_channels=8)
    x = torch.randn(6, 1, 16, 16)
    with torch.no_grad():
        pooled = F.avg_pool2d(x, 2)
        old = d.from_rgb[1](pooled)
        new = d.blocks[2](d.from_rgb[2](x))

        def score(features: torch.Tensor) -> torch.Tensor:
            return d.blocks[0](d.blocks[1](features))

        # alpha = 0: the stage before on the pooled images; alpha = 1: the new block's path.
        torch.testing.assert_close(d(x, 2, 0.0), d(pooled, 1, 1.0))
        torch.testing.assert_close(d(x, 2, 0.0), score(old))
        torch.testing.assert_close(d(x, 2, 1.0), score(new))
        torch.testing.assert_close(d(x, 2, 0.3), score(0.7 * old + 0.3 * new))
        d.from_rgb[1][0].weight.add_(1.0)
        torch.testing.assert_close(d(x, 2, 1.0), score(new))
    with pytest.raises(ValueError, match="stage 1 takes 8x8 images"):
        d(x, 1, 1.0)


# The schedule


def test_stage_and_alpha_follow_the_images_seen() -> None:
    model = tiny_progan(32, fade_images=100, stable_images=50)
    assert model.num_stages == 4
    expected = {
        0: (0, 1.0),
        49: (0, 1.0),  # 4x4 is stable only
        50: (1, 0.0),  # 8x8 fades in over 100 images
        75: (1, 0.25),
        149: (1, 0.99),
        150: (1, 1.0),  # then is stable for 50
        199: (1, 1.0),
        200: (2, 0.0),
        300: (2, 1.0),
        350: (3, 0.0),
        400: (3, 0.5),
        450: (3, 1.0),  # the last stage stays
        10**9: (3, 1.0),
    }
    for images, (stage, alpha) in expected.items():
        got = model.schedule(images)
        assert got[0] == stage and got[1] == pytest.approx(alpha), images
    # Without fades each stage starts whole.
    jumps = tiny_progan(32, fade_images=0, stable_images=10)
    assert [jumps.schedule(n) for n in (9, 10, 20, 30, 40)] == [
        (0, 1.0),
        (1, 1.0),
        (2, 1.0),
        (3, 1.0),
        (3, 1.0),
    ]


def test_real_images_are_pooled_and_faded_like_the_generator_s() -> None:
    model = tiny_progan(32)
    x = torch.rand(3, 1, 32, 32)
    # Stage 1 (8x8) stable: each pixel is the mean of a 4x4 block.
    blocks = x.view(3, 1, 8, 4, 8, 4).mean(dim=(3, 5))
    torch.testing.assert_close(model.stage_images(x, 1, 1.0), blocks)
    # Fading in: blended with the 4x4 means, upsampled.
    coarse = x.view(3, 1, 4, 8, 4, 8).mean(dim=(3, 5))
    up = coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(model.stage_images(x, 1, 0.25), 0.75 * up + 0.25 * blocks)
    assert torch.equal(model.stage_images(x, 3, 1.0), x)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: tiny_progan(32, loss="hinge"), "WGAN-GP"),
        (lambda: tiny_progan(32, fade_images=-1), "model.fade_images"),
        (lambda: tiny_progan(32, fade_images=0, stable_images=0), "stable_images at least 1"),
        (lambda: tiny_progan(32, drift=-0.1), "model.drift"),
        (lambda: tiny_progan(32, batch_sizes={12: 4}), "4, 8, 16, 32"),
        (lambda: tiny_progan(32, batch_sizes={8: 0}), r"batch_sizes\[8\]"),
        (lambda: ProGenerator(latent_dim=4, channels=1, image_size=28), "data.image_size=32"),
        (
            lambda: ProGAN(
                generator=ProGenerator(latent_dim=4, channels=1, image_size=16),
                discriminator=ProDiscriminator(channels=1, image_size=32),
                image_size=32,
                latent_dim=4,
            ),
            "model.generator must be a growing network",
        ),
    ],
)
def test_bad_options_get_clear_errors(build, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()


# Training


class ReseedEachBatch(pl.Callback):
    """Seeds torch before every batch from the batch's place in training, so that a resumed
    run draws the noise and penalty coefficients an uninterrupted one draws."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        torch.manual_seed(1000 * trainer.current_epoch + batch_idx)


class Snapshots(pl.Callback):
    """The stage and alpha each training batch runs at, and the images seen and every
    parameter after it."""

    def __init__(self) -> None:
        self.states: list[tuple[int, float]] = []
        self.seen: list[int] = []
        self.params: list[dict[str, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.states.append((pl_module.stage, pl_module.alpha))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.seen.append(pl_module.images_seen)
        self.params.append({n: p.detach().clone() for n, p in pl_module.named_parameters()})


def fit(
    model: ProGAN,
    *,
    batches: int,
    epochs: int = 1,
    batch_size: int = 8,
    ckpt_path: Path | None = None,
    callbacks: list[pl.Callback] | None = None,
) -> pl.Trainer:
    """Fits ``model`` on the same random images in order, without validation or logs."""
    size = model.image_shape[-1]
    images = torch.rand(64, 1, size, size, generator=torch.Generator().manual_seed(2))
    data = torch.utils.data.TensorDataset(images, torch.zeros(64, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ReseedEachBatch(), *(callbacks or [])],
    )
    trainer.fit(model, train_dataloaders=loader, ckpt_path=ckpt_path)
    return trainer


def test_growing_keeps_the_trained_weights_and_resets_adam() -> None:
    # Batches of 8: steps 1-3 at 4x4 (stable for 24 images), step 4 starts the 8x8 fade.
    model = tiny_progan(16, fade_images=24, stable_images=24)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    snapshots = Snapshots()
    trainer = fit(model, batches=5, callbacks=[snapshots])
    assert snapshots.states == [
        (0, 1.0),
        (0, 1.0),
        (0, 1.0),
        (1, 0.0),
        (1, pytest.approx(1 / 3)),
    ]
    assert snapshots.seen == [8, 16, 24, 32, 40]
    last_4x4, first_8x8 = snapshots.params[2], snapshots.params[3]
    first_block = [
        n for n in initial if n.startswith(("generator.blocks.0.", "discriminator.blocks.0."))
    ]
    for name in first_block:
        # Trained at 4x4 ...
        assert not torch.equal(last_4x4[name], initial[name]), name
        # ... and trained on from there: one Adam step, whose moments start afresh with the
        # new phase, moves each weight by at most the learning rate. (Re-initialised
        # weights would jump by their whole scale.)
        step = (first_8x8[name] - last_4x4[name]).abs().max().item()
        assert 0 < step <= 1e-3 * (1 + 1e-4), name
    # The 8x8 blocks waited at their initial weights through stage 0 and start training
    # once their resolution fades in (with alpha > 0: at alpha = 0 they have no gradient).
    for name in ("generator.blocks.1.conv1.weight", "discriminator.blocks.1.conv1.weight"):
        assert torch.equal(last_4x4[name], initial[name]), name
        assert not torch.equal(snapshots.params[4][name], initial[name]), name
    assert torch.equal(
        snapshots.params[4]["generator.blocks.2.conv1.weight"],
        initial["generator.blocks.2.conv1.weight"],
    )
    # Adam's moments were reset at the fade's start: 2 steps of D since, not 5.
    opt_g, opt_d = trainer.optimizers
    weight = model.discriminator.blocks[0].conv.weight
    assert int(opt_d.state[weight]["step"]) == 2


def test_a_run_resumed_mid_fade_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    # 3 batches of 8 an epoch; 4x4 for 16 images, then 8x8 fades in over 20: the first
    # epoch ends mid-fade (alpha 8/20), the second reaches 8x8's stable phase before its
    # last step (a new phase, whose Adam reset the resumed run must neither repeat nor miss).
    options = {"fade_images": 20, "stable_images": 16, "ema_decay": 0.9}
    straight = tiny_progan(16, **options)
    straight_trainer = fit(straight, batches=3, epochs=2)
    first = tiny_progan(16, **options)
    fit(first, batches=3).save_checkpoint(tmp_path / "epoch0.ckpt")
    saved = torch.load(tmp_path / "epoch0.ckpt", weights_only=True)
    growth = {"images_seen": 24, "stage": 1, "alpha": 8 / 20}
    assert saved["state_dict"]["_extra_state"] == growth
    # A checkpoint command's model (load_state_dict alone) draws at that stage and alpha.
    rebuilt, _ = load_model(tmp_path / "epoch0.ckpt")
    assert (rebuilt.images_seen, rebuilt.stage, rebuilt.alpha) == (24, 1, 8 / 20)
    resumed = tiny_progan(16, seed=1, **options)
    trainer = fit(resumed, batches=3, epochs=2, ckpt_path=tmp_path / "epoch0.ckpt")
    assert (resumed.images_seen, resumed.stage, resumed.alpha) == (48, 1, 1.0)
    assert (straight.images_seen, straight.stage, straight.alpha) == (48, 1, 1.0)
    assert (resumed.d_updates, resumed.g_updates) == (straight.d_updates, straight.g_updates)
    state, expected = resumed.state_dict(), straight.state_dict()
    assert state.keys() == expected.keys()
    for name, value in state.items():
        if name != "_extra_state":
            torch.testing.assert_close(value, expected[name], msg=name)
    for ours, theirs in zip(trainer.optimizers, straight_trainer.optimizers, strict=True):
        mine, other = ours.state_dict()["state"], theirs.state_dict()["state"]
        assert mine.keys() == other.keys()
        for key in mine:
            for k, v in mine[key].items():
                torch.testing.assert_close(v, other[key][k], msg=f"{key}.{k}")


def test_batch_sizes_per_resolution(workdir: Path) -> None:
    model = tiny_progan(16, fade_images=0, stable_images=8, batch_sizes={4: 4, "8": 6})
    snapshots = Snapshots()
    fit(model, batches=5, callbacks=[snapshots])
    # 4x4 steps use 4 images of each batch of 8, 8x8 steps 6, 16x16 steps all 8.
    assert [s[0] for s in snapshots.states] == [0, 0, 1, 1, 2]
    assert snapshots.seen == [4, 8, 14, 20, 28]
    # The data batch must hold the largest.
    data = ImageDataModule(
        dataset="mnist", root=str(workdir / "mnist"), image_size=16, batch_size=4
    )
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    with pytest.raises(ConfigError, match="data.batch_size=6"):
        trainer.fit(tiny_progan(16, batch_sizes={8: 6}), datamodule=data)


def test_a_model_built_in_python_rebuilds_from_its_own_config() -> None:
    model = tiny_progan(
        16,
        fade_images=5,
        stable_images=7,
        batch_sizes={4: 4},
        drift=0.01,
        optimizer_g=None,
        optimizer_d=None,
    )
    rebuilt = instantiate(model.model_config())
    assert type(rebuilt) is ProGAN and isinstance(rebuilt, Grows)
    assert dict(rebuilt.hparams) == dict(model.hparams)
    assert (rebuilt.fade_images, rebuilt.stable_images, rebuilt.batch_sizes) == (5, 7, {4: 4})
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


# `genlab train` and `genlab sample`


@pytest.fixture(scope="module")
def progan_run(workdir: Path) -> tuple[Path, dict]:
    # 86 training images in 5 batches of 16: 2 epochs are 10 steps, 160 images. Stages
    # change every 16 images: 4x4 (1 step), then for each of 8, 16, 32 a fade step and a
    # stable step; 32x32 from step 6 on.
    run, _ = new_run(
        workdir,
        "train",
        "data=mnist",
        f"data.root={workdir / 'mnist'}",
        *FAST,
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "trainer.limit_val_batches=1",
        "test=false",
        *TINY_PROGAN,
    )
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    return run, {name: values["final"] for name, values in metrics.items()}


def test_progan_trains_through_genlab_train(progan_run: tuple[Path, dict]) -> None:
    run, metrics = progan_run
    # MNIST is resized to 32, the config's image size.
    assert metrics["train/resolution"] == 32
    assert metrics["train/stage"] == 3
    assert metrics["train/alpha"] == 1
    assert metrics["train/images_seen"] == 160
    assert {"train/gp", "train/drift", "train/d_loss", "train/g_loss"} <= set(metrics)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"]["_extra_state"] == {"images_seen": 160, "stage": 3, "alpha": 1.0}
    assert any(k.startswith("generator_ema.") for k in ckpt["state_dict"])
    assert (run / "images" / "val_samples_epoch001.png").is_file()


def test_sample_draws_at_the_final_resolution_or_an_earlier_stage(
    workdir: Path, progan_run: tuple[Path, dict]
) -> None:
    ckpt = progan_run[0] / "checkpoints" / "last.ckpt"
    full, _ = new_run(workdir, "sample", f"ckpt={ckpt}", "n=8")
    at_8x8, _ = new_run(workdir, "sample", f"ckpt={ckpt}", "n=8", "stage=1")
    final = torch.load(full / "samples.pt", weights_only=True)["images"]
    early = torch.load(at_8x8 / "samples.pt", weights_only=True)["images"]
    assert final.shape == early.shape == (8, 1, 32, 32)
    assert early.min() >= 0 and early.max() <= 1
    # Stage 1 draws 8x8 images, each pixel upsampled to a 4x4 block; the final stage does not.
    blocks = early[:, :, ::4, ::4].repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    assert torch.equal(early, blocks)
    assert not torch.equal(
        final, final[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3)
    )


def test_sample_refuses_a_stage_not_reached_or_a_model_that_does_not_grow(
    workdir: Path, progan_run: tuple[Path, dict]
) -> None:
    ckpt = progan_run[0] / "checkpoints" / "last.ckpt"
    _, result = run_in_process(workdir, "sample", f"ckpt={ckpt}", "stage=4")
    assert result.returncode != 0
    assert "grown to stage 3 (32x32) of 3" in result.stderr and "0..3" in result.stderr
    vae = train_checkpoint(workdir, *TINY_VAE)
    _, result = run_in_process(workdir, "sample", f"ckpt={vae}", "stage=1")
    assert result.returncode != 0
    assert "does not declare Grows" in result.stderr


def test_train_refuses_an_image_size_that_is_not_a_power_of_two(workdir: Path) -> None:
    _, result = run_in_process(
        workdir,
        "train",
        "data=mnist",
        f"data.root={workdir / 'mnist'}",
        *FAST,
        *TINY_PROGAN,
        "data.image_size=28",
    )
    assert result.returncode != 0
    assert "data.image_size=32" in result.stderr
