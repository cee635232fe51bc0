"""Feature extraction for the sample metrics: a genlab classifier checkpoint, loaded and
checked, and its penultimate-layer features and predicted classes for a set of images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from genlab.errors import CheckpointError

if TYPE_CHECKING:
    from genlab.models import Classifier


def load_classifier(path: str | Path, *, device: torch.device | None = None) -> Classifier:
    """The ``genlab.models.Classifier`` a checkpoint holds, in eval mode on ``device``.

    Any other checkpoint is refused: its model has no features to measure samples with.
    """
    from genlab.checkpoint import load_model
    from genlab.models.capabilities import Classifies

    model, _ = load_model(path)
    if not isinstance(model, Classifies):
        name = type(model).__name__
        article = "an" if name[:1].lower() in "aeiou" else "a"
        raise CheckpointError(
            f"{path} holds {article} {name}, not a classifier; features=PATH needs a "
            "checkpoint of `genlab train model=classifier` on the same kind of images"
        )
    return model.to(device or torch.device("cpu"))


def check_image_shape(classifier: Classifier, shape: tuple[int, ...], *, what: str) -> None:
    """Refuse images of a shape the classifier was not trained on."""
    expected = tuple(classifier.image_shape)
    if tuple(shape) != expected:
        raise CheckpointError(
            f"the classifier was trained on images of shape {expected} (channels, height, "
            f"width), but {what} has images of shape {tuple(shape)}; train a classifier on "
            "the same dataset"
        )


def classifier_outputs(
    classifier: Classifier,
    images: Tensor,
    *,
    batch_size: int = 500,
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Features [N, F] and predicted classes [N] of images [N, C, H, W] in [0, 1], in one
    batched pass; both on the CPU."""
    device = device or next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    features, classes = [], []
    with torch.inference_mode():
        for chunk in images.split(batch_size):
            feats = classifier.features(chunk.to(device, torch.float32))
            features.append(feats.float().cpu())
            classes.append(classifier.head(feats).argmax(dim=1).cpu())
    classifier.train(was_training)
    return torch.cat(features), torch.cat(classes)
