"""Every numeric feature's terms at once (StackedBins, the layout's numeric blocks) equal
what one feature at a time gives: bin_numeric per feature, _numeric_column per column."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from monitor.core.layout import Layout, _numeric_block, _numeric_column, scatter_add
from monitor.core.reference import StackedBins, bin_numeric, profile_from_columns


def _edges(rng: np.random.Generator) -> np.ndarray:
    """Sorted edges with ties, of 1 to 12 values."""
    n = int(rng.integers(1, 13))
    return np.sort(rng.integers(-5, 6, size=n).astype(np.float64) / 2)


@pytest.mark.parametrize("events", [0, 1, 7, 300, 1000])
def test_stacked_bins_equal_bin_numeric_per_feature(events: int) -> None:
    rng = np.random.default_rng(events)
    for _ in range(30):
        edges = [_edges(rng) for _ in range(int(rng.integers(1, 6)))]
        x = rng.integers(-7, 8, size=(len(edges), events)).astype(np.float64) / 2
        x[rng.random(x.shape) < 0.05] = np.inf
        x[rng.random(x.shape) < 0.05] = -np.inf
        got = StackedBins(edges)(x)
        want = np.stack([bin_numeric(e, row) for e, row in zip(edges, x, strict=True)])
        assert got.dtype == np.int64
        assert np.array_equal(got, want.reshape(got.shape))


def test_numeric_block_equals_each_column() -> None:
    numbers: list[list[Any]] = [[1, 2.5, 2**70], [-0.0, math.inf, 3]]
    mixed: list[list[Any]] = [[1, None, "a"], [True, 2.0, math.nan]]
    for columns in (numbers, mixed, [[], []]):
        codes, x = _numeric_block(columns)
        for row, values in enumerate(columns):
            want_codes, want_x = _numeric_column(values)
            assert np.array_equal(codes[row], want_codes)
            assert np.array_equal(x[row], want_x, equal_nan=True)
            assert np.array_equal(np.signbit(x[row]), np.signbit(want_x))


def _per_feature(layout: Layout, columns: dict[str, list[Any]], use: Any) -> tuple[Any, Any]:
    """The quality, histogram and bin-sum terms of each numeric feature in a layout of
    its own (without the PCA, which takes every feature)."""
    assert layout.profile is not None
    profile = dataclasses.replace(layout.profile, pca=None)
    cols, vals = [], []
    for name in layout.features:
        single = Layout("binary", features={name: "numeric"}, profile=profile)
        c, v = single.feature_terms(None, use, columns={name: columns[name]})
        shift = layout.col(f"missing:{name}") - single.col(f"missing:{name}")
        cols.append(c[:, :3] + shift)
        vals.append(v[:, :3])
    return np.hstack(cols), np.hstack(vals)


@pytest.mark.parametrize("events", [5, 400])
def test_feature_terms_of_the_block_equal_each_feature_alone(events: int) -> None:
    rng = np.random.default_rng(events)
    names = [f"f{i}" for i in range(4)]
    reference = {n: rng.normal(size=300).round(1).tolist() for n in names}
    profile = profile_from_columns(reference, dict.fromkeys(names, "numeric"))
    layout = Layout("binary", features=dict.fromkeys(names, "numeric"), profile=profile)
    columns: dict[str, list[Any]] = {}
    for n in names:
        values: list[Any] = rng.normal(size=events).round(1).tolist()
        for i in range(0, events, 3):
            values[i] = [None, "x", math.inf, True, profile.numeric[n].edges[-1]][i % 5]
        columns[n] = values
    use = rng.random(events) < 0.7
    cols, vals = layout.feature_terms(None, use, columns=columns)
    want_cols, want_vals = _per_feature(layout, columns, use)
    width = 3 * len(names)
    assert np.array_equal(cols[:, :width], want_cols)
    assert np.array_equal(vals[:, :width], want_vals)


@pytest.mark.parametrize(("events", "use_share"), [(1, 1.0), (40, 1.0), (40, 0.6)])
def test_fine_values_leave_out_their_quality_terms_and_sum_the_same(
    events: int, use_share: float
) -> None:
    """Every feature numeric and every value fine: no data-quality terms (each added 0.0 to
    its feature's missing column), and every cell sums to what the terms with them give
    (the same events in a call that has one missing value more)."""
    rng = np.random.default_rng(events)
    names = ["a", "b", "c"]
    reference = {n: rng.normal(size=300).round(1).tolist() for n in names}
    profile = profile_from_columns(reference, dict.fromkeys(names, "numeric"))
    layout = Layout("binary", features=dict.fromkeys(names, "numeric"), profile=profile)
    columns = {n: rng.normal(size=events).round(2).tolist() for n in names}
    use = rng.random(events) < use_share
    cols, vals = layout.feature_terms(None, use, columns=columns)
    quality = {layout.col(f"{kind}:{n}") for n in names
               for kind in ("missing", "mismatch", "nonfinite")}  # fmt: skip
    assert not quality & set(cols.reshape(-1).tolist())
    with_bad = {n: [*v, None] for n, v in columns.items()}  # the general path: quality terms
    cols_q, vals_q = layout.feature_terms(None, np.append(use, True), columns=with_bad)
    assert cols_q.shape[1] == cols.shape[1] + len(names)
    assert set(cols_q[:events].reshape(-1).tolist()) & quality
    width = layout.width
    got, want = np.zeros((1, width)), np.zeros((1, width))
    one_slice = np.zeros((events, 1), dtype=np.int64)
    scatter_add(got, one_slice, cols, vals)
    scatter_add(want, one_slice, cols_q[:events], vals_q[:events])
    assert np.array_equal(got, want)
    assert not np.signbit(want[0, sorted(quality)]).any()  # counts: never -0.0
