"""genlab: a command-line experiment runner for deep generative image models."""

__version__ = "0.1.0"
