"""What the commands that start from a checkpoint share: loading the model and its data,
choosing the device, encoding a split, and writing results into the run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from genlab.checkpoint import load_model
from genlab.data import ImageDataModule
from genlab.data.tensors import TensorImageDataset
from genlab.errors import CheckpointError, ConfigError


@dataclass
class Loaded:
    model: torch.nn.Module
    run_config: DictConfig
    device: torch.device
    output_dir: Path


def device_for(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no GPU is visible; use device=cpu")
    return device


def load(cfg: DictConfig) -> Loaded:
    model, run_config = load_model(cfg.ckpt)
    device = device_for(cfg.get("device", "cpu"))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return Loaded(model.to(device), run_config, device, output_dir)


def datamodule(loaded: Loaded, overrides: DictConfig | None) -> ImageDataModule:
    """The checkpoint's data, with the command's non-null ``data.*`` values replacing its own,
    set up and ready."""
    data = OmegaConf.to_container(loaded.run_config.data)
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    for key, value in (OmegaConf.to_container(overrides) if overrides else {}).items():
        if value is not None:
            data[key] = value
    module = ImageDataModule(**data)
    module.setup("test")
    return module


def split(dm: ImageDataModule, name: str) -> TensorImageDataset:
    """A split by name; ``test`` falls back to ``val`` for datasets without a test split."""
    if name == "test" and "test" not in dm.splits:
        name = "val"
    if name not in dm.splits:
        raise ConfigError(f"split={name!r} is not one of {', '.join(dm.splits)}")
    return dm.splits[name]


def require(model: torch.nn.Module, method: str, why: str) -> None:
    if not callable(getattr(model, method, None)):
        raise CheckpointError(f"a {type(model).__name__} checkpoint cannot {why}")


@torch.no_grad()
def encode(
    model: torch.nn.Module, images: torch.Tensor, *, device: torch.device, batch_size: int = 512
) -> torch.Tensor:
    """Codes [N, latent] of images [N, C, H, W] (the mean code for VAEs), in batches."""
    require(model, "encode", "encode images")
    parts = [model.encode(chunk.to(device)).float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(parts)


def encode_split(
    model: torch.nn.Module,
    dataset: TensorImageDataset,
    *,
    device: torch.device,
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [N, latent] and labels [N] of a whole split, converting images batch by batch."""
    require(model, "encode", "encode images")
    codes = []
    for start in range(0, len(dataset), batch_size):
        x, _ = dataset[torch.arange(start, min(start + batch_size, len(dataset)))]
        codes.append(encode(model, x, device=device, batch_size=batch_size))
    return torch.cat(codes), dataset.labels.clone()


@torch.no_grad()
def decode(
    model: torch.nn.Module,
    z: torch.Tensor,
    *,
    device: torch.device,
    labels: torch.Tensor | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """Images [N, C, H, W] in [0, 1] of codes [N, latent], in batches; ``labels`` [N] are
    passed on to conditional models."""
    require(model, "decode", "decode latent codes")
    parts = []
    for start in range(0, len(z), batch_size):
        chunk = z[start : start + batch_size].to(device)
        if labels is None:
            parts.append(model.decode(chunk).float().cpu())
        else:
            parts.append(
                model.decode(chunk, labels[start : start + batch_size].to(device)).float().cpu()
            )
    return torch.cat(parts).clamp(0, 1)


def save_tensors(obj: dict[str, Any], path: Path) -> Path:
    """torch.save through a temporary name, so an interrupted run leaves no partial file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def unfiltered_datamodule(loaded: Loaded, overrides: DictConfig | None) -> ImageDataModule:
    """Like ``datamodule``, but with every class of the dataset even when the checkpoint was
    trained on some (``data.classes``); a non-null ``data.classes`` in ``overrides`` still
    applies. For commands that score images the model never saw, such as anomalies."""
    from dataclasses import replace

    everything = OmegaConf.merge(loaded.run_config, {"data": {"classes": None}})
    return datamodule(replace(loaded, run_config=everything), overrides)
