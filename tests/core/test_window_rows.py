"""WindowSet.add_rows, which opens a pane with copies of its row blocks when they hold
every row, gives the open panes what whole arrays of zeros written into and added to
give, bit for bit (negative zeros and all)."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.config import WindowSpec
from monitor.core.windows import WindowSet

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

