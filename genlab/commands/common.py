"""What every command's Hydra app shares: where the configs are, checks of the command's
own options (before torch is imported, so a typo is answered at once), and turning input
errors into a clear message and a non-zero exit instead of a traceback."""

from __future__ import annotations

import logging
import math
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException, InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from genlab.errors import ConfigError, GenlabError


def _config_dir() -> str:
    """configs/ at the top of a source checkout (editable installs too), else the copy an
    installed wheel ships as the package genlab.configs."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "configs", package / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise RuntimeError(
        f"genlab's configs are missing: neither {package.parent / 'configs'} nor "
        f"{package / 'configs'} holds train.yaml; reinstall genlab"
    )


CONFIG_DIR = _config_dir()


def register_resolvers() -> None:
    """The OmegaConf resolvers genlab's configs use: ``${genlab.sum:a,b}`` adds numbers
    (Pix2Pix's discriminator sees the input and output channels together) and
    ``${genlab.mul:a,b}`` multiplies them (a PacGAN discriminator sees ``pack`` images)."""
    if not OmegaConf.has_resolver("genlab.sum"):
        OmegaConf.register_new_resolver("genlab.sum", lambda *values: sum(values))
    if not OmegaConf.has_resolver("genlab.mul"):
        OmegaConf.register_new_resolver("genlab.mul", lambda *values: math.prod(values))


register_resolvers()

T = TypeVar("T")

# Batches are gathered from in-memory tensors, so worker processes would only add overhead;
# Lightning's advice to add them does not apply. Its own pytree deprecation is not ours.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


# Checks of a command's own options. A value typed on the command line arrives as whatever
# YAML makes of it (n=abc is the string 'abc'), so each check names the key, what it takes
# and an example, instead of a TypeError deep inside the command.


def _option(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, throw_on_missing=True)


def _described(key: str, what: str | None) -> str:
    return f"{key}, {what}," if what else key


def check_int(
    cfg: DictConfig,
    key: str,
    *,
    minimum: int | None = None,
    optional: bool = False,
    example: int | None = None,
    what: str | None = None,
) -> None:
    """``cfg.<key>`` is an integer (not a bool, a float or a string), at least ``minimum``
    when given; ``optional`` lets it be null. ``what`` says what the key means, ``example``
    a value to suggest (default: ``minimum``, else 0)."""
    value = _option(cfg, key)
    if value is None and optional:
        return
    name = _described(key, what)
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an integer or null" if optional else "an integer"
        suggestion = example if example is not None else minimum if minimum is not None else 0
        raise ConfigError(f"{name} must be {kind} (got {value!r}); e.g. {key}={suggestion}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum} (got {value})")


def check_number(cfg: DictConfig, key: str, *, example: float, positive: bool = False) -> None:
    """``cfg.<key>`` is a number (an int or a float, not a bool), above 0 if ``positive``."""
    value = _option(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number (got {value!r}); e.g. {key}={example}")
    if positive and not value > 0:
        raise ConfigError(f"{key} must be positive (got {value}); e.g. {key}={example}")


def check_bool(cfg: DictConfig, key: str) -> None:
    """``cfg.<key>`` is true or false (a string such as 'yes' would count as true)."""
    value = _option(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false (got {value!r})")


def check_choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> None:
    """``cfg.<key>`` is one of ``choices``."""
    value = _option(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(choices)}")


def check_ckpt(cfg: DictConfig) -> None:
    """A checkpoint command's ``ckpt=``: an existing file, checked (after the command's own
    options) before torch is imported, so a mistyped path is answered at once."""
    from genlab.inputs import check_checkpoint_file

    check_checkpoint_file(Path(str(cfg.ckpt)).expanduser())


def _user_error(exc: BaseException) -> BaseException | None:
    """The GenlabError (or missing config value) behind ``exc``, following the chain that
    Hydra's instantiate and Lightning wrap around it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GenlabError | MissingMandatoryValue):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _user_message(exc: BaseException) -> str | None:
    """The message to show for an input error, None for anything else (a bug)."""
    if not isinstance(exc, GenlabError | InstantiationException | MissingMandatoryValue):
        return None
    cause = _user_error(exc)
    if cause is None:
        return None
    if isinstance(cause, MissingMandatoryValue):
        key = cause.full_key or "a required value"
        return f"missing a required config value: {key}; set it on the command line, e.g. {key}=..."
    return str(cause)


def run_command(command: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Runs ``command(cfg)``; an input error is printed as one line and appended to the
    run's log. A single run then exits 1; a job of a multirun raises ``JobFailed`` instead,
    so that the sweep goes on with its other jobs (see ``FailedJobs``)."""
    # As `python -m` does: a user's own modules in the current folder are importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        # Every checkpoint command takes quiet (genlab COMMAND --quiet); checked once here.
        if "quiet" in cfg:
            check_bool(cfg, "quiet")
        return command(cfg)
    except Exception as exc:
        message = _user_message(exc)
        if message is None:
            raise
        line = f"genlab {cfg.get('task', '')}: error: {message}"
        print(line, file=sys.stderr)
        append_to_job_log(line)
        if not in_multirun():
            sys.exit(1)
        write_job_error(line)
        raise JobFailed(message) from None


# Failed runs and sweep jobs. Hydra runs each job inside `run_job`, which catches an
# exception (but not the SystemExit a single run ends with), marks the job FAILED, lets the
# other jobs run and re-raises the first failure at the end with a traceback.
# `FailedJobs`, a Hydra callback (configs/hydra/default.yaml), records each failed job,
# marks it handled and, after the last job, lists the failures and exits 1.

ERROR_FILE = "error.txt"


class JobFailed(CompactHydraException):
    """A sweep job stopped by an input error, already reported. A Hydra compact error, so
    that even without the FailedJobs callback Hydra prints it without a traceback."""


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (-m)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def append_to_job_log(text: str) -> None:
    """Adds ``text`` as an ERROR record to the job's log file (Hydra's FileHandler on the
    root logger, e.g. train.log) only: the terminal has already shown it."""
    record = logging.LogRecord("genlab", logging.ERROR, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            handler.flush()


def write_job_error(text: str, output_dir: str | Path | None = None) -> Path | None:
    """Writes ``text`` to error.txt in the job's run directory (the current Hydra job's,
    unless ``output_dir`` is given); None where there is none."""
    from hydra.core.hydra_config import HydraConfig

    from genlab.atomic import write_text

    if output_dir is None:
        if not HydraConfig.initialized():
            return None
        output_dir = HydraConfig.get().runtime.output_dir
    return write_text(Path(output_dir) / ERROR_FILE, text.rstrip() + "\n")


def _record_crash(exc: BaseException, output_dir: str, *, multirun: bool) -> str:
    """A job's unexpected exception (a bug, not an input error): its traceback appended to
    the job's log and, in a sweep, where Hydra would only show it after the last job,
    printed now and written to error.txt. Returns it in one line."""
    text = "".join(traceback.format_exception(exc))
    append_to_job_log(text)
    if multirun:
        print(text, file=sys.stderr, end="")
        write_job_error(text, output_dir)
    return f"{type(exc).__name__}: {exc}"


class FailedJobs(Callback):
    """Records the failed jobs of a run or sweep and reports them.

    A job stopped by an input error has reported itself (``JobFailed``); a job that crashed
    has its traceback appended to its log and, in a sweep, printed and written to its
    error.txt. In a sweep each failed job is then marked handled, so that Hydra goes on
    to ``on_multirun_end``, which lists the failures with their overrides and exits 1."""

    def __init__(self) -> None:
        self.jobs = 0
        self.failures: list[tuple[str, list[str], str, str]] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.jobs, self.failures = 0, []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        self.jobs += 1
        if job_return.status != JobStatus.FAILED:
            return
        multirun = config.hydra.mode == RunMode.MULTIRUN
        output_dir = config.hydra.runtime.output_dir
        # The exception itself: the public return_value re-raises it.
        exc = job_return._return_value
        if isinstance(exc, JobFailed):
            message = str(exc)  # run_command has printed, logged and written it
        else:
            message = _record_crash(exc, output_dir, multirun=multirun)
        if not multirun:
            return  # Hydra prints a crash's traceback and exits 1 itself.
        num = str(OmegaConf.select(config, "hydra.job.num", default="?"))
        self.failures.append((num, list(job_return.overrides or []), message, output_dir))
        # Handled: Hydra would otherwise re-raise it after the last job, which skips
        # on_multirun_end and so the summary.
        job_return.status = JobStatus.COMPLETED
        job_return.return_value = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.failures:
            return
        task = OmegaConf.select(config, "task", default="") or ""
        total = f" of {self.jobs}" if self.jobs else ""
        lines = [f"genlab {task}: {len(self.failures)}{total} jobs of the sweep failed:"]
        for num, overrides, message, output_dir in self.failures:
            lines.append(f"  #{num} {' '.join(overrides)}")
            lines.append(f"      {' '.join(message.split())}")
            lines.append(f"      see {Path(output_dir) / ERROR_FILE}")
        print("\n".join(lines), file=sys.stderr)
        sys.exit(1)
