"""An exponential moving average (EMA) of a GAN generator's weights, the weights large GANs
sample from (ProGAN, BigGAN, StyleGAN): G's own weights jump with every update of an
adversarial game that need not settle, while their running average is smoother and gives
visibly better images for no extra training.

After each of G's updates t = 1, 2, ... every parameter of the copy moves
``ema = decay·ema + (1 − decay)·G``; during the first ``start`` updates the copy is set to G
instead, so that the average does not keep the random initial weights of a G that changes
fastest at first. The copy starts as G's weights before its first update, so with
``start = 0`` the first update already averages.

The copy is ``torch.optim.swa_utils.AveragedModel`` with PyTorch's EMA update
(``get_ema_multi_avg_fn``, one fused lerp over all parameters): a deep copy of G, so it runs
the same ``forward`` with whatever arguments G takes (ProGAN's stage and fade-in α), and a
submodule, so it lies in every checkpoint's state_dict and is restored with it on resume.
Its parameters take no gradient (``requires_grad`` off), are in no optimizer, and so are
left alone by DDP's gradient reduction and by ``toggle_optimizer``.

Buffers, batch-norm statistics included, are taken from G: after every update the copy's
buffers are set to G's (``use_buffers=False``). Averaging running statistics is not the
statistics of the averaged weights either; recomputing them exactly ("standing
statistics": many forward passes of the copy in training mode) would cost more than the
update itself at every step. With the decays used in practice (0.999 to 0.9999) the
averaged weights stay close to G's, whose running statistics then describe their
activations closely; spectral norm's power-iteration vectors, also buffers, likewise
follow G's estimate of the top singular vectors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from genlab.errors import ConfigError


def check_ema_options(decay: Any, start: Any) -> None:
    """``model.ema_decay`` null or in [0, 1), ``model.ema_start`` an integer >= 0."""
    if decay is not None and (
        isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < 1
    ):
        raise ConfigError(
            f"model.ema_decay, the share of the moving average of G's weights kept at each G "
            f"update, must lie in [0, 1) (got {decay!r}); e.g. model.ema_decay=0.999, or null "
            "for no average"
        )
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ConfigError(
            f"model.ema_start, the G updates during which the moving average only copies G, "
            f"must be an integer of at least 0 (got {start!r}); e.g. model.ema_start=0"
        )


class GeneratorEMA(AveragedModel):
    """The moving average of ``generator``'s weights (see the module's docstring); its
    averaged generator is ``module``, which runs like the generator itself."""

    def __init__(self, generator: nn.Module, *, decay: float, start: int = 0) -> None:
        check_ema_options(decay, start)
        super().__init__(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.decay = decay
        self.start = start
        # The copy just made is the average so far: the next update averages with it.
        # (AveragedModel would otherwise copy G at its first update, whatever the decay.)
        self.n_averaged.fill_(1)
        self.requires_grad_(False)

    @torch.no_grad()
    def reset(self, generator: nn.Module) -> None:
        """Set the average to ``generator``'s weights and buffers."""
        self.n_averaged.zero_()  # with nothing averaged yet, AveragedModel copies
        self.update_parameters(generator)

    @torch.no_grad()
    def update(self, generator: nn.Module, updates: int) -> None:
        """Fold in ``generator`` after its ``updates``-th update (counted from 1): a copy up
        to ``start``, the moving average after."""
        if updates <= self.start:
            self.reset(generator)
        else:
            self.update_parameters(generator)


def weights_in_use(model: Any, *, use_ema: bool) -> str:
    """Points a loaded model's sampling at the moving average of G (``use_ema``) or at G
    itself, and says which: ``"ema"``, ``"generator"`` (G's own, though an average exists)
    or ``"trained"`` (a model without an average, which ``use_ema`` does not change)."""
    from genlab.models.gans.loop import GAN

    if not isinstance(model, GAN) or model.generator_ema is None:
        return "trained"
    model.use_ema = use_ema
    return "ema" if use_ema else "generator"


# What each answer of ``weights_in_use`` means, for the commands' output.
WEIGHTS_DESCRIPTIONS = {
    "ema": "the moving average of G's weights (use_ema=false: G's own)",
    "generator": "G's own weights, not their moving average (use_ema=false)",
    "trained": "the trained weights",
}
