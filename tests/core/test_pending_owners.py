"""The kernel ``pending_owners`` (through ``monitor.native.pending_owners`` and
``JoinBuffer.owners_of``, with the compiled kernels and without) against
``JoinBuffer.owners`` of :func:`id_keys`: the same first model holding each id, over
random tables with live, popped and never-held ids (ASCII, non-ASCII and lone
surrogates), empty tables, and the owner index of many models; and its argument checks."""

from __future__ import annotations

import random

import numpy as np
import pytest

from monitor import native
from monitor.core.join import JoinBuffer, id_keys

pytestmark = pytest.mark.usefixtures("kernels")


def _ids(rng: random.Random, n: int) -> list[str]:
    out = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.8:
            out.append(f"p{i:08d}")
        elif kind < 0.9:
            out.append(f"é{i}ü")
        else:
            out.append(f"s{i}\udc80")
    return out


def _filled(rng: random.Random, models: int, ids: list[str]) -> JoinBuffer:
    join = JoinBuffer(models)
    for m in range(models):
        if rng.random() < 0.2:
            continue  # a table that never held a row
        mine = rng.sample(ids, rng.randrange(0, len(ids) // 2 + 1))
        n = len(mine)
        k = 1 + m % 2
        join.pending[m].add_many(mine, np.arange(n, dtype=np.float64) + 1.0, np.ones(n),
                                 np.full(n, 0.5), np.zeros((n, k), dtype=np.int64),
                                 checked=True)  # fmt: skip
        gone = rng.sample(mine, rng.randrange(0, n + 1))
        if gone:
            join.pending[m].pop_many(gone)
    return join


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("models", [1, 3, 4, 7])
def test_owners_of_equals_owners(seed: int, models: int) -> None:
    rng = random.Random(seed * 31 + models)
    ids = _ids(rng, rng.randrange(1, 400))
    join = _filled(rng, models, ids)
    asked = [rng.choice(ids) for _ in range(rng.randrange(0, 300))] + ["never", ""]
    want = join.owners(id_keys(asked))
    assert join.owners_of(asked).tolist() == want.tolist()
    if models <= JoinBuffer.INDEXED_FROM:
        assert native.pending_owners(join.pending, asked).tolist() == want.tolist()
    for m in range(models):  # one table asked alone
        got = native.pending_owners([join.pending[m]], asked)
        held = join.pending[m].contains_many(asked)
        assert (got >= 0).tolist() == held.tolist()
        assert set(got.tolist()) <= {-1, 0}


def test_pending_owners_no_ids_and_no_tables() -> None:
    join = JoinBuffer(2)
    assert native.pending_owners(join.pending, []).tolist() == []
    assert native.pending_owners([], ["a", "b"]).tolist() == [-1, -1]


def test_pending_owners_kernel_checks() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built")
    from monitor import _native

    join = JoinBuffer(1)
    join.pending[0].add_many(["a"], np.ones(1), np.ones(1), np.ones(1),
                             np.zeros((1, 1), dtype=np.int64), checked=True)  # fmt: skip
    with pytest.raises(ValueError):
        _native.pending_owners(join.pending, ["a"], np.empty(2, dtype=np.int64))
    with pytest.raises(TypeError):
        _native.pending_owners(join.pending, [b"a"], np.empty(1, dtype=np.int64))
    with pytest.raises(AttributeError):
        _native.pending_owners([object()], ["a"], np.empty(1, dtype=np.int64))
    out = np.empty(2, dtype=np.int64)
    _native.pending_owners(join.pending, ["a", "b"], out)
    assert out.tolist() == [0, -1]
