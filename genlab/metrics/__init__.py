"""Evaluation metrics, each module one idea: Fréchet and kernel distances between feature
sets, improved precision/recall, class coverage of samples, a VAE's likelihood bounds,
ROC/AUROC of anomaly scores, and the linear probe on codes."""

from genlab.metrics.coverage import class_histogram, classes_covered, coverage_summary
from genlab.metrics.fid import fid, frechet_distance, gaussian_statistics
from genlab.metrics.kid import kid
from genlab.metrics.likelihood import likelihood_bounds
from genlab.metrics.precision_recall import precision_recall
from genlab.metrics.probe import linear_probe
from genlab.metrics.roc import auroc, roc_curve

__all__ = [
    "auroc",
    "class_histogram",
    "classes_covered",
    "coverage_summary",
    "fid",
    "frechet_distance",
    "gaussian_statistics",
    "kid",
    "likelihood_bounds",
    "linear_probe",
    "precision_recall",
    "roc_curve",
]
