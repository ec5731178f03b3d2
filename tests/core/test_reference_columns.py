"""A reference built from columns judges a text column once per distinct text, and reads
the PCA's rows with each numeric column that holds only numbers in one call: the categories,
their counts, the reasons counted and the PCA are those of judging every value one by one
(``_category_value``, ``_numeric_value``)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest

from monitor.core.reference import (
    _categorical_reference,
    _category_value,
    _numeric_value,
    _pca_reference,
)

TEXTS = ["a", " a", "A", "b", "1", "1.0", "01", "true", "True", "", "nan", "inf", "x y", "é"]


@pytest.mark.parametrize("seed", range(5))
def test_text_column_judged_per_distinct_text_as_value_by_value(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = [TEXTS[i] for i in rng.integers(0, len(TEXTS), size=400)]
    parsed = [_category_value(v) for v in values]
    counter = Counter(k for k, _ in parsed if k is not None)
    ref, reasons = _categorical_reference("c", values, 5, "test")
    assert reasons == Counter(r for _, r in parsed)
    assert ref.known == frozenset(counter)
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    assert ref.categories == tuple(k for k, _ in ranked[:5])
    assert ref.counts.tolist() == [float(n) for _, n in ranked[:5]] + [
        float(sum(n for _, n in ranked[5:]))
    ]
    # a column of other values too is judged value by value
    mixed: list[Any] = [*values, None, 2.5, 3.0, True]
    _, mixed_reasons = _categorical_reference("c", mixed, 5, "test")
    assert mixed_reasons == Counter(r for _, r in map(_category_value, mixed))


@pytest.mark.parametrize("seed", range(5))
def test_pca_rows_read_per_column_as_value_by_value(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    base = rng.normal(size=(n, 3)) @ rng.normal(size=(3, 3))
    columns: dict[str, list[Any]] = {f"f{i}": base[:, i].tolist() for i in range(3)}
    messy = columns["f0"]
    for i in rng.choice(n, size=40, replace=False).tolist():
        messy[i] = [None, "text", math.inf, math.nan, True, 7][i % 6]
    columns["f1"][5] = math.nan  # a column of numbers only, one of them NaN
    names = list(columns)
    got = _pca_reference(names, columns)
    parsed = [[_numeric_value(v)[0] for v in columns[name]] for name in names]
    rows = [row for row in zip(*parsed, strict=True) if all(v is not None for v in row)]
    x = np.array(rows, dtype=np.float64)
    assert got is not None
    assert got.mean.tobytes() == x.mean(axis=0).tobytes()
    scale = x.std(axis=0)
    scale[scale <= 0] = 1.0
    assert got.scale.tobytes() == scale.tobytes()
    # the same fit as of the usable rows alone, given as columns of numbers
    clean = {name: x[:, i].tolist() for i, name in enumerate(names)}
    ref = _pca_reference(names, clean)
    assert ref is not None
    assert got.components.tobytes() == ref.components.tobytes()
    assert got.ref_error == ref.ref_error
