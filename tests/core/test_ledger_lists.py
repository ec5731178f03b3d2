"""What a DeltaLedger keeps as it is given: the errors' lists a caller hands over
(``add_errors(..., own=True)``) and a delta handed over in the process, whose panes carry
their rows as the ledger's int64 array too (``HandedPaneDelta.at``) next to the list; the
same errors, in the same order, as lists copied in, with the compiled kernels and without."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.partials import DeltaLedger, HandedPaneDelta


def _errors(ledger: DeltaLedger, own: bool) -> list[tuple[int, list[float], list[float]]]:
    """Errors of model 0 in three panes: given once, twice, and after the pane's sums."""
    ledger.add_errors(0, 1, 0, [1.0, 2.0], [0.5, -0.5], own)
    ledger.add_errors(0, 2, 0, [3.0], [1.0], own)
    ledger.add_errors(0, 2, 0, [4.0, 5.0], [0.0, -0.0], own)
    ledger.add_sums(0, 3, np.ones((1, 4)), [np.ones((1, 4))], np.array([2]))
    ledger.add_errors(0, 3, 0, [6.0], [2.0], own)
    return [(p.pane, p.err_ts, p.err) for p in ledger.take(0, arrays=True)]


@pytest.mark.usefixtures("kernels")
def test_errors_handed_over_are_the_errors_copied_in() -> None:
    given = DeltaLedger(10.0, [4], [[0.1]])
    copied = DeltaLedger(10.0, [4], [[0.1]])
    assert (
        _errors(given, True)
        == _errors(copied, False)
        == [
            (1, [1.0, 2.0], [0.5, -0.5]),
            (2, [3.0, 4.0, 5.0], [1.0, 0.0, -0.0]),
            (3, [6.0], [2.0]),
        ]
    )


def test_a_list_handed_over_is_kept_and_later_errors_follow_it() -> None:
    ledger = DeltaLedger(10.0, [4], [[]])
    ts, err = [1.0], [0.25]
    ledger.add_errors(0, 7, 0, ts, err, own=True)
    ledger.add_errors(0, 7, 0, [2.0], [0.5], own=True)
    (pane,) = ledger.take(0)
    assert pane.err_ts is ts and ts == [1.0, 2.0] and err == [0.25, 0.5]


@pytest.mark.usefixtures("kernels")
def test_a_pane_handed_over_carries_its_rows_as_an_array_too() -> None:
    ledger = DeltaLedger(10.0, [5], [[0.1]])
    rows = np.array([0, 3], dtype=np.int64)
    plain = np.array([[1.0, 2.0], [0.0, 3.0]])
    ledger.add_sums(0, 4, plain, [plain * 0.5], rows, np.array([1, 4], dtype=np.int64))
    ledger.add_sums(0, 5, np.zeros((2, 5)), [np.zeros((2, 5))], rows)  # rows of zeros only
    ledger.add_errors(0, 5, 0, [51.0], [1.0], own=True)
    taken = ledger.take(0, arrays=True)
    assert [type(p) for p in taken] == [HandedPaneDelta, HandedPaneDelta]
    first, second = taken
    assert isinstance(first, HandedPaneDelta) and isinstance(second, HandedPaneDelta)
    assert first.rows == [0, 3] and first.at is not None and first.at.tolist() == first.rows
    assert first.at.dtype == np.int64 and first.cols is not None and first.cols.tolist() == [1, 4]
    assert second.rows == [] and second.at is not None and second.at.tolist() == []
    assert second.err_ts == [51.0]
