"""Shared fixtures: tiny datasets written by the tests, and a way to run `genlab`."""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import itertools
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from genlab.models import Autoencoder, VariationalAutoencoder
from genlab.models.vae import VAEBase
from genlab.nn.gaussian import MLPGaussianEncoder
from genlab.nn.mlp import MLPDecoder, MLPEncoder

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write a uint8 array in the IDX format (optionally gzipped)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def digit_like_images(labels: np.ndarray, *, size: int = 28, seed: int = 0) -> np.ndarray:
    """One bright bar per class at a class-specific place, plus noise: images a model can
    learn to reconstruct in a few steps. uint8 [N, size, size]."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 3 + int(label) * (size - 6) // 10
        images[i, row : row + 3, 4 : size - 4] = 230
    return images


def make_idx_dataset(
    root: Path, *, n_train: int = 96, n_test: int = 40, compress: bool = True
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(
            root / IDX_NAMES[(split, "images")],
            digit_like_images(labels, seed=n),
            compress=compress,
        )
        write_idx(root / IDX_NAMES[(split, "labels")], labels, compress=compress)
    return root


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A directory with the four MNIST IDX files holding 96 train and 40 test images."""
    return make_idx_dataset(tmp_path / "mnist")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A folder per test module holding the tiny MNIST in ``workdir/mnist``, where the
    module's runs (and the checkpoints its tests share) are made."""
    path = tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_"))
    make_idx_dataset(path / "mnist")
    return path


# Options that make a `genlab train` run small and quiet enough for tests.
FAST = [
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "data.batch_size=32",
]


def run_genlab(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the `genlab` console script in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "GENLAB_DATA_DIR": str(cwd / "data")}
    genlab = Path(sys.executable).with_name("genlab")
    return subprocess.run(
        [str(genlab), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_IN_PROCESS_RUNS = itertools.count()


def run_in_process(workdir: Path, command: str, *args: str) -> tuple[Path, SimpleNamespace]:
    """`genlab COMMAND ARGS...` in this process, from ``workdir``: the config composed as
    the CLI composes it, the command run through the same error handling; its run
    directory (under outputs/COMMAND/) and a result with returncode, stdout and stderr.
    Seconds faster than a subprocess, which mostly waits for torch to import."""
    import genlab
    from genlab.commands.common import run_command

    run = workdir / "outputs" / command / "inprocess" / f"{next(_IN_PROCESS_RUNS):04d}"
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    with (
        contextlib.chdir(workdir),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            cfg = genlab.compose(command, list(args), output_dir=run)
            module = importlib.import_module(f"genlab.commands.{command}")
            run_command(getattr(module, command), cfg)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    result = SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())
    return run, result


def new_run(workdir: Path, command: str, *args: str) -> tuple[Path, SimpleNamespace]:
    """``run_in_process``, expecting success: the run directory and the result."""
    run, result = run_in_process(workdir, command, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result


def train_checkpoint(workdir: Path, *overrides: str) -> Path:
    """Train briefly on the tiny MNIST in ``workdir/mnist``; the run's last.ckpt."""
    run, _ = new_run(
        workdir,
        "train",
        "data=mnist",
        f"data.root={workdir / 'mnist'}",
        *FAST,
        "test=false",
        *overrides,
    )
    return run / "checkpoints" / "last.ckpt"


# Overrides for a tiny checkpoint of each kind that the command tests share.
TINY_VAE = ("model=vae", "model.encoder.hidden_dims=[32]", "model.latent_dim=4")
TINY_CLASSIFIER = ("model=classifier", "model.channels=[8,16]", "model.feature_dim=16")


def mirrored_decoder(
    channels: int, image_size: int, latent_dim: int, hidden_dims: Sequence[int], activation: str
) -> MLPDecoder:
    """The MLP decoder that mirrors an encoder with these hidden layers."""
    return MLPDecoder(
        out_channels=channels,
        image_size=image_size,
        latent_dim=latent_dim,
        hidden_dims=hidden_dims,
        hidden_activation=activation,
    )


def mlp_autoencoder(
    cls: type[Autoencoder] = Autoencoder,
    *,
    in_channels: int = 1,
    image_size: int = 28,
    latent_dim: int = 32,
    hidden_dims: Sequence[int] = (),
    activation: str = "relu",
    latent_activation: str = "sigmoid",
    **options,
) -> Autoencoder:
    """A ``cls`` with the fully connected networks of configs/model/ae.yaml, built in Python."""
    shape = {"in_channels": in_channels, "image_size": image_size}
    encoder = MLPEncoder(
        **shape,
        latent_dim=latent_dim,
        hidden_dims=hidden_dims,
        hidden_activation=activation,
        latent_activation=latent_activation,
    )
    decoder = mirrored_decoder(in_channels, image_size, latent_dim, hidden_dims, activation)
    return cls(encoder=encoder, decoder=decoder, **shape, latent_dim=latent_dim, **options)


def mlp_vae(
    cls: type[VAEBase] = VariationalAutoencoder,
    *,
    in_channels: int = 1,
    image_size: int = 28,
    latent_dim: int = 16,
    hidden_dims: Sequence[int] = (512, 256),
    activation: str = "relu",
    **options,
) -> VAEBase:
    """A ``cls`` with the fully connected networks of configs/model/vae.yaml, built in Python."""
    shape = {"in_channels": in_channels, "image_size": image_size}
    encoder = MLPGaussianEncoder(
        **shape, latent_dim=latent_dim, hidden_dims=hidden_dims, hidden_activation=activation
    )
    decoder = mirrored_decoder(in_channels, image_size, latent_dim, hidden_dims, activation)
    return cls(encoder=encoder, decoder=decoder, **shape, latent_dim=latent_dim, **options)
