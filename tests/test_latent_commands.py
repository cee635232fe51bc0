"""sample, interpolate, arithmetic and embed end to end, on checkpoints trained in the test,
and the safety of checkpoint loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_idx_dataset, new_run, run_in_process, train_checkpoint
from PIL import Image


@pytest.fixture(scope="module")
def ae_2d(workdir: Path) -> Path:
    return train_checkpoint(
        workdir, "model=deep_ae", "model.latent_dim=2", "model.encoder.hidden_dims=[64]"
    )


@pytest.fixture(scope="module")
def conv_ckpt(workdir: Path) -> Path:
    return train_checkpoint(workdir, "model=conv_ae")


def command(workdir: Path, *args: str) -> tuple[Path, str]:
    """Run a command; return its run directory and its printed output."""
    run, result = new_run(workdir, *args)
    return run, result.stdout + result.stderr


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def fits_around(path: Path, grid: tuple[int, int]) -> bool:
    """Whether a labelled figure is large enough to hold the raw grid of that size."""
    return all(side > inner for side, inner in zip(png_size(path), grid, strict=True))


def test_sample_from_an_autoencoder_uses_fitted_gaussian(workdir: Path, ae_2d: Path) -> None:
    run, _ = command(workdir, "sample", f"ckpt={ae_2d}", "n=10", "seed=3")
    saved = torch.load(run / "samples.pt", weights_only=True)
    assert saved["images"].shape == (10, 1, 28, 28)
    assert saved["z"].shape == (10, 2)
    assert png_size(run / "samples.png") == (4 * 30 + 2, 3 * 30 + 2)
    again, _ = command(workdir, "sample", f"ckpt={ae_2d}", "n=10", "seed=3")
    torch.testing.assert_close(torch.load(again / "samples.pt", weights_only=True)["z"], saved["z"])
    other, _ = command(workdir, "sample", f"ckpt={ae_2d}", "n=10", "seed=4")
    assert not torch.equal(torch.load(other / "samples.pt", weights_only=True)["z"], saved["z"])


def test_manifold_grid_for_2d_latents(workdir: Path, ae_2d: Path) -> None:
    run, _ = command(workdir, "sample", f"ckpt={ae_2d}", "mode=manifold", "n=6")
    saved = torch.load(run / "samples.pt", weights_only=True)
    assert saved["images"].shape == (36, 1, 28, 28)
    assert saved["z"].min() == -2 and saved["z"].max() == 2
    assert png_size(run / "samples.png") == (6 * 30 + 2, 6 * 30 + 2)


def test_manifold_needs_two_latent_dims(workdir: Path, conv_ckpt: Path) -> None:
    result = run_in_process(workdir, "sample", f"ckpt={conv_ckpt}", "mode=manifold")[1]
    assert result.returncode == 1
    assert "2-D latent space" in result.stderr
    assert "latent_dim=49" in result.stderr


def test_interpolate_between_chosen_images(workdir: Path, conv_ckpt: Path) -> None:
    run, _ = command(
        workdir,
        "interpolate",
        f"ckpt={conv_ckpt}",
        "pairs=[[0,1],[2,3]]",
        "steps=5",
        "method=slerp",
    )
    saved = torch.load(run / "interpolation.pt", weights_only=True)
    assert saved["images"].shape == (2, 5, 1, 28, 28)
    assert saved["pairs"].tolist() == [[0, 1], [2, 3]]
    # Each row: first image, 5 decoded steps, second image; drawn with labels around them
    # (tests/test_figures.py reads those).
    assert fits_around(run / "interpolation.png", (7 * 30 + 2, 2 * 30 + 2))


def test_interpolate_random_latents(workdir: Path, ae_2d: Path) -> None:
    run, _ = command(
        workdir, "interpolate", f"ckpt={ae_2d}", "source=prior", "num_pairs=3", "steps=4"
    )
    saved = torch.load(run / "interpolation.pt", weights_only=True)
    assert saved["codes"].shape == (3, 4, 2)
    assert fits_around(run / "interpolation.png", (4 * 30 + 2, 3 * 30 + 2))


def test_interpolate_rejects_out_of_range_pairs(workdir: Path, ae_2d: Path) -> None:
    result = run_in_process(workdir, "interpolate", f"ckpt={ae_2d}", "pairs=[[0,999]]")[1]
    assert result.returncode == 1
    assert "out of range" in result.stderr


def test_arithmetic_shifts_codes_by_the_class_difference(workdir: Path, ae_2d: Path) -> None:
    run, out = command(
        workdir,
        "arithmetic",
        f"ckpt={ae_2d}",
        "plus.label=7",
        "minus.label=1",
        "apply.label=1",
        "n=3",
    )
    saved = torch.load(run / "arithmetic.pt", weights_only=True)
    assert saved["inputs"].shape == saved["decoded"].shape == saved["shifted"].shape
    assert saved["inputs"].shape[0] == 3
    assert saved["vector"].shape == (2,)
    assert "vector norm" in out
    assert fits_around(run / "arithmetic.png", (3 * 30 + 2, 3 * 30 + 2))


def test_arithmetic_needs_each_set(workdir: Path, ae_2d: Path) -> None:
    result = run_in_process(
        workdir, "arithmetic", f"ckpt={ae_2d}", "plus.label=7", "apply.label=1"
    )[1]
    assert result.returncode == 1
    assert "minus needs exactly one of" in result.stderr


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embed_writes_codes_and_plot(workdir: Path, conv_ckpt: Path, method: str) -> None:
    run, _ = command(workdir, "embed", f"ckpt={conv_ckpt}", f"method={method}")
    saved = np.load(run / "codes.npz")
    assert saved["codes"].shape == (40, 49)
    assert saved["labels"].tolist() == [i % 10 for i in range(40)]
    assert saved["projection"].shape == (40, 2)
    assert png_size(run / "embedding.png")[0] > 300


def test_commands_accept_data_overrides(workdir: Path, ae_2d: Path) -> None:
    other = make_idx_dataset(workdir / "other", n_train=30, n_test=20)
    run, _ = command(workdir, "embed", f"ckpt={ae_2d}", f"data.root={other}", "data.classes=[1,2]")
    assert sorted(set(np.load(run / "codes.npz")["labels"].tolist())) == [1, 2]


class Payload:
    """Unpickling this would create a marker file: the attack a checkpoint could carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_in_a_checkpoint_is_refused(workdir: Path, ae_2d: Path) -> None:
    marker = workdir / "pwned"
    evil = workdir / "evil.ckpt"
    checkpoint = torch.load(ae_2d, weights_only=True)
    checkpoint["genlab_config"]["extra"] = Payload(marker)
    torch.save(checkpoint, evil)
    # The payload is live: a plain unpickle runs it.
    live = workdir / "live"
    pickle.loads(pickle.dumps(Payload(live)))
    assert live.exists()
    result = run_in_process(workdir, "sample", f"ckpt={evil}")[1]
    assert result.returncode == 1
    assert "refused to load" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_checkpoint_naming_a_foreign_class_is_refused(workdir: Path, ae_2d: Path) -> None:
    crafted = workdir / "crafted.ckpt"
    checkpoint = torch.load(ae_2d, weights_only=True)
    checkpoint["genlab_config"]["model"]["_target_"] = "os.system"
    torch.save(checkpoint, crafted)
    result = run_in_process(workdir, "embed", f"ckpt={crafted}")[1]
    assert result.returncode == 1
    assert "refused to load" in result.stderr and "model: os.system" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_unreadable_and_missing_checkpoints(workdir: Path, content: bytes) -> None:
    broken = workdir / "broken.ckpt"
    broken.write_bytes(content)
    result = run_in_process(workdir, "interpolate", f"ckpt={broken}")[1]
    assert result.returncode == 1
    assert "not a readable checkpoint" in result.stderr
    result = run_in_process(workdir, "sample", f"ckpt={workdir / 'missing.ckpt'}")[1]
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_sample_classify_reports_class_coverage(workdir: Path, ae_2d: Path) -> None:
    import json

    classifier = train_checkpoint(workdir, "model=classifier")
    run, out = command(workdir, "sample", f"ckpt={ae_2d}", "n=50", f"classify={classifier}")
    report = json.loads((run / "classes.json").read_text())
    assert sum(report["counts"]) == 50
    assert len(report["counts"]) == 10
    assert sum(report[f"class_{k}"] for k in range(10)) == pytest.approx(1.0)
    assert 1 <= report["classes_covered"] <= 10
    assert report["kl_uniform"] >= 0
    assert "classes covered" in out
    # With how far the classifier can be trusted on real images and on reconstructions; a
    # one-epoch classifier on tiny data is not, and says so.
    assert 0 <= report["classifier/accuracy_real"] <= 1
    assert 0 <= report["classifier/accuracy_reconstructions"] <= 1
    assert report["classifier/images"] == 40
    assert report["warnings"] and "warning: the classifier is right on only" in out
    # A checkpoint that is not a classifier is refused with a clear error.
    result = run_in_process(workdir, "sample", f"ckpt={ae_2d}", f"classify={ae_2d}")[1]
    assert result.returncode == 1
    assert "not a classifier" in result.stderr
