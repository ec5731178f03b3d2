"""A deep copy of a WindowSet (a report's flushed copy of the pipeline) equals, bit for bit,
the set pickled and restored (negative zeros, NaN and all), and both go on the same."""

from __future__ import annotations

import copy
import pickle
from typing import Any

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

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf is NaN


def _block(rng: np.random.Generator, rows: int, width: int) -> np.ndarray:
    """Sparse values of any magnitude, some -0.0, NaN and inf."""
    block = np.zeros((rows, width))
    cells = rng.random((rows, width)) < 0.3
    block[cells] = rng.normal(size=cells.sum()) * 10.0 ** rng.integers(-6, 18, size=cells.sum())
    block[rng.random((rows, width)) < 0.1] = -0.0
    block[rng.random((rows, width)) < 0.01] = np.nan
    block[rng.random((rows, width)) < 0.01] = -np.inf
    return block


def _same(a: Any, b: Any) -> bool:
    """Equal values, arrays bit for bit (and of the same shape, type and layout)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.flags.c_contiguous == b.flags.c_contiguous
            and a.tobytes() == b.tobytes()
        )
    return bool(a == b) or (a is None and b is None)


def _windows(seed: int) -> tuple[WindowSet, int]:
    """A set after random additions (open and late, some taken back) and closes."""
    rng = np.random.default_rng(seed)
    rows, width = 3, 5
    w = WindowSet(SPECS, 10.0, width, rows)
    pane = 0
    for _ in range(int(rng.integers(3, 30))):
        for _ in range(int(rng.integers(0, 4))):
            at = pane + int(rng.integers(0, 3))
            blocks = [_block(rng, rows, width) for _ in range(2)]
            w.add_rows(at, slice(0, rows), blocks[0], blocks[1:])
            if rng.random() < 0.2:
                w.add_rows(at, slice(0, rows), blocks[0], blocks[1:], -1.0)
        if rng.random() < 0.3 and pane > 2:
            late = pane - int(rng.integers(1, 3))
            w.add_sums(late, pane, _block(rng, rows, width), [_block(rng, rows, width)])
        w.close(pane)
        pane += 1
    return w, pane


@pytest.mark.parametrize("seed", range(40))
def test_deep_copy_is_the_pickled_round_trip(seed: int) -> None:
    w, pane = _windows(seed)
    copied = copy.deepcopy(w)
    restored = pickle.loads(pickle.dumps(w))
    assert list(vars(copied)) == list(vars(restored))
    for name, value in vars(restored).items():
        assert _same(getattr(copied, name), value), name
    for p in range(pane, pane + 8):  # and both go on alike
        assert copied.close(p) == restored.close(p)
        for name, value in vars(restored).items():
            assert _same(getattr(copied, name), value), (p, name)


def test_deep_copy_shares_nothing_with_the_original() -> None:
    w, pane = _windows(3)
    before = pickle.dumps(w)
    copied = copy.deepcopy(w)
    for p in range(pane, pane + 6):
        copied.add_rows(p, slice(0, 3), np.ones((3, 5)), [np.ones((3, 5))])
        copied.close(p)
    assert pickle.dumps(w) == before
