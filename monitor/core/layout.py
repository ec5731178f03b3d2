"""What each column of a model's accumulator row holds, and how a batch of events adds to it.

Every quantity the monitor keeps is a sum, so a window, a partition or a replica is a
float64 array of shape ``(slices, width)`` and they merge by addition. A batch adds to
such an array through one ``np.bincount`` over ``(slice, column)`` pairs: each event
contributes a fixed number of ``(column, value)`` pairs (see :meth:`Layout.prediction_terms`
and :meth:`Layout.outcome_terms`), repeated for each slice it belongs to.

Columns by task (``B`` = ``score_bins``, ``K`` = number of classes):

=========== ===================================================================
binary      prediction side: ``pred_n``, ``pred_pos``, ``score_n``, ``score_sum``,
            ``score_hist[B]``; outcome side (joined pairs): ``n``, ``tp``, ``fp``,
            ``tn``, ``fn``, ``scored_n``, ``log_loss_sum``, ``brier_sum``,
            ``pos_hist[B]``, ``neg_hist[B]``
multiclass  ``pred_n``, ``pred_class[K]``; ``n``, ``confusion[K*K]`` (row = label)
regression  ``pred_n``, ``pred_sum``; ``n``, ``error_sum`` (prediction - label),
            ``abs_error_sum``, ``squared_error_sum``, ``ape_sum``, ``label_sum``,
            ``label_sq_sum``
=========== ===================================================================
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["EPS", "Layout", "scatter_add"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Clipping of probabilities in log loss and the floor of |label| in MAPE (as scikit-learn).
EPS: Final = float(np.finfo(np.float64).eps)


class Layout:
    """The columns of one model's accumulator rows; see the module docstring."""

    def __init__(self, task: str, n_classes: int = 2, score_bins: int = 200) -> None:
        if task not in ("binary", "multiclass", "regression"):
            raise ValueError(f"Invalid 'task': {task!r}; valid: binary, multiclass, regression")
        self.task = task
        self.n_classes = n_classes
        self.bins = score_bins
        self.fields: dict[str, tuple[int, int]] = {}
        if task == "binary":
            self._add("pred_n", "pred_pos", "score_n", "score_sum")
            self._add(("score_hist", score_bins))
            self._add("n", "tp", "fp", "tn", "fn", "scored_n", "log_loss_sum", "brier_sum")
            self._add(("pos_hist", score_bins), ("neg_hist", score_bins))
        elif task == "multiclass":
            self._add(
                "pred_n", ("pred_class", n_classes), "n", ("confusion", n_classes * n_classes)
            )
        else:
            self._add("pred_n", "pred_sum", "n", "error_sum", "abs_error_sum")
            self._add("squared_error_sum", "ape_sum", "label_sum", "label_sq_sum")
        self.width = sum(w for _, w in self.fields.values())

    def _add(self, *names: str | tuple[str, int]) -> None:
        for item in names:
            name, width = (item, 1) if isinstance(item, str) else item
            start = sum(w for _, w in self.fields.values())
            self.fields[name] = (start, width)

    def col(self, name: str) -> int:
        """First column of a field."""
        return self.fields[name][0]

    def cols(self, name: str) -> slice:
        """All columns of a field, as a slice."""
        start, width = self.fields[name]
        return slice(start, start + width)

    def _bin(self, score: F64) -> I64:
        b = np.floor(np.nan_to_num(score, nan=0.0) * self.bins).astype(np.int64)
        return np.clip(b, 0, self.bins - 1)

    def prediction_terms(self, pred: F64, score: F64) -> tuple[I64, F64]:
        """Columns and values that predictions add, each of shape ``(events, terms)``.

        ``pred`` holds class codes (binary 0/1, multiclass index) or regression values;
        ``score`` the positive-class probability, NaN where absent.
        """
        e = len(pred)
        ones = np.ones(e)
        if self.task == "binary":
            has = ~np.isnan(score)
            cols = np.empty((e, 5), dtype=np.int64)
            cols[:, 0] = self.col("pred_n")
            cols[:, 1] = self.col("pred_pos")
            cols[:, 2] = self.col("score_n")
            cols[:, 3] = self.col("score_sum")
            cols[:, 4] = self.col("score_hist") + self._bin(score)
            vals = np.column_stack([ones, pred, has, np.where(has, score, 0.0), has])
            return cols, vals.astype(np.float64)
        if self.task == "multiclass":
            cols = np.column_stack(
                [np.full(e, self.col("pred_n")), self.col("pred_class") + pred.astype(np.int64)]
            )
            return cols.astype(np.int64), np.column_stack([ones, ones])
        cols = np.tile(np.array([self.col("pred_n"), self.col("pred_sum")], dtype=np.int64), (e, 1))
        return cols, np.column_stack([ones, pred])

    def outcome_terms(self, pred: F64, score: F64, label: F64) -> tuple[I64, F64]:
        """Columns and values that joined (prediction, label) pairs add, ``(events, terms)``."""
        e = len(pred)
        ones = np.ones(e)
        if self.task == "binary":
            has = ~np.isnan(score)
            p = np.clip(np.where(has, score, 0.5), EPS, 1.0 - EPS)
            y = label
            # tp, fp, tn, fn are consecutive columns: cell 0..3 picks one.
            cell = np.where(y == 1, np.where(pred == 1, 0, 3), np.where(pred == 1, 1, 2))
            log_loss = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
            brier = (np.where(has, score, 0.0) - y) ** 2
            hist = np.where(y == 1, self.col("pos_hist"), self.col("neg_hist")) + self._bin(score)
            cols = np.column_stack(
                [
                    np.full(e, self.col("n")),
                    self.col("tp") + cell,
                    np.full(e, self.col("scored_n")),
                    np.full(e, self.col("log_loss_sum")),
                    np.full(e, self.col("brier_sum")),
                    hist,
                ]
            ).astype(np.int64)
            vals = np.column_stack(
                [ones, ones, has, np.where(has, log_loss, 0.0), np.where(has, brier, 0.0), has]
            ).astype(np.float64)
            return cols, vals
        if self.task == "multiclass":
            k = self.n_classes
            cell = label.astype(np.int64) * k + pred.astype(np.int64)
            cols = np.column_stack([np.full(e, self.col("n")), self.col("confusion") + cell])
            return cols.astype(np.int64), np.column_stack([ones, ones])
        err = pred - label
        ape = np.abs(err) / np.maximum(np.abs(label), EPS)
        names = (
            "n",
            "error_sum",
            "abs_error_sum",
            "squared_error_sum",
            "ape_sum",
            "label_sum",
            "label_sq_sum",
        )
        cols = np.tile(np.array([self.col(n) for n in names], dtype=np.int64), (e, 1))
        vals = np.column_stack([ones, err, np.abs(err), err * err, ape, label, label * label])
        return cols, vals


def scatter_add(target: F64, slices: I64, cols: I64, vals: F64, weights: F64 | None = None) -> None:
    """Add events' terms into ``target`` (shape ``(S, width)``) for every slice they belong to.

    ``slices`` is ``(events, k)`` with -1 where an event has no slice in that position;
    ``cols``/``vals`` are ``(events, terms)``; ``weights`` (``(events,)``) scales each event.

    >>> t = np.zeros((2, 3)); scatter_add(t, np.array([[0, 1], [0, -1]]),
    ...     np.array([[0, 2], [0, 2]]), np.array([[1.0, 5.0], [1.0, 7.0]])); t.tolist()
    [[2.0, 0.0, 12.0], [1.0, 0.0, 5.0]]
    """
    s_count, width = target.shape
    if weights is not None:
        vals = vals * weights[:, None]
    idx = slices[:, :, None] * width + cols[:, None, :]
    v = np.broadcast_to(vals[:, None, :], idx.shape)
    keep = np.broadcast_to((slices >= 0)[:, :, None], idx.shape)
    added = np.bincount(idx[keep], weights=v[keep], minlength=s_count * width)
    target += added.reshape(s_count, width)
