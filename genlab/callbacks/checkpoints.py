"""``last.ckpt`` that is truly the last state, written whole, and saved on preemption.

- ``AtomicCheckpointIO`` writes every checkpoint to a temporary file in its own directory,
  syncs it and renames it into place. Lightning's own writer moves a file from $TMPDIR,
  which is a copy when the outputs lie on another filesystem: a full disk then left a
  truncated ``last.ckpt``. A full disk now leaves the previous file intact and stops with a
  message naming the directory.
- ``LastCheckpoint`` writes ``last.ckpt`` at the end of every epoch, every
  ``every_n_steps`` optimizer steps and every ``every_minutes`` minutes, whatever the
  monitored metric did (the best-by-metric checkpoint is ModelCheckpoint's, kept apart). It
  stores the random state of torch, numpy and Python with it and restores that state before
  the first batch of a resumed run, so a resumed run draws the noise (dropout, VAE samples,
  GAN latents) the uninterrupted run drew. On SIGTERM (what a batch scheduler sends before
  it preempts a job) or SIGINT (Ctrl-C) it finishes the current step, saves, and stops
  training; ``genlab train`` then exits with 128 + the signal's number. A second Ctrl-C
  interrupts at once.
"""

from __future__ import annotations

import io
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from genlab.atomic import atomic_path
from genlab.errors import ConfigError, Preempted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all (see genlab.atomic)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        # Serialised in memory first: torch's own file writer reports a full disk as an
        # opaque RuntimeError, a plain write as OSError(ENOSPC).
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())


def random_state() -> dict[str, Any]:
    """The random state of torch (CPU and CUDA), numpy and Python, as tensors and plain
    values, so it loads with weights_only=True."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "python": _plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


def set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class LastCheckpoint(pl.Callback):
    """Keeps ``dirpath/last.ckpt`` at the latest state: every epoch, every
    ``every_n_steps`` optimizer steps, every ``every_minutes`` minutes (null turns either
    off), and on SIGTERM/SIGINT."""

    def __init__(
        self,
        *,
        dirpath: str,
        every_n_steps: int | None = None,
        every_minutes: float | None = 10.0,
        save_on_signal: bool = True,
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(
                f"checkpoint.every_n_steps must be at least 1, or null (got {every_n_steps})"
            )
        if every_minutes is not None and every_minutes <= 0:
            raise ConfigError(
                f"checkpoint.every_minutes must be positive, or null (got {every_minutes})"
            )
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self.every_seconds = every_minutes * 60 if every_minutes is not None else None
        self.save_on_signal = save_on_signal
        self.received: int | None = None
        self._saved_at = time.monotonic()
        self._saved_step = -1
        self._pending_state: dict[str, Any] | None = None
        self._previous_handlers: dict[int, Any] = {}

    # The random state travels with the checkpoint.

    def state_dict(self) -> dict[str, Any]:
        return {"random_state": random_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_state = state_dict.get("random_state")

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        # After the resumed run's set-up and sanity check, which draw random numbers the
        # uninterrupted run drew before the checkpoint.
        if self._pending_state is not None:
            set_random_state(self._pending_state)
            self._pending_state = None

    # Signals.

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Here, after Lightning installed its own SIGTERM handler (which would end the run
        # with SystemExit(0) after the batch), so that ours replaces it for the training.
        self._saved_at = time.monotonic()
        if not self.save_on_signal or threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()

    # Saving.

    def save(self, trainer: pl.Trainer) -> None:
        # Said outright: left unset, Lightning prints that it defaults to False at every save.
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_at = time.monotonic()
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step
        stop = trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)
        # GANs advance global_step by more than one a batch: save on crossing a multiple.
        due = (
            self.every_n_steps is not None
            and step // self.every_n_steps > max(self._saved_step, 0) // self.every_n_steps
        ) or (
            self.every_seconds is not None
            and time.monotonic() - self._saved_at >= self.every_seconds
        )
        if stop or due:
            self.save(trainer)
        if stop:
            trainer.should_stop = True
            if self.received is None:  # another process got the signal
                self.received = signal.SIGTERM

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and self.received is None:
            self.save(trainer)

    def check_stopped(self) -> None:
        """Raise ``Preempted`` when training stopped on a signal."""
        if self.received is not None:
            raise Preempted(self.received, str(self.path))
