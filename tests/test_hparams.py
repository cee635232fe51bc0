"""Every train run's config and results where runs are compared: TensorBoard's HParams
plugin (read back from the event files), hparams.yaml and metrics.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import FAST, make_idx_dataset, new_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from genlab.callbacks.hparams import HParamsLogger, session_start, write_run_metrics
from genlab.commands.report import flatten_config, summarize_history


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch ae run with a few options set on the command line."""
    workdir = tmp_path_factory.mktemp("hparams")
    make_idx_dataset(workdir / "mnist")
    run, _ = new_run(
        workdir,
        "train",
        "data=mnist",
        f"data.root={workdir / 'mnist'}",
        *FAST,
        "trainer.max_epochs=2",
        "model=ae",
        "model.latent_dim=7",
        "optimizer.lr=0.002",
        "seed=3",
    )
    return run


def hparams_records(folder: Path) -> dict[str, plugin_data_pb2.HParamsPluginData]:
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    contents = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(c) for tag, c in contents.items()}


def scalars(folder: Path) -> dict[str, list[float]]:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [e.value for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


def test_event_files_hold_the_config_and_the_metrics_for_hparams(trained: Path) -> None:
    folder = trained / "tensorboard"
    records = hparams_records(folder)
    start = records[metadata.SESSION_START_INFO_TAG].session_start_info.hparams
    assert start["model.latent_dim"].number_value == 7
    assert start["optimizer.lr"].number_value == pytest.approx(0.002)
    assert start["data.batch_size"].number_value == 32
    assert start["seed"].number_value == 3
    assert start["trainer.max_epochs"].number_value == 2
    assert start["model._target_"].string_value == "genlab.models.Autoencoder"
    end = records[metadata.SESSION_END_INFO_TAG].session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS
    # No experiment record: TensorBoard builds the table from every run of a sweep.
    assert metadata.EXPERIMENT_TAG not in records
    # The metric columns: every scalar's latest value, and the best value of each.
    values = scalars(folder)
    assert len(values["val/loss"]) == 2
    assert values["best/val/loss"] == [pytest.approx(min(values["val/loss"]))]
    assert "test/loss" in values


def test_hparams_yaml_holds_the_whole_config(trained: Path) -> None:
    saved = yaml.safe_load((trained / "tensorboard" / "hparams.yaml").read_text())
    assert saved["optimizer"]["lr"] == pytest.approx(0.002)
    assert saved["data"]["batch_size"] == 32
    assert saved["model"]["latent_dim"] == 7
    assert saved["seed"] == 3


def test_metrics_json_of_a_finished_run(trained: Path) -> None:
    recorded = json.loads((trained / "metrics.json").read_text())
    assert recorded["status"] == "finished"
    assert recorded["monitor"] == "val/loss"
    assert recorded["direction"] == "minimize"
    assert recorded["epochs"] == 2
    assert recorded["wall_time_s"] > 0
    history = recorded["history"]["val/loss"]
    assert history["epoch"] == [0, 1]
    loss = recorded["metrics"]["val/loss"]
    assert loss["final"] == pytest.approx(history["value"][-1])
    assert loss["best"] == pytest.approx(min(history["value"]))
    assert loss["best_epoch"] == history["epoch"][history["value"].index(min(history["value"]))]
    # The same values as the event files.
    assert history["value"] == pytest.approx(scalars(trained / "tensorboard")["val/loss"])
    assert {"train/loss", "val/recon", "test/loss"} <= set(recorded["metrics"])


def test_best_follows_the_direction_and_skips_non_finite_values() -> None:
    history = {
        "val/loss": [(0, 10, 3.0), (1, 20, 1.0), (2, 30, math.nan)],
        "val/acc": [(0, 10, 0.5), (1, 20, 0.9), (2, 30, 0.7)],
    }
    summary = summarize_history(history, "val/loss", "minimize")
    assert summary["val/loss"] == {"final": None, "best": 1.0, "best_epoch": 1}
    assert summary["val/acc"] == {"final": 0.7, "best": 0.9, "best_epoch": 1}
    flipped = summarize_history(history, "val/loss", "maximize")
    assert flipped["val/loss"]["best"] == 3.0


def test_flattened_values_are_what_tensorboard_takes() -> None:
    flat = flatten_config(
        {"model": {"hidden_dims": [256, 64], "tied": True, "act": None}, "seed": 1}
    )
    assert flat == {
        "model.hidden_dims": "[256, 64]",
        "model.tied": True,
        "model.act": "null",
        "seed": 1,
    }
    record = plugin_data_pb2.HParamsPluginData.FromString(
        session_start(flat).value[0].metadata.plugin_data.content
    )
    hparams = record.session_start_info.hparams
    assert hparams["model.tied"].bool_value is True
    assert hparams["model.hidden_dims"].string_value == "[256, 64]"
    assert hparams["seed"].number_value == 1


def test_a_resumed_run_keeps_its_earlier_epochs(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    earlier = HParamsLogger({"seed": 0})
    earlier.history = {"val/loss": [(0, 5, 4.0), (1, 10, 2.0)]}
    write_run_metrics(path, earlier, status="finished")
    first_time = json.loads(path.read_text())["wall_time_s"]

    resumed = HParamsLogger({"seed": 0})
    resumed.history = {"val/loss": [(1, 10, 2.5), (2, 15, 3.0)]}  # epoch 1 trained again
    write_run_metrics(path, resumed, status="finished", resumed=True)
    recorded = json.loads(path.read_text())
    assert recorded["history"]["val/loss"]["epoch"] == [0, 1, 2]
    assert recorded["history"]["val/loss"]["value"] == [4.0, 2.5, 3.0]
    assert recorded["metrics"]["val/loss"]["best"] == 2.5
    assert recorded["epochs"] == 3
    assert recorded["wall_time_s"] >= first_time
