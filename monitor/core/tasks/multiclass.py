"""The multiclass task: one of ``K`` configured classes, optional class probabilities.

Columns: ``pred_n``, ``pred_class[K]`` (predictions by class); ``n``, ``confusion[K*K]``
(joined pairs, row = label, column = prediction); ``prob_n`` (predictions with
probabilities) and ``e_confusion[K*K]`` (their expected confusion matrix, see
:mod:`monitor.core.estimate`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

from monitor.catalogue import LABEL_SUBJECT, PREDICTION_SUBJECT
from monitor.core.tasks.base import ClassSums, Field, Task
from monitor.core.tasks.formulas import div, mcc

if TYPE_CHECKING:
    from monitor.core.layout import Layout

__all__ = ["MulticlassTask"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class MulticlassTask(Task):
    """Multiclass classification; see the module docstring."""

    name: ClassVar[str] = "multiclass"
    uses_probabilities: ClassVar[bool] = True

    def columns(self, n_classes: int, score_bins: int) -> tuple[Field, ...]:
        k = n_classes
        return (
            "pred_n",
            ("pred_class", k),
            "n",
            ("confusion", k * k),
            "prob_n",
            ("e_confusion", k * k),
        )

    def prediction_terms(
        self, layout: Layout, pred: F64, score: F64, probs: F64 | None
    ) -> tuple[I64, F64]:
        """The predicted class, and the class probabilities (normalised to sum 1, then
        calibrated by the baseline's per-class maps when it has them) into the row of
        each true class of the expected confusion matrix."""
        e = len(pred)
        ones = np.ones(e)
        k = layout.n_classes
        code = pred.astype(np.int64)
        cols = np.column_stack([np.full(e, layout.col("pred_n")), layout.col("pred_class") + code])
        vals = np.column_stack([ones, ones])
        if probs is None:
            probs = np.full((e, k), np.nan)
        total = probs.sum(axis=1)
        has = np.isfinite(total) & (total > 0)
        p = np.where(has[:, None], probs / np.where(has, total, 1.0)[:, None], 0.0)
        maps = layout.baseline.class_calibration if layout.baseline is not None else None
        if maps is not None and has.any():  # one-vs-rest isotonic maps of the reference
            from monitor.core.calibration import calibrate_probabilities

            p[has] = calibrate_probabilities(p[has], maps)
        # expected confusion: row = true class i with probability p_i, column = pred
        e_cols = layout.col("e_confusion") + np.arange(k)[None, :] * k + code[:, None]
        cols = np.column_stack([cols, np.full(e, layout.col("prob_n")), e_cols])
        vals = np.column_stack([vals, has.astype(np.float64), p])
        return cols.astype(np.int64), vals

    def outcome_terms(self, layout: Layout, pred: F64, score: F64, label: F64) -> tuple[I64, F64]:
        e = len(pred)
        ones = np.ones(e)
        k = layout.n_classes
        cell = label.astype(np.int64) * k + pred.astype(np.int64)
        cols = np.column_stack([np.full(e, layout.col("n")), layout.col("confusion") + cell])
        return cols.astype(np.int64), np.column_stack([ones, ones])

    def metrics(
        self, layout: Layout, acc: F64, class_names: tuple[str, ...], sample_count: F64 | None
    ) -> dict[str, F64]:
        k = layout.n_classes
        conf = acc[:, layout.cols("confusion")].reshape(-1, k, k)
        n = acc[:, layout.col("n")]
        diag = np.diagonal(conf, axis1=1, axis2=2)
        support = conf.sum(axis=2)
        predicted = conf.sum(axis=1)
        present = (support + predicted) > 0
        n_present = present.sum(axis=1)
        precision = div(diag, predicted)
        recall = div(diag, support)
        f1 = div(2 * diag, support + predicted)
        accuracy = div(diag.sum(axis=1), n, np.nan)
        out: dict[str, F64] = {"accuracy": accuracy}
        for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
            out[f"macro_{name}"] = div((per_class * present).sum(axis=1), n_present, np.nan)
            out[f"weighted_{name}"] = div((per_class * support).sum(axis=1), n, np.nan)
            out[f"micro_{name}"] = accuracy
        out["mcc"] = np.where(n > 0, mcc(conf), np.nan)
        for i, cls in enumerate(class_names):
            out[f"class_recall:{cls}"] = div(diag[:, i], support[:, i], np.nan)
        pred_n = acc[:, layout.col("pred_n")]
        out["prediction_count"] = pred_n
        shares = div(acc[:, layout.cols("pred_class")], pred_n[:, None], np.nan)
        for i, cls in enumerate(class_names):
            out[f"class_share:{cls}"] = shares[:, i]
        return out

    def estimates(self, layout: Layout, acc: F64, min_samples: int) -> dict[str, F64]:
        """Accuracy and macro rates of the expected confusion matrix (see
        :mod:`monitor.core.estimate`)."""
        k = layout.n_classes
        conf = acc[:, layout.cols("e_confusion")].reshape(-1, k, k)
        n = acc[:, layout.col("prob_n")]
        diag = np.diagonal(conf, axis1=1, axis2=2)
        support = conf.sum(axis=2)
        predicted = conf.sum(axis=1)
        present = (support + predicted) > 1e-12
        n_present = present.sum(axis=1)
        out = {"estimated_accuracy": div(diag.sum(axis=1), n, np.nan)}
        for name, per_class in (
            ("precision", div(diag, predicted)),
            ("recall", div(diag, support)),
            ("f1", div(2 * diag, support + predicted)),
        ):
            out[f"estimated_{name}"] = div((per_class * present).sum(axis=1), n_present, np.nan)
        enough = n >= min_samples
        return {key: np.where(enough, v, np.nan) for key, v in out.items()}

    def class_counts(self, layout: Layout, acc: F64) -> dict[str, F64]:
        """Predictions by class, and the joined labels by class (the confusion's rows)."""
        k = layout.n_classes
        return {
            PREDICTION_SUBJECT: acc[:, layout.cols("pred_class")],
            LABEL_SUBJECT: acc[:, layout.cols("confusion")].reshape(-1, k, k).sum(axis=2),
        }

    def class_sums(self, layout: Layout) -> dict[str, ClassSums]:
        k = layout.n_classes
        start = layout.col("confusion")
        rows = [dict.fromkeys(range(start + i * k, start + (i + 1) * k), 1.0) for i in range(k)]
        return {PREDICTION_SUBJECT: layout.col("pred_class"), LABEL_SUBJECT: rows}

    def counters(self, layout: Layout, row: F64, class_names: tuple[str, ...]) -> dict[str, float]:
        """The confusion matrix as ``confusion:<label>:<prediction>``."""
        k = layout.n_classes
        conf = row[layout.cols("confusion")].reshape(k, k)
        return {
            f"confusion:{true}:{pred}": float(conf[i, j])
            for i, true in enumerate(class_names)
            for j, pred in enumerate(class_names)
        }
