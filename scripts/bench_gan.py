"""Training throughput of the dcgan through genlab against a minimal hand-written loop.

Trains `model=dcgan` on the mnist_5k train split for --steps batches after --warmup untimed
ones, two ways in one process; each batch is one discriminator step and one generator step
(the config's d_steps=1):

- genlab: ``genlab.commands.train.train`` on a composed Hydra config (no callbacks but a
  timer, no logger, no validation, no test), so the time includes Lightning's loop, the
  optimizer toggling, ``self.log`` and the DataLoader. With manual optimization every
  optimizer step counts towards ``trainer.max_steps``, so it is set to two per batch.
- plain: the same generator and discriminator modules, initial weights, data tensors, batch
  order and Adam settings, in a loop of: fakes under no_grad, D's cross-entropy step, D
  frozen, G's non-saturating step on fresh noise.

Both run in float32 on the CPU. The runs alternate plain/genlab --repeats times; the table
gives the median images/s (real images per second) and ms per batch of each and the ratio
genlab/plain (1.0 means no overhead). Other processes on a shared machine distort the
figures; each run reports how many cores they kept busy. Run from the repository root:

    .venv/bin/python scripts/bench_gan.py
    .venv/bin/python scripts/bench_gan.py --steps 60 --repeats 5 --threads 1
    .venv/bin/python scripts/bench_gan.py --json bench/gan.json

--json writes the layout of scripts/bench_translation.py, which scripts/bench_table.py turns
into the README's table: the machine and, under ``models``, each loop's figures.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from benchlib import AdversarialRun as Run
from benchlib import (
    BatchTimer,
    Clock,
    adversarial_overrides,
    batches,
    finite,
    loop_json,
    machine_info,
    same_weights,
)
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from genlab.atomic import write_json
from genlab.commands.common import CONFIG_DIR
from genlab.commands.train import train

SEED = 0


def compose(args: argparse.Namespace, output_dir: str) -> DictConfig:
    """The `genlab train` config of one benchmark run, writing only under ``output_dir``."""
    batches = args.warmup + args.steps
    overrides = [
        "model=dcgan",
        "model.d_steps=1",
        "data=mnist_5k",
        f"data.batch_size={args.batch_size}",
        "trainer=cpu",
        *adversarial_overrides(
            warmup=args.warmup, batches=batches, seed=SEED, output_dir=output_dir
        ),
    ]
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra.compose("train", overrides=overrides)


def run_genlab(args: argparse.Namespace) -> tuple[Run, dict[str, Tensor]]:
    """Fit through genlab; returns the timed run and the model's weights before step 1."""
    with tempfile.TemporaryDirectory(prefix="bench_gan_") as output_dir:
        _, objects = train(compose(args, output_dir))
    timer = next(c for c in objects["trainer"].callbacks if isinstance(c, BatchTimer))
    if timer.run is None:
        raise RuntimeError(f"genlab stopped after {timer.batches} batches, before {timer.stop}")
    return timer.run, timer.initial_state


def plain_steps(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    data: Iterator[Tensor],
    steps: int,
    latent_dim: int,
) -> tuple[float, float]:
    d_loss = g_loss = torch.tensor(float("nan"))
    for _ in range(steps):
        real = next(data) * 2 - 1
        n = real.shape[0]
        with torch.no_grad():
            fake = generator(torch.randn(n, latent_dim))
        # -[log D(x) + log(1 - D(G(z)))] with D = sigmoid(logits).
        d_loss = F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        discriminator.requires_grad_(False)
        g_loss = F.softplus(-discriminator(generator(torch.randn(n, latent_dim)))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        discriminator.requires_grad_(True)
    return d_loss.item(), g_loss.item()


def run_plain(
    args: argparse.Namespace, cfg: DictConfig, images: Tensor
) -> tuple[Run, dict[str, Tensor]]:
    """Fit with the hand-written loop; returns the timed run and the initial weights."""
    torch.manual_seed(SEED)
    model = instantiate(cfg.model)
    model.train()
    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    g, d = model.generator, model.discriminator
    settings = {
        name: {"lr": cfg.model[name].lr, "betas": tuple(cfg.model[name].betas)}
        for name in ("optimizer_g", "optimizer_d")
    }
    opt_g = torch.optim.Adam(g.parameters(), **settings["optimizer_g"])
    opt_d = torch.optim.Adam(d.parameters(), **settings["optimizer_d"])
    data = batches(images, args.batch_size, cfg.data.seed)
    plain_steps(g, d, opt_g, opt_d, data, args.warmup, model.latent_dim)
    clock = Clock()
    losses = plain_steps(g, d, opt_g, opt_d, data, args.steps, model.latent_dim)
    seconds, load = clock.stop()
    return Run(seconds, *losses, load), initial_state


def summary(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    rates = [args.steps * args.batch_size / r.seconds for r in runs]
    return {
        "images_per_s": statistics.median(rates),
        "ms_per_batch": statistics.median(r.seconds for r in runs) / args.steps * 1000,
        "rates": rates,
        "loads": [r.other_load for r in runs],
        "last": runs[-1],
    }


def table(plain: dict[str, Any], genlab: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"dcgan on mnist_5k, batch {args.batch_size}, {args.steps} timed batches (one D and one "
        f"G step each) after {args.warmup} warm-up, {args.repeats} repeats, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads",
        f"{'':8} {'images/s':>9} {'ms/batch':>9} {'d_loss':>7} {'g_loss':>7}  "
        "each run: images/s (cores other processes used)",
    ]
    for name, r in (("plain", plain), ("genlab", genlab)):
        runs = "  ".join(
            f"{rate:.0f} ({load:.2f})" for rate, load in zip(r["rates"], r["loads"], strict=True)
        )
        lines.append(
            f"{name:8} {r['images_per_s']:9.0f} {r['ms_per_batch']:9.1f} "
            f"{r['last'].d_loss:7.3f} {r['last'].g_loss:7.3f}  {runs}"
        )
    ratio = genlab["images_per_s"] / plain["images_per_s"]
    best = max(genlab["rates"]) / max(plain["rates"])
    lines.append(f"genlab/plain {ratio:.3f} (best runs: {best:.3f})")
    return "\n".join(lines)


def as_json(
    plain: dict[str, Any], genlab: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """The results in the benchmarks' JSON layout (that of bench_translation.py)."""

    def loop(r: dict[str, Any]) -> dict[str, Any]:
        return {
            **loop_json(r["rates"], r["loads"]),
            "ms_per_batch": r["ms_per_batch"],
            "final_d_loss": finite(r["last"].d_loss),
            "final_g_loss": finite(r["last"].g_loss),
        }

    return {
        "benchmark": "dcgan training throughput, genlab against a plain PyTorch loop",
        "script": "bench_gan",
        "machine": machine_info("cpu"),
        "data": "mnist_5k",
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "models": {
            "dcgan": {
                "steps": args.steps,
                "step": "one D and one G step a batch",
                "plain": loop(plain),
                "genlab": loop(genlab),
                "ratio": genlab["images_per_s"] / plain["images_per_s"],
                "best_ratio": max(genlab["rates"]) / max(plain["rates"]),
                # Checked for every repeat; recorded so the JSON says so.
                "same_weights": True,
            }
        },
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed batches")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches before them")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
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
    logging.getLogger("genlab").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench_gan_") as scratch:
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
                "the two loops started from different weights; the seeding of genlab train "
                "changed, so this comparison is not like for like"
            )
        plain_runs.append(plain_run)
        genlab_runs.append(genlab_run)
    plain, genlab = summary(plain_runs, args), summary(genlab_runs, args)
    print(table(plain, genlab, args))
    report = as_json(plain, genlab, args)
    if args.json is not None:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
