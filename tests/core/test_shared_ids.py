"""The ids a segment's predictions and labels share, those each topic names more than
once, and (each id once per topic) the places of the shared ids and of the labels' others
(``fastpath._shared_ids``): the compiled ``shared_ids`` against the sets and ``compress`` of
the Python code beside it over random lists (repeats, ids in one list only, equal ids that
are distinct objects, strs of every kind), and the kernel declining a list with an item
that is not a str."""

from __future__ import annotations

import random
from typing import Any

import pytest

from monitor.core.fastpath import _shared_ids
from tests.core.test_native_planner import _both, _compiled

_ALPHABET = ["a", "b", "é", "ÿ", "\u0101", "\u4e2d", "\U0001f600"]


def _ids(rng: random.Random, pool: list[str], n: int) -> list[str]:
    # copies made afresh: equal ids are distinct objects, as decoded ones are
    return ["".join(list(rng.choice(pool))) for _ in range(n)]


@pytest.mark.parametrize("seed", range(40))
def test_shared_ids_equal_the_sets(seed: int) -> None:
    _compiled()
    rng = random.Random(seed)
    size = rng.choice([1, 3, 30, 300, 3000])
    pool = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 4))) + str(i)
            for i in range(size)]  # fmt: skip
    if rng.random() < 0.3:  # a few short ids: many repeats
        pool = pool[:3]
    ids_p = _ids(rng, pool, rng.randrange(0, 2 * size))
    ids_l = _ids(rng, pool, rng.randrange(0, 2 * size))
    got, want = _both(lambda: _shared_ids(ids_p, ids_l))
    assert got == want
    _check(ids_p, ids_l, want)


def _check(ids_p: list[str], ids_l: list[str], got: Any) -> None:
    common, again_p, again_l, places = got
    assert common == set(ids_p) & set(ids_l)
    assert again_p == {i for i in ids_p if ids_p.count(i) > 1}
    assert again_l == {i for i in ids_l if ids_l.count(i) > 1}
    if not common or again_p or again_l:
        assert places is None
        return
    assert places == (
        [k for k, i in enumerate(ids_p) if i in common],
        [k for k, i in enumerate(ids_l) if i in common],
        [k for k, i in enumerate(ids_l) if i not in common],
    )


@pytest.mark.parametrize("seed", range(40))
def test_the_places_of_ids_named_once_per_topic(seed: int) -> None:
    _compiled()
    rng = random.Random(seed)
    size = rng.choice([1, 2, 5, 40, 300, 3000])
    pool = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 4))) + str(i)
            for i in range(size)]  # fmt: skip
    # each list's ids distinct (copies made afresh), some in both, in any order
    ids_p = ["".join(list(i)) for i in rng.sample(pool, rng.randrange(0, size + 1))]
    ids_l = ["".join(list(i)) for i in rng.sample(pool, rng.randrange(0, size + 1))]
    if rng.random() < 0.2 and ids_p:  # one id named twice in one topic: no places
        ids = ids_p if rng.random() < 0.5 else ids_l
        ids.insert(rng.randrange(0, len(ids) + 1), "".join(list(rng.choice(ids_p))))
    got, want = _both(lambda: _shared_ids(ids_p, ids_l))
    assert got == want
    _check(ids_p, ids_l, want)


def test_the_kernel_declines_an_item_that_is_not_a_str() -> None:
    kernels = _compiled()
    assert kernels.shared_ids(["a", 1], ["a"]) is None
    assert kernels.shared_ids(["a"], ["a", None]) is None
    ids: list[Any] = ["a", 1, "a"]
    other: list[Any] = [1, "b"]
    got, want = _both(lambda: _shared_ids(ids, other))
    assert got == want == ({1}, {"a"}, set(), None)
    other = [1, "b", "c"]
    got, want = _both(lambda: _shared_ids(["c", 1], other))
    assert got == want == ({1, "c"}, set(), set(), ([0, 1], [0, 2], [1]))
    with pytest.raises(TypeError):
        kernels.shared_ids(("a",), [])


def test_the_usual_segment_each_id_once_per_topic() -> None:
    _compiled()
    ids_p = [f"p{i:08d}" for i in range(5000)]
    ids_l = [f"p{i:08d}" for i in range(2500, 7000)]
    got, want = _both(lambda: _shared_ids(ids_p, ids_l))
    shared = {f"p{i:08d}" for i in range(2500, 5000)}
    at = (list(range(2500, 5000)), list(range(2500)), list(range(2500, 4500)))
    assert got == want == (shared, set(), set(), at)
    got, want = _both(lambda: _shared_ids(ids_p, ids_l[2500:]))  # none shared
    assert got == want == (set(), set(), set(), None)
    got, want = _both(lambda: _shared_ids([], []))
    assert got == want == (set(), set(), set(), None)
