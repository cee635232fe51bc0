"""`genlab train`: fit a model on a dataset, validate every epoch, checkpoint the best and
the last state, log losses and image grids, and optionally test the best checkpoint.

Runs survive faults: last.ckpt is always the latest state (every epoch, every
``checkpoint.every_n_steps`` / ``checkpoint.every_minutes``, and on SIGTERM or Ctrl-C),
written whole; ``ckpt_path=FILE`` or ``resume=RUN_DIR`` continue a run step-exactly from
its checkpoint alone (see genlab.commands.resume and genlab.callbacks.checkpoints)."""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.commands.common import CONFIG_DIR, check_int, check_number, run_command
from genlab.errors import CheckpointError, ConfigError
from genlab.performance import resolve as resolve_performance
from genlab.sweepers import register_optuna_sweeper
from genlab.sweepers.jobs import as_rank_of_sweep_job, divide_threads, sweep_job_for_ddp_ranks

# The config nodes whose classes train builds (trainer, callbacks and logger included).
BUILT_NODES = ("model", "data", "trainer", "callbacks", "logger")

# hydra/sweeper=optuna, genlab's Optuna sweeper, however genlab was installed.
register_optuna_sweeper()


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
    from genlab.trust import is_trusted, targets, training_only, trusted_modules

    trusted = trusted_modules(cfg.get("trusted_modules") or [])
    tree = OmegaConf.to_container(cfg, resolve=False)
    # What the checkpoint commands rebuild: the model without its optimizer factories.
    tree["model"] = {k: v for k, v in (tree.get("model") or {}).items() if not training_only(v)}
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


# The marker that claims a run directory for one run.
CLAIM = ".genlab-run"


def claim_run_directory(output_dir: Path, *, resuming: bool) -> None:
    """Make the run directory this run's alone: two runs started in the same instant must
    not write into one directory. Processes that Lightning's DDP launcher started for the
    same run (LOCAL_RANK set), or that SLURM started for it (SLURM_PROCID), share it."""
    output_dir.mkdir(parents=True, exist_ok=True)
    other_rank = any(os.environ.get(v, "0") != "0" for v in ("LOCAL_RANK", "SLURM_PROCID"))
    if resuming or other_rank:
        return
    try:
        os.close(os.open(output_dir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise ConfigError(
            f"the run directory {output_dir} is already used by another run; start again "
            "(a new directory is made per run) or give one with hydra.run.dir=DIR"
        ) from None


def check_devices(cfg: DictConfig) -> None:
    import torch

    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} needs a CUDA GPU, and torch "
            f"{torch.__version__} sees none on this machine; use trainer=cpu, or "
            "trainer=ddp_cpu for several CPU processes"
        )


def build_loggers(node: Any) -> list[Any]:
    """The loggers of the ``logger`` node: one per entry (``logger=[tensorboard,csv]``,
    ``logger=many``), or the node itself when it is a single logger with a ``_target_``, the
    shape of runs from before several loggers could be combined. MLflow's store directory is
    made first; without mlflow installed, a clear error before any training."""
    from hydra.utils import instantiate

    if not node:
        return []
    entries = [node] if "_target_" in node else [v for v in node.values() if v]
    for entry in entries:
        if str(entry.get("_target_", "")).endswith("MLFlowLogger"):
            import importlib.util

            if importlib.util.find_spec("mlflow") is None:
                raise ConfigError(
                    "logger=mlflow needs MLflow, which is not installed: pip install "
                    "genlab[mlflow] (or mlflow-skinny sqlalchemy alembic), or pick "
                    "logger=tensorboard"
                )
            uri = str(entry.get("tracking_uri") or "")
            if uri.startswith("sqlite:///"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return [instantiate(entry) for entry in entries]


def uses_manual_optimization(cfg: DictConfig) -> bool:
    """Whether the model steps its own optimizers (genlab's GANs, Pix2Pix, CycleGAN)."""
    from hydra.utils import get_class

    target = cfg.model.get("_target_")
    try:
        return target is not None and bool(get_class(target).steps_own_optimizers)
    except (ImportError, ValueError, TypeError, AttributeError):
        return False


def adapt_to_manual_optimization(cfg: DictConfig, overrides: list[str] | None) -> None:
    """Lightning's gradient clipping, gradient accumulation and plain DDP do not apply to a
    model that steps its own optimizers: hand the first two to the GAN's own options and
    let DDP allow the network a step leaves without gradients."""
    trainer, model = cfg.trainer, cfg.model
    clip = trainer.get("gradient_clip_val")
    if clip is not None:
        if trainer.get("gradient_clip_algorithm") not in (None, "norm"):
            raise ConfigError(
                "a GAN clips each network's gradient norm (model.grad_clip_norm); "
                "trainer.gradient_clip_algorithm=value is not supported for it"
            )
        if "grad_clip_norm" not in model:
            raise ConfigError(
                "trainer.gradient_clip_val is not supported by this model, which steps its "
                "own optimizers and has no model.grad_clip_norm option"
            )
        if model.get("grad_clip_norm") not in (None, clip):
            raise ConfigError(
                f"trainer.gradient_clip_val={clip} and model.grad_clip_norm="
                f"{model.grad_clip_norm} disagree; set one of them"
            )
        model.grad_clip_norm = clip
        trainer.gradient_clip_val = None
    accumulate = trainer.get("accumulate_grad_batches") or 1
    if accumulate != 1:
        if "accumulate_grad_batches" not in model:
            raise ConfigError(
                "trainer.accumulate_grad_batches is not supported by this model, which steps "
                "its own optimizers and has no model.accumulate_grad_batches option"
            )
        model.accumulate_grad_batches = accumulate
        trainer.accumulate_grad_batches = 1
    if trainer.get("strategy") == "ddp":
        trainer.strategy = "ddp_find_unused_parameters_true"
    typed = [o.lstrip("+~").split("=")[0].split(".")[0] for o in overrides or []]
    if "optimizer" not in model and "optimizer" in typed:
        raise ConfigError(
            "this model has its own optimizers, model.optimizer_g and model.optimizer_d, so the "
            "top-level optimizer= is not used; set e.g. model.optimizer_g.lr=1e-4 "
            "model.optimizer_d.lr=4e-4 (or their _target_) instead"
        )


# Trainer keys that must be whole numbers, when set (Lightning's own checks fail late and
# with an AssertionError that names no key).
TRAINER_INTS = {
    "max_epochs": -1,
    "max_steps": -1,
    "log_every_n_steps": 1,
    "check_val_every_n_epoch": 1,
    "accumulate_grad_batches": 1,
    "num_nodes": 1,
}


def check_values(cfg: DictConfig) -> None:
    """The values whose mistakes Lightning or torch would report late or without the key:
    the seed, the trainer's counts, the learning rates, the batch size."""
    check_int(cfg, "seed", optional=True, what="the random seed")
    for key, minimum in TRAINER_INTS.items():
        if cfg.trainer.get(key) is not None:
            check_int(cfg, f"trainer.{key}", minimum=minimum)
    if cfg.trainer.get("gradient_clip_val") is not None:
        check_number(cfg, "trainer.gradient_clip_val", example=1.0, positive=True)
    for key in ("optimizer.lr", "model.optimizer_g.lr", "model.optimizer_d.lr"):
        lr = OmegaConf.select(cfg, key)
        if lr is not None:
            check_number(cfg, key, example=1e-3)
            if lr < 0:  # 0 freezes the weights, which has its uses
                raise ConfigError(f"{key} must not be negative (got {lr}); e.g. {key}=0.001")
    if cfg.data.get("batch_size") is not None:
        check_int(cfg, "data.batch_size", minimum=1, example=128)
    max_time = cfg.trainer.get("max_time")
    if max_time is not None and not (
        isinstance(max_time, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", max_time)
    ):
        raise ConfigError(
            f"trainer.max_time must be a wall-clock limit DD:HH:MM:SS (got {max_time!r}); "
            "e.g. trainer.max_time=00:01:00:00 for an hour"
        )


def prepare(cfg: DictConfig, overrides: list[str] | None) -> DictConfig:
    """The config the run uses: resumed from its checkpoint when asked, with the seed
    actually used and the trainer options a GAN needs."""
    from genlab.commands.resume import checkpoint_to_resume, resumed_config

    path = checkpoint_to_resume(cfg)
    if path is not None:
        if not path.exists():
            raise CheckpointError(
                f"ckpt_path={cfg.ckpt_path} does not exist; point it at a .ckpt file written "
                "by genlab train, e.g. outputs/train/DATE/TIME/checkpoints/last.ckpt"
            )
        if overrides is not None:
            cfg = resumed_config(cfg, overrides)
        else:  # composed by genlab.compose, which resumed the config; check the file
            from genlab.checkpoint import check_version, read_checkpoint

            check_version(read_checkpoint(path), path)
    check_values(cfg)
    resolve_performance(cfg, cuda=False)  # the values only; the device is seen later
    cfg = cfg.copy()
    with open_dict(cfg):
        if cfg.seed is None:
            # Drawn here and written to config.yaml, so the run can be repeated.
            cfg.seed = secrets.randbelow(2**31)
        if uses_manual_optimization(cfg):
            adapt_to_manual_optimization(cfg, overrides)
    return cfg


def train(
    cfg: DictConfig, overrides: list[str] | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit ``cfg.model`` on ``cfg.data``; returns the final metrics and the objects built.
    ``overrides`` are the command line's (Hydra's) override strings: given, a resumed run
    applies them on top of its checkpoint's config (genlab.api.compose does it itself)."""
    # Checked before the heavy imports (seconds), so a mistyped value is answered at once.
    cfg = prepare(cfg, overrides)
    # Heavy imports here, so `genlab train --help` and tab completion stay fast.
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
    from pytorch_lightning.utilities import rank_zero_info

    from genlab.atomic import write_text
    from genlab.callbacks.checkpoints import AtomicCheckpointIO, LastCheckpoint
    from genlab.callbacks.device_data import DeviceData
    from genlab.callbacks.hparams import HParamsLogger, write_run_metrics
    from genlab.callbacks.progress_bar import BatchProgressBar
    from genlab.callbacks.run_config import RunConfig
    from genlab.models.base import GenlabModule
    from genlab.performance import apply_matmul_precision, compile_networks, has_convolutions
    from genlab.sweepers.pruning import pruning_callbacks

    check_importable(cfg)
    check_devices(cfg)
    performance = resolve_performance(cfg)
    apply_matmul_precision(performance.matmul_precision)
    note_untrusted(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    output_dir = Path(cfg.paths.output_dir)
    claim_run_directory(output_dir, resuming=bool(cfg.get("resume")))
    run_config = OmegaConf.to_container(cfg, resolve=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    if performance.channels_last and isinstance(model, GenlabModule) and has_convolutions(model):
        model.use_channels_last()
    if isinstance(model, GenlabModule):
        model.steps_per_execution = performance.steps_per_execution
    if performance.compile is not None:
        # In place, after the layout change: parameter names (checkpoints) stay the same.
        compiled = compile_networks(model, performance.compile)
        rank_zero_info(
            f"genlab train: torch.compile ({performance.compile}) on {', '.join(compiled)}"
        )
    if cfg.get("scheduler"):
        if not isinstance(model, GenlabModule):
            raise ConfigError(
                f"scheduler={cfg.scheduler.get('_target_', '?').rpartition('.')[2]} applies to "
                f"genlab's models; {type(model).__name__} is a plain LightningModule, so return "
                "its scheduler from its own configure_optimizers and set scheduler=none"
            )
        model.scheduler_factory = instantiate(cfg.scheduler)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks.append(RunConfig(run_config))
    if performance.data_on_device is not False:
        callbacks.append(DeviceData(performance.data_on_device))
    callbacks.extend(pruning_callbacks(cfg))  # a trial of hydra/sweeper=optuna with a pruner
    if cfg.trainer.get("enable_progress_bar", True) and not any(
        isinstance(c, ProgressBar) for c in callbacks
    ):
        callbacks.append(BatchProgressBar())  # counts batches under fused steps
    # The config and metrics where runs are compared: HParams, hparams.yaml, metrics.json.
    hparams = HParamsLogger(
        run_config,
        monitor=cfg.get("optimized_metric") or "val/loss",
        direction=cfg.get("optimized_direction") or "minimize",
    )
    callbacks.append(hparams)
    logger = build_loggers(cfg.get("logger")) or False
    # A model without a meaningful val/loss (a GAN) names its own metric, or None to keep
    # only the latest checkpoint. A user's LightningModule outside the base gets val/loss.
    monitor = model.checkpoint_monitor if isinstance(model, GenlabModule) else "val/loss"
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor != monitor:
            callback.monitor = monitor
            if monitor is None:
                callback.filename = "epoch{epoch:03d}"
            elif "val/loss" in (callback.filename or ""):
                # The file name shows the metric the model is judged by (val/l1: val_l1...).
                name = monitor.replace("/", "_")
                callback.filename = f"epoch{{epoch:03d}}-{name}{{{monitor}:.4f}}"
    # Without a configured ModelCheckpoint (callbacks=none) Lightning would add its own.
    checkpointing = any(isinstance(c, ModelCheckpoint | LastCheckpoint) for c in callbacks)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=checkpointing,
        plugins=[AtomicCheckpointIO()],
    )

    if trainer.is_global_zero:
        write_text(output_dir / "config.yaml", OmegaConf.to_yaml(run_config))
    rank_zero_info(f"genlab train: outputs in {output_dir}")

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    except RuntimeError as exc:
        if "state_dict" not in str(exc) or cfg.ckpt_path is None:
            raise
        raise CheckpointError(
            f"ckpt_path={cfg.ckpt_path} does not fit the model built with your overrides "
            f"(a model.* override that changes its shape?): {str(exc).splitlines()[0]}"
        ) from None
    for callback in trainer.callbacks:
        if isinstance(callback, LastCheckpoint):
            callback.check_stopped()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if cfg.test and not trainer.interrupted:
        trainer.test(
            model,
            datamodule=datamodule,
            ckpt_path=best or None,
            weights_only=True,
            verbose=trainer.is_global_zero,
        )
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    # The best epoch's values too: the best checkpoint is what the run delivers, so a
    # search compares runs by them (see optimized_value).
    for name, values in hparams.summary()["metrics"].items():
        if values.get("best") is not None and not name.startswith("test/"):
            metrics.setdefault(f"best/{name}", float(values["best"]))
    if trainer.is_global_zero:
        status = "interrupted" if trainer.interrupted else "finished"
        write_run_metrics(
            output_dir / "metrics.json", hparams, status=status, resumed=bool(cfg.get("resume"))
        )
    if best:
        rank_zero_info(f"genlab train: best checkpoint {best}")
    last = output_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        rank_zero_info(f"genlab train: last checkpoint {last}")
    return metrics, {"model": model, "datamodule": datamodule, "trainer": trainer, "cfg": cfg}


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """What a search optimises: the best epoch's value of ``optimized_metric``
    (configs/train.yaml; best by ``optimized_direction``), the value `genlab report` ranks
    jobs by, else its final value. None when the run did not log it; in a sweep, a note
    then names the metrics it did."""
    from genlab.commands.common import in_multirun

    name = str(cfg.get("optimized_metric") or "val/loss")
    for key in (f"best/{name}", name):
        if key in metrics:
            return metrics[key]
    if in_multirun():
        logged = ", ".join(sorted(m for m in metrics if not m.startswith("best/"))) or "none"
        print(
            f"genlab train: note: this run logged no {name}, so it returns nothing to the "
            f"sweeper; set optimized_metric to one it logged ({logged})",
            file=sys.stderr,
        )
    return None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from genlab.errors import Preempted

    overrides = list(HydraConfig.get().overrides.task)
    divide_threads()  # parallel jobs of one machine share its cores
    try:
        with sweep_job_for_ddp_ranks():
            metrics, _ = run_command(lambda c: train(c, overrides), cfg)
    except Preempted as stopped:
        print(f"genlab train: {stopped}", file=sys.stderr)
        sys.exit(stopped.exit_code)
    # Returned for Hydra sweepers that optimise a value.
    return optimized_value(cfg, metrics)


if __name__ == "__main__":
    # A DDP rank Lightning re-launched: tuned as the command line tunes the first process.
    from genlab.tuning import tune_allocator

    tune_allocator()
    # A DDP rank that Lightning re-launched from a job of a sweep runs that job alone.
    sys.argv = [sys.argv[0], *as_rank_of_sweep_job(sys.argv[1:])]
    main()
