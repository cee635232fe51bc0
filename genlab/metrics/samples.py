"""Drawing images from a model that decodes codes, for the metrics that judge generated sets."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from genlab.models.capabilities import Decodes, HasPrior, require

# n, generator -> codes [n, latent]
LatentSampler = Callable[[int, torch.Generator | None], Tensor]


def generate(
    model: torch.nn.Module,
    n: int,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
    latents: LatentSampler | None = None,
    progress: Callable[[int], object] | None = None,
) -> Tensor:
    """n images [n, C, H, W] in [0, 1] on the CPU: decoded draws from ``latents`` (by default
    the model's own prior), in batches, in eval mode (restored afterwards). ``progress`` is
    called with each batch's size once it is decoded (a progress bar's ``update``)."""
    if latents is None:
        require(model, HasPrior, to="generate images")
        prior = model

        def latents(k: int, gen: torch.Generator | None) -> Tensor:
            return prior.sample_latent(k, generator=gen)

    require(model, Decodes, to="generate images")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            z = latents(min(batch_size, n - start), generator).to(device)
            parts.append(model.decode(z).float().clamp(0, 1).cpu())
            if progress is not None:
                progress(len(z))
    model.train(was_training)
    return torch.cat(parts)
