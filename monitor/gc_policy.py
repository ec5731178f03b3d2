"""How often the interpreter's cyclic garbage collector runs in ``run``, ``replay`` and
``tune``.

The processing loop allocates tens of thousands of short-lived containers per poll
(decoded events, column lists, tuples); with CPython's default first-generation threshold
of 700 allocations the collector runs hundreds of times a second, and every older
generation's pass walks each long-lived object again. Nothing on the hot path makes
reference cycles (everything it allocates is freed by reference counting), so collecting
a hundred times less often costs no memory and measured 1.2x the core's throughput
(``bench/core_profile.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from typing import Final

#: Allocations (net of deallocations) between two first-generation collections.
FIRST_GENERATION: Final = 100_000


#: Allocations at least this large are mapped on their own and unmapped when freed.
MMAP_THRESHOLD: Final = 128 * 1024


def tune() -> None:
    """Collect cycles less often; see the module docstring. With glibc, also pin the
    allocator's mmap threshold at 128 KiB (its default, which glibc otherwise raises as
    large blocks are freed): messages and strings that large then go back to the OS once
    freed, so a flood of large messages (rejected ones included) leaves no resident heap
    behind. The environment's ``MALLOC_MMAP_THRESHOLD_`` wins when set."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION, second, third)
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


_M_MMAP_THRESHOLD: Final = -3  # glibc's malloc.h
