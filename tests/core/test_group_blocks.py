"""The compiled ``group_blocks`` (``monitor._native``, run by
:func:`monitor.core.layout.scatter_groups`) against :func:`~monitor.core.layout._group_blocks`:
the same lists of views (the same rows, columns, shapes, values and memory) on random groups
of one array of sums or several pieces, with whole rows or some columns, any number of
decay rates, groups of no rows or no columns, and no group at all; and its checks of what
it is given."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from monitor.core import layout
from monitor.core.layout import GroupBlocks


def _groups(seed: int, rates: int, whole: bool, piece: int) -> tuple[Any, ...]:
    """Random arguments of ``_group_blocks``: groups of 0-4 rows and 0-width columns, their
    blocks in pieces of at most ``piece`` cells (see ``layout._pieces``)."""
    rng = np.random.default_rng(seed)
    width = int(rng.integers(1, 9))
    count = int(rng.integers(0, 30))
    heights = rng.integers(0, 5, count)
    widths = (
        np.full(count, width)
        if whole
        else np.where(rng.random(count) < 0.2, width, rng.integers(0, width + 1, count))
    )
    bounds = [0, *np.cumsum(heights).tolist()]
    cbounds = [0, *np.cumsum(widths).tolist()]
    row = rng.integers(0, 7, bounds[-1]).astype(np.int64)
    cols = None if whole else rng.integers(0, width, cbounds[-1]).astype(np.int64)
    kinds = 1 + rates
    at = [0, *np.cumsum(heights * widths * kinds).tolist()]
    starts = layout._pieces(at, piece)
    outs = [rng.normal(size=b - a) for a, b in pairwise(starts)]
    return row, bounds, cols, cbounds, at, starts, outs, rates, width


#: The compiled module, whether its kernels are on or off: these tests call the kernel itself.
_native = pytest.importorskip("monitor._native", reason="not built (see test_native.py)")


def _base(a: np.ndarray) -> Any:
    while a.base is not None:
        a = a.base
    return a


def _same(x: np.ndarray | None, y: np.ndarray | None) -> bool:
    if x is None or y is None:
        return x is None and y is None
    return (x.shape == y.shape and x.dtype == y.dtype and x.strides == y.strides
            and _base(x) is _base(y)
            and x.__array_interface__["data"] == y.__array_interface__["data"]
            and np.array_equal(x.view(np.int64), y.view(np.int64)))  # fmt: skip


@pytest.mark.parametrize("piece", [1, 7, 40, 1 << 16])
@pytest.mark.parametrize("whole", [False, True], ids=["columns", "whole-rows"])
@pytest.mark.parametrize("rates", [0, 1, 2, 3])
def test_the_compiled_group_blocks_are_the_python_loop_s_views(
    piece: int, whole: bool, rates: int
) -> None:
    compiled = _native
    for seed in range(8):
        args = _groups(seed * 31 + rates, rates, whole, piece)
        row, bounds, cols, cbounds, at, starts, outs, rates_, width = args
        want = layout._group_blocks(*args)
        got = GroupBlocks(*compiled.group_blocks(row, bounds, cols, cbounds, at, starts, outs,
                                                 1 + rates_, width))  # fmt: skip
        assert len(got.rows) == len(want.rows) == len(bounds) - 1
        assert all(_same(x, y) for x, y in zip(got.rows, want.rows, strict=True))
        assert all(_same(x, y) for x, y in zip(got.cols, want.cols, strict=True))
        assert all(_same(x, y) for x, y in zip(got.plain, want.plain, strict=True))
        assert all(type(x) is list and len(x) == len(y) == rates
                   and all(_same(a, b) for a, b in zip(x, y, strict=True))
                   for x, y in zip(got.decay, want.decay, strict=True))  # fmt: skip


def test_the_compiled_group_blocks_check_what_they_are_given() -> None:
    compiled = _native
    row, out = np.zeros(2, np.int64), np.zeros(4)
    with pytest.raises(ValueError, match="one more than the groups"):  # cbounds short
        compiled.group_blocks(row, [0, 2], None, [0], [0, 4], [0, 4], [out], 2, 1)
    with pytest.raises(ValueError, match="kinds"):
        compiled.group_blocks(row, [0, 2], None, [0, 1], [0, 4], [0, 4], [out], 0, 1)
    with pytest.raises(ValueError, match="non-negative"):
        compiled.group_blocks(row, [0, -2], None, [0, 1], [0, 4], [0, 4], [out], 2, 1)
    with pytest.raises(ValueError):  # a block of more cells than its shape
        compiled.group_blocks(row, [0, 2], None, [0, 1], [0, 3], [0, 4], [out], 2, 1)
    with pytest.raises(TypeError):
        compiled.group_blocks(row, (0, 2), None, [0, 1], [0, 4], [0, 4], [out], 2, 1)
    empty = compiled.group_blocks(row, [0], None, [0], [0], [0, 0], [np.zeros(0)], 2, 1)
    assert empty == ([], [], [], [])
