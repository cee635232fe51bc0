"""β-TCVAE (Chen et al., "Isolating Sources of Disentanglement in VAEs", 2018).

Averaged over the data, the ELBO's KL term splits into three parts (z_i drawn from
q(z|x_i), q(z) the aggregate posterior, q(z_d) its marginals):

    E[KL(q(z|x) ‖ p(z))] = I(x; z)                      index-code mutual information
                         + KL(q(z) ‖ Π_d q(z_d))        total correlation (TC)
                         + Σ_d KL(q(z_d) ‖ p(z_d))      dimension-wise KL

and β-TCVAE weighs them α, β, γ, penalising the total correlation alone (β = 6 in the
paper, α = γ = 1). q(z) and q(z_d) are estimated on each minibatch of M images by
minibatch-weighted sampling with N the number of training images:

    log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log(N·M)

and the same per dimension for log q(z_id). The three terms then sum to the Monte-Carlo
estimate log q(z|x) − log p(z) of the KL, so with α = β = γ = 1 the loss is the ELBO's.

As in the paper's own code, the −log(N·M) normalisation puts every log-density estimate
log N below the minibatch average (1/M) Σ_j q(z_i | x_j): the logged ``mi`` reads log N
higher, ``tc`` (D − 1)·log N higher and ``dim_kl`` D·log N lower than with that average
(D the latent size). The shifts are constants, so the gradients, and training, are the
paper's; the three still sum to the KL estimate. Compare the terms between runs with the
same N and D, not with zero.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from genlab.data.protocols import SplitImages
from genlab.errors import ConfigError
from genlab.models.vae import VAEBase, kl_divergence

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; μ, σ²) elementwise (broadcasting)."""
    return -0.5 * ((z - mu).square() / logvar.exp() + logvar + _LOG_2PI)


def kl_decomposition(
    z: Tensor, mu: Tensor, logvar: Tensor, *, dataset_size: int
) -> dict[str, Tensor]:
    """Minibatch-weighted estimates of the index-code mutual information ``mi``, the total
    correlation ``tc`` and the dimension-wise KL ``dim_kl``, batch means in nats, for
    codes z [M, D] drawn from q(z|x) = N(μ, σ²) of the same M images."""
    m = z.shape[0]
    # log q(z_i | x_j) per dimension: [M (i), M (j), D].
    pairwise = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
    log_nm = math.log(dataset_size * m)
    log_qz = torch.logsumexp(pairwise.sum(dim=2), dim=1) - log_nm
    log_qz_marginals = (torch.logsumexp(pairwise, dim=1) - log_nm).sum(dim=1)
    log_qz_given_x = gaussian_log_density(z, mu, logvar).sum(dim=1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
    return {
        "mi": (log_qz_given_x - log_qz).mean(),
        "tc": (log_qz - log_qz_marginals).mean(),
        "dim_kl": (log_qz_marginals - log_pz).mean(),
    }


class BetaTCVAE(VAEBase):
    """A VAE whose KL term is split and weighed: recon + α·MI + β·TC + γ·dim-KL.

    ``beta`` weighs the total correlation (the paper's 6), ``alpha`` the mutual information
    and ``gamma`` the dimension-wise KL (both 1). ``dataset_size`` is N of the estimator; left
    null it is read from the training split when fitting starts. ``kl_warmup_steps`` ramps
    all three weights up from 0. Logged besides the VAE's terms: ``mi``, ``tc``, ``dim_kl``;
    ``kl`` and ``elbo`` stay the exact, closed-form ones.
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        gamma: float = 1.0,
        dataset_size: int | None = None,
        **vae: Any,
    ) -> None:
        super().__init__(**vae)
        if alpha < 0 or gamma < 0:
            raise ConfigError(
                f"model.alpha and model.gamma weigh KL terms and must be non-negative "
                f"(got {alpha}, {gamma})"
            )
        if dataset_size is not None and dataset_size < 1:
            raise ConfigError(f"model.dataset_size must be positive or null (got {dataset_size})")
        self.alpha = alpha
        self.gamma = gamma
        self.dataset_size = dataset_size

    def on_fit_start(self) -> None:
        if self.dataset_size is None:
            data = self.trainer.datamodule
            if not isinstance(data, SplitImages) or "train" not in data.splits:
                raise ConfigError(
                    "model.dataset_size is null and the data module has no train split to "
                    "count; set model.dataset_size to the number of training images"
                )
            self.dataset_size = len(data.splits["train"])

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.encode_distribution(x)
        z = self.reparameterize(mu, logvar)
        recon = self.reconstruction_nll(self.decode_logits(z), x).mean()
        parts = kl_decomposition(z, mu, logvar, dataset_size=self.dataset_size or x.shape[0])
        # The warm-up ramps every weight together; beta is the TC's own weight here.
        ramp = self.kl_weight(self.global_step) / self.beta if self.training and self.beta else 1
        penalty = self.alpha * parts["mi"] + self.beta * parts["tc"] + self.gamma * parts["dim_kl"]
        kl = torch.stack([parts["mi"], parts["tc"], parts["dim_kl"]]).sum().detach()
        exact_kl = kl_divergence(mu, logvar).mean()
        return {
            "loss": recon + ramp * penalty,
            "recon": recon,
            "kl": exact_kl,
            "elbo": -(recon + exact_kl),
            "kl_estimate": kl,
            **parts,
        }
