"""The compiled pane scatter (``monitor._native``'s ``pane_rows``, ``pane_columns`` and
``pane_sums``, run by
:func:`monitor.core.layout.scatter_panes`) against its numpy code: the same groups, rows
and sums, bit for bit, on random polls (slices of -1, slice positions no event holds,
several sets with their own columns or sharing them, several decay rates, the numpy code's
blocks of groups cut by ``_BLOCK_CELLS`` and the kernels' outputs in pieces, values that
are signed zeros, infinities and NaN); and the kernels' checks of what they are given."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.core import layout
from monitor.core.layout import Terms, scatter_pane, scatter_panes


def _poll(seed: int, sets: int, shared: bool, holes: str) -> dict[str, Any]:
    """A random poll's arguments to :func:`scatter_panes`."""
    rng = np.random.default_rng(seed)
    rows, width = int(rng.integers(1, 7)), int(rng.integers(sets * 2, 40))
    groups = int(rng.integers(1, 60))
    panes = np.sort(rng.choice(10_000, groups, replace=False)).astype(np.int64) + 170_000_000
    out: list[Terms] = []
    for s in range(sets):
        n, k, terms = int(rng.integers(0, 300)), int(rng.integers(1, 4)), int(rng.integers(1, 6))
        group = rng.integers(0, groups, n)
        slices = rng.integers(-1 if holes != "none" else 0, rows, (n, k))
        if holes == "position" and k > 1:  # a position no event holds (no model_version)
            slices[:, int(rng.integers(0, k))] = -1
        # their own columns (a poll's predictions and pairs), or any column
        low, high = (0, width) if shared else (s * width // sets, (s + 1) * width // sets)
        cols = rng.integers(low, high, (n, terms))
        vals = rng.normal(0.0, 1e3, (n, terms)) * rng.integers(0, 2, (n, terms))
        vals[rng.random((n, terms)) < 0.05] = -0.0
        vals[rng.random((n, terms)) < 0.01] = rng.choice([math.inf, -math.inf, math.nan])
        vals[rng.random((n, terms)) < 0.2] *= 1e17  # sums whose order shows
        ts = (panes[group] + rng.random(n)) * 10.0
        out.append(Terms(group, slices, cols, vals, ts))
    rates = [math.log(2) / s for s in rng.choice([60.0, 1800.0, 86_400.0], int(rng.integers(0, 4)))]
    return {"shape": (rows, width), "rates": rates, "pane": 10.0, "panes": panes, "sets": out}


def _blocks(compiled: bool, poll: dict[str, Any]) -> list[tuple[int, list[int], list[Any]]]:
    """Every group's rows, columns and sums (as int64 bit patterns) with the kernels on or
    off (a group of no rows, which holds no cells, as no columns and empty sums: the
    numpy code sums a block of groups of no rows over whole rows, the kernels take every
    group together)."""
    before = native.use(compiled)
    try:
        got = []
        width = poll["shape"][1]
        for g, rows, cols, plain, decay in scatter_panes(**poll):
            sums = [plain, *decay]
            n = width if cols is None else len(cols)
            assert all(s.dtype == np.float64 and s.shape == (len(rows), n) for s in sums)
            if not len(rows):
                got.append((g, [[], None], [np.zeros(0, np.int64) for _ in sums]))
                continue
            got.append((g, [rows.tolist(), None if cols is None else cols.tolist()],
                        [np.ascontiguousarray(s).view(np.int64) for s in sums]))  # fmt: skip
        return got
    finally:
        native.use(before)


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        ga == gb and ra == rb and len(sa) == len(sb)
        and all(np.array_equal(x, y) for x, y in zip(sa, sb, strict=True))
        for (ga, ra, sa), (gb, rb, sb) in zip(a, b, strict=True)
    )


@pytest.mark.parametrize(("block_cells", "piece_cells"), [(1 << 20, 1 << 16), (1 << 20, 100),
                                                          (64, 1 << 16), (1, 1)])  # fmt: skip
@pytest.mark.parametrize("sparse", [0.0, 1e9], ids=["whole-rows", "columns"])
@pytest.mark.parametrize("holes", ["none", "some", "position"])
@pytest.mark.parametrize("shared", [False, True], ids=["own-columns", "shared-columns"])
@pytest.mark.parametrize("sets", [1, 2, 3])
def test_the_compiled_scatter_gives_numpy_s_sums_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
    block_cells: int,
    piece_cells: int,
    sparse: float,
    holes: str,
    shared: bool,
    sets: int,
) -> None:
    """The numpy code's blocks of groups cut by ``_BLOCK_CELLS`` (the kernels take every
    group in one pass), the compiled kernels' output cut in pieces by ``_PIECE_CELLS``."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_native.py)")
    monkeypatch.setattr(layout, "_BLOCK_CELLS", block_cells)
    monkeypatch.setattr(layout, "_PIECE_CELLS", piece_cells)
    monkeypatch.setattr(layout, "_SPARSE", sparse)  # never, always over the columns touched
    for seed in range(6):
        poll = _poll(seed * 100 + sets, sets, shared, holes)
        compiled = _blocks(True, poll)
        assert _same(compiled, _blocks(False, poll))
        assert [g for g, _, _ in compiled] == list(range(len(poll["panes"])))


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("sparse", [0.0, 1e9], ids=["whole-rows", "columns"])
@pytest.mark.parametrize("seed", range(4))
def test_each_group_holds_what_its_own_scatter_adds(
    monkeypatch: pytest.MonkeyPatch, seed: int, sparse: float
) -> None:
    """Each group's rows and columns hold, bit for bit, what :func:`scatter_pane` of its
    events of each set in turn adds into zeros (the numpy code or the compiled kernels,
    whichever runs); its columns are those its events touch (or all of them: whole rows),
    every other cell is zero."""
    monkeypatch.setattr(layout, "_SPARSE", sparse)
    poll = _poll(seed, 2, seed % 2 == 1, "some")
    rows, width = poll["shape"]
    for g, used, cols, plain, decay in scatter_panes(**poll):
        want = np.zeros((rows, width))
        want_decay = [np.zeros((rows, width)) for _ in poll["rates"]]
        end = (poll["panes"][g] + 1) * poll["pane"]
        touched: set[int] = set()
        for t in poll["sets"]:
            mine = t.group == g
            touched.update(t.cols[mine].reshape(-1).tolist())
            one = np.zeros((rows, width))
            one_decay = [np.zeros((rows, width)) for _ in poll["rates"]]
            scatter_pane(one, one_decay, poll["rates"], end, t.slices[mine], t.cols[mine],
                         t.vals[mine], t.ts[mine])  # fmt: skip
            want += one
            for w, d in zip(want_decay, one_decay, strict=True):
                w += d
        columns = np.arange(width) if cols is None else cols  # (None: whole rows)
        assert cols is None or columns.tolist() == sorted(touched)
        cells = np.ix_(used, columns)
        assert np.array_equal(want[cells].view(np.int64), plain.view(np.int64))
        for w, d in zip(want_decay, decay, strict=True):
            assert np.array_equal(w[cells].view(np.int64), d.view(np.int64))
        for w in [want, *want_decay]:  # the cells left out hold nothing
            w[cells] = 0.0
            assert not w.any()


def test_the_pane_kernels_check_what_they_are_given() -> None:
    """Columns of the wrong item size or shape, slices beyond the rows, columns beyond the
    width, rows not numbered and outputs too small are errors, not writes out of bounds."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_native.py)")
    before = native.use(True)
    try:
        _check_the_pane_kernels(native.kernels() or pytest.fail("compiled kernels off"))
    finally:
        native.use(before)


def _check_the_pane_kernels(kernels: Any) -> None:
    """:func:`test_the_pane_kernels_check_what_they_are_given` with the module."""
    one = Terms(np.array([0, 1]), np.array([[0, 2], [1, -1]]), np.array([[1, 3], [0, 0]]),
                np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([5.0, 15.0]))  # fmt: skip
    number, row, cuts = (np.empty(n, dtype=np.int64) for n in (6, 6, 3))
    assert kernels.pane_rows([one], 3, 0, 2, number, row, cuts) == 3
    assert (number.tolist(), row[:3].tolist(), cuts.tolist()) == (
        [0, -1, 1, -1, 2, -1], [0, 2, 1], [0, 2, 3]
    )
    local, cols, ccuts = np.full((2, 2), -9), np.empty(4, dtype=np.int64), np.empty(3, np.int64)
    assert kernels.pane_columns([one], 4, 0, 2, [local], cols, ccuts) == 3
    assert (cols[:3].tolist(), ccuts.tolist(), local.tolist()) == ([1, 3, 0], [0, 2, 3],
                                                                   [[0, 1], [0, 0]])  # fmt: skip
    factors = np.array([[0.5, 0.25]])
    pieces = [np.zeros(8), np.zeros(2)]  # group 0's block (2, 2 rows, 2 columns), group 1's
    args = ([one], [local], factors, number, cuts, ccuts, 3, 4, 0, 2)
    kernels.pane_sums(*args, pieces)
    assert pieces[0].tolist() == [1, 2, 1, 2, 0.5, 1, 0.5, 1]
    assert pieces[1].tolist() == [7, 1.75]
    held = [np.full(8, np.nan), np.full(2, -0.0)]  # what the pieces held is written over
    kernels.pane_sums(*args, held)
    assert [h.tolist() for h in held] == [p.tolist() for p in pieces]
    zeros = [np.zeros(8), np.zeros(2)]  # (not cleared: zeros given)
    kernels.pane_sums(*args, zeros, False)
    assert [z.tolist() for z in zeros] == [p.tolist() for p in pieces]
    bad: list[Any] = [
        one._replace(group=one.group.astype(np.int32)),  # item size
        one._replace(slices=one.slices[:1]),  # not one row per event
        one._replace(vals=one.vals[:, :1]),  # cols and vals of two shapes
        one._replace(group=one.group[:, None]),  # not 1-D
        (one.group,),  # not a Terms
    ]
    for terms in bad:
        with pytest.raises((TypeError, ValueError)):
            kernels.pane_rows([terms], 3, 0, 2, number, row, cuts)
        with pytest.raises((TypeError, ValueError)):
            kernels.pane_columns([terms], 4, 0, 2, [local], cols, ccuts)
        with pytest.raises((TypeError, ValueError)):
            kernels.pane_sums([terms], *args[1:], pieces)
    with pytest.raises(TypeError):
        kernels.pane_rows(one, 3, 0, 2, number, row, cuts)  # not a sequence of sets
    with pytest.raises(ValueError):
        kernels.pane_rows([one], 2, 0, 2, number, row, cuts)  # a slice beyond the rows
    with pytest.raises(ValueError):
        kernels.pane_rows([one], 3, 0, 3, number, row, cuts)  # number too short
    with pytest.raises(ValueError):
        kernels.pane_rows([one], 3, 0, 2, number, row, cuts[:2])  # cuts too short
    with pytest.raises(ValueError):
        kernels.pane_columns([one], 3, 0, 2, [local], cols, ccuts)  # column 3
    with pytest.raises(ValueError):
        kernels.pane_columns([one], 4, 0, 2, [local], cols[:2], ccuts)  # cols too short
    with pytest.raises(ValueError):
        kernels.pane_columns([one], 4, 0, 2, [local], cols, ccuts[:2])  # ccuts too short
    with pytest.raises(ValueError):
        kernels.pane_columns([one], 4, 0, 2, [local[:1]], cols, ccuts)  # local too short
    with pytest.raises(ValueError):
        kernels.pane_columns([one], 4, 0, 2, [], cols, ccuts)  # no local per set
    with pytest.raises(TypeError):
        kernels.pane_columns([one], 4, 0, 2, [local.astype(np.int32)], cols, ccuts)
    out = [np.zeros(10)]
    kernels.pane_sums(*args, out)  # one piece of both blocks
    assert out[0].tolist() == pieces[0].tolist() + pieces[1].tolist()
    with pytest.raises(ValueError):
        kernels.pane_sums(*args, [np.zeros(9)])  # a cell short
    with pytest.raises(ValueError):
        kernels.pane_sums(*args, [np.zeros(11)])  # a cell too many
    with pytest.raises(ValueError):
        kernels.pane_sums(*args, [np.zeros(6), np.zeros(4)])  # group 0's block cut
    with pytest.raises(ValueError):
        kernels.pane_sums(*args[:4], cuts, ccuts[[0, 2, 1]], *args[6:], out)  # not ascending
    wide = local.copy()
    wide[1, 0] = 1  # group 1 has one column
    with pytest.raises(ValueError):
        kernels.pane_sums([one], [wide], *args[2:], out)
    with pytest.raises(ValueError):
        kernels.pane_sums(*args[:3], number[:3], *args[4:], out)  # number too short
    with pytest.raises(ValueError):
        kernels.pane_sums(*args[:2], factors[:, :1], *args[3:], out)  # a factor short
    with pytest.raises(TypeError):
        kernels.pane_sums(*args[:2], factors.astype(np.float32), *args[3:], out)
    with pytest.raises((BufferError, ValueError)):
        kernels.pane_sums(*args, np.zeros(10))  # one array, not pieces
    with pytest.raises(TypeError):
        kernels.pane_sums(*args, 5)  # not a sequence
