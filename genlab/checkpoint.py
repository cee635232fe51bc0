"""Load genlab checkpoints as data: tensors and plain values only, never code.

A checkpoint is a file from outside. It is read with ``torch.load(weights_only=True)``, which
refuses any pickled object other than tensors and plain containers; the model class comes
from genlab's own registry, looked up by the name stored in the checkpoint, so a crafted
``_target_`` cannot make genlab call anything else.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from genlab.errors import CheckpointError


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded without executing code from it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass ckpt=PATH to a .ckpt file written by "
            "genlab train, e.g. outputs/train/DATE/TIME/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names the global it blocked; anything else is a file that is not a pickle.
        blocked = re.search(r"unsupported (?:GLOBAL|global)[: ]+(\S+)", str(exc), re.IGNORECASE)
        if blocked is None:
            raise CheckpointError(
                f"{path} is not a readable checkpoint (not a torch file, or corrupt)"
            ) from None
        raise CheckpointError(
            f"refused to load {path}: it holds a Python object ({blocked.group(1)}) that could "
            "run code when unpickled; genlab loads only tensors and plain values. Use a "
            "checkpoint written by genlab train."
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or not a torch file): {exc}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no state_dict")
    if "genlab_config" not in checkpoint:
        raise CheckpointError(
            f"{path} was not written by genlab train: it has no genlab_config entry"
        )
    return checkpoint


def model_class(target: str) -> type:
    from genlab.models import MODEL_CLASSES

    try:
        return MODEL_CLASSES[target]
    except KeyError:
        raise CheckpointError(
            f"the checkpoint names model class {target!r}, which is not a genlab model; "
            f"known: {', '.join(sorted(MODEL_CLASSES))}"
        ) from None


def load_model(path: str | Path) -> tuple[torch.nn.Module, DictConfig]:
    """Rebuild the model a checkpoint was trained as, with its weights, in eval mode.

    Returns the model and the run's resolved config (``model``, ``data``, ...).
    """
    checkpoint = read_checkpoint(path)
    config = OmegaConf.create(checkpoint["genlab_config"])
    model_cfg = OmegaConf.to_container(config.model)
    cls = model_class(str(model_cfg.pop("_target_", "")))
    # Optimizer factories (optimizer, optimizer_g, optimizer_d) are for training only.
    kwargs = {
        k: v
        for k, v in model_cfg.items()
        if not k.startswith("_") and not k.startswith("optimizer")
    }
    try:
        model = cls(**kwargs)
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not match its model {cls.__name__}: {exc}") from None
    model.eval()
    return model, config
