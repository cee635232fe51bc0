"""Several optimizer steps per Lightning iteration: ``performance.steps_per_execution``.

Lightning spends about 0.3 ms of Python on every training iteration (its hooks, the
optimizer closure, progress counters, the logged-value collection): on a CPU as long as a
whole step of a small MLP, so such a model trained through Lightning ran at 0.6x of a
plain PyTorch loop. With K steps per execution the training sampler yields the indices of
K consecutive batches at once (one gather, one DataLoader fetch, of the stored uint8
images), and the model's ``training_step`` splits them, converts each batch to float just
before its step (so that it is still in the cache when the step reads it) and takes K
optimizer steps itself, each with the raw optimizer: Lightning's share is then paid once
per K steps. (Keras calls the same idea
``steps_per_execution``.)

What stays as it was, step for step: the batches and their order; every optimizer step,
``trainer.global_step`` and ``trainer.max_steps`` (a chunk stops where max_steps is
reached); learning-rate schedules; gradient clipping (``trainer.gradient_clip_val``, both
algorithms; a GAN's ``model.grad_clip_norm``); the callbacks' and the model's
``on_before_backward``, ``on_after_backward``, ``on_before_zero_grad`` and
``on_before_optimizer_step`` hooks at every step (genlab's NaN guard among them); the
per-step values written to the loggers at every ``log_every_n_steps``-th step under that
step's number, the learning rates with them; the values the progress bar and the
callbacks read (``trainer.callback_metrics``, those of the chunk's last step); validation,
the epoch-level values and checkpoints, from which a run resumes at the batch where it
stopped.

What changes: Lightning's per-iteration hooks (``on_train_batch_start``/``_end``: the
progress bar, which genlab's ``BatchProgressBar`` keeps counting in batches, checkpoints
due every n steps or minutes, a stop signal) run once per K steps, so a checkpoint due at
step n is written at the end of the chunk holding step n;
``trainer.val_check_interval`` and ``limit_train_batches`` count batches as always (genlab
hands them over: an integer ``val_check_interval`` must then be a multiple of K, and an
epoch whose batches are not a multiple of K also validates after its last, shorter chunk);
and the pixels of dynamic binarisation are drawn just before each batch's step, where
Lightning's loader draws them a batch ahead, so they interleave differently with the
model's own noise.

Fused steps apply where they are exact: a genlab model whose training step is its family's
own (the autoencoders, VAEs, IWAEs and the classifier; every GAN but ProGAN), one process,
a precision without a gradient scaler (not ``16-mixed``), no
``trainer.accumulate_grad_batches`` (a GAN's ``model.accumulate_grad_batches`` works),
and a data module that holds its images in memory (not streamed shards). ``auto`` (the
default) takes 16 steps per execution for a model without convolutions or on a CUDA device
and 1 otherwise (a convolutional step on a CPU is long enough that Lightning's share does
not show), and 1 wherever fused steps do not apply; an explicit K that cannot apply is
refused with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from genlab.errors import ConfigError

if TYPE_CHECKING:
    from genlab.models.base import GenlabModule

# Steps per execution under ``auto`` where fusing applies.
AUTO_STEPS = 16
# Per-step hooks that Lightning runs around a backward pass and an optimizer step, which the
# fused loop calls itself (only those a callback or the model overrides).
STEP_HOOKS = (
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
)


def obstacle(module: GenlabModule, trainer: pl.Trainer) -> str | None:
    """Why fused steps cannot apply to this fit, or None when they can."""
    from pytorch_lightning.plugins.precision import (
        DoublePrecision,
        HalfPrecision,
        MixedPrecision,
        Precision,
    )

    from genlab.data.datamodule import InMemoryDataModule

    if not module.can_fuse_steps():
        return f"{type(module).__name__} takes its training steps its own way"
    if trainer.world_size > 1:
        return "the run has several processes (DDP synchronises once per backward pass)"
    plugin = trainer.precision_plugin
    if type(plugin) not in (Precision, MixedPrecision, HalfPrecision, DoublePrecision) or (
        getattr(plugin, "scaler", None) is not None
    ):
        return f"trainer.precision={trainer.precision} scales the loss through Lightning"
    if module.automatic_optimization and trainer.accumulate_grad_batches != 1:
        return "trainer.accumulate_grad_batches is set"
    if trainer.fast_dev_run:
        return "trainer.fast_dev_run is set"
    datamodule = trainer.datamodule
    if not isinstance(datamodule, InMemoryDataModule) or not datamodule.chunks_batches:
        return "the data module does not hold its images in memory"
    loop = trainer.fit_loop.epoch_loop
    connector = trainer._logger_connector
    if not (
        hasattr(loop, "_batches_that_stepped")
        and hasattr(getattr(loop.automatic_optimization, "optim_progress", None), "optimizer")
        and hasattr(
            getattr(loop.manual_optimization, "optim_step_progress", None), "increment_completed"
        )
        and all(
            isinstance(getattr(connector, name, None), dict)
            for name in ("_callback_metrics", "_progress_bar_metrics", "_logged_metrics")
        )
    ):
        return "this Lightning version's training loop has no counters genlab knows"
    return None


def resolve_steps(requested: int | str, module: GenlabModule, trainer: pl.Trainer) -> int:
    """The steps per execution of this fit: ``requested`` (auto or K), checked."""
    from genlab.performance import check_steps, has_convolutions

    requested = check_steps(requested)
    if requested == 1:
        return 1
    reason = obstacle(module, trainer)
    interval = trainer.val_check_interval
    if requested == "auto":
        if reason is not None:
            return 1
        cuda = trainer.strategy.root_device.type == "cuda"
        if has_convolutions(module) and not cuda:
            return 1
        steps = AUTO_STEPS
        if isinstance(interval, int):
            while interval % steps:
                steps //= 2
        return steps
    if reason is None and isinstance(interval, int) and interval % requested:
        reason = f"trainer.val_check_interval={interval} batches is not a multiple of {requested}"
    if reason is not None:
        raise ConfigError(
            f"performance.steps_per_execution={requested} cannot apply: {reason}; set "
            "performance.steps_per_execution=auto (or 1)"
        )
    return requested


def _overrides(obj: Any, base: type, name: str) -> bool:
    return getattr(type(obj), name, None) is not getattr(base, name)


class FusedSteps:
    """The K-step training loop of one fit (see the module's docstring).

    Made in the model's ``setup`` (``attach``), which hands the batch counting to the data
    module; the optimizers and per-step hooks are read at ``on_train_start``."""

    def __init__(self, module: GenlabModule, trainer: pl.Trainer, steps: int) -> None:
        self.module = module
        self.trainer = trainer
        self.steps = steps
        # An automatic-optimization model is stepped here; a GAN steps itself.
        self.automatic = module.automatic_optimization
        datamodule = trainer.datamodule
        self.datamodule = datamodule
        self.batch_size = int(datamodule.batch_size)
        self._handed_over: dict[str, Any] = {}
        # The values this step logs (name -> tensor), those the progress bar shows, and
        # whether the loggers write this step's values.
        self.terms: dict[str, Tensor] = {}
        self.shown: set[str] = set()
        self.logging = False
        self.hooks: dict[str, list[Callable[..., Any]]] = {}
        self.optimizers: list[torch.optim.Optimizer] = []
        self.progress: Any = None
        self.automatic_progress: Any = None
        self.convert: Callable[[Tensor], Tensor] | None = None
        self.cast: Callable[[Any], Any] | None = None

    def attach(self) -> None:
        """Hands the batch limit and the validation interval to counts of chunks, and the
        optimization to the model (Lightning's manual optimization)."""
        trainer, datamodule = self.trainer, self.datamodule
        limit = trainer.limit_train_batches
        self._handed_over = {
            "limit_train_batches": limit,
            "val_check_interval": trainer.val_check_interval,
            "automatic_optimization": self.module.automatic_optimization,
        }
        whole = isinstance(limit, float) and limit == 1.0  # an int 1 is one batch
        datamodule.take_chunks(self.steps, None if whole else limit)
        trainer.limit_train_batches = 1.0
        if isinstance(trainer.val_check_interval, int):
            trainer.val_check_interval //= self.steps
        self.module.automatic_optimization = False

    def detach(self) -> None:
        """Puts back what ``attach`` changed, so the model and trainer serve another fit."""
        handed, self._handed_over = self._handed_over, {}
        if not handed:
            return
        self.trainer.limit_train_batches = handed["limit_train_batches"]
        self.trainer.val_check_interval = handed["val_check_interval"]
        # The model stays in manual optimization until its next setup, since the trainer's
        # global_step reads the manual counters for as long as it does.
        self.module.__dict__["_automatic_before_fusion"] = handed["automatic_optimization"]
        self.datamodule.take_chunks(1, None)

    def on_train_start(self) -> None:
        from pytorch_lightning.plugins.precision import DoublePrecision, HalfPrecision

        from genlab.data.tensors import TensorImageDataset

        trainer, module = self.trainer, self.module
        self.optimizers = list(trainer.optimizers)
        self._resume_in_chunks()
        # Chunks arrive as stored (uint8, genlab.data.tensors.StoredImages) and each batch
        # is converted just before its step, as the dataset converts a fetched batch (and
        # then to a "-true" precision's dtype, as Lightning converts a batch it is handed).
        split = self.datamodule.splits.get("train")
        self.convert = split.convert if isinstance(split, TensorImageDataset) else None
        plugin = trainer.precision_plugin
        self.cast = (
            plugin.convert_input if isinstance(plugin, HalfPrecision | DoublePrecision) else None
        )
        loop = trainer.fit_loop.epoch_loop
        self.progress = loop.manual_optimization.optim_step_progress
        # Lightning counts an automatic model's steps (global_step) in another record than
        # a manual one's, and checkpoints both: a fused model of an automatic kind counts
        # in both, and takes up the count of a checkpoint saved with one step an iteration,
        # so that either kind of checkpoint resumes under the other.
        self.automatic_progress = None
        if self.automatic:
            self.automatic_progress = loop.automatic_optimization.optim_progress.optimizer.step
            counts = (self.progress, self.automatic_progress)
            steps = max(progress.total.completed for progress in counts)
            for progress in counts:
                progress.total.ready = progress.total.completed = steps
        for name in STEP_HOOKS:
            hooks = [
                functools.partial(getattr(c, name), trainer, module)
                for c in trainer.callbacks
                if _overrides(c, pl.Callback, name)
            ]
            if _overrides(module, pl.LightningModule, name):
                hooks.append(getattr(module, name))
            self.hooks[name] = hooks

    def _resume_in_chunks(self) -> None:
        """A run resumed mid-epoch counts the iterations done in that epoch in chunks of
        this run: Lightning restored them in the saving run's iterations (one batch each, or
        chunks of another size), and an epoch whose count reaches the iterations of a whole
        epoch ends at once. Here, after the restore and before the epoch loop reads them,
        they become the whole epoch's chunks less those the rest of the epoch takes."""
        trainer = self.trainer
        loop = trainer.fit_loop.epoch_loop
        done = self.datamodule.resumed_batches(trainer.current_epoch)
        if not loop.restarting or done == 0:
            return
        batches = self.datamodule.batches_per_epoch()
        left = -(-max(batches - done, 0) // self.steps)
        current = loop.batch_progress.current
        # A checkpoint written at a batch's end has that batch processed, not completed.
        behind = current.processed - current.completed
        current.ready = current.started = current.processed = -(-batches // self.steps) - left
        current.completed = current.processed - behind

    # One step: what Lightning's loop and LightningOptimizer would do, without their layers.

    def backward(self, loss: Tensor) -> None:
        for hook in self.hooks["on_before_backward"]:
            hook(loss)
        loss.backward()
        for hook in self.hooks["on_after_backward"]:
            hook()

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        for hook in self.hooks["on_before_optimizer_step"]:
            hook(optimizer)
        clip = self.trainer.gradient_clip_val
        if clip:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if self.trainer.gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, clip)
            else:
                torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        self.progress.increment_ready()
        self.progress.increment_completed()
        if self.automatic_progress is not None:
            self.automatic_progress.increment_ready()
            self.automatic_progress.increment_completed()

    def _optimize(self, loss: Tensor) -> None:
        """One step of an automatic-optimization model: zero, backward, step."""
        optimizer = self.optimizers[0]
        for hook in self.hooks["on_before_zero_grad"]:
            hook(optimizer)
        optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        self.optimizer_step(optimizer)

    # The iteration.

    def run(self, batch: tuple[Tensor, ...]) -> None:
        """Trains on the K batches of a chunk, one optimizer step (a GAN: one training
        batch) each."""
        trainer, module = self.trainer, self.module
        loop = trainer.fit_loop.epoch_loop
        first = loop._batches_that_stepped
        every = trainer.log_every_n_steps
        max_steps = trainer.max_steps
        schedules = module.scheduler_factory is not None and bool(trainer.lr_scheduler_configs)
        images, labels = batch
        parts = zip(images.split(self.batch_size), labels.split(self.batch_size), strict=True)
        stored = self.convert is not None  # the loader hands out StoredImages' uint8
        done = 0
        for i, (x, y) in enumerate(parts):
            if 0 <= max_steps <= trainer.global_step:
                break
            if stored:
                x = self.convert(x)
                if self.cast is not None:
                    x = self.cast(x)
            part = (x, y)
            if i and schedules:
                # The previous batch's; the last one's is taken after the iteration's
                # callbacks, by the model's on_train_batch_end, as for one step an iteration.
                module._step_schedulers({"intervals": ["step"]})
            step = first + i
            self.logging = every > 0 and (step + 1) % every == 0
            if self.automatic:
                self._optimize(module.step(part, "train"))
            else:
                module.train_batch(part)
            done += 1
            if self.logging:
                self._write(step)
        self.logging = False
        # Lightning adds the iteration's one itself.
        loop._batches_that_stepped += max(done - 1, 0)
        self.datamodule.trained += done
        self._publish()

    def _publish(self) -> None:
        """The latest values where callbacks and the progress bar read them
        (``trainer.callback_metrics``, ``progress_bar_metrics``), as a ``self.log`` of them
        would leave them. Set directly: each ``self.log`` call costs about half a millisecond
        of Lightning's bookkeeping (it deep-copies the value's record to move it to the
        value's device), as much as two steps of a small MLP."""
        trainer = self.trainer
        connector = trainer._logger_connector
        connector._callback_metrics.update(self.terms)
        if trainer.progress_bar_callback is not None:
            shown = {k: float(v) for k, v in self.terms.items() if k in self.shown}
            connector._progress_bar_metrics.update(shown)

    def record(self, terms: dict[str, Tensor], stage: str, prog_bar: str) -> None:
        """``log_terms`` of a training step: kept as the latest values, written to the
        loggers at the logging steps."""
        for name, value in terms.items():
            self.terms[f"{stage}/{name}"] = value.detach()
        self.shown.add(f"{stage}/{prog_bar}")

    def _write(self, step: int) -> None:
        """The latest values and the learning rates, to every logger, as Lightning writes
        a logging step's: under the step's number, with the epoch."""
        trainer = self.trainer
        if not trainer.loggers:
            return
        values = [v.float().reshape(()) for v in self.terms.values()]
        names = list(self.terms)
        if self.module.scheduler_factory is not None and trainer.lr_scheduler_configs:
            # As on_train_batch_start logs them (float32, as self.log keeps any value).
            rates = self.module.learning_rates()
            names += rates
            values.append(torch.tensor(list(rates.values()), device=values[0].device))
        flat = torch.cat([v.reshape(-1) for v in values]).tolist()
        metrics: dict[str, float] = dict(zip(names, flat, strict=True))
        metrics["epoch"] = trainer.current_epoch
        trainer._logger_connector._logged_metrics.update(metrics)
        for logger in trainer.loggers:
            logger.log_metrics(metrics=metrics, step=step)
