"""`genlab evaluate` measures an autoencoder's reconstruction error and squared error per
pixel in one pass over the split, with the same numbers as the two separate passes."""

from __future__ import annotations

import pytest
import torch
from conftest import mlp_autoencoder, mlp_vae

from genlab.commands.evaluate import (
    reconstruction_metrics,
    score_and_reconstruction_metrics,
    score_metrics,
)
from genlab.models import DenoisingAutoencoder


def batches() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(8, 1, 28, 28, generator=generator) for _ in range(3)]


@pytest.mark.parametrize("cls", [None, DenoisingAutoencoder])
def test_one_pass_equals_the_two_passes_for_autoencoders(cls) -> None:
    model = (mlp_autoencoder() if cls is None else mlp_autoencoder(cls)).eval()
    one = score_and_reconstruction_metrics(model, iter(batches()), prefix="test")
    two = score_metrics(model, iter(batches()), prefix="test") | reconstruction_metrics(
        model, iter(batches()), prefix="test"
    )
    assert one == pytest.approx(two, rel=1e-6)
    # And it decodes each batch once.
    calls = []
    model.decoder.register_forward_hook(lambda *args: calls.append(1))
    score_and_reconstruction_metrics(model, iter(batches()), prefix="test")
    assert len(calls) == len(batches())


def test_a_vae_keeps_its_own_score_and_reconstruction() -> None:
    # A VAE scores with a sampled code and reconstructs from the mean: no shared decode.
    model = mlp_vae().eval()
    x = batches()[0]
    torch.manual_seed(1)
    score, reconstruction = model.score_and_reconstruct(x)
    torch.manual_seed(1)
    assert torch.equal(score, model.score(x))
    assert torch.equal(reconstruction, model.reconstruct(x))
