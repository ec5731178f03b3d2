"""Score binning is exact for decimal scores: with ``score_bins = 10**k`` every score with
``k`` decimals has its own bin, so ROC AUC and PR AUC from the histograms equal
scikit-learn's on the raw scores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from monitor.core.layout import Layout
from monitor.core.metrics import compute_metrics


def _metrics(scores: list[float], labels: list[int], bins: int) -> dict[str, float]:
    layout = Layout("binary", 2, bins)
    acc = np.zeros((1, layout.width))
    score = np.asarray(scores)
    label = np.asarray(labels, dtype=np.float64)
    cols, vals = layout.outcome_terms((score > 0.5).astype(np.float64), score, label)
    np.add.at(acc[0], cols.ravel(), vals.ravel())
    return {k: float(v[0]) for k, v in compute_metrics(layout, acc, with_drift=False).items()}


@settings(deadline=None, max_examples=200)
@given(
    st.integers(1, 3),
    st.lists(st.tuples(st.integers(0, 999), st.booleans()), min_size=2, max_size=300),
)
def test_auc_of_k_decimal_scores_equals_sklearn(k: int, rows: list[tuple[int, bool]]) -> None:
    top = 10**k
    # scores as a model server's text would give them: "0.29" parsed, below 1.0 (1.0
    # shares the last bin with the largest k-decimal score below it)
    scores: list[float] = []
    labels: list[int] = []
    for m, y in rows:  # each score beside its lower neighbour with the other label
        for mm, yy in ((m % top, int(y)), (max(m % top - 1, 0), 1 - int(y))):
            scores.append(float(f"{mm / top:.{k}f}"))
            labels.append(yy)
    got = _metrics(scores, labels, top)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_every_k_decimal_score_at_once(k: int) -> None:
    top = 10**k
    rng = np.random.default_rng(k)
    scores = [float(f"{m / top:.{k}f}") for m in range(top)] * 3
    labels = [int(v) for v in rng.integers(0, 2, len(scores))]
    got = _metrics(scores, labels, top)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_the_scores_floor_put_one_bin_low() -> None:
    """0.29, 0.57 and 0.58 times 100 round below the integer: their bins must not."""
    layout = Layout("binary", 2, 100)
    got = layout._bin(np.array([0.29, 0.57, 0.58, 0.0, 0.999, 1.0]))
    assert got.tolist() == [29, 57, 58, 0, 99, 99]
    labels = [1, 0, 1, 0]
    scores = [0.29, 0.285, 0.57, 0.575]
    assert _metrics(scores, labels, 1000)["roc_auc"] == roc_auc_score(labels, scores)
