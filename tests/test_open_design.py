"""The open model design: a user's own model and data outside the package train and work
with every checkpoint command, checkpoints name only trusted classes, the Python API, the
top-level configs shipped in the wheel."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from conftest import FAST, make_idx_dataset, run_genlab

import genlab
from genlab import trust
from genlab.commands.common import CONFIG_DIR
from genlab.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parent.parent

# A user's model package: a tiny autoencoder on genlab's base, its networks, and a data
# module of their own, none of it inside genlab.
USER_MODELS = {
    "mymodels/__init__.py": "",
    "mymodels/nets.py": """
        from torch import nn

        from genlab.nn.network import Network


        class FlatEncoder(Network):
            def __init__(self, *, features: int, latent_dim: int) -> None:
                super().__init__()
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, latent_dim))

            def forward(self, x):
                return self.net(x)


        class FlatDecoder(Network):
            def __init__(self, *, latent_dim: int, channels: int, image_size: int) -> None:
                super().__init__()
                self.shape = (channels, image_size, image_size)
                self.net = nn.Linear(latent_dim, channels * image_size * image_size)

            def forward(self, z):
                return self.net(z).view(-1, *self.shape).sigmoid()
    """,
    "mymodels/tiny.py": """
        import torch

        from genlab.models.base import GenlabModule
        from genlab.models.capabilities import Decodes, Encodes, Reconstructs, ScoresAnomalies


        class TinyAE(GenlabModule, Encodes, Decodes, Reconstructs, ScoresAnomalies):
            def __init__(self, *, encoder, decoder, latent_dim: int, optimizer=None) -> None:
                super().__init__()
                self.encoder, self.decoder = encoder, decoder
                self.latent_dim = latent_dim
                self.optimizer_factory = optimizer

            def encode(self, x):
                return self.encoder(x)

            def decode(self, z):
                return self.decoder(z)

            def reconstruct(self, x):
                return self.decode(self.encode(x))

            def score(self, x):
                return (self.reconstruct(x) - x).square().flatten(1).sum(1)

            def training_step(self, batch, batch_idx):
                loss = self.score(batch[0]).mean()
                self.log_terms({"loss": loss}, "train", batch_size=len(batch[0]))
                return loss

            def validation_step(self, batch, batch_idx):
                loss = self.score(batch[0]).mean()
                self.log_terms({"loss": loss}, "val", batch_size=len(batch[0]))

            def test_step(self, batch, batch_idx):
                loss = self.score(batch[0]).mean()
                self.log_terms({"loss": loss}, "test", batch_size=len(batch[0]))
    """,
    "mymodels/data.py": """
        from genlab.data import ImageDataModule


        class ShuffledMNIST(ImageDataModule):
            def __init__(self, *, root: str, batch_size: int = 32, seed: int = 0) -> None:
                super().__init__(dataset="mnist", root=root, batch_size=batch_size, seed=seed)
    """,
    "conf/model/tiny.yaml": """
        _target_: mymodels.tiny.TinyAE
        latent_dim: 4
        encoder:
          _target_: mymodels.nets.FlatEncoder
          features: 784
          latent_dim: ${..latent_dim}
        decoder:
          _target_: mymodels.nets.FlatDecoder
          latent_dim: ${..latent_dim}
          channels: 1
          image_size: 28
        optimizer: ${optimizer}
    """,
    "conf/data/shuffled.yaml": """
        _target_: mymodels.data.ShuffledMNIST
        root: ???
        batch_size: 32
        seed: ${seed}
    """,
}


def write_user_package(root: Path) -> Path:
    for name, text in USER_MODELS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    make_idx_dataset(root / "mnist")
    return root


def in_process(command: str, *overrides: str, out: Path) -> object:
    """Run a checkpoint command in this process, as the CLI would with these overrides."""
    import importlib

    cfg = genlab.compose(command, list(overrides), output_dir=out)
    return getattr(importlib.import_module(f"genlab.commands.{command}"), command)(cfg)


def train_user_model(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`genlab train` of the user's model from its own config folder, in ``root``."""
    return run_genlab(
        "train",
        "--config-dir",
        "conf",
        "model=tiny",
        "data=shuffled",
        f"data.root={root / 'mnist'}",
        *[o for o in FAST if not o.startswith("data.batch_size")],
        "test=false",
        *overrides,
        cwd=root,
    )


@pytest.fixture
def user_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's model trained by the real CLI from its own config folder; its last.ckpt."""
    write_user_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = train_user_model(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Training says up front what the checkpoint commands will need.
    assert "trusted_modules=[mymodels]" in result.stdout
    (ckpt,) = (tmp_path / "outputs" / "train").glob("*/*/checkpoints/last.ckpt")
    return ckpt


def test_user_model_works_with_every_checkpoint_command(user_run: Path, tmp_path: Path) -> None:
    trusted = "trusted_modules=[mymodels]"
    out = tmp_path / "runs"
    sampled = in_process("sample", f"ckpt={user_run}", trusted, "n=4", out=out / "s")
    assert sampled["prior"] == "gaussian fitted to training codes"
    interpolated = in_process(
        "interpolate", f"ckpt={user_run}", trusted, "num_pairs=1", out=out / "i"
    )
    assert len(interpolated["pairs"]) == 1
    metrics = in_process("evaluate", f"ckpt={user_run}", trusted, out=out / "e")
    assert metrics["test/recon_error"] > 0 and "test/mse_per_pixel" in metrics
    scored = in_process("anomaly", f"ckpt={user_run}", trusted, out=out / "a")
    assert scored["images"] == 40
    # The user's data module was rebuilt from the checkpoint's config.
    model = genlab.load(user_run, trusted_modules=["mymodels"])
    assert type(model).__module__ == "mymodels.tiny"
    assert model.capabilities == ["Encodes", "Decodes", "ScoresAnomalies", "Reconstructs"]
    assert not model.training
    # Resuming from the checkpoint trains on through the CLI.
    resumed = train_user_model(tmp_path, f"ckpt_path={user_run}", "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_user_checkpoint_is_refused_until_trusted(user_run: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"trusted_modules=\[mymodels\]"):
        genlab.load(user_run)
    with pytest.raises(CheckpointError, match="GENLAB_TRUSTED_MODULES=mymodels"):
        in_process("sample", f"ckpt={user_run}", out=tmp_path / "s")


def test_a_planted_checkpoint_never_imports_its_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nclass Evil:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    planted = tmp_path / "planted.ckpt"
    torch.save(
        {
            "state_dict": {},
            "genlab_version": genlab.__version__,
            "genlab_config": {"model": {"_target_": "evilmod.Evil"}},
        },
        planted,
    )
    with pytest.raises(CheckpointError, match="evilmod.Evil"):
        genlab.load(planted)
    with pytest.raises(CheckpointError, match="refused to load"):
        in_process("evaluate", f"ckpt={planted}", out=tmp_path / "e")
    assert not marker.exists()
    assert "evilmod" not in sys.modules


def test_trust_comes_from_the_key_the_environment_and_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(trust.ENV_VAR, "envmods, other")
    fake = [EntryPoint(name="lsgan", value="pkgmods.lsgan:LSGAN", group=trust.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(trust, "entry_points", lambda group: fake)
    trusted = trust.trusted_modules(["keymods"])
    assert trust.is_trusted("genlab.models.GAN", trusted)
    assert trust.is_trusted("keymods.a.B", trusted)
    assert trust.is_trusted("envmods.B", trusted) and trust.is_trusted("other.C", trusted)
    assert trust.is_trusted("pkgmods.lsgan.LSGAN", trusted)
    assert not trust.is_trusted("pkgmods.other.X", trusted)
    assert not trust.is_trusted("genlabx.Evil", trusted)
    assert not trust.is_trusted("keymodsevil.X", trusted)


def test_checkpoint_of_the_previous_layout_is_refused_by_version(tmp_path: Path) -> None:
    old = tmp_path / "old.ckpt"
    torch.save(
        {
            "state_dict": {},
            "genlab_config": {"model": {"_target_": "genlab.models.Autoencoder"}},
        },
        old,
    )
    with pytest.raises(CheckpointError, match="genlab 0.1.0"):
        genlab.load(old)


def test_unimportable_target_fails_before_training(tmp_path: Path) -> None:
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "typo.yaml").write_text("_target_: nosuchpkg.models.Thing\n")
    cfg = genlab.compose("train", ["model=typo", *FAST], config_dir=tmp_path / "conf")
    with pytest.raises(ConfigError) as err:
        genlab.train(cfg)
    assert "model._target_=nosuchpkg.models.Thing cannot be imported" in str(err.value)
    assert "PYTHONPATH" in str(err.value)


def test_python_api_trains_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = make_idx_dataset(tmp_path / "mnist")
    cfg = genlab.compose(
        "train",
        ["model=ae", "data=mnist", f"data.root={root}", *FAST, "test=false", "logger=csv"],
    )
    metrics = genlab.train(cfg)
    assert metrics["val/loss"] > 0
    (ckpt,) = Path(cfg.paths.output_dir).glob("checkpoints/last.ckpt")
    model = genlab.load(ckpt)
    assert "Encodes" in model.capabilities and not model.training
    assert model.encode(torch.rand(2, 1, 28, 28)).shape == (2, model.latent_dim)


def test_model_trained_from_python_writes_a_checkpoint_genlab_reads(tmp_path: Path) -> None:
    """No genlab train: a plain Lightning fit of a model built in Python."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from genlab.data import ImageDataModule

    root = make_idx_dataset(tmp_path / "mnist")
    cfg = genlab.compose("train", ["model=ae", "data=mnist"], output_dir=tmp_path)
    model = instantiate(cfg.model)
    data = ImageDataModule(dataset="mnist", root=str(root), batch_size=32)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    path = tmp_path / "python.ckpt"
    trainer.save_checkpoint(path)
    loaded = genlab.load(path)
    assert type(loaded) is type(model)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # The data module recorded itself, so a checkpoint command finds the data.
    scored = in_process("anomaly", f"ckpt={path}", out=tmp_path / "a")
    assert scored["images"] == 40


def test_evaluate_takes_a_data_group_and_a_swapped_dataset(tmp_path: Path) -> None:
    from conftest import train_checkpoint

    make_idx_dataset(tmp_path / "mnist")
    fashion = make_idx_dataset(tmp_path / "fashion", n_test=20)
    ckpt = train_checkpoint(tmp_path, "model=ae")
    out = tmp_path / "runs"
    same = in_process(
        "evaluate", f"ckpt={ckpt}", "data=mnist", f"data.root={tmp_path / 'mnist'}", out=out / "a"
    )
    assert "test/recon_error" in same
    swapped = in_process(
        "anomaly", f"ckpt={ckpt}", "data=fashion_mnist", f"data.root={fashion}", out=out / "b"
    )
    assert swapped["images"] == 20


def test_wheel_ships_every_config_and_runs_outside_the_repository(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation"]
        + ["-q", "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("genlab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n.removeprefix("genlab/configs/") for n in archive.namelist()}
        archive.extractall(tmp_path / "site")
    expected = {str(p.relative_to(CONFIG_DIR)) for p in Path(CONFIG_DIR).rglob("*.yaml")}
    assert expected and expected <= shipped
    # The unpacked wheel, imported from a folder outside the repository, finds its configs.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    code = "import sys, genlab.cli; sys.exit(genlab.cli.main(['train', '--cfg', 'job']))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=outside,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "genlab.models.ConvAutoencoder" in result.stdout
    find = "import genlab.commands.common as c; print(c.CONFIG_DIR)"
    where = subprocess.run(
        [sys.executable, "-c", find],
        cwd=outside,
        env={"PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip() == str(tmp_path / "site" / "genlab" / "configs")
