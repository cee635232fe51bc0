"""`genlab train` end to end: every model, outputs, multirun, resume, seeds, DDP, and the
non-finite-loss guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST, mlp_autoencoder, run_genlab
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genlab.callbacks import NonFiniteLossGuard
from genlab.data import ImageDataModule
from genlab.errors import NonFiniteLossError
from genlab.models import Autoencoder

MODELS = ["ae", "deep_ae", "conv_ae", "sparse_ae", "denoising_ae", "contractive_ae"]


def run_dirs(cwd: Path, kind: str = "train") -> list[Path]:
    return sorted(p for p in (cwd / "outputs" / kind).glob("*/*") if p.is_dir())


def data_args(root: Path) -> list[str]:
    return ["data=mnist", f"data.root={root}", *FAST]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_runs_fast_dev_run(model: str, tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_genlab(
        "train", *data_args(tiny_mnist), f"model={model}", "trainer.fast_dev_run=true", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "genlab train: outputs in" in result.stdout + result.stderr


def test_a_run_writes_checkpoints_config_logs_and_grids(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_genlab(
        "train", *data_args(tiny_mnist), "model=denoising_ae", "trainer.max_epochs=2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    checkpoints = {p.name for p in (run / "checkpoints").iterdir()}
    assert "last.ckpt" in checkpoints
    assert any(name.startswith("epoch001-val_loss") for name in checkpoints)
    assert (run / "config.yaml").read_text().count("DenoisingAutoencoder") == 1
    assert sorted(p.name for p in (run / "images").iterdir()) == [
        "val_reconstructions_epoch000.png",
        "val_reconstructions_epoch001.png",
    ]

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/recon", "val/loss", "val/recon", "test/loss"} <= scalars
    assert "val/reconstructions" in events.Tags()["images"]
    grid = events.Images("val/reconstructions")[-1]
    # Three rows for the denoising model (noisy, reconstructed, clean) of the whole
    # 10-image validation split (10% of 96), fewer than the 16 the callback asks for.
    assert grid.height == 3 * (28 + 2) + 2
    assert grid.width == 10 * (28 + 2) + 2

    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["genlab_config"]["model"]["_target_"] == "genlab.models.DenoisingAutoencoder"
    assert checkpoint["epoch"] == 1


def test_csv_logger(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_genlab("train", *data_args(tiny_mnist), "model=ae", "logger=csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header
    assert "val/loss" in header


def test_multirun_over_two_models(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_genlab("train", "-m", *data_args(tiny_mnist), "model=ae,sparse_ae", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sorted((tmp_path / "outputs" / "multirun" / "train").glob("*/*"))
    for job, target in (("0", "Autoencoder"), ("1", "SparseAutoencoder")):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert f"genlab.models.{target}\n" in (sweep / job / "config.yaml").read_text()


def test_resume_continues_epoch_step_and_optimizer(tiny_mnist: Path, tmp_path: Path) -> None:
    first = run_genlab("train", *data_args(tiny_mnist), "model=ae", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)

    second = run_genlab(
        "train",
        *data_args(tiny_mnist),
        "model=ae",
        "trainer.max_epochs=2",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = next(p for p in run_dirs(tmp_path) if p != run)
    after = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = before["global_step"]
    assert before["epoch"] == 0
    assert after["epoch"] == 1
    assert after["global_step"] == 2 * steps_per_epoch
    # Adam's step counter carried on from the checkpoint rather than restarting at zero.
    adam_steps = {float(s["step"]) for s in after["optimizer_states"][0]["state"].values()}
    assert adam_steps == {2.0 * steps_per_epoch}


def test_same_seed_same_weights(tiny_mnist: Path, tmp_path: Path) -> None:
    weights = []
    for _ in range(2):
        result = run_genlab(
            "train",
            *data_args(tiny_mnist),
            "model=denoising_ae",
            "seed=7",
            "test=false",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        last = run_dirs(tmp_path)[-1] / "checkpoints" / "last.ckpt"
        weights.append(torch.load(last, weights_only=True)["state_dict"])
    for name, tensor in weights[0].items():
        torch.testing.assert_close(tensor, weights[1][name], rtol=0, atol=0)


def test_ddp_cpu_runs_two_processes(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_genlab(
        "train",
        *data_args(tiny_mnist),
        "model=ae",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    # Lightning re-ran the same command for rank 1, which logged into the same run directory.
    assert (run / "train_ddp_process_1.log").is_file()
    assert "MEMBER: 2/2" in result.stdout + result.stderr
    assert (run / "checkpoints" / "last.ckpt").is_file()


class NaNAfter(Autoencoder):
    """An autoencoder whose loss turns NaN at a given step, to trip the guard."""

    def __init__(self, *, bad_step: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bad_step = bad_step

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(x)
        if self.training and self.global_step >= self.bad_step:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def test_non_finite_loss_stops_with_good_checkpoint(tiny_mnist: Path, tmp_path: Path) -> None:
    import functools

    model = mlp_autoencoder(
        NaNAfter, bad_step=4, optimizer=functools.partial(torch.optim.Adam, lr=1e-3)
    )
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path, save_last=True, every_n_train_steps=1
    )
    trainer = pl.Trainer(
        max_epochs=5,
        callbacks=[checkpoints, NonFiniteLossGuard()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = ImageDataModule(dataset="mnist", root=str(tiny_mnist), batch_size=16)
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 0, step 4") as err:
        trainer.fit(model, datamodule=data)
    assert "last.ckpt" in str(err.value)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
    # The weights in memory are the last good ones too: the bad step never ran.
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved["state_dict"][name])


def test_non_finite_loss_from_the_cli(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_genlab(
        "train",
        *data_args(tiny_mnist),
        "model=conv_ae",
        "optimizer=sgd",
        "optimizer.lr=1e8",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "loss became nan" in result.stderr
    assert "optimizer.lr" in result.stderr
    assert "Traceback" not in result.stderr


def test_callbacks_none_writes_no_checkpoints(tiny_mnist: Path, tmp_path: Path) -> None:
    result = run_genlab("train", *data_args(tiny_mnist), "model=ae", "callbacks=none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    assert not (run / "checkpoints").exists()
    assert not list(run.rglob("*.ckpt"))
    assert "best checkpoint" not in result.stdout + result.stderr


def test_training_values_are_logged_at_the_loggers_steps_and_each_epochs_end(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    import csv
    import json

    from conftest import new_run

    # 86 training images in batches of 16: 5 steps an epoch, 2 epochs; the loggers write
    # every 3rd step (3, 6, 9), and genlab also logs each epoch's last batch (5, 10) for the
    # epoch's own record (callback_metrics, metrics.json), not for the loggers.
    run, _ = new_run(
        tmp_path, "train", "model=ae", *data_args(tiny_mnist), "data.batch_size=16",
        "trainer.max_epochs=2", "trainer.log_every_n_steps=3", "trainer.enable_progress_bar=false",
        "test=false", "logger=csv",
    )  # fmt: skip
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    steps = sorted({int(r["step"]) + 1 for r in rows if r.get("train/loss")})
    assert steps == [3, 6, 9]
    # Validation values stay one per epoch, and each epoch records its last training loss.
    assert [int(r["epoch"]) for r in rows if r.get("val/loss")] == [0, 1]
    history = json.loads((run / "metrics.json").read_text())["history"]["train/loss"]
    assert history["step"] == [5, 10]
    # Those are the losses of steps 5 and 10, as a run logging every step shows them.
    every, _ = new_run(
        tmp_path, "train", "model=ae", *data_args(tiny_mnist), "data.batch_size=16",
        "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "test=false", "logger=csv",
    )  # fmt: skip
    logged = {
        int(r["step"]) + 1: float(r["train/loss"])
        for r in csv.DictReader((every / "csv" / "metrics.csv").open())
        if r.get("train/loss")
    }
    assert history["value"] == pytest.approx([logged[5], logged[10]], rel=1e-6)


def test_max_time_stops_a_run_by_the_clock(tiny_mnist: Path, tmp_path: Path) -> None:
    """trainer.max_time (DD:HH:MM:SS) ends a run of many epochs once the time is up."""
    import contextlib

    import genlab
    from genlab.commands.train import train

    cfg = genlab.compose(
        "train",
        [
            "data=mnist", f"data.root={tiny_mnist}", *FAST, "trainer.max_epochs=100000",
            "trainer.max_time=00:00:00:01", "trainer.limit_val_batches=0", "test=false",
            "~logger", "callbacks=none",
        ],
        output_dir=tmp_path / "run",
    )  # fmt: skip
    with contextlib.chdir(tmp_path):
        _, objects = train(cfg)
    trainer = objects["trainer"]
    assert trainer.global_step >= 1
    assert trainer.current_epoch < 100000 - 1  # stopped by the clock, long before the epochs


def test_a_bad_max_time_is_refused_before_training(tmp_path: Path) -> None:
    from conftest import run_in_process

    _, result = run_in_process(tmp_path, "train", "trainer.max_time=an hour", *FAST)
    assert result.returncode != 0
    assert "trainer.max_time must be a wall-clock limit DD:HH:MM:SS" in result.stderr
