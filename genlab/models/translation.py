"""Image-to-image translation: Pix2Pix (paired data) and CycleGAN (unpaired data).

Both are adversarial and step their own optimizers (Lightning's manual optimization): one
for the generator(s), one for the discriminator(s), in that order, so a ``scheduler=``
config (Pix2Pix and CycleGAN default to ``linear_decay``) schedules both. Batches are
``(a, b)`` image pairs in [0, 1] from genlab.data.translation; the networks see them mapped
to [-1, 1], the range of the generators' tanh outputs.

**Pix2Pix** (Isola et al., 2017): a U-Net G maps an input image A to an output B; a
conditional PatchGAN D scores each patch of the channel-concatenation (A, B) as real or
generated. G minimises the cGAN loss plus λ·L1(G(A), B) with λ = 100; D minimises its loss
halved, as the paper does "to slow down the rate at which D learns relative to G". The
noise is G's dropout, kept on at test time (the paper's choice; see the U-Net's
``dropout_at_eval``).

**CycleGAN** (Zhu et al., 2017): G_AB and G_BA (ResNet generators) and D_A, D_B
(unconditional PatchGANs). The generators minimise, together, the least-squares
adversarial loss of both directions, λ·(‖G_BA(G_AB(a)) − a‖₁ + ‖G_AB(G_BA(b)) − b‖₁)
with λ = 10, and the identity loss λ·λ_idt·(‖G_AB(b) − b‖₁ + ‖G_BA(a) − a‖₁) with λ_idt =
0.5 (``lambda_identity: 0`` turns it off; it needs the same channels in both domains).
Each D is updated on real images against a history of 50 past fakes (Shrivastava et al.'s
image pool; its contents are checkpointed so a resumed run draws the same history), with
its loss halved.

L1 values in the logs are in pixel units of [0, 1] images (half their value on [-1, 1]),
so they read the same as ``genlab evaluate``'s; the objectives use the papers' [-1, 1]
scale.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn

from genlab.data.protocols import PairedBatches
from genlab.errors import ConfigError
from genlab.models.base import GenlabModule, OptimizerFactory, build_optimizer
from genlab.models.capabilities import Translates
from genlab.nn.translation import ImagePool

# The checkpoint entry of CycleGAN's two image pools.
POOLS_KEY = "cyclegan_image_pools"
DIRECTIONS = ("AtoB", "BtoA")


def _check_network(name: str, network: Any) -> None:
    if not isinstance(network, nn.Module):
        raise ConfigError(
            f"model.{name} must be a network, a config node with a _target_ such as "
            f"genlab.nn.translation.UNetGenerator (got {type(network).__name__})"
        )


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"model.{name} must be a number (got {value!r})")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "positive"
        raise ConfigError(f"model.{name} must be {bound} (got {value})")


class TranslationLoss:
    """The adversarial loss of both papers, on D's patch scores: with a criterion ℓ(s, t)
    averaged over every patch (binary cross-entropy on logits for ``bce``, the papers'
    cGAN loss; the squared error for ``least_squares``, CycleGAN's), D minimises
    ½·(ℓ(D(real), 1) + ℓ(D(fake), 0)), halved "to slow down the rate at which D learns
    relative to G" (Pix2Pix §3.3; CycleGAN's code halves it too), and G minimises
    ℓ(D(fake), 1). (genlab's GAN losses carry LSGAN's ½ inside the least-squares terms;
    these do not, so the weights λ of the papers apply as published.)"""

    NAMES = ("bce", "least_squares")

    def __init__(self, name: str) -> None:
        if name not in self.NAMES:
            raise ConfigError(
                f"model.loss={name!r} is not a loss of Pix2Pix or CycleGAN; choose bce (the "
                "cGAN loss of Pix2Pix) or least_squares (CycleGAN's)"
            )
        self.name = name
        self.scores_are_logits = name == "bce"

    def criterion(self, scores: Tensor, target: float) -> Tensor:
        import torch.nn.functional as F

        targets = torch.full_like(scores, target)
        if self.scores_are_logits:
            return F.binary_cross_entropy_with_logits(scores, targets)
        return F.mse_loss(scores, targets)

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return 0.5 * (self.criterion(real_scores, 1.0) + self.criterion(fake_scores, 0.0))

    def generator(self, fake_scores: Tensor) -> Tensor:
        return self.criterion(fake_scores, 1.0)

    def summarize(self, scores: Tensor) -> Tensor:
        """The logged mean of D's scores: a mean probability for logits, else the mean."""
        scores = scores.detach()
        return torch.sigmoid(scores).mean() if self.scores_are_logits else scores.mean()


def to_signed(x: Tensor) -> Tensor:
    """[0, 1] images -> [-1, 1]."""
    return x * 2 - 1


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] images -> [0, 1]."""
    return (x + 1) / 2


def mean_abs(x: Tensor, y: Tensor) -> Tensor:
    return (x - y).abs().mean()


class TranslationModel(GenlabModule, Translates):
    """What Pix2Pix and CycleGAN share: manual optimization of a generator optimizer and a
    discriminator optimizer, the [0, 1] <-> [-1, 1] mapping, and translation."""

    # Set by the subclass: the tags of the image grids and the direction names it serves.
    directions: tuple[str, ...] = DIRECTIONS
    steps_own_optimizers = True
    # The learning rates are logged as train/lr_g and train/lr_d.
    optimizer_names = ("g", "d")

    def _init_common(
        self,
        *,
        loss: str,
        optimizer_g: OptimizerFactory | None,
        optimizer_d: OptimizerFactory | None,
    ) -> None:
        self.automatic_optimization = False
        self.adversarial_loss = TranslationLoss(loss)
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d

    def check_direction(self, direction: str) -> str:
        if direction not in self.directions:
            raise ConfigError(
                f"direction={direction} is not one this {type(self).__name__} translates; "
                f"choose {' or '.join(self.directions)}"
            )
        return direction

    def source_channels(self, direction: str) -> int:
        """The channels of the images ``direction`` translates from."""
        raise NotImplementedError

    def generator_parameters(self) -> Any:
        raise NotImplementedError

    def discriminator_parameters(self) -> Any:
        raise NotImplementedError

    def build_optimizers(self) -> list[torch.optim.Optimizer]:
        """[the generators' optimizer, the discriminators' optimizer]."""
        return [
            build_optimizer(self.optimizer_g, self.generator_parameters(), key="model.optimizer_g"),
            build_optimizer(
                self.optimizer_d, self.discriminator_parameters(), key="model.optimizer_d"
            ),
        ]

    def _step(self, optimizer: Any, loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate_batch(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate_batch(batch, "test")

    def evaluate_batch(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        raise NotImplementedError


class Pix2Pix(TranslationModel):
    """A conditional GAN from input images A to target images B (paired data).

    ``generator``: A in [-1, 1] -> B in [-1, 1] (genlab.nn.translation.UNetGenerator);
    ``discriminator``: the concatenation (A, B) on channels -> patch logits [B, 1, h, w]
    (genlab.nn.translation.PatchDiscriminator with in_channels = in + out channels).
    ``lambda_l1`` weighs the L1 term (100 in the paper); ``loss`` is the adversarial loss
    (bce, the paper's; least_squares as in the authors' later code).
    """

    # Pairs have targets: the best checkpoint is the one closest to them.
    checkpoint_monitor = "val/l1"
    directions = ("AtoB",)

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        in_channels: int = 1,
        out_channels: int = 1,
        image_size: int = 32,
        lambda_l1: float = 100.0,
        loss: str = "bce",
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        super().__init__()
        _check_network("generator", generator)
        _check_network("discriminator", discriminator)
        _check_positive("lambda_l1", lambda_l1, allow_zero=True)
        self._init_common(loss=loss, optimizer_g=optimizer_g, optimizer_d=optimizer_d)
        self.generator = generator
        self.discriminator = discriminator
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.image_size = image_size
        self.lambda_l1 = float(lambda_l1)

    def source_channels(self, direction: str) -> int:
        return self.in_channels

    def generator_parameters(self) -> Any:
        return self.generator.parameters()

    def discriminator_parameters(self) -> Any:
        return self.discriminator.parameters()

    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = self.trainer.datamodule
        if isinstance(datamodule, PairedBatches) and not datamodule.paired:
            raise ConfigError(
                "Pix2Pix learns from (input, target) pairs, and this data is unpaired "
                "(data.paired=false or data=unpaired_folder); use model=cyclegan for unpaired "
                "domains, or paired data (data=paired_folder, data=mnist_edges)"
            )

    def discriminate(self, a: Tensor, b: Tensor) -> Tensor:
        """D's patch logits of the pair (A, B), both in [-1, 1]."""
        return self.discriminator(torch.cat([a, b], dim=1))

    def translate(self, x: Tensor, direction: str = "AtoB") -> Tensor:
        """Input images [B, C, H, W] in [0, 1] -> outputs in [0, 1]."""
        self.check_direction(direction)
        return to_unit(self.generator(to_signed(x)))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        a, b = (to_signed(t) for t in batch)
        opt_g, opt_d = self.optimizers()
        loss = self.adversarial_loss
        fake = self.generator(a)

        with self.toggled_optimizer(opt_d):
            real_scores = self.discriminate(a, b)
            fake_scores = self.discriminate(a, fake.detach())
            d_loss = loss.discriminator(real_scores, fake_scores)
            self._step(opt_d, d_loss)

        with self.toggled_optimizer(opt_g):
            g_adv = loss.generator(self.discriminate(a, fake))
            l1 = mean_abs(fake, b)
            g_loss = g_adv + self.lambda_l1 * l1
            self._step(opt_g, g_loss)

        terms = {
            "d_loss": d_loss,
            "d_real": loss.summarize(real_scores),
            "d_fake": loss.summarize(fake_scores),
            "g_loss": g_loss,
            "g_adv": g_adv,
            "l1": l1 / 2,
        }
        self.log_terms(terms, "train", batch_size=a.shape[0], prog_bar="g_loss")

    def evaluate_batch(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        a, b = (to_signed(t) for t in batch)
        fake = self.generator(a)
        summarize = self.adversarial_loss.summarize
        terms = {
            "l1": mean_abs(fake, b) / 2,
            "d_real": summarize(self.discriminate(a, b)),
            "d_fake": summarize(self.discriminate(a, fake)),
        }
        self.log_terms(terms, stage, batch_size=a.shape[0], prog_bar="l1")

    @torch.no_grad()
    def image_grids(self, batch: Any) -> dict[str, list[Tensor]]:
        """Rows of inputs, outputs and targets of a fixed validation batch, 8 a row."""
        a, b = batch
        n = self.SAMPLES_PER_ROW
        a, b = a[:n], b[:n]
        return {"val/translations": [a, self.translate(a), b]}


class CycleGAN(TranslationModel):
    """Two generators between unpaired domains A and B, kept consistent by the cycle loss.

    ``generator_ab``/``generator_ba``: images in [-1, 1] of one domain -> the other's
    (genlab.nn.translation.ResnetGenerator); ``discriminator_a``/``discriminator_b``: images
    of their domain -> patch logits (PatchDiscriminator). ``loss`` defaults to
    least_squares, the paper's. ``pool_size`` past fakes feed each D (0: none).
    """

    # No loss here says which epoch translates best without targets: keep the latest.
    checkpoint_monitor = None

    def __init__(
        self,
        *,
        generator_ab: nn.Module,
        generator_ba: nn.Module,
        discriminator_a: nn.Module,
        discriminator_b: nn.Module,
        channels_a: int = 1,
        channels_b: int = 1,
        image_size: int = 32,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        loss: str = "least_squares",
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        super().__init__()
        for name, network in (
            ("generator_ab", generator_ab),
            ("generator_ba", generator_ba),
            ("discriminator_a", discriminator_a),
            ("discriminator_b", discriminator_b),
        ):
            _check_network(name, network)
        _check_positive("lambda_cycle", lambda_cycle, allow_zero=True)
        _check_positive("lambda_identity", lambda_identity, allow_zero=True)
        if lambda_identity > 0 and channels_a != channels_b:
            raise ConfigError(
                f"model.lambda_identity={lambda_identity} needs the same channels in both "
                f"domains (A has {channels_a}, B {channels_b}): G_AB(b) must be comparable "
                "with b; set model.lambda_identity=0"
            )
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 0:
            raise ConfigError(
                f"model.pool_size, the past fakes kept for each discriminator, must be a whole "
                f"number of 0 or more (got {pool_size!r}); the paper uses 50"
            )
        self._init_common(loss=loss, optimizer_g=optimizer_g, optimizer_d=optimizer_d)
        self.generator_ab = generator_ab
        self.generator_ba = generator_ba
        self.discriminator_a = discriminator_a
        self.discriminator_b = discriminator_b
        self.channels_a = channels_a
        self.channels_b = channels_b
        self.image_size = image_size
        self.lambda_cycle = float(lambda_cycle)
        self.lambda_identity = float(lambda_identity)
        self.pool_a = ImagePool(pool_size)
        self.pool_b = ImagePool(pool_size)

    def source_channels(self, direction: str) -> int:
        return self.channels_a if self.check_direction(direction) == "AtoB" else self.channels_b

    def generator_parameters(self) -> Any:
        return itertools.chain(self.generator_ab.parameters(), self.generator_ba.parameters())

    def discriminator_parameters(self) -> Any:
        return itertools.chain(self.discriminator_a.parameters(), self.discriminator_b.parameters())

    def generator_for(self, direction: str) -> nn.Module:
        self.check_direction(direction)
        return self.generator_ab if direction == "AtoB" else self.generator_ba

    def translate(self, x: Tensor, direction: str = "AtoB") -> Tensor:
        """Images of the source domain [B, C, H, W] in [0, 1] -> the other's, in [0, 1]."""
        return to_unit(self.generator_for(direction)(to_signed(x)))

    def cycle(self, x: Tensor, direction: str = "AtoB") -> Tensor:
        """x in [0, 1] -> translated and back: G_BA(G_AB(x)) for AtoB, in [0, 1]."""
        back = "BtoA" if direction == "AtoB" else "AtoB"
        return self.translate(self.translate(x, direction), back)

    def generator_terms(self, a: Tensor, b: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The generators' loss terms on real a, b in [-1, 1], and the fakes (fake_b,
        fake_a) the discriminators then see."""
        loss = self.adversarial_loss
        fake_b = self.generator_ab(a)
        fake_a = self.generator_ba(b)
        terms = {
            "g_adv_ab": loss.generator(self.discriminator_b(fake_b)),
            "g_adv_ba": loss.generator(self.discriminator_a(fake_a)),
            "cycle_a": mean_abs(self.generator_ba(fake_b), a),
            "cycle_b": mean_abs(self.generator_ab(fake_a), b),
        }
        total = terms["g_adv_ab"] + terms["g_adv_ba"]
        total = total + self.lambda_cycle * (terms["cycle_a"] + terms["cycle_b"])
        if self.lambda_identity > 0:
            terms["identity_a"] = mean_abs(self.generator_ba(a), a)
            terms["identity_b"] = mean_abs(self.generator_ab(b), b)
            weight = self.lambda_cycle * self.lambda_identity
            total = total + weight * (terms["identity_a"] + terms["identity_b"])
        terms["g_loss"] = total
        return terms, fake_b, fake_a

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        a, b = (to_signed(t) for t in batch)
        opt_g, opt_d = self.optimizers()
        loss = self.adversarial_loss

        with self.toggled_optimizer(opt_g):
            g_terms, fake_b, fake_a = self.generator_terms(a, b)
            self._step(opt_g, g_terms["g_loss"])

        with self.toggled_optimizer(opt_d):
            # Each D sees real images against fakes from its pool of past generators.
            pooled_b = self.pool_b.query(fake_b.detach())
            pooled_a = self.pool_a.query(fake_a.detach())
            real_a, fake_a_scores = self.discriminator_a(a), self.discriminator_a(pooled_a)
            real_b, fake_b_scores = self.discriminator_b(b), self.discriminator_b(pooled_b)
            d_a = loss.discriminator(real_a, fake_a_scores)
            d_b = loss.discriminator(real_b, fake_b_scores)
            self._step(opt_d, d_a + d_b)

        terms = {
            **{k: v / 2 if k.startswith(("cycle", "identity")) else v for k, v in g_terms.items()},
            "d_a_loss": d_a,
            "d_b_loss": d_b,
            "d_a_real": loss.summarize(real_a),
            "d_a_fake": loss.summarize(fake_a_scores),
            "d_b_real": loss.summarize(real_b),
            "d_b_fake": loss.summarize(fake_b_scores),
        }
        self.log_terms(terms, "train", batch_size=a.shape[0], prog_bar="g_loss")

    def evaluate_batch(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        a, b = batch
        summarize = self.adversarial_loss.summarize
        fake_b = self.translate(a, "AtoB")
        fake_a = self.translate(b, "BtoA")
        terms = {
            "cycle_a": mean_abs(self.translate(fake_b, "BtoA"), a),
            "cycle_b": mean_abs(self.translate(fake_a, "AtoB"), b),
            "d_a_real": summarize(self.discriminator_a(to_signed(a))),
            "d_a_fake": summarize(self.discriminator_a(to_signed(fake_a))),
            "d_b_real": summarize(self.discriminator_b(to_signed(b))),
            "d_b_fake": summarize(self.discriminator_b(to_signed(fake_b))),
        }
        terms["cycle"] = terms["cycle_a"] + terms["cycle_b"]
        self.log_terms(terms, stage, batch_size=a.shape[0], prog_bar="cycle")

    @torch.no_grad()
    def image_grids(self, batch: Any) -> dict[str, list[Tensor]]:
        """Real A / fake B / reconstructed A, and real B / fake A / reconstructed B, 8 a row."""
        a, b = batch
        n = self.SAMPLES_PER_ROW
        a, b = a[:n], b[:n]
        fake_b, fake_a = self.translate(a, "AtoB"), self.translate(b, "BtoA")
        return {
            "val/a_to_b": [a, fake_b, self.translate(fake_b, "BtoA")],
            "val/b_to_a": [b, fake_a, self.translate(fake_a, "AtoB")],
        }

    # Checkpoints: the pools' contents, so a resumed run's discriminators see the same history.

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[POOLS_KEY] = {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        pools = checkpoint.get(POOLS_KEY)
        if pools:
            self.pool_a.load_state_dict(pools["a"])
            self.pool_b.load_state_dict(pools["b"])
