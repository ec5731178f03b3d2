"""The fuzz budget: a few seconds in the suite, longer with ``MONITOR_FUZZ_EXAMPLES``.

``bench/fuzz.py`` sets the variable and runs the fuzz tests; any test here reads
:func:`examples` for its ``max_examples``.
"""

from __future__ import annotations

import os


def examples(default: int) -> int:
    """``MONITOR_FUZZ_EXAMPLES`` when set (the long run), else ``default`` (the suite's)."""
    value = os.environ.get("MONITOR_FUZZ_EXAMPLES", "")
    return int(value) if value.strip() else default
