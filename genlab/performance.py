"""Speed settings that are not Trainer arguments: where an in-memory dataset lives, the
precision of float32 matrix products, the memory layout of convolutional models, and
``torch.compile`` of the networks.

They are the ``performance:`` node of configs/train.yaml. Each ``auto`` turns on
for a CUDA accelerator (``trainer=gpu``, ``trainer=ddp``) and stays off on the CPU, where
none of them helps:

- ``data_on_device``: the uint8 images of an in-memory dataset (mnist, cifar10, a folder,
  the translation sets) move to the GPU once, after ``setup``, and every batch is gathered,
  converted to float and (for ``data.binarize``, the translation crops and flips) sampled
  there: no DataLoader worker, no host-to-device copy per step. ``auto`` does it when the
  images take at most a quarter of the device's free memory; ``true`` always.
- ``matmul_precision``: ``high`` lets float32 matrix products and convolutions use TF32
  tensor cores (Ampere and later), ``highest`` keeps full float32; see
  ``torch.set_float32_matmul_precision``.
- ``channels_last``: conv models' weights (and so activations) in the NHWC layout, which
  cuDNN's tensor-core kernels prefer (under bf16 mixed precision most of all).

``steps_per_execution`` (auto, or K >= 1) has a genlab model take K optimizer steps per
Lightning iteration, so that Lightning's per-iteration cost is paid once per K steps; auto
picks 16 for models without convolutions and on a CUDA device, 1 otherwise. See
genlab.models.fusion for what it keeps exact and where it applies.

``compile`` (false, true or a torch.compile backend name) compiles each of a genlab
model's networks in place with ``nn.Module.compile``: parameter names, and so checkpoints,
stay as they are, so a compiled run resumes from an uncompiled checkpoint and back. The
checkpoint commands (sample, evaluate, ...) build models uncompiled. It sits here rather
than in the model node, whose keys are the model's constructor arguments: there it would
break ``instantiate(cfg.model)`` and every model of one's own that does not take it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genlab.errors import ConfigError

PRECISIONS = ("highest", "high", "medium")
# The share of the device's free memory an in-memory dataset may take under `auto`.
DEVICE_DATA_SHARE = 0.25


@dataclass(frozen=True)
class Performance:
    """The resolved ``performance`` node: ``data_on_device`` is "auto", True or False (the
    device's free memory decides "auto" once the data are loaded); the others are final."""

    data_on_device: str | bool
    matmul_precision: str | None
    channels_last: bool
    compile: str | None = None
    steps_per_execution: int | str = "auto"


def _switch(cfg: Any, key: str) -> str | bool:
    value = cfg.get(key, "auto") if cfg is not None else "auto"
    if value in ("auto", True, False):
        return value
    raise ConfigError(
        f"performance.{key} must be auto, true or false (got {value!r}); auto turns it on "
        "for trainer=gpu"
    )


def on_cuda(accelerator: str) -> bool:
    """Whether ``trainer.accelerator`` puts the run on CUDA GPUs (auto: when one is seen)."""
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def resolve(cfg: Any, *, cuda: bool | None = None) -> Performance:
    """The run's speed settings from ``cfg.performance`` and ``cfg.trainer.accelerator``
    (``cuda`` given: as if the run were, or were not, on CUDA, which checks the values
    without importing torch); a missing node means every setting ``auto``. Raises
    ConfigError on a bad value."""
    node = cfg.get("performance")
    if cuda is None:
        cuda = on_cuda(str(cfg.trainer.get("accelerator", "cpu")))
    data = _switch(node, "data_on_device")
    layout = _switch(node, "channels_last")
    precision = node.get("matmul_precision", "auto") if node is not None else "auto"
    if precision == "auto":
        precision = "high" if cuda else None
    elif precision not in PRECISIONS:
        raise ConfigError(
            f"performance.matmul_precision must be auto, {', '.join(PRECISIONS)} (got "
            f"{precision!r}); high allows TF32 on GPUs that have it"
        )
    return Performance(
        data_on_device=data,
        matmul_precision=precision,
        channels_last=cuda if layout == "auto" else bool(layout),
        compile=check_compile(node.get("compile", False) if node is not None else False),
        steps_per_execution=check_steps(
            node.get("steps_per_execution", "auto") if node is not None else "auto"
        ),
    )


def check_steps(value: Any) -> int | str:
    """``performance.steps_per_execution``: auto or a whole number of at least 1."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"performance.steps_per_execution must be auto or a whole number of at least 1 "
            f"(got {value!r}); 1 takes one optimizer step per Lightning iteration, auto 16 "
            "for models without convolutions"
        )
    return value


def check_compile(value: Any) -> str | None:
    """``performance.compile`` as the torch.compile backend to use, or None for no compiling."""
    if value is None or value is False:
        return None
    if value is True:
        return "inductor"
    if isinstance(value, str) and value:
        return value
    raise ConfigError(
        f"performance.compile must be true, false or a torch.compile backend name such as "
        "inductor "
        f"(got {value!r})"
    )


def apply_matmul_precision(precision: str | None) -> None:
    """torch's float32 matmul precision (and cuDNN's TF32 switch with it); None leaves
    torch's defaults."""
    if precision is None:
        return
    import torch

    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = precision != "highest"


def has_convolutions(module: Any) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def compile_networks(model: Any, backend: str) -> list[str]:
    """Compiles each network a genlab model was built with, in place; returns their names.
    A model that declares none (a user's LightningModule) is refused with what to do."""
    from genlab.models.base import GenlabModule

    networks = model.networks() if isinstance(model, GenlabModule) else {}
    if not networks:
        raise ConfigError(
            f"performance.compile applies to the networks a genlab model is built with, and "
            f"{type(model).__name__} declares none; compile inside your own model instead, "
            "or set performance.compile=false"
        )
    for network in networks.values():
        network.compile(backend=backend)
    return list(networks)
