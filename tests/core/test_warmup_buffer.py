"""The warmup buffer as columns gives what the features mappings gave: the same reference,
the same feature terms, rows a checkpoint restores to the same buffer; and it is small."""

from __future__ import annotations

import math
import random
import tracemalloc
from types import MappingProxyType
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.layout import Layout, _numeric_block
from monitor.core.reference import ReferenceProfile, profile_from_columns
from monitor.core.warmup_buffer import WarmChunk, chunk_of_rows, concat, drop_last

FEATURES = {"a": "numeric", "b": "numeric", "c": "categorical", "d": "numeric"}

# What a feature's value can be as decoded: numbers (ints too), text, booleans, null,
# and the non-finite floats a state or a lax decoder may hold.
_VALUE = st.one_of(
    st.floats(-1e6, 1e6),
    st.integers(-(2**60), 2**60),
    st.sampled_from([None, True, False, "x", "eu", math.nan, math.inf, -math.inf, 0.0, -0.0]),
)


@st.composite
def _rows(draw: st.DrawFn, n: int) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for _ in range(n):
        if draw(st.integers(0, 30)) == 0:
            out.append(None)  # no features object
            continue
        names = draw(st.sets(st.sampled_from([*FEATURES, "extra"])))
        out.append({name: draw(_VALUE) for name in names})
    return out


def _profile_key(p: ReferenceProfile) -> Any:
    numeric = {n: (r.edges.tobytes(), r.counts.tobytes(), r.sums.tobytes(), r.mean, r.std)
               for n, r in p.numeric.items()}  # fmt: skip
    categorical = {n: (r.categories, r.counts.tobytes(), r.known)
                   for n, r in p.categorical.items()}  # fmt: skip
    pca = None if p.pca is None else (p.pca.mean.tobytes(), p.pca.scale.tobytes(),
                                      p.pca.components.tobytes())  # fmt: skip
    return p.rows, numeric, categorical, pca, p.quality


def _chunk(layout: Layout, feats: list[dict[str, Any] | None]) -> WarmChunk:
    n = len(feats)
    return WarmChunk.of(layout, [float(i) for i in range(n)], [(0, -1)] * n, feats,
                        [i % 2 for i in range(n)], [0.25] * n)  # fmt: skip


def _usable(feats: list[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
    """Rows whose numeric features make a profile (enough finite values), padding a draw."""
    filler = [{"a": float(i), "b": float(i % 7), "c": "eu", "d": float(i % 3)} for i in range(60)]
    return [*feats, *filler]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40).flatmap(_rows))
def test_the_reference_from_columns_is_the_one_from_the_mappings(
    feats: list[dict[str, Any] | None],
) -> None:
    layout = Layout("binary", features=FEATURES)
    feats = _usable(feats)
    raw = {name: [(f or {}).get(name) for f in feats] for name in FEATURES}
    want = profile_from_columns(raw, FEATURES)
    got = profile_from_columns(_chunk(layout, feats).columns(layout), FEATURES)
    assert _profile_key(got) == _profile_key(want)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40).flatmap(_rows))
def test_the_feature_terms_of_a_chunk_are_those_of_the_mappings(
    feats: list[dict[str, Any] | None],
) -> None:
    feats = _usable(feats)
    raw = {name: [(f or {}).get(name) for f in feats] for name in FEATURES}
    layout = Layout("binary", features=FEATURES, profile=profile_from_columns(raw, FEATURES))
    want = layout.feature_terms(feats, profile_only=True)
    columns, numeric = _chunk(layout, feats).terms_input()
    got = layout.feature_terms(None, profile_only=True, columns=columns, numeric=numeric)
    for w, g in zip(want, got, strict=True):
        assert w.shape == g.shape and w.tobytes() == g.tobytes()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40).flatmap(_rows))
def test_a_checkpoint_s_rows_restore_the_same_chunk(feats: list[dict[str, Any] | None]) -> None:
    layout = Layout("binary", features=FEATURES)
    chunk = _chunk(layout, feats)
    again = chunk_of_rows(layout, chunk.rows(layout))
    assert again == chunk  # arrays bit for bit, values as sent
    assert len(again) == len(feats)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40).flatmap(_rows))
def test_dicts_read_by_c_loops_make_the_chunk_other_mappings_make(
    feats: list[dict[str, Any] | None],
) -> None:
    """Dicts (each feature read by one C loop, the strings shared by one) and read-only
    mappings (a ``get`` each, the strings shared one by one) make the same chunk, the
    values of the same types, equal strings one object."""
    layout = Layout("binary", features=FEATURES)
    proxies = [None if f is None else MappingProxyType(f) for f in feats]
    for values in (feats, proxies):
        chunk = _chunk(layout, values)  # type: ignore[arg-type]
        want = [(f or {}).get("c") for f in feats]
        assert [(type(v), v) for v in chunk.others["c"]] == [(type(v), v) for v in want]
        same = {v: v for v in chunk.others["c"] if type(v) is str}
        assert all(v is same[v] for v in chunk.others["c"] if type(v) is str)
    assert _chunk(layout, feats) == _chunk(layout, proxies)  # type: ignore[arg-type]


@given(st.lists(st.integers(0, 6), min_size=1, max_size=6), st.integers(0, 30))
def test_dropping_the_last_rows_and_joining_chunks_keep_the_order(
    sizes: list[int],
    k: int,
) -> None:
    layout = Layout("binary", features=FEATURES)
    rng = random.Random(sum(sizes) * 31 + k)
    chunks = [
        _chunk(layout, [{"a": rng.random(), "c": rng.choice(["x", "y"])} for _ in range(n)])
        for n in sizes
    ]
    rows = [r for c in chunks for r in c.rows(layout)]
    assert concat(chunks).rows(layout) == rows
    held = list(chunks)
    drop_last(held, k)
    assert [r for c in held for r in c.rows(layout)] == rows[: max(0, len(rows) - k)]


def test_a_chunk_of_many_predictions_takes_a_fraction_of_their_mappings() -> None:
    """10,000 predictions with 10 numeric features: well under 200 bytes each as columns,
    where the mappings they arrived as take over 500."""
    names = {f"f{i}": "numeric" for i in range(10)}
    layout = Layout("binary", features=names)
    rng = np.random.default_rng(1)
    values = rng.normal(size=(10_000, 10))
    n = len(values)

    def measure(make: Any) -> tuple[Any, float]:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        made = make()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return made, held / n

    # as decoded: a mapping and a float object per value
    feats, as_maps = measure(lambda: [dict(zip(names, row.tolist(), strict=True))
                                      for row in values])  # fmt: skip
    chunk, as_chunk = measure(lambda: WarmChunk.of(
        layout, [1.0] * n, [(0, -1)] * n, feats, [1] * n, [0.5] * n))  # fmt: skip
    assert len(chunk) == n
    assert as_maps > 500, as_maps
    assert as_chunk < 200, as_chunk


_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),  # not a number: the block falls back, and still agrees
)


@given(st.lists(st.fixed_dictionaries({"a": _NUMBER, "b": _NUMBER, "d": _NUMBER}), max_size=30))
def test_complete_rows_of_numbers_read_in_one_pass_make_the_same_block(
    feats: list[dict[str, Any]],
) -> None:
    layout = Layout("binary", features=FEATURES)
    codes, numbers = _numeric_block([[f.get(n) for f in feats] for n in layout.numeric])
    # dicts (read feature by feature) and other mappings (read row by row)
    for rows in (list(feats), [MappingProxyType(f) for f in feats]):
        chunk = _chunk(layout, rows)  # type: ignore[arg-type]
        assert chunk.codes.tobytes() == codes.tobytes()
        assert chunk.numbers.shape == (3, len(feats))
        assert chunk.numbers.tobytes() == numbers.reshape(3, len(feats)).tobytes()
