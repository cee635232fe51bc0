"""scripts/bench_translation.py: both loops run, start from the same weights, do the same
math (the same final losses on the CPU), and the JSON holds what the README quotes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    # The script imports benchlib from its own folder, as python does for a script.
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_translation

    # main() sets torch's threads and quietens two loggers: put them back for other tests.
    threads = torch.get_num_threads()
    levels = {name: logging.getLogger(name).level for name in ("pytorch_lightning", "genlab")}
    yield bench_translation
    torch.set_num_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_bench_translation_tiny_run_writes_rates_ratio_and_same_weights(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    argv = ["--size", "64", "--steps", "2", "--warmup", "1", "--repeats", "1", "--width", "4"]
    returned = bench.main([*argv, "--threads", "1", "--json", str(out)])

    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["machine"]["threads"] == 1
    assert report["machine"]["torch"]
    assert list(report["sizes"]) == ["64"]
    row = report["sizes"]["64"]
    assert row["same_weights"] is True
    assert row["steps"] == 2
    assert row["unet_depth"] == 6  # depth follows the size: 64 -> 1x1 in 6 layers
    plain, genlab = row["plain"], row["genlab"]
    for loop in (plain, genlab):
        assert loop["images_per_s"] > 0
        assert loop["ms_per_batch"] == pytest.approx(1000 / loop["images_per_s"], rel=1e-6)
        assert len(loop["runs_images_per_s"]) == len(loop["other_load"]) == 1
        assert len(loop["contended"]) == 1
    assert row["ratio"] == pytest.approx(genlab["images_per_s"] / plain["images_per_s"])
    assert row["ratio"] > 0
    # Same weights, batches, dropout masks and math: the same losses after three batches.
    assert plain["final_d_loss"] == pytest.approx(genlab["final_d_loss"], rel=1e-4)
    assert plain["final_g_loss"] == pytest.approx(genlab["final_g_loss"], rel=1e-4)

    table = capsys.readouterr().out
    assert "genlab/plain" in table
    assert f"{row['ratio']:.3f}" in table


def test_bench_translation_rejects_bad_options(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--size", "16"])
    assert "too small for a PatchGAN" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "0"])
    assert "--steps must be at least 1" in capsys.readouterr().err
    defaults = bench.parse_args([])
    assert defaults.size == [64, 256] and defaults.batch_size == 1 and defaults.width == 64
    assert bench.steps_for(defaults, 64) == 30 and bench.steps_for(defaults, 256) == 8
    # A run is contended when other processes leave torch's threads less than a core each.
    cores = os.cpu_count() or 1
    assert not bench.is_contended(0.0, cores)
    assert bench.is_contended(1.0, cores)
    assert not bench.is_contended(float("nan"), cores)
