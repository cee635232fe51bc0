"""`genlab train`: fit a model on a dataset, validate every epoch, checkpoint the best and
the last state, log losses and image grids, and optionally test the best checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.commands.common import CONFIG_DIR, run_command
from genlab.errors import CheckpointError


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit ``cfg.model`` on ``cfg.data``; returns the final metrics and the objects built."""
    # Heavy imports here, so `genlab train --help` and tab completion stay fast.
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.utilities import rank_zero_info

    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise CheckpointError(
            f"ckpt_path={cfg.ckpt_path} does not exist; point it at a .ckpt file written by "
            "genlab train, e.g. outputs/train/DATE/TIME/checkpoints/last.ckpt"
        )
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)

    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    # A model without a meaningful val/loss (a GAN) names its own metric, or None to keep
    # only the latest checkpoint.
    monitor = getattr(model, "checkpoint_monitor", "val/loss")
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
        OmegaConf.save(model.run_config, output_dir / "config.yaml")
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
