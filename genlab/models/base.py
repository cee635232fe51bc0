"""The one LightningModule base of every genlab model, and what all families share.

``GenlabModule`` holds, once each:
- the record that goes into every checkpoint: the run config (written by ``genlab train``'s
  ``RunConfig`` callback) or, for a model trained from Python, a config rebuilt from the
  model's own hyperparameters and its networks' build configs; plus the genlab version;
- the hyperparameters: every plain constructor argument, while networks and optimizer
  factories (callables) are kept out;
- the optimizer factory type and the one way a factory becomes an optimizer;
- learning-rate schedulers (genlab.schedulers): one per optimizer, built from
  ``scheduler_factory``, and, for models that step their own optimizers (GANs), stepped
  here, so that no subclass has to; the learning rates logged as ``train/lr``;
- N(0, I) noise drawn where a seeded generator lives, and the fixed noise batch that the
  image grids decode every epoch;
- logging a dict of named loss terms as ``stage/name``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.parsing import collect_init_args
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from genlab.errors import ConfigError
from genlab.latent import gaussian_draws
from genlab.models.capabilities import capabilities_of
from genlab.nn.network import describe

OptimizerFactory = Callable[..., torch.optim.Optimizer]
# factory(optimizer, *, total_steps, total_epochs, steps_per_epoch) -> Lightning's
# lr-scheduler dict; see genlab.schedulers.
SchedulerFactory = Callable[..., dict[str, Any]]

# Checkpoint keys genlab adds to Lightning's.
CONFIG_KEY = "genlab_config"
VERSION_KEY = "genlab_version"
# Scheduler steps a checkpoint was saved before: see GenlabModule.on_save_checkpoint.
PENDING_LR_KEY = "genlab_pending_lr_steps"


def build_optimizer(
    factory: OptimizerFactory | None, params: Iterable[nn.Parameter], *, key: str
) -> torch.optim.Optimizer:
    """``factory(params=...)``, or a clear error naming the config key ``key``."""
    if factory is None or not callable(factory):
        what = "is empty" if factory is None else "is not an optimizer factory"
        fix = (
            "pick one with optimizer=adam (or sgd, adamw, rmsprop)"
            if key == "optimizer"
            else f"give {key} a _target_ such as torch.optim.Adam with _partial_: true"
        )
        raise ConfigError(
            f"the model has no optimizer: {key} {what}; {fix}, or in Python pass "
            f"{key.rpartition('.')[2]}=functools.partial(torch.optim.Adam, lr=1e-3)"
        )
    return factory(params=params)


def plain(value: Any) -> Any:
    """``value`` with every OmegaConf container turned into dicts and lists."""
    from omegaconf import Container, OmegaConf

    if isinstance(value, Container):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value


def _is_plain(value: Any) -> bool:
    """Whether a constructor argument is a hyperparameter (data), not an object."""
    return not (callable(value) or isinstance(value, nn.Module))


class GenlabModule(pl.LightningModule):
    """Base of every genlab model. Subclasses call ``super().__init__()`` first; their
    keyword arguments that are plain values become ``self.hparams`` (and so checkpoint
    data), those that are networks are remembered for the checkpoint's build config.
    ``optimizer_factory`` is the factory ``configure_optimizers`` builds from."""

    # The metric whose best value picks the "best" checkpoint; None keeps only the latest.
    checkpoint_monitor: str | None = "val/loss"
    # The grid of samples decodes the same codes every epoch, so epochs compare directly.
    NUM_FIXED_SAMPLES = 64
    SAMPLES_PER_ROW = 8
    optimizer_factory: OptimizerFactory | None = None
    # True for models that step their own optimizers (manual optimization): `genlab train`
    # then hands trainer.gradient_clip_val and accumulate_grad_batches to their options.
    steps_own_optimizers: bool = False
    # Set by `genlab train` from scheduler=: one scheduler per optimizer; None for none.
    scheduler_factory: SchedulerFactory | None = None
    # How the learning rates are logged, in build_optimizers' order: train/lr_NAME each
    # (train/lr for a single optimizer left unnamed).
    optimizer_names: tuple[str, ...] = ()
    # Optimizer steps per Lightning iteration: 1, K or "auto" (genlab.models.fusion);
    # `genlab train` sets it from performance.steps_per_execution.
    steps_per_execution: int | str = 1

    def __init__(self) -> None:
        super().__init__()
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        init_args: dict[str, Any] = {}
        for local_args in collect_init_args(caller, []):
            init_args.update(local_args)
        # Kept out of the module tree (the model registers them itself, under any name).
        self.__dict__["_networks"] = {
            k: v for k, v in init_args.items() if isinstance(v, nn.Module)
        }
        objects = [k for k, v in init_args.items() if not _is_plain(v)]
        self.save_hyperparameters(ignore=objects, frame=caller, logger=False)

    @property
    def capabilities(self) -> list[str]:
        """What this model declares it can do: Encodes, Decodes, HasPrior, ... (see
        genlab.models.capabilities)."""
        return capabilities_of(self)

    # Noise.

    def noise(
        self,
        n: int,
        dim: int,
        *,
        generator: torch.Generator | None = None,
        truncation: float | None = None,
    ) -> Tensor:
        """N(0, I) draws [n, dim] on the model's device and dtype, truncated at
        ±``truncation`` when given (see genlab.latent.gaussian_draws)."""
        return gaussian_draws(
            (n, dim), truncation=truncation, generator=generator, device=self.device,
            dtype=self.dtype,
        )  # fmt: skip

    def register_fixed_noise(self, dim: int) -> None:
        """The buffer ``fixed_z`` [NUM_FIXED_SAMPLES, dim]: drawn from its own generator, so
        it is the same whatever the run's seed and leaves the global random stream (and so
        the weights' seeding) untouched."""
        generator = torch.Generator().manual_seed(0)
        self.register_buffer(
            "fixed_z", torch.randn(self.NUM_FIXED_SAMPLES, dim, generator=generator)
        )

    # Logging.

    def log_terms(
        self, terms: Mapping[str, Tensor], stage: str, *, batch_size: int, prog_bar: str = "loss"
    ) -> None:
        """Log every named term as ``stage/name``; validation and test values are averaged
        across processes (and over the epoch, exactly).

        Training values are per step, and Lightning writes them to the loggers only every
        ``trainer.log_every_n_steps`` steps; each ``self.log`` call, though, costs about half
        a millisecond of Lightning's bookkeeping, as long as a whole step of a small MLP. So
        training terms are logged only at the steps the loggers write and at an epoch's last
        batch (so that each epoch ends with its own values); the progress bar's term is
        logged every step while a bar is shown."""
        sync = stage != "train"
        fusion = self.fusion
        if stage == "train" and fusion is not None:
            fusion.record(terms, stage, prog_bar)
            return
        if stage == "train" and not self.logs_this_step():
            shown = self._trainer is not None and self._trainer.progress_bar_callback is not None
            terms = {prog_bar: terms[prog_bar]} if shown and prog_bar in terms else {}
        for name, value in terms.items():
            self.log(
                f"{stage}/{name}",
                value.detach(),
                batch_size=batch_size,
                prog_bar=name == prog_bar,
                sync_dist=sync,
            )

    def logs_this_step(self) -> bool:
        """Whether the loggers write this training step's values (every
        ``trainer.log_every_n_steps``), or it is an epoch's last batch. True outside a
        trainer's fit, so nothing is lost where that cannot be told."""
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None)
        if trainer is None or connector is None or trainer.state.fn != "fit":
            return True
        try:
            return bool(
                connector.should_update_logs
                or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
            )
        except AttributeError:  # another Lightning's internals: log every step
            return True

    # The networks and their memory layout.

    def networks(self) -> dict[str, nn.Module]:
        """The networks this model was built with, by argument name (the encoder and
        decoder, G and D, ...); a model that builds its own layers gives its direct
        submodules. ``performance.compile`` compiles each of them."""
        return dict(self._networks) or dict(self.named_children())

    # Whether the weights are in the channels-last layout (performance.channels_last).
    channels_last = False

    def use_channels_last(self) -> None:
        """Moves the weights to the channels-last (NHWC) layout. Batches need no change: a
        convolution whose weight is channels-last returns channels-last activations whatever
        its input's layout, so from the first layer on the network runs NHWC."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True

    # Pictures.

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        """The grids logged every validation epoch, by tag; each a list of equally long
        image rows [n, C, H, W] in [0, 1]. ``x`` is a fixed validation batch. None here."""
        return {}

    # Steps: models with one objective implement ``step``; GANs override the hooks.

    def step(self, batch: Any, stage: str) -> Tensor:
        """The loss of one batch for ``stage`` (train, val or test), its terms logged."""
        raise NotImplementedError(f"{type(self).__name__} implements no step(batch, stage)")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        fusion = self.fusion
        if fusion is not None:
            return fusion.run(batch)
        return self.step(batch, "train")

    # Several optimizer steps per Lightning iteration (genlab.models.fusion).

    @property
    def fusion(self) -> Any:
        """The fused-steps loop of the fit under way, or None (one step an iteration)."""
        return self.__dict__.get("_fusion")

    def can_fuse_steps(self) -> bool:
        """Whether fused steps apply: here, to a model trained by ``step`` with Lightning's
        automatic optimization; a model that steps its own optimizers says so itself."""
        return self.automatic_optimization and (
            type(self).training_step is GenlabModule.training_step
        )

    def train_batch(self, batch: Any) -> None:
        """One training batch of a model that steps its own optimizers (a GAN), through
        ``training_optimizers``, ``backward_loss`` and ``step_optimizer``, so that it runs
        alike in a fused chunk and alone."""
        raise NotImplementedError(f"{type(self).__name__} implements no train_batch(batch)")

    def training_optimizers(self) -> list[Any]:
        """The optimizers a training batch steps: the raw ones in a fused chunk, Lightning's
        wrappers (which count the steps) otherwise."""
        fusion = self.fusion
        if fusion is not None:
            return fusion.optimizers
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def backward_loss(self, loss: Tensor) -> None:
        fusion = self.fusion
        if fusion is not None:
            fusion.backward(loss)
        else:
            self.manual_backward(loss)

    def step_optimizer(self, optimizer: Any) -> None:
        fusion = self.fusion
        if fusion is not None:
            fusion.optimizer_step(optimizer)
        else:
            optimizer.step()

    def setup(self, stage: str) -> None:
        if stage != "fit" or self._trainer is None:
            return
        automatic = self.__dict__.pop("_automatic_before_fusion", None)
        if automatic is not None:  # left by an earlier fused fit
            self.automatic_optimization = automatic
        if self.steps_per_execution == 1:
            return
        from genlab.models.fusion import FusedSteps, resolve_steps

        steps = resolve_steps(self.steps_per_execution, self, self.trainer)
        if steps > 1:
            fusion = FusedSteps(self, self.trainer, steps)
            fusion.attach()
            self.__dict__["_fusion"] = fusion

    def teardown(self, stage: str) -> None:
        fusion = self.__dict__.pop("_fusion", None)
        if fusion is not None:
            fusion.detach()

    def on_train_start(self) -> None:
        fusion = self.fusion
        if fusion is not None:
            fusion.on_train_start()

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.step(batch, "test")

    # Optimizers.

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def build_optimizers(self) -> list[torch.optim.Optimizer]:
        """The model's optimizers; subclasses with several (a GAN's G and D) override this.
        Here: the one built from ``optimizer_factory``."""
        return [
            build_optimizer(self.optimizer_factory, self.trainable_parameters(), key="optimizer")
        ]

    def configure_optimizers(self) -> Any:
        """The optimizers of ``build_optimizers`` (one alone, several as a list) or, with a
        ``scheduler_factory``, ``(optimizers, one scheduler dict per optimizer)``."""
        optimizers = self.build_optimizers()
        if self.scheduler_factory is None:
            return optimizers[0] if len(optimizers) == 1 else optimizers
        from genlab.schedulers import training_length

        manual = not self.automatic_optimization
        length = training_length(self.trainer, manual=manual)
        schedulers, monitors = [], []
        for optimizer in optimizers:
            entry = dict(self.scheduler_factory(optimizer, **length))
            monitor = None
            if isinstance(entry["scheduler"], ReduceLROnPlateau):
                monitor = entry.get("monitor") or self.checkpoint_monitor
                if monitor is None:
                    raise ConfigError(
                        f"scheduler=plateau needs a metric to watch, and {type(self).__name__} "
                        "has no val/loss; name one it logs, e.g. scheduler.monitor=val/d_fake"
                    )
                entry["monitor"] = monitor
            if manual:  # Lightning ignores (and warns about) these without stepping itself
                entry = {k: v for k, v in entry.items() if k not in ("monitor", "strict")}
            schedulers.append(entry)
            monitors.append(monitor)
        self.__dict__["_lr_monitors"] = monitors
        return optimizers, schedulers

    # Schedulers. Lightning steps them for models it optimizes; for models that step their
    # own optimizers the hooks below do, at the moments Lightning would: step schedulers
    # after every training batch, epoch ones after an epoch's last batch, plateau ones with
    # the metric of the epoch's validation. A checkpoint written in between (by a callback
    # at a batch's or an epoch's end, before these hooks or Lightning's own stepping) records
    # the steps still owed, and a resumed run takes them before its first batch. Without
    # that a resumed schedule would lag one step (Lightning itself skips the plateau step of
    # the epoch a run resumes at).

    def _scheduler_configs(self) -> list[Any]:
        trainer = self._trainer
        return list(trainer.lr_scheduler_configs) if trainer is not None else []

    def _step_schedulers(self, owed: Mapping[str, Any]) -> None:
        """Take the steps ``owed``: intervals (step, epoch) and a plateau metric value."""
        monitors = self.__dict__.get("_lr_monitors") or []
        for i, config in enumerate(self._scheduler_configs()):
            if isinstance(config.scheduler, ReduceLROnPlateau):
                value = owed.get("plateau", {}).get(monitors[i] if i < len(monitors) else None)
                if value is not None:
                    config.scheduler.step(value)
            elif config.interval in owed.get("intervals", ()):
                config.scheduler.step()

    def _plateau_values(self) -> dict[str, float]:
        """The metrics the plateau schedulers watch, as the last validation left them."""
        trainer = self.trainer
        values = {}
        for monitor in self.__dict__.get("_lr_monitors") or []:
            if monitor is None:
                continue
            value = trainer.callback_metrics.get(monitor)
            if value is None:
                raise ConfigError(
                    f"scheduler=plateau watches {monitor}, which the model does not log; pick "
                    f"one of {', '.join(sorted(trainer.callback_metrics))} with "
                    "scheduler.monitor=NAME"
                )
            values[monitor] = float(value)
        return values

    def on_train_epoch_start(self) -> None:
        self.__dict__.pop("_pending_lr_steps", None)
        fusion = self.fusion
        if fusion is not None:
            fusion.datamodule.start_epoch(self.trainer.current_epoch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.scheduler_factory is None or not self._scheduler_configs():
            return
        owed = self.__dict__.pop("_owed_lr_steps", None)
        if owed:  # resumed from a checkpoint written before these steps were taken
            self._step_schedulers(owed)
        if not self.automatic_optimization:
            trainer = self.trainer
            last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
            last = last or batch_idx + 1 >= trainer.num_training_batches
            self.__dict__["_pending_lr_steps"] = {
                "intervals": ["step", "epoch"] if last else ["step"]
            }
        self._log_learning_rates()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.automatic_optimization:
            pending = self.__dict__.pop("_pending_lr_steps", None)
            if pending:
                self._step_schedulers(pending)

    def on_validation_end(self) -> None:
        trainer = self._trainer
        if trainer is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if not any(self.__dict__.get("_lr_monitors") or []):
            return
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # a validation within the epoch (val_check_interval < 1)
        values = self._plateau_values()
        if self.automatic_optimization:
            # Lightning steps them after the epoch's end hooks, where last.ckpt is written.
            self.__dict__["_pending_lr_steps"] = {"plateau": values}
        else:
            self._step_schedulers({"plateau": values})

    def learning_rates(self) -> dict[str, float]:
        """``train/lr`` (or ``train/lr_NAME`` per optimizer): each optimizer's current lr."""
        optimizers = self.trainer.optimizers
        names = list(self.optimizer_names) or (
            [""] if len(optimizers) == 1 else [str(i) for i in range(len(optimizers))]
        )
        return {
            f"train/lr_{name}" if name else "train/lr": float(optimizer.param_groups[0]["lr"])
            for name, optimizer in zip(names, optimizers, strict=False)
        }

    def _log_learning_rates(self) -> None:
        """The learning rates of this step, at the steps the loggers write (see
        ``log_terms``; a fused chunk writes them with its logging steps)."""
        if self.fusion is not None or not self.logs_this_step():
            return
        for key, lr in self.learning_rates().items():
            self.log(key, lr, on_step=True, on_epoch=False, batch_size=1)

    # Checkpoints.

    def model_config(self) -> dict[str, Any]:
        """How to rebuild this model: its class, its hyperparameters and its networks'
        build configs (None for a network genlab cannot describe)."""
        cls = type(self)
        config: dict[str, Any] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
        # hparams gather every __init__ of the class chain; keep what this class takes.
        parameters = inspect.signature(cls).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        config.update({k: v for k, v in self.hparams.items() if takes_any or k in parameters})
        for name, network in self._networks.items():
            config[name] = describe(network)
        return config

    def describe_run(self) -> dict[str, Any]:
        """A run config for a model trained outside ``genlab train``: the model's own, and
        the data module's where it records its hyperparameters."""
        run: dict[str, Any] = {"model": self.model_config()}
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and datamodule.hparams:
            cls = type(datamodule)
            run["data"] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
            run["data"].update(plain(dict(datamodule.hparams)))
        return run

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain dicts, lists and scalars only, so checkpoints load with weights_only=True.
        from genlab import __version__

        checkpoint[VERSION_KEY] = __version__
        pending = self.__dict__.get("_pending_lr_steps")
        if pending:
            checkpoint[PENDING_LR_KEY] = plain(pending)
        if CONFIG_KEY not in checkpoint:
            checkpoint[CONFIG_KEY] = self.describe_run()
        # Lightning stores the model's and the data module's hyperparameters as given; Hydra
        # may have passed OmegaConf lists, which are pickled objects, not plain data.
        for key in ("hyper_parameters", "datamodule_hyper_parameters", CONFIG_KEY):
            if key in checkpoint:
                checkpoint[key] = plain(checkpoint[key])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Taken before the next training batch, once Lightning has restored the schedulers.
        self.__dict__["_owed_lr_steps"] = checkpoint.get(PENDING_LR_KEY)
