"""A (model, partition) group's append and pop in one compiled call each
(``monitor._native``'s ``pending_add`` and ``pending_pop``, behind
:meth:`PendingTable.add_many` with ``checked`` ids and :meth:`PendingTable.pop_many`), and
many tables' in one call (``pending_add_groups``, ``pending_pop_groups``) against the numpy
code that stands in for them: through random groups of new ids (ASCII,
multi-byte and lone surrogates), pops with repeated and absent ids, growth, compaction
and expiry, the same results bit for bit, the same columns, and the same counts in the
owner index the table is bound to."""

from __future__ import annotations

import importlib
import pickle
import random
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.core.join import OwnerIndex, Pending, PendingTable, add_groups, pop_groups


def _ids(rng: random.Random, n: int, serial: list[int]) -> list[str]:
    """``n`` distinct new ids of varied lengths and alphabets (a serial number keeps them
    new), a few with a lone surrogate."""
    out = []
    for _ in range(n):
        serial[0] += 1
        kind = rng.random()
        if kind < 0.7:
            out.append(f"p-{serial[0]}")
        elif kind < 0.95:
            text = "".join(rng.choice("aé€𝄞") for _ in range(rng.randrange(0, 6)))
            out.append(text + str(serial[0]))
        else:
            out.append(f"\udc80{serial[0]}")
    return out


def _table_state(table: PendingTable, owners: OwnerIndex) -> list[Any]:
    """Everything a table holds that its answers depend on, as bytes where they are numbers
    (NaN's bits included); the index's slots are left out (the vectorised numpy placement
    of a large group may choose other slots, never other answers)."""
    used = table._used
    crcs = np.unique(table._hash[:used])
    return [
        used, table._live, table._head, table._k, table._id_bytes, table.nbytes, len(table),
        bytes(table._blob),
        table._ts[:used].tobytes(), table._pred[:used].tobytes(),
        table._score[:used].tobytes(), table._slices[:used].tobytes(),
        table._hash[:used].tobytes(), table._ends[:used].tobytes(),
        pickle.dumps(table.__getstate__()),
        [a.tolist() for a in owners.candidates(crcs)], len(owners),
    ]  # fmt: skip


def _run(seed: int, compiled: bool) -> list[Any]:
    """Random groups appended and popped; every answer and the state after each step."""
    before = native.use(compiled)
    try:
        rng = random.Random(seed)
        k = rng.choice([0, 1, 3])
        owners = OwnerIndex()
        table = PendingTable()
        table._owner = (owners, 7)  # as JoinBuffer.owner_index binds a model's table
        serial = [0]
        held: list[str] = []
        out: list[Any] = []
        clock = 0.0
        for _ in range(120):
            op = rng.random()
            if op < 0.5:  # a group of new ids, of one dtype or another
                n = rng.choice([1, 2, 5, 40, 150, 300])
                fresh = _ids(rng, n, serial)
                ts = clock + np.arange(n, dtype=np.float64) * rng.choice([1.0, 0.25])
                clock += n
                pred = np.array([rng.choice([0.0, 1.0]) for _ in range(n)])
                score = np.array([rng.random() for _ in range(n)])
                slices = np.array(
                    [[rng.randrange(-1, 2**31 - 1) for _ in range(k)] for _ in range(n)],
                    dtype=rng.choice([np.int64, np.int32]),
                ).reshape(n, k)
                if rng.random() < 0.3:
                    ts = ts.astype(np.float32)  # converted on the way in, both ways
                if rng.random() < 0.3:
                    step = np.empty(2 * n)  # a strided view
                    step[::2] = score
                    score = step[::2]
                table.add_many(fresh, ts, pred, score, slices, checked=True)
                held += fresh
            elif op < 0.85:  # a group of labels: most held, some repeated, some gone or new
                ask = rng.sample(held, min(len(held), rng.randrange(0, 200)))
                if rng.random() < 0.4:
                    ask += ask[: rng.randrange(0, 4)] + _ids(rng, rng.randrange(0, 3), serial)
                    rng.shuffle(ask)
                got = table.pop_many(ask)
                out.append([a.dtype.str + repr(a.shape) + a.tobytes().hex() for a in got])
            elif op < 0.92 and held:  # one id leaves, one comes (the owner index's singles)
                pid = rng.choice(held)
                if pid in table:
                    out.append(tuple(table.pop(pid)))
                (new,) = _ids(rng, 1, serial)
                table[new] = Pending(clock, 1.0, 0.5, tuple(range(k)))
                clock += 1
                held.append(new)
            else:  # the oldest leave: dead rows at the front
                out.append(table.expire(clock - rng.randrange(0, 400)))
            out.append(_table_state(table, owners))
        out.append([(pid, tuple(p)) for pid, p in table.items()])
        return out
    finally:
        native.use(before)


@pytest.mark.parametrize("seed", range(6))
def test_groups_appended_and_popped_are_the_same_compiled_and_in_numpy(seed: int) -> None:
    if not native.available():
        pytest.skip("monitor._native is not built (see test_native.py)")
    assert _run(seed, compiled=True) == _run(seed, compiled=False)


def test_a_pop_of_an_empty_or_emptied_table_finds_nothing() -> None:
    """No slice ids a row yet (``k`` unknown), or every row dead: NaN and no slices."""
    table = PendingTable()
    found, ts, *_, slices = table.pop_many(["a", "b"])
    assert found.tolist() == [False, False] and np.isnan(ts).all() and slices.shape == (2, 0)
    table.add_many(["a"], np.array([1.0]), np.zeros(1), np.full(1, 0.5), np.array([[4, 5]]),
                   checked=True)  # fmt: skip
    found, ts, pred, score, slices = table.pop_many(["a", "a", "b"])
    assert found.tolist() == [True, False, False]
    assert ts[0] == 1.0 and pred[0] == 0.0 and score[0] == 0.5
    assert np.isnan(ts[1:]).all() and np.isnan(pred[1:]).all() and np.isnan(score[1:]).all()
    assert slices.tolist() == [[4, 5], [-1, -1], [-1, -1]]
    assert len(table) == 0 and table.nbytes == 0
    found, *_ = table.pop_many(["a"])
    assert found.tolist() == [False]


def test_the_group_kernels_check_what_they_are_given() -> None:
    """Columns without room for the rows, outputs not of one row per id, or an index that
    does not match its shift, are errors, not writes out of bounds."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_native.py)")
    kernels = importlib.import_module("monitor._native")  # on or off (MONITOR_NATIVE)
    slots = np.full(16, -1, dtype=np.int32)
    ts, pred, score = np.zeros(4), np.zeros(4), np.zeros(4)
    slices = np.zeros((4, 1), dtype=np.int32)
    hashes = np.zeros(4, dtype=np.uint32)
    ends = np.zeros(4, dtype=np.int64)
    one = np.ones(1)
    blob = bytearray()

    def add(at: int, ids: list[str], shift: int = 28) -> Any:
        n = len(ids)
        return kernels.pending_add(blob, ts, pred, score, slices, hashes, ends, slots, shift,
                                   at, ids, np.ones(n), np.ones(n), np.ones(n),
                                   np.ones((n, 1), dtype=np.int64))  # fmt: skip

    with pytest.raises(ValueError):
        add(3, ["a", "b"])  # rows 3 and 4 of 4
    with pytest.raises(ValueError):
        add(0, ["a"], shift=27)
    with pytest.raises(TypeError):
        kernels.pending_add(blob, ts, pred, score, slices.astype(np.int64), hashes, ends,
                            slots, 28, 0, ["a"], one, one, one, np.ones((1, 1), dtype=np.int64))
    assert blob == bytearray() and (slots == -1).all()
    assert add(0, ["ab", "é"]) == 4 and bytes(blob) == "abé".encode()
    assert ends[:2].tolist() == [2, 4] and sorted(slots[slots >= 0].tolist()) == [0, 1]

    def pop(ids: list[str], n: int) -> Any:
        return kernels.pending_pop(slots, hashes, ts, pred, score, slices, ends, blob, 28, ids,
                                   np.empty(n, dtype=np.bool_), np.empty(n), np.empty(n),
                                   np.empty(n), np.empty((n, 1), dtype=np.int64),
                                   np.empty(n, dtype=np.uint32))  # fmt: skip

    with pytest.raises(ValueError):
        pop(["ab", "é"], 1)  # outputs of one row for two ids
    assert pop(["é", "é", "x"], 3) == (1, 2)


def test_the_owner_index_refuses_to_uncount_an_id_not_counted() -> None:
    """Both ways: at once in C, at the next question with numpy (changes queued)."""
    for compiled in (True, False) if native.available() else (False,):
        before = native.use(compiled)
        try:
            index = OwnerIndex()
            index.add(np.array([5, 5], dtype=np.uint32), 2)
            index.remove_one(5, 2)
            index.remove(np.array([5], dtype=np.uint32), 2)  # a tombstone now
            assert index.candidates(np.array([5], dtype=np.uint32))[1].tolist() == [0]
            with pytest.raises(KeyError):
                index.remove(np.array([5], dtype=np.uint32), 2)
                len(index)
            index = OwnerIndex()
            with pytest.raises(KeyError):
                index.remove_one(9, 0)
                len(index)
        finally:
            native.use(before)


def test_owner_change_checks_what_it_is_given() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built (see test_native.py)")
    kernels = importlib.import_module("monitor._native")  # on or off (MONITOR_NATIVE)
    crc = np.zeros(16, dtype=np.uint32)
    model = np.full(16, -1, dtype=np.int32)
    count = np.zeros(16, dtype=np.int32)
    crcs = np.array([5, 5, 6], dtype=np.uint32)
    with pytest.raises(ValueError):
        kernels.owner_change(crc, model, count, 27, crcs, 1, 1)
    with pytest.raises(ValueError):
        kernels.owner_change(crc, model, count, 28, crcs, 1, 2)
    with pytest.raises(TypeError):
        kernels.owner_change(crc, model, count.astype(np.int64), 28, crcs, 1, 1)
    assert kernels.owner_change(crc, model, count, 28, crcs, 1, 1) == 2  # two pairs
    assert sorted(count.tolist())[-2:] == [1, 2]
    assert kernels.owner_change(crc, model, count, 28, crcs[:2], 1, -1) == 0
    assert kernels.owner_change(crc, model, count, 28, crcs[:1], 3, 1) == 0  # a tombstone reused
    assert sorted(model[model >= 0].tolist()) == [1, 3]


def _groups_run(seed: int, compiled: bool) -> list[Any]:
    """Random pops of several tables at once (:func:`~monitor.core.join.pop_groups`): a
    table given in two groups, one never filled, absent and repeated ids, compaction;
    every answer and each table's state after each step."""
    before = native.use(compiled)
    try:
        rng = random.Random(seed)
        owners = OwnerIndex()
        tables = [PendingTable() for _ in range(4)]
        for m, table in enumerate(tables[:3]):  # the last one never holds a row
            table._owner = (owners, m)
        serial = [0]
        held: list[list[str]] = [[] for _ in tables]
        out: list[Any] = []
        for step in range(60):
            for m, table in enumerate(tables[:3]):
                n = rng.choice([1, 3, 40, 150])
                fresh = _ids(rng, n, serial)
                ts = step * 1000.0 + np.arange(n, dtype=np.float64)
                table.add_many(fresh, ts, np.ones(n), np.full(n, 0.25 * m),
                               np.arange(2 * n, dtype=np.int64).reshape(n, 2),
                               checked=True)  # fmt: skip
                held[m] += fresh
            chosen = [rng.randrange(4) for _ in range(rng.randrange(1, 6))]
            groups: list[PendingTable] = []
            sizes: list[int] = []
            pids: list[str] = []
            for m in chosen:
                ask = rng.sample(held[m], min(len(held[m]), rng.randrange(0, 120)))
                if rng.random() < 0.3:
                    ask += ask[:2] + _ids(rng, 1, serial)
                groups.append(tables[m])
                sizes.append(len(ask))
                pids += ask
            got = pop_groups(groups, sizes, pids, 2)
            out.append([a.dtype.str + repr(a.shape) + a.tobytes().hex() for a in got])
            out.append([_table_state(t, owners) for t in tables])
        return out
    finally:
        native.use(before)


@pytest.mark.parametrize("seed", range(4))
def test_many_tables_popped_at_once_are_the_same_compiled_and_in_numpy(seed: int) -> None:
    if not native.available():
        pytest.skip("monitor._native is not built (see test_native.py)")
    compiled = _groups_run(seed, compiled=True)
    assert compiled == _groups_run(seed, compiled=False)


def test_many_tables_popped_at_once_equal_a_pop_of_each() -> None:
    """:func:`pop_groups` gives what :meth:`PendingTable.pop_many` of each table gives, in
    order, and leaves the tables as those calls do."""
    rng = random.Random(5)
    serial = [0]
    one, other = PendingTable(), PendingTable()
    copies = []
    for table in (one, other):
        fresh = _ids(rng, 50, serial)
        table.add_many(fresh, np.arange(50.0), np.zeros(50), np.full(50, 0.5),
                       np.ones((50, 2), dtype=np.int64), checked=True)  # fmt: skip
        copies.append(pickle.loads(pickle.dumps(table)))
    ids_one, ids_other = list(one)[:10], list(other)[5:30]
    got = pop_groups([one, other, one], [4, 25, 6], ids_one[:4] + ids_other + ids_one[4:], 2)
    want = [copies[0].pop_many(ids_one[:4]), copies[1].pop_many(ids_other),
            copies[0].pop_many(ids_one[4:])]  # fmt: skip
    for i in range(5):
        assert got[i].tobytes() == np.concatenate([w[i] for w in want]).tobytes()
    assert list(one.items()) == list(copies[0].items())
    assert list(other.items()) == list(copies[1].items())
    assert (one.nbytes, len(one)) == (copies[0].nbytes, len(copies[0]))


def _adds_run(seed: int, compiled: bool, grouped: bool) -> list[Any]:
    """Random appends to several tables at once (:func:`~monitor.core.join.add_groups`, or
    :meth:`PendingTable.add_many` of each group in turn): a table given in two groups, one
    first filled there (its slice ids a row set then), one bound to no owner index, tables
    and the owner index growing, pops in between; each table's state after each step, its
    index's slots and the owner index's columns included."""
    before = native.use(compiled)
    try:
        rng = random.Random(seed)
        owners = OwnerIndex()
        tables = [PendingTable() for _ in range(5)]
        for m, table in enumerate(tables[:4]):  # the last one is bound to no index
            table._owner = (owners, m)
        serial = [0]
        held: list[list[str]] = [[] for _ in tables]
        out: list[Any] = []
        for step in range(50):
            chosen = [rng.randrange(5) for _ in range(rng.randrange(1, 7))]
            if step < 3:
                chosen = [m for m in chosen if m != 3]  # table 3 stays empty for a while
            sizes = [rng.choice([0, 1, 3, 40, 150]) for _ in chosen]
            pids = _ids(rng, sum(sizes), serial)
            n = len(pids)
            ts = step * 1000.0 + np.arange(n, dtype=np.float64)
            pred = np.array([rng.choice([0.0, 1.0]) for _ in range(n)])
            score = np.array([rng.random() for _ in range(n)])
            slices = np.array([[rng.randrange(-1, 50) for _ in range(2)] for _ in range(n)],
                              dtype=np.int64).reshape(n, 2)  # fmt: skip
            groups = [tables[m] for m in chosen]
            if grouped:
                add_groups(groups, sizes, pids, ts, pred, score, slices)
            else:
                a = 0
                for table, size in zip(groups, sizes, strict=True):
                    b = a + size
                    table.add_many(pids[a:b], ts[a:b], pred[a:b], score[a:b], slices[a:b],
                                   checked=True)  # fmt: skip
                    a = b
            a = 0
            for m, size in zip(chosen, sizes, strict=True):
                held[m] += pids[a : a + size]
                a += size
            for m, table in enumerate(tables):  # some labels come
                ask = rng.sample(held[m], min(len(held[m]), rng.randrange(0, 60)))
                table.pop_many(ask)
                held[m] = [p for p in held[m] if p not in set(ask)]
            out.append([_table_state(t, owners) for t in tables])
            out.append([t._slots.tobytes() for t in tables])
            out.append([owners._crc.tobytes(), owners._model.tobytes(), owners._count.tobytes(),
                        owners._filled])  # fmt: skip
        return out
    finally:
        native.use(before)


@pytest.mark.parametrize("seed", range(4))
def test_many_tables_appended_at_once_are_the_same_compiled_and_one_by_one(seed: int) -> None:
    """:func:`add_groups` in one compiled call leaves every table, its index's slots and the
    owner index exactly as :meth:`PendingTable.add_many` of each group in turn does; and
    (slots aside) as the numpy code does."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_native.py)")
    compiled = _adds_run(seed, compiled=True, grouped=True)
    assert compiled == _adds_run(seed, compiled=True, grouped=False)
    numpy_made = _adds_run(seed, compiled=False, grouped=True)
    assert compiled[::3] == numpy_made[::3]


def test_many_tables_appended_at_once_check_what_they_are_given() -> None:
    """Sizes that do not split the ids, columns not of one row per id, or a table's slice
    ids a row other than the rows': errors, the tables before it appended."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_native.py)")
    kernels = importlib.import_module("monitor._native")  # on or off (MONITOR_NATIVE)
    one, other = PendingTable(), PendingTable()
    cols = (np.arange(3.0), np.zeros(3), np.zeros(3), np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="not a split"):
        kernels.pending_add_groups([one, other], np.array([2, 2]), ["a", "b", "c"], *cols)
    with pytest.raises(ValueError, match="one row per id"):
        kernels.pending_add_groups(
            [one], np.array([3]), ["a", "b", "c"], *cols[:3], np.zeros((2, 2), dtype=np.int64)
        )
    other.add_many(["x"], np.ones(1), np.ones(1), np.ones(1), np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="the table holds 3"):
        kernels.pending_add_groups([one, other], np.array([1, 2]), ["a", "b", "c"], *cols)
    assert list(one) == ["a"] and list(other) == ["x"]
