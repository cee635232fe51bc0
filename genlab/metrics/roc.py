"""ROC curve and AUROC of anomaly scores: how well a score ranks anomalies above normal
images, whatever threshold is picked. 1 separates them perfectly, 0.5 is chance."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from genlab.errors import ConfigError


def _check(scores: np.ndarray, is_anomaly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    is_anomaly = np.asarray(is_anomaly, dtype=bool).ravel()
    if scores.shape != is_anomaly.shape:
        raise ConfigError(f"{scores.size} scores but {is_anomaly.size} anomaly labels")
    if is_anomaly.all() or not is_anomaly.any():
        raise ConfigError(
            "AUROC needs both normal and anomalous images among those scored "
            f"({int(is_anomaly.sum())} of {is_anomaly.size} are anomalies)"
        )
    return scores, is_anomaly


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Area under the ROC curve for scores [N] (higher: more anomalous) and labels [N].

    The Mann-Whitney form: the chance that a random anomaly scores above a random normal
    image, ties counting one half (through average ranks).
    """
    scores, is_anomaly = _check(scores, is_anomaly)
    ranks = rankdata(scores)
    positives = int(is_anomaly.sum())
    negatives = is_anomaly.size - positives
    rank_sum = ranks[is_anomaly].sum() - positives * (positives + 1) / 2
    return float(rank_sum / (positives * negatives))


def roc_curve(scores: np.ndarray, is_anomaly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates [T] as the threshold falls through each distinct
    score, starting at (0, 0) and ending at (1, 1)."""
    scores, is_anomaly = _check(scores, is_anomaly)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], is_anomaly[order]
    # One point per distinct score: tied images cross the threshold together.
    last_of_each = np.r_[np.flatnonzero(np.diff(sorted_scores)), hits.size - 1]
    true_positives = np.cumsum(hits)[last_of_each]
    false_positives = (last_of_each + 1) - true_positives
    tpr = np.r_[0.0, true_positives / hits.sum()]
    fpr = np.r_[0.0, false_positives / (hits.size - hits.sum())]
    return fpr, tpr
