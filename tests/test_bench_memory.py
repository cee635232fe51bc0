"""scripts/bench_memory.py's parts: a child's peak resident memory is its own, the budget's
arithmetic, and the generated image folder (distinct, readable RGB images, written once)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_memory

    yield bench_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units, /proc")
def test_run_measured_reports_the_childs_own_peak(bench: ModuleType, tmp_path: Path) -> None:
    mib = 1 << 20
    # 200 MiB touched (bytearray zero-fills it), then freed: the peak still counts it.
    code = "b = bytearray(200 * 1024 * 1024); del b; print('done')"
    big = bench.run_measured([sys.executable, "-c", code], cwd=tmp_path)
    small = bench.run_measured([sys.executable, "-c", "print('done')"], cwd=tmp_path)
    assert big.returncode == small.returncode == 0
    assert big.output.strip() == "done"
    assert big.peak_bytes - small.peak_bytes >= 190 * mib
    assert small.peak_bytes < 100 * mib
    failed = bench.run_measured([sys.executable, "-c", "raise SystemExit(3)"], cwd=tmp_path)
    assert failed.returncode == 3
    with pytest.raises(SystemExit, match="probe failed \\(exit 3\\)"):
        bench.child_result(failed, "probe")


def test_budget_counts_gradients_and_adam_state(bench: ModuleType) -> None:
    parts = bench.budget(100, 400, 10, 1.5)
    assert parts == {
        "data_bytes": 100,
        "torch_bytes": 400,
        "model_state_bytes": 30,  # gradients + two Adam moments; the weights are in torch's
        "budget_bytes": 795,
    }


def test_image_folder_is_written_once_with_distinct_rgb_images(
    bench: ModuleType, tmp_path: Path
) -> None:
    folder = bench.image_folder(5, 16, cache=tmp_path)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    arrays = []
    for f in files:
        with Image.open(f) as image:
            assert image.mode == "RGB" and image.size == (16, 16)
            arrays.append(np.asarray(image))
    assert all(not np.array_equal(arrays[0], a) for a in arrays[1:])
    assert all(a.std() > 5 for a in arrays)  # structure, not a flat colour
    # Deterministic, and a second call reuses the folder rather than rewriting it.
    assert np.array_equal(np.asarray(bench.synthetic_image(3, 16)), arrays[3])
    mtime = files[0].stat().st_mtime_ns
    assert bench.image_folder(5, 16, cache=tmp_path) == folder
    assert files[0].stat().st_mtime_ns == mtime
    # No half-written folder is left beside it.
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_overrides_follow_the_issue(bench: ModuleType, tmp_path: Path) -> None:
    args = bench.parse_args(["--mnist-root", str(tmp_path), "--batches", "3"])
    mnist = bench.overrides_for("mnist", args, None)
    assert mnist[:2] == ["data=mnist", f"data.root={tmp_path.resolve()}"]
    assert "trainer.limit_train_batches=3" in mnist and "test=false" in mnist
    folder = bench.overrides_for("folder", args, tmp_path / "imgs")
    assert folder[:4] == [
        "data=folder",
        f"data.root={tmp_path / 'imgs'}",
        "data.channels=3",
        "data.image_size=64",
    ]
    with pytest.raises(SystemExit):
        bench.parse_args(["--mnist-root", str(tmp_path / "missing")])
