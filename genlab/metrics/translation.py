"""How close translated images are to their targets: L1, PSNR and SSIM, per image then
averaged, on images in [0, 1].

- L1: the mean absolute difference per pixel.
- PSNR: 10·log10(1 / MSE) in dB for the data range 1, per image (an exact match would be
  infinite: its MSE is floored at 1e-10, 100 dB).
- SSIM (Wang et al., 2004): luminance, contrast and structure compared in an 11×11
  Gaussian window of σ = 1.5 (weighted means and population (co)variances), with
  K1 = 0.01, K2 = 0.03 and the data range 1, averaged over the window positions that lie
  wholly inside the image, so no padding enters it; colour images average their channels.
  These are scikit-image's ``structural_similarity(..., gaussian_weights=True,
  use_sample_covariance=False, data_range=1)`` settings, against which
  tests/test_translation_metrics.py checks it. (torchmetrics' SSIM also averages over
  reflection-padded borders, which gives other values on small images such as 32×32.)
"""

from __future__ import annotations

import torch
from torch import Tensor


def per_image_l1(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute difference of each image pair [N, C, H, W] -> [N]."""
    return (x - y).abs().flatten(1).mean(1)


def per_image_psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR in dB of each pair of images in [0, 1] -> [N]."""
    mse = (x - y).square().flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """A normalised 2-D Gaussian window [size, size]."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    line = line / line.sum()
    return line[:, None] * line[None, :]


def per_image_ssim(x: Tensor, y: Tensor) -> Tensor:
    """SSIM of each pair of images [N, C, H, W] in [0, 1] -> [N] (images at least 11×11)."""
    import torch.nn.functional as F

    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")
    channels = x.shape[1]
    window = gaussian_window().to(device=x.device)[None, None].repeat(channels, 1, 1, 1)
    x, y = x.double(), y.double()

    def mean(t: Tensor) -> Tensor:
        # Only the positions whose window lies wholly inside the image ("valid").
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = mean(x), mean(y)
    var_x = mean(x * x) - mu_x**2
    var_y = mean(y * y) - mu_y**2
    cov = mean(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K·L)² with the data range L = 1
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim.flatten(1).mean(1).float()


def translation_errors(x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """L1, PSNR and SSIM of each pair [N]: translations ``x`` against targets ``y``."""
    return {
        "l1": per_image_l1(x, y),
        "psnr": per_image_psnr(x, y),
        "ssim": per_image_ssim(x, y),
    }
