"""`genlab report`: the table, CSV and figures of a sweep with a finished, a better
finished, a running (no metrics.json, a torn event file) and a failed job."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import FAST, make_idx_dataset, new_run, run_genlab, run_in_process
from PIL import Image

from genlab.cli import with_report_dir


def write_overrides(job: Path, *overrides: str) -> None:
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))


def png(path: Path, colour: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (12, 12), colour).save(path)
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """outputs/multirun/train/DATE/TIME as a sweep over model.latent_dim leaves it:
    0 a real tiny run; 1 finished with a better val/loss (its files written by hand);
    2 still running (the real run without metrics.json, its last event record torn);
    3 failed with a traceback."""
    workdir = tmp_path_factory.mktemp("report")
    make_idx_dataset(workdir / "mnist")
    run, _ = new_run(
        workdir,
        "train",
        "data=mnist",
        f"data.root={workdir / 'mnist'}",
        *FAST,
        "trainer.max_epochs=2",
        "model=ae",
        "model.latent_dim=4",
    )
    root = workdir / "outputs" / "multirun" / "train" / "2026-01-01" / "10-00-00"
    common = ("model=ae", "trainer.max_epochs=2")
    shutil.copytree(run, root / "0")
    write_overrides(root / "0", *common, "model.latent_dim=4")

    recorded = json.loads((run / "metrics.json").read_text())
    better = [v - 50 for v in recorded["history"]["val/loss"]["value"]]
    recorded["history"] = {"val/loss": {"epoch": [0, 1], "step": [3, 6], "value": better}}
    (root / "1").mkdir()
    (root / "1" / "metrics.json").write_text(json.dumps(recorded))
    (root / "1" / "config.yaml").write_text("optimized_metric: val/loss\n")
    write_overrides(root / "1", *common, "model.latent_dim=16")
    png(root / "1" / "images" / "val_reconstructions_epoch000.png", 10)
    png(root / "1" / "images" / "val_reconstructions_epoch001.png", 20)
    png(root / "1" / "images" / "val_samples_epoch001.png", 200)

    shutil.copytree(run, root / "2")
    (root / "2" / "metrics.json").unlink()
    write_overrides(root / "2", *common, "model.latent_dim=64")
    events = max(
        (root / "2" / "tensorboard").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_size
    )
    events.write_bytes(events.read_bytes()[:-7])  # a record half written

    (root / "3").mkdir()
    write_overrides(root / "3", *common, "model.latent_dim=256")
    (root / "3" / "error.txt").write_text(
        "Traceback (most recent call last):\n  File x, line 1\nRuntimeError: out of memory\n"
    )
    return root


@pytest.fixture(scope="module")
def reported(sweep: Path) -> tuple[Path, list[dict[str, str]], str]:
    out = sweep.parent / "report"
    _, result = run_in_process(sweep.parent, "report", f"dir={sweep}", f"out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    return out, rows, result.stdout


def test_rows_are_sorted_by_the_metric_with_running_and_failed_jobs_last(
    sweep: Path, reported: tuple[Path, list[dict[str, str]], str]
) -> None:
    _, rows, _ = reported
    assert [r["job"] for r in rows] == ["1", "0", "2", "3"]
    assert [r["status"] for r in rows] == ["finished", "finished", "running", "failed"]
    assert [r["model.latent_dim"] for r in rows] == ["16", "4", "64", "256"]
    assert rows[0]["rank"] == "1"
    recorded = json.loads((sweep / "0" / "metrics.json").read_text())
    best = recorded["metrics"]["val/loss"]["best"]
    assert float(rows[1]["val/loss best"]) == pytest.approx(best)
    assert float(rows[1]["val/loss final"]) == pytest.approx(
        recorded["metrics"]["val/loss"]["final"]
    )
    assert float(rows[0]["val/loss best"]) == pytest.approx(best - 50)
    assert rows[1]["epochs"] == "2"
    # The running job's values come from its (torn) event files: the same run's values.
    assert float(rows[2]["val/loss best"]) == pytest.approx(best)
    assert float(rows[1]["test/loss"]) == pytest.approx(recorded["metrics"]["test/loss"]["final"])
    assert rows[3]["error"] == "RuntimeError: out of memory"
    assert rows[3]["val/loss best"] == ""
    assert "model.latent_dim=256" in rows[3]["overrides"]


def test_markdown_table_is_written_and_printed(
    reported: tuple[Path, list[dict[str, str]], str],
) -> None:
    out, _, stdout = reported
    text = (out / "report.md").read_text()
    assert text in stdout
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| rank | job | model.latent_dim | status | val/loss best |")
    assert [line.split(" | ")[1] for line in table[1:]] == ["1", "0", "2", "3"]
    assert "Overrides of every job: `model=ae trainer.max_epochs=2`" in text
    assert "- job 3 (model.latent_dim=256): RuntimeError: out of memory" in text
    assert "Best: job 1 (model.latent_dim=16)" in text


def test_figures_and_the_best_grid(
    sweep: Path, reported: tuple[Path, list[dict[str, str]], str]
) -> None:
    out, _, _ = reported
    for name in ("metric_vs_model.latent_dim.png", "learning_curves.png", "best_grid.png"):
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG"
    # The best job's last grid, samples rather than reconstructions.
    grid = sweep / "1" / "images" / "val_samples_epoch001.png"
    assert (out / "best_grid.png").read_bytes() == grid.read_bytes()
    assert not (sweep / "report.md").exists()  # out= given


def test_metric_and_direction_options_reorder(sweep: Path) -> None:
    out = sweep.parent / "by_test_loss"
    _, result = run_in_process(
        sweep.parent,
        "report",
        f"dir={sweep}",
        f"out={out}",
        "metric=test/loss",
        "direction=maximize",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    # Job 1 has no test/loss: finished without the metric, after job 0.
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert "test/loss best" in rows[0]


def test_a_single_run_directory(sweep: Path) -> None:
    _, result = run_in_process(sweep.parent, "report", f"dir={sweep / '0'}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO((sweep / "0" / "report.csv").read_text())))
    assert [(r["job"], r["status"]) for r in rows] == [(".", "finished")]
    assert (sweep / "0" / "learning_curves.png").is_file()
    assert not list((sweep / "0").glob("metric_vs_*.png"))  # nothing swept


def test_missing_or_empty_directory_is_a_clear_error(tmp_path: Path) -> None:
    _, result = run_in_process(tmp_path, "report", f"dir={tmp_path / 'nowhere'}")
    assert result.returncode == 1
    assert f"dir={tmp_path / 'nowhere'} does not exist" in result.stderr
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    _, result = run_in_process(tmp_path, "report", f"dir={tmp_path / 'empty'}")
    assert result.returncode == 1
    assert "holds no genlab runs" in result.stderr
    assert not (tmp_path / "empty" / "report.md").exists()


def test_the_directory_may_be_given_without_a_key() -> None:
    assert with_report_dir("report", ["a/b", "--quiet"]) == ["dir='a/b'", "--quiet"]
    assert with_report_dir("report", ["it's,here"]) == ["dir='it\\'s,here'"]
    assert with_report_dir("train", ["a/b"]) == ["a/b"]


def test_cli_end_to_end(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "my sweep, 2"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("report*"))
    result = run_genlab("report", str(copy), "--quiet", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 1 | 1 | 16 | finished |" in result.stdout
    assert (copy / "report.md").is_file() and (copy / "report.csv").is_file()
    # No run directory, Hydra record or log of its own.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my sweep, 2"]


def test_a_running_job_with_only_the_csv_log(tmp_path: Path) -> None:
    job = tmp_path / "sweep" / "0"
    (job / "csv").mkdir(parents=True)
    write_overrides(job, "model=ae")
    (job / "csv" / "metrics.csv").write_text(
        "epoch,step,train/loss,val/loss\n"
        "0,0,9.0,\n0,1,8.0,\n0,1,,7.0\n1,2,6.0,\n1,3,5.0,\n1,3,,6.5\n"
    )
    _, result = run_in_process(tmp_path, "report", f"dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = csv.DictReader(io.StringIO((tmp_path / "sweep" / "report.csv").read_text()))
    assert row["status"] == "running"
    assert (row["val/loss best"], row["val/loss final"], row["best epoch"]) == ("6.5", "6.5", "1")
    # The last value of each epoch: 8.0 then 5.0.
    assert (row["train/loss best"], row["train/loss final"]) == ("5.0", "5.0")
