"""scripts/bench_gpu.py on the CPU (``--device cpu``): both loops run from the same weights
on MNIST read from --mnist, the JSON holds rates, their ratio, null memory and the timed
epoch, and scripts/bench_table.py renders it; scripts/bench_gpu.sh passes its arguments
through and stops at its time limit."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import make_idx_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SCRIPT = SCRIPTS / "bench_gpu.sh"

README = """# project

<!-- bench:gpu -->
Not measured yet.
<!-- /bench -->

After.
"""


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    # The script imports benchlib from its own folder, as python does for a script.
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_gpu

    # main() sets torch's threads and quietens two loggers: put them back for other tests.
    threads = torch.get_num_threads()
    levels = {name: logging.getLogger(name).level for name in ("pytorch_lightning", "genlab")}
    yield bench_gpu
    torch.set_num_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def check_loop(loop: dict, batch_size: int) -> None:
    rate = loop["images_per_s"]
    assert math.isfinite(rate) and rate > 0
    assert loop["ms_per_step"] == pytest.approx(batch_size * 1000 / rate, rel=1e-6)
    assert loop["peak_memory_bytes"] is None  # no device memory to count on the CPU
    assert len(loop["runs_images_per_s"]) == len(loop["other_load"]) == 1
    # What the run used: float32 on the CPU, the data in host memory, NCHW.
    assert loop["settings"]["precision"] == "32-true"
    assert loop["settings"]["data_device"] == "cpu"
    assert loop["settings"]["channels_last"] is False


def test_cpu_run_writes_rates_ratio_memory_and_epoch_that_bench_table_renders(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mnist = make_idx_dataset(tmp_path / "mnist")  # 96 train images
    out = tmp_path / "gpu.json"
    argv = ["--device", "cpu", "--models", "conv_ae,dcgan", "--steps", "2", "--warmup", "1"]
    argv += ["--batch-size", "16", "--epoch-images", "40", "--threads", "1"]
    returned = bench.main([*argv, "--mnist", str(mnist), "--json", str(out)])

    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["script"] == "bench_gpu" and report["complete"] is True
    assert report["precision"] == "32-true" and report["compile"] is False
    assert report["mnist"] == str(mnist.resolve())
    machine = report["machine"]
    assert machine["device"] == "cpu" and machine["threads"] == 1 and "gpu" not in machine

    assert list(report["models"]) == ["conv_ae", "dcgan"]
    for name, row in report["models"].items():
        assert row["data"] == "mnist" and row["image_size"] == 28
        assert row["batch_size"] == 16 and row["steps"] == 2 and row["repeats"] == 1
        assert row["same_weights"] is True
        check_loop(row["plain"], 16)
        check_loop(row["genlab"], 16)
        assert row["ratio"] == pytest.approx(
            row["genlab"]["images_per_s"] / row["plain"]["images_per_s"]
        )
        assert ("step" in row) == (name == "dcgan")

    # 95 of the 96 images train (one held out); 40 images at batch 16 are 2 whole batches.
    epoch = report["epoch"]
    assert epoch["model"] == "conv_ae" and epoch["data"] == "mnist"
    assert epoch["split_images"] == 95 and epoch["limited"] is True
    assert (epoch["batches"], epoch["batch_size"], epoch["images"]) == (2, 16, 32)
    assert 0 < epoch["seconds"] < epoch["fit_seconds"]
    assert epoch["first_epoch_seconds"] > 0
    assert epoch["images_per_s"] == pytest.approx(32 / epoch["seconds"])
    assert epoch["peak_memory_bytes"] is None

    printed = capsys.readouterr().out
    assert f"{report['models']['dcgan']['ratio']:.3f}" in printed
    assert "2 batches of 16 = 32 images (limited by --epoch-images)" in printed

    import bench_table

    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert bench_table.main(["--readme", str(readme), str(out)]) == 0
    text = readme.read_text()
    assert "Not measured yet." not in text and text.endswith("<!-- /bench -->\n\nAfter.\n")
    assert "Machine: " in text and "1 thread, device cpu." in text
    ratio = report["models"]["conv_ae"]["ratio"]
    assert "| conv_ae | " in text and f"| {ratio:.3f}" in text
    assert "| dcgan (one D and one G step a batch) |" in text
    assert "| n/a / n/a | mnist 28 px, batch 16, 32-true, 2 steps, median of 1 |" in text
    assert "One epoch of conv_ae through genlab: 32 images of mnist (2 batches of 16" in text


def test_vae_and_pix2pix_run_on_the_embedded_data(bench: ModuleType, tmp_path: Path) -> None:
    argv = ["--device", "cpu", "--models", "vae,pix2pix", "--steps", "1", "--warmup", "2"]
    argv += ["--batch-size", "4", "--epoch-images", "4", "--threads", "1", "--embedded"]
    # The vae fuses two steps an iteration (pix2pix cannot): the clock starts at the end of
    # the first chunk and stops inside the second, where max_steps cuts it.
    report = bench.main([*argv, "--steps-per-execution", "2"])
    assert report["mnist"] is None and report["epoch"]["data"] == "mnist_5k"
    # 5,000 digits, one held out for the epoch's run.
    assert report["epoch"]["split_images"] == 4999 and report["epoch"]["images"] == 4
    vae, pix2pix = report["models"]["vae"], report["models"]["pix2pix"]
    assert (vae["data"], vae["image_size"], "step" in vae) == ("mnist_5k", 28, False)
    # pix2pix on its own data and size: edge maps of the digits at 32 px, randomly cropped.
    assert (pix2pix["data"], pix2pix["image_size"]) == ("mnist_edges", 32)
    assert pix2pix["step"] == "one D and one G step a batch"
    for row in (vae, pix2pix):
        assert row["same_weights"] is True
        check_loop(row["plain"], 4)
        check_loop(row["genlab"], 4)


def test_options_defaults_and_refusals(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = bench.parse_args(["--device", "cpu", "--embedded"])
    assert args.models == ["conv_ae", "dcgan", "vae", "pix2pix"]
    assert (args.steps, args.warmup, args.repeats, args.epoch_images) == (5, 2, 1, 512)
    assert args.mnist is None and args.batch_size is None
    assert [bench.batch_size_of(args, m) for m in args.models] == [32, 32, 64, 8]
    args = bench.parse_args(["--device", "cpu", "--models", "vae,conv_ae,vae", "--embedded"])
    assert args.models == ["vae", "conv_ae"]

    refused = {
        "--models conv_ae,gan": "choose from conv_ae, dcgan, vae, pix2pix",
        "--steps 0": "--steps must be at least 1",
        "--epoch-images 0": "--epoch-images must be at least 1",
        f"--mnist {tmp_path}": "lacks MNIST's IDX files",
    }
    for options, message in refused.items():
        with pytest.raises(SystemExit):
            bench.parse_args(["--device", "cpu", *options.split()])
        assert message in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench.parse_args([])  # --device cuda is the default
        assert "use --device cpu" in capsys.readouterr().err


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        check=False,
    )


def test_shell_wrapper_passes_arguments_and_keeps_to_its_limit(tmp_path: Path) -> None:
    done = run_script("--help")
    assert done.returncode == 0, done.stderr
    assert "--epoch-images" in done.stdout and "--device {cuda,cpu}" in done.stdout

    # Past BENCH_GPU_TIMEOUT the run is stopped, its status passed on, with a word on what
    # is left.
    out = tmp_path / "gpu.json"
    long_run = ["--device", "cpu", "--embedded", "--steps", "100000", "--json", str(out)]
    done = run_script(*long_run, env={"BENCH_GPU_TIMEOUT": "1"})
    assert done.returncode == 124
    assert "stopped after the 1-second limit" in done.stderr
    assert not out.exists()
