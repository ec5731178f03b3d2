"""Calibration maps: from a model's scores or class probabilities to the probability that
they are right, as the reference rows show it.

The pieces here depend on numpy and scipy only, so that both the reference baseline
(:mod:`monitor.core.baseline`, which fits the maps) and the label-free estimates
(:mod:`monitor.core.estimate`, which read them) can use them without importing each
other.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["calibrate_probabilities", "fit_isotonic", "midpoint_calibration"]

F64 = npt.NDArray[np.float64]


def fit_isotonic(x: F64, y: F64) -> tuple[F64, F64]:
    """Knots ``(xs, ys)`` of the non-decreasing least-squares fit of ``y`` on ``x``, as
    scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` fits it: sorted values of
    ``x`` less than 1e-15 above the first of their group are merged into it (mean of
    ``y``, weighted by count), then ``scipy.optimize.isotonic_regression``;
    ``np.interp(v, xs, ys)`` is the fitted map, flat beyond the ends.

    >>> fit_isotonic(np.array([0.1, 0.2, 0.2, 0.9]), np.array([1.0, 0.0, 0.0, 1.0]))[1].tolist()
    [0.3333333333333333, 0.3333333333333333, 1.0]
    """
    order = np.argsort(x, kind="mergesort")
    xs_sorted, ys_sorted = x[order], y[order]
    unique = np.unique(xs_sorted)
    resolution = float(np.finfo(np.float64).resolution)
    group = np.empty(len(unique), dtype=np.int64)
    start = unique[0] if len(unique) else 0.0
    g = 0
    for i, value in enumerate(unique.tolist()):
        if i and value - start >= resolution:
            g += 1
            start = value
        group[i] = g
    member = group[np.searchsorted(unique, xs_sorted)]
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    xs = unique[starts]
    counts = np.bincount(member, minlength=len(xs)).astype(np.float64)
    means = np.bincount(member, weights=ys_sorted, minlength=len(xs)) / counts
    from scipy.optimize import isotonic_regression  # ~0.4 s to import: when used

    ys = np.asarray(isotonic_regression(means, weights=counts).x)
    return xs.astype(np.float64), ys.astype(np.float64)


def calibrate_probabilities(p: F64, maps: tuple[tuple[F64, F64], ...]) -> F64:
    """Rows of class probabilities ``(events, K)`` through each class's isotonic map, then
    renormalised to sum 1; a row that every map sends to 0 is kept as it was."""
    c = np.column_stack([np.interp(p[:, k], xs, ys) for k, (xs, ys) in enumerate(maps)])
    total = c.sum(axis=1)
    out: F64 = np.where(total[:, None] > 0, c / np.where(total > 0, total, 1.0)[:, None], p)
    return out


def midpoint_calibration(bins: int) -> F64:
    """The identity map on a grid of ``bins`` score bins: each bin's midpoint."""
    out: F64 = (np.arange(bins) + 0.5) / bins
    return out
