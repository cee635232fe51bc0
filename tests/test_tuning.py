"""The allocator settings the command line applies (genlab.tuning)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from genlab.tuning import OPT_OUT, tune_allocator


def test_applied_on_glibc_and_left_alone_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux's")
    # In a fresh process, as the CLI applies it: mallopt accepts both settings.
    code = "from genlab.tuning import tune_allocator; print(tune_allocator())"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"
    monkeypatch.setenv(OPT_OUT, "0")
    assert tune_allocator() is False
    monkeypatch.delenv(OPT_OUT)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # the user's own glibc settings rule
    assert tune_allocator() is False
