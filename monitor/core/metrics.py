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

__all__ = ["average_precision", "compute_metrics", "mcc", "task_metrics"]

F64 = npt.NDArray[np.float64]


def _div(num: F64, den: F64, empty: float = 0.0) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def mcc(conf: F64) -> F64:
    """Matthews correlation from confusion matrices ``(S, K, K)`` (rows = label), as sklearn."""
    t_sum = conf.sum(axis=2)
    p_sum = conf.sum(axis=1)
    n = t_sum.sum(axis=1)
    correct = np.trace(conf, axis1=1, axis2=2)
    cov_ytyp = correct * n - (t_sum * p_sum).sum(axis=1)
    cov_ypyp = n * n - (p_sum * p_sum).sum(axis=1)
    cov_ytyt = n * n - (t_sum * t_sum).sum(axis=1)
    den = cov_ytyt * cov_ypyp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, cov_ytyp / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)


def average_precision(pos: F64, neg: F64, big_p: F64) -> F64:
    """Average precision from the positives' and negatives' score histograms ``(S, B)``
    (``big_p``: positives per row): over thresholds at each bin, from the highest score
    down; NaN without positives."""
    tp_c = np.cumsum(pos[:, ::-1], axis=1)
    fp_c = np.cumsum(neg[:, ::-1], axis=1)
    precision_at = _div(tp_c, tp_c + fp_c)
    recall_at = _div(tp_c, big_p[:, None])
    d_recall = np.diff(recall_at, axis=1, prepend=0.0)
    out: F64 = np.where(big_p > 0, (d_recall * precision_at).sum(axis=1), np.nan)
    return out


def _binary(layout: Layout, acc: F64) -> dict[str, F64]:
    n = acc[:, layout.col("n")]
    tp, fp, tn, fn = (acc[:, layout.col(c)] for c in ("tp", "fp", "tn", "fn"))
    scored = acc[:, layout.col("scored_n")]
    pos = acc[:, layout.cols("pos_hist")]
    neg = acc[:, layout.cols("neg_hist")]
    big_p = pos.sum(axis=1)
    big_n = neg.sum(axis=1)
    # ROC AUC: each positive beats the negatives in lower bins and ties those in its own.
    neg_below = np.cumsum(neg, axis=1) - neg
    pairs = big_p * big_n
    auc = _div((pos * (neg_below + 0.5 * neg)).sum(axis=1), pairs, np.nan)
    auc_err = _div(0.5 * (pos * neg).sum(axis=1), pairs, np.nan)
    ap = average_precision(pos, neg, big_p)
    present = (tp + fn > 0).astype(float) + (tn + fp > 0).astype(float)
    recall = _div(tp, tp + fn)
    specificity = _div(tn, tn + fp)
    conf = np.stack([np.stack([tn, fp], axis=1), np.stack([fn, tp], axis=1)], axis=1)
    out = {
        "accuracy": _div(tp + tn, n, np.nan),
        "precision": _div(tp, tp + fp),
        "recall": recall,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "specificity": specificity,
        "balanced_accuracy": _div(recall * (tp + fn > 0) + specificity * (tn + fp > 0), present),
        "mcc": mcc(conf),
        "log_loss": _div(acc[:, layout.col("log_loss_sum")], scored, np.nan),
        "brier": _div(acc[:, layout.col("brier_sum")], scored, np.nan),
        "roc_auc": auc,
        "roc_auc_bin_error": auc_err,
        "pr_auc": ap,
    }
    empty = n <= 0
    for name in ("precision", "recall", "f1", "specificity", "balanced_accuracy", "mcc"):
        out[name] = np.where(empty, np.nan, out[name])
    pred_n = acc[:, layout.col("pred_n")]
    out["prediction_count"] = pred_n
    out["positive_rate"] = _div(acc[:, layout.col("pred_pos")], pred_n, np.nan)
    out["score_mean"] = _div(acc[:, layout.col("score_sum")], acc[:, layout.col("score_n")], np.nan)
    return out


def _multiclass(layout: Layout, acc: F64, class_names: tuple[str, ...]) -> dict[str, F64]:
    k = layout.n_classes
    conf = acc[:, layout.cols("confusion")].reshape(-1, k, k)
    n = acc[:, layout.col("n")]
    diag = np.diagonal(conf, axis1=1, axis2=2)
    support = conf.sum(axis=2)
    predicted = conf.sum(axis=1)
    present = (support + predicted) > 0
    n_present = present.sum(axis=1)
    precision = _div(diag, predicted)
    recall = _div(diag, support)
    f1 = _div(2 * diag, support + predicted)
    accuracy = _div(diag.sum(axis=1), n, np.nan)
    out: dict[str, F64] = {"accuracy": accuracy}
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"macro_{name}"] = _div((per_class * present).sum(axis=1), n_present, np.nan)
        out[f"weighted_{name}"] = _div((per_class * support).sum(axis=1), n, np.nan)
        out[f"micro_{name}"] = accuracy
    out["mcc"] = np.where(n > 0, mcc(conf), np.nan)
    for i, cls in enumerate(class_names):
        out[f"class_recall:{cls}"] = _div(diag[:, i], support[:, i], np.nan)
    pred_n = acc[:, layout.col("pred_n")]
    out["prediction_count"] = pred_n
    shares = _div(acc[:, layout.cols("pred_class")], pred_n[:, None], np.nan)
    for i, cls in enumerate(class_names):
        out[f"class_share:{cls}"] = shares[:, i]
    return out


def _regression(layout: Layout, acc: F64, sample_count: F64 | None) -> dict[str, F64]:
    n = acc[:, layout.col("n")]
    count = n if sample_count is None else sample_count
    ss_res = acc[:, layout.col("squared_error_sum")]
    label_sum = acc[:, layout.col("label_sum")]
    label_sq = acc[:, layout.col("label_sq_sum")]
    with np.errstate(divide="ignore", invalid="ignore"):
        ss_tot = label_sq - label_sum * label_sum / np.where(n > 0, n, 1.0)
    # Cancellation leaves a constant label's spread at rounding level: that is zero.
    constant = ss_tot <= 1e-12 * np.maximum(label_sq, 1e-300)
    r2 = np.where(constant, np.where(ss_res <= 0, 1.0, 0.0), 1.0 - _div(ss_res, ss_tot))
    out = {
        "mae": _div(acc[:, layout.col("abs_error_sum")], n, np.nan),
        "rmse": np.sqrt(_div(ss_res, n, np.nan)),
        "mape": _div(acc[:, layout.col("ape_sum")], n, np.nan),
        "r2": np.where((count >= 2) & (n > 0), r2, np.nan),
        "mean_error": _div(acc[:, layout.col("error_sum")], n, np.nan),
    }
    pred_n = acc[:, layout.col("pred_n")]
    out["prediction_count"] = pred_n
    out["prediction_mean"] = _div(acc[:, layout.col("pred_sum")], pred_n, np.nan)
    return out


def task_metrics(
    layout: Layout,
    acc: F64,
    class_names: tuple[str, ...] = (),
    sample_count: F64 | None = None,
) -> dict[str, F64]:
    """The labelled metrics and prediction statistics of the layout's task, one value per
    row of ``acc`` (no coverage, drift, estimates or gaps; see :func:`compute_metrics`)."""
    if layout.task == "binary":
        return _binary(layout, acc)
    if layout.task == "multiclass":
        return _multiclass(layout, acc, class_names)
    return _regression(layout, acc, sample_count)


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
        "label_coverage": np.minimum(_div(joined, acc[:, layout.col("pred_n")], np.nan), 1.0),
    }
