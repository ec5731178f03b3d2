"""WindowSet.add_rows, which opens a pane with copies of its row blocks when they hold
every row, gives the open panes what whole arrays of zeros written into and added to
give, bit for bit (negative zeros and all), with the compiled kernel
(``monitor._native.rows_add``) and with the numpy code; the kernel refuses what it cannot
take before it writes anything."""

from __future__ import annotations

import numpy as np
import pytest

from monitor import native
from monitor.config import WindowSpec
from monitor.core.windows import RowMerges, WindowSet

SPECS = (
    WindowSpec(name="all", kind="all", seconds=0.0),
    WindowSpec(name="3p", kind="sliding", seconds=30.0),
    WindowSpec(name="5p", kind="sliding", seconds=50.0),
    WindowSpec(name="ewm", kind="decay", seconds=40.0),
)


def _block(rng: np.random.Generator, k: int, width: int) -> np.ndarray:
    """Sparse rows: a few values of any magnitude (huge ones among them), some -0.0."""
    block = np.zeros((k, width))
    cells = rng.random((k, width)) < 0.3
    block[cells] = rng.normal(size=cells.sum()) * 10.0 ** rng.integers(-6, 18, size=cells.sum())
    block[rng.random((k, width)) < 0.05] = -0.0
    return block


def _rows(rng: np.random.Generator, rows: int) -> np.ndarray | slice:
    k = int(rng.integers(0, rows + 1))
    if k and rng.random() < 0.6:
        first = int(rng.integers(0, rows - k + 1))
        return slice(first, first + k)
    return np.sort(rng.choice(rows, size=k, replace=False)).astype(np.int64)


class _Plain:
    """The windows as plain full arrays: each addition made on zeros of the whole pane."""

    def __init__(self, rows: int, width: int) -> None:
        self.open: dict[int, list[np.ndarray]] = {}
        self.rows, self.width = rows, width

    def add(self, pane: int, at: np.ndarray | slice, blocks: list[np.ndarray],
            sign: float) -> None:  # fmt: skip
        held = self.open.get(pane)
        if held is None:
            held = self.open[pane] = [np.zeros((self.rows, self.width)) for _ in blocks]
            if sign == 1.0:
                for target, block in zip(held, blocks, strict=True):
                    target[at] = block
                return
        for target, block in zip(held, blocks, strict=True):
            if sign == 1.0:
                target[at] += block
            else:
                target[at] -= block


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("seed", range(20))
def test_row_blocks_open_and_add_as_whole_arrays(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows, width = 5, 6
    w = WindowSet(SPECS, 10.0, width, rows)
    plain = _Plain(rows, width)
    for _ in range(60):
        pane, at = int(rng.integers(0, 8)), _rows(rng, rows)
        k = len(range(rows)[at]) if isinstance(at, slice) else len(at)
        blocks = [_block(rng, k, width), _block(rng, k, width)]
        sign = -1.0 if pane in plain.open and rng.random() < 0.2 else 1.0
        w.add_rows(pane, at, blocks[0], blocks[1:], sign)
        plain.add(pane, at, blocks, sign)
    assert list(w.open) == list(plain.open)
    for pane, (acc, decayed) in plain.open.items():
        assert w.open[pane].tobytes() == acc.tobytes()
        assert w.open_decay[pane][0].tobytes() == decayed.tobytes()


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("seed", range(10))
def test_row_blocks_queued_for_many_sets_add_as_each_added(seed: int) -> None:
    """RowMerges: blocks of the open panes of several window sets (and additions to
    counters) queued, then added in one pass (with runs at any point), give what add_rows
    of each block (and ``+=``) in turn gives."""
    rng = np.random.default_rng(seed)
    shapes = [(5, 6), (1, 4), (3, 6)]
    each = [WindowSet(SPECS, 10.0, width, rows) for rows, width in shapes]
    queued = [WindowSet(SPECS, 10.0, width, rows) for rows, width in shapes]
    merges = RowMerges()
    counts, queued_counts = np.zeros(4), np.zeros(4)
    for _ in range(120):
        if rng.random() < 0.2:  # counters added in order with the blocks
            add = _block(rng, 1, 4)[0]
            counts += add
            merges.add_to(queued_counts, add)
            continue
        if rng.random() < 0.1:  # several increments of the counters, as one op
            adds = [_block(rng, 1, 4)[0] for _ in range(int(rng.integers(1, 12)))]
            for add in adds:
                counts += add
            merges.add_each_to(queued_counts, adds)
            continue
        i = int(rng.integers(0, len(shapes)))
        rows, width = shapes[i]
        pane, at = int(rng.integers(0, 6)), _rows(rng, rows)
        k = len(range(rows)[at]) if isinstance(at, slice) else len(at)
        blocks = [_block(rng, k, width), _block(rng, k, width)]
        each[i].add_rows(pane, at, blocks[0], blocks[1:])
        merges.add(queued[i], pane, at, blocks[0], blocks[1:])
        if rng.random() < 0.1:
            merges.run()
    merges.run()
    assert not merges.ops
    assert queued_counts.tobytes() == counts.tobytes()
    for a, b in zip(each, queued, strict=True):
        assert list(b.open) == list(a.open)
        for pane, acc in a.open.items():
            assert b.open[pane].tobytes() == acc.tobytes()
            assert b.open_decay[pane][0].tobytes() == a.open_decay[pane][0].tobytes()


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("seed", range(10))
def test_blocks_of_some_columns_add_as_blocks_spread_over_the_width(seed: int) -> None:
    """RowMerges: blocks of some columns of their rows (as a sparse pane's sums come)
    give what their blocks spread over the width (zeros in the other columns) give, bit for
    bit: sums, which hold no -0.0 (a sum from 0.0 never is), added or written."""
    rng = np.random.default_rng(seed)
    shapes = [(5, 6), (1, 4), (3, 6)]
    each = [WindowSet(SPECS, 10.0, width, rows) for rows, width in shapes]
    queued = [WindowSet(SPECS, 10.0, width, rows) for rows, width in shapes]
    merges = RowMerges()
    for _ in range(120):
        i = int(rng.integers(0, len(shapes)))
        rows, width = shapes[i]
        pane, at = int(rng.integers(0, 6)), _rows(rng, rows)
        k = len(range(rows)[at]) if isinstance(at, slice) else len(at)
        some = rng.random() < 0.8
        cols = np.sort(rng.choice(width, size=int(rng.integers(1, width + 1)), replace=False))
        n = len(cols) if some else width
        blocks = [_block(rng, k, n) + 0.0, _block(rng, k, n) + 0.0]  # (no -0.0)
        if some:
            spread = [np.zeros((k, width)) for _ in blocks]
            for whole, block in zip(spread, blocks, strict=True):
                whole[:, cols] = block
            each[i].add_rows(pane, at, spread[0], spread[1:])
            merges.add(queued[i], pane, at, blocks[0], blocks[1:], cols.astype(np.int64))
        else:
            each[i].add_rows(pane, at, blocks[0], blocks[1:])
            merges.add(queued[i], pane, at, blocks[0], blocks[1:])
        if rng.random() < 0.1:
            merges.run()
    merges.run()
    for a, b in zip(each, queued, strict=True):
        assert list(b.open) == list(a.open)
        for pane, acc in a.open.items():
            assert b.open[pane].tobytes() == acc.tobytes()
            assert b.open_decay[pane][0].tobytes() == a.open_decay[pane][0].tobytes()


def test_rows_add_many_checks_its_ops() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built")
    from monitor import _native  # type: ignore[attr-defined]

    target, block = np.zeros((4, 3)), np.ones((2, 3))
    rows = np.array([3, 1], dtype=np.int64)
    with pytest.raises(TypeError):  # an op that is not a tuple
        _native.rows_add_many([[target, [], block, [], rows, 3, 1]])
    with pytest.raises(ValueError):  # one block per target
        _native.rows_add_many([(target, [target], block, [], rows, 3, 1)])
    with pytest.raises(IndexError):  # the first op is applied, the second refused
        _native.rows_add_many([(target, [], block, [], rows, 3, 1),
                               (target, [], block, [], 3, 3, 1)])  # fmt: skip
    assert target.tolist() == [[0.0] * 3, [1.0] * 3, [0.0] * 3, [1.0] * 3]
    _native.rows_add_many([(target, [target], 2 * block, [block], 0, 3, -1)])
    assert target.tolist() == [[-3.0] * 3, [-2.0] * 3, [0.0] * 3, [1.0] * 3]
    cols = np.array([2, 0], dtype=np.int64)  # a block of two columns
    _native.rows_add_many([(target, [], np.array([[5.0, 7.0]]), [], 2, 3, 1, cols),
                           (target, [], np.array([[1.0, 2, 3]]), [], 0, 3, 0, None)])  # fmt: skip
    assert target.tolist() == [[1.0, 2.0, 3.0], [-2.0] * 3, [7.0, 0.0, 5.0], [1.0] * 3]
    for bad in (np.array([0, 3]), np.array([0, -1]), cols.astype(np.int32), cols[:0]):
        with pytest.raises(ValueError):  # a column outside the width, not int64, none
            _native.rows_add_many([(target, [], np.ones((1, len(bad))), [], 0, 3, 1, bad)])
    with pytest.raises(ValueError):  # a block of other columns
        _native.rows_add_many([(target, [], np.ones((1, 3)), [], 0, 3, 1, cols)])
    assert target.tolist() == [[1.0, 2.0, 3.0], [-2.0] * 3, [7.0, 0.0, 5.0], [1.0] * 3]


def test_rows_add_checks_its_arguments() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built")
    from monitor import _native  # type: ignore[attr-defined]

    target, block = np.zeros((4, 3)), np.ones((2, 3))
    rows = np.array([3, 1], dtype=np.int64)
    with pytest.raises(IndexError):  # a row past the target's
        _native.rows_add([target], [block], np.array([1, 4], dtype=np.int64), 3, 1)
    with pytest.raises(IndexError):  # consecutive rows past the end
        _native.rows_add([target], [block], 3, 3, 1)
    with pytest.raises(ValueError):  # a block of another width
        _native.rows_add([target], [np.ones((2, 2))], rows, 3, 1)
    with pytest.raises(ValueError):  # as many block rows as rows
        _native.rows_add([target], [np.ones((3, 3))], rows, 3, 1)
    with pytest.raises(ValueError):  # a later target of another shape
        _native.rows_add([target, np.zeros((5, 3))], [block, block], rows, 3, 1)
    with pytest.raises(ValueError):
        _native.rows_add([target], [block], rows, 3, 2)
    with pytest.raises(ValueError):
        _native.rows_add([target], [block], rows.astype(np.int32), 3, 1)
    read_only = np.zeros((4, 3))
    read_only.flags.writeable = False
    with pytest.raises((BufferError, ValueError)):
        _native.rows_add([target, read_only], [block, block], rows, 3, 1)
    with pytest.raises((BufferError, ValueError)):  # not C-contiguous
        _native.rows_add([target], [np.ones((3, 2)).T], rows, 3, 1)
    assert not target.any()  # nothing written by the calls refused
    _native.rows_add([target], [block], rows, 3, 1)
    _native.rows_add([target], [2 * block], 0, 3, -1)
    assert target.tolist() == [[-2.0] * 3, [-1.0] * 3, [0.0] * 3, [1.0] * 3]
