"""Lightning callbacks: image grids and the non-finite-loss guard."""

from genlab.callbacks.guard import NonFiniteLossGuard
from genlab.callbacks.images import ImageGridCallback

__all__ = ["ImageGridCallback", "NonFiniteLossGuard"]
