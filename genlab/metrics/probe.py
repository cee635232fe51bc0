"""A linear probe: logistic regression from frozen codes to labels, the lecture's test of
unsupervised pretraining. Codes that separate classes linearly give a high accuracy even
when only a few labelled examples are used."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from genlab.errors import ConfigError


def labelled_subset(labels: np.ndarray, *, n: int, seed: int) -> np.ndarray:
    """Indices of n training examples, stratified by class when every class can have at
    least one (sorted, seeded)."""
    if not 1 <= n <= labels.size:
        raise ConfigError(f"probe_labels={n} must lie between 1 and the {labels.size} codes")
    if n == labels.size:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    indices = np.arange(labels.size)
    classes, counts = np.unique(labels, return_counts=True)
    # Stratifying needs a slot for every class and two examples of each to split.
    stratify = labels if n >= classes.size and counts.min() >= 2 else None
    chosen, _ = train_test_split(indices, train_size=n, random_state=seed, stratify=stratify)
    return np.sort(chosen)


def linear_probe(
    train_codes: Tensor,
    train_labels: Tensor,
    test_codes: Tensor,
    test_labels: Tensor,
    *,
    num_labels: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Fit standardisation and logistic regression on the training codes [N, D] (all of them,
    or ``num_labels`` of them); return the test ``accuracy`` and the labels used."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = train_codes.double().numpy(), train_labels.numpy()
    chosen = labelled_subset(y, n=num_labels or y.size, seed=seed)
    x, y = x[chosen], y[chosen]
    if np.unique(y).size < 2:
        raise ConfigError(
            f"the linear probe needs labelled examples of at least two classes; the "
            f"{y.size} chosen are all class {y[0]}; use a larger probe_labels"
        )
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(x, y)
    accuracy = probe.score(test_codes.double().numpy(), test_labels.numpy())
    return {"accuracy": float(accuracy), "labels": float(y.size)}
