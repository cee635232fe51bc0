"""Reproduce a published table with genlab's own commands, and set genlab's figures beside it.

    python scripts/reproduce.py likelihood --budget quick --mnist ../shared/datasets/mnist
    python scripts/reproduce.py one_class --budget full --seeds 3
    python scripts/reproduce.py stacked_mnist --budget smoke

TABLE is one of
  likelihood     the IWAE paper's Table 1 (Burda et al.): vae and iwae (k = 50) with one and
                 with two stochastic layers, and conv_vae, on dynamically binarised MNIST,
                 -log p(x) by `genlab evaluate k=5000`, in nats;
  one_class      the Deep SVDD paper's one-class MNIST (Ruff et al.): conv_ae, denoising_ae
                 and conv_vae trained on one digit, AUROC (%) of `genlab anomaly` per digit,
                 mean +- std over the seeds, and the budget's ablations (conv_ae with one
                 option changed);
  stacked_mnist  the PacGAN paper's Table 2 (Lin et al.): dcgan with and without packing on
                 Stacked MNIST, modes covered of 1000 and KL to uniform over 26,000 samples,
                 counted by an MNIST classifier trained first.

Every run is a genlab command (train, then evaluate or anomaly) composed from an experiment
overlay, configs/experiment/repro_*.yaml, with the budget's options on top:
  smoke  seconds, tiny networks, 1 epoch, on MNIST files given by --mnist or else a small
         subset of the embedded digits written as IDX files: it checks the pipeline, not
         the models (what CI runs);
  quick  well under an hour on 2 CPU cores per table; its figures are not the papers' budget;
  full   the papers' budgets, for a GPU.

Runs live under --out (default outputs/reproduce/TABLE/BUDGET): runs/NAME (one per model,
setting and seed) and eval/NAME. A run whose metrics.json says it finished is reused, one
that stopped with a checkpoint is continued (`genlab train resume=RUN`), never retrained;
an evaluation whose metrics.json exists is reused. OUT/ledger.json records the command
behind each: a run that another command made (another budget's epochs) is refused, with
what to do, and an evaluation another command made is run again. The table goes to
OUT/TABLE.md, with the commands, seeds, hardware and wall times, and into its own section of
docs/results.md (--results; smoke writes there only when --results is given).

The commands run in this process by default, composed as the `genlab` command line composes
them (genlab.compose, then the command under the CLI's error handling): a subprocess spends
about 5 s importing torch before any work, which is most of a smoke run's 20-odd commands.
--subprocess runs each as the `genlab` command a user types instead. Either way the table
lists the command lines, which a user can paste.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mnist_files import IDX_FILES, MNIST_CANDIDATES, has_mnist_files

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("likelihood", "one_class", "stacked_mnist")
BUDGETS = ("smoke", "quick", "full")
# Every command quiet: no bars, no model summary (a log of 20 runs stays readable).
QUIET_TRAIN = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
# Images a class of the embedded subset gives a smoke run without --mnist.
SMOKE_TRAIN_PER_CLASS, SMOKE_TEST_PER_CLASS = 30, 10


class ReproduceError(Exception):
    """A step of reproduce.py failed; the message says which and what to try."""


# ---------------------------------------------------------------------------------------------
# Budgets: what each table's runs take at each budget, on top of the overlays.

# Each an overlay configs/experiment/repro_likelihood_MODEL.yaml; vae2 is iwae2 at k = 1.
LIKELIHOOD_MODELS = ("vae", "vae2", "iwae", "iwae2", "conv_vae")
_TINY_TWO_LAYERS = [
    "model.encoder.hidden_dims=[32]",
    "model.encoder.latent_dim=8",
    "model.upper_encoder.hidden_dims=[16]",
    "model.latent_dim=4",
]
LIKELIHOOD = {
    "smoke": {
        "train": ["trainer.max_epochs=1", "data.batch_size=32"],
        "model": {
            "vae": ["model.encoder.hidden_dims=[32]", "model.latent_dim=4"],
            "vae2": _TINY_TWO_LAYERS,
            "iwae": ["model.encoder.hidden_dims=[32]", "model.latent_dim=4", "model.k=5"],
            "iwae2": [*_TINY_TWO_LAYERS, "model.k=5"],
            "conv_vae": ["model.latent_dim=4"],
        },
        "evaluate": ["k=20", "likelihood_images=32"],
    },
    "quick": {
        "train": ["data.batch_size=100"],
        "model": {
            "vae": ["trainer.max_epochs=20"],
            "vae2": ["trainer.max_epochs=20"],
            "iwae": ["trainer.max_epochs=8"],
            "iwae2": ["trainer.max_epochs=8"],
            "conv_vae": ["trainer.max_epochs=10"],
        },
        "evaluate": ["k=5000", "likelihood_images=250"],
    },
    "full": {
        "train": ["trainer.max_epochs=3280"],
        "model": {},
        "evaluate": ["k=5000", "likelihood_images=null"],
    },
}
# IWAE paper (Burda et al.), Table 1, MNIST: the 5000-sample bound on -log p(x), nats.
LIKELIHOOD_PUBLISHED = (
    ("VAE, 1 stochastic layer", 86.76),
    ("VAE, 2 stochastic layers", 85.33),
    ("IWAE, k = 50, 2 stochastic layers", 82.90),
)

ONE_CLASS_MODELS = ("conv_ae", "denoising_ae", "conv_vae")


@dataclass(frozen=True)
class Setting:
    """One row of the one-class table: ``model`` trained with ``train`` on top of the
    budget's options, for the first ``seeds`` seeds, its runs named NAME_digitD_seedS."""

    label: str
    model: str
    name: str
    train: tuple[str, ...]
    seeds: int = 1


ONE_CLASS = {
    "smoke": {
        "digits": (0, 1),
        "train": ["trainer.max_epochs=1", "data.batch_size=32"],
        "anomaly": ["elbo_samples=2"],
        "ablations": (Setting("batch 16", "conv_ae", "conv_ae_batch16", ("data.batch_size=16",)),),
    },
    "quick": {
        "digits": tuple(range(10)),
        # Batch 64, not the paper's 200: two epochs of about 5,400 images are 170 steps at
        # 64 and 54 at 200 (the ablation below measures what that costs).
        "train": ["trainer.max_epochs=2", "data.batch_size=64"],
        "anomaly": ["elbo_samples=2"],
        "ablations": (
            Setting(
                "batch 200 (the paper's)", "conv_ae", "conv_ae_batch200", ("data.batch_size=200",)
            ),
            Setting("10 epochs", "conv_ae", "conv_ae_10epochs", ("trainer.max_epochs=10",), 3),
        ),
    },
    "full": {
        "digits": tuple(range(10)),
        "train": ["trainer.max_epochs=350"],
        "anomaly": ["elbo_samples=10"],
        "ablations": (),
    },
}
# Deep SVDD paper (Ruff et al.), one-class MNIST, AUROC (%) per digit 0-9.
DEEP_SVDD = (98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5)
ONE_CLASS_SCORES = {"auroc": "reconstruction error", "auroc_neg_elbo": "−ELBO"}

STACKED = {
    "smoke": {
        "classifier": [
            "trainer.max_epochs=1",
            "data.batch_size=32",
            "model.channels=[8,16]",
            "model.feature_dim=16",
        ],
        "gan": [
            "trainer.max_epochs=1",
            "data.stacked_size=128",
            "data.stacked_test_size=64",
            "model.generator.width=8",
            "model.discriminator.width=8",
        ],
        "batch": {1: 32, 2: 32},
        "evaluate": ["num_samples=128"],
    },
    "quick": {
        "classifier": ["trainer.max_epochs=1"],
        "gan": ["trainer.max_epochs=10", "data.stacked_size=25600"],
        "batch": {1: 64, 2: 128},
        "evaluate": ["num_samples=26000"],
    },
    "full": {
        "classifier": ["trainer.max_epochs=5"],
        "gan": ["trainer.max_epochs=20"],
        "batch": {1: 64, 2: 128},
        "evaluate": ["num_samples=26000"],
    },
}
# PacGAN paper (Lin et al.), Table 2, Stacked MNIST: modes covered of 1000, KL to uniform.
STACKED_PUBLISHED = (("DCGAN", 99, 3.40), ("VEEGAN", 150, 2.95), ("PacDCGAN2", 1000, 0.06))

BUDGET_NOTES = {
    "smoke": (
        "**Budget: smoke.** Tiny networks, one epoch, tiny data: these figures check that the "
        "pipeline runs and say nothing about the models."
    ),
    "quick": (
        "**Budget: quick** (under an hour on 2 CPU cores). These figures are NOT the papers' "
        "budget: the runs are a few epochs long; compare them with each other, not with the "
        "published rows."
    ),
    "full": "**Budget: full**, the papers' training lengths (for a GPU).",
}


# ---------------------------------------------------------------------------------------------
# Running genlab's commands, reusing what finished.


@dataclass
class Step:
    """One genlab command run (or reused) for the table."""

    command: str
    directory: Path
    line: str
    status: str  # ran | resumed | reused
    wall_s: float


@dataclass
class Runner:
    """Runs `genlab COMMAND ...` into a directory of its own under ``out``, in this process or
    as a subprocess, and remembers what ran (``ledger.json``) so a rerun can reuse it."""

    out: Path
    use_subprocess: bool = False
    steps: list[Step] = field(default_factory=list)

    @property
    def ledger_path(self) -> Path:
        return self.out / "ledger.json"

    def _ledger(self) -> dict[str, Any]:
        try:
            return json.loads(self.ledger_path.read_text())
        except (OSError, ValueError):
            return {}

    def recorded(self, directory: Path) -> dict[str, Any]:
        """What the ledger says of the run in ``directory``: its ``command`` and ``wall_s``
        ({} if it has never run here)."""
        return self._ledger().get(str(directory.relative_to(self.out)), {})

    def _record(self, step: Step) -> None:
        from genlab.atomic import write_json

        self.steps.append(step)
        if step.status == "reused":
            return
        entry = {"command": step.line, "wall_s": round(step.wall_s, 3)}
        if step.status == "resumed":  # the command it continues, and its time so far
            earlier = self.recorded(step.directory)
            entry = {**earlier, "wall_s": round(step.wall_s + earlier.get("wall_s", 0), 3)}
        ledger = self._ledger()
        ledger[str(step.directory.relative_to(self.out))] = entry
        write_json(self.ledger_path, ledger)

    def check_same_command(self, directory: Path, line: str) -> None:
        """Refuse to reuse or continue a run that another command made (another budget's
        epochs, a changed overlay option): its figures would not be this command's."""
        recorded = self.recorded(directory).get("command")
        if recorded is not None and recorded != line:
            raise ReproduceError(
                f"{directory} was made by another command than this budget's:\n  it ran:  "
                f"{recorded}\n  now:     {line}\nremove that directory to run it again, or "
                "pass --out DIR to keep both"
            )

    def train(self, name: str, overrides: Sequence[str]) -> Path:
        """A finished training run ``runs/NAME``: reused if its metrics.json says finished,
        continued with resume= if it stopped after a checkpoint, else trained."""
        run = self.out / "runs" / name
        last = run / "checkpoints" / "last.ckpt"
        args = [*overrides, *QUIET_TRAIN]
        line = command_line("train", [*args, f"hydra.run.dir={run}"])
        self.check_same_command(run, line)
        if finished(run) and last.is_file():
            self._reuse("train", run, line)
            return run
        if last.is_file():
            resume = [f"resume={run}", *QUIET_TRAIN]
            print(f"reproduce.py: continuing the stopped run {run}", flush=True)
            line = command_line("train", resume)
            seconds = self._run("train", resume, run, line, resuming=True)
            self._record(Step("train", run, line, "resumed", seconds))
        else:
            if run.exists():
                # Started, but stopped before its first checkpoint: nothing in it to keep.
                print(f"reproduce.py: {run} has no checkpoint; training it again", flush=True)
                shutil.rmtree(run)
            seconds = self._run("train", args, run, line)
            self._record(Step("train", run, line, "ran", seconds))
        if not last.is_file():
            raise ReproduceError(f"genlab train wrote no {last}; see its output above")
        return run

    def measure(self, command: str, name: str, args: Sequence[str]) -> dict[str, Any]:
        """metrics.json of `genlab COMMAND ARGS` (evaluate, anomaly) in ``eval/NAME``, run
        unless it is there already and newer than the checkpoints it read (ckpt=,
        features=): a run continued since then is measured again."""
        directory = self.out / "eval" / name
        metrics = directory / "metrics.json"
        args = [*args, "quiet=true"]
        line = command_line(command, [*args, f"hydra.run.dir={directory}"])
        inputs = [Path(a.split("=", 1)[1]) for a in args if a.startswith(("ckpt=", "features="))]
        if (
            metrics.is_file()
            and self.recorded(directory).get("command") in (None, line)
            and all(
                p.stat().st_mtime_ns <= metrics.stat().st_mtime_ns for p in inputs if p.is_file()
            )
        ):
            self._reuse(command, directory, line)
        else:
            if directory.exists():
                shutil.rmtree(directory)  # stopped half-way, or of an earlier checkpoint
            seconds = self._run(command, args, directory, line)
            self._record(Step(command, directory, line, "ran", seconds))
            if not metrics.is_file():
                raise ReproduceError(f"genlab {command} wrote no {metrics}; see its output above")
        return json.loads(metrics.read_text())

    def _reuse(self, command: str, directory: Path, line: str) -> None:
        print(f"reproduce.py: reused {directory}", flush=True)
        # The wall time it took when it ran (0 if unknown).
        wall = float(self.recorded(directory).get("wall_s", 0))
        self.steps.append(Step(command, directory, line, "reused", wall))

    def _run(
        self, command: str, args: list[str], directory: Path, line: str, *, resuming: bool = False
    ) -> float:
        """Run one command (``line`` as a user types it); its wall time in seconds."""
        print(f"+ {line}", flush=True)
        start = time.perf_counter()
        if self.use_subprocess:
            extra = [] if resuming else [f"hydra.run.dir={directory}"]
            code = subprocess.run(
                [genlab_executable(), command, *args, *extra], check=False
            ).returncode
        else:
            code = run_in_process(command, args, None if resuming else directory)
        if code != 0:
            raise ReproduceError(
                f"genlab {command} failed (exit status {code}) in {directory}; its message is "
                "above. Fix it and run reproduce.py again: finished runs are reused"
            )
        return time.perf_counter() - start


def finished(run: Path) -> bool:
    """Whether genlab train's metrics.json in ``run`` says the run finished (not interrupted)."""
    try:
        return json.loads((run / "metrics.json").read_text()).get("status") == "finished"
    except (OSError, ValueError, AttributeError):
        return False


def run_in_process(command: str, args: list[str], directory: Path | None) -> int:
    """`genlab COMMAND ARGS` in this process, through the CLI's own composition and error
    handling; its exit status. ``directory`` None: the run directory is resume='s."""
    import genlab
    from genlab.commands.common import run_command

    try:
        cfg = genlab.compose(command, args, output_dir=directory)
        module = importlib.import_module(f"genlab.commands.{command}")
        run_command(getattr(module, command), cfg)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def genlab_executable() -> str:
    beside = Path(sys.executable).with_name("genlab")
    found = str(beside) if beside.is_file() else shutil.which("genlab")
    if found is None:
        raise ReproduceError("the genlab command is not installed (pip install -e .)")
    return found


def command_line(command: str, args: Sequence[str]) -> str:
    quoted = [a if re.fullmatch(r"[\w./=,:+\-\[\]]+", a) else f"'{a}'" for a in args]
    return " ".join(["genlab", command, *quoted])


# ---------------------------------------------------------------------------------------------
# Data


def find_mnist(given: Path | None, budget: str, out: Path) -> Path:
    """The folder of MNIST's four IDX files: --mnist, else the usual places; for smoke
    without either, a small subset of the embedded digits written under OUT/data/mnist."""
    if given is not None:
        if not has_mnist_files(given):
            raise ReproduceError(missing_mnist([given]))
        return given.resolve()
    if budget == "smoke":
        return write_embedded_subset(out / "data" / "mnist")
    for candidate in MNIST_CANDIDATES:
        if has_mnist_files(candidate):
            return candidate.resolve()
    raise ReproduceError(missing_mnist(list(MNIST_CANDIDATES)))


def missing_mnist(looked: list[Path]) -> str:
    where = ", ".join(str(p) for p in looked)
    return (
        f"MNIST's four IDX files ({', '.join(IDX_FILES)}, raw or .gz) are not in {where}; "
        "pass their folder with --mnist DIR (genlab prepare-data is not needed: `genlab train "
        "data=mnist data.download=true` fetches them into data/mnist)"
    )


def write_embedded_subset(folder: Path) -> Path:
    """SMOKE_TRAIN_PER_CLASS and SMOKE_TEST_PER_CLASS digits of each class of the embedded
    mnist_5k, as the four raw IDX files of MNIST (written once, each whole)."""
    if has_mnist_files(folder):
        return folder.resolve()
    import numpy as np

    from genlab.atomic import atomic_path
    from genlab.data.readers import load_mnist_5k

    digits = load_mnist_5k()["train"]
    train, test = [], []
    for label in range(10):
        where = np.flatnonzero(digits.labels == label)
        train.extend(where[:SMOKE_TRAIN_PER_CLASS])
        test.extend(where[SMOKE_TRAIN_PER_CLASS : SMOKE_TRAIN_PER_CLASS + SMOKE_TEST_PER_CLASS])
    for (images_name, labels_name), rows in zip(
        (IDX_FILES[:2], IDX_FILES[2:]), (np.sort(train), np.sort(test)), strict=True
    ):
        for name, array in (
            (images_name, digits.images[rows, 0]),
            (labels_name, digits.labels[rows].astype(np.uint8)),
        ):
            header = struct.pack(">HBB", 0, 0x08, array.ndim)
            header += struct.pack(f">{array.ndim}I", *array.shape)
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return folder.resolve()


# ---------------------------------------------------------------------------------------------
# The tables


@dataclass
class Context:
    runner: Runner
    budget: str
    mnist: Path
    seeds: list[int]
    device: str

    @property
    def train_device(self) -> list[str]:
        return ["trainer=gpu"] if self.device == "cuda" else []

    @property
    def command_device(self) -> list[str]:
        return [f"device={self.device}"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plus_minus(values: Sequence[float], digits: int = 2) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric(results: dict[str, Any], suffix: str) -> float:
    """The value of the metric of evaluate's metrics.json whose name ends with ``suffix``."""
    for name, value in results.get("metrics", {}).items():
        if name.endswith(suffix):
            return float(value)
    raise ReproduceError(f"genlab evaluate reported no */{suffix.lstrip('/')}: {results}")


def likelihood_table(ctx: Context) -> list[str]:
    budget = LIKELIHOOD[ctx.budget]
    bounds: dict[str, list[float]] = {}
    elbos: dict[str, list[float]] = {}
    for model in LIKELIHOOD_MODELS:
        for seed in ctx.seeds:
            name = f"{model}_seed{seed}"
            run = ctx.runner.train(
                name,
                [
                    f"experiment=repro_likelihood_{model}",
                    f"data.root={ctx.mnist}",
                    f"seed={seed}",
                    *ctx.train_device,
                    *budget["train"],
                    *budget["model"].get(model, []),
                ],
            )
            results = ctx.runner.measure(
                "evaluate",
                name,
                [
                    f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
                    *budget["evaluate"],
                    *ctx.command_device,
                ],
            )
            bounds.setdefault(model, []).append(-metric(results, "/log_likelihood"))
            elbos.setdefault(model, []).append(-metric(results, "/elbo"))
    k = option(budget["evaluate"], "k")
    images = option(budget["evaluate"], "likelihood_images")
    images = "all" if images == "null" else images
    lines = [
        f"−log p(x) on dynamically binarised MNIST's test images, in nats (lower is better): "
        f"the importance-weighted bound with k = {k} samples an image on {images} test images "
        "(`genlab evaluate k=...`), and the −ELBO beside it.",
        "",
        "| model | −log p(x), bound (nats) | −ELBO (nats) | source |",
        "|---|---|---|---|",
    ]
    for row, value in LIKELIHOOD_PUBLISHED:
        lines.append(f"| {row} | {value:.2f} | | IWAE paper, Table 1 |")
    # The k each IWAE trained with: its budget's model.k, else the overlay's 50.
    k_of = {m: option(budget["model"].get(m, []), "model.k", "50") for m in ("iwae", "iwae2")}
    names = {
        "vae": "genlab vae, 1 stochastic layer",
        "vae2": "genlab vae, 2 stochastic layers (iwae2, k = 1)",
        "iwae": f"genlab iwae, k = {k_of['iwae']}, 1 stochastic layer",
        "iwae2": f"genlab iwae2, k = {k_of['iwae2']}, 2 stochastic layers",
        "conv_vae": "genlab conv_vae",
    }
    for model in LIKELIHOOD_MODELS:
        lines.append(
            f"| {names[model]} | {plus_minus(bounds[model])} | {plus_minus(elbos[model])} "
            f"| this run, {len(ctx.seeds)} seed(s) |"
        )
    lines += [
        "",
        "genlab's rows have the paper's networks: vae and iwae one stochastic layer "
        "(784-200-200-50, tanh), vae2 and iwae2 two (784-200-200-100-100-100-50, tanh, "
        "mirrored); each trained with the paper's protocol (batch 20 where the budget keeps it, "
        "Adam eps 1e-4, lr 1e-3·10^(−i/7) for 3^i epochs). conv_vae is genlab's own "
        "convolutional VAE, with a 50-unit code.",
    ]
    return lines


def one_class_table(ctx: Context) -> list[str]:
    budget = ONE_CLASS[ctx.budget]
    digits = budget["digits"]
    settings = [Setting(model, model, model, (), len(ctx.seeds)) for model in ONE_CLASS_MODELS]
    # An ablation takes its own seeds, no more than --seeds gives.
    settings += [replace(s, seeds=min(s.seeds, len(ctx.seeds))) for s in budget["ablations"]]
    # (setting label, score) -> digit -> AUROCs (%) over the setting's seeds
    found: dict[tuple[str, str], dict[int, list[float]]] = {}
    for setting in settings:
        for digit in digits:
            for seed in ctx.seeds[: setting.seeds]:
                name = f"{setting.name}_digit{digit}_seed{seed}"
                run = ctx.runner.train(
                    name,
                    [
                        "experiment=repro_one_class",
                        f"model={setting.model}",
                        f"data.root={ctx.mnist}",
                        f"data.classes=[{digit}]",
                        f"seed={seed}",
                        *ctx.train_device,
                        *budget["train"],
                        *setting.train,
                    ],
                )
                results = ctx.runner.measure(
                    "anomaly",
                    name,
                    [
                        f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
                        *budget["anomaly"],
                        *ctx.command_device,
                    ],
                )
                for score in ONE_CLASS_SCORES:
                    if score in results:
                        found.setdefault((setting.label, score), {}).setdefault(digit, []).append(
                            100 * float(results[score])
                        )
    head = "| model, score | " + " | ".join(str(d) for d in range(10)) + " | mean |"
    lines = [
        "AUROC (%) on MNIST's whole test set, the trained digit normal and the other nine "
        f"anomalies; genlab's rows: mean ± std over {len(ctx.seeds)} seed(s) "
        f"({', '.join(map(str, ctx.seeds))}), the ablations' over the seeds they name.",
        "",
        head,
        "|---|" + "---|" * 11,
        "| Deep SVDD (published) | "
        + " | ".join(f"{v:.1f}" for v in DEEP_SVDD)
        + f" | {statistics.fmean(DEEP_SVDD):.1f} |",
    ]
    seeds = {s.label: s.seeds for s in settings}
    models = {s.label: s.model for s in settings}
    for (label, score), by_digit in found.items():
        cells = [plus_minus(by_digit[d], 1) if d in by_digit else "–" for d in range(10)]
        # The mean over the digits, per seed; its spread over the seeds.
        per_seed = [statistics.fmean(by_digit[d][i] for d in by_digit) for i in range(seeds[label])]
        row = label
        if label != models[label]:  # an ablation: what it changes, and its seeds
            used = ", ".join(map(str, ctx.seeds[: seeds[label]]))
            row = f"{models[label]}, {label} (seed{'s' if seeds[label] > 1 else ''} {used})"
        lines.append(
            f"| genlab {row}, {ONE_CLASS_SCORES[score]} | "
            + " | ".join(cells)
            + f" | {plus_minus(per_seed, 1)} |"
        )
    if len(digits) < 10:
        lines += ["", f"Only digits {', '.join(map(str, digits))} ran: genlab's means are theirs."]
    train = " ".join(budget["train"])
    lines += [
        "",
        "Ablations: conv_vae's two rows rank the same models by reconstruction error and by "
        f"−ELBO; the rows that name a change train that model with it on top of this budget's "
        f"`{train}`.",
    ]
    return lines


def stacked_table(ctx: Context) -> list[str]:
    budget = STACKED[ctx.budget]
    classifier = ctx.runner.train(
        "classifier",
        [
            "experiment=repro_stacked_classifier",
            f"data.root={ctx.mnist}",
            f"seed={ctx.seeds[0]}",
            *ctx.train_device,
            *budget["classifier"],
        ],
    )
    features = classifier / "checkpoints" / "last.ckpt"
    rows: dict[int, dict[str, list[float]]] = {}
    warnings: set[str] = set()
    for pack in (1, 2):
        for seed in ctx.seeds:
            name = f"dcgan_pack{pack}_seed{seed}"
            run = ctx.runner.train(
                name,
                [
                    "experiment=repro_stacked_dcgan",
                    f"data.root={ctx.mnist}",
                    f"model.pack={pack}",
                    f"data.batch_size={budget['batch'][pack]}",
                    f"seed={seed}",
                    *ctx.train_device,
                    *budget["gan"],
                ],
            )
            results = ctx.runner.measure(
                "evaluate",
                name,
                [
                    f"ckpt={run / 'checkpoints' / 'last.ckpt'}",
                    f"features={features}",
                    *budget["evaluate"],
                    *ctx.command_device,
                ],
            )
            warnings.update(results.get("warnings") or [])
            row = rows.setdefault(pack, {"modes": [], "kl": []})
            row["modes"].append(metric(results, "/modes_covered"))
            row["kl"].append(metric(results, "/kl_uniform"))
    samples = option(budget["evaluate"], "num_samples")
    lines = [
        f"Modes covered (of 1000) and KL(mode histogram ‖ uniform) in nats, over {samples} "
        "samples (the papers': 26,000), each channel classified by an MNIST classifier "
        "trained through genlab.",
        "",
        "| model | modes | KL | source |",
        "|---|---|---|---|",
    ]
    for model, modes, kl in STACKED_PUBLISHED:
        lines.append(f"| {model} | {modes} | {kl:.2f} | PacGAN paper, Table 2 |")
    for pack, row in rows.items():
        model = "genlab dcgan" if pack == 1 else f"genlab dcgan, model.pack={pack}"
        lines.append(
            f"| {model} | {plus_minus(row['modes'], 0)} | {plus_minus(row['kl'])} "
            f"| this run, {len(ctx.seeds)} seed(s) |"
        )
    if warnings:
        # evaluate's own words when the classifier is unreliable on these images.
        lines += ["", *(f"Warning from genlab evaluate: {w}" for w in sorted(warnings))]
    return lines


TABLE_BUILDERS: dict[str, Callable[[Context], list[str]]] = {
    "likelihood": likelihood_table,
    "one_class": one_class_table,
    "stacked_mnist": stacked_table,
}
TITLES = {
    "likelihood": "Likelihood on dynamically binarised MNIST (IWAE paper, Table 1)",
    "one_class": "One-class anomaly detection on MNIST (Deep SVDD paper)",
    "stacked_mnist": "Mode collapse on Stacked MNIST (PacGAN paper, Table 2)",
}
# Mode counts swing from run to run (a GAN may collapse in one and not in the next), so
# stacked_mnist takes three seeds, as one_class does; the paper's likelihoods are single runs.
DEFAULT_SEEDS = {"likelihood": 1, "one_class": 3, "stacked_mnist": 3}


def option(overrides: Sequence[str], key: str, default: str | None = None) -> str:
    """The value of ``key`` among the overrides KEY=VALUE (``default`` if absent)."""
    for item in overrides:
        if item.startswith(f"{key}="):
            return item.split("=", 1)[1]
    if default is None:
        raise KeyError(key)
    return default


# ---------------------------------------------------------------------------------------------
# Report


def hardware(device: str) -> str:
    from benchlib import machine_info  # imports torch: only once the runs are done

    info = machine_info(device)
    return (
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"({info['threads']} threads), device: {device} ({info.get('gpu', 'CPU')})"
    )


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def report(
    table: str, budget: str, body: list[str], ctx: Context, *, wall_s: float, argv: list[str]
) -> str:
    steps = ctx.runner.steps
    total = sum(s.wall_s for s in steps)
    reused = sum(s.status == "reused" for s in steps)
    lines = [
        f"### {TITLES[table]}: budget {budget}",
        "",
        BUDGET_NOTES[budget],
        "",
        *body,
        "",
        f"- Reproduced by: `python scripts/reproduce.py {' '.join(argv)}`",
        f"- Seeds: {', '.join(map(str, ctx.seeds))}",
        f"- Hardware: {hardware(ctx.device)}",
        f"- MNIST: {ctx.mnist}",
        f"- Wall time: {duration(total)} for the runs in all (the time each took when it ran); "
        f"this invocation {duration(wall_s)}, {reused} of {len(steps)} runs reused",
        "",
        "| run | status | wall time | command |",
        "|---|---|---|---|",
    ]
    for step in steps:
        where = step.directory.relative_to(ctx.runner.out)
        lines.append(f"| {where} | {step.status} | {duration(step.wall_s)} | `{step.line}` |")
    return "\n".join(lines) + "\n"


def update_results(path: Path, table: str, budget: str, text: str) -> None:
    """Replace the section of TABLE at BUDGET between its markers in ``path`` (appended if
    absent; the file is made if missing); every other section is left as it is."""
    from genlab.atomic import write_text

    start, end = f"<!-- results:{table}:{budget} -->", f"<!-- /results:{table}:{budget} -->"
    old = path.read_text() if path.is_file() else "# Reproduced tables\n"
    section = f"{start}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    new = (
        pattern.sub(lambda _: section, old, count=1)
        if pattern.search(old)
        else old.rstrip() + "\n\n" + section + "\n"
    )
    write_text(path, new)


# ---------------------------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reproduce.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("table", choices=TABLES, metavar="TABLE", help=", ".join(TABLES))
    parser.add_argument("--budget", choices=BUDGETS, required=True, help="smoke | quick | full")
    parser.add_argument(
        "--out", type=Path, help="where the runs and TABLE.md go (outputs/reproduce/TABLE/BUDGET)"
    )
    parser.add_argument(
        "--mnist",
        type=Path,
        help="folder of MNIST's four IDX files (default: ../shared/datasets/mnist, "
        "shared/datasets/mnist or data/mnist; smoke: a subset of the embedded digits)",
    )
    parser.add_argument(
        "--seeds", type=int, help="seeds 0..N-1 per setting (likelihood: 1; else 3; smoke: 1)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="the Markdown file whose section for this table and budget is refreshed "
        "(default docs/results.md; smoke: none unless given)",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if present"
    )
    parser.add_argument(
        "--subprocess",
        action="store_true",
        help="run each command as a `genlab` subprocess instead of in this process",
    )
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    started = time.perf_counter()
    out = (args.out or Path("outputs") / "reproduce" / args.table / args.budget).resolve()
    seeds = args.seeds or (1 if args.budget == "smoke" else DEFAULT_SEEDS[args.table])
    results = args.results
    if results is None and args.budget != "smoke":
        results = ROOT / "docs" / "results.md"
    try:
        mnist = find_mnist(args.mnist, args.budget, out)
        device = args.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        ctx = Context(
            Runner(out, use_subprocess=args.subprocess),
            args.budget,
            mnist,
            list(range(seeds)),
            device,
        )
        body = TABLE_BUILDERS[args.table](ctx)
    except ReproduceError as exc:
        print(f"reproduce.py: error: {exc}", file=sys.stderr)
        return 1
    text = report(
        args.table, args.budget, body, ctx, wall_s=time.perf_counter() - started, argv=argv
    )
    from genlab.atomic import write_text

    table_path = write_text(out / f"{args.table}.md", text)
    print(text)
    print(f"reproduce.py: table in {table_path}")
    if results is not None:
        update_results(results, args.table, args.budget, text)
        print(f"reproduce.py: section {args.table}:{args.budget} refreshed in {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
