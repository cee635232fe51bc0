"""What the commands that start from a checkpoint share: loading the model and its data,
choosing the device, encoding a split, drawing latents, and writing results into the run
directory. Every check of what the model can do goes through its declared capabilities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from genlab.atomic import atomic_path
from genlab.checkpoint import build_model, read_checkpoint
from genlab.data.protocols import SplitImages
from genlab.errors import CheckpointError, ConfigError
from genlab.models.capabilities import Conditional, Decodes, Encodes, HasPrior, require
from genlab.progress import Progress


@dataclass
class Loaded:
    model: torch.nn.Module
    run_config: DictConfig
    device: torch.device
    output_dir: Path
    # The checkpoint's epoch, counted from 0 as in its file name (epoch003-...); None for a
    # checkpoint without one.
    epoch: int | None = None

    def title(self, what: str) -> str:
        """A figure's title: the model, the checkpoint's epoch and what the figure shows, so
        that a picture read away from its run still says what it is."""
        epoch = "" if self.epoch is None else f", epoch {self.epoch}"
        return f"{type(self.model).__name__}{epoch}: {what}"


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
    trusted = OmegaConf.to_container(cfg.trusted_modules) if cfg.get("trusted_modules") else []
    checkpoint = read_checkpoint(cfg.ckpt)
    model, run_config = build_model(checkpoint, cfg.ckpt, trusted_modules=trusted)
    device = device_for(cfg.get("device", "cpu"))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    epoch = checkpoint.get("epoch")
    return Loaded(model.to(device), run_config, device, output_dir, epoch)


def data_config(loaded: Loaded, overrides: DictConfig | None) -> dict[str, Any]:
    """The data config a command uses. A data group chosen on the command line
    (``data=mnist``, which brings its ``_target_``) replaces the checkpoint's; otherwise the
    checkpoint's own data config, with each non-null ``data.*`` value of the command on top."""
    given = OmegaConf.to_container(overrides, resolve=True) if overrides else {}
    if given.get("_target_"):
        return without_unknown_placeholders(given)
    stored = loaded.run_config.get("data")
    if stored is None:
        raise CheckpointError(
            "the checkpoint does not say what data it was trained on (its model was trained "
            "outside genlab train with a data module that records no hyperparameters); name "
            "the data on the command line, e.g. data=mnist data.root=DIR"
        )
    data = OmegaConf.to_container(stored, resolve=True)
    data.update({k: v for k, v in given.items() if v is not None})
    return data


def without_unknown_placeholders(config: dict[str, Any]) -> dict[str, Any]:
    """A chosen data group's config without the command's null placeholders (``data.root``,
    ...) that its class does not take, so a user's own data module gets only its keys."""
    import inspect

    from hydra.utils import get_class

    parameters = inspect.signature(get_class(config["_target_"])).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return config
    return {
        k: v for k, v in config.items() if v is not None or k in parameters or k.startswith("_")
    }


def datamodule(loaded: Loaded, overrides: DictConfig | None) -> SplitImages:
    """The data module of ``data_config``, instantiated from its ``_target_`` (genlab's or a
    user's own), set up and ready."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    config = data_config(loaded, overrides)
    try:
        module = instantiate(config, _convert_="all")
    except InstantiationException as exc:
        if exc.__cause__ is not None and not isinstance(exc.__cause__, TypeError):
            raise
        raise ConfigError(
            f"cannot build the data module {config.get('_target_')}: {exc.__cause__ or exc}; "
            "check the data.* keys (a key the data module does not take is a typo or belongs "
            "to another dataset)"
        ) from None
    module.setup("test")
    if not isinstance(module, SplitImages):
        raise ConfigError(
            f"the data module {type(module).__name__} does not provide `splits` and "
            "`class_names` after setup, which the checkpoint commands read images from; see "
            "genlab.data.protocols.SplitImages, or derive it from genlab.data.ImageDataModule"
        )
    return module


def unfiltered_datamodule(loaded: Loaded, overrides: DictConfig | None) -> SplitImages:
    """Like ``datamodule``, but with every class of the dataset even when the checkpoint was
    trained on some (``data.classes``); a non-null ``data.classes`` in ``overrides`` still
    applies. For commands that score images the model never saw, such as anomalies."""
    from dataclasses import replace

    data = loaded.run_config.get("data")
    if data is None or "classes" not in data:
        return datamodule(loaded, overrides)
    everything = OmegaConf.merge(loaded.run_config, {"data": {"classes": None}})
    return datamodule(replace(loaded, run_config=everything), overrides)


def split(dm: SplitImages, name: str) -> Any:
    """A split by name; ``test`` falls back to ``val`` for datasets without a test split."""
    name = split_name(dm, name)
    if name not in dm.splits:
        raise ConfigError(f"split={name!r} is not one of {', '.join(dm.splits)}")
    return dm.splits[name]


def split_name(dm: SplitImages, name: str) -> str:
    """The split ``split`` reads for ``name``: what a figure names as its images' source."""
    return "val" if name == "test" and "test" not in dm.splits else name


@torch.inference_mode()
def encode(
    model: torch.nn.Module, images: torch.Tensor, *, device: torch.device, batch_size: int = 512
) -> torch.Tensor:
    """Codes [N, latent] of images [N, C, H, W] (the mean code for VAEs), in batches."""
    require(model, Encodes, to="encode images")
    parts = [model.encode(chunk.to(device)).float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(parts)


def encode_split(
    model: torch.nn.Module,
    dataset: Any,
    *,
    device: torch.device,
    batch_size: int = 512,
    progress: Callable[[int], object] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [N, latent] and labels [N] of a whole split, converting images batch by batch;
    ``progress`` is called with each batch's size once it is encoded (a bar's ``update``)."""
    require(model, Encodes, to="encode images")
    codes = []
    for start in range(0, len(dataset), batch_size):
        x, _ = dataset[torch.arange(start, min(start + batch_size, len(dataset)))]
        codes.append(encode(model, x, device=device, batch_size=batch_size))
        if progress is not None:
            progress(len(x))
    return torch.cat(codes), dataset.labels.clone()


class LatentSource:
    """Where new codes come from: the model's own prior (``HasPrior``), or, for a model
    that encodes and decodes but has no prior (a plain autoencoder), a full-covariance
    Gaussian fitted to the codes of the training split. The lecture's point is that the
    second looks worse: an autoencoder's codes need not fill that Gaussian."""

    def __init__(
        self,
        loaded: Loaded,
        data_overrides: DictConfig | None,
        *,
        to: str,
        progress: Progress | None = None,
    ) -> None:
        model = loaded.model
        self.model = model
        self.fitted = None
        if isinstance(model, HasPrior):
            return
        require(model, Decodes, to=to)
        if not isinstance(model, Encodes):
            raise CheckpointError(
                f"a {type(model).__name__} checkpoint cannot {to}: it declares no prior "
                "(HasPrior) and no encoder (Encodes) whose codes a prior could be fitted to"
            )
        from genlab.latent import GaussianCodeModel

        train = datamodule(loaded, data_overrides).splits["train"]
        progress = progress or Progress("", quiet=True)
        what = f"encoding the {len(train)} training images to fit a Gaussian to their codes"
        with progress.phase("prior", what, total=len(train)) as bar:
            codes, _ = encode_split(model, train, device=loaded.device, progress=bar.update)
        self.fitted = GaussianCodeModel(codes)

    @property
    def description(self) -> str:
        return "the model's prior" if self.fitted is None else "gaussian fitted to training codes"

    def sample(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        truncation: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """n codes [n, latent] on the CPU; ``truncation`` applies to the standardised draw
        (the prior's N(0, I), or the fitted Gaussian's ε)."""
        if self.fitted is None:
            # Only asked for when given: a user's own prior may predate the keyword.
            extra = {} if truncation is None else {"truncation": truncation}
            z = self.model.sample_latent(n, temperature=temperature, generator=generator, **extra)
            return z.cpu()
        return self.fitted.sample(
            n, temperature=temperature, truncation=truncation, generator=generator
        )


@torch.inference_mode()
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
    require(model, Decodes, to="decode latent codes")
    if labels is not None:
        require(model, Conditional, to="decode codes of a given class")
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
    """torch.save, whole or not at all."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path
