"""`genlab train`: fit a model on a dataset, validate every epoch, checkpoint the best and
the last state, log losses and image grids, and optionally test the best checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.commands.common import CONFIG_DIR, run_command
from genlab.errors import CheckpointError, ConfigError

# The config nodes whose classes train builds (trainer, callbacks and logger included).
BUILT_NODES = ("model", "data", "trainer", "callbacks", "logger")


def check_importable(cfg: DictConfig) -> None:
    """Import every ``_target_`` train will build, before any work: a typo or a module not on
    the import path fails here with what to do, not after loading the data."""
    from hydra.utils import get_object

    from genlab.trust import targets

    tree = OmegaConf.to_container(cfg, resolve=False)
    for node in BUILT_NODES:
        for key, target in targets(tree.get(node), node):
            try:
                get_object(target)
            except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
                cause = exc.__cause__ or exc
                raise ConfigError(
                    f"{key}._target_={target} cannot be imported ({type(cause).__name__}: "
                    f"{cause}). Put its module in the current folder, on PYTHONPATH, or install "
                    "it (pip install -e .); check the spelling of the module and class names"
                ) from None


def note_untrusted(cfg: DictConfig) -> None:
    """Say, before training, what the checkpoint commands will need to read this run's
    checkpoints when its model lives outside genlab and the trusted modules."""
    from genlab.trust import is_trusted, targets, trusted_modules

    trusted = trusted_modules(cfg.get("trusted_modules") or [])
    tree = OmegaConf.to_container(cfg, resolve=False)
    outside = sorted(
        {
            target.split(".")[0]
            for node in ("model", "data")
            for _, target in targets(tree.get(node))
            if not is_trusted(target, trusted)
        }
    )
    if outside:
        names = ",".join(outside)
        print(
            f"genlab train: note: the model or data comes from {names}, outside genlab; "
            f"the checkpoint commands load its checkpoints once you trust it: add "
            f"trusted_modules=[{names}] or set GENLAB_TRUSTED_MODULES={names}"
        )


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit ``cfg.model`` on ``cfg.data``; returns the final metrics and the objects built."""
    # Heavy imports here, so `genlab train --help` and tab completion stay fast.
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.utilities import rank_zero_info

    from genlab.atomic import write_text
    from genlab.callbacks.run_config import RunConfig
    from genlab.models.base import GenlabModule

    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise CheckpointError(
            f"ckpt_path={cfg.ckpt_path} does not exist; point it at a .ckpt file written by "
            "genlab train, e.g. outputs/train/DATE/TIME/checkpoints/last.ckpt"
        )
    check_importable(cfg)
    note_untrusted(cfg)
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)

    output_dir = Path(cfg.paths.output_dir)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks.append(RunConfig(run_config))
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    # A model without a meaningful val/loss (a GAN) names its own metric, or None to keep
    # only the latest checkpoint. A user's LightningModule outside the base gets val/loss.
    monitor = model.checkpoint_monitor if isinstance(model, GenlabModule) else "val/loss"
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor != monitor:
            callback.monitor = monitor
            if monitor is None:
                callback.filename = "epoch{epoch:03d}"
    # Without a configured ModelCheckpoint (callbacks=none) Lightning would add its own.
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, enable_checkpointing=checkpointing
    )

    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text(output_dir / "config.yaml", OmegaConf.to_yaml(run_config))
    rank_zero_info(f"genlab train: outputs in {output_dir}")

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint is not None else ""
    last = checkpoint.last_model_path if checkpoint is not None else ""
    if cfg.test and not trainer.interrupted:
        trainer.test(
            model,
            datamodule=datamodule,
            ckpt_path=best or None,
            weights_only=True,
            verbose=trainer.is_global_zero,
        )
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if best:
        rank_zero_info(f"genlab train: best checkpoint {best}")
        rank_zero_info(f"genlab train: last checkpoint {last}")
    return metrics, {"model": model, "datamodule": datamodule, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics, _ = run_command(train, cfg)
    # Returned for Hydra sweepers that optimise a value.
    return metrics.get("val/loss")


if __name__ == "__main__":
    main()
