"""The one LightningModule base of every genlab model, and what all families share.

``GenlabModule`` holds, once each:
- the record that goes into every checkpoint: the run config (written by ``genlab train``'s
  ``RunConfig`` callback) or, for a model trained from Python, a config rebuilt from the
  model's own hyperparameters and its networks' build configs; plus the genlab version;
- the hyperparameters: every plain constructor argument, while networks and optimizer
  factories (callables) are kept out;
- the optimizer factory type and the one way a factory becomes an optimizer;
- N(0, I) noise drawn where a seeded generator lives, and the fixed noise batch that the
  image grids decode every epoch;
- logging a dict of named loss terms as ``stage/name``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.parsing import collect_init_args
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.capabilities import capabilities_of
from genlab.nn.network import describe

OptimizerFactory = Callable[..., torch.optim.Optimizer]

# Checkpoint keys genlab adds to Lightning's.
CONFIG_KEY = "genlab_config"
VERSION_KEY = "genlab_version"


def standard_normal(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """N(0, I) draws of ``shape`` on ``device``, made where ``generator`` lives: a seeded CPU
    generator gives the same draws whether the model runs on the CPU or a GPU."""
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source, dtype=dtype).to(device)


def build_optimizer(
    factory: OptimizerFactory | None, params: Iterable[nn.Parameter], *, key: str
) -> torch.optim.Optimizer:
    """``factory(params=...)``, or a clear error naming the config key ``key``."""
    if factory is None or not callable(factory):
        what = "is empty" if factory is None else "is not an optimizer factory"
        fix = (
            "pick one with optimizer=adam (or sgd, adamw, rmsprop)"
            if key == "optimizer"
            else f"give {key} a _target_ such as torch.optim.Adam with _partial_: true"
        )
        raise ConfigError(
            f"the model has no optimizer: {key} {what}; {fix}, or in Python pass "
            f"{key.rpartition('.')[2]}=functools.partial(torch.optim.Adam, lr=1e-3)"
        )
    return factory(params=params)


def plain(value: Any) -> Any:
    """``value`` with every OmegaConf container turned into dicts and lists."""
    from omegaconf import Container, OmegaConf

    if isinstance(value, Container):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value


def _is_plain(value: Any) -> bool:
    """Whether a constructor argument is a hyperparameter (data), not an object."""
    return not (callable(value) or isinstance(value, nn.Module))


class GenlabModule(pl.LightningModule):
    """Base of every genlab model. Subclasses call ``super().__init__()`` first; their
    keyword arguments that are plain values become ``self.hparams`` (and so checkpoint
    data), those that are networks are remembered for the checkpoint's build config.
    ``optimizer_factory`` is the factory ``configure_optimizers`` builds from."""

    # The metric whose best value picks the "best" checkpoint; None keeps only the latest.
    checkpoint_monitor: str | None = "val/loss"
    # The grid of samples decodes the same codes every epoch, so epochs compare directly.
    NUM_FIXED_SAMPLES = 64
    SAMPLES_PER_ROW = 8
    optimizer_factory: OptimizerFactory | None = None

    def __init__(self) -> None:
        super().__init__()
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        init_args: dict[str, Any] = {}
        for local_args in collect_init_args(caller, []):
            init_args.update(local_args)
        # Kept out of the module tree (the model registers them itself, under any name).
        self.__dict__["_networks"] = {
            k: v for k, v in init_args.items() if isinstance(v, nn.Module)
        }
        objects = [k for k, v in init_args.items() if not _is_plain(v)]
        self.save_hyperparameters(ignore=objects, frame=caller, logger=False)

    @property
    def capabilities(self) -> list[str]:
        """What this model declares it can do: Encodes, Decodes, HasPrior, ... (see
        genlab.models.capabilities)."""
        return capabilities_of(self)

    # Noise.

    def noise(self, n: int, dim: int, *, generator: torch.Generator | None = None) -> Tensor:
        """N(0, I) draws [n, dim] on the model's device and dtype."""
        return standard_normal((n, dim), generator, device=self.device, dtype=self.dtype)

    def register_fixed_noise(self, dim: int) -> None:
        """The buffer ``fixed_z`` [NUM_FIXED_SAMPLES, dim]: drawn from its own generator, so
        it is the same whatever the run's seed and leaves the global random stream (and so
        the weights' seeding) untouched."""
        generator = torch.Generator().manual_seed(0)
        self.register_buffer(
            "fixed_z", torch.randn(self.NUM_FIXED_SAMPLES, dim, generator=generator)
        )

    # Logging.

    def log_terms(
        self, terms: Mapping[str, Tensor], stage: str, *, batch_size: int, prog_bar: str = "loss"
    ) -> None:
        """Log every named term as ``stage/name``; validation and test values are averaged
        across processes."""
        sync = stage != "train"
        for name, value in terms.items():
            self.log(
                f"{stage}/{name}",
                value.detach(),
                batch_size=batch_size,
                prog_bar=name == prog_bar,
                sync_dist=sync,
            )

    # Pictures.

    @torch.no_grad()
    def image_grids(self, x: Tensor) -> dict[str, list[Tensor]]:
        """The grids logged every validation epoch, by tag; each a list of equally long
        image rows [n, C, H, W] in [0, 1]. ``x`` is a fixed validation batch. None here."""
        return {}

    # Steps: models with one objective implement ``step``; GANs override the hooks.

    def step(self, batch: Any, stage: str) -> Tensor:
        """The loss of one batch for ``stage`` (train, val or test), its terms logged."""
        raise NotImplementedError(f"{type(self).__name__} implements no step(batch, stage)")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.step(batch, "test")

    # Optimizers.

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def configure_optimizers(self) -> Any:
        return build_optimizer(self.optimizer_factory, self.trainable_parameters(), key="optimizer")

    # Checkpoints.

    def model_config(self) -> dict[str, Any]:
        """How to rebuild this model: its class, its hyperparameters and its networks'
        build configs (None for a network genlab cannot describe)."""
        cls = type(self)
        config: dict[str, Any] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
        # hparams gather every __init__ of the class chain; keep what this class takes.
        parameters = inspect.signature(cls).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        config.update({k: v for k, v in self.hparams.items() if takes_any or k in parameters})
        for name, network in self._networks.items():
            config[name] = describe(network)
        return config

    def describe_run(self) -> dict[str, Any]:
        """A run config for a model trained outside ``genlab train``: the model's own, and
        the data module's where it records its hyperparameters."""
        run: dict[str, Any] = {"model": self.model_config()}
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and datamodule.hparams:
            cls = type(datamodule)
            run["data"] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
            run["data"].update(plain(dict(datamodule.hparams)))
        return run

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain dicts, lists and scalars only, so checkpoints load with weights_only=True.
        from genlab import __version__

        checkpoint[VERSION_KEY] = __version__
        if CONFIG_KEY not in checkpoint:
            checkpoint[CONFIG_KEY] = self.describe_run()
        # Lightning stores the model's and the data module's hyperparameters as given; Hydra
        # may have passed OmegaConf lists, which are pickled objects, not plain data.
        for key in ("hyper_parameters", "datamodule_hyper_parameters", CONFIG_KEY):
            if key in checkpoint:
                checkpoint[key] = plain(checkpoint[key])
