"""A callback the fault tests put into real `genlab train` processes: it holds training at
a given step, so a test can kill or signal the process at a known point."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class PauseAt(pl.Callback):
    """At the end of the batch that reaches ``step``, write ``marker`` and wait (at most
    ``timeout`` seconds) until ``release`` exists."""

    def __init__(self, *, step: int, marker: str, release: str, timeout: float = 60) -> None:
        self.step = step
        self.marker = Path(marker)
        self.release = Path(release)
        self.timeout = timeout

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        self.marker.write_text(str(self.step))
        deadline = time.monotonic() + self.timeout
        while not self.release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


class CrashAt(pl.Callback):
    """Raises at the end of the batch that reaches ``step``, as a crash would stop a run
    mid-epoch, leaving the checkpoints written so far."""

    def __init__(self, *, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError(f"simulated crash at step {trainer.global_step}")
