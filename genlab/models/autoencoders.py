"""The autoencoder family of the lecture's part 1: plain, deep, sparse, denoising,
contractive (fully connected, genlab.nn.mlp) and the lecture's Keras convolutional
autoencoder (genlab.nn.conv). Each takes its encoder and decoder ready made."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.reconstruction import ReconstructionModel
from genlab.nn.losses import kl_sparsity_penalty


def code_activation(encoder: nn.Module) -> nn.Module | None:
    """The activation of an encoder's code layer, for encoders that list theirs in
    ``activations`` (genlab.nn.mlp.MLPEncoder); None for others."""
    activations = getattr(encoder, "activations", None)
    return activations[-1] if activations else None


class Autoencoder(ReconstructionModel):
    """h = s(Wx + b), x̂ = s(W'h + b'); stacked when the encoder has hidden layers.

    ``latent_dim`` below the input size makes it undercomplete, above it overcomplete.
    ``tied_weights`` makes every decoder layer use the transpose of its encoder twin
    (the decoder's ``tie_to(encoder)``, as genlab.nn.mlp.MLPDecoder has).
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        output_activation: str = "sigmoid",
        tied_weights: bool = False,
        loss: str = "mse",
        **networks_and_shape: Any,
    ) -> None:
        # encoder, decoder, in_channels, image_size and optimizer: ReconstructionModel's.
        super().__init__(**networks_and_shape)
        self.set_latent_dim(latent_dim)
        self.use_reconstruction_loss(loss, output_activation)
        if tied_weights:
            if not hasattr(self.decoder, "tie_to"):
                raise ConfigError(
                    f"model.tied_weights=true needs a decoder that can take the encoder's "
                    f"weights (a tie_to method, as genlab.nn.mlp.MLPDecoder has); "
                    f"{type(self.decoder).__name__} has none"
                )
            self.decoder.tie_to(self.encoder)


class SparseAutoencoder(Autoencoder):
    """J + β Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j the mean activation of code unit j over the batch.

    The code must lie in (0, 1) for ρ̂ to be a Bernoulli mean, so the encoder's code layer
    must be a sigmoid.
    """

    def __init__(self, *, rho: float = 0.05, beta: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(code_activation(self.encoder), nn.Sigmoid):
            raise ConfigError(
                "sparse_ae needs an encoder whose code layer is a sigmoid "
                "(model.encoder.latent_activation=sigmoid): the KL penalty treats each code "
                "unit's mean activation as a probability"
            )
        if not 0 < rho < 1:
            raise ConfigError(f"model.rho must lie strictly between 0 and 1 (got {rho})")
        self.rho = rho
        self.beta = beta

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        terms = self.reconstruction_terms(x, x)
        recon = terms["recon"].mean()
        mean_activation = terms["code"].mean(dim=0)
        sparsity = kl_sparsity_penalty(mean_activation, self.rho)
        return {
            "loss": recon + self.beta * sparsity,
            "recon": recon,
            "sparsity": sparsity,
            "mean_activation": mean_activation.mean(),
        }


class DenoisingAutoencoder(Autoencoder):
    """Reconstructs the clean x from a corrupted x̃: masking noise (each input zeroed with
    probability ``nu``) or additive Gaussian noise (std ``sigma``)."""

    NOISES = ("mask", "gaussian")

    def __init__(
        self, *, noise: str = "mask", nu: float = 0.3, sigma: float = 0.3, **kwargs
    ) -> None:
        if noise not in self.NOISES:
            raise ConfigError(f"model.noise={noise!r} is not one of {', '.join(self.NOISES)}")
        if not 0 <= nu < 1:
            raise ConfigError(f"model.nu is a probability in [0, 1) (got {nu})")
        if sigma < 0:
            raise ConfigError(f"model.sigma must be non-negative (got {sigma})")
        super().__init__(**kwargs)
        # Not ``self.noise``: that is the base's method drawing N(0, I).
        self.corruption = noise
        self.nu = nu
        self.sigma = sigma

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.corruption == "mask":
            keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.nu
            return x * keep
        return x + self.sigma * torch.randn(x.shape, generator=generator, device=x.device)

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        recon = self.reconstruction_terms(self.corrupt(x), x)["recon"].mean()
        return {"loss": recon, "recon": recon}

    @torch.no_grad()
    def image_rows(self, x: Tensor) -> list[Tensor]:
        """Noisy inputs, their reconstructions, and the clean images; the same noise each
        epoch so the grids are comparable."""
        generator = torch.Generator(device=x.device).manual_seed(0)
        noisy = self.corrupt(x, generator)
        return [noisy.clamp(0, 1), self.reconstruct(noisy), x]


class ContractiveAutoencoder(Autoencoder):
    """J + λ ‖∂f(x)/∂x‖_F², the squared Frobenius norm of the encoder's Jacobian, exact.

    For the classic single sigmoid layer h = s(Wx + b) (an MLPEncoder without hidden layers)
    the norm has the closed form Σ_j (h_j (1 − h_j))² Σ_i W_ji²; other encoders get the full
    Jacobian from autograd.
    """

    def __init__(self, *, lam: float = 0.1, **kwargs) -> None:
        if lam < 0:
            raise ConfigError(f"model.lam must be non-negative (got {lam})")
        super().__init__(**kwargs)
        self.lam = lam

    @property
    def _has_closed_form(self) -> bool:
        layers = getattr(self.encoder, "layers", ())
        return (
            len(layers) == 1
            and isinstance(layers[0], nn.Linear)
            and isinstance(code_activation(self.encoder), nn.Sigmoid)
        )

    def jacobian_norm(self, x: Tensor) -> Tensor:
        """Per-image ‖∂h/∂x‖_F² [B] for images x [B, C, H, W]."""
        if self._has_closed_form:
            h = self.encoder(x)
            weight_norms = self.encoder.layers[0].weight.square().sum(dim=1)
            return ((h * (1 - h)).square() * weight_norms).sum(dim=1)
        return self.autograd_jacobian_norm(x)

    def autograd_jacobian_norm(self, x: Tensor) -> Tensor:
        """Per-image ‖∂h/∂x‖_F² [B] by autograd, for inputs x [B, ...] of any shape the
        encoder takes."""
        # Validation runs in inference mode; the Jacobian needs a graph even there.
        with torch.inference_mode(False), torch.enable_grad():
            inputs = x.clone().requires_grad_(True)
            h = self.encoder(inputs)
            basis = torch.eye(h.shape[1], device=h.device, dtype=h.dtype)
            basis = basis.unsqueeze(1).expand(-1, h.shape[0], -1)
            (jac,) = torch.autograd.grad(
                h,
                inputs,
                grad_outputs=basis,
                is_grads_batched=True,
                create_graph=self.training,
            )
            # jac is [latent, B, *input shape]: sum over the code units and the input.
            return jac.square().flatten(2).sum(dim=(0, 2))

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        recon = self.reconstruction_terms(x, x)["recon"].mean()
        contraction = self.jacobian_norm(x).mean()
        return {"loss": recon + self.lam * contraction, "recon": recon, "contraction": contraction}


class ConvAutoencoder(ReconstructionModel):
    """The lecture's Keras convolutional autoencoder (genlab.nn.conv's KerasConvEncoder and
    KerasConvDecoder in its config).

    The code size is fixed by the encoder: (image_size / 4)², 49 for MNIST, read from its
    ``latent_dim``. The output is linear as in the lecture; ``output_activation=sigmoid``
    allows ``loss=bce``.
    """

    def __init__(
        self, *, output_activation: str = "none", loss: str = "mse", **networks_and_shape: Any
    ) -> None:
        # encoder, decoder, in_channels, image_size and optimizer: ReconstructionModel's.
        super().__init__(**networks_and_shape)
        latent_dim = getattr(self.encoder, "latent_dim", None)
        if latent_dim is None:
            raise ConfigError(
                f"the conv_ae's encoder ({type(self.encoder).__name__}) must say its code size "
                "in a latent_dim attribute, as genlab.nn.conv.KerasConvEncoder does"
            )
        self.set_latent_dim(latent_dim)
        self.use_reconstruction_loss(loss, output_activation)
