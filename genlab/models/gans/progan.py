"""ProGAN (Karras et al., 2018, "Progressive Growing of GANs for Improved Quality, Stability,
and Variation"): G and D start at 4x4 images and grow, one doubling at a time, to
``image_size``; the networks are genlab.nn.progan's, built whole, run at the model's
``stage`` and fade-in weight ``alpha``.

The schedule counts the real images shown to D (``images_seen``, every process's, as the
paper counts images): stage 0 (4x4) trains for ``stable_images``; each later stage k first
fades in over ``fade_images`` (alpha rising linearly from 0 to 1, G's and D's new blocks
blended with the old resolution's paths) and then trains stably for ``stable_images``; the
last stage stays until the trainer stops. So the last stage is fully faded in after
``stable_images + (K − 1)·(fade_images + stable_images) + fade_images`` images, K the
number of doublings. Stage and alpha follow ``images_seen`` after every training step
(and before the first). The real images are average-pooled to the stage's resolution and,
during a fade, blended as the paper does: x = lerp(upsample(avgpool(x)), x, alpha), so that
real and fake images go through the same low-pass while the new resolution enters.

The loss is WGAN-GP's (the gradient penalty, ``gp_weight`` 10, at the current resolution)
plus the paper's drift term ``drift``·E[D(x)²] (ε = 0.001), which keeps the critic's
scores from drifting away from 0; it is part of D's loss (``d_loss``) and logged alone as
``train/drift`` (E[D(x)²]). As in the paper's code, both Adam optimizers' moments are reset
whenever a phase starts (a fade or a stable phase; ``reset_optimizers``), since the
moments of the previous phase belong to another network.

``batch_sizes`` maps a resolution to its batch size (the paper shrinks the batch as the
images grow, to fit memory). The data module has one batch size, so ``data.batch_size``
must be the largest of them: a step at a resolution with a smaller size trains on the first
b images of the batch and leaves the rest out (the batches are shuffled every epoch, so no
image is left out for good). An epoch then shows D fewer images than the split holds;
``images_seen`` counts the images trained on. A resolution the map leaves out uses the
whole batch.

Stage, alpha and images seen live on the model, not in the networks (an average of G's
weights is then run at the model's stage), and are saved in the model's state_dict as its
extra state (``get_extra_state``): every checkpoint holds them, a resumed run continues the
schedule exactly (mid-fade included), and the checkpoint commands, which rebuild a model
with ``load_state_dict`` alone, sample at the stage training reached.

Logged every training step: ``train/stage``, ``train/alpha``, ``train/resolution``,
``train/images_seen``, besides WGAN-GP's terms. The grid of the fixed noise shows the
current resolution, upsampled (nearest) to ``image_size``; so does ``decode``, and
``decode(z, stage=K)`` draws at an earlier stage K (``genlab sample stage=K``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import ConfigError
from genlab.models.capabilities import Grows
from genlab.models.gans.losses import critic_wasserstein_loss
from genlab.models.gans.wgan import WGANGP
from genlab.nn.progan import growth_stages, stage_resolution


class ProGAN(WGANGP, Grows):
    """Progressive growing of G and D (see the module's docstring).

    ``fade_images`` and ``stable_images``: real images per fade-in and per stable phase (the
    paper's 800k each); ``batch_sizes``: None or {resolution: batch size}; ``drift``: the
    weight ε of E[D(x)²] in D's loss; ``reset_optimizers``: reset both Adam optimizers'
    moments at every phase's start, as the paper's code does. The networks must grow: take
    ``(input, stage, alpha)`` and have ``num_stages`` matching ``image_size``, as
    genlab.nn.progan's ProGenerator and ProDiscriminator do. The other arguments are
    WGANGP's and GAN's (``d_steps`` 1: the paper alternates D and G steps).
    """

    def __init__(
        self,
        *,
        fade_images: int = 800_000,
        stable_images: int = 800_000,
        batch_sizes: Mapping[Any, int] | None = None,
        drift: float = 0.001,
        reset_optimizers: bool = True,
        gp_weight: float = 10.0,
        loss: str = "wasserstein",
        d_steps: int = 1,
        **gan: Any,
    ) -> None:
        """``gan``: the other keyword arguments of ``GAN`` (the networks, latent_dim, ...)."""
        super().__init__(gp_weight=gp_weight, loss=loss, d_steps=d_steps, **gan)
        if loss != "wasserstein":
            raise ConfigError(
                f"model.loss={loss!r}: ProGAN trains with the WGAN-GP loss and its drift "
                "term; keep model.loss=wasserstein"
            )
        image_size = self.image_shape[-1]
        self.num_stages = growth_stages(image_size)
        for name, example in (("generator", "ProGenerator"), ("discriminator", "ProDiscriminator")):
            stages = getattr(getattr(self, name), "num_stages", None)
            if stages != self.num_stages:
                raise ConfigError(
                    f"model.{name} must be a growing network for {image_size}x{image_size} "
                    f"images ({self.num_stages} stages, taking (input, stage, alpha)), such as "
                    f"genlab.nn.progan.{example} with image_size: ${{..image_size}} (it has "
                    f"{stages} stages)"
                )
        for key, value in (("fade_images", fade_images), ("stable_images", stable_images)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"model.{key}, real images per phase, must be an integer of at least 0 "
                    f"(got {value!r}); the paper uses 800000"
                )
        if fade_images + stable_images < 1:
            raise ConfigError(
                "model.fade_images and model.stable_images are both 0: the stages would have "
                "no length; give stable_images at least 1"
            )
        if isinstance(drift, bool) or not isinstance(drift, int | float) or drift < 0:
            raise ConfigError(
                f"model.drift, the weight of E[D(x)^2] in the critic's loss, must be a number "
                f"of at least 0 (got {drift!r}); the paper uses 0.001"
            )
        self.fade_images = fade_images
        self.stable_images = stable_images
        self.batch_sizes = self._checked_batch_sizes(batch_sizes, image_size)
        self.drift = float(drift)
        self.reset_optimizers = bool(reset_optimizers)
        # The growth state (see the module's docstring); stage 0 is stable from the start.
        self.images_seen = 0
        self.stage = 0
        self.alpha = 1.0
        # D's loss: the Wasserstein critic's plus the drift term.
        self.adversarial_loss = dataclasses.replace(
            self.adversarial_loss, discriminator=self._critic_loss
        )

    def _checked_batch_sizes(
        self, batch_sizes: Mapping[Any, int] | None, image_size: int
    ) -> dict[int, int]:
        if batch_sizes is None:
            return {}
        if not isinstance(batch_sizes, Mapping):
            raise ConfigError(
                f"model.batch_sizes must map resolutions to batch sizes, e.g. "
                f"{{4: 64, 32: 32}}, or be null (got {batch_sizes!r})"
            )
        resolutions = [stage_resolution(k) for k in range(self.num_stages)]
        checked = {}
        for key, size in batch_sizes.items():
            try:
                resolution = int(key)
            except (TypeError, ValueError):
                resolution = None
            if resolution not in resolutions:
                raise ConfigError(
                    f"model.batch_sizes has the key {key!r}, which is not a resolution this "
                    f"model grows through ({', '.join(map(str, resolutions))})"
                )
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigError(
                    f"model.batch_sizes[{resolution}] must be an integer of at least 1 (got "
                    f"{size!r})"
                )
            checked[resolution] = size
        return checked

    # The schedule.

    def schedule(self, images: int) -> tuple[int, float]:
        """(stage, alpha) once ``images`` real images have been shown to D."""
        last = self.num_stages - 1
        if images < self.stable_images:
            return 0, 1.0
        phase = self.fade_images + self.stable_images
        stage = 1 + (images - self.stable_images) // phase
        if stage > last:
            return last, 1.0
        into = images - self.stable_images - (stage - 1) * phase
        if into < self.fade_images:
            return stage, into / self.fade_images
        return stage, 1.0

    def stage_resolution(self, stage: int) -> int:
        """The side of stage ``stage``'s images: 4·2^stage."""
        return stage_resolution(stage)

    @property
    def resolution(self) -> int:
        """The side of the current stage's images."""
        return stage_resolution(self.stage)

    def batch_size_at(self, resolution: int, available: int) -> int:
        """The images a training step at ``resolution`` uses of a batch of ``available``."""
        return min(self.batch_sizes.get(resolution, available), available)

    def stage_images(
        self, x: Tensor, stage: int | None = None, alpha: float | None = None
    ) -> Tensor:
        """Full-size images [B, C, S, S] as D sees real images at ``stage`` and ``alpha``
        (default: the model's): average-pooled to the stage's resolution and, during a
        fade, blended with their half-resolution version, upsampled: the low-pass the
        generator's fade-in applies to its own images."""
        stage = self.stage if stage is None else stage
        alpha = self.alpha if alpha is None else alpha
        factor = x.shape[-1] // stage_resolution(stage)
        if factor > 1:
            x = F.avg_pool2d(x, factor)
        if stage > 0 and alpha < 1:
            low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
            x = torch.lerp(low, x, float(alpha))
        return x

    def _follow_schedule(self) -> None:
        """Stage and alpha for the images seen so far; at a new phase (a fade or a stable
        phase starting) the optimizers' moments are reset when ``reset_optimizers``."""
        stage, alpha = self.schedule(self.images_seen)
        if self.reset_optimizers and (stage, alpha < 1) != (self.stage, self.alpha < 1):
            for optimizer in self.trainer.optimizers:
                optimizer.state.clear()
        self.stage, self.alpha = stage, alpha

    # The networks at the model's stage.

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Noise [B, latent] -> G's images [B, C, r, r] at the current resolution r."""
        return self.active_generator()(z, self.stage, self.alpha)

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images [B, C, r, r] at the current resolution -> D's scores [B]."""
        return self.discriminator(x, self.stage, self.alpha)

    def _critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        """E[D(G(z))] − E[D(x)] + drift·E[D(x)²]."""
        loss = critic_wasserstein_loss(real_scores, fake_scores)
        if self.drift > 0:
            drift = real_scores.square().mean()
            self.log_terms({"drift": drift}, "train", batch_size=real_scores.shape[0])
            loss = loss + self.drift * drift
        return loss

    def decode(self, z: Tensor, stage: int | None = None) -> Tensor:
        """Noise [B, latent] -> images [B, C, S, S] in [0, 1] at ``image_size`` S: G's
        images at the current stage (``stage`` None; the final resolution once training
        has grown to it) or at an earlier ``stage``, upsampled (nearest) to S."""
        if stage is None:
            stage, alpha = self.stage, self.alpha
        else:
            if (
                isinstance(stage, bool)
                or not isinstance(stage, int)
                or not 0 <= stage <= self.stage
            ):
                raise ConfigError(
                    f"stage={stage!r}: this model has grown to stage {self.stage} "
                    f"({self.resolution}x{self.resolution}) of {self.num_stages - 1}, so a stage "
                    f"must lie in 0..{self.stage}"
                )
            alpha = self.alpha if stage == self.stage else 1.0
        images = self.active_generator()(z, stage, alpha)
        factor = self.image_shape[-1] // images.shape[-1]
        if factor > 1:
            images = F.interpolate(images, scale_factor=factor, mode="nearest")
        # G's output is linear, not squashed: clamp to the pixel range.
        return ((images + 1) / 2).clamp(0, 1)

    # Training.

    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = self.trainer.datamodule
        available = getattr(datamodule, "batch_size", None)
        largest = max(self.batch_sizes.values(), default=0)
        if isinstance(available, int) and available < largest:
            raise ConfigError(
                f"model.batch_sizes asks for batches of up to {largest} images but "
                f"data.batch_size={available}; every step takes its images from one data batch, "
                f"so set data.batch_size={largest}"
            )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._follow_schedule()
        x, y = batch
        b = self.batch_size_at(self.resolution, x.shape[0])
        super().training_step((self.stage_images(x[:b]), y[:b]), batch_idx)
        growth = {"stage": self.stage, "alpha": self.alpha, "resolution": self.resolution}
        self.images_seen += b * self.trainer.world_size
        growth["images_seen"] = self.images_seen
        terms = {k: torch.tensor(float(v), device=self.device) for k, v in growth.items()}
        self.log_terms(terms, "train", batch_size=b, prog_bar="resolution")
        # Stage and alpha of the next step: what a checkpoint written now holds and what the
        # grids and samples of this point in training show.
        self._follow_schedule()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        super().validation_step((self.stage_images(x), y), batch_idx)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        super().test_step((self.stage_images(x), y), batch_idx)

    # The growth state, in the state_dict.

    def get_extra_state(self) -> dict[str, Any]:
        return {"images_seen": self.images_seen, "stage": self.stage, "alpha": self.alpha}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.images_seen = int(state["images_seen"])
        self.stage = int(state["stage"])
        self.alpha = float(state["alpha"])
        if not 0 <= self.stage < self.num_stages:
            raise ConfigError(
                f"the checkpoint's growth stage {self.stage} does not exist in this model of "
                f"{self.num_stages} stages; was it trained at another data.image_size?"
            )
