"""Learning-rate schedulers: each one's lr against its formula, every model (a GAN's two
optimizers included) scheduled through `scheduler=`, the schedule restored exactly on
resume, and a model config choosing its own default scheduler."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST, make_idx_dataset, new_run, run_in_process

import genlab
from genlab import schedulers
from genlab.errors import ConfigError

WARMUP = ("scheduler=warmup_cosine", "scheduler.warmup_steps=2")
TINY_GAN = (
    "model=gan",
    "model.generator.hidden_dims=[16]",
    "model.discriminator.hidden_dims=[16]",
    "model.latent_dim=8",
)


def optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def schedule(
    factory, n: int, *, steps: int = 20, epochs: int = 10, lr: float = 1.0, **options
) -> list[float]:
    """The lr of each of the first ``n`` steps (or epochs) under ``factory``."""
    opt = optimizer(lr)
    entry = factory(opt, total_steps=steps, total_epochs=epochs, steps_per_epoch=2, **options)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        entry["scheduler"].step()
    return lrs


def test_cosine_follows_its_formula() -> None:
    lrs = schedule(schedulers.cosine, 21, steps=20, min_lr_ratio=0.1)
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * n / 20)) / 2 for n in range(21)]
    assert lrs == pytest.approx(expected, abs=1e-9)
    assert lrs[-1] == pytest.approx(0.1)


def test_step_follows_its_formula() -> None:
    lrs = schedule(schedulers.step, 7, step_size=2, gamma=0.5)
    assert lrs == pytest.approx([0.5 ** (n // 2) for n in range(7)])


def test_linear_decay_is_constant_then_the_cyclegan_rule() -> None:
    # 10 epochs, 5 constant: lr, ×5, then 5/6, 4/6, ..., 1/6 in the last epoch.
    lrs = schedule(schedulers.linear_decay, 10, epochs=10, constant_fraction=0.5)
    cyclegan = [1 - max(0, n + 1 - 5) / (5 + 1) for n in range(10)]
    assert lrs == pytest.approx(cyclegan)
    assert lrs[:5] == [1.0] * 5
    assert lrs[5:] == pytest.approx([5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])


def test_linear_decay_rounds_half_the_epochs_up() -> None:
    # 5 epochs, half constant: 2.5 rounds to 3 constant epochs (not Python's banker's 2);
    # a 1-epoch run keeps its one epoch at the full rate.
    lrs = schedule(schedulers.linear_decay, 5, epochs=5, constant_fraction=0.5)
    assert lrs[:3] == [1.0] * 3 and lrs[3] < 1.0
    assert schedule(schedulers.linear_decay, 1, epochs=1, constant_fraction=0.5) == [1.0]


def test_warmup_cosine_warms_up_linearly_then_anneals() -> None:
    lrs = schedule(schedulers.warmup_cosine, 21, steps=20, warmup_steps=4)
    warm = [(n + 1) / 5 for n in range(4)]
    anneal = [(1 + math.cos(math.pi * (n - 4) / 16)) / 2 for n in range(4, 21)]
    assert lrs == pytest.approx(warm + anneal, abs=1e-9)
    # warmup_fraction: 10% of 20 steps.
    by_fraction = schedule(schedulers.warmup_cosine, 3, steps=20, warmup_fraction=0.1)
    assert by_fraction == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_geometric_stages_is_the_iwae_papers_schedule() -> None:
    # 1e-3·10^(-i/7) for 3^i epochs, i = 0..7: stage i starts at epoch (3^i - 1)/2, and after
    # the 3280 epochs the lr stays at 1e-4. The run's length plays no part.
    lrs = schedule(schedulers.geometric_stages, 3400, epochs=5, lr=1e-3)
    stage = [sum((3**k - 1) // 2 <= n for k in range(1, 8)) for n in range(3400)]
    assert lrs == pytest.approx([1e-3 * 10 ** (-i / 7) for i in stage], rel=1e-12, abs=0)
    starts = [0, 1, 4, 13, 40, 121, 364, 1093]
    assert [(3**i - 1) // 2 for i in range(8)] == starts
    for i, start in enumerate(starts):
        assert lrs[start] == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-12)
        if start:
            assert lrs[start - 1] == pytest.approx(1e-3 * 10 ** (-(i - 1) / 7), rel=1e-12)
    assert lrs[3279] == lrs[3280] == lrs[-1] == pytest.approx(1e-4, rel=1e-12)
    assert len(set(lrs)) == 8


def test_geometric_stages_rounds_fractional_stages_and_may_not_end() -> None:
    # first 2, growth 1.5: stages of 2, 3, 5 (4.5 rounds up), 7 (6.75) epochs at 1, ½, ¼, ⅛.
    lengths = [2, 3, 5, 7]
    expected = [0.5**i for i, length in enumerate(lengths) for _ in range(length)]
    options = {"first": 2, "growth": 1.5, "decay": 0.5}
    lrs = schedule(schedulers.geometric_stages, 17, stages=None, **options)
    assert lrs == expected
    # The 18th epoch starts a fifth stage, which stages=4 does not have.
    assert schedule(schedulers.geometric_stages, 18, stages=None, **options)[-1] == 0.5**4
    assert schedule(schedulers.geometric_stages, 20, stages=4, **options) == expected + [0.5**3] * 3
    assert schedule(schedulers.geometric_stages, 5, stages=1, **options) == [1.0] * 5
    # growth 1 is a step schedule.
    assert schedule(schedulers.geometric_stages, 6, first=2, growth=1, decay=0.5) == [
        1, 1, 0.5, 0.5, 0.25, 0.25,
    ]  # fmt: skip


def test_geometric_stages_steps_by_epoch_or_by_step() -> None:
    length = {"total_steps": 20, "total_epochs": 10, "steps_per_epoch": 2}
    assert schedulers.geometric_stages(optimizer(), **length)["interval"] == "epoch"
    entry = schedulers.geometric_stages(optimizer(), **length, interval="step")
    assert entry["interval"] == "step"
    # An unbounded run is fine: the stages do not depend on its length.
    entry = schedulers.geometric_stages(
        optimizer(), total_steps=math.inf, total_epochs=math.inf, steps_per_epoch=math.inf
    )
    assert isinstance(entry["scheduler"], torch.optim.lr_scheduler.LambdaLR)


def test_plateau_cuts_the_lr_after_patience_validations_without_progress() -> None:
    opt = optimizer()
    entry = schedulers.plateau(
        opt, total_steps=10, total_epochs=5, steps_per_epoch=2, factor=0.5, patience=1
    )
    assert (entry["interval"], entry["monitor"]) == ("epoch", None)
    lrs = []
    for loss in (1.0, 0.5, 0.6, 0.7, 0.8, 0.9):
        entry["scheduler"].step(loss)
        lrs.append(opt.param_groups[0]["lr"])
    # Two validations without improvement halve it; the cut resets the count.
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]


@pytest.mark.parametrize(
    ("factory", "options", "message"),
    [
        (schedulers.cosine, {"total_steps": math.inf}, "trainer.max_epochs"),
        (schedulers.cosine, {"interval": "batch"}, "scheduler.interval"),
        (schedulers.linear_decay, {"constant_fraction": 2}, "scheduler.constant_fraction"),
        (schedulers.warmup_cosine, {"warmup_steps": 50}, "scheduler.warmup_steps"),
        (schedulers.step, {"step_size": 0}, "scheduler.step_size"),
        (schedulers.geometric_stages, {"interval": "batch"}, "scheduler.interval"),
        (schedulers.geometric_stages, {"first": 0}, "scheduler.first"),
        (schedulers.geometric_stages, {"first": 1.5}, "scheduler.first"),
        (schedulers.geometric_stages, {"growth": 0.5}, "scheduler.growth"),
        (schedulers.geometric_stages, {"growth": "3"}, "scheduler.growth"),
        (schedulers.geometric_stages, {"growth": math.inf}, "scheduler.growth"),
        (schedulers.geometric_stages, {"decay": 0}, "scheduler.decay"),
        (schedulers.geometric_stages, {"decay": 1.5}, "scheduler.decay"),
        (schedulers.geometric_stages, {"decay": True}, "scheduler.decay"),
        (schedulers.geometric_stages, {"stages": 0}, "scheduler.stages"),
        (schedulers.geometric_stages, {"stages": 2.0}, "scheduler.stages"),
    ],
)
def test_bad_settings_name_their_key(factory, options, message: str) -> None:
    length = {"total_steps": 20, "total_epochs": 10, "steps_per_epoch": 2}
    with pytest.raises(ConfigError, match=message):
        factory(optimizer(), **{**length, **options})


# Through `genlab train`.


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("schedulers")
    make_idx_dataset(root / "mnist")
    return root


def train(workdir: Path, *overrides: str) -> Path:
    run, _ = new_run(
        workdir, "train", "data=mnist", f"data.root={workdir / 'mnist'}", *FAST, "test=false",
        *overrides,
    )  # fmt: skip
    return run


def last_state(run: Path) -> tuple[list[float], list[dict]]:
    """The optimizers' lrs and the schedulers' states in the run's last.ckpt."""
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    lrs = [o["param_groups"][0]["lr"] for o in checkpoint["optimizer_states"]]
    return lrs, checkpoint["lr_schedulers"]


def logged(run: Path, key: str) -> list[float]:
    with open(run / "csv" / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_an_autoencoder_is_scheduled_and_logs_its_lr(workdir: Path) -> None:
    run = train(
        workdir, "model=ae", "logger=csv", "trainer.max_epochs=3",
        "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5",
    )  # fmt: skip
    lrs, states = last_state(run)
    assert lrs == pytest.approx([1e-3 * 0.5**3])
    assert states[0]["last_epoch"] == 3
    # 2 training batches an epoch (of 32 images), each logged with that epoch's lr.
    assert logged(run, "train/lr") == pytest.approx([1e-3] * 2 + [5e-4] * 2 + [2.5e-4] * 2)


def test_geometric_stages_in_training_changes_the_lr_on_its_epochs(workdir: Path) -> None:
    # The paper's defaults over 5 epochs: stage 0 is epoch 0, stage 1 epochs 1-3, then 4.
    run = train(
        workdir, "model=ae", "logger=csv", "trainer.max_epochs=5", "scheduler=geometric_stages"
    )
    decay = 10 ** (-1 / 7)
    lrs, states = last_state(run)
    assert states[0]["last_epoch"] == 5
    assert lrs == pytest.approx([1e-3 * decay**2], rel=1e-12)
    # 2 training batches an epoch.
    expected = [1e-3] * 2 + [1e-3 * decay] * 6 + [1e-3 * decay**2] * 2
    assert logged(run, "train/lr") == pytest.approx(expected, rel=1e-6)


def test_both_optimizers_of_a_gan_are_scheduled(workdir: Path) -> None:
    run = train(
        workdir, *TINY_GAN, "logger=csv", "trainer.max_epochs=4", "scheduler=linear_decay",
    )  # fmt: skip
    lrs, states = last_state(run)
    assert len(states) == 2
    # 4 epochs of 2 batches, 2 constant: 2e-4, 2e-4, 2e-4·2/3, 2e-4·1/3, and 0 once over.
    assert lrs == [0.0, 0.0]
    expected = [2e-4] * 4 + [2e-4 * 2 / 3] * 2 + [2e-4 / 3] * 2
    assert logged(run, "train/lr_g") == pytest.approx(expected)
    assert logged(run, "train/lr_d") == pytest.approx(expected)


def test_a_gan_steps_its_schedulers_every_batch(workdir: Path) -> None:
    # Cosine over 3 epochs of 2 batches: the lr of batch n is 2e-4·(1 + cos(πn/6))/2.
    run = train(workdir, *TINY_GAN, "logger=csv", "trainer.max_epochs=3", "scheduler=cosine")
    expected = [2e-4 * (1 + math.cos(math.pi * n / 6)) / 2 for n in range(6)]
    assert logged(run, "train/lr_g") == pytest.approx(expected)
    assert last_state(run)[1][1]["last_epoch"] == 6


def test_plateau_needs_a_metric_a_gan_logs(workdir: Path) -> None:
    run, result = run_in_process(
        workdir, "train", "data=mnist", f"data.root={workdir / 'mnist'}", *FAST, "test=false",
        *TINY_GAN, "scheduler=plateau",
    )  # fmt: skip
    assert result.returncode != 0
    assert "scheduler.monitor=val/d_fake" in result.stderr
    run = train(
        workdir, *TINY_GAN, "trainer.max_epochs=3", "scheduler=plateau",
        "scheduler.monitor=val/d_real", "scheduler.patience=0", "scheduler.mode=max",
        "scheduler.threshold=10",
    )  # fmt: skip
    # Never 10x better: the lr is cut after the first validation and every one after.
    lrs, states = last_state(run)
    assert lrs == pytest.approx([2e-4 * 0.1**2, 2e-4 * 0.1**2])
    assert states[0]["last_epoch"] == 3


class SigtermAt(pl.Callback):
    """Sends this process SIGTERM at the start of training batch ``batch`` (from 1): as on a
    cluster's preemption, last.ckpt is saved at that batch's end, by LastCheckpoint, before
    the model's own batch-end hook, and training stops."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.seen = 0

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        self.seen += 1
        if self.seen == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)


def stopped_run(workdir: Path, batch: int, *overrides: str) -> Path:
    """A run stopped by SIGTERM during training batch ``batch``; its directory."""
    from genlab.callbacks.checkpoints import Preempted
    from genlab.commands.train import train as run_train

    run = workdir / "outputs" / "stopped" / f"{len(list(workdir.glob('outputs/stopped/*'))):03d}"
    args = [
        "data=mnist", f"data.root={workdir / 'mnist'}", *FAST, "test=false", *overrides,
        f"+callbacks.sigterm._target_={__name__}.SigtermAt", f"+callbacks.sigterm.batch={batch}",
    ]  # fmt: skip
    with contextlib.chdir(workdir), pytest.raises(Preempted):
        run_train(genlab.compose("train", args, output_dir=run))
    return run


# 2 training batches an epoch: batch 3 is within epoch 1, batch 4 its last.
STOPPED_RUNS = {
    "ae warmup_cosine, by step, mid-epoch": (("model=ae", *WARMUP), 3),
    "ae linear_decay, by epoch": (("model=ae", "scheduler=linear_decay"), 4),
    "gan warmup_cosine, by batch, mid-epoch": ((*TINY_GAN, *WARMUP), 3),
    "gan linear_decay, by epoch": ((*TINY_GAN, "scheduler=linear_decay"), 4),
    # Stages start at steps 1 and 4 (by step) or epoch 1 (by epoch).
    "ae geometric_stages, by step, mid-epoch": (
        ("model=ae", "scheduler=geometric_stages", "scheduler.interval=step"),
        3,
    ),
    "gan geometric_stages, by epoch": ((*TINY_GAN, "scheduler=geometric_stages"), 2),
}


@pytest.mark.parametrize(("overrides", "batch"), STOPPED_RUNS.values(), ids=STOPPED_RUNS.keys())
def test_a_run_stopped_by_a_signal_resumes_its_schedule_exactly(
    workdir: Path, overrides: tuple[str], batch: int
) -> None:
    # The signal lands at a given batch: one step an iteration (not fused chunks).
    overrides = (*overrides, "trainer.max_epochs=3", "performance.steps_per_execution=1")
    straight = train(workdir, *overrides)
    stopped = stopped_run(workdir, batch, *overrides)
    checkpoint = torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)
    if "model=gan" in overrides:
        # Saved at the batch's end, before the GAN stepped its schedulers: the steps are owed.
        owed = ["step", "epoch"] if batch % 2 == 0 else ["step"]
        assert checkpoint["genlab_pending_lr_steps"] == {"intervals": owed}
    resumed = train(workdir, f"resume={stopped}", "trainer.max_epochs=3")
    assert last_state(resumed) == last_state(straight)


@pytest.mark.parametrize("model", [("model=ae",), TINY_GAN], ids=["ae", "gan"])
def test_plateau_resumes_exactly_from_an_epochs_end(workdir: Path, model: tuple[str]) -> None:
    # Cut at every validation: a step missed on resume would show in the lr.
    monitor = "val/loss" if model[0] == "model=ae" else "val/d_real"
    overrides = (
        *model, "scheduler=plateau", f"scheduler.monitor={monitor}",
        "scheduler.patience=0", "scheduler.threshold=10", "scheduler.mode=max",
    )  # fmt: skip
    straight = train(workdir, *overrides, "trainer.max_epochs=4")
    first = train(workdir, *overrides, "trainer.max_epochs=2")
    resumed = train(workdir, f"resume={first}", "trainer.max_epochs=4")
    assert last_state(resumed) == last_state(straight)
    assert last_state(straight)[0][0] == pytest.approx(last_state(first)[0][0] * 0.01)


# Composition.


def test_the_scheduler_group_composes() -> None:
    assert not genlab.compose("train", [], output_dir="out").scheduler
    names = ("cosine", "step", "linear_decay", "warmup_cosine", "geometric_stages", "plateau")
    for name in names:
        cfg = genlab.compose("train", [f"scheduler={name}"], output_dir="out")
        assert cfg.scheduler._target_ == f"genlab.schedulers.{name}"
        assert cfg.scheduler._partial_ is True


def test_a_model_config_picks_its_default_scheduler(tmp_path: Path) -> None:
    # The syntax a model option (configs/model/X.yaml) uses to choose the scheduler (and,
    # as pix2pix does, the data): a global option whose model is its `model:` node.
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "decaying_ae.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n"
        "  - /model/ae@model\n"
        "  - override /scheduler: linear_decay\n"
        "  - _self_\n"
        "model:\n"
        "  latent_dim: 7\n"
    )
    (tmp_path / "model" / "own.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n"
        "  - override /scheduler: cosine\n"
        "model:\n"
        "  _target_: genlab.models.Autoencoder\n"
    )

    def compose(*overrides: str) -> Any:
        return genlab.compose("train", list(overrides), config_dir=tmp_path, output_dir="out")

    def scheduler(*overrides: str) -> str | None:
        cfg = compose(*overrides)
        return cfg.scheduler.get("_target_") if cfg.scheduler else None

    assert scheduler("model=decaying_ae") == "genlab.schedulers.linear_decay"
    assert compose("model=decaying_ae").model.latent_dim == 7
    assert compose("model=decaying_ae").model._target_ == "genlab.models.Autoencoder"
    assert scheduler("model=own") == "genlab.schedulers.cosine"
    # The command line still wins, and other models keep none.
    assert scheduler("model=decaying_ae", "scheduler=step") == "genlab.schedulers.step"
    assert scheduler("model=decaying_ae", "scheduler=none") is None
    assert scheduler("model=ae") is None


class PlainModule(pl.LightningModule):
    """A user's model outside genlab's base."""

    def __init__(self, **networks: torch.nn.Module) -> None:
        super().__init__()


def test_a_plain_lightning_module_with_a_scheduler_is_a_clear_error(workdir: Path) -> None:
    _, result = run_in_process(
        workdir, "train", "data=mnist", f"data.root={workdir / 'mnist'}", *FAST, "test=false",
        "model=ae", f"model._target_={__name__}.PlainModule", "scheduler=cosine",
    )  # fmt: skip
    assert result.returncode != 0
    assert "PlainModule is a plain LightningModule" in result.stderr
    assert "scheduler=none" in result.stderr


def test_a_resume_that_changes_a_cosine_runs_length_is_refused(workdir: Path) -> None:
    run = train(workdir, "model=ae", "scheduler=cosine", "trainer.max_epochs=1")
    ckpt = run / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=3 changes the length.*cosine"):
        run_in_process(workdir, "train", f"ckpt_path={ckpt}", "trainer.max_epochs=3")
    # A schedule that does not depend on the length resumes into a longer run.
    run = train(workdir, "model=ae", "scheduler=step", "trainer.max_epochs=1")
    new_run(workdir, "train", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            "trainer.max_epochs=2")  # fmt: skip


def test_the_likelihood_reproductions_follow_the_iwae_papers_lr_decay() -> None:
    from genlab.commands.common import CONFIG_DIR

    overlays = sorted(Path(CONFIG_DIR, "experiment").glob("repro_likelihood_*.yaml"))
    assert {"repro_likelihood_vae", "repro_likelihood_iwae", "repro_likelihood_conv_vae"} <= {
        p.stem for p in overlays
    }
    for overlay in overlays:
        cfg = genlab.compose("train", [f"experiment={overlay.stem}"], output_dir="out")
        assert cfg.scheduler._target_ == "genlab.schedulers.geometric_stages", overlay.stem
        assert cfg.optimizer.lr == 1e-3
        options = {k: v for k, v in cfg.scheduler.items() if not k.startswith("_")}
        lrs = schedule(schedulers.geometric_stages, 3281, lr=cfg.optimizer.lr, **options)
        starts = [0, 1, 4, 13, 40, 121, 364, 1093, 3280]
        expected = [1e-3 * 10 ** (-min(i, 7) / 7) for i in range(9)]
        assert [lrs[n] for n in starts] == pytest.approx(expected, rel=1e-12), overlay.stem
        assert lrs[1092] == lrs[364] and lrs[3279] == lrs[3280]
