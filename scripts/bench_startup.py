"""Start-up of the `genlab` command line: how long a fresh process takes to answer a bad
argument, to report a missing checkpoint, and to reach the first training step, and where
the time to the first step goes.

Each case runs the installed `genlab` console script in a new process, --repeats times
(median reported). The training case adds a callback (``FirstStep`` below, found on
PYTHONPATH) that writes the wall-clock time of Lightning's ``setup``, ``on_fit_start`` and
the first ``on_train_batch_start`` into a JSON file; the parent reads the clock just before
it starts the process, so every figure counts from process start, imports included. The
process's exit is timed both ways, alternating: the console script's exit right after the
atexit handlers, and the interpreter's usual teardown (``GENLAB_FAST_EXIT=0``). The
import cost of the libraries on that path is measured apart, each in a fresh interpreter:
torch alone, then Lightning (which itself imports torchmetrics, and torchmetrics scipy.signal
and matplotlib.pyplot when they are installed), then genlab's training command module.

    .venv/bin/python scripts/bench_startup.py
    .venv/bin/python scripts/bench_startup.py --repeats 5 --json bench/startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from benchlib import machine_info

from genlab.atomic import write_json

SCRIPTS = Path(__file__).resolve().parent
# The events FirstStep records, in the order they happen.
EVENTS = ("setup", "fit_start", "first_step")
# What each import case imports, each in a fresh interpreter after the previous ones.
IMPORTS = {
    "torch": "import torch",
    "pytorch_lightning (with torchmetrics, scipy.signal, matplotlib)": "import pytorch_lightning",
    "genlab.commands.train and its models": (
        "import genlab.commands.train, genlab.models, genlab.callbacks.checkpoints"
    ),
}


class FirstStep(pl.Callback):
    """Writes {event: wall-clock seconds} to ``path`` once the first training batch starts."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.times: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.times.setdefault("setup", time.time())

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.times.setdefault("fit_start", time.time())

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if "first_step" not in self.times:
            self.times["first_step"] = time.time()
            write_json(self.path, self.times)


def genlab_command(source: Path | None) -> list[str]:
    """The installed `genlab` console script; with ``source`` (a checkout put first on
    PYTHONPATH), `python -m genlab.cli`, which runs that checkout's command line as its
    console script would."""
    if source is not None:
        return [sys.executable, "-m", "genlab.cli"]
    found = Path(sys.executable).with_name("genlab")
    return [str(found) if found.exists() else "genlab"]


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(parent's clock at start, seconds to exit, exit code) of one process."""
    start = time.time()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return start, time.time() - start, result.returncode


def first_step(
    genlab: list[str], cwd: Path, env: dict[str, str], extra: Sequence[str]
) -> dict[str, float]:
    """Seconds from process start to each event of one `genlab train` to its first step."""
    marks = cwd / f"marks_{time.monotonic_ns()}.json"
    args = [
        *genlab,
        "train",
        "trainer.max_steps=1",
        "trainer.limit_val_batches=0",
        "test=false",
        "trainer.enable_progress_bar=false",
        f"+callbacks.first_step._target_={__name__ if __name__ != '__main__' else 'bench_startup'}"
        ".FirstStep",
        f"+callbacks.first_step.path={marks}",
        f"hydra.run.dir={cwd / 'run'}_{time.monotonic_ns()}",
        *extra,
    ]
    start, total, code = timed(args, cwd, env)
    if code != 0 or not marks.exists():
        raise RuntimeError(f"genlab train failed (exit {code}): {' '.join(args)}")
    times = json.loads(marks.read_text())
    out = {event: times[event] - start for event in EVENTS}
    out["process_exit"] = total
    return out


def import_cost(code: str, before: str, env: dict[str, str]) -> float:
    """Seconds that ``code`` takes in a fresh interpreter that has run ``before`` first."""
    probe = (
        f"import time\n{before}\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    return float(result.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    paths = [str(SCRIPTS), os.environ.get("PYTHONPATH", "")]
    if args.source is not None:
        paths.insert(0, str(args.source.resolve()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env["PYTHONWARNINGS"] = "ignore"
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        cwd = Path(tmp)
        genlab = genlab_command(args.source)
        bad = [
            timed([*genlab, "train", "trainer.max_epochs=ten"], cwd, env)
            for _ in range(args.repeats)
        ]
        missing = [
            timed([*genlab, "sample", f"ckpt={cwd / 'missing.ckpt'}"], cwd, env)
            for _ in range(args.repeats)
        ]
        if any(code == 0 for _, _, code in bad + missing):
            raise RuntimeError("a bad argument or a missing checkpoint did not fail")
        # Alternating the exit: the interpreter's teardown (GENLAB_FAST_EXIT=0, the usual
        # exit) against the console script's exit once the atexit handlers have run.
        runs, usual = [], []
        for _ in range(args.repeats):
            usual.append(first_step(genlab, cwd, {**env, "GENLAB_FAST_EXIT": "0"}, args.overrides))
            runs.append(first_step(genlab, cwd, env, args.overrides))
    imports: dict[str, float] = {}
    before = ""
    for name, code in IMPORTS.items():
        imports[name] = statistics.median(
            import_cost(code, before, env) for _ in range(args.repeats)
        )
        before += code + "\n"
    return {
        "kind": "startup",
        "machine": machine_info(),
        "repeats": args.repeats,
        "source": str(args.source) if args.source is not None else None,
        "overrides": list(args.overrides),
        "bad_argument_s": statistics.median(s for _, s, _ in bad),
        "missing_checkpoint_s": statistics.median(s for _, s, _ in missing),
        "to_event_s": {e: statistics.median(r[e] for r in runs) for e in (*EVENTS, "process_exit")},
        "process_exit_usual_s": statistics.median(r["process_exit"] for r in usual),
        "imports_s": imports,
    }


def table(results: dict[str, Any]) -> str:
    lines = [f"genlab start-up, median of {results['repeats']} fresh processes"]
    lines.append(f"  bad argument answered        {results['bad_argument_s']:6.2f} s")
    lines.append(f"  missing checkpoint answered  {results['missing_checkpoint_s']:6.2f} s")
    for event, seconds in results["to_event_s"].items():
        lines.append(f"  train: process start -> {event:<14} {seconds:6.2f} s")
    lines.append(
        f"  train: process start -> exit with the interpreter's teardown "
        f"(GENLAB_FAST_EXIT=0) {results['process_exit_usual_s']:6.2f} s"
    )
    for name, seconds in results["imports_s"].items():
        lines.append(f"  import {name}: {seconds:.2f} s")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="time this genlab checkout (e.g. an older commit's git worktree) instead of the "
        "installed one, through python -m genlab.cli",
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra genlab train overrides (default: conv_ae on mnist_5k)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    results = measure(args)
    print(table(results))
    if args.json is not None:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
