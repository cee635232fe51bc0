"""Pictures that explain themselves: near-square grids for every n (a conditional model's
classes lined up), raw sample grids without text, and figures whose titles name the model,
the checkpoint's epoch and the picture, with labelled rows, columns and axes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import new_run, train_checkpoint
from PIL import Image

import genlab.metrics.plots
import genlab.viz
from genlab.commands.embed import project
from genlab.commands.figures import class_labels, interpolation_labels, manifold_labels
from genlab.latent import manifold_grid
from genlab.viz import grid_columns, make_grid, thinned

# n: (columns, rows) of a plain grid, and of a 10-class conditional model's cycling classes.
SHAPES = {1: (1, 1), 7: (3, 3), 20: (5, 4), 64: (8, 8)}
CLASS_SHAPES = {1: (1, 1), 7: (3, 3), 20: (5, 4), 64: (10, 7)}


@pytest.mark.parametrize("n", sorted(SHAPES))
def test_grid_shapes_are_near_square(n: int) -> None:
    for period, shapes in ((None, SHAPES), (10, CLASS_SHAPES)):
        columns = grid_columns(n, period=period)
        assert (columns, math.ceil(n / columns)) == shapes[n]
        grid = make_grid(torch.rand(n, 1, 28, 28), nrow=columns)
        assert grid.shape == (1, shapes[n][1] * 30 + 2, shapes[n][0] * 30 + 2)


def test_every_grid_is_near_square() -> None:
    for period in (None, 2, 3, 7, 10, 12):
        for n in range(1, 301):
            columns = grid_columns(n, period=period)
            rows = math.ceil(n / columns)
            assert max(rows, columns) <= 2 * min(rows, columns), (n, period)


def test_a_conditional_models_classes_line_up() -> None:
    # 64 samples of 10 classes: one class a column.
    labels = torch.arange(64) % 10
    assert class_labels(labels, grid_columns(64, period=10)).columns == [str(c) for c in range(10)]
    # 20: five columns, the rows alternate between classes 0-4 and 5-9.
    assert class_labels(torch.arange(20) % 10, grid_columns(20, period=10)).rows == [
        "0–4",
        "5–9",
        "0–4",
        "5–9",
    ]


def test_interpolation_columns_are_alphas_between_the_marked_images() -> None:
    labels = interpolation_labels(
        steps=5, paths=2, pairs=[(3, 8), (0, 1)], split="test", method="linear"
    )
    assert labels.columns == ["first", "0", "0.25", "0.5", "0.75", "1", "second"]
    assert labels.rows == ["#3 → #8", "#0 → #1"]
    assert labels.marked_columns == (0, 6)
    prior = interpolation_labels(steps=3, paths=2, pairs=[], split="", method="slerp")
    assert prior.columns == ["0", "0.5", "1"] and prior.rows == ["path 1", "path 2"]
    assert not prior.marked_columns and "slerp" in prior.xlabel


def test_manifold_axes_read_the_decoded_codes() -> None:
    labels = manifold_labels(manifold_grid(5, extent=2.0), 5)
    assert labels.columns == ["-2", "-1", "0", "1", "2"]
    assert labels.rows == ["2", "1", "0", "-1", "-2"]
    assert (labels.xlabel, labels.ylabel) == ("z1", "z2")


def test_long_axes_show_fewer_labels_but_both_ends() -> None:
    ticks = thinned(manifold_labels(manifold_grid(20, extent=2.0), 20).columns)
    assert ticks[0] == "-2" and ticks[-1] == "2"
    assert 5 <= sum(bool(t) for t in ticks) <= 11


@pytest.mark.parametrize(
    ("dims", "method", "axes"),
    [
        (2, "pca", ("z1", "z2")),
        (5, "pca", ("PC 1 (", "PC 2 (")),
        (5, "tsne", ("t-SNE 1", "t-SNE 2")),
    ],
)
def test_scatter_axes_name_the_projection(dims: int, method: str, axes: tuple[str, str]) -> None:
    _, labels = project(torch.randn(40, dims), method=method, seed=0)
    assert all(label.startswith(start) for label, start in zip(labels, axes, strict=True))


# End to end: each command's figure, read from matplotlib before it is saved.


@pytest.fixture(scope="module")
def ae_2d(workdir: Path) -> Path:
    return train_checkpoint(
        workdir,
        "model=deep_ae",
        "model.latent_dim=2",
        "model.encoder.hidden_dims=[32]",
        "trainer.max_epochs=2",
    )


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """What each figure saved says, by file name: title, axis labels and tick labels."""
    seen: dict[str, dict[str, Any]] = {}
    save = genlab.viz.save_figure

    def spy(fig: Any, path: str | Path) -> Path:
        ax = fig.axes[0]
        seen[Path(path).name] = {
            "title": ax.get_title().replace("\n", " "),
            "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(),
            "columns": [t.get_text() for t in ax.get_xticklabels()],
            "rows": [t.get_text() for t in ax.get_yticklabels()],
        }
        return save(fig, path)

    monkeypatch.setattr(genlab.viz, "save_figure", spy)
    monkeypatch.setattr(genlab.metrics.plots, "save_figure", spy)
    return seen


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_strips_are_titled_and_labelled(
    workdir: Path, ae_2d: Path, figures: dict[str, dict[str, Any]]
) -> None:
    new_run(workdir, "interpolate", f"ckpt={ae_2d}", "pairs=[[0,1]]", "steps=3")
    interpolation = figures["interpolation.png"]
    # Two epochs trained: the checkpoint's epoch 1, as in its file name epoch001-....
    assert interpolation["title"].startswith("Autoencoder, epoch 1: linear interpolation")
    assert interpolation["columns"] == ["first", "0", "0.5", "1", "second"]
    assert interpolation["rows"] == ["#0 → #1"]
    new_run(
        workdir, "arithmetic", f"ckpt={ae_2d}", "plus.label=7", "minus.label=1", "apply.label=1"
    )
    arithmetic = figures["arithmetic.png"]
    assert arithmetic["rows"] == ["input", "decoded", "shifted"]
    assert "mean code of class 7 − mean code of class 1" in arithmetic["title"]
    run, _ = new_run(workdir, "sample", f"ckpt={ae_2d}", "mode=manifold", "n=4")
    manifold = figures["manifold.png"]
    assert (manifold["xlabel"], manifold["ylabel"]) == ("z1", "z2")
    assert manifold["title"] == "Autoencoder, epoch 1: the decoded 2-D latent space, a 4×4 grid"
    # samples.png stays the raw grid, its size that of the images and padding alone.
    assert png_size(run / "samples.png") == (4 * 30 + 2, 4 * 30 + 2)
    new_run(workdir, "embed", f"ckpt={ae_2d}")
    embedding = figures["embedding.png"]
    assert (embedding["xlabel"], embedding["ylabel"]) == ("z1", "z2")
    assert embedding["title"] == "Autoencoder, epoch 1: 40 test codes (2-D) by class"


def test_anomaly_plots_are_titled_and_labelled(
    workdir: Path, figures: dict[str, dict[str, Any]]
) -> None:
    ckpt = train_checkpoint(workdir, "model=ae", "model.latent_dim=4", "data.classes=[0,1]")
    new_run(workdir, "anomaly", f"ckpt={ckpt}")
    roc, histogram = figures["roc.png"], figures["scores_by_class.png"]
    assert roc["title"].startswith("Autoencoder, epoch 0: ROC of the anomaly scores")
    assert roc["xlabel"].startswith("false positive rate")
    assert roc["ylabel"].startswith("true positive rate")
    assert histogram["title"].startswith("Autoencoder, epoch 0: reconstruction error")
    assert (histogram["xlabel"], histogram["ylabel"]) == ("anomaly score", "images")


def test_conditional_samples_are_near_square_and_labelled_by_class(
    workdir: Path, figures: dict[str, dict[str, Any]]
) -> None:
    ckpt = train_checkpoint(
        workdir,
        "model=cgan",
        "model.generator.hidden_dims=[32]",
        "model.discriminator.hidden_dims=[32]",
    )
    run, _ = new_run(workdir, "sample", f"ckpt={ckpt}", "n=20")
    assert png_size(run / "samples.png") == (5 * 30 + 2, 4 * 30 + 2)
    by_class = figures["samples_by_class.png"]
    assert by_class["title"] == "ConditionalGAN, epoch 0: samples by class"
    assert by_class["rows"] == ["0–4", "5–9", "0–4", "5–9"]
    new_run(workdir, "sample", f"ckpt={ckpt}", "n=6", "label=3")
    assert figures["samples_by_class.png"]["title"].endswith("samples of class 3")
