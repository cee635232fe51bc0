"""Sweeps that search and scale out: genlab's Optuna sweeper (search space, study in SQLite,
failed and pruned trials, resume), the joblib and submitit_local launchers, threads per
parallel job, DDP ranks inside a multirun, and the hints for missing plugins."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from conftest import run_genlab
from hydra.core.utils import JobReturn, JobStatus

from genlab.cli import missing_plugin
from genlab.sweepers.jobs import JOB_VARIABLE, as_rank_of_sweep_job, threads_per_job
from genlab.sweepers.optuna import PRUNED_AT, OptunaSearch, SearchSpace, SweepError
from genlab.sweepers.pruning import OptunaPruning

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Two tiny epochs of the plain autoencoder on the embedded mnist_5k.
TINY_AE = [
    "model=ae",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.batch_size=32",
    "test=false",
]


def _search(**options) -> OptunaSearch:
    settings = {
        "direction": "minimize",
        "study_name": "s",
        "storage": None,
        "n_trials": 2,
        "n_jobs": 1,
        "sampler": None,
        "pruner": None,
        "params": None,
    }
    return OptunaSearch(**(settings | options))


def test_the_search_space_follows_hydras_override_grammar() -> None:
    space = SearchSpace.parse(
        {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "model.latent_dim": "choice(8, 16)"},
        ["model.d_steps=range(1,4)", "+model.beta=int(interval(1, 5))", "data=mnist_5k"],
    )
    assert space.fixed == ["data=mnist_5k"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        overrides = dict(o.split("=", 1) for o in space.suggest(trial))
        assert 1e-4 <= float(overrides["optimizer.lr"]) <= 1e-2
        assert overrides["model.latent_dim"] in ("8", "16")
        assert overrides["model.d_steps"] in ("1", "2", "3")  # range(1, 4) stops before 4
        assert overrides["+model.beta"] in {str(i) for i in range(1, 6)}
    distributions = trial.distributions
    assert distributions["optimizer.lr"].log is True
    assert isinstance(
        distributions["model.latent_dim"], optuna.distributions.CategoricalDistribution
    )
    assert isinstance(distributions["model.d_steps"], optuna.distributions.IntDistribution)


def test_a_glob_is_not_a_search_space() -> None:
    with pytest.raises(SweepError, match="choice"):
        SearchSpace.parse(None, ["model=glob(*)"])


def _job(value, status: JobStatus = JobStatus.COMPLETED) -> JobReturn:
    job = JobReturn(status=status)
    job._return_value = value
    return job


def test_failed_missing_and_non_finite_results_are_failed_trials() -> None:
    search = _search()
    study = optuna.create_study()
    outcomes = [
        _job(1.5),
        _job(None),  # a failed job that genlab's FailedJobs marked handled
        _job(float("nan")),
        _job(RuntimeError("boom"), JobStatus.FAILED),
        _job("0.3"),
    ]
    for job in outcomes:
        search._tell(study, study.ask(), job)
    states = [t.state for t in study.trials]
    fail = optuna.trial.TrialState.FAIL
    assert states == [optuna.trial.TrialState.COMPLETE, fail, fail, fail, fail]
    assert study.best_value == 1.5
    assert "not a finite number" in study.trials[2].user_attrs["failure"]
    assert "boom" in study.trials[3].user_attrs["failure"]


def _fake_trainer(value: float) -> SimpleNamespace:
    return SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        world_size=1,
        current_epoch=0,
        should_stop=False,
        callback_metrics={"val/loss": torch.tensor(value)},
    )


def test_the_pruning_callback_stops_a_pruned_trial_and_the_sweeper_records_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    pruner = {"_target_": "optuna.pruners.ThresholdPruner", "upper": 10.0}
    study = optuna.create_study(study_name="s", storage=url)
    good, bad = study.ask(), study.ask()
    outcomes = []
    for trial, value in ((good, 3.0), (bad, 30.0)):
        callback = OptunaPruning(
            storage=url,
            study_name="s",
            trial_number=trial.number,
            pruner=pruner,
            monitor="val/loss",
        )
        trainer = _fake_trainer(value)
        callback.on_validation_end(trainer, None)
        outcomes.append(trainer.should_stop)
        _search()._tell(study, trial, _job(value))
    assert outcomes == [False, True]
    stored = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in stored] == [
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    ]
    assert stored[1].user_attrs[PRUNED_AT] == 0
    assert stored[1].intermediate_values == {0: 30.0}


def test_threads_are_divided_between_parallel_jobs() -> None:
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    local = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    assert threads_per_job({"_target_": joblib, "n_jobs": 2}, cores=8) == 4
    assert threads_per_job({"_target_": joblib, "n_jobs": 2}, cores=2) == 1
    assert threads_per_job({"_target_": joblib, "n_jobs": 3}, cores=2) == 1
    assert threads_per_job({"_target_": joblib, "n_jobs": -1}, cores=4) == 1  # one per core
    assert threads_per_job({"_target_": joblib, "n_jobs": -2}, cores=4) == 1  # 3 jobs
    assert threads_per_job({"_target_": local, "cpus_per_task": 3}, cores=8) == 3
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert threads_per_job({"_target_": basic}, cores=8) is None


def test_a_ddp_rank_of_a_sweep_job_runs_that_job_alone() -> None:
    job = '{"dir": "/sweep/3", "overrides": ["hydra.sweeper.trial=3", "model.latent_dim=8"]}'
    relaunched = [
        "-m",
        "model.latent_dim=4,8",
        'hydra.run.dir="outputs/train/x"',
        "hydra.job.name=train_ddp_process_1",
        "hydra.output_subdir=null",
    ]
    environ = {JOB_VARIABLE: job, "LOCAL_RANK": "1"}
    assert as_rank_of_sweep_job(relaunched, environ) == [
        "hydra.sweeper.trial=3",
        "model.latent_dim=8",
        'hydra.run.dir="/sweep/3"',
        "hydra.job.name=train_ddp_process_1",
        "hydra.output_subdir=null",
    ]
    # Rank 0, a single run, or no sweep job around: the command line as it is.
    assert as_rank_of_sweep_job(relaunched, {JOB_VARIABLE: job, "LOCAL_RANK": "0"}) == relaunched
    assert as_rank_of_sweep_job(relaunched[1:], environ) == relaunched[1:]
    assert as_rank_of_sweep_job(relaunched, {"LOCAL_RANK": "1"}) == relaunched


def test_a_missing_plugin_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    assert missing_plugin(["-m", "hydra/launcher=joblib", "hydra/sweeper=optuna"]) is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    hint = missing_plugin(["-m", "model=ae", "hydra/launcher=joblib"])
    assert hint == (
        "hydra/launcher=joblib needs hydra-joblib-launcher, which is not installed: "
        "pip install 'genlab[sweep]'"
    )
    assert "pip install 'genlab[sweep]'" in missing_plugin(["hydra/sweeper=optuna"])
    assert "genlab[slurm]" in missing_plugin(["hydra/launcher=slurm"])


def test_a_missing_optuna_is_reported_by_the_sweeper(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from genlab.sweepers.optuna import import_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(SweepError, match=r"pip install 'genlab\[sweep\]'"):
        import_optuna()


@pytest.mark.slow
def test_an_optuna_study_through_joblib_is_stored_and_resumes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    search = [
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_jobs=2",
        "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
        "model.latent_dim=choice(4, 8)",
        f"hydra.sweep.dir={sweep}",
        *TINY_AE,
    ]
    # Both trials in one batch, run side by side by joblib.
    first = run_genlab(
        "train",
        "-m",
        *search,
        "hydra.sweeper.n_trials=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    study = optuna.load_study(study_name="genlab", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert math.isfinite(trial.value)
        assert 1e-4 <= trial.params["optimizer.lr"] <= 1e-2
        assert trial.params["model.latent_dim"] in (4, 8)
        job = sweep / str(trial.number)
        assert trial.user_attrs["job_dir"] == str(job)
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert (
            f"latent_dim: {trial.params['model.latent_dim']}" in (job / "config.yaml").read_text()
        )
        # Two jobs at once on this machine's cores: each took its share of threads.
        log = (job / "train.log").read_text()
        assert "torch thread(s) for this job of JoblibLauncher" in log
    results = (sweep / "optimization_results.yaml").read_text()
    assert f"best_value: {study.best_value}" in results

    # Run again on the same sweep directory with a larger budget: the study goes on.
    second = run_genlab("train", "-m", *search, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 of 3 trials already done" in second.stdout + second.stderr
    study = optuna.load_study(study_name="genlab", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert (sweep / "2" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_a_sweep_through_submitit_local(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_genlab(
        "train",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        "model.latent_dim=4,8",
        f"hydra.sweep.dir={sweep}",
        *TINY_AE,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job, latent in (("0", 4), ("1", 8)):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert f"latent_dim: {latent}" in (sweep / job / "config.yaml").read_text()
        assert (
            "torch thread(s) for this job of LocalLauncher"
            in (sweep / job / "train.log").read_text()
        )
    # Each job ran as its own process, submitted through submitit.
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2


@pytest.mark.slow
def test_ddp_inside_a_multirun_writes_into_each_jobs_directory(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_genlab(
        "train",
        "-m",
        "trainer=ddp_cpu",
        "model.latent_dim=4,8",
        f"hydra.sweep.dir={sweep}",
        *TINY_AE,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # Two jobs, each with two processes; the second ranks did not start sweeps of their own.
    assert output.count("MEMBER: 2/2") == 2
    assert output.count("Launching") == 1
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert "GLOBAL_RANK: 1" in (sweep / job / "train_ddp_process_1.log").read_text()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert not (tmp_path / "outputs").exists()
