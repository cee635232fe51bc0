"""Stacked MNIST and mode counting: the stacked images against the digits they were drawn
from, the mode counts and KL of hand-made histograms, the per-channel classifier, and
`genlab evaluate` / `genlab sample classify=` on a tiny 3-channel GAN judged by a tiny
1-channel classifier."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    FAST,
    IDX_NAMES,
    TINY_CLASSIFIER,
    new_run,
    train_checkpoint,
    write_idx,
)
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from genlab.commands.common import CONFIG_DIR
from genlab.data.stacked import STACKED_CLASSES, StackedMNISTDataModule
from genlab.errors import ConfigError, DataError
from genlab.metrics.features import classifier_outputs, load_classifier
from genlab.metrics.modes import (
    ChannelwiseClassifier,
    channelwise,
    mode_ids,
    mode_summary,
    modes_covered,
)

# The marked digits: pixel (0, 0) says the digit, (0, 1) the image's index in its MNIST
# split, (0, 2) whether it is a test image.
N_TRAIN, N_TEST = 120, 40


def marked_digits(n: int) -> np.ndarray:
    return (np.arange(n) * 7 % 10).astype(np.uint8)


@pytest.fixture(scope="module")
def marked_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST IDX files whose every image names its digit, its index and its split."""
    root = tmp_path_factory.mktemp("stacked") / "mnist"
    root.mkdir()
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        labels = marked_digits(n)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels * 20 + 5
        images[:, 0, 1] = np.arange(n)
        images[:, 0, 2] = 255 if split == "test" else 0
        write_idx(root / IDX_NAMES[(split, "images")], images)
        write_idx(root / IDX_NAMES[(split, "labels")], labels)
    return root


def stacked(root: Path, **options) -> StackedMNISTDataModule:
    dm = StackedMNISTDataModule(root=str(root), **options)
    dm.setup()
    return dm


def sources(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digits, source indices and test flags [N, 3] of stacks of marked digits."""
    marks = images[:, :, 0, :3].numpy().astype(np.int64)
    return (marks[..., 0] - 5) // 20, marks[..., 1], marks[..., 2]


# The data


def test_stacks_hold_three_digits_and_are_labelled_by_their_mode(marked_mnist: Path) -> None:
    dm = stacked(marked_mnist, stacked_size=300, stacked_test_size=50, seed=1)
    assert dm.shape == (3, 28, 28)
    assert dm.class_names == STACKED_CLASSES and len(dm.class_names) == 1000
    assert dm.class_names[370] == "370"
    sizes = {name: len(split) for name, split in dm.splits.items()}
    assert sizes == {"train": 300, "val": 30, "test": 50}
    # The base's permutation of the training digits: the validation digits data=mnist keeps.
    order = dm.validation_order(N_TRAIN).numpy()
    n_val = round(N_TRAIN * 0.1)
    allowed = {"train": set(order[n_val:]), "val": set(order[:n_val]), "test": set(range(N_TEST))}
    for name, split in dm.splits.items():
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 28, 28)
        digits, index, test_flag = sources(split.images)
        # Every channel is an untouched digit image, the one its index names.
        assert (split.images[:, :, 1:].sum() == 0) and (split.images[:, :, 0, 3:].sum() == 0)
        n = N_TEST if name == "test" else N_TRAIN
        assert (digits == marked_digits(n)[index]).all()
        assert (test_flag == (255 if name == "test" else 0)).all()
        assert set(index.flatten()) <= allowed[name], f"{name} stacks digits of another split"
        expected = 100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2]
        assert torch.equal(split.labels, torch.from_numpy(expected))
    x, y = dm.splits["train"][torch.arange(4)]
    assert x.dtype == torch.float32 and x.shape == (4, 3, 28, 28) and 0 <= x.min() <= x.max() <= 1
    assert torch.equal(y, dm.splits["train"].labels[:4])


def test_draws_are_seeded_independent_and_uniform(marked_mnist: Path) -> None:
    first = stacked(marked_mnist, stacked_size=3000, stacked_test_size=20, seed=4)
    again = stacked(marked_mnist, stacked_size=3000, stacked_test_size=80, seed=4)
    other = stacked(marked_mnist, stacked_size=3000, stacked_test_size=20, seed=5)
    train = first.splits["train"]
    # The same seed draws the same images; a split's do not depend on another's size.
    for name in ("train", "val"):
        assert torch.equal(first.splits[name].images, again.splits[name].images)
    assert not torch.equal(train.images, other.splits["train"].images)
    digits, index, _ = sources(train.images)
    # Each channel drawn on its own, uniformly, with replacement, over the training digits.
    for channel in range(3):
        counts = np.bincount(digits[:, channel], minlength=10)
        assert counts.min() > 200, counts
    assert abs(np.corrcoef(digits[:, 0], digits[:, 1])[0, 1]) < 0.1
    assert (index[:, 0] == index[:, 1]).any()
    assert len(set(index.flatten())) == N_TRAIN - round(N_TRAIN * 0.1)


def test_the_config_resizes_filters_and_refuses_what_cannot_be(
    marked_mnist: Path, tmp_path: Path
) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.root_dir={tmp_path}",
                "data=stacked_mnist",
                "model=dcgan",
                f"data.root={marked_mnist}",
                "data.stacked_size=200",
                "data.stacked_test_size=30",
                "data.image_size=32",
            ],
        )
    assert cfg.data.stacked_size == 200 and cfg.model.in_channels == 3
    dm = instantiate(cfg.data)
    assert isinstance(dm, StackedMNISTDataModule)
    dm.setup()
    images, labels = dm.splits["train"].images, dm.splits["train"].labels
    assert images.shape[1:] == (3, 32, 32)
    # Modes kept by name or index, as any dataset's classes.
    first, second = labels[0].item(), dm.splits["val"].labels[0].item()
    kept = instantiate(cfg.data, classes=[STACKED_CLASSES[first], second])
    kept.setup()
    assert first in set(kept.splits["train"].labels.tolist()) <= {first, second}
    assert second in set(kept.splits["val"].labels.tolist()) <= {first, second}
    with pytest.raises(DataError, match="dataset 'stacked_mnist' has 0 training"):
        instantiate(cfg.data, classes=["999"], stacked_size=1).setup()
    # The model trained in Python records this class's own arguments, so it rebuilds.
    assert "dataset" not in dm.hparams
    assert StackedMNISTDataModule(**dm.hparams).stacked_size == 200
    for options, match in (
        ({"channels": 1}, "one digit per channel"),
        ({"stacked_size": 0}, "data.stacked_size"),
        ({"stacked_test_size": 2.5}, "data.stacked_test_size"),
        ({"root": None}, "data.root is required"),
    ):
        with pytest.raises(ConfigError, match=match):
            StackedMNISTDataModule(**{"root": str(marked_mnist), **options})


# Mode counting


def test_mode_ids_read_the_channels_as_digits() -> None:
    digits = torch.tensor([[1, 2, 3], [0, 0, 9], [9, 9, 9], [0, 0, 0]])
    assert mode_ids(digits).tolist() == [123, 9, 999, 0]
    assert mode_ids(torch.tensor([[1, 1]]), base=4).tolist() == [5]


def test_modes_and_kl_of_hand_made_histograms() -> None:
    counts = torch.zeros(1000, dtype=torch.long)
    counts[[0, 1, 999]] = torch.tensor([2, 1, 1])
    summary = mode_summary(counts)
    # p = (1/2, 1/4, 1/4) on three modes: 1/2 ln(500) + 2 · 1/4 ln(250) = 5.868035 nats.
    assert summary == pytest.approx(
        {"modes_covered": 3, "modes_total": 1000, "classes_covered": 3, "kl_uniform": 5.868035}
    )
    # All 26,000 samples but one in mode 5: two modes covered, the papers' count; genlab's
    # thresholded count (a tenth of the uniform 26 a mode) leaves out the stray sample.
    counts = torch.zeros(1000, dtype=torch.long)
    counts[5], counts[7] = 25_999, 1
    summary = mode_summary(counts, threshold=0.1)
    assert (summary["modes_covered"], summary["classes_covered"]) == (2, 1)
    p = torch.tensor([25_999, 1], dtype=torch.float64) / 26_000
    assert summary["kl_uniform"] == pytest.approx(float((p * (p * 1000).log()).sum()))
    # Empty modes add nothing but count in log 1000: an even spread over 99 modes is
    # ln(1000/99) = 2.3126, one mode ln(1000) = 6.9078, all modes evenly 0.
    even = torch.zeros(1000, dtype=torch.long)
    even[:99] = 10
    assert mode_summary(even)["kl_uniform"] == pytest.approx(2.312635)
    assert modes_covered(even) == 99
    single = torch.zeros(1000, dtype=torch.long)
    single[42] = 26_000
    assert mode_summary(single)["kl_uniform"] == pytest.approx(6.907755)
    uniform = mode_summary(torch.full((1000,), 26))
    assert uniform["kl_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert uniform["modes_covered"] == uniform["classes_covered"] == 1000


class PixelClassifier(nn.Module):
    """A stand-in for a digit classifier of 1-channel 4x4 images: the class is the
    brightest of the first ten pixels."""

    image_shape = (1, 4, 4)
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Identity()
        self.scale = nn.Parameter(torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * self.scale


def test_the_channelwise_classifier_classifies_each_channel() -> None:
    classifier = PixelClassifier()
    judge = channelwise(classifier, (3, 4, 4))
    assert isinstance(judge, ChannelwiseClassifier)
    assert (judge.num_classes, judge.image_shape) == (1000, (3, 4, 4))
    # The rule is the shapes': a 1-channel image, or another size, is judged as it is.
    assert channelwise(classifier, (1, 4, 4)) is classifier
    assert channelwise(classifier, (3, 8, 8)) is classifier
    digits = torch.tensor([[3, 7, 0], [9, 9, 1], [0, 0, 0]])
    images = torch.zeros(3, 3, 4, 4)
    for i, row in enumerate(digits):
        for c, d in enumerate(row):
            images[i, c].view(-1)[d] = 1.0
    features, classes = classifier_outputs(judge, images)
    assert features.shape == (3, 30)
    assert classes.tolist() == [370, 991, 0] == mode_ids(digits).tolist()


# The commands


@pytest.fixture(scope="module")
def classifier_ckpt(workdir: Path) -> Path:
    """A 1-channel digit classifier (data=mnist)."""
    return train_checkpoint(workdir, *TINY_CLASSIFIER)


def tiny_stacked_dcgan(workdir: Path) -> tuple[str, ...]:
    """`genlab train` overrides of a tiny DCGAN on 64 Stacked MNIST images."""
    return (
        "data=stacked_mnist",
        f"data.root={workdir / 'mnist'}",
        *FAST,
        "data.stacked_size=64",
        "data.stacked_test_size=40",
        "model=dcgan",
        "model.latent_dim=8",
        "model.generator.width=8",
        "model.discriminator.width=8",
        "test=false",
    )


@pytest.fixture(scope="module")
def stacked_gan(workdir: Path) -> Path:
    """A tiny DCGAN of 3-channel Stacked MNIST images."""
    run, _ = new_run(workdir, "train", *tiny_stacked_dcgan(workdir))
    return run / "checkpoints" / "last.ckpt"


def test_evaluate_counts_the_modes_of_a_3_channel_generator(
    workdir: Path, stacked_gan: Path, classifier_ckpt: Path
) -> None:
    args = (f"ckpt={stacked_gan}", f"features={classifier_ckpt}", "num_samples=300")
    run, result = new_run(workdir, "evaluate", *args)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    covered, kl = metrics["samples/modes_covered"], metrics["samples/kl_uniform"]
    assert metrics["samples/modes_total"] == 1000
    assert 1 <= covered <= 300 and metrics["samples/classes_covered"] <= covered
    # KL(p || uniform) = ln 1000 − H(p), and H(p) <= ln(modes covered).
    assert math.log(1000 / covered) - 1e-9 <= kl <= math.log(1000) + 1e-9
    assert not any(name.startswith("samples/class_") for name in metrics)
    assert {"samples/fid", "samples/precision", "samples/classifier_accuracy_real"} <= set(metrics)
    assert "each of the 3 channels is classified on its own" in result.stdout
    assert f"modes covered {covered:.0f} of 1000" in result.stdout
    assert "num_samples=26000" in result.stdout
    # The same seed, the same modes.
    again, _ = new_run(workdir, "evaluate", *args)
    assert json.loads((again / "metrics.json").read_text())["metrics"] == metrics


def test_sample_classify_writes_the_modes_of_its_samples(
    workdir: Path, stacked_gan: Path, classifier_ckpt: Path
) -> None:
    run, result = new_run(
        workdir, "sample", f"ckpt={stacked_gan}", "n=200", f"classify={classifier_ckpt}"
    )
    report = json.loads((run / "classes.json").read_text())
    # The counts of the samples in samples.pt, each channel classified on its own.
    images = torch.load(run / "samples.pt", weights_only=True)["images"]
    classifier = load_classifier(classifier_ckpt).eval()
    with torch.no_grad():
        digits = torch.stack([classifier(images[:, c : c + 1]).argmax(1) for c in range(3)], 1)
    expected = torch.bincount(mode_ids(digits), minlength=1000)
    assert report["counts"] == expected.tolist()
    assert report["samples"] == 200 and report["modes_total"] == 1000
    assert report["modes_covered"] == int((expected > 0).sum())
    p = expected[expected > 0].double() / 200
    assert report["kl_uniform"] == pytest.approx(float((p * (p * 1000).log()).sum()))
    assert "class_0" not in report
    assert "classifier/accuracy_real" in report
    assert f"modes covered {report['modes_covered']:.0f} of 1000" in result.stdout


def test_the_coverage_callback_counts_modes_while_a_stacked_gan_trains(
    workdir: Path, classifier_ckpt: Path
) -> None:
    """The class-coverage callback takes the same per-channel rule as evaluate: a 1-channel
    classifier on a 3-channel GAN logs the coverage of the 1000 modes."""
    run, _ = new_run(
        workdir,
        "train",
        *tiny_stacked_dcgan(workdir),
        "logger=csv",
        "+callbacks.coverage._target_=genlab.callbacks.ClassCoverageCallback",
        f"+callbacks.coverage.classifier_ckpt={classifier_ckpt}",
        "+callbacks.coverage.num_samples=50",
    )
    lines = next(run.rglob("metrics.csv")).read_text().splitlines()
    rows = [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]
    logged = [float(r["coverage/classes_covered"]) for r in rows if r["coverage/classes_covered"]]
    assert logged and all(0 < covered <= 50 for covered in logged)  # of 1000, one per sample
