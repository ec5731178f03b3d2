"""The binary task: a positive class and the other, an optional positive-class score.

Columns (``B`` = ``score_bins``): prediction side ``pred_n``, ``pred_pos``, ``score_n``,
``score_sum``, ``score_hist[B]`` (scored predictions by score bin), ``pp_hist[B]`` (the
predicted positives among them); outcome side (joined pairs) ``n``, ``tp``, ``fp``,
``tn``, ``fn``, ``scored_n``, ``log_loss_sum``, ``brier_sum``, ``pos_hist[B]``,
``neg_hist[B]`` (scores of the positive and negative labels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

import numpy as np
import numpy.typing as npt

from monitor.catalogue import LABEL_SUBJECT, PREDICTION_SUBJECT
from monitor.core.calibration import midpoint_calibration
from monitor.core.tasks.base import ClassSums, Field, Task
from monitor.core.tasks.formulas import average_precision, div, mcc

if TYPE_CHECKING:
    from monitor.core.layout import Layout

__all__ = ["EPS", "BinaryTask", "score_bin"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Clipping of probabilities in log loss and the floor of |label| in MAPE (as scikit-learn).
EPS: Final = float(np.finfo(np.float64).eps)


#: The confusion cell of a pair (0 tp, 1 fp, 2 tn, 3 fn, the columns' order) by
#: ``2 * (label is positive) + (prediction is positive)``.
_CELL: Final = np.array([2, 1, 3, 0], dtype=np.int64)


def score_bin(score: F64, bins: int) -> I64:
    """Score bin ``b`` with ``b / bins <= score < (b + 1) / bins`` (the last one closed),
    compared with the edges as floats: ``floor(score * bins)`` alone puts 0.29 in bin 28
    of 100 (0.29 * 100 = 28.999999999999996), while ``29 / 100 == 0.29`` exactly, so
    scores with ``k`` decimals and ``score_bins = 10**k`` each get their own bin.

    >>> score_bin(np.array([0.29, 0.57, 0.58, 1.0]), 100).tolist()
    [29, 57, 58, 99]
    """
    x = np.nan_to_num(score, nan=0.0)
    b = np.floor(x * bins)
    b += x >= (b + 1.0) / bins  # the product rounded down across an edge
    b -= x < b / bins  # or up across one
    return np.clip(b.astype(np.int64), 0, bins - 1)


class BinaryTask(Task):
    """Binary classification; see the module docstring."""

    name: ClassVar[str] = "binary"
    score_field: ClassVar[str | None] = "score_hist"
    open_negative: ClassVar[bool] = True

    def columns(self, n_classes: int, score_bins: int) -> tuple[Field, ...]:
        return (
            "pred_n", "pred_pos", "score_n", "score_sum",
            ("score_hist", score_bins), ("pp_hist", score_bins),
            "n", "tp", "fp", "tn", "fn", "scored_n", "log_loss_sum", "brier_sum",
            ("pos_hist", score_bins), ("neg_hist", score_bins),
        )  # fmt: skip

    def prediction_terms(
        self, layout: Layout, pred: F64, score: F64, probs: F64 | None
    ) -> tuple[I64, F64]:
        e = len(pred)
        has = ~np.isnan(score)
        every = bool(has.all())  # every prediction scored (the usual poll)
        b = score_bin(score, layout.bins)
        cols = np.empty((e, 6), dtype=np.int64)
        cols[:, 0] = layout.col("pred_n")
        cols[:, 1] = layout.col("pred_pos")
        cols[:, 2] = layout.col("score_n")
        cols[:, 3] = layout.col("score_sum")
        cols[:, 4] = layout.col("score_hist") + b
        cols[:, 5] = layout.col("pp_hist") + b
        # Filled column by column: the values column_stack made, without its copies.
        vals = np.empty((e, 6), dtype=np.float64)
        vals[:, 0] = 1.0
        vals[:, 1] = pred
        vals[:, 2] = has
        vals[:, 3] = score if every else np.where(has, score, 0.0)
        vals[:, 4] = has
        vals[:, 5] = (pred == 1) if every else has & (pred == 1)
        return cols, vals

    def outcome_terms(self, layout: Layout, pred: F64, score: F64, label: F64) -> tuple[I64, F64]:
        e = len(pred)
        has = ~np.isnan(score)
        every = bool(has.all())  # every pair scored (the usual poll)
        p = np.clip(score if every else np.where(has, score, 0.5), EPS, 1.0 - EPS)
        y = label
        positive = y == 1
        log_loss = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
        brier = ((score if every else np.where(has, score, 0.0)) - y) ** 2
        # Filled column by column: the terms column_stack made, without its copies.
        cols = np.empty((e, 6), dtype=np.int64)
        cols[:, 0] = layout.col("n")
        # tp, fp, tn, fn are consecutive columns: cell 0..3 picks one (_CELL by label, then
        # prediction: 2 * positive + predicted positive).
        np.take(_CELL + layout.col("tp"), 2 * positive + (pred == 1), out=cols[:, 1])
        cols[:, 2] = layout.col("scored_n")
        cols[:, 3] = layout.col("log_loss_sum")
        cols[:, 4] = layout.col("brier_sum")
        cols[:, 5] = np.where(positive, layout.col("pos_hist"), layout.col("neg_hist"))
        cols[:, 5] += score_bin(score, layout.bins)
        vals = np.empty((e, 6), dtype=np.float64)
        vals[:, 0] = 1.0
        vals[:, 1] = 1.0
        vals[:, 2] = has
        vals[:, 3] = log_loss if every else np.where(has, log_loss, 0.0)
        vals[:, 4] = brier if every else np.where(has, brier, 0.0)
        vals[:, 5] = has
        return cols, vals

    def metrics(
        self, layout: Layout, acc: F64, class_names: tuple[str, ...], sample_count: F64 | None
    ) -> dict[str, F64]:
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
        auc = div((pos * (neg_below + 0.5 * neg)).sum(axis=1), pairs, np.nan)
        auc_err = div(0.5 * (pos * neg).sum(axis=1), pairs, np.nan)
        ap = average_precision(pos, neg, big_p)
        present = (tp + fn > 0).astype(float) + (tn + fp > 0).astype(float)
        recall = div(tp, tp + fn)
        specificity = div(tn, tn + fp)
        conf = np.stack([np.stack([tn, fp], axis=1), np.stack([fn, tp], axis=1)], axis=1)
        out = {
            "accuracy": div(tp + tn, n, np.nan),
            "precision": div(tp, tp + fp),
            "recall": recall,
            "f1": div(2 * tp, 2 * tp + fp + fn),
            "specificity": specificity,
            "balanced_accuracy": div(recall * (tp + fn > 0) + specificity * (tn + fp > 0), present),
            "mcc": mcc(conf),
            "log_loss": div(acc[:, layout.col("log_loss_sum")], scored, np.nan),
            "brier": div(acc[:, layout.col("brier_sum")], scored, np.nan),
            "roc_auc": auc,
            "roc_auc_bin_error": auc_err,
            "pr_auc": ap,
        }
        empty = n <= 0
        for name in ("precision", "recall", "f1", "specificity", "balanced_accuracy", "mcc"):
            out[name] = np.where(empty, np.nan, out[name])
        pred_n = acc[:, layout.col("pred_n")]
        out["prediction_count"] = pred_n
        out["positive_rate"] = div(acc[:, layout.col("pred_pos")], pred_n, np.nan)
        out["score_mean"] = div(
            acc[:, layout.col("score_sum")], acc[:, layout.col("score_n")], np.nan
        )
        return out

    def estimates(self, layout: Layout, acc: F64, min_samples: int) -> dict[str, F64]:
        """Rates of the calibrated scores' expected confusion (:mod:`monitor.core.estimate`)."""
        baseline = layout.baseline
        c = baseline.calibration if baseline is not None else None
        if c is None:
            c = midpoint_calibration(layout.bins)
        hist = acc[:, layout.cols("score_hist")]
        pp = acc[:, layout.cols("pp_hist")]
        pn = hist - pp
        tp, fp = pp @ c, pp @ (1.0 - c)
        fn, tn = pn @ c, pn @ (1.0 - c)
        scored = hist.sum(axis=1)
        pos = hist * c
        neg = hist * (1.0 - c)
        neg_below = np.cumsum(neg, axis=1) - neg
        auc = div((pos * (neg_below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))
        out = {
            "estimated_accuracy": div(tp + tn, scored, np.nan),
            "estimated_precision": div(tp, tp + fp),
            "estimated_recall": div(tp, tp + fn),
            "estimated_f1": div(2 * tp, 2 * tp + fp + fn),
            "estimated_roc_auc": auc,
        }
        enough = scored >= min_samples
        return {k: np.where(enough, v, np.nan) for k, v in out.items()}

    def class_counts(self, layout: Layout, acc: F64) -> dict[str, F64]:
        """Predicted and true classes, (negative, positive)."""
        pred_n, pos = acc[:, layout.col("pred_n")], acc[:, layout.col("pred_pos")]
        tp, fp, tn, fn = (acc[:, layout.col(c)] for c in ("tp", "fp", "tn", "fn"))
        return {
            PREDICTION_SUBJECT: np.stack([pred_n - pos, pos], axis=1),
            LABEL_SUBJECT: np.stack([tn + fp, tp + fn], axis=1),
        }

    def class_sums(self, layout: Layout) -> dict[str, ClassSums]:
        col = layout.col
        return {
            PREDICTION_SUBJECT: [
                {col("pred_n"): 1.0, col("pred_pos"): -1.0},
                {col("pred_pos"): 1.0},
            ],
            LABEL_SUBJECT: [{col("tn"): 1.0, col("fp"): 1.0}, {col("tp"): 1.0, col("fn"): 1.0}],
        }

    def calibration(self, layout: Layout, row: F64) -> tuple[F64 | None, int]:
        """Isotonic regression of the positive share per score bin of the joined rows
        (bins without rows take the fitted value of the nearest used bin); the bin
        midpoints when no row is joined."""
        pos = row[layout.cols("pos_hist")]
        neg = row[layout.cols("neg_hist")]
        calibration = midpoint_calibration(layout.bins)
        count = pos + neg
        calibrated_from = int(count.sum())
        if calibrated_from > 0:
            used = count > 0
            from scipy.optimize import isotonic_regression  # ~0.4 s to import: when used

            fit = isotonic_regression(pos[used] / count[used], weights=count[used]).x
            where = np.flatnonzero(used)
            grid = np.arange(layout.bins)
            nearest = np.clip(np.searchsorted(where, grid), 0, len(where) - 1)
            left = np.clip(nearest - 1, 0, len(where) - 1)
            pick = np.where(
                np.abs(where[left] - grid) <= np.abs(where[nearest] - grid), left, nearest
            )
            calibration = np.asarray(fit)[pick]
        return calibration, calibrated_from

    def counters(self, layout: Layout, row: F64, class_names: tuple[str, ...]) -> dict[str, float]:
        out = {
            name: float(row[layout.col(name)])
            for name in ("tp", "fp", "tn", "fn", "scored_n", "log_loss_sum", "brier_sum")
        }
        out["score_sum"] = float(row[layout.col("score_sum")])
        return out

    def ratio_pairs(self, layout: Layout) -> list[tuple[str, int, int]]:
        col = layout.col
        return [
            ("log_loss", col("log_loss_sum"), col("scored_n")),
            ("brier", col("brier_sum"), col("scored_n")),
            ("positive_rate", col("pred_pos"), col("pred_n")),
            ("score_mean", col("score_sum"), col("score_n")),
        ]
