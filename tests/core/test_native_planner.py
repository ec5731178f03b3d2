"""The compiled kernels of the planner's reads (``attr_lists``, ``none_at``, ``topic_at``,
``checked_events``)
and of one model's bins (``bin_rows`` with every slot 0, in ``StackedBins``) against the
Python and numpy code that stands in for them: the same lists, the same positions and the
same columns over random inputs, the kernels declining what they do not take, and their
argument checks."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest

from monitor import native
from monitor.core.engine import _floats
from monitor.core.fastpath import _attrs, _checked, _none_at
from monitor.core.reference import StackedBins, bin_numeric


class _Event(msgspec.Struct, frozen=True, gc=False):
    prediction_id: str
    model: str | None = None
    label: Any = None


class _Other(msgspec.Struct, frozen=True, gc=False):
    model: str | None
    prediction_id: str
    label: Any = 0


def _compiled() -> Any:
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("the compiled kernels are off (MONITOR_NATIVE=0) or not built")
    return kernels


def _both(call: Any) -> tuple[Any, Any]:
    """``call()`` with the compiled kernels, then without them."""
    before = native.use(True)
    try:
        got = call()
        native.use(False)
        want = call()
    finally:
        native.use(before)
    return got, want


@pytest.mark.parametrize("seed", range(20))
def test_attrs_equal_the_python_reads(seed: int) -> None:
    _compiled()
    rng = random.Random(seed)
    events: list[Any] = []
    for i in range(rng.randrange(0, 40)):
        model = rng.choice([None, "a", "b"])
        kind = _Event if rng.random() < 0.8 else _Other
        events.append(kind(prediction_id=f"p{i}", model=model, label=rng.choice([0, 1, "x"])))
    names = ("model", "prediction_id", "label")
    got, want = _both(lambda: _attrs(events, names))
    assert got == want
    assert [list(map(type, c)) for c in got] == [list(map(type, c)) for c in want]
    if events:  # a None among them: AttributeError both ways
        events.insert(rng.randrange(len(events) + 1), None)
        for on in (True, False):
            before = native.use(on)
            try:
                with pytest.raises(AttributeError):
                    _attrs(events, names)
            finally:
                native.use(before)


def test_attr_lists_declines_what_it_does_not_take() -> None:
    kernels = _compiled()
    ok = [_Event("p"), _Event("q", "a")]
    assert kernels.attr_lists(ok, ("prediction_id", "model")) == (["p", "q"], [None, "a"])
    assert kernels.attr_lists([], ("model",)) == ([],)
    assert kernels.attr_lists(ok, ()) == ()
    assert kernels.attr_lists([*ok, None], ("model",)) is None
    assert kernels.attr_lists(ok, ("nothing",)) is None
    assert kernels.attr_lists([_Event("p"), 3], ("prediction_id",)) is None
    with pytest.raises(TypeError):
        kernels.attr_lists(tuple(ok), ("model",))


def _checked_both(events: list[Any], at: list[int], known: dict[str, Any], labels: bool
                  ) -> tuple[Any, Any]:  # fmt: skip
    """``_checked`` with the compiled kernels and without, over an engine of ``known``."""
    engine: Any = SimpleNamespace(by_name=known)
    return _both(lambda: _checked(engine, events, at, labels=labels))


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("labels", [False, True])
def test_checked_events_equal_the_python_checks(seed: int, labels: bool) -> None:
    _compiled()
    rng = random.Random(seed)
    known = {"a": 0, "b": 1} if seed % 3 else {"a": 0}
    size = [0, 1, 2][seed] if seed < 3 else rng.randrange(0, 60)
    events: list[Any] = []
    for i in range(size):
        u = rng.random()
        if u < 0.15 and seed % 5:
            events.append(None)  # a message that did not decode
            continue
        model = rng.choice([None, "a", "b", "zz", "a"]) if seed % 4 else "a"
        kind = _Event if u < 0.85 or seed % 7 == 0 else _Other  # (the first's type, and others)
        events.append(kind(prediction_id=f"p{i}", model=model))
    at = sorted(rng.sample(range(10 * size + 1), size))
    got, want = _checked_both(events, at, known, labels)
    assert got == want
    good, ids, kept, dropped, models = got
    assert sorted(kept + dropped) == at
    assert all(e.model in known or (labels and e.model is None) for e in good)
    assert [e.prediction_id for e in good] == ids
    assert [e.model for e in good] == models


def test_checked_events_declines_what_it_does_not_take() -> None:
    kernels = _compiled()
    ok: list[Any] = [_Event("p", "a"), None, _Event("q", "zz"), _Other(None, "r")]
    at = [3, 5, 8, 13]
    assert kernels.checked_events(ok, at, {"a": 0}, True) == (
        [ok[0], ok[3]], ["p", "r"], [3, 13], [5, 8], ["a", None]
    )
    assert kernels.checked_events(ok, at, {"a": 0}, False)[3] == [5, 8, 13]
    assert kernels.checked_events([], [], {}, False) == ([], [], [], [], [])
    fine: list[Any] = [_Event("p", "a"), _Event("q", "".join(["a"])), _Other("b", "r")]
    got = kernels.checked_events(fine, [1, 2, 3], {"a": 0, "b": 1}, False)
    assert got[0] is fine and got[2] == [1, 2, 3]  # every one valid: the list itself
    assert got[1] == ["p", "q", "r"] and got[4] == ["a", "a", "b"]
    assert kernels.checked_events([None], [7], {}, False) == ([], [], [], [7], [])
    assert kernels.checked_events(ok, at[:-1], {"a": 0}, True) is None  # lengths differ
    assert kernels.checked_events(ok, at, frozenset({"a"}), True) is None  # not a dict
    assert kernels.checked_events([_Event("p", 3)], [0], {"a": 0}, True) is None  # type: ignore[arg-type]
    assert kernels.checked_events([_Event("p"), 3], [0, 1], {"a": 0}, True) is None
    with pytest.raises(TypeError):
        kernels.checked_events(tuple(ok), at, {"a": 0}, True)
    # what it declines, the Python checks take: a model of another type is not configured
    odd: list[Any] = [_Event("p", 3), _Event("q", "a")]  # type: ignore[arg-type]
    got, want = _checked_both(odd, [0, 1], {"a": 0}, False)
    assert got == want == ([odd[1]], ["q"], [1], [0], ["a"])


@pytest.mark.parametrize("seed", range(10))
def test_none_at_equals_the_python_scan(seed: int) -> None:
    _compiled()
    rng = random.Random(seed)
    items: list[Any] = [
        rng.choice([None, _Event("p"), 0.0, "", 1]) for _ in range(rng.randrange(50))
    ]
    got, want = _both(lambda: _none_at(items))
    assert got == want == [i for i, v in enumerate(items) if v is None]


@pytest.mark.parametrize("seed", range(20))
def test_topic_at_equals_numpy_compare(seed: int) -> None:
    kernels = _compiled()
    rng = random.Random(seed)
    pt, lt = "preds", "labels"
    pool: list[Any] = [pt, lt, "".join(["pre", "ds"]), "".join(["lab", "els"]), "other", 3]
    topics = [rng.choice(pool) for _ in range(rng.randrange(60))]
    a = rng.randrange(len(topics) + 1)
    b = rng.randrange(a, len(topics) + 1)
    for p, q in ((pt, lt), (None, lt), (pt, None), (None, None)):
        names = np.array(topics[a:b], dtype=object)
        want_p = [] if p is None else (np.flatnonzero(names == p) + a).tolist()
        want_l = [] if q is None else (np.flatnonzero(names == q) + a).tolist()
        assert kernels.topic_at(topics, a, b, p, q) == (want_p, want_l)
    with pytest.raises(ValueError):
        kernels.topic_at(topics, 0, len(topics) + 1, pt, lt)
    with pytest.raises(ValueError):
        kernels.topic_at(topics, 1, 0, pt, lt)


def _edges(rng: np.random.Generator) -> Any:
    return np.sort(rng.integers(-5, 6, size=int(rng.integers(0, 8))).astype(np.float64) / 2)


@pytest.mark.parametrize("events", [0, 1, 5, 300, 1000])
def test_one_models_bins_equal_the_numpy_bins(events: int) -> None:
    _compiled()
    rng = np.random.default_rng(events)
    for _ in range(30):
        edges = [_edges(rng) for _ in range(int(rng.integers(1, 6)))]
        x = rng.integers(-7, 8, size=(len(edges), events)).astype(np.float64) / 2
        x[rng.random(x.shape) < 0.05] = np.inf
        x[rng.random(x.shape) < 0.05] = -np.inf
        x[rng.random(x.shape) < 0.05] = -0.0
        x[rng.random(x.shape) < 0.05] = np.nan  # StackedBins' callers pass none: as numpy
        bins = StackedBins(edges)
        got, want = _both(lambda: bins(x))  # noqa: B023
        assert got.dtype == want.dtype == np.int64
        assert np.array_equal(got, want)
        for f, e in enumerate(edges):
            if len(e) and not np.isnan(x[f]).any():
                assert np.array_equal(got[f], bin_numeric(e, x[f]))


def test_bin_rows_checks_its_arguments() -> None:
    kernels = _compiled()
    edges = np.array([0.0, 1.0, 2.0])
    x = np.zeros((2, 3))
    out = np.empty((2, 3), dtype=np.int64)
    slots = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError):  # offsets beyond the edges
        kernels.bin_rows(edges, np.array([0, 2, 4], dtype=np.int64), slots, x, out)
    with pytest.raises(ValueError):  # out of another size
        kernels.bin_rows(edges, np.array([0, 1, 3], dtype=np.int64), slots, x, out[:1])
    with pytest.raises(ValueError):  # a slot beyond the offsets' models
        kernels.bin_rows(edges, np.array([0, 1, 3], dtype=np.int64), slots + 1, x, out)
    with pytest.raises(TypeError):  # int32 offsets
        kernels.bin_rows(edges, np.array([0, 1, 3], dtype=np.int32), slots, x, out)
    kernels.bin_rows(edges, np.array([0, 1, 3], dtype=np.int64), slots, x, out)
    assert out.tolist() == [[1, 1, 1], [0, 0, 0]]


@pytest.mark.parametrize("seed", range(10))
def test_as_floats_equals_numpy(seed: int) -> None:
    _compiled()
    rng = random.Random(seed)
    pool: list[Any] = [
        -1,
        0,
        1_700_000_000_123,
        2**53 + 1,
        -(2**63) - 3,
        2**70 + 12345,
        1.5,
        -0.0,
        float("inf"),
    ]
    values = [rng.choice(pool) for _ in range(rng.randrange(40))]
    got, want = _both(lambda: _floats(values))
    assert got.dtype == want.dtype == np.float64
    assert got.tobytes() == want.tobytes() == np.array(values, dtype=np.float64).tobytes()
    for odd in (True, None, "3", 2**1100):  # declined: numpy converts (or raises) as ever
        mixed = [*values, odd]
        try:
            want = np.array(mixed, dtype=np.float64)
        except OverflowError:
            with pytest.raises(OverflowError):
                _floats(mixed)
            continue
        assert _floats(mixed).tobytes() == want.tobytes()
