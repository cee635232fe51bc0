"""Whether a classifier can be trusted to judge a model's images.

Class coverage, FID, KID and precision/recall measured through genlab's own classifier are
only as good as that classifier is on the kind of images it is shown. It may score 97% on
real digits and 14% on a VAE's blurry reconstructions of the same digits; its verdict on
the VAE's samples then says more about the blur than about mode collapse. So every metric
computed through a classifier comes with its accuracy on the real test images and, for a
model that reconstructs, on the model's reconstructions of them, and a warning in plain
words when either is below ``THRESHOLD``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genlab.metrics.features import classifier_outputs
from genlab.models.capabilities import Reconstructs

# Below this accuracy a classifier's verdict on generated images misleads more than it tells.
THRESHOLD = 0.9
# Real images the checks use (the first of the split, the same every time): enough for an
# accuracy to ±2%, and a few seconds even for the reconstructions.
MAX_IMAGES = 2000


def accuracy(classifier: Any, images: Tensor, labels: Tensor, *, batch_size: int = 500) -> float:
    _, predicted = classifier_outputs(classifier, images, batch_size=batch_size)
    return float((predicted == labels.cpu()).double().mean())


@torch.inference_mode()
def reconstructions(model: Any, images: Tensor, *, batch_size: int = 500) -> Tensor:
    """The model's reconstructions [N, C, H, W] of images, in [0, 1], on the CPU."""
    device = next(model.parameters()).device
    parts = [
        model.reconstruct(chunk.to(device)).float().clamp(0, 1).cpu()
        for chunk in images.split(batch_size)
    ]
    return torch.cat(parts)


def classifier_reliability(
    classifier: Any, model: Any, images: Tensor, labels: Tensor, *, batch_size: int = 500
) -> dict[str, Any]:
    """The classifier's accuracy on real ``images`` (uint8 or float in [0, 1]) with their
    ``labels`` and, when ``model`` reconstructs, on its reconstructions of them; with the
    warnings they call for. Keys: ``classifier/accuracy_real``,
    ``classifier/accuracy_reconstructions`` (where there are reconstructions),
    ``classifier/images``, and ``warnings`` (a list of sentences)."""
    images, labels = images[:MAX_IMAGES], labels[:MAX_IMAGES]
    if images.dtype == torch.uint8:
        images = images.float().div(255)
    report: dict[str, Any] = {
        "classifier/images": len(images),
        "classifier/accuracy_real": accuracy(classifier, images, labels, batch_size=batch_size),
    }
    warnings = []
    if report["classifier/accuracy_real"] < THRESHOLD:
        warnings.append(
            f"the classifier is right on only {report['classifier/accuracy_real']:.1%} of "
            f"the real test images (below {THRESHOLD:.0%}): the class coverage, FID, KID "
            "and precision/recall it gives mislead; train it longer or on this dataset"
        )
    if isinstance(model, Reconstructs):
        rebuilt = reconstructions(model, images, batch_size=batch_size)
        value = accuracy(classifier, rebuilt, labels, batch_size=batch_size)
        report["classifier/accuracy_reconstructions"] = value
        if value < THRESHOLD:
            warnings.append(
                f"the classifier is right on only {value:.1%} of this model's reconstructions "
                f"of real test images (below {THRESHOLD:.0%}): it does not recognise images "
                "that look like this model's, so its verdict on the model's samples (class "
                "coverage above all) says more about their style than about mode collapse"
            )
    report["warnings"] = warnings
    return report


def print_warnings(command: str, report: dict[str, Any]) -> None:
    for warning in report["warnings"]:
        print(f"genlab {command}: warning: {warning}")
