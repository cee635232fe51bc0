"""Resuming a run from its checkpoint alone.

``genlab train ckpt_path=FILE`` (a new run directory) and ``genlab train resume=RUN_DIR``
(that run's directory, its logs appended to) rebuild the run from the config stored in the
checkpoint: its model, data, optimizer, scheduler, trainer, seed and test flag. What the
user typed on the command line goes on top, so nothing has to be repeated and anything can still be
changed (``trainer.max_epochs=20``). An override that names another model than the one the
weights belong to is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.errors import CheckpointError, ConfigError

# What a resumed run takes from its checkpoint; everything else is the new command's.
RESTORED = ("model", "data", "optimizer", "scheduler", "trainer", "performance", "seed", "test")
# The restored nodes that name classes, all checked against the trusted modules.
CHECKED = ("model", "data", "optimizer", "scheduler", "trainer")
# Config groups, as opposed to keys: `model=vae` picks a file, `model.beta=2` sets a value.
GROUPS = ("model", "data", "optimizer", "scheduler", "trainer")


def last_checkpoint_of(run: Path) -> Path:
    """``resume=RUN_DIR``'s checkpoints/last.ckpt, or a clear error; the CLI asks before
    Hydra makes RUN_DIR its run directory (and so creates it)."""
    path = run / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise CheckpointError(
            f"resume={run}: {path} does not exist; resume takes a run directory of genlab "
            "train (outputs/train/DATE/TIME) that wrote checkpoints/last.ckpt"
        )
    return path


def checkpoint_to_resume(cfg: DictConfig) -> Path | None:
    """The checkpoint a run continues from: ``resume=RUN_DIR``'s last.ckpt, or
    ``ckpt_path``; None for a fresh run."""
    if cfg.get("resume"):
        return last_checkpoint_of(Path(str(cfg.resume)).expanduser())
    if cfg.get("ckpt_path"):
        return Path(str(cfg.ckpt_path)).expanduser()
    return None


def _trusted_here(cfg: DictConfig) -> list[str]:
    """Modules trusted for this resume: the trusted ones, plus those of the classes the
    user's own command line and configs name (they chose them)."""
    from genlab.trust import targets, trusted_modules

    tree = OmegaConf.to_container(cfg, resolve=False)
    chosen = [t for node in CHECKED for _, t in targets(tree.get(node))]
    # Optimizer factories are built for training: torch's optimizers, never code of the
    # checkpoint's choosing.
    return [*trusted_modules(cfg.get("trusted_modules") or []), "torch.optim", *chosen]


def resumed_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """``cfg`` with the checkpoint's stored model, data, optimizer, trainer, seed and test,
    and the user's ``overrides`` (Hydra's override strings) applied again on top."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from genlab.checkpoint import check_version, read_checkpoint
    from genlab.models.base import CONFIG_KEY
    from genlab.trust import check_trusted

    path = checkpoint_to_resume(cfg)
    assert path is not None
    checkpoint = read_checkpoint(path)
    check_version(checkpoint, path)
    stored = checkpoint[CONFIG_KEY]
    check_trusted(
        {node: stored.get(node) for node in CHECKED},
        _trusted_here(cfg),
        source=str(path),
    )
    merged = cfg.copy()
    with open_dict(merged):
        for node in RESTORED:
            if node in stored:
                merged[node] = stored[node]
            elif node == "scheduler":  # a run from before schedulers had none
                merged[node] = None
        # The stored trainer wrote into the old run directory.
        merged.trainer.default_root_dir = cfg.trainer.default_root_dir
        merged.ckpt_path = str(path)
        for override in OverridesParser.create().parse_overrides(overrides):
            _apply(merged, cfg, override, stored, path)
    _check_schedule_length(merged, stored)
    return merged


# Schedulers whose learning rate is a function of the run's length, which torch keeps in
# their saved state (CosineAnnealingLR's T_max, SequentialLR's milestones).
LENGTH_BASED = ("cosine", "linear_decay", "warmup_cosine")
LENGTH_KEYS = ("max_epochs", "max_steps")


def _check_schedule_length(merged: DictConfig, stored: dict) -> None:
    """Refuse a resume that changes the length a length-based schedule spreads over: the
    restored scheduler would keep the old length (a cosine past its end climbs back up)."""
    scheduler = merged.get("scheduler")
    name = str((scheduler or {}).get("_target_", "")).rpartition(".")[2]
    if name not in LENGTH_BASED:
        return
    old = stored.get("trainer") or {}
    for key in LENGTH_KEYS:
        before, after = old.get(key), merged.trainer.get(key)
        if before != after:
            raise ConfigError(
                f"trainer.{key}={after} changes the length that this run's scheduler={name} "
                f"spreads its learning rate over (trainer.{key}={before}), and a resumed "
                "scheduler keeps the length it was built with; resume with the run's own "
                f"trainer.{key}, or start a new run (ckpt_path= with scheduler=none continues "
                "at the last learning rate)"
            )


def _apply(merged: DictConfig, cfg: DictConfig, override: Any, stored: dict, path: Path) -> None:
    key = override.key_or_group
    root = key.split(".")[0]
    if root not in RESTORED or override.package:
        return  # already the new command's own value
    if key in GROUPS:
        if key == "model":
            _check_same_model(cfg, stored, path)
        else:
            merged[key] = cfg[key]
    elif override.is_delete():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(merged, parent) if parent else merged
        if node is not None and leaf in node:
            del node[leaf]
    else:
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)


def _check_same_model(cfg: DictConfig, stored: dict, path: Path) -> None:
    wanted = cfg.model.get("_target_")
    held = (stored.get("model") or {}).get("_target_")
    if wanted != held:
        raise ConfigError(
            f"ckpt_path={path} holds a {held} checkpoint, but the command line asks for "
            f"{wanted}; drop the model= override to resume it (the model comes from the "
            "checkpoint), or train the other model without ckpt_path"
        )
