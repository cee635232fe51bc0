"""scripts/bench_table.py rewrites only the text between its markers, from the JSON alone
(twice gives the same README), and says which machine gave each figure; bench_train.py and
bench_gan.py write the JSON layout it reads."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

MACHINE_A = {"device": "cpu", "cpu": "Test CPU 9000", "cores": 2, "torch": "2.13.0", "threads": 2}
MACHINE_B = {"device": "cuda", "cpu": "Host CPU", "gpu": "NVIDIA H100", "torch": "2.13.0"}

README = """# project

Intro text that must stay.

<!-- bench:train -->
| model | old |
|---|---|
| conv_ae | 1 |
<!-- /bench -->

Between the tables.

<!-- bench:translation -->
old pix2pix table
<!-- /bench -->

<!-- bench:memory -->
<!-- /bench -->

## Next section
"""


def loop(
    rate: float, ms_key: str = "ms_per_step", contended: bool = False, batch: int = 128
) -> dict[str, Any]:
    return {
        "images_per_s": rate,
        ms_key: batch * 1000 / rate,
        "runs_images_per_s": [rate],
        "other_load": [1.5 if contended else 0.0],
        "contended": [contended],
    }


def train_report(machine: dict[str, Any], model: str, plain: float, genlab: float) -> dict:
    return {
        "script": "bench_train",
        "machine": machine,
        "batch_size": 128,
        "warmup": 5,
        "repeats": 3,
        "models": {
            model: {
                "steps": 60,
                "plain": loop(plain),
                "genlab": loop(genlab),
                "ratio": genlab / plain,
                "best_ratio": genlab / plain,
                "same_weights": True,
            }
        },
    }


def gan_report() -> dict[str, Any]:
    report = train_report(MACHINE_A, "dcgan", 1432.0, 1378.0)
    report["script"] = "bench_gan"
    row = report["models"]["dcgan"]
    row["step"] = "one D and one G step a batch"
    row["genlab"] = loop(1378.0, "ms_per_batch", contended=True)
    return report


def translation_report() -> dict[str, Any]:
    # bench_translation.py's layout: no "script" key, rows under "sizes".
    return {
        "machine": {k: v for k, v in MACHINE_A.items() if k != "cores"},
        "batch_size": 1,
        "warmup": 2,
        "repeats": 3,
        "sizes": {
            "64": {
                "steps": 30,
                "plain": loop(8.83, "ms_per_batch", batch=1),
                "genlab": loop(8.9, "ms_per_batch", batch=1),
                "ratio": 8.9 / 8.83,
            }
        },
    }


def memory_report() -> dict[str, Any]:
    mib = 1 << 20
    return {
        "script": "bench_memory",
        "machine": {**MACHINE_A, "memory_gib": 23.5},
        "factor": 1.5,
        "runs": {
            "mnist": {
                "description": "70,000 grey 28×28",
                "data_bytes": 53 * mib,
                "model_state_bytes": 2 * mib,
                "torch_bytes": 409 * mib,
                "budget_bytes": 696 * mib,
                "step_peak_bytes": 629 * mib,
                "step_budget_bytes": 1023 * mib,
                "peak_rss_bytes": 735 * mib,
            }
        },
    }


def gpu_report(machine: dict[str, Any], rows: dict[str, tuple[float, float]]) -> dict:
    """bench_gpu.py's layout: rows per model with each loop's peak memory and settings,
    and the timed epoch."""
    mib = 1 << 20

    def gpu_loop(rate: float, memory: int) -> dict[str, Any]:
        settings = {"matmul_precision": "high", "channels_last": True, "data_device": "cuda:0"}
        return {**loop(rate, batch=512), "peak_memory_bytes": memory, "settings": settings}

    models = {
        name: {
            "data": "mnist",
            "image_size": 28,
            "batch_size": 512,
            "steps": 200,
            "warmup": 20,
            "repeats": 2,
            "plain": gpu_loop(plain, 300 * mib),
            "genlab": gpu_loop(genlab, 352 * mib),
            "ratio": genlab / plain,
            "same_weights": True,
            **({"step": "one D and one G step a batch"} if name == "dcgan" else {}),
        }
        for name, (plain, genlab) in rows.items()
    }
    epoch = {
        "model": "conv_ae",
        "data": "mnist",
        "split_images": 59_994,
        "batch_size": 512,
        "batches": 117,
        "images": 59_904,
        "limited": False,
        "seconds": 0.8,
        "images_per_s": 74_880.0,
        "first_epoch_seconds": 2.5,
    }
    return {
        "script": "bench_gpu",
        "machine": machine,
        "precision": "bf16-mixed",
        "compile": False,
        "complete": True,
        "models": models,
        "epoch": epoch,
    }


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The scripts import from their own folder, as python does for a script.
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_table

    return bench_table


def write(tmp_path: Path, name: str, report: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return path


def block(text: str, kind: str) -> str:
    start = text.index(f"<!-- bench:{kind} -->")
    return text[start : text.index("<!-- /bench -->", start)]


def test_regenerates_tables_between_markers_with_machine_and_is_idempotent(
    table: ModuleType, tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    files = [
        write(tmp_path, "conv.json", train_report(MACHINE_A, "conv_ae", 1038.0, 1060.0)),
        write(tmp_path, "ae.json", train_report(MACHINE_B, "ae", 198_985.0, 114_524.0)),
        write(tmp_path, "gan.json", gan_report()),
        write(tmp_path, "pix.json", translation_report()),
        write(tmp_path, "mem.json", memory_report()),
    ]
    argv = ["--readme", str(readme), *map(str, files)]
    assert table.main(argv) == 0
    first = readme.read_text()

    # Outside the markers, nothing moved.
    assert first.startswith("# project\n\nIntro text that must stay.\n\n<!-- bench:train -->")
    assert "\n<!-- /bench -->\n\nBetween the tables.\n\n" in first
    assert first.endswith("<!-- /bench -->\n\n## Next section\n")
    assert "old pix2pix table" not in first and "| conv_ae | 1 |" not in first

    train = block(first, "train")
    # Two machines: a caption naming both and a column saying which gave each row.
    assert "Machines: A = Test CPU 9000 (2 cores), torch 2.13.0, 2 threads, device cpu; " in train
    assert "B = Host CPU, GPU NVIDIA H100, torch 2.13.0, device cuda." in train
    assert "| model | plain loop | genlab | genlab / plain | run | machine |" in train
    assert (
        "| conv_ae | 1,038 img/s (123 ms) | 1,060 img/s (121 ms) | 1.021 | "
        "batch 128, 60 steps, median of 3 | A |" in train
    )
    assert "| ae | 198,985 img/s (0.64 ms) | 114,524 img/s (1.12 ms) | 0.576 |" in train
    assert "| B |" in train.split("| ae |")[1].splitlines()[0]
    # dcgan's genlab run was contended: its ratio is starred and the star explained.
    assert "| dcgan (one D and one G step a batch) | 1,432 img/s (89.4 ms) |" in train
    assert "| 0.962* |" in train
    assert "\\* other processes left torch's threads less than a core each" in train

    pix = block(first, "translation")
    assert "Machine: Test CPU 9000, torch 2.13.0, 2 threads, device cpu." in pix
    assert "| machine |" not in pix
    assert "| 64×64 | 8.83 img/s (113 ms) | 8.90 img/s (112 ms) | 1.008 |" in pix
    assert "*" not in pix

    memory = block(first, "memory")
    assert "Machine: Test CPU 9000 (2 cores), torch 2.13.0, 2 threads, 23.5 GiB RAM" in memory
    assert (
        "| mnist: 70,000 grey 28×28 | 53 MiB | 2 MiB | 409 MiB | 696 MiB | 629 MiB | "
        "735 MiB | 1.06 (over) | 0.72 |" in memory
    )

    # A second run changes nothing, and --check agrees.
    mtime = readme.stat().st_mtime_ns
    assert table.main(argv) == 0
    assert readme.read_text() == first
    assert readme.stat().st_mtime_ns == mtime
    assert table.main(["--check", *argv]) == 0


def test_only_the_given_kinds_are_rewritten_and_check_reports_stale(
    table: ModuleType, tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    pix = write(tmp_path, "pix.json", translation_report())
    assert table.main(["--readme", str(readme), "--check", str(pix)]) == 1
    assert readme.read_text() == README  # --check writes nothing
    assert table.main(["--readme", str(readme), str(pix)]) == 0
    text = readme.read_text()
    assert "| conv_ae | 1 |" in text  # the train table: no JSON of its kind, left alone
    assert "8.83 img/s" in block(text, "translation")


def test_gpu_table_has_memory_settings_and_the_epoch(table: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\n<!-- bench:gpu -->\nnot measured yet\n<!-- /bench -->\n")
    h100 = {**MACHINE_B, "cores": 16, "threads": 16}
    files = [
        write(tmp_path, "cpu.json", gpu_report(MACHINE_A, {"conv_ae": (1000.0, 990.0)})),
        write(
            tmp_path,
            "gpu.json",
            gpu_report(h100, {"conv_ae": (80_000.0, 76_000.0), "dcgan": (60_000.0, 58_800.0)}),
        ),
    ]
    argv = ["--readme", str(readme), *map(str, files)]
    assert table.main(argv) == 0
    text = readme.read_text()
    gpu = block(text, "gpu")
    assert "not measured yet" not in text and text.endswith("<!-- /bench -->\n")
    assert "B = Host CPU (16 cores), GPU NVIDIA H100, torch 2.13.0, 16 threads, device cuda." in gpu
    header = "| model | plain loop | genlab | genlab / plain | peak memory, plain / genlab | run |"
    assert header + " machine |" in gpu
    # The later file's conv_ae replaces the earlier one's: one row, from machine B.
    assert gpu.count("| conv_ae |") == 1
    assert (
        "| conv_ae | 80,000 img/s (6.40 ms) | 76,000 img/s (6.74 ms) | 0.950 | 300 MiB / 352 MiB "
        "| mnist 28 px, batch 512, bf16-mixed, 200 steps, median of 2 | B |" in gpu
    )
    assert "| dcgan (one D and one G step a batch) | 60,000 img/s" in gpu and "| 0.980 |" in gpu
    assert "genlab ran with conv_ae: matmul high, channels-last, data on cuda:0; dcgan:" in gpu
    assert (
        "One epoch of conv_ae through genlab (machine B): 59,904 images of mnist (117 batches "
        "of 512) in 0.80 s, 74,880 img/s; the first epoch, with the warm-up, 2.50 s." in gpu
    )
    # The same JSON gives the same README.
    assert table.main(["--check", *argv]) == 0


def test_rejects_unknown_json_and_missing_markers(table: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    stray = write(tmp_path, "stray.json", {"machine": MACHINE_A, "rows": {}})
    with pytest.raises(SystemExit, match="not the JSON of a benchmark script"):
        table.main(["--readme", str(readme), str(stray)])
    good = write(tmp_path, "mem.json", memory_report())
    with pytest.raises(SystemExit, match=r"0 '<!-- bench:memory -->' \.\.\. '<!-- /bench -->'"):
        table.main(["--readme", str(readme), str(good)])
    assert readme.read_text() == "no markers here\n"


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    # main() sets torch's threads and quietens loggers: put them back for other tests.
    threads = torch.get_num_threads()
    levels = {name: logging.getLogger(name).level for name in ("pytorch_lightning", "genlab")}
    yield
    torch.set_num_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def check_loop(loop: dict[str, Any], ms_key: str) -> None:
    assert loop["images_per_s"] > 0
    assert loop[ms_key] == pytest.approx(128_000 / loop["images_per_s"], rel=1e-6)
    assert len(loop["runs_images_per_s"]) == len(loop["other_load"]) == 1
    assert loop["contended"] in ([True], [False])


TINY = ["--steps", "2", "--warmup", "1", "--repeats", "1", "--threads", "1"]


@pytest.mark.usefixtures("scripts")
@pytest.mark.parametrize(
    ("script", "argv", "model", "ms_key"),
    [
        # Two fused steps an iteration: the clock starts and stops inside the chunks.
        ("bench_train", ["--model", "ae", "--steps-per-execution", "2"], "ae", "ms_per_step"),
        ("bench_gan", [], "dcgan", "ms_per_batch"),
    ],
)
def test_throughput_scripts_write_the_json_bench_table_reads(
    table: ModuleType, tmp_path: Path, script: str, argv: list[str], model: str, ms_key: str
) -> None:
    import importlib

    bench = importlib.import_module(script)
    out = tmp_path / f"{script}.json"
    returned = bench.main([*TINY, *argv, "--json", str(out)])
    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["script"] == script
    machine = report["machine"]
    assert machine["threads"] == 1 and machine["device"] == "cpu"
    assert machine["cpu"] and machine["torch"] == torch.__version__ and machine["cores"] >= 1
    assert report["batch_size"] == 128 and report["repeats"] == 1
    assert list(report["models"]) == [model]
    row = report["models"][model]
    assert row["steps"] == 2 and row["same_weights"] is True
    check_loop(row["plain"], ms_key)
    check_loop(row["genlab"], ms_key)
    assert row["ratio"] == pytest.approx(
        row["genlab"]["images_per_s"] / row["plain"]["images_per_s"]
    )

    # bench_table turns it into a row of the train table.
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert table.main(["--readme", str(readme), str(out)]) == 0
    train = block(readme.read_text(), "train")
    assert f"| {model}" in train and f"{row['ratio']:.3f}" in train
    assert "Machine: " in train and "1 thread," in train


def startup_report(machine: dict[str, Any], first_step: float, **extra: Any) -> dict[str, Any]:
    """bench_startup.py's layout: no "script", a "kind"; seconds from process start."""
    return {
        "kind": "startup",
        "machine": machine,
        "repeats": 3,
        "overrides": [],
        "bad_argument_s": 0.314,
        "missing_checkpoint_s": 0.296,
        "to_event_s": {
            "setup": 5.118,
            "fit_start": 5.402,
            "first_step": first_step,
            "process_exit": 6.1,
        },
        "process_exit_usual_s": 7.649,
        "imports_s": {
            "torch": 2.104,
            "pytorch_lightning (with torchmetrics, scipy.signal, matplotlib)": 2.43,
            "genlab.commands.train and its models": 0.27,
        },
        **extra,
    }


def eval_report(machine: dict[str, Any], model: str, training: float) -> dict[str, Any]:
    """bench_eval.py's layout: the training rate, then a pass per split or command."""

    def figures(images: int, seconds: float) -> dict[str, float]:
        return {
            "images": images,
            "seconds": seconds,
            "images_per_s": images / seconds,
            "vs_training": images / seconds / training,
        }

    return {
        "kind": "eval",
        "machine": machine,
        "model": model,
        "data": "mnist",
        "batch_size": 128,
        "training_images_per_s": training,
        "passes": {
            "validate": figures(5_000, 1.25),
            "test (test)": figures(10_000, 2.0),
            "genlab evaluate": figures(10_000, 4.0),
            "genlab anomaly": figures(10_000, 3.2),
            "genlab embed": figures(10_000, 12.5),
        },
    }


def test_the_hand_made_reports_are_what_the_scripts_print(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scripts' own printers read the same keys, so the layouts above cannot drift from
    # theirs unnoticed (the scripts themselves take minutes; these tests do not run them).
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_eval
    import bench_startup

    printed = bench_startup.table(startup_report(MACHINE_A, 5.83))
    assert "missing checkpoint answered    0.30 s" in printed
    assert "process start -> first_step       5.83 s" in printed
    printed = bench_eval.table(eval_report(MACHINE_A, "conv_ae", 1000.0))
    assert "training 1,000 img/s" in printed
    assert "genlab embed         10000    12.50       800       0.80" in printed


def test_startup_and_eval_tables_render_between_their_markers(
    table: ModuleType, tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        README + "\n<!-- bench:startup -->\n\nNot measured yet.\n\n<!-- /bench -->\n\nMiddle.\n\n"
        "<!-- bench:eval -->\n\nNot measured yet.\n\n<!-- /bench -->\n\n## End\n"
    )
    files = [
        write(tmp_path, "startup.json", startup_report(MACHINE_A, 5.83)),
        write(tmp_path, "eval.json", eval_report(MACHINE_A, "conv_ae", 1000.0)),
    ]
    argv = ["--readme", str(readme), *map(str, files)]
    assert table.main(["--check", *argv]) == 1
    assert table.main(argv) == 0
    text = readme.read_text()
    assert text.startswith(README)  # the other tables: no JSON of their kind, untouched
    assert "Not measured yet" not in text
    assert "\n<!-- /bench -->\n\nMiddle.\n\n<!-- bench:eval -->\n" in text
    assert text.endswith("<!-- /bench -->\n\n## End\n")

    startup = block(text, "startup")
    assert "Machine: Test CPU 9000 (2 cores), torch 2.13.0, 2 threads, device cpu.\n" in startup
    assert "| figure | seconds |\n|---|---|\n" in startup and "| machine |" not in startup
    expected_rows = [
        "| bad argument answered (`genlab train trainer.max_epochs=ten`) | 0.31 |",
        "| missing checkpoint answered (`genlab sample ckpt=missing.ckpt`) | 0.30 |",
        "| `genlab train` to Lightning's `setup` | 5.12 |",
        "| `genlab train` to `on_fit_start` | 5.40 |",
        "| `genlab train` to its first training step | 5.83 |",
        "| `genlab train` to exit | 6.10 |",
        "| `genlab train` to exit, with the interpreter's teardown (`GENLAB_FAST_EXIT=0`) | 7.65 |",
        "| import torch | 2.10 |",
        "| import pytorch_lightning (with torchmetrics, scipy.signal, matplotlib) | 2.43 |",
        "| import genlab.commands.train and its models | 0.27 |",
    ]
    rows = [line for line in startup.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == expected_rows  # one row per figure, in the script's order
    assert (
        "Figures: medians of 3 fresh processes, the training rows timing `genlab train "
        "trainer.max_steps=1 trainer.limit_val_batches=0 test=false` (conv_ae on mnist_5k, "
        "the defaults)." in startup
    )

    evaluation = block(text, "eval")
    assert "Machine: Test CPU 9000 (2 cores)" in evaluation
    assert (
        "Training through genlab: conv_ae on mnist, batch 128, 1,000 img/s. The × training "
        "column is each pass's img/s over that." in evaluation
    )
    assert "| pass | images | seconds | img/s | × training |\n|---|---|---|---|---|\n" in evaluation
    assert "| validate | 5,000 | 1.25 | 4,000 | 4.00× |" in evaluation
    assert "| test (test) | 10,000 | 2.00 | 5,000 | 5.00× |" in evaluation
    assert "| genlab evaluate | 10,000 | 4.00 | 2,500 | 2.50× |" in evaluation
    assert "| genlab anomaly | 10,000 | 3.20 | 3,125 | 3.12× |" in evaluation
    assert "| genlab embed | 10,000 | 12.50 | 800 | 0.80× |" in evaluation

    # Rewriting from the same JSON changes nothing, and --check finds nothing stale.
    mtime = readme.stat().st_mtime_ns
    assert table.main(argv) == 0
    assert readme.read_text() == text and readme.stat().st_mtime_ns == mtime
    assert table.main(["--check", *argv]) == 0


def test_startup_and_eval_tables_from_several_files(table: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "<!-- bench:startup -->\n<!-- /bench -->\n<!-- bench:eval -->\n<!-- /bench -->\n"
    )
    files = [
        # Two start-up runs on one machine: the later one's figures replace the earlier's.
        write(tmp_path, "before.json", startup_report(MACHINE_A, 9.99)),
        write(
            tmp_path,
            "after.json",
            startup_report(MACHINE_A, 5.83, repeats=5, overrides=["model=vae"]),
        ),
        write(tmp_path, "eval_conv.json", eval_report(MACHINE_A, "conv_ae", 1000.0)),
        write(tmp_path, "eval_vae.json", eval_report(MACHINE_B, "vae | big", 2000.0)),
    ]
    argv = ["--readme", str(readme), *map(str, files)]
    assert table.main(argv) == 0
    text = readme.read_text()

    startup = block(text, "startup")
    assert "Machine: Test CPU 9000" in startup and "| machine |" not in startup
    assert "9.99" not in startup
    assert "| `genlab train` to its first training step | 5.83 |" in startup
    assert startup.count("| import torch |") == 1
    assert (
        "Figures: medians of 5 fresh processes, the training rows timing `genlab train "
        "trainer.max_steps=1 trainer.limit_val_batches=0 test=false model=vae`." in startup
    )

    evaluation = block(text, "eval")
    # Two models on two machines: a run column, a machine column, each run's training rate.
    assert "Machines: A = Test CPU 9000 (2 cores)" in evaluation
    assert (
        "Training through genlab: machine A: conv_ae on mnist, batch 128, 1,000 img/s; "
        "machine B: vae | big on mnist, batch 128, 2,000 img/s. The × training column is "
        "each pass's img/s over its run's." in evaluation
    )
    assert "| pass | images | seconds | img/s | × training | run | machine |" in evaluation
    assert "| validate | 5,000 | 1.25 | 4,000 | 4.00× | conv_ae on mnist, batch 128 | A |" in (
        evaluation
    )
    assert (
        "| validate | 5,000 | 1.25 | 4,000 | 2.00× | vae \\| big on mnist, batch 128 | B |"
        in evaluation
    )
    assert evaluation.count("| genlab embed |") == 2
    assert table.main(["--check", *argv]) == 0
