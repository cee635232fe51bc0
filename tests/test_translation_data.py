"""Translation data: the paired and unpaired folder readers, their errors, the batch
augmentation, the embedded MNIST tasks and the resumed order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from genlab.commands.common import CONFIG_DIR
from genlab.data import TranslationDataModule
from genlab.data.translation import (
    TranslationBatchSampler,
    crop_and_flip,
    default_load_size,
    edge_map,
)
from genlab.errors import ConfigError, DataError


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """Write uint8 [H, W] or [H, W, 3] pixels as a PNG (making its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def random_pixels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def side_by_side(root: Path, counts: dict[str, int], *, size: int = 10, seed: int = 0) -> Path:
    """Pix2Pix's layout: root/SPLIT/i.png holding A and B = 255 - A side by side."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for i in range(n):
            a = random_pixels(rng, size, size)
            write_png(root / split / f"{i:03d}.png", np.concatenate([a, 255 - a], axis=1))
    return root


def a_b_folders(root: Path, names: list[str], *, size: int = 10) -> Path:
    """root/A/NAME.png and root/B/NAME.png, B = 255 - A."""
    rng = np.random.default_rng(1)
    for name in names:
        a = random_pixels(rng, size, size)
        write_png(root / "A" / f"{name}.png", a)
        write_png(root / "B" / f"{name}.png", 255 - a)
    return root


def unpaired(root: Path, counts: dict[str, int], *, size: int = 10) -> Path:
    """CycleGAN's layout: root/trainA/..., each image filled with its own index in red."""
    for folder, n in counts.items():
        for i in range(n):
            pixels = np.zeros((size, size, 3), dtype=np.uint8)
            pixels[..., 0] = 10 * i
            write_png(root / folder / f"{i}.png", pixels)
    return root


def module(root: Path, dataset: str, **options: object) -> TranslationDataModule:
    settings = {"image_size": 8, "load_size": 10, "channels": 3, "batch_size": 2}
    dm = TranslationDataModule(dataset=dataset, root=str(root), **{**settings, **options})
    dm.setup()
    return dm


# ---------------------------------------------------------------------------------------------
# Readers


def test_side_by_side_folders_give_pairs_with_the_target_in_b(tmp_path: Path) -> None:
    dm = module(side_by_side(tmp_path, {"train": 6, "val": 3, "test": 4}), "paired_folder")
    assert {s: len(d) for s, d in dm.splits.items()} == {"train": 6, "val": 3, "test": 4}
    assert dm.shape == (3, 8, 8) and dm.paired and dm.direction == "AtoB"
    # Training images at load_size (the files' own size: no resampling), the others resized.
    assert dm.splits["train"].a.shape == (6, 3, 10, 10)
    assert dm.splits["val"].a.shape == (3, 3, 8, 8)
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == b.shape == (2, 3, 8, 8) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1 and a.max() > 0.9
    torch.testing.assert_close(b, 1 - a)
    a, b = dm.fixed_batch("val", 5)
    assert a.shape == (3, 3, 8, 8)  # only three val images
    # Resized to 8 pixels: B = 1 - A up to rounding.
    assert (b - (1 - a)).abs().max() <= 2 / 255
    assert dm.test_pairs() is dm.splits["test"] and dm.right_answer(a) is None


def test_direction_btoa_swaps_a_and_b(tmp_path: Path) -> None:
    root = side_by_side(tmp_path, {"train": 4, "val": 2})
    forward = module(root, "paired_folder", augment=False)
    backward = module(root, "paired_folder", augment=False, direction="BtoA")
    a, b = forward.fixed_batch("train", 4)
    a2, b2 = backward.fixed_batch("train", 4)
    torch.testing.assert_close(a2, b)
    torch.testing.assert_close(b2, a)
    # Without augmentation training images are held at image_size, not load_size.
    assert forward.splits["train"].a.shape[-1] == 8


def test_a_b_folders_match_by_name_and_split_off_val(tmp_path: Path) -> None:
    root = a_b_folders(tmp_path, [f"img{i}" for i in range(10)])
    dm = module(root, "paired_folder", val_fraction=0.2, image_size=10)
    assert len(dm.splits["train"]) == 8 and len(dm.splits["val"]) == 2
    assert dm.splits["test"] is dm.splits["val"]
    a, b = dm.fixed_batch("val", 2)
    torch.testing.assert_close(b, 1 - a)  # B/NAME is the partner of A/NAME
    # The same seed splits off the same val images.
    again = module(root, "paired_folder", val_fraction=0.2, image_size=10)
    torch.testing.assert_close(again.fixed_batch("val", 2)[0], a)


def test_a_b_folders_with_split_subfolders(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for split, n in (("train", 4), ("test", 2)):
        for i in range(n):
            a = random_pixels(rng, 10, 10)
            write_png(tmp_path / "A" / split / f"{i}.png", a)
            write_png(tmp_path / "B" / split / f"{i}.jpg", 255 - a)  # matched without extension
    dm = module(tmp_path, "paired_folder", val_fraction=0.25)
    assert {s: len(d) for s, d in dm.splits.items()} == {"train": 3, "val": 1, "test": 2}


def test_unpaired_epoch_is_the_longer_domain_with_the_shorter_cycled(tmp_path: Path) -> None:
    root = unpaired(tmp_path, {"trainA": 5, "trainB": 3, "testA": 2, "testB": 4})
    dm = module(root, "unpaired_folder", batch_size=1, val_fraction=0.2)
    assert not dm.paired
    # val split off each domain's train: 1 of 5 A, 1 of 3 B.
    assert len(dm.splits["train"].a) == 4 and len(dm.splits["train"].b) == 2
    assert len(dm.splits["test"]) == 4 and dm.test_pairs() is None
    loader = dm.train_dataloader()
    for _ in range(2):
        index_a = [int(ia) for ia, _, _ in loader.sampler]
        index_b = [int(ib) for _, ib, _ in loader.sampler]
        assert len(loader) == 4
        assert sorted(index_a) == [0, 1, 2, 3]  # the longer domain: each image once
        assert sorted(index_b) == [0, 0, 1, 1]  # the shorter: cycled, each pass permuted
    a, b = next(iter(loader))
    assert a.shape == b.shape == (1, 3, 8, 8)
    # Test pairs nothing: A and B run through their own images, the shorter cycled.
    a, b = dm.fixed_batch("test", 4)
    assert torch.equal(a[2], a[0]) and not torch.equal(b[2], b[0])


def test_unpaired_with_val_folders(tmp_path: Path) -> None:
    counts = {"trainA": 3, "trainB": 4, "valA": 2, "valB": 1, "testA": 1, "testB": 1}
    dm = module(unpaired(tmp_path, counts), "unpaired_folder")
    assert len(dm.splits["train"]) == 4 and len(dm.splits["val"]) == 2
    assert len(dm.splits["test"]) == 1


# ---------------------------------------------------------------------------------------------
# Bad input


def test_odd_width_names_the_file(tmp_path: Path) -> None:
    side_by_side(tmp_path, {"train": 3})
    bad = write_png(tmp_path / "train" / "odd.png", np.zeros((10, 21, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=f"{bad}.*odd width"):
        module(tmp_path, "paired_folder")


def test_unmatched_names_are_listed(tmp_path: Path) -> None:
    a_b_folders(tmp_path, ["x1", "x2", "x3"])
    (tmp_path / "A" / "x2.png").rename(tmp_path / "A" / "lonely.png")
    with pytest.raises(DataError, match=r"1 only in A/ \(lonely.png\), 1 only in B/ \(x2.png\)"):
        module(tmp_path, "paired_folder")


def test_pair_of_different_sizes_names_both_files(tmp_path: Path) -> None:
    a_b_folders(tmp_path, ["p1", "p2", "p3"])
    write_png(tmp_path / "B" / "p2.png", np.zeros((12, 10, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"p2.png is 10x10 but its pair .*B/p2.png is 10x12"):
        module(tmp_path, "paired_folder")


def test_empty_train_b_is_named(tmp_path: Path) -> None:
    unpaired(tmp_path, {"trainA": 3})
    (tmp_path / "trainB").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'trainB'} holds no images"):
        module(tmp_path, "unpaired_folder")


def test_missing_train_b_says_the_layout(tmp_path: Path) -> None:
    unpaired(tmp_path, {"trainA": 3})
    with pytest.raises(DataError, match="no trainB/; unpaired data is laid out as"):
        module(tmp_path, "unpaired_folder")


def test_undecodable_file_is_named(tmp_path: Path) -> None:
    unpaired(tmp_path, {"trainA": 3, "trainB": 3})
    bad = tmp_path / "trainB" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=f"cannot decode image {bad}"):
        module(tmp_path, "unpaired_folder")


@pytest.mark.parametrize("dataset", ["paired_folder", "unpaired_folder"])
def test_missing_root_says_what_layout_was_expected(tmp_path: Path, dataset: str) -> None:
    expected = "root/train/, root/val/" if dataset == "paired_folder" else "root/trainA/ and"
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} does not exist.*{expected}"):
        module(tmp_path / "nope", dataset)


def test_memory_ceiling_is_checked_before_loading(tmp_path: Path) -> None:
    side_by_side(tmp_path, {"train": 4, "val": 1})
    # 4 pairs at 286x286x3 are 1.96 MB, over a 1 MB ceiling; nothing is decoded first.
    (tmp_path / "train" / "000.png").write_bytes(b"undecodable, but never opened")
    with pytest.raises(DataError, match=r"0.00 GB in memory .* over the ceiling of 0.00 GB"):
        module(tmp_path, "paired_folder", image_size=256, load_size=286, max_memory_gb=1 / 1024)
    with pytest.raises(DataError, match="cannot decode"):  # within a 1 GB ceiling: loads
        module(tmp_path, "paired_folder", image_size=256, load_size=286, max_memory_gb=1)


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="load_size"):
        TranslationDataModule(image_size=32, load_size=30)
    with pytest.raises(ConfigError, match="direction"):
        TranslationDataModule(direction="AtoC")
    with pytest.raises(ConfigError, match="task"):
        TranslationDataModule(task="colour")
    with pytest.raises(ConfigError, match="contradicts"):
        TranslationDataModule(dataset="unpaired_folder", root=str(tmp_path), paired=True)
    with pytest.raises(ConfigError, match="data.root is required"):
        TranslationDataModule(dataset="paired_folder")


# ---------------------------------------------------------------------------------------------
# Augmentation


@pytest.mark.parametrize("sliced", [True, False])
def test_crop_and_flip_cut_the_windows_asked_for(sliced: bool) -> None:
    images = torch.arange(2 * 3 * 6 * 6).reshape(2, 3, 6, 6)
    top, left, flip = torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([False, True])
    out = crop_and_flip(images, top, left, flip, 4, sliced=sliced)
    assert out.shape == (2, 3, 4, 4)
    assert torch.equal(out[0], images[0, :, 0:4, 1:5])
    assert torch.equal(out[1], images[1, :, 2:6, 0:4].flip(-1))


def test_a_pair_gets_the_same_crop_and_flip(tmp_path: Path) -> None:
    dm = module(side_by_side(tmp_path, {"train": 8, "val": 1}), "paired_folder", batch_size=8)
    stored = dm.splits["train"].a.float() / 255
    seen_flip = seen_shift = False
    for ia, ib, seed in dm.train_dataloader().sampler:
        for epoch_seed in range(seed, seed + 6):
            a, b = dm.splits["train"][(ia, ib, epoch_seed)]
            torch.testing.assert_close(b, 1 - a)  # B = inverted A survives the augmentation
            for image, source in zip(a, stored[ia], strict=True):
                windows = {
                    (top, left, flip): source[:, top : top + 8, left : left + 8]
                    for top in range(3)
                    for left in range(3)
                    for flip in (False, True)
                }
                match = [
                    k for k, w in windows.items() if torch.equal(image, w.flip(-1) if k[2] else w)
                ]
                assert match, "an augmented image is no crop of its source"
                seen_flip |= any(k[2] for k in match) and not any(not k[2] for k in match)
                seen_shift |= (1, 1, False) not in match
    assert seen_flip and seen_shift


def test_unpaired_domains_are_cropped_independently(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    same = random_pixels(rng, 10, 10)
    for domain in "AB":
        for i in range(4):
            write_png(tmp_path / f"train{domain}" / f"{i}.png", same)
    dm = module(tmp_path, "unpaired_folder", batch_size=4)
    a, b = dm.splits["train"][(torch.arange(3), torch.arange(3), 123)]  # 1 of 4 is val
    assert not torch.equal(a, b)  # the same images, drawn different crops or flips
    a, b = dm.fixed_batch("val", 1)  # never augmented
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# The embedded tasks


def test_edge_map_of_a_square_is_its_outline() -> None:
    image = torch.zeros(1, 1, 12, 12)
    image[..., 3:9, 3:9] = 0.8
    edges = edge_map(image)[0, 0]
    square = torch.zeros(12, 12, dtype=torch.bool)
    square[3:9, 3:9] = True
    dilated = square.clone()
    dilated[2, 3:9] = dilated[9, 3:9] = dilated[3:9, 2] = dilated[3:9, 9] = True  # no corners
    eroded = torch.zeros(12, 12, dtype=torch.bool)
    eroded[4:8, 4:8] = True
    assert torch.equal(edges.bool(), dilated & ~eroded)
    assert set(edges.unique().tolist()) == {0.0, 1.0}
    assert edge_map(torch.full((1, 1, 5, 5), 0.4)).sum() == 0  # below the threshold: nothing


def test_paired_embedded_task_knows_the_right_answer() -> None:
    dm = TranslationDataModule(dataset="mnist_5k", paired=True, task="edges", image_size=32)
    dm.setup()
    assert {s: len(d) for s, d in dm.splits.items()} == {"train": 4500, "val": 500, "test": 500}
    assert dm.splits["test"] is dm.splits["val"] and dm.load_size == 36
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == b.shape == (64, 1, 32, 32)
    assert set(a.unique().tolist()) == {0.0, 1.0}  # edge maps are binary
    torch.testing.assert_close(edge_map(b), a)  # crop and flip kept each pair together
    pairs = dm.test_pairs()
    a, b = pairs[torch.arange(100)]
    torch.testing.assert_close(dm.right_answer(a), b)
    # Digits padded, not resized: the 2-pixel border is black.
    assert b[..., :2, :].sum() == 0 and b[..., :, -2:].sum() == 0
    with pytest.raises(DataError, match="not an edge map of the embedded task"):
        dm.right_answer(torch.roll(a, 1, dims=-1))


def test_unpaired_embedded_task_draws_a_and_b_from_disjoint_halves() -> None:
    dm = TranslationDataModule(dataset="mnist_5k", paired=False, task="edges")
    dm.setup()
    train = dm.splits["train"]
    assert not dm.paired and not train.paired
    index_a, index_b = dm.source_indices["train_a"], dm.source_indices["train_b"]
    assert not set(index_a.tolist()) & set(index_b.tolist())
    assert not set(dm.source_indices["val"].tolist()) & set((*index_a.tolist(), *index_b.tolist()))
    assert len(index_a) + len(index_b) == 4500
    from genlab.data.readers import load_mnist_5k

    labels = torch.from_numpy(load_mnist_5k()["train"].labels)
    counts_a = labels[index_a].bincount(minlength=10)
    counts_b = labels[index_b].bincount(minlength=10)
    assert (counts_b - counts_a).abs().max() <= 1  # balanced by class
    # Val and test keep the pairs, so the right answer is known.
    a, b = dm.test_pairs()[torch.arange(50)]
    torch.testing.assert_close(dm.right_answer(a), b)
    torch.testing.assert_close(edge_map(b), a)


def test_invert_task_both_directions_and_colour() -> None:
    dm = TranslationDataModule(task="invert", direction="BtoA", channels=3, augment=False)
    dm.setup()
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == (64, 3, 32, 32)
    torch.testing.assert_close(b, 1 - a)
    torch.testing.assert_close(dm.right_answer(a), b)
    edges_back = TranslationDataModule(task="edges", direction="BtoA", image_size=28)
    edges_back.setup()
    a, b = edges_back.fixed_batch("val", 16)
    assert a.shape == (16, 1, 28, 28)
    torch.testing.assert_close(edges_back.right_answer(a), b)  # B is now the edge map
    torch.testing.assert_close(edge_map(a), b)


# ---------------------------------------------------------------------------------------------
# Order and resume


def test_order_depends_on_seed_and_epoch_only() -> None:
    def epoch(seed: int, n: int) -> list[tuple[list[int], list[int], int]]:
        sampler = TranslationBatchSampler(
            7, 4, paired=False, batch_size=2, shuffle=True, drop_last=True, seed=seed
        )
        sampler.set_epoch(n)
        return [(ia.tolist(), ib.tolist(), s) for ia, ib, s in sampler]

    assert epoch(0, 3) == epoch(0, 3)
    assert epoch(0, 3) != epoch(0, 4) and epoch(0, 3) != epoch(1, 3)


def test_resume_skips_the_batches_done_with_the_same_augmentations(tmp_path: Path) -> None:
    root = side_by_side(tmp_path, {"train": 10, "val": 1})
    full = module(root, "paired_folder", batch_size=2)
    loader = full.train_dataloader()
    loader.sampler.set_epoch(1)
    uninterrupted = list(loader)
    resumed = module(root, "paired_folder", batch_size=2)
    resumed.load_state_dict({"epoch": 1, "batches": 3})
    loader = resumed.train_dataloader()
    loader.sampler.set_epoch(1)
    rest = list(loader)
    assert len(rest) == len(uninterrupted) - 3 == 2
    for (a, b), (a2, b2) in zip(rest, uninterrupted[3:], strict=True):
        assert torch.equal(a, a2) and torch.equal(b, b2)
    # The next epoch is whole again.
    assert len(list(loader)) == 5


# ---------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize(
    ("option", "size", "load", "batch", "paired"),
    [
        ("paired_folder", 256, 286, 1, True),
        ("unpaired_folder", 256, 286, 1, False),
        ("mnist_edges", 32, 36, 64, True),
        ("mnist_edges_unpaired", 32, 36, 64, False),
    ],
)
def test_configs_build_the_module(
    tmp_path: Path, option: str, size: int, load: int, batch: int, paired: bool
) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/out",
                f"data={option}",
                f"data.root={tmp_path}",
                "seed=5",
            ],
        )
    dm = instantiate(cfg.data)
    assert isinstance(dm, TranslationDataModule)
    assert dm.shape[1:] == (size, size) and dm.load_size == load == default_load_size(size)
    assert (dm.batch_size, dm.paired, dm.augment, dm.seed) == (batch, paired, True, 5)
