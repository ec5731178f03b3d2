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
  boundaries (:func:`cdf_differences`) and of their mean inside each bin
  (:func:`ks_numeric`). It is at most the two-sample KS statistic of the raw values and
  smaller by at most the largest single-column mass of either histogram; equal to it
  when every value lies on a bin edge.
- ``wasserstein:f`` (numeric): the 1-Wasserstein distance divided by the reference
  standard deviation (not divided when that is 0). The sums of the values in each column
  are kept too, which makes the integral of ``F_p - F_r`` over each bin exact: the
  distance is exact outside the reference range, in every bin where ``F_p - F_r`` keeps
  one sign, and when every value lies on a bin edge; elsewhere it is a lower bound, off
  by at most the bound :func:`wasserstein_parts` computes from the same sums.
- ``chi2:f``: the **p-value** of Pearson's chi-square test of homogeneity of the 2 x K
  table (reference counts, window counts) over the columns either uses (categories, or a
  numeric feature's quantile buckets), no continuity correction
  (``scipy.stats.chi2_contingency(..., correction=False)``). Small means drift. Unlike the
  effect sizes above it accounts for the window's and the reference's sample sizes, so a
  fixed p-value bound keeps its false-alarm rate at every window size; on decay windows
  the decayed weights stand in for counts. The p-value is :func:`chi2_sf`, computed here
  (scipy's special functions take a fifth of a short replay to import).

These are NaN while the window holds fewer than ``min_samples`` valid values of the
feature (weights, on decay windows). Data quality, over the window's predictions (NaN
with none): ``missing_rate:f``, ``type_mismatch_rate:f``, ``nan_rate:f`` (numeric: an
infinite value), ``out_of_range_rate:f`` (numeric: outside ``[min, max]`` of the
reference), ``unseen_rate:f`` (categorical: a value not in the reference), and per model
``problem_rate`` (predictions with any of these problems in any feature).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitor import native
from monitor.core.layout import Layout
from monitor.core.reference import SCORE, NumericReference

__all__ = [
    "CDF_TOLERANCE",
    "NARROWEST_BIN",
    "PSI_FLOOR",
    "cdf_differences",
    "chi2_sf",
    "drift_signals",
    "ks_numeric",
    "mean_bins",
    "output_drift",
    "wasserstein_binned",
    "wasserstein_parts",
]

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


def _rel_entr(x: F64, y: F64) -> F64:
    """``x ln(x / y)``, 0 where ``x`` is 0 (scipy's ``rel_entr`` for ``y > 0`` wherever
    ``x > 0``, as a mixture ``y`` of ``x`` and another distribution is)."""
    some = x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = x * np.log(np.where(some, x, 1.0) / np.where(some, y, 1.0))
    out: F64 = np.where(some, terms, 0.0)
    return out


def js_distance(p: F64, r: F64) -> F64:
    """Jensen-Shannon distance (base 2) per row of ``p`` (S, K) against ``r`` (K,)."""
    m = 0.5 * (p + r)
    div = 0.5 * (_rel_entr(p, m).sum(axis=1) + _rel_entr(r, m).sum(axis=1))
    out: F64 = np.sqrt(np.maximum(div / np.log(2.0), 0.0))
    return out


#: CDF differences smaller than this are rounding (of proportions that sum to 1): zero.
CDF_TOLERANCE = 1e-12

#: The narrowest bin with an in-bin mean in the KS statistic, as a share of its edges'
#: magnitude. The mean divides differences of value sums by the bin's width, and those sums
#: round by about ``eps * |edge|`` (by a subnormal step near 0): in a bin narrower than
#: this share (or than the smallest normal float), rounding could be a sizeable part of the
#: mean (a quantile edge 12 ulps off its value made a bin of width 2.7e-15 at -1 whose mean
#: came out 0.375 for 0.364). Such a bin counts as a point: only its edges' CDF differences
#: count, which keeps the statistic a lower bound of the raw values' one.
NARROWEST_BIN = 2.0**-32


def mean_bins(edges: F64) -> npt.NDArray[np.bool_]:
    """The interior bins between ``edges`` wide enough for an in-bin mean (see
    :data:`NARROWEST_BIN`)."""
    a, b = edges[:-1], edges[1:]
    floor = np.maximum(NARROWEST_BIN * np.maximum(np.abs(a), np.abs(b)), np.finfo(np.float64).tiny)
    out: npt.NDArray[np.bool_] = (b - a) >= floor
    return out


def cdf_differences(p: F64, r: F64) -> F64:
    """``F_p - F_r`` at the column boundaries (after each column but the last), per row.

    Each difference is summed from the side where the reference mass is smaller (the
    left below the median, the right above it), so that the difference at the last
    reference edge, where both CDFs are 1 up to the window's overflow, comes out as
    exactly minus the overflow share instead of a rounding residue like -1.1e-16; a
    residue below :data:`CDF_TOLERANCE` is zero.
    """
    cr = np.cumsum(r)[:-1]
    left = np.cumsum(p, axis=1)[:, :-1] - cr
    tail_p = np.cumsum(p[:, ::-1], axis=1)[:, ::-1][:, 1:]
    tail_r = np.cumsum(r[::-1])[::-1][1:]
    right = tail_r - tail_p
    d: F64 = np.where(cr <= 0.5, left, right)
    return np.where(np.abs(d) <= CDF_TOLERANCE, 0.0, d)


def ks_binned(p: F64, r: F64) -> F64:
    """Largest CDF difference at the column boundaries, per row."""
    diff = cdf_differences(p, r)
    if diff.shape[1] == 0:
        return np.zeros(p.shape[0])
    out: F64 = np.abs(diff).max(axis=1)
    return out


def _in_bin(p: F64, r: F64, edges: F64, p_mean: F64, r_mean: F64) -> tuple[F64, F64, F64, F64]:
    """Integrals over each interior bin ``[a, b]`` of ``G_p``, ``G_r`` (a side's mass in
    the bin left of ``x``: ``sum (b - x) / n``) and ``H_p``, ``H_r`` (its mass right of
    ``x``: ``sum (x - a) / n``), from the proportions and value sums per column."""
    a, b = edges[:-1], edges[1:]
    pi, ri = p[:, 1:-1], r[1:-1]
    return (
        np.maximum(pi * b - p_mean[:, 1:-1], 0.0),
        np.maximum(ri * b - r_mean[1:-1], 0.0),
        np.maximum(p_mean[:, 1:-1] - pi * a, 0.0),
        np.maximum(r_mean[1:-1] - ri * a, 0.0),
    )


def ks_numeric(p: F64, r: F64, edges: F64, p_mean: F64, r_mean: F64) -> F64:
    """:func:`ks_binned`, also over the mean of ``F_p - F_r`` inside each bin of non-zero
    width (exact from the value sums): still at most the raw values' KS statistic, and
    equal to it when every value lies on a bin edge (the last bin holds its two edges)."""
    out = ks_binned(p, r)
    width = np.diff(edges)
    wide = mean_bins(edges)
    if not wide.any() or p.shape[1] < 3:
        return out
    d = cdf_differences(p, r)
    g_p, g_r, _, _ = _in_bin(p, r, edges, p_mean, r_mean)
    mean = (width * d[:, :-1] + g_p - g_r)[:, wide] / width[wide]
    result: F64 = np.maximum(out, np.abs(mean).max(axis=1))
    return result


def wasserstein_parts(p: F64, r: F64, edges: F64, p_mean: F64, r_mean: F64) -> tuple[F64, F64]:
    """The binned 1-Wasserstein distance ``integral |F_p - F_r|`` per row, and a bound on
    its error against the exact distance of the raw values.

    ``p``/``r`` are the proportions per column (underflow, bins, overflow); ``p_mean`` /
    ``r_mean`` the sums of the values in each column divided by the total count. In a
    bin ``[a, b]`` with CDF differences ``L`` and ``R`` at its edges, the value sums give
    the integral of ``F_p - F_r`` over the bin exactly,
    ``I = (b - a) L + sum_p (b - x) / n - sum_r (b - x) / m``; the bin contributes
    ``|I|``, which is its exact share whenever ``F_p - F_r`` keeps one sign inside the
    bin (and always when every value lies on a bin edge), and a lower bound otherwise.
    Outside the reference range the reference CDF is 0 (below) or 1 (above), so the
    tails are exact.

    The bound: inside a bin ``F_p - F_r = L + G_p - G_r = R + H_r - H_p`` with ``G``
    (``H``) the mass of a side in the bin left (right) of ``x``, non-decreasing
    (non-increasing) between 0 and the side's mass in the bin, whose integrals the
    sums give. Dropping one term of either form bounds the positive part's integral
    ``P`` and the negative part's ``N``, and since ``P - N = I`` the bin's true share
    ``P + N`` is at most ``min(2 P_max - I, 2 N_max + I)``; the error bound is that
    less ``|I|``, summed over the bins.
    """
    d = cdf_differences(p, r)
    left, right = d[:, :-1], d[:, 1:]  # at the edges of the interior bins
    a, b = edges[:-1], edges[1:]
    width = b - a
    pi, ri = p[:, 1:-1], r[1:-1]
    g_p, g_r, h_p, h_r = _in_bin(p, r, edges, p_mean, r_mean)
    integral = width * left + g_p - g_r
    inner = np.abs(integral)
    under = p[:, 0] * edges[0] - p_mean[:, 0]  # integral of F_p below the range
    over = p_mean[:, -1] - p[:, -1] * edges[-1]  # integral of 1 - F_p above it
    w: F64 = inner.sum(axis=1) + under + over

    def shrink(g: F64, mass: F64, by: F64) -> F64:
        """At least the integral of ``(G - by)+`` for ``G`` in ``[0, mass]`` with integral
        ``g`` and ``by >= 0`` (the chord of the convex ``(G - by)+``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(
                mass > 0, np.maximum(1.0 - by / np.where(mass > 0, mass, 1.0), 0.0), 0.0
            )
        out: F64 = g * share
        return out

    pos_l = np.where(left >= 0, left * width + g_p, shrink(g_p, pi, -left))
    pos_r = np.where(right >= 0, right * width + h_r, shrink(h_r, ri, -right))
    neg_l = np.where(left <= 0, -left * width + g_r, shrink(g_r, ri, left))
    neg_r = np.where(right <= 0, -right * width + h_p, shrink(h_p, pi, right))
    p_max = np.minimum(pos_l, pos_r)
    n_max = np.minimum(neg_l, neg_r)
    upper = np.minimum(2.0 * p_max - integral, 2.0 * n_max + integral)
    bound: F64 = np.maximum(upper - inner, 0.0).sum(axis=1)
    return w, bound


def wasserstein_binned(p: F64, r: F64, edges: F64, p_mean: F64, r_mean: F64) -> F64:
    """The binned 1-Wasserstein distance per row (see :func:`wasserstein_parts`)."""
    return wasserstein_parts(p, r, edges, p_mean, r_mean)[0]


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
    out[ok] = chi2_sf(dof[ok], stat[ok])
    out[(dof == 0) & (row[:, 1, 0] > 0)] = 1.0
    return out


#: ``ln G(a + 1) - (a + 1/2) ln a + a - ln sqrt(2 pi)`` (Stirling's error) at ``a`` = 0, 1/2,
#: 1, ..., 15, from ``ln G`` of those values worked out to 60 digits; the C kernel holds
#: the same literals.
_STIRLING_HALVES = (
    0.0, 0.15342640972002736, 0.08106146679532726, 0.05481412105191765,
    0.0413406959554093, 0.03316287351993629, 0.02767792568499834, 0.023746163656297496,
    0.020790672103765093, 0.018488450532673187, 0.016644691189821193, 0.015134973221917378,
    0.013876128823070748, 0.012810465242920227, 0.01189670994589177, 0.011104559758206917,
    0.010411265261972096, 0.009799416126158804, 0.009255462182712733, 0.008768700134139386,
    0.00833056343336287, 0.00793411456431402, 0.007573675487951841, 0.007244554301320383,
    0.00694284010720953, 0.006665247032707682, 0.006408994188004207, 0.006171712263039458,
    0.0059513701127588475, 0.0057462165130101155, 0.005554733551962801,
)  # fmt: skip
_EPS = 2.0**-53
_TINY = 1e-300
_TWO_PI = 6.283185307179586


def _stirling_error(a: float) -> float:
    """Stirling's error at ``a`` (a multiple of 1/2): the table up to 15, then its series,
    with as many terms as keep it exact to a unit in the last place."""
    if a <= 15.0:
        return _STIRLING_HALVES[int(a + a)]
    s0, s1, s2, s3, s4 = 1.0 / 12.0, 1.0 / 360.0, 1.0 / 1260.0, 1.0 / 1680.0, 1.0 / 1188.0
    aa = a * a
    if a > 500.0:
        return (s0 - s1 / aa) / a
    if a > 80.0:
        return (s0 - (s1 - s2 / aa) / aa) / a
    if a > 35.0:
        return (s0 - (s1 - (s2 - s3 / aa) / aa) / aa) / a
    return (s0 - (s1 - (s2 - (s3 - s4 / aa) / aa) / aa) / aa) / a


def _deviance(a: float, y: float) -> float:
    """``a ln(a / y) + y - a`` (>= 0), from the series of ``ln((1 + v) / (1 - v))`` in
    ``v = (a - y) / (a + y)`` when ``a`` and ``y`` are close, where the plain formula
    would cancel."""
    d = a - y
    if abs(d) < 0.1 * (a + y):
        v = d / (a + y)
        s = d * v
        term = 2.0 * a * v
        v2 = v * v
        j = 1.0
        while True:
            term *= v2
            following = s + term / (2.0 * j + 1.0)
            if following == s:
                return following
            s = following
            j += 1.0
    return a * math.log(a / y) + y - a


def _chi2_sf_one(k: float, x: float) -> float:
    """:func:`chi2_sf` of one value (the compiled kernel does the same operations).

    With ``a = k / 2`` and ``y = x / 2`` it is the regularized upper incomplete gamma
    ``Q(a, y)``. Both ways of computing it start from ``D = exp(-y) y**a / G(a + 1)``,
    taken as ``exp(-stirling(a) - deviance(a, y)) / sqrt(2 pi a)`` so that it keeps its
    precision when ``a`` and ``y`` are large; below ``y = a + 1``, ``1 - P(a, y)`` with
    ``P = D (1 + y / (a + 1) + y**2 / ((a + 1)(a + 2)) + ...)``; above it, ``Q = a D h``
    with ``h`` Legendre's continued fraction, evaluated by the modified Lentz method."""
    if not (k >= 1.0 and k == math.floor(k) and k <= 1e15) or x != x:
        return math.nan
    if x <= 0.0:
        return 1.0
    if x == math.inf:
        return 0.0
    a = 0.5 * k
    y = 0.5 * x
    d = math.exp(-_stirling_error(a) - _deviance(a, y)) / math.sqrt(_TWO_PI * a)
    if y < a + 1.0:
        t = 1.0
        s = 1.0
        n = 1.0
        while t > s * _EPS:
            t *= y / (a + n)
            s += t
            n += 1.0
        p = d * s
        return 1.0 - p if p < 1.0 else 0.0
    b = y + 1.0 - a
    c = 1.0 / _TINY
    e = 1.0 / b
    h = e
    i = 1.0
    while True:
        an = -i * (i - a)
        b += 2.0
        e = an * e + b
        if abs(e) < _TINY:
            e = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        e = 1.0 / e
        step = e * c
        h *= step
        if abs(step - 1.0) <= _EPS:
            break
        i += 1.0
    return a * d * h


def chi2_sf(dof: npt.ArrayLike, x: npt.ArrayLike) -> F64:
    """The chi-square survival function ``P(X > x)`` of ``X`` with ``dof`` degrees of
    freedom, elementwise (broadcast): the p-value of a chi-square statistic ``x``.

    ``dof`` must be a whole number >= 1 (a count of columns less one), else the value is
    NaN; ``x <= 0`` gives 1. Within a few units in the last place of the exact value
    (``tests/core/test_drift.py`` checks it against ``scipy.stats.chi2.sf`` and against
    the closed form for even ``dof``), without loading scipy. The compiled kernel
    computes it when it is built, the Python code beside it otherwise, to the same bits.
    """
    k = np.asarray(dof, dtype=np.float64)
    v = np.asarray(x, dtype=np.float64)
    if (k.size != 1 and k.shape != v.shape) or k.ndim > v.ndim:
        k, v = np.broadcast_arrays(k, v)
    if not k.flags.c_contiguous:
        k = k.copy()
    if not v.flags.c_contiguous:
        v = v.copy()
    out = np.empty(v.shape)
    kernels = native.kernels()
    if kernels is not None:  # one dof for every x, or one each
        kernels.chi2_sf(k, v, out)
        return out
    flat = out.reshape(-1)
    each = np.broadcast_to(k, v.shape).ravel().tolist()
    for i, (ki, vi) in enumerate(zip(each, v.ravel().tolist(), strict=True)):
        flat[i] = _chi2_sf_one(ki, vi)
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
    ks = ks_numeric(p, r, ref.edges, p_mean, ref.sums / ref.counts.sum())
    out[f"ks:{name}"] = np.where(enough, ks, np.nan)
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
    joined pairs, as classes or binned values). The score histogram and the class counts
    are the task's (:attr:`~monitor.core.tasks.base.Task.score_field`,
    :meth:`~monitor.core.tasks.base.Task.class_counts`). Class distributions get
    ``psi``, ``js`` and ``chi2``. ``pca_error``: the window's mean PCA reconstruction error over the
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
    field = layout.kind.score_field
    if field is not None:
        ref_hist = row[0, layout.cols(field)]
        if ref_hist.sum() > 0:
            hist = acc[:, layout.cols(field)]
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
    refs = layout.kind.class_counts(layout, row)
    for name, counts in layout.kind.class_counts(layout, acc).items():
        _class_drift(out, name, counts, refs[name][0], min_samples)
    return out
