"""scripts/bench_startup.py: which command line it times (the installed console script, or
a checkout's through python -m genlab.cli), without starting the processes themselves."""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_startup  # noqa: E402


def test_the_installed_script_or_a_checkout(tmp_path: Path) -> None:
    installed = bench_startup.genlab_command(None)
    assert len(installed) == 1 and installed[0].endswith("genlab")
    assert bench_startup.genlab_command(tmp_path) == [sys.executable, "-m", "genlab.cli"]
    args = bench_startup.parse_args(["--source", str(tmp_path), "--repeats", "2", "model=ae"])
    assert (args.source, args.repeats, args.overrides) == (tmp_path, 2, ["model=ae"])


def test_the_child_finds_the_first_step_callback() -> None:
    """The callback target the child process imports names this module's class."""
    assert bench_startup.FirstStep.__module__ == "bench_startup"
