"""Training that survives faults: last.ckpt always the latest state and never torn, kills
and signals mid-epoch, exact resume from the checkpoint alone, unique run directories."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST, make_idx_dataset

import genlab
from genlab.callbacks.checkpoints import AtomicCheckpointIO, LastCheckpoint
from genlab.errors import CheckpointError, ConfigError, OutputError

TESTS = Path(__file__).resolve().parent
GENLAB = Path(sys.executable).with_name("genlab")
# A VAE draws noise every step, so an exact resume needs the random state as well as the
# weights, the optimizer and the data order. 86 training images in batches of 16: five
# steps an epoch.
RUN = [
    "model=vae",
    "model.encoder.hidden_dims=[32]",
    "model.latent_dim=4",
    "data=mnist",
    "data.batch_size=16",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test=false",
    "logger=csv",
    "checkpoint.every_n_steps=1",
    # Faults land at given batches and a checkpoint follows every step: one step an
    # iteration (fused chunks resume exactly too: tests/test_fusion.py).
    "performance.steps_per_execution=1",
]


def start(workdir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [str(GENLAB), "train", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pause_at(workdir: Path, step: int) -> list[str]:
    return [
        "+callbacks.pause._target_=fault_helpers.PauseAt",
        f"+callbacks.pause.step={step}",
        f"+callbacks.pause.marker={workdir / 'paused'}",
        f"+callbacks.pause.release={workdir / 'release'}",
    ]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1][-3000:])
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def only_run(workdir: Path) -> Path:
    (run,) = (workdir / "outputs" / "train").glob("*/*")
    return run


def last_state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    make_idx_dataset(tmp_path / "mnist")
    return tmp_path


def data_root(workdir: Path) -> str:
    return f"data.root={workdir / 'mnist'}"


def test_killed_mid_epoch_resumes_to_the_weights_of_an_unbroken_run(workdir: Path) -> None:
    straight = workdir / "straight"
    straight.mkdir()
    code, _, err = finish(start(straight, *RUN, data_root(workdir)))
    assert code == 0, err[-3000:]
    expected = last_state(only_run(straight))
    assert expected["global_step"] == 15

    broken = workdir / "broken"
    broken.mkdir()
    process = start(broken, *RUN, data_root(workdir), *pause_at(broken, 7))
    wait_for(broken / "paused", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = only_run(broken)
    saved = last_state(run)
    # SIGKILL loses nothing but the steps since the last periodic save (every step here).
    assert (saved["epoch"], saved["global_step"]) == (1, 7)

    code, _, err = finish(start(broken, f"resume={run}"))
    assert code == 0, err[-3000:]
    resumed = last_state(run)
    assert resumed["global_step"] == 15
    for name, tensor in expected["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], tensor, rtol=0, atol=1e-6)
    # The resumed run continued in the same directory and appended to its log.
    assert "resume=" in (run / ".hydra" / "overrides.yaml").read_text()
    assert (run / "train.log").read_text().count("genlab train: outputs in") == 2


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_the_current_step_and_exits_with_its_code(
    workdir: Path, signum: int, code: int
) -> None:
    process = start(workdir, *RUN, data_root(workdir), *pause_at(workdir, 7))
    wait_for(workdir / "paused", process)
    process.send_signal(signum)
    (workdir / "release").touch()
    returncode, _, err = finish(process)
    assert returncode == code, err[-3000:]
    run = only_run(workdir)
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert f"resume={run}" in err
    assert "Traceback" not in err
    # Saved at the end of the step under way when the signal came.
    assert last_state(run)["global_step"] == 8


def test_resume_from_the_checkpoint_alone_and_a_conflicting_model(workdir: Path) -> None:
    first = genlab.compose(
        "train",
        [*RUN, data_root(workdir), "trainer.max_epochs=1"],
        output_dir=workdir / "first",
    )
    genlab.train(first)
    ckpt = workdir / "first" / "checkpoints" / "last.ckpt"
    # No override repeated: the model, data and optimizer come from the checkpoint.
    code, out, err = finish(
        start(workdir, f"ckpt_path={ckpt}", "trainer.max_epochs=2", "test=false")
    )
    assert code == 0, err[-3000:]
    config = (only_run(workdir) / "config.yaml").read_text()
    assert "genlab.models.VariationalAutoencoder" in config and "max_epochs: 2" in config
    assert last_state(only_run(workdir))["epoch"] == 1
    # Another model than the checkpoint's is refused, clearly.
    code, _, err = finish(start(workdir, "model=conv_ae", f"ckpt_path={ckpt}"))
    assert code == 1
    assert "holds a genlab.models.VariationalAutoencoder checkpoint" in err
    assert "Traceback" not in err


def test_last_checkpoint_is_the_last_epoch_even_when_the_loss_stalls(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    cfg = genlab.compose(
        "train",
        [
            "model=ae",
            "optimizer.lr=0",
            "data=mnist",
            data_root(workdir),
            *FAST,
            "trainer.max_epochs=3",
            "++trainer.limit_train_batches=3",
            "++trainer.limit_val_batches=1",
            "test=false",
            "logger=csv",
        ],
    )
    genlab.train(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 2
    # The best by val/loss is kept apart: with lr=0 it stays at the first epoch.
    (best,) = checkpoints.glob("epoch*")
    assert best.name.startswith("epoch000")


def test_periodic_saves_follow_the_steps_and_the_clock() -> None:
    saved: list[int] = []
    trainer = SimpleNamespace(
        global_step=0,
        save_checkpoint=lambda path, **options: saved.append(trainer.global_step),
        strategy=SimpleNamespace(reduce_boolean_decision=lambda flag, all: flag),
        should_stop=False,
    )
    every_three = LastCheckpoint(dirpath="unused", every_n_steps=3, every_minutes=None)
    # A GAN advances global_step by one or two a batch: a save when a multiple is crossed.
    for step in (1, 2, 4, 5, 6, 8, 9, 11, 12):
        trainer.global_step = step
        every_three.on_train_batch_end(trainer)
    assert saved == [4, 6, 9, 12]
    saved.clear()
    clock = LastCheckpoint(dirpath="unused", every_n_steps=None, every_minutes=1)
    clock._saved_at = time.monotonic() - 61
    clock.on_train_batch_end(trainer)
    clock.on_train_batch_end(trainer)
    assert saved == [12]
    with pytest.raises(ConfigError, match="checkpoint.every_n_steps"):
        LastCheckpoint(dirpath="unused", every_n_steps=0)


def test_a_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 0}, path)

    real_write = Path.write_bytes

    def fill_the_disk(self: Path, data: bytes) -> int:
        real_write(self, bytes(data)[:100])  # part of the bytes reach the disk, then no room
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", fill_the_disk)
    with pytest.raises(OutputError, match=f"disk full while writing {path}"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(10_000)}, "epoch": 1}, path)
    monkeypatch.undo()
    kept = torch.load(path, weights_only=True)
    assert kept["epoch"] == 0 and torch.equal(kept["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_a_real_full_filesystem_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        io = AtomicCheckpointIO()
        path = small / "last.ckpt"
        io.save_checkpoint({"w": torch.ones(1000)}, path)
        with pytest.raises(OutputError, match="disk full"):
            io.save_checkpoint({"w": torch.ones(200_000)}, path)
        assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(1000))
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_runs_started_together_get_their_own_directories(workdir: Path) -> None:
    args = ["model=ae", "data=mnist", data_root(workdir), *FAST, "test=false", "logger=csv"]
    processes = [start(workdir, *args) for _ in range(2)]
    results = [finish(p) for p in processes]
    assert all(code == 0 for code, _, _ in results), [err[-2000:] for _, _, err in results]
    runs = list((workdir / "outputs" / "train").glob("*/*"))
    assert len(runs) == 2
    for run in runs:
        assert [p.name for p in (run / "checkpoints").glob("last*.ckpt")] == ["last.ckpt"]


def test_a_drawn_seed_is_recorded(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    cfg = genlab.compose(
        "train",
        ["model=ae", "data=mnist", data_root(workdir), *FAST, "test=false", "seed=null"],
        output_dir=workdir / "run",
    )
    genlab.train(cfg)
    from omegaconf import OmegaConf

    recorded = OmegaConf.load(workdir / "run" / "config.yaml")
    assert isinstance(recorded.seed, int) and recorded.data.seed == recorded.seed


def test_resume_of_a_directory_without_checkpoint_is_a_clear_error(workdir: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoints/last.ckpt does not exist"):
        genlab.compose("train", [f"resume={workdir}"])


def test_a_text_file_as_ckpt_path_is_a_clear_error(workdir: Path) -> None:
    text = workdir / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError) as err:
        genlab.compose("train", [f"ckpt_path={text}"], output_dir=workdir / "r")
    assert "notes.ckpt" in str(err.value) and "weights_only=False" not in str(err.value)


def test_a_gan_takes_lightnings_clipping_accumulation_and_ddp(workdir: Path) -> None:
    """Two CPU processes, no strategy override; the trainer's clipping and accumulation
    reach the GAN's own loop."""
    code, out, err = finish(
        start(
            workdir,
            "model=gan",
            "model.generator.hidden_dims=[32]",
            "model.discriminator.hidden_dims=[32]",
            "data=mnist",
            data_root(workdir),
            *FAST,
            "trainer=ddp_cpu",
            "trainer.gradient_clip_val=1.0",
            "trainer.accumulate_grad_batches=2",
            "test=false",
            "logger=csv",
        )
    )
    assert code == 0, err[-3000:]
    saved = last_state(only_run(workdir))
    hparams = saved["hyper_parameters"]
    assert (hparams["grad_clip_norm"], hparams["accumulate_grad_batches"]) == (1.0, 2)
    assert saved["genlab_config"]["trainer"]["strategy"] == "ddp_find_unused_parameters_true"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=dcgan", "optimizer=sgd"], "model.optimizer_g and model.optimizer_d"),
        (["model=gan", "optimizer.lr=0.1"], "model.optimizer_g and model.optimizer_d"),
        (["trainer=gpu"], "needs a CUDA GPU"),
        (["trainer=ddp"], "needs a CUDA GPU"),
    ],
)
def test_trainer_choices_that_cannot_work_are_clear_errors(
    workdir: Path, overrides: list[str], message: str
) -> None:
    from genlab.commands.train import train

    if "CUDA" in message and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = genlab.compose("train", [*overrides, *FAST], output_dir=workdir / "run")
    with pytest.raises(ConfigError, match=message):
        train(cfg, [*overrides, *FAST])  # as the CLI calls it, with its overrides


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs must be an integer (got 'abc')"),
        ("optimizer.lr=-1", "optimizer.lr must not be negative (got -1)"),
        ("optimizer.lr=abc", "optimizer.lr must be a number (got 'abc')"),
        ("seed=abc", "seed, the random seed, must be an integer"),
        ("data.batch_size=abc", "data.batch_size must be an integer (got 'abc')"),
    ],
)
def test_bad_training_values_name_their_key(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, override: str, message: str
) -> None:
    monkeypatch.chdir(workdir)
    cfg = genlab.compose("train", [override], output_dir=workdir / "run")
    with pytest.raises(ConfigError) as err:
        genlab.train(cfg)
    assert message in str(err.value)


def test_a_checkpoint_whose_data_config_has_an_unknown_key(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import run_in_process, train_checkpoint

    ckpt = train_checkpoint(workdir, "model=ae")
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["genlab_config"]["data"]["colour_space"] = "lab"
    odd = workdir / "odd.ckpt"
    torch.save(checkpoint, odd)
    _, result = run_in_process(workdir, "anomaly", f"ckpt={odd}")
    assert result.returncode == 1
    assert "cannot build the data module genlab.data.ImageDataModule" in result.stderr
    assert "colour_space" in result.stderr
