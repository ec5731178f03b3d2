"""The columnar table of recently matched ids against the ``dict[str, float]`` it replaced:
random batches of inserts (ids new, held, listed twice, not ASCII), probes one by one and
many at once, expiry from the front (with compaction), copies, pickles and the stored
record's round trip; and old checkpoints holding matched dicts. Every test runs twice:
with the compiled kernels (``monitor._native``) and with the numpy code standing in for
them."""

from __future__ import annotations

import copy
import math
import pickle
import random
from unittest import mock

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import native
from monitor.core import join
from monitor.core.join import JoinBuffer, MatchedTable, add_matched_groups
from monitor.state import format as fmt
from monitor.state.format import FormatError

#: Every test twice: compiled kernels, then numpy (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("kernels")

#: ids drawn from a small pool (so that batches repeat held ids), some not ASCII and one
#: with a lone surrogate (stored as 'surrogatepass' encodes it)
POOL = [f"m{i}" for i in range(60)] + ["é1", "日本", "x\ud800y", ""]


def expire_dict(d: dict[str, float], before: float) -> int:
    """The reference expiry: pop from the front while the time is below ``before``."""
    gone = []
    for pid, ts in d.items():
        if ts >= before:
            break
        gone.append(pid)
    for pid in gone:
        del d[pid]
    return len(gone)


def same(table: MatchedTable, d: dict[str, float], asked: list[str]) -> None:
    assert len(table) == len(d) and bool(table) == bool(d)
    assert list(table.items()) == list(d.items())
    assert list(table) == list(d)
    assert table.times().tolist() == list(d.values())
    assert table.nbytes == sum(len(p.encode("utf-8", "surrogatepass")) + table.ROW_BYTES
                               for p in d)  # fmt: skip
    assert [pid in table for pid in asked] == [pid in d for pid in asked]
    assert [table.get(pid) for pid in asked] == [d.get(pid) for pid in asked]
    assert table.held(asked) == [i for i, pid in enumerate(asked) if pid in d]
    assert native.held_groups([table], [asked]).tolist() == [any(pid in d for pid in asked)]
    assert table.front_ts == next(iter(d.values()), math.inf)
    assert table.contains_many(asked).tolist() == [pid in d for pid in asked]


def stored(table: MatchedTable) -> MatchedTable:
    """The table through its record of the state format, encoded and decoded (a table
    holding the lone surrogate, which msgpack cannot encode as str, through a pickle)."""
    if "x\ud800y" in table:
        return pickle.loads(pickle.dumps(table))
    body = msgspec.msgpack.encode(fmt._matched(table))
    return fmt._set_matched(msgspec.msgpack.decode(body, type=fmt.MatchedRec))


def run_ops(ops: list[tuple[int, list[int], list[int], int]]) -> None:
    """Each op: (kind, pool places, times, bound), applied to a table and a dict."""
    table, d = MatchedTable(), {}
    for kind, places, times, bound in ops:
        pids = [POOL[p % len(POOL)] for p in places]
        if kind == 0:  # a batch of matched ids, as a poll enters them
            ts = np.array([float(t) for t in times[: len(pids)]] + [0.5] * (len(pids) - len(times)))
            table.add_many(pids, ts)
            d.update(zip(pids, ts.tolist(), strict=True))
        elif kind == 1:  # the pane closes' expiry
            assert table.expire(float(bound)) == expire_dict(d, float(bound))
        elif kind == 2:  # a checkpoint's copy, a pickle, a stored record
            copies = (copy.copy, copy.deepcopy, lambda t: pickle.loads(pickle.dumps(t)), stored)
            table = copies[bound % 4](table)
        same(table, d, pids + POOL[::7])


OPS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.lists(st.integers(0, 200), max_size=40),
        st.lists(st.integers(0, 300), max_size=40),
        st.integers(0, 320),
    ),
    max_size=30,
)


@settings(max_examples=120, deadline=None)
@given(OPS)
def test_random_operations_match_a_dict(ops: list[tuple[int, list[int], list[int], int]]) -> None:
    with mock.patch.object(join, "_COMPACT_FROM", 0):  # compact whenever dead rows are many
        run_ops(ops)


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_random_operations_match_a_dict_compacting_as_configured(
    ops: list[tuple[int, list[int], list[int], int]],
) -> None:
    run_ops(ops)


@pytest.mark.parametrize("seed", range(3))
def test_a_long_run_grows_expires_and_compacts_as_a_dict(seed: int) -> None:
    """Thousands of ids in batches of many sizes, expired as a clock moves on: the table
    grows its columns and index, compacts, and answers as the dict throughout."""
    rng = random.Random(seed)
    table, d = MatchedTable(), {}
    clock = 0.0
    for step in range(400):
        n = rng.choice([1, 3, 40, 300])
        pids = [f"id{rng.randrange(20_000)}" for _ in range(n)]
        ts = clock + np.array([rng.uniform(-5.0, 60.0) for _ in range(n)])
        table.add_many(pids, ts)
        d.update(zip(pids, ts.tolist(), strict=True))
        clock += 10.0
        assert table.expire(clock - 300.0) == expire_dict(d, clock - 300.0)
        if step % 50 == 0:
            same(table, d, pids[:20] + [f"id{rng.randrange(20_000)}" for _ in range(20)])
    same(table, d, list(d)[:50])
    assert table._used < 4 * len(d) + 200  # compacted: the dead rows do not pile up


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.lists(st.integers(0, 200), max_size=12)),
                max_size=12),
       st.lists(st.integers(0, 3), max_size=12))  # fmt: skip
def test_groups_enter_and_probe_many_tables_as_one_by_one(
    groups: list[tuple[int, list[int]]], probed: list[int]
) -> None:
    """add_matched_groups (a table in several groups too) against a dict per table, and
    held_groups against each table's dict."""
    tables, dicts = [MatchedTable() for _ in range(4)], [{} for _ in range(4)]
    tables[3].add_many(["m1", "m2"], np.array([1.0, 2.0]))
    dicts[3].update({"m1": 1.0, "m2": 2.0})
    pids = [POOL[p % len(POOL)] for _, places in groups for p in places]
    ts = np.arange(len(pids), dtype=np.float64) * 0.5
    add_matched_groups([tables[t] for t, _ in groups], [len(places) for _, places in groups],
                       pids, ts)  # fmt: skip
    for (t, _), (a, b) in zip(groups, _spans([len(p) for _, p in groups]), strict=True):
        dicts[t].update(zip(pids[a:b], ts[a:b].tolist(), strict=True))
    for table, d in zip(tables, dicts, strict=True):
        same(table, d, POOL[::5])
    asked = [POOL[(7 * j) % len(POOL) : (7 * j) % len(POOL) + 3] for j in range(len(probed))]
    assert native.held_groups([tables[t] for t in probed], asked).tolist() == [
        any(pid in dicts[t] for pid in ids) for t, ids in zip(probed, asked, strict=True)
    ]


def _spans(sizes: list[int]) -> list[tuple[int, int]]:
    """The (start, stop) of each of consecutive runs of ``sizes``."""
    out, a = [], 0
    for n in sizes:
        out.append((a, a + n))
        a += n
    return out


def test_a_nan_time_is_refused_with_nothing_changed() -> None:
    table = MatchedTable()
    table.add_many(["a"], np.array([1.0]))
    with pytest.raises(ValueError):
        table.add_many(["b", "c"], np.array([2.0, np.nan]))
    assert list(table.items()) == [("a", 1.0)]


def test_a_record_with_a_nan_time_or_other_lengths_is_refused() -> None:
    with pytest.raises(FormatError):
        fmt._set_matched(fmt.MatchedRec(["a", "b"], fmt._arr([1.0])))
    with pytest.raises(FormatError):
        fmt._set_matched(fmt.MatchedRec(["a"], fmt._arr([np.nan])))


def test_a_copy_is_independent() -> None:
    table = MatchedTable()
    table.add_many(["a", "b"], np.array([1.0, 2.0]))
    twin = copy.copy(table)
    twin.add_many(["c"], np.array([3.0]))
    table.expire(1.5)
    assert list(table.items()) == [("b", 2.0)]
    assert list(twin.items()) == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


def test_an_old_checkpoint_with_matched_dicts_restores_tables() -> None:
    """A JoinBuffer pickled before the columnar store held ``dict[str, float]``: restored,
    its tables hold the same ids and times, in order."""
    old = {"m0": 5.0, "é1": 3.0, "m1": 7.0}
    buffer = JoinBuffer.__new__(JoinBuffer)
    buffer.__setstate__((None, {"pending": [join.PendingTable()], "early": {},
                                "matched": [dict(old)]}))  # fmt: skip
    (table,) = buffer.matched
    assert isinstance(table, MatchedTable)
    assert list(table.items()) == list(old.items())
    assert buffer.was_matched("é1", 0) and not buffer.was_matched("m2", -1)
    assert buffer.seen(["m2", "m1"], -1) == {"m1"}
