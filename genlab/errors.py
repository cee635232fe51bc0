"""Errors a user can act on.

Every failure caused by input (a config value, a data file, a checkpoint) is raised as a
``GenlabError``; the command entry points print its message without a traceback and exit
non-zero. Messages say what is wrong, where, and what to try.
"""

import signal
from pathlib import Path


class GenlabError(Exception):
    """A problem with the user's input, reported without a traceback."""


class ConfigError(GenlabError):
    """A config value that cannot work (wrong type, incompatible options)."""


class DataError(GenlabError):
    """Missing, truncated or corrupt data files, or a dataset that cannot be prepared."""


class CheckpointError(GenlabError):
    """A checkpoint that is missing, unreadable or not from genlab."""


class NonFiniteLossError(GenlabError):
    """Training produced a NaN or infinite loss."""


class OutputError(GenlabError):
    """A result that could not be written (disk full, no permission)."""


class Preempted(Exception):  # noqa: N818 - a stop asked for, not an error of the code
    """Training stopped on a signal after saving; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int, path: str) -> None:
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name}: the current step's state is saved in {path}; continue with "
            f"genlab train resume={Path(path).parent.parent}"
        )
