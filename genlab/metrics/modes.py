"""Mode counting on channel-stacked images: the Stacked MNIST protocol of VEEGAN
(Srivastava et al. 2017) and PacGAN (Lin et al. 2018).

A Stacked MNIST image holds three MNIST digits, one per colour channel, so the data has
10³ = 1000 equally likely modes, the triples (a, b, c), numbered 100a + 10b + c (a in
channel 0). A generator's samples are judged by a classifier of single digits applied to
each channel on its own; the papers report, over 26,000 samples,

- the modes covered: modes that receive at least one sample;
- KL(p_gen ‖ uniform) = Σ_m p_m log(p_m · 1000), p_m the share of the samples in mode m.
  An empty mode adds nothing to the sum (0 log 0 = 0, as the PacGAN authors' code skips
  zero shares), and no share is smoothed: a generator spreading its samples evenly over
  99 modes scores log(1000/99) = 2.31 nats, one stuck in a single mode log 1000 = 6.91.

The rule that turns it on is a matter of shapes, not of names: a classifier trained on
1-channel images judging C-channel images of its size (C > 1) classifies each channel, and
the modes are its K classes to the power C (``channelwise``). genlab's commands then treat
the modes as the classes: FID, KID and precision/recall are measured on the channels'
features side by side, and class coverage is mode coverage.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from genlab.metrics.coverage import classes_covered, kl_from_uniform

# The sample count the VEEGAN and PacGAN tables count modes over.
PAPER_SAMPLES = 26_000


def mode_ids(digits: Tensor, *, base: int = 10) -> Tensor:
    """Mode numbers [N] of per-channel classes digits [N, C] in 0..base−1, the first
    channel the most significant: Σ_i digits[:, i] · base^(C−1−i) (100a + 10b + c)."""
    channels = digits.shape[1]
    weights = base ** torch.arange(channels - 1, -1, -1, device=digits.device)
    return (digits.long() * weights).sum(dim=1)


def modes_covered(counts: Tensor) -> int:
    """Modes with at least one sample: the papers' count."""
    return int((counts > 0).sum())


def mode_summary(counts: Tensor, *, threshold: float = 0.1) -> dict[str, float]:
    """What a mode histogram counts [num_modes] reports, as plain numbers ready to log:
    ``modes_covered`` (at least one sample, the papers' count), ``modes_total``,
    ``classes_covered`` (modes with at least ``threshold`` of their uniform share, genlab's
    count of classes, which a few stray samples do not inflate; see
    genlab.metrics.coverage.classes_covered) and ``kl_uniform``, KL(p_gen ‖ uniform) in
    nats with empty modes adding nothing (see the module's docstring)."""
    return {
        "modes_covered": float(modes_covered(counts)),
        "modes_total": float(len(counts)),
        "classes_covered": float(classes_covered(counts, threshold=threshold)),
        "kl_uniform": kl_from_uniform(counts),
    }


def modes_line(summary: dict[str, float], *, samples: int, option: str) -> str:
    """``mode_summary``'s modes covered and KL in words, with a note where ``samples`` is
    not the papers' count (the modes covered grow with it) naming the ``option`` that
    sets it."""
    line = (
        f"modes covered {summary['modes_covered']:.0f} of {summary['modes_total']:.0f}, "
        f"KL(modes || uniform) {summary['kl_uniform']:.3f} nats, over {samples} samples"
    )
    if samples != PAPER_SAMPLES:
        line += f" (the papers count over {PAPER_SAMPLES:,}: {option}={PAPER_SAMPLES})"
    return line


class ChannelwiseClassifier(nn.Module):
    """A classifier of 1-channel images applied to each channel of C-channel images, seen as
    a classifier of their modes: ``features`` are the channels' features side by side
    [B, C·F], and ``head`` gives one logit per mode [B, K^C], the sum of the channels'
    log-probabilities, so its argmax is the mode of the channels' own argmaxes (numbered
    as ``mode_ids`` numbers them). It has what genlab's feature metrics use of a
    classifier: ``features``, ``head``, ``num_classes`` and ``image_shape``."""

    def __init__(self, classifier: Any, *, channels: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.channels = channels
        self.base = int(classifier.num_classes)
        self.num_classes = self.base**channels
        self.image_shape = (channels, *tuple(classifier.image_shape)[1:])

    def features(self, x: Tensor) -> Tensor:
        """Images [B, C, H, W] in [0, 1] -> features [B, C·F], channel 0's first."""
        return torch.cat(
            [self.classifier.features(x[:, c : c + 1]) for c in range(self.channels)], 1
        )

    def head(self, features: Tensor) -> Tensor:
        """Features [B, C·F] -> mode logits [B, K^C]: log p(a) + log p(b) + ... of mode
        (a, b, ...), in the order of ``mode_ids``."""
        chunks = features.chunk(self.channels, dim=1)
        logits = self.classifier.head(chunks[0]).log_softmax(dim=1)
        for chunk in chunks[1:]:
            channel = self.classifier.head(chunk).log_softmax(dim=1)
            logits = (logits[:, :, None] + channel[:, None, :]).flatten(1)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def channelwise(classifier: Any, shape: tuple[int, ...]) -> Any:
    """``classifier`` as the judge of images of ``shape`` (C, H, W): wrapped to classify
    each channel (``ChannelwiseClassifier``) when it was trained on 1-channel images of
    that size and the images have more channels; otherwise the classifier itself (whose
    own shape check then accepts or refuses the images)."""
    own = tuple(classifier.image_shape)
    shape = tuple(shape)
    if own[0] == 1 and shape[0] > 1 and shape[1:] == own[1:]:
        return ChannelwiseClassifier(classifier, channels=shape[0])
    return classifier


def describe(judge: Any) -> str | None:
    """One line saying that the images' channels are classified one by one, for the
    commands to print; None for a plain classifier."""
    if not isinstance(judge, ChannelwiseClassifier):
        return None
    return (
        f"each of the {judge.channels} channels is classified on its own by the 1-channel "
        f"classifier: {judge.num_classes} modes, each the channels' classes read as a "
        f"{judge.channels}-digit number in base {judge.base}, channel 0 first (for digits: "
        "100a + 10b + c)"
    )
