"""Which implementation of the compiled kernels runs: ``monitor._native`` (C, built by
``pip install`` when a C compiler and Python's headers are there) or the numpy code beside
each kernel's caller (or, for a few kernels, below in this module), which gives the same
results.

``MONITOR_NATIVE=0`` in the environment turns the compiled kernels off (the tests run both
ways); :func:`use` does the same in a process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "available",
    "first_rows",
    "int64_column",
    "kernels",
    "memo_codes",
    "pending_owners",
    "use",
    "window_close1",
]


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


# The numpy code of kernels whose callers have no numpy code of their own to fall back on
# (the same results either way; tests/core/test_window_close_one.py,
# tests/core/test_stage1_columns.py, tests/core/test_pending_owners.py).


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


def memo_codes(memo: dict[Any, float], values: list[Any]) -> tuple[npt.NDArray[np.float64], int]:
    """``memo.get`` of each of ``values`` as float64 (NaN where ``memo`` holds none), and
    how many it does not hold: by the compiled ``memo_codes`` (one C loop) when it runs,
    else by numpy's conversion of the list."""
    module = kernels()
    if module is not None and type(memo) is dict and type(values) is list:
        out = np.empty(len(values), dtype=np.float64)
        missing: int = module.memo_codes(memo, values, out)
        return out, missing
    codes = np.array(list(map(memo.get, values)), dtype=np.float64)
    return codes, int(np.count_nonzero(np.isnan(codes)))


def int64_column(items: list[int]) -> npt.NDArray[np.int64]:
    """``np.fromiter(items, np.int64, len(items))`` of a list of ints (poll indices,
    partitions): by the compiled ``int64s`` (one C loop) when it runs and takes them all."""
    module = kernels()
    if module is not None and type(items) is list:
        out = np.empty(len(items), dtype=np.int64)
        if module.int64s(items, out):
            return out
    return np.fromiter(items, np.int64, len(items))


def pending_owners(tables: list[Any], pids: list[str]) -> npt.NDArray[np.int64]:
    """For each of ``pids``, the place in ``tables`` (a partition's
    :class:`~monitor.core.join.PendingTable`\\ s, in model order) of the first that holds it,
    -1 for none: by the compiled ``pending_owners`` (each id's bytes and CRC-32 found once,
    no bytes object made) when it runs, else each table with a live row asked in turn
    (``contains_many``), as :meth:`JoinBuffer.owners` does."""
    module = kernels()
    if module is not None and type(tables) is list and type(pids) is list:
        out = np.empty(len(pids), dtype=np.int64)
        module.pending_owners(tables, pids, out)
        return out
    out = np.full(len(pids), -1, dtype=np.int64)
    if not pids:
        return out
    for m, table in enumerate(tables):
        if len(table):
            free = out < 0
            out[table.contains_many(pids) & free] = m
    return out


def held_groups(tables: list[Any], pid_lists: list[list[str]]) -> npt.NDArray[np.bool_]:
    """For each table of ``tables`` (:class:`~monitor.core.join.IdTable`\\ s), whether it
    holds any id of the list of the same place in ``pid_lists``: by the compiled
    ``held_groups`` (one call for all, each id probed as :func:`pending_owners` probes it)
    when it runs, else by :func:`pending_owners` of each table with a live row."""
    module = kernels()
    if module is not None and type(tables) is list and type(pid_lists) is list:
        out = np.empty(len(tables), dtype=np.bool_)
        module.held_groups(tables, pid_lists, out)
        return out
    return np.array(
        [bool(len(t)) and bool((pending_owners([t], pids) >= 0).any())
         for t, pids in zip(tables, pid_lists, strict=True)],
        dtype=np.bool_,
    )  # fmt: skip
