"""Progress of long work: a line before each heavy phase, a bar with a rate and the time
left on a terminal (simulated here), nothing under quiet=true or `--quiet`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_CLASSIFIER, TINY_VAE, run_in_process, train_checkpoint
from omegaconf import OmegaConf

import genlab
import genlab.cli
from genlab import progress
from genlab.progress import Progress


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr counts as a terminal, as when a user runs genlab in a shell."""
    monkeypatch.setattr(progress, "on_terminal", lambda: True)


def test_a_phase_is_announced_and_counted_on_a_terminal(
    terminal: None, capsys: pytest.CaptureFixture
) -> None:
    batches = [list(range(10))] * 3
    seen = list(Progress("evaluate").batches(batches, total=30, phase="score", what="30 images"))
    assert seen == batches
    out, err = capsys.readouterr()
    assert out == "genlab evaluate: score: 30 images\n"
    # Lightning's bar: done/total, elapsed<left, a rate.
    assert "score: 100%" in err and "30/30 [" in err and "<00:00" in err and "img/s]" in err


def test_off_a_terminal_only_the_line_is_printed(capsys: pytest.CaptureFixture) -> None:
    # capsys' stderr is not a terminal, as when the output goes to a file or a pipe.
    with Progress("anomaly").phase("scoring", "5 images", total=5) as bar:
        bar.update(5)
    out, err = capsys.readouterr()
    assert out == "genlab anomaly: scoring: 5 images\n"
    assert err == ""


def test_quiet_prints_nothing_even_on_a_terminal(
    terminal: None, capsys: pytest.CaptureFixture
) -> None:
    quiet = Progress("embed", quiet=True)
    quiet.announce("t-SNE: a map")
    assert len(list(quiet.batches([[1, 2]], total=2, phase="encoding", what="2"))) == 1
    assert capsys.readouterr() == ("", "")


@pytest.fixture(scope="module")
def vae_ckpt(workdir: Path) -> Path:
    return train_checkpoint(workdir, *TINY_VAE)


@pytest.fixture(scope="module")
def classifier_ckpt(workdir: Path) -> Path:
    return train_checkpoint(workdir, *TINY_CLASSIFIER)


# Each command's long phases, and the line that announces one of them.
COMMANDS = {
    "evaluate": (
        ["k=5", "features=CLASSIFIER", "num_samples=30", "probe=true"],
        ["reconstruction", "likelihood", "sampling", "features (real)", "metrics"],
        "likelihood: the ELBO and the log p(x) bound with k=5 importance samples on 40",
    ),
    "anomaly": ([], ["scoring"], "scoring: the reconstruction error and the −ELBO"),
    "embed": (["method=tsne"], ["encoding"], "t-SNE: a 2-D map of 40 codes of dimension 4"),
    "sample": (["n=30", "classify=CLASSIFIER"], ["classify"], "classify: the classes of the 30"),
}


def command_run(workdir: Path, command: str, ckpts: dict[str, Path], *extra: str):
    options, _, _ = COMMANDS[command]
    options = [o.replace("CLASSIFIER", str(ckpts["classifier"])) for o in options]
    run, result = run_in_process(workdir, command, f"ckpt={ckpts['vae']}", *options, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_shows_progress_on_a_terminal_and_none_when_quiet(
    workdir: Path, vae_ckpt: Path, classifier_ckpt: Path, terminal: None, command: str
) -> None:
    ckpts = {"vae": vae_ckpt, "classifier": classifier_ckpt}
    _, phases, line = COMMANDS[command]
    shown = command_run(workdir, command, ckpts)
    assert f"genlab {command}: {line}" in shown.stdout
    for phase in phases:
        assert f"{phase}: 100%" in shown.stderr, phase
    assert "/s]" in shown.stderr

    quiet = command_run(workdir, command, ckpts, "quiet=true")
    assert "100%" not in quiet.stderr
    assert line not in quiet.stdout
    # Only the progress goes: the results are still printed.
    assert f"genlab {command}:" in quiet.stdout


def test_quiet_must_be_a_boolean(workdir: Path, vae_ckpt: Path) -> None:
    _, result = run_in_process(workdir, "embed", f"ckpt={vae_ckpt}", "quiet=maybe")
    assert result.returncode == 1
    assert "quiet must be true or false (got 'maybe')" in result.stderr


@pytest.mark.parametrize(
    ("command", "key", "value"),
    [
        ("evaluate", "quiet", True),
        ("embed", "quiet", True),
        ("train", "trainer.enable_progress_bar", False),
    ],
)
def test_dash_dash_quiet_reaches_the_command_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, key: str, value: bool
) -> None:
    """`genlab COMMAND ... --quiet` through the dispatcher, up to the composed config."""
    handed: list[list[str]] = []
    monkeypatch.setattr(genlab.cli, "_run_app", lambda name, args: handed.append(args))
    monkeypatch.chdir(tmp_path)
    args = [] if command == "train" else ["ckpt=x.ckpt"]
    assert genlab.cli.main([command, "--quiet", *args]) == 0
    (given,) = handed
    assert "--quiet" not in given
    cfg = genlab.compose(command, given, output_dir=tmp_path / "run")
    assert OmegaConf.select(cfg, key) is value
    # Without the flag the command keeps its default.
    assert genlab.cli.with_quiet(command, args) == args
