"""WindowSet.close by the compiled kernel (``monitor._native.window_close``) leaves every
window as the numpy code does, bit for bit: random sequences of additions (open, late,
taken back), closes and copies, values of every magnitude (large terms that leave small
remainders, so that windows are summed again), -0.0, NaN and inf, with and without sliding
and decay windows.

A NaN's sign and payload aside: numpy itself does not keep them alike (the sum of two NaNs
is the first one's in its vector loop, the second one's in its scalar loop for the last
cells), so every NaN is compared as one value."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.config import WindowSpec
from monitor.core.windows import WindowSet

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf is NaN

ALL = WindowSpec(name="all", kind="all", seconds=0.0)
SETS = {
    "both": (ALL, WindowSpec(name="3p", kind="sliding", seconds=30.0),
             WindowSpec(name="5p", kind="sliding", seconds=50.0),
             WindowSpec(name="ewm", kind="decay", seconds=40.0),
             WindowSpec(name="ewm2", kind="decay", seconds=15.0)),
    "sliding": (ALL, WindowSpec(name="2p", kind="sliding", seconds=20.0)),
    "decay": (ALL, WindowSpec(name="ewm", kind="decay", seconds=40.0)),
    "all": (ALL,),
}  # fmt: skip


def _block(rng: np.random.Generator, rows: int, width: int, odd: bool) -> np.ndarray:
    """Sparse values of any magnitude; with ``odd``, -0.0, NaN and inf among them."""
    block = np.zeros((rows, width))
    cells = rng.random((rows, width)) < 0.4
    block[cells] = rng.normal(size=cells.sum()) * 10.0 ** rng.integers(-3, 20, size=cells.sum())
    block[rng.random((rows, width)) < 0.1] = -0.0
    if odd:
        block[rng.random((rows, width)) < 0.02] = np.nan
        block[rng.random((rows, width)) < 0.02] = np.inf
    return block


def _canonical(value: Any) -> Any:
    """``value`` with each array as its bytes, every NaN made the same one."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return (value.shape, np.where(np.isnan(value), np.nan, value).tobytes())
    return value


def _run(kind: str, seed: int, compiled: bool) -> list[Any]:
    """The states of a set after each step of a random sequence (the same for a seed)."""
    before = native.use(compiled)
    try:
        rng = np.random.default_rng(seed)
        specs = SETS[kind]
        rows, width = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        odd = bool(rng.random() < 0.5)
        w = WindowSet(specs, 10.0, width, rows)
        decays = len(w.decay_rates)
        states: list[Any] = []
        pane = int(rng.integers(0, 12))
        for _ in range(int(rng.integers(5, 40))):
            for _ in range(int(rng.integers(0, 4))):
                at = pane + int(rng.integers(0, 3))
                blocks = [_block(rng, rows, width, odd) for _ in range(1 + decays)]
                w.add_rows(at, slice(0, rows), blocks[0], blocks[1:])
                if rng.random() < 0.2:  # taken back: cells that cancel to 0
                    w.add_rows(at, slice(0, rows), blocks[0], blocks[1:], -1.0)
            if rng.random() < 0.3 and pane > 2:
                late = pane - int(rng.integers(1, 4))
                plain = _block(rng, rows, width, odd)
                decayed = [_block(rng, rows, width, odd) for _ in range(decays)]
                w.add_sums(late, pane, plain, decayed)
                if rng.random() < 0.5:  # taken back: a ring cell's terms may all go
                    w.add_sums(late, pane, -plain, [np.zeros((rows, width))] * decays)
            if rng.random() < 0.1:  # restored: the counts of terms rebuilt at the next close
                w = pickle.loads(pickle.dumps(w))
            if rng.random() < 0.1:
                rows += 1
                w.grow(rows)
            states.append(w.close(pane))
            pane += 1
            states.append(_canonical(vars(w)))
        return states
    finally:
        native.use(before)


@pytest.mark.skipif(not native.available(), reason="monitor._native is not built")
@pytest.mark.parametrize("kind", sorted(SETS))
@pytest.mark.parametrize("seed", range(60))
def test_compiled_close_is_the_numpy_close(kind: str, seed: int) -> None:
    assert _run(kind, seed, True) == _run(kind, seed, False)


@pytest.mark.skipif(not native.available(), reason="monitor._native is not built")
def test_compiled_close_sums_again_where_a_large_term_left() -> None:
    """A term of 1e20 leaving 1.5 behind: the window is summed again from its panes (1.5,
    not the rounding residue of 1e20 + 1.5 - 1e20)."""
    got = []
    for compiled in (True, False):
        before = native.use(compiled)
        try:
            w = WindowSet(SETS["sliding"], 10.0, 1, 1)
            for pane, value in enumerate([1e20, 1.5, 0.0, 0.0]):
                w.add_rows(pane, slice(0, 1), np.array([[value]]), [])
                w.close(pane)
            got.append(w.sliding[0].tobytes())
            assert w.sliding[0][0, 0] == 0.0
        finally:
            native.use(before)
    assert got[0] == got[1]


def test_window_close_checks_its_arguments() -> None:
    """The kernel refuses what it cannot take, before it writes anything."""
    if not native.available():
        pytest.skip("monitor._native is not built")
    from monitor import _native  # type: ignore[attr-defined]

    cum, acc = np.zeros(4), np.ones(4)
    with pytest.raises(ValueError):
        _native.window_close(cum, np.ones(3), [], [], None, [], [], [])
    with pytest.raises(ValueError):
        _native.window_close(cum, acc, [np.zeros(4)], [], None, [], [], [])
    with pytest.raises(ValueError):
        _native.window_close(cum, acc, [], [], None, [np.zeros(4)], [np.zeros(4)], [])
    with pytest.raises(ValueError):  # one of the later arrays of another size
        _native.window_close(cum, acc, [np.zeros(4)], [0.5], None, [np.zeros(4)],
                             [np.zeros(5)], [None])  # fmt: skip
    with pytest.raises(TypeError):
        _native.window_close(cum, acc, [], [], None, [], [], [], 1)
    read_only = np.zeros(4)
    read_only.flags.writeable = False
    with pytest.raises((BufferError, ValueError)):
        _native.window_close(read_only, acc, [], [], None, [], [], [])
    with pytest.raises(TypeError):
        _native.window_close(cum, acc, (), [], None, [], [], [])
    assert not cum.any()  # nothing written by the calls refused
    assert _native.window_close(cum, acc, [], [], None, [], [], []) == 0
    assert cum.tolist() == [1.0] * 4
