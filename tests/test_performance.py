"""The speed settings (genlab.performance): how `auto` resolves, data kept on the training
device, channels-last batches, and torch.compile through checkpoints and resume. The CUDA
side cannot run here; what it relies on is checked on the CPU."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import genlab
from genlab.callbacks.device_data import DeviceData, fits_on_device
from genlab.commands.train import train
from genlab.data.datamodule import ImageDataModule
from genlab.data.tensors import TensorImageDataset
from genlab.data.translation import TranslationDataset
from genlab.errors import ConfigError
from genlab.performance import check_compile, resolve
from tests.conftest import FAST, make_idx_dataset, run_in_process


def config(accelerator: str, **performance: object) -> object:
    return OmegaConf.create({"trainer": {"accelerator": accelerator}, "performance": performance})


def test_auto_turns_on_for_cuda_only() -> None:
    gpu = resolve(config("gpu", data_on_device="auto", matmul_precision="auto"))
    assert (gpu.data_on_device, gpu.matmul_precision, gpu.channels_last) == ("auto", "high", True)
    cpu = resolve(config("cpu"))
    assert (cpu.matmul_precision, cpu.channels_last) == (None, False)
    # Explicit values win over the device; a run without the node is all auto.
    forced = resolve(config("cpu", matmul_precision="medium", channels_last=True))
    assert (forced.matmul_precision, forced.channels_last) == ("medium", True)
    gpu_off = resolve(config("gpu", data_on_device=False, channels_last=False))
    assert (gpu_off.data_on_device, gpu_off.channels_last) == (False, False)
    assert resolve(OmegaConf.create({"trainer": {"accelerator": "cpu"}})).data_on_device == "auto"


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("matmul_precision", "fast", "performance.matmul_precision"),
        ("channels_last", "yes", "performance.channels_last"),
        ("data_on_device", 1.5, "performance.data_on_device"),
    ],
)
def test_bad_values_are_named(key: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        resolve(config("cpu", **{key: value}))


def test_compile_switch() -> None:
    assert check_compile(False) is None and check_compile(None) is None
    assert check_compile(True) == "inductor"
    assert check_compile("eager") == "eager"
    with pytest.raises(ConfigError, match="performance.compile"):
        check_compile(3)
    assert resolve(config("cpu", compile="eager")).compile == "eager"
    assert resolve(config("cpu")).compile is None


def test_bad_option_answers_before_training(tmp_path: Path) -> None:
    _, result = run_in_process(tmp_path, "train", "performance.matmul_precision=fast", *FAST)
    assert result.returncode != 0
    assert "performance.matmul_precision must be auto, highest, high, medium" in result.stderr
    _, result = run_in_process(tmp_path, "train", "performance.compile=3", *FAST)
    assert result.returncode != 0 and "performance.compile must be" in result.stderr


def test_the_data_share_rule() -> None:
    assert fits_on_device(10, 40) and not fits_on_device(11, 40)


def test_datasets_move_whole_and_batch_the_same() -> None:
    images = torch.randint(0, 256, (10, 1, 6, 6), dtype=torch.uint8)
    labels = torch.arange(10)
    data = TensorImageDataset(images, labels)
    moved = data.to(torch.device("cpu"))
    index = torch.tensor([3, 1, 7])
    assert all(torch.equal(a, b) for a, b in zip(data[index], moved[index], strict=True))
    assert data.nbytes() == images.nbytes + labels.nbytes
    pairs = TranslationDataset(images, 255 - images, paired=True, image_size=4, augment=True)
    same = pairs.to(torch.device("cpu"))
    key = (index, index, 1234)  # a sampler's (indices A, indices B, seed): crops and flips
    assert all(torch.equal(a, b) for a, b in zip(pairs[key], same[key], strict=True))


def test_keep_on_turns_workers_off(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path / "mnist")
    data = ImageDataModule(dataset="mnist", root=str(tmp_path / "mnist"), num_workers=2)
    data.setup("fit")
    before = data.resident_bytes()
    assert before == sum(s.images.nbytes + s.labels.nbytes for s in data.splits.values())
    data.keep_on(torch.device("cpu"))
    assert (data.num_workers, data.pin_memory, data.resident_bytes()) == (0, False, before)


def test_device_data_leaves_cpu_runs_alone(tmp_path: Path) -> None:
    """On the CPU nothing moves, whatever the policy (the move itself needs CUDA)."""
    callback = DeviceData(True)
    run = tmp_path / "run"
    make_idx_dataset(tmp_path / "mnist")
    cfg = genlab.compose(
        "train",
        [
            "data=mnist",
            f"data.root={tmp_path / 'mnist'}",
            *FAST,
            "test=false",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "performance.data_on_device=true",
            "logger=csv",
        ],
        output_dir=run,
    )
    with contextlib.chdir(tmp_path):
        _, objects = train(cfg)
    callback = next(c for c in objects["trainer"].callbacks if isinstance(c, DeviceData))
    assert callback.placed_on is None


def fit(tmp_path: Path, name: str, *overrides: str) -> dict:
    make_idx_dataset(tmp_path / "mnist")
    cfg = genlab.compose(
        "train",
        [
            "model=conv_ae",
            "data=mnist",
            f"data.root={tmp_path / 'mnist'}",
            *FAST,
            "test=false",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1",
            *overrides,
        ],
        output_dir=tmp_path / name,
    )
    with contextlib.chdir(tmp_path):
        return train(cfg)[1]


def test_channels_last_on_cpu_trains_as_nchw_does(tmp_path: Path) -> None:
    plain = fit(tmp_path, "nchw")["model"]
    nhwc = fit(tmp_path, "nhwc", "performance.channels_last=true")["model"]
    assert nhwc.channels_last and not plain.channels_last
    conv = next(m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # An NCHW batch: the first convolution's output is NHWC already.
    h = conv(torch.rand(4, conv.in_channels, 28, 28))
    assert h.is_contiguous(memory_format=torch.channels_last)
    # The same weights give the same loss in either layout, up to float32 rounding (the
    # runs' weights differ: Adam's first steps amplify rounding-level gradient differences).
    import copy

    nhwc_copy = copy.deepcopy(plain)
    nhwc_copy.use_channels_last()
    x = torch.rand(8, 1, 28, 28)
    expected = plain.loss_terms(x)["loss"]
    got = nhwc_copy.loss_terms(x)["loss"]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(torch.tensor(nhwc.trainer.callback_metrics["val/loss"]))


def test_compile_keeps_checkpoints_and_resume(tmp_path: Path) -> None:
    objects = fit(tmp_path, "compiled", "performance.compile=eager")
    model = objects["model"]
    for name, network in model.networks().items():
        assert network._compiled_call_impl is not None, name
    checkpoint = tmp_path / "compiled" / "checkpoints" / "last.ckpt"
    plain = fit(tmp_path, "plain")["model"]
    # Parameter names are the uncompiled model's: checkpoints interchange.
    assert list(model.state_dict()) == list(plain.state_dict())
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert list(saved["state_dict"]) == list(plain.state_dict())
    assert saved["genlab_config"]["performance"]["compile"] == "eager"
    # Resumed, the run compiles again from its stored config and goes on.
    resumed = genlab.compose(
        "train",
        [f"resume={tmp_path / 'compiled'}", "trainer.max_epochs=2"],
        output_dir=tmp_path / "compiled",
    )
    with contextlib.chdir(tmp_path):
        _, again = train(resumed)
    assert again["trainer"].current_epoch == 2
    assert all(n._compiled_call_impl is not None for n in again["model"].networks().values())
    # The checkpoint commands build it uncompiled.
    _, result = run_in_process(tmp_path, "sample", f"ckpt={checkpoint}", "n=4")
    assert result.returncode == 0, result.stderr[-2000:]


def test_batches_already_on_the_device_are_passed_on_as_they_are(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path / "mnist")
    data = ImageDataModule(dataset="mnist", root=str(tmp_path / "mnist"))
    batch = (torch.rand(4, 1, 28, 28), torch.arange(4))
    assert data.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    # Anything else goes through Lightning's transfer (a dict, here), which copies.
    mapping = {"x": batch[0]}
    moved = data.transfer_batch_to_device(mapping, torch.device("cpu"), 0)
    assert moved is not mapping and torch.equal(moved["x"], batch[0])
