"""The standard FID in Inception-v3's feature space, through torchmetrics, when its network
(the torch-fidelity package) and weights are on this machine; a clear error otherwise.

genlab cannot download the weights where there is no network; a genlab classifier
(``features=CKPT``) measures samples without them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor

from genlab.errors import ConfigError

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"


def default_weights_path() -> Path:
    """Where torch-fidelity looks for the weights before downloading them: torch hub's cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def inception_weights(path: str | None) -> Path:
    """The weights file to use (``path``, or torch hub's cache when None), after checking
    that torch-fidelity and the file are both present; else a ConfigError saying what is
    missing and how to provide it."""
    weights = Path(path).expanduser() if path else default_weights_path()
    missing = []
    if importlib.util.find_spec("torch_fidelity") is None:
        missing.append(
            "torch-fidelity, which provides torchmetrics' Inception network, is not installed "
            "(pip install torch-fidelity)"
        )
    if not weights.is_file():
        missing.append(
            f"the Inception weights {weights} do not exist: download {WEIGHTS_URL} on a "
            f"machine with network and copy it to {default_weights_path()}, or pass "
            "inception_weights=PATH"
        )
    if missing:
        raise ConfigError(
            "features=inception cannot run here: "
            + "; and ".join(missing)
            + ". Without them, measure samples in genlab's own feature space: train a "
            "classifier (genlab train model=classifier data=...) and pass "
            "features=PATH/TO/classifier.ckpt"
        )
    return weights


def inception_fid(
    real: Tensor,
    fake: Tensor,
    *,
    weights: Path,
    batch_size: int = 100,
    device: torch.device | None = None,
) -> float:
    """FID between real and generated images [N, C, H, W] in [0, 1] in Inception-v3's
    2048-d pool features; grey images are repeated over three channels."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(
        feature=2048, normalize=True, feature_extractor_weights_path=str(weights)
    ).to(device or torch.device("cpu"))
    with torch.inference_mode():
        for images, is_real in ((real, True), (fake, False)):
            for chunk in images.split(batch_size):
                chunk = chunk.to(metric.device, torch.float32)
                if chunk.shape[1] == 1:
                    chunk = chunk.expand(-1, 3, -1, -1)
                metric.update(chunk, real=is_real)
        return float(metric.compute())
