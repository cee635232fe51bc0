"""The `genlab` command line: the help screen, errors a user can act on, config errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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

    assert query("genlab tr").split() == ["train"]
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
