"""Variational autoencoders: shapes, the KL and likelihood maths, the ELBO and KL warm-up,
training, the image grids, option checks, and `genlab train` end to end."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from conftest import FAST, mlp_vae, run_genlab
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import Bernoulli, Normal

from genlab.commands.common import CONFIG_DIR
from genlab.errors import ConfigError
from genlab.models.base import GenlabModule
from genlab.models.capabilities import HasPrior, Variational
from genlab.models.vae import (
    ConvVariationalAutoencoder,
    VAEBase,
    VariationalAutoencoder,
    kl_divergence,
)
from genlab.nn.conv import KerasConvDecoder
from genlab.nn.gaussian import ConvGaussianEncoder
from genlab.nn.mlp import MLPDecoder, MLPEncoder

ADAM = functools.partial(torch.optim.Adam, lr=3e-3)


def conv_vae(
    *, in_channels: int = 1, image_size: int = 28, latent_dim: int = 16, **options
) -> ConvVariationalAutoencoder:
    """A ConvVariationalAutoencoder with the networks of configs/model/conv_vae.yaml."""
    shape = {"in_channels": in_channels, "image_size": image_size}
    return ConvVariationalAutoencoder(
        encoder=ConvGaussianEncoder(**shape, latent_dim=latent_dim),
        decoder=KerasConvDecoder(
            out_channels=in_channels, image_size=image_size, latent_dim=latent_dim
        ),
        **shape,
        latent_dim=latent_dim,
        **options,
    )


def from_config(name: str, *overrides: str) -> VAEBase:
    """The model configs/model/NAME.yaml builds for MNIST-shaped data."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "data=mnist", *overrides])
    return instantiate(cfg.model)


MODELS = {
    "vae": lambda: mlp_vae(hidden_dims=[64, 32], latent_dim=8, optimizer=ADAM),
    "vae_no_hidden": lambda: mlp_vae(hidden_dims=[], latent_dim=4, optimizer=ADAM),
    "conv_vae": lambda: conv_vae(latent_dim=8, optimizer=ADAM),
    "vae_gaussian_learned": lambda: mlp_vae(
        hidden_dims=[64], latent_dim=8, likelihood="gaussian", learn_variance=True, optimizer=ADAM
    ),
    "vae_from_config": lambda: from_config(
        "vae", "model.encoder.hidden_dims=[64,32]", "model.latent_dim=8", "optimizer.lr=3e-3"
    ),
}


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28) * 0.2
    x[:, :, 10:14, 4:24] = 0.9
    return x


@pytest.mark.parametrize("name", MODELS)
def test_shapes(name: str, images: torch.Tensor) -> None:
    model = MODELS[name]()
    latent = model.latent_dim
    mu, logvar = model.encode_distribution(images)
    assert mu.shape == logvar.shape == (16, latent)
    torch.testing.assert_close(model.encode(images), mu)
    assert model.decode(mu).shape == images.shape
    assert model.score(images).shape == (16,)
    assert model.negative_elbo(images, num_samples=2).shape == (16,)
    assert isinstance(model, HasPrior) and isinstance(model, Variational)

    model.eval()
    # The mean code: reconstructions do not depend on the random state.
    torch.testing.assert_close(model.reconstruct(images), model.reconstruct(images))
    assert model.reconstruct(images).shape == images.shape

    assert model.sample_latent(5).shape == (5, latent)
    first = model.sample_latent(5, generator=torch.Generator().manual_seed(3))
    again = model.sample_latent(5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, again)
    hot = model.sample_latent(5, temperature=2.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hot, 2.0 * first)
    samples = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert samples.shape == (5, *images.shape[1:])
    assert samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples, model.decode(first))


# Trainable parameters of each config's defaults on MNIST: the architectures of genlab 0.1.
CONFIG_PARAMETERS = {"vae": 1_079_600, "conv_vae": 131_618}


@pytest.mark.parametrize("name", CONFIG_PARAMETERS)
def test_configs_keep_their_architectures(name: str) -> None:
    model = from_config(name)
    assert sum(p.numel() for p in model.trainable_parameters()) == CONFIG_PARAMETERS[name]


def test_conv_vae_encoder_is_the_keras_convolutions() -> None:
    model = conv_vae(latent_dim=10)
    body = model.encoder.body
    convs = [layer for layer in body if isinstance(layer, torch.nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [32, 64, 64]
    assert isinstance(body[-1], torch.nn.Flatten)
    assert model.encoder.mu.in_features == model.encoder.logvar.in_features == 64 * 3 * 3
    assert body(torch.zeros(2, 1, 28, 28)).shape == (2, 576)


def test_conv_vae_handles_32_pixel_rgb() -> None:
    model = conv_vae(in_channels=3, image_size=32, latent_dim=10)
    x = torch.rand(2, 3, 32, 32)
    assert model.encode(x).shape == (2, 10)
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(3).shape == (3, 3, 32, 32)


@pytest.mark.parametrize(
    "build",
    [
        MODELS["vae_gaussian_learned"],
        lambda: mlp_vae(likelihood="gaussian", sigma=0.3),
        MODELS["conv_vae"],
    ],
)
def test_recorded_config_rebuilds_the_model(build, images: torch.Tensor) -> None:
    """What a checkpoint of a model trained from Python stores: its hyperparameters and its
    networks' build configs, enough to rebuild it and load its weights."""
    model = build()
    rebuilt = instantiate(model.model_config(), _convert_="all")
    assert type(rebuilt) is type(model)
    rebuilt.load_state_dict(model.state_dict())
    for built in (model, rebuilt):
        built.eval()
    torch.testing.assert_close(rebuilt.score(images), model.score(images))
    torch.testing.assert_close(rebuilt.fixed_z, model.fixed_z)
    if model.likelihood == "gaussian":
        torch.testing.assert_close(rebuilt.output_logvar, model.output_logvar)


def test_encoder_must_give_mean_and_log_variance(images: torch.Tensor) -> None:
    model = VariationalAutoencoder(
        encoder=MLPEncoder(in_channels=1, image_size=28, latent_dim=4),
        decoder=MLPDecoder(out_channels=1, image_size=28, latent_dim=4),
        in_channels=1,
        image_size=28,
        latent_dim=4,
    )
    with pytest.raises(ConfigError, match=r"pair \(mu, logvar\).*genlab.nn.gaussian"):
        model.loss_terms(images)


def test_reparameterize_draws_from_q() -> None:
    model = mlp_vae(latent_dim=2)
    mu = torch.tensor([[1.0, -2.0]]).expand(100_000, 2)
    logvar = torch.tensor([[0.0, math.log(0.25)]]).expand(100_000, 2)
    z = model.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01, rtol=0)


@pytest.mark.parametrize("dims", [3, 4, 5])
def test_kl_closed_form_matches_monte_carlo(dims: int) -> None:
    generator = torch.Generator().manual_seed(dims)
    mu = torch.randn(1, dims, generator=generator, dtype=torch.float64)
    logvar = torch.randn(1, dims, generator=generator, dtype=torch.float64)
    q = Normal(mu, (0.5 * logvar).exp())
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    n = 200_000
    z = q.mean + q.stddev * torch.randn(n, dims, generator=generator, dtype=torch.float64)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(dim=1)
    estimate = log_ratio.mean()
    standard_error = log_ratio.std() / math.sqrt(n)
    exact = kl_divergence(mu, logvar)
    assert exact.shape == (1,)
    # Five standard errors: a spurious failure has odds of about one in a million.
    assert abs(exact.item() - estimate.item()) < 5 * standard_error.item(), (exact, estimate)


def test_kl_is_zero_for_the_prior_and_not_the_slide_formula() -> None:
    zeros = torch.zeros(3, 4)
    torch.testing.assert_close(kl_divergence(zeros, zeros), torch.zeros(3))

    # μ = 0, σ² = e²: exactly ½(e² − 2 − 1); the slide's Σ σ² + μ² − log σ − 1 gives e² − 2.
    mu, logvar = torch.zeros(1, 1), torch.full((1, 1), 2.0)
    exact = kl_divergence(mu, logvar).item()
    slide = (logvar.exp() + mu.square() - 0.5 * logvar - 1).sum().item()
    assert exact == pytest.approx(0.5 * (math.e**2 - 3))
    assert slide == pytest.approx(math.e**2 - 2)
    assert abs(slide - exact) > 3


def test_bernoulli_recon_is_the_negative_log_likelihood() -> None:
    model = mlp_vae(latent_dim=4)
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4, 1, 28, 28, generator=generator)
    x = (torch.rand(4, 1, 28, 28, generator=generator) > 0.5).float()
    expected = -Bernoulli(probs=torch.sigmoid(logits)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(model.reconstruction_nll(logits, x), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("learn_variance", [False, True])
def test_gaussian_recon_is_the_negative_log_likelihood(learn_variance: bool) -> None:
    model = mlp_vae(
        in_channels=3,
        image_size=8,
        latent_dim=4,
        likelihood="gaussian",
        sigma=0.2,
        learn_variance=learn_variance,
    )
    sigma = torch.full((3, 1, 1), 0.2)
    if learn_variance:
        sigma = torch.tensor([0.05, 0.2, 0.5]).view(3, 1, 1)
        with torch.no_grad():
            model.output_logvar.copy_(2 * sigma.log())
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 8, 8, generator=generator)
    x = torch.rand(4, 3, 8, 8, generator=generator)
    expected = -Normal(torch.sigmoid(logits), sigma).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(model.reconstruction_nll(logits, x), expected)


def test_gaussian_variance_is_a_parameter_only_when_learned() -> None:
    fixed = mlp_vae(likelihood="gaussian", sigma=0.1)
    learned = mlp_vae(likelihood="gaussian", sigma=0.1, learn_variance=True)
    assert "output_logvar" not in dict(fixed.named_parameters())
    assert "output_logvar" in dict(learned.named_parameters())
    for model in (fixed, learned):
        torch.testing.assert_close(model.output_logvar, torch.full((1, 1, 1), 2 * math.log(0.1)))


class AtStep(VariationalAutoencoder):
    """A VAE whose optimizer step count is set by the test, not read from a Trainer."""

    global_step = 0


def test_elbo_and_loss_are_recon_and_kl(images: torch.Tensor) -> None:
    model = mlp_vae(hidden_dims=[32], latent_dim=6, beta=2.5)
    torch.manual_seed(1)
    terms = model.loss_terms(images)
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    torch.testing.assert_close(terms["loss"], terms["recon"] + 2.5 * terms["kl"])
    assert terms["elbo"] < 0

    # recon is −log p(x|z) at one draw z ~ q(z|x), kl the closed form at q's parameters.
    mu, logvar = model.encode_distribution(images)
    torch.manual_seed(1)
    z = model.reparameterize(mu, logvar)
    recon = model.reconstruction_nll(model.decode_logits(z), images).mean()
    torch.testing.assert_close(terms["recon"], recon)
    torch.testing.assert_close(terms["kl"], kl_divergence(mu, logvar).mean())
    torch.manual_seed(1)
    torch.testing.assert_close(model.negative_elbo(images).mean(), -terms["elbo"])


def test_kl_warmup_ramps_the_training_weight_only(images: torch.Tensor) -> None:
    model = mlp_vae(AtStep, hidden_dims=[32], latent_dim=6, beta=2.0, kl_warmup_steps=100)
    assert [model.kl_weight(s) for s in (0, 25, 50, 100, 1000)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert mlp_vae(beta=3.0).kl_weight(0) == 3.0

    for step, weight in ((0, 0.0), (50, 1.0), (200, 2.0)):
        model.global_step = step
        model.train()
        terms = model.loss_terms(images)
        torch.testing.assert_close(terms["loss"], terms["recon"] + weight * terms["kl"])
        # Validation and test always weigh the KL by the full beta.
        model.eval()
        terms = model.loss_terms(images)
        torch.testing.assert_close(terms["loss"], terms["recon"] + 2.0 * terms["kl"])


@pytest.mark.parametrize("name", ["vae", "conv_vae", "vae_gaussian_learned", "vae_from_config"])
def test_loss_falls(name: str, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = MODELS[name]()
    optimizer = model.configure_optimizers()
    torch.manual_seed(1)
    first = model.loss_terms(images)
    assert all(torch.isfinite(v) for v in first.values())
    for _ in range(30):
        optimizer.zero_grad()
        model.loss_terms(images)["loss"].backward()
        optimizer.step()
    torch.manual_seed(1)
    with torch.no_grad():
        last = model.loss_terms(images)["loss"]
    assert last < first["loss"] - 0.1 * first["loss"].abs(), (float(first["loss"]), float(last))
    if name == "vae_gaussian_learned":
        # The learned σ moved from its starting value towards the reconstruction error.
        assert model.output_logvar.item() != pytest.approx(2 * math.log(0.1))


@pytest.mark.parametrize("name", ["vae", "conv_vae"])
def test_image_grids(name: str, images: torch.Tensor) -> None:
    model = MODELS[name]()
    model.eval()
    fixed_z = model.fixed_z.clone()
    grids = model.image_grids(images)
    assert set(grids) == {"val/reconstructions", "val/samples", "val/interpolation"}
    for tag, rows in grids.items():
        assert len({row.shape for row in rows}) == 1, tag
        for row in rows:
            assert row.shape[1:] == images.shape[1:]
            assert row.min() >= 0 and row.max() <= 1, tag
    assert len(grids["val/samples"]) * grids["val/samples"][0].shape[0] == len(fixed_z)

    # Two interpolation rows: x_a, ten decodings from μ_a to μ_b, x_b.
    rows = grids["val/interpolation"]
    assert len(rows) == 2
    assert rows[0].shape[0] == 12
    for row, (a, b) in zip(rows, ((0, 1), (2, 3)), strict=True):
        torch.testing.assert_close(row[0], images[a])
        torch.testing.assert_close(row[-1], images[b])
        ends = model.reconstruct(images[[a, b]])
        torch.testing.assert_close(row[[1, -2]], ends)

    again = model.image_grids(images)
    torch.testing.assert_close(model.fixed_z, fixed_z)
    for first, second in zip(grids["val/samples"], again["val/samples"], strict=True):
        torch.testing.assert_close(first, second)
    assert "fixed_z" in model.state_dict()


def test_fixed_z_ignores_the_global_seed() -> None:
    torch.manual_seed(1)
    first = mlp_vae().fixed_z
    torch.manual_seed(2)
    torch.testing.assert_close(mlp_vae().fixed_z, first)
    assert first.shape == (GenlabModule.NUM_FIXED_SAMPLES, 16)


def test_interpolation_needs_two_images(images: torch.Tensor) -> None:
    model = MODELS["vae"]().eval()
    assert "val/interpolation" not in model.image_grids(images[:1])
    assert len(model.image_grids(images[:3])["val/interpolation"]) == 1


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: mlp_vae(likelihood="poisson"), "model.likelihood"),
        (lambda: mlp_vae(latent_dim=0), "model.latent_dim"),
        (lambda: mlp_vae(beta=-1.0), "model.beta"),
        (lambda: mlp_vae(kl_warmup_steps=-5), "model.kl_warmup_steps"),
        (lambda: mlp_vae(likelihood="gaussian", sigma=0.0), "model.sigma"),
        (lambda: mlp_vae(learn_variance=True), "model.likelihood=gaussian"),
        (lambda: mlp_vae(activation="swish"), "unknown activation"),
        (lambda: conv_vae(likelihood="laplace"), "model.likelihood"),
        (lambda: conv_vae(image_size=30), "divisible by 4"),
        (
            lambda: mlp_vae().negative_elbo(torch.rand(1, 1, 28, 28), num_samples=0),
            "num_samples",
        ),
    ],
)
def test_bad_options_get_clear_errors(build, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "cls"), [("vae", VariationalAutoencoder), ("conv_vae", ConvVariationalAutoencoder)]
)
def test_genlab_train_end_to_end(model: str, cls: type, tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_genlab(
        "train",
        "data=mnist",
        f"data.root={tiny_mnist}",
        *FAST,
        f"model={model}",
        "trainer.max_epochs=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = sorted(p for p in (tmp_path / "outputs" / "train").glob("*/*") if p.is_dir())
    assert sorted(p.name for p in (run / "images").iterdir()) == [
        "val_interpolation_epoch000.png",
        "val_reconstructions_epoch000.png",
        "val_samples_epoch000.png",
    ]
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/recon", "train/kl", "train/elbo"} <= scalars
    assert {"val/loss", "val/kl", "val/elbo", "test/elbo"} <= scalars
    assert {"val/samples", "val/interpolation"} <= set(events.Tags()["images"])

    # The checkpoint rebuilds the model, the fixed sampling codes included.
    import genlab

    restored = genlab.load(run / "checkpoints" / "last.ckpt")
    assert type(restored) is cls
    expected = torch.randn(64, restored.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(restored.fixed_z, expected)
