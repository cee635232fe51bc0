"""Fused steps (performance.steps_per_execution, genlab.models.fusion): K optimizer steps per
Lightning iteration train exactly as one step an iteration does, weights, logged values,
schedules, hooks, max_steps and resume included; and where they cannot apply, auto falls
back to one step and an explicit K is refused with the reason."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.loggers import Logger

import genlab
from genlab.commands.train import train
from genlab.data.tensors import IndexBatchSampler, StoredImages, TensorImageDataset
from genlab.errors import ConfigError
from tests.conftest import make_idx_dataset

# A small MLP autoencoder and GAN: tiny MNIST (86 training images) in batches of 8 gives
# 10 batches an epoch, so chunks of 4 end mid-epoch and an epoch ends mid-chunk.
AE = ("model=ae", "model.encoder.hidden_dims=[16]", "model.latent_dim=4")
GAN = (
    "model=gan",
    "model.latent_dim=8",
    "model.generator.hidden_dims=[16]",
    "model.discriminator.hidden_dims=[16]",
)


class Recorder(Logger):
    """Keeps every (step, name, value) the loggers are given."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, str, float]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.extend((int(step or 0), k, float(v)) for k, v in metrics.items())

    def train_rows(self) -> list[tuple[int, str, float]]:
        return sorted(r for r in self.rows if r[1].startswith("train/"))


class HookCounter(pl.Callback):
    """Counts the per-step hooks a fit calls."""

    def __init__(self) -> None:
        self.calls = {"before_backward": 0, "after_backward": 0, "before_step": 0}

    def on_before_backward(self, trainer: Any, module: Any, loss: torch.Tensor) -> None:
        self.calls["before_backward"] += 1

    def on_after_backward(self, trainer: Any, module: Any) -> None:
        self.calls["after_backward"] += 1

    def on_before_optimizer_step(self, trainer: Any, module: Any, optimizer: Any) -> None:
        self.calls["before_step"] += 1


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("fusion") / "mnist")


def fit(
    mnist: Path,
    steps: int | str,
    *overrides: str,
    trainer: dict[str, Any] | None = None,
    model: Any = None,
    callbacks: tuple[pl.Callback, ...] = (),
) -> tuple[Any, pl.Trainer, Recorder, HookCounter]:
    """Fits a model composed from ``overrides`` in Python, the way `genlab train` builds
    it, with ``steps`` per execution, a recording logger and a hook counter."""
    cfg = genlab.compose(
        "train",
        [*(overrides or AE), "data=mnist", f"data.root={mnist}", "data.batch_size=8"],
    )
    torch.manual_seed(0)
    datamodule = instantiate(cfg.data)
    if model is None:
        model = instantiate(cfg.model)
        if cfg.get("scheduler"):
            model.scheduler_factory = instantiate(cfg.scheduler)
    model.steps_per_execution = steps
    recorder, hooks = Recorder(), HookCounter()
    options = {
        "max_epochs": 2,
        "log_every_n_steps": 3,
        "limit_val_batches": 1,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        **(trainer or {}),
    }
    runner = pl.Trainer(
        logger=recorder, callbacks=[hooks, *callbacks], accelerator="cpu", **options
    )
    runner.fit(model, datamodule=datamodule)
    return model, runner, recorder, hooks


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_chunks_are_the_batches_in_order() -> None:
    def epoch(**options: Any) -> list[torch.Tensor]:
        sampler = IndexBatchSampler(43, batch_size=5, shuffle=True, seed=3, **options)
        sampler.set_epoch(2)
        return list(sampler)

    for drop_last in (False, True):
        batches = epoch(drop_last=drop_last)
        chunks = epoch(drop_last=drop_last, chunk=3)
        assert [len(c) for c in chunks][:-1] == [15] * (len(chunks) - 1)
        assert torch.equal(torch.cat(chunks), torch.cat(batches))
        assert len(IndexBatchSampler(43, batch_size=5, shuffle=False, drop_last=drop_last,
                                     seed=0, chunk=3)) == len(chunks)  # fmt: skip
    # A limit counts batches whatever the chunk; a float one rounds down as Lightning does.
    limited = epoch(drop_last=True, chunk=3, limit=5)
    assert torch.equal(torch.cat(limited), torch.cat(epoch(drop_last=True)[:5]))
    assert [len(c) for c in limited] == [15, 10]
    assert sum(map(len, epoch(drop_last=True, chunk=4, limit=0.5))) == 5 * 4
    # A resumed epoch skips the batches trained, then chunks the rest.
    skipped = epoch(drop_last=False, chunk=4, skip=(2, 3))
    assert torch.equal(torch.cat(skipped), torch.cat(epoch(drop_last=False)[3:]))


@pytest.mark.parametrize(
    "overrides, options",
    [
        ((), {}),
        # A schedule over the run's length, gradient clipping, a batch limit and validation
        # twice an epoch.
        (
            (*AE, "scheduler=warmup_cosine", "scheduler.warmup_steps=3"),
            {"gradient_clip_val": 0.05, "limit_train_batches": 8, "val_check_interval": 4},
        ),
        # Half-precision weights: each converted batch is cast as Lightning casts a batch.
        (AE, {"precision": "bf16-true"}),
    ],  # fmt: skip
    ids=["plain", "schedule-clip-limits", "bf16-true"],
)
def test_fused_steps_train_and_log_as_one_step_an_iteration(
    mnist: Path, overrides: tuple[str, ...], options: dict[str, Any]
) -> None:
    one, t1, log1, hooks1 = fit(mnist, 1, *overrides, trainer=options)
    fused, t4, log4, hooks4 = fit(mnist, 4, *overrides, trainer=options)
    assert fused.fusion is None and t4.datamodule.chunk == 1  # handed back after the fit
    assert t4.global_step == t1.global_step > 0
    assert same_state(fused, one)
    # The loggers get the same training values at the same steps, the lr among them.
    assert log4.train_rows() == log1.train_rows()
    logged = {r[1] for r in log4.train_rows()}
    assert "train/loss" in logged and ("train/lr" in logged) == ("scheduler" in str(overrides))
    assert [r for r in log4.rows if r[1] == "val/loss"] == [
        r for r in log1.rows if r[1] == "val/loss"
    ]
    # Every step's hooks ran, each once.
    assert hooks4.calls == hooks1.calls == dict.fromkeys(hooks1.calls, t1.global_step)
    for key in ("train/loss", "val/loss"):
        assert float(t4.callback_metrics[key]) == float(t1.callback_metrics[key])


def test_a_gan_fuses_its_batches_exactly(mnist: Path) -> None:
    options = {"max_epochs": 1}
    one, t1, log1, _ = fit(mnist, 1, *GAN, trainer=options)
    fused, t4, log4, _ = fit(mnist, "auto", *GAN, trainer=options)
    assert t4.global_step == t1.global_step == 2 * 10  # a D and a G step a batch
    assert same_state(fused, one)
    assert log4.train_rows() == log1.train_rows()
    assert {"train/d_loss", "train/g_loss", "train/g_grad_norm"} <= {r[1] for r in log4.rows}


def test_max_steps_inside_a_chunk_resumes_as_one_step_runs_do(mnist: Path, tmp_path: Path) -> None:
    def run(name: str, *overrides: str) -> dict[str, Any]:
        cfg = genlab.compose(
            "train",
            [
                *AE,
                "data=mnist",
                f"data.root={mnist}",
                "data.batch_size=8",
                "test=false",
                "trainer.enable_progress_bar=false",
                "trainer.limit_val_batches=1",
                "trainer.max_epochs=-1",
                *overrides,
            ],  # fmt: skip
            output_dir=tmp_path / name,
        )
        with contextlib.chdir(tmp_path):
            return train(cfg)[1]

    def stop_and_resume(steps: int, then: int) -> tuple[dict[str, Any], dict[str, Any]]:
        name = f"parts{steps}-{then}"
        first = run(name, "trainer.max_steps=13", f"performance.steps_per_execution={steps}")
        assert first["trainer"].global_step == 13
        saved = torch.load(tmp_path / name / "checkpoints/last.ckpt", weights_only=True)
        overrides = [f"resume={tmp_path / name}", "trainer.max_steps=17"]
        overrides.append(f"performance.steps_per_execution={then}")
        resumed = genlab.compose("train", overrides, output_dir=tmp_path / name)
        with contextlib.chdir(tmp_path):
            _, second = train(resumed)
        assert second["trainer"].global_step == 17
        return saved, second

    # Stopped 3 batches into a chunk of the second epoch (10 batches an epoch): the fused
    # checkpoint records those 3 batches as trained, not the chunk's 4, and the resumed
    # runs (fused again) end where the one-step runs do.
    one_saved, one = stop_and_resume(1, 1)
    fused_saved, fused = stop_and_resume(4, 4)
    where = {"epoch": 1, "batches": 3}
    assert fused_saved["ImageDataModule"] == one_saved["ImageDataModule"] == where
    assert fused_saved["global_step"] == one_saved["global_step"] == 13
    assert same_state(fused["model"], one["model"])
    # A checkpoint of either kind resumes under the other.
    for steps, then in ((4, 1), (1, 4)):
        _, other = stop_and_resume(steps, then)
        assert same_state(other["model"], one["model"]), (steps, then)


def test_auto_picks_and_refusals_name_the_reason(mnist: Path) -> None:
    _, runner, _, _ = fit(mnist, "auto", trainer={"max_epochs": 1})
    # An MLP on the CPU: 16 an execution, here the epoch's 10 batches in one chunk.
    assert runner.global_step == 10 and runner.num_training_batches == 1
    # A convolutional model on the CPU: one step an iteration.
    _, runner, _, _ = fit(mnist, "auto", "model=conv_ae", trainer={"max_epochs": 1})
    assert runner.num_training_batches == runner.global_step == 10
    # auto fits the chunk to an integer validation interval: 16 -> 2 for 6 batches.
    _, runner, _, _ = fit(mnist, "auto", trainer={"max_epochs": 1, "val_check_interval": 6})
    assert runner.num_training_batches == 5
    # An integer limit of 1 is one batch an epoch (not Lightning's float 1.0, all of them).
    _, runner, _, _ = fit(mnist, 4, trainer={"max_epochs": 2, "limit_train_batches": 1})
    assert runner.global_step == 2
    # Lightning's accumulation: auto falls back to one step; an explicit K is refused.
    _, runner, _, _ = fit(mnist, "auto", trainer={"max_epochs": 1, "accumulate_grad_batches": 2})
    assert runner.global_step == 5 and runner.num_training_batches == 10
    with pytest.raises(ConfigError, match="steps_per_execution=4 cannot apply: trainer.accum"):
        fit(mnist, 4, trainer={"max_epochs": 1, "accumulate_grad_batches": 2})
    with pytest.raises(ConfigError, match="val_check_interval=6 batches is not a multiple of 4"):
        fit(mnist, 4, trainer={"max_epochs": 1, "val_check_interval": 6})


@pytest.mark.parametrize("value", [0, -2, 1.5, "fast", True])
def test_bad_values_are_refused(value: object) -> None:
    from omegaconf import OmegaConf

    from genlab.performance import resolve

    cfg = OmegaConf.create(
        {"trainer": {"accelerator": "cpu"}, "performance": {"steps_per_execution": value}}
    )
    with pytest.raises(ConfigError, match="performance.steps_per_execution must be auto or"):
        resolve(cfg, cuda=False)


def test_chunks_stay_uint8_until_each_batch_is_converted(mnist: Path) -> None:
    images = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8)
    dataset = TensorImageDataset(images, torch.arange(6), binarize=True)
    index = torch.tensor([4, 1])
    stored, labels = StoredImages(dataset)[index]
    assert stored.dtype == torch.uint8 and torch.equal(stored, images[index])
    assert torch.equal(labels, index) and len(StoredImages(dataset)) == 6
    binary = dataset.convert(stored)
    assert binary.dtype == torch.float32 and set(binary.unique().tolist()) <= {0.0, 1.0}
    # A binarised VAE trains fused, each batch drawn as it comes.
    vae = ("model=vae", "model.encoder.hidden_dims=[16]", "model.latent_dim=4",
           "data.binarize=true")  # fmt: skip
    seen: list[torch.Tensor] = []
    model = instantiate(genlab.compose("train", [*vae, "data=mnist", f"data.root={mnist}"]).model)
    original = type(model).loss_terms

    def loss_terms(self: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(x)
        return original(self, x)

    model.loss_terms = loss_terms.__get__(model)
    _, runner, _, _ = fit(mnist, 4, *vae, trainer={"max_epochs": 1}, model=model)
    assert runner.global_step == 10 and runner.num_training_batches == 3
    assert len(seen) >= 10  # the training batches, then validation's
    for x in seen[:10]:
        assert x.dtype == torch.float32 and x.shape == (8, 1, 28, 28)
        assert set(x.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("steps", [1, 4])
def test_the_progress_bar_counts_batches(mnist: Path, steps: int) -> None:
    from genlab.callbacks.progress_bar import BatchProgressBar

    bar = BatchProgressBar()
    options = {"max_epochs": 1, "enable_progress_bar": True}
    _, runner, _, _ = fit(mnist, steps, trainer=options, callbacks=(bar,))
    assert runner.num_training_batches == (10 if steps == 1 else 3)
    # Ten batches either way, though fused in three iterations.
    assert (bar.train_progress_bar.total, bar.train_progress_bar.n) == (10, 10)
