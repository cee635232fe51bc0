"""Generative adversarial networks, the lecture's part 3.

One model class, ``GAN`` (the training loop, sampling, logging), takes its generator and
discriminator as networks (genlab.nn.gan) and its adversarial loss by name (``losses``):
gan, dcgan, sagan and lsgan are configs of it. ``ConditionalGAN`` feeds class labels to both
networks; ``WGAN`` clips the critic's weights and ``WGANGP`` penalises its gradient.
``ProGAN`` grows G and D from 4x4 to the full resolution (progressive growing).
``BigGAN`` is the class-conditional BigGAN: embedded labels, conditional batch norm, a
projection discriminator and an orthogonality penalty on G.
"""

from genlab.models.gans.biggan import BigGAN
from genlab.models.gans.conditional import ConditionalGAN
from genlab.models.gans.loop import GAN
from genlab.models.gans.losses import ADVERSARIAL_LOSSES, AdversarialLoss, adversarial_loss
from genlab.models.gans.progan import ProGAN
from genlab.models.gans.wgan import WGAN, WGANGP

__all__ = [
    "ADVERSARIAL_LOSSES",
    "GAN",
    "WGAN",
    "WGANGP",
    "AdversarialLoss",
    "BigGAN",
    "ConditionalGAN",
    "ProGAN",
    "adversarial_loss",
]
