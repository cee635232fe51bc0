"""What the benchmark scripts share: a clock that also measures how much CPU other
processes took, and the batch order of genlab's training sampler. Imported by the scripts in
this folder (python puts a script's own folder on sys.path); never by genlab."""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

PROC_STAT = Path("/proc/stat")


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process); the machine's
    figure is NaN where /proc/stat is missing."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    own = usage.ru_utime + usage.ru_stime
    machine = float("nan")
    if PROC_STAT.exists():
        # cpu  user nice system idle iowait irq softirq steal ...: all but idle and iowait.
        ticks = [int(t) for t in PROC_STAT.read_text().split("\n", 1)[0].split()[1:9]]
        machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return machine, own


class Clock:
    """Wall time plus the CPU time of the machine and of this process, to tell how much of
    the machine other processes took while the timed work ran."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.machine, self.own = cpu_seconds()

    def stop(self) -> tuple[float, float]:
        """(seconds since the start, cores other processes kept busy meanwhile)."""
        seconds = time.perf_counter() - self.wall
        machine, own = cpu_seconds()
        # /proc/stat counts in clock ticks: one tick more is rounding, not another process.
        tick = 1 / os.sysconf("SC_CLK_TCK")
        other = (machine - self.machine) - (own - self.own) - tick
        return seconds, max(other, 0.0) / seconds


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What ran a benchmark, for its JSON and the README's tables: the CPU model, the cores,
    torch and its threads, the device and, on CUDA, the GPU's name."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    info: dict[str, Any] = {
        "device": device,
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def is_contended(load: float, threads: int) -> bool:
    """Whether other processes kept so many cores busy (``load``) that torch's ``threads``
    did not each have one (half a core of slack for the odd daemon)."""
    return math.isfinite(load) and threads + load > (os.cpu_count() or 1) + 0.5


def finite(value: float) -> float | None:
    """``value``, or None (JSON's null) where it is NaN or infinite."""
    return value if math.isfinite(value) else None


def loop_json(rates: list[float], loads: list[float]) -> dict[str, Any]:
    """One loop's figures in the benchmarks' JSON layout: median images/s, and each run's
    images/s, the cores other processes used (null where unknown) and whether contended."""
    threads = torch.get_num_threads()
    return {
        "images_per_s": statistics.median(rates),
        "runs_images_per_s": list(rates),
        "other_load": [finite(x) for x in loads],
        "contended": [is_contended(x, threads) for x in loads],
    }


def batches(images: Tensor, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Endless float batches in [0, 1], reshuffled every epoch, the last partial one dropped:
    the datamodule's training sampler itself, seeded alike, so both loops see the same
    batches in every epoch."""
    from genlab.data.tensors import IndexBatchSampler

    sampler = IndexBatchSampler(
        len(images), batch_size=batch_size, shuffle=True, drop_last=True, seed=seed
    )
    while True:
        for index in sampler:
            yield images[index].float() / 255


def same_weights(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@dataclass
class AdversarialRun:
    """One timed run of a model with a D and a G step a batch: seconds for the timed
    batches, the last losses, and the cores other processes kept busy meanwhile (NaN where
    /proc/stat is missing)."""

    seconds: float
    d_loss: float
    g_loss: float
    other_load: float
    # The timed batches, where not those asked for (a fused chunk ends past them).
    batches: int | None = None


def synchronize(device: torch.device) -> None:
    """Wait for the accelerator's queued work, so that the clock reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tensor_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """A CPU copy of the tensors of ``module``'s state_dict (a model may keep other state
    there: ProGAN's growth state is a dict), for the same-weights check."""
    return {
        k: v.detach().cpu().clone() for k, v in module.state_dict().items() if isinstance(v, Tensor)
    }


def batches_in(trainer: pl.Trainer | None, batch: Any) -> int:
    """The training batches of one iteration: a chunk of them under fused steps
    (performance.steps_per_execution), else one."""
    from genlab.data.datamodule import InMemoryDataModule

    data = trainer.datamodule if trainer is not None else None
    if isinstance(data, InMemoryDataModule) and data.chunked:
        return -(-len(batch[0]) // data.batch_size)
    return 1


class WindowTimer(pl.Callback):
    """Reads the clock, after a synchronize, at the end of the first iteration that reaches
    batch ``start`` and of the one that reaches batch ``stop`` (counted from 1 over the
    whole fit), so the time spans whole iterations: fetch, steps, logging; ``finish`` gets
    the seconds and the other processes' load, and ``timed`` holds the batches in between
    (an iteration of fused steps, performance.steps_per_execution, trains several).
    Keeps the model's weights before the first step, for the same-weights check."""

    def __init__(self, start: int, stop: int) -> None:
        self.start = start
        self.stop = stop
        self.batches = 0
        self.timed = 0
        self.clock: Clock | None = None
        self.initial_state: dict[str, Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.initial_state = tensor_state(pl_module)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        before = self.batches
        self.batches += batches_in(trainer, batch)
        if self.clock is None and before < self.start <= self.batches:
            synchronize(pl_module.device)
            self.clock, self.timed = Clock(), -self.batches
        elif self.clock is not None and before < self.stop <= self.batches:
            synchronize(pl_module.device)
            self.timed += min(self.batches, self.stop)
            self.finish(trainer, *self.clock.stop())

    def finish(self, trainer: pl.Trainer, seconds: float, load: float) -> None:
        raise NotImplementedError


class BatchTimer(WindowTimer):
    """A WindowTimer for the GANs: its run also holds the last D and G losses."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__(start, stop)
        self.run: AdversarialRun | None = None

    def finish(self, trainer: pl.Trainer, seconds: float, load: float) -> None:
        metrics = trainer.callback_metrics
        d_loss, g_loss = float(metrics["train/d_loss"]), float(metrics["train/g_loss"])
        self.run = AdversarialRun(seconds, d_loss, g_loss, load, self.timed)


def adversarial_overrides(*, warmup: int, batches: int, seed: int, output_dir: str) -> list[str]:
    """The `genlab train` overrides every adversarial benchmark shares: float32, one D and
    one G step for each of ``batches`` batches, no validation, test, logger or callbacks
    but the ``BatchTimer`` (timing batches ``warmup`` .. ``batches``), writing only under
    ``output_dir``."""
    return [
        "trainer.precision=32-true",
        # One D and one G optimizer step per batch.
        f"trainer.max_steps={2 * batches}",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        # Training values reach the loggers every log_every_n_steps batches (genlab logs
        # them only then): once in the run, at its last batch, where the timer reads the
        # final losses; the default 50 also logs about once in such a run.
        f"trainer.log_every_n_steps={batches}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks=none",
        f"+callbacks.bench_timer._target_={BatchTimer.__module__}.{BatchTimer.__qualname__}",
        f"+callbacks.bench_timer.start={warmup}",
        f"+callbacks.bench_timer.stop={batches}",
        "~logger",
        f"seed={seed}",
        "test=false",
        # Set directly so that the config resolves without a running Hydra app.
        f"paths.root_dir={output_dir}",
        f"paths.output_dir={output_dir}",
    ]
