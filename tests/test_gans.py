"""The GAN family: losses against hand computations, the networks' shapes, initialisation and
spectral norms, the configs' architectures, the D/G step schedule, training through `genlab
train`, resume, and the sample and interpolate commands on GAN checkpoints."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST, new_run, run_genlab
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from genlab.commands.common import CONFIG_DIR
from genlab.commands.sample import sample
from genlab.commands.train import train
from genlab.data import ImageDataModule
from genlab.errors import ConfigError
from genlab.models.capabilities import Conditional, HasPrior
from genlab.models.gans import GAN, WGAN, WGANGP, ConditionalGAN
from genlab.models.gans.losses import (
    ADVERSARIAL_LOSSES,
    adversarial_loss,
    critic_wasserstein_loss,
    discriminator_bce_loss,
    discriminator_hinge_loss,
    discriminator_least_squares_loss,
    generator_least_squares_loss,
    generator_minimax_loss,
    generator_nonsaturating_loss,
    gradient_penalty,
)
from genlab.nn.gan import (
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
    SelfAttention,
)

GANS = ["gan", "dcgan", "cgan", "wgan", "wgan_gp", "sagan", "lsgan"]
LOSSES = ["bce", "minimax", "wasserstein", "hinge", "least_squares"]
# Narrower networks than the configs' defaults, to keep the training tests quick.
MLP_SMALL = ["model.generator.hidden_dims=[64]", "model.discriminator.hidden_dims=[64]"]
CONV_SMALL = ["model.generator.width=16", "model.discriminator.width=16"]
SMALL = {
    "gan": MLP_SMALL,
    "cgan": MLP_SMALL,
    **{name: CONV_SMALL for name in ("dcgan", "wgan", "wgan_gp", "sagan", "lsgan")},
}
ADAM = functools.partial(torch.optim.Adam, lr=1e-4)


def data_args(workdir: Path) -> list[str]:
    return ["data=mnist", f"data.root={workdir / 'mnist'}", *FAST]


def compose_config(name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=list(overrides))


def compose_train(workdir: Path, output_dir: Path, *overrides: str) -> DictConfig:
    return compose_config(
        "train",
        *data_args(workdir),
        f"paths.root_dir={workdir}",
        f"paths.output_dir={output_dir}",
        *overrides,
    )


def model_config(name: str, *overrides: str) -> DictConfig:
    """The model node of ``model=name`` on MNIST-sized data unless an override says else."""
    return compose_config("train", "data=mnist", f"model={name}", *overrides).model


def build(name: str, *overrides: str) -> GAN:
    try:
        return instantiate(model_config(name, *overrides))
    except InstantiationException as exc:
        # Hydra wraps the model's own error; genlab's commands report the one inside.
        raise (exc.__cause__ or exc) from None


def cli_train(workdir: Path, *overrides: str) -> Path:
    """Run `genlab train`; returns the new run directory."""
    run, _ = new_run(workdir, "train", *data_args(workdir), *overrides)
    return run


def mlp_gan(cls: type[GAN] = GAN, *, latent_dim: int = 8, condition_dim: int = 0, **kwargs):
    """A small fully connected GAN built in Python, for 28x28 grey images."""
    return cls(
        generator=MLPGenerator(
            latent_dim=latent_dim,
            channels=1,
            image_size=28,
            hidden_dims=[16],
            condition_dim=condition_dim,
        ),
        discriminator=MLPDiscriminator(
            channels=1, image_size=28, hidden_dims=[16], condition_dim=condition_dim
        ),
        latent_dim=latent_dim,
        **kwargs,
    )


def quiet_trainer(batches: int, epochs: int = 1) -> pl.Trainer:
    """A trainer of ``batches`` batches an epoch, with no validation, logs or checkpoints."""
    return pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def fit(model: GAN, workdir: Path, batches: int) -> pl.Trainer:
    trainer = quiet_trainer(batches)
    data = ImageDataModule(dataset="mnist", root=str(workdir / "mnist"), batch_size=8)
    trainer.fit(model, datamodule=data)
    return trainer


# Losses


def test_the_losses_are_the_five_named_choices() -> None:
    assert list(ADVERSARIAL_LOSSES) == LOSSES
    logits = {name for name, loss in ADVERSARIAL_LOSSES.items() if loss.scores_are_logits}
    assert logits == {"bce", "minimax"}
    with pytest.raises(ConfigError, match=", ".join(LOSSES)) as error:
        adversarial_loss("nonsaturating")
    # The old option's value points to its new name.
    assert "loss=bce" in str(error.value)


def test_generator_losses_on_known_discriminator_outputs() -> None:
    p = torch.tensor([0.01, 0.5, 0.99])
    logits = torch.logit(p).requires_grad_(True)
    minimax = generator_minimax_loss(logits)
    torch.testing.assert_close(minimax, torch.log(1 - p).mean())
    (grad_minimax,) = torch.autograd.grad(minimax, logits)
    nonsaturating = generator_nonsaturating_loss(logits)
    torch.testing.assert_close(nonsaturating, -torch.log(p).mean())
    (grad_nonsaturating,) = torch.autograd.grad(nonsaturating, logits)
    # d/dl log(1 - σ(l)) = −σ(l) and d/dl −log σ(l) = −(1 − σ(l)), over a batch of 3.
    torch.testing.assert_close(grad_minimax, -p / 3)
    torch.testing.assert_close(grad_nonsaturating, -(1 - p) / 3)
    # Where D rejects the fake (D = 0.01) the minimax gradient has all but vanished.
    assert grad_nonsaturating[0] / grad_minimax[0] == pytest.approx(99, rel=1e-4)
    # The names: bce is the non-saturating GAN, minimax the saturating one, same D loss.
    assert ADVERSARIAL_LOSSES["bce"].generator is generator_nonsaturating_loss
    assert ADVERSARIAL_LOSSES["minimax"].generator is generator_minimax_loss
    assert ADVERSARIAL_LOSSES["minimax"].discriminator is discriminator_bce_loss


def test_discriminator_losses_on_known_outputs() -> None:
    real, fake = torch.tensor([0.8, 0.6]), torch.tensor([0.3, 0.1])
    torch.testing.assert_close(
        discriminator_bce_loss(torch.logit(real), torch.logit(fake)),
        -(torch.log(real).mean() + torch.log(1 - fake).mean()),
    )
    scores_real, scores_fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.25])
    # max(0, 1 − D(x)): 0 and 0.5; max(0, 1 + D(G(z))): 0 and 1.25.
    torch.testing.assert_close(
        discriminator_hinge_loss(scores_real, scores_fake), torch.tensor(0.25 + 0.625)
    )
    # E[f(G(z))] − E[f(x)] = −1.375 − 1.25.
    torch.testing.assert_close(
        critic_wasserstein_loss(scores_real, scores_fake), torch.tensor(-1.375 - 1.25)
    )


def test_least_squares_losses_on_known_outputs() -> None:
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    # ½·mean((0, 1)) + ½·mean((0, 4)): real scores pulled to 1, fake ones to 0.
    torch.testing.assert_close(discriminator_least_squares_loss(real, fake), torch.tensor(1.25))
    scores = torch.tensor([1.0, 3.0, -2.0]).requires_grad_(True)
    # ½·mean((0, 4, 9)); its gradient (s − 1)/B never saturates, whatever the score.
    g_loss = generator_least_squares_loss(scores)
    torch.testing.assert_close(g_loss, torch.tensor(13 / 6))
    (grad,) = torch.autograd.grad(g_loss, scores)
    torch.testing.assert_close(grad, (scores.detach() - 1) / 3)
    loss = adversarial_loss("least_squares")
    assert loss.discriminator is discriminator_least_squares_loss
    assert loss.generator is generator_least_squares_loss


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_rewards_each_player_for_its_goal(name: str) -> None:
    loss = adversarial_loss(name)
    low, high = torch.tensor([-0.5, 0.2]), torch.tensor([0.4, 0.9])
    # D does better scoring real images higher and fakes lower; G, its fakes scored higher.
    assert loss.discriminator(high, low) < loss.discriminator(low, high)
    assert loss.generator(high) < loss.generator(low)
    logged = loss.summarize(high)
    expected = torch.sigmoid(high).mean() if name in ("bce", "minimax") else high.mean()
    torch.testing.assert_close(logged, expected)


@pytest.mark.parametrize("name", LOSSES)
def test_one_step_lowers_each_players_loss(name: str) -> None:
    torch.manual_seed(0)
    model = mlp_gan(loss=name)
    loss = model.adversarial_loss
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    z = model.sample_latent(16)
    with torch.no_grad():
        fake = model.generate(z)
    assert fake.shape == (16, 1, 28, 28)

    def d_loss() -> torch.Tensor:
        return loss.discriminator(model.discriminate(real), model.discriminate(fake))

    def g_loss() -> torch.Tensor:
        return loss.generator(model.discriminate(model.generate(z)))

    for objective, network in ((d_loss, model.discriminator), (g_loss, model.generator)):
        optimizer = torch.optim.SGD(network.parameters(), lr=1e-3)
        before = objective()
        assert torch.isfinite(before)
        optimizer.zero_grad()
        before.backward()
        optimizer.step()
        assert objective() < before, f"{name}: {network.__class__.__name__}"


def test_gradient_penalty_of_a_linear_critic() -> None:
    # f(x) = w·x + b has ∇f = w everywhere: the penalty is (‖w‖ − 1)², for any x̂.
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    real, fake = torch.rand(5, 3, 2, 2), torch.rand(5, 3, 2, 2)
    w = critic[1].weight
    penalty = gradient_penalty(lambda v: critic(v).squeeze(1), real, fake)
    torch.testing.assert_close(penalty, (w.norm() - 1).square())
    # The graph is kept, so the penalty trains the critic: d/dw (‖w‖ − 1)² = 2(‖w‖ − 1)w/‖w‖.
    (grad,) = torch.autograd.grad(penalty, w)
    torch.testing.assert_close(grad, 2 * (w.norm() - 1) * w / w.norm())


def test_gradient_penalty_of_a_quadratic_critic() -> None:
    # f(x) = ½‖x‖² has ∇f(x̂) = x̂, so the penalty is the mean of (‖x̂ᵢ‖ − 1)².
    real = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    fake = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    eps = torch.tensor([0.5, 0.25])
    penalty = gradient_penalty(lambda v: 0.5 * v.square().sum(dim=1), real, fake, eps=eps)
    # x̂ = (2, 0) and (0, −0.5): (2 − 1)² and (0.5 − 1)².
    torch.testing.assert_close(penalty, torch.tensor((1.0 + 0.25) / 2))


def test_gradient_penalty_draws_one_coefficient_per_sample() -> None:
    seen: list[torch.Tensor] = []

    def critic(v: torch.Tensor) -> torch.Tensor:
        seen.append(v.detach())
        return v.flatten(1).sum(dim=1)

    real, fake = torch.ones(64, 1, 3, 3), torch.zeros(64, 1, 3, 3)
    gradient_penalty(critic, real, fake)
    eps = seen[0].flatten(1)
    # With real = 1 and fake = 0, x̂ = ε: constant within each image, different across them.
    torch.testing.assert_close(eps, eps[:, :1].expand_as(eps))
    assert eps[:, 0].unique().numel() == 64
    assert eps.min() >= 0 and eps.max() <= 1


# Networks and configs


@pytest.mark.parametrize(("size", "channels"), [(28, 1), (32, 3), (64, 3)])
def test_conv_networks_fit_mnist_cifar_and_64_pixel_images(size: int, channels: int) -> None:
    g = ConvGenerator(latent_dim=16, channels=channels, image_size=size, width=8)
    d = ConvDiscriminator(channels=channels, image_size=size, width=8)
    images = g(torch.randn(3, 16))
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (3,)
    # Strided convolutions only: no pooling anywhere.
    assert not any(isinstance(m, nn.MaxPool2d | nn.AvgPool2d) for m in d.modules())


def test_mlp_networks_flatten_and_take_a_condition() -> None:
    g = MLPGenerator(latent_dim=4, channels=3, image_size=8, hidden_dims=[16], condition_dim=2)
    d = MLPDiscriminator(channels=3, image_size=8, hidden_dims=[16], condition_dim=2)
    condition = torch.eye(2)[[0, 1, 1]]
    images = g(torch.randn(3, 4), condition)
    assert images.shape == (3, 3, 8, 8)
    # D flattens the images itself.
    assert d(images, condition).shape == (3,)
    with pytest.raises(ValueError, match="needs a condition"):
        d(images)
    plain = MLPDiscriminator(channels=3, image_size=8, hidden_dims=[])
    with pytest.raises(ValueError, match="takes no condition"):
        plain(images, condition)


def parameter_counts(model: GAN) -> tuple[int, int]:
    return tuple(
        sum(p.numel() for p in net.parameters()) for net in (model.generator, model.discriminator)
    )


def test_every_config_keeps_its_architecture() -> None:
    # The parameter counts (generator, discriminator) of the models before networks were
    # injected: the configs build the same networks.
    counts = {
        "gan": (1_486_352, 1_460_225),
        "cgan": (1_488_912, 1_470_465),
        "dcgan": (759_681, 138_689),
        "wgan": (759_681, 138_689),
        "wgan_gp": (759_681, 138_689),
        "lsgan": (759_681, 138_689),
        "sagan": (940_418, 143_682),
    }
    for name, expected in counts.items():
        assert parameter_counts(build(name)) == expected, name
    assert parameter_counts(build("dcgan", "data=cifar10")) == (1_068_931, 663_361)


def test_every_config_keeps_its_losses_and_optimizers() -> None:
    expected = {
        # name: (class, loss, d_steps, latent_dim, (G's lr, betas), (D's lr, betas))
        "gan": (GAN, "bce", 1, 100, (2e-4, (0.5, 0.999)), (2e-4, (0.5, 0.999))),
        "dcgan": (GAN, "bce", 1, 100, (2e-4, (0.5, 0.999)), (2e-4, (0.5, 0.999))),
        "cgan": (ConditionalGAN, "bce", 1, 100, (2e-4, (0.5, 0.999)), (2e-4, (0.5, 0.999))),
        "wgan": (WGAN, "wasserstein", 5, 100, (5e-5, None), (5e-5, None)),
        "wgan_gp": (WGANGP, "wasserstein", 5, 100, (1e-4, (0.0, 0.9)), (1e-4, (0.0, 0.9))),
        "sagan": (GAN, "hinge", 1, 128, (1e-4, (0.0, 0.9)), (4e-4, (0.0, 0.9))),
        "lsgan": (GAN, "least_squares", 1, 100, (2e-4, (0.5, 0.999)), (2e-4, (0.5, 0.999))),
    }
    for name, (cls, loss, d_steps, latent_dim, g_opt, d_opt) in expected.items():
        model = build(name)
        assert type(model) is cls, name
        assert isinstance(model, HasPrior)
        assert isinstance(model, Conditional) == (name == "cgan")
        assert model.checkpoint_monitor is None
        assert (model.accumulate_grad_batches, model.grad_clip_norm) == (1, None), name
        assert (model.adversarial_loss.name, model.d_steps, model.latent_dim) == (
            loss,
            d_steps,
            latent_dim,
        )
        for optimizer, (lr, betas) in zip(
            model.configure_optimizers(), (g_opt, d_opt), strict=True
        ):
            group = optimizer.param_groups[0]
            assert group["lr"] == lr, name
            if betas is None:
                assert isinstance(optimizer, torch.optim.RMSprop)
            else:
                assert tuple(group["betas"]) == betas
    assert build("wgan").clip == 0.01
    assert build("wgan_gp").gp_weight == 10.0


def test_every_gan_config_says_how_it_runs_under_ddp() -> None:
    # Each backward pass leaves one network without gradients, which plain DDP refuses;
    # genlab train picks the strategy that allows it (tests/test_faults.py runs it).
    for name in GANS:
        text = (Path(CONFIG_DIR) / "model" / f"{name}.yaml").read_text()
        assert "ddp_find_unused_parameters_true" in text, name


def test_dcgan_layers_and_initialisation() -> None:
    model = build("dcgan", "model.generator.width=32", "model.discriminator.width=32")
    g_layers = [type(m) for m in model.generator.net]
    assert g_layers[-1] is nn.Tanh and nn.ReLU in g_layers and nn.BatchNorm2d in g_layers
    d_layers = list(model.discriminator.net)
    assert all(m.negative_slope == 0.2 for m in d_layers if isinstance(m, nn.LeakyReLU))
    # No batch norm on D's input layer, as in the paper.
    assert isinstance(d_layers[1], nn.LeakyReLU)
    weights = torch.cat(
        [
            m.weight.detach().flatten()
            for m in model.modules()
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
        ]
    )
    assert weights.mean().abs() < 2e-3
    assert weights.std() == pytest.approx(0.02, rel=0.05)
    # init: default keeps PyTorch's initialisation, much wider for these layers.
    default = ConvDiscriminator(channels=1, image_size=28, width=32, init="default")
    assert default.net[0].weight.std() > 0.05


def test_bad_network_options_get_clear_errors() -> None:
    with pytest.raises(ConfigError, match="even data.image_size of at least 8"):
        ConvGenerator(latent_dim=8, channels=1, image_size=27)
    with pytest.raises(ConfigError, match="norm 'group'.*batch, layer, none"):
        ConvDiscriminator(channels=1, image_size=28, norm="group")
    with pytest.raises(ConfigError, match="init 'xavier'.*dcgan, default"):
        ConvGenerator(latent_dim=8, channels=1, image_size=28, init="xavier")
    with pytest.raises(TypeError, match="keyword arguments only"):
        SelfAttention(16)


def test_self_attention_starts_as_identity_and_mixes_distant_pixels() -> None:
    torch.manual_seed(0)
    block = SelfAttention(channels=16)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    y = block(x)
    x2 = x.clone()
    x2[:, :, 4, 4] += 1.0
    # A change in one corner reaches the opposite corner in a single block.
    assert not torch.allclose(block(x2)[:, :, 0, 0], y[:, :, 0, 0])


def spectral_norms(module: nn.Module) -> list[float]:
    """The largest singular value of every spectrally normalised weight, as the
    parametrization sees it: the weight with its normalised dimension first, flattened."""
    values = []
    for m in module.modules():
        if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
            dim = m.parametrizations.weight[0].dim
            matrix = m.weight.detach().movedim(dim, 0).flatten(1)
            values.append(torch.linalg.matrix_norm(matrix, ord=2).item())
    return values


def test_spectral_norm_keeps_the_largest_singular_value_near_one() -> None:
    torch.manual_seed(0)
    model = build("sagan", "data=cifar10", "model.latent_dim=32", *CONV_SMALL).train()
    # Each training-mode forward pass runs one more power iteration.
    with torch.no_grad():
        for _ in range(10):
            model.discriminate(model.generate(torch.randn(4, 32)))
    g_norms, d_norms = spectral_norms(model.generator), spectral_norms(model.discriminator)
    # Every conv of both networks, the attention blocks' four 1x1 convs included.
    assert len(g_norms) == 4 + 4 and len(d_norms) == 4 + 4
    assert all(s == pytest.approx(1.0, abs=0.05) for s in g_norms + d_norms), g_norms + d_norms
    attention = [m for m in model.modules() if isinstance(m, SelfAttention)]
    assert len(attention) == 2 and all(float(a.gamma.detach()) == 0 for a in attention)


def test_wgan_gp_refuses_batch_norm_in_the_critic() -> None:
    with pytest.raises(ConfigError, match="batch norm.*model.discriminator.norm=layer"):
        build("wgan_gp", "model.discriminator.norm=batch")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build("wgan_gp").discriminator.modules())


def test_wgan_clips_the_critics_weights_after_each_step() -> None:
    model = mlp_gan(WGAN, clip=0.01)
    with torch.no_grad():
        for p in model.discriminator.parameters():
            p.normal_(0, 1)
    model.after_discriminator_step()
    weights = torch.cat([p.detach().flatten() for p in model.discriminator.parameters()])
    assert float(weights.abs().max()) == pytest.approx(0.01)
    # The generator is left alone.
    assert max(float(p.detach().abs().max()) for p in model.generator.parameters()) > 0.01


def test_conditional_gan_labels() -> None:
    model = mlp_gan(ConditionalGAN, condition_dim=10).eval()
    grid = model.image_grids(torch.rand(4, 1, 28, 28))["val/samples"]
    assert len(grid) == 10 and all(row.shape == (8, 1, 28, 28) for row in grid)
    assert model.class_labels(12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    z = torch.randn(3, 8)
    torch.testing.assert_close(model.decode(z, 7), model.decode(z, torch.tensor([7, 7, 7])))
    assert not torch.allclose(model.decode(z, 7), model.decode(z, 3))
    assert model.sample(5, labels=2).shape == (5, 1, 28, 28)
    for bad in (10, -1):
        with pytest.raises(ConfigError, match=f"label={bad} is out of range"):
            model.class_labels(3, bad)
    with pytest.raises(ConfigError, match="must lie in 0..9"):
        model.decode(z, torch.tensor([0, 10, 1]))


@pytest.mark.parametrize(
    ("build_model", "match"),
    [
        (lambda: mlp_gan(loss="nonsaturating"), "model.loss='nonsaturating'"),
        (lambda: mlp_gan(d_steps=0), "at least 1"),
        (lambda: mlp_gan(latent_dim=0), "model.latent_dim"),
        (lambda: mlp_gan(WGAN, clip=0.0), "model.clip"),
        (lambda: mlp_gan(WGAN, d_steps=0), "at least 1"),
        (lambda: mlp_gan(WGANGP, gp_weight=-1.0), "model.gp_weight"),
        (lambda: mlp_gan(grad_clip_norm=-1.0), "model.grad_clip_norm"),
        (lambda: mlp_gan(accumulate_grad_batches=0), "model.accumulate_grad_batches"),
        (lambda: mlp_gan(accumulate_grad_batches=2.5), "model.accumulate_grad_batches"),
        (lambda: mlp_gan(ConditionalGAN, condition_dim=1, num_classes=1), "model.num_classes"),
        # Unconditioned networks in a conditional GAN.
        (lambda: mlp_gan(ConditionalGAN), "condition_dim"),
        (lambda: build("gan", "model.generator.latent_dim=50"), "model.generator.latent_dim"),
        (lambda: build("gan", "model.discriminator.dropout=1.0"), "model.discriminator.dropout"),
        (lambda: mlp_gan().configure_optimizers(), "model.optimizer_g"),
        (lambda: mlp_gan(optimizer_g=ADAM).configure_optimizers(), "model.optimizer_d"),
    ],
)
def test_bad_options_get_clear_errors(build_model, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model()


def test_a_model_built_in_python_rebuilds_from_its_own_config() -> None:
    for model in (
        mlp_gan(loss="hinge", d_steps=2),
        mlp_gan(ConditionalGAN, condition_dim=10),
        mlp_gan(WGAN, clip=0.05),
        mlp_gan(WGANGP, gp_weight=5.0),
    ):
        config = model.model_config()
        rebuilt = instantiate(config)
        assert type(rebuilt) is type(model)
        assert dict(rebuilt.hparams) == dict(model.hparams)
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


# Training


def test_a_config_with_a_swapped_network_trains(workdir: Path) -> None:
    # gan's fully connected D replaced by a convolutional one, in the config alone.
    cfg = model_config("gan", *MLP_SMALL, "model.latent_dim=8")
    cfg.discriminator = OmegaConf.create(
        {
            "_target_": "genlab.nn.gan.ConvDiscriminator",
            "channels": "${..in_channels}",
            "image_size": "${..image_size}",
            "width": 8,
        }
    )
    model = instantiate(cfg)
    assert isinstance(model.discriminator, ConvDiscriminator)
    fit(model, workdir, 2)
    assert (model.d_updates, model.g_updates) == (2, 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("loss", ["least_squares", "hinge", "minimax"])
def test_dcgan_trains_with_another_loss(loss: str, workdir: Path) -> None:
    model = build("dcgan", f"model.loss={loss}", "model.latent_dim=8", *CONV_SMALL)
    assert model.adversarial_loss.name == loss
    fit(model, workdir, 2)
    assert (model.d_updates, model.g_updates) == (2, 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())


class ParameterSnapshot(pl.Callback):
    """Keeps each network's parameters as they were before the first step."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


@pytest.mark.parametrize("name", GANS)
def test_every_gan_trains_both_networks(name: str, workdir: Path, tmp_path: Path) -> None:
    snapshot = f"{ParameterSnapshot.__module__}.{ParameterSnapshot.__qualname__}"
    cfg = compose_train(
        workdir,
        tmp_path,
        f"model={name}",
        *SMALL[name],
        # 5 batches, so that the Wasserstein models' generator steps once after 5 critic steps.
        "data.batch_size=16",
        "trainer.limit_val_batches=1",
        f"+callbacks.snapshot._target_={snapshot}",
        "~logger",
    )
    metrics, objects = train(cfg)
    model = objects["model"]
    before = next(c for c in objects["trainer"].callbacks if isinstance(c, ParameterSnapshot))
    for net in ("generator", "discriminator"):
        changed = [
            not torch.equal(p, before.before[n])
            for n, p in model.named_parameters()
            if n.startswith(net + ".")
        ]
        assert changed and any(changed), f"{name}: the {net} did not change"
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.d_updates == 5
    assert model.g_updates == (1 if name.startswith("wgan") else 5)
    assert {"val/d_real", "val/d_fake", "test/d_real", "test/d_fake"} <= set(metrics)
    if name == "wgan_gp":
        assert "train/gp" in metrics
    assert (tmp_path / "images" / "val_samples_epoch000.png").is_file()
    # No meaningful validation loss: the checkpoint callback keeps the latest epoch only.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch000.ckpt",
        "last.ckpt",
    ]


@pytest.mark.parametrize(("model", "k", "batches"), [(GAN, 3, 7), (WGAN, 5, 10)])
def test_discriminator_steps_per_generator_step(
    model: type[GAN], k: int, batches: int, workdir: Path
) -> None:
    gan = mlp_gan(model, d_steps=k, optimizer_g=ADAM, optimizer_d=ADAM)
    trainer = fit(gan, workdir, batches)
    g_steps = batches // k
    assert (gan.d_updates, gan.g_updates) == (batches, g_steps)
    # Every optimizer.step() counts as a Lightning step, of either network.
    assert trainer.global_step == batches + g_steps
    opt_g, opt_d = trainer.optimizers
    assert {float(s["step"]) for s in opt_g.state.values()} == {g_steps}
    assert {float(s["step"]) for s in opt_d.state.values()} == {batches}


def test_checkpoints_keep_the_update_counters(workdir: Path, tmp_path: Path) -> None:
    gan = mlp_gan(d_steps=2, optimizer_g=ADAM, optimizer_d=ADAM)
    trainer = fit(gan, workdir, 5)
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    checkpoint = torch.load(tmp_path / "gan.ckpt", weights_only=True)
    assert checkpoint["gan_updates"] == {"d": 5, "g": 2, "d_batches": 0}
    # No accumulation window is open, so no partial gradient is saved.
    assert "gan_accumulated_d_grads" not in checkpoint
    # The base's entries are there too: the version and the config the model rebuilds from.
    assert "genlab_version" in checkpoint
    assert checkpoint["genlab_config"]["model"]["d_steps"] == 2
    fresh = mlp_gan(d_steps=2)
    fresh.on_load_checkpoint(checkpoint)
    assert (fresh.d_updates, fresh.g_updates) == (5, 2)


# Gradient accumulation

SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.5)


class NoiseStream:
    """A ``sample_latent`` handing out consecutive rows of one fixed noise tensor, so that a
    run in N batches of b images and a run in batches of N·b draw the very same noise."""

    def __init__(self, latent_dim: int, rows: int = 2048) -> None:
        self.z = torch.randn(rows, latent_dim, generator=torch.Generator().manual_seed(1))
        self.used = 0

    def __call__(self, n: int, **_: object) -> torch.Tensor:
        self.used += n
        return self.z[self.used - n : self.used]


def accumulating_gan(model: type[GAN] = GAN, *, window: int, d_steps: int, **kwargs) -> GAN:
    """A small GAN without dropout or batch norm, its weights the same for every call."""
    torch.manual_seed(0)
    gan = mlp_gan(
        model,
        d_steps=d_steps,
        accumulate_grad_batches=window,
        optimizer_g=SGD,
        optimizer_d=SGD,
        **kwargs,
    )
    gan.sample_latent = NoiseStream(gan.latent_dim)
    return gan


def fit_in_order(
    gan: GAN, *, batch_size: int, batches: int, epochs: int = 1, ckpt_path: Path | None = None
) -> pl.Trainer:
    """Fits ``gan`` on the same 96 images, in order, ``batches`` batches an epoch."""
    images = torch.rand(96, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    data = torch.utils.data.TensorDataset(images, torch.zeros(96, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    trainer = quiet_trainer(batches, epochs)
    trainer.fit(gan, train_dataloaders=loader, ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize(
    ("model", "options"), [(GAN, {"grad_clip_norm": 0.05}), (WGAN, {"clip": 0.05})]
)
def test_accumulating_n_batches_equals_one_batch_n_times_larger(
    model: type[GAN], options: dict
) -> None:
    # Two D updates and, after the second (d_steps=2), one G update: from 3 accumulated
    # batches of 4 images each, and from single batches of 12 holding the same images and
    # noise. Clipping (a small norm, so that it acts) and WGAN's weight clamp come once per
    # update, on the summed gradient.
    accumulated = accumulating_gan(model, window=3, d_steps=2, **options)
    big = accumulating_gan(model, window=1, d_steps=2, **options)
    steps_accumulated = fit_in_order(accumulated, batch_size=4, batches=6).global_step
    steps_big = fit_in_order(big, batch_size=12, batches=2).global_step
    assert (accumulated.d_updates, accumulated.g_updates, accumulated.d_batches) == (2, 1, 0)
    assert (big.d_updates, big.g_updates) == (2, 1)
    # global_step counts optimizer steps: 2 of D and 1 of G in both runs.
    assert steps_accumulated == steps_big == 3
    for (name, p), q in zip(accumulated.named_parameters(), big.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # And both networks did move.
    initial = accumulating_gan(model, window=1, d_steps=2, **options)
    for net in ("generator", "discriminator"):
        before = torch.cat([p.flatten() for p in getattr(initial, net).parameters()])
        after = torch.cat([p.flatten() for p in getattr(accumulated, net).parameters()])
        assert not torch.allclose(before, after), net


def test_accumulation_counts_updates_and_saves_an_unfinished_window(tmp_path: Path) -> None:
    # Window 2, d_steps 2, 7 batches: D updates after batches 2, 4 and 6, G after the 4th;
    # batch 7 waits in the window.
    gan = accumulating_gan(window=2, d_steps=2)
    trainer = fit_in_order(gan, batch_size=8, batches=7)
    assert (gan.d_updates, gan.g_updates, gan.d_batches) == (3, 1, 1)
    opt_g, opt_d = trainer.optimizers
    assert trainer.global_step == 3 + 1
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    checkpoint = torch.load(tmp_path / "gan.ckpt", weights_only=True)
    assert checkpoint["gan_updates"] == {"d": 3, "g": 1, "d_batches": 1}
    assert checkpoint["genlab_config"]["model"]["accumulate_grad_batches"] == 2
    saved = checkpoint["gan_accumulated_d_grads"]
    assert set(saved) == {n for n, _ in gan.discriminator.named_parameters()}
    for name, p in gan.discriminator.named_parameters():
        torch.testing.assert_close(saved[name], p.grad)
    fresh = accumulating_gan(window=2, d_steps=2)
    fresh.on_load_checkpoint(checkpoint)
    assert (fresh.d_updates, fresh.g_updates, fresh.d_batches) == (3, 1, 1)
    # A resumed run with another window starts its next D update afresh.
    other = accumulating_gan(window=3, d_steps=2)
    other.on_load_checkpoint({**checkpoint, "gan_updates": {"d": 3, "g": 1, "d_batches": 3}})
    assert other.d_batches == 0 and other._pending_d_grads is None


def test_a_run_resumed_inside_a_window_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    # 3 batches an epoch with a window of 2: the first epoch ends mid-window, so the
    # resumed run's first D update needs the gradient of the batch before the checkpoint.
    straight = accumulating_gan(window=2, d_steps=1)
    fit_in_order(straight, batch_size=8, batches=3, epochs=2)
    first = accumulating_gan(window=2, d_steps=1)
    trainer = fit_in_order(first, batch_size=8, batches=3, epochs=1)
    assert first.d_batches == 1
    trainer.save_checkpoint(tmp_path / "epoch0.ckpt")
    resumed = accumulating_gan(window=2, d_steps=1)
    resumed.sample_latent = first.sample_latent  # the noise continues where it stopped
    fit_in_order(resumed, batch_size=8, batches=3, epochs=2, ckpt_path=tmp_path / "epoch0.ckpt")
    assert (resumed.d_updates, resumed.g_updates, resumed.d_batches) == (3, 3, 0)
    for (name, p), q in zip(resumed.named_parameters(), straight.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


# `genlab train`, `sample` and `interpolate` end to end


@pytest.fixture(scope="module")
def dcgan_run(workdir: Path) -> Path:
    # 5 batches of 16 a epoch, and a G step every 2nd batch: steps 2 and 4.
    return cli_train(workdir, "model=dcgan", *CONV_SMALL, "model.d_steps=2", "data.batch_size=16")


@pytest.fixture(scope="module")
def cgan_ckpt(workdir: Path) -> Path:
    run = cli_train(workdir, "model=cgan", *SMALL["cgan"], "test=false")
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_training_logs_losses_scores_gradient_norm_and_samples(dcgan_run: Path) -> None:
    events = EventAccumulator(str(dcgan_run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm"):
        assert f"train/{tag}" in scalars
    assert {"val/d_real", "val/d_fake", "test/d_real", "test/d_fake"} <= scalars
    # Probabilities for the cross-entropy GAN.
    assert all(0 < e.value < 1 for e in events.Scalars("train/d_fake"))
    assert all(e.value > 0 for e in events.Scalars("train/g_grad_norm"))
    grid = events.Images("val/samples")[-1]
    assert (grid.height, grid.width) == (8 * 30 + 2, 8 * 30 + 2)


@pytest.mark.slow
def test_resume_restores_both_optimizers_and_the_step_rhythm(
    workdir: Path, dcgan_run: Path
) -> None:
    first = torch.load(dcgan_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (first["epoch"], first["global_step"]) == (0, 5 + 2)
    assert first["gan_updates"] == {"d": 5, "g": 2, "d_batches": 0}
    resumed = cli_train(
        workdir,
        "model=dcgan",
        *CONV_SMALL,
        "model.d_steps=2",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "test=false",
        f"ckpt_path={dcgan_run / 'checkpoints' / 'last.ckpt'}",
    )
    after = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    # Epoch 2 continues the count: G steps after D steps 6, 8 and 10, not restarting at 7.
    assert after["epoch"] == 1
    assert after["gan_updates"] == {"d": 10, "g": 5, "d_batches": 0}
    assert after["global_step"] == 10 + 5
    g_state, d_state = (s["state"] for s in after["optimizer_states"])
    assert {float(s["step"]) for s in g_state.values()} == {5.0}
    assert {float(s["step"]) for s in d_state.values()} == {10.0}


@pytest.mark.slow
def test_sample_one_class_from_a_conditional_gan(workdir: Path, cgan_ckpt: Path) -> None:
    run, _ = new_run(workdir, "sample", f"ckpt={cgan_ckpt}", "label=3", "n=6")
    saved = torch.load(run / "samples.pt", weights_only=True)
    assert saved["images"].shape == (6, 1, 28, 28)
    assert saved["labels"].tolist() == [3] * 6
    assert (run / "samples.png").is_file()


def compose_sample(workdir: Path, ckpt: Path, *overrides: str) -> DictConfig:
    return compose_config(
        "sample",
        f"ckpt={ckpt}",
        f"paths.root_dir={workdir}",
        f"paths.output_dir={workdir / 'outputs' / 'sample_in_process'}",
        *overrides,
    )


@pytest.mark.slow
def test_sample_labels_cycle_and_bad_labels_are_clear_errors(
    workdir: Path, cgan_ckpt: Path, dcgan_run: Path
) -> None:
    result = sample(compose_sample(workdir, cgan_ckpt, "n=12"))
    saved = torch.load(result["tensors"], weights_only=True)
    assert saved["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    with pytest.raises(ConfigError, match="label=10 is out of range"):
        sample(compose_sample(workdir, cgan_ckpt, "label=10"))
    dcgan = dcgan_run / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="label=3 needs a conditional model"):
        sample(compose_sample(workdir, dcgan, "label=3"))


@pytest.mark.slow
def test_interpolate_between_random_latents_of_a_gan(workdir: Path, dcgan_run: Path) -> None:
    run, _ = new_run(
        workdir,
        "interpolate",
        f"ckpt={dcgan_run / 'checkpoints' / 'last.ckpt'}",
        "source=prior",
        "num_pairs=2",
        "steps=5",
        "method=slerp",
    )
    saved = torch.load(run / "interpolation.pt", weights_only=True)
    assert saved["images"].shape == (2, 5, 1, 28, 28)
    assert saved["codes"].shape == (2, 5, 100)
    # slerp keeps the path's norm between the endpoints' norms, near √100 for N(0, I).
    norms = saved["codes"].norm(dim=-1)
    assert (norms > 0.5 * math.sqrt(100)).all()


@pytest.mark.slow
def test_interpolate_between_images_needs_an_encoder(workdir: Path, dcgan_run: Path) -> None:
    result = run_genlab(
        "interpolate", f"ckpt={dcgan_run / 'checkpoints' / 'last.ckpt'}", "source=data", cwd=workdir
    )
    assert result.returncode == 1
    # dcgan is a config of the GAN class.
    assert "a GAN checkpoint cannot encode images" in result.stderr
    assert "Traceback" not in result.stderr
