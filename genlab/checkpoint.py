"""Load genlab checkpoints as data: tensors and plain values only, never code.

A checkpoint is a file from outside. It is read with ``torch.load(weights_only=True)``, which
refuses any pickled object other than tensors and plain containers. The classes its config
names (model, networks, data) are built only when they lie in genlab or in a module the user
trusted (genlab.trust), checked before anything is imported, so a crafted ``_target_``
cannot make genlab import or call anything else.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from genlab.errors import CheckpointError
from genlab.inputs import check_checkpoint_file
from genlab.models.base import CONFIG_KEY, VERSION_KEY
from genlab.trust import check_trusted, training_only
from genlab.trust import trusted_modules as trusted_modules_of


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded without executing code from it."""
    path = Path(path).expanduser()
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names the global it blocked; anything else is a file that is not a pickle.
        blocked = re.search(r"unsupported (?:GLOBAL|global)[: ]+(\S+)", str(exc), re.IGNORECASE)
        if blocked is None:
            raise not_a_checkpoint(path) from None
        raise CheckpointError(
            f"refused to load {path}: it holds a Python object ({blocked.group(1)}) that could "
            "run code when unpickled; genlab loads only tensors and plain values. Use a "
            "checkpoint written by genlab train."
        ) from None
    except PermissionError:
        raise CheckpointError(
            f"cannot read checkpoint {path}: permission denied; check the file's permissions"
        ) from None
    except Exception:
        # Text, random bytes or a truncated file fail anywhere in torch's readers (EOFError,
        # IndexError, KeyError, struct.error, RuntimeError, ...): all mean the same to a user.
        raise not_a_checkpoint(path) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no state_dict")
    if CONFIG_KEY not in checkpoint:
        raise CheckpointError(
            f"{path} was not written by genlab train: it has no genlab_config entry"
        )
    return checkpoint


def not_a_checkpoint(path: Path) -> CheckpointError:
    """The error for a file torch cannot read. torch's own messages are left out: they name
    its internals (list index out of range, KeyError: 101) or advise retrying with
    weights_only=False, which would let the file run code."""
    return CheckpointError(
        f"{path} is not a readable checkpoint: not a torch checkpoint file, or a truncated or "
        f"corrupt one ({path.stat().st_size} bytes); pass a .ckpt file written by genlab "
        "train, e.g. outputs/train/DATE/TIME/checkpoints/last.ckpt"
    )


def check_version(checkpoint: dict[str, Any], path: Path | str) -> None:
    """Refuse checkpoints written before the model layout this genlab reads."""
    from genlab import __version__

    if VERSION_KEY not in checkpoint:
        raise CheckpointError(
            f"{path} was written by genlab 0.1.0, whose models kept their networks inside and "
            f"whose config layout genlab {__version__} no longer reads; retrain it with this "
            "genlab (the same genlab train command works), or use genlab 0.1.0 to read it"
        )


def model_config(
    checkpoint: dict[str, Any], path: Path | str, *, trusted_modules: Iterable[str] | None = None
) -> dict[str, Any]:
    """The checkpoint's model config without its training-only factories, checked: every
    class it names lies in genlab or a trusted module, and every network is described."""
    config = checkpoint[CONFIG_KEY]
    model = {k: v for k, v in dict(config["model"]).items() if not training_only(v)}
    check_trusted(
        {"model": model, "data": config.get("data")},
        trusted_modules_of(trusted_modules),
        source=str(path),
    )
    missing = [k for k, v in model.items() if v is None and k in checkpoint_networks(checkpoint)]
    if missing:
        raise CheckpointError(
            f"{path} cannot be rebuilt: its model was built in Python with networks "
            f"({', '.join(missing)}) that are not genlab Networks, so the checkpoint does not "
            "say how to build them; build the model yourself and load the state_dict, or "
            "train through genlab train"
        )
    return model


def checkpoint_networks(checkpoint: dict[str, Any]) -> set[str]:
    """Names of the model's top-level modules, from the state_dict's keys."""
    return {key.split(".")[0] for key in checkpoint["state_dict"]}


def load_model(
    path: str | Path, *, trusted_modules: Iterable[str] | None = None
) -> tuple[torch.nn.Module, DictConfig]:
    """Rebuild the model a checkpoint was trained as, with its weights, in eval mode.

    Returns the model and the run's resolved config (``model``, ``data``, ...). Only classes
    of genlab and of trusted modules (see genlab.trust) are imported.
    """
    return build_model(read_checkpoint(path), path, trusted_modules=trusted_modules)


def build_model(
    checkpoint: dict[str, Any], path: str | Path, *, trusted_modules: Iterable[str] | None = None
) -> tuple[torch.nn.Module, DictConfig]:
    """``load_model`` of a checkpoint already read (``read_checkpoint``), for callers that
    also want its other entries (the epoch)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    check_version(checkpoint, path)
    model_cfg = model_config(checkpoint, path, trusted_modules=trusted_modules)
    target = model_cfg.get("_target_", "?")
    try:
        model = instantiate(model_cfg, _convert_="all")
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError, InstantiationException) as exc:
        raise CheckpointError(f"{path} does not match its model {target}: {exc}") from None
    model.eval()
    return model, OmegaConf.create(checkpoint[CONFIG_KEY])
