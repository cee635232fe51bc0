"""Every autoencoder: shapes, a finite loss that falls, the maths of each regulariser, the
architectures its config builds, and its rebuilding from the config it records."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import mlp_autoencoder
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from genlab.commands.common import CONFIG_DIR
from genlab.errors import ConfigError
from genlab.models.autoencoders import (
    Autoencoder,
    ContractiveAutoencoder,
    ConvAutoencoder,
    DenoisingAutoencoder,
    SparseAutoencoder,
)
from genlab.models.reconstruction import ReconstructionModel
from genlab.nn.conv import KerasConvDecoder, KerasConvEncoder
from genlab.nn.losses import kl_sparsity_penalty
from genlab.nn.mlp import MLPDecoder, MLPEncoder

ADAM = functools.partial(torch.optim.Adam, lr=3e-3)


def conv_autoencoder(*, in_channels: int = 1, image_size: int = 28, **options) -> ConvAutoencoder:
    """A ConvAutoencoder with the Keras networks of configs/model/conv_ae.yaml."""
    shape = {"in_channels": in_channels, "image_size": image_size}
    return ConvAutoencoder(
        encoder=KerasConvEncoder(**shape),
        decoder=KerasConvDecoder(out_channels=in_channels, image_size=image_size),
        **shape,
        **options,
    )


def from_config(name: str, *overrides: str) -> ReconstructionModel:
    """The model configs/model/NAME.yaml builds for MNIST-shaped data."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "data=mnist", *overrides])
    return instantiate(cfg.model)


MODELS = {
    "ae": lambda: mlp_autoencoder(latent_dim=16, optimizer=ADAM),
    "ae_tied_bce": lambda: mlp_autoencoder(
        latent_dim=16, tied_weights=True, loss="bce", optimizer=ADAM
    ),
    "deep_ae": lambda: mlp_autoencoder(
        hidden_dims=[64, 32], latent_dim=8, latent_activation="none", optimizer=ADAM
    ),
    "sparse_ae": lambda: mlp_autoencoder(SparseAutoencoder, latent_dim=64, optimizer=ADAM),
    "denoising_mask": lambda: mlp_autoencoder(
        DenoisingAutoencoder, noise="mask", nu=0.3, optimizer=ADAM
    ),
    "denoising_gauss": lambda: mlp_autoencoder(
        DenoisingAutoencoder, noise="gaussian", sigma=0.3, optimizer=ADAM
    ),
    "contractive_ae": lambda: mlp_autoencoder(ContractiveAutoencoder, lam=0.1, optimizer=ADAM),
    "contractive_deep": lambda: mlp_autoencoder(
        ContractiveAutoencoder, hidden_dims=[32], lam=0.1, optimizer=ADAM
    ),
    "conv_ae": lambda: conv_autoencoder(optimizer=ADAM),
    # Built from its config, as `genlab train` builds it.
    "ae_from_config": lambda: from_config("ae", "model.latent_dim=16", "optimizer.lr=3e-3"),
}


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28) * 0.2
    x[:, :, 10:14, 4:24] = 0.9
    return x


@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_loss_falls(name: str, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = MODELS[name]()
    code = model.encode(images)
    assert code.shape == (16, model.latent_dim)
    assert model.decode(code).shape == images.shape
    assert model.reconstruct(images).shape == images.shape
    assert model.score(images).shape == (16,)
    optimizer = model.configure_optimizers()
    first = model.loss_terms(images)
    assert all(torch.isfinite(v) for v in first.values())
    for _ in range(30):
        optimizer.zero_grad()
        model.loss_terms(images)["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        last = model.loss_terms(images)["loss"]
    assert last < 0.9 * first["loss"], (float(first["loss"]), float(last))


# Trainable parameters of each config's defaults on MNIST: the architectures of genlab 0.1.
CONFIG_PARAMETERS = {
    "ae": 50_992,
    "deep_ae": 1_137_184,
    "sparse_ae": 308_308,
    "denoising_ae": 101_200,
    "contractive_ae": 101_200,
    "conv_ae": 140_594,
}


@pytest.mark.parametrize("name", CONFIG_PARAMETERS)
def test_configs_keep_their_architectures(name: str) -> None:
    model = from_config(name)
    assert sum(p.numel() for p in model.trainable_parameters()) == CONFIG_PARAMETERS[name]
    assert type(model).__name__ == model.model_config()["_target_"].rsplit(".", 1)[1]


def test_conv_ae_matches_the_lecture_parameter_counts() -> None:
    model = from_config("conv_ae")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    running = sum(
        b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))
    )
    assert trainable == 140_594
    assert running == 256
    assert trainable + running == 140_850


def test_conv_ae_layer_output_shapes_follow_keras() -> None:
    model = conv_autoencoder()
    shapes = []
    x = torch.zeros(2, 1, 28, 28)
    for layer in [*model.encoder.net, *model.decoder.net]:
        x = layer(x)
        if isinstance(
            layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.MaxPool2d | torch.nn.Linear
        ):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [
        (32, 26, 26),
        (32, 13, 13),
        (64, 11, 11),
        (64, 5, 5),
        (64, 3, 3),
        (49,),
        (64, 14, 14),
        (64, 28, 28),
        (32, 28, 28),
        (1, 28, 28),
    ]


def test_conv_ae_handles_32_pixel_rgb() -> None:
    model = conv_autoencoder(in_channels=3, image_size=32)
    x = torch.rand(2, 3, 32, 32)
    assert model.encode(x).shape == (2, 64)
    assert model.reconstruct(x).shape == x.shape


def test_tied_weights_share_the_encoder_matrix() -> None:
    tied = mlp_autoencoder(latent_dim=16, tied_weights=True)
    untied = mlp_autoencoder(latent_dim=16)
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == 784 * 16
    z = torch.rand(3, 16)
    weight = tied.encoder.layers[0].weight
    expected = torch.sigmoid(z @ weight + tied.decoder.biases[0]).view(3, 1, 28, 28)
    torch.testing.assert_close(tied.decode(z), expected)
    # One matrix: a step on the encoder's weight moves the decoder too.
    with torch.no_grad():
        weight.add_(1.0)
    torch.testing.assert_close(
        tied.decode(z), torch.sigmoid(z @ weight + tied.decoder.biases[0]).view(3, 1, 28, 28)
    )


def test_tied_deep_weights_need_a_mirrored_decoder() -> None:
    model = mlp_autoencoder(hidden_dims=[64, 32], latent_dim=8, tied_weights=True)
    assert model.decode(torch.rand(2, 8)).shape == (2, 1, 28, 28)
    encoder = MLPEncoder(in_channels=1, image_size=28, latent_dim=8, hidden_dims=[64, 32])
    decoder = MLPDecoder(out_channels=1, image_size=28, latent_dim=8, hidden_dims=[64])
    with pytest.raises(ConfigError, match="mirror the encoder"):
        Autoencoder(
            encoder=encoder,
            decoder=decoder,
            in_channels=1,
            image_size=28,
            latent_dim=8,
            tied_weights=True,
        )


@pytest.mark.parametrize(
    "build",
    [
        lambda: mlp_autoencoder(latent_dim=16, tied_weights=True),
        lambda: mlp_autoencoder(DenoisingAutoencoder, hidden_dims=[24], noise="gaussian"),
        lambda: conv_autoencoder(output_activation="sigmoid", loss="bce"),
    ],
)
def test_recorded_config_rebuilds_the_model(build) -> None:
    """What a checkpoint of a model trained from Python stores: its hyperparameters and its
    networks' build configs, enough to rebuild it and load its weights."""
    model = build()
    rebuilt = instantiate(model.model_config(), _convert_="all")
    assert type(rebuilt) is type(model)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 28, 28)
    model.eval()
    rebuilt.eval()
    torch.testing.assert_close(rebuilt.reconstruct(x), model.reconstruct(x))


def test_sparsity_penalty_is_the_bernoulli_kl() -> None:
    rho, rho_hat = 0.05, torch.tensor([0.05, 0.2, 0.5])
    expected = sum(
        rho * torch.log(rho / r) + (1 - rho) * torch.log((1 - rho) / (1 - r)) for r in rho_hat
    )
    torch.testing.assert_close(kl_sparsity_penalty(rho_hat, rho), expected)
    assert kl_sparsity_penalty(torch.full((4,), rho), rho).abs() < 1e-6


def test_sparse_ae_logs_penalty_and_mean_activation(images: torch.Tensor) -> None:
    model = mlp_autoencoder(SparseAutoencoder, latent_dim=32, rho=0.1, beta=2.0)
    terms = model.loss_terms(images)
    code = model.encode(images)
    torch.testing.assert_close(terms["mean_activation"], code.mean())
    torch.testing.assert_close(terms["sparsity"], kl_sparsity_penalty(code.mean(0), 0.1))
    torch.testing.assert_close(terms["loss"], terms["recon"] + 2.0 * terms["sparsity"])


def test_masking_noise_zeroes_about_nu_of_the_inputs() -> None:
    model = mlp_autoencoder(DenoisingAutoencoder, noise="mask", nu=0.25)
    x = torch.ones(64, 1, 28, 28)
    noisy = model.corrupt(x, torch.Generator().manual_seed(0))
    assert set(noisy.unique().tolist()) == {0.0, 1.0}
    assert abs((noisy == 0).float().mean().item() - 0.25) < 0.01


def test_gaussian_noise_has_std_sigma() -> None:
    model = mlp_autoencoder(DenoisingAutoencoder, noise="gaussian", sigma=0.2)
    x = torch.full((64, 1, 28, 28), 0.5)
    noise = model.corrupt(x, torch.Generator().manual_seed(0)) - x
    assert abs(noise.std().item() - 0.2) < 0.005
    assert abs(noise.mean().item()) < 0.005


def test_denoising_loss_compares_with_the_clean_input(images: torch.Tensor) -> None:
    model = mlp_autoencoder(DenoisingAutoencoder, noise="mask", nu=0.5)
    torch.manual_seed(1)
    terms = model.loss_terms(images)
    torch.manual_seed(1)
    noisy = model.corrupt(images)
    expected = (model.reconstruct(noisy) - images).square().flatten(1).sum(1).mean()
    torch.testing.assert_close(terms["recon"], expected)
    rows = model.image_rows(images[:4])
    assert len(rows) == 3
    torch.testing.assert_close(rows[2], images[:4])


def finite_difference_jacobian_norm(
    encoder: torch.nn.Module, x: torch.Tensor, eps: float = 1e-3
) -> torch.Tensor:
    """‖∂h/∂x‖_F² for each image of x [B, C, H, W] by central differences, in float64."""
    norms = []
    for image in x:
        columns = []
        for i in range(image.numel()):
            step = torch.zeros(image.numel(), dtype=image.dtype)
            step[i] = eps
            step = step.view_as(image)
            plus, minus = encoder((image + step)[None]), encoder((image - step)[None])
            columns.append((plus - minus)[0] / (2 * eps))
        norms.append(torch.stack(columns).square().sum())
    return torch.stack(norms)


@pytest.mark.parametrize("hidden_dims", [[], [12]])
def test_contractive_penalty_matches_finite_differences(hidden_dims: list[int]) -> None:
    torch.manual_seed(0)
    model = mlp_autoencoder(
        ContractiveAutoencoder,
        image_size=8,
        latent_dim=6,
        hidden_dims=hidden_dims,
        activation="tanh",
    ).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    exact = model.jacobian_norm(x)
    expected = finite_difference_jacobian_norm(model.encoder, x)
    torch.testing.assert_close(exact, expected, rtol=1e-6, atol=1e-8)


def test_contractive_closed_form_matches_autograd() -> None:
    torch.manual_seed(0)
    model = mlp_autoencoder(ContractiveAutoencoder, latent_dim=10).double()
    assert model._has_closed_form
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(model.jacobian_norm(x), model.autograd_jacobian_norm(x))


def test_contractive_penalty_takes_any_encoder() -> None:
    """No closed form for a convolutional encoder: autograd on the images themselves."""
    torch.manual_seed(0)
    model = ContractiveAutoencoder(
        encoder=KerasConvEncoder(in_channels=1, image_size=20),
        decoder=KerasConvDecoder(out_channels=1, image_size=20),
        in_channels=1,
        image_size=20,
        latent_dim=25,
    ).double()
    assert not model._has_closed_form
    x = torch.rand(2, 1, 20, 20, dtype=torch.float64)
    # Image by image, so no batched-gradient trick is shared with the code under test.
    expected = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda i: model.encoder(i[None])[0], image)
            .square()
            .sum()
            for image in x
        ]
    )
    torch.testing.assert_close(model.jacobian_norm(x), expected)


def test_contractive_penalty_is_differentiable(images: torch.Tensor) -> None:
    model = mlp_autoencoder(ContractiveAutoencoder, hidden_dims=[16], latent_dim=8, lam=1.0)
    model.train()
    penalty = model.jacobian_norm(images).mean()
    penalty.backward()
    assert model.encoder.layers[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: mlp_autoencoder(loss="hinge"), "model.loss"),
        (lambda: conv_autoencoder(loss="bce"), "output_activation=sigmoid"),
        (
            lambda: mlp_autoencoder(SparseAutoencoder, latent_activation="relu"),
            "latent_activation=sigmoid",
        ),
        (lambda: mlp_autoencoder(SparseAutoencoder, rho=1.5), "model.rho"),
        (lambda: mlp_autoencoder(DenoisingAutoencoder, noise="salt"), "model.noise"),
        (lambda: mlp_autoencoder(activation="swish", hidden_dims=[8]), "unknown activation"),
        (lambda: mlp_autoencoder(latent_dim=0), "model.latent_dim"),
        (lambda: conv_autoencoder(image_size=30), "divisible by 4"),
        (lambda: conv_autoencoder(image_size=16), "at least 20"),
        (lambda: mlp_autoencoder().configure_optimizers(), "no optimizer"),
        (
            lambda: Autoencoder(
                encoder=MLPEncoder(in_channels=1, image_size=28, latent_dim=8),
                decoder=MLPDecoder(out_channels=1, image_size=28, latent_dim=8),
                in_channels=1,
                image_size=28,
                latent_dim=16,
            ),
            r"model.encoder makes codes of 8 units but model.latent_dim=16",
        ),
        (
            lambda: Autoencoder(
                encoder=MLPEncoder(in_channels=1, image_size=28, latent_dim=8),
                decoder=KerasConvDecoder(out_channels=1, image_size=28, latent_dim=8),
                in_channels=1,
                image_size=28,
                latent_dim=8,
                tied_weights=True,
            ),
            "tie_to",
        ),
    ],
)
def test_bad_model_options_get_clear_errors(build, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()


def test_the_default_model_validates_like_it_trains_after_one_epoch(tmp_path, monkeypatch) -> None:
    """The README's main job after one epoch: eval-mode batch-norm statistics that keep up
    with the weights, so val/loss is near train/loss (with momentum 0.1 it was twice it)."""
    from conftest import FAST, make_idx_dataset

    import genlab

    root = make_idx_dataset(tmp_path / "mnist", n_train=640, n_test=40)
    monkeypatch.chdir(tmp_path)

    def losses(momentum: float) -> tuple[float, float]:
        cfg = genlab.compose(
            "train",
            [
                "data=mnist",
                f"data.root={root}",
                *FAST,
                "test=false",
                "logger=csv",
                f"model.decoder.bn_momentum={momentum}",
            ],
            output_dir=tmp_path / f"run{momentum}",
        )
        metrics = genlab.train(cfg)
        return metrics["train/loss"], metrics["val/loss"]

    train_loss, val_loss = losses(0.5)
    assert val_loss <= 1.5 * train_loss, (train_loss, val_loss)
    old_train, old_val = losses(0.1)
    assert old_val > val_loss, (old_train, old_val, train_loss, val_loss)
