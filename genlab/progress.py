"""Progress of a command's long phases.

Before each heavy phase a command prints one line saying what it computes and on how many
images; during it, a bar in Lightning's style (done/total, elapsed<time left, rate) on
stderr. The line goes wherever the output goes, a log file included, since it is the only
word on what a silent command is doing; the bar only to a terminal, since its carriage
returns would garble a file. ``quiet=true`` (``genlab COMMAND --quiet``) silences both.

    progress = Progress("evaluate", quiet=cfg.quiet)
    for x in progress.batches(images, total=10000, phase="likelihood", what="..."):
        ...
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sized
from typing import Any

from tqdm import tqdm

# Lightning's TQDMProgressBar.BAR_FORMAT: the rate as items per second, not seconds per item.
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


def on_terminal() -> bool:
    """Whether stderr, where the bars go, is a terminal (looked up at each call, so that a
    redirected stderr is honoured; tests replace this function to simulate a terminal)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """The announcements and bars of one command run (``genlab <command>``)."""

    def __init__(self, command: str, *, quiet: bool = False) -> None:
        self.command = command
        self.quiet = bool(quiet)

    def announce(self, message: str) -> None:
        """One line on stdout, unless quiet."""
        if not self.quiet:
            print(f"genlab {self.command}: {message}", flush=True)

    def bar(self, phase: str, *, total: int, unit: str = "img") -> tqdm:
        """A bar of ``total`` units for ``phase``; a silent one when quiet or off a terminal
        (tqdm's disabled bar still takes ``update``, so callers need no branch)."""
        return tqdm(
            total=total,
            desc=phase,
            unit=unit,
            disable=self.quiet or not on_terminal(),
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format=BAR_FORMAT,
            # Left on screen when done: its elapsed time is what the phase cost.
            leave=True,
        )

    def phase(self, phase: str, what: str, *, total: int, unit: str = "img") -> tqdm:
        """Announce ``phase: what`` and return its bar (use it as a context manager)."""
        self.announce(f"{phase}: {what}")
        return self.bar(phase, total=total, unit=unit)

    def batches(
        self, items: Iterable[Sized], *, total: int, phase: str, what: str
    ) -> Iterator[Any]:
        """``items`` (batches of images), announced and counted image by image."""
        with self.phase(phase, what, total=total) as bar:
            for batch in items:
                yield batch
                bar.update(len(batch))
