"""Evaluation speed against training speed, on the same model and data, in one process.

Trains ``--model`` (default conv_ae) through `genlab train` for --warmup + --steps batches
and times the last --steps (images/s of training: fetch, forward, backward, step, logging).
Then, on the trained model, it times each pass over whole splits that genlab makes outside
training, as images per second of wall time:

- ``validate`` and ``test``: Lightning's ``trainer.validate`` / ``trainer.test`` over the
  val and test splits (what every epoch's validation and the test after fit cost);
- ``evaluate``, ``anomaly`` and ``embed``: the commands, run in-process from the run's
  checkpoint as a user runs them (checkpoint and data loading included), each over the
  test split.

Each rate is also given as a multiple of the training rate (the issue's target: 2x or
more). The MNIST files come from --mnist DIR (default ../shared/datasets/mnist when it has
them), else the embedded mnist_5k. Run from the repository root:

    .venv/bin/python scripts/bench_eval.py
    .venv/bin/python scripts/bench_eval.py --model vae --json bench/eval_vae.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from benchlib import WindowTimer, machine_info
from mnist_files import has_mnist_files

import genlab
from genlab.atomic import write_json
from genlab.commands.common import CONFIG_DIR, run_command
from genlab.commands.train import train

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
COMMANDS = ("evaluate", "anomaly", "embed")
SEED = 0


class TrainTimer(WindowTimer):
    """Seconds between the ends of the iterations that reach training batches ``start`` and
    ``stop`` (from 1), and the batches timed (``timed``: a fused chunk trains several)."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__(start, stop)
        self.seconds: float | None = None

    def finish(self, trainer: Any, seconds: float, load: float) -> None:
        self.seconds = seconds


def data_overrides(args: argparse.Namespace) -> list[str]:
    if args.mnist is not None and has_mnist_files(args.mnist):
        return ["data=mnist", f"data.root={args.mnist}"]
    return ["data=mnist_5k"]


def fit(args: argparse.Namespace, run_dir: Path) -> tuple[dict[str, Any], float]:
    """Trains through genlab; the built objects and the training rate in images/s."""
    timer = f"{TrainTimer.__module__}.{TrainTimer.__qualname__}"
    overrides = [
        f"model={args.model}",
        *data_overrides(args),
        f"data.batch_size={args.batch_size}",
        "trainer=cpu",
        f"trainer.max_steps={args.warmup + args.steps}",
        "trainer.max_epochs=-1",
        # No validation inside the fit, even past an epoch; trainer.validate below then
        # runs over the whole val split.
        "+trainer.num_sanity_val_steps=0",
        "trainer.check_val_every_n_epoch=100000",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks=none",
        f"+callbacks.timer._target_={timer}",
        f"+callbacks.timer.start={args.warmup}",
        f"+callbacks.timer.stop={args.warmup + args.steps}",
        "~logger",
        "test=false",
        f"seed={SEED}",
        f"paths.root_dir={run_dir}",
        f"paths.output_dir={run_dir}",
    ]
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra.compose("train", overrides=overrides)
    _, objects = train(cfg)
    timer = next(c for c in objects["trainer"].callbacks if isinstance(c, TrainTimer))
    if timer.seconds is None:
        raise RuntimeError("training stopped before the timed batches ended")
    return objects, timer.timed * args.batch_size / timer.seconds


def timed(work: Any) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def run_genlab_command(command: str, checkpoint: Path, workdir: Path) -> None:
    """`genlab COMMAND ckpt=CHECKPOINT --quiet` in this process, its output swallowed."""
    cfg = genlab.compose(
        command, [f"ckpt={checkpoint}", "quiet=true"], output_dir=workdir / command
    )
    module = importlib.import_module(f"genlab.commands.{command}")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run_command(getattr(module, command), cfg)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        run_dir = Path(tmp) / "run"
        objects, train_rate = fit(args, run_dir)
        trainer, model, data = objects["trainer"], objects["model"], objects["datamodule"]
        checkpoint = run_dir / "bench.ckpt"
        trainer.save_checkpoint(checkpoint)
        sizes = {split: len(data.splits[split]) for split in ("val", data.test_split())}
        passes: dict[str, dict[str, float]] = {}

        def add(name: str, images: int, seconds: float) -> None:
            passes[name] = {
                "images": images,
                "seconds": seconds,
                "images_per_s": images / seconds,
                "vs_training": images / seconds / train_rate,
            }

        quiet = {"verbose": False}
        add("validate", sizes["val"], timed(lambda: trainer.validate(model, data, **quiet)))
        test_split = data.test_split()
        add(
            f"test ({test_split})",
            sizes[test_split],
            timed(lambda: trainer.test(model, data, **quiet)),
        )
        for command in COMMANDS:
            seconds = timed(lambda c=command: run_genlab_command(c, checkpoint, Path(tmp)))
            add(f"genlab {command}", sizes[test_split], seconds)
    return {
        "kind": "eval",
        "machine": machine_info(),
        "model": args.model,
        "data": data_overrides(args)[0].split("=", 1)[1],
        "batch_size": args.batch_size,
        "training_images_per_s": train_rate,
        "passes": passes,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['model']} on {results['data']}, batch {results['batch_size']}, "
        f"{results['machine']['threads']} threads: "
        f"training {results['training_images_per_s']:,.0f} img/s",
        f"{'pass':<18} {'images':>7} {'seconds':>8} {'img/s':>9} {'x training':>10}",
    ]
    for name, p in results["passes"].items():
        lines.append(
            f"{name:<18} {p['images']:>7} {p['seconds']:>8.2f} {p['images_per_s']:>9,.0f} "
            f"{p['vs_training']:>10.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="conv_ae")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="timed training batches")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="MNIST IDX files")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    results = measure(args)
    print(table(results))
    if args.json is not None:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
