"""The adversarial losses, chosen by name in the config (``model.loss``).

Each loss is a pair: what D minimises given its scores on real and generated images, and
what G minimises given D's scores on its images. It also says how D's scores read: logits
(D(x) = sigmoid(score), logged as probabilities) or raw scores (logged as they are).

| name          | D minimises                                  | G minimises        | scores |
|---------------|----------------------------------------------|--------------------|--------|
| bce           | −log D(x) − log(1 − D(G(z)))                 | −log D(G(z))       | logits |
| minimax       | the same                                     | log(1 − D(G(z)))   | logits |
| wasserstein   | E[f(G(z))] − E[f(x)]                         | −E[f(G(z))]        | raw    |
| hinge         | E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))] | −E[D(G(z))]        | raw    |
| least_squares | ½E[(D(x) − 1)²] + ½E[D(G(z))²]               | ½E[(D(G(z)) − 1)²] | raw    |

bce and minimax are Goodfellow et al.'s (2014) two generator losses; wasserstein is Arjovsky
et al.'s critic (2017; keeping it Lipschitz is the model's job: weight clipping or a gradient
penalty); hinge is SAGAN's (Zhang et al., 2018); least_squares is LSGAN's 0-1 coding (Mao et
al., 2017). The gradient penalty of WGAN-GP (Gulrajani et al., 2017) is here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import ConfigError


def discriminator_bce_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """−[log D(x) + log(1 − D(G(z)))], batch means, with D = sigmoid(logits): the negated
    objective the discriminator ascends in Algorithm 1 of Goodfellow et al."""
    # log sigmoid(l) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l), without overflow.
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    """−log D(G(z)), a batch mean: Goodfellow et al.'s practical generator loss, with the same
    fixed point as the minimax one and strong gradients where D rejects the samples."""
    return F.softplus(-fake_logits).mean()


def generator_minimax_loss(fake_logits: Tensor) -> Tensor:
    """log(1 − D(G(z))), a batch mean, Algorithm 1's generator loss: its gradient vanishes
    where D confidently rejects the samples, which early in training is almost everywhere."""
    return -F.softplus(fake_logits).mean()


def critic_wasserstein_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[f(G(z))] − E[f(x)]: the critic minimises it, maximising its Wasserstein estimate."""
    return fake_scores.mean() - real_scores.mean()


def discriminator_hinge_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))], the SAGAN discriminator loss."""
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def generator_score_loss(fake_scores: Tensor) -> Tensor:
    """−E[D(G(z))], the generator loss of WGAN and of the hinge GAN."""
    return -fake_scores.mean()


def discriminator_least_squares_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """½E[(D(x) − 1)²] + ½E[D(G(z))²]: LSGAN's discriminator pulls real scores to 1 and fake
    ones to 0 (Mao et al.'s a = 0, b = 1)."""
    return 0.5 * (real_scores - 1).square().mean() + 0.5 * fake_scores.square().mean()


def generator_least_squares_loss(fake_scores: Tensor) -> Tensor:
    """½E[(D(G(z)) − 1)²]: G pulls its scores to the real target (c = 1). Fakes far on the
    right side of D's boundary still get a gradient, unlike with a saturating sigmoid."""
    return 0.5 * (fake_scores - 1).square().mean()


@dataclass(frozen=True)
class AdversarialLoss:
    """One adversarial loss: ``discriminator(real_scores, fake_scores)`` and
    ``generator(fake_scores)``, both scalars to minimise, from D's scores [B]."""

    name: str
    discriminator: Callable[[Tensor, Tensor], Tensor]
    generator: Callable[[Tensor], Tensor]
    # True: D's scores are logits, summarised as probabilities. False: raw scores.
    scores_are_logits: bool

    def summarize(self, scores: Tensor) -> Tensor:
        """The logged mean of D's scores [B]: a mean probability for logits, else the mean."""
        scores = scores.detach()
        return torch.sigmoid(scores).mean() if self.scores_are_logits else scores.mean()


ADVERSARIAL_LOSSES = {
    loss.name: loss
    for loss in (
        AdversarialLoss("bce", discriminator_bce_loss, generator_nonsaturating_loss, True),
        AdversarialLoss("minimax", discriminator_bce_loss, generator_minimax_loss, True),
        AdversarialLoss("wasserstein", critic_wasserstein_loss, generator_score_loss, False),
        AdversarialLoss("hinge", discriminator_hinge_loss, generator_score_loss, False),
        AdversarialLoss(
            "least_squares",
            discriminator_least_squares_loss,
            generator_least_squares_loss,
            False,
        ),
    )
}
# The values of the g_loss option that ``loss`` replaced.
_RENAMED = {"nonsaturating": "bce"}


def adversarial_loss(name: str) -> AdversarialLoss:
    """The loss called ``name``, or a ConfigError listing the choices."""
    if name in ADVERSARIAL_LOSSES:
        return ADVERSARIAL_LOSSES[name]
    hint = f"; the old g_loss={name} is now loss={_RENAMED[name]}" if name in _RENAMED else ""
    raise ConfigError(
        f"model.loss={name!r} is not an adversarial loss; choose one of "
        f"{', '.join(ADVERSARIAL_LOSSES)}{hint}"
    )


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, *, eps: Tensor | None = None
) -> Tensor:
    """E[(‖∇ₓ̂ f(x̂)‖₂ − 1)²] at x̂ = ε·x + (1 − ε)·x̃ (Gulrajani et al.), a scalar.

    ``real`` and ``fake`` are [B, ...]; ``eps`` [B] holds one coefficient per pair, drawn
    from U[0, 1] when None. The gradient keeps its graph, so the penalty trains the critic.
    """
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    eps = eps.view(-1, *[1] * (real.dim() - 1))
    # A fresh leaf: the penalty trains the critic only, whatever real and fake are attached to.
    mixed = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()
