"""``JoinBuffer.expire`` with the compiled ``expired_front`` and without: the same entries
popped and returned, in order, and the same table left (an :class:`EarlyLabels`' counts
per model too), over random matched-id tables (floats, NaN, infinities, huge values,
times equal to the bound, float subclasses) and early labels, the empty table, one entry,
a bound that is not a float, and entries with no time."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from monitor import native
from monitor.core.join import EarlyLabel, EarlyLabels, JoinBuffer

_TIMES = [0.0, -0.0, 1.0, 2.5, 3.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 5e-324]


def _time(rng: random.Random) -> float:
    if rng.random() < 0.3:
        return rng.choice(_TIMES)
    return rng.uniform(-10.0, 10.0)


def _both(table: dict, before: float) -> tuple[list, dict, list, dict]:  # type: ignore[type-arg]
    """What expire returns and leaves, compiled and not, each from its own copy."""
    out = []
    for compiled in (True, False):
        mine = table.copy()
        was = native.use(compiled)
        try:
            got = JoinBuffer.expire(mine, before)
        finally:
            native.use(was)
        out += [got, mine]
    return out[0], out[1], out[2], out[3]


def _same(a: list, b: list) -> bool:  # type: ignore[type-arg]
    """Element by element, NaN equal to NaN (and of the same type)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        if isinstance(x, float) and math.isnan(x):
            if not math.isnan(y):
                return False
        elif x != y and x is not y:
            return False
    return True


@pytest.mark.skipif(not native.available(), reason="monitor._native is not built")
@pytest.mark.parametrize("seed", range(40))
def test_matched_tables(seed: int) -> None:
    rng = random.Random(seed)
    table: dict[str, float] = {}
    for i in range(rng.randrange(0, 60)):
        ts = _time(rng)
        table[f"id-{i}-é" if i % 7 == 0 else f"id-{i}"] = np.float64(ts) if i % 5 == 0 else ts
    for before in [_time(rng) for _ in range(5)] + [math.nan]:
        got, left, want, kept = _both(table, before)
        assert _same(got, want)
        assert list(left) == list(kept)
        front = [pid for pid in table if pid not in kept]
        assert front == list(table)[: len(front)]  # the front only, in order


@pytest.mark.skipif(not native.available(), reason="monitor._native is not built")
@pytest.mark.parametrize("seed", range(20))
def test_early_labels(seed: int) -> None:
    rng = random.Random(seed)
    early = EarlyLabels()
    for i in range(rng.randrange(0, 40)):
        early[f"e{i}"] = EarlyLabel(_time(rng), rng.choice([0, 1, "x"]), rng.choice([-1, 0, 3]))
    for before in [_time(rng) for _ in range(4)]:
        got, left, want, kept = _both(early, before)
        assert _same([g.ts for g in got], [w.ts for w in want])
        assert [tuple(g)[1:] for g in got] == [tuple(w)[1:] for w in want]
        assert type(left) is EarlyLabels and list(left.items()) == list(kept.items())
        assert left.by_model == kept.by_model
        assert +left.by_model == Counter(label.model for label in left.values())


@pytest.mark.skipif(not native.available(), reason="monitor._native is not built")
def test_edges() -> None:
    assert _both({}, 1.0) == ([], {}, [], {})
    assert _both({"a": 1.0}, 1.0) == ([], {"a": 1.0}, [], {"a": 1.0})  # not < 1.0
    assert _both({"a": 1.0}, 1.5) == ([1.0], {}, [1.0], {})
    nan = _both({"a": math.nan, "b": 2.0}, 1.0)  # NaN is below any bound
    assert len(nan[0]) == len(nan[2]) == 1 and nan[1] == nan[3] == {"b": 2.0}
    # a bound that is not a float: compared as Python compares
    assert _both({"a": 1.0, "b": 3.0, "c": 2.0}, 3) == ([1.0], {"b": 3.0, "c": 2.0},
                                                       [1.0], {"b": 3.0, "c": 2.0})  # fmt: skip
    # an entry with no time: the same error either way, nothing popped
    for compiled in (True, False):
        table = {"a": 1.0, "b": 7}
        was = native.use(compiled)
        try:
            with pytest.raises(AttributeError):
                JoinBuffer.expire(table, 5.0)
        finally:
            native.use(was)
        assert table == {"a": 1.0, "b": 7}


@pytest.mark.skipif(not native.available(), reason="monitor._native is not built")
def test_argument_checks() -> None:
    kernels = pytest.importorskip("monitor._native")
    with pytest.raises(TypeError):
        kernels.expired_front([("a", 1.0)], 1.0)
    with pytest.raises(TypeError):
        kernels.expired_front({"a": 1.0})
