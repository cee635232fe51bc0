"""The generator's moving average (EMA) and truncated sampling: the EMA against hand
computations, its start, its buffers, checkpoints and resume, which weights the commands
sample from (use_ema), truncated draws and where truncation is refused, and evaluate's
truncation sweep."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    TINY_CLASSIFIER,
    mlp_vae,
    new_run,
    run_in_process,
    train_checkpoint,
)
from PIL import Image
from torch import nn

from genlab.checkpoint import load_model
from genlab.errors import ConfigError
from genlab.latent import GaussianCodeModel, gaussian_draws
from genlab.models.gans import GAN
from genlab.models.gans.ema import GeneratorEMA, check_ema_options
from genlab.nn.gan import MLPDiscriminator, MLPGenerator

SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.5)
# A tiny fully connected GAN for `genlab train`.
TINY_GAN = (
    "model=gan",
    "model.latent_dim=8",
    "model.generator.hidden_dims=[32]",
    "model.discriminator.hidden_dims=[32]",
)


@pytest.fixture(scope="module")
def ema_ckpt(workdir: Path) -> Path:
    """A GAN trained 3 G updates with a fast-moving average, so G and it differ."""
    return train_checkpoint(workdir, *TINY_GAN, "model.ema_decay=0.5")


@pytest.fixture(scope="module")
def plain_ckpt(workdir: Path) -> Path:
    return train_checkpoint(workdir, *TINY_GAN)


@pytest.fixture(scope="module")
def classifier_ckpt(workdir: Path) -> Path:
    return train_checkpoint(workdir, *TINY_CLASSIFIER)


def mlp_gan(**kwargs) -> GAN:
    """A small GAN without dropout or batch norm, the same weights every call."""
    torch.manual_seed(0)
    return GAN(
        generator=MLPGenerator(latent_dim=8, channels=1, image_size=28, hidden_dims=[16]),
        discriminator=MLPDiscriminator(channels=1, image_size=28, hidden_dims=[16]),
        latent_dim=8,
        optimizer_g=SGD,
        optimizer_d=SGD,
        **kwargs,
    )


class NoiseStream:
    """A ``sample_latent`` handing out consecutive rows of one fixed noise tensor, so that a
    resumed run draws the noise an uninterrupted one draws."""

    def __init__(self, rows: int = 1024) -> None:
        self.z = torch.randn(rows, 8, generator=torch.Generator().manual_seed(1))
        self.used = 0

    def __call__(self, n: int, **_: object) -> torch.Tensor:
        self.used += n
        return self.z[self.used - n : self.used]


def fit(gan: GAN, *, batches: int, epochs: int = 1, ckpt_path: Path | None = None) -> pl.Trainer:
    """Fits ``gan`` on the same 96 random images, in order, ``batches`` batches of 8 an
    epoch, without validation, logs or checkpoints."""
    images = torch.rand(96, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    data = torch.utils.data.TensorDataset(images, torch.zeros(96, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=False)
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(gan, train_dataloaders=loader, ckpt_path=ckpt_path)
    return trainer


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# The average itself


def test_one_update_gives_the_hand_computed_average() -> None:
    gan = mlp_gan(ema_decay=0.9)
    old = weights(gan.generator)
    fit(gan, batches=1)  # one D update, then one G update
    assert gan.g_updates == 1
    new = weights(gan.generator)
    averaged = weights(gan.generator_ema.module)
    assert set(averaged) == set(new)
    for name in new:
        assert not torch.equal(new[name], old[name]), f"G's {name} did not move"
        torch.testing.assert_close(averaged[name], 0.9 * old[name] + 0.1 * new[name])


def test_the_average_copies_g_until_ema_start_and_takes_g_s_buffers() -> None:
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = GeneratorEMA(net, decay=0.75, start=2)

    def set_weights(value: float) -> None:
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(value)
            net[1].running_mean.fill_(10 * value)

    for update, value in ((1, 1.0), (2, 2.0)):
        set_weights(value)
        ema.update(net, update)
        for p in ema.module.parameters():
            assert torch.equal(p, torch.full_like(p, value))
    set_weights(6.0)
    ema.update(net, 3)
    for p in ema.module.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.75 * 2.0 + 0.25 * 6.0))
    # Batch-norm statistics are G's, not averaged.
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 60.0))
    assert torch.equal(ema.module[1].num_batches_tracked, net[1].num_batches_tracked)


def test_through_training_the_average_equals_g_until_ema_start() -> None:
    gan = mlp_gan(ema_decay=0.9, ema_start=2)
    fit(gan, batches=2)
    for p, q in zip(gan.generator_ema.module.parameters(), gan.generator.parameters(), strict=True):
        assert torch.equal(p, q)
    fit(gan, batches=1)  # a third G update: now an average
    assert gan.g_updates == 3
    differs = [
        not torch.equal(p, q)
        for p, q in zip(
            gan.generator_ema.module.parameters(), gan.generator.parameters(), strict=True
        )
    ]
    assert all(differs)


def test_decay_zero_follows_g_exactly() -> None:
    gan = mlp_gan(ema_decay=0.0)
    fit(gan, batches=2)
    for p, q in zip(gan.generator_ema.module.parameters(), gan.generator.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_average_takes_no_gradient_and_is_in_no_optimizer() -> None:
    gan = mlp_gan(ema_decay=0.99)
    trainer = fit(gan, batches=2)
    averaged = list(gan.generator_ema.parameters())
    assert averaged and not any(p.requires_grad for p in averaged)
    assert all(p.grad is None for p in averaged)
    in_optimizers = {
        id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]
    }
    assert not in_optimizers & {id(p) for p in averaged}
    trainable = {id(p) for p in gan.trainable_parameters()}
    assert not trainable & {id(p) for p in averaged}
    # The optimizers still hold G's and D's parameters, all of them.
    g_params, d_params = (opt.param_groups[0]["params"] for opt in trainer.optimizers)
    assert len(g_params) == len(list(gan.generator.parameters()))
    assert len(d_params) == len(list(gan.discriminator.parameters()))
    assert any(k.startswith("generator_ema.module.") for k in gan.state_dict())
    # Without ema_decay there is no average, and no state for it.
    assert mlp_gan().generator_ema is None
    assert not any(k.startswith("generator_ema") for k in mlp_gan().state_dict())


@pytest.mark.parametrize(
    ("decay", "start", "match"),
    [
        (1.0, 0, r"ema_decay.*must lie in \[0, 1\) \(got 1.0\)"),
        (-0.1, 0, r"ema_decay.*\(got -0.1\)"),
        (True, 0, r"ema_decay.*\(got True\)"),
        ("high", 0, r"ema_decay.*\(got 'high'\)"),
        (0.9, -1, r"ema_start.*at least 0 \(got -1\)"),
        (0.9, 1.5, r"ema_start.*\(got 1.5\)"),
        (None, -2, r"ema_start.*\(got -2\)"),
    ],
)
def test_bad_ema_options_are_clear_errors(decay, start, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_ema_options(decay, start)
    with pytest.raises(ConfigError, match=match):
        mlp_gan(ema_decay=decay, ema_start=start)


def test_sampling_outside_training_uses_the_average_and_training_uses_g() -> None:
    gan = mlp_gan(ema_decay=0.5)
    fit(gan, batches=2)
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        from_g = gan.generator(z)
        from_ema = gan.generator_ema.module(z)
        assert not torch.allclose(from_g, from_ema)
        gan.eval()
        torch.testing.assert_close(gan.generate(z), from_ema)
        # The fixed-noise grid, drawn in eval mode by the image callback.
        grid = torch.cat(gan.image_grids(torch.zeros(1))["val/samples"])
        torch.testing.assert_close(grid, (gan.generator_ema.module(gan.fixed_z) + 1) / 2)
        gan.use_ema = False
        torch.testing.assert_close(gan.generate(z), from_g)
        gan.use_ema = True
        gan.train()
        torch.testing.assert_close(gan.generate(z), from_g)


# Checkpoints and resume


def test_a_resumed_run_ends_with_the_average_of_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = mlp_gan(ema_decay=0.8)
    straight.sample_latent = NoiseStream()
    fit(straight, batches=3, epochs=2)
    first = mlp_gan(ema_decay=0.8)
    first.sample_latent = NoiseStream()
    trainer = fit(first, batches=3, epochs=1)
    trainer.save_checkpoint(tmp_path / "epoch0.ckpt")
    saved = torch.load(tmp_path / "epoch0.ckpt", weights_only=True)["state_dict"]
    for name, value in first.generator_ema.state_dict().items():
        assert torch.equal(saved[f"generator_ema.{name}"], value), name
    # A model built in Python rebuilds from its checkpoint with the average in place.
    rebuilt, _ = load_model(tmp_path / "epoch0.ckpt")
    for name, value in first.generator_ema.state_dict().items():
        assert torch.equal(rebuilt.generator_ema.state_dict()[name], value), name
    resumed = mlp_gan(ema_decay=0.8)
    resumed.sample_latent = first.sample_latent  # the noise continues where it stopped
    fit(resumed, batches=3, epochs=2, ckpt_path=tmp_path / "epoch0.ckpt")
    assert resumed.g_updates == straight.g_updates == 6
    for (name, p), q in zip(
        resumed.generator_ema.state_dict().items(),
        straight.generator_ema.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(p, q, msg=name)
    # And it is an average, not G.
    assert not torch.allclose(
        next(resumed.generator_ema.module.parameters()), next(resumed.generator.parameters())
    )


def test_a_run_resumed_with_the_average_switched_on_or_off(tmp_path: Path) -> None:
    plain = mlp_gan()
    fit(plain, batches=2).save_checkpoint(tmp_path / "plain.ckpt")
    # The average starts from the checkpoint's G, then averages on.
    averaged = mlp_gan(ema_decay=0.9)
    fit(averaged, batches=2, ckpt_path=tmp_path / "plain.ckpt")  # loads, trains no more
    for p, q in zip(
        averaged.generator_ema.module.parameters(), plain.generator.parameters(), strict=True
    ):
        assert torch.equal(p, q)
    before = weights(averaged.generator_ema.module)
    trainer = fit(averaged, batches=2, epochs=2, ckpt_path=tmp_path / "plain.ckpt")
    assert averaged.g_updates == 4
    assert not torch.equal(
        weights(averaged.generator_ema.module)["net.0.weight"], before["net.0.weight"]
    )
    trainer.save_checkpoint(tmp_path / "averaged.ckpt")
    # And a run resumed without it drops the checkpoint's average.
    dropped = mlp_gan()
    fit(dropped, batches=2, epochs=3, ckpt_path=tmp_path / "averaged.ckpt")
    assert dropped.g_updates == 6 and dropped.generator_ema is None


def test_a_checkpoint_rebuilds_with_its_average(ema_ckpt: Path) -> None:
    model, run_config = load_model(ema_ckpt)
    assert run_config.model.ema_decay == 0.5
    saved = torch.load(ema_ckpt, weights_only=True)["state_dict"]
    for name, value in model.generator_ema.state_dict().items():
        assert torch.equal(saved[f"generator_ema.{name}"], value), name
    assert model.generator_ema.decay == 0.5 and not model.training


# Which weights the commands sample from


def test_sample_uses_the_average_unless_use_ema_false(workdir: Path, ema_ckpt: Path) -> None:
    model, _ = load_model(ema_ckpt)
    run, result = new_run(workdir, "sample", f"ckpt={ema_ckpt}", "n=6")
    default = torch.load(run / "samples.pt", weights_only=True)
    assert default["weights"] == "ema"
    assert "moving average of G's weights" in result.stdout
    run, result = new_run(workdir, "sample", f"ckpt={ema_ckpt}", "n=6", "use_ema=false")
    live = torch.load(run / "samples.pt", weights_only=True)
    assert live["weights"] == "generator"
    assert "G's own weights" in result.stdout
    # Same seed, same z; each decoded by the network it names.
    assert torch.equal(default["z"], live["z"])
    with torch.no_grad():
        from_ema = (model.generator_ema.module(default["z"]) + 1) / 2
        from_g = (model.generator(default["z"]) + 1) / 2
    torch.testing.assert_close(default["images"], from_ema.clamp(0, 1))
    torch.testing.assert_close(live["images"], from_g.clamp(0, 1))
    assert not torch.allclose(default["images"], live["images"])


def test_the_class_shares_record_their_weights(
    workdir: Path, ema_ckpt: Path, classifier_ckpt: Path
) -> None:
    for flag, expected in (("true", "ema"), ("false", "generator")):
        run, _ = new_run(
            workdir,
            "sample",
            f"ckpt={ema_ckpt}",
            "n=10",
            f"classify={classifier_ckpt}",
            f"use_ema={flag}",
        )
        assert json.loads((run / "classes.json").read_text())["weights"] == expected


def test_use_ema_false_of_a_model_without_an_average_changes_nothing(
    workdir: Path, plain_ckpt: Path
) -> None:
    runs = [
        new_run(workdir, "sample", f"ckpt={plain_ckpt}", "n=4", f"use_ema={v}")
        for v in (True, False)
    ]
    saved = [torch.load(run / "samples.pt", weights_only=True) for run, _ in runs]
    assert [s["weights"] for s in saved] == ["trained", "trained"]
    assert torch.equal(saved[0]["images"], saved[1]["images"])


def test_interpolate_says_its_weights_and_truncates_its_endpoints(
    workdir: Path, ema_ckpt: Path
) -> None:
    run, _ = new_run(
        workdir,
        "interpolate",
        f"ckpt={ema_ckpt}",
        "source=prior",
        "num_pairs=3",
        "steps=4",
        "truncation=0.3",
        "use_ema=false",
    )
    saved = torch.load(run / "interpolation.pt", weights_only=True)
    assert saved["weights"] == "generator" and saved["truncation"] == 0.3
    ends = saved["codes"][:, [0, -1]]
    assert ends.abs().max() <= 0.3


# Truncation


def test_truncated_draws_lie_inside_the_threshold_and_are_seeded() -> None:
    def draw(seed: int, truncation: float | None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return gaussian_draws((20000, 8), truncation=truncation, generator=generator)

    plain, truncated = draw(0, None), draw(0, 1.0)
    assert truncated.abs().max() <= 1.0 and plain.abs().max() > 3
    assert torch.equal(truncated, draw(0, 1.0))
    assert not torch.equal(truncated, draw(1, 1.0))
    # Only the entries outside were drawn again.
    inside = plain.abs() <= 1.0
    assert torch.equal(truncated[inside], plain[inside])
    # The variance of N(0, 1) truncated to [-a, a]: 1 - 2a·φ(a) / (2Φ(a) - 1).
    a = 1.0
    density = math.exp(-(a**2) / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(a / math.sqrt(2))
    assert truncated.var().item() == pytest.approx(1 - 2 * a * density / mass, rel=0.02)
    assert truncated.mean().item() == pytest.approx(0.0, abs=0.01)


def test_every_gaussian_prior_truncates() -> None:
    generator = torch.Generator().manual_seed(0)
    for model in (mlp_gan(), mlp_vae(latent_dim=6)):
        z = model.sample_latent(500, temperature=2.0, truncation=0.4, generator=generator)
        assert z.shape == (500, model.latent_dim)
        assert z.abs().max() <= 0.8 and z.abs().max() > 0.7
    # A plain autoencoder's fitted Gaussian truncates its standardised draw.
    codes = torch.randn(400, 3, generator=generator) * torch.tensor([1.0, 3.0, 0.5]) + 2
    fitted = GaussianCodeModel(codes)
    z = fitted.sample(300, truncation=0.5, generator=generator).double()
    eps = torch.linalg.solve_triangular(fitted.scale_tril, (z - fitted.mean).T, upper=False).T
    assert eps.abs().max() <= 0.5 + 1e-5
    assert eps.abs().max() > 0.45
    with pytest.raises(ConfigError, match="must be a positive number"):
        mlp_gan().sample_latent(2, truncation=0.0)


def test_sample_truncates_with_the_seed(workdir: Path, ema_ckpt: Path) -> None:
    first, _ = new_run(workdir, "sample", f"ckpt={ema_ckpt}", "n=40", "truncation=0.5")
    again, _ = new_run(workdir, "sample", f"ckpt={ema_ckpt}", "n=40", "truncation=0.5")
    z = torch.load(first / "samples.pt", weights_only=True)["z"]
    assert z.abs().max() <= 0.5
    assert torch.equal(z, torch.load(again / "samples.pt", weights_only=True)["z"])
    assert torch.load(first / "samples.pt", weights_only=True)["truncation"] == 0.5


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("sample", ["truncation=0"], "truncation, the threshold |z_i| <= T"),
        ("sample", ["truncation=-1"], "must be a positive number or null"),
        ("sample", ["truncation=abc"], "(got 'abc')"),
        ("sample", ["truncation=0.5", "mode=manifold"], "mode=manifold decodes a fixed grid"),
        ("sample", ["use_ema=maybe"], "use_ema must be true or false"),
        ("interpolate", ["truncation=0.5"], "source=data encodes images; add source=prior"),
        ("evaluate", ["truncation=0.5"], "truncation changes only the generated samples"),
        ("evaluate", ["features=inception", "truncation=[1.0,0.5]"], "a truncation sweep"),
        ("evaluate", ["features=x.ckpt", "truncation=[]"], "truncation=[] sweeps nothing"),
        ("evaluate", ["features=x.ckpt", "truncation=[0.5,0.5]"], "repeats a value"),
        ("evaluate", ["features=x.ckpt", "truncation=[1.0,0]"], "each value of truncation"),
    ],
)
def test_truncation_is_refused_where_it_cannot_apply(
    workdir: Path, ema_ckpt: Path, command: str, args: list[str], message: str
) -> None:
    _, result = run_in_process(workdir, command, f"ckpt={ema_ckpt}", *args)
    assert result.returncode == 1
    assert message in result.stderr


# evaluate's sweep


def evaluate_run(workdir: Path, *args: str) -> tuple[Path, dict, str]:
    run, result = new_run(workdir, "evaluate", *args, "num_samples=40")
    return run, json.loads((run / "metrics.json").read_text()), result.stdout


def test_evaluate_sweeps_truncation(workdir: Path, ema_ckpt: Path, classifier_ckpt: Path) -> None:
    args = (f"ckpt={ema_ckpt}", f"features={classifier_ckpt}")
    run, results, out = evaluate_run(workdir, *args, "truncation=[null,1.0,0.5]")
    sweep = results["sweep"]
    assert [e["truncation"] for e in sweep] == [None, 1.0, 0.5]
    for entry in sweep:
        metrics = entry["metrics"]
        assert {
            "fid",
            "kid",
            "kid_std",
            "precision",
            "recall",
            "classes_covered",
            "kl_uniform",
        } <= set(metrics)
        assert metrics["fid"] >= 0 and 0 <= metrics["classes_covered"] <= 10
    flat = results["metrics"]
    assert flat["truncation_0.5/fid"] == sweep[2]["metrics"]["fid"]
    assert flat["truncation_none/kid"] == sweep[0]["metrics"]["kid"]
    assert "samples/fid" not in flat and "samples/classifier_accuracy_real" in flat
    assert results["settings"]["truncation"] == [None, 1.0, 0.5]
    assert results["settings"]["weights"] == "ema" and results["settings"]["use_ema"] is True
    # The Markdown table: a header, a rule and a row per value, in order.
    table = (run / "truncation.md").read_text().splitlines()
    assert table[0] == (
        "| truncation | FID | KID | precision | recall | classes covered | KL to uniform |"
    )
    assert [row.split("|")[1].strip() for row in table[2:]] == ["none", "1", "0.5"]
    assert f"{sweep[2]['metrics']['fid']:.4g}" in table[4]
    assert "truncation sweep" in out and table[0] in out
    for name in ("truncation.png", "truncation_samples.png"):
        with Image.open(run / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    assert set(results["sweep_files"]) == {"table", "plot", "samples"}
    # Each value is the evaluation a single value gives, from the same seed.
    _, single, _ = evaluate_run(workdir, *args, "truncation=0.5")
    assert single["metrics"]["samples/fid"] == pytest.approx(sweep[2]["metrics"]["fid"])
    assert single["metrics"]["samples/kl_uniform"] == pytest.approx(
        sweep[2]["metrics"]["kl_uniform"]
    )
    assert single["settings"]["truncation"] == 0.5 and "sweep" not in single
    # use_ema=false measures G's own samples: another FID.
    _, live, _ = evaluate_run(workdir, *args, "truncation=0.5", "use_ema=false")
    assert live["settings"]["weights"] == "generator"
    assert live["metrics"]["samples/fid"] != single["metrics"]["samples/fid"]


def test_evaluate_truncates_a_fitted_gaussian_s_draws(workdir: Path, classifier_ckpt: Path) -> None:
    ae = train_checkpoint(workdir, "model=ae", "model.latent_dim=4")
    run, results, _ = evaluate_run(
        workdir, f"ckpt={ae}", f"features={classifier_ckpt}", "truncation=[1.0,0.25]"
    )
    assert [e["truncation"] for e in results["sweep"]] == [1.0, 0.25]
    assert results["settings"]["weights"] == "trained"
    assert (run / "truncation.md").is_file()
