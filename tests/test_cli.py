"""The `genlab` command line: the help screen, errors a user can act on, config errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, make_idx_dataset, run_genlab


def test_help_lists_commands_without_importing_torch() -> None:
    code = (
        "import sys, genlab.cli\n"
        "rc = genlab.cli.main(['--help'])\n"
        "assert 'torch' not in sys.modules, 'genlab --help imported torch'\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout
    assert "e.g. genlab train" in result.stdout


def test_bare_genlab_and_dash_h_print_usage(tmp_path: Path) -> None:
    for args in ([], ["-h"], ["--help"]):
        result = run_genlab(*args, cwd=tmp_path)
        assert result.returncode == 0
        assert "usage: genlab <command>" in result.stdout


def test_unknown_command_is_an_error(tmp_path: Path) -> None:
    result = run_genlab("trian", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown command 'trian'" in result.stderr
    assert "train" in result.stderr


def test_unknown_model_lists_the_available_ones(tmp_path: Path) -> None:
    result = run_genlab("train", "model=nonexistent", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'model/nonexistent'" in result.stderr
    for name in ("ae", "conv_ae", "contractive_ae", "deep_ae", "denoising_ae", "sparse_ae"):
        assert name in result.stderr


def test_train_help_and_cfg_job(tmp_path: Path) -> None:
    from genlab.commands.common import CONFIG_DIR

    result = run_genlab("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    models = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
    assert f"model: {', '.join(models)}" in result.stdout
    result = run_genlab("train", "model=sparse_ae", "model.rho=0.1", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0
    assert "genlab.models.SparseAutoencoder" in result.stdout
    assert "rho: 0.1" in result.stdout


def test_missing_data_files_get_an_actionable_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_genlab("train", "data=mnist", f"data.root={missing}", *FAST, cwd=tmp_path)
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "train-images-idx3-ubyte" in result.stderr
    assert "data.download=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_truncated_idx_file_is_named_in_the_error(tmp_path: Path) -> None:
    root = make_idx_dataset(tmp_path / "mnist", compress=False)
    images = root / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    result = run_genlab("train", "data=mnist", f"data.root={root}", *FAST, cwd=tmp_path)
    assert result.returncode != 0
    assert "train-images-idx3-ubyte" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_model_value_is_reported_without_traceback(tmp_path: Path) -> None:
    result = run_genlab("train", "model=ae", "model.loss=hinge", *FAST, cwd=tmp_path)
    assert result.returncode != 0
    assert "model.loss='hinge'" in result.stderr
    assert "Traceback" not in result.stderr


def test_folder_dataset_needs_a_root(tmp_path: Path) -> None:
    result = run_genlab("train", "data=folder", *FAST, cwd=tmp_path)
    assert result.returncode != 0
    assert "data.root" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_resume_checkpoint(tmp_path: Path) -> None:
    result = run_genlab("train", "ckpt_path=nope.ckpt", *FAST, cwd=tmp_path)
    assert result.returncode != 0
    assert "ckpt_path=nope.ckpt does not exist" in result.stderr


def test_unknown_class_filter(tmp_path: Path) -> None:
    root = make_idx_dataset(tmp_path / "mnist")
    result = run_genlab(
        "train", "data=mnist", f"data.root={root}", "data.classes=[3,12]", *FAST, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "data.classes has 12" in result.stderr


def test_shell_completion_knows_commands_and_groups(tmp_path: Path) -> None:
    import os

    def query(line: str) -> str:
        env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
        genlab = Path(sys.executable).with_name("genlab")
        return subprocess.run(
            [str(genlab), "-sc", "query=bash"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert query("genlab tr").split() == ["train", "translate"]
    assert query("genlab ev").split() == ["evaluate"]
    assert "model=sparse_ae" in query("genlab train model=").split()
    assert "model.rho=" in query("genlab train model=sparse_ae model.r").split()
    # A checkpoint command offers the groups it takes (data=), not train's (model=).
    offered = query("genlab sample ").split()
    assert "data=" in offered and "ckpt=" in offered
    assert not any(w.startswith(("model", "trainer", "optimizer")) for w in offered)


def test_checkpoint_command_help_lists_only_its_groups(tmp_path: Path) -> None:
    result = run_genlab("sample", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "data: " in result.stdout
    for group in ("model:", "trainer:", "optimizer:", "callbacks:"):
        assert group not in result.stdout
    install = subprocess.run(
        [str(Path(sys.executable).with_name("genlab")), "-sc", "install=bash"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert install.stdout.rstrip().endswith("hydra_bash_completion genlab")


# Bad command-line values of the checkpoint commands: one line, exit 1, before torch loads.

REFUSE_WITHOUT_TORCH = (
    "import sys, genlab.cli\n"
    "try:\n"
    "    rc = genlab.cli.main(sys.argv[1:])\n"
    "except SystemExit as stop:\n"
    "    rc = stop.code\n"
    "assert 'torch' not in sys.modules, 'torch was imported'\n"
    "sys.exit(rc)\n"
)


@pytest.mark.parametrize(
    ("command", "option", "message"),
    [
        ("sample", "n=abc", "n must be an integer (got 'abc'); e.g. n=64"),
        ("sample", "seed=abc", "seed must be an integer (got 'abc'); e.g. seed=0"),
        ("sample", "n=0", "n must be at least 1 (got 0)"),
        ("sample", "mode=grid", "mode='grid' is not one of prior, manifold"),
        ("interpolate", "steps=abc", "steps, the points on each path, must be an integer"),
        ("interpolate", "steps=1", "steps, the points on each path, must be at least 2 (got 1)"),
        ("arithmetic", "plus.label=abc", "plus.label, a class, must be an integer or null"),
        ("embed", "method=umap", "method='umap' is not one of pca, tsne"),
        ("evaluate", "k=abc", "k, the importance samples per image, must be an integer or null"),
        ("evaluate", "batch_size=abc", "batch_size must be an integer (got 'abc')"),
        ("anomaly", "batch_size=2.5", "batch_size must be an integer (got 2.5)"),
    ],
)
def test_bad_option_values_are_refused_before_torch_is_imported(
    tmp_path: Path, command: str, option: str, message: str
) -> None:
    # The checkpoint does not exist either: the option is checked first, at once.
    result = subprocess.run(
        [sys.executable, "-c", REFUSE_WITHOUT_TORCH, command, "ckpt=missing.ckpt", option],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert f"genlab {command}: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_files_and_bad_training_values_are_answered_without_torch(
    tmp_path: Path,
) -> None:
    # Each in a fresh process, as a user meets it: one line, exit 1, torch never imported.
    (tmp_path / "a-run").mkdir()
    cases = [
        (["sample", "ckpt=missing.ckpt"], "checkpoint missing.ckpt does not exist"),
        (["evaluate", f"ckpt={tmp_path / 'a-run'}"], "is a directory, not a checkpoint file"),
        (["translate", "ckpt=missing.ckpt", "input=x"], "checkpoint missing.ckpt does not"),
        (["train", "trainer.max_epochs=abc"], "trainer.max_epochs must be an integer"),
        (["train", "ckpt_path=missing.ckpt"], "ckpt_path=missing.ckpt does not exist"),
        (["train", "resume=no-such-run"], "resume=no-such-run: no-such-run/checkpoints"),
    ]
    for args, message in cases:
        result = subprocess.run(
            [sys.executable, "-c", REFUSE_WITHOUT_TORCH, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    # A run directory that cannot be resumed is not created by the refused run.
    assert not (tmp_path / "no-such-run").exists()


# The run directory.


def test_a_run_directory_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args in (
        ["train", f"hydra.run.dir={blocker}/run"],
        ["sample", "ckpt=x.ckpt", f"++hydra.run.dir={blocker}/sub/run"],
        ["train", "-m", "model=ae,vae", f"hydra.sweep.dir={blocker}/" + "${now:%H}"],
    ):
        result = subprocess.run(
            [sys.executable, "-c", REFUSE_WITHOUT_TORCH, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert f"genlab {args[0]}: error: cannot create the run directory under" in result.stderr
        assert f"{blocker} is a file, not a folder" in result.stderr
        key = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
        assert f"pass {key}=DIR" in result.stderr
        assert "Traceback" not in result.stderr


def test_an_unwritable_output_folder_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genlab.cli import run_dir_problem

    # Tests run as root, whom permission bits do not stop: os.access stands in for them.
    monkeypatch.setattr("genlab.cli.os.access", lambda path, mode: Path(path) != tmp_path)
    problem = run_dir_problem("train", ["model=ae"], cwd=tmp_path)
    assert problem == (
        f"cannot create the run directory under {tmp_path / 'outputs' / 'train'}: {tmp_path} "
        "is not writable (permission denied); run genlab from a writable folder or pass "
        "hydra.run.dir=DIR"
    )
    assert str(tmp_path / "outputs" / "multirun" / "sample") in run_dir_problem(
        "sample", ["-m", "n=1,2"], cwd=tmp_path
    )
    # Elsewhere, or where nothing is created, nothing is in the way.
    elsewhere = tmp_path.parent / "elsewhere"
    assert run_dir_problem("train", [f"hydra.run.dir={elsewhere}"], cwd=tmp_path) is None
    assert run_dir_problem("train", ["--cfg", "job"], cwd=tmp_path) is None
    assert run_dir_problem("train", ["--help"], cwd=tmp_path) is None


# Failed runs and sweeps.


def test_a_failed_run_ends_its_log_with_the_error(tmp_path: Path) -> None:
    result = run_genlab("train", "model=ae", "model.latent_dim=0", *FAST, cwd=tmp_path)
    assert result.returncode == 1
    assert "genlab train: error: model.latent_dim must be at least 1" in result.stderr
    (log,) = (tmp_path / "outputs" / "train").glob("*/*/train.log")
    last = log.read_text().strip().splitlines()[-1]
    assert "[ERROR] - genlab train: error: model.latent_dim must be at least 1 (got 0)" in last


def test_a_sweep_runs_every_job_and_reports_the_failed_one(tmp_path: Path) -> None:
    root = make_idx_dataset(tmp_path / "mnist", n_train=40, n_test=10)
    result = run_genlab(
        "train",
        "-m",
        "model=ae",
        "model.latent_dim=2,0,4",
        "data=mnist",
        f"data.root={root}",
        *FAST,
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "test=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    sweep = tmp_path / "sweep"
    # Jobs 0 and 2 trained in spite of job 1.
    for job in ("0", "2"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file(), job
        assert not (sweep / job / "error.txt").exists()
    error = "model.latent_dim must be at least 1 (got 0)"
    assert error in (sweep / "1" / "error.txt").read_text()
    assert error in (sweep / "1" / "train.log").read_text().strip().splitlines()[-1]
    summary = result.stderr[result.stderr.index("jobs of the sweep failed") :]
    assert "genlab train: 1 of 3 jobs of the sweep failed" in result.stderr
    assert "#1 model=ae model.latent_dim=0" in summary and error in summary
    assert str(sweep / "1" / "error.txt") in summary


def test_a_crashed_sweep_job_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from genlab.commands.common import FailedJobs

    def job(num: int, exc: Exception | None) -> tuple:
        config = OmegaConf.create(
            {
                "task": "train",
                "hydra": {
                    "mode": RunMode.MULTIRUN,
                    "runtime": {"output_dir": str(tmp_path / str(num))},
                    "job": {"num": num},
                },
            }
        )
        (tmp_path / str(num)).mkdir()
        done = JobReturn(overrides=[f"model.latent_dim={num}"])
        done.status = JobStatus.FAILED if exc else JobStatus.COMPLETED
        done.return_value = exc
        return config, done

    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        bug = exc
    report = FailedJobs()
    report.on_multirun_start(config=OmegaConf.create())
    for num, exc in ((0, None), (1, bug)):
        config, done = job(num, exc)
        report.on_job_end(config=config, job_return=done)
        # Handled, so that Hydra goes on to the summary instead of re-raising it.
        assert done.status == JobStatus.COMPLETED
    written = (tmp_path / "1" / "error.txt").read_text()
    assert "Traceback" in written and "RuntimeError: a bug" in written
    with pytest.raises(SystemExit) as stop:
        report.on_multirun_end(config=config)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "genlab train: 1 of 2 jobs of the sweep failed" in err
    assert "#1 model.latent_dim=1" in err and "RuntimeError: a bug" in err


@pytest.mark.parametrize("fast", ["1", "0"])
def test_the_console_script_exits_with_the_code_after_atexit_and_flushed_output(
    tmp_path: Path, fast: str
) -> None:
    """`genlab` (genlab.cli.run) skips the interpreter's teardown but not the atexit
    handlers, buffered output or the exit code; GENLAB_FAST_EXIT=0 exits the usual way."""
    marker = tmp_path / "atexit_ran"
    worker = tmp_path / "thread_finished"
    code = (
        "import atexit, sys, time, pathlib, genlab.cli\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
        # Work left in a thread pool finishes first, as at the interpreter's own exit
        # (the hang a joblib sweep met when threads were not joined before atexit).
        "pool = ThreadPoolExecutor(1)\n"
        f"pool.submit(lambda: (time.sleep(0.2), pathlib.Path({str(worker)!r}).write_text('ok')))\n"
        "sys.stdout.write('buffered, no newline')\n"
        "sys.argv = ['genlab', sys.argv[1]]\n"
        "genlab.cli.run()\n"
    )
    env = {**__import__("os").environ, "GENLAB_FAST_EXIT": fast}
    for command, expected in (("--help", 0), ("no-such-command", 2)):
        marker.unlink(missing_ok=True)
        worker.unlink(missing_ok=True)
        result = subprocess.run(
            [sys.executable, "-c", code, command],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert result.returncode == expected, result.stderr
        assert result.stdout.startswith("buffered, no newline")
        assert marker.read_text() == "yes"
        assert worker.read_text() == "ok"
    assert "unknown command 'no-such-command'" in result.stderr


def test_the_fast_exit_waits_for_the_processes_it_started(tmp_path: Path) -> None:
    """With a child process still running (a DDP rank finishing) the console script exits
    the usual way; without one, it knows it has none."""
    import genlab.cli

    assert genlab.cli._has_live_children() is False
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert genlab.cli._has_live_children() is True
    finally:
        child.kill()
        child.wait()
    assert genlab.cli._has_live_children() is False
