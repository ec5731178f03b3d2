"""The numeric subjects' CDF sums of a pane plan (``panemetrics._cdf_differences``): each
boundary's sum of proportions, from the left or (negated) from the right, taken one
column after the other from the left, whatever the subjects' column counts and their
order, for one model's rows and for the rows of models stacked (a side per row)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from monitor.core.panemetrics import _cdf_differences, _Numeric, _runs


def _numeric(columns: list[int], from_left: np.ndarray) -> _Numeric:
    """A :class:`_Numeric` with what ``_cdf_differences`` reads (the rest empty)."""
    empty = np.zeros(0)
    index = np.zeros(0, dtype=np.int64)
    return _Numeric(
        size=sum(columns), sums=index, runs=_runs(columns), from_left=from_left,
        offset=empty, bounds=index, left=index, inner=index, upper=empty, width=empty,
        width_inf=empty, in_bin=empty, bins=np.zeros((0, 0)), inner_starts=index,
        with_inner=index, all_inner=True, ends=index, edge=empty, scale=empty,
    )  # fmt: skip


def _by_definition(p: np.ndarray, columns: list[int], from_left: np.ndarray) -> np.ndarray:
    """Each boundary's sum, one term at a time from 0.0, in Python floats."""
    rows = p.shape[0]
    sides = np.broadcast_to(from_left, (rows, from_left.shape[-1]))
    out = np.empty((rows, sides.shape[1]))
    for r in range(rows):
        col = bound = 0
        for c in columns:
            for b in range(c - 1):
                acc = 0.0
                if sides[r, bound + b]:
                    for j in range(col, col + b + 1):
                        acc += float(p[r, j])
                else:
                    for j in range(col + b + 1, col + c):
                        acc -= float(p[r, j])
                out[r, bound + b] = acc
            col += c
            bound += c - 1
    return out


def _proportions(rng: np.random.Generator, rows: int, columns: list[int]) -> np.ndarray:
    raw = rng.random((rows, sum(columns))) ** 3 * (rng.random((rows, sum(columns))) < 0.7)
    p = np.empty_like(raw)
    col = 0
    for c in columns:
        total = raw[:, col : col + c].sum(axis=1, keepdims=True)
        p[:, col : col + c] = raw[:, col : col + c] / np.where(total > 0, total, np.inf)
        col += c
    return p


@pytest.mark.parametrize(
    "columns",
    [[22] * 10, [2], [3, 3], [2, 3, 2], [5, 1, 5, 4], [1, 1], [7, 2, 7, 2, 9], [40] * 3],
)
def test_each_boundary_is_its_sum_term_by_term(columns: list[int]) -> None:
    rng = np.random.default_rng(len(columns) * 31 + sum(columns))
    bounds = sum(c - 1 for c in columns)
    for rows in (1, 3, 12):
        # one model's plan: a side per boundary; a stacked plan's: a side per row too
        for sides in (rng.random(bounds) < 0.5, rng.random((rows, bounds)) < 0.5):
            p = _proportions(rng, rows, columns)
            wide = np.concatenate([p, rng.random((rows, 4))], axis=1)  # more columns after
            got = _cdf_differences(wide[:, : p.shape[1]], _numeric(columns, sides))
            want = _by_definition(p, columns, sides)
            assert got.shape == want.shape
            assert np.array_equal(got, want)


def test_stacked_rows_get_their_own_models_sums() -> None:
    """Rows of several models stacked, each with its model's sides, get what each
    model's rows get alone, bit for bit."""
    rng = np.random.default_rng(7)
    columns = [6, 4, 6]
    bounds = sum(c - 1 for c in columns)
    sides = [rng.random(bounds) < 0.5 for _ in range(3)]
    ps = [_proportions(rng, 3, columns) for _ in range(3)]
    alone = [_cdf_differences(p, _numeric(columns, s)) for p, s in zip(ps, sides, strict=True)]
    stacked = _numeric(columns, np.repeat(np.stack(sides), 3, axis=0))
    together = _cdf_differences(np.concatenate(ps), stacked)
    assert np.array_equal(together, np.concatenate(alone))


def test_a_plan_without_boundaries() -> None:
    ref = dataclasses.replace(_numeric([1, 1], np.zeros(0, dtype=np.bool_)))
    assert _cdf_differences(np.ones((2, 2)), ref).shape == (2, 0)
