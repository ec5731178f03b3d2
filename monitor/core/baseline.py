"""What the model's outputs looked like on the reference rows: the yardstick for the gap,
output drift and label-free estimates.

From the ``prediction``, ``score``, ``label`` (and ``probabilities``) columns of the
reference file, :func:`build_baseline` accumulates one row with the model's own
:class:`~monitor.core.layout.Layout`, exactly as the stream's events are accumulated, so:

- **reference metrics** are :func:`~monitor.core.metrics.compute_metrics` of that row (the
  ``gap:<metric>`` signals subtract them from each window's value);
- **output drift** compares a window's prediction, score and label columns with the row's
  (see :func:`monitor.core.drift.output_drift`);
- the **calibration map** (binary, :meth:`~monitor.core.tasks.binary.BinaryTask.calibration`)
  gives, for each of the ``score_bins`` score bins, the probability that an event in that
  bin is positive: the isotonic (non-decreasing) regression of the reference rows' labels
  on their binned scores, weighted by the bin counts
  (``scipy.optimize.isotonic_regression``). Without labelled, scored reference rows the
  scores are taken as calibrated (each bin maps to its midpoint). The estimated metrics
  of :mod:`monitor.core.estimate` read it;
- the **class calibration** (multiclass): for each class ``k``, the isotonic regression
  of ``label == k`` on the reference rows' normalised probability of ``k`` (one against
  the rest, ties averaged, as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``
  fits it), as the knots of a piecewise-linear map. Each event's probabilities go through
  every class's map and are renormalised to sum 1 (:func:`calibrate_probabilities`) before
  they add to the expected confusion matrix. Without labelled reference rows with
  ``probabilities`` the probabilities are taken as calibrated.

Reference rows whose prediction or label is not a valid value for the model are
skipped and counted in :attr:`Baseline.skipped`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.config import ModelConfig
from monitor.core.calibration import calibrate_probabilities, fit_isotonic, midpoint_calibration
from monitor.core.layout import Layout
from monitor.core.metrics import compute_metrics
from monitor.core.reference import ReferenceProfile, output_codes
from monitor.events.values import canonical

__all__ = [
    "Baseline",
    "build_baseline",
    "calibrate_probabilities",
    "fit_isotonic",
    "midpoint_calibration",
    "probability_row",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Baseline:
    """The reference row, its metrics and the calibration map of one model."""

    row: F64  # (width,): the reference rows accumulated like a window
    metrics: dict[str, float] = field(default_factory=dict)
    calibration: F64 | None = None  # (score_bins,) P(positive | score bin), binary only
    rows: int = 0  # reference rows accumulated
    skipped: int = 0  # reference rows with an invalid prediction or label
    calibrated_from: int = 0  # labelled, scored rows behind the calibration map
    #: multiclass: per class, the (x, y) knots of its isotonic one-vs-rest map
    class_calibration: tuple[tuple[F64, F64], ...] | None = None


def _class_calibration(probs: F64, label: F64, k: int) -> tuple[tuple[F64, F64], ...] | None:
    """Per-class isotonic maps from reference probabilities ``(n, K)`` and class codes."""
    total = probs.sum(axis=1)
    use = np.isfinite(total) & (total > 0) & np.isfinite(label)
    if not use.any():
        return None
    p = probs[use] / total[use, None]
    y = label[use]
    return tuple(fit_isotonic(p[:, j], (y == j).astype(np.float64)) for j in range(k))


def _score(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if 0.0 <= x <= 1.0 else math.nan


def probability_row(index: Mapping[str, int], given: Any) -> list[float]:
    """Class probabilities in class order from an event's ``probabilities`` object (keys
    compared as canonical class names; NaNs when there is none)."""
    if not isinstance(given, Mapping) or not given:
        return [math.nan] * len(index)
    out = [0.0] * len(index)
    for key, p in given.items():
        i = index.get(key)
        if i is None:  # the rules of monitor.events.values, on both sides
            wanted = canonical(key)
            i = next((j for name, j in index.items() if canonical(name) == wanted), None)
        if i is not None and isinstance(p, int | float) and not isinstance(p, bool):
            out[i] = float(p)
    return out


def build_baseline(
    model: ModelConfig, layout: Layout, profile: ReferenceProfile | None
) -> Baseline | None:
    """The baseline of ``model`` from its profile's output columns (None without any)."""
    if profile is None or "prediction" not in profile.outputs:
        return None
    outputs = profile.outputs
    n = len(outputs["prediction"])
    pred = output_codes(model, outputs["prediction"])[0]
    labels = outputs.get("label")
    label = output_codes(model, labels)[0] if labels is not None else [None] * n
    scores = outputs.get("score")
    score = np.array([_score(v) for v in scores] if scores else [math.nan] * n)
    ok = np.array([p is not None for p in pred], dtype=bool)
    row = np.zeros((1, layout.width))
    p_arr = np.array([math.nan if p is None else p for p in pred])
    probs = None
    all_probs = None
    if layout.kind.uses_probabilities and "probabilities" in outputs:
        index = {name: i for i, name in enumerate(model.class_names)}
        rows = [probability_row(index, v) for v in outputs["probabilities"]]
        all_probs = np.array(rows).reshape(n, -1)
        probs = all_probs[ok]
    cols, vals = layout.prediction_terms(p_arr[ok], score[ok], probs)
    np.add.at(row[0], cols.ravel(), vals.ravel())
    joined = ok & np.array([v is not None for v in label], dtype=bool)
    l_arr = np.array([math.nan if v is None else v for v in label])
    if joined.any():
        cols, vals = layout.outcome_terms(p_arr[joined], score[joined], l_arr[joined])
        np.add.at(row[0], cols.ravel(), vals.ravel())
    skipped = int(n - ok.sum()) + (int((ok & ~joined).sum()) if labels is not None else 0)
    names = model.class_names
    metrics = {
        k: float(v[0])
        for k, v in compute_metrics(layout, row, names, None, 1, with_drift=False).items()
        if math.isfinite(float(v[0]))
    }
    calibration, calibrated_from = layout.kind.calibration(layout, row[0])
    class_calibration = None
    if all_probs is not None:
        class_calibration = _class_calibration(all_probs, l_arr, layout.n_classes)
    return Baseline(
        row[0], metrics, calibration, int(ok.sum()), skipped, calibrated_from, class_calibration
    )
