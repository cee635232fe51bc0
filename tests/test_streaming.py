"""Data beyond memory: `genlab prepare-data` writes WebDataset shards and `data=streaming`
trains from them, each DDP rank reading its own samples."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import FAST, new_run, run_in_process
from PIL import Image

pytest.importorskip("webdataset")

CLASSES = ("cat", "dog")


def write_folder(root: Path, *, n_train: int = 30, n_test: int = 8, size: int = 12) -> Path:
    """train/ and test/ with one sub-folder per class of random RGB PNGs (each different,
    so an image identifies its sample)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n // len(CLASSES)):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                pixels[0, 0] = 60 * c  # a class mark
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def prepare(workdir: Path, *args: str) -> SimpleNamespace:
    """`genlab prepare-data ARGS` in this process (its module name differs from the
    command's, so conftest's run_in_process does not apply)."""
    import genlab
    from genlab.commands.common import run_command
    from genlab.commands.prepare_data import prepare_data

    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    with (
        contextlib.chdir(workdir),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            cfg = genlab.compose("prepare-data", list(args), output_dir=workdir / "outputs" / "p")
            run_command(prepare_data, cfg)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    folder = write_folder(tmp_path / "images")
    result = prepare(
        tmp_path,
        f"data.root={folder}",
        f"out={tmp_path / 'shards'}",
        "data.image_size=8",
        "data.channels=3",
        "shard_size=4",
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "shards"


def test_prepare_data_writes_the_splits_of_a_folder(shards: Path, tmp_path: Path) -> None:
    from genlab.data import ImageDataModule

    index = json.loads((shards / "index.json").read_text())
    assert index["class_names"] == list(CLASSES)
    assert (index["image_size"], index["channels"]) == (8, 3)
    counts = {split: entry["count"] for split, entry in index["splits"].items()}
    assert counts == {"train": 27, "val": 3, "test": 8}
    assert len(index["splits"]["train"]["shards"]) == 7  # 27 images, 4 per shard
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers

    # The val split holds the images data=folder takes with the same seed, pixel for pixel.
    from genlab.data.streaming import StreamingDataModule

    folder = ImageDataModule(
        dataset="folder", root=str(tmp_path / "images"), image_size=8, channels=3
    )
    folder.setup()
    stream = StreamingDataModule(root=str(shards), image_size=8, channels=3, batch_size=64)
    streamed, labels = next(iter(stream.stream("val", train=False)))
    assert torch.equal(streamed, folder.splits["val"].images)
    assert torch.equal(labels, folder.splits["val"].labels)


def test_trains_from_shards_and_draws_image_grids(shards: Path, tmp_path: Path) -> None:
    run, _ = new_run(
        tmp_path,
        "train",
        "model=ae",
        "data=streaming",
        f"data.root={shards}",
        "data.image_size=8",
        "data.channels=3",
        *FAST,
        "data.batch_size=4",
        "data.num_workers=0",
        "trainer.max_epochs=2",
    )
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "images").glob("val_reconstructions_epoch*.png"))) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test/loss" in json.dumps(metrics)

    # The checkpoint commands read whole splits: they ask for the folder instead.
    _, result = run_in_process(tmp_path, "evaluate", f"ckpt={run / 'checkpoints' / 'last.ckpt'}")
    assert result.returncode == 1
    assert "data=folder data.root=IMAGES data.image_size=8 data.channels=3" in result.stderr


def _samples(stream) -> list[bytes]:
    return [image.numpy().tobytes() for images, _ in stream for image in images]


@pytest.mark.parametrize("workers", [0, 2])
def test_two_ddp_ranks_see_disjoint_samples(shards: Path, workers: int) -> None:
    from torch.utils.data import DataLoader

    from genlab.data.streaming import StreamingDataModule

    dm = StreamingDataModule(root=str(shards), batch_size=3, num_workers=workers, seed=5)
    seen = []
    for rank in (0, 1):
        stream = dm.stream("train", train=True, rank=rank, world_size=2)
        batches = list(DataLoader(stream, batch_size=None, num_workers=workers))
        assert len(batches) == len(stream) > 0  # every rank steps the same number of times
        assert all(images.shape == (3, 3, 8, 8) for images, _ in batches)
        seen.append(_samples(batches))
    first, second = (set(s) for s in seen)
    assert len(first) == len(seen[0]) and len(second) == len(seen[1])  # none twice in a rank
    assert not first & second  # and none on both ranks

    # Evaluation splits by sample: every val/test image once, across both ranks.
    test = [_samples(dm.stream("test", train=False, rank=r, world_size=2)) for r in (0, 1)]
    assert len(test[0]) == len(test[1]) == 4
    assert not set(test[0]) & set(test[1])


def test_each_epoch_has_its_own_seeded_order(shards: Path) -> None:
    from genlab.data.streaming import StreamingDataModule

    def order(seed: int, epoch: int) -> list[bytes]:
        dm = StreamingDataModule(root=str(shards), batch_size=3, num_workers=0, seed=seed)
        stream = dm.stream("train", train=True)
        stream.epoch = epoch
        return _samples(stream)

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert len(order(0, 0)) == 27 // 3 * 3


def test_streaming_checks_its_shards(shards: Path, tmp_path: Path) -> None:
    from genlab.data.streaming import StreamingDataModule
    from genlab.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="data.image_size=8"):
        StreamingDataModule(root=str(shards), image_size=28)
    with pytest.raises(DataError, match="genlab prepare-data"):
        StreamingDataModule(root=str(tmp_path / "images"))
    dm = StreamingDataModule(root=str(shards), classes=["dog"], batch_size=50)
    _, labels = next(iter(dm.stream("test", train=False)))
    assert labels.tolist() == [1, 1, 1, 1]


def test_prepare_data_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "images")
    (folder / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "shards"
    result = prepare(tmp_path, f"data.root={folder}", f"out={out}", "shard_size=4")
    assert result.returncode == 1
    assert "broken.png" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "outputs") == ["images"]

    out.mkdir()
    result = prepare(tmp_path, f"data.root={folder}", f"out={out}")
    assert result.returncode == 1 and "overwrite=true" in result.stderr
    result = prepare(tmp_path, "data=mnist", f"out={out}")
    assert result.returncode == 1 and "data=folder" in result.stderr


def test_without_the_extra_both_ask_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from genlab.cli import missing_plugin
    from genlab.data.shards import require_webdataset
    from genlab.errors import ConfigError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "webdataset" else find_spec(name, *a),
    )
    assert "pip install 'genlab[streaming]'" in missing_plugin(["model=ae", "data=streaming"])
    with pytest.raises(ConfigError, match=r"pip install 'genlab\[streaming\]'"):
        require_webdataset("genlab prepare-data")
