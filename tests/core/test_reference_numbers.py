"""A numeric column of plain numbers is read as one array: the reference and its PCA are the
ones the value-by-value reading makes (bit for bit), missing and non-finite values counted
the same. The value-by-value path is forced with number subclasses, which it takes as
numbers and the array path leaves to it."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.reference import ReferenceProfile, profile_from_columns

FEATURES = {"a": "numeric", "b": "numeric", "c": "numeric"}


class _Float(float):
    """A float the array path does not take (its type is not float)."""


class _Int(int):
    """An int the array path does not take."""


def _slow(value: Any) -> Any:
    if isinstance(value, float):
        return _Float(value)
    if isinstance(value, int):
        return _Int(value)
    return value


_VALUE = st.one_of(
    st.floats(-1e9, 1e9),
    st.integers(-(2**62), 2**62),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1, 2]),
)


def _key(p: ReferenceProfile) -> Any:
    numeric = {n: (r.edges.tobytes(), r.counts.tobytes(), r.sums.tobytes(), r.mean, r.std)
               for n, r in p.numeric.items()}  # fmt: skip
    pca = None if p.pca is None else (p.pca.mean.tobytes(), p.pca.scale.tobytes(),
                                      p.pca.components.tobytes(), p.pca.ref_error)  # fmt: skip
    return p.rows, numeric, pca, p.quality


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(_VALUE, _VALUE, _VALUE), min_size=1, max_size=200))
def test_a_column_of_numbers_makes_the_reference_the_value_by_value_reading_makes(
    rows: list[tuple[Any, Any, Any]],
) -> None:
    # enough finite rows for every feature's histogram and for a PCA
    rows = rows + [(float(i), float(i % 5), i % 3) for i in range(40)]
    fast = {name: [r[i] for r in rows] for i, name in enumerate(FEATURES)}
    slow = {name: [_slow(v) for v in values] for name, values in fast.items()}
    assert _key(profile_from_columns(fast, FEATURES)) == _key(profile_from_columns(slow, FEATURES))
