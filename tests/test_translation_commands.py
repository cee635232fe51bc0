"""Pix2Pix and CycleGAN through genlab's commands: `train` on the embedded tasks (grids,
checkpoints, exact resume), `evaluate` and `translate` on the checkpoints trained here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CLASSIFIER, new_run, run_in_process
from PIL import Image

# Tiny networks, a few batches: seconds per run on a CPU.
QUICK = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "data.batch_size=8",
    "logger=csv",
]
PIX2PIX = ["model=pix2pix", "model.generator.width=8", "model.discriminator.width=8"]
CYCLEGAN = [
    "model=cyclegan",
    "model.generator_ab.width=8",
    "model.generator_ab.n_blocks=1",
    "model.discriminator_a.width=8",
    "model.pool_size=5",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("translation")


@pytest.fixture(scope="module")
def pix2pix_trained(workdir: Path) -> tuple[Path, str]:
    run, result = new_run(workdir, "train", *PIX2PIX, *QUICK, "test=false")
    return run, result.stdout + result.stderr


@pytest.fixture(scope="module")
def pix2pix_run(pix2pix_trained: tuple[Path, str]) -> Path:
    return pix2pix_trained[0]


def test_optimizer_factories_need_no_trust(pix2pix_trained: tuple[Path, str]) -> None:
    # torch.optim.Adam in model.optimizer_g is not rebuilt by the checkpoint commands, so
    # training says nothing about trusting torch.
    assert "outside genlab" not in pix2pix_trained[1]


@pytest.fixture(scope="module")
def cyclegan_run(workdir: Path) -> Path:
    run, _ = new_run(workdir, "train", *CYCLEGAN, *QUICK, "test=false")
    return run


def test_pix2pix_trains_with_its_grids_scalars_and_schedule(pix2pix_run: Path) -> None:
    grids = sorted(p.name for p in (pix2pix_run / "images").glob("*.png"))
    assert grids == ["val_translations_epoch000.png", "val_translations_epoch001.png"]
    with Image.open(pix2pix_run / "images" / grids[0]) as grid:
        # Three rows (input, output, target) of 32-pixel images.
        assert grid.height > 3 * 32 and grid.width > 8 * 32
    metrics = (pix2pix_run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("train/d_loss", "train/d_real", "train/d_fake", "train/g_adv", "train/l1"):
        assert name in metrics
    state = torch.load(pix2pix_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(state["optimizer_states"]) == 2 and len(state["lr_schedulers"]) == 2
    # linear_decay over 2 epochs (the paper's rule, 1 - max(0, n + 1 - C) / (D + 1)):
    # constant in the first, halved in the second, zero after it.
    rows = list(csv.DictReader((pix2pix_run / "csv" / "metrics.csv").open()))
    for name in ("train/lr_g", "train/lr_d"):
        by_epoch = {int(r["epoch"]): float(r[name]) for r in rows if r.get(name)}
        assert by_epoch == pytest.approx({0: 2e-4, 1: 1e-4})
    assert [s["_last_lr"][0] for s in state["lr_schedulers"]] == [0.0, 0.0]
    best = list((pix2pix_run / "checkpoints").glob("epoch*-val_l1*.ckpt"))
    assert len(best) == 1


def test_cyclegan_trains_all_four_networks_with_both_rows_of_grids(cyclegan_run: Path) -> None:
    names = {p.name for p in (cyclegan_run / "images").glob("*.png")}
    assert {"val_a_to_b_epoch001.png", "val_b_to_a_epoch001.png"} <= names
    header = (cyclegan_run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("cycle_a", "cycle_b", "identity_a", "identity_b", "d_a_real", "d_b_fake"):
        assert f"train/{name}" in header
    state = torch.load(cyclegan_run / "checkpoints" / "last.ckpt", weights_only=True)
    prefixes = {key.split(".")[0] for key in state["state_dict"]}
    assert prefixes == {"generator_ab", "generator_ba", "discriminator_a", "discriminator_b"}
    pools = state["cyclegan_image_pools"]
    assert pools["a"]["count"] == pools["b"]["count"] == 5


def test_cyclegan_resumed_mid_run_ends_where_an_unbroken_run_ends(workdir: Path) -> None:
    run = [*CYCLEGAN, *QUICK, "test=false", "checkpoint.every_n_steps=1"]
    straight, _ = new_run(workdir, "train", *run)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_in_process(
            workdir,
            "train",
            *run,
            "+callbacks.crash._target_=fault_helpers.CrashAt",
            "+callbacks.crash.step=8",
        )
    broken = max((workdir / "outputs" / "train" / "inprocess").iterdir())
    paused = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)
    # Stopped in epoch 1 (3 batches of 2 optimizer steps an epoch), the pools not empty.
    assert paused["global_step"] == 8 and paused["epoch"] == 1
    resumed, _ = new_run(workdir, "train", f"ckpt_path={broken / 'checkpoints' / 'last.ckpt'}")
    expected = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert got["global_step"] == expected["global_step"] == 12
    for name, tensor in expected["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][name], tensor, rtol=0, atol=1e-6)
    for mine, theirs in zip(got["optimizer_states"], expected["optimizer_states"], strict=True):
        for key, value in theirs["state"].items():
            torch.testing.assert_close(mine["state"][key]["exp_avg"], value["exp_avg"])
    assert got["lr_schedulers"] == expected["lr_schedulers"]
    for domain in ("a", "b"):
        torch.testing.assert_close(
            got["cyclegan_image_pools"][domain]["images"],
            expected["cyclegan_image_pools"][domain]["images"],
        )


def test_evaluate_pix2pix_scores_outputs_against_targets(workdir: Path, pix2pix_run: Path) -> None:
    run, result = new_run(workdir, "evaluate", f"ckpt={pix2pix_run / 'checkpoints' / 'last.ckpt'}")
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0 < metrics["test/l1"] < 1
    assert 0 < metrics["test/psnr"] < 100
    assert -1 <= metrics["test/ssim"] <= 1
    assert "test/ssim" in result.stdout


def test_evaluate_cyclegan_cycles_right_answer_and_features(
    workdir: Path, cyclegan_run: Path
) -> None:
    classifier, _ = new_run(
        workdir,
        "train",
        *TINY_CLASSIFIER,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "trainer.enable_progress_bar=false",
        "test=false",
    )
    ckpt = cyclegan_run / "checkpoints" / "last.ckpt"
    run, result = new_run(
        workdir,
        "evaluate",
        f"ckpt={ckpt}",
        f"features={classifier / 'checkpoints' / 'last.ckpt'}",
        "num_samples=100",
    )
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    for name in ("cycle_a_l1", "cycle_b_l1", "right_answer/l1", "right_answer/ssim"):
        assert 0 <= abs(metrics[f"test/{name}"]) < 1.5, name
    assert metrics["translated_a/fid"] >= 0 and "translated_a/kid" in metrics
    # The classifier takes 28x28 digits; the translations are 32x32.
    assert "resized to it" in result.stdout


def _write_images(folder: Path, images: torch.Tensor, *, side_by_side: torch.Tensor | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        pixels = (image[0] * 255).round().byte().numpy()
        if side_by_side is not None:
            other = (side_by_side[i][0] * 255).round().byte().numpy()
            pixels = np.concatenate([pixels, other], axis=1)
        Image.fromarray(pixels).save(folder / f"img{i}.png")


def test_translate_a_folder_keeps_names_and_writes_the_side_by_side(
    workdir: Path, cyclegan_run: Path
) -> None:
    from genlab.data.translation import TranslationDataModule

    dm = TranslationDataModule(dataset="mnist_5k", paired=False, batch_size=8)
    a, b = dm.fixed_batch("val", 4)
    _write_images(workdir / "edges", a)
    ckpt = cyclegan_run / "checkpoints" / "last.ckpt"
    run, result = new_run(workdir, "translate", f"ckpt={ckpt}", f"input={workdir / 'edges'}")
    written = sorted(p.name for p in (run / "translated").iterdir())
    assert written == ["img0.png", "img1.png", "img2.png", "img3.png"]
    with Image.open(run / "translated" / "img0.png") as img:
        assert img.size == (32, 32) and img.mode == "L"
    assert (run / "translation.png").is_file()
    # The translation of a file equals the model's translation of the same image.
    from genlab.checkpoint import load_model

    model, _ = load_model(ckpt)
    with torch.no_grad():
        expected = model.eval().translate(a[:1], "AtoB")
    got = torch.from_numpy(np.array(Image.open(run / "translated" / "img0.png"))).float() / 255
    assert (got - expected[0, 0]).abs().max() <= 1 / 255 + 1e-6
    # An image of another size is resized for the generator and back, and said so.
    Image.new("L", (40, 20)).save(workdir / "wide.png")
    run, result = new_run(
        workdir, "translate", f"ckpt={ckpt}", f"input={workdir / 'wide.png'}", "direction=BtoA"
    )
    with Image.open(run / "translated" / "wide.png") as img:
        assert img.size == (40, 20)
    assert "resized" in result.stdout


def test_translate_side_by_side_files_and_bad_input(workdir: Path, pix2pix_run: Path) -> None:
    from genlab.data.translation import TranslationDataModule

    a, b = TranslationDataModule(dataset="mnist_5k", batch_size=8).fixed_batch("val", 3)
    _write_images(workdir / "pairs", a, side_by_side=b)
    ckpt = pix2pix_run / "checkpoints" / "last.ckpt"
    run, _ = new_run(
        workdir, "translate", f"ckpt={ckpt}", f"input={workdir / 'pairs'}", "side_by_side=true"
    )
    with Image.open(run / "translated" / "img0.png") as img:
        assert img.size == (32, 32)  # the translation of the A half
    _, result = run_in_process(workdir, "translate", f"ckpt={ckpt}", f"input={workdir / 'nope'}")
    assert result.returncode == 1 and "does not exist" in result.stderr
    _, result = run_in_process(
        workdir, "translate", f"ckpt={ckpt}", f"input={workdir / 'wide.png'}", "resize=false"
    )
    assert result.returncode == 1 and "drop resize=false" in result.stderr
    _, result = run_in_process(
        workdir, "translate", f"ckpt={ckpt}", f"input={workdir / 'pairs'}", "direction=BtoA"
    )
    assert result.returncode == 1 and "direction=BtoA" in result.stderr


def test_translate_into_a_chosen_folder_without_a_grid(workdir: Path, pix2pix_run: Path) -> None:
    from genlab.data.translation import TranslationDataModule

    a, _ = TranslationDataModule(dataset="mnist_5k", batch_size=8).fixed_batch("val", 2)
    _write_images(workdir / "two", a)
    ckpt = pix2pix_run / "checkpoints" / "last.ckpt"
    out = workdir / "chosen"
    run, _ = new_run(
        workdir, "translate", f"ckpt={ckpt}", f"input={workdir / 'two'}", f"out={out}",
        "grid_images=0",
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]
    assert not (run / "translation.png").exists()
    # The input folder itself is refused as out=: the inputs would be overwritten.
    _, result = run_in_process(
        workdir, "translate", f"ckpt={ckpt}", f"input={workdir / 'two'}",
        f"out={workdir / 'two'}",
    )  # fmt: skip
    assert result.returncode == 1 and "overwrite the inputs" in result.stderr


def test_pix2pix_refuses_unpaired_data(workdir: Path) -> None:
    _, result = run_in_process(
        workdir, "train", *PIX2PIX, *QUICK, "test=false", "data=mnist_edges_unpaired"
    )
    assert result.returncode == 1
    assert "use model=cyclegan for unpaired" in result.stderr
