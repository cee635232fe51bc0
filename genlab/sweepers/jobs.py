"""What a job of a sweep needs to know about the other jobs and processes around it.

Threads: ``hydra/launcher=joblib`` runs ``n_jobs`` jobs at once on one machine, each in its
own process; torch would give every one of them a thread per core, and the jobs would fight
over the cores. Each job takes ``cores // n_jobs`` threads instead (a SLURM or submitit
job: its ``cpus_per_task``).

DDP ranks: Lightning starts the other ranks of a DDP job by re-running the command line
(``sys.argv``) with ``hydra.run.dir`` set to the job's ``hydra.run.dir``. In a multirun that
command line is the whole sweep, and ``hydra.run.dir`` is not the job's folder: each rank
would run every job of the sweep again, in outputs/train/... . So while a job of a sweep
trains, its process tells its children which job they belong to (an environment variable
Lightning passes on), and a re-launched rank rewrites its command line into that job's
overrides, run once in the job's own directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator

JOB_VARIABLE = "GENLAB_SWEEP_JOB"
# What Lightning's launcher sets in the parent's environment for its children.
DDP_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LAUNCHERS = (
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(launcher: dict, cores: int) -> int | None:
    """The torch threads a job of ``launcher`` (the hydra.launcher node) should use on a
    machine with ``cores`` cores; None where the launcher runs one job at a time."""
    target = launcher.get("_target_")
    if target == JOBLIB_LAUNCHER:
        n_jobs = int(launcher.get("n_jobs") or 1)
        parallel = cores + 1 + n_jobs if n_jobs < 0 else n_jobs  # joblib's meaning of -1, -2..
        return max(1, cores // max(1, parallel))
    if target in SUBMITIT_LAUNCHERS and launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    return None


def divide_threads() -> int | None:
    """Sets torch's threads for a job of a parallel launcher (see ``threads_per_job``);
    the number set, or None where nothing was changed."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    threads = threads_per_job(launcher, available_cores())
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        logging.getLogger(__name__).info(
            f"genlab train: {threads} torch thread(s) for this job of "
            f"{launcher.get('_target_', '?').rpartition('.')[2]}"
        )
    return threads


@contextlib.contextmanager
def sweep_job_for_ddp_ranks() -> Iterator[None]:
    """Within a job of a multirun: the job's directory and overrides in ``JOB_VARIABLE``
    for the DDP ranks Lightning starts; afterwards, the process group and Lightning's
    variables cleared, so that the next job of the same process starts its own."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hydra = HydraConfig.get()
    job = {
        "dir": str(hydra.runtime.output_dir),
        # The job's own hydra.* overrides (the sweeper's trial, for one) but not the mode:
        # a rank runs the job once.
        "overrides": [
            *(o for o in hydra.overrides.hydra if not o.startswith("hydra.mode=")),
            *hydra.overrides.task,
        ],
    }
    saved = {name: os.environ.get(name) for name in (JOB_VARIABLE, *DDP_VARIABLES)}
    os.environ[JOB_VARIABLE] = json.dumps(job)
    try:
        yield
    finally:
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# What Lightning appends to the command line of a re-launched rank, besides hydra.run.dir.
_RANK_OPTIONS = ("hydra.job.name=", "hydra.output_subdir=")


def as_rank_of_sweep_job(args: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """The command line a DDP rank re-launched from a sweep's job should run: that job's
    overrides in that job's directory, without -m; ``args`` unchanged anywhere else."""
    environ = os.environ if environ is None else environ
    job = environ.get(JOB_VARIABLE)
    multirun = "-m" in args or "--multirun" in args
    if not job or not multirun or environ.get("LOCAL_RANK", "0") == "0":
        return args
    job = json.loads(job)
    tail = [arg for arg in args if arg.startswith(_RANK_OPTIONS)]
    return [*job["overrides"], f"hydra.run.dir={json.dumps(job['dir'])}", *tail]
