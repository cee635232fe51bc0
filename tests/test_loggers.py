"""Loggers: several at once (logger=[tensorboard,csv], logger=many), the single-node shape
of earlier runs, and MLflow's local store read back with MLflow's own client."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import FAST, make_idx_dataset, new_run, run_in_process
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

import genlab
from genlab.commands.train import build_loggers
from genlab.errors import ConfigError


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loggers")
    make_idx_dataset(root / "mnist")
    return root


def train(workdir: Path, *overrides: str) -> Path:
    run, _ = new_run(
        workdir, "train", "data=mnist", f"data.root={workdir / 'mnist'}", *FAST, "test=false",
        "model=ae", *overrides,
    )  # fmt: skip
    return run


@pytest.mark.parametrize("choice", ["logger=[tensorboard,csv]", "logger=many"])
def test_several_loggers_at_once(workdir: Path, choice: str) -> None:
    cfg = genlab.compose("train", [choice], output_dir=workdir / "composed")
    assert sorted(cfg.logger) == ["csv", "tensorboard"]
    run = train(workdir, choice)
    assert "val/loss" in (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_a_single_logger_node_of_earlier_runs_still_builds(tmp_path: Path) -> None:
    old = OmegaConf.create(
        {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": str(tmp_path), "name": "x"}
    )
    (built,) = build_loggers(old)
    assert isinstance(built, CSVLogger)
    keyed = OmegaConf.create(
        {
            "tb": {"_target_": "pytorch_lightning.loggers.TensorBoardLogger", "save_dir": "."},
            "off": None,
        }
    )
    assert [type(b) for b in build_loggers(keyed)] == [TensorBoardLogger]
    assert build_loggers(None) == [] and build_loggers(OmegaConf.create({})) == []


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="pip install genlab[mlflow]")
def test_mlflow_logs_a_run_that_mlflows_client_reads_back(workdir: Path) -> None:
    from mlflow.tracking import MlflowClient

    run = train(workdir, "logger=mlflow", "trainer.max_epochs=2", "model.latent_dim=5")
    store = run / "mlflow.db"
    assert store.is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("genlab")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    # The model's hyperparameters (flattened with the run config: model/latent_dim).
    params = logged.data.params
    assert params.get("model/latent_dim", params.get("latent_dim")) == "5"
    history = client.get_metric_history(logged.info.run_id, "val/loss")
    assert len(history) == 2 and all(m.value > 0 for m in history)


def test_mlflow_missing_is_a_clear_error_before_training(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install genlab\[mlflow\]"):
        build_loggers(genlab.compose("train", ["logger=mlflow"], output_dir=workdir / "m").logger)
    run, result = run_in_process(
        workdir, "train", "data=mnist", f"data.root={workdir / 'mnist'}", *FAST, "logger=mlflow"
    )
    assert result.returncode == 1
    assert "pip install genlab[mlflow]" in result.stderr
    assert not (run / "checkpoints").exists()
