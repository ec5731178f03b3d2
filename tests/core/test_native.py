"""The compiled probing kernels of the join (``monitor._native``) against the numpy code
that stands in for them: built by the install, and the same rows found and the same ids
kept through random sequences of inserts, pops and expiries, tables that grow, compact and
reuse dead rows' slots, and ids whose hashes collide; and the owner index's probes,
inserts and answers through random adds and removes."""

from __future__ import annotations

import importlib
import random
import sysconfig
import zlib
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.core.join import OwnerIndex, PendingTable, id_keys


def test_the_compiled_module_is_built() -> None:
    """``pip install`` (``./dev`` makes it editable) builds it where a C compiler and
    Python's headers are; without them the package still runs, on the numpy code."""
    assert native.available(), (
        "monitor._native is not built: install a C compiler and Python's headers (Debian: "
        f"gcc, python3-dev; headers looked for in {sysconfig.get_paths()['include']}) and "
        "reinstall (./dev does when they are there)"
    )


def _ids(rng: random.Random, n: int) -> list[str]:
    """Ids of varied lengths and alphabets (UTF-8 of one to four bytes a character)."""
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.6:
            out.append(f"p-{rng.randrange(10**9)}")
        elif kind < 0.9:
            out.append("".join(rng.choice("aé€𝄞") for _ in range(rng.randrange(0, 12))))
        else:
            out.append(str(rng.randrange(50)))  # short ids, often repeated
    return out


def _run(seed: int, compiled: bool) -> list[object]:
    """A random sequence of operations; everything each one returned, in order."""
    before = native.use(compiled)
    try:
        rng = random.Random(seed)
        table = PendingTable()
        seen: list[str] = []
        out: list[object] = []
        clock = 0.0
        for _ in range(300):
            op = rng.random()
            if op < 0.45:  # a batch of new ids
                batch = dict.fromkeys(_ids(rng, rng.randrange(1, 400)))
                fresh = [p for p in batch if p not in table]
                n = len(fresh)
                ts = clock + np.arange(n, dtype=np.float64)
                clock += n
                table.add_many(fresh, ts, np.zeros(n), np.full(n, 0.5),
                               np.zeros((n, 2), dtype=np.int64))  # fmt: skip
                seen += fresh
            elif op < 0.65 and seen:  # probes: some held, some gone, some never seen
                ask = rng.sample(seen, min(len(seen), rng.randrange(1, 300))) + _ids(rng, 20)
                out.append(table.contains_many(id_keys(ask)).tolist())
            elif op < 0.9 and seen:  # pops, with repeats
                ask = rng.sample(seen, min(len(seen), rng.randrange(1, 300)))
                ask += ask[: rng.randrange(0, 5)]
                found, ts, *_ = table.pop_many(ask)
                out.append((found.tolist(), np.nan_to_num(ts, nan=-1.0).tolist()))
            else:  # the oldest leave: dead rows at the front, compaction
                out.append(table.expire(clock - rng.randrange(0, 2000)))
        out.append([pid for pid, _ in table.items()])
        return out
    finally:
        native.use(before)


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_give_the_same_results_compiled_and_in_numpy(seed: int) -> None:
    if not native.available():
        pytest.skip("monitor._native is not built (see test_the_compiled_module_is_built)")
    assert _run(seed, compiled=True) == _run(seed, compiled=False)


def test_colliding_hashes_are_told_apart_by_their_bytes() -> None:
    """Ids that share a CRC-32 (hence a home slot) are found by their bytes, compiled and
    in numpy: a probe passes over the other ids of its run and over dead rows."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_the_compiled_module_is_built)")
    # "plumless" and "buckeroo" are a known CRC-32 collision.
    assert zlib.crc32(b"plumless") == zlib.crc32(b"buckeroo")
    for compiled in (True, False):
        before = native.use(compiled)
        try:
            table = PendingTable()
            ids = ["plumless", "buckeroo", "x", "y"]
            table.add_many(ids, np.arange(4.0), np.zeros(4), np.zeros(4),
                           np.zeros((4, 1), dtype=np.int64))  # fmt: skip
            found, ts, *_ = table.pop_many(["plumless"])
            assert found.tolist() == [True] and ts.tolist() == [0.0]
            assert table.contains_many(["plumless", "buckeroo", "z"]).tolist() == [
                False, True, False
            ]
            table.add_many(["plumless"], np.array([9.0]), np.zeros(1), np.zeros(1),
                           np.zeros((1, 1), dtype=np.int64))  # fmt: skip
            found, ts, *_ = table.pop_many(["buckeroo", "plumless"])
            assert found.tolist() == [True, True] and ts.tolist() == [1.0, 9.0]
        finally:
            native.use(before)


def test_the_kernels_check_what_they_are_given() -> None:
    """A column of the wrong item size, or an index that does not match its shift, is an
    error, not a read out of bounds."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_the_compiled_module_is_built)")
    kernels = importlib.import_module("monitor._native")  # on or off (MONITOR_NATIVE)
    slots = np.full(16, -1, dtype=np.int32)
    hashes = np.zeros(4, dtype=np.uint32)
    ts = np.zeros(4)
    ends = np.zeros(4, dtype=np.int64)
    out = np.empty(1, dtype=np.int64)
    crcs = np.zeros(1, dtype=np.uint32)
    with pytest.raises(TypeError):
        kernels.lookup(slots.astype(np.int64), hashes, ts, ends, b"", 28, [b"a"], crcs, out)
    with pytest.raises(ValueError):
        kernels.lookup(slots, hashes, ts, ends, b"", 27, [b"a"], crcs, out)
    with pytest.raises(ValueError):
        kernels.place(slots, hashes, ts, 28, np.array([7], dtype=np.int64))
    kernels.lookup(slots, hashes, ts, ends, b"", 28, [b"a"], crcs, out)
    assert out.tolist() == [-1]
    # Slots naming a row past the columns: the probe of lookup and of pending_pop stops.
    beyond = np.full(16, 9, dtype=np.int32)
    with pytest.raises(ValueError, match="beyond the columns"):
        kernels.lookup(beyond, hashes, ts, ends, b"", 28, [b"a"], crcs, out)
    found, got = np.zeros(1, dtype=np.bool_), [np.empty(1) for _ in range(3)]
    # A compaction into columns or slots without room, or slots not empty.
    live = np.arange(4.0)
    cols = (live, live.copy(), live.copy(), np.zeros((4, 1), np.int32), hashes,
            np.arange(1, 5, dtype=np.int64), b"abcd", 4)  # fmt: skip
    room = (np.empty(3), np.empty(3), np.empty(3), np.empty((3, 1), np.int32),
            np.empty(3, np.uint32), np.empty(3, np.int64))  # fmt: skip
    with pytest.raises(ValueError, match="without room"):
        kernels.pending_compact(*cols, *room, np.full(16, -1, np.int32), 28)
    room = tuple(np.empty((4, *c.shape[1:]), c.dtype) for c in room)
    with pytest.raises(ValueError, match="every slot empty"):
        kernels.pending_compact(*cols, *room, np.zeros(16, np.int32), 28)
    with pytest.raises(ValueError, match="beyond the byte buffer"):
        kernels.pending_compact(*cols[:6], b"abc", 4, *room, np.full(16, -1, np.int32), 28)
    assert kernels.pending_compact(*cols, *room, np.full(16, -1, np.int32), 28) == b"abcd"
    with pytest.raises(ValueError, match="beyond the columns"):
        kernels.pending_pop(beyond, hashes, ts, ts.copy(), ts.copy(), np.zeros(4, np.int32),
                            ends, b"", 28, ["a"], found, *got, np.empty(1, np.int64),
                            np.empty(1, np.uint32))  # fmt: skip


def _compacted(compiled: bool) -> tuple[list[Any], list[bool]]:
    """A table of varied ids whose dead rows are compacted away (by pops, then an expiry):
    its columns, byte buffer and sizes after, and which ids it then finds."""
    before = native.use(compiled)
    try:
        rng = random.Random(7)
        ids = list(dict.fromkeys(_ids(rng, 600)))
        n = len(ids)
        table = PendingTable()
        ts = np.arange(n, dtype=np.float64)
        slices = np.arange(2 * n, dtype=np.int64).reshape(n, 2)
        table.add_many(ids, ts, ts + 0.5, ts / n, slices)
        table.pop_many(rng.sample(ids, n // 2 + 150))  # compacts
        used_1 = table._used
        table.expire(n / 2)  # may compact again
        used = table._used
        state = [
            used_1, used, len(table), table._ts.size, table._slots.size, table._id_bytes,
            bytes(table._blob), np.nan_to_num(table._ts[:used], nan=-1.0).tolist(),
            table._pred[:used].tolist(),
            table._score[:used].tolist(), table._slices[:used].tolist(),
            table._hash[:used].tolist(), table._ends[:used].tolist(), list(table),
        ]  # fmt: skip
        return state, table.contains_many(ids).tolist()
    finally:
        native.use(before)


def test_a_compaction_keeps_the_same_rows_compiled_and_in_numpy() -> None:
    """``pending_compact`` leaves the columns, ids and sizes the numpy code leaves, and an
    index that finds the same ids."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_the_compiled_module_is_built)")
    compiled, numpy_made = _compacted(True), _compacted(False)
    assert compiled[0][0] < 600 and compiled[0][2] > 0  # it did compact, and kept some
    assert compiled == numpy_made


def _owner_run(seed: int, compiled: bool) -> list[Any]:
    """Random adds and removes of (CRC-32, model) pairs in an owner index (few distinct
    CRC-32s, so that probe runs are long, and tiny queues, so that each change is applied,
    tombstones reused and the table rebuilt), with its answers after each."""
    before = native.use(compiled)
    try:
        rng = random.Random(seed)
        index = OwnerIndex()
        held: list[tuple[int, int]] = []
        out: list[Any] = []
        for _ in range(300):
            if held and rng.random() < 0.4:
                gone = rng.sample(held, rng.randrange(1, min(len(held), 20) + 1))
                for crc, m in gone:
                    held.remove((crc, m))
                    index.remove(np.array([crc], dtype=np.uint32), m)
            else:
                m = rng.randrange(9)
                crcs = [rng.choice((rng.randrange(64), rng.getrandbits(32))) for _ in range(
                    rng.randrange(1, 30))]  # fmt: skip
                index.add(np.array(crcs, dtype=np.uint32), m)
                held += [(c, m) for c in crcs]
            probe = np.array([rng.randrange(64) for _ in range(40)] + [c for c, _ in held[:40]],
                             dtype=np.uint32)  # fmt: skip
            first, many = index.candidates(probe)
            out.append((first.tolist(), many.tolist(), len(index)))
        return out
    finally:
        native.use(before)


@pytest.mark.parametrize("seed", range(6))
def test_the_owner_index_answers_the_same_compiled_and_in_numpy(seed: int) -> None:
    if not native.available():
        pytest.skip("monitor._native is not built (see test_the_compiled_module_is_built)")
    compiled = _owner_run(seed, compiled=True)
    assert compiled == _owner_run(seed, compiled=False)
    assert any(max(many, default=0) > 1 for _, many, _ in compiled)  # shared CRC-32s seen


def test_the_owner_kernels_check_what_they_are_given() -> None:
    """Columns of the wrong item size or size, or a shift that does not match, are errors."""
    if not native.available():
        pytest.skip("monitor._native is not built (see test_the_compiled_module_is_built)")
    kernels = importlib.import_module("monitor._native")  # on or off (MONITOR_NATIVE)
    crc = np.zeros(16, dtype=np.uint32)
    model = np.full(16, -1, dtype=np.int32)
    count = np.zeros(16, dtype=np.int32)
    crcs = np.array([5], dtype=np.uint32)
    first, many = np.empty(1, dtype=np.int64), np.empty(1, dtype=np.int64)
    with pytest.raises(TypeError):
        kernels.owner_candidates(crc, model.astype(np.int64), count, 28, crcs, first, many)
    with pytest.raises(ValueError):
        kernels.owner_candidates(crc, model, count, 27, crcs, first, many)
    with pytest.raises(ValueError):
        kernels.owner_find(crc, model[:8], 28, crcs, np.zeros(1, dtype=np.int32), first)
    with pytest.raises(ValueError):
        kernels.owner_put(crc, model, count, 28, crcs, np.zeros(1, dtype=np.int32),
                          np.array([1 << 40], dtype=np.int64))  # fmt: skip
    assert kernels.owner_put(crc, model, count, 28, crcs, np.array([3], dtype=np.int32),
                             np.array([2], dtype=np.int64)) == 1  # fmt: skip
    kernels.owner_candidates(crc, model, count, 28, crcs, first, many)
    assert (first.tolist(), many.tolist()) == ([3], [1])


def test_id_keys_are_the_ids_utf8_and_their_crc32() -> None:
    """The compiled keys equal ``str.encode("utf-8", "surrogatepass")`` and
    ``zlib.crc32`` of it, lone surrogates, empty and long ids included, and ids of every
    length up to 40 bytes (the CRC folds eight bytes at a time, then the rest one by one)."""
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("monitor._native is not built (see test_the_compiled_module_is_built)")
    rng = random.Random(7)
    every_length = ["".join(chr(rng.randrange(32, 0x250)) for _ in range(n)) for n in range(41)]
    ids = ["", "a\ud800b", "\udfff", "x" * 10_000, *every_length, *_ids(rng, 2000)]
    crcs = np.empty(len(ids), dtype=np.uint32)
    keys = kernels.id_keys(ids, crcs)
    expected = [pid.encode("utf-8", "surrogatepass") for pid in ids]
    assert keys == expected
    assert crcs.tolist() == [zlib.crc32(k) for k in expected]
    with pytest.raises(TypeError):
        kernels.id_keys([b"bytes"], crcs)
    with pytest.raises(ValueError):
        kernels.id_keys(ids, np.empty(1, dtype=np.uint32))


def _large_run(compiled: bool) -> list[object]:
    """Two pending tables and a matched table past the rows from which the kernels read their
    columns ahead of their probes (``AHEAD_FROM_ROWS`` in ``_native.c``, 65,536): every
    probe, pop, owner question and insert answered, with ids of varied lengths and
    alphabets, some asked twice and some never held."""
    from monitor.core.join import MatchedTable, add_matched_groups, pop_groups

    before = native.use(compiled)
    try:
        rng = random.Random(7)
        ids = list(dict.fromkeys(_ids(rng, 160_000)))
        n = len(ids)
        tables = [PendingTable(), PendingTable()]
        for t, part in zip(tables, (ids[: n // 2], ids[n // 2 :]), strict=True):
            m = len(part)
            t.add_many(part, np.arange(m, dtype=np.float64), np.arange(m, dtype=np.float64),
                       np.full(m, 0.5), np.arange(2 * m, dtype=np.int64).reshape(m, 2),
                       checked=True)  # fmt: skip
        table = tables[0]
        ask = rng.sample(ids, 30_000) + _ids(rng, 2_000)
        ask += ask[:50]
        out: list[object] = [native.pending_owners(tables, ask).tolist(),
                             table.contains_many(id_keys(ask)).tolist()]  # fmt: skip
        half = len(ask) // 2
        found, ts, pred, _, slices = pop_groups(tables, [half, len(ask) - half], ask, 2)
        out.append((found.tolist(), np.nan_to_num(ts, nan=-1.0).tolist(),
                    np.nan_to_num(pred, nan=-1.0).tolist(), slices.tolist()))  # fmt: skip
        found, ts, *_ = table.pop_many(rng.sample(ids, 5_000))
        out.append((found.tolist(), np.nan_to_num(ts, nan=-1.0).tolist()))
        matched = MatchedTable()
        add_matched_groups([matched], [n], ids, np.arange(n, dtype=np.float64))
        add_matched_groups([matched], [len(ask)], ask, np.full(len(ask), 1e6))
        out.append(sorted(matched.held(ask)))
        out.append([[pid for pid, _ in t.items()] for t in tables])
        return out
    finally:
        native.use(before)


def test_tables_read_ahead_give_the_same_results_compiled_and_in_numpy() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built (see test_the_compiled_module_is_built)")
    assert _large_run(compiled=True) == _large_run(compiled=False)
