"""The planner's picks of items by their places (``fastpath._pick`` and its compiled kernel,
``take_items``) against ``list(map(items.__getitem__, places))``: the same items (the same
objects, in order), and the same exception where that raises."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from monitor.core.fastpath import _pick
from tests.core.test_native_planner import _both, _compiled


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # the kind and message are what is compared
        return type(exc).__name__, str(exc)


def _same(got: Any, want: Any) -> None:
    assert got[0] == want[0]
    if got[0] == "ok":
        assert len(got[1]) == len(want[1])
        assert all(a is b for a, b in zip(got[1], want[1], strict=True))
    else:
        assert got[1] == want[1]


@pytest.mark.parametrize("seed", range(30))
def test_pick_gives_the_items_map_gives(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(0, 50)
    items: list[Any] = [object() if rng.random() < 0.5 else f"id{i}" for i in range(n)]
    m = rng.randrange(0, 60)
    low = -n if rng.random() < 0.3 else 0
    places = [rng.randrange(low, n) for _ in range(m)] if n else []
    if rng.random() < 0.2 and m:  # one out of range
        places[rng.randrange(m)] = rng.choice([n, n + 7, -n - 1, 2**40])
    plain = _outcome(lambda: list(map(items.__getitem__, places)))
    for given in (places, np.array(places, dtype=np.int64)):
        got, want = _both(lambda given=given: _outcome(lambda: _pick(items, given)))
        _same(got, plain)
        _same(want, plain)


@pytest.mark.parametrize(
    "places",
    [
        [1.0],
        ["a"],
        [True, 0],
        [2**70],
        np.array([1, 0], dtype=np.int32),
        np.array([0, 2, 4], dtype=np.int64)[::2],
        np.array([[1]], dtype=np.int64),
        np.array([1.0]),
        (1, 2),
        range(3),
    ],
    ids=["float", "str", "bool", "huge", "int32", "strided", "2-d", "float64", "tuple", "range"],
)
def test_pick_of_other_places_is_map_s(places: Any) -> None:
    items = list("abcdef")
    plain = _outcome(lambda: list(map(items.__getitem__, places)))
    got, want = _both(lambda: _outcome(lambda: _pick(items, places)))
    _same(got, plain)
    _same(want, plain)


def test_the_kernel_declines_what_it_does_not_pick() -> None:
    kernels = _compiled()
    items = list("abc")
    assert kernels.take_items(items, [0.0]) is None
    assert kernels.take_items(items, np.array([0], dtype=np.int32)) is None
    assert kernels.take_items(items, (0,)) is None
    assert kernels.take_items(items, [2, -3]) == ["c", "a"]
    assert kernels.take_items(items, np.array([], dtype=np.int64)) == []
    with pytest.raises(IndexError):
        kernels.take_items(items, np.array([3], dtype=np.int64))


def test_pick_of_a_list_subclass_is_its_own_getitem() -> None:
    class Reversed(list[str]):
        def __getitem__(self, i: Any) -> Any:
            return list.__getitem__(self, -1 - i)

    items = Reversed("abc")
    got, want = _both(lambda: _pick(items, [0, 1]))
    assert got == want == ["c", "b"]
