"""What every command's Hydra app shares: where the configs are, and turning input errors
into a clear message and a non-zero exit instead of a traceback."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from genlab.errors import GenlabError


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

T = TypeVar("T")

# Batches are gathered from in-memory tensors, so worker processes would only add overhead;
# Lightning's advice to add them does not apply. Its own pytree deprecation is not ours.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


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


def run_command(command: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    # As `python -m` does: a user's own modules in the current folder are importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return command(cfg)
    except (GenlabError, InstantiationException, MissingMandatoryValue) as exc:
        cause = _user_error(exc)
        if cause is None:
            raise
        message = str(cause)
        if isinstance(cause, MissingMandatoryValue):
            key = getattr(cause, "full_key", "") or "a required value"
            message = (
                f"missing a required config value: {key}; set it on the command line, "
                f"e.g. {key}=..."
            )
        print(f"genlab {cfg.get('task', '')}: error: {message}", file=sys.stderr)
        sys.exit(1)
