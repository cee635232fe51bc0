"""Training throughput of genlab against a minimal hand-written PyTorch loop.

Trains one model (default conv_ae) on the mnist_5k train split for --steps optimizer steps
after --warmup untimed ones, two ways in one process:

- genlab: ``genlab.commands.train.train`` on a composed Hydra config (no callbacks, no
  logger, no validation), so the time includes Lightning's loop, ``self.log`` and the
  DataLoader; a callback reads the clock at the end of step ``warmup`` and of the last step.
- plain: the same model class, initial weights, data tensors and batch order, Adam(lr=1e-3),
  and a loop of randperm, index gather, ``loss_terms``, zero_grad, backward, step.

Both run in float32 on the CPU with torch's default thread count. The runs alternate
plain/genlab --repeats times; the table gives the median images/s and ms/step of each and
the ratio genlab/plain (1.0 means no overhead), and the final losses, equal when both
loops did the same work (denoising_ae's and the VAEs' differ a little: their noise comes from
the global RNG, which the DataLoader also draws from). Each run also reports how many cores
other processes used meanwhile: on a busy machine the figures mean little. Run from the
repository root:

    .venv/bin/python scripts/bench_train.py
    .venv/bin/python scripts/bench_train.py --model ae --repeats 5 --json bench.json

--json writes the layout of scripts/bench_translation.py, which scripts/bench_table.py turns
into the README's table: the machine (CPU, cores, torch, threads, device) and, under
``models``, each loop's median images/s, ms per step, every run's images/s and load.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from benchlib import Clock, batches, finite, loop_json, machine_info, same_weights
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from genlab.atomic import write_json
from genlab.commands.common import CONFIG_DIR
from genlab.commands.train import train

MODELS = (
    "conv_ae",
    "ae",
    "deep_ae",
    "sparse_ae",
    "denoising_ae",
    "contractive_ae",
    "vae",
    "conv_vae",
)
LEARNING_RATE = 1e-3
SEED = 0
# Share of one core that other processes may take before the figures are flagged as noisy:
# with two threads on two cores, each parallel op then waits for a descheduled thread.
NOISY_LOAD = 0.1


@dataclass
class Run:
    """One timed run: seconds for ``steps`` timed steps, the loss of the last step, and the
    cores that other processes kept busy meanwhile (NaN where /proc/stat is missing)."""

    seconds: float
    final_loss: float
    other_load: float
    steps: int


class StepTimer(pl.Callback):
    """Times the optimizer steps from the first iteration end at or after ``start_step`` to
    ``stop_step`` (``trainer.max_steps``).

    Reading the clock at ``on_train_batch_end`` hooks spans whole iterations: the batch
    fetch, the steps, and Lightning's logging and bookkeeping after the hook. An iteration
    of fused steps (performance.steps_per_execution) takes several, so the clock starts at
    the first iteration that reaches ``start_step`` and the run counts the steps it timed.
    """

    def __init__(self, start_step: int, stop_step: int) -> None:
        self.start_step = start_step
        self.stop_step = stop_step
        self.clock: Clock | None = None
        self.started_at = 0
        self.run: Run | None = None
        self.initial_state: dict[str, Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.initial_state = {k: v.clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # global_step already counts the optimizer steps of this iteration.
        step = trainer.global_step
        if self.clock is None and self.start_step <= step < self.stop_step:
            self.clock, self.started_at = Clock(), step
        elif step >= self.stop_step and self.clock is not None and self.run is None:
            seconds, load = self.clock.stop()
            # One step an iteration returns its loss; a fused chunk leaves its last step's
            # in callback_metrics (where one step an iteration leaves the last logged one).
            if isinstance(outputs, dict) and "loss" in outputs:
                loss = float(outputs["loss"])
            else:
                loss = float(trainer.callback_metrics["train/loss"])
            self.run = Run(seconds, loss, load, step - self.started_at)


def compose(args: argparse.Namespace, output_dir: str) -> DictConfig:
    """The `genlab train` config of one benchmark run, writing only under ``output_dir``."""
    timer = f"{StepTimer.__module__}.{StepTimer.__qualname__}"
    overrides = [
        f"model={args.model}",
        "data=mnist_5k",
        f"data.batch_size={args.batch_size}",
        "optimizer=adam",
        f"optimizer.lr={LEARNING_RATE}",
        "trainer=cpu",
        "trainer.precision=32-true",
        f"trainer.max_steps={args.warmup + args.steps}",
        # max_steps alone decides the length, whatever the number of epochs it takes.
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks=none",
        f"+callbacks.bench_timer._target_={timer}",
        f"+callbacks.bench_timer.start_step={args.warmup}",
        f"+callbacks.bench_timer.stop_step={args.warmup + args.steps}",
        "~logger",
        f"seed={SEED}",
        f"performance.steps_per_execution={args.steps_per_execution}",
        "test=false",
        # Set directly so that the config resolves without a running Hydra app.
        f"paths.root_dir={output_dir}",
        f"paths.output_dir={output_dir}",
    ]
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra.compose("train", overrides=overrides)


def run_genlab(args: argparse.Namespace) -> tuple[Run, dict[str, Tensor]]:
    """Fit through genlab; returns the timed run and the model's weights before step 1."""
    with tempfile.TemporaryDirectory(prefix="bench_train_") as output_dir:
        _, objects = train(compose(args, output_dir))
    timer = next(c for c in objects["trainer"].callbacks if isinstance(c, StepTimer))
    if timer.run is None:
        raise RuntimeError(
            f"genlab stopped at step {objects['trainer'].global_step}, "
            f"before step {timer.stop_step}"
        )
    return timer.run, timer.initial_state


def plain_steps(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Iterator[Tensor], steps: int
) -> Tensor:
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = model.loss_terms(next(data))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss


def run_plain(
    args: argparse.Namespace, cfg: DictConfig, images: Tensor
) -> tuple[Run, dict[str, Tensor]]:
    """Fit with the hand-written loop; returns the timed run and the initial weights."""
    torch.manual_seed(SEED)
    model = instantiate(cfg.model, optimizer=None)
    model.train()
    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    data = batches(images, args.batch_size, cfg.data.seed)
    plain_steps(model, optimizer, data, args.warmup)
    clock = Clock()
    loss = plain_steps(model, optimizer, data, args.steps)
    seconds, load = clock.stop()
    return Run(seconds, loss.item(), load, args.steps), initial_state


def summary(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    rates = [r.steps * args.batch_size / r.seconds for r in runs]
    return {
        "images_per_s": statistics.median(rates),
        "ms_per_step": statistics.median(r.seconds / r.steps for r in runs) * 1000,
        "best_images_per_s": max(rates),
        "final_loss": runs[-1].final_loss,
        "runs": [
            {"images_per_s": rate, "other_load": r.other_load}
            for rate, r in zip(rates, runs, strict=True)
        ],
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        f"model {results['model']}, batch {results['batch_size']}, {results['steps']} timed "
        f"steps after {results['warmup']} warm-up, {results['repeats']} repeats, "
        f"torch {results['torch']}, {results['threads']} threads",
        f"{'':12} {'images/s':>9} {'ms/step':>8} {'final loss':>11}  "
        "each run: images/s (cores that other processes used)",
    ]
    for name in ("plain", "genlab"):
        r = results[name]
        runs = "  ".join(
            f"{run['images_per_s']:.0f} ({run['other_load']:.2f})" for run in r["runs"]
        )
        lines.append(
            f"{name:12} {r['images_per_s']:9.0f} {r['ms_per_step']:8.2f} "
            f"{r['final_loss']:11.4f}  {runs}"
        )
    lines.append(
        f"{'genlab/plain':12} {results['ratio']:9.3f}  (best runs: {results['ratio_best']:.3f})"
    )
    other = max(run["other_load"] for name in ("plain", "genlab") for run in results[name]["runs"])
    if other > NOISY_LOAD:
        lines.append(
            f"warning: other processes kept up to {other:.2f} cores busy during a run; "
            "the figures are noisy, rerun on a quiet machine"
        )
    return "\n".join(lines)


def as_json(results: dict[str, Any]) -> dict[str, Any]:
    """The results in the benchmarks' JSON layout (that of bench_translation.py)."""

    def loop(r: dict[str, Any]) -> dict[str, Any]:
        rates = [run["images_per_s"] for run in r["runs"]]
        loads = [run["other_load"] for run in r["runs"]]
        return {
            **loop_json(rates, loads),
            "ms_per_step": r["ms_per_step"],
            "final_loss": finite(r["final_loss"]),
        }

    return {
        "benchmark": "training throughput, genlab against a plain PyTorch loop",
        "script": "bench_train",
        "machine": machine_info("cpu"),
        "data": "mnist_5k",
        "batch_size": results["batch_size"],
        "warmup": results["warmup"],
        "repeats": results["repeats"],
        "models": {
            results["model"]: {
                "steps": results["steps"],
                "plain": loop(results["plain"]),
                "genlab": loop(results["genlab"]),
                "ratio": results["ratio"],
                "best_ratio": results["ratio_best"],
                # Checked for every repeat; recorded so the JSON says so.
                "same_weights": True,
            }
        },
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop")
    parser.add_argument("--model", choices=MODELS, default="conv_ae")
    parser.add_argument(
        "--steps-per-execution",
        default="auto",
        help="genlab's performance.steps_per_execution (default: auto: 16 for MLPs)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    for name in ("steps", "warmup", "batch_size", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table, write --json; returns the JSON's content."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Lightning's banner ("GPU available: ...") and genlab's output-dir line, every run.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench_train_") as scratch:
        cfg = compose(args, scratch)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    images = datamodule.splits["train"].images
    if len(images) < args.batch_size:
        raise SystemExit(f"--batch-size {args.batch_size} exceeds the {len(images)} images")

    plain_runs: list[Run] = []
    genlab_runs: list[Run] = []
    for _ in range(args.repeats):
        plain_run, plain_initial = run_plain(args, cfg, images)
        genlab_run, genlab_initial = run_genlab(args)
        if not same_weights(plain_initial, genlab_initial):
            raise SystemExit(
                "the two loops started from different weights (genlab train "
                "seeds differently now), so the comparison is not like for like"
            )
        plain_runs.append(plain_run)
        genlab_runs.append(genlab_run)

    results: dict[str, Any] = {
        "model": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "steps_per_execution": args.steps_per_execution,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "plain": summary(plain_runs, args),
        "genlab": summary(genlab_runs, args),
    }
    for key, figure in (("ratio", "images_per_s"), ("ratio_best", "best_images_per_s")):
        results[key] = results["genlab"][figure] / results["plain"][figure]
    print(table(results))
    report = as_json(results)
    if args.json is not None:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
