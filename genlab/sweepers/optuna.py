"""An Optuna study run as a Hydra sweep: ``genlab train -m hydra/sweeper=optuna ...``.

Why genlab's own sweeper: the published hydra-optuna-sweeper (1.2.0, 1.3.0) pins
``optuna<3``. Installing it downgrades Optuna to 2.10.1, and that release's SQLite storage
fails under SQLAlchemy 2 (an AssertionError reading the schema version on the first
``create_study``), so a study could not be stored or resumed. The search engine stays
Optuna (>=4): only the glue to Hydra is genlab's.

How a search runs: the study lives in ``<sweep dir>/optuna.db`` (SQLite), so it can be
inspected with Optuna's own tools and an interrupted search continues where it stopped when
run again with the same ``hydra.sweep.dir``. Each round asks the study for ``n_jobs`` trials,
turns each into the overrides of one job (the search space is written in Hydra's override
grammar: ``interval``, ``tag(log, interval(...))``, ``int(interval(...))``, ``range``,
``choice``), hands the batch to whatever ``hydra/launcher`` is chosen, and tells the study
each job's return value. Job N of the sweep is trial N of the study (``<sweep dir>/N``).
A failed job, or one that returns no finite number, is a FAIL; a job the pruner stopped
early is PRUNED; the study goes on either way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from genlab.atomic import write_text
from genlab.errors import ConfigError

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
STUDY_FILE = "optuna.db"
RESULTS_FILE = "optimization_results.yaml"
# Set on a trial by genlab's pruning callback when the pruner stopped its job.
PRUNED_AT = "genlab_pruned_at_epoch"
INSTALL_HINT = "pip install 'genlab[sweep]' (or pip install 'optuna>=4')"


class SweepError(ConfigError, CompactHydraException):
    """A mistake in the sweeper's settings, found outside any job: Hydra prints its message
    alone, without a traceback, and exits 1."""


def import_optuna() -> Any:
    """Optuna, or a ConfigError saying which extra brings it."""
    try:
        import optuna
    except ImportError:
        raise SweepError(
            f"hydra/sweeper=optuna needs Optuna, which is not installed: {INSTALL_HINT}"
        ) from None
    return optuna


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """The study's database: ``storage`` when given, else SQLite in the sweep directory."""
    if storage:
        return storage
    return f"sqlite:///{Path(sweep_dir).resolve() / STUDY_FILE}"


def open_storage(url: str) -> Any:
    """Optuna's RDB storage for ``url``. Parallel jobs report to one SQLite file, so a
    writer waits for the lock (up to a minute) instead of failing at once."""
    optuna = import_optuna()
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def _value_string(value: Any) -> str:
    """How ``value`` is written on the right of an override (strings quoted as needed)."""
    return Override._get_value_element_as_str(value)


def _categorical(value: Any) -> Any:
    """A choice as Optuna stores it: primitives as they are, lists and dicts as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return _value_string(value)


class SearchSpace:
    """The swept keys (Optuna distributions) and the fixed overrides of every job, parsed
    from ``params`` and the command line with Hydra's override grammar; the command line
    wins for a key given in both."""

    def __init__(self, overrides: Sequence[Override]) -> None:
        by_key: dict[str, Override] = {}
        for override in overrides:
            by_key[override.key_or_group] = override
        self.swept = [o for o in by_key.values() if o.is_sweep_override()]
        self.fixed = [
            f"{o.get_key_element()}={o.get_value_element_as_str()}"
            for o in by_key.values()
            if not o.is_sweep_override()
        ]
        for override in self.swept:
            if not isinstance(override.value(), ChoiceSweep | RangeSweep | IntervalSweep):
                raise SweepError(
                    f"{override.input_line}: the Optuna sweeper takes choice(...), a,b,c, "
                    "range(...), interval(...) or tag(log, interval(...)) as a search space"
                )

    @classmethod
    def parse(cls, params: dict[str, str] | None, arguments: Sequence[str]) -> SearchSpace:
        lines = [f"{key}={value}" for key, value in (params or {}).items()]
        parser = OverridesParser.create()
        return cls(parser.parse_overrides([*lines, *arguments]))

    def suggest(self, trial: Any) -> list[str]:
        """The overrides of ``trial``'s job: the fixed ones, then one value per swept key."""
        return [*self.fixed, *(_suggest(trial, override) for override in self.swept)]


def _suggest(trial: Any, override: Override) -> str:
    key, name, sweep = override.get_key_element(), override.key_or_group, override.value()
    if isinstance(sweep, ChoiceSweep):
        strings = {_categorical(v): _value_string(v) for v in sweep.list}
        choice = trial.suggest_categorical(name, list(strings))
        return f"{key}={strings[choice]}"
    if isinstance(sweep, RangeSweep):
        values = sweep.range()
        if isinstance(values, range) and values.step > 0 and len(values) > 0:
            value = trial.suggest_int(name, values.start, values[-1], step=values.step)
        else:
            value = trial.suggest_categorical(name, list(values))
        return f"{key}={_value_string(value)}"
    log_scale = "log" in sweep.tags
    if isinstance(sweep.start, int) and isinstance(sweep.end, int):
        value = trial.suggest_int(name, sweep.start, sweep.end, log=log_scale)
    else:
        value = trial.suggest_float(name, float(sweep.start), float(sweep.end), log=log_scale)
    return f"{key}={_value_string(value)}"


def _outcome(job: JobReturn) -> tuple[float | None, str | None]:
    """A job's value, or None and why it is a failure."""
    if job.status == JobStatus.FAILED:
        return None, f"the job failed: {job._return_value}"
    value = job._return_value
    if value is None:
        # genlab's FailedJobs marks a failed job handled and clears its value.
        return None, "the job failed or returned nothing (see its error.txt and log)"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, f"the job returned {value!r}, not a finite number"
    return float(value), None


class OptunaSearch:
    """The sweeper's work, behind ``hydra_plugins.genlab_optuna_sweeper.OptunaSweeper``.
    Its arguments are the keys of ``hydra.sweeper`` (see that class for what each means)."""

    def __init__(
        self,
        *,
        direction: str | None,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        params: dict[str, str] | None,
    ) -> None:
        self.direction = direction
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler = sampler
        self.pruner = pruner
        self.params = params
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> Launcher:
        from hydra.core.plugins import Plugins

        import_optuna()  # fail before anything is launched
        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SweepError(f"hydra.sweeper.{key} must be an integer >= 1 (got {value!r})")
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        return self.launcher

    def study_direction(self) -> str:
        """``hydra.sweeper.direction``, else the app's ``optimized_direction``, else minimize."""
        assert self.config is not None
        direction = (
            self.direction or OmegaConf.select(self.config, "optimized_direction") or "minimize"
        )
        if direction not in DIRECTIONS:
            raise SweepError(
                f"the study's direction is {direction!r}; set optimized_direction (or "
                f"hydra.sweeper.direction) to minimize or maximize"
            )
        return str(direction)

    def create_study(self, url: str) -> Any:
        """The study in ``url``, created or, when it exists, loaded to go on."""
        from hydra.utils import instantiate

        optuna = import_optuna()
        direction = self.study_direction()
        pruner = instantiate(self.pruner) if self.pruner else optuna.pruners.NopPruner()
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(url),
            sampler=instantiate(self.sampler) if self.sampler else None,
            pruner=pruner,
            direction=direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != direction:
            raise SweepError(
                f"the study {self.study_name!r} in {url} was made to "
                f"{study.direction.name.lower()}, not to {direction}; use another "
                "hydra.sweep.dir or hydra.sweeper.study_name for a new study"
            )
        return study

    def sweep(self, validate: Any, arguments: list[str]) -> list[Sequence[JobReturn]]:
        """Runs the study to ``n_trials`` finished trials. ``validate`` checks that a batch
        of overrides composes (the Sweeper's validate_batch_is_legal)."""
        assert self.config is not None and self.launcher is not None
        optuna = import_optuna()
        space = SearchSpace.parse(self.params, arguments)
        if not space.swept:
            raise SweepError(
                "the Optuna sweeper has nothing to search: give hydra.sweeper.params (an "
                "experiment=hpo_* overlay does) or a search space on the command line, e.g. "
                "'optimizer.lr=tag(log, interval(1e-4, 1e-2))'"
            )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
        url = storage_url(self.storage, sweep_dir)
        study = self.create_study(url)

        states = optuna.trial.TrialState
        for stale in study.get_trials(deepcopy=False, states=(states.RUNNING, states.WAITING)):
            # Left running by an interrupted search: its job never reported back.
            study.tell(stale.number, state=states.FAIL)
        done = len(study.get_trials(deepcopy=False))
        log.info(
            f"Optuna study {self.study_name!r} in {url}: {self.study_direction()} "
            f"{OmegaConf.select(self.config, 'optimized_metric') or 'the return value'}, "
            f"{done} of {self.n_trials} trials already done"
        )
        storage_override = f"hydra.sweeper.storage={_value_string(url)}"
        returns: list[Sequence[JobReturn]] = []
        while done < self.n_trials:
            trials = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - done))]
            batch = [
                [
                    *self._suggest(study, space, t),
                    storage_override,
                    f"hydra.sweeper.trial={t.number}",
                ]
                for t in trials
            ]
            validate(batch)
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, job in zip(trials, results, strict=True):
                self._tell(study, trial, job)
            returns.append(results)
            done += len(trials)
        self._write_results(study, sweep_dir)
        return returns

    def _suggest(self, study: Any, space: SearchSpace, trial: Any) -> list[str]:
        try:
            return space.suggest(trial)
        except ValueError as exc:
            # Optuna refuses a key whose range or choices differ from the study's.
            study.tell(trial, state=import_optuna().trial.TrialState.FAIL)
            raise SweepError(
                f"the search space differs from the one the study {self.study_name!r} "
                f"was made with ({exc}); a resumed search keeps its space: change it back, "
                "or start a new study with another hydra.sweep.dir or hydra.sweeper.study_name"
            ) from None

    def _tell(self, study: Any, trial: Any, job: JobReturn) -> None:
        states = import_optuna().trial.TrialState
        if job.hydra_cfg is not None:
            output_dir = OmegaConf.select(job.hydra_cfg, "hydra.runtime.output_dir")
            if output_dir:
                trial.set_user_attr("job_dir", str(output_dir))
        value, problem = _outcome(job)
        # What the job's pruning callback wrote, read afresh (the Trial keeps a stale copy).
        pruned_at = study._storage.get_trial(trial._trial_id).user_attrs.get(PRUNED_AT)
        if value is not None and pruned_at is not None:
            study.tell(trial, state=states.PRUNED)
            log.info(f"trial {trial.number}: pruned at epoch {pruned_at}")
        elif value is None:
            trial.set_user_attr("failure", problem)
            study.tell(trial, state=states.FAIL)
            log.warning(f"trial {trial.number}: FAIL, {problem}")
        else:
            study.tell(trial, value)
            log.info(f"trial {trial.number}: {value:.6g} with {trial.params}")

    def _write_results(self, study: Any, sweep_dir: Path) -> None:
        """``optimization_results.yaml``: the best trial's value, parameters and job."""

        states = import_optuna().trial.TrialState
        counts = {
            state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
            for state in (states.COMPLETE, states.PRUNED, states.FAIL)
        }
        results: dict[str, Any] = {
            "study_name": self.study_name,
            "direction": self.study_direction(),
            "metric": OmegaConf.select(self.config, "optimized_metric"),
            "trials": counts,
        }
        if counts["complete"]:
            best = study.best_trial
            results |= {
                "best_trial": best.number,
                "best_value": best.value,
                "best_params": best.params,
                "best_job_dir": best.user_attrs.get("job_dir"),
            }
            log.info(f"best trial {best.number}: {best.value:.6g} with {best.params}")
        else:
            log.warning("no trial of the study completed")
        write_text(sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(results)))
