"""Mode collapse made visible: at the end of validation epochs, decode a fixed set of draws
from the model's prior, classify them with a genlab classifier, and log the share of each
class (``coverage/class_<k>``), the classes covered and KL(class histogram ‖ uniform).

A healthy generator keeps about 1/K of its samples in each of the K classes (KL near 0);
a collapsing one piles them into a few (KL rising towards log K).

Opt in on the command line:
    genlab train model=vae data=mnist \\
        +callbacks.coverage._target_=genlab.callbacks.ClassCoverageCallback \\
        +callbacks.coverage.classifier_ckpt=PATH/TO/classifier.ckpt
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from genlab.data.protocols import SplitImages
from genlab.errors import ConfigError
from genlab.metrics.classifier_trust import classifier_reliability
from genlab.metrics.coverage import class_histogram, coverage_summary
from genlab.metrics.features import check_image_shape, load_classifier
from genlab.metrics.modes import channelwise
from genlab.metrics.samples import generate
from genlab.models.capabilities import HasPrior, require


class ClassCoverageCallback(pl.Callback):
    """``classifier_ckpt``: a checkpoint of ``genlab train model=classifier`` on the same
    images; ``num_samples`` draws every ``every_n_epochs`` epochs, the same draws each time
    (from ``seed``) so that epochs compare directly; ``threshold``: see
    ``genlab.metrics.coverage.classes_covered``."""

    def __init__(
        self,
        classifier_ckpt: str,
        *,
        num_samples: int = 1000,
        every_n_epochs: int = 1,
        threshold: float = 0.1,
        seed: int = 0,
    ) -> None:
        if num_samples < 1:
            raise ConfigError(f"ClassCoverageCallback needs num_samples >= 1 (got {num_samples})")
        if every_n_epochs < 1:
            raise ConfigError(
                f"ClassCoverageCallback needs every_n_epochs >= 1 (got {every_n_epochs})"
            )
        self.classifier = load_classifier(classifier_ckpt)
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.threshold = threshold
        self.seed = seed
        self._warned: set[str] = set()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        require(pl_module, HasPrior, to="have the class coverage of its samples measured")
        # A 1-channel digit classifier judges stacked (3-channel) samples channel by channel:
        # its classes are then the 1000 modes (genlab.metrics.modes).
        self.classifier = channelwise(self.classifier, pl_module.image_shape)
        check_image_shape(
            self.classifier, pl_module.image_shape, what=f"the {type(pl_module).__name__}"
        )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.classifier.to(pl_module.device)
        generator = torch.Generator().manual_seed(self.seed)
        images = generate(pl_module, self.num_samples, generator=generator)
        counts = class_histogram(self.classifier, images, device=pl_module.device)
        summary = coverage_summary(counts, threshold=self.threshold)
        pl_module.log_dict({f"coverage/{name}": value for name, value in summary.items()})
        self._log_reliability(trainer, pl_module)

    def _log_reliability(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The classifier's accuracy on real validation images and on the model's
        reconstructions of them, logged beside the coverage; warnings when low (see
        genlab.metrics.classifier_trust)."""
        data = trainer.datamodule
        if not isinstance(data, SplitImages) or "val" not in data.splits:
            return
        val = data.splits["val"]
        was_training = pl_module.training
        pl_module.eval()
        report = classifier_reliability(self.classifier, pl_module, val.images, val.labels)
        pl_module.train(was_training)
        accuracies = {
            name.replace("classifier/", "coverage/classifier_"): value
            for name, value in report.items()
            if name.startswith("classifier/accuracy")
        }
        pl_module.log_dict(accuracies)
        for warning in report["warnings"]:
            # Once per kind (real images, reconstructions): the figures move every epoch.
            kind = "reconstructions" if "reconstructions" in warning else "real"
            if kind not in self._warned:
                self._warned.add(kind)
                rank_zero_warn(f"class coverage: {warning}")
