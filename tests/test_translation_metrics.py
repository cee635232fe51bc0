"""L1, PSNR and SSIM of translations against their targets.

The SSIM reference values were computed with scikit-image 0.26's
``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0)`` (``channel_axis=-1`` for colour) on the
images built below, in a separate environment; scikit-image is not a genlab dependency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.metrics.translation import (
    per_image_l1,
    per_image_psnr,
    per_image_ssim,
    translation_errors,
)


def _grey_pair() -> tuple[torch.Tensor, torch.Tensor]:
    i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    x = 0.5 + 0.4 * np.sin(i / 3.0) * np.cos(j / 5.0)
    y = np.clip(x + 0.1 * np.sin(i * j / 7.0), 0, 1)
    return torch.tensor(x)[None, None].float(), torch.tensor(y)[None, None].float()


def _colour_pair() -> tuple[torch.Tensor, torch.Tensor]:
    i, j = np.meshgrid(np.arange(24), np.arange(20), indexing="ij")
    a = np.stack([0.5 + 0.4 * np.sin(i / 2.0 + c) * np.cos(j / 4.0) for c in range(3)], -1)
    b = np.clip(a + 0.15 * np.cos((i * j / 5.0)[..., None] + np.arange(3)), 0, 1)
    to = lambda v: torch.tensor(v).permute(2, 0, 1)[None].float()  # noqa: E731
    return to(a), to(b)


def test_ssim_matches_scikit_image_on_grey_images():
    x, y = _grey_pair()
    assert per_image_ssim(x, y).item() == pytest.approx(0.7942639560710131, abs=1e-5)


def test_ssim_matches_scikit_image_on_colour_non_square_images():
    x, y = _colour_pair()
    assert per_image_ssim(x, y).item() == pytest.approx(0.7525506548356117, abs=1e-5)


def test_ssim_is_one_for_identical_images_and_symmetric():
    x, y = _grey_pair()
    assert per_image_ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert per_image_ssim(x, y).item() == pytest.approx(per_image_ssim(y, x).item(), abs=1e-7)


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="11x11"):
        per_image_ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_l1_and_psnr_per_image():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.stack([torch.full((1, 4, 4), 0.1), torch.zeros(1, 4, 4)])
    assert per_image_l1(x, y).tolist() == pytest.approx([0.1, 0.0])
    psnr = per_image_psnr(x, y)
    assert psnr[0].item() == pytest.approx(-10 * math.log10(0.01), rel=1e-5)  # 20 dB
    assert psnr[1].item() == pytest.approx(100.0)  # an exact match, floored MSE


def test_translation_errors_names_every_metric_per_image():
    x, y = _grey_pair()
    errors = translation_errors(x.repeat(3, 1, 1, 1), y.repeat(3, 1, 1, 1))
    assert set(errors) == {"l1", "psnr", "ssim"}
    assert all(v.shape == (3,) for v in errors.values())
