"""The ids a segment's predictions and labels share, and those each topic names more than
once (``fastpath._shared_ids``): the compiled ``shared_ids`` against the sets of the Python
code beside it over random lists (repeats, ids in one list only, equal ids that are
distinct objects, strs of every kind), and the kernel declining a list with an item that is
not a str."""

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
    common, again_p, again_l = want
    assert common == set(ids_p) & set(ids_l)
    assert again_p == {i for i in ids_p if ids_p.count(i) > 1}
    assert again_l == {i for i in ids_l if ids_l.count(i) > 1}


def test_the_kernel_declines_an_item_that_is_not_a_str() -> None:
    kernels = _compiled()
    assert kernels.shared_ids(["a", 1], ["a"]) is None
    assert kernels.shared_ids(["a"], ["a", None]) is None
    ids: list[Any] = ["a", 1, "a"]
    other: list[Any] = [1, "b"]
    got, want = _both(lambda: _shared_ids(ids, other))
    assert got == want == ({1}, {"a"}, set())
    with pytest.raises(TypeError):
        kernels.shared_ids(("a",), [])


def test_the_usual_segment_each_id_once_per_topic() -> None:
    _compiled()
    ids_p = [f"p{i:08d}" for i in range(5000)]
    ids_l = [f"p{i:08d}" for i in range(2500, 7000)]
    got, want = _both(lambda: _shared_ids(ids_p, ids_l))
    assert got == want == ({f"p{i:08d}" for i in range(2500, 5000)}, set(), set())
