"""The Wasserstein GANs: a critic kept (roughly) 1-Lipschitz by weight clipping (WGAN) or by
a gradient penalty (WGAN-GP). Both train with ``loss: wasserstein`` in their configs, and
``d_steps`` is the papers' n_critic."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from genlab.errors import ConfigError
from genlab.models.gans.loop import GAN
from genlab.models.gans.losses import gradient_penalty


class WGAN(GAN):
    """Wasserstein GAN (Arjovsky et al., 2017).

    The critic f outputs an unbounded score (no sigmoid) and maximises E[f(x)] − E[f(G(z))],
    an estimate of the Wasserstein-1 distance as long as f stays Lipschitz, which clipping
    every weight to [−clip, clip] after every critic step enforces crudely. The critic takes
    ``d_steps`` (n_critic) steps per generator step; the paper uses RMSprop with lr 5e-5
    because momentum destabilised training.
    """

    def __init__(
        self, *, clip: float = 0.01, loss: str = "wasserstein", d_steps: int = 5, **gan: Any
    ) -> None:
        """``gan``: the other keyword arguments of ``GAN`` (the networks, latent_dim, ...)."""
        super().__init__(loss=loss, d_steps=d_steps, **gan)
        if clip <= 0:
            raise ConfigError(
                f"model.clip bounds the critic's weights and must be positive "
                f"(got {clip}); the paper uses 0.01"
            )
        self.clip = clip

    @torch.no_grad()
    def after_discriminator_step(self) -> None:
        for p in self.discriminator.parameters():
            p.clamp_(-self.clip, self.clip)


class WGANGP(GAN):
    """WGAN with gradient penalty (Gulrajani et al., 2017): instead of clipping weights, the
    critic's loss adds ``gp_weight``·E[(‖∇f(x̂)‖₂ − 1)²] at points x̂ on the lines between
    real and fake images, one random coefficient per pair (logged as ``train/gp``).

    The penalty constrains each image's gradient on its own, which batch norm would couple
    across the batch, so a critic with batch norm is refused: use layer normalisation (the
    paper's advice) or none. The paper's optimizer: Adam, lr 1e-4, betas (0, 0.9),
    ``d_steps`` (n_critic) = 5.
    """

    def __init__(
        self, *, gp_weight: float = 10.0, loss: str = "wasserstein", d_steps: int = 5, **gan: Any
    ) -> None:
        """``gan``: the other keyword arguments of ``GAN`` (the networks, latent_dim, ...)."""
        super().__init__(loss=loss, d_steps=d_steps, **gan)
        if any(isinstance(m, _BatchNorm) for m in self.discriminator.modules()):
            raise ConfigError(
                "the critic (model.discriminator) has batch norm, which does not suit the "
                "gradient penalty: the penalty constrains each image's gradient while batch "
                "norm mixes the images of a batch; set model.discriminator.norm=layer or none"
            )
        if gp_weight < 0:
            raise ConfigError(f"model.gp_weight must be non-negative (got {gp_weight})")
        self.gp_weight = gp_weight

    def discriminator_penalty(self, real: Tensor, fake: Tensor, labels: Tensor | None) -> Tensor:
        penalty = gradient_penalty(lambda v: self.discriminate(v, labels), real, fake)
        self.log_terms({"gp": penalty}, "train", batch_size=real.shape[0])
        return self.gp_weight * penalty
