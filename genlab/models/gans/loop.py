"""The GAN: a generator G maps noise z ~ N(0, I) to images, a discriminator (or critic) D
scores images as real or generated, and the two are trained in turn with Lightning's manual
optimization, each with its own optimizer. G and D are injected networks (see
genlab.nn.gan); the adversarial loss is chosen by name (see ``losses``).

Scheduling (Algorithm 1 of Goodfellow et al., k = ``d_steps``, the n_critic of the
Wasserstein papers): Lightning hands one real batch to each training step, so every step
updates D once, on that batch and on fresh fakes, and every k-th step then updates G once on
fresh noise. G thus takes one step per k D steps, and each D step sees a new real batch.
Lightning counts the steps of both optimizers in ``trainer.global_step`` (and so in
``trainer.max_steps``): a batch is 1 + 1/k of them on average. Under DDP each backward pass
leaves one network without gradients, so multi-process runs need
``trainer.strategy=ddp_find_unused_parameters_true``, which ``genlab train`` sets.

Gradient accumulation (``accumulate_grad_batches`` = N, default 1) makes every update one
of a batch N times larger, without its memory. A *D update* is N training steps: each
backpropagates D's loss on its real batch (and fresh fakes) scaled by 1/N, and the N-th
then clips D's summed gradient, steps D and runs ``after_discriminator_step``. After every
k-th D update, in that same training step, G takes one update of N fresh-noise batches,
each backpropagated scaled by 1/N, so G still sees D after its k updates, as in Algorithm
1. For losses that are batch means and networks that treat images independently (no batch
norm, no dropout draws to match) an update from N batches of b images thus equals one from
a single batch of N·b images. (A conditional G's N batches all take the labels of the last
real batch.) ``d_updates`` and ``g_updates`` count updates, not batches, and
``trainer.global_step`` counts optimizer steps: N batches per D step. The batches of a D
update already gathered (``d_batches``) and their summed gradient are saved in checkpoints,
so a run resumed mid-update finishes that update exactly; a window that fitting ends
inside is not applied.

Images arrive in [0, 1]; D sees them mapped to [-1, 1], the range of G's tanh output, and
``decode`` maps G's output back to [0, 1].

Logged: ``train/d_loss`` and ``train/d_real``, ``train/d_fake`` (the batch means of D on real
images and on fakes) every training step; ``train/g_loss`` (the mean over its N batches)
and ``train/g_grad_norm`` (the L2 norm of all of G's gradients after its backward passes,
before clipping and the step) every G update;
``val/d_real``, ``val/d_fake`` (and ``test/...``) on the validation (test) images against as
many fakes. For the cross-entropy losses (bce, minimax) d_real and d_fake are probabilities
D(x) in (0, 1); for the others (wasserstein, hinge, least_squares) they are the raw scores
(for a Wasserstein critic, d_real − d_fake estimates the Wasserstein distance). A generator
gradient norm falling towards zero while d_fake sinks to 0 is the vanishing-gradient
failure; d_real and d_fake swinging back and forth is non-convergence.

With ``ema_decay`` set, the model keeps an exponential moving average of G's weights
(``generator_ema``, updated after every G update, copying G for the first ``ema_start``;
batch-norm statistics taken from G: see genlab.models.gans.ema), saved in every checkpoint.
Outside training (``model.eval()``: the validation steps and so ``val/d_fake``, the
fixed-noise grid, the class-coverage callback, the checkpoint commands) ``generate`` runs
the average instead of G, unless ``use_ema`` is set False; training steps always run G.
A run resumed with ``ema_decay`` newly set starts the average from the checkpoint's G.

Packing (PacGAN, Lin et al. 2018; ``pack`` = m, 1: off): D judges m samples at once,
concatenated on the channel axis, so its input has m·C channels (the configs set
``discriminator.channels: ${genlab.mul:${..in_channels},${..pack}}``) and it gives one score
per pack. A batch of B images becomes B/m packs, pack i holding images i·m to i·m + m − 1,
channel j·C + c of the pack being channel c of image i·m + j: the layout of the authors'
code. Real packs are m consecutive images of a shuffled batch, so m independent draws from
the data, and fake packs m consecutive fakes, each from its own noise vector, so m
independent draws from G, as the paper's packed fake sample is; every D step packs real
and fake batches alike, every G step packs its fresh fakes, and the validation and test
steps pack the images of a batch (leaving out the last B mod m). B must be a multiple of
m. The authors' D sees 64 packs a step: data.batch_size = 64·m. Penalties see the packed
inputs: WGAN-GP's interpolates pack against pack, one coefficient per pack, and bounds
the gradient's norm over the whole packed input, since the packed input is what the
critic is a function of. Conditional GANs refuse pack > 1: a pack of m images has m
labels, and how D should take them (m embeddings? one shared class?) is a design the
paper does not give.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.base import GenlabModule, OptimizerFactory, build_optimizer
from genlab.models.capabilities import Conditional, HasPrior
from genlab.models.gans.ema import GeneratorEMA, check_ema_options
from genlab.models.gans.losses import adversarial_loss
from genlab.nn.network import describe

# The checkpoint entry holding the update counters.
UPDATES_KEY = "gan_updates"
# The checkpoint entry holding D's gradient summed over the batches of an unfinished
# accumulation window, by parameter name within the discriminator.
ACCUMULATED_KEY = "gan_accumulated_d_grads"


class GAN(GenlabModule, HasPrior):
    """A generator and a discriminator trained against each other with ``loss``.

    ``generator``: noise [B, latent_dim] -> images [B, C, H, W] in [-1, 1]; ``discriminator``:
    images in [-1, 1] -> scores [B]. ``d_steps`` is Algorithm 1's k. ``optimizer_g`` and
    ``optimizer_d`` are optimizer factories (``params`` -> optimizer); both optimizers'
    states go into every checkpoint. ``grad_clip_norm`` clips each network's gradient norm
    before its step (Lightning's ``trainer.gradient_clip_val`` does not apply to manual
    optimization; ``genlab train`` hands it to this option). ``accumulate_grad_batches``
    (N) sums the gradients of N batches into each update of either network (see the
    module's docstring). ``ema_decay`` (None: off) keeps a moving average of G's weights
    for sampling, copying G for the first ``ema_start`` updates (see genlab.models.gans.ema);
    ``use_ema`` (an attribute, True unless a command turns it off) picks it outside
    training. ``pack`` (m) has D judge m samples at once, stacked on the channel axis
    (PacGAN; see the module's docstring). Subclasses add a term to
    D's loss (``discriminator_penalty``), act after each D update
    (``after_discriminator_step``) or condition both networks on labels (``batch_labels``,
    ``generate``, ``discriminate``).
    """

    # No validation loss means anything for a GAN: keep the latest checkpoint only.
    checkpoint_monitor = None
    steps_own_optimizers = True
    # Learning rates logged as train/lr_g and train/lr_d.
    optimizer_names = ("g", "d")

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 100,
        loss: str = "bce",
        d_steps: int = 1,
        grad_clip_norm: float | None = None,
        accumulate_grad_batches: int = 1,
        ema_decay: float | None = None,
        ema_start: int = 0,
        pack: int = 1,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        super().__init__()
        for name, network in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(network, nn.Module):
                raise ConfigError(
                    f"model.{name} must be a network, a config node with a _target_ such as "
                    f"genlab.nn.gan.ConvGenerator (got {type(network).__name__})"
                )
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be at least 1 (got {latent_dim}); try 100")
        if getattr(generator, "latent_dim", latent_dim) != latent_dim:
            raise ConfigError(
                f"model.generator takes noise of {generator.latent_dim} dimensions but "
                f"model.latent_dim={latent_dim}; set model.generator.latent_dim: ${{..latent_dim}}"
            )
        if d_steps < 1:
            raise ConfigError(
                f"model.d_steps, the discriminator (critic) steps per generator step, must be "
                f"at least 1 (got {d_steps})"
            )
        if grad_clip_norm is not None and grad_clip_norm <= 0:
            raise ConfigError(
                f"model.grad_clip_norm must be positive, or null for no clipping "
                f"(got {grad_clip_norm})"
            )
        if (
            isinstance(accumulate_grad_batches, bool)
            or not isinstance(accumulate_grad_batches, int)
            or accumulate_grad_batches < 1
        ):
            raise ConfigError(
                f"model.accumulate_grad_batches, the batches summed into each update, must be "
                f"an integer of at least 1 (got {accumulate_grad_batches!r}); 1 accumulates "
                "nothing"
            )
        check_ema_options(ema_decay, ema_start)
        self._check_pack(pack, discriminator, in_channels)
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.image_shape = (in_channels, image_size, image_size)
        self.latent_dim = latent_dim
        self.adversarial_loss = adversarial_loss(loss)
        self.d_steps = d_steps
        self.grad_clip_norm = grad_clip_norm
        self.accumulate_grad_batches = accumulate_grad_batches
        self.pack = pack
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        # The moving average of G (a submodule, so in the state_dict), and whether sampling
        # outside training uses it.
        self.generator_ema = (
            None if ema_decay is None else GeneratorEMA(generator, decay=ema_decay, start=ema_start)
        )
        self.use_ema = True
        # Updates so far, saved in checkpoints so a resumed run keeps the k-step rhythm, and
        # the batches of the D update under way, so it resumes mid-window.
        self.d_updates = 0
        self.g_updates = 0
        self.d_batches = 0
        # D's partial gradient read from a checkpoint, put back at the next training step
        # (when the parameters sit on their final device).
        self._pending_d_grads: dict[str, Tensor] | None = None
        self.register_fixed_noise(latent_dim)

    def _check_pack(self, pack: int, discriminator: nn.Module, in_channels: int) -> None:
        """``pack`` is a positive integer, 1 for a conditional GAN, and D, where it says how
        it was built (a genlab network), takes pack · in_channels channels."""
        if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
            raise ConfigError(
                f"model.pack, the samples D judges at once (PacGAN), must be an integer of at "
                f"least 1 (got {pack!r}); 1 packs nothing, the paper packs 2 to 4"
            )
        if pack > 1 and isinstance(self, Conditional):
            raise ConfigError(
                f"model.pack={pack}: a {type(self).__name__} is conditional, and a pack of "
                f"{pack} images has {pack} labels, which its discriminator has no way to take; "
                "packing is for unconditional GANs: set model.pack=1"
            )
        built = describe(discriminator) or {}
        channels = built.get("channels")
        if isinstance(channels, int) and channels != pack * in_channels:
            raise ConfigError(
                f"model.discriminator takes {channels}-channel images, but it is shown packs "
                f"of {pack} {in_channels}-channel image(s), {pack * in_channels} channels "
                f"(model.pack={pack}, model.in_channels={in_channels}); set "
                "model.discriminator.channels: ${genlab.mul:${..in_channels},${..pack}}"
            )

    def packed(self, x: Tensor) -> Tensor:
        """Images [B, C, H, W] -> packs [B/m, m·C, H, W] for D, m = ``pack``: pack i holds
        images i·m .. i·m + m − 1 side by side on the channel axis (itself for m = 1)."""
        if self.pack == 1:
            return x
        b, c, h, w = x.shape
        if b % self.pack:
            raise ConfigError(
                f"model.pack={self.pack} packs {self.pack} images into each discriminator "
                f"input, but a batch has {b} images, not a multiple of {self.pack}; set "
                f"data.batch_size to a multiple of {self.pack} (e.g. {64 * self.pack}, the "
                "paper's 64 packs)"
            )
        # [B, C, H, W] read as [B/m, m, C, H, W]: channel j·C + c of pack i is channel c
        # of image i·m + j (a view of a contiguous batch, a copy of a channels-last one).
        return x.reshape(b // self.pack, self.pack * c, h, w)

    # The networks, and the hooks subclasses specialise.

    def batch_labels(self, y: Tensor) -> Tensor | None:
        """The labels the networks are conditioned on: none, for an unconditional GAN."""
        return None

    def active_generator(self) -> nn.Module:
        """The generator network that ``generate`` runs (subclasses' ``generate`` go through
        it too): the moving average of G's weights when the model keeps one, is not
        training and ``use_ema`` is on; otherwise the trained G, always in training steps."""
        if self.generator_ema is not None and self.use_ema and not self.training:
            return self.generator_ema.module
        return self.generator

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Noise [B, latent] -> G's images [B, C, H, W] in [-1, 1]."""
        return self.active_generator()(z)

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images [B, C, H, W] in [-1, 1] -> D's scores [B]."""
        return self.discriminator(x)

    def discriminator_penalty(
        self, real: Tensor, fake: Tensor, labels: Tensor | None
    ) -> Tensor | None:
        """A term added to D's loss, from the real and fake images in [-1, 1]; None here."""
        return None

    def after_discriminator_step(self) -> None:
        """Runs after every D update (WGAN clips the critic's weights here)."""

    def generator_penalty(self) -> Tensor | None:
        """A term added to G's loss at each of its backward passes (a regulariser of G's
        weights, such as BigGAN's orthogonal penalty); None here."""
        return None

    # Sampling, the interface of `genlab sample` and `genlab interpolate`.

    def sample_latent(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        truncation: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n noise vectors [n, latent] from N(0, I), truncated at ±``truncation`` when given
        (see genlab.latent.gaussian_draws), their spread scaled by ``temperature``."""
        z = self.noise(n, self.latent_dim, generator=generator, truncation=truncation)
        return temperature * z

    def decode(self, z: Tensor) -> Tensor:
        """Noise [B, latent] -> images [B, C, H, W] in [0, 1]."""
        return (self.generate(z) + 1) / 2

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        """The grid logged every validation epoch: G's images of ``fixed_z``, 8 per row.
        ``x``, a fixed validation batch, is not needed."""
        return {"val/samples": list(self.decode(self.fixed_z).split(self.SAMPLES_PER_ROW))}

    # Training.

    def _clip(self, optimizer: Any) -> None:
        if self.grad_clip_norm is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm"
            )

    def can_fuse_steps(self) -> bool:
        # Batches trained one after another by train_batch: a chunk of them is exact.
        return type(self).training_step is GAN.training_step

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        fusion = self.fusion
        if fusion is not None:
            fusion.run(batch)
        else:
            self.train_batch(batch)

    def train_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        x, y = batch
        labels = self.batch_labels(y)
        opt_g, opt_d = self.training_optimizers()
        self._restore_accumulated_gradients()
        updated = self._discriminator_batch(opt_d, x * 2 - 1, labels)
        if updated and self.d_updates % self.d_steps == 0:
            self._generator_update(opt_g, labels, x.shape[0])

    def _discriminator_batch(self, opt_d: Any, real: Tensor, labels: Tensor | None) -> bool:
        """Adds one batch's share (1/N) to D's gradient and, with the N-th batch of the
        window, updates D. True when D was updated."""
        n = real.shape[0]
        loss = self.adversarial_loss
        window = self.accumulate_grad_batches
        with self.toggled_optimizer(opt_d):
            if self.d_batches == 0:
                opt_d.zero_grad(set_to_none=True)
            with torch.no_grad():
                fake = self.generate(self.sample_latent(n), labels)
            # Real and fake in separate batches, as DCGAN does: each batch-norm batch is pure.
            # D sees them packed (PacGAN; pack 1: as they are), and so do its penalties.
            real, fake = self.packed(real), self.packed(fake)
            real_scores = self.discriminate(real, labels)
            fake_scores = self.discriminate(fake, labels)
            d_loss = loss.discriminator(real_scores, fake_scores)
            penalty = self.discriminator_penalty(real, fake, labels)
            if penalty is not None:
                d_loss = d_loss + penalty
            self.backward_loss(d_loss / window)
            self.d_batches += 1
            updated = self.d_batches == window
            if updated:
                self._clip(opt_d)
                self.step_optimizer(opt_d)
                self.d_batches = 0
        if updated:
            self.after_discriminator_step()
            self.d_updates += 1
        d_terms = {
            "d_loss": d_loss,
            "d_real": loss.summarize(real_scores),
            "d_fake": loss.summarize(fake_scores),
        }
        self.log_terms(d_terms, "train", batch_size=n, prog_bar="d_loss")
        return updated

    def _generator_update(self, opt_g: Any, labels: Tensor | None, n: int) -> None:
        """One G update from N batches of n fresh noise vectors, each scaled by 1/N."""
        window = self.accumulate_grad_batches
        losses = []
        with self.toggled_optimizer(opt_g):
            opt_g.zero_grad(set_to_none=True)
            for _ in range(window):
                # Fresh noise, as in Algorithm 1; D's weights are frozen by the toggle.
                fake = self.packed(self.generate(self.sample_latent(n), labels))
                g_loss = self.adversarial_loss.generator(self.discriminate(fake, labels))
                penalty = self.generator_penalty()
                total = g_loss if penalty is None else g_loss + penalty
                self.backward_loss(total / window)
                losses.append(g_loss.detach())
            grads = [p.grad for p in self.generator.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads)
            self._clip(opt_g)
            if self.generator_ema is not None and self.g_updates == 0:
                # The average starts from G as training finds it, whatever a subclass or a
                # loaded state did to G's weights after the copy in __init__.
                self.generator_ema.reset(self.generator)
            self.step_optimizer(opt_g)
        self.g_updates += 1
        if self.generator_ema is not None:
            self.generator_ema.update(self.generator, self.g_updates)
        # Logged at G updates only; Lightning writes the latest value at each logging step.
        g_terms = {"g_loss": torch.stack(losses).mean(), "g_grad_norm": grad_norm}
        self.log_terms(g_terms, "train", batch_size=n * window, prog_bar="g_loss")

    def _restore_accumulated_gradients(self) -> None:
        """Puts back D's partial gradient of a window a checkpoint was saved inside."""
        pending, self._pending_d_grads = self._pending_d_grads, None
        if not pending:
            return
        for name, p in self.discriminator.named_parameters():
            if name in pending:
                p.grad = pending[name].to(device=p.device, dtype=p.dtype)

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> None:
        """D on the split's images against as many fakes, from noise seeded by the batch
        index so that every epoch compares against the same draws."""
        x, y = batch
        # Whole packs only: a last batch of B images leaves out its last B mod m.
        whole = x.shape[0] - x.shape[0] % self.pack
        if whole == 0:
            return
        x, y = x[:whole], y[:whole]
        labels = self.batch_labels(y)
        generator = torch.Generator().manual_seed(batch_idx)
        fake = self.generate(self.sample_latent(x.shape[0], generator=generator), labels)
        summarize = self.adversarial_loss.summarize
        terms = {
            "d_real": summarize(self.discriminate(self.packed(x * 2 - 1), labels)),
            "d_fake": summarize(self.discriminate(self.packed(fake), labels)),
        }
        self.log_terms(terms, stage, batch_size=x.shape[0])

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def build_optimizers(self) -> list[torch.optim.Optimizer]:
        """[G's optimizer, D's optimizer], in the order ``training_step`` unpacks them; the
        base's ``configure_optimizers`` adds one scheduler each (scheduler=) and steps them."""
        return [
            build_optimizer(self.optimizer_g, self.generator.parameters(), key="model.optimizer_g"),
            build_optimizer(
                self.optimizer_d, self.discriminator.parameters(), key="model.optimizer_d"
            ),
        ]

    # Checkpoints.

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[UPDATES_KEY] = {
            "d": self.d_updates,
            "g": self.g_updates,
            "d_batches": self.d_batches,
        }
        if self.d_batches:
            # Saved mid-window: without the summed gradient the resumed update would miss
            # the batches already seen.
            checkpoint[ACCUMULATED_KEY] = {
                name: p.grad.detach().cpu().clone()
                for name, p in self.discriminator.named_parameters()
                if p.grad is not None
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        updates = checkpoint.get(UPDATES_KEY, {})
        self.d_updates = int(updates.get("d", 0))
        self.g_updates = int(updates.get("g", 0))
        grads = checkpoint.get(ACCUMULATED_KEY)
        # A window is resumed only with its gradient, and only with the same window size;
        # otherwise the next D update starts afresh.
        batches = int(updates.get("d_batches", 0))
        resumable = grads is not None and 0 < batches < self.accumulate_grad_batches
        self.d_batches = batches if resumable else 0
        self._pending_d_grads = dict(grads) if resumable else None
        self._match_average(checkpoint.get("state_dict", {}))

    def _match_average(self, state: dict[str, Tensor]) -> None:
        """Fits a checkpoint's state_dict to whether this model keeps a moving average of G,
        before Lightning loads it: a run resumed with ``ema_decay`` newly set starts the
        average from the checkpoint's G; one resumed with it unset drops the average."""
        prefix = "generator_ema."
        stored = [k for k in state if k.startswith(prefix)]
        if self.generator_ema is None:
            for key in stored:
                del state[key]
        elif not stored:
            for key in [k for k in state if k.startswith("generator.")]:
                state[f"{prefix}module.{key.removeprefix('generator.')}"] = state[key].clone()
            state[f"{prefix}n_averaged"] = torch.ones_like(self.generator_ema.n_averaged)
