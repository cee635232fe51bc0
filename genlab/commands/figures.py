"""The annotated figures of the checkpoint commands: what each row and column of an
interpolation, a latent arithmetic, a 2-D manifold and a conditional model's samples is,
under a title naming the model, its epoch and the picture (``Loaded.title``).

The label builders are plain functions of what the command decoded, so tests read them
without reading pixels. The grids' tensors (.pt) are saved by the commands, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from genlab.commands.checkpointed import Loaded
from genlab.viz import GridLabels, labelled_grid_png


def number(value: float) -> str:
    """A tick label: two decimals at most, without trailing zeros ('0.25', '1', '-0.11')."""
    text = f"{value + 0.0:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def interpolation_labels(
    *, steps: int, paths: int, pairs: Sequence[tuple[int, int]], split: str, method: str
) -> GridLabels:
    """Columns: α from 0 (the first code) to 1 (the second), framed by the two real images
    when the path runs between images (``pairs``); rows: the pair's indices, or the path."""
    alphas = [number(a) for a in torch.linspace(0, 1, steps).tolist()]
    xlabel = f"α along the {method} path from the first code (α = 0) to the second (α = 1)"
    if not pairs:
        return GridLabels(
            rows=[f"path {k + 1}" for k in range(paths)], columns=alphas, xlabel=xlabel
        )
    return GridLabels(
        rows=[f"#{i} → #{j}" for i, j in pairs],
        columns=["first", *alphas, "second"],
        xlabel=f"{xlabel}; framed: the two {split} images",
        ylabel=f"{split} images",
        marked_columns=(0, steps + 1),
    )


def arithmetic_labels(indices: Sequence[int], split: str) -> GridLabels:
    return GridLabels(
        rows=("input", "decoded", "shifted"),
        columns=[f"#{i}" for i in indices],
        xlabel=f"{split} image",
    )


def manifold_labels(z: Tensor, side: int) -> GridLabels:
    """The z1 value of each column and the z2 value of each row, read off the decoded
    codes [side², 2] (row-major, the top row first)."""
    return GridLabels(
        rows=[number(v) for v in z[::side, 1].tolist()],
        columns=[number(v) for v in z[:side, 0].tolist()],
        xlabel="z1",
        ylabel="z2",
    )


def class_labels(labels: Tensor, ncol: int) -> GridLabels:
    """Labels of a conditional model's samples laid out ``ncol`` a row: the class of each
    column where every column holds one class (``grid_columns`` with a period makes that
    so when it can), else the classes of each row, left to right."""
    classes = labels.tolist()
    rows = [classes[start : start + ncol] for start in range(0, len(classes), ncol)]
    columns = [{row[c] for row in rows if c < len(row)} for c in range(ncol)]
    if all(len(column) == 1 for column in columns):
        return GridLabels(columns=[str(c) for (c,) in columns], xlabel="class")
    return GridLabels(rows=[_runs(row) for row in rows], ylabel="classes, left to right")


def _runs(classes: Sequence[int]) -> str:
    """'0–4' for a consecutive run, else the classes separated by commas."""
    if len(classes) > 2 and list(classes) == list(range(classes[0], classes[-1] + 1)):
        return f"{classes[0]}–{classes[-1]}"
    return ", ".join(str(c) for c in classes)


def rows_png(
    loaded: Loaded, rows: Sequence[Tensor], *, labels: GridLabels, what: str, path: Path
) -> Path:
    """Equally long batches [k, C, H, W] as the rows of one labelled grid."""
    return labelled_grid_png(
        torch.cat(list(rows)),
        ncol=len(rows[0]),
        labels=labels,
        title=loaded.title(what),
        path=path,
    )


def manifold_png(loaded: Loaded, images: Tensor, z: Tensor, *, side: int, path: Path) -> Path:
    return labelled_grid_png(
        images,
        ncol=side,
        labels=manifold_labels(z, side),
        title=loaded.title(f"the decoded 2-D latent space, a {side}×{side} grid"),
        path=path,
    )


def class_samples_png(
    loaded: Loaded, images: Tensor, labels: Tensor, *, ncol: int, path: Path
) -> Path:
    """A conditional model's samples with their classes."""
    single = labels.unique()
    what = f"samples of class {int(single)}" if len(single) == 1 else "samples by class"
    return labelled_grid_png(
        images,
        ncol=ncol,
        labels=GridLabels() if len(single) == 1 else class_labels(labels, ncol),
        title=loaded.title(what),
        path=path,
    )
