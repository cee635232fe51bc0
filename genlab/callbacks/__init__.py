"""Lightning callbacks: image grids, the non-finite-loss guard and class coverage."""

from genlab.callbacks.coverage import ClassCoverageCallback
from genlab.callbacks.guard import NonFiniteLossGuard
from genlab.callbacks.images import ImageGridCallback

__all__ = ["ClassCoverageCallback", "ImageGridCallback", "NonFiniteLossGuard"]
