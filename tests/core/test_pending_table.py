"""The columnar store of pending predictions against a plain dict (the store it replaced):
random operation sequences through the scalar and batch APIs, compaction, TTL expiry,
eviction, slice renumbering and pickling; and old checkpoints holding pending dicts. Every
test runs twice: with the compiled probing kernels (``monitor._native``) and with the numpy
code that stands in for them when they are not built."""

from __future__ import annotations

import copy
import pickle
import random
import zlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import MonitorConfig, config_from_mapping
from monitor.core import join
from monitor.core.join import JoinBuffer, Pending, PendingTable

K = 2  # slice ids per row, as for a model without segments


#: Every test twice: compiled kernels, then numpy (tests/core/conftest.py).
pytestmark = pytest.mark.usefixtures("kernels")


class Model:
    """The reference: a dict in arrival order, operations written the obvious way."""

    def __init__(self) -> None:
        self.d: dict[str, Pending] = {}

    def expire(self, before: float) -> int:
        gone = []
        for pid, entry in self.d.items():
            if entry.ts >= before:
                break
            gone.append(pid)
        for pid in gone:
            del self.d[pid]
        return len(gone)

    def pop_many(self, pids: list[str]) -> list[Pending | None]:
        return [self.d.pop(pid, None) for pid in pids]


def _pending(rng: random.Random, k: int = K) -> Pending:
    return Pending(
        float(rng.randrange(0, 1000)) + rng.random(),  # not monotone: expire must stop early
        float(rng.randrange(3)),
        rng.random() if rng.random() < 0.8 else float("nan"),
        tuple(rng.randrange(-1, 6) for _ in range(k)),
    )


def _same(table: PendingTable, model: Model) -> None:
    assert len(table) == len(model.d)
    assert bool(table) == bool(model.d)
    got = list(table.items())
    assert [pid for pid, _ in got] == list(model.d)
    # the byte budget's account: the live ids' UTF-8 bytes and each row's fixed columns
    row = PendingTable.ROW_BYTES + 4 * max(table.k, 0)
    assert table.nbytes == sum(len(p.encode("utf-8", "surrogatepass")) + row for p in model.d)
    for (_, a), b in zip(got, model.d.values(), strict=True):
        assert _eq(a, b)
        assert all(type(s) is int for s in a.slices)


def _eq(a: Pending | None, b: Pending | None) -> bool:
    if a is None or b is None:
        return a is b
    same_score = a.score == b.score or (np.isnan(a.score) and np.isnan(b.score))
    return a.ts == b.ts and a.pred == b.pred and same_score and a.slices == b.slices


def run_ops(seed: int, steps: int) -> None:
    """``steps`` random operations on a table and the model, compared after each (a table
    compacting whenever its dead rows are more than half, however few)."""
    with mock.patch.object(join, "_COMPACT_FROM", 0):
        _run_ops(seed, steps)


def _run_ops(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    table, model = PendingTable(), Model()
    fresh = 0
    for _ in range(steps):
        op = rng.random()
        if op < 0.25:  # one new prediction
            pid = f"p{fresh}"
            fresh += 1
            entry = _pending(rng)
            if rng.random() < 0.5:  # as the engine does: a duplicate check first
                assert pid not in table
            table[pid] = entry
            model.d[pid] = entry
        elif op < 0.40:  # a batch of new ones (a few, or more than add_many sums in Python)
            n = rng.randrange(0, 60) if rng.random() < 0.8 else rng.randrange(60, 130)
            pids = [f"p{fresh + i}" for i in range(n)]
            fresh += n
            entries = [_pending(rng) for _ in range(n)]
            table.add_many(
                pids,
                np.array([e.ts for e in entries]),
                np.array([e.pred for e in entries]),
                np.array([e.score for e in entries]),
                np.array([e.slices for e in entries], dtype=np.int64).reshape(n, K),
            )
            model.d.update(zip(pids, entries, strict=True))
        elif op < 0.55:  # a batch of labels: known, absent and repeated ids
            known = list(model.d)
            pids = rng.sample(known, min(len(known), rng.randrange(0, 40)))
            pids += [f"absent{rng.randrange(5)}" for _ in range(rng.randrange(3))]
            pids += rng.choices(pids, k=rng.randrange(3)) if pids else []
            rng.shuffle(pids)
            want = model.pop_many(pids)
            found, ts, pred, score, slices = table.pop_many(pids)
            assert found.dtype == np.bool_ and slices.dtype == np.int64
            assert slices.shape == (len(pids), K if table.k >= 0 else 0)
            for i, w in enumerate(want):
                if w is None:
                    assert not found[i] and np.isnan(ts[i]) and np.isnan(pred[i])
                    assert np.isnan(score[i]) and (slices[i] == -1).all()
                else:
                    got = Pending(float(ts[i]), float(pred[i]), float(score[i]),
                                  tuple(slices[i].tolist()))
                    assert found[i] and _eq(got, w)
        elif op < 0.70:  # one label
            pid = rng.choice(list(model.d)) if model.d and rng.random() < 0.8 else "nobody"
            assert (pid in table) == (pid in model.d)
            assert _eq(table.get(pid), model.d.get(pid))
            if pid in model.d:
                if rng.random() < 0.5:
                    assert _eq(table.pop(pid), model.d.pop(pid))
                else:
                    del table[pid]
                    del model.d[pid]
            else:
                with pytest.raises(KeyError):
                    table.pop(pid)
        elif op < 0.80:  # the TTL, at a watermark near the front's event times
            front = [e.ts for e in list(model.d.values())[:5]]
            before = rng.choice(front) + rng.choice([-0.5, 0.0, 0.5]) if front else 1.0
            if rng.random() < 0.1:
                before = 2000.0  # everything
            assert table.expire(before) == model.expire(before)
        elif op < 0.88:  # the cap
            if model.d:
                oldest = next(iter(model.d))
                assert _eq(table.evict_oldest(), model.d.pop(oldest))
            else:
                with pytest.raises(KeyError):
                    table.evict_oldest()
        elif op < 0.93:  # a partition moved to a registry numbered otherwise
            mapping = np.array(rng.sample(range(10, 30), 6), dtype=np.int64)
            table.remap_slices(mapping)
            for pid, e in model.d.items():
                moved = tuple(int(mapping[s]) if s >= 0 else -1 for s in e.slices)
                model.d[pid] = e._replace(slices=moved)
            _same(table, model)
            # Keep the ids small for the next operations.
            back = np.full(30, -1, dtype=np.int64)
            back[mapping] = np.arange(6)
            table.remap_slices(back)
            for pid, e in model.d.items():
                moved = tuple(int(back[s]) if s >= 0 else -1 for s in e.slices)
                model.d[pid] = e._replace(slices=moved)
        else:  # a checkpoint and a restart, or the engine's deep copy
            table = pickle.loads(pickle.dumps(table)) if op < 0.97 else copy.deepcopy(table)
        _same(table, model)
        # Compaction bounds the rows kept: dead rows never exceed the live ones.
        assert table._used - len(table) <= len(table)


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_match_a_dict(seed: int) -> None:
    run_ops(seed, 1500)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 200))
def test_random_operations_match_a_dict_hypothesis(seed: int, steps: int) -> None:
    run_ops(seed, steps)


def test_compaction_keeps_arrival_order_and_shrinks() -> None:
    table = PendingTable()
    n = 10_000
    pids = [f"id-{i}" for i in range(n)]
    ts = np.arange(n, dtype=np.float64)
    table.add_many(pids, ts, ts * 2, ts / n, np.zeros((n, 1), dtype=np.int64))
    gone = [pid for i, pid in enumerate(pids) if i % 10 != 5]
    found, *_ = table.pop_many(gone)  # nine tenths gone: compacted
    assert found.all()
    assert table._used == len(table) == n - len(gone)
    assert table._ts.shape[0] < n // 4  # capacity released
    assert [pid for pid, _ in table.items()] == pids[5::10]
    assert table.get("id-15") == Pending(15.0, 30.0, 15 / n, (0,))
    assert table.expire(105.0) == 10  # ids 5, 15, ..., 95; 105 is not < 105
    assert next(iter(table.items()))[0] == "id-105"


def test_expire_stops_at_the_first_not_expired() -> None:
    table = PendingTable()
    for pid, ts in [("a", 5.0), ("b", 1.0), ("c", 9.0), ("d", 2.0)]:
        table[pid] = Pending(ts, 0.0, 0.0, (0,))
    assert table.expire(6.0) == 2  # a, b; d is older but behind c
    assert list(table) == ["c", "d"]
    assert table.expire(1.0) == 0
    assert table.expire(100.0) == 2 and not table


def test_pickle_holds_only_live_rows() -> None:
    table = PendingTable()
    n = 50_000
    pids = [f"{i:08d}" for i in range(n)]
    ts = np.arange(n, dtype=np.float64)
    table.add_many(pids, ts, ts, ts, np.zeros((n, 2), dtype=np.int64))
    full = len(pickle.dumps(table, pickle.HIGHEST_PROTOCOL))
    table.pop_many(pids[: n // 2 - 10])  # not yet compacted: dead rows kept in memory
    assert table._used == n
    half = len(pickle.dumps(table, pickle.HIGHEST_PROTOCOL))
    assert half < 0.6 * full
    back = pickle.loads(pickle.dumps(table, pickle.HIGHEST_PROTOCOL))
    assert list(back) == pids[n // 2 - 10 :]
    back["new"] = Pending(1.0, 2.0, 3.0, (4, 5))  # writable after loading, and grows
    assert back.pop("new") == Pending(1.0, 2.0, 3.0, (4, 5))


def test_refuses_ids_already_pending_and_other_slice_counts() -> None:
    table = PendingTable()
    table["a"] = Pending(1.0, 0.0, 0.0, (0, 1))
    one = np.ones(1)
    with pytest.raises(ValueError):
        table.add_many(["a"], one, one, one, np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError):
        table.add_many(["b", "b"], one.repeat(2), one.repeat(2), one.repeat(2),
                       np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError):
        table["c"] = Pending(1.0, 0.0, 0.0, (0,))
    assert list(table.items()) == [("a", Pending(1.0, 0.0, 0.0, (0, 1)))]


def test_join_buffer_from_a_checkpoint_with_pending_dicts() -> None:
    """A JoinBuffer pickled before the columnar store (slots holding dicts) loads with
    PendingTables holding the same entries in the same order."""
    buf = JoinBuffer(2)
    old = {"x": Pending(3.0, 1.0, 0.5, (0, -1)), "y": Pending(1.0, 0.0, 0.1, (0, 2))}
    buf.pending = [old, {}]  # type: ignore[list-item]  # the layout of the old format
    back = pickle.loads(pickle.dumps(buf))
    assert all(isinstance(t, PendingTable) for t in back.pending)
    assert list(back.pending[0].items()) == list(old.items())
    assert len(back.pending[1]) == 0
    assert back.find_pending("y", -1) == (0, old["y"])


def _config() -> MonitorConfig:
    return config_from_mapping({"models": [
        {"name": "m", "task": "binary", "positive_class": 1, "windows": ["all"]}]})


def test_ids_with_the_same_crc32_are_told_apart() -> None:
    """The index keys rows by the CRC-32 of the id; two ids with the same CRC-32 (so the
    same home slot) are still two entries: a match needs the same bytes."""
    a, b = "id-29685295", "id-32060020"
    assert zlib.crc32(a.encode()) == zlib.crc32(b.encode())
    table = PendingTable()
    table[a] = Pending(1.0, 0.0, 0.1, (0, 1))
    assert b not in table and table.get(b) is None
    table[b] = Pending(2.0, 1.0, 0.2, (0, 2))
    assert table.get(a) == Pending(1.0, 0.0, 0.1, (0, 1))
    assert table.get(b) == Pending(2.0, 1.0, 0.2, (0, 2))
    found, ts, *_ = table.pop_many([b, "id-0", b])
    assert found.tolist() == [True, False, False] and ts[0] == 2.0
    assert list(table) == [a]
    found, *_ = table.pop_many([b])
    assert not found.any() and list(table) == [a]


def test_any_string_is_an_id() -> None:
    """Ids are kept as UTF-8 bytes: non-ASCII, empty, NUL and lone surrogates (which
    a JSON decoder can produce) come back equal."""
    ids = ["", "é", "日本語", "a\x00b", "\ud800", "x" * 300, "a", "a\x00"]
    table = PendingTable()
    for i, pid in enumerate(ids):
        table[pid] = Pending(float(i), 0.0, 0.0, (i, -1))
    back = pickle.loads(pickle.dumps(table))
    for t in (table, back):
        assert list(t) == ids
        assert all(t.get(pid) == Pending(float(i), 0.0, 0.0, (i, -1))
                   for i, pid in enumerate(ids))
    assert back.pop("\ud800").ts == 4.0 and "\ud800" not in back and "a\x00" in back


def test_many_rows_through_the_batch_path() -> None:
    """Tens of thousands of rows: index growth, long probe runs, compaction and pickling
    at sizes the random walk does not reach, against a dict."""
    rng = np.random.default_rng(7)
    table, model = PendingTable(), Model()
    n = 60_000
    ids = [f"{v:x}" for v in rng.permutation(10 * n)[:n]]
    ts = rng.uniform(0, 1000, n)
    slices = rng.integers(-1, 50, (n, 3))
    for at in range(0, n, 7_000):
        chunk = slice(at, at + 7_000)
        table.add_many(ids[chunk], ts[chunk], ts[chunk] * 2, ts[chunk] / 3, slices[chunk])
        model.d.update((pid, Pending(float(t), float(t) * 2, float(t) / 3,
                                     tuple(s.tolist())))
                       for pid, t, s in zip(ids[chunk], ts[chunk], slices[chunk], strict=True))
    asked = [ids[i] for i in rng.integers(0, n, 40_000)] + ["nope", "", "zz"]
    found, got_ts, _, _, got_slices = table.pop_many(asked)
    want = model.pop_many(asked)
    assert found.tolist() == [w is not None for w in want]
    assert all(w is None or (w.ts == t and w.slices == tuple(s.tolist()))
               for w, t, s in zip(want, got_ts, got_slices, strict=True))
    table = pickle.loads(pickle.dumps(table, pickle.HIGHEST_PROTOCOL))
    assert table.expire(500.0) == model.expire(500.0)
    _same(table, model)


def test_a_lookup_remembered_across_compaction_is_not_reused() -> None:
    """``in`` remembers the row of the id it found; rows renumbered by a compaction in
    between must not be taken for it."""
    table = PendingTable()
    ids = [f"a{i}" for i in range(10)]
    for i, pid in enumerate(ids):
        table[pid] = Pending(float(i), float(i), 0.0, (i, -1))
    last = ids[9]
    assert last in table
    with mock.patch.object(join, "_COMPACT_FROM", 0):
        table.pop_many(ids[:8])  # compacts: a8 and a9 are rows 0 and 1 now
    assert table._used == 2
    assert table.pop(last) == Pending(9.0, 9.0, 0.0, (9, -1))
    assert list(table) == ["a8"]
    assert "gone" not in table  # a remembered miss, then an insert elsewhere
    table["other"] = Pending(1.0, 1.0, 1.0, (0, 0))
    table["gone"] = Pending(2.0, 2.0, 2.0, (0, 0))
    assert list(table) == ["a8", "other", "gone"]
    assert table.get("other") == Pending(1.0, 1.0, 1.0, (0, 0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "pop", "front"]), st.integers(0, 40)),
                max_size=120))
def test_the_front_of_the_table_against_a_dict(ops: list[tuple[str, int]]) -> None:
    """What the evictions at a cap read and do (the first entries' ids and bytes, places in
    arrival order, removal from the front) agree with a dict in arrival order."""
    table = PendingTable()
    model: dict[str, int] = {}
    made = 0
    for op, n in ops:
        if op == "add":
            for _ in range(n % 7 + 1):
                pid = f"f{made}" + "z" * (made % 5)
                made += 1
                table[pid] = Pending(float(made), 0.0, 0.5, (0, -1))
                model[pid] = len(pid.encode()) + PendingTable.ROW_BYTES + 4 * K
        elif op == "pop" and model:
            pid = list(model)[n % len(model)]
            table.pop(pid)
            del model[pid]
        else:
            k = min(n % 9, len(model))
            assert table.front_ids(k) == list(model)[:k]
            assert table.front_bytes(k).tolist() == list(model.values())[:k]
            asked = [*list(model)[-3:], "absent"]
            rank, size = table.ranks(asked)
            order = list(model)
            assert rank.tolist() == [order.index(p) if p in model else -1 for p in asked]
            assert size.tolist() == [model.get(p, 0) for p in asked]
            table.evict_front(k)
            for pid in list(model)[:k]:
                del model[pid]
        assert list(table) == list(model)
        assert table.nbytes == sum(model.values())


def test_a_small_table_keeps_a_few_dead_rows_before_it_compacts() -> None:
    """Dead rows more than half of a table's rows are compacted away once they are at
    least ``_COMPACT_FROM``: a small table keeps that many at most."""
    table = PendingTable()
    n = join._COMPACT_FROM
    ids = [f"b{i}" for i in range(n + 1)]
    ts = np.arange(n + 1, dtype=np.float64)
    table.add_many(ids, ts, ts, ts, np.zeros((n + 1, 1), dtype=np.int64))
    table.pop_many(ids[: n - 1])  # dead rows more than half, but fewer than _COMPACT_FROM
    assert table._used == n + 1 and list(table) == ids[n - 1 :]
    del table[ids[n - 1]]  # now _COMPACT_FROM of them: compacted
    assert table._used == len(table) == 1 and list(table) == ids[n:]
    assert table.pop(ids[n]) == Pending(float(n), float(n), float(n), (0,))
