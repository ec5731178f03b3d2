"""Metric values from accumulator sums, vectorised over slices.

Each function takes a ``(slices, width)`` array laid out by :class:`~monitor.core.layout.Layout`
(plain counts for ``all`` and sliding windows, decayed weights for ``ewm`` windows) and
returns ``{metric: array of shape (slices,)}``. The definitions are scikit-learn's, with
sample weights for decayed sums; a window with no events gives NaN. Where scikit-learn
divides by zero (precision with no predicted positives, ...) the value is 0, as its
``zero_division=0``; per-class recall of a class with no support is NaN.

``roc_auc`` and ``pr_auc`` come from score histograms of ``score_bins`` bins: they equal
scikit-learn's ``roc_auc_score`` / ``average_precision_score`` on scores floored to the bin
grid (bin ``b`` holds ``b / bins <= score < (b + 1) / bins``, see ``Layout._bin``; exact
for scores with ``k`` decimals and ``10**k`` bins). Against the raw scores, binning changes
ROC AUC by at most half the mass of positive-negative pairs that share a bin,
``0.5 * sum_b pos_b * neg_b / (P * N)`` (the returned ``roc_auc_bin_error``).

Every task also gets ``label_count`` (joined pairs in the window) and ``label_coverage``
(joined pairs / predictions in the window), which label-starvation rules read.

:func:`compute_metrics` is the definition, one window at a time; at a pane close the
engine computes the same values for all of a model's windows at once with
:func:`monitor.core.panemetrics.pane_signals`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from monitor.config import GAP_METRICS
from monitor.core.drift import drift_signals, output_drift
from monitor.core.estimate import estimated_metrics
from monitor.core.layout import Layout
from monitor.core.tasks.formulas import average_precision, div, mcc

__all__ = ["average_precision", "compute_metrics", "mcc", "task_metrics"]

F64 = npt.NDArray[np.float64]


def task_metrics(
    layout: Layout,
    acc: F64,
    class_names: tuple[str, ...] = (),
    sample_count: F64 | None = None,
) -> dict[str, F64]:
    """The labelled metrics and prediction statistics of the layout's task, one value per
    row of ``acc`` (no coverage, drift, estimates or gaps; see :func:`compute_metrics`): the
    task's own (:meth:`monitor.core.tasks.base.Task.metrics`)."""
    return layout.kind.metrics(layout, acc, class_names, sample_count)


def compute_metrics(
    layout: Layout,
    acc: F64,
    class_names: tuple[str, ...] = (),
    sample_count: F64 | None = None,
    drift_min_samples: int = 100,
    with_drift: bool = True,
) -> dict[str, F64]:
    """Every metric of the layout's task, one value per slice (row of ``acc``).

    ``sample_count`` is the number of events behind each row when ``acc`` holds decayed
    weights (R2, like scikit-learn, is undefined below two events, whatever their weight).
    Models with features also get the drift and data-quality signals of
    :func:`~monitor.core.drift.drift_signals` (``drift_min_samples`` is their minimum count).

    >>> from monitor.core.layout import Layout
    >>> lay = Layout("regression"); acc = np.zeros((1, lay.width))
    >>> acc[0, lay.col("n")] = 2; acc[0, lay.col("abs_error_sum")] = 3.0
    >>> float(compute_metrics(lay, acc)["mae"][0])
    1.5
    """
    out = task_metrics(layout, acc, class_names, sample_count)
    out.update(_coverage(layout, acc))
    if not with_drift:
        return out
    out.update(drift_signals(layout, acc, drift_min_samples))
    out.update(output_drift(layout, acc, drift_min_samples))
    out.update(estimated_metrics(layout, acc, drift_min_samples))
    baseline = layout.baseline
    if baseline is not None:
        for name, ref in baseline.metrics.items():
            base = name.split(":")[0]
            if base in GAP_METRICS and name in out:
                out[f"gap:{name}"] = out[name] - ref
    return out


def _coverage(layout: Layout, acc: F64) -> dict[str, F64]:
    """``label_count``: joined pairs in the window; ``label_coverage``: joined / predictions,
    at most 1 (NaN without predictions). A joined pair counts in its label's pane, so when
    labels of earlier predictions catch up the ratio would pass 1: a coverage is a share."""
    joined = acc[:, layout.col("n")]
    return {
        "label_count": joined,
        "label_coverage": np.minimum(div(joined, acc[:, layout.col("pred_n")], np.nan), 1.0),
    }
