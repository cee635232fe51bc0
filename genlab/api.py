"""The small Python API, for notebooks and scripts: load a checkpoint, compose a config,
train from a config. The CLI's commands are these same functions."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig


def load(path: str | Path, *, trusted_modules: Iterable[str] | None = None) -> torch.nn.Module:
    """The model a checkpoint holds, with its weights, in eval mode, through the same safe
    loader as the commands: only classes of genlab and of trusted modules are imported.
    ``model.capabilities`` lists what it declares it can do (Encodes, HasPrior, ...)."""
    from genlab.checkpoint import load_model

    model, _ = load_model(path, trusted_modules=trusted_modules)
    return model


def compose(
    command: str = "train",
    overrides: Sequence[str] = (),
    *,
    config_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> DictConfig:
    """The config ``genlab COMMAND OVERRIDES...`` would run with, e.g.
    ``compose("train", ["model=vae", "trainer.max_epochs=1"])``. ``config_dir`` adds a
    folder of the user's own config groups (as ``--config-dir`` does). The run directory is
    ``output_dir``, or a new ``outputs/COMMAND/DATE/TIME`` under the current folder."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from genlab.commands.common import CONFIG_DIR

    extra = list(overrides)
    if config_dir is not None:
        extra.append(f"hydra.searchpath=[file://{Path(config_dir).resolve()}]")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name=command, overrides=extra)
    stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    with open_dict(cfg):
        cfg.paths.root_dir = os.getcwd()
        if command == "train" and cfg.get("resume") and output_dir is None:
            output_dir = cfg.resume
        cfg.paths.output_dir = str(output_dir or Path("outputs") / command / stamp)
    if command == "train":
        from genlab.commands.resume import checkpoint_to_resume, resumed_config

        if checkpoint_to_resume(cfg) is not None:
            # As the CLI does: the checkpoint's config, these overrides on top.
            cfg = resumed_config(cfg, extra)
    return cfg


def train(cfg: DictConfig) -> dict[str, float]:
    """Run ``genlab train`` on a composed config; returns its final metrics (val/..., test/...).
    Errors are raised (a ``genlab.errors.GenlabError`` for bad input), not printed."""
    from genlab.commands.train import train as run_train

    metrics, _ = run_train(cfg)
    return metrics
