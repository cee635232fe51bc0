"""scripts/bench_eval.py: evaluation passes timed against training, on tiny settings."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_eval  # noqa: E402


def test_every_pass_is_timed_against_training(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    results = bench_eval.main(
        [
            "--steps", "2", "--warmup", "1", "--batch-size", "16",
            "--mnist", str(tmp_path / "no_mnist_here"), "--json", str(out),
        ]
    )  # fmt: skip
    assert results["data"] == "mnist_5k"  # no MNIST files: the embedded digits
    assert json.loads(out.read_text())["passes"].keys() == results["passes"].keys()
    names = list(results["passes"])
    assert names == ["validate", "test (val)", "genlab evaluate", "genlab anomaly", "genlab embed"]
    train = results["training_images_per_s"]
    assert math.isfinite(train) and train > 0
    for name, p in results["passes"].items():
        # mnist_5k tests on its val split: 500 of the 5,000 digits (val_fraction 0.1).
        assert p["images"] == 500, name
        assert p["seconds"] > 0
        assert math.isclose(p["vs_training"], p["images"] / p["seconds"] / train), name
    assert "x training" in bench_eval.table(results)


def test_fused_training_is_timed_by_the_batches_its_chunks_train(tmp_path: Path) -> None:
    # An MLP trains 16 batches an iteration: the clock starts at the first chunk's end
    # (batch 16) and stops where max_steps cuts the third chunk (batch 40).
    args = bench_eval.parse_args(
        ["--model", "vae", "--steps", "24", "--warmup", "16", "--batch-size", "16",
         "--mnist", str(tmp_path / "no_mnist_here")]
    )  # fmt: skip
    objects, rate = bench_eval.fit(args, tmp_path / "run")
    timer = next(c for c in objects["trainer"].callbacks if isinstance(c, bench_eval.TrainTimer))
    # Three chunks of 16 fetched, the third cut at max_steps.
    assert objects["trainer"].global_step == 40 and timer.batches == 48
    assert timer.timed == 24 and timer.seconds is not None
    assert math.isclose(rate, 24 * 16 / timer.seconds)
