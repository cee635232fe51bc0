"""BigGAN (Brock et al. 2019): a class-conditional GAN with residual networks, conditional
batch norm fed by a shared class embedding and the hierarchical latent, a projection
discriminator, self-attention, spectral norm in both networks and the hinge loss (see
genlab.nn.biggan for the networks), trained with two D steps per G step and an
orthogonality penalty on G's weights.

The penalty (the paper's section 3.1) is R_β(W) = β‖WᵀW ⊙ (1 − I)‖²_F for each weight W
of G, whose columns are the filters (PyTorch stores them as rows: W = w_flatᵀ, w_flat the
weight flattened to [out, fan-in]). Unlike the full orthogonal penalty ‖WᵀW − I‖²_F it
leaves the filters' norms free and only pushes them towards mutual orthogonality, which the
paper found is what keeps G smooth enough for the truncation trick. Like the authors' code
it covers every weight of at least two dimensions (convolutions, linear layers, the
conditional norms' projections, self-attention's 1x1 convolutions), on the stored weight
the optimizer updates (before spectral norm's division), and leaves out the shared class
embedding, whose rows are class codes rather than filters. Autograd differentiates the
penalty as written, 4β(WᵀW ⊙ (1 − I))W; the authors' code adds half that to the gradient,
so its effective β is half the nominal one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.gans.conditional import ConditionalGAN
from genlab.nn.biggan import embedding_parameters


def off_diagonal_orthogonality(weight: Tensor) -> Tensor:
    """‖WᵀW ⊙ (1 − I)‖²_F, a scalar, for a weight [out, ...] whose ``out`` filters (each
    flattened) are W's columns: the squared inner products of every pair of distinct
    filters, counted for both orders. Zero exactly when the filters are mutually orthogonal,
    whatever their norms."""
    w = weight.flatten(1)
    gram = w @ w.T
    off_diagonal = gram - torch.diag_embed(torch.diagonal(gram))
    return off_diagonal.square().sum()


class BigGAN(ConditionalGAN):
    """A ConditionalGAN whose networks take class indices [B] (looked up in embeddings)
    rather than one-hot labels, with ``orthogonal_reg`` (β, 1e-4 in the paper; 0 turns it
    off) times the off-diagonal orthogonality of G's weights added to G's loss at every G
    step, logged as ``train/ortho``. ``num_classes`` must match the networks'. The other
    keyword arguments are GAN's (hinge loss, ``d_steps`` 2 and the learning rates come from
    configs/model/biggan.yaml)."""

    def __init__(self, *, num_classes: int = 10, orthogonal_reg: float = 1e-4, **gan: Any) -> None:
        for name in ("generator", "discriminator"):
            network = gan.get(name)
            if not isinstance(network, nn.Module):
                continue  # GAN's own check reports it
            classes = getattr(network, "num_classes", None)
            if classes is None:
                raise ConfigError(
                    f"model.{name} ({type(network).__name__}) does not take class indices; "
                    f"BigGAN needs genlab.nn.biggan.Big{name.capitalize()} or a network with "
                    "a num_classes that embeds labels [B]"
                )
            if classes != num_classes:
                raise ConfigError(
                    f"model.{name} ({type(network).__name__}) has {classes} classes but "
                    f"model.num_classes={num_classes}; set model.{name}.num_classes: "
                    "${..num_classes} (see configs/model/biggan.yaml)"
                )
        super().__init__(num_classes=num_classes, **gan)
        if orthogonal_reg < 0:
            raise ConfigError(
                f"model.orthogonal_reg, β of the orthogonality penalty, must be at least 0 "
                f"(got {orthogonal_reg}); the paper uses 1e-4, 0 turns it off"
            )
        self.orthogonal_reg = orthogonal_reg

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            labels = self.class_labels(z.shape[0])
        return self.active_generator()(z, labels)

    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError("a conditional discriminator needs the images' labels")
        return self.discriminator(x, labels)

    def regularised_weights(self) -> Iterator[Tensor]:
        """G's weights the orthogonality penalty covers: every parameter of at least two
        dimensions except the embedding tables."""
        embeddings = {id(p) for p in embedding_parameters(self.generator)}
        for p in self.generator.parameters():
            if p.dim() >= 2 and id(p) not in embeddings:
                yield p

    def orthogonal_penalty(self) -> Tensor:
        """β·Σ_W ‖WᵀW ⊙ (1 − I)‖²_F over ``regularised_weights``, a scalar."""
        zero = torch.zeros((), device=self.device)
        total = sum((off_diagonal_orthogonality(w) for w in self.regularised_weights()), zero)
        return self.orthogonal_reg * total

    def generator_penalty(self) -> Tensor | None:
        if self.orthogonal_reg == 0:
            return None
        penalty = self.orthogonal_penalty()
        self.log_terms({"ortho": penalty}, "train", batch_size=1)
        return penalty
