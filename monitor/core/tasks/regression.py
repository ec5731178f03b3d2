"""The regression task: a number predicted, a number as label.

Columns: ``pred_n``, ``pred_sum``; ``n``, ``error_sum`` (prediction - label),
``abs_error_sum``, ``squared_error_sum``, ``ape_sum``, ``label_sum``, ``label_sq_sum``.
The distributions of the predicted and the true values drift as numeric outputs binned
at the reference's quantiles (the layout's ``outputs``), not as classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

from monitor.core.tasks.base import Field, Task
from monitor.core.tasks.binary import EPS
from monitor.core.tasks.formulas import div

if TYPE_CHECKING:
    from monitor.core.layout import Layout

__all__ = ["RegressionTask"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_OUTCOME = (
    "n",
    "error_sum",
    "abs_error_sum",
    "squared_error_sum",
    "ape_sum",
    "label_sum",
    "label_sq_sum",
)


class RegressionTask(Task):
    """Regression; see the module docstring."""

    name: ClassVar[str] = "regression"
    has_classes: ClassVar[bool] = False
    error_stream: ClassVar[str] = "abs_error"
    needs_sample_count: ClassVar[bool] = True

    def columns(self, n_classes: int, score_bins: int) -> tuple[Field, ...]:
        return ("pred_n", "pred_sum", *_OUTCOME)

    def prediction_terms(
        self, layout: Layout, pred: F64, score: F64, probs: F64 | None
    ) -> tuple[I64, F64]:
        e = len(pred)
        names = [layout.col("pred_n"), layout.col("pred_sum")]
        cols = np.tile(np.array(names, dtype=np.int64), (e, 1))
        return cols, np.column_stack([np.ones(e), pred])

    def outcome_terms(self, layout: Layout, pred: F64, score: F64, label: F64) -> tuple[I64, F64]:
        e = len(pred)
        err = pred - label
        ape = np.abs(err) / np.maximum(np.abs(label), EPS)
        cols = np.tile(np.array([layout.col(n) for n in _OUTCOME], dtype=np.int64), (e, 1))
        vals = np.column_stack([np.ones(e), err, np.abs(err), err * err, ape, label, label * label])
        return cols, vals

    def metrics(
        self, layout: Layout, acc: F64, class_names: tuple[str, ...], sample_count: F64 | None
    ) -> dict[str, F64]:
        n = acc[:, layout.col("n")]
        count = n if sample_count is None else sample_count
        ss_res = acc[:, layout.col("squared_error_sum")]
        label_sum = acc[:, layout.col("label_sum")]
        label_sq = acc[:, layout.col("label_sq_sum")]
        with np.errstate(divide="ignore", invalid="ignore"):
            ss_tot = label_sq - label_sum * label_sum / np.where(n > 0, n, 1.0)
        # Cancellation leaves a constant label's spread at rounding level: that is zero.
        constant = ss_tot <= 1e-12 * np.maximum(label_sq, 1e-300)
        r2 = np.where(constant, np.where(ss_res <= 0, 1.0, 0.0), 1.0 - div(ss_res, ss_tot))
        out = {
            "mae": div(acc[:, layout.col("abs_error_sum")], n, np.nan),
            "rmse": np.sqrt(div(ss_res, n, np.nan)),
            "mape": div(acc[:, layout.col("ape_sum")], n, np.nan),
            "r2": np.where((count >= 2) & (n > 0), r2, np.nan),
            "mean_error": div(acc[:, layout.col("error_sum")], n, np.nan),
        }
        pred_n = acc[:, layout.col("pred_n")]
        out["prediction_count"] = pred_n
        out["prediction_mean"] = div(acc[:, layout.col("pred_sum")], pred_n, np.nan)
        return out

    def errors(self, pred: F64, label: F64) -> F64:
        """The absolute error of each joined pair."""
        out: F64 = np.abs(pred - label)
        return out

    def counters(self, layout: Layout, row: F64, class_names: tuple[str, ...]) -> dict[str, float]:
        names = (
            "error_sum",
            "abs_error_sum",
            "squared_error_sum",
            "ape_sum",
            "label_sum",
            "pred_sum",
        )
        return {name: float(row[layout.col(name)]) for name in names}
