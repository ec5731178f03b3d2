"""How the interpreter's memory is managed in ``run``, ``replay`` and ``tune``: how often
the cyclic garbage collector runs, and when glibc's allocator gives freed memory back.

The processing loop allocates tens of thousands of short-lived containers per poll
(decoded events, column lists, tuples); with CPython's default first-generation threshold
of 700 allocations the collector runs hundreds of times a second, and every older
generation's pass walks each long-lived object again. Nothing on the hot path makes
reference cycles (everything it allocates is freed by reference counting), so collecting
a hundred times less often costs no memory and measured 1.2x the core's throughput
(``bench/core_profile.py``).

Each poll also makes numpy arrays of a few hundred KiB (a column of 5,000 events and the
terms made from it). glibc maps an allocation of at least its mmap threshold on its own
and unmaps it when freed; with the threshold at 128 KiB, every such array cost fresh
zeroed pages from the kernel, poll after poll (about a tenth of a replay's time). The
threshold is pinned at 4 MiB instead, so they reuse the heap, and the heap's free top is
given back only beyond 16 MiB (glibc's trim threshold, 128 KiB by default: a poll's
arrays freed at the top would go back to the kernel and come again as fresh pages at the
next poll; together a sixth of a replay's time). What a hostile input could
leave behind in that heap (a flood of messages of hundreds of KiB, rejected ones
included) is given back by :func:`release`, which ``run`` calls after a poll that held a
message of :data:`LARGE_MESSAGE` bytes or more, once its messages are freed, and again at
the first tick that finds every output delivered (the dead letters that copy such
messages are freed only once the producer has sent them); and at the first tick after a
model leaves its drift warmup (the raw predictions it held, tens of MB at a high rate,
are freed then).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from collections.abc import Sequence
from typing import Any, Final

from monitor import native

#: Allocations (net of deallocations) between two first-generation collections.
FIRST_GENERATION: Final = 100_000

#: Allocations at least this large are mapped on their own and unmapped when freed.
MMAP_THRESHOLD: Final = 4 << 20

#: Free memory at the top of the heap beyond this much goes back to the operating system.
TRIM_THRESHOLD: Final = 16 << 20

#: A poll that held a message at least this large is followed by :func:`release` in ``run``.
LARGE_MESSAGE: Final = 128 << 10


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC: Final = _libc()


def tune() -> None:
    """Collect cycles less often, and with glibc pin the allocator's mmap threshold at
    :data:`MMAP_THRESHOLD` (glibc otherwise moves it as large blocks are freed) and its trim
    threshold at :data:`TRIM_THRESHOLD`; see the module docstring. The environment's
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` win when set."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION, second, third)
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is None:
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def holds_large(values: Sequence[bytes | None]) -> bool:
    """Whether a poll's message ``values`` hold one of :data:`LARGE_MESSAGE` bytes or more
    (then :func:`release` is worth calling once they are freed)."""
    kernels = native.kernels()
    if kernels is not None:
        try:  # one C loop over the poll (the generic one below is ~1 % of a busy daemon)
            return bool(kernels.longest(values) >= LARGE_MESSAGE)
        except TypeError:  # values that are not bytes: measured as below
            pass
    return max(map(len, filter(None, values)), default=0) >= LARGE_MESSAGE


def release() -> bool:
    """Give the heap's free memory back to the operating system (glibc's ``malloc_trim``);
    whether the allocator can (not every libc has it)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


_M_TRIM_THRESHOLD: Final = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD: Final = -3
