"""Image grids as tensors and PNG files, with Pillow and no torchvision; and the figures
drawn with matplotlib: labelled grids and scatter plots.

Raw grids (``make_grid`` + ``save_png``) carry no text, so they can go into a paper as they
are; every matplotlib figure has a title and labelled axes."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from genlab.atomic import atomic_path

# Pixels between the images of a grid, and the colour that frames real images among decoded
# ones in a labelled grid.
GRID_PADDING = 2
MARK_COLOUR = "tab:orange"


def make_grid(
    images: Tensor, *, nrow: int | None = None, padding: int = GRID_PADDING, pad_value: float = 1.0
) -> Tensor:
    """images [N, C, H, W] in [0, 1] -> one image [C, H', W'], ``nrow`` images per row
    (near-square when None), separated by ``padding`` pixels of ``pad_value``."""
    n, c, h, w = images.shape
    ncol = nrow or grid_columns(n)
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


def grid_columns(n: int, *, period: int | None = None) -> int:
    """Images per row of a near-square grid of n images (neither side over twice the other).

    With ``period``, the images' classes cycle 0, 1, ..., period - 1 in reading order (a
    conditional model's samples). A column count that is a multiple of the period then puts
    one class in each column, and a divisor repeats the same run of classes every
    period / columns rows; the count nearest the square one is taken among those that keep
    the grid near-square, else the plain near-square count."""
    square = max(1, math.ceil(math.sqrt(n)))
    if period is None or n <= period:
        return square
    divisors = [d for d in range(1, period + 1) if period % d == 0]
    multiples = range(2 * period, n + period, period)
    fitting = [c for c in (*divisors, *multiples) if _near_square(n, c)]
    if not fitting:
        return square
    return min(fitting, key=lambda c: abs(math.log(c / math.sqrt(n))))


def _near_square(n: int, columns: int) -> bool:
    rows = math.ceil(n / columns)
    return max(rows, columns) <= 2 * min(rows, columns)


def rows_grid(rows: list[Tensor], *, padding: int = GRID_PADDING) -> Tensor:
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


def pyplot():
    """matplotlib's pyplot on the Agg backend: figures are files, never windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib figure as a PNG, whole or not at all, and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return path


def scatter_png(
    points: Tensor,
    labels: Tensor,
    *,
    class_names: list[str],
    title: str,
    axis_labels: tuple[str, str],
    path: str | Path,
) -> Path:
    """A scatter plot of 2-D points [N, 2] coloured by label, as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for label in labels.unique().tolist():
        mask = labels == label
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        ax.scatter(
            points[mask, 0], points[mask, 1], s=4, alpha=0.7, color=cmap(label % cmap.N), label=name
        )
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    set_title(ax, title)
    ax.legend(markerscale=4, fontsize=8, loc="best", title="class", title_fontsize=8)
    return save_figure(fig, path)


@dataclass(frozen=True)
class GridLabels:
    """What a labelled grid's rows and columns are. Empty tuples leave an axis bare; a
    long axis shows every k-th tick label only, so that they stay readable."""

    rows: Sequence[str] = ()
    columns: Sequence[str] = ()
    xlabel: str = ""
    ylabel: str = ""
    # Columns framed in colour: the real images among decoded ones (interpolation's ends).
    marked_columns: Sequence[int] = ()


def labelled_grid_png(
    images: Tensor, *, ncol: int, labels: GridLabels, title: str, path: str | Path
) -> Path:
    """Images [N, C, H, W] in [0, 1] as ``make_grid`` lays them out, drawn with a title and
    labelled rows and columns, as a PNG. Each image pixel is drawn as a block of 1 to 4
    screen pixels, so small grids stay legible and large ones stay under ~1000 pixels."""
    plt = pyplot()
    grid = make_grid(images, nrow=ncol, padding=GRID_PADDING)
    channels, height, width = grid.shape
    scale = min(4.0, max(1.0, 1000 / max(height, width)))
    fig = plt.figure(figsize=(width * scale / 100, height * scale / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    pixels = grid[0] if channels == 1 else grid.permute(1, 2, 0)
    ax.imshow(pixels.cpu().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h, w = images.shape[-2:]
    rows = math.ceil(len(images) / ncol)
    ax.set_xticks(_centres(len(labels.columns), w), thinned(labels.columns))
    ax.set_yticks(_centres(len(labels.rows), h), thinned(labels.rows))
    ax.tick_params(length=0, labelsize=9)
    ax.set_xlabel(labels.xlabel)
    ax.set_ylabel(labels.ylabel)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for column in labels.marked_columns:
        _frame_column(ax, column, rows=rows, size=(h, w))
    # Wrapped to the picture's width: a narrow strip (three arithmetic columns) keeps its
    # title above it instead of one line far wider than the picture.
    set_title(ax, title, chars=max(30, int(width * scale / 7)))
    return save_figure(fig, path)


def set_title(ax: Any, title: str, *, chars: int = 70) -> None:
    """A figure's title, wrapped at ``chars`` characters a line (70 fit a 5.5-inch plot)."""
    ax.set_title(textwrap.fill(title, chars), fontsize=10)


def _centres(count: int, size: int) -> list[float]:
    """Pixel coordinates of the centres of ``count`` grid cells of ``size`` pixels."""
    return [GRID_PADDING + k * (size + GRID_PADDING) + (size - 1) / 2 for k in range(count)]


def thinned(labels: Sequence[str], most: int = 11) -> list[str]:
    """Every k-th label from the first, blank between, so that about ``most`` show; the
    last is kept too (a manifold's axis ends at +extent), in place of a close neighbour."""
    step = max(1, math.ceil(len(labels) / most))
    last = len(labels) - 1
    gap = last % step
    crowded = last - gap if 0 < gap <= step // 2 else -1
    return [
        text if (k % step == 0 and k != crowded) or k == last else ""
        for k, text in enumerate(labels)
    ]


def _frame_column(ax: Any, column: int, *, rows: int, size: tuple[int, int]) -> None:
    """A coloured frame in the padding around a whole column of cells."""
    from matplotlib.patches import Rectangle

    h, w = size
    left = GRID_PADDING + column * (w + GRID_PADDING) - 1.5
    top = GRID_PADDING - 1.5
    ax.add_patch(
        Rectangle(
            (left, top),
            w + 2,
            rows * (h + GRID_PADDING) - GRID_PADDING + 2,
            fill=False,
            edgecolor=MARK_COLOUR,
            linewidth=1.5,
        )
    )
