"""A small CNN classifier: genlab's own feature extractor for FID, KID, precision/recall and
class coverage, standing in for Inception, whose weights cannot be downloaded everywhere.

Trained like any model (``genlab train model=classifier data=mnist``); the evaluation
commands load its checkpoint with ``features=PATH``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from genlab.data.protocols import NamesClasses
from genlab.errors import ConfigError
from genlab.models.base import GenlabModule, OptimizerFactory
from genlab.models.capabilities import Classifies


def conv_block(in_channels: int, out_channels: int, *, dropout: float) -> nn.Sequential:
    """A 3x3 convolution with batch norm and ReLU, then 2x2 max pooling (halving the image
    size) and dropout. One convolution a block: a second doubles the CPU time per epoch."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
    )


class Classifier(GenlabModule, Classifies):
    """Convolutional blocks (``conv_block``, one per entry of ``channels``), then a dense
    layer of ``feature_dim`` units (batch norm, ReLU) and a linear layer to the logits.

    ``features`` is the dense layer's output, the space the sample metrics are measured in;
    ``head`` maps features to logits.
    Labels are the dataset's class indices, so ``num_classes`` must exceed the largest one
    (10 for MNIST, Fashion-MNIST and CIFAR-10).
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        feature_dim: int = 128,
        dropout: float = 0.25,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"model.num_classes must be at least 2 (got {num_classes})")
        if not channels or min(channels) < 1:
            raise ConfigError(f"model.channels needs positive widths (got {list(channels)})")
        final_size = image_size // 2 ** len(channels)
        if final_size < 1:
            raise ConfigError(
                f"model.channels has {len(channels)} blocks, each halving the image; "
                f"{image_size}-pixel images allow at most {image_size.bit_length() - 1}"
            )
        if not 0 <= dropout < 1:
            raise ConfigError(f"model.dropout is a probability in [0, 1) (got {dropout})")
        if feature_dim < 1:
            raise ConfigError(f"model.feature_dim must be at least 1 (got {feature_dim})")
        self.image_shape = (in_channels, image_size, image_size)
        self.num_classes = num_classes
        self.optimizer_factory = optimizer

        widths = [in_channels, *channels]
        self.body = nn.Sequential(
            *(conv_block(a, b, dropout=dropout) for a, b in zip(widths, widths[1:], strict=False)),
            nn.Flatten(),
            nn.Linear(widths[-1] * final_size**2, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(2 * dropout), nn.Linear(feature_dim, num_classes))
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def features(self, x: Tensor) -> Tensor:
        """Images [B, C, H, W] in [0, 1] -> penultimate-layer features [B, feature_dim]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Images [B, C, H, W] -> class logits [B, num_classes]."""
        return self.head(self.features(x))

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        names = data.class_names if isinstance(data, NamesClasses) else []
        if len(names) > self.num_classes:
            raise ConfigError(
                f"the dataset has {len(names)} classes but model.num_classes="
                f"{self.num_classes}; set model.num_classes={len(names)}"
            )
        super().setup(stage)

    def step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log_terms({"loss": loss}, stage, batch_size=x.shape[0])
        if stage != "train":
            accuracy = self.val_acc if stage == "val" else self.test_acc
            accuracy(logits, y)
            self.log(f"{stage}/acc", accuracy, batch_size=x.shape[0], prog_bar=True)
        return loss
