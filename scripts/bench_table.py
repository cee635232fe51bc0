"""Regenerate the README's benchmark tables from the benchmark scripts' JSON.

Each table sits between two marker comments in README.md, which this script owns; the text
outside them is never touched:

    <!-- bench:train -->        bench_train.py and bench_gan.py (a row per model; one
                                file per bench_gan.py --model: dcgan, progan, biggan)
    <!-- bench:translation -->  bench_translation.py (a row per image size)
    <!-- bench:memory -->       bench_memory.py (a row per run)
    <!-- bench:gpu -->          bench_gpu.py (a row per model, peak GPU memory, the epoch)
    <!-- bench:startup -->      bench_startup.py (a row per figure, in seconds)
    <!-- bench:eval -->         bench_eval.py (a row per pass, against the training rate)
    ...                         (rewritten)
    <!-- /bench -->

A table is rewritten only when a JSON file of its kind is given, so regenerating one leaves
the others as they are. Every table says which machine gave each figure: a caption line
names it (CPU model and cores, GPU where one was used, torch and its threads) and, where the
rows come from more than one machine, a column tells them apart. The output depends on the
JSON alone, so a second run with the same files changes nothing (the README is then not
even rewritten); a changed README is written whole or not at all. Run from the repository
root (``make bench`` runs the benchmarks and then this):

    .venv/bin/python scripts/bench_table.py bench/*.json
    .venv/bin/python scripts/bench_table.py --readme README.md --check bench/*.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genlab.atomic import write_text
from genlab.errors import DataError, GenlabError

README = Path(__file__).resolve().parents[1] / "README.md"
KINDS = ("train", "translation", "memory", "gpu", "startup", "eval")
# Reports that name their table themselves, by their "kind".
SELF_NAMED = ("startup", "eval")
END = "<!-- /bench -->"
MIB = 1 << 20


def marker(kind: str) -> str:
    return f"<!-- bench:{kind} -->"


def kind_of(report: dict[str, Any], source: str) -> str:
    """Which table a report feeds: by its ``kind`` (bench_startup, bench_eval), by the
    script that wrote it, or by its rows' key for files written before the scripts named
    themselves (bench_translation's ``sizes``)."""
    if report.get("kind") in SELF_NAMED:
        return str(report["kind"])
    script = report.get("script")
    if script in ("bench_train", "bench_gan"):
        return "train"
    if script == "bench_memory":
        return "memory"
    if script == "bench_gpu":
        return "gpu"
    if script == "bench_translation" or "sizes" in report:
        return "translation"
    raise DataError(
        f"{source} is not the JSON of a benchmark script (no 'script' naming bench_train, "
        "bench_gan, bench_translation, bench_memory or bench_gpu, nor a 'kind' of startup "
        "or eval); pass the files their --json wrote"
    )


def load_reports(paths: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """The reports in ``paths`` grouped by table, in the order given."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(
                f"cannot read benchmark results {path}: {exc}; rerun the benchmark with "
                "--json to write it again"
            ) from None
        if not isinstance(report, dict) or not isinstance(report.get("machine"), dict):
            raise DataError(
                f"{path} has no 'machine' record; it was not written by a benchmark script's "
                "--json (or by an older version): rerun the benchmark"
            )
        grouped.setdefault(kind_of(report, str(path)), []).append(report)
    return grouped


def describe_machine(info: dict[str, Any]) -> str:
    """One line naming what gave a figure: CPU (cores), GPU, torch, threads."""
    cpu = str(info.get("cpu") or "unknown CPU")
    if info.get("cores"):
        cpu += f" ({info['cores']} cores)"
    parts = [cpu]
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    parts.append(f"torch {info.get('torch', '?')}")
    if info.get("threads"):
        parts.append(f"{info['threads']} thread{'s' if info['threads'] != 1 else ''}")
    if info.get("memory_gib"):
        parts.append(f"{info['memory_gib']} GiB RAM")
    parts.append(f"device {info.get('device', 'cpu')}")
    return ", ".join(parts)


class Machines:
    """The machines of one table's rows, lettered in order of appearance."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def letter(self, info: dict[str, Any]) -> str:
        name = describe_machine(info)
        if name not in self.names:
            self.names.append(name)
        return chr(ord("A") + self.names.index(name))

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    def caption(self) -> str:
        if not self.several:
            return f"Machine: {self.names[0]}."
        return (
            "Machines: "
            + "; ".join(f"{chr(ord('A') + i)} = {name}" for i, name in enumerate(self.names))
            + "."
        )


def rate(images_per_s: float) -> str:
    return f"{images_per_s:,.0f}" if images_per_s >= 100 else f"{images_per_s:.2f}"


def millis(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def loop_cell(loop: dict[str, Any]) -> str:
    ms = loop.get("ms_per_step", loop.get("ms_per_batch"))
    return f"{rate(loop['images_per_s'])} img/s" + (f" ({millis(ms)})" if ms is not None else "")


def contended(row: dict[str, Any]) -> bool:
    return any(any(row[name].get("contended") or []) for name in ("plain", "genlab"))


def markdown(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def throughput_table(reports: list[dict[str, Any]], *, rows_key: str, label: str) -> str:
    """A table of genlab against the plain loop: a row per model (or size), later files
    replacing earlier rows of the same name."""
    machines = Machines()
    found: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    for report in reports:
        letter = machines.letter(report["machine"])
        for name, row in report[rows_key].items():
            title = f"{name}×{name}" if rows_key == "sizes" else name
            if row.get("step"):
                title += f" ({row['step']})"
            found[title] = (letter, report, row)
    header = [label, "plain loop", "genlab", "genlab / plain", "run"]
    if machines.several:
        header.append("machine")
    rows, marked = [], False
    for title, (letter, report, row) in found.items():
        mark = "*" if contended(row) else ""
        marked = marked or bool(mark)
        setting = (
            f"batch {report['batch_size']}, {row['steps']} steps, median of {report['repeats']}"
        )
        cells = [
            title,
            loop_cell(row["plain"]),
            loop_cell(row["genlab"]),
            f"{row['ratio']:.3f}{mark}",
            setting,
        ]
        rows.append([*cells, letter] if machines.several else cells)
    lines = [machines.caption(), "", *markdown(header, rows)]
    if marked:
        lines += [
            "",
            "\\* other processes left torch's threads less than a core each during a run: "
            "the figure measures the contention as much as genlab.",
        ]
    return "\n".join(lines)


def memory_table(reports: list[dict[str, Any]]) -> str:
    """Peak resident memory of each run against its budget, in MiB."""
    machines = Machines()
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for report in reports:
        letter = machines.letter(report["machine"])
        for name, run in report["runs"].items():
            found[name] = (letter, run)
    header = [
        "run",
        "uint8 data",
        "model + optimizer",
        "torch + Lightning",
        f"budget ({reports[-1].get('factor', 1.5)}×)",
        "a step, no data",
        "peak RSS",
        "peak / budget",
        "peak / step budget",
    ]
    if machines.several:
        header.append("machine")
    rows = []
    for name, (letter, run) in found.items():
        verdict = "" if run["peak_rss_bytes"] <= run["budget_bytes"] else " (over)"
        cells = [
            f"{name}: {run['description']}",
            *(
                f"{run[key] / MIB:,.0f} MiB"
                for key in (
                    "data_bytes",
                    "model_state_bytes",
                    "torch_bytes",
                    "budget_bytes",
                    "step_peak_bytes",
                    "peak_rss_bytes",
                )
            ),
            f"{run['peak_rss_bytes'] / run['budget_bytes']:.2f}{verdict}",
            f"{run['peak_rss_bytes'] / run['step_budget_bytes']:.2f}",
        ]
        rows.append([*cells, letter] if machines.several else cells)
    return "\n".join([machines.caption(), "", *markdown(header, rows)])


def memory_cell(loop: dict[str, Any]) -> str:
    peak = loop.get("peak_memory_bytes")
    return "n/a" if peak is None else f"{peak / MIB:,.0f} MiB"


def gpu_table(reports: list[dict[str, Any]]) -> str:
    """bench_gpu.py: genlab against the plain loop on one device, a row per model (later
    files replacing earlier rows of the same model), each loop's peak device memory, what
    genlab ran with, and the time of one MNIST epoch of conv_ae (the last file's that has
    one)."""
    machines = Machines()
    found: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    epoch: tuple[str, dict[str, Any]] | None = None
    for report in reports:
        letter = machines.letter(report["machine"])
        for name, row in report["models"].items():
            found[name] = (letter, report, row)
        if report.get("epoch"):
            epoch = (letter, report["epoch"])
    header = [
        "model",
        "plain loop",
        "genlab",
        "genlab / plain",
        "peak memory, plain / genlab",
        "run",
    ]
    if machines.several:
        header.append("machine")
    rows, marked, settings = [], False, []
    for name, (letter, report, row) in found.items():
        mark = "*" if contended(row) else ""
        marked = marked or bool(mark)
        title = f"{name} ({row['step']})" if row.get("step") else name
        compiled = ", compiled" if report.get("compile") else ""
        cells = [
            title,
            loop_cell(row["plain"]),
            loop_cell(row["genlab"]),
            f"{row['ratio']:.3f}{mark}",
            f"{memory_cell(row['plain'])} / {memory_cell(row['genlab'])}",
            f"{row['data']} {row['image_size']} px, batch {row['batch_size']}, "
            f"{report.get('precision', '?')}{compiled}, {row['steps']} steps, "
            f"median of {row['repeats']}",
        ]
        rows.append([*cells, letter] if machines.several else cells)
        used = row["genlab"].get("settings") or {}
        if used:
            layout = "channels-last" if used.get("channels_last") else "NCHW"
            settings.append(
                f"{name}: matmul {used.get('matmul_precision')}, {layout}, data on "
                f"{used.get('data_device')}"
            )
    lines = [machines.caption(), "", *markdown(header, rows)]
    if settings:
        lines += ["", "genlab ran with " + "; ".join(settings) + "."]
    if epoch is not None:
        letter, e = epoch
        where = f" (machine {letter})" if machines.several else ""
        limit = ", limited by --epoch-images" if e.get("limited") else ""
        lines += [
            "",
            f"One epoch of conv_ae through genlab{where}: {e['images']:,} images of "
            f"{e['data']} ({e['batches']} batches of {e['batch_size']}{limit}) in "
            f"{e['seconds']:.2f} s, {rate(e['images_per_s'])} img/s; the first epoch, with "
            f"the warm-up, {e['first_epoch_seconds']:.2f} s.",
        ]
    if marked:
        lines += [
            "",
            "\\* other processes left torch's threads less than a core each during a run: "
            "the figure measures the contention as much as genlab.",
        ]
    return "\n".join(lines)


def cell(text: str) -> str:
    """Free text from the JSON as one Markdown table cell."""
    return text.replace("|", "\\|")


def tagged(items: list[tuple[str, str]], machines: Machines) -> str:
    """Distinct ``(machine letter, text)`` pairs as one phrase: the text alone where all
    agree, else each one, with its machine where several gave rows."""
    distinct = list(dict.fromkeys(items))
    if len(distinct) == 1:
        return distinct[0][1]
    if not machines.several:
        return "; ".join(dict.fromkeys(text for _, text in distinct))
    return "; ".join(f"machine {letter}: {text}" for letter, text in distinct)


# bench_startup.py's train figures: where its callback saw each event, from process start.
STARTUP_EVENTS = {
    "setup": "Lightning's `setup`",
    "fit_start": "`on_fit_start`",
    "first_step": "its first training step",
    "process_exit": "exit",
}
# The training command bench_startup.py runs, before its own overrides.
STARTUP_TRAIN = "genlab train trainer.max_steps=1 trainer.limit_val_batches=0 test=false"


def startup_rows(report: dict[str, Any]) -> dict[str, float]:
    """bench_startup.py's figures in seconds, by the title of their row."""
    rows = {
        "bad argument answered (`genlab train trainer.max_epochs=ten`)": report["bad_argument_s"],
        "missing checkpoint answered (`genlab sample ckpt=missing.ckpt`)": report[
            "missing_checkpoint_s"
        ],
    }
    for event, seconds in report["to_event_s"].items():
        title = STARTUP_EVENTS.get(event, cell(event))
        rows[f"`genlab train` to {title}"] = seconds
    rows["`genlab train` to exit, with the interpreter's teardown (`GENLAB_FAST_EXIT=0`)"] = report[
        "process_exit_usual_s"
    ]
    for name, seconds in report["imports_s"].items():
        rows[f"import {cell(name)}"] = seconds
    return rows


def startup_setting(report: dict[str, Any]) -> str:
    overrides = " ".join(report.get("overrides") or [])
    command = f"`{STARTUP_TRAIN} {overrides}`" if overrides else f"`{STARTUP_TRAIN}`"
    defaults = "" if overrides else " (conv_ae on mnist_5k, the defaults)"
    return (
        f"medians of {report['repeats']} fresh processes, the training rows timing "
        f"{command}{defaults}"
    )


def startup_table(reports: list[dict[str, Any]]) -> str:
    """bench_startup.py: a row per figure, in seconds from process start (later files
    replacing earlier rows of the same figure); what ran in a line below."""
    machines = Machines()
    found: dict[str, tuple[str, float, str]] = {}
    for report in reports:
        letter = machines.letter(report["machine"])
        setting = startup_setting(report)
        for title, seconds in startup_rows(report).items():
            found[title] = (letter, seconds, setting)
    header = ["figure", "seconds"]
    if machines.several:
        header.append("machine")
    rows = []
    for title, (letter, seconds, _) in found.items():
        cells = [title, f"{seconds:.2f}"]
        rows.append([*cells, letter] if machines.several else cells)
    setting = tagged([(letter, s) for letter, _, s in found.values()], machines)
    return "\n".join(
        [
            machines.caption(),
            "",
            *markdown(header, rows),
            "",
            f"Figures: {setting}. Each row counts from the start of a fresh process: a "
            "`genlab` command, or for an import an interpreter that has already imported "
            "the libraries of the import rows above it.",
        ]
    )


def eval_table(reports: list[dict[str, Any]]) -> str:
    """bench_eval.py: a row per pass (later files replacing earlier rows of the same model,
    data, batch and pass), its rate as a multiple of training's, which the caption gives."""
    machines = Machines()
    found: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
    for report in reports:
        letter = machines.letter(report["machine"])
        run = f"{report['model']} on {report['data']}, batch {report['batch_size']}"
        training = f"{run}, {rate(report['training_images_per_s'])} img/s"
        for name, figures in report["passes"].items():
            found[(run, name)] = (letter, training, figures)
    several_runs = len({run for run, _ in found}) > 1
    header = ["pass", "images", "seconds", "img/s", "× training"]
    if several_runs:
        header.append("run")
    if machines.several:
        header.append("machine")
    rows = []
    for (run, name), (letter, _, figures) in found.items():
        cells = [
            cell(name),
            f"{figures['images']:,}",
            f"{figures['seconds']:.2f}",
            rate(figures["images_per_s"]),
            f"{figures['vs_training']:.2f}×",
        ]
        if several_runs:
            cells.append(cell(run))
        rows.append([*cells, letter] if machines.several else cells)
    training = tagged([(letter, t) for letter, t, _ in found.values()], machines)
    over = "its run's" if several_runs else "that"
    return "\n".join(
        [
            machines.caption(),
            "",
            f"Training through genlab: {training}. The × training column is each pass's "
            f"img/s over {over}.",
            "",
            *markdown(header, rows),
        ]
    )


def render(kind: str, reports: list[dict[str, Any]]) -> str:
    if kind == "train":
        return throughput_table(reports, rows_key="models", label="model")
    if kind == "translation":
        return throughput_table(reports, rows_key="sizes", label="pix2pix, size")
    if kind == "gpu":
        return gpu_table(reports)
    if kind == "startup":
        return startup_table(reports)
    if kind == "eval":
        return eval_table(reports)
    return memory_table(reports)


def regenerate(text: str, grouped: dict[str, list[dict[str, Any]]], *, source: str) -> str:
    """``text`` with the tables of the kinds in ``grouped`` rewritten between their
    markers; the rest of it unchanged."""
    for kind in KINDS:
        if kind not in grouped:
            continue
        pattern = re.compile(re.escape(marker(kind)) + r"\n.*?" + re.escape(END), re.DOTALL)
        matches = list(pattern.finditer(text))
        if len(matches) != 1:
            raise DataError(
                f"{source} has {len(matches)} '{marker(kind)}' ... '{END}' blocks, not one; "
                "put the markers around that table once (see scripts/bench_table.py)"
            )
        block = f"{marker(kind)}\n\n{render(kind, grouped[kind])}\n\n{END}"
        text = text[: matches[0].start()] + block + text[matches[0].end() :]
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, nargs="+", help="files the benchmarks' --json wrote")
    parser.add_argument("--readme", type=Path, default=README, help="default: README.md")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if the tables are stale"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the tables; the exit status: 1 where --check finds them stale, else 0."""
    args = parse_args(argv)
    try:
        text = args.readme.read_text()
    except OSError as exc:
        raise SystemExit(f"cannot read {args.readme}: {exc.strerror or exc}") from None
    try:
        new = regenerate(text, load_reports(args.json), source=str(args.readme))
        changed = new != text
        if changed and not args.check:
            write_text(args.readme, new)
    except GenlabError as exc:
        raise SystemExit(f"error: {exc}") from None
    state = "stale" if args.check else "rewritten"
    print(f"{args.readme}: {'tables ' + state if changed else 'tables up to date'}")
    return int(changed and args.check)


if __name__ == "__main__":
    sys.exit(main())
