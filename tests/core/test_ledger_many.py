"""A poll's (model, pane) groups handed to a DeltaLedger at once (``add_sums_many``,
``add_errors_many``) leave it as ``add_sums`` / ``add_errors`` of each group in turn do:
new panes, panes that hold errors only, panes that hold sums of other rows and columns
already, models of other widths; the same deltas taken, bit for bit, with the compiled
kernels and without."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from monitor.core.partials import DeltaLedger

WIDTHS = [6, 9, 6]
RATES = [[0.1], [0.1, 0.01], []]


def _ledger() -> DeltaLedger:
    """A ledger that holds something already: sums in some panes, errors in others."""
    ledger = DeltaLedger(10.0, WIDTHS, RATES)
    ledger.add_sums(0, 5, np.full((1, 2), 3.0), [np.full((1, 2), 0.5)], np.array([1]),
                    np.array([0, 4]))  # fmt: skip
    ledger.add_sums(1, 7, np.ones((2, 9)), [np.ones((2, 9)), np.ones((2, 9))], np.array([0, 2]))
    ledger.add_errors(0, 6, 0, [60.5], [1.5])
    ledger.add_errors(2, 5, 0, [51.0, 52.0], [-0.0, 2.0])
    return ledger


def _groups(seed: int) -> list[tuple[int, int, np.ndarray, np.ndarray | None, np.ndarray,
                                     list[np.ndarray]]]:  # fmt: skip
    """(model, pane, rows, columns, plain, decay) of random distinct (model, pane) pairs,
    some of them the panes the ledger holds already."""
    rng = np.random.default_rng(seed)
    pairs = sorted({(int(rng.integers(0, 3)), int(rng.integers(4, 10))) for _ in range(12)})
    out = []
    for m, pane in pairs:
        rows = np.sort(rng.choice(4, int(rng.integers(0, 4)), replace=False)).astype(np.int64)
        cols = None
        if rng.random() < 0.6:
            cols = np.sort(rng.choice(WIDTHS[m], int(rng.integers(1, WIDTHS[m])),
                                      replace=False)).astype(np.int64)  # fmt: skip
        shape = (len(rows), WIDTHS[m] if cols is None else len(cols))
        plain = rng.normal(size=shape) * rng.integers(0, 2, size=shape)
        decay = [rng.normal(size=shape) for _ in RATES[m]]
        out.append((m, pane, rows, cols, plain, decay))
    return out


def _taken(build: Callable[[], DeltaLedger]) -> list[list[tuple[object, ...]]]:
    """Every model's deltas of a ledger ``build`` makes (as the wire carries them, then as
    handed over in the process), blocks as bytes."""
    out = []
    for arrays in (False, True):
        for panes in build().take_all(arrays):
            out.append([(p.pane, p.rows, bytes(np.ascontiguousarray(p.plain)),
                         [bytes(np.ascontiguousarray(d)) for d in p.decay], p.err_ts, p.err,
                         None if getattr(p, "cols", None) is None else p.cols.tolist())
                        for p in panes])  # fmt: skip
    return out


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("seed", range(8))
def test_many_groups_at_once_are_each_group_in_turn(seed: int) -> None:
    groups = _groups(seed)
    rng = np.random.default_rng(seed + 100)
    errors = [([float(x) for x in rng.random(int(rng.integers(1, 4)))],
               [float(x) for x in rng.normal(size=3)]) for _ in groups]  # fmt: skip
    errors = [(t, e[: len(t)]) for t, e in errors]

    def one() -> DeltaLedger:
        ledger = _ledger()
        for (m, pane, rows, cols, plain, decay), (t, e) in zip(groups, errors, strict=True):
            ledger.add_sums(m, pane, plain.copy(), [d.copy() for d in decay], rows, cols)
            ledger.add_errors(m, pane, 0, list(t), list(e), own=True)
        return ledger

    def many() -> DeltaLedger:
        ledger = _ledger()
        ledger.add_sums_many([g[0] for g in groups], [g[1] for g in groups],
                             [g[2] for g in groups], [g[3] for g in groups],
                             [g[4].copy() for g in groups],
                             [[d.copy() for d in g[5]] for g in groups])  # fmt: skip
        ledger.add_errors_many([g[0] for g in groups], [g[1] for g in groups],
                               [list(t) for t, _ in errors], [list(e) for _, e in errors])
        return ledger

    assert [sorted(p) for p in many().panes] == [sorted(p) for p in one().panes]
    assert _taken(many) == _taken(one)


def test_nothing_at_once_adds_nothing() -> None:
    def empty() -> DeltaLedger:
        ledger = _ledger()
        ledger.add_sums_many([], [], [], [], [], [])
        ledger.add_errors_many([], [], [], [])
        return ledger

    assert _taken(empty) == _taken(_ledger)
