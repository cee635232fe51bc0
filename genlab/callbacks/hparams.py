"""A run's hyperparameters and results where runs are compared: TensorBoard's HParams tab,
the loggers' hparams.yaml, and ``metrics.json`` in the run directory (read by
``genlab report``).

At the start of fit the flattened resolved config (model, optimizer, scheduler, data,
trainer, seed: ``model.latent_dim``, ``optimizer.lr``, ...) goes to every logger and, for
TensorBoard, into a session-start record of the HParams plugin. No experiment record is
written: TensorBoard then builds the HParams table from all runs together, every config key
of any run a column and every scalar a metric column showing its latest value, so a sweep
over different models compares, and a run still training shows up with its values so far.
Each epoch the logged metrics are recorded; at the end of fit the best value of each goes
to the loggers as ``best/<name>`` and the session is marked finished (failed on an error).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from genlab.commands.report import (
    BEST_PREFIX,
    flatten_config,
    history_from_json,
    read_json,
    summarize_history,
)

# The config sections that make a run what it is.
HPARAM_SECTIONS = ("model", "optimizer", "scheduler", "data", "trainer", "seed")


def run_hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The sections of a resolved run config that exist, nested (for hparams.yaml)."""
    return {key: config[key] for key in HPARAM_SECTIONS if config.get(key) is not None}


def _hparams_summary(tag: str, **fields: Any) -> Any:
    """A Summary holding one record of TensorBoard's HParams plugin (session start or end)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    data = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **fields)
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def session_start(params: dict[str, bool | int | float | str]) -> Any:
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

    info = SessionStartInfo(start_time_secs=time.time())
    for key, value in params.items():
        if isinstance(value, bool):
            info.hparams[key].bool_value = value
        elif isinstance(value, int | float):
            info.hparams[key].number_value = value
        else:
            info.hparams[key].string_value = str(value)
    return _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=info)


def session_end(status: str) -> Any:
    """``status``: success, failure or aborted."""
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo

    code = api_pb2.Status.Value(f"STATUS_{status.upper()}")
    info = SessionEndInfo(status=code, end_time_secs=time.time())
    return _hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=info)


class HParamsLogger(pl.Callback):
    """Logs the run's hyperparameters at the start of fit and its metrics' best values at
    the end; keeps every epoch's metrics for ``metrics.json`` (``summary()``).

    ``config`` is the resolved run config (a plain dict); ``monitor`` the metric the run is
    judged by (``optimized_metric``), better when lower unless ``direction`` is maximize."""

    def __init__(
        self, config: dict[str, Any], *, monitor: str = "val/loss", direction: str = "minimize"
    ) -> None:
        self.hparams = run_hparams(config)
        self.params = flatten_config(self.hparams)
        self.monitor = monitor
        self.direction = direction
        # metric -> [(epoch, global step, value)], one entry per epoch.
        self.history: dict[str, list[tuple[int, int, float]]] = {}
        self._validated: set[str] = set()
        self.started = time.monotonic()

    # What is recorded.

    def _record(self, trainer: pl.Trainer, keep: Any) -> None:
        for name, value in trainer.callback_metrics.items():
            if not keep(name) or name.startswith(BEST_PREFIX):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):  # a tensor of several values: not a metric
                continue
            series = self.history.setdefault(name, [])
            entry = (trainer.current_epoch, trainer.global_step, number)
            if series and series[-1][0] == entry[0]:
                series[-1] = entry
            else:
                series.append(entry)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # What validation logged (val/...), not the training values still in the dict.
        self._validated.update(n for n in trainer.callback_metrics if not n.startswith("train/"))
        self._record(trainer, lambda name: not name.startswith("train/"))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Skipped: validation's values, stale in an epoch without validation.
        self._record(trainer, lambda name: name not in self._validated)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, lambda name: name.startswith("test/"))

    def summary(self, *, status: str = "finished") -> dict[str, Any]:
        """What metrics.json holds: the final and best value of every metric, its history,
        the monitored metric and its direction, the wall time and the status."""
        return {
            "status": status,
            "monitor": self.monitor,
            "direction": self.direction,
            "wall_time_s": round(time.monotonic() - self.started, 3),
            "epochs": 1
            + max(
                (e for n, s in self.history.items() if not n.startswith("test/") for e, _, _ in s),
                default=-1,
            ),
            "metrics": summarize_history(self.history, self.monitor, self.direction),
            "history": {
                name: {
                    "epoch": [e for e, _, _ in series],
                    "step": [s for _, s, _ in series],
                    "value": [v if math.isfinite(v) else None for _, _, v in series],
                }
                for name, series in sorted(self.history.items())
            },
        }

    # Where it goes. Loggers are rank 0's alone (their methods are rank_zero_only).

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_hyperparams(self.hparams)  # hparams.yaml (MLflow: its params)
            if isinstance(logger, TensorBoardLogger):
                logger.experiment._get_file_writer().add_summary(session_start(self.params))

    def _finish(self, trainer: pl.Trainer, status: str) -> None:
        if not trainer.is_global_zero:
            return
        best = {
            f"{BEST_PREFIX}{name}": entry["best"]
            for name, entry in summarize_history(self.history, self.monitor, self.direction).items()
            if entry["best"] is not None and not name.startswith("test/")
        }
        for logger in trainer.loggers:
            if best:
                logger.log_metrics(best, step=trainer.global_step)
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment._get_file_writer()
                writer.add_summary(session_end(status))
                writer.flush()

    # At the end of training, before Lightning closes the loggers' writers (on_fit_end
    # comes after, and would open a new event file).
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, "success")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._finish(trainer, "aborted" if isinstance(exception, KeyboardInterrupt) else "failure")


def write_run_metrics(
    path: str | Path, callback: HParamsLogger, *, status: str, resumed: bool = False
) -> Path:
    """metrics.json of a run, written whole. A run resumed in its own directory keeps the
    epochs its earlier metrics.json recorded before the ones trained now, and their time."""
    from genlab.atomic import write_json

    path = Path(path)
    earlier = read_json(path) if resumed else None
    if earlier:
        for name, series in history_from_json(earlier).items():
            ours = callback.history.get(name, [])
            first = ours[0][0] if ours else math.inf
            callback.history[name] = [p for p in series if p[0] < first] + ours
    summary = callback.summary(status=status)
    if earlier and isinstance(earlier.get("wall_time_s"), int | float):
        summary["wall_time_s"] = round(summary["wall_time_s"] + earlier["wall_time_s"], 3)
    return write_json(path, summary)
