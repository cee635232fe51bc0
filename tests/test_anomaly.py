"""`genlab anomaly` end to end: a checkpoint trained on some classes is scored on every
class, with the ROC curve and AUROC; one trained on all classes gets scores only."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import new_run, train_checkpoint
from PIL import Image
from sklearn.metrics import roc_auc_score

from genlab.commands.anomaly import normal_classes
from genlab.errors import ConfigError


def anomaly(workdir: Path, *args: str) -> tuple[Path, str]:
    run, result = new_run(workdir, "anomaly", *args)
    return run, result.stdout


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_one_class_checkpoint_is_scored_on_every_class(workdir: Path) -> None:
    ckpt = train_checkpoint(workdir, "model=ae", "model.latent_dim=8", "data.classes=[0,1]")
    run, out = anomaly(workdir, f"ckpt={ckpt}")
    rows = read_scores(run / "scores.csv")
    assert list(rows[0]) == ["index", "label", "score"]
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["score"]) for r in rows])
    # The full test split, all ten classes, although training kept two.
    assert len(rows) == 40 and sorted(set(labels)) == list(range(10))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["normal_classes"] == [0, 1]
    expected = roc_auc_score(~np.isin(labels, [0, 1]), scores)
    assert metrics["auroc"] == pytest.approx(expected, abs=1e-6)
    assert f"AUROC {metrics['auroc']:.4f}" in out
    for png in ("roc.png", "scores_by_class.png"):
        with Image.open(run / png) as image:
            assert image.size[0] > 300


def test_vae_trained_on_every_class_gets_scores_and_no_auroc(workdir: Path) -> None:
    ckpt = train_checkpoint(
        workdir, "model=vae", "model.encoder.hidden_dims=[32]", "model.latent_dim=4"
    )
    run, out = anomaly(workdir, f"ckpt={ckpt}", "elbo_samples=2")
    rows = read_scores(run / "scores.csv")
    assert list(rows[0]) == ["index", "label", "score", "neg_elbo"]
    assert all(float(r["neg_elbo"]) > 0 for r in rows)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "auroc" not in metrics and metrics["normal_classes"] == []
    assert set(metrics["mean_score_by_class"]) == {str(d) for d in range(10)}
    assert not (run / "roc.png").exists()
    assert (run / "scores_by_class.png").is_file()
    assert "trained on every class" in out


def test_normal_classes_by_index_or_name() -> None:
    names = ["zero", "one", "two"]
    assert normal_classes(None, names) == []
    assert normal_classes([2, "zero"], names) == [0, 2]
    with pytest.raises(ConfigError, match="has 'seven', which is not a class"):
        normal_classes(["seven"], names)
