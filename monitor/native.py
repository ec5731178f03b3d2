"""Which implementation of the compiled kernels runs: ``monitor._native`` (C, built by
``pip install`` when a C compiler and Python's headers are there) or the numpy code beside
each kernel's caller, which gives the same results.

``MONITOR_NATIVE=0`` in the environment turns the compiled kernels off (the tests run both
ways); :func:`use` does the same in a process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["available", "kernels", "use"]


def _load() -> ModuleType | None:
    try:
        from monitor import _native
    except ImportError:
        return None
    return _native


_MODULE = _load()
_ON = os.environ.get("MONITOR_NATIVE", "1") != "0"


def available() -> bool:
    """Whether the compiled module is built and importable."""
    return _MODULE is not None


def kernels() -> ModuleType | None:
    """The compiled module when it is built and on, else None (callers run their numpy code)."""
    return _MODULE if _ON else None


def use(on: bool) -> bool:
    """Turn the compiled kernels on or off in this process; returns the previous setting."""
    global _ON
    before = _ON
    _ON = on
    return before


# h42-noisy
def first_rows(dst: Any, at: int, sources: Sequence[Any]) -> None:
    """What ``monitor._native.first_rows`` does, in numpy: ``dst[at + i] = sources[i][0]``,
    the first ``dst.shape[1]`` values of each source into the rows of ``dst`` from ``at``."""
    width = dst.shape[1]
    if at < 0 or at + len(sources) > dst.shape[0]:
        raise ValueError("dst: too few rows")
    for i, src in enumerate(sources):
        dst[at + i] = src.reshape(-1)[:width]


def window_close1(cum: Any, acc: Any, decay: Any, factor: float, decayed: Any, sliding: Any,
                  nz: Any, leaving: Any) -> int:  # fmt: skip
    """What ``monitor._native.window_close1`` does, in numpy: the operations of the numpy
    :meth:`WindowSet.close <monitor.core.windows.WindowSet.close>` for one decay and one
    sliding window (``acc`` added to ``cum`` and the sliding sums, ``decay`` decayed by
    ``factor`` and given ``decayed``, the ``leaving`` pane taken out of the sliding sums
    and their counts ``nz`` of non-zero terms); 1 where the window must be summed again."""
    import numpy as np

    cum += acc
    decay *= factor
    decay += decayed
    sliding += acc
    nz += acc != 0
    sliding -= leaving
    nz -= leaving != 0
    empty = nz == 0
    np.copyto(sliding, 0.0, where=empty)
    bound = np.abs(sliding)
    bound *= 4096.0  # windows._CANCEL
    np.copyto(bound, np.inf, where=empty)
    return int(bool((np.abs(leaving) > bound).any()))
