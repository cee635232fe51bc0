"""`genlab report DIR`: compare the runs of a sweep (or look at one run) after the fact, or
while it is still going.

DIR is a run directory (outputs/train/DATE/TIME) or a sweep's (outputs/multirun/train/
DATE/TIME, whose job folders 0/, 1/, ... are runs); any folder holding runs further down
works too. Each job's metrics come from its metrics.json (written by train at the end of a
run, genlab.callbacks.hparams), else from its TensorBoard event files or the CSV logger's
metrics.csv, which a running or crashed job has written so far. A job with error.txt has
failed; one with neither file is still running (or was killed without a word).

Written into DIR (or ``out=``): report.md (also printed) and report.csv, a row per job
sorted by the optimized metric; metric_vs_<param>.png for every parameter the sweep varied;
learning_curves.png; and best_grid.png, the best job's last image grid.

Nothing here imports torch: a report of a finished sweep takes a second, not ten. The
metric bookkeeping shared with the HParams callback (the per-epoch history, its best and
final values, the flattening of the config) lives here for the same reason.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.commands.common import CONFIG_DIR, ERROR_FILE, run_command
from genlab.errors import ConfigError

METRICS_FILE = "metrics.json"
# The scalars HParamsLogger adds at the end of fit, one per metric; not metrics of their own.
BEST_PREFIX = "best/"
DEFAULT_METRIC = "val/loss"
DIRECTIONS = ("minimize", "maximize")
# Metrics that are better when higher, by the last part of their name; the others (losses,
# divergences, distances, FID) are better when lower.
HIGHER_IS_BETTER = re.compile(
    r"(acc|accuracy|elbo|auroc|auc|psnr|ssim|precision|recall|coverage|likelihood|f1|iou)$"
)
# Stage order of the metric columns.
STAGES = ("val", "train", "test")

History = dict[str, list[tuple[int, int, float]]]


# Shared with genlab.callbacks.hparams.


def flatten_config(tree: Any, prefix: str = "") -> dict[str, bool | int | float | str]:
    """``{"model": {"latent_dim": 16}}`` as ``{"model.latent_dim": 16}``: the values
    TensorBoard's HParams take (bools, numbers, strings); a list as its text, null as
    'null'."""
    if isinstance(tree, dict):
        flat: dict[str, bool | int | float | str] = {}
        for key, value in tree.items():
            flat.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if tree is None:
        return {prefix: "null"}
    if isinstance(tree, bool | int | float | str):
        return {prefix: tree}
    return {prefix: json.dumps(tree) if isinstance(tree, list | tuple) else str(tree)}


def higher_is_better(name: str, monitor: str, direction: str) -> bool:
    if name == monitor:
        return direction == "maximize"
    return bool(HIGHER_IS_BETTER.search(name.rsplit("/", 1)[-1]))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def summarize_history(history: History, monitor: str, direction: str) -> dict[str, Any]:
    """Per metric: its final value, its best (by ``direction`` for the monitored metric, by
    its name for the others) and the epoch of the best; non-finite values are never best,
    and are null (JSON has no NaN)."""
    summary: dict[str, Any] = {}
    for name, series in sorted(history.items()):
        finite = [(epoch, value) for epoch, _, value in series if _finite(value)]
        pick = max if higher_is_better(name, monitor, direction) else min
        best = pick(finite, key=lambda item: item[1]) if finite else None
        final = series[-1][2] if series else None
        summary[name] = {
            "final": final if _finite(final) else None,
            "best": best[1] if best else None,
            "best_epoch": best[0] if best else None,
        }
    return summary


# Finding and reading runs.


def is_run(path: Path) -> bool:
    """A folder genlab train (or Hydra, for a job) wrote: its config, Hydra's record, its
    metrics or its error."""
    return any(
        (path / name).exists() for name in ("config.yaml", ".hydra", METRICS_FILE, ERROR_FILE)
    )


def natural_key(text: str) -> list[Any]:
    """'2' before '10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_runs(root: Path, *, depth: int = 4) -> list[Path]:
    """The run directories at or under ``root`` (not inside a run), in natural order."""
    if is_run(root):
        return [root]
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        children = [
            child
            for folder in level
            for child in sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
            if child.is_dir() and not child.name.startswith(".")
        ]
        found += [child for child in children if is_run(child)]
        level = [child for child in children if not is_run(child)]
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(root))))


def _load_yaml(path: Path) -> Any:
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # noqa: BLE001 - a torn or foreign file: as if absent
        return None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def per_epoch(points: Iterable[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """(epoch, step, value) points, the last of each epoch, in epoch order."""
    last: dict[int, tuple[int, int, float]] = {}
    for point in sorted(points, key=lambda p: (p[0], p[1])):
        last[point[0]] = point
    return [last[epoch] for epoch in sorted(last)]


def _is_metric(name: str) -> bool:
    return name not in ("epoch", "step", "hp_metric") and not name.startswith(BEST_PREFIX)


def tensorboard_history(run: Path) -> History:
    """Every scalar of the run's TensorBoard event files (a partly written last record is
    skipped), one value per epoch: the epoch of a step is read off Lightning's ``epoch``
    scalar."""
    folders = sorted({f.parent for f in run.rglob("events.out.tfevents.*")})
    if not folders:
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Its reader logs every switch to the next event file.
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    points: dict[str, list[tuple[int, float]]] = {}
    for folder in folders:
        accumulator = EventAccumulator(
            str(folder), size_guidance={"scalars": 0, "images": 1, "tensors": 1}
        )
        # An unreadable file: what was read so far.
        with contextlib.suppress(Exception):
            accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            points.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    epochs = sorted(points.pop("epoch", []))

    def epoch_at(step: int) -> int:
        # The epoch logged with the step itself, else the last one before it.
        at = [int(value) for s, value in epochs if s <= step]
        return at[-1] if at else 0

    history: History = {}
    for tag, series in points.items():
        if _is_metric(tag):
            history[tag] = per_epoch((epoch_at(step), step, value) for step, value in series)
    return history


def csv_history(run: Path) -> History:
    """The metrics of the CSV logger's metrics.csv files, one value per epoch."""
    points: dict[str, list[tuple[int, int, float]]] = {}
    for path in sorted(run.rglob("metrics.csv")):
        try:
            rows = list(csv.DictReader(io.StringIO(path.read_text())))
        except (OSError, csv.Error):
            continue
        for index, row in enumerate(rows):
            try:
                epoch = int(float(row.get("epoch") or 0))
                step = int(float(row.get("step") or index))
            except ValueError:
                continue
            for name, text in row.items():
                if name and text not in (None, "") and _is_metric(name):
                    try:
                        points.setdefault(name, []).append((epoch, step, float(text)))
                    except ValueError:
                        continue
    return {name: per_epoch(series) for name, series in points.items()}


def history_from_json(data: dict[str, Any]) -> History:
    history: History = {}
    for name, series in (data.get("history") or {}).items():
        values = [math.nan if v is None else float(v) for v in series.get("value", [])]
        history[name] = list(
            zip(series.get("epoch", []), series.get("step", []), values, strict=False)
        )
    return history


def logged_history(run: Path) -> History:
    """What the run's loggers have written, from whichever of them holds more."""
    candidates = [tensorboard_history(run), csv_history(run)]
    return max(candidates, key=lambda h: sum(len(s) for s in h.values()))


def error_line(text: str) -> str:
    """The line of error.txt that says what went wrong: genlab's one-line message, or the
    last line of a traceback (the exception and its message)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "failed (empty error.txt)"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """``model.latent_dim=16`` as ``{"model.latent_dim": "16"}``; ``~key`` as deleted."""
    parsed = {}
    for text in overrides:
        key, sep, value = str(text).partition("=")
        if key.startswith("~"):
            parsed[key.lstrip("~")] = "(deleted)"
        elif sep:
            parsed[key.lstrip("+")] = value
    return parsed


@dataclass
class Job:
    name: str
    path: Path
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    error: str = ""
    history: History = field(default_factory=dict)
    wall_time: float | None = None
    recorded: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, str]:
        return parse_overrides(self.overrides)

    def epochs(self, metric: str) -> int:
        series = self.history.get(metric) or next(iter(self.history.values()), [])
        return 1 + max((epoch for epoch, _, _ in series), default=-1)


def _started(run: Path) -> float | None:
    """When the run started: the first file Hydra or train wrote in it."""
    times = [
        p.stat().st_mtime
        for p in (run / ".hydra" / "config.yaml", run / ".genlab-run", run / "config.yaml")
        if p.exists()
    ]
    return min(times) if times else None


def read_job(run: Path, root: Path) -> Job:
    name = "." if run == root else str(run.relative_to(root))
    job = Job(name=name, path=run)
    overrides = _load_yaml(run / ".hydra" / "overrides.yaml")
    job.overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
    for candidate in (run / "config.yaml", run / ".hydra" / "config.yaml"):
        config = _load_yaml(candidate) if candidate.is_file() else None
        if isinstance(config, dict):
            job.config = config
            break
    recorded = read_json(run / METRICS_FILE)
    if recorded is not None:
        job.recorded = recorded
        job.status = str(recorded.get("status", "finished"))
        job.history = history_from_json(recorded)
        job.wall_time = recorded.get("wall_time_s")
        return job
    started = _started(run)
    error = run / ERROR_FILE
    if error.is_file():
        job.status = "failed"
        job.error = error_line(error.read_text(errors="replace"))
        ended = error.stat().st_mtime
    else:
        ended = time.time()
    if started is not None:
        job.wall_time = max(0.0, ended - started)
    job.history = logged_history(run)
    return job


# The table.


@dataclass
class Report:
    root: Path
    jobs: list[Job]
    metric: str
    direction: str
    swept: list[str]
    common: dict[str, str]
    columns: list[str]  # the metrics besides ``metric``

    def best_value(self, job: Job) -> float | None:
        return (
            summarize_history(job.history, self.metric, self.direction)
            .get(self.metric, {})
            .get("best")
        )

    def describe(self, job: Job) -> str:
        """The job's swept parameters (all its overrides when nothing was swept)."""
        params = job.params
        words = [f"{k}={params[k]}" for k in self.swept if k in params] or job.overrides
        return " ".join(words) or "no overrides"

    @property
    def best_job(self) -> Job | None:
        """The first finished job with a value of the metric, else the first with one."""
        valued = [job for job in self.jobs if self.best_value(job) is not None]
        finished = [job for job in valued if job.status == "finished"]
        return (finished or valued or [None])[0]


def rank(job: Job, metric: str, direction: str) -> tuple[Any, ...]:
    """Finished jobs with a value first, best first; then finished jobs without one; then
    running jobs (best first), then failed ones."""
    best = summarize_history(job.history, metric, direction).get(metric, {}).get("best")
    group = {"finished": 0, "running": 2}.get(job.status, 3)
    if group == 0 and best is None:
        group = 1
    value = math.inf if best is None else (-best if direction == "maximize" else best)
    return (group, value, natural_key(job.name))


def _stage_order(name: str) -> tuple[int, str]:
    stage = name.split("/", 1)[0]
    return (STAGES.index(stage) if stage in STAGES else len(STAGES), name)


def build_report(root: Path, jobs: list[Job], metric: str | None, direction: str | None) -> Report:
    first = jobs[0]
    metric = metric or first.config.get("optimized_metric") or first.recorded.get("monitor")
    metric = str(metric or DEFAULT_METRIC)
    direction = direction or first.config.get("optimized_direction") or "minimize"
    direction = str(direction)
    if direction not in DIRECTIONS:
        raise ConfigError(
            f"optimized direction {direction!r} (from direction= or the jobs' "
            "optimized_direction) is not one of minimize, maximize; e.g. direction=maximize"
        )
    params = [job.params for job in jobs]
    keys = sorted({key for p in params for key in p}, key=natural_key)
    swept = [key for key in keys if len({p.get(key) for p in params}) > 1]
    common = {key: params[0][key] for key in keys if key not in swept}
    names = {name for job in jobs for name in job.history} - {metric}
    jobs = sorted(jobs, key=lambda job: rank(job, metric, direction))
    return Report(root, jobs, metric, direction, swept, common, sorted(names, key=_stage_order))


def format_number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def table(report: Report, *, for_csv: bool) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of the table; the CSV's numbers in full, with the whole
    overrides and the error; the Markdown's rounded."""
    number: Callable[[float | None], Any] = (
        (lambda v: "" if v is None else v) if for_csv else format_number
    )
    metric = report.metric
    header = ["rank", "job", *report.swept, "status", f"{metric} best", f"{metric} final"]
    header += ["best epoch", "epochs", "wall time (s)" if for_csv else "wall time"]
    for name in report.columns:
        header += [name] if name.startswith("test/") else [f"{name} best", f"{name} final"]
    if for_csv:
        header += ["overrides", "error", "path"]
    rows = []
    for position, job in enumerate(report.jobs, 1):
        summary = summarize_history(job.history, metric, report.direction)
        own = summary.get(metric, {})
        params = job.params
        wall = job.wall_time
        row: list[Any] = [position, job.name, *(params.get(k, "") for k in report.swept)]
        row += [job.status, number(own.get("best")), number(own.get("final"))]
        best_epoch = own.get("best_epoch")
        row += ["" if best_epoch is None else best_epoch, job.epochs(metric)]
        row += [
            ("" if wall is None else round(float(wall), 3)) if for_csv else format_seconds(wall)
        ]
        for name in report.columns:
            entry = summary.get(name, {})
            if name.startswith("test/"):
                row.append(number(entry.get("final")))
            else:
                row += [number(entry.get("best")), number(entry.get("final"))]
        if for_csv:
            row += [" ".join(job.overrides), job.error, str(job.path)]
        rows.append(row)
    return header, rows


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(report: Report, figures: list[str], grid: str | None) -> str:
    counts: dict[str, int] = {}
    for job in report.jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    better = "higher" if report.direction == "maximize" else "lower"
    lines = [f"# genlab report: {report.root}", ""]
    states = ", ".join(f"{n} {status}" for status, n in counts.items())
    lines.append(
        f"{len(report.jobs)} job{'s' if len(report.jobs) != 1 else ''} ({states}), sorted by "
        f"the best {report.metric} ({better} is better), failed and running jobs last."
    )
    if report.common:
        shared = " ".join(f"{k}={v}" for k, v in report.common.items())
        lines.append(f"Overrides of every job: `{shared}`")
    lines.append("")
    header, rows = table(report, for_csv=False)
    lines.append("| " + " | ".join(_cell(h) for h in header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    best = report.best_job
    lines.append("")
    if best is not None:
        own = summarize_history(best.history, report.metric, report.direction)[report.metric]
        where = report.describe(best)
        lines.append(
            f"Best: job {best.name} ({where}), {report.metric} {format_number(own['best'])} "
            f"at epoch {own['best_epoch']}."
        )
    else:
        lines.append(f"No job has logged {report.metric} yet.")
    failed = [job for job in report.jobs if job.status == "failed"]
    if failed:
        lines += ["", "## Failed jobs", ""]
        for job in failed:
            where = report.describe(job)
            lines.append(f"- job {job.name} ({where}): {job.error}")
    files = [*figures, *([grid] if grid else [])]
    if files:
        lines += ["", "Figures: " + ", ".join(files)]
    return "\n".join(lines) + "\n"


def write_csv(report: Report, path: Path) -> Path:
    from genlab.atomic import write_text

    header, rows = table(report, for_csv=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


# The figures.


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    from genlab.atomic import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight", dpi=110)
    finally:
        _pyplot().close(fig)
    return path


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_") or "param"


def metric_vs_param_png(report: Report, key: str, path: Path) -> Path | None:
    """The best value of the metric of every job against its value of ``key``: a numeric
    axis (logarithmic over a wide positive range, as learning rates are) when every value
    is a number, else one position per value. Unfinished jobs are hollow."""
    points = []
    for job in report.jobs:
        best = report.best_value(job)
        if best is not None:
            points.append((job.params.get(key, "(default)"), best, job.status == "finished"))
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    numbers = [_as_number(value) for value, _, _ in points]
    if all(n is not None for n in numbers):
        xs: list[float] = [float(n) for n in numbers]  # type: ignore[arg-type]
        if min(xs) > 0 and max(xs) / min(xs) >= 50:
            ax.set_xscale("log")
    else:
        categories = sorted({value for value, _, _ in points}, key=natural_key)
        xs = [float(categories.index(value)) for value, _, _ in points]
        ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0)
    for x, (_, y, finished) in zip(xs, points, strict=True):
        ax.scatter([x], [y], color="tab:blue", facecolors="tab:blue" if finished else "none")
    better = "higher" if report.direction == "maximize" else "lower"
    ax.set_xlabel(key)
    ax.set_ylabel(f"best {report.metric} ({better} is better)")
    ax.set_title(f"best {report.metric} of each job against {key}", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def learning_curves_png(report: Report, path: Path) -> Path | None:
    """The metric per epoch of every job, one line each; unfinished jobs dashed."""
    curves = [
        (job, [(e, v) for e, _, v in job.history.get(report.metric, []) if _finite(v)])
        for job in report.jobs
    ]
    curves = [(job, points) for job, points in curves if points]
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for job, points in curves:
        label = " ".join(f"{k}={job.params.get(k, '')}" for k in report.swept) or job.name
        if job.status != "finished":
            label += f" ({job.status})"
        epochs, values = zip(*points, strict=True)
        ax.plot(
            epochs,
            values,
            marker="o" if len(points) < 30 else None,
            markersize=3,
            linestyle="-" if job.status == "finished" else "--",
            label=f"{job.name}: {label}" if label != job.name else label,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(report.metric)
    ax.set_title(f"{report.metric} per epoch, every job", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=1 if len(curves) <= 12 else 2)
    return _save(fig, path)


GRID_NAME = re.compile(r"_epoch(\d+)\.png$")


def last_grid(run: Path) -> Path | None:
    """The run's last image grid (images/<tag>_epochNNN.png, written by
    genlab.callbacks.images): the latest epoch's, samples rather than reconstructions."""
    grids = [
        (int(m.group(1)), p) for p in run.rglob("*_epoch*.png") if (m := GRID_NAME.search(p.name))
    ]
    if not grids:
        return None
    last = max(epoch for epoch, _ in grids)
    latest = sorted(p for epoch, p in grids if epoch == last)
    return next((p for p in latest if "sample" in p.name), latest[0])


def copy_file(source: Path, target: Path) -> Path:
    from genlab.atomic import atomic_path

    with atomic_path(target) as tmp:
        tmp.write_bytes(source.read_bytes())
    return target


# The command.


def _directory(value: Any) -> Path:
    return Path(str(value)).expanduser()


def report(cfg: DictConfig) -> dict[str, Any]:
    """Writes the report of ``cfg.dir`` into ``cfg.out`` (default: ``cfg.dir``); returns
    what it found: the jobs in table order, the metric, the files written."""
    from genlab.atomic import write_text
    from genlab.progress import Progress

    root = _directory(cfg.dir)
    if not root.exists():
        raise ConfigError(
            f"dir={root} does not exist; give a run directory (outputs/train/DATE/TIME) or a "
            "sweep's (outputs/multirun/train/DATE/TIME)"
        )
    if not root.is_dir():
        raise ConfigError(f"dir={root} is a file; give the folder of a run or of a sweep")
    for key in ("metric", "direction"):
        if cfg.get(key) is not None and not isinstance(cfg.get(key), str):
            raise ConfigError(f"{key} must be a string (got {cfg.get(key)!r})")
    runs = find_runs(root)
    if not runs:
        raise ConfigError(
            f"dir={root} holds no genlab runs: no folder in it has a config.yaml, a .hydra/ "
            "record, metrics.json or error.txt; give a run directory (outputs/train/DATE/TIME) "
            "or a sweep's (outputs/multirun/train/DATE/TIME)"
        )
    out = _directory(cfg.out) if cfg.get("out") else root
    progress = Progress("report", quiet=cfg.quiet)
    jobs = []
    with progress.phase(
        "reading", f"{len(runs)} run(s) under {root}", total=len(runs), unit="run"
    ) as bar:
        for run in runs:
            jobs.append(read_job(run, root))
            bar.update(1)
    result = build_report(root, jobs, cfg.get("metric"), cfg.get("direction"))

    figures = []
    for key in result.swept:
        name = f"metric_vs_{file_name(key)}.png"
        if metric_vs_param_png(result, key, out / name) is not None:
            figures.append(name)
    if learning_curves_png(result, out / "learning_curves.png") is not None:
        figures.append("learning_curves.png")
    grid = None
    best = result.best_job
    source = last_grid(best.path) if best is not None else None
    if source is not None:
        copy_file(source, out / "best_grid.png")
        grid = "best_grid.png"
    text = markdown(result, figures, grid)
    write_text(out / "report.md", text)
    write_csv(result, out / "report.csv")
    print(text, end="")
    written = ["report.md", "report.csv", *figures, *([grid] if grid else [])]
    print(f"genlab report: wrote {', '.join(written)} in {out}")
    return {"jobs": result.jobs, "metric": result.metric, "files": [out / f for f in written]}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="report")
def main(cfg: DictConfig) -> None:
    run_command(report, cfg)


if __name__ == "__main__":
    main()
