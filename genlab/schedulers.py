"""Learning-rate schedulers for every model, chosen with the ``scheduler=`` config group.

A scheduler config node is ``_partial_: true``: instantiated, it is a *factory* that the
model calls once per optimizer, when the trainer knows how long the run is::

    factory(optimizer, *, total_steps, total_epochs, steps_per_epoch) -> dict

``total_steps`` is the run's optimizer steps (``trainer.estimated_stepping_batches``; for a
model that steps its own optimizers, such as a GAN, its training batches), ``total_epochs``
its epochs and ``steps_per_epoch`` the steps of one epoch. The factory returns Lightning's
lr-scheduler dict: ``{"scheduler": torch LRScheduler, "interval": "step" | "epoch", ...}``;
``interval`` says whether the scheduler advances after every step or every epoch. The
length is handed in rather than written in the config, so one ``scheduler=cosine`` fits a
run of any length. (A resumed scheduler keeps its length, so genlab.commands.resume
refuses a resume that changes it under a length-based schedule.) Every
schedule below is torch's own (``torch.optim.lr_scheduler``); the formulas in the
docstrings are what a test checks. ``lr`` is the optimizer's configured learning rate and
``n`` the scheduler's steps so far (0 during the first step or epoch).

genlab.models.base.GenlabModule builds one scheduler per optimizer (a GAN's two included)
and, for models that step their own optimizers, steps them itself. Lightning stores every
scheduler's state in the checkpoint, so a resumed run continues the schedule exactly.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch
from torch.optim import lr_scheduler

from genlab.errors import ConfigError

INTERVALS = ("step", "epoch")


def _interval(interval: str) -> str:
    if interval not in INTERVALS:
        raise ConfigError(
            f"scheduler.interval={interval!r} is not one of {', '.join(INTERVALS)}; use "
            f"scheduler.interval=step (after every optimizer step) or epoch"
        )
    return interval


def _span(name: str, interval: str, total_steps: int, total_epochs: int) -> int:
    """The scheduler's steps over the run: optimizer steps or epochs."""
    _interval(interval)
    span = total_steps if interval == "step" else total_epochs
    if not math.isfinite(span) or span < 1:
        raise ConfigError(
            f"scheduler={name} needs a finite run to spread its schedule over, but the run "
            f"has {span} {interval}s; set trainer.max_epochs (or trainer.max_steps)"
        )
    return int(span)


def _round_half_up(x: float) -> int:
    """x rounded to the nearest integer, halves up (Python's round takes halves to even:
    a 5-epoch run would keep 2 constant epochs of 2.5, not 3)."""
    return math.floor(x + 0.5)


def _fraction(name: str, key: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"scheduler.{key} is a fraction of the run, between 0 and 1 (got {value}); "
            f"e.g. scheduler.{key}={0.5 if name == 'linear_decay' else 0.05}"
        )
    return float(value)


def _entry(scheduler: Any, interval: str, **extra: Any) -> dict[str, Any]:
    return {"scheduler": scheduler, "interval": interval, "frequency": 1, **extra}


def cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    total_epochs: int,
    steps_per_epoch: int,
    interval: str = "step",
    min_lr_ratio: float = 0.0,
) -> dict[str, Any]:
    """Cosine annealing over the whole run (N steps or epochs):
    ``lr_n = m·lr + (1 - m)·lr·(1 + cos(π·n/N))/2`` with m = ``min_lr_ratio``; CosineAnnealingLR."""
    span = _span("cosine", interval, total_steps, total_epochs)
    base = optimizer.param_groups[0]["lr"]
    ratio = _fraction("cosine", "min_lr_ratio", min_lr_ratio)
    return _entry(
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=span, eta_min=ratio * base), interval
    )


def step(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    total_epochs: int,
    steps_per_epoch: int,
    interval: str = "epoch",
    step_size: int = 10,
    gamma: float = 0.1,
) -> dict[str, Any]:
    """``lr_n = lr·gamma^floor(n/step_size)``: the lr times ``gamma`` every ``step_size``
    epochs (or steps, with interval=step); StepLR."""
    _span("step", interval, total_steps, total_epochs)
    _whole("step_size", step_size, "10")
    if not 0 < gamma <= 1:
        raise ConfigError(f"scheduler.gamma must be in (0, 1] (got {gamma}); e.g. 0.1")
    return _entry(lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), interval)


def linear_decay(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    total_epochs: int,
    steps_per_epoch: int,
    interval: str = "epoch",
    constant_fraction: float = 0.5,
) -> dict[str, Any]:
    """Constant, then linearly to zero: the schedule of Pix2Pix and CycleGAN (their papers:
    100 epochs at lr, then 100 decaying). Over a run of N epochs (steps, with interval=step)
    of which C = ⌊constant_fraction·N + ½⌋ are constant (halves round up),
    ``lr_n = lr·min(1, (N - n)/(N - C + 1))``: lr for n < C, then lr·(N - C)/(N - C + 1)
    down to lr/(N - C + 1) in the last epoch, reaching 0 once the run is over. This is the
    CycleGAN code's rule ``1 - max(0, n + 1 - C)/(D + 1)`` (D = N - C decaying epochs)
    written another way; LambdaLR."""
    span = _span("linear_decay", interval, total_steps, total_epochs)
    constant = _round_half_up(
        _fraction("linear_decay", "constant_fraction", constant_fraction) * span
    )
    decay = span - constant + 1

    def factor(n: int) -> float:
        return min(1.0, max(0.0, (span - n) / decay))

    return _entry(lr_scheduler.LambdaLR(optimizer, factor), interval)


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    total_epochs: int,
    steps_per_epoch: int,
    interval: str = "step",
    warmup_fraction: float = 0.05,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> dict[str, Any]:
    """A linear warm-up over W steps (``warmup_steps``, else ⌊warmup_fraction·N + ½⌋ of the
    run's N), then cosine annealing over the rest:
    ``lr_n = lr·(n + 1)/(W + 1)`` for n < W, then
    ``m·lr + (1 - m)·lr·(1 + cos(π·(n - W)/(N - W)))/2``; LinearLR then CosineAnnealingLR
    (SequentialLR)."""
    span = _span("warmup_cosine", interval, total_steps, total_epochs)
    ratio = _fraction("warmup_cosine", "min_lr_ratio", min_lr_ratio)
    if warmup_steps is None:
        warmup = _round_half_up(
            _fraction("warmup_cosine", "warmup_fraction", warmup_fraction) * span
        )
    else:
        warmup = warmup_steps
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < span:
        raise ConfigError(
            f"scheduler.warmup_steps={warmup!r} must be a whole number from 0 to below the "
            f"run's {span} {interval}s; lower it, or set scheduler.warmup_fraction instead"
        )
    base = optimizer.param_groups[0]["lr"]
    cosine_part = lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=span - warmup, eta_min=ratio * base
    )
    if warmup == 0:
        return _entry(cosine_part, interval)
    warm = lr_scheduler.LinearLR(
        optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup
    )
    return _entry(
        lr_scheduler.SequentialLR(optimizer, [warm, cosine_part], milestones=[warmup]), interval
    )


def _whole(key: str, value: Any, example: str, *, allow_none: bool = False) -> int | None:
    """``value`` as a whole number of at least 1 (or None, where ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        also = ", or null" if allow_none else ""
        raise ConfigError(
            f"scheduler.{key} must be a whole number of at least 1{also} (got {value!r}); "
            f"e.g. scheduler.{key}={example}"
        )
    return value


def _real(key: str, value: Any) -> float:
    """``value`` as a finite real number (YAML and the command line give int or float)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"scheduler.{key} must be a finite number (got {value!r})")
    return float(value)


def geometric_stages(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    total_epochs: int,
    steps_per_epoch: int,
    interval: str = "epoch",
    first: int = 1,
    growth: float = 3,
    decay: float = 10 ** (-1 / 7),
    stages: int | None = 8,
) -> dict[str, Any]:
    """Stages of constant lr, each ``growth`` times as long as the one before and at
    ``decay`` times its lr: the schedule of the IWAE paper (Burda et al., 2016), whose
    defaults these are, lr·10^(-i/7) for 3^i epochs, i = 0..7 (3280 epochs). Stage i lasts
    L_i = ⌊first·growth^i + ½⌋ epochs (steps, with interval=step), so it starts at
    B_i = L_0 + ... + L_(i-1), and ``lr_n = lr·decay^i`` for B_i <= n < B_(i+1); after the
    last of the ``stages`` stages (None: no last one) the lr stays at its value. The stages
    do not depend on the run's length: a shorter run stops partway through them, a longer
    one stays at the last lr (and a resume may lengthen the run). With interval=step
    the stages count optimizer steps (training batches, for a GAN): for runs bounded by
    ``trainer.max_steps``; first = the steps of an epoch gives the epoch schedule. LambdaLR,
    whose state is its step count: the stages come from the config on resume."""
    _interval(interval)
    first = _whole("first", first, "1")
    stages = _whole("stages", stages, "8", allow_none=True)
    growth = _real("growth", growth)
    if growth < 1:
        raise ConfigError(
            f"scheduler.growth must be at least 1 (got {growth}): stage i lasts "
            "first·growth^i epochs; e.g. scheduler.growth=3 (the IWAE paper's)"
        )
    decay = _real("decay", decay)
    if not 0 < decay <= 1:
        raise ConfigError(
            f"scheduler.decay must be in (0, 1] (got {decay}): the lr's factor from one stage "
            "to the next; e.g. scheduler.decay=0.719685673001152 (10^(-1/7), the paper's)"
        )
    # starts[j] is where stage j + 1 starts, grown as far as the schedule is asked about
    # (with growth > 1 the lengths grow geometrically: a few dozen entries for any run).
    starts: list[int] = []

    def factor(n: int) -> float:
        while (stages is None or len(starts) < stages - 1) and (not starts or starts[-1] <= n):
            length = _round_half_up(first * growth ** len(starts))
            starts.append((starts[-1] if starts else 0) + length)
        return decay ** bisect.bisect_right(starts, n)

    return _entry(lr_scheduler.LambdaLR(optimizer, factor), interval)


def plateau(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    total_epochs: int,
    steps_per_epoch: int,
    monitor: str | None = None,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    cooldown: int = 0,
    min_lr: float = 0.0,
) -> dict[str, Any]:
    """ReduceLROnPlateau: the lr times ``factor`` once ``monitor`` has not improved (by
    more than ``threshold``, relatively) for ``patience`` validations in a row; checked
    after every epoch's validation. ``monitor`` None is the model's own metric (its
    ``checkpoint_monitor``: val/loss for all but the GANs, which have none and so need an
    explicit ``scheduler.monitor``)."""
    if mode not in ("min", "max"):
        raise ConfigError(f"scheduler.mode must be min or max (got {mode!r})")
    if not 0 < factor < 1:
        raise ConfigError(f"scheduler.factor must be in (0, 1) (got {factor}); e.g. 0.1")
    scheduler = lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=mode,
        factor=factor,
        patience=patience,
        threshold=threshold,
        cooldown=cooldown,
        min_lr=min_lr,
    )
    return _entry(scheduler, "epoch", monitor=monitor, strict=True)


def training_length(trainer: Any, *, manual: bool) -> dict[str, int]:
    """The run's length as a factory takes it: ``total_steps``, ``total_epochs`` and
    ``steps_per_epoch``. Steps are optimizer steps (``estimated_stepping_batches``, which
    counts gradient accumulation, ``max_steps`` and the limits on batches); for a model
    that steps its own optimizers (``manual``) they are training batches, since its
    schedulers advance once a batch. Under ``max_steps`` such a model's schedule spans
    max_steps batches, though it may take fewer (a GAN counts both networks' steps)."""
    from genlab.data.datamodule import InMemoryDataModule

    max_epochs = trainer.max_epochs
    if max_epochs is None or max_epochs < 0:
        max_epochs = math.inf
    total_steps = trainer.estimated_stepping_batches
    batches = trainer.num_training_batches
    datamodule = trainer.datamodule
    if isinstance(datamodule, InMemoryDataModule) and datamodule.chunked:
        # Fused steps (genlab.models.fusion): Lightning counts iterations, each a chunk of
        # batches; the schedule counts batches.
        batches = datamodule.batches_per_epoch()
        total_steps = batches * max_epochs
        if trainer.max_steps >= 0:
            total_steps = min(total_steps, trainer.max_steps)
    accumulate = 1 if manual else max(1, int(trainer.accumulate_grad_batches or 1))
    steps_per_epoch = math.ceil(batches / accumulate) if math.isfinite(batches) else math.inf
    if math.isfinite(total_steps) and math.isfinite(steps_per_epoch) and steps_per_epoch > 0:
        total_epochs = min(max_epochs, math.ceil(total_steps / steps_per_epoch))
    else:
        total_epochs = max_epochs
    return {
        "total_steps": total_steps,
        "total_epochs": total_epochs,
        "steps_per_epoch": steps_per_epoch,
    }
