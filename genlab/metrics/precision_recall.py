"""Improved precision and recall of a generated set against a real one (Kynkäänniemi et al.
2019), in a feature space.

Each set's manifold is the union of balls around its points, each ball reaching to the
point's k-th nearest neighbour in the same set. Precision is the share of generated points
inside the real manifold (are samples realistic?); recall the share of real points inside
the generated manifold (is the data's variety covered?). Mode collapse shows as low recall.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from genlab.errors import ConfigError

# Rows of a distance matrix computed at once: 1,000 x 10,000 float32 is 40 MB.
_CHUNK = 1000


def squared_distance_blocks(query: Tensor, reference: Tensor) -> Iterator[tuple[int, Tensor]]:
    """(first row, block) pairs covering the squared distances [M, N] between query [M, F]
    and reference [N, F], ``_CHUNK`` rows at a time.

    ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b: one matrix product a block, several times faster on a
    CPU than ``torch.cdist``; rounding can take it a hair below zero, hence the clamp.
    """
    reference_norms = reference.square().sum(dim=1)
    for start in range(0, query.shape[0], _CHUNK):
        chunk = query[start : start + _CHUNK]
        block = torch.addmm(reference_norms, chunk, reference.T, alpha=-2)
        yield start, block.add_(chunk.square().sum(dim=1, keepdim=True)).clamp_min_(0)


def _squared_knn_radii(features: Tensor, *, k: int) -> Tensor:
    if not 1 <= k < features.shape[0]:
        raise ConfigError(
            f"the k-nearest-neighbour radius needs 1 <= k < set size (k={k}, "
            f"{features.shape[0]} points)"
        )
    radii2 = torch.empty(features.shape[0])
    for start, block in squared_distance_blocks(features, features):
        # k + 1: the smallest distance is the point's own, zero.
        radii2[start : start + block.shape[0]] = block.topk(k + 1, dim=1, largest=False).values[
            :, k
        ]
    return radii2


def knn_radii(features: Tensor, *, k: int) -> Tensor:
    """Distance [N] from each point of features [N, F] to its k-th nearest other point."""
    return _squared_knn_radii(features.float(), k=k).sqrt()


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3) -> tuple[float, float]:
    """Precision and recall of generated features ``fake`` [M, F] against ``real`` [N, F]."""
    if real.shape[1] != fake.shape[1]:
        raise ConfigError(f"feature sets of different widths: {real.shape[1]} and {fake.shape[1]}")
    real, fake = real.float(), fake.float()
    real_radii2 = _squared_knn_radii(real, k=k)
    fake_radii2 = _squared_knn_radii(fake, k=k)
    fake_inside = torch.zeros(fake.shape[0], dtype=torch.bool)
    real_inside = torch.zeros(real.shape[0], dtype=torch.bool)
    # One pass over the real-to-fake distances answers both questions.
    for start, block in squared_distance_blocks(real, fake):
        rows = slice(start, start + block.shape[0])
        fake_inside |= (block <= real_radii2[rows, None]).any(dim=0)
        real_inside[rows] = (block <= fake_radii2).any(dim=1)
    return float(fake_inside.double().mean()), float(real_inside.double().mean())
