"""The join's pid -> model lookup (:class:`~monitor.core.join.OwnerIndex` inside
:class:`~monitor.core.join.JoinBuffer`) against asking every model's table: random
operations through every way a pending table gains and loses ids (scalar and batch
inserts, matches, expiry, evictions, compaction), tables replaced and copied, the same id
waiting for several models; and the engine's two paths with the lookup always used. Every
test runs twice: with the compiled kernels (``monitor._native``) and with the numpy code."""

from __future__ import annotations

import copy
import pickle
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

from monitor.core.join import (
    EarlyLabel,
    EarlyLabels,
    JoinBuffer,
    OwnerIndex,
    Pending,
    PendingTable,
    id_keys,
    pop_groups,
)

MODELS = 7  # more than JoinBuffer.INDEXED_FROM: the index answers


#: Every test twice: compiled kernels, then numpy (tests/core/conftest.py).
pytestmark = pytest.mark.usefixtures("kernels")


def _brute(join: JoinBuffer, pids: list[str]) -> list[int]:
    """The first model (by index) holding each id, asking every table."""
    out = []
    for pid in pids:
        out.append(next((m for m, t in enumerate(join.pending) if pid in t), -1))
    return out


def _check(join: JoinBuffer, universe: list[str]) -> None:
    want = _brute(join, universe)
    # exactly the ids waiting (a stale pair would only cost a probe: counted, not hidden)
    assert len(join.owner_index()) == sum(len(t) for t in join.pending)
    assert join.owners(id_keys(universe)).tolist() == want
    assert join.owners_of(universe).tolist() == want
    for pid, m in zip(universe[:40], want[:40], strict=False):
        found, entry = join.find_pending(pid, -1)
        assert found == m
        assert (entry is None) == (m < 0)
        if entry is not None:
            assert entry == join.pending[m][pid]


def _pending(rng: random.Random) -> Pending:
    return Pending(float(rng.randrange(1000)), 1.0, 0.5, (0, rng.randrange(-1, 3)))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("queue_most", [1 << 16, 3])
def test_owners_equal_asking_every_table(seed: int, queue_most: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OwnerIndex, "QUEUE_MOST", queue_most)
    rng = random.Random(seed)
    join = JoinBuffer(MODELS)
    universe = [f"id-{i}" for i in range(300)] + ["é-ü", "", "x" * 40]
    for step in range(400):
        m = rng.randrange(MODELS)
        table = join.pending[m]
        op = rng.random()
        if op < 0.2:  # one insert (an id may already wait for another model)
            pid = rng.choice(universe)
            if pid not in table:
                table[pid] = _pending(rng)
        elif op < 0.35:  # a batch insert
            pids = list({p for p in rng.sample(universe, 12) if p not in table})
            if pids:
                n = len(pids)
                table.add_many(pids, np.array([float(rng.randrange(1000)) for _ in pids]),
                               np.ones(n), np.full(n, 0.5), np.zeros((n, 2), dtype=np.int64))
        elif op < 0.5 and len(table):  # matched one by one
            pid = rng.choice(list(table))
            if rng.random() < 0.5:
                table.pop(pid)
            else:
                del table[pid]
        elif op < 0.62:  # matched in a batch (absent and repeated ids too)
            table.pop_many(rng.sample(universe, 15) + list(table)[:3] * 2)
        elif op < 0.7:
            table.expire(float(rng.randrange(300)))
        elif op < 0.76 and len(table):
            table.evict_oldest()
        elif op < 0.82 and len(table):
            table.evict_front(rng.randrange(1, len(table) + 1))
        elif op < 0.86:  # a table replaced (a restore, a hand-over)
            join.pending[m] = copy.copy(table) if rng.random() < 0.5 else PendingTable()
        elif op < 0.9:  # the whole join copied or pickled (a checkpoint, a flush)
            join = copy.deepcopy(join) if rng.random() < 0.5 else pickle.loads(pickle.dumps(join))
        elif op < 0.95:  # matched in one batch over several models' tables (pop_groups)
            chosen = rng.sample(range(MODELS), 3)
            groups = [list(dict.fromkeys(rng.sample(universe, 6) + list(join.pending[g])[:4]))
                      for g in chosen]  # fmt: skip
            pop_groups([join.pending[g] for g in chosen], [len(p) for p in groups],
                       [pid for p in groups for pid in p], 2)  # fmt: skip
        if step % 7 == 0:
            _check(join, universe)
    _check(join, universe)


def test_an_id_waiting_for_several_models_is_the_first_models() -> None:
    join = JoinBuffer(MODELS)
    for m in (5, 2, 6):
        join.pending[m]["same"] = Pending(1.0, 1.0, 0.5, (0, -1))
    assert join.owners(id_keys(["same", "other"])).tolist() == [2, -1]
    assert join.find_pending("same", -1)[0] == 2
    del join.pending[2]["same"]
    assert join.owners(id_keys(["same"])).tolist() == [5]
    assert join.find_pending("same", -1)[0] == 5


def test_a_shared_crc_is_confirmed_by_the_table() -> None:
    """Two different ids with one CRC-32: the index names a candidate, the table's bytes
    decide."""
    a, b = "plumless", "buckeroo"  # a known CRC-32 collision
    assert id_keys([a]).crcs[0] == id_keys([b]).crcs[0]
    join = JoinBuffer(MODELS)
    join.pending[3][a] = Pending(1.0, 1.0, 0.5, (0, -1))
    assert join.owners(id_keys([a, b])).tolist() == [3, -1]
    assert join.find_pending(b, -1) == (-1, None)
    join.pending[1][b] = Pending(1.0, 1.0, 0.5, (0, -1))
    assert join.owners(id_keys([a, b])).tolist() == [3, 1]
    assert join.find_pending(a, -1)[0] == 3


def test_owners_of_ids_as_str_are_the_owners_of_their_keys() -> None:
    """:meth:`JoinBuffer.owners_of` (ids as str: the compiled kernel finds their bytes and
    CRC-32s itself) against :meth:`JoinBuffer.owners` of their :func:`id_keys`: ids of
    other scripts, a lone surrogate, the empty id, a shared CRC-32, an id of several
    models, and none asked."""
    a, b = "plumless", "buckeroo"  # a known CRC-32 collision
    join = JoinBuffer(MODELS)
    held = {"é-ü": 2, "\ud800x": 6, "": 0, a: 3, "same": 5, "日本": 1}
    for pid, m in held.items():
        join.pending[m][pid] = Pending(1.0, 1.0, 0.5, (0, -1))
    join.pending[4]["same"] = Pending(1.0, 1.0, 0.5, (0, -1))
    asked = [*held, b, "\ud800y", "other", a]
    want = [2, 6, 0, 3, 4, 1, -1, -1, -1, 3]
    assert join.owners(id_keys(asked)).tolist() == want
    assert join.owners_of(asked).tolist() == want
    assert join.owners_of([]).tolist() == []


def test_the_index_is_not_part_of_the_state() -> None:
    join = JoinBuffer(MODELS)
    join.pending[4]["p"] = Pending(1.0, 1.0, 0.5, (0, -1))
    assert join.owners(id_keys(["p"])).tolist() == [4]
    assert join.__getstate__()[1].keys() == {"pending", "early", "matched"}
    assert join.pending[4].__getstate__().keys() >= {"k", "ts"}
    assert "_owner" not in join.pending[4].__getstate__()


def test_both_paths_agree_with_the_lookup_always_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch path against the per-message path (tests/core/test_fastpath.py's messy
    streams over 3 models), with the index answering for any number of models."""
    from tests.core.test_fastpath import noisy_stream, run, same, stream

    monkeypatch.setattr(JoinBuffer, "INDEXED_FROM", 0)
    cases: list[tuple[Any, list[int], dict[str, Any]]] = [
        (stream(2, 4000), [7, 300, 1], {}),
        (noisy_stream(16, 3000), [1, 40, 250, 800], {"ttl": "45s"}),
    ]
    for messages, sizes, options in cases:
        fast_engine, fast = run(messages, sizes, True, monkeypatch, 1_000_000, 4, **options)
        slow_engine, slow = run(messages, sizes, False, monkeypatch, 1_000_000, 4, **options)
        same(fast[0], slow[0], "rejects")
        same(fast[1], slow[1], "summary")
        same(fast[3], slow[3], "join")
        assert fast_engine.engine.pending_total == slow_engine.engine.pending_total
        for state in fast_engine.engine.partitions.values():
            counted = {m: n for m, n in state.join.early.by_model.items() if n}  # type: ignore[attr-defined]
            assert counted == _recount(state.join.early)


def test_seen_is_the_early_and_matched_ids_asked_one_by_one() -> None:
    """:meth:`JoinBuffer.seen` (the ids of many that wait as early labels or were matched,
    for a model or any) against ``pid in early or was_matched(pid, model)`` per id."""
    rng = random.Random(11)
    for _ in range(200):
        join = JoinBuffer(3)
        pool = [f"s{i}" for i in range(30)]
        for pid in rng.sample(pool, rng.randrange(8)):
            join.early[pid] = EarlyLabel(1.0, 0, rng.randrange(-1, 3))
        for table in join.matched:
            chosen = rng.sample(pool, rng.randrange(8))
            # some matched long ago, gone by now (dead rows that the index still passes)
            table.add_many(chosen, np.array([rng.choice((1.0, 2.0)) for _ in chosen]))
            if rng.random() < 0.5:
                table.expire(1.5)
        asked = rng.sample(pool, rng.randrange(1, 12))
        for model in (-1, 0, 1, 2):
            want = {p for p in asked if p in join.early or join.was_matched(p, model)}
            assert join.seen(asked, model) == want


def _recount(early: dict[str, Any]) -> dict[int, int]:
    return dict(Counter(label.model for label in early.values()))


def test_early_label_counts_follow_every_change() -> None:
    """The running count of early labels per model (what each pane delta reports) against
    a recount, through every way the engine, the batch path and the caps change them."""
    rng = random.Random(5)
    join = JoinBuffer(3)
    assert isinstance(join.early, EarlyLabels)
    pids = [f"e{i}" for i in range(60)]
    for _ in range(600):
        pid = rng.choice(pids)
        label = EarlyLabel(float(rng.randrange(100)), 1, rng.randrange(-1, 3))
        op = rng.randrange(11)
        early = join.early
        if op == 0:
            early[pid] = label  # new or overwritten in place
        elif op == 1 and pid in early:
            del early[pid]
        elif op == 2:
            early.pop(pid, None)
        elif op == 3:
            early.update([(pid, label), (rng.choice(pids), label)])
        elif op == 4 and early:
            JoinBuffer.evict_oldest(early)
        elif op == 5:
            JoinBuffer.expire(early, float(rng.randrange(30)))
        elif op == 6:
            early.setdefault(pid, label)
        elif op == 7:  # copied, pickled, or replaced by a plain dict (a restore)
            join.early = rng.choice([copy.copy(early), pickle.loads(pickle.dumps(early)),
                                     dict(early)])
        elif op == 8 and early and rng.random() < 0.1:
            early.popitem() if rng.random() < 0.5 else early.clear()
        elif op == 9:  # a poll's early labels at once, some of them held already
            some = rng.sample(pids, rng.randrange(1, 6))
            labels = [label._replace(model=rng.randrange(-1, 3)) for _ in some]
            named = None  # the model they all name, said by the caller (the batch path)
            if rng.random() < 0.5:
                named = labels[0].model
                labels = [x._replace(model=named) for x in labels]
            want_order = [*early, *(p for p in some if p not in early)]
            want_values = {**early, **dict(zip(some, labels, strict=True))}
            join.add_early(some, labels, named)
            assert list(join.early) == want_order
            assert dict(join.early) == want_values
        elif op == 10 and early:  # the ones a poll's predictions join, at once
            some = rng.sample(list(early), rng.randrange(1, min(5, len(early)) + 1))
            want = [early[p] for p in some]
            assert join.pop_early(some) == want
            assert not set(some) & join.early.keys()
        assert isinstance(join.early, EarlyLabels)
        want = _recount(join.early)
        got = {m: n for m, n in join.early.by_model.items() if n}
        assert got == want
