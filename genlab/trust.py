"""Which modules a checkpoint may name.

A checkpoint is data from outside. Its stored config names classes (``_target_``) for the
model, its networks and its data; genlab builds them only when each one lies in genlab itself
or in a module the user trusted explicitly, and checks that before importing anything. Three
ways to trust a module (a package trusts its submodules):

- the ``trusted_modules=[mymodels]`` key, which every command accepts;
- the environment variable ``GENLAB_TRUSTED_MODULES=mymodels,other``;
- an entry point in the group ``genlab.models`` of an installed package's metadata, e.g. in
  its pyproject.toml: ``[project.entry-points."genlab.models"] lsgan = "mymodels.lsgan"``
  (the value's module part, before any ``:``, is trusted).

Kept free of torch so commands can check trust before the heavy imports.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from typing import Any

from genlab.errors import CheckpointError

ENV_VAR = "GENLAB_TRUSTED_MODULES"
ENTRY_POINT_GROUP = "genlab.models"
BUILT_IN = ("genlab",)


def _names(values: Iterable[Any]) -> list[str]:
    return [str(v).strip() for v in values if str(v).strip()]


def trusted_modules(extra: Iterable[str] | None = None) -> tuple[str, ...]:
    """genlab, then the modules given by ``extra`` (the ``trusted_modules`` key), the
    environment variable and the installed entry points."""
    names = [*BUILT_IN, *_names(extra or [])]
    names += _names(os.environ.get(ENV_VAR, "").split(","))
    names += _names(ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP))
    return tuple(dict.fromkeys(names))


def training_only(value: Any) -> bool:
    """Optimizer factories (``_partial_: true`` nodes) serve training only: the checkpoint
    commands leave them out, so they need no trust to load a checkpoint."""
    return isinstance(value, dict) and bool(value.get("_partial_"))


def is_trusted(target: str, trusted: Iterable[str]) -> bool:
    """Whether the dotted path ``target`` lies in (or is) one of the ``trusted`` modules."""
    return any(target == t or target.startswith(t + ".") for t in trusted)


def targets(config: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (key path, ``_target_``) in a nested plain config."""
    if isinstance(config, dict):
        target = config.get("_target_")
        if target is not None:
            yield path or "<root>", str(target)
        for key, value in config.items():
            yield from targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(config, list | tuple):
        for i, value in enumerate(config):
            yield from targets(value, f"{path}[{i}]")


def check_trusted(config: Any, trusted: Iterable[str], *, source: str) -> None:
    """Refuse ``config`` (from ``source``, a checkpoint's path) when any ``_target_`` in it
    lies outside the trusted modules. Nothing is imported."""
    trusted = tuple(trusted)
    untrusted = [(key, t) for key, t in targets(config) if not is_trusted(t, trusted)]
    if not untrusted:
        return
    listing = ", ".join(f"{key}: {target}" for key, target in untrusted)
    modules = sorted({t.split(".")[0] for _, t in untrusted})
    raise CheckpointError(
        f"refused to load {source}: it names classes outside genlab and the trusted modules "
        f"({listing}); genlab imports nothing a checkpoint names unless you trust its module. "
        f"If you wrote it, trust it with trusted_modules=[{','.join(modules)}] or "
        f"{ENV_VAR}={','.join(modules)}, or install it with a '{ENTRY_POINT_GROUP}' entry point"
    )
