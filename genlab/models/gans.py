"""Generative adversarial networks, the lecture's part 3: a generator G maps noise z ~ N(0, I)
to images, a discriminator (or critic) D scores images as real or generated, and the two are
trained in turn with Lightning's manual optimization, each with its own optimizer.

Scheduling (Algorithm 1 of Goodfellow et al., k = ``d_steps``, ``n_critic`` for the
Wasserstein models): Lightning hands one real batch to each training step, so every step
updates D once, on that batch and on fresh fakes, and every k-th step then updates G once on
fresh noise. G thus takes one step per k D steps, and each D step sees a new real batch.
Lightning counts the steps of both optimizers in ``trainer.global_step`` (and so in
``trainer.max_steps``): a batch is 1 + 1/k of them on average. Under DDP each backward pass
leaves one network without gradients, so multi-process runs need
``trainer.strategy=ddp_find_unused_parameters_true``.

Images arrive in [0, 1]; D sees them mapped to [-1, 1], the range of G's tanh output, and
``decode`` maps G's output back to [0, 1].

Logged: ``train/d_loss`` and ``train/d_real``, ``train/d_fake`` (the batch means of D on real
images and on fakes) every D step; ``train/g_loss`` and ``train/g_grad_norm`` (the L2 norm of
all of G's gradients after its backward pass, before clipping and the step) every G step;
``val/d_real``, ``val/d_fake`` (and ``test/...``) on the validation (test) images against as
many fakes. For the cross-entropy models (gan, dcgan, cgan) d_real and d_fake are
probabilities D(x) in (0, 1); for the Wasserstein and hinge models (wgan, wgan_gp, sagan)
they are the raw scores (for the Wasserstein critics, d_real − d_fake estimates the
Wasserstein distance). A generator gradient norm falling towards zero while d_fake sinks to
0 is the vanishing-gradient failure; d_real and d_fake swinging back and forth is
non-convergence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import ConfigError
from genlab.nn.gan import (
    GENERATOR_LOSSES,
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
    critic_wasserstein_loss,
    dcgan_networks,
    discriminator_bce_loss,
    discriminator_hinge_loss,
    generator_bce_loss,
    generator_score_loss,
    gradient_penalty,
)

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def _noise(
    n: int,
    latent_dim: int,
    generator: torch.Generator | None,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """N(0, I) draws [n, latent_dim] on ``device``, made where ``generator`` lives: a seeded
    CPU generator gives the same draws whether the model runs on the CPU or a GPU."""
    source = generator.device if generator is not None else device
    return torch.randn(n, latent_dim, generator=generator, device=source, dtype=dtype).to(device)


class AdversarialModel(pl.LightningModule):
    """The manual-optimization loop, sampling, logging and checkpointing every GAN shares.

    Subclasses build ``self.generator`` (noise [B, latent] -> images [B, C, H, W] in
    [-1, 1]) and ``self.discriminator`` (images in [-1, 1] -> scores [B]) and implement
    ``discriminator_loss`` and ``generator_loss``; conditional models also override
    ``generate`` and ``discriminate`` to feed the labels in.

    ``optimizer_g`` and ``optimizer_d`` are optimizer factories (``params`` -> optimizer),
    given in the model config; both optimizers' states go into every checkpoint.
    ``grad_clip_norm`` clips each network's gradient norm before its step (Lightning's
    ``trainer.gradient_clip_val`` does not apply to manual optimization).
    """

    has_prior = True
    conditional = False
    # No validation loss means anything for a GAN: keep the latest checkpoint only.
    checkpoint_monitor = None
    # True: D outputs logits, logged as probabilities. False: critic scores, logged raw.
    scores_are_logits = True
    # The grid of samples decodes the same noise every epoch, so epochs compare directly.
    NUM_FIXED_SAMPLES = 64
    SAMPLES_PER_ROW = 8

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        latent_dim: int,
        d_steps: int,
        grad_clip_norm: float | None,
        optimizer_g: OptimizerFactory | None,
        optimizer_d: OptimizerFactory | None,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be at least 1 (got {latent_dim}); try 100")
        if d_steps < 1:
            raise ConfigError(
                f"model.d_steps (model.n_critic for the Wasserstein GANs), the discriminator "
                f"steps per generator step, must be at least 1 (got {d_steps})"
            )
        if grad_clip_norm is not None and grad_clip_norm <= 0:
            raise ConfigError(
                f"model.grad_clip_norm must be positive, or null for no clipping "
                f"(got {grad_clip_norm})"
            )
        # The optimizers are factories from the config, not data: keep them out of checkpoints.
        self.save_hyperparameters(ignore=["optimizer_g", "optimizer_d"])
        self.automatic_optimization = False
        self.image_shape = (in_channels, image_size, image_size)
        self.latent_dim = latent_dim
        self.d_steps = d_steps
        self.grad_clip_norm = grad_clip_norm
        self.optimizer_factories = {"optimizer_g": optimizer_g, "optimizer_d": optimizer_d}
        self.run_config: dict[str, Any] | None = None
        # Updates so far, saved in checkpoints so a resumed run keeps the k-step rhythm.
        self.d_updates = 0
        self.g_updates = 0
        # Its own generator: the same noise whatever the run's seed, and the global random
        # stream (and so the weights' seeding) untouched.
        generator = torch.Generator().manual_seed(0)
        self.register_buffer(
            "fixed_z", torch.randn(self.NUM_FIXED_SAMPLES, latent_dim, generator=generator)
        )

    # The networks and losses, specialised by subclasses.

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Noise [B, latent] -> G's images [B, C, H, W] in [-1, 1]."""
        return self.generator(z)

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images [B, C, H, W] in [-1, 1] -> D's scores [B] (logits or critic values)."""
        return self.discriminator(x)

    def discriminator_loss(
        self,
        real_scores: Tensor,
        fake_scores: Tensor,
        real: Tensor,
        fake: Tensor,
        labels: Tensor | None,
    ) -> Tensor:
        """D's loss from its scores [B] on real and fake images [B, C, H, W] in [-1, 1]."""
        raise NotImplementedError

    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        """G's loss from D's scores [B] on its images."""
        raise NotImplementedError

    def after_discriminator_step(self) -> None:
        """Runs after every D step (WGAN clips the critic's weights here)."""

    # Sampling, the interface of `genlab sample` and `genlab interpolate`.

    def sample_latent(
        self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """n noise vectors [n, latent] from N(0, I), their spread scaled by ``temperature``."""
        z = _noise(n, self.latent_dim, generator, device=self.device, dtype=self.dtype)
        return temperature * z

    def decode(self, z: Tensor) -> Tensor:
        """Noise [B, latent] -> images [B, C, H, W] in [0, 1]."""
        return (self.generate(z) + 1) / 2

    @torch.no_grad()
    def sample(
        self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """n new images [n, C, H, W] in [0, 1]."""
        return self.decode(self.sample_latent(n, temperature=temperature, generator=generator))

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        """The grid logged every validation epoch: G's images of ``fixed_z``, 8 per row.
        ``x``, a fixed validation batch, is not needed."""
        return {"val/samples": list(self.decode(self.fixed_z).split(self.SAMPLES_PER_ROW))}

    # Training.

    def score_summary(self, scores: Tensor) -> Tensor:
        """The logged mean of D's scores [B]: a mean probability for logits, else the mean."""
        scores = scores.detach()
        return torch.sigmoid(scores).mean() if self.scores_are_logits else scores.mean()

    def _clip(self, optimizer: Any) -> None:
        if self.grad_clip_norm is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm"
            )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        labels = y if self.conditional else None
        real = x * 2 - 1
        n = x.shape[0]
        opt_g, opt_d = self.optimizers()

        with self.toggled_optimizer(opt_d):
            with torch.no_grad():
                fake = self.generate(self.sample_latent(n), labels)
            # Real and fake in separate batches, as DCGAN does: each batch-norm batch is pure.
            real_scores = self.discriminate(real, labels)
            fake_scores = self.discriminate(fake, labels)
            d_loss = self.discriminator_loss(real_scores, fake_scores, real, fake, labels)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self._clip(opt_d)
            opt_d.step()
        self.after_discriminator_step()
        self.d_updates += 1
        self.log("train/d_loss", d_loss.detach(), prog_bar=True, batch_size=n)
        self.log("train/d_real", self.score_summary(real_scores), batch_size=n)
        self.log("train/d_fake", self.score_summary(fake_scores), batch_size=n)
        if self.d_updates % self.d_steps:
            return

        with self.toggled_optimizer(opt_g):
            # Fresh noise, as in Algorithm 1; D's weights are frozen by the toggle.
            g_loss = self.generator_loss(
                self.discriminate(self.generate(self.sample_latent(n), labels), labels)
            )
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            grads = [p.grad for p in self.generator.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads)
            self._clip(opt_g)
            opt_g.step()
        self.g_updates += 1
        # Logged at G steps only; Lightning writes the latest value at each logging step.
        self.log("train/g_loss", g_loss.detach(), prog_bar=True, batch_size=n)
        self.log("train/g_grad_norm", grad_norm, batch_size=n)

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> None:
        """D on the split's images against as many fakes, from noise seeded by the batch
        index so that every epoch compares against the same draws."""
        x, y = batch
        labels = y if self.conditional else None
        generator = torch.Generator().manual_seed(batch_idx)
        fake = self.generate(self.sample_latent(x.shape[0], generator=generator), labels)
        for name, images in (("d_real", x * 2 - 1), ("d_fake", fake)):
            self.log(
                f"{stage}/{name}",
                self.score_summary(self.discriminate(images, labels)),
                batch_size=x.shape[0],
                sync_dist=True,
            )

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[G's optimizer, D's optimizer], in the order ``training_step`` unpacks them."""
        for name, factory in self.optimizer_factories.items():
            if not callable(factory):
                raise ConfigError(
                    f"model.{name} is not an optimizer; give it a _target_ such as "
                    "torch.optim.Adam with _partial_: true (see genlab/configs/model/dcgan.yaml)"
                )
        return [
            self.optimizer_factories["optimizer_g"](params=self.generator.parameters()),
            self.optimizer_factories["optimizer_d"](params=self.discriminator.parameters()),
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain dicts, lists and scalars only, so checkpoints load with weights_only=True.
        if self.run_config is not None:
            checkpoint["genlab_config"] = self.run_config
        checkpoint["gan_updates"] = {"d": self.d_updates, "g": self.g_updates}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        updates = checkpoint.get("gan_updates", {})
        self.d_updates = int(updates.get("d", 0))
        self.g_updates = int(updates.get("g", 0))


class CrossEntropyGAN(AdversarialModel):
    """Goodfellow et al.'s losses: D is a classifier trained with cross-entropy on real (1)
    and fake (0) images; G minimises log(1 − D(G(z))) (``g_loss=minimax``) or −log D(G(z))
    (``nonsaturating``, the default; see ``genlab.nn.gan.generator_bce_loss``)."""

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        latent_dim: int,
        d_steps: int,
        g_loss: str,
        grad_clip_norm: float | None,
        optimizer_g: OptimizerFactory | None,
        optimizer_d: OptimizerFactory | None,
    ) -> None:
        if g_loss not in GENERATOR_LOSSES:
            raise ConfigError(
                f"model.g_loss={g_loss!r} is not one of {', '.join(GENERATOR_LOSSES)}"
            )
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            d_steps=d_steps,
            grad_clip_norm=grad_clip_norm,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
        )
        self.g_loss = g_loss

    def discriminator_loss(
        self,
        real_scores: Tensor,
        fake_scores: Tensor,
        real: Tensor,
        fake: Tensor,
        labels: Tensor | None,
    ) -> Tensor:
        return discriminator_bce_loss(real_scores, fake_scores)

    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        return generator_bce_loss(fake_scores, self.g_loss)


class GAN(CrossEntropyGAN):
    """The original GAN (Goodfellow et al., 2014): fully connected G and D.

    G: z -> ``g_hidden_dims`` (Linear + ReLU) -> pixels with tanh. D: flattened image ->
    ``d_hidden_dims`` (Linear + LeakyReLU(0.2) + dropout) -> one logit. ``d_steps`` is
    Algorithm 1's k.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 100,
        g_hidden_dims: Sequence[int] = (256, 512, 1024),
        d_hidden_dims: Sequence[int] = (1024, 512, 256),
        dropout: float = 0.3,
        d_steps: int = 1,
        g_loss: str = "nonsaturating",
        grad_clip_norm: float | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            d_steps=d_steps,
            g_loss=g_loss,
            grad_clip_norm=grad_clip_norm,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
        )
        self.generator = MLPGenerator(
            in_features=latent_dim, hidden_dims=g_hidden_dims, image_shape=self.image_shape
        )
        self.discriminator = MLPDiscriminator(
            in_features=in_channels * image_size * image_size,
            hidden_dims=d_hidden_dims,
            dropout=dropout,
        )

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.discriminator(x.flatten(1))


class ConditionalGAN(CrossEntropyGAN):
    """Conditional GAN (Mirza & Osindero, 2014), in its fully connected form.

    The one-hot label y [B, num_classes] is concatenated to z at G's input and to the
    flattened image at D's input; both networks are otherwise those of ``GAN``. (The paper
    first maps z and y through separate hidden layers; concatenating at the input is the
    simpler form its figure and the lecture show.) Fakes in training take the labels of the
    real batch, so D sees the same classes in both halves.

    ``decode``, ``sample`` and the grid take labels; without them the samples cycle through
    the classes 0, 1, ..., num_classes − 1, 0, 1, ...
    """

    conditional = True

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 100,
        num_classes: int = 10,
        g_hidden_dims: Sequence[int] = (256, 512, 1024),
        d_hidden_dims: Sequence[int] = (1024, 512, 256),
        dropout: float = 0.3,
        d_steps: int = 1,
        g_loss: str = "nonsaturating",
        grad_clip_norm: float | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        if num_classes < 2:
            raise ConfigError(f"model.num_classes must be at least 2 (got {num_classes})")
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            d_steps=d_steps,
            g_loss=g_loss,
            grad_clip_norm=grad_clip_norm,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
        )
        self.num_classes = num_classes
        self.generator = MLPGenerator(
            in_features=latent_dim + num_classes,
            hidden_dims=g_hidden_dims,
            image_shape=self.image_shape,
        )
        self.discriminator = MLPDiscriminator(
            in_features=in_channels * image_size * image_size + num_classes,
            hidden_dims=d_hidden_dims,
            dropout=dropout,
        )

    def class_labels(self, n: int, label: int | None = None) -> Tensor:
        """Labels [n] on the model's device: all ``label``, or 0, 1, ... cycling when None."""
        if label is None:
            return torch.arange(n, device=self.device) % self.num_classes
        if isinstance(label, bool) or not isinstance(label, int):
            raise ConfigError(f"label must be a class index, an integer (got {label!r})")
        if not 0 <= label < self.num_classes:
            raise ConfigError(
                f"label={label} is out of range: this {type(self).__name__} has classes "
                f"0..{self.num_classes - 1}"
            )
        return torch.full((n,), label, device=self.device, dtype=torch.long)

    def _one_hot(self, labels: Tensor, like: Tensor) -> Tensor:
        return F.one_hot(labels, self.num_classes).to(like.dtype)

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            labels = self.class_labels(z.shape[0])
        return self.generator(torch.cat([z, self._one_hot(labels, z)], dim=1))

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError("a conditional discriminator needs the images' labels")
        flat = x.flatten(1)
        return self.discriminator(torch.cat([flat, self._one_hot(labels, flat)], dim=1))

    def decode(self, z: Tensor, labels: Tensor | int | None = None) -> Tensor:
        """Noise [B, latent] and labels ([B], one int for all, or None to cycle through the
        classes) -> images [B, C, H, W] in [0, 1]."""
        if labels is None or isinstance(labels, int):
            labels = self.class_labels(z.shape[0], labels)
        elif ((labels < 0) | (labels >= self.num_classes)).any():
            raise ConfigError(
                f"labels must lie in 0..{self.num_classes - 1} (got {labels.tolist()})"
            )
        return (self.generate(z, labels.to(z.device)) + 1) / 2

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        labels: Tensor | int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n new images [n, C, H, W] in [0, 1] of the given class(es); see ``decode``."""
        z = self.sample_latent(n, temperature=temperature, generator=generator)
        return self.decode(z, labels)

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        """One row per class, each decoding the same first 8 vectors of ``fixed_z``: a column
        keeps its noise (the style) while the rows change the class."""
        z = self.fixed_z[: self.SAMPLES_PER_ROW]
        return {"val/samples": [self.decode(z, c) for c in range(self.num_classes)]}

    def on_fit_start(self) -> None:
        splits = getattr(self.trainer.datamodule, "splits", None) or {}
        if "train" in splits and int(splits["train"].labels.max()) >= self.num_classes:
            raise ConfigError(
                f"the training data has labels up to {int(splits['train'].labels.max())} but "
                f"model.num_classes={self.num_classes}; set model.num_classes to the number "
                "of classes"
            )


class DCGAN(CrossEntropyGAN):
    """Deep convolutional GAN (Radford et al., 2015); see ``ConvGenerator`` and
    ``ConvDiscriminator`` for the layers. ``width`` is the channel count of D's first layer
    and G's last hidden one; both double towards the small end. Works for 28x28 (7 -> 14 ->
    28), 32x32 (4 -> ... -> 32) and 64x64 images and other even sizes."""

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 100,
        width: int = 64,
        d_steps: int = 1,
        g_loss: str = "nonsaturating",
        grad_clip_norm: float | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            d_steps=d_steps,
            g_loss=g_loss,
            grad_clip_norm=grad_clip_norm,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
        )
        self.generator, self.discriminator = dcgan_networks(
            latent_dim=latent_dim, channels=in_channels, image_size=image_size, width=width
        )


class WGAN(AdversarialModel):
    """Wasserstein GAN (Arjovsky et al., 2017) with the DCGAN networks.

    The critic f outputs an unbounded score (no sigmoid) and maximises E[f(x)] − E[f(G(z))],
    an estimate of the Wasserstein-1 distance as long as f stays Lipschitz, which weight
    clipping to [−clip, clip] after every critic step enforces crudely. G maximises
    E[f(G(z))]. The critic takes ``n_critic`` steps per generator step; the paper uses
    RMSprop with lr 5e-5 because momentum destabilised training. ``critic_norm`` is the
    critic's normalisation (batch as in the paper's DCGAN critic, layer or none).
    """

    scores_are_logits = False

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 100,
        width: int = 64,
        critic_norm: str = "batch",
        n_critic: int = 5,
        clip: float = 0.01,
        grad_clip_norm: float | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        if clip <= 0:
            raise ConfigError(
                f"model.clip bounds the critic's weights and must be positive "
                f"(got {clip}); the paper uses 0.01"
            )
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            d_steps=n_critic,
            grad_clip_norm=grad_clip_norm,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
        )
        self.clip = clip
        self.generator, self.discriminator = dcgan_networks(
            latent_dim=latent_dim,
            channels=in_channels,
            image_size=image_size,
            width=width,
            critic_norm=critic_norm,
        )

    def discriminator_loss(
        self,
        real_scores: Tensor,
        fake_scores: Tensor,
        real: Tensor,
        fake: Tensor,
        labels: Tensor | None,
    ) -> Tensor:
        return critic_wasserstein_loss(real_scores, fake_scores)

    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        return generator_score_loss(fake_scores)

    @torch.no_grad()
    def after_discriminator_step(self) -> None:
        for p in self.discriminator.parameters():
            p.clamp_(-self.clip, self.clip)


class WGANGP(AdversarialModel):
    """WGAN with gradient penalty (Gulrajani et al., 2017): instead of clipping weights, the
    critic's loss adds ``gp_weight``·E[(‖∇f(x̂)‖₂ − 1)²] at points x̂ on the lines between
    real and fake images, one random coefficient per pair (logged as ``train/gp``).

    The penalty constrains each image's gradient on its own, which batch norm would couple
    across the batch, so the critic uses layer normalisation (the paper's advice) or none.
    The paper's optimizer: Adam, lr 1e-4, betas (0, 0.9), ``n_critic`` = 5.
    """

    scores_are_logits = False

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 100,
        width: int = 64,
        critic_norm: str = "layer",
        n_critic: int = 5,
        gp_weight: float = 10.0,
        grad_clip_norm: float | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        if critic_norm == "batch":
            raise ConfigError(
                "model.critic_norm=batch does not suit the gradient penalty, which constrains "
                "each image's gradient while batch norm mixes the images of a batch; use "
                "layer or none"
            )
        if gp_weight < 0:
            raise ConfigError(f"model.gp_weight must be non-negative (got {gp_weight})")
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            d_steps=n_critic,
            grad_clip_norm=grad_clip_norm,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
        )
        self.gp_weight = gp_weight
        self.generator, self.discriminator = dcgan_networks(
            latent_dim=latent_dim,
            channels=in_channels,
            image_size=image_size,
            width=width,
            critic_norm=critic_norm,
        )

    def discriminator_loss(
        self,
        real_scores: Tensor,
        fake_scores: Tensor,
        real: Tensor,
        fake: Tensor,
        labels: Tensor | None,
    ) -> Tensor:
        penalty = gradient_penalty(lambda v: self.discriminate(v, labels), real, fake)
        self.log("train/gp", penalty.detach(), batch_size=real.shape[0])
        return critic_wasserstein_loss(real_scores, fake_scores) + self.gp_weight * penalty

    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        return generator_score_loss(fake_scores)


class SAGAN(AdversarialModel):
    """Self-attention GAN (Zhang et al., 2018), unconditional, on the DCGAN layout.

    Both networks have a self-attention block at half the image resolution and spectral
    normalisation on every weight (the paper's choice for G as well as D); G keeps batch
    norm, D has no other normalisation. The hinge loss trains D; G maximises D(G(z)). The
    paper's two time-scale update rule, lr 1e-4 for G and 4e-4 for D with Adam betas
    (0, 0.9) and one D step per G step, is in the config. Weights keep PyTorch's default
    initialisation: spectral normalisation sets their scale.
    """

    scores_are_logits = False

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 128,
        width: int = 64,
        d_steps: int = 1,
        grad_clip_norm: float | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            latent_dim=latent_dim,
            d_steps=d_steps,
            grad_clip_norm=grad_clip_norm,
            optimizer_g=optimizer_g,
            optimizer_d=optimizer_d,
        )
        self.generator = ConvGenerator(
            latent_dim=latent_dim,
            out_channels=in_channels,
            image_size=image_size,
            width=width,
            spectral=True,
            self_attention=True,
        )
        self.discriminator = ConvDiscriminator(
            in_channels=in_channels,
            image_size=image_size,
            width=width,
            norm="none",
            spectral=True,
            self_attention=True,
        )

    def discriminator_loss(
        self,
        real_scores: Tensor,
        fake_scores: Tensor,
        real: Tensor,
        fake: Tensor,
        labels: Tensor | None,
    ) -> Tensor:
        return discriminator_hinge_loss(real_scores, fake_scores)

    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        return generator_score_loss(fake_scores)
