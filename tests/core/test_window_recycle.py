"""The arrays a pane close lets go of serve the panes opened next, held to fresh zeros:

- ``clear_arrays`` (compiled) leaves each array as numpy's ``fill(0.0)`` does, bit for bit,
  and writes nothing when any item is not a C-contiguous writable float64 array;
- a WindowSet whose closes' arrays are recycled (:meth:`WindowSet.recycle`; cleared when
  taken, by the compiled kernel or numpy's ``fill``, for a pane opened as arrays) gives
  the same windows and open panes, bit for bit, as one whose panes always open on new
  zeros, through additions, late sums, growth, copies and restores; what it keeps is only
  what its last closes let go of, of its shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor import native
from monitor.core.windows import RowMerges, WindowSet
from tests.core.test_window_close_one import SPECS, _cells, _run

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf is NaN

needs_native = pytest.mark.skipif(not native.available(), reason="monitor._native is not built")


def _arrays(seed: int) -> list[np.ndarray]:
    """Arrays of odd values (-0.0, NaN, inf, huge), of sizes from empty to a pane's."""
    rng = np.random.default_rng(seed)
    out = [np.empty(0), np.array([-0.0]), np.array([np.nan]), np.array([1e308, -np.inf])]
    for size in (1, 3, 5, 17, 7 * 980):
        out.append(_cells(rng, size, True, density=0.9))
    out.append(_cells(rng, 7 * 980, True).reshape(7, 980))
    return out


@needs_native
@pytest.mark.parametrize("seed", range(5))
def test_clear_arrays_is_numpy_fill(seed: int) -> None:
    from monitor import _native  # type: ignore[attr-defined]

    got, want = _arrays(seed), _arrays(seed)
    _native.clear_arrays(got)
    for a in want:
        a.fill(0.0)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.tobytes() == w.tobytes()
        assert not np.signbit(g).any()
    _native.clear_arrays([])


@needs_native
def test_clear_arrays_writes_nothing_when_an_item_is_refused() -> None:
    from monitor import _native  # type: ignore[attr-defined]

    frozen = np.ones(3)
    frozen.flags.writeable = False
    for bad in (np.ones(3, dtype=np.float32), np.ones(3, dtype=np.int64),
                np.ones((4, 4))[:, ::2], frozen, 3.0):  # fmt: skip
        first = np.ones(4)
        with pytest.raises((ValueError, TypeError)):
            _native.clear_arrays([first, bad])
        assert first.tolist() == [1.0] * 4
    with pytest.raises(TypeError):
        _native.clear_arrays((np.ones(2),))  # a list, not a tuple


@pytest.mark.parametrize("seed", range(60))
def test_recycled_panes_are_fresh_zeros(seed: int) -> None:
    fresh = _run(seed, False, "fresh")
    assert _run(seed, False, "recycle") == fresh
    if native.available():
        assert _run(seed, True, "recycle") == fresh


def test_only_what_the_last_closes_let_go_of_is_kept() -> None:
    w = WindowSet(SPECS, 10.0, 4, 2)
    for pane in range(6):  # panes 0-5 open (and their decay sums)
        w.add_rows(pane, slice(0, 2), np.ones((2, 4)), [np.ones((2, 4))])
    for pane in range(5):
        w.close(pane)
    # 5 decay sums, and panes 0 and 1, which left the 3-pane window
    assert len(w.spent) == 7
    w.recycle()
    assert (len(w.spent), len(w.spare)) == (0, 7)
    assert all(a.any() for a in w.spare)  # cleared when taken, not before
    w.close(5)
    w.recycle()  # the spare arrays left are replaced, not added to
    assert len(w.spare) == 2
    zeros = w.zeros()
    assert zeros.shape == (2, 4) and not zeros.any() and len(w.spare) == 1
    # a pane opened by a block is held as the block (no spare array taken) until its
    # arrays are read: then made of spare arrays, cleared
    merges = RowMerges()
    taken = w.spare[-1]
    merges.add(w, 9, np.array([1]), np.full((1, 2), 5.0), [np.ones((1, 2))], np.array([0, 3]))
    merges.run()
    assert taken.any() and w.spare == [taken] and list(w.queued) == [9]
    assert w.open[9] is taken and w.spare == []
    assert w.open[9].tolist() == [[0.0] * 4, [5.0, 0.0, 0.0, 5.0]]
    assert w.open_decay[9][0].tolist() == [[0.0] * 4, [1.0, 0.0, 0.0, 1.0]]
    w.grow(3)
    assert w.spare == [] and w.zeros().shape == (3, 4)
    assert "spare" not in w.__getstate__() and "spent" not in w.__getstate__()
