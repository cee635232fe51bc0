"""Drawing images from a model with a prior, for the metrics that judge generated sets."""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.errors import CheckpointError


def require_prior(model: torch.nn.Module, *, why: str) -> None:
    """Refuse models that cannot draw new images from a prior."""
    if not getattr(model, "has_prior", False):
        raise CheckpointError(
            f"a {type(model).__name__} checkpoint has no prior to sample from, so it cannot "
            f"{why}; use a generative model such as model=vae or model=conv_vae"
        )


def generate(
    model: torch.nn.Module,
    n: int,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> Tensor:
    """n images [n, C, H, W] in [0, 1] on the CPU: decoded draws from the model's prior,
    in batches, in eval mode (restored afterwards)."""
    require_prior(model, why="generate images")
    was_training = model.training
    model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            z = model.sample_latent(min(batch_size, n - start), generator=generator)
            parts.append(model.decode(z).float().clamp(0, 1).cpu())
    model.train(was_training)
    return torch.cat(parts)
