"""An open pane held as its queued row blocks (what a hand-over's :class:`RowMerges` adds to
a pane a set holds no arrays of) closes as the pane made arrays at once would, bit for bit:

- a set whose blocks stay queued until their panes close gives, after every step of a
  random sequence (blocks of some columns or of every cell, of rows in a run or apart,
  added and taken back by :meth:`WindowSet.add_rows`, late sums, open sums, growth,
  copies, pickles, closes), the windows, ring, closes' answers and open panes of one
  whose queued blocks are made arrays after every pass (:meth:`WindowSet.settle`, the
  arrays as they were made before panes were queued), -0.0, NaN and inf included, with
  the compiled kernels and with the numpy code; its scratch arrays are zero between
  closes.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.core import windows
from monitor.core.windows import RowMerges, WindowSet
from tests.core.test_window_close import _canonical
from tests.core.test_window_close_one import SPECS, _cells

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf is NaN


def _state(w: WindowSet) -> Any:
    """What a set's closes made, and its scratch arrays (none of its open panes: reading
    them makes them arrays)."""
    scratch = w.scratch()
    assert not scratch[0].any() and not any(d.any() for d in scratch[1])
    names = ("cum", "late_n", "ring", "sliding", "decay", "closes", "rows")
    return {name: _canonical(getattr(w, name)) for name in names}


def _run(seed: int, compiled: bool, settle: bool) -> list[Any]:
    """The states of a set after each step of a random sequence; ``settle``: its queued
    blocks made arrays after every pass of blocks."""
    before = native.use(compiled)
    try:
        rng = np.random.default_rng(seed)
        rows, width = int(rng.integers(1, 5)), int(rng.integers(1, 9))
        odd = bool(rng.random() < 0.5)
        w = WindowSet(SPECS, 10.0, width, rows)
        states: list[Any] = []
        pane = int(rng.integers(0, 12))
        for _ in range(int(rng.integers(5, 40))):
            merges = RowMerges()
            for _ in range(int(rng.integers(0, 5))):
                at = pane + int(rng.integers(0, 4))
                k = int(rng.integers(1, rows + 1))
                if rng.random() < 0.5:
                    first = int(rng.integers(0, rows - k + 1))
                    where: Any = slice(first, first + k)
                else:
                    where = np.sort(rng.choice(rows, size=k, replace=False)).astype(np.int64)
                cols = np.flatnonzero(rng.random(width) < 0.5)
                if not len(cols) or rng.random() < 0.3:
                    cols = None
                cells = k * (width if cols is None else len(cols))
                blocks = [_cells(rng, cells, odd).reshape(k, -1) for _ in range(2)]
                choice = rng.random()
                if choice < 0.7:
                    merges.add(w, at, where, blocks[0], blocks[1:], cols)
                    continue
                merges.run()
                wide = [np.zeros((k, width)) for _ in blocks]
                for out, block in zip(wide, blocks, strict=True):
                    out[:, slice(None) if cols is None else cols] = block
                w.add_rows(at, where, wide[0], wide[1:], -1.0 if choice < 0.8 else 1.0)
            merges.run()
            if settle:
                w.settle()
            if rng.random() < 0.3 and pane > 2:  # late sums, and sums of an open pane
                plain, decay = (_cells(rng, rows * width, odd).reshape(rows, width)
                                for _ in range(2))  # fmt: skip
                w.add_sums(pane - int(rng.integers(1, 4)), pane, plain, [decay])
            if rng.random() < 0.1:
                plain, decay = (_cells(rng, rows * width, odd).reshape(rows, width)
                                for _ in range(2))  # fmt: skip
                w.add_sums(pane + int(rng.integers(0, 3)), None, plain, [decay])
            if rng.random() < 0.08:
                w = pickle.loads(pickle.dumps(w))
            if rng.random() < 0.08:
                w = copy.deepcopy(w)
            if rng.random() < 0.1:
                rows += 1
                w.grow(rows)
            states.append(w.close(pane))
            pane += 1
            if rng.random() < 0.7:
                w.recycle()
            states.append(_state(w))
        states.append(_canonical(w.open))  # (made arrays now: the queued ones too)
        states.append(_canonical(w.open_decay))
        states.append(_state(w))
        return states
    finally:
        native.use(before)


@pytest.mark.parametrize("seed", range(80))
def test_queued_panes_close_as_arrays_made_at_once(seed: int) -> None:
    want = _run(seed, False, True)
    assert _run(seed, False, False) == want
    if native.available():
        assert _run(seed, True, False) == want
        assert _run(seed, True, True) == want


def test_a_hand_overs_blocks_wait_queued_until_their_pane_closes() -> None:
    w = WindowSet(SPECS, 10.0, 4, 2)
    merges = RowMerges()
    merges.add(w, 3, np.array([1]), np.full((1, 2), 5.0), [np.ones((1, 2))], np.array([0, 3]))
    merges.add(w, 3, slice(0, 2), np.ones((2, 4)), [np.ones((2, 4))])
    merges.run()
    assert list(w.queued) == [3] and not w.arrays()[0] and w.lowest_open() == 3
    assert w.open[3].tolist() == [[1.0] * 4, [6.0, 1.0, 1.0, 6.0]]  # made arrays when read
    assert not w.queued and list(w.arrays()[0]) == [3]
    merges.add(w, 3, slice(1, 2), np.ones((1, 4)), [np.ones((1, 4))])  # to its arrays now
    assert len(merges.ops) == 1 and not w.queued
    merges.run()
    assert w.open[3][1].tolist() == [7.0, 2.0, 2.0, 7.0]



@pytest.mark.parametrize("seed", range(20))
def test_a_pane_with_more_blocks_than_queued_max_is_made_arrays_the_same(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pane given more than :data:`~monitor.core.windows.QUEUED_MAX` blocks is made
    arrays of them and takes the rest as arrays do: the same sums as queued whole."""
    want = _run(seed, False, True)
    monkeypatch.setattr(windows, "QUEUED_MAX", 1)
    assert _run(seed, False, False) == want
    if native.available():
        assert _run(seed, True, False) == want


def test_a_long_panes_queue_stays_bounded() -> None:
    """A pane that takes a block every poll for a long while (a long pane of a live
    stream) holds at most QUEUED_MAX of them queued, then arrays."""
    w = WindowSet(SPECS, 10.0, 4, 2)
    for _ in range(windows.QUEUED_MAX + 5):
        merges = RowMerges()
        merges.add(w, 3, slice(0, 2), np.ones((2, 4)), [np.ones((2, 4))])
        merges.run()
        assert len(w.queued.get(3, ())) <= windows.QUEUED_MAX
    assert not w.queued and w.open[3].tolist() == [[windows.QUEUED_MAX + 5.0] * 4] * 2
