"""Training throughput of Pix2Pix through genlab against a minimal hand-written loop.

Trains `model=pix2pix` on the embedded paired task (data=mnist_edges: edge maps to digits,
resized to each --size, so nothing is downloaded) at batch size 1, as the paper, for --steps
batches after --warmup untimed ones, two ways in one process; each batch is one
discriminator step and one generator step:

- genlab: ``genlab.commands.train.train`` on a composed Hydra config (no callbacks but a
  timer, no logger, no validation, no test, scheduler=none, precision 32), so the time
  includes Lightning's loop, the optimizer toggling, ``self.log`` of six terms and the
  DataLoader. With manual optimization every optimizer step counts towards
  ``trainer.max_steps``, so it is set to two per batch.
- plain: the same U-Net and PatchGAN modules, initial weights, batches (the datamodule's
  own train loader: same order, same random crops and flips) and Adam settings, in a loop
  of Pix2Pix's math: G(A) once; D's step on (A, B) against (A, G(A) detached) with the
  cross-entropy halved; D frozen; G's step on the non-saturating loss + lambda_l1 * L1.

The networks at 256 px are the paper's: a U-Net 8 layers deep from width 64 and a 70x70
PatchGAN (3 stride-2 layers, width 64); other sizes keep the widths and n_layers=3, with
the U-Net as deep as brings the image to 1x1 (6 layers at 64). The runs alternate
plain/genlab --repeats times per size; the table gives the median images/s and ms per
batch of each and the ratio genlab/plain (1.0 means no overhead). Other processes on a
shared machine distort the figures; each run reports how many cores they kept busy. On
--device cuda the clock is read after a synchronize. Both loops start from the same
weights and, on the CPU, draw the same dropout masks, so their final losses agree: the
table prints them to show that both did the same work.

The digits are resized once per size and shared by every run (at 256 px that takes about
40 s and, briefly, some 11 GB of memory); set-up is never timed. At 256 px much of the
spread between runs is glibc handing the large activations back to the system and faulting
them in again (see the sys time); MALLOC_MMAP_THRESHOLD_=4000000000
MALLOC_TRIM_THRESHOLD_=4000000000 in the environment steadies it. On a shared machine give
torch no more --threads than there are free cores. Run from the repository root:

    .venv/bin/python scripts/bench_translation.py
    .venv/bin/python scripts/bench_translation.py --size 64 --steps 60 --threads 1
    .venv/bin/python scripts/bench_translation.py --device cuda --json bench.json
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
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
    finite,
    is_contended,
    machine_info,
    same_weights,
    synchronize,
)
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from genlab.atomic import write_json
from genlab.commands.common import CONFIG_DIR
from genlab.commands.train import train
from genlab.data.translation import TranslationDataModule
from genlab.nn.translation import min_patch_input_size

SEED = 0
SIZES = (64, 256)
# Timed batches by size: about the same time at each size on a 2-core CPU.
DEFAULT_STEPS = {64: 30, 256: 8}
N_LAYERS = 3


# Set up once per size (by config) and shared by every run: resizing 5000 digits to 256 px
# and their edge maps take most of a minute, none of it timed.
_PREPARED: dict[str, TranslationDataModule] = {}


def prepared_data(**options: Any) -> TranslationDataModule:
    """``TranslationDataModule(**options)`` whose splits are those of the first module built
    with these options in this process (set up then), so ``setup`` has nothing left to do.
    The `data._target_` of the genlab runs."""
    module = TranslationDataModule(**options)
    key = repr(sorted(options.items()))
    first = _PREPARED.setdefault(key, module)
    if first is module:
        module.setup("fit")
    else:
        module.splits = first.splits
        module.memory_bytes = first.memory_bytes
    return module


def _target(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def compose(args: argparse.Namespace, size: int, output_dir: str) -> DictConfig:
    """The `genlab train` config of one benchmark run at ``size`` px, writing only under
    ``output_dir``."""
    batches = args.warmup + steps_for(args, size)
    overrides = [
        "model=pix2pix",
        f"model.generator.width={args.width}",
        f"model.discriminator.width={args.width}",
        f"model.discriminator.n_layers={N_LAYERS}",
        "data=mnist_edges",
        f"data._target_={_target(prepared_data)}",
        f"data.image_size={size}",
        f"data.batch_size={args.batch_size}",
        "scheduler=none",
        "trainer=gpu" if args.device == "cuda" else "trainer=cpu",
        *adversarial_overrides(
            warmup=args.warmup, batches=batches, seed=SEED, output_dir=output_dir
        ),
        # The data target lives in this script: say so, or genlab prints a note every run.
        f"trusted_modules=[{prepared_data.__module__}]",
    ]
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra.compose("train", overrides=overrides)


def steps_for(args: argparse.Namespace, size: int) -> int:
    """--steps, or by default about as many seconds of work at every size."""
    if args.steps is not None:
        return args.steps
    return DEFAULT_STEPS.get(size) or max(4, round(DEFAULT_STEPS[64] * (64 / size) ** 2))


def run_genlab(args: argparse.Namespace, size: int) -> tuple[Run, dict[str, Tensor]]:
    """Fit through genlab; returns the timed run and the model's weights before step 1."""
    with tempfile.TemporaryDirectory(prefix="bench_translation_") as output_dir:
        _, objects = train(compose(args, size, output_dir))
    timer = next(c for c in objects["trainer"].callbacks if isinstance(c, BatchTimer))
    if timer.run is None:
        raise RuntimeError(f"genlab stopped after {timer.batches} batches, before {timer.stop}")
    return timer.run, timer.initial_state


def plain_steps(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    data: Iterator[tuple[Tensor, Tensor]],
    steps: int,
    lambda_l1: float,
    device: torch.device,
) -> tuple[float, float]:
    d_loss = g_loss = torch.tensor(float("nan"))
    for _ in range(steps):
        a, b = (t.to(device) * 2 - 1 for t in next(data))
        fake = generator(a)
        # Half of -[log D(a, b) + log(1 - D(a, G(a)))], D = sigmoid(patch logits).
        real_logits = discriminator(torch.cat([a, b], dim=1))
        fake_logits = discriminator(torch.cat([a, fake.detach()], dim=1))
        d_loss = 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        discriminator.requires_grad_(False)
        adversarial = F.softplus(-discriminator(torch.cat([a, fake], dim=1))).mean()
        g_loss = adversarial + lambda_l1 * (fake - b).abs().mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        discriminator.requires_grad_(True)
    return d_loss.item(), g_loss.item()


def endless(loader: Any) -> Iterator[tuple[Tensor, Tensor]]:
    """The loader's batches, epoch after epoch (its sampler counts the epochs)."""
    while True:
        yield from loader


def run_plain(
    args: argparse.Namespace, cfg: DictConfig, datamodule: TranslationDataModule
) -> tuple[Run, dict[str, Tensor]]:
    """Fit with the hand-written loop; returns the timed run and the initial weights."""
    device = torch.device(args.device)
    torch.manual_seed(SEED)
    model = instantiate(cfg.model)
    model.train()
    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.to(device)
    g, d = model.generator, model.discriminator
    settings = {
        name: {"lr": cfg.model[name].lr, "betas": tuple(cfg.model[name].betas)}
        for name in ("optimizer_g", "optimizer_d")
    }
    opt_g = torch.optim.Adam(g.parameters(), **settings["optimizer_g"])
    opt_d = torch.optim.Adam(d.parameters(), **settings["optimizer_d"])
    # A plain torch DataLoader over the same dataset and sampler: the batches genlab trains
    # on, random crops included; creating its iterator draws from the global generator as
    # Lightning's does, so the dropout masks that follow are the same too.
    data = endless(datamodule.train_dataloader())
    steps = steps_for(args, cfg.data.image_size)
    plain_steps(g, d, opt_g, opt_d, data, args.warmup, model.lambda_l1, device)
    synchronize(device)
    clock = Clock()
    losses = plain_steps(g, d, opt_g, opt_d, data, steps, model.lambda_l1, device)
    synchronize(device)
    seconds, load = clock.stop()
    return Run(seconds, *losses, load), initial_state


def summary(runs: list[Run], steps: int, batch_size: int) -> dict[str, Any]:
    rates = [steps * batch_size / r.seconds for r in runs]
    return {
        "images_per_s": statistics.median(rates),
        "ms_per_batch": statistics.median(r.seconds for r in runs) / steps * 1000,
        "rates": rates,
        "loads": [r.other_load for r in runs],
        "last": runs[-1],
    }


def bench_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    """Alternate plain and genlab runs at ``size`` px; their summaries and the ratio."""
    with tempfile.TemporaryDirectory(prefix="bench_translation_") as scratch:
        cfg = compose(args, size, scratch)
    datamodule = instantiate(cfg.data)  # prepared_data: set up here, once
    plain_runs: list[Run] = []
    genlab_runs: list[Run] = []
    for _ in range(args.repeats):
        plain_run, plain_initial = run_plain(args, cfg, datamodule)
        genlab_run, genlab_initial = run_genlab(args, size)
        if not same_weights(plain_initial, genlab_initial):
            raise SystemExit(
                "the two loops started from different weights; the seeding of genlab train "
                "changed, so this comparison is not like for like"
            )
        plain_runs.append(plain_run)
        genlab_runs.append(genlab_run)
    steps = steps_for(args, size)
    plain = summary(plain_runs, steps, args.batch_size)
    genlab = summary(genlab_runs, steps, args.batch_size)
    return {
        "size": size,
        "steps": steps,
        "unet_depth": instantiate(cfg.model.generator).depth,
        "plain": plain,
        "genlab": genlab,
        "ratio": genlab["images_per_s"] / plain["images_per_s"],
        "best_ratio": max(genlab["rates"]) / max(plain["rates"]),
        # Checked above for every repeat; recorded so the JSON says so.
        "same_weights": True,
    }


def as_json(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The results as plain JSON values (NaN loads as null)."""

    def loop(r: dict[str, Any]) -> dict[str, Any]:
        last = asdict(r["last"])
        return {
            "images_per_s": r["images_per_s"],
            "ms_per_batch": r["ms_per_batch"],
            "runs_images_per_s": r["rates"],
            "other_load": [finite(x) for x in r["loads"]],
            "contended": [is_contended(x, torch.get_num_threads()) for x in r["loads"]],
            "final_d_loss": last["d_loss"],
            "final_g_loss": last["g_loss"],
        }

    return {
        "benchmark": "pix2pix training throughput, genlab against a plain PyTorch loop",
        "machine": machine_info(args.device),
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "width": args.width,
        "n_layers": N_LAYERS,
        "sizes": {
            str(r["size"]): {
                "steps": r["steps"],
                "unet_depth": r["unet_depth"],
                "plain": loop(r["plain"]),
                "genlab": loop(r["genlab"]),
                "ratio": r["ratio"],
                "best_ratio": r["best_ratio"],
                "same_weights": r["same_weights"],
            }
            for r in results
        },
    }


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    info = machine_info(args.device)
    where = info.get("gpu") or info["cpu"]
    lines = [
        f"pix2pix on mnist_edges, batch {args.batch_size}, one D and one G step a batch, "
        f"{args.warmup} warm-up batches, {args.repeats} repeats, width {args.width}, "
        f"n_layers {N_LAYERS}; torch {info['torch']}, {info['threads']} threads, "
        f"{args.device} ({where})",
        f"{'size':>4} {'depth':>5} {'steps':>5} {'plain img/s':>11} {'genlab img/s':>12} "
        f"{'plain ms':>8} {'genlab ms':>9} {'genlab/plain':>12} {'best':>5}  "
        "d_loss plain/genlab  g_loss plain/genlab",
    ]
    for r in results:
        p, g = r["plain"], r["genlab"]
        lines.append(
            f"{r['size']:4} {r['unet_depth']:5} {r['steps']:5} {p['images_per_s']:11.2f} "
            f"{g['images_per_s']:12.2f} {p['ms_per_batch']:8.1f} {g['ms_per_batch']:9.1f} "
            f"{r['ratio']:12.3f} {r['best_ratio']:5.3f}  "
            f"{p['last'].d_loss:8.4f}/{g['last'].d_loss:<8.4f}  "
            f"{p['last'].g_loss:8.3f}/{g['last'].g_loss:<8.3f}"
        )
    threads = info["threads"]
    lines.append("each run: images/s (cores other processes kept busy; * contended)")
    contended = total = 0
    for r in results:
        for name in ("plain", "genlab"):
            runs = []
            for rate, load in zip(r[name]["rates"], r[name]["loads"], strict=True):
                mark = "*" if is_contended(load, threads) else ""
                contended += bool(mark)
                total += 1
                runs.append(f"{rate:.2f} ({load:.2f}){mark}")
            lines.append(f"{r['size']:4} {name:6}  {'  '.join(runs)}")
    if contended:
        cores = os.cpu_count() or 1
        lines.append(
            f"warning: in {contended} of {total} runs other processes left fewer of the "
            f"{cores} cores free than torch's {threads} threads, which then wait for each "
            "other (a batch can take ten times as long): those figures measure the "
            "contention; rerun with fewer --threads or on a quieter machine"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, nargs="+", default=list(SIZES), help="image sizes (default: 64 256)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="timed batches at every size (default: "
        + ", ".join(f"{n} at {s}" for s, n in DEFAULT_STEPS.items())
        + ")",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches before them")
    parser.add_argument("--batch-size", type=int, default=1, help="1 as in the paper")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop per size")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--width", type=int, default=64, help="G and D width (paper: 64)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for name in ("steps", "warmup", "batch_size", "repeats", "threads", "width"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    smallest = min_patch_input_size(N_LAYERS)
    for size in args.size:
        if size < smallest:
            parser.error(
                f"--size {size} is too small for a PatchGAN of {N_LAYERS} layers; use at "
                f"least {smallest}"
            )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device; use --device cpu")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table, write --json; returns the JSON's content."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Lightning's banner ("GPU available: ...") and genlab's output-dir line, every run.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("genlab").setLevel(logging.WARNING)

    results = [bench_size(args, size) for size in args.size]
    print(table(results, args))
    report = as_json(results, args)
    if args.json is not None:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
