"""Feature drift and data-quality signals from the binned feature accumulators.

Every statistic compares a window's histogram of a feature (columns of
:class:`~monitor.core.layout.Layout`, binned with the reference profile's edges, so it
merges by addition) with the reference histogram. Vectorised over slices. With ``p`` the
window's proportions and ``r`` the reference's over the same columns:

- ``psi:f``: population stability index ``sum((p - r) * ln(p / r))`` (natural log), with
  both proportions floored at :data:`PSI_FLOOR` so that an empty bin stays finite.
- ``js:f``: Jensen-Shannon *distance* (square root of the divergence), base 2, so in
  ``[0, 1]``; equal to ``scipy.spatial.distance.jensenshannon(p, r, base=2)``.
- ``ks:f`` (numeric): the largest difference between the two binned CDFs at the column
  boundaries. It is at most the two-sample KS statistic of the raw values and smaller by
  at most the largest single-column mass of either histogram.
- ``wasserstein:f`` (numeric): the 1-Wasserstein distance divided by the reference
  standard deviation (not divided when that is 0). The sums of the values in each bin
  are kept too, which makes the integral of each CDF over each bin exact: the distance is
  exact over every bin where the CDF difference keeps one sign and outside the reference
  range; a bin where it changes sign is off by at most ``width_i * (p_i + r_i)``
  (before the division), so ``sum_i width_i * (p_i + r_i)`` bounds the whole error.
- ``chi2:f``: the **p-value** of Pearson's chi-square test of homogeneity of the 2 x K
  table (reference counts, window counts) over the columns either uses (categories, or a
  numeric feature's quantile buckets), no continuity correction
  (``scipy.stats.chi2_contingency(..., correction=False)``). Small means drift. Unlike the
  effect sizes above it accounts for the window's and the reference's sample sizes, so a
  fixed p-value bound keeps its false-alarm rate at every window size; on decay windows
  the decayed weights stand in for counts.

These are NaN while the window holds fewer than ``min_samples`` valid values of the
feature (weights, on decay windows). Data quality, over the window's predictions (NaN
with none): ``missing_rate:f``, ``type_mismatch_rate:f``, ``nan_rate:f`` (numeric: an
infinite value), ``out_of_range_rate:f`` (numeric: outside ``[min, max]`` of the
reference), ``unseen_rate:f`` (categorical: a value not in the reference), and per model
``problem_rate`` (predictions with any of these problems in any feature).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from monitor.core.layout import Layout
from monitor.core.reference import LABEL, PREDICTION, SCORE, NumericReference

__all__ = ["PSI_FLOOR", "drift_signals", "output_drift"]

F64 = npt.NDArray[np.float64]

#: Proportions below this count as this in PSI (an empty bin would make it infinite).
PSI_FLOOR = 1e-4


def _div(num: F64, den: F64) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def psi(p: F64, r: F64) -> F64:
    """PSI per row of proportions ``p`` (S, K) against ``r`` (K,)."""
    pf = np.maximum(p, PSI_FLOOR)
    rf = np.maximum(r, PSI_FLOOR)
    out: F64 = ((pf - rf) * np.log(pf / rf)).sum(axis=1)
    return out


def js_distance(p: F64, r: F64) -> F64:
    """Jensen-Shannon distance (base 2) per row of ``p`` (S, K) against ``r`` (K,)."""
    m = 0.5 * (p + r)
    div = 0.5 * (special.rel_entr(p, m).sum(axis=1) + special.rel_entr(r, m).sum(axis=1))
    out: F64 = np.sqrt(np.maximum(div / np.log(2.0), 0.0))
    return out


def ks_binned(p: F64, r: F64) -> F64:
    """Largest CDF difference at the column boundaries, per row."""
    diff = np.cumsum(p, axis=1)[:, :-1] - np.cumsum(r)[:-1]
    if diff.shape[1] == 0:
        return np.zeros(p.shape[0])
    out: F64 = np.abs(diff).max(axis=1)
    return out


def wasserstein_binned(p: F64, r: F64, edges: F64, p_mean: F64, r_mean: F64) -> F64:
    """1-Wasserstein distance ``integral |F_p - F_r|`` per row, from binned CDFs.

    ``p``/``r`` are the proportions per column (underflow, bins, overflow); ``p_mean`` /
    ``r_mean`` the sums of the values in each column divided by the total count. They give
    the integral of each CDF over every bin exactly (``sum over the bin of (right edge -
    x) / n`` past the CDF at its left edge), so a bin where ``F_p - F_r`` keeps one sign
    contributes exactly, and so do the tails outside the reference range (where the
    reference has no mass). Only in a bin whose boundary differences have opposite signs
    the difference is taken as linear; any bin where the difference changes sign is off by
    at most ``width * (p_i + r_i)``.
    """
    cp = np.cumsum(p, axis=1)
    cr = np.cumsum(r)
    d = cp - cr  # CDF differences at the column boundaries
    left, right = d[:, :-2], d[:, 1:-1]  # at the edges of the interior bins
    width = np.diff(edges)
    inner_edge = edges[1:]
    # integral over the bin of F: width * F(left edge) + sum over the bin of (right - x) / n
    int_p = width * cp[:, :-2] + p[:, 1:-1] * inner_edge - p_mean[:, 1:-1]
    int_r = width * cr[:-2] + r[1:-1] * inner_edge - r_mean[1:-1]
    a, b = np.abs(left), np.abs(right)
    same = left * right >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = width * np.where(a + b > 0, (a * a + b * b) / (2.0 * (a + b)), 0.0)
    inner = np.where(same, np.abs(int_p - int_r), crossing)
    under = p[:, 0] * edges[0] - p_mean[:, 0]  # integral of F_p below the range
    over = p_mean[:, -1] - p[:, -1] * edges[-1]  # integral of 1 - F_p above it
    out: F64 = inner.sum(axis=1) + under + over
    return out


def chi2_pvalue(counts: F64, ref: F64) -> F64:
    """p-value of Pearson's chi-square homogeneity test of each row against ``ref``."""
    s = counts.shape[0]
    table = np.stack([np.broadcast_to(ref, counts.shape), counts], axis=1)  # (S, 2, K)
    used = table.sum(axis=1) > 0  # (S, K)
    row = table.sum(axis=2, keepdims=True)  # (S, 2, 1)
    col = table.sum(axis=1, keepdims=True)  # (S, 1, K)
    total = row.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = row * col / total
        terms = np.where(expected > 0, (table - expected) ** 2 / expected, 0.0)
    stat = terms.sum(axis=(1, 2))
    dof = used.sum(axis=1) - 1
    out = np.full(s, np.nan)
    ok = (dof > 0) & (row[:, 1, 0] > 0)
    out[ok] = special.chdtrc(dof[ok], stat[ok])
    out[(dof == 0) & (row[:, 1, 0] > 0)] = 1.0
    return out


def drift_signals(layout: Layout, acc: F64, min_samples: int = 100) -> dict[str, F64]:
    """Drift and data-quality signals of every feature, one value per slice (row of ``acc``)."""
    out: dict[str, F64] = {}
    if not layout.features:
        return out
    pred_n = acc[:, layout.col("pred_n")]
    profile = layout.profile
    for name, kind in layout.features.items():
        out[f"missing_rate:{name}"] = _div(acc[:, layout.col(f"missing:{name}")], pred_n)
        out[f"type_mismatch_rate:{name}"] = _div(acc[:, layout.col(f"mismatch:{name}")], pred_n)
        if kind == "numeric":
            out[f"nan_rate:{name}"] = _div(acc[:, layout.col(f"nonfinite:{name}")], pred_n)
        if profile is None:
            continue
        # a warmup profile's histograms use the first of the columns reserved for them
        if kind == "numeric":
            ref = profile.numeric[name]
            hist = acc[:, layout.cols(f"hist:{name}")][:, : ref.columns]
            bin_sum = acc[:, layout.cols(f"bin_sum:{name}")][:, : ref.columns]
            out[f"out_of_range_rate:{name}"] = _div(hist[:, 0] + hist[:, -1], pred_n)
            _numeric_drift(out, name, ref, hist, bin_sum, hist.sum(axis=1) >= min_samples)
        else:
            cref = profile.categorical[name]
            hist = acc[:, layout.cols(f"hist:{name}")][:, : cref.columns]
            out[f"unseen_rate:{name}"] = _div(acc[:, layout.col(f"unseen:{name}")], pred_n)
            _class_drift(out, name, hist, cref.counts, min_samples)
    out["problem_rate"] = _div(acc[:, layout.col("problem_n")], pred_n)
    return out


def _numeric_drift(
    out: dict[str, F64], name: str, ref: NumericReference, hist: F64, bin_sum: F64, enough: F64
) -> None:
    """psi, js, ks and wasserstein of a numeric subject's binned window against ``ref``."""
    n = hist.sum(axis=1)
    p = np.nan_to_num(_div(hist, n[:, None]))
    r = ref.counts / ref.counts.sum()
    p_mean = np.nan_to_num(_div(bin_sum, n[:, None]))
    w = wasserstein_binned(p, r, ref.edges, p_mean, ref.sums / ref.counts.sum())
    scale = ref.std if ref.std > 0 else 1.0
    out[f"wasserstein:{name}"] = np.where(enough, w / scale, np.nan)
    out[f"ks:{name}"] = np.where(enough, ks_binned(p, r), np.nan)
    out[f"chi2:{name}"] = np.where(enough, chi2_pvalue(hist, ref.counts), np.nan)
    out[f"psi:{name}"] = np.where(enough, psi(p, r), np.nan)
    out[f"js:{name}"] = np.where(enough, js_distance(p, r), np.nan)


def _class_drift(out: dict[str, F64], name: str, counts: F64, ref: F64, min_samples: int) -> None:
    """psi, js and the chi-square p-value of class counts ``(S, K)`` against ``ref`` (K,)."""
    total = ref.sum()
    if total <= 0:
        return
    n = counts.sum(axis=1)
    enough = n >= min_samples
    p = np.nan_to_num(_div(counts, n[:, None]))
    r = ref / total
    out[f"psi:{name}"] = np.where(enough, psi(p, r), np.nan)
    out[f"js:{name}"] = np.where(enough, js_distance(p, r), np.nan)
    out[f"chi2:{name}"] = np.where(enough, chi2_pvalue(counts, ref), np.nan)


def _grouped(hist: F64, ref: F64, groups: int) -> tuple[F64, F64]:
    """Adjacent score bins merged into about ``groups`` groups of equal reference mass."""
    cum = np.cumsum(ref) - ref  # reference mass below each bin
    gid = np.minimum((cum / ref.sum() * groups).astype(np.int64), groups - 1)
    k = int(gid.max()) + 1
    g_hist = np.zeros((hist.shape[0], k))
    np.add.at(g_hist.T, gid, hist.T)
    g_ref: F64 = np.bincount(gid, weights=ref, minlength=k).astype(np.float64)
    return g_hist, g_ref


def output_drift(layout: Layout, acc: F64, min_samples: int = 100) -> dict[str, F64]:
    """Drift of the model's outputs against the reference, and the PCA signal.

    Subjects :data:`~monitor.core.reference.SCORE` (binary: the score histogram of
    ``score_bins`` uniform bins; ``ks`` and ``wasserstein`` on those bins, exact up to
    the bin width ``1/score_bins``, ``wasserstein`` divided by the reference score's
    standard deviation at the bin midpoints; ``psi`` and ``js`` after merging adjacent
    bins into ``drift_bins`` groups of equal reference mass), :data:`PREDICTION` (the
    predicted classes, or for regression the predicted values binned at reference
    quantiles like a numeric feature) and :data:`LABEL` (prior shift: the labels of the
    joined pairs, as classes or binned values). Class distributions get ``psi``, ``js``
    and ``chi2``. ``pca_error``: the window's mean PCA reconstruction error over the
    reference's (see :class:`~monitor.core.reference.PcaReference`).
    """
    out: dict[str, F64] = {}
    profile = layout.profile
    if profile is not None and profile.pca is not None:
        count = acc[:, layout.col("pca_n")]
        mean = _div(acc[:, layout.col("pca_err_sum")], count)
        out["pca_error"] = np.where(count >= min_samples, mean / profile.pca.ref_error, np.nan)
    for name, ref in layout.outputs.items():
        hist = acc[:, layout.cols(f"hist:{name}")]
        enough = hist.sum(axis=1) >= min_samples
        _numeric_drift(out, name, ref, hist, acc[:, layout.cols(f"bin_sum:{name}")], enough)
    baseline = layout.baseline
    if baseline is None:
        return out
    row = baseline.row[None, :]
    if layout.task == "binary":
        ref_hist = row[0, layout.cols("score_hist")]
        if ref_hist.sum() > 0:
            hist = acc[:, layout.cols("score_hist")]
            n = hist.sum(axis=1)
            enough = n >= min_samples
            p = np.nan_to_num(_div(hist, n[:, None]))
            r = ref_hist / ref_hist.sum()
            mid = (np.arange(layout.bins) + 0.5) / layout.bins
            sd = float(np.sqrt(max((r * mid * mid).sum() - (r * mid).sum() ** 2, 0.0)))
            w = np.abs(np.cumsum(p, axis=1) - np.cumsum(r)).sum(axis=1) / layout.bins
            out[f"wasserstein:{SCORE}"] = np.where(enough, w / (sd if sd > 0 else 1.0), np.nan)
            out[f"ks:{SCORE}"] = np.where(enough, ks_binned(p, r), np.nan)
            gp, gr = _grouped(hist, ref_hist, layout.drift_bins)
            g = np.nan_to_num(_div(gp, n[:, None]))
            out[f"psi:{SCORE}"] = np.where(enough, psi(g, gr / gr.sum()), np.nan)
            out[f"js:{SCORE}"] = np.where(enough, js_distance(g, gr / gr.sum()), np.nan)

        def classes(a: F64) -> tuple[F64, F64]:
            pred_n, pos = a[:, layout.col("pred_n")], a[:, layout.col("pred_pos")]
            tp, fp, tn, fn = (a[:, layout.col(c)] for c in ("tp", "fp", "tn", "fn"))
            return np.stack([pred_n - pos, pos], axis=1), np.stack([tn + fp, tp + fn], axis=1)

        pred_w, label_w = classes(acc)
        pred_r, label_r = classes(row)
        _class_drift(out, PREDICTION, pred_w, pred_r[0], min_samples)
        _class_drift(out, LABEL, label_w, label_r[0], min_samples)
    elif layout.task == "multiclass":
        k = layout.n_classes
        _class_drift(
            out,
            PREDICTION,
            acc[:, layout.cols("pred_class")],
            row[0, layout.cols("pred_class")],
            min_samples,
        )
        conf = acc[:, layout.cols("confusion")].reshape(-1, k, k).sum(axis=2)
        ref_conf = row[0, layout.cols("confusion")].reshape(k, k).sum(axis=1)
        _class_drift(out, LABEL, conf, ref_conf, min_samples)
    return out
