"""DeltaLedger.take leaves out the rows of a pane's blocks that hold nothing but zeros
(-0.0 among them; NaN is a value) the same way with the compiled kernel
(``monitor._native.nonzero_rows``) as with the numpy code: the same panes, rows and blocks,
bit for bit, for models with one slice row and with many, panes of errors only, and
panes added to twice."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from monitor import native
from monitor.core.partials import DeltaLedger, ModelDelta, PaneDelta, PartitionDelta


def _block(rng: np.random.Generator, k: int, width: int) -> np.ndarray:
    """Rows of which some hold only zeros (of either sign), others a few values, NaN too."""
    block = np.zeros((k, width))
    for r in range(k):
        kind = rng.random()
        if kind < 0.3:
            block[r, rng.random(width) < 0.5] = -0.0
        elif kind < 0.4:
            block[r, int(rng.integers(0, width))] = np.nan
        else:
            cells = rng.random(width) < 0.3
            cells[int(rng.integers(0, width))] = True
            block[r, cells] = rng.normal(size=int(cells.sum()))
    return block


def _ledger(seed: int, columns: bool = False) -> DeltaLedger:
    """A ledger of random additions (``columns``: most of them blocks of some columns)."""
    rng = np.random.default_rng(seed)
    widths, slices = [6, 3], [5, 1]
    ledger = DeltaLedger(10.0, widths, [[0.01], []])
    for _ in range(40):
        m = int(rng.integers(0, 2))
        pane = int(rng.integers(0, 12))
        if rng.random() < 0.15:
            ledger.add_errors(m, pane, slices[m], [1.0], [0.0])
            continue
        k = int(rng.integers(1, slices[m] + 1))
        rows = np.sort(rng.choice(slices[m], size=k, replace=False)).astype(np.int64)
        cols = None
        if columns and rng.random() < 0.8:
            n = int(rng.integers(1, widths[m] + 1))
            cols = np.sort(rng.choice(widths[m], size=n, replace=False)).astype(np.int64)
        n = widths[m] if cols is None else len(cols)
        decay = [_block(rng, k, n) for _ in ledger.decay_rates[m]]
        ledger.add_sums(m, pane, _block(rng, k, n), decay, rows, cols)
    return ledger


def _taken(ledger: DeltaLedger, m: int, compiled: bool) -> list[tuple[object, ...]]:
    before = native.use(compiled)
    try:
        panes: list[PaneDelta] = ledger.take(m, arrays=True)
    finally:
        native.use(before)
    return [
        (p.pane, p.rows, np.asarray(p.plain).tobytes(), [np.asarray(d).tobytes() for d in p.decay],
         p.err_ts, p.err, None if getattr(p, "cols", None) is None else p.cols.tolist())
        for p in panes
    ]  # fmt: skip


@pytest.mark.skipif(not native.available(), reason="monitor._native is not built")
@pytest.mark.parametrize("columns", [False, True], ids=["whole-rows", "columns"])
@pytest.mark.parametrize("seed", range(30))
def test_compiled_take_is_the_numpy_take(seed: int, columns: bool) -> None:
    ledger = _ledger(seed, columns)
    for m in range(2):
        other = copy.deepcopy(ledger)
        assert _taken(ledger, m, True) == _taken(other, m, False)


def test_nonzero_rows_checks_its_arguments() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built")
    from monitor import _native  # type: ignore[attr-defined]

    with pytest.raises(ValueError):
        _native.nonzero_rows([np.zeros((2, 3))], 4)
    with pytest.raises(ValueError):
        _native.nonzero_rows([np.zeros((2, 3))], 0)
    with pytest.raises((BufferError, ValueError)):  # not C-contiguous
        _native.nonzero_rows([np.ones((3, 2)).T], 3)
    with pytest.raises(TypeError):
        _native.nonzero_rows((np.zeros(3),), 3)
    block = np.array([[0.0, -0.0], [0.0, 1.0], [np.nan, 0.0], [-0.0, 0.0]])
    assert _native.nonzero_rows([block, block[1:3].copy(), np.zeros((0, 2))], 2) == [
        [1, 2],
        None,
        None,
    ]
    # one width per block
    assert _native.nonzero_rows([block, np.array([[0.0, 0.0, 1.0]])], [2, 3]) == [[1, 2], None]
    with pytest.raises(ValueError):
        _native.nonzero_rows([block], [2, 3])
    with pytest.raises(ValueError):
        _native.nonzero_rows([block], [0])


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("seed", range(10))
def test_every_model_taken_at_once_is_each_taken(seed: int) -> None:
    """take_all (one search of every model's blocks) gives what take of each model gives,
    in the order asked, and forgets what it took."""
    ledger = _ledger(seed)
    other = copy.deepcopy(ledger)
    compiled = native.kernels() is not None
    each = [_taken(other, m, compiled) for m in (1, 0)]
    both = ledger.take_all(arrays=True, models=[1, 0])
    assert [
        [(p.pane, p.rows, np.asarray(p.plain).tobytes(),
          [np.asarray(d).tobytes() for d in p.decay], p.err_ts, p.err, None) for p in panes]
        for panes in both
    ] == each  # fmt: skip
    assert ledger.take_all() == [[], []]


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("seed", range(10))
def test_blocks_of_some_columns_take_as_blocks_spread_over_the_width(seed: int) -> None:
    """A ledger given blocks of some columns (as :func:`~monitor.core.layout.scatter_panes`
    makes them) gives the deltas, on the wire and handed over, of one given those blocks
    spread over the width: sums, which hold no -0.0."""
    ledger = _ledger(seed, columns=True)
    spread = DeltaLedger(10.0, ledger.widths, ledger.decay_rates)
    for m, panes in enumerate(ledger.panes):
        for pane, acc in panes.items():
            blocks = []
            for block in [acc.plain, *acc.decay]:
                block += 0.0  # (no -0.0: a sum from 0.0 is never one)
                whole = np.zeros((len(block), ledger.widths[m]))
                whole[:, slice(None) if acc.cols is None else acc.cols] = block
                blocks.append(whole)
            spread.add_sums(m, pane, blocks[0], blocks[1:], acc.rows)
            spread.panes[m][pane].err_ts, spread.panes[m][pane].err = acc.err_ts, acc.err
    handed = copy.deepcopy(ledger)
    for m in range(2):
        wired = ledger.take(m)
        assert [(p.pane, p.rows, bytes(p.plain), [bytes(d) for d in p.decay], p.err)
                for p in wired] == [(p.pane, p.rows, bytes(p.plain), [bytes(d) for d in p.decay],
                                     p.err) for p in spread.take(m)]  # fmt: skip
        for got, want in zip(handed.take(m, arrays=True), wired, strict=True):
            delta = PartitionDelta(1, 0, "s", 1, {}, {}, {}, [], None, [])
            model = ModelDelta("m", ledger.widths[m], [], [], [], [], 0.0, {}, 0, 0)
            plain, decay = delta.blocks(model, got)
            assert plain.tobytes() == bytes(want.plain)
            assert [d.tobytes() for d in decay] == [bytes(d) for d in want.decay]
