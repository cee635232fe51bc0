"""The conditional GAN (Mirza & Osindero, 2014): G and D both see the class label."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.data.protocols import SplitImages
from genlab.errors import ConfigError
from genlab.models.capabilities import Conditional
from genlab.models.gans.loop import GAN


class ConditionalGAN(GAN, Conditional):
    """A GAN whose networks take the one-hot label y [B, num_classes] as a condition:
    genlab.nn.gan's fully connected pair concatenates it to z at G's input and to the
    flattened image at D's input (their ``condition_dim``, which must equal
    ``num_classes``). (The paper first maps z and y through separate hidden layers;
    concatenating at the input is the simpler form its figure and the lecture show.) Fakes
    in training take the labels of the real batch, so D sees the same classes in both halves.

    ``decode``, ``sample`` and the grid take labels; without them the samples cycle through
    the classes 0, 1, ..., num_classes − 1, 0, 1, ...
    """

    def __init__(self, *, num_classes: int = 10, **gan: Any) -> None:
        """``gan``: the other keyword arguments of ``GAN`` (the networks, latent_dim, ...)."""
        super().__init__(**gan)
        if num_classes < 2:
            raise ConfigError(f"model.num_classes must be at least 2 (got {num_classes})")
        for name, network in (("generator", self.generator), ("discriminator", self.discriminator)):
            condition_dim = getattr(network, "condition_dim", 0)
            if condition_dim != num_classes:
                raise ConfigError(
                    f"model.{name} ({type(network).__name__}) takes a condition of "
                    f"{condition_dim} values but model.num_classes={num_classes}; use a network "
                    f"with condition_dim: ${{..num_classes}} (see configs/model/cgan.yaml)"
                )
        self.num_classes = num_classes

    def class_labels(self, n: int, label: int | None = None) -> Tensor:
        """Labels [n] on the model's device: all ``label``, or 0, 1, ... cycling when None."""
        if label is None:
            return torch.arange(n, device=self.device) % self.num_classes
        if isinstance(label, bool) or not isinstance(label, int):
            raise ConfigError(f"label must be a class index, an integer (got {label!r})")
        if not 0 <= label < self.num_classes:
            raise ConfigError(
                f"label={label} is out of range: this {type(self).__name__} has classes "
                f"0..{self.num_classes - 1}"
            )
        return torch.full((n,), label, device=self.device, dtype=torch.long)

    def _one_hot(self, labels: Tensor) -> Tensor:
        return F.one_hot(labels, self.num_classes).to(self.dtype)

    def batch_labels(self, y: Tensor) -> Tensor:
        return y

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            labels = self.class_labels(z.shape[0])
        return self.active_generator()(z, self._one_hot(labels))

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError("a conditional discriminator needs the images' labels")
        return self.discriminator(x, self._one_hot(labels))

    def decode(self, z: Tensor, labels: Tensor | int | None = None) -> Tensor:
        """Noise [B, latent] and labels ([B], one int for all, or None to cycle through the
        classes) -> images [B, C, H, W] in [0, 1]."""
        if labels is None or isinstance(labels, int):
            labels = self.class_labels(z.shape[0], labels)
        elif ((labels < 0) | (labels >= self.num_classes)).any():
            raise ConfigError(
                f"labels must lie in 0..{self.num_classes - 1} (got {labels.tolist()})"
            )
        return (self.generate(z, labels.to(z.device)) + 1) / 2

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        labels: Tensor | int | None = None,
        temperature: float = 1.0,
        truncation: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n new images [n, C, H, W] in [0, 1] of the given class(es); see ``decode``."""
        z = self.sample_latent(
            n, temperature=temperature, truncation=truncation, generator=generator
        )
        return self.decode(z, labels)

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        """One row per class, each decoding the same first 8 vectors of ``fixed_z``: a column
        keeps its noise (the style) while the rows change the class."""
        z = self.fixed_z[: self.SAMPLES_PER_ROW]
        return {"val/samples": [self.decode(z, c) for c in range(self.num_classes)]}

    def on_fit_start(self) -> None:
        data = self.trainer.datamodule
        splits = data.splits if isinstance(data, SplitImages) else {}
        if "train" in splits and int(splits["train"].labels.max()) >= self.num_classes:
            raise ConfigError(
                f"the training data has labels up to {int(splits['train'].labels.max())} but "
                f"model.num_classes={self.num_classes}; set model.num_classes to the number "
                "of classes"
            )
