"""PacGAN's packing (``model.pack``): D's input channels, the layout of a pack, what D sees
of real and generated batches in its steps and G's, the gradient penalty on packs, the
refusals, and a packed DCGAN trained through `genlab train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from genlab.commands.common import CONFIG_DIR
from genlab.commands.train import train
from genlab.data import ImageDataModule
from genlab.errors import ConfigError
from genlab.models.gans import GAN, WGANGP
from genlab.nn.gan import ConvDiscriminator, MLPDiscriminator, MLPGenerator

# The unconditional GAN configs, each taking model.pack; cgan and biggan refuse it.
PACKABLE = ["gan", "dcgan", "lsgan", "sagan", "wgan", "wgan_gp", "progan"]


def compose_train(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=["data=mnist", *overrides])


def build(*overrides: str) -> GAN:
    try:
        return instantiate(compose_train(*overrides).model)
    except InstantiationException as exc:
        # Hydra wraps the model's own error; genlab's commands report the one inside.
        raise (exc.__cause__ or exc) from None


def mlp_gan(
    cls: type[GAN] = GAN, *, pack: Any, channels: int = 1, d_channels: int | None = None, **options
) -> GAN:
    """A small fully connected GAN of 28x28 images whose D takes packs of ``pack`` (or
    ``d_channels`` channels)."""
    d_channels = pack * channels if d_channels is None else d_channels
    return cls(
        generator=MLPGenerator(latent_dim=8, channels=channels, image_size=28, hidden_dims=[16]),
        discriminator=MLPDiscriminator(
            channels=d_channels, image_size=28, hidden_dims=[16], dropout=0.0
        ),
        in_channels=channels,
        latent_dim=8,
        pack=pack,
        optimizer_g=lambda params: torch.optim.Adam(params, lr=1e-4),
        optimizer_d=lambda params: torch.optim.Adam(params, lr=1e-4),
        **options,
    )


@pytest.mark.parametrize("name", PACKABLE)
def test_the_discriminator_takes_pack_times_the_channels(name: str) -> None:
    cfg = compose_train(f"model={name}", "data.channels=3", "model.pack=2", "data.image_size=32")
    model_cfg = cfg.model
    assert (model_cfg.pack, model_cfg.in_channels, model_cfg.discriminator.channels) == (2, 3, 6)
    assert model_cfg.generator.channels == 3
    model = instantiate(model_cfg).eval()
    with torch.no_grad():
        # G's images (ProGAN's at its first stage's resolution), packed for D: 2 scores.
        fake = model.generate(model.sample_latent(4))
        assert fake.shape[:2] == (4, 3)
        assert model.discriminate(model.packed(fake)).shape == (2,)


def test_a_pack_holds_m_consecutive_images_side_by_side() -> None:
    model = mlp_gan(pack=3, channels=2)
    x = torch.arange(6 * 2 * 28 * 28, dtype=torch.float32).view(6, 2, 28, 28)
    packs = model.packed(x)
    assert packs.shape == (2, 6, 28, 28)
    for i in range(2):
        for j in range(3):
            # Channels j·C .. j·C + C − 1 of pack i are image i·m + j.
            assert torch.equal(packs[i, 2 * j : 2 * j + 2], x[3 * i + j])
    assert mlp_gan(pack=1).packed(x) is x


def test_bad_packs_are_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="multiple of 2"):
        mlp_gan(pack=2).packed(torch.zeros(5, 1, 28, 28))
    for pack in (0, True, 1.5):
        with pytest.raises(ConfigError, match="model.pack"):
            mlp_gan(pack=pack, d_channels=1)
    # A discriminator that was not widened to the pack's channels.
    with pytest.raises(ConfigError, match="genlab.mul"):
        build("model=dcgan", "model.pack=2", "model.discriminator.channels=1")
    for name in ("cgan", "biggan"):
        with pytest.raises(ConfigError, match="conditional"):
            build(f"model={name}", "model.pack=2", "model.discriminator.channels=2")


class Recording(GAN):
    """A GAN that keeps every batch G makes and every input D is shown, in order."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.made: list[Tensor] = []
        self.shown: list[Tensor] = []

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        images = super().generate(z, labels)
        self.made.append(images.detach().clone())
        return images

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        self.shown.append(x.detach().clone())
        return super().discriminate(x, labels)


class FirstBatch(pl.Callback):
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        if idx == 0:
            self.images = batch[0].detach().clone()


def fit(model: GAN, workdir: Path, *, batches: int, batch_size: int, **options: Any) -> Any:
    first = FirstBatch()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[first],
        **options,
    )
    data = ImageDataModule(dataset="mnist", root=str(workdir / "mnist"), batch_size=batch_size)
    trainer.fit(model, datamodule=data)
    return first


def test_d_and_g_see_real_and_fake_batches_packed_as_the_paper_packs(workdir: Path) -> None:
    model = mlp_gan(Recording, pack=2)
    first = fit(model, workdir, batches=1, batch_size=8)
    # One D step (8 fakes made, the real packs shown, then the fake packs) and one G step
    # (8 fresh fakes made, their packs shown).
    assert [m.shape[0] for m in model.made] == [8, 8]
    assert [s.shape for s in model.shown] == [(4, 2, 28, 28)] * 3
    real = first.images * 2 - 1
    for packs, images in ((model.shown[0], real), *zip(model.shown[1:], model.made, strict=True)):
        for i in range(4):
            assert torch.equal(packs[i, 0], images[2 * i, 0])
            assert torch.equal(packs[i, 1], images[2 * i + 1, 0])
    # A fake pack is m independent fakes, each from its own noise: no two alike.
    fakes = model.made[0].flatten(1)
    assert torch.cdist(fakes, fakes)[~torch.eye(8, dtype=torch.bool)].min() > 0
    # The G step draws fresh noise.
    assert not torch.equal(model.made[0], model.made[1])


class PenaltyShapes(WGANGP):
    """A WGAN-GP that keeps the shapes its gradient penalty is computed on."""

    def discriminator_penalty(self, real: Tensor, fake: Tensor, labels: Tensor | None) -> Tensor:
        self.__dict__.setdefault("penalised", []).append((tuple(real.shape), tuple(fake.shape)))
        return super().discriminator_penalty(real, fake, labels)


def test_the_gradient_penalty_interpolates_pack_against_pack(workdir: Path) -> None:
    model = mlp_gan(PenaltyShapes, pack=3, d_steps=1)
    fit(model, workdir, batches=2, batch_size=12)
    assert model.penalised == [((4, 3, 28, 28), (4, 3, 28, 28))] * 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_packed_dcgan_trains_validates_and_records_its_pack(
    workdir: Path, tmp_path: Path
) -> None:
    cfg = compose_train(
        f"data.root={workdir / 'mnist'}",
        *FAST,
        f"paths.root_dir={workdir}",
        f"paths.output_dir={tmp_path}",
        "model=dcgan",
        "model.pack=3",
        "model.latent_dim=8",
        "model.generator.width=8",
        "model.discriminator.width=8",
        # 15 images a batch, 5 packs; the 10 validation images leave one out (3 packs).
        "data.batch_size=15",
        "trainer.limit_train_batches=3",
        "~logger",
    )
    metrics, objects = train(cfg)
    model = objects["model"]
    assert (model.d_updates, model.g_updates) == (3, 3)
    assert model.discriminator.net[0].in_channels == 3
    assert {"val/d_real", "val/d_fake", "test/d_real", "test/d_fake"} <= set(metrics)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in metrics.values())
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    stored = checkpoint["genlab_config"]["model"]
    assert (stored["pack"], stored["discriminator"]["channels"]) == (3, 3)


def test_a_batch_that_does_not_pack_stops_training_with_the_fix(workdir: Path) -> None:
    model = mlp_gan(pack=3)
    with pytest.raises(ConfigError, match="data.batch_size to a multiple of 3"):
        fit(model, workdir, batches=1, batch_size=8)


def test_conv_discriminator_built_in_python_for_packs() -> None:
    d = ConvDiscriminator(channels=4, image_size=28, width=8)
    model = GAN(
        generator=MLPGenerator(latent_dim=8, channels=2, image_size=28, hidden_dims=[16]),
        discriminator=d,
        in_channels=2,
        latent_dim=8,
        pack=2,
    )
    assert model.pack == 2 and model.hparams["pack"] == 2
    assert model.model_config()["discriminator"]["channels"] == 4
