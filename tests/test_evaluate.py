"""`genlab evaluate` end to end on checkpoints trained in the test: an autoencoder, a VAE
and a classifier as feature extractor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import (
    TINY_CLASSIFIER,
    TINY_VAE,
    make_idx_dataset,
    new_run,
    run_genlab,
    train_checkpoint,
)
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from genlab.checkpoint import load_model
from genlab.commands.common import CONFIG_DIR
from genlab.commands.evaluate import evaluate, likelihood_subset
from genlab.data import ImageDataModule
from genlab.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def ae_ckpt(workdir: Path) -> Path:
    return train_checkpoint(workdir, "model=ae", "model.latent_dim=8")


@pytest.fixture(scope="module")
def vae_ckpt(workdir: Path) -> Path:
    return train_checkpoint(workdir, *TINY_VAE)


@pytest.fixture(scope="module")
def classifier_ckpt(workdir: Path) -> Path:
    return train_checkpoint(workdir, *TINY_CLASSIFIER)


def evaluate_cli(workdir: Path, *args: str) -> tuple[Path, dict, str]:
    """Run `genlab evaluate`; return its run directory, metrics.json and printed output."""
    run, result = new_run(workdir, "evaluate", *args)
    return run, json.loads((run / "metrics.json").read_text()), result.stdout


def config(workdir: Path, *overrides: str) -> DictConfig:
    """The composed `evaluate` config, for calling the command in this process."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "evaluate",
            overrides=[
                f"paths.root_dir={workdir}",
                f"paths.output_dir={workdir}/inprocess",
                *overrides,
            ],
        )


def test_autoencoder_reconstruction_error_and_probe(workdir: Path, ae_ckpt: Path) -> None:
    run, results, out = evaluate_cli(workdir, f"ckpt={ae_ckpt}", "probe=true", "probe_labels=20")
    metrics = results["metrics"]
    assert set(metrics) == {
        "test/recon_error",
        "test/mse_per_pixel",
        "probe/accuracy",
        "probe/labels",
    }
    # The same definition as the model's own anomaly score, averaged over the test split.
    model, _ = load_model(ae_ckpt)
    dm = ImageDataModule(dataset="mnist", root=str(workdir / "mnist"))
    dm.setup("test")
    x, _ = dm.splits["test"][torch.arange(40)]
    assert metrics["test/recon_error"] == pytest.approx(model.score(x).mean().item(), rel=1e-5)
    assert metrics["test/mse_per_pixel"] == pytest.approx(
        model.score(x).mean().item() / 784, rel=1e-5
    )
    assert metrics["probe/labels"] == 20
    assert 0 <= metrics["probe/accuracy"] <= 1
    assert results["images"] == 40
    assert "test/recon_error" in out
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_vae_likelihood_and_sample_metrics(
    workdir: Path, vae_ckpt: Path, classifier_ckpt: Path
) -> None:
    run, results, out = evaluate_cli(
        workdir,
        f"ckpt={vae_ckpt}",
        "k=20",
        f"features={classifier_ckpt}",
        "num_samples=60",
    )
    metrics = results["metrics"]
    assert results["settings"]["k"] == 20
    # The importance-weighted bound sits above the ELBO; both in nats per image.
    assert metrics["test/log_likelihood"] > metrics["test/elbo"]
    assert metrics["test/elbo"] < 0
    assert metrics["samples/fid"] >= 0
    assert metrics["samples/kid_std"] >= 0
    assert 0 <= metrics["samples/precision"] <= 1 and 0 <= metrics["samples/recall"] <= 1
    assert 1 <= metrics["samples/classes_covered"] <= 10
    shares = [metrics[f"samples/class_{k}"] for k in range(10)]
    assert sum(shares) == pytest.approx(1.0)
    assert "samples/fid" in out and "samples/class_0" not in out
    assert 0 <= metrics["samples/classifier_accuracy_real"] <= 1
    assert 0 <= metrics["samples/classifier_accuracy_reconstructions"] <= 1
    assert isinstance(results["warnings"], list)


def test_the_default_likelihood_subset_is_seeded_the_same_and_named(
    workdir: Path, vae_ckpt: Path
) -> None:
    """The defaults on a test split larger than likelihood_images: the ELBO and the bound on
    a seeded subset, the same images in every run, named in metrics.json and the table."""
    large = make_idx_dataset(workdir / "mnist_1200", n_test=1200)
    args = (f"ckpt={vae_ckpt}", f"data.root={large}")
    _, first, out = evaluate_cli(workdir, *args)
    _, second, _ = evaluate_cli(workdir, *args)
    assert first["settings"]["likelihood_images"] == 1000
    assert first["settings"]["likelihood_subset"] == {"images": 1000, "of": 1200, "seed": 0}
    assert first["images"] == 1200
    assert first["metrics"] == second["metrics"]
    assert "on 1000 of the 1200 images, drawn by seed=0; likelihood_images=null" in out
    # Another seed draws other images; null takes them all.
    _, reseeded, _ = evaluate_cli(workdir, *args, "seed=1")
    assert reseeded["settings"]["likelihood_subset"]["seed"] == 1
    assert reseeded["metrics"]["test/elbo"] != first["metrics"]["test/elbo"]
    _, everything, out = evaluate_cli(workdir, *args, "likelihood_images=null", "k=5")
    assert everything["settings"]["likelihood_subset"] == {"images": 1200, "of": 1200, "seed": None}
    assert "of the 1200 images, drawn" not in out


def test_likelihood_subset_is_sorted_nested_and_none_for_all() -> None:
    first = likelihood_subset(1200, 100, seed=0)
    assert torch.equal(first, likelihood_subset(1200, 100, seed=0))
    assert torch.equal(first, first.sort().values) and len(first.unique()) == 100
    # A larger count keeps the smaller one's images, so figures at two sizes compare.
    assert set(first.tolist()) <= set(likelihood_subset(1200, 500, seed=0).tolist())
    assert not torch.equal(first, likelihood_subset(1200, 100, seed=1))
    assert likelihood_subset(1200, None, seed=0) is None
    assert likelihood_subset(40, 1000, seed=0) is None


def test_an_autoencoder_is_measured_through_a_prior_fitted_to_its_codes(
    workdir: Path, ae_ckpt: Path, classifier_ckpt: Path
) -> None:
    """No prior of its own, as `sample` does: a Gaussian fitted to the training codes."""
    metrics = evaluate(
        config(workdir, f"ckpt={ae_ckpt}", f"features={classifier_ckpt}", "num_samples=40")
    )
    assert metrics["samples/fid"] >= 0 and "test/recon_error" in metrics


def test_k_zero_skips_the_likelihood_and_says_so(
    workdir: Path, vae_ckpt: Path, ae_ckpt: Path, capsys: pytest.CaptureFixture
) -> None:
    run, results, out = evaluate_cli(workdir, f"ckpt={vae_ckpt}", "k=0")
    assert set(results["metrics"]) == {"test/recon_error", "test/mse_per_pixel"}
    assert "k=0: the ELBO and the log-likelihood bound are skipped" in out
    assert results["skipped"] == ["elbo", "log_likelihood"]
    assert results["settings"]["k"] == 0
    # An autoencoder has no likelihood: k=0 (its default) skips nothing.
    evaluate(config(workdir, f"ckpt={ae_ckpt}", "k=0"))
    assert "skipped" not in capsys.readouterr().out
    assert json.loads((workdir / "inprocess" / "metrics.json").read_text())["skipped"] == []


def test_classifier_checkpoint_reports_accuracy(workdir: Path, classifier_ckpt: Path) -> None:
    metrics = evaluate(config(workdir, f"ckpt={classifier_ckpt}"))
    assert set(metrics) == {"test/accuracy"}
    assert 0 <= metrics["test/accuracy"] <= 1


def test_features_inception_says_what_is_missing(workdir: Path, vae_ckpt: Path) -> None:
    result = run_genlab(
        "evaluate",
        f"ckpt={vae_ckpt}",
        "features=inception",
        f"inception_weights={workdir / 'nowhere.pth'}",
        cwd=workdir,
    )
    assert result.returncode == 1
    assert "features=inception cannot run here" in result.stderr
    assert "nowhere.pth do not exist" in result.stderr
    assert "features=PATH/TO/classifier.ckpt" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("ckpt", "overrides", "error", "match"),
    [
        ("ae", ["k=5"], CheckpointError, "cannot be given an ELBO .* declare Variational"),
        ("classifier", ["probe=true"], CheckpointError, "does not declare Encodes"),
        ("classifier", ["features=CLASSIFIER"], CheckpointError, "does not declare Decodes"),
        ("vae", ["features=AE"], CheckpointError, "holds an Autoencoder, not a classifier"),
        ("vae", ["features=missing.ckpt"], CheckpointError, "missing.ckpt does not exist"),
        ("vae", ["k=-1"], ConfigError, "must be at least 0"),
        ("vae", ["likelihood_images=0"], ConfigError, "likelihood_images, the test images"),
        ("ae", ["probe_labels=5"], ConfigError, "add probe=true"),
        ("ae", ["probe=true", "probe_labels=100000"], ConfigError, "between 1 and the"),
    ],
)
def test_what_a_checkpoint_cannot_do_is_a_clear_error(
    workdir: Path,
    ae_ckpt: Path,
    vae_ckpt: Path,
    classifier_ckpt: Path,
    ckpt: str,
    overrides: list[str],
    error: type,
    match: str,
) -> None:
    paths = {"ae": ae_ckpt, "vae": vae_ckpt, "classifier": classifier_ckpt}
    overrides = [
        o.replace("CLASSIFIER", str(classifier_ckpt)).replace("AE", str(ae_ckpt)) for o in overrides
    ]
    with pytest.raises(error, match=match):
        evaluate(config(workdir, f"ckpt={paths[ckpt]}", *overrides))
