"""Class coverage of generated samples: which classes a classifier sees among them, the
lecture's mode collapse made measurable.

A generator that covers the data spreads its samples over every class in about the data's
proportions; one that has collapsed puts them in few classes. KL(histogram ‖ uniform) is 0
for an even spread and log K when every sample falls in one of K classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from genlab.errors import ConfigError
from genlab.metrics.features import classifier_outputs

if TYPE_CHECKING:
    from genlab.models import Classifier


def class_histogram(
    classifier: Classifier,
    images: Tensor,
    *,
    batch_size: int = 500,
    device: torch.device | None = None,
) -> Tensor:
    """How many of images [N, C, H, W] in [0, 1] the classifier assigns to each class:
    counts [num_classes] (int64)."""
    _, classes = classifier_outputs(classifier, images, batch_size=batch_size, device=device)
    return torch.bincount(classes, minlength=classifier.num_classes)


def kl_from_uniform(counts: Tensor) -> float:
    """KL(p ‖ uniform) in nats for the histogram p = counts / sum, over all its classes."""
    total = counts.sum()
    if total <= 0:
        raise ConfigError("class coverage needs at least one sample")
    p = counts.double() / total
    nonzero = p[p > 0]
    # 0 log 0 = 0: empty classes add nothing to the sum, but still count in log K.
    return float((nonzero * (nonzero * len(counts)).log()).sum())


def classes_covered(counts: Tensor, *, threshold: float = 0.1) -> int:
    """Classes that receive at least ``threshold`` times their uniform share N / K of the
    samples; the threshold keeps a handful of misclassified samples from counting a class
    the generator does not really produce (0 counts any class with one sample)."""
    share = threshold * counts.sum() / len(counts)
    return int(((counts > 0) & (counts >= share)).sum())


def coverage_summary(counts: Tensor, *, threshold: float = 0.1) -> dict[str, float]:
    """Per-class shares (``class_<k>``), ``classes_covered`` and ``kl_uniform`` of a class
    histogram, as plain numbers ready to log."""
    shares = counts.double() / counts.sum().clamp_min(1)
    summary = {f"class_{k}": float(share) for k, share in enumerate(shares)}
    summary["classes_covered"] = float(classes_covered(counts, threshold=threshold))
    summary["kl_uniform"] = kl_from_uniform(counts)
    return summary
