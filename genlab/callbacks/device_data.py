"""Keeps an in-memory dataset on the training device (``performance.data_on_device``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from genlab.data.datamodule import InMemoryDataModule
from genlab.performance import DEVICE_DATA_SHARE


def fits_on_device(needed: int, free: int, *, share: float = DEVICE_DATA_SHARE) -> bool:
    """Whether ``needed`` bytes of data leave room for training in ``free`` bytes."""
    return needed <= share * free


class DeviceData(pl.Callback):
    """After the data module's ``setup`` (Lightning calls callbacks' ``setup`` after it),
    moves its splits to the process's device, each rank to its own: batches are then
    gathered there, with no worker and no host-to-device copy per step. ``policy`` "auto"
    does it when the data take at most a quarter of the device's free memory; True always.
    Nothing happens on the CPU, or for a data module that does not hold its splits in
    memory (streamed shards)."""

    def __init__(self, policy: str | bool = "auto") -> None:
        self.policy = policy
        self.placed_on: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import torch

        data = trainer.datamodule
        device = trainer.strategy.root_device
        if self.policy is False or device.type != "cuda":
            return
        if not isinstance(data, InMemoryDataModule) or not data.splits:
            return
        needed = data.resident_bytes()
        if self.policy == "auto":
            free, _ = torch.cuda.mem_get_info(device)
            if not fits_on_device(needed, free):
                rank_zero_info(
                    f"genlab: the data ({needed / 2**20:.0f} MiB) stay in host memory: more "
                    f"than {DEVICE_DATA_SHARE:.0%} of the GPU's free {free / 2**20:.0f} MiB; "
                    "performance.data_on_device=true moves them anyway"
                )
                return
        data.keep_on(device)
        self.placed_on = device
        rank_zero_info(f"genlab: the data ({needed / 2**20:.0f} MiB) live on {device}")
