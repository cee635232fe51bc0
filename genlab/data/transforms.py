"""Bringing uint8 image batches to the channel count and size a model expects."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import interpolate

from genlab.errors import DataError

# ITU-R BT.601 luma weights, the same ones Pillow uses for "RGB" -> "L".
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
# Float32 values converted per step (64 MB), so large datasets never need a float copy at once.
_CHUNK_ELEMENTS = 1 << 24


def to_shape(images: np.ndarray, *, channels: int, image_size: int) -> np.ndarray:
    """Return ``images`` as uint8 [N, channels, image_size, image_size].

    The input is returned unchanged (not copied) when it already has that shape.
    """
    _check(images, channels=channels, image_size=image_size)
    n, c, h, w = images.shape
    if (c, h, w) == (channels, image_size, image_size):
        return images
    out = np.empty((n, channels, image_size, image_size), dtype=np.uint8)
    step = max(1, _CHUNK_ELEMENTS // (3 * max(h * w, image_size * image_size)))
    for start in range(0, n, step):
        chunk = torch.from_numpy(images[start : start + step].astype(np.float32))
        converted = _convert(chunk, channels=channels, image_size=image_size)
        out[start : start + step] = converted.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _check(images: np.ndarray, *, channels: int, image_size: int) -> None:
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}.")
    if image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}.")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(
            f"expected uint8 images shaped [N, 1 or 3, H, W], got {images.dtype} "
            f"{list(images.shape)}; the dataset reader produced something unexpected."
        )


def _convert(x: torch.Tensor, *, channels: int, image_size: int) -> torch.Tensor:
    # Colour to grey before resizing and grey to colour after, so only one channel is resized.
    if x.shape[1] == 3 and channels == 1:
        x = (x * _LUMA).sum(dim=1, keepdim=True)
    if x.shape[-2:] != (image_size, image_size):
        x = interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x
