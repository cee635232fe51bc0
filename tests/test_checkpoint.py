"""genlab.checkpoint's reader on what users pass as ckpt=: directories, text, random bytes,
truncated files. Each is one clear message; none suggests weights_only=False."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_genlab

from genlab.checkpoint import read_checkpoint
from genlab.errors import CheckpointError


def test_a_run_directory_is_named_as_one_with_its_checkpoint_suggested(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file") as error:
        read_checkpoint(run)
    assert "does not exist" not in str(error.value)
    assert "RUN_DIR/checkpoints/last.ckpt" in str(error.value)
    # The checkpoint a user most likely meant, where there is one.
    for inside in (run / "last.ckpt", run / "checkpoints" / "last.ckpt"):
        inside.write_bytes(b"")
        with pytest.raises(CheckpointError, match=f"did you mean {inside}"):
            read_checkpoint(run)


def torch_file() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.randn(64, 64)}, "epoch": 3}, buffer)
    return buffer.getvalue()


UNREADABLE = {
    "text": b"epoch: 3\nloss: 0.25\n",
    "one line of text": b"not a checkpoint at all",
    "json": b'{"state_dict": {}}\n',
    "empty": b"",
    **{f"random bytes {seed}": np.random.default_rng(seed).bytes(3000) for seed in range(6)},
    "truncated torch file": torch_file()[:5000],
    "torch file cut in its header": torch_file()[:40],
}


@pytest.mark.parametrize("content", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_file_torch_cannot_read_is_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path} is not a readable checkpoint: not a torch checkpoint")
    assert f"({len(content)} bytes)" in message
    # torch's advice would let the file run code: genlab never repeats it.
    assert "weights_only" not in message


def test_the_commands_say_so_without_a_traceback(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    result = run_genlab("sample", f"ckpt={text}", cwd=tmp_path)
    assert result.returncode == 1
    assert f"genlab sample: error: {text} is not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and "weights_only" not in result.stderr
    result = run_genlab("embed", f"ckpt={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1
    assert f"checkpoint {tmp_path} is a directory" in result.stderr
