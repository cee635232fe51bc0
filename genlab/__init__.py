"""genlab: a command-line experiment runner for deep generative image models.

The Python API (importing genlab stays light: torch loads on first use):

    import genlab
    cfg = genlab.compose("train", ["model=vae", "trainer.max_epochs=1"])
    metrics = genlab.train(cfg)
    model = genlab.load("outputs/train/DATE/TIME/checkpoints/last.ckpt")
"""

__version__ = "0.2.0"

__all__ = ["__version__", "compose", "load", "train"]


def __getattr__(name: str):
    # Lazily, so that `genlab --help` and tab completion never import torch.
    if name in ("compose", "load", "train"):
        from genlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")
