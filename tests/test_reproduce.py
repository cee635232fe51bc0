"""scripts/reproduce.py: each table at --budget smoke on a tiny MNIST, through genlab's own
commands; the Markdown it writes (published rows, genlab's rows with finite figures, the
commands, seeds and hardware), its section in a results file, and a second invocation that
reuses every run instead of training again (a stopped run is resumed)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import make_idx_dataset

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
REPO = SCRIPTS.parent


@pytest.fixture(scope="module")
def reproduce() -> Iterator[ModuleType]:
    # scripts/ on the path while the module's tests run, as `python scripts/reproduce.py`
    # has it: the script imports its neighbours (benchlib) when it needs them.
    sys.path.insert(0, str(SCRIPTS))
    try:
        import reproduce as module

        yield module
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("data") / "mnist")


def invoke(reproduce: ModuleType, capsys: pytest.CaptureFixture, *args: str) -> str:
    code = reproduce.main(list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:] + captured.out[-3000:]
    return captured.out


def genlab_rows(table: str) -> dict[str, list[str]]:
    """The cells of the table's rows that start with 'genlab ', by their first cell."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| genlab "):
            rows[cells[0]] = cells[1:]
    return rows


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", cell)]


def checkpoints(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(out.glob("runs/*/checkpoints/*.ckpt"))}


def common_checks(text: str, out: Path, table: str) -> None:
    assert "**Budget: smoke.**" in text
    assert "- Seeds: 0" in text
    assert re.search(r"- Hardware: .+, \d+ cores, torch \d", text)
    assert "- Wall time: " in text
    # Every run's command is there as a user types it, run directory included.
    commands = re.findall(r"\| `(genlab (?:train|evaluate|anomaly) [^`]+)` \|", text)
    assert commands and all("hydra.run.dir=" in c or "resume=" in c for c in commands)
    assert (out / f"{table}.md").read_text() == text


def test_likelihood_smoke_then_reused_and_resumed(
    reproduce: ModuleType,
    mnist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, results = tmp_path / "out", tmp_path / "results.md"
    args = ["likelihood", "--budget", "smoke", "--mnist", str(mnist), "--out", str(out)]
    invoke(reproduce, capsys, *args, "--results", str(results))
    text = (out / "likelihood.md").read_text()
    common_checks(text, out, "likelihood")
    for row, value in reproduce.LIKELIHOOD_PUBLISHED:
        assert f"| {row} | {value:.2f} |" in text
    rows = genlab_rows(text)
    assert set(rows) == {
        "genlab vae, 1 stochastic layer",
        "genlab vae, 2 stochastic layers (iwae2, k = 1)",
        "genlab iwae, k = 5, 1 stochastic layer",
        "genlab iwae2, k = 5, 2 stochastic layers",
        "genlab conv_vae",
    }
    for cells in rows.values():
        bound, negative_elbo = numbers(cells[0])[0], numbers(cells[1])[0]
        # Positive nats, and the importance-weighted bound is no looser than the ELBO.
        assert math.isfinite(bound) and 0 < bound <= negative_elbo + 1e-6
    assert text.count("| ran |") == 10
    section = results.read_text()
    assert "<!-- results:likelihood:smoke -->" in section
    assert "| genlab conv_vae |" in section

    # Again: nothing trains or evaluates; the checkpoints are untouched.
    before = checkpoints(out)
    assert len(before) >= 3
    printed = invoke(reproduce, capsys, *args, "--results", str(results))
    assert checkpoints(out) == before
    assert printed.count("reproduce.py: reused ") == 10
    assert "10 of 10 runs reused" in (out / "likelihood.md").read_text()
    assert results.read_text().count("<!-- results:likelihood:smoke -->") == 1

    # A run that stopped (no finished metrics.json, a checkpoint) is resumed, not retrained.
    (out / "runs" / "vae_seed0" / "metrics.json").unlink()
    printed = invoke(reproduce, capsys, *args)
    assert "+ genlab train resume=" in printed
    assert "| runs/vae_seed0 | resumed |" in (out / "likelihood.md").read_text()
    others = {p: t for p, t in before.items() if p.parts[-3] != "vae_seed0"}
    assert {p: t for p, t in checkpoints(out).items() if p in others} == others

    # Runs made by another command (here: another budget's epochs) are neither reused nor
    # continued: the error names the run and both commands, and nothing is touched.
    before = checkpoints(out)
    smoke = reproduce.LIKELIHOOD["smoke"]
    monkeypatch.setitem(smoke, "train", [*smoke["train"], "trainer.max_epochs=2"])
    assert reproduce.main(args) == 1
    err = capsys.readouterr().err
    assert "was made by another command" in err and "trainer.max_epochs=2" in err
    assert "--out DIR" in err
    assert checkpoints(out) == before


def test_one_class_smoke(
    reproduce: ModuleType,
    mnist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An ablation asking for more seeds than --seeds (smoke: 1) runs only those there are.
    (ablation,) = reproduce.ONE_CLASS["smoke"]["ablations"]
    monkeypatch.setitem(
        reproduce.ONE_CLASS["smoke"], "ablations", (dataclasses.replace(ablation, seeds=3),)
    )
    out, results = tmp_path / "out", tmp_path / "results.md"
    results.write_text(
        "# Mine\n\n<!-- results:likelihood:quick -->\nkept\n<!-- /results:likelihood:quick -->\n"
    )
    args = ["one_class", "--budget", "smoke", "--mnist", str(mnist), "--out", str(out)]
    invoke(reproduce, capsys, *args, "--results", str(results))
    text = (out / "one_class.md").read_text()
    common_checks(text, out, "one_class")
    published = " | ".join(f"{v:.1f}" for v in reproduce.DEEP_SVDD)
    assert f"| Deep SVDD (published) | {published} | 94.8 |" in text
    rows = genlab_rows(text)
    assert set(rows) == {
        "genlab conv_ae, reconstruction error",
        "genlab denoising_ae, reconstruction error",
        "genlab conv_vae, reconstruction error",
        "genlab conv_vae, −ELBO",
        # The budget's ablation: conv_ae with one option changed, for the first seed.
        "genlab conv_ae, batch 16 (seed 0), reconstruction error",
    }
    assert "data.batch_size=32 data.batch_size=16" in text  # the ablation's command
    for cells in rows.values():
        # Digits 0 and 1 ran, the others did not; AUROCs in percent; the mean of the two.
        aurocs = [numbers(c)[0] for c in cells[:2]]
        assert all(0 <= a <= 100 for a in aurocs)
        assert cells[2:10] == ["–"] * 8
        assert numbers(cells[10])[0] == pytest.approx(sum(aurocs) / 2, abs=0.051)
    assert text.count("genlab anomaly ckpt=") == 8
    # The section is added; the file's other section stays as it was.
    kept = results.read_text()
    assert kept.startswith("# Mine\n\n<!-- results:likelihood:quick -->\nkept\n")
    assert "<!-- results:one_class:smoke -->" in kept

    before = checkpoints(out)
    printed = invoke(reproduce, capsys, *args)
    assert checkpoints(out) == before
    assert printed.count("reproduce.py: reused ") == 16
    assert "+ genlab" not in printed


def test_stacked_mnist_smoke(
    reproduce: ModuleType, mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = ["stacked_mnist", "--budget", "smoke", "--mnist", str(mnist), "--out", str(out)]
    invoke(reproduce, capsys, *args, "--results", str(tmp_path / "results.md"))
    text = (out / "stacked_mnist.md").read_text()
    common_checks(text, out, "stacked_mnist")
    for model, modes, kl in reproduce.STACKED_PUBLISHED:
        assert f"| {model} | {modes} | {kl:.2f} |" in text
    rows = genlab_rows(text)
    assert set(rows) == {"genlab dcgan", "genlab dcgan, model.pack=2"}
    for cells in rows.values():
        modes, kl = numbers(cells[0])[0], numbers(cells[1])[0]
        assert 1 <= modes <= 128 and 0 <= kl <= math.log(1000) + 0.005  # printed to 2 places
    assert "experiment=repro_stacked_classifier" in text
    assert re.search(r"features=\S+/runs/classifier/checkpoints/last\.ckpt", text)
    assert "model.pack=2" in text and "num_samples=128" in text

    before = checkpoints(out)
    printed = invoke(reproduce, capsys, *args)
    assert checkpoints(out) == before
    assert printed.count("reproduce.py: reused ") == 5

    # A checkpoint newer than an evaluation that read it (a classifier trained further):
    # the evaluations are run again, the training runs still reused.
    classifier = out / "runs" / "classifier" / "checkpoints" / "last.ckpt"
    later = max(m.stat().st_mtime_ns for m in out.glob("eval/*/metrics.json")) + 10**9
    os.utime(classifier, ns=(later, later))
    printed = invoke(reproduce, capsys, *args)
    assert printed.count("reproduce.py: reused ") == 3
    assert printed.count("+ genlab evaluate ") == 2


def test_update_results_replaces_only_its_section(reproduce: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text(
        "# Intro\n\n<!-- results:one_class:quick -->\nold\n<!-- /results:one_class:quick -->\n\n"
        "<!-- results:likelihood:quick -->\nother\n<!-- /results:likelihood:quick -->\n"
    )
    reproduce.update_results(path, "one_class", "quick", "new table\n")
    reproduce.update_results(path, "one_class", "full", "full table\n")
    text = path.read_text()
    assert "old" not in text and "new table" in text
    assert "<!-- results:likelihood:quick -->\nother\n<!-- /results:likelihood:quick -->" in text
    assert text.endswith(
        "<!-- results:one_class:full -->\nfull table\n<!-- /results:one_class:full -->\n"
    )
    reproduce.update_results(path, "one_class", "quick", "newer\n")
    assert path.read_text().count("<!-- results:one_class:quick -->") == 1


def test_repository_results_file_has_every_section(reproduce: ModuleType) -> None:
    text = (REPO / "docs" / "results.md").read_text()
    for table in reproduce.TABLES:
        for budget in ("quick", "full"):
            assert f"<!-- results:{table}:{budget} -->" in text
            assert f"<!-- /results:{table}:{budget} -->" in text
    assert "docs/results.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize(
    "args", [["nope", "--budget", "smoke"], ["likelihood", "--budget", "huge"], ["likelihood"]]
)
def test_bad_table_or_budget_is_an_argparse_error(
    reproduce: ModuleType, args: list[str], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stopped:
        reproduce.main(args)
    assert stopped.value.code == 2
    assert "usage: reproduce.py" in capsys.readouterr().err


def test_missing_mnist_for_quick_says_where_and_what_to_pass(
    reproduce: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = reproduce.main(["one_class", "--budget", "quick", "--mnist", str(empty)])
    err = capsys.readouterr().err
    assert code == 1
    assert str(empty) in err and "train-images-idx3-ubyte" in err and "--mnist" in err
    monkeypatch.setattr(reproduce, "MNIST_CANDIDATES", (tmp_path / "a", tmp_path / "b"))
    code = reproduce.main(["likelihood", "--budget", "full", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and str(tmp_path / "a") in err and str(tmp_path / "b") in err
    assert not (tmp_path / "o" / "runs").exists()


def test_smoke_without_mnist_writes_embedded_digits_as_idx(
    reproduce: ModuleType, tmp_path: Path
) -> None:
    from genlab.data.readers import read_idx

    folder = reproduce.find_mnist(None, "smoke", tmp_path)
    assert folder == (tmp_path / "data" / "mnist").resolve()
    images = read_idx(folder / "train-images-idx3-ubyte")
    labels = read_idx(folder / "train-labels-idx1-ubyte")
    test_labels = read_idx(folder / "t10k-labels-idx1-ubyte")
    assert images.shape == (10 * reproduce.SMOKE_TRAIN_PER_CLASS, 28, 28)
    assert images.max() > 200  # real digits, not blank
    assert np.bincount(labels).tolist() == [reproduce.SMOKE_TRAIN_PER_CLASS] * 10
    assert np.bincount(test_labels).tolist() == [reproduce.SMOKE_TEST_PER_CLASS] * 10
