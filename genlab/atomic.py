"""Files written whole or not at all.

Every file genlab writes goes to a temporary file in the same directory, is flushed to disk,
and is renamed over its target: a crash, a kill or a full disk leaves either the previous
file or the new one, never a torn one. A rename within one directory is atomic on POSIX
filesystems, unlike a move from $TMPDIR, which is a copy when it crosses filesystems.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from genlab.errors import OutputError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write it inside the block. On success it is
    synced and renamed to ``path``; on any error it is removed and ``path`` is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc}; check that {path.parent} exists and "
            "is writable, or point the outputs elsewhere (hydra.run.dir=DIR)"
        ) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(
                f"disk full while writing {path}: nothing was changed there (a previous "
                f"version, if any, is intact); free space in {path.parent} and run again"
            ) from None
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2) + "\n")
