"""What a model can do, declared by the classes it derives from.

Commands never probe attribute names: they ask ``isinstance(model, Capability)`` (through
``require``) and refuse a model that does not declare what they need with one clear message.
A model gains a capability by deriving from its mixin and implementing the abstract methods;
Python then refuses to build a class that forgot one.

- ``Encodes``: ``encode(x) -> z`` and ``latent_dim`` (embed, arithmetic, interpolate from
  data, evaluate probe=true, and a prior fitted to the codes for models without one);
- ``Decodes``: ``decode(z) -> images in [0, 1]`` and ``latent_dim`` (sample, interpolate,
  arithmetic);
- ``HasPrior``: ``sample_latent(n)`` from a prior of its own, truncated on request
  (sample, interpolate source=prior, evaluate features=, the class-coverage callback);
- ``Conditional``: ``num_classes``, ``class_labels(n, label)``, ``decode(z, labels)``
  (sample label=K);
- ``Grows``: ``decode(z, stage=K)`` at an earlier resolution of a model trained by
  progressive growing, ``stage`` the one training reached (sample stage=K);
- ``ScoresAnomalies``: ``score(x) -> [B]``, higher is more anomalous (anomaly, evaluate);
- ``Reconstructs``: ``reconstruct(x)`` (evaluate's per-pixel error);
- ``Variational``: q(z|x) and p(x|z) through ``encode_distribution``, ``decode_logits``,
  ``reconstruction_nll``, ``negative_elbo`` (evaluate's ELBO and log p(x), anomaly's −ELBO);
- ``ImportanceWeighted``: a Variational model that computes its own importance log-weights,
  ``log_weights(x, k=, generator=)``, where one Gaussian q(z|x) and an N(0, I) prior do not
  describe it (stacked stochastic layers): evaluate's bounds are then built on those;
- ``Classifies``: ``features(x)``, logits from ``forward``, ``num_classes`` (evaluate's
  accuracy, and ``features=`` / ``classify=`` of the other commands);
- ``Translates``: ``translate(x)``, images of the other domain (image-to-image models).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from genlab.errors import CheckpointError


class Capability(ABC):  # noqa: B024 - a marker base; each capability adds its own abstract methods
    """Base of every capability mixin."""


class Encodes(Capability):
    """Maps images [B, C, H, W] to codes [B, latent_dim]."""

    latent_dim: int

    @abstractmethod
    def encode(self, x: Tensor) -> Tensor: ...


class Decodes(Capability):
    """Maps codes [B, latent_dim] to images [B, C, H, W] in [0, 1]."""

    latent_dim: int

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor: ...


class HasPrior(Decodes):
    """Draws codes from a prior of its own, so it generates new images."""

    @abstractmethod
    def sample_latent(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        truncation: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n codes [n, latent_dim]; ``truncation`` T (None: none) keeps the standardised
        draw inside [−T, T] by redrawing the entries outside (genlab.latent.gaussian_draws),
        and ``temperature`` scales the draw's spread."""

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        truncation: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """n new images [n, C, H, W] in [0, 1]."""
        z = self.sample_latent(
            n, temperature=temperature, truncation=truncation, generator=generator
        )
        return self.decode(z)


class Conditional(Capability):
    """Generates images of a requested class; ``decode(z, labels)`` takes class indices."""

    num_classes: int

    @abstractmethod
    def class_labels(self, n: int, label: int | None = None) -> Tensor: ...


class Grows(Decodes):
    """Grows its images' resolution in stages during training (progressive growing), and
    draws at any stage it has reached: ``decode(z, stage=K)``, upsampled to the full size."""

    # The stage training has reached (0: the first, lowest resolution).
    stage: int

    @abstractmethod
    def decode(self, z: Tensor, stage: int | None = None) -> Tensor: ...

    @abstractmethod
    def stage_resolution(self, stage: int) -> int: ...


class ScoresAnomalies(Capability):
    """Scores images [B, C, H, W] -> [B]; higher means less like the training data."""

    @abstractmethod
    def score(self, x: Tensor) -> Tensor: ...


class Reconstructs(Capability):
    """Maps images to their reconstructions, same shape, in the pixel range."""

    @abstractmethod
    def reconstruct(self, x: Tensor) -> Tensor: ...

    def score_and_reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``score(x)`` and ``reconstruct(x)`` of a model that also ScoresAnomalies, which
        `genlab evaluate` measures in one pass; a model that computes both from one decode
        overrides this to decode once."""
        return self.score(x), self.reconstruct(x)  # type: ignore[attr-defined]


class Variational(Encodes):
    """Has an encoder distribution q(z|x) = N(μ, σ²) and a decoder likelihood p(x|z): an
    ELBO, an importance-weighted bound on log p(x), and −ELBO anomaly scores."""

    likelihood: str

    @abstractmethod
    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    @abstractmethod
    def decode_logits(self, z: Tensor) -> Tensor: ...

    @abstractmethod
    def reconstruction_nll(self, logits: Tensor, x: Tensor) -> Tensor: ...

    @abstractmethod
    def negative_elbo(
        self, x: Tensor, *, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor: ...


class ImportanceWeighted(Variational):
    """Computes its own importance log-weights log p(x, h) − log q(h|x) for draws h of all its
    latent variables, since one Gaussian q(z|x) and an N(0, I) prior do not describe them."""

    # Variational's methods say how to draw one Gaussian code and decode it; from those alone
    # genlab.metrics.likelihood builds the log-weights of a one-layer VAE. A model with more
    # than one stochastic layer (q(h₁|x) q(h₂|h₁), p(h₂) p(h₁|h₂) p(x|h₁)) has log-weights
    # no caller can assemble from them, so it hands them over whole; its ELBO is then their
    # mean, a Monte Carlo estimate, as no closed-form KL covers the hierarchy.

    @abstractmethod
    def log_weights(self, x: Tensor, *, k: int, generator: torch.Generator | None = None) -> Tensor:
        """log w_i = log p(x, h_i) − log q(h_i|x) [k, B] for images [B, C, H, W], from k
        draws h_i ~ q(h|x) per image; the noise from ``generator``, drawn where it lives, so
        one seed gives the same weights on any device. Callers that bound memory ask for a
        few draws at a time, the generator carrying on from one call to the next."""


class Classifies(Capability):
    """Predicts class logits [B, num_classes] and exposes its penultimate features."""

    num_classes: int

    @abstractmethod
    def features(self, x: Tensor) -> Tensor: ...


class Translates(Capability):
    """Maps images of one domain to the other (image-to-image translation)."""

    @abstractmethod
    def translate(self, x: Tensor) -> Tensor: ...


CAPABILITIES: tuple[type[Capability], ...] = (
    Encodes,
    Decodes,
    HasPrior,
    Conditional,
    Grows,
    ScoresAnomalies,
    Reconstructs,
    Variational,
    ImportanceWeighted,
    Classifies,
    Translates,
)


def capabilities_of(model: object) -> list[str]:
    """The names of the capabilities ``model`` declares, in the table's order."""
    return [c.__name__ for c in CAPABILITIES if isinstance(model, c)]


def require(model: object, capability: type[Capability], *, to: str) -> None:
    """Refuse, with one message, a model that does not declare ``capability``; ``to`` says
    what the command wanted to do ("be sampled", "score images", ...)."""
    if isinstance(model, capability):
        return
    declared = ", ".join(capabilities_of(model)) or "nothing"
    summary = " ".join((capability.__doc__ or "").split()).rstrip(".")
    name = type(model).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    raise CheckpointError(
        f"{article} {name} checkpoint cannot {to}: its model does not declare "
        f"{capability.__name__} ({summary[0].lower() + summary[1:]}); it declares {declared}. "
        f"Use a model that does (see the README's model tables), or derive your model from "
        f"genlab.models.capabilities.{capability.__name__}"
    )
