"""Peak resident memory of `genlab train` against a budget set by what it must hold.

Two runs, each a few training and validation batches of the default model (conv_ae) with
no test:

- mnist: ``data=mnist`` from --mnist-root (60,000 + 10,000 grey 28x28 images);
- folder: ``data=folder data.channels=3 data.image_size=64`` on --images RGB images of
  64x64 (PNG), written once by this script into a cache folder (kept for the next run) with
  Pillow: smooth colour gradients with a few shapes on them, different in every image.

Each run is measured as three child processes, each one's peak resident set size (the
``ru_maxrss`` that ``os.wait4`` returns for it):

- torch: a process that imports torch, Lightning and genlab, composes the run's config and
  builds its model, but loads no data: torch's own footprint, with the parameters;
- data: one that also sets up the run's data module and reports its size: the uint8 images
  and the int64 labels of every split (where the train split's images go, and what reading
  them costs at its peak);
- step: one that builds the model and trains it two steps on a random batch of the run's
  batch size and image shape: the parameters, gradients, Adam's state and the activations
  of a step, still without data;
- train: the `genlab train` command itself.

The budget is --factor (1.5) x (data + torch + model state), the model state being the
gradients and Adam's two moments, three times the parameters' bytes (the parameters are in
the torch figure). A run above it is marked "over". That budget leaves out the
activations of a training step, which grow with the batch and the image size and not with
the data set (conv_ae at batch 128 on 64x64 RGB: about 1 GB), so the step budget, --factor x
(data + step), is reported beside it.

Each child is forked from a small trampoline process: on Linux a child's ru_maxrss also
counts the memory of the process it was forked from, up to its exec, so a child forked
from a parent holding torch would show at least the parent's size. On a machine shared
with other jobs the figures still hold (resident memory is per process), but the runs take
longer. Run from the repository root:

    .venv/bin/python scripts/bench_memory.py
    .venv/bin/python scripts/bench_memory.py --runs folder --images 2000 --json bench/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
CACHE = Path(tempfile.gettempdir()) / "genlab_bench_memory"
RUNS = ("mnist", "folder")
# Gradients and Adam's exp_avg and exp_avg_sq: three more copies of the parameters.
STATE_COPIES = 3
MIB = 1 << 20

# The child that builds the model without data (``measure``: "torch"), that also trains it
# two steps on a random batch ("step"), or that sets up the data module ("data"); prints a
# JSON line with what it found.
CHILD = """
import json, sys
import torch, pytorch_lightning, hydra
from hydra.utils import instantiate
from genlab.commands.common import CONFIG_DIR

measure, overrides = sys.argv[1], json.loads(sys.argv[2])
with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
    cfg = hydra.compose("train", overrides=overrides)
found = {}
if measure in ("torch", "step"):
    model = instantiate(cfg.model)
    found["param_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
if measure == "step":
    data = cfg.data
    x = torch.rand(data.batch_size, data.channels, data.image_size, data.image_size)
    optimizer = torch.optim.Adam(model.parameters())
    for _ in range(2):
        loss = model.loss_terms(x)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
elif measure == "data":
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    splits = datamodule.splits.values()
    found["data_bytes"] = sum(s.images.nbytes + s.labels.nbytes for s in splits)
    found["images"] = sum(len(s) for s in splits)
    found["image_shape"] = list(next(iter(splits)).images.shape[1:])
print("BENCH_MEMORY " + json.dumps(found))
"""


@dataclass
class Child:
    """One measured child process: its exit status, peak resident bytes, seconds, output."""

    returncode: int
    peak_bytes: int
    seconds: float
    output: str


# Runs the command as its own child and writes that child's ru_maxrss and exit status to
# argv[1]. A child's ru_maxrss also counts the memory of the process it was forked from, up
# to its exec (Linux keeps the larger of the two): forked from this small trampoline rather
# than from the caller, which may hold torch already, it measures the command alone.
TRAMPOLINE = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as report:
    report.write(f"{usage.ru_maxrss} {code}")
sys.exit(code if code >= 0 else 1)
"""


def run_measured(command: Sequence[str], *, cwd: Path) -> Child:
    """Run ``command`` and return its peak resident set size (its ``ru_maxrss``)."""
    with tempfile.TemporaryDirectory(prefix="bench_memory_child_") as scratch:
        report = Path(scratch) / "rusage"
        log_path = Path(scratch) / "log"
        with log_path.open("w") as log:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", TRAMPOLINE, str(report), *command],
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
            seconds = time.perf_counter() - start
        output = log_path.read_text(errors="replace")
        maxrss, returncode = (int(x) for x in report.read_text().split())
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return Child(returncode, maxrss * scale, seconds, output)


def child_result(child: Child, what: str) -> dict[str, Any]:
    """The JSON line a CHILD printed; the run's output in the error where it failed."""
    for line in child.output.splitlines():
        if line.startswith("BENCH_MEMORY "):
            return json.loads(line.removeprefix("BENCH_MEMORY "))
    raise SystemExit(f"{what} failed (exit {child.returncode}):\n{child.output[-3000:]}")


def budget(
    data_bytes: int, torch_bytes: int, param_bytes: int, factor: float = 1.5
) -> dict[str, int]:
    """The parts of a run's memory budget and their sum times ``factor``."""
    state = STATE_COPIES * param_bytes
    return {
        "data_bytes": data_bytes,
        "torch_bytes": torch_bytes,
        "model_state_bytes": state,
        "budget_bytes": int(factor * (data_bytes + torch_bytes + state)),
    }


def synthetic_image(index: int, size: int) -> Image.Image:
    """An RGB image with some structure (a gradient, an ellipse, a bar), different for every
    ``index`` and the same on every call."""
    rng = np.random.default_rng(index)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    start, end = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    along = ramp[None, :, None] if index % 2 else ramp[:, None, None]
    pixels = start + (end - start) * np.broadcast_to(along, (size, size, 1))
    pixels = pixels + rng.normal(0, 6, (size, size, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    x0, y0 = rng.integers(0, size // 2, 2)
    x1, y1 = rng.integers(size // 2, size, 2)
    draw.ellipse((int(x0), int(y0), int(x1), int(y1)), fill=tuple(rng.integers(0, 256, 3)))
    y = int(rng.integers(0, size - 4))
    draw.rectangle((0, y, size - 1, y + 3), fill=tuple(rng.integers(0, 256, 3)))
    return image


def image_folder(count: int, size: int, cache: Path = CACHE) -> Path:
    """A folder of ``count`` synthetic RGB PNGs of ``size`` px, written once: it is built
    beside its final name and renamed into place, so a cut-short build is never reused."""
    folder = cache / f"folder_{count}_{size}"
    if folder.is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=cache, prefix=f".{folder.name}."))
    try:
        for i in range(count):
            synthetic_image(i, size).save(partial / f"{i:06d}.png", compress_level=1)
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder


def overrides_for(run: str, args: argparse.Namespace, folder: Path | None) -> list[str]:
    """The `genlab train` overrides of ``run``: a few batches, no test."""
    if run == "mnist":
        data = ["data=mnist", f"data.root={args.mnist_root}"]
    else:
        data = ["data=folder", f"data.root={folder}", "data.channels=3", "data.image_size=64"]
    return [
        *data,
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={args.batches}",
        f"trainer.limit_val_batches={args.batches}",
        "test=false",
    ]


def describe(run: str, found: dict[str, Any]) -> str:
    channels, height, width = found["image_shape"]
    kind = "grey" if channels == 1 else "RGB"
    return f"{found['images']:,} {kind} {height}×{width}" + (" PNGs" if run == "folder" else "")


def genlab_command() -> list[str]:
    script = Path(sys.executable).parent / "genlab"
    if script.exists():
        return [str(script)]
    found = shutil.which("genlab")
    if found is None:
        raise SystemExit("no genlab command beside this python or on PATH; pip install -e .")
    return [found]


def measure(run: str, args: argparse.Namespace, folder: Path | None) -> dict[str, Any]:
    """The three children of one run and the run's figures against its budget."""
    overrides = overrides_for(run, args, folder)
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as scratch:
        cwd = Path(scratch)
        # paths.* resolve through Hydra's runtime; set them so a composed config resolves.
        composed = [*overrides, f"paths.root_dir={cwd}", f"paths.output_dir={cwd}"]
        children = {}
        for name in ("torch", "step", "data"):
            command = [sys.executable, "-c", CHILD, name, json.dumps(composed)]
            children[name] = run_measured(command, cwd=cwd)
        found = {
            **child_result(children["torch"], f"{run}: building the model"),
            **child_result(children["data"], f"{run}: setting up the data"),
        }
        train_command = [*genlab_command(), "train", *overrides]
        train = run_measured([*train_command, f"hydra.run.dir={cwd / 'run'}"], cwd=cwd)
    if train.returncode != 0:
        raise SystemExit(f"{run}: genlab train failed:\n{train.output[-3000:]}")
    parts = budget(
        found["data_bytes"], children["torch"].peak_bytes, found["param_bytes"], args.factor
    )
    # The budget above leaves out the activations of a training step; this one has them.
    step_budget = int(args.factor * (parts["data_bytes"] + children["step"].peak_bytes))
    return {
        "description": describe(run, found),
        "command": "genlab train " + " ".join(overrides),
        "images": found["images"],
        "image_shape": found["image_shape"],
        "param_bytes": found["param_bytes"],
        **parts,
        "data_setup_peak_bytes": children["data"].peak_bytes,
        "step_peak_bytes": children["step"].peak_bytes,
        "step_budget_bytes": step_budget,
        "step_ratio": train.peak_bytes / step_budget,
        "peak_rss_bytes": train.peak_bytes,
        "ratio": train.peak_bytes / parts["budget_bytes"],
        "within_budget": train.peak_bytes <= parts["budget_bytes"],
        "seconds": {name: child.seconds for name, child in {**children, "train": train}.items()},
    }


def machine() -> dict[str, Any]:
    """The machine, in bench_table's layout; torch's version read from its metadata, so
    this process never imports it."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "?"
    info: dict[str, Any] = {"device": "cpu", "cpu": cpu, "cores": os.cpu_count() or 1}
    info["torch"] = torch_version
    memory = Path("/proc/meminfo")
    if memory.exists():
        total_kib = int(memory.read_text().split("\n", 1)[0].split()[1])
        info["memory_gib"] = round(total_kib / (1 << 20), 1)
    return info


def table(report: dict[str, Any]) -> str:
    """The figures in MiB: the budget's parts, each child's peak, the ratios."""
    columns = {
        "data": "data_bytes",
        "state": "model_state_bytes",
        "torch": "torch_bytes",
        "budget": "budget_bytes",
        "set-up": "data_setup_peak_bytes",
        "step": "step_peak_bytes",
        "step budget": "step_budget_bytes",
        "peak": "peak_rss_bytes",
    }
    widths = [max(len(name), 7) for name in columns]
    lines = [
        f"MiB; budget = {report['factor']} x (data + state + torch), step budget = "
        f"{report['factor']} x (data + step)",
        f"{'run':8} "
        + " ".join(f"{name:>{w}}" for name, w in zip(columns, widths, strict=True))
        + f" {'peak/budget':>11} {'peak/step budget':>16}",
    ]
    for name, run in report["runs"].items():
        cells = " ".join(
            f"{run[key] / MIB:{w}.0f}" for key, w in zip(columns.values(), widths, strict=True)
        )
        verdict = "" if run["within_budget"] else "  over budget"
        lines.append(f"{name:8} {cells} {run['ratio']:11.2f} {run['step_ratio']:16.2f}{verdict}")
    lines += [f"{name}: {run['command']}" for name, run in report["runs"].items()]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--mnist-root", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--images", type=int, default=10_000, help="folder run's image count")
    parser.add_argument("--batches", type=int, default=5, help="train and val batches")
    parser.add_argument("--factor", type=float, default=1.5, help="budget's multiple")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.images < 2 or args.batches < 1 or args.factor <= 0:
        parser.error("--images must be at least 2, --batches at least 1, --factor above 0")
    if "mnist" in args.runs and not args.mnist_root.is_dir():
        parser.error(f"--mnist-root {args.mnist_root} is not a folder (or leave out mnist)")
    args.mnist_root = args.mnist_root.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure, print the table, write --json; returns the JSON's content."""
    args = parse_args(argv)
    folder = image_folder(args.images, 64) if "folder" in args.runs else None
    report = {
        "benchmark": "peak resident memory of genlab train against its budget",
        "script": "bench_memory",
        "machine": machine(),
        "factor": args.factor,
        "runs": {run: measure(run, args, folder) for run in args.runs},
    }
    print(table(report))
    if args.json is not None:
        from genlab.atomic import write_json

        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
