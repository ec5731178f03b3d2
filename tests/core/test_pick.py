"""The planner's picks of items by their places (``fastpath._pick`` and its compiled kernel,
``take_items``) against ``list(map(items.__getitem__, places))``, its (poll index, event)
pairs taken apart (``_unpaired``, ``pair_columns``) against ``map`` of itemgetters, and the
places of the ids a container holds (``_contained_at``, ``contained_at``) against
``compress`` over ``map`` of its ``__contains__``: the same items (the same objects, in
order), and the same exception where those raise."""

from __future__ import annotations

import operator
import random
from itertools import compress
from typing import Any

import numpy as np
import pytest

from monitor.core.fastpath import _contained_at, _pick, _unpaired
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


@pytest.mark.parametrize("seed", range(20))
def test_unpaired_gives_the_halves_map_gives(seed: int) -> None:
    rng = random.Random(seed)
    pairs: list[Any] = [(rng.randrange(1000), object()) for _ in range(rng.randrange(0, 40))]
    if pairs and rng.random() < 0.4:  # an item that is not a pair: the kernel declines
        pairs[rng.randrange(len(pairs))] = rng.choice([(1, 2, 3), (1,), [1, 2], "ab"])
    firsts = _outcome(lambda: list(map(operator.itemgetter(0), pairs)))
    seconds = _outcome(lambda: list(map(operator.itemgetter(1), pairs)))
    got, want = _both(lambda: _outcome(lambda: _unpaired(pairs)))
    for one in (got, want):
        if firsts[0] == "ok" and seconds[0] == "ok":
            _same(("ok", one[1][0]), firsts)
            _same(("ok", one[1][1]), seconds)
        else:
            assert one[0] == (firsts if firsts[0] != "ok" else seconds)[0]


def test_pair_columns_declines_what_is_not_pairs() -> None:
    kernels = _compiled()
    assert kernels.pair_columns([(1, "a"), (1, 2, 3)]) is None
    assert kernels.pair_columns([(1, "a"), [2, "b"]]) is None
    assert kernels.pair_columns([]) == ([], [])
    assert kernels.pair_columns([(1, "a"), (2, "b")]) == ([1, 2], ["a", "b"])


@pytest.mark.parametrize("seed", range(30))
def test_contained_at_gives_the_places_compress_gives(seed: int) -> None:
    rng = random.Random(seed)
    items: list[Any] = [f"p{rng.randrange(30)}" for _ in range(rng.randrange(0, 50))]
    held = {f"p{rng.randrange(30)}" for _ in range(rng.randrange(0, 20))}
    kind = rng.choice([set, frozenset, dict.fromkeys, list])
    container: Any = kind(held)
    if items and rng.random() < 0.2:  # an item that is not a str: the kernel declines
        items[rng.randrange(len(items))] = rng.choice([3, ("p1",), None])
    for want in (True, False):
        found = map(container.__contains__, items)
        plain = list(compress(range(len(items)), found if want else map(operator.not_, found)))
        got, fallback = _both(lambda want=want: _contained_at(items, container, want))
        assert got == fallback == plain


def test_contained_at_declines_what_it_does_not_find() -> None:
    kernels = _compiled()
    assert kernels.contained_at(["a"], ["a"], True) is None
    assert kernels.contained_at(["a", 1], {"a"}, True) is None
    assert kernels.contained_at(["a", "b", "a"], {"a": 0}, True) == [0, 2]
    assert kernels.contained_at(["a", "b", "a"], frozenset({"a"}), False) == [1]
    assert kernels.contained_at([], set(), True) == []
