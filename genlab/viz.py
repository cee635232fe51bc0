"""Image grids as tensors and PNG files, with Pillow and no torchvision."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from genlab.atomic import atomic_path


def make_grid(
    images: Tensor, *, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0
) -> Tensor:
    """images [N, C, H, W] in [0, 1] -> one image [C, H', W'], ``nrow`` images per row
    (near-square when None), separated by ``padding`` pixels of ``pad_value``."""
    n, c, h, w = images.shape
    ncol = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / ncol)
    grid = torch.full(
        (c, rows * (h + padding) + padding, ncol * (w + padding) + padding),
        pad_value,
        dtype=images.dtype,
        device=images.device,
    )
    for i, image in enumerate(images.clamp(0, 1)):
        top = padding + (i // ncol) * (h + padding)
        left = padding + (i % ncol) * (w + padding)
        grid[:, top : top + h, left : left + w] = image
    return grid


def rows_grid(rows: list[Tensor], *, padding: int = 2) -> Tensor:
    """Stack equally long batches as rows of one grid: row i is ``rows[i]``."""
    return make_grid(torch.cat(rows), nrow=rows[0].shape[0], padding=padding)


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write an image [C, H, W] in [0, 1] as an 8-bit PNG, whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8).numpy()
    array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path


def scatter_png(
    points: Tensor, labels: Tensor, *, class_names: list[str], title: str, path: str | Path
) -> Path:
    """A scatter plot of 2-D points [N, 2] coloured by label, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for label in labels.unique().tolist():
        mask = labels == label
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        ax.scatter(
            points[mask, 0], points[mask, 1], s=4, alpha=0.7, color=cmap(label % cmap.N), label=name
        )
    ax.set_title(title)
    ax.legend(markerscale=4, fontsize=8, loc="best")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
