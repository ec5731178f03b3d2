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

import gc
from typing import Final

#: Allocations (net of deallocations) between two first-generation collections.
FIRST_GENERATION: Final = 100_000


def tune() -> None:
    """Collect cycles less often; see the module docstring."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION, second, third)
