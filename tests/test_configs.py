"""Every config option composes and instantiates into the object it names."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from genlab.commands.common import CONFIG_DIR
from genlab.models.base import GenlabModule
from genlab.models.capabilities import Classifies, HasPrior, Reconstructs, Translates

CONFIGS = Path(CONFIG_DIR)


def options(group: str) -> list[str]:
    # trainer/default.yaml is the base the trainer options extend, not an option itself.
    return sorted(
        p.stem
        for p in (CONFIGS / group).glob("*.yaml")
        if not (group == "trainer" and p.stem == "default")
    )


def compose_train(tmp_path: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/out",
                "data.root=" + str(tmp_path),
                *overrides,
            ],
        )


def test_every_model_option_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    undocumented = [m for m in options("model") if f"`{m}`" not in readme]
    assert not undocumented, f"model options missing from the README's tables: {undocumented}"


def test_every_model_declares_what_it_can_do(tmp_path: Path) -> None:
    for model in options("model"):
        module = instantiate(compose_train(tmp_path, f"model={model}").model)
        assert isinstance(module, GenlabModule)
        assert module.capabilities, f"{model} declares no capability"


def _target(group: str, name: str) -> str:
    """The ``_target_`` an option builds (a global option, e.g. model=pix2pix, nests it; an
    option that extends another, e.g. deep_ae, takes that one's)."""
    node = yaml.safe_load((CONFIGS / group / f"{name}.yaml").read_text())
    target = node.get(group, node).get("_target_")
    if target is None:
        (base,) = [d for d in node["defaults"] if isinstance(d, str) and d != "_self_"]
        return _target(group, base)
    return target


def translation_data(data: str) -> bool:
    return _target("data", data).endswith("TranslationDataModule")


def translates(model: str) -> bool:
    return issubclass(get_class(_target("model", model)), Translates)


# Image models take image datasets; translators (pix2pix, cyclegan) take translation data.
MODEL_DATA = [
    (model, data)
    for model in options("model")
    for data in options("data")
    if translates(model) == translation_data(data)
]


@pytest.mark.parametrize(("model", "data"), MODEL_DATA)
def test_every_model_instantiates_for_every_dataset(model: str, data: str, tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, f"model={model}", f"data={data}")
    module = instantiate(cfg.model)
    assert isinstance(module, pl.LightningModule)
    x = torch.rand(2, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    module.eval()
    if isinstance(module, Translates):
        with torch.no_grad():
            for direction in module.directions:
                assert module.translate(x, direction).shape == x.shape
    if isinstance(module, Reconstructs):
        assert module.reconstruct(x).shape == x.shape
    if isinstance(module, HasPrior):
        assert module.sample(2).shape == x.shape
    if isinstance(module, Classifies):
        assert module(x).shape == (2, cfg.model.num_classes)
    if _target("data", data).endswith("StreamingDataModule"):
        return  # it reads its shards' index when built: tests/test_streaming.py builds some
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, pl.LightningDataModule)
    assert datamodule.shape == x.shape[1:]


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_builds(optimizer: str, tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, "model=ae", f"optimizer={optimizer}", "optimizer.lr=0.05")
    module = instantiate(cfg.model)
    built = module.configure_optimizers()
    assert type(built).__name__.lower() == optimizer
    assert built.param_groups[0]["lr"] == 0.05
    if optimizer == "sgd":
        assert built.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])
def test_cpu_trainers_instantiate(trainer: str, tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, f"trainer={trainer}", "trainer.max_epochs=3")
    built = instantiate(cfg.trainer, logger=False)
    assert isinstance(built, pl.Trainer)
    assert built.max_epochs == 3
    assert built.num_devices == (2 if trainer == "ddp_cpu" else 1)


def test_gpu_trainers_compose(tmp_path: Path) -> None:
    gpu = compose_train(tmp_path, "trainer=gpu").trainer
    assert (gpu.accelerator, gpu.devices) == ("gpu", 1)
    ddp = compose_train(tmp_path, "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2")
    assert (ddp.trainer.strategy, ddp.trainer.devices, ddp.trainer.num_nodes) == ("ddp", 4, 2)
    assert ddp.trainer.accelerator == "gpu"


@pytest.mark.parametrize("logger", options("logger"))
def test_loggers_instantiate(logger: str, tmp_path: Path) -> None:
    from genlab.commands.train import build_loggers

    cfg = compose_train(tmp_path, f"logger={logger}")
    built = build_loggers(cfg.logger)
    assert built and all(isinstance(b, pl.loggers.Logger) for b in built)
    for b in built:  # MLflow's store is a sqlite:/// URI
        where = getattr(b, "log_dir", None) or b._tracking_uri.removeprefix("sqlite:///")
        assert Path(where).is_relative_to(tmp_path / "out")


@pytest.mark.parametrize("callbacks", options("callbacks"))
def test_callbacks_instantiate(callbacks: str, tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, f"callbacks={callbacks}")
    built = [instantiate(c) for c in cfg.callbacks.values()]
    assert all(isinstance(c, pl.Callback) for c in built)
    assert len(built) == (4 if callbacks == "default" else 0)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose(experiment: str, tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, f"experiment={experiment}")
    assert isinstance(instantiate(cfg.model), pl.LightningModule)


def test_model_shape_follows_the_data(tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, "model=conv_ae", "data=cifar10")
    module = instantiate(cfg.model)
    assert module.image_shape == (3, 32, 32)
    assert module.latent_dim == 64
