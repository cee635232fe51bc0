"""The CNN classifier that serves as genlab's feature extractor: shapes, the loss falling,
its config, its checkpoints and its options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import digit_like_images
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from genlab.commands.common import CONFIG_DIR
from genlab.errors import CheckpointError, ConfigError
from genlab.metrics.features import classifier_outputs, load_classifier
from genlab.models.capabilities import Classifies
from genlab.models.classifier import Classifier


def bar_images(n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    labels = np.arange(n) % 10
    images = torch.from_numpy(digit_like_images(labels, seed=seed)).float().div(255)
    return images.unsqueeze(1), torch.from_numpy(labels).long()


def test_shapes_of_logits_and_features() -> None:
    model = Classifier(feature_dim=32).eval()
    assert isinstance(model, Classifies)
    x = torch.rand(5, 1, 28, 28)
    assert model(x).shape == (5, 10)
    assert model.features(x).shape == (5, 32)
    features, classes = classifier_outputs(model, x, batch_size=2)
    torch.testing.assert_close(features, model.features(x))
    assert classes.tolist() == model(x).argmax(dim=1).tolist()


def test_rgb_and_other_sizes() -> None:
    model = Classifier(in_channels=3, image_size=32, channels=[8, 16, 32]).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_loss_falls() -> None:
    torch.manual_seed(0)
    x, y = bar_images(40)
    model = Classifier(channels=[8, 16], feature_dim=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # Dropout makes single steps noisy: compare the last few with the first.
    assert np.mean(losses[-3:]) < 0.6 * losses[0]


def test_trainer_logs_loss_and_accuracy() -> None:
    torch.manual_seed(0)
    x, y = bar_images(40)
    loader = DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True)
    model = Classifier(
        channels=[8, 16],
        feature_dim=32,
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
    )
    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    logged = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/acc"} <= set(logged)
    trainer.test(model, dataloaders=loader, verbose=False)
    assert 0 <= float(trainer.callback_metrics["test/acc"]) <= 1


def test_config_composes_for_every_dataset(tmp_path: Path) -> None:
    for data in ("mnist", "cifar10"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    "model=classifier",
                    f"data={data}",
                    f"data.root={tmp_path}",
                    f"paths.root_dir={tmp_path}",
                    f"paths.output_dir={tmp_path}/out",
                ],
            )
        model = instantiate(cfg.model)
        assert isinstance(model, Classifier)
        if data == "mnist":
            # The architecture of genlab 0.1.
            assert sum(p.numel() for p in model.trainable_parameters()) == 421_866
        size = cfg.data.image_size
        x = torch.rand(2, cfg.data.channels, size, size)
        assert model.eval()(x).shape == (2, 10)
        assert isinstance(model.configure_optimizers(), torch.optim.Adam)


def test_registered_and_reloaded(tmp_path: Path) -> None:
    model = Classifier(feature_dim=16).eval()
    path = tmp_path / "classifier.ckpt"
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    loaded = load_classifier(path)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded.features(x), model.features(x))


def test_loading_another_model_as_a_classifier_is_refused(tmp_path: Path) -> None:
    from genlab.models.autoencoders import Autoencoder
    from genlab.nn.mlp import MLPDecoder, MLPEncoder

    model = Autoencoder(
        encoder=MLPEncoder(in_channels=1, image_size=28, latent_dim=8),
        decoder=MLPDecoder(out_channels=1, image_size=28, latent_dim=8),
        in_channels=1,
        image_size=28,
        latent_dim=8,
    )
    path = tmp_path / "ae.ckpt"
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    with pytest.raises(CheckpointError, match="holds an Autoencoder, not a classifier"):
        load_classifier(path)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_classes": 1}, "num_classes must be at least 2"),
        ({"channels": []}, "positive widths"),
        ({"channels": [8, 8, 8, 8, 8, 8]}, "allow at most 4"),
        ({"dropout": 1.0}, "dropout is a probability"),
        ({"feature_dim": 0}, "feature_dim must be at least 1"),
    ],
)
def test_bad_options_get_clear_errors(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Classifier(**options)


def test_too_few_classes_for_the_dataset_is_an_error() -> None:
    class Data(pl.LightningDataModule):
        class_names = [str(i) for i in range(10)]

        def train_dataloader(self) -> DataLoader:
            x, y = bar_images(8)
            return DataLoader(TensorDataset(x, y), batch_size=4)

    model = Classifier(num_classes=5, optimizer=lambda params: torch.optim.Adam(params))
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match="set model.num_classes=10"):
        trainer.fit(model, datamodule=Data())
