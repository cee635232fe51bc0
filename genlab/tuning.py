"""Process settings that make training on a CPU faster, applied by the command line.

glibc's allocator hands large blocks (a conv layer's activations, a few MiB each) back to
the system when they are freed and maps them afresh at the next step, and trims the heap's
top as it shrinks: each step then pays page faults for memory it had a moment ago. Keeping
blocks up to 32 MiB (glibc's largest mmap threshold) on the heap and trimming only past
1 GiB made conv_ae train 25% faster here (scripts/bench_train.py --model conv_ae: 1,045 ->
1,304 img/s for the plain loop, 1,018 -> 1,271 through genlab, in one sitting). The price
is memory the process keeps after a peak instead of returning it, at most about the trim
threshold.

Applied by ``genlab`` (the CLI) only, not by ``import genlab`` in a user's own process. Set
``GENLAB_MALLOC_TUNING=0`` to leave the allocator as it is; glibc's own ``MALLOC_*``
environment variables, when set, are left to rule.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt's parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc refuses more than half its 64 MiB heap size
TRIM_THRESHOLD = 2**30
OPT_OUT = "GENLAB_MALLOC_TUNING"


def tune_allocator() -> bool:
    """Applies the settings above where glibc is the allocator; True when applied."""
    if os.environ.get(OPT_OUT, "1") == "0":
        return False
    if any(key.startswith("MALLOC_") for key in os.environ):
        return False  # the user's own glibc settings
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
