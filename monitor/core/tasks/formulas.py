"""Metric formulas more than one task uses: a guarded ratio, Matthews correlation and
average precision, vectorised over the rows of accumulator sums."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["average_precision", "div", "mcc"]

F64 = npt.NDArray[np.float64]


def div(num: F64, den: F64, empty: float = 0.0) -> F64:
    """``num / den`` where ``den > 0``, ``empty`` elsewhere (scikit-learn's ``zero_division``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F64 = np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)
    return out


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
        out: F64 = np.where(den > 0, cov_ytyp / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)
    return out


def average_precision(pos: F64, neg: F64, big_p: F64) -> F64:
    """Average precision from the positives' and negatives' score histograms ``(S, B)``
    (``big_p``: positives per row): over thresholds at each bin, from the highest score
    down; NaN without positives."""
    tp_c = np.cumsum(pos[:, ::-1], axis=1)
    fp_c = np.cumsum(neg[:, ::-1], axis=1)
    precision_at = div(tp_c, tp_c + fp_c)
    recall_at = div(tp_c, big_p[:, None])
    d_recall = np.diff(recall_at, axis=1, prepend=0.0)
    out: F64 = np.where(big_p > 0, (d_recall * precision_at).sum(axis=1), np.nan)
    return out
