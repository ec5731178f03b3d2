"""Binned drift statistics against scipy's exact ones on random samples (Hypothesis).

The reference profile is built by the real code (``profile_from_columns``); the window is
binned with its edges as the accumulators bin it; scipy computes the statistic of the
raw values (``wasserstein_distance``, ``ks_2samp``) or of the same bucket counts
(``jensenshannon``, ``chi2_contingency``). Each statistic must stay within its documented
bound, and be exact when every value lies on a bin edge.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from monitor.core.drift import (
    chi2_pvalue,
    js_distance,
    ks_numeric,
    mean_bins,
    wasserstein_parts,
)
from monitor.core.reference import NumericReference, bin_numeric, profile_from_columns

F = np.ndarray

values = st.lists(
    st.one_of(
        st.integers(-20, 20).map(float),  # repeated values, many on edges
        st.floats(-50, 50, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=60,
)


def _reference(ref: list[float], bins: int) -> NumericReference:
    return profile_from_columns({"x": ref}, {"x": "numeric"}, bins=bins).numeric["x"]


def _window(ref: NumericReference, x: list[float]) -> tuple[F, F]:
    """Proportions and value sums / n per column of the window, as the accumulators keep."""
    arr = np.asarray(x, dtype=np.float64)
    col = bin_numeric(ref.edges, arr)
    k = ref.columns
    return (
        np.bincount(col, minlength=k)[None, :] / len(arr),
        np.bincount(col, weights=arr, minlength=k)[None, :] / len(arr),
    )


def _wasserstein(ref: NumericReference, x: list[float]) -> tuple[float, float]:
    p, p_mean = _window(ref, x)
    total = ref.counts.sum()
    w, bound = wasserstein_parts(p, ref.counts / total, ref.edges, p_mean, ref.sums / total)
    return float(w[0]), float(bound[0])


def _ks(ref: NumericReference, x: list[float]) -> float:
    p, p_mean = _window(ref, x)
    total = ref.counts.sum()
    return float(ks_numeric(p, ref.counts / total, ref.edges, p_mean, ref.sums / total)[0])


@settings(max_examples=400, deadline=None)
@given(values, values, st.integers(1, 12))
def test_binned_wasserstein_is_within_its_bound_of_scipy(
    ref: list[float], win: list[float], bins: int
) -> None:
    exact = stats.wasserstein_distance(ref, win)
    got, bound = _wasserstein(_reference(ref, bins), win)
    tol = 1e-9 * (1.0 + exact)
    assert got <= exact + tol  # a lower bound
    assert exact <= got + bound + tol


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=60),
    st.lists(st.integers(0, 1000), min_size=1, max_size=60),
    st.integers(1, 12),
)
# a quantile edge 12 ulps above -1 (np.quantile's position 6.000000000000001): a bin of
# width 2.7e-15 whose in-bin mean was mostly rounding (KS 0.375 for 0.364)
@example([-1.0] * 7 + [2.0] * 4, [0], 5)
def test_binned_wasserstein_and_ks_are_exact_on_bin_edges(
    ref: list[float], picks: list[int], bins: int
) -> None:
    profile = _reference(ref, bins)
    edges = profile.edges
    assume(set(ref) <= set(edges.tolist()))  # every reference value on an edge
    win = [float(edges[i % len(edges)]) for i in picks]
    exact = stats.wasserstein_distance(ref, win)
    got, _ = _wasserstein(profile, win)
    assert got == pytest.approx(exact, rel=1e-9, abs=1e-12)
    assert _ks(profile, win) == pytest.approx(stats.ks_2samp(ref, win).statistic, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(values, values, st.integers(1, 12))
@example([0.0] * 18 + [2.0, 2.0, 2.0, 2.00001], [2.00001], 7)
@example([0.0, 5e-324], [5e-324], 1)  # a bin one subnormal step wide
def test_binned_ks_is_below_scipy_by_at_most_the_largest_column_mass(
    ref: list[float], win: list[float], bins: int
) -> None:
    profile = _reference(ref, bins)
    p, _ = _window(profile, win)
    r = profile.counts / profile.counts.sum()
    got = _ks(profile, win)
    exact = float(stats.ks_2samp(ref, win).statistic)
    # The in-bin mean of F_p - F_r divides value sums (of magnitude up to the largest
    # edge) by the bin's width: its rounding is about eps * max|edge| / width (a bin of
    # width 1e-5 at 2.0 gave 7e-12 above the exact statistic, in the old code as well).
    # A bin too narrow for its edges' rounding has no in-bin mean (mean_bins).
    width = np.diff(profile.edges)
    wide = width[mean_bins(profile.edges)]
    scale = np.abs(profile.edges).max() / wide.min() if wide.size else 0.0
    assert got <= exact + 1e-12 + 8 * np.finfo(float).eps * scale
    assert exact - got <= max(p.max(), r.max()) + 1e-12


@settings(deadline=None)
@given(values, st.integers(1, 12), st.booleans())
def test_all_tail_and_single_bin_cases_are_exact(ref: list[float], bins: int, below: bool) -> None:
    """A window wholly outside the reference range, and a constant reference (one bin of
    width 0): the whole distance lies where the reference CDF is 0 or 1."""
    lo, hi = min(ref), max(ref)
    win = [lo - 1.5, lo - 7.0, lo - 0.25] if below else [hi + 2.0, hi + 0.5]
    for reference in (ref, [ref[0]] * len(ref)):
        profile = _reference(reference, bins)
        got, bound = _wasserstein(profile, win)
        exact = stats.wasserstein_distance(reference, win)
        assert got == pytest.approx(exact, rel=1e-12)
        assert bound == pytest.approx(0.0, abs=1e-9)


def test_the_minimal_case_of_a_sign_that_never_changes() -> None:
    """Reference 0..9 in 4 bins, window [0, 1, 3, 5, 6, 7]: at the last interior edge
    both CDFs are 1; a rounding residue there once read as a sign change (0.650)."""
    got, _ = _wasserstein(_reference([float(v) for v in range(10)], 4), [0, 1, 3, 5, 6, 7])
    assert got == pytest.approx(stats.wasserstein_distance(range(10), [0, 1, 3, 5, 6, 7]))
    assert got == pytest.approx(5 / 6, rel=1e-12)


def test_two_values_below_the_reference_move_the_distance_by_their_own_share() -> None:
    """A wide first bin (a long left tail) where the window has less mass than the
    reference: two of 60,000 window values below the reference minimum add their exact
    share, and the first bin stays exact (it was once taken for a bin where the CDFs
    cross, approximated over its whole width)."""
    rng = np.random.default_rng(5)

    def sample(n: int, tail: float) -> np.ndarray:
        out = rng.uniform(0.0, 1.0, n)
        left = rng.random(n) < tail
        out[left] = rng.uniform(-100.0, 0.0, int(left.sum()))
        return out

    ref = sample(60_000, 0.05)
    win = sample(60_000, 0.02)
    moved = np.concatenate([win[:-2], [ref.min() - 1.0, ref.min() - 2.0]])
    profile = _reference(list(ref), 20)
    before, _ = _wasserstein(profile, list(win))
    after, _ = _wasserstein(profile, list(moved))
    exact_before = stats.wasserstein_distance(ref, win)
    exact_after = stats.wasserstein_distance(ref, moved)
    assert before == pytest.approx(exact_before, rel=1e-3)
    assert after == pytest.approx(exact_after, rel=1e-3)
    assert after - before == pytest.approx(exact_after - exact_before, abs=1e-3)


counts = st.lists(st.integers(0, 30), min_size=1, max_size=12)


@settings(deadline=None)
@given(counts, counts)
def test_js_and_chi2_equal_scipy_on_the_same_counts(window: list[int], ref: list[int]) -> None:
    """Including empty columns, a single column and an empty window."""
    k = min(len(window), len(ref))
    w = np.asarray(window[:k], dtype=np.float64)
    r = np.asarray(ref[:k], dtype=np.float64)
    assume(r.sum() > 0)
    pvalue = float(chi2_pvalue(w[None, :], r)[0])
    if w.sum() == 0:
        assert np.isnan(pvalue)  # an empty window has no test
        return
    p = w / w.sum()
    js = float(js_distance(p[None, :], r / r.sum())[0])
    assert js == pytest.approx(float(jensenshannon(p, r / r.sum(), base=2)), abs=1e-7)
    used = (w + r) > 0
    if used.sum() == 1:
        assert pvalue == 1.0
    else:
        expected = stats.chi2_contingency(np.stack([r[used], w[used]]), correction=False)
        assert pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
