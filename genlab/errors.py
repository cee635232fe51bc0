"""Errors a user can act on.

Every failure caused by input (a config value, a data file, a checkpoint) is raised as a
``GenlabError``; the command entry points print its message without a traceback and exit
non-zero. Messages say what is wrong, where, and what to try.
"""


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
