"""GPU training throughput of genlab against a plain PyTorch loop on the same device.

For each of conv_ae, dcgan, vae and pix2pix (``--models``) it trains, in one process:

- genlab: ``genlab.commands.train.train`` on a composed config: ``trainer=gpu`` (bf16-mixed)
  on ``--device cuda``, ``trainer=cpu`` (32-true) on ``--device cpu``, the ``performance:``
  defaults (on CUDA: the uint8 dataset kept on the GPU and batches gathered there, TF32
  matmuls, conv models and their batches channels-last), no logger, no validation, no test,
  no callbacks but a timer that reads the clock, after a device synchronize, at the end of
  batch ``--warmup`` and of the last batch, so the time spans whole iterations.
- plain: the same model class and initial weights, the same train split held as a uint8
  tensor on the device, batches gathered there by a ``randperm`` index and divided by 255
  there, the same precision (``torch.autocast`` bf16 on CUDA), channels-last weights and
  batches for conv models on CUDA, TF32 matmuls on CUDA, and the same optimizer settings
  (the model config's own optimizer factories), in a loop of: batch, forward, loss,
  zero_grad, backward, step. The GANs do genlab's math by hand: one D step on real and on
  fresh fakes, then one G step on fresh noise with D frozen; pix2pix also its random crop
  and flip, on the device.

``--compile`` adds ``performance.compile=true`` to genlab and ``nn.Module.compile`` of the same
networks to the plain loop (the first batches then compile: keep --warmup above a few).

Each model's runs alternate plain/genlab ``--repeats`` times; the table gives the median
images/s (real images a second: one D and one G step per batch for the GANs, one pair per
image for pix2pix) of each, their ratio genlab/plain (1.0: no framework tax), and the peak
GPU memory of each run (``torch.cuda.max_memory_allocated``, reset before each; null on the
CPU). It also times one full MNIST training epoch of conv_ae through genlab: the train split
with one image in 10,000 held out, so that the epoch is (nearly) all of MNIST's 60,000
training images, run for two epochs; the second is the epoch's time, the first (with the
device's warm-up) is reported beside it. ``--epoch-images N`` limits that epoch to N images
(the CPU test does).

MNIST is read from ``--mnist DIR``, by default the first of ../shared/datasets/mnist,
shared/datasets/mnist and data/mnist (from the repository root) that holds the four IDX
files; without them (or with ``--embedded``) everything trains on the embedded mnist_5k
(4,500 training images). pix2pix trains on data=mnist_edges at its own size (32 px).

Budget: scripts/bench_gpu.sh runs this under a 5-minute ``timeout`` and writes
bench/gpu.json. A repeat after a model's first is skipped when the time left before
``--budget`` seconds would not hold another one; the JSON is written after every model, so
a run stopped early keeps what it measured (``complete`` says whether it finished). Run
from the repository root:

    bash scripts/bench_gpu.sh
    bash scripts/bench_gpu.sh --models conv_ae,dcgan --compile --json bench/gpu_compiled.json
    .venv/bin/python scripts/bench_gpu.py --device cpu --models conv_ae --json /tmp/cpu.json

``scripts/bench_table.py bench/gpu.json`` turns the JSON into the README's table between
``<!-- bench:gpu -->`` and ``<!-- /bench -->``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from benchlib import (
    Clock,
    WindowTimer,
    batches_in,
    loop_json,
    machine_info,
    same_weights,
    synchronize,
)
from hydra.utils import instantiate
from mnist_files import IDX_FILES, MNIST_CANDIDATES, has_mnist_files
from omegaconf import DictConfig, open_dict
from torch import Tensor, nn

from genlab.atomic import write_json
from genlab.commands.common import CONFIG_DIR
from genlab.commands.train import train
from genlab.models.base import GenlabModule

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
# One image in 10,000 held out: the timed epoch is (nearly) all of MNIST's 60,000 training
# images, the "MNIST epoch" of the targets, not the 54,000 that val_fraction=0.1 leaves.
EPOCH_VAL_FRACTION = 1e-4
# The epoch is run twice: the first pays the device's warm-up (cuDNN's kernel choice, the
# first launches, compiling), the second is the steady epoch reported.
EPOCHS = 2
MIB = 1 << 20
ADVERSARIAL_STEP = "one D and one G step a batch"


@dataclass(frozen=True)
class Spec:
    """One benchmarked model: its kind of plain loop and its default batch per device."""

    kind: str  # reconstruction | gan | translation
    batch: dict[str, int]


MODELS = {
    "conv_ae": Spec("reconstruction", {"cuda": 512, "cpu": 32}),
    "dcgan": Spec("gan", {"cuda": 256, "cpu": 32}),
    "vae": Spec("reconstruction", {"cuda": 512, "cpu": 64}),
    "pix2pix": Spec("translation", {"cuda": 64, "cpu": 8}),
}
# --steps, --warmup, --repeats, --epoch-images by device: long enough on a GPU for steady
# figures within the 5-minute budget; tiny on the CPU, where the script is tested.
DEFAULTS = {
    "cuda": {"steps": 200, "warmup": 20, "repeats": 2, "epoch_images": None},
    "cpu": {"steps": 5, "warmup": 2, "repeats": 1, "epoch_images": 512},
}


def _target(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def data_device(datamodule: Any) -> str | None:
    """Where the data module's training images live ("cuda:0", "cpu"), or None where it
    holds no tensors of its own (a streamed dataset)."""
    split = (getattr(datamodule, "splits", None) or {}).get("train")
    for value in vars(split).values() if split is not None else ():
        if isinstance(value, Tensor):
            return str(value.device)
    return None


def genlab_settings(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """What genlab's run actually used, read once training starts."""
    return {
        "precision": str(trainer.precision),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "channels_last": bool(getattr(pl_module, "channels_last", False)),
        "data_device": data_device(trainer.datamodule),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


@dataclass
class Run:
    """One timed run of a loop: seconds for the timed batches, the cores other processes
    kept busy meanwhile (NaN where unknown), the peak device memory (None on the CPU)."""

    seconds: float
    other_load: float
    peak_memory: int | None = None


class StepTimer(WindowTimer):
    """A WindowTimer whose run is the seconds and load, and which keeps the settings the
    run used."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__(start, stop)
        self.run: Run | None = None
        self.settings: dict[str, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.settings = genlab_settings(trainer, pl_module)

    def finish(self, trainer: pl.Trainer, seconds: float, load: float) -> None:
        self.run = Run(seconds, load)


class EpochTimer(pl.Callback):
    """The seconds and batches of every training epoch, the device synchronized at both
    ends; the train split's size and the settings the run used."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.batches: list[int] = []
        self.split_images = 0
        self.settings: dict[str, Any] = {}
        self._started = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.split_images = len(trainer.datamodule.splits["train"])
        self.settings = genlab_settings(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self.batches.append(0)
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        self.batches[-1] += batches_in(trainer, batch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self.seconds.append(time.perf_counter() - self._started)


# ---------------------------------------------------------------------------------------------
# Configs


def data_overrides(args: argparse.Namespace, spec: Spec) -> list[str]:
    if spec.kind == "translation":
        return []  # pix2pix picks data=mnist_edges itself, at its own size
    if args.mnist is None:
        return ["data=mnist_5k"]
    return ["data=mnist", f"data.root={args.mnist}"]


def compose(
    args: argparse.Namespace,
    model: str,
    batch_size: int,
    output_dir: str,
    *,
    callback: type[pl.Callback],
    callback_args: dict[str, int],
    length: list[str],
    extra: Sequence[str] = (),
) -> DictConfig:
    """The `genlab train` config of one run of ``model``, writing only under
    ``output_dir``, with ``callback`` (built from ``callback_args``) as its only callback."""
    spec = MODELS[model]
    cuda = args.device == "cuda"
    overrides = [
        f"model={model}",
        *data_overrides(args, spec),
        f"data.batch_size={batch_size}",
        "trainer=gpu" if cuda else "trainer=cpu",
        # trainer=gpu's own default; set so the run says what it measured.
        f"trainer.precision={'bf16-mixed' if cuda else '32-true'}",
        *length,
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks=none",
        f"+callbacks.bench_timer._target_={_target(callback)}",
        *(f"+callbacks.bench_timer.{k}={v}" for k, v in callback_args.items()),
        "~logger",
        f"seed={SEED}",
        "test=false",
        # Set directly so that the config resolves without a running Hydra app.
        f"paths.root_dir={output_dir}",
        f"paths.output_dir={output_dir}",
        *extra,
    ]
    if spec.kind == "gan":
        overrides.append("model.d_steps=1")
    if spec.kind == "translation":
        overrides.append("scheduler=none")  # the plain loop keeps its learning rate
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra.compose("train", overrides=overrides)
    with open_dict(cfg):
        if spec.kind != "translation":  # pix2pix takes its own steps, one an iteration
            cfg.performance.steps_per_execution = args.steps_per_execution
        if args.compile:
            cfg.performance.compile = True
    return cfg


def throughput_config(
    args: argparse.Namespace, model: str, batch_size: int, output_dir: str
) -> DictConfig:
    """A run of --warmup + --steps batches of ``model``, timed by ``StepTimer``. A GAN's
    or pix2pix's batch is two optimizer steps (one D, one G), which max_steps counts."""
    batches = args.warmup + args.steps
    per_batch = 1 if MODELS[model].kind == "reconstruction" else 2
    return compose(
        args,
        model,
        batch_size,
        output_dir,
        callback=StepTimer,
        callback_args={"start": args.warmup, "stop": batches},
        length=[f"trainer.max_steps={per_batch * batches}", "trainer.max_epochs=-1"],
    )


def epoch_config(args: argparse.Namespace, batch_size: int, output_dir: str) -> DictConfig:
    """conv_ae for ``EPOCHS`` whole epochs (or --epoch-images each), timed by EpochTimer."""
    limit = []
    if args.epoch_images is not None:
        limit = [f"trainer.limit_train_batches={max(1, args.epoch_images // batch_size)}"]
    return compose(
        args,
        "conv_ae",
        batch_size,
        output_dir,
        callback=EpochTimer,
        callback_args={},
        length=[f"trainer.max_epochs={EPOCHS}", "trainer.max_steps=-1", *limit],
        extra=[f"data.val_fraction={EPOCH_VAL_FRACTION}"],
    )


# ---------------------------------------------------------------------------------------------
# Memory


def reset_peak_memory(device: torch.device) -> None:
    """Frees what earlier runs left and starts the device's peak-memory count afresh."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


# ---------------------------------------------------------------------------------------------
# The plain loop


@dataclass
class PlainData:
    """The train split as uint8 tensors on the host: images (reconstruction, gan) or the
    pairs a, b at their load size with whether they are randomly cropped and flipped."""

    images: Tensor | None = None
    a: Tensor | None = None
    b: Tensor | None = None
    image_size: int = 0
    augment: bool = False

    def __len__(self) -> int:
        return len(self.images if self.images is not None else self.a)


@dataclass
class PlainSettings:
    """How the plain loop runs on its device."""

    device: torch.device
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def has_convolutions(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def image_batches(images: Tensor, batch_size: int, channels_last: bool) -> Iterator[Tensor]:
    """Endless float batches in [0, 1] gathered on the images' device by a fresh
    permutation each epoch, the last partial batch dropped (as genlab's sampler does)."""
    n = len(images)
    usable = n // batch_size * batch_size
    while True:
        order = torch.randperm(n, device=images.device)
        for index in order[:usable].split(batch_size):
            x = images.index_select(0, index).float().div_(255.0)
            yield x.contiguous(memory_format=torch.channels_last) if channels_last else x


def crop(images: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Per image i the window images[i, :, rows[i]][:, :, cols[i]]: [N, C, S, S]."""
    n = torch.arange(len(images), device=images.device)[:, None, None]
    # The advanced indices around the channel slice put the channels last: [N, S, S, C].
    return images[n, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def pair_batches(
    data: PlainData, a: Tensor, b: Tensor, batch_size: int, channels_last: bool
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless (a, b) float batches in [0, 1] at ``data.image_size``, gathered on the
    device; with ``data.augment`` the same random crop and horizontal flip for an image and
    its pair, drawn on the device (genlab's pix2pix augmentation), else the centre crop."""
    n, device, size = len(a), a.device, data.image_size
    room = a.shape[-1] - size
    steps = torch.arange(size, device=device)
    usable = n // batch_size * batch_size
    while True:
        order = torch.randperm(n, device=device)
        for index in order[:usable].split(batch_size):
            xa, xb = a.index_select(0, index), b.index_select(0, index)
            if room > 0 and data.augment:
                k = len(index)
                top, left = torch.randint(0, room + 1, (2, k), device=device)
                flip = torch.rand(k, device=device) < 0.5
                rows = top[:, None] + steps
                cols = left[:, None] + torch.where(flip[:, None], size - 1 - steps, steps)
                xa, xb = crop(xa, rows, cols), crop(xb, rows, cols)
            elif room > 0:
                lo = room // 2
                xa, xb = (
                    xa[..., lo : lo + size, lo : lo + size],
                    xb[..., lo : lo + size, lo : lo + size],
                )
            xa, xb = xa.float().div_(255.0), xb.float().div_(255.0)
            if channels_last:
                xa = xa.contiguous(memory_format=torch.channels_last)
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xa, xb


def reconstruction_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, how: PlainSettings
) -> Callable[[Tensor], None]:
    def step(x: Tensor) -> None:
        with how.autocast():
            loss = model.loss_terms(x)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def gan_step(
    model: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, how: PlainSettings
) -> Callable[[Tensor], None]:
    g, d, latent = model.generator, model.discriminator, model.latent_dim

    def step(x: Tensor) -> None:
        real = x * 2 - 1
        n = real.shape[0]
        with how.autocast():
            with torch.no_grad():
                fake = g(torch.randn(n, latent, device=real.device))
            # -[log D(x) + log(1 - D(G(z)))] with D = sigmoid(logits); real and fake apart.
            d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        d.requires_grad_(False)
        with how.autocast():
            g_loss = F.softplus(-d(g(torch.randn(n, latent, device=real.device)))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d.requires_grad_(True)

    return step


def translation_step(
    model: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, how: PlainSettings
) -> Callable[[tuple[Tensor, Tensor]], None]:
    g, d, lambda_l1 = model.generator, model.discriminator, model.lambda_l1

    def step(batch: tuple[Tensor, Tensor]) -> None:
        a, b = (t * 2 - 1 for t in batch)
        with how.autocast():
            fake = g(a)
            # Half of -[log D(a, b) + log(1 - D(a, G(a)))], D = sigmoid(patch logits).
            real_logits = d(torch.cat([a, b], dim=1))
            fake_logits = d(torch.cat([a, fake.detach()], dim=1))
            d_loss = 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        d.requires_grad_(False)
        with how.autocast():
            adversarial = F.softplus(-d(torch.cat([a, fake], dim=1))).mean()
            g_loss = adversarial + lambda_l1 * (fake - b).abs().mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d.requires_grad_(True)

    return step


def networks(model: nn.Module) -> dict[str, nn.Module]:
    """The networks genlab's performance.compile compiles: those the model was built with."""
    return model.networks() if isinstance(model, GenlabModule) else dict(model.named_children())


def run_plain(
    args: argparse.Namespace, model_name: str, cfg: DictConfig, data: PlainData, batch_size: int
) -> tuple[Run, dict[str, Tensor], dict[str, Any]]:
    """The hand-written loop; the timed run, the initial weights and its settings."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    kind = MODELS[model_name].kind
    reset_peak_memory(device)
    torch.manual_seed(SEED)
    model = instantiate(cfg.model)
    model.train()
    initial_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    how = PlainSettings(device, channels_last=cuda and has_convolutions(model))
    model.to(device)
    if how.channels_last:
        model.to(memory_format=torch.channels_last)
    if cuda:
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
    if args.compile:
        for network in networks(model).values():
            network.compile()

    if kind == "reconstruction":
        optimizer = instantiate(cfg.optimizer)(params=model.parameters())
        step: Callable[[Any], None] = reconstruction_step(model, optimizer, how)
        source: Iterator[Any] = image_batches(data.images.to(device), batch_size, how.channels_last)
    else:
        opt_g = instantiate(cfg.model.optimizer_g)(params=model.generator.parameters())
        opt_d = instantiate(cfg.model.optimizer_d)(params=model.discriminator.parameters())
        if kind == "gan":
            step = gan_step(model, opt_g, opt_d, how)
            source = image_batches(data.images.to(device), batch_size, how.channels_last)
        else:
            step = translation_step(model, opt_g, opt_d, how)
            source = pair_batches(
                data, data.a.to(device), data.b.to(device), batch_size, how.channels_last
            )

    for _ in range(args.warmup):
        step(next(source))
    synchronize(device)
    clock = Clock()
    for _ in range(args.steps):
        step(next(source))
    synchronize(device)
    seconds, load = clock.stop()
    settings = {
        "precision": "bf16-mixed" if cuda else "32-true",
        "matmul_precision": torch.get_float32_matmul_precision(),
        "channels_last": how.channels_last,
        "data_device": str(device),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
    run = Run(seconds, load, peak_memory(device))
    del model, step, source
    return run, initial_state, settings


def run_genlab(
    args: argparse.Namespace, model_name: str, batch_size: int
) -> tuple[Run, dict[str, Tensor], dict[str, Any]]:
    """Fit through genlab; the timed run, the weights before step 1 and its settings."""
    device = torch.device(args.device)
    reset_peak_memory(device)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as output_dir:
        _, objects = train(throughput_config(args, model_name, batch_size, output_dir))
    timer = next(c for c in objects["trainer"].callbacks if isinstance(c, StepTimer))
    if timer.run is None:
        raise RuntimeError(f"genlab stopped after {timer.batches} batches, before {timer.stop}")
    timer.run.peak_memory = peak_memory(device)
    del objects
    return timer.run, timer.initial_state, timer.settings


def plain_data(cfg: DictConfig) -> PlainData:
    """The train split genlab trains on, as the data module builds it (uint8, host)."""
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    train_split = datamodule.splits["train"]
    if hasattr(train_split, "images"):
        return PlainData(images=train_split.images)
    return PlainData(
        a=train_split.a,
        b=train_split.b,
        image_size=train_split.image_size,
        augment=train_split.augment,
    )


# ---------------------------------------------------------------------------------------------
# Runs and results


def batch_size_of(args: argparse.Namespace, model: str) -> int:
    return args.batch_size or MODELS[model].batch[args.device]


def bench_model(args: argparse.Namespace, model: str, deadline: float) -> dict[str, Any]:
    """Alternate plain and genlab runs of ``model``; both loops' figures and the ratio."""
    batch_size = batch_size_of(args, model)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as scratch:
        cfg = throughput_config(args, model, batch_size, scratch)
    data = plain_data(cfg)
    if len(data) < batch_size:
        raise SystemExit(
            f"--batch-size {batch_size} exceeds the {len(data)} training images of {model}"
        )
    runs: dict[str, list[Run]] = {"plain": [], "genlab": []}
    settings: dict[str, dict[str, Any]] = {}
    skipped = 0
    for repeat in range(args.repeats):
        started = time.monotonic()
        plain_run, plain_initial, settings["plain"] = run_plain(args, model, cfg, data, batch_size)
        genlab_run, genlab_initial, settings["genlab"] = run_genlab(args, model, batch_size)
        if not same_weights(plain_initial, genlab_initial):
            raise SystemExit(
                "the two loops started from different weights; the seeding of genlab train "
                "changed, so this comparison is not like for like"
            )
        runs["plain"].append(plain_run)
        runs["genlab"].append(genlab_run)
        took = time.monotonic() - started
        if repeat + 1 < args.repeats and time.monotonic() + took > deadline:
            skipped = args.repeats - repeat - 1
            break
    loops = {name: loop_figures(r, args.steps, batch_size) for name, r in runs.items()}
    for name, loop in loops.items():
        loop["settings"] = settings[name]
    row: dict[str, Any] = {
        "data": "mnist_edges" if MODELS[model].kind == "translation" else data_name(args),
        "image_size": int(cfg.data.image_size),
        "batch_size": batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": len(runs["plain"]),
        "plain": loops["plain"],
        "genlab": loops["genlab"],
        "ratio": loops["genlab"]["images_per_s"] / loops["plain"]["images_per_s"],
        "best_ratio": max(loops["genlab"]["runs_images_per_s"])
        / max(loops["plain"]["runs_images_per_s"]),
        # Checked for every repeat; recorded so the JSON says so.
        "same_weights": True,
    }
    if MODELS[model].kind != "reconstruction":
        row["step"] = ADVERSARIAL_STEP
    if skipped:
        row["skipped_repeats"] = skipped
    return row


def loop_figures(runs: list[Run], steps: int, batch_size: int) -> dict[str, Any]:
    rates = [steps * batch_size / r.seconds for r in runs]
    memory = [r.peak_memory for r in runs if r.peak_memory is not None]
    return {
        **loop_json(rates, [r.other_load for r in runs]),
        "ms_per_step": statistics.median(r.seconds for r in runs) / steps * 1000,
        "peak_memory_bytes": max(memory) if memory else None,
    }


def bench_epoch(args: argparse.Namespace) -> dict[str, Any]:
    """One (or --epoch-images of one) MNIST epoch of conv_ae through genlab, timed."""
    device = torch.device(args.device)
    batch_size = batch_size_of(args, "conv_ae")
    reset_peak_memory(device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as output_dir:
        _, objects = train(epoch_config(args, batch_size, output_dir))
    fit_seconds = time.perf_counter() - started
    timer = next(c for c in objects["trainer"].callbacks if isinstance(c, EpochTimer))
    del objects
    if len(timer.seconds) != EPOCHS:
        raise RuntimeError(f"genlab ran {len(timer.seconds)} epochs, not {EPOCHS}")
    images = timer.batches[-1] * batch_size
    return {
        "model": "conv_ae",
        "data": data_name(args),
        "split_images": timer.split_images,
        "batch_size": batch_size,
        "batches": timer.batches[-1],
        "images": images,
        "limited": args.epoch_images is not None,
        "seconds": timer.seconds[-1],
        "images_per_s": images / timer.seconds[-1],
        "first_epoch_seconds": timer.seconds[0],
        # genlab train from the call to its return: data loading and set-up included.
        "fit_seconds": fit_seconds,
        "peak_memory_bytes": peak_memory(device),
        "settings": timer.settings,
    }


def data_name(args: argparse.Namespace) -> str:
    return "mnist_5k" if args.mnist is None else "mnist"


def machine(device: str) -> dict[str, Any]:
    info = machine_info(device)
    if device == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def report(
    args: argparse.Namespace,
    rows: dict[str, Any],
    epoch: dict[str, Any] | None,
    *,
    complete: bool,
) -> dict[str, Any]:
    """The results in the benchmarks' JSON layout, as scripts/bench_table.py reads it."""
    return {
        "benchmark": "GPU training throughput, genlab against a plain PyTorch loop on one device",
        "script": "bench_gpu",
        "machine": machine(args.device),
        "precision": "bf16-mixed" if args.device == "cuda" else "32-true",
        "compile": args.compile,
        "mnist": str(args.mnist) if args.mnist is not None else None,
        "complete": complete,
        "models": rows,
        "epoch": epoch,
    }


def mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.0f}"


def describe_settings(s: dict[str, Any]) -> str:
    layout = "channels-last" if s.get("channels_last") else "NCHW"
    return (
        f"{s.get('precision')}, matmul {s.get('matmul_precision')}, {layout}, "
        f"data on {s.get('data_device')}"
    )


def table(result: dict[str, Any]) -> str:
    info = result["machine"]
    where = info.get("gpu") or info["cpu"]
    lines = [
        f"bench_gpu on {info['device']} ({where}), torch {info['torch']}, "
        f"{result['precision']}, compile {'on' if result['compile'] else 'off'}",
        f"{'model':8} {'data':11} {'batch':>5} {'steps':>5} {'plain img/s':>12} "
        f"{'genlab img/s':>12} {'genlab/plain':>12} {'plain MiB':>9} {'genlab MiB':>10}",
    ]
    for name, row in result["models"].items():
        p, g = row["plain"], row["genlab"]
        lines.append(
            f"{name:8} {row['data']:11} {row['batch_size']:5} {row['steps']:5} "
            f"{p['images_per_s']:12,.0f} {g['images_per_s']:12,.0f} {row['ratio']:12.3f} "
            f"{mib(p['peak_memory_bytes']):>9} {mib(g['peak_memory_bytes']):>10}"
        )
    for name, row in result["models"].items():
        lines.append(
            f"{name}: genlab {describe_settings(row['genlab']['settings'])}; "
            f"plain {describe_settings(row['plain']['settings'])}"
            + (
                f"; {row['skipped_repeats']} repeat(s) skipped for time"
                if row.get("skipped_repeats")
                else ""
            )
        )
    epoch = result.get("epoch")
    if epoch:
        limit = " (limited by --epoch-images)" if epoch["limited"] else ""
        lines.append(
            f"one epoch of conv_ae on {epoch['data']} through genlab: {epoch['batches']} batches "
            f"of {epoch['batch_size']} = {epoch['images']:,} images{limit} of the "
            f"{epoch['split_images']:,}-image train split in {epoch['seconds']:.2f} s "
            f"({epoch['images_per_s']:,.0f} img/s); the first epoch, with warm-up, "
            f"{epoch['first_epoch_seconds']:.2f} s; genlab train start to end "
            f"{epoch['fit_seconds']:.1f} s"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def steps_per_execution(value: str) -> int | str:
    return value if value == "auto" else int(value)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated, of {', '.join(MODELS)} (default: all)",
    )
    parser.add_argument(
        "--steps", type=int, help="timed batches per run (default: 200 on cuda, 5 on cpu)"
    )
    parser.add_argument(
        "--warmup", type=int, help="untimed batches before them (default: 20 on cuda, 2 on cpu)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="for every model (default, cuda/cpu: "
        + ", ".join(f"{m} {s.batch['cuda']}/{s.batch['cpu']}" for m, s in MODELS.items())
        + ")",
    )
    parser.add_argument(
        "--repeats", type=int, help="alternating runs of each loop (default: 2 on cuda, 1 on cpu)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="genlab performance.compile=true; torch.compile in plain",
    )
    parser.add_argument(
        "--epoch-images",
        type=int,
        help="limit the timed MNIST epoch to this many images (default: the whole train "
        "split on cuda, 512 on cpu)",
    )
    parser.add_argument(
        "--mnist",
        type=Path,
        help="folder of MNIST's four IDX files (default: ../shared/datasets/mnist, "
        "shared/datasets/mnist or data/mnist, where they are; else the embedded mnist_5k)",
    )
    parser.add_argument(
        "--embedded", action="store_true", help="train on the embedded mnist_5k even so"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=240.0,
        help="seconds after which no further repeat starts (default: 240)",
    )
    parser.add_argument(
        "--steps-per-execution",
        type=steps_per_execution,
        default="auto",
        help="genlab's performance.steps_per_execution (default: auto)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    for name, value in DEFAULTS[args.device].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("steps", "warmup", "batch_size", "repeats", "epoch_images", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(
            f"--models {args.models}: {', '.join(unknown) or 'none given'}; "
            f"choose from {', '.join(MODELS)}"
        )
    args.models = list(dict.fromkeys(models))
    if args.embedded:
        args.mnist = None
    elif args.mnist is not None:
        if not has_mnist_files(args.mnist):
            parser.error(
                f"--mnist {args.mnist} lacks MNIST's IDX files ({', '.join(IDX_FILES)}, raw "
                "or .gz); point it at their folder, or pass --embedded for mnist_5k"
            )
        args.mnist = args.mnist.resolve()
    else:
        args.mnist = next((c for c in MNIST_CANDIDATES if has_mnist_files(c)), None)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device; use --device cpu")
    return args


@contextlib.contextmanager
def kept_torch_state() -> Iterator[None]:
    """Puts back what the runs change globally: the matmul precision, cuDNN's switches and
    torch.compile's recompile limits."""
    precision = torch.get_float32_matmul_precision()
    tf32, benchmark = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = benchmark


def allow_recompiles() -> None:
    """Every nn.Module.compile shares one code object (Module._call_impl), so the networks
    of both loops and all models count towards one recompile limit (8): past it dynamo
    falls back to eager, silently. Raised for --compile."""
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 256))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table, write --json; returns the JSON's content."""
    args = parse_args(argv)
    deadline = time.monotonic() + args.budget
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Lightning's banner ("GPU available: ...") and genlab's lines, every run.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("genlab").setLevel(logging.WARNING)
    if args.compile:
        allow_recompiles()

    rows: dict[str, Any] = {}
    epoch: dict[str, Any] | None = None
    with kept_torch_state(), warnings.catch_warnings():
        # Lightning's hints for short runs (few batches, no workers) say nothing here.
        warnings.filterwarnings("ignore", module="pytorch_lightning")
        warnings.filterwarnings("ignore", module="lightning_fabric")
        epoch = bench_epoch(args)
        for model in args.models:
            rows[model] = bench_model(args, model, deadline)
            if args.json is not None:  # so that a run stopped by the timeout keeps these
                write_json(args.json, report(args, rows, epoch, complete=False))
    result = report(args, rows, epoch, complete=True)
    print(table(result))
    if args.json is not None:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
