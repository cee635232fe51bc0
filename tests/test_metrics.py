"""The metrics on cases with known answers: FID, KID, precision/recall, class coverage and
its callback, the likelihood bounds, AUROC and the ROC curve, the linear probe, and the
Inception error."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import digit_like_images, mlp_autoencoder, mlp_vae
from scipy.linalg import sqrtm
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve
from torch.utils.data import DataLoader, TensorDataset

from genlab.callbacks import ClassCoverageCallback
from genlab.errors import CheckpointError, ConfigError
from genlab.metrics import (
    auroc,
    class_histogram,
    classes_covered,
    coverage_summary,
    fid,
    frechet_distance,
    kid,
    likelihood_bounds,
    linear_probe,
    precision_recall,
    roc_curve,
)
from genlab.metrics.classifier_trust import classifier_reliability
from genlab.metrics.inception import inception_weights
from genlab.metrics.probe import labelled_subset
from genlab.models import Classifier, VariationalAutoencoder


def gaussian(n: int, *, dim: int = 8, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) + shift


# FID


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift() -> None:
    a = gaussian(2000)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
    distances = [fid(a, gaussian(2000, shift=s, seed=1)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert distances[0] < 0.1
    assert distances == sorted(distances)
    # A shift of s in each of 8 dimensions moves the means by 8 s².
    assert distances[-1] == pytest.approx(8 * 2.0**2, rel=0.05)


def test_frechet_distance_closed_forms() -> None:
    dim = 5
    mean = torch.arange(dim, dtype=torch.float64)
    eye = torch.eye(dim, dtype=torch.float64)
    assert frechet_distance(mean, eye, mean + 1, eye) == pytest.approx(dim)
    # Diagonal covariances: Σ (σ₁ − σ₂)².
    s1, s2 = torch.tensor([1.0, 2, 3, 4, 5]), torch.tensor([2.0, 2, 1, 4, 0.5])
    expected = float((s1 - s2).square().sum())
    got = frechet_distance(mean, torch.diag(s1.double() ** 2), mean, torch.diag(s2.double() ** 2))
    assert got == pytest.approx(expected)


def test_frechet_distance_matches_scipy_sqrtm() -> None:
    generator = torch.Generator().manual_seed(3)
    a, b = (torch.randn(6, 6, generator=generator, dtype=torch.float64) for _ in range(2))
    cov1, cov2 = a @ a.T, b @ b.T + 0.1 * torch.eye(6, dtype=torch.float64)
    mean1, mean2 = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    root = sqrtm(cov1.numpy() @ cov2.numpy()).real
    expected = 6 + np.trace(cov1.numpy() + cov2.numpy() - 2 * root)
    assert frechet_distance(mean1, cov1, mean2, cov2) == pytest.approx(expected, rel=1e-8)


# KID


def test_kid_is_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    a = gaussian(1500)
    same, same_std = kid(a, gaussian(1500, seed=1), num_subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    self_mean, _ = kid(a, a, num_subsets=20, subset_size=500)
    shifted = [kid(a, gaussian(1500, shift=s, seed=1), num_subsets=20)[0] for s in (0.5, 1, 2)]
    assert shifted == sorted(shifted)
    assert abs(self_mean) < 0.02 * shifted[0]


# Precision and recall


def test_precision_recall_of_a_set_with_itself_is_one() -> None:
    a = gaussian(500)
    assert precision_recall(a, a, k=3) == (1.0, 1.0)


def test_precision_recall_of_a_far_disjoint_set_is_zero() -> None:
    assert precision_recall(gaussian(300), gaussian(300, shift=100.0, seed=1), k=3) == (0.0, 0.0)


def test_a_collapsed_set_is_precise_but_recalls_half_the_data() -> None:
    real = torch.cat([gaussian(400, dim=2), gaussian(400, dim=2, shift=50.0, seed=1)])
    collapsed = gaussian(400, dim=2, seed=2)
    precision, recall = precision_recall(real, collapsed, k=3)
    assert precision > 0.95
    assert 0.4 < recall <= 0.5


def test_precision_recall_needs_k_below_the_set_size() -> None:
    with pytest.raises(ConfigError, match="k < set size"):
        precision_recall(gaussian(3), gaussian(3), k=3)


# Class coverage


def constant_classifier(label: int) -> Classifier:
    """A classifier that assigns every image to ``label``."""
    classifier = Classifier().eval()
    final = classifier.head[-1]
    with torch.no_grad():
        final.weight.zero_()
        final.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), 10).float())
    return classifier


def test_coverage_of_one_class_samples_is_one_class() -> None:
    counts = class_histogram(constant_classifier(3), torch.rand(50, 1, 28, 28), batch_size=16)
    assert counts.tolist() == [0, 0, 0, 50, 0, 0, 0, 0, 0, 0]
    summary = coverage_summary(counts)
    assert summary["classes_covered"] == 1
    assert summary["class_3"] == 1.0
    assert summary["kl_uniform"] == pytest.approx(math.log(10))


def test_coverage_of_an_even_spread_is_every_class() -> None:
    summary = coverage_summary(torch.full((10,), 7))
    assert summary["classes_covered"] == 10
    assert summary["kl_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert sum(summary[f"class_{k}"] for k in range(10)) == pytest.approx(1.0)


def test_stray_samples_do_not_count_as_covered() -> None:
    counts = torch.tensor([995, 5, 0, 0, 0, 0, 0, 0, 0, 0])
    assert classes_covered(counts) == 1
    assert classes_covered(counts, threshold=0.0) == 2


def save_classifier(classifier: Classifier, path: Path) -> Path:
    """The parts of a `genlab train model=classifier` checkpoint that loading reads."""
    import genlab

    checkpoint = {
        "state_dict": classifier.state_dict(),
        "genlab_config": {"model": classifier.model_config()},
        "genlab_version": genlab.__version__,
    }
    torch.save(checkpoint, path)
    return path


def tiny_vae() -> VariationalAutoencoder:
    return mlp_vae(
        hidden_dims=[32],
        latent_dim=4,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
    )


def test_coverage_callback_logs_class_shares(tmp_path: Path) -> None:
    ckpt = save_classifier(constant_classifier(7), tmp_path / "classifier.ckpt")
    images = torch.rand(16, 1, 28, 28)
    loader = DataLoader(TensorDataset(images, torch.zeros(16, dtype=torch.long)), batch_size=8)
    callback = ClassCoverageCallback(str(ckpt), num_samples=20)
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(tiny_vae(), train_dataloaders=loader, val_dataloaders=loader)
    logged = trainer.callback_metrics
    assert float(logged["coverage/class_7"]) == 1.0
    assert float(logged["coverage/class_0"]) == 0.0
    assert float(logged["coverage/classes_covered"]) == 1.0
    assert float(logged["coverage/kl_uniform"]) == pytest.approx(math.log(10))


def test_a_weak_classifier_is_reported_and_warned_about() -> None:
    labels = torch.arange(40) % 10
    images = torch.from_numpy(digit_like_images(labels.numpy())).unsqueeze(1)
    # Right on every image of class 7 only: 10% on real images and on reconstructions.
    report = classifier_reliability(constant_classifier(7), tiny_vae().eval(), images, labels)
    assert report["classifier/accuracy_real"] == pytest.approx(0.1)
    assert report["classifier/accuracy_reconstructions"] == pytest.approx(0.1)
    assert report["classifier/images"] == 40
    assert len(report["warnings"]) == 2
    assert "10.0% of the real test images" in report["warnings"][0]
    assert "reconstructions" in report["warnings"][1]


def test_the_coverage_callback_logs_the_classifiers_accuracy(tmp_path: Path) -> None:
    from conftest import make_idx_dataset

    from genlab.data import ImageDataModule

    root = make_idx_dataset(tmp_path / "mnist")
    ckpt = save_classifier(constant_classifier(7), tmp_path / "classifier.ckpt")
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[ClassCoverageCallback(str(ckpt), num_samples=20)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = ImageDataModule(dataset="mnist", root=str(root), batch_size=16)
    with pytest.warns(UserWarning, match="right on only"):
        trainer.fit(tiny_vae(), datamodule=data)
    logged = trainer.callback_metrics
    assert 0 <= float(logged["coverage/classifier_accuracy_real"]) <= 0.5
    assert "coverage/classifier_accuracy_reconstructions" in logged


def test_coverage_callback_refuses_models_without_a_prior(tmp_path: Path) -> None:
    ckpt = save_classifier(constant_classifier(0), tmp_path / "classifier.ckpt")
    loader = DataLoader(TensorDataset(torch.rand(8, 1, 28, 28), torch.zeros(8)), batch_size=8)
    trainer = pl.Trainer(max_epochs=1, callbacks=[ClassCoverageCallback(str(ckpt))], logger=False)
    model = mlp_autoencoder(optimizer=lambda params: torch.optim.Adam(params))
    with pytest.raises(CheckpointError, match="does not declare HasPrior"):
        trainer.fit(model, train_dataloaders=loader)


def test_coverage_callback_needs_a_classifier_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ae.ckpt"
    import genlab

    model = mlp_autoencoder()
    checkpoint = {
        "state_dict": model.state_dict(),
        "genlab_config": {"model": model.model_config()},
        "genlab_version": genlab.__version__,
    }
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="not a classifier"):
        ClassCoverageCallback(str(path))


# Likelihood bounds


@pytest.fixture(scope="module")
def trained_vae() -> tuple[VariationalAutoencoder, torch.Tensor]:
    """A small VAE fitted for a few hundred steps to bar images, and 256 held-out images."""
    torch.manual_seed(0)
    labels = np.arange(512) % 10
    images = torch.from_numpy(digit_like_images(labels, seed=1)).float().div(255).unsqueeze(1)
    model = tiny_vae()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(200):
        batch = images[:256][(torch.arange(64) + 64 * step) % 256]
        loss = model.loss_terms(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), images[256:]


def test_the_importance_weighted_bound_lies_above_the_elbo_and_tightens(trained_vae) -> None:
    model, images = trained_vae
    bounds = {}
    for k in (1, 10, 100):
        elbo, bound = likelihood_bounds(
            model, images, k=k, generator=torch.Generator().manual_seed(0)
        )
        bounds[k] = bound.mean().item()
        assert elbo.shape == bound.shape == (256,)
    elbo = -model.negative_elbo(images, num_samples=20).mean().item()
    # k = 1 is the ELBO in expectation; more samples tighten the bound.
    assert bounds[1] == pytest.approx(elbo, abs=0.02 * abs(elbo))
    assert elbo < bounds[10] < bounds[100]


def test_elbo_from_the_bounds_matches_the_models_elbo(trained_vae) -> None:
    model, images = trained_vae
    generator = torch.Generator().manual_seed(1)
    elbo, _ = likelihood_bounds(model, images, k=200, generator=generator)
    expected = -model.negative_elbo(images, num_samples=200).mean().item()
    assert elbo.mean().item() == pytest.approx(expected, rel=1e-3)


def test_the_bounds_are_chunked_without_changing_them(trained_vae) -> None:
    model, images = trained_vae
    whole = likelihood_bounds(
        model, images[:8], k=16, generator=torch.Generator().manual_seed(2), max_decodes=128
    )
    chunked = likelihood_bounds(
        model, images[:8], k=16, generator=torch.Generator().manual_seed(2), max_decodes=8
    )
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b)


def test_gaussian_likelihood_bounds_are_ordered() -> None:
    torch.manual_seed(0)
    model = mlp_vae(hidden_dims=[32], latent_dim=4, likelihood="gaussian").eval()
    images = torch.rand(64, 1, 28, 28)
    elbo, bound = likelihood_bounds(model, images, k=50, generator=torch.Generator())
    assert torch.isfinite(bound).all()
    assert bound.mean() > elbo.mean()


def test_likelihood_needs_a_variational_model() -> None:
    with pytest.raises(CheckpointError, match="ELBO or likelihood.*declare Variational"):
        likelihood_bounds(mlp_autoencoder(), torch.rand(2, 1, 28, 28), k=2)


# AUROC and ROC curve


def test_auroc_of_perfectly_separated_scores_is_one() -> None:
    is_anomaly = np.arange(100) >= 70
    scores = np.arange(100.0)
    assert auroc(scores, is_anomaly) == 1.0
    assert auroc(-scores, is_anomaly) == 0.0


def test_auroc_of_identical_scores_is_one_half() -> None:
    assert auroc(np.full(50, 3.0), np.arange(50) % 3 == 0) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_roc_curve_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Rounded so that there are ties.
    scores = np.round(rng.normal(size=300), 1)
    is_anomaly = rng.random(300) < 0.3
    assert auroc(scores, is_anomaly) == pytest.approx(roc_auc_score(is_anomaly, scores))
    fpr, tpr = roc_curve(scores, is_anomaly)
    expected_fpr, expected_tpr, _ = sklearn_roc_curve(is_anomaly, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)


def test_auroc_needs_both_kinds_of_images() -> None:
    with pytest.raises(ConfigError, match="both normal and anomalous"):
        auroc(np.arange(5.0), np.zeros(5, dtype=bool))


# Linear probe


def test_linear_probe_separates_separable_codes() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 4
    codes = torch.randn(400, 6, generator=generator) * 0.1
    codes[:, :4] += torch.nn.functional.one_hot(labels, 4)
    result = linear_probe(codes[:300], labels[:300], codes[300:], labels[300:], num_labels=8)
    assert result == {"accuracy": 1.0, "labels": 8.0}


def test_labelled_subset_is_stratified_and_seeded() -> None:
    labels = np.arange(1000) % 10
    chosen = labelled_subset(labels, n=20, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [2] * 10
    assert np.array_equal(chosen, labelled_subset(labels, n=20, seed=0))
    assert not np.array_equal(chosen, labelled_subset(labels, n=20, seed=1))
    # Fewer labels than classes: a plain random subset.
    assert labelled_subset(labels, n=5, seed=0).size == 5
    with pytest.raises(ConfigError, match="between 1 and the 1000"):
        labelled_subset(labels, n=1001, seed=0)


# Inception


def test_missing_inception_weights_say_how_to_provide_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch_fidelity" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError) as error:
        inception_weights(str(tmp_path / "missing.pth"))
    message = str(error.value)
    assert "torch-fidelity" in message and "not installed" in message
    assert "missing.pth do not exist" in message
    assert "weights-inception-2015-12-05-6726825d.pth" in message
    assert "features=PATH/TO/classifier.ckpt" in message
