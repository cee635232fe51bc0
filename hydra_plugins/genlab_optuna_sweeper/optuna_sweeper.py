"""The Hydra plugin: ``hydra/sweeper=optuna`` for every Hydra app, genlab's included.

Hydra instantiates only sweepers defined under the ``hydra_plugins`` package and finds them
by scanning it at start-up, so this module stays light (no Optuna, no torch) and delegates
to ``genlab.sweepers.optuna``. No ``from __future__ import annotations`` here: Hydra's
scan runs this module before registering it in sys.modules, where dataclasses would look
the string annotations up.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from genlab.sweepers.optuna import OptunaSearch


@dataclass
class OptunaSweeperConf:
    """``hydra.sweeper`` when ``hydra/sweeper=optuna``. Every key can be set on the command
    line (``hydra.sweeper.n_trials=40``) or in an ``experiment=hpo_*`` overlay."""

    _target_: str = "hydra_plugins.genlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # sampler and pruner reach the sweeper as configs: it builds them once Optuna is checked.
    _recursive_: bool = False
    # minimize | maximize; null takes the app's optimized_direction (genlab: configs/train.yaml).
    direction: str | None = None
    # The study inside the storage: one name per search.
    study_name: str = "genlab"
    # An Optuna storage URL; null: sqlite:///<hydra.sweep.dir>/optuna.db, so that running the
    # same sweep directory again resumes the study.
    storage: str | None = None
    # The study's total: a resumed search runs only the trials still missing.
    n_trials: int = 20
    # Trials per round, handed together to hydra/launcher (parallel with joblib or SLURM).
    n_jobs: int = 1
    # Any optuna.samplers class; TPE, seeded so that a search can be repeated.
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 0}
    )
    # null: no pruning. E.g. {_target_: optuna.pruners.MedianPruner, n_warmup_steps: 1}: jobs
    # report optimized_metric after each validation and stop when the pruner says so.
    pruner: Any = None
    # The search space, key: Hydra override grammar, e.g.
    #   optimizer.lr: tag(log, interval(1e-4, 1e-2))   model.latent_dim: choice(8, 16, 32)
    #   model.beta: interval(0.5, 4.0)                 model.d_steps: range(1, 4)
    params: dict[str, str] | None = None
    # Set by the sweeper on each job (its trial number in the study); not to be set by hand.
    trial: int | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="genlab"
)


class OptunaSweeper(Sweeper):
    """A Hydra Sweeper whose jobs are the trials of an Optuna study."""

    def __init__(
        self,
        direction: str | None,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        params: dict[str, str] | None,
        trial: int | None = None,
    ) -> None:
        super().__init__()
        self.search = OptunaSearch(
            direction=direction,
            study_name=study_name,
            storage=storage,
            n_trials=n_trials,
            n_jobs=n_jobs,
            sampler=sampler,
            pruner=pruner,
            params=params,
        )
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = self.search.setup(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(self.validate_batch_is_legal, arguments)
