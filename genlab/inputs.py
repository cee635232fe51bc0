"""Checks of the files a command is given, made before torch or Lightning are imported, so
that a mistyped path is answered at once (importing torch alone takes seconds here)."""

from __future__ import annotations

from pathlib import Path

from genlab.errors import CheckpointError


def check_checkpoint_file(path: Path) -> None:
    """A clear error for a path that is not a file: missing, or a directory (a run
    directory given where its checkpoint was meant, most likely)."""
    if path.is_dir():
        inside = [path / "checkpoints" / "last.ckpt", path / "last.ckpt"]
        found = next((c for c in inside if c.is_file()), None)
        hint = (
            f"did you mean {found}?"
            if found is not None
            else "pass the path of a .ckpt file inside it, e.g. RUN_DIR/checkpoints/last.ckpt"
        )
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file; {hint}")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass ckpt=PATH to a .ckpt file written by "
            "genlab train, e.g. outputs/train/DATE/TIME/checkpoints/last.ckpt"
        )
