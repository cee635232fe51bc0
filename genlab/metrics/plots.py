"""PNG plots of anomaly scores: their histogram by class and the ROC curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genlab.viz import pyplot, save_figure, set_title


def score_histogram_png(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    class_names: Sequence[str],
    normal: Sequence[int] = (),
    title: str,
    path: str | Path,
) -> Path:
    """One outlined histogram of scores [N] per class in labels [N], on shared bins; the
    ``normal`` classes are drawn solid, the others dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    bins = np.histogram_bin_edges(scores, bins=60)
    for label in np.unique(labels):
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        is_normal = int(label) in normal
        ax.hist(
            scores[labels == label],
            bins=bins,
            histtype="step",
            linewidth=2.0 if is_normal else 1.2,
            linestyle="-" if is_normal or not normal else "--",
            color=cmap(int(label) % cmap.N),
            label=f"{name} (normal)" if is_normal else name,
        )
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("images")
    # Counts: no 1.75 images on a small split's axis.
    ax.yaxis.get_major_locator().set_params(integer=True)
    set_title(ax, title)
    ax.legend(fontsize=8, loc="best", title="class", title_fontsize=8)
    return save_figure(fig, path)


def roc_png(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str, path: str | Path
) -> Path:
    """ROC curves by legend label, each (fpr [T], tpr [T]), with the chance diagonal."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    for label, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.8, label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("false positive rate (normal images flagged)")
    ax.set_ylabel("true positive rate (anomalies flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    set_title(ax, title)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)
