"""What every task (binary, multiclass, regression) gives the generic core: the base
class :class:`Task`, whose subclasses hold everything that depends on what a model
predicts.

The generic modules ask a model's task (``layout.kind``, see :func:`monitor.core.tasks.task_of`)
rather than switch on its name: :mod:`monitor.core.layout` for the pane-sum columns and
the terms an event adds to them, :mod:`monitor.core.metrics` and
:mod:`monitor.core.panemetrics` for the metrics, :mod:`monitor.core.estimate` for the
label-free estimates, :mod:`monitor.core.drift` for the class distributions of the
predictions and labels, :mod:`monitor.core.baseline` for the score calibration, the
engine for the detectors' error stream and a slice's counters. A task is stateless: one
instance per task serves every model; what varies per model (columns, classes, bins,
baseline) comes with the layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from monitor.core.layout import Layout

__all__ = ["Field", "Task"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: A column of a layout (one column) or a field of ``width`` columns: ``(name, width)``.
Field = str | tuple[str, int]

#: How a drift subject's class counts come from a row's columns: the first of ``K``
#: consecutive columns that hold them, or per class the weights of the columns it sums.
ClassSums = int | list[dict[int, float]]


class Task:
    """One task's part of the monitor; the subclasses override what their task has."""

    #: The task's name, as in a model's configuration.
    name: ClassVar[str]
    #: Predictions and labels are classes (coded by index), not numbers.
    has_classes: ClassVar[bool] = True
    #: Without configured ``classes`` every value that is not the positive class is the
    #: negative one (binary; see :class:`monitor.events.values.ClassMatcher`).
    open_negative: ClassVar[bool] = False
    #: Predictions carry class ``probabilities`` (one row per event, see
    #: :func:`monitor.core.baseline.probability_row`) that the terms use.
    uses_probabilities: ClassVar[bool] = False
    #: The field of the score histogram over ``score_bins`` uniform bins (None: no score).
    score_field: ClassVar[str | None] = None
    #: The stream the model's drift detectors watch (see :mod:`monitor.core.detectors`).
    error_stream: ClassVar[str] = "error"
    #: The metrics need the event count behind a decayed row (R2's "at least two events").
    needs_sample_count: ClassVar[bool] = False

    def columns(self, n_classes: int, score_bins: int) -> tuple[Field, ...]:
        """The task's fields of a layout, in column order."""
        raise NotImplementedError

    def prediction_terms(
        self, layout: Layout, pred: F64, score: F64, probs: F64 | None
    ) -> tuple[I64, F64]:
        """Columns and values predictions add, each ``(events, terms)``; see
        :meth:`monitor.core.layout.Layout.prediction_terms`."""
        raise NotImplementedError

    def outcome_terms(self, layout: Layout, pred: F64, score: F64, label: F64) -> tuple[I64, F64]:
        """Columns and values joined (prediction, label) pairs add, ``(events, terms)``."""
        raise NotImplementedError

    def metrics(
        self, layout: Layout, acc: F64, class_names: tuple[str, ...], sample_count: F64 | None
    ) -> dict[str, F64]:
        """The labelled metrics and prediction statistics, one value per row of ``acc``
        (see :func:`monitor.core.metrics.task_metrics`)."""
        raise NotImplementedError

    def estimates(self, layout: Layout, acc: F64, min_samples: int) -> dict[str, F64]:
        """The label-free estimates per row (see :mod:`monitor.core.estimate`); none here."""
        return {}

    def class_counts(self, layout: Layout, acc: F64) -> dict[str, F64]:
        """The class distributions that drift against the baseline's, by drift subject
        (:data:`~monitor.core.reference.PREDICTION`, :data:`~monitor.core.reference.LABEL`):
        counts ``(rows, K)``; none here."""
        return {}

    def class_sums(self, layout: Layout) -> dict[str, ClassSums]:
        """How each of :meth:`class_counts`' distributions comes from the columns, in the
        same order (for the pane close, which gathers every subject at once)."""
        return {}

    def calibration(self, layout: Layout, row: F64) -> tuple[F64 | None, int]:
        """The score calibration map of a baseline row and the joined rows it is fitted on
        (see :mod:`monitor.core.baseline`); none here."""
        return None, 0

    def errors(self, pred: F64, label: F64) -> F64:
        """Each joined pair's value of the :attr:`error_stream`: 1 where wrong, 0 where right."""
        out: F64 = (pred != label) * 1.0
        return out

    def counters(self, layout: Layout, row: F64, class_names: tuple[str, ...]) -> dict[str, float]:
        """The task's additive counters of one slice row (a slice report's)."""
        raise NotImplementedError

    def ratio_pairs(self, layout: Layout) -> list[tuple[str, int, int]]:
        """Signals that are one column over another, NaN when the denominator is 0, as
        ``(signal, numerator column, denominator column)``; none here."""
        return []

    def __repr__(self) -> str:
        return f"<task {self.name}>"
