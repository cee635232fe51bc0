"""Training throughput of the GANs through genlab against a minimal hand-written loop.

Trains one GAN (--model: gan, dcgan, progan or biggan) on the mnist_5k train split for --steps
batches (by default 30, 15 and 10: on one thread a batch of progan cost about 4 of
dcgan's, one of biggan about 9) after --warmup untimed ones, two ways in one process:

- genlab: ``genlab.commands.train.train`` on a composed Hydra config (no callbacks but a
  timer, no logger, no validation, no test), so the time includes Lightning's loop, the
  optimizer toggling, ``self.log`` and the DataLoader. With manual optimization every
  optimizer step counts towards ``trainer.max_steps``, so it is set to the D and G steps
  of the run's batches.
- plain: the same generator and discriminator modules, initial weights, data tensors, batch
  order and Adam settings (learning rates, betas, eps), in a loop that does the model's
  math as a user would write it, one batch at a time:

  - gan (the MLPs) and dcgan (28 px; one D and one G step a batch): fakes under no_grad,
    D's cross-entropy step, D frozen, G's non-saturating step on fresh noise.
  - progan (32 px, at its final stage: both networks run ``(x, stage=last, alpha=1)``;
    one D and one G step a batch): WGAN-GP with the drift term, fakes under no_grad, the
    critic on the real and the fake batch, the gradient penalty (weight 10) at one
    interpolate per real/fake pair, plus drift·E[D(x)²] (0.001); D frozen, G's step on
    −E[D(G(z))] with fresh noise; then the moving average of G's weights (decay 0.999),
    ``torch.optim.swa_utils.AveragedModel`` with PyTorch's EMA update, as PyTorch's docs
    show it.
  - biggan (32 px, class-conditional; two D steps a G step): every batch a hinge-loss D
    step on a new real batch and fakes of its labels (drawn under no_grad); after every
    second one, D frozen, G's step on −E[D(G(z, y), y)] with fresh noise and that batch's
    labels, plus β·Σ‖WᵀW ⊙ (1 − I)‖²_F (β 1e-4) over G's weights of two or more dimensions
    but the shared class embedding (genlab's set); then the moving average of G's weights
    as for progan.

genlab's ProGAN grows from 4x4; the benchmark times its last stage only. The timer callback
puts the model at that stage before the first step, through the growth state a checkpoint
restores (``set_extra_state``: the images seen when the last stage is fully faded in, that
stage, alpha 1), as a run resumed at the final stage starts; genlab's schedule then keeps it
there, and the timer checks, when its clock starts and when it stops, that the model is at
the last stage with alpha 1 (the JSON records both). BigGAN's moving average starts at G
update 0 here (``model.ema_start=0``; the config's 2000 updates only copy G), so that both
loops time the averaging of a long run. With two D steps a G step, --warmup and --steps
count batches (D steps) and are rounded up to even numbers, so the clock spans whole
cycles of two D steps and one G step.

Both loops start from the same weights (checked for every repeat) and do the same work per
batch, but they do not end with the same losses: the noise and the gradient penalty's
mixing coefficients come from the global random stream, which reaches the first step in
another state in each loop (genlab's run draws from it on the way), so the last losses only
agree in size.

Both run in float32 on the CPU. The runs alternate plain/genlab --repeats times; the table
gives the median images/s (real images per second) and ms per batch of each and the ratio
genlab/plain (1.0 means no overhead). Other processes on a shared machine distort the
figures; each run reports how many cores they kept busy. Run from the repository root:

    .venv/bin/python scripts/bench_gan.py
    .venv/bin/python scripts/bench_gan.py --steps 60 --repeats 5 --threads 1
    .venv/bin/python scripts/bench_gan.py --model progan --json bench/gan_progan.json

--json writes the layout of scripts/bench_translation.py, which scripts/bench_table.py turns
into the README's table: the machine and, under ``models``, each loop's figures (a row per
model, named by the model and what a batch does).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from benchlib import AdversarialRun as Run
from benchlib import (
    BatchTimer,
    Clock,
    adversarial_overrides,
    batches,
    finite,
    loop_json,
    machine_info,
    same_weights,
    tensor_state,
)
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from genlab.atomic import write_json
from genlab.commands.common import CONFIG_DIR
from genlab.commands.train import train

SEED = 0


@dataclass(frozen=True)
class Spec:
    """What one --model benchmarks: its config overrides (the settings the plain loop
    implements, pinned), the keys --width sets, the JSON's ``step`` (the README row's
    parenthesis), what a batch does in the printed table, the D steps a G step, the
    default timed and warm-up batches, and whether the timer keeps ProGAN at its final
    stage."""

    overrides: tuple[str, ...]
    width_keys: tuple[str, ...]
    step: str
    each: str
    d_steps: int = 1
    steps: int = 30
    warmup: int = 3
    final_stage: bool = False


SPECS = {
    # The vanilla GAN (MLPs): the same loop as dcgan's.
    "gan": Spec(
        overrides=("model=gan", "model.d_steps=1"),
        width_keys=(),
        step="MLPs; one D and one G step a batch",
        each="one D and one G step each",
    ),
    "dcgan": Spec(
        overrides=("model=dcgan", "model.d_steps=1"),
        width_keys=("model.generator.width", "model.discriminator.width"),
        step="one D and one G step a batch",
        each="one D and one G step each",
    ),
    "progan": Spec(
        overrides=(
            "model=progan",
            "data.image_size=32",
            "model.d_steps=1",
            "model.batch_sizes=null",
            "model.gp_weight=10.0",
            "model.drift=0.001",
            "model.ema_start=0",
        ),
        # D's widths follow G's (${..generator.max_channels}).
        width_keys=("model.generator.max_channels",),
        step="32 px, final stage; one D and one G step a batch",
        each="one D and one G step each, at the final stage",
        # About 4 times dcgan's batch: fewer batches still give a longer clock.
        steps=15,
        final_stage=True,
    ),
    "biggan": Spec(
        overrides=(
            "model=biggan",
            "data.image_size=32",
            "model.loss=hinge",
            "model.d_steps=2",
            "model.ema_start=0",
        ),
        width_keys=("model.generator.width", "model.discriminator.width"),
        step="32 px; two D steps a G step",
        each="a D step each, a G step every second",
        d_steps=2,
        # About 9 times dcgan's batch.
        steps=10,
        warmup=4,
    ),
}


def compose(args: argparse.Namespace, output_dir: str) -> DictConfig:
    """The `genlab train` config of one benchmark run, writing only under ``output_dir``."""
    spec = SPECS[args.model]
    batches = args.warmup + args.steps
    widths = [] if args.width is None else [f"{key}={args.width}" for key in spec.width_keys]
    overrides = [
        *spec.overrides,
        *widths,
        "data=mnist_5k",
        f"data.batch_size={args.batch_size}",
        "trainer=cpu",
        *adversarial_overrides(
            warmup=args.warmup, batches=batches, seed=SEED, output_dir=output_dir
        ),
        # A batch is one D step, and every d_steps-th batch also a G step.
        f"trainer.max_steps={batches + batches // spec.d_steps}",
        f"callbacks.bench_timer._target_={GanTimer.__module__}.{GanTimer.__qualname__}",
        f"+callbacks.bench_timer.final_stage={str(spec.final_stage).lower()}",
        f"performance.steps_per_execution={args.steps_per_execution}",
    ]
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra.compose("train", overrides=overrides)


def final_stage_state(model: Any) -> dict[str, Any]:
    """The growth state of a ProGAN whose last stage has just faded in fully: K·(fade +
    stable) images seen, K the last stage, at that stage with alpha 1 (checked against the
    model's own schedule)."""
    last = model.num_stages - 1
    images = last * (model.fade_images + model.stable_images)
    if model.schedule(images) != (last, 1.0):
        raise RuntimeError(
            f"ProGAN's schedule gives {model.schedule(images)} after {images} images, not "
            f"the last stage {last} with alpha 1; update final_stage_state"
        )
    return {"images_seen": images, "stage": last, "alpha": 1.0}


class GanTimer(BatchTimer):
    """benchlib's BatchTimer for every GAN: with ``final_stage`` (ProGAN), puts the model
    at its last stage with alpha 1 before the first step and records (stage, alpha) when
    the clock starts and stops, failing the run if either is not the last stage with
    alpha 1."""

    def __init__(self, start: int, stop: int, final_stage: bool = False) -> None:
        super().__init__(start, stop)
        self.final_stage = final_stage
        self.stages: list[tuple[int, float]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.final_stage:
            pl_module.set_extra_state(final_stage_state(pl_module))
        self.initial_state = tensor_state(pl_module)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.final_stage and self.batches + 1 in (self.start, self.stop):
            stage, alpha = int(pl_module.stage), float(pl_module.alpha)
            self.stages.append((stage, alpha))
            if (stage, alpha) != (pl_module.num_stages - 1, 1.0):
                raise RuntimeError(
                    f"ProGAN was at stage {stage} with alpha {alpha} at batch "
                    f"{self.batches + 1}, not at its last stage {pl_module.num_stages - 1} "
                    "with alpha 1: the timed batches would not be the final stage's"
                )
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def run_genlab(
    args: argparse.Namespace,
) -> tuple[Run, dict[str, Tensor], list[tuple[int, float]]]:
    """Fit through genlab; returns the timed run, the model's weights before step 1 and
    the (stage, alpha) pairs the timer checked (ProGAN only)."""
    with tempfile.TemporaryDirectory(prefix="bench_gan_") as output_dir:
        _, objects = train(compose(args, output_dir))
    timer = next(c for c in objects["trainer"].callbacks if isinstance(c, GanTimer))
    if timer.run is None:
        raise RuntimeError(f"genlab stopped after {timer.batches} batches, before {timer.stop}")
    if timer.batches != timer.stop:
        raise RuntimeError(
            f"genlab ran {timer.batches} batches, not {timer.stop}: trainer.max_steps does "
            "not match the D and G steps of the run's batches"
        )
    return timer.run, timer.initial_state, timer.stages


# The plain loops.


def adam(params: Any, node: DictConfig) -> torch.optim.Adam:
    """Adam with the config node's lr, betas and eps (PyTorch's default where absent)."""
    eps = node.get("eps")
    return torch.optim.Adam(
        params, lr=node.lr, betas=tuple(node.betas), **({} if eps is None else {"eps": eps})
    )


def moving_average(generator: nn.Module, decay: float) -> AveragedModel:
    """PyTorch's EMA of ``generator``'s weights (buffers copied from it at every update),
    starting from its weights now."""
    ema = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
    ema.update_parameters(generator)  # nothing averaged yet: a copy
    return ema


def plain_steps(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    data: Iterator[Tensor],
    steps: int,
    latent_dim: int,
) -> tuple[float, float]:
    """dcgan: ``steps`` batches of one D and one G step; the last D and G losses."""
    d_loss = g_loss = torch.tensor(float("nan"))
    for _ in range(steps):
        real = next(data) * 2 - 1
        n = real.shape[0]
        with torch.no_grad():
            fake = generator(torch.randn(n, latent_dim))
        # -[log D(x) + log(1 - D(G(z)))] with D = sigmoid(logits).
        d_loss = F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        discriminator.requires_grad_(False)
        g_loss = F.softplus(-discriminator(generator(torch.randn(n, latent_dim)))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        discriminator.requires_grad_(True)
    return d_loss.item(), g_loss.item()


def progan_critic_loss(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    gp_weight: float,
    drift: float,
) -> Tensor:
    """E[D(G(z))] − E[D(x)] + drift·E[D(x)²] + gp_weight·E[(‖∇D(x̂)‖ − 1)²], x̂ on the line
    between each real image and its fake, at a U[0, 1] coefficient per pair."""
    real_scores, fake_scores = critic(real), critic(fake)
    eps = torch.rand(real.shape[0], 1, 1, 1)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
    wasserstein = fake_scores.mean() - real_scores.mean()
    return wasserstein + drift * real_scores.square().mean() + gp_weight * penalty


@dataclass
class PlainProGAN:
    """The progan loop's state: both networks run at ``stage`` with alpha 1."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: AveragedModel
    latent_dim: int
    stage: int
    gp_weight: float
    drift: float

    def steps(self, data: Iterator[Tensor], steps: int) -> tuple[float, float]:
        g, d, stage = self.generator, self.discriminator, self.stage
        d_loss = g_loss = torch.tensor(float("nan"))
        for _ in range(steps):
            real = next(data) * 2 - 1
            n = real.shape[0]
            with torch.no_grad():
                fake = g(torch.randn(n, self.latent_dim), stage, 1.0)
            d_loss = progan_critic_loss(
                lambda x: d(x, stage, 1.0), real, fake, gp_weight=self.gp_weight, drift=self.drift
            )
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()

            d.requires_grad_(False)
            g_loss = -d(g(torch.randn(n, self.latent_dim), stage, 1.0), stage, 1.0).mean()
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
            d.requires_grad_(True)
            self.ema.update_parameters(g)
        return d_loss.item(), g_loss.item()


def orthogonality_weights(generator: nn.Module) -> list[Tensor]:
    """G's stored weights of two or more dimensions, but the embedding tables'."""
    tables = {
        id(p) for m in generator.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    return [p for p in generator.parameters() if p.dim() >= 2 and id(p) not in tables]


def orthogonal_penalty(weights: list[Tensor], masks: list[Tensor]) -> Tensor:
    """Σ ‖WᵀW ⊙ (1 − I)‖²_F, each weight's filters flattened to rows; ``masks`` are the
    (1 − I) of each."""
    total = torch.zeros(())
    for w, mask in zip(weights, masks, strict=True):
        flat = w.flatten(1)
        total = total + ((flat @ flat.T) * mask).square().sum()
    return total


@dataclass
class PlainBigGAN:
    """The biggan loop's state; ``step`` counts D steps, so a G step follows every
    ``d_steps``-th."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: AveragedModel
    latent_dim: int
    d_steps: int
    beta: float
    step: int = 0

    def __post_init__(self) -> None:
        self.weights = orthogonality_weights(self.generator)
        self.masks = [1 - torch.eye(len(w)) for w in self.weights]

    def steps(self, data: Iterator[tuple[Tensor, Tensor]], steps: int) -> tuple[float, float]:
        g, d = self.generator, self.discriminator
        d_loss = g_loss = torch.tensor(float("nan"))
        for _ in range(steps):
            x, y = next(data)
            real = x * 2 - 1
            n = real.shape[0]
            with torch.no_grad():
                fake = g(torch.randn(n, self.latent_dim), y)
            d_loss = F.relu(1 - d(real, y)).mean() + F.relu(1 + d(fake, y)).mean()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            self.step += 1
            if self.step % self.d_steps:
                continue

            d.requires_grad_(False)
            g_loss = -d(g(torch.randn(n, self.latent_dim), y), y).mean()
            penalty = self.beta * orthogonal_penalty(self.weights, self.masks)
            self.opt_g.zero_grad(set_to_none=True)
            (g_loss + penalty).backward()
            self.opt_g.step()
            d.requires_grad_(True)
            self.ema.update_parameters(g)
        return d_loss.item(), g_loss.item()


def labelled_batches(
    images: Tensor, labels: Tensor, batch_size: int, seed: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """benchlib.batches with each batch's labels: the same order, images and all."""
    from genlab.data.tensors import IndexBatchSampler

    sampler = IndexBatchSampler(
        len(images), batch_size=batch_size, shuffle=True, drop_last=True, seed=seed
    )
    while True:
        for index in sampler:
            yield images[index].float() / 255, labels[index]


def plain_loop(
    args: argparse.Namespace, cfg: DictConfig, model: Any, split: Any
) -> Callable[[int], tuple[float, float]]:
    """The model's plain loop, ready to run: n -> the last D and G losses after n more
    batches (its optimizers, moving average and batch order carry on between calls)."""
    m = cfg.model
    g, d = model.generator, model.discriminator
    opt_g, opt_d = adam(g.parameters(), m.optimizer_g), adam(d.parameters(), m.optimizer_d)
    if args.model in ("gan", "dcgan"):
        data = batches(split.images, args.batch_size, cfg.data.seed)
        return lambda n: plain_steps(g, d, opt_g, opt_d, data, n, model.latent_dim)
    ema = moving_average(g, m.ema_decay)
    if args.model == "progan":
        loop = PlainProGAN(
            g, d, opt_g, opt_d, ema, model.latent_dim, g.num_stages - 1, m.gp_weight, m.drift
        )
        data = batches(split.images, args.batch_size, cfg.data.seed)
        return lambda n: loop.steps(data, n)
    loop = PlainBigGAN(g, d, opt_g, opt_d, ema, model.latent_dim, m.d_steps, m.orthogonal_reg)
    labelled = labelled_batches(split.images, split.labels, args.batch_size, cfg.data.seed)
    return lambda n: loop.steps(labelled, n)


def run_plain(
    args: argparse.Namespace, cfg: DictConfig, split: Any
) -> tuple[Run, dict[str, Tensor]]:
    """Fit with the hand-written loop; returns the timed run and the initial weights."""
    torch.manual_seed(SEED)
    model = instantiate(cfg.model)
    model.train()
    initial_state = tensor_state(model)
    steps = plain_loop(args, cfg, model, split)
    steps(args.warmup)
    clock = Clock()
    losses = steps(args.steps)
    seconds, load = clock.stop()
    return Run(seconds, *losses, load), initial_state


def summary(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    timed = [r.batches or args.steps for r in runs]
    rates = [n * args.batch_size / r.seconds for n, r in zip(timed, runs, strict=True)]
    return {
        "images_per_s": statistics.median(rates),
        "ms_per_batch": statistics.median(r.seconds / n for n, r in zip(timed, runs, strict=True))
        * 1000,
        "rates": rates,
        "loads": [r.other_load for r in runs],
        "last": runs[-1],
    }


def table(
    plain: dict[str, Any], genlab: dict[str, Any], args: argparse.Namespace, image_size: int
) -> str:
    size = "" if args.model == "dcgan" else f" at {image_size} px"
    lines = [
        f"{args.model} on mnist_5k{size}, batch {args.batch_size}, {args.steps} timed batches "
        f"({SPECS[args.model].each}) after {args.warmup} warm-up, {args.repeats} repeats, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"{'':8} {'images/s':>9} {'ms/batch':>9} {'d_loss':>7} {'g_loss':>7}  "
        "each run: images/s (cores other processes used)",
    ]
    for name, r in (("plain", plain), ("genlab", genlab)):
        runs = "  ".join(
            f"{rate:.0f} ({load:.2f})" for rate, load in zip(r["rates"], r["loads"], strict=True)
        )
        lines.append(
            f"{name:8} {r['images_per_s']:9.0f} {r['ms_per_batch']:9.1f} "
            f"{r['last'].d_loss:7.3f} {r['last'].g_loss:7.3f}  {runs}"
        )
    ratio = genlab["images_per_s"] / plain["images_per_s"]
    best = max(genlab["rates"]) / max(plain["rates"])
    lines.append(f"genlab/plain {ratio:.3f} (best runs: {best:.3f})")
    return "\n".join(lines)


def as_json(
    plain: dict[str, Any],
    genlab: dict[str, Any],
    args: argparse.Namespace,
    image_size: int,
    stages: list[tuple[int, float]],
) -> dict[str, Any]:
    """The results in the benchmarks' JSON layout (that of bench_translation.py)."""

    def loop(r: dict[str, Any]) -> dict[str, Any]:
        return {
            **loop_json(r["rates"], r["loads"]),
            "ms_per_batch": r["ms_per_batch"],
            "final_d_loss": finite(r["last"].d_loss),
            "final_g_loss": finite(r["last"].g_loss),
        }

    spec = SPECS[args.model]
    row: dict[str, Any] = {
        "steps": args.steps,
        "step": spec.step,
        "d_steps": spec.d_steps,
        "plain": loop(plain),
        "genlab": loop(genlab),
        "ratio": genlab["images_per_s"] / plain["images_per_s"],
        "best_ratio": max(genlab["rates"]) / max(plain["rates"]),
        # Checked for every repeat; recorded so the JSON says so.
        "same_weights": True,
    }
    if spec.final_stage:
        # Where genlab's ProGAN was when each run's clock started and stopped.
        row["genlab_stages"] = [{"stage": s, "alpha": a} for s, a in stages]
    return {
        "benchmark": f"{args.model} training throughput, genlab against a plain PyTorch loop",
        "script": "bench_gan",
        "model": args.model,
        "machine": machine_info("cpu"),
        "data": "mnist_5k",
        "image_size": image_size,
        "width": args.width,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "models": {args.model: row},
    }


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(SPECS), default="dcgan", help="default: dcgan")
    parser.add_argument(
        "--steps", type=int, help="timed batches (default: dcgan 30, progan 15, biggan 10)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help="untimed batches before them (default: 3, biggan 4: whole D-D-G cycles)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop")
    parser.add_argument(
        "--steps-per-execution",
        default="auto",
        help="genlab's performance.steps_per_execution (default: auto: 16 for the MLP gan)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--width",
        type=int,
        help="the networks' width (dcgan, biggan: width; progan: max_channels); default: "
        "the model config's",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    spec = SPECS[args.model]
    if args.steps is None:
        args.steps = spec.steps
    if args.warmup is None:
        args.warmup = spec.warmup
    for name in ("steps", "warmup", "batch_size", "repeats", "threads", "width"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if spec.d_steps > 1:
        # Whole cycles of d_steps D steps and a G step, before and inside the clock.
        steps, warmup = round_up(args.steps, spec.d_steps), round_up(args.warmup, spec.d_steps)
        if (steps, warmup) != (args.steps, args.warmup):
            print(
                f"{args.model} takes {spec.d_steps} D steps a G step: timing {steps} batches "
                f"after {warmup} warm-up (--steps {args.steps} --warmup {args.warmup} rounded "
                f"up to multiples of {spec.d_steps})"
            )
        args.steps, args.warmup = steps, warmup
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table, write --json; returns the JSON's content."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Lightning's banner ("GPU available: ...") and genlab's output-dir line, every run.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("genlab").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench_gan_") as scratch:
        cfg = compose(args, scratch)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    split = datamodule.splits["train"]
    if len(split.images) < args.batch_size:
        raise SystemExit(f"--batch-size {args.batch_size} exceeds the {len(split.images)} images")

    plain_runs: list[Run] = []
    genlab_runs: list[Run] = []
    stages: list[tuple[int, float]] = []
    for _ in range(args.repeats):
        plain_run, plain_initial = run_plain(args, cfg, split)
        genlab_run, genlab_initial, run_stages = run_genlab(args)
        if not same_weights(plain_initial, genlab_initial):
            raise SystemExit(
                "the two loops started from different weights; the seeding of genlab train "
                "changed, so this comparison is not like for like"
            )
        plain_runs.append(plain_run)
        genlab_runs.append(genlab_run)
        stages += run_stages
    plain, genlab = summary(plain_runs, args), summary(genlab_runs, args)
    image_size = int(cfg.data.image_size)
    print(table(plain, genlab, args, image_size))
    report = as_json(plain, genlab, args, image_size, stages)
    if args.json is not None:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
