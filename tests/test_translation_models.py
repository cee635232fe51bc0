"""Pix2Pix and CycleGAN as models: their losses, training steps and checkpoint state, on
tiny networks and tiny tensors built here (the data modules and commands have their own
tests)."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from genlab.errors import ConfigError
from genlab.models.translation import CycleGAN, Pix2Pix
from genlab.nn.translation import PatchDiscriminator, ResnetGenerator, UNetGenerator

SIZE = 32
ADAM = functools.partial(torch.optim.Adam, lr=2e-3, betas=(0.5, 0.999))


def pix2pix(**options) -> Pix2Pix:
    generator = UNetGenerator(in_channels=1, out_channels=1, image_size=SIZE, width=8)
    discriminator = PatchDiscriminator(in_channels=2, image_size=SIZE, n_layers=2, width=8)
    options = {"optimizer_g": ADAM, "optimizer_d": ADAM, **options}
    return Pix2Pix(generator=generator, discriminator=discriminator, image_size=SIZE, **options)


def cyclegan(**options) -> CycleGAN:
    def g() -> ResnetGenerator:
        return ResnetGenerator(in_channels=1, out_channels=1, image_size=SIZE, n_blocks=1, width=8)

    def d() -> PatchDiscriminator:
        return PatchDiscriminator(in_channels=1, image_size=SIZE, n_layers=2, width=8)

    options = {"optimizer_g": ADAM, "optimizer_d": ADAM, "pool_size": 4, **options}
    return CycleGAN(
        generator_ab=g(),
        generator_ba=g(),
        discriminator_a=d(),
        discriminator_b=d(),
        image_size=SIZE,
        **options,
    )


def pairs(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Squares (A) and their inverted images (B): a translation a small net learns fast."""
    generator = torch.Generator().manual_seed(0)
    a = torch.zeros(n, 1, SIZE, SIZE)
    for i in range(n):
        top, left = torch.randint(2, 18, (2,), generator=generator).tolist()
        a[i, :, top : top + 12, left : left + 12] = 1.0
    return a, 1 - a


def fit(model: pl.LightningModule, steps: int) -> None:
    a, b = pairs()
    loader = DataLoader(TensorDataset(a, b), batch_size=4, shuffle=False)
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, train_dataloaders=loader)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> bool:
    return all(not torch.equal(before[k], v) for k, v in module.named_parameters() if v.ndim > 1)


@torch.no_grad()
def pix2pix_losses(model: Pix2Pix) -> dict[str, float]:
    a, b = (t * 2 - 1 for t in pairs())
    torch.manual_seed(0)
    fake = model.generator(a)
    loss = model.adversarial_loss
    d = loss.discriminator(model.discriminate(a, b), model.discriminate(a, fake))
    return {"l1": (fake - b).abs().mean().item(), "d": d.item()}


def test_pix2pix_losses_fall_and_every_network_trains():
    pl.seed_everything(0, verbose=False)
    model = pix2pix()
    before = pix2pix_losses(model)
    g0, d0 = snapshot(model.generator), snapshot(model.discriminator)
    fit(model, 40)
    after = pix2pix_losses(model)
    assert after["l1"] < 0.5 * before["l1"]
    assert after["d"] < before["d"]
    assert changed(g0, model.generator) and changed(d0, model.discriminator)


@torch.no_grad()
def cyclegan_losses(model: CycleGAN) -> dict[str, float]:
    a, b = (t * 2 - 1 for t in pairs())
    terms, fake_b, fake_a = model.generator_terms(a, b)
    loss = model.adversarial_loss
    terms["d_a"] = loss.discriminator(model.discriminator_a(a), model.discriminator_a(fake_a))
    terms["d_b"] = loss.discriminator(model.discriminator_b(b), model.discriminator_b(fake_b))
    return {k: v.item() for k, v in terms.items()}


def test_cyclegan_losses_fall_and_all_four_networks_train():
    pl.seed_everything(0, verbose=False)
    model = cyclegan()
    before = cyclegan_losses(model)
    networks = ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")
    snapshots = {name: snapshot(getattr(model, name)) for name in networks}
    fit(model, 40)
    after = cyclegan_losses(model)
    for term in ("cycle_a", "cycle_b", "identity_a", "identity_b", "d_a", "d_b", "g_loss"):
        assert after[term] < before[term], (term, before[term], after[term])
    for name in networks:
        assert changed(snapshots[name], getattr(model, name)), name
    assert len(model.pool_a) == len(model.pool_b) == 4  # full: the pool_size of 4


def test_cycle_loss_is_zero_when_both_generators_are_the_identity():
    model = cyclegan()
    model.generator_ab = nn.Identity()
    model.generator_ba = nn.Identity()
    a, b = (t * 2 - 1 for t in pairs())
    terms, _, _ = model.generator_terms(a, b)
    assert terms["cycle_a"].item() == 0 and terms["cycle_b"].item() == 0
    assert terms["identity_a"].item() == 0 and terms["identity_b"].item() == 0


def test_cyclegan_total_loss_weighs_cycle_and_identity_as_the_paper():
    model = cyclegan(lambda_cycle=10.0, lambda_identity=0.5)
    a, b = (t * 2 - 1 for t in pairs(4))
    with torch.no_grad():
        t, _, _ = model.generator_terms(a, b)
    expected = (
        t["g_adv_ab"]
        + t["g_adv_ba"]
        + 10 * (t["cycle_a"] + t["cycle_b"])
        + 5 * (t["identity_a"] + t["identity_b"])
    )
    assert t["g_loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    off = cyclegan(lambda_identity=0.0)
    with torch.no_grad():
        terms, _, _ = off.generator_terms(a, b)
    assert "identity_a" not in terms


def test_adversarial_losses_are_the_papers_mean_criteria():
    import torch.nn.functional as F

    real, fake = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    lsgan = cyclegan().adversarial_loss
    # CycleGAN: G minimises E[(D(G(x)) - 1)^2]; D minimises ½(E[(D(y) - 1)^2] + E[D(G(x))^2]).
    assert lsgan.generator(fake).item() == pytest.approx(((fake - 1) ** 2).mean().item())
    expected_d = 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean())
    assert lsgan.discriminator(real, fake).item() == pytest.approx(expected_d.item())
    cgan = pix2pix().adversarial_loss
    ones, zeros = torch.ones_like(fake), torch.zeros_like(fake)
    assert cgan.generator(fake).item() == pytest.approx(
        F.binary_cross_entropy(torch.sigmoid(fake), ones).item(), rel=1e-5
    )
    expected_d = 0.5 * (
        F.binary_cross_entropy(torch.sigmoid(real), ones)
        + F.binary_cross_entropy(torch.sigmoid(fake), zeros)
    )
    assert cgan.discriminator(real, fake).item() == pytest.approx(expected_d.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="least_squares"):
        pix2pix(loss="hinge")


def test_translate_maps_unit_images_both_ways_and_refuses_unknown_directions():
    model = cyclegan().eval()
    a, _ = pairs(2)
    for direction in ("AtoB", "BtoA"):
        out = model.translate(a, direction)
        assert out.shape == a.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ConfigError, match="direction=CtoD"):
        model.translate(a, "CtoD")
    with pytest.raises(ConfigError, match="AtoB"):
        pix2pix().translate(a, "BtoA")


def test_bad_options_are_refused_with_the_key():
    with pytest.raises(ConfigError, match="lambda_identity"):
        cyclegan(channels_a=1, channels_b=3)
    with pytest.raises(ConfigError, match="pool_size"):
        cyclegan(pool_size=-1)
    with pytest.raises(ConfigError, match="lambda_l1"):
        pix2pix(lambda_l1=-1)
    with pytest.raises(ConfigError, match="model.generator"):
        Pix2Pix(generator="unet", discriminator=nn.Identity())


def test_image_grids_have_the_papers_rows():
    a, b = pairs(8)
    grids = pix2pix().eval().image_grids((a, b))
    rows = grids["val/translations"]
    assert len(rows) == 3 and torch.equal(rows[0], a) and torch.equal(rows[2], b)
    cycle = cyclegan().eval().image_grids((a, b))
    assert set(cycle) == {"val/a_to_b", "val/b_to_a"}
    assert torch.equal(cycle["val/a_to_b"][0], a) and torch.equal(cycle["val/b_to_a"][0], b)
    assert all(len(rows) == 3 for rows in cycle.values())
