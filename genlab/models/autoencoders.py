"""The autoencoder family of the lecture's part 1: plain, deep, sparse, denoising,
contractive (fully connected) and the lecture's Keras convolutional autoencoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from genlab.errors import ConfigError
from genlab.models.base import OptimizerFactory, ReconstructionModel
from genlab.nn.conv import KerasConvDecoder, KerasConvEncoder, code_size
from genlab.nn.losses import kl_sparsity_penalty
from genlab.nn.mlp import MLPDecoder, MLPEncoder


class Autoencoder(ReconstructionModel):
    """h = s(Wx + b), x̂ = s(W'h + b'); stacked when ``hidden_dims`` is not empty.

    ``latent_dim`` below the input size makes it undercomplete, above it overcomplete.
    ``tied_weights`` makes every decoder layer use the transpose of its encoder twin.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 32,
        hidden_dims: Sequence[int] = (),
        activation: str = "relu",
        latent_activation: str = "sigmoid",
        output_activation: str = "sigmoid",
        tied_weights: bool = False,
        loss: str = "mse",
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            loss=loss,
            output_activation=output_activation,
            optimizer=optimizer,
        )
        if latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be at least 1 (got {latent_dim})")
        self.latent_dim = latent_dim
        features = in_channels * image_size * image_size
        self.encoder = MLPEncoder(
            in_features=features,
            hidden_dims=hidden_dims,
            latent_dim=latent_dim,
            hidden_activation=activation,
            latent_activation=latent_activation,
        )
        self.decoder = MLPDecoder(
            latent_dim=latent_dim,
            hidden_dims=hidden_dims,
            out_features=features,
            hidden_activation=activation,
            tied_to=self.encoder if tied_weights else None,
        )

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.image_shape)


class SparseAutoencoder(Autoencoder):
    """J + β Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j the mean activation of code unit j over the batch.

    The code must lie in (0, 1) for ρ̂ to be a Bernoulli mean, so the code layer is a sigmoid.
    """

    def __init__(self, *, rho: float = 0.05, beta: float = 1.0, **kwargs) -> None:
        if kwargs.setdefault("latent_activation", "sigmoid") != "sigmoid":
            raise ConfigError(
                "sparse_ae needs model.latent_activation=sigmoid: the KL penalty treats each "
                "code unit's mean activation as a probability"
            )
        if not 0 < rho < 1:
            raise ConfigError(f"model.rho must lie strictly between 0 and 1 (got {rho})")
        super().__init__(**kwargs)
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
        self.noise = noise
        self.nu = nu
        self.sigma = sigma

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.noise == "mask":
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

    For the classic single sigmoid layer h = s(Wx + b) the norm has the closed form
    Σ_j (h_j (1 − h_j))² Σ_i W_ji²; deeper encoders get the full Jacobian from autograd.
    """

    def __init__(self, *, lam: float = 0.1, **kwargs) -> None:
        if lam < 0:
            raise ConfigError(f"model.lam must be non-negative (got {lam})")
        super().__init__(**kwargs)
        self.lam = lam

    @property
    def _has_closed_form(self) -> bool:
        return len(self.encoder.layers) == 1 and isinstance(
            self.encoder.activations[0], torch.nn.Sigmoid
        )

    def jacobian_norm(self, x: Tensor) -> Tensor:
        """Per-image ‖∂h/∂x‖_F² [B] for images x [B, C, H, W]."""
        flat = x.flatten(1)
        if self._has_closed_form:
            h = self.encoder(flat)
            weight_norms = self.encoder.layers[0].weight.square().sum(dim=1)
            return ((h * (1 - h)).square() * weight_norms).sum(dim=1)
        return self.autograd_jacobian_norm(flat)

    def autograd_jacobian_norm(self, flat: Tensor) -> Tensor:
        # Validation runs in inference mode; the Jacobian needs a graph even there.
        with torch.inference_mode(False), torch.enable_grad():
            inputs = flat.clone().requires_grad_(True)
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
            return jac.square().sum(dim=(0, 2))

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        recon = self.reconstruction_terms(x, x)["recon"].mean()
        contraction = self.jacobian_norm(x).mean()
        return {"loss": recon + self.lam * contraction, "recon": recon, "contraction": contraction}


class ConvAutoencoder(ReconstructionModel):
    """The lecture's Keras convolutional autoencoder (see genlab.nn.conv for the layers).

    The code size is fixed by the architecture: (image_size / 4)², 49 for MNIST. The output
    is linear as in the lecture; ``output_activation=sigmoid`` allows ``loss=bce``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        output_activation: str = "none",
        loss: str = "mse",
        bn_momentum: float = 0.1,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            loss=loss,
            output_activation=output_activation,
            optimizer=optimizer,
        )
        self.latent_dim = code_size(image_size)
        self.encoder = KerasConvEncoder(in_channels=in_channels, image_size=image_size)
        self.decoder = KerasConvDecoder(
            out_channels=in_channels, image_size=image_size, bn_momentum=bn_momentum
        )

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)
