"""Pruning of Optuna trials on intermediate epochs, inside a job of ``hydra/sweeper=optuna``.

Optuna's own Lightning callback (optuna-integration's PyTorchLightningPruningCallback, 5.0)
is written for the ``lightning`` package (``lightning.pytorch``), not for the
``pytorch_lightning`` that genlab trains with, so this small callback does the same:
after each validation, rank 0 reports ``optimized_metric`` to the trial and asks the pruner;
a pruned job stops like an early-stopped one (its checkpoints and logs stay whole) and the
sweeper records the trial as PRUNED. Under DDP the decision is broadcast to every rank.

The trial reaches the job through the sweeper's overrides: ``hydra.sweeper.storage`` and
``hydra.sweeper.trial`` (its number in the study ``hydra.sweeper.study_name``).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info

from genlab.sweepers.optuna import PRUNED_AT, import_optuna, open_storage

SWEEPER_TARGET = "hydra_plugins.genlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"


class OptunaPruning(pl.Callback):
    """Reports ``monitor`` after every validation to trial ``trial_number`` of the study
    ``study_name`` in ``storage`` and stops training when ``pruner`` (a config with a
    ``_target_``, as the sweeper's) prunes it."""

    def __init__(
        self, *, storage: str, study_name: str, trial_number: int, pruner: Any, monitor: str
    ) -> None:
        self.storage = storage
        self.study_name = study_name
        self.trial_number = trial_number
        self.pruner = pruner
        self.monitor = monitor
        self._trial: Any = None

    def trial(self) -> Any:
        """The job's running trial, connected on first use (on rank 0 only)."""
        if self._trial is None:
            from hydra.utils import instantiate

            optuna = import_optuna()
            study = optuna.load_study(
                study_name=self.study_name,
                storage=open_storage(self.storage),
                pruner=instantiate(self.pruner),
            )
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, self.trial_number
            )
            self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and math.isfinite(float(value)):
                trial = self.trial()
                trial.report(float(value), step=trainer.current_epoch)
                if trial.should_prune():
                    trial.set_user_attr(PRUNED_AT, trainer.current_epoch)
                    prune = True
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune)
        if prune:
            rank_zero_info(
                f"genlab train: Optuna pruned trial {self.trial_number} at epoch "
                f"{trainer.current_epoch} ({self.monitor}); stopping"
            )
            trainer.should_stop = True


def pruning_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """[OptunaPruning] for a job of genlab's Optuna sweeper with a pruner, else []."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    sweeper = HydraConfig.get().sweeper
    if (
        sweeper.get("_target_") != SWEEPER_TARGET
        or sweeper.get("trial") is None
        or not sweeper.get("pruner")
        or not sweeper.get("storage")
    ):
        return []
    return [
        OptunaPruning(
            storage=sweeper.storage,
            study_name=sweeper.study_name,
            trial_number=int(sweeper.trial),
            pruner=OmegaConf.to_container(sweeper.pruner, resolve=True),
            monitor=str(cfg.get("optimized_metric") or "val/loss"),
        )
    ]
