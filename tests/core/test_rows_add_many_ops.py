"""monitor._native.rows_add_many reads each op's items in place: it takes what
``(target, targets, block, blocks, rows, width, mode[, cols])`` tuples hold (ints that
are not Python ints among them) and refuses, before anything of that op is written, an op
of another size, targets or blocks that are not lists, a width or mode that is not an
int."""

from __future__ import annotations

import numpy as np
import pytest

from monitor import native


def test_rows_add_many_reads_its_ops_in_place() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built")
    from monitor import _native  # type: ignore[attr-defined]

    target, block = np.zeros((3, 2)), np.ones((1, 2))
    _native.rows_add_many([(target, [], block, [], np.int64(2), np.int64(2), np.int8(1))])
    assert target.tolist() == [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
    cols = np.array([1], dtype=np.int64)
    _native.rows_add_many([(target, [], np.array([[4.0]]), [], 0, 2, 0, cols)])
    assert target.tolist() == [[0.0, 4.0], [0.0, 0.0], [1.0, 1.0]]
    for op, error in [
        ((target, [], block, [], 0, 2), TypeError),  # too few items
        ((target, [], block, [], 0, 2, 1, None, None), TypeError),  # too many
        ((target, (), block, [], 0, 2, 1), TypeError),  # targets not a list
        ((target, [], block, (), 0, 2, 1), TypeError),  # blocks not a list
        ((target, [], block, [], 0, 2.0, 1), TypeError),  # width not an int
        ((target, [], block, [], 0, 2, 1.0), TypeError),  # mode not an int
        ((target, [], block, [], 0, 2, 1 << 40), OverflowError),  # mode beyond an int
        ((target, [], block, [], 0, 2, 2), ValueError),  # mode not -1, 0 or 1
    ]:
        with pytest.raises(error):
            _native.rows_add_many([op])
    assert target.tolist() == [[0.0, 4.0], [0.0, 0.0], [1.0, 1.0]]
