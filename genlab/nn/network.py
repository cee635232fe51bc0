"""A network that remembers how it was built.

Models take their networks ready made (from a config node with its own ``_target_``, or
from Python). A checkpoint must say how to rebuild them; for a run of ``genlab train`` the
run's config does, and for a model built in Python each ``Network`` describes itself:
its class and the keyword arguments it was built with, nested networks included.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn


def _described(value: Any) -> Any:
    if isinstance(value, Network):
        return value.build_config()
    if isinstance(value, tuple | list):
        return [_described(v) for v in value]
    if isinstance(value, dict):
        return {k: _described(v) for k, v in value.items()}
    return value


class Network(nn.Module):
    """Base of genlab's networks; subclasses take keyword arguments only."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__init__

        @functools.wraps(init)
        def recording_init(self: Network, *args: Any, **kw: Any) -> None:
            if args:
                raise TypeError(f"{cls.__name__} takes keyword arguments only")
            init(self, **kw)
            # The outermost class records: a subclass's arguments, not its parent's.
            if type(self) is cls:
                self.__dict__["_build_kwargs"] = dict(kw)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def build_config(self) -> dict[str, Any]:
        """``{"_target_": class path, **keyword arguments}``: instantiating it rebuilds an
        untrained copy of this network."""
        cls = type(self)
        kwargs = self.__dict__.get("_build_kwargs", {})
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **_described(kwargs)}


def describe(module: nn.Module) -> dict[str, Any] | None:
    """The build config of a genlab ``Network``; None for other modules."""
    return module.build_config() if isinstance(module, Network) else None
