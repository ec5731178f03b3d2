"""Label-free performance: the metrics a window would show if the model's calibrated
probabilities were right (confidence-based performance estimation, as NannyML's CBPE, but
streaming and additive).

Binary: every scored prediction adds to a score histogram of all scored predictions
(``score_hist``) and one of the predicted positives (``pp_hist``). With ``c[b]`` the
calibrated probability of the positive class in score bin ``b`` (the baseline's
calibration map, or the bin midpoint without one), a predicted positive in bin ``b`` is
a true positive with probability ``c[b]``, a predicted negative a false negative with
probability ``c[b]``, so the expected confusion counts are

    E[TP] = pp . c        E[FP] = pp . (1 - c)
    E[FN] = pn . c        E[TN] = pn . (1 - c)      (pn = score_hist - pp)

and ``estimated_accuracy`` = (E[TP] + E[TN]) / scored, ``estimated_precision`` =
E[TP] / (E[TP] + E[FP]), ``estimated_recall`` = E[TP] / (E[TP] + E[FN]),
``estimated_f1`` = 2 E[TP] / (2 E[TP] + E[FP] + E[FN]) (0 where the denominator is 0, as
the realized metrics), and ``estimated_roc_auc`` the ROC AUC of the expected positive
and negative score histograms ``score_hist * c`` and ``score_hist * (1 - c)``.

Multiclass: each prediction with ``probabilities`` adds its probability vector, normalised
to sum 1 and calibrated on the reference (one-vs-rest isotonic per class, renormalised:
:func:`~monitor.core.calibration.calibrate_probabilities`), to row ``i`` = true class,
column = predicted class of an expected confusion matrix (``e_confusion``); the
estimates are the accuracy and the macro precision, recall and F1 of that matrix, over
the classes present in it. One-vs-rest isotonic maps are what a per-class calibration
check compares against, and unlike a single temperature they correct classes that are
miscalibrated in different directions; renormalising keeps each event's expected counts
summing to one.

All of them are NaN while the window holds fewer than ``min_samples`` scored
predictions. Being ratios of expected counts, they estimate the window's realized
metric when the scores are calibrated; the calibration map corrects scores that are
not, as long as the miscalibration is the one the reference rows show.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from monitor.core.layout import Layout

__all__ = ["estimated_metrics"]

F64 = npt.NDArray[np.float64]


def estimated_metrics(layout: Layout, acc: F64, min_samples: int = 100) -> dict[str, F64]:
    """The label-free estimates of every window row; see the module docstring (the
    formulas are the task's: :meth:`monitor.core.tasks.base.Task.estimates`)."""
    return layout.kind.estimates(layout, acc, min_samples)
