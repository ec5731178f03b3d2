"""Predictions waiting for their labels, and labels that came first, for one input partition.

Both input topics are keyed by ``prediction_id`` and co-partitioned, so a prediction and its
label meet in the buffer of the same partition number. Entries leave by matching, by their
TTL in event time (checked against the watermark, oldest first in arrival order), or by
eviction at a cap; every exit is counted by the caller, none is silent.
"""

from __future__ import annotations

import math
import operator
import zlib
from collections import Counter
from collections.abc import Collection, Iterator
from functools import partial
from itertools import accumulate, chain, compress
from typing import Any, Final, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from monitor import native

__all__ = [
    "EarlyLabel", "EarlyLabels", "IdTable", "JoinBuffer", "MatchedTable", "OwnerIndex", "Pending",
    "PendingTable",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]


class Pending(NamedTuple):
    """A prediction waiting for its label: what its outcome terms need, nothing more."""

    ts: float
    pred: float
    score: float
    slices: tuple[int, ...]


class IdTable:
    """Prediction ids held in arrival order with no Python object per id: what a
    :class:`PendingTable` and a :class:`MatchedTable` share.

    Rows are appended to numpy columns: the event time (float64, NaN for a dead row), the
    CRC-32 of the id's UTF-8 bytes and the end offset of the id in one byte buffer of all
    ids. An open-addressing index (linear probing, int32 row numbers in a power-of-two
    table kept at most 60 % full) finds the row of an id: a candidate row matches only
    when its hash and then its bytes equal the id's, so lookups are exact. A dead row's
    slot is reused by a later insert; a subclass compacts the live rows to the front when
    dead ones are many. The compiled kernels of :mod:`monitor.native` read these columns
    by name (``_slots``, ``_hash``, ``_ts``, ``_ends``, ``_blob``, ``_shift``, ``_live``).
    """

    __slots__ = (
        "_blob",
        "_ends",
        "_ev",
        "_hash",
        "_head",
        "_hv",
        "_id_bytes",
        "_live",
        "_memo",
        "_shift",
        "_slots",
        "_sv",
        "_ts",
        "_tv",
        "_used",
    )

    def __init__(self) -> None:
        self._used = 0  # rows written (live and dead)
        self._live = 0
        self._head = 0  # every row before it is dead
        self._blob = bytearray()  # the ids' UTF-8 bytes, row after row
        self._id_bytes = 0  # bytes of the live rows' ids
        self._ts: F64
        self._hash: npt.NDArray[np.uint32]  # CRC-32 of the id's bytes
        self._ends: I64  # end offset of the id's bytes in _blob
        self._slots: I32  # the index: row numbers, -1 for an empty slot
        self._shift = 28  # slot of a hash: top bits of (crc * _GOLDEN) mod 2**32
        # memoryviews of the columns and the index, for scalar access
        self._tv: Any
        self._hv: Any
        self._ev: Any
        self._sv: Any
        #: (pid, row, slot) of the last lookup: see :meth:`_locate`
        self._memo: tuple[str, int, int] | None = None
        self._columns(0)
        self._reindex(0)

    def __len__(self) -> int:
        return self._live

    def __bool__(self) -> bool:
        return self._live > 0

    def __contains__(self, pid: object) -> bool:
        if not isinstance(pid, str):
            return False
        return self._locate(pid)[0] >= 0

    def __iter__(self) -> Iterator[str]:
        return (pid for pid, _ in self._live_ids())

    def contains_many(self, pids: list[str] | IdKeys) -> BoolArray:
        """Which of ``pids`` the table holds, probing all of them at once (give them as
        :func:`id_keys` to ask several tables without encoding them again)."""
        ids = pids if isinstance(pids, IdKeys) else id_keys(pids)
        n = len(ids.keys)
        if not self._live or n == 0:
            return np.zeros(n, dtype=np.bool_)
        found: BoolArray = self._lookup(ids.keys, ids.crcs) >= 0
        return found

    def _start(self, row: int) -> int:
        return int(self._ev[row - 1]) if row else 0

    def _id_lengths(self, rows: I64) -> int:
        """Total bytes of the ids of ``rows``."""
        if not rows.size:
            return 0
        starts = np.where(rows > 0, self._ends[rows - 1], 0)
        return int((self._ends[rows] - starts).sum())

    def _live_ids(self) -> Iterator[tuple[str, int]]:
        rows = np.flatnonzero(~np.isnan(self._ts[: self._used]))
        ends = self._ends[rows]
        starts = np.where(rows > 0, self._ends[rows - 1], 0)
        blob = self._blob
        for row, start, end in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True):
            yield blob[start:end].decode("utf-8", "surrogatepass"), row

    def _position(self, crcs: npt.NDArray[np.uint32]) -> I64:
        mixed = (crcs.astype(np.uint64) * _GOLDEN) & 0xFFFFFFFF
        return (mixed >> self._shift).astype(np.int64)

    def _locate(self, pid: str) -> tuple[int, int]:
        """:meth:`_find` for ``pid``, remembered for the next call with the same string:
        the engine asks ``in``/``get`` then sets or deletes the same id. The memo is
        dropped by every insert and index rebuild; a remembered row must still be live."""
        memo = self._memo
        if memo is not None and memo[0] is pid:
            row = memo[1]
            if row < 0 or self._tv[row] == self._tv[row]:
                return row, memo[2]
        key = _utf8(pid)
        row, slot = self._find(key, zlib.crc32(key))
        self._memo = (pid, row, slot)
        return row, slot

    def _find(self, key: bytes, crc: int) -> tuple[int, int]:
        """``(row, slot)`` of the live id ``key``, or ``(-1, slot where it would go)``."""
        sv, tv, hv, ev = self._sv, self._tv, self._hv, self._ev
        mask = len(sv) - 1
        pos = ((crc * _GOLDEN) & 0xFFFFFFFF) >> self._shift
        free = -1
        blob = self._blob
        size = len(key)
        while True:
            row = sv[pos]
            if row < 0:
                return -1, (pos if free < 0 else free)
            ts = tv[row]
            if ts != ts:  # a dead row: its slot can take a new one
                if free < 0:
                    free = pos
            elif hv[row] == crc:
                end = ev[row]
                start = ev[row - 1] if row else 0
                if end - start == size and blob[start:end] == key:
                    return row, pos
            pos = (pos + 1) & mask

    def _lookup(self, keys: list[bytes], crcs: npt.NDArray[np.uint32]) -> I64:
        """Rows of the live ids ``keys`` (-1 where absent), probing all of them at once;
        a candidate row's bytes are compared with the key's in numpy, all at once (or
        each id probed in C, :mod:`monitor.native`, when it is built)."""
        n = len(keys)
        kernels = native.kernels()
        if kernels is not None:
            out = np.empty(n, dtype=np.int64)
            kernels.lookup(self._slots, self._hash, self._ts, self._ends, self._blob,
                           self._shift, keys if type(keys) is list else list(keys),
                           np.ascontiguousarray(crcs, dtype=np.uint32), out)  # fmt: skip
            return out
        if n <= _PROBE_ONE_BY_ONE:  # a few ids: numpy's per-call cost exceeds the probes'
            find = self._find
            return np.array(
                [find(key, crc)[0] for key, crc in zip(keys, crcs.tolist(), strict=True)],
                dtype=np.int64,
            )
        rows = np.full(n, -1, dtype=np.int64)
        slots = self._slots
        mask = slots.size - 1
        pos = self._position(crcs)
        todo = np.arange(n)
        key_len = np.fromiter(map(len, keys), dtype=np.int64, count=n)
        key_start = np.cumsum(key_len) - key_len
        key_bytes = np.frombuffer(b"".join(keys), dtype=np.uint8)
        blob = np.frombuffer(self._blob, dtype=np.uint8)  # a view: released below
        try:
            while todo.size:
                here = slots[pos[todo]].astype(np.int64)
                done = here < 0
                cand = np.flatnonzero(~done)
                seen = here[cand]
                same = (self._hash[seen] == crcs[todo[cand]]) & ~np.isnan(self._ts[seen])
                cand = cand[same]
                if cand.size:
                    seen = here[cand]
                    ends = self._ends[seen]
                    starts = np.where(seen > 0, self._ends[seen - 1], 0)
                    asked = todo[cand]
                    equal = (ends - starts) == key_len[asked]
                    equal[equal] = _same_bytes(
                        blob,
                        starts[equal],
                        key_bytes,
                        key_start[asked[equal]],
                        key_len[asked[equal]],
                    )
                    hit = cand[equal]
                    rows[todo[hit]] = here[hit]
                    done[hit] = True
                todo = todo[~done]
                pos[todo] = (pos[todo] + 1) & mask
        finally:
            del blob  # the byte buffer can grow again
        return rows

    def _place(self, rows: I64) -> None:
        """Put ``rows`` (live, not in the index) into the index, all at once (a few, or
        with :mod:`monitor.native`: one by one, each in the first free slot from its home)."""
        kernels = native.kernels()
        if kernels is not None:
            kernels.place(self._slots, self._hash, self._ts, self._shift,
                          np.ascontiguousarray(rows, dtype=np.int64))  # fmt: skip
            return
        if rows.size <= _PROBE_ONE_BY_ONE:
            sv, tv = self._sv, self._tv
            mask = len(sv) - 1
            shift = self._shift
            for row, crc in zip(rows.tolist(), self._hash[rows].tolist(), strict=True):
                pos = ((crc * _GOLDEN) & 0xFFFFFFFF) >> shift
                while True:
                    here = sv[pos]
                    if here < 0 or tv[here] != tv[here]:  # empty, or a dead row's
                        sv[pos] = row
                        break
                    pos = (pos + 1) & mask
            return
        slots = self._slots
        mask = slots.size - 1
        pos = self._position(self._hash[rows])
        todo = np.arange(rows.size)
        placed = np.zeros(rows.size, dtype=np.bool_)
        while todo.size:
            p = pos[todo]
            here = slots[p].astype(np.int64)
            free = here < 0
            taken = np.flatnonzero(~free)
            free[taken] = np.isnan(self._ts[here[taken]])  # a dead row's slot is free
            cand = todo[free]
            slot, first = np.unique(p[free], return_index=True)  # one winner per slot
            won = cand[first]
            slots[slot] = rows[won]
            placed[won] = True
            todo = todo[~placed[todo]]
            pos[todo] = (pos[todo] + 1) & mask

    def _reindex(self, capacity: int) -> None:
        """A new index sized for ``capacity`` rows (at most 50 % full), holding the live
        rows."""
        bits = max(4, (2 * max(capacity, 1) - 1).bit_length())
        self._shift = 32 - bits
        self._slots = np.full(1 << bits, -1, dtype=np.int32)
        self._memo = None
        self._sv = memoryview(self._slots)  # type: ignore[arg-type]
        if not self._live:
            return
        if native.kernels() is not None:  # each row in order, in C: no sort
            self._place(np.flatnonzero(~np.isnan(self._ts[: self._used])))
            return
        # Linear probing into an empty index, all at once: in order of home slot, each row
        # goes to the first slot at or after its home not taken by the rows before it
        # (a running maximum); rows pushed past the end wrap to the first free slots.
        rows = np.flatnonzero(~np.isnan(self._ts[: self._used]))
        home = self._position(self._hash[rows])
        order = np.argsort(home, kind="stable")
        rows = rows[order]
        step = np.arange(rows.size)
        at = np.maximum.accumulate(home[order] - step) + step
        inside = at < self._slots.size
        self._slots[at[inside]] = rows[inside]
        wrapped = rows[~inside]
        if wrapped.size:
            self._slots[np.flatnonzero(self._slots < 0)[: wrapped.size]] = wrapped

    def _gather_ids(self, rows: I64) -> tuple[bytes, I64]:
        """The ids' bytes of ``rows`` (in order) and their lengths."""
        ends = self._ends[: self._used]
        starts = np.concatenate(([0], ends[:-1]))
        lengths = (ends - starts)[rows]
        keep = np.zeros(self._used, dtype=np.bool_)
        keep[rows] = True
        raw = np.frombuffer(self._blob, dtype=np.uint8)
        data = raw[np.repeat(keep, ends - starts)].tobytes()
        del raw  # releases the export of the byte buffer
        return data, lengths

    def _due_end(self, at: int, before: float) -> int:
        """The first row from ``at`` whose event time is at or after ``before`` (dead rows,
        NaN, are not), or the rows used: scanned in chunks growing four times each."""
        chunk = 1024
        while at < self._used:
            end = min(at + chunk, self._used)
            hits = np.flatnonzero(self._ts[at:end] >= before)
            if hits.size:
                return at + int(hits[0])
            at = end
            chunk *= 4
        return self._used

    def _append_keys(self, keys: list[bytes], crcs: npt.NDArray[np.uint32], ts: Any) -> None:
        """Append the ids ``keys`` (new and distinct, room reserved) as live rows with their
        CRC-32s and event times ``ts``, and put them into the index (the numpy code's
        insert; a subclass writes its other columns of the rows first)."""
        n = len(keys)
        at = self._used
        end = at + n
        self._ts[at:end] = ts
        self._hash[at:end] = crcs
        # each id's end offset: for a few ids a running sum in Python, cheaper than numpy's
        if n <= _SUM_IN_PYTHON:
            ends = list(accumulate(map(len, keys), initial=len(self._blob)))
            self._ends[at:end] = ends[1:]
            self._id_bytes += ends[-1] - ends[0]
        else:
            lengths = np.fromiter(map(len, keys), dtype=np.int64, count=n)
            self._ends[at:end] = len(self._blob) + np.cumsum(lengths)
            self._id_bytes += int(lengths.sum())
        self._blob += b"".join(keys)
        self._used = end
        self._live += n
        self._memo = None
        self._place(np.arange(at, end))

    def _columns(self, capacity: int) -> None:
        """Fresh columns of ``capacity`` rows holding the rows used so far (a subclass
        makes its own columns first, then calls this)."""
        used = self._used
        old = None if capacity == 0 else (self._ts, self._hash, self._ends)
        self._ts = np.empty(capacity)
        self._hash = np.empty(capacity, dtype=np.uint32)
        self._ends = np.empty(capacity, dtype=np.int64)
        if old is not None and used:
            self._ts[:used] = old[0][:used]
            self._hash[:used] = old[1][:used]
            self._ends[:used] = old[2][:used]
        self._views()

    def _views(self) -> None:
        # Scalar access through memoryviews: several times cheaper than numpy indexing.
        self._tv = memoryview(self._ts)  # type: ignore[arg-type]
        self._hv = memoryview(self._hash)  # type: ignore[arg-type]
        self._ev = memoryview(self._ends)  # type: ignore[arg-type]

    def _room(self, n: int) -> None:
        """Columns and index slots for ``n`` rows more."""
        need = self._used + n
        if need > self._ts.shape[0]:
            self._columns(max(need, 2 * self._ts.shape[0], 16))
        if 5 * need > 3 * self._slots.size:  # more than 60 % of the slots could be taken
            if need >= 1 << 31:
                raise OverflowError(f"a {type(self).__name__} holds fewer than 2**31 rows")
            self._reindex(need)  # rows used, dead ones too: they count until compaction


class PendingTable(IdTable):
    """The predictions of one model in one partition that wait for their labels, with no
    Python object per prediction: an :class:`IdTable` whose rows also hold the prediction
    and score (float64, they feed exact metrics) and ``k`` slice ids (int32, fixed at the
    first insert).

    A row leaves by having its event time set to NaN (a dead row; its slot is reused by a
    later insert); when dead rows are more than half of the rows used (and at least
    :data:`_COMPACT_FROM`), the live ones are compacted to the front in arrival order and
    the index rebuilt. It pickles as the live rows alone: the ids' bytes in arrival order
    and one array per column.

    >>> table = PendingTable()
    >>> table["a"] = Pending(10.0, 1.0, 0.9, (0, -1))
    >>> table["b"] = Pending(20.0, 0.0, 0.2, (0, 3))
    >>> table.pop("a")
    Pending(ts=10.0, pred=1.0, score=0.9, slices=(0, -1))
    >>> table.expire(25.0), len(table)
    (1, 0)

    Its :attr:`nbytes` (the live ids' bytes plus :data:`ROW_BYTES` and 4 per slice id a
    row) is what a model's ``max_pending_bytes`` caps.
    """

    #: Bytes of a row besides its id and slice ids: ts, pred, score (3 x 8), end offset (8),
    #: CRC-32 (4) and two index slots (2 x 4, the index is kept at most 60 % full).
    ROW_BYTES: Final = 44

    __slots__ = ("_cv", "_k", "_owner", "_pred", "_pv", "_score", "_slices")

    def __init__(self) -> None:
        self._k = -1  # slice ids per row; -1 until the first insert
        self._pred: F64
        self._score: F64
        self._slices: I32
        self._pv: Any  # memoryviews of pred and score
        self._cv: Any
        #: (the partition's owner index, this table's model) when bound (see
        #: :meth:`JoinBuffer.owner_index`): every insert and removal is counted there.
        self._owner: tuple[OwnerIndex, int] | None = None
        super().__init__()

    # ------------------------------------------------------------------ dict-like
    @property
    def nbytes(self) -> int:
        """The accounted bytes of the live rows: their ids' UTF-8 bytes, plus
        :data:`ROW_BYTES` and 4 per slice id each (the budget of ``max_pending_bytes``;
        dead rows awaiting compaction and spare capacity add at most as much again)."""
        return self._id_bytes + self._live * (self.ROW_BYTES + 4 * max(self._k, 0))

    @classmethod
    def entry_bytes(cls, pid: str, k: int) -> int:
        """What :attr:`nbytes` grows by when ``pid`` is added with ``k`` slice ids."""
        return len(_utf8(pid)) + cls.ROW_BYTES + 4 * k

    @property
    def k(self) -> int:
        """Slice ids per row (fixed at the first insert; -1 before it, when :meth:`pop_many`
        returns slices of shape ``(n, 0)``)."""
        return self._k

    def __repr__(self) -> str:
        return f"PendingTable({self._live} pending, {self._used} rows used)"

    def get(self, pid: str) -> Pending | None:
        """The pending prediction of ``pid``, or None."""
        row = self._locate(pid)[0]
        return None if row < 0 else self._entry(row)

    def __getitem__(self, pid: str) -> Pending:
        found = self.get(pid)
        if found is None:
            raise KeyError(pid)
        return found

    def __setitem__(self, pid: str, pending: Pending) -> None:
        """Add ``pid`` at the end of the arrival order (a known ``pid`` is overwritten in
        place, keeping its place, as in a dict)."""
        if math.isnan(pending.ts):
            raise ValueError("a pending prediction needs an event time (NaN given)")
        slices = pending.slices
        used = self._used
        if len(slices) != self._k or used >= len(self._tv) or 5 * used >= 3 * len(self._sv):
            self._reserve(1, len(slices))
        row, slot = self._locate(pid)
        self._memo = None
        if row < 0:
            row = used
            key = _utf8(pid)
            self._blob += key
            self._ev[row] = len(self._blob)
            crc = self._hv[row] = zlib.crc32(key)
            if self._owner is not None:
                self._owner[0].add_one(crc, self._owner[1])
            self._sv[slot] = row
            self._used = used + 1
            self._live += 1
            self._id_bytes += len(key)
        self._tv[row] = pending.ts
        self._pv[row] = pending.pred
        self._cv[row] = pending.score
        if slices:
            self._slices[row] = slices

    def pop(self, pid: str) -> Pending:
        """Remove ``pid`` and return its pending prediction; KeyError if absent."""
        row = self._locate(pid)[0]
        if row < 0:
            raise KeyError(pid)
        out = self._entry(row)
        self._kill(row)
        return out

    def __delitem__(self, pid: str) -> None:
        row = self._locate(pid)[0]
        if row < 0:
            raise KeyError(pid)
        self._kill(row)

    def items(self) -> Iterator[tuple[str, Pending]]:
        """``(prediction_id, Pending)`` in arrival order (do not modify the table meanwhile)."""
        for pid, row in self._live_ids():
            yield pid, self._entry(row)

    def newest(self) -> str | None:
        """The id of the prediction added last, None if it left (or none was added)."""
        row = self._used - 1
        if row < 0 or math.isnan(self._tv[row]):
            return None
        return self._blob[self._start(row) : int(self._ev[row])].decode("utf-8", "surrogatepass")

    def evict_oldest(self) -> Pending:
        """Remove and return the prediction that arrived first; KeyError if empty."""
        if not self._live:
            raise KeyError("evict_oldest from an empty PendingTable")
        row = self._front()
        out = self._entry(row)
        self._kill(row)
        return out

    def expire(self, before: float) -> int:
        """Remove from the front, in arrival order, the predictions with event time <
        ``before``, stopping at the first one at or after it; return how many left."""
        if not self._live:
            return 0
        start = at = self._front()
        if self._tv[start] >= before:  # the oldest is not due: nothing is (a common call)
            return 0
        stop = self._due_end(at, before)  # the first live row at or after it (dead: NaN)
        span = self._ts[start:stop]
        alive = ~np.isnan(span)
        gone = int(np.count_nonzero(alive))
        rows = start + np.flatnonzero(alive)
        self._id_bytes -= self._id_lengths(rows)
        if self._owner is not None:
            self._owner[0].remove(self._hash[rows], self._owner[1])
        span[:] = np.nan
        self._live -= gone
        self._head = stop
        self._maybe_compact()
        return gone

    # ------------------------------------------------------------------ batches
    def add_many(
        self, pids: list[str], ts: F64, pred: F64, score: F64, slices: I64, *, checked: bool = False
    ) -> None:
        """Append ``pids`` (new and distinct, with an event time each: checked, ValueError
        otherwise, unless the caller has ``checked`` that already) in order, with their
        columns; ``slices`` has shape ``(len(pids), k)``. Checked ids go in with one call of
        :mod:`monitor.native`'s ``pending_add`` when it runs (a poll of many models has
        thousands of small groups, and the numpy code's fixed cost is most of each)."""
        n = len(pids)
        if n == 0:
            return
        slices = np.asarray(slices)
        if slices.ndim != 2 or slices.shape[0] != n:
            raise ValueError(f"slices of shape {slices.shape}, expected ({n}, k)")
        kernels = native.kernels()
        if kernels is not None and checked:  # the group in one call: see pending_add
            if type(pids) is not list:
                pids = list(pids)
            self._reserve(n, slices.shape[1])
            at = self._used
            self._id_bytes += kernels.pending_add(
                self._blob, self._ts, self._pred, self._score, self._slices, self._hash,
                self._ends, self._slots, self._shift, at, pids,
                np.ascontiguousarray(ts, dtype=np.float64),
                np.ascontiguousarray(pred, dtype=np.float64),
                np.ascontiguousarray(score, dtype=np.float64),
                np.ascontiguousarray(slices, dtype=np.int64),
            )  # fmt: skip
            self._used = at + n
            self._live += n
            self._memo = None
            if self._owner is not None:
                self._owner[0].add(self._hash[at : at + n], self._owner[1])
            return
        keys, crcs = _keys(pids)
        if not checked:
            if np.isnan(np.asarray(ts, dtype=np.float64)).any():
                raise ValueError("a pending prediction needs an event time (NaN given)")
            if len(set(keys)) != n:
                raise ValueError("add_many: an id is repeated in the batch")
            if self._live and (self._lookup(keys, crcs) >= 0).any():
                raise ValueError("add_many: an id is pending already")
        self._reserve(n, slices.shape[1])
        at = self._used
        end = at + n
        self._pred[at:end] = pred
        self._score[at:end] = score
        self._slices[at:end] = slices
        self._append_keys(keys, crcs, ts)
        if self._owner is not None:
            self._owner[0].add(crcs, self._owner[1])

    def pop_many(self, pids: list[str]) -> tuple[BoolArray, F64, F64, F64, I64]:
        """Remove the pending predictions of ``pids``; return ``(found, ts, pred, score,
        slices)`` aligned with ``pids`` (NaN and -1 where not found; an id listed twice is
        found at its first occurrence only); with one call of :mod:`monitor.native`'s
        ``pending_pop`` when it runs."""
        n = len(pids)
        kernels = native.kernels()
        if kernels is not None and self._live and n:  # the group in one call: see pending_pop
            found = np.empty(n, dtype=np.bool_)
            ts, pred, score = np.empty(n), np.empty(n), np.empty(n)
            slices = np.empty((n, max(self._k, 0)), dtype=np.int64)
            gone = np.empty(n, dtype=np.uint32)
            count, size = kernels.pending_pop(
                self._slots, self._hash, self._ts, self._pred, self._score, self._slices,
                self._ends, self._blob, self._shift, pids if type(pids) is list else list(pids),
                found, ts, pred, score, slices, gone,
            )  # fmt: skip
            if count:
                self._id_bytes -= size
                if self._owner is not None:
                    self._owner[0].remove(gone[:count], self._owner[1])
                self._live -= count
                self._maybe_compact()
            return found, ts, pred, score, slices
        keys, crcs = _keys(pids) if self._live and n else ([], None)
        rows = self._lookup(keys, crcs) if crcs is not None else None
        listed = rows.tolist() if rows is not None else []
        if listed and min(listed) >= 0 and len(set(listed)) == n:
            # every id found, once (a label group's usual case): the rows' columns as they
            # are; the rows' ids are the keys, byte for byte, with their CRC-32s
            assert rows is not None and crcs is not None
            hit = rows
            found = np.ones(n, dtype=np.bool_)
            ts, pred, score = self._ts[hit], self._pred[hit], self._score[hit]
            slices = self._slices[hit].astype(np.int64)
            self._id_bytes -= sum(map(len, keys))
            if self._owner is not None:
                self._owner[0].remove(crcs, self._owner[1])
            self._ts[hit] = np.nan
            self._live -= n
            self._maybe_compact()
            return found, ts, pred, score, slices
        k = max(self._k, 0)
        ts = np.full(n, np.nan)
        pred = np.full(n, np.nan)
        score = np.full(n, np.nan)
        slices = np.full((n, k), -1, dtype=np.int64)
        if rows is None:
            return np.zeros(n, dtype=np.bool_), ts, pred, score, slices
        at = np.flatnonzero(rows >= 0)
        _, first = np.unique(rows[at], return_index=True)  # a repeated id: its first only
        found = np.zeros(n, dtype=np.bool_)
        found[at[first]] = True
        if not at.size:
            return found, ts, pred, score, slices
        hit = rows[found]
        ts[found] = self._ts[hit]
        pred[found] = self._pred[hit]
        score[found] = self._score[hit]
        slices[found] = self._slices[hit]
        self._id_bytes -= self._id_lengths(hit)
        if self._owner is not None:
            self._owner[0].remove(self._hash[hit], self._owner[1])
        self._ts[hit] = np.nan
        self._live -= hit.size
        self._maybe_compact()
        return found, ts, pred, score, slices

    def front_rows(self, n: int) -> I64:
        """The rows of the first ``n`` live entries (arrival order; fewer if fewer live)."""
        found: list[I64] = []
        have = 0
        at = self._head
        chunk = max(64, 2 * n)
        while have < n and at < self._used:
            end = min(at + chunk, self._used)
            alive = at + np.flatnonzero(~np.isnan(self._ts[at:end]))
            found.append(alive[: n - have])
            have += found[-1].size
            at = end
            chunk *= 4
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def _row_bytes(self, rows: I64) -> I64:
        """What each of ``rows`` counts in :attr:`nbytes`."""
        starts = np.where(rows > 0, self._ends[rows - 1], 0)
        out: I64 = self._ends[rows] - starts + self.ROW_BYTES + 4 * max(self._k, 0)
        return out

    def front_bytes(self, n: int) -> I64:
        """What each of the first ``n`` live entries counts in :attr:`nbytes`, oldest first."""
        return self._row_bytes(self.front_rows(n))

    def front_ids(self, n: int) -> list[str]:
        """The ids of the first ``n`` live entries, oldest first."""
        rows = self.front_rows(n)
        ends = self._ends[rows].tolist()
        starts = np.where(rows > 0, self._ends[rows - 1], 0).tolist()
        blob = self._blob
        pairs = zip(starts, ends, strict=True)
        return [blob[s:e].decode("utf-8", "surrogatepass") for s, e in pairs]

    def evict_front(self, n: int) -> None:
        """Remove the first ``n`` live entries (the oldest in arrival order)."""
        if n <= 0:
            return
        rows = self.front_rows(n)
        if rows.size < n:
            raise KeyError(f"evict_front({n}) from a PendingTable of {self._live}")
        self._id_bytes -= self._id_lengths(rows)
        if self._owner is not None:
            self._owner[0].remove(self._hash[rows], self._owner[1])
        self._ts[rows] = np.nan
        self._live -= n
        self._head = int(rows[-1]) + 1
        self._memo = None
        self._maybe_compact()

    def ranks(self, pids: list[str]) -> tuple[I64, I64]:
        """For each of ``pids``: its place among the live entries in arrival order (0: the
        oldest; -1 if not pending) and what it counts in :attr:`nbytes` (0 if not pending)."""
        n = len(pids)
        rank = np.full(n, -1, dtype=np.int64)
        size = np.zeros(n, dtype=np.int64)
        if not self._live or n == 0:
            return rank, size
        ids = id_keys(pids)
        rows = self._lookup(ids.keys, ids.crcs)
        hit = rows >= 0
        if hit.any():
            live = np.flatnonzero(~np.isnan(self._ts[: self._used]))
            rank[hit] = np.searchsorted(live, rows[hit])
            size[hit] = self._row_bytes(rows[hit])
        return rank, size

    def remap_slices(self, mapping: I64) -> None:
        """Renumber slice ids: each id ``i >= 0`` becomes ``mapping[i]`` (-1 stays -1)."""
        if self._used == 0 or self._k <= 0:
            return
        used = self._slices[: self._used]
        table = np.asarray(mapping, dtype=np.int64)
        valid = used >= 0
        used[valid] = table[used[valid]]

    def footprint(self) -> dict[str, int]:
        """Bytes held, by part, for memory accounting. The last part, column capacity
        allocated for rows not yet written, is mostly not resident."""
        used, k = self._used, max(self._k, 0)
        return {
            "id bytes (UTF-8)": len(self._blob),
            "id end offsets (int64)": 8 * used,
            "id CRC-32 (uint32)": 4 * used,
            "index slots (int32)": self._slots.nbytes,
            "ts, pred, score (3 x float64)": 24 * used,
            f"slice ids ({k} x int32)": 4 * k * used,
            "spare column capacity (not written)": (self._ts.shape[0] - used) * (36 + 4 * k),
        }

    # ------------------------------------------------------------------ internals
    def _entry(self, row: int) -> Pending:
        slices = tuple(self._slices[row].tolist())
        return Pending(self._tv[row], self._pv[row], self._cv[row], slices)

    def _kill(self, row: int) -> None:
        if self._owner is not None:
            self._owner[0].remove_one(self._hv[row], self._owner[1])
        self._tv[row] = math.nan
        self._live -= 1
        self._id_bytes -= int(self._ev[row]) - self._start(row)
        if 2 * self._live < self._used:  # dead rows more than half: compact (if enough)
            self._maybe_compact()

    def _front(self) -> int:
        """The first live row (the table is not empty); moves ``_head`` up to it."""
        at = self._head
        tv = self._tv
        if tv[at] == tv[at]:  # live already (the usual case): no scan
            return at
        chunk = 64
        while True:
            end = min(at + chunk, self._used)
            alive = np.flatnonzero(~np.isnan(self._ts[at:end]))
            if alive.size:
                self._head = at + int(alive[0])
                return self._head
            at = end
            chunk *= 4

    def _columns(self, capacity: int) -> None:
        used = self._used
        k = max(self._k, 0)
        old = None if capacity == 0 else (self._pred, self._score, self._slices)
        self._pred = np.empty(capacity)
        self._score = np.empty(capacity)
        self._slices = np.empty((capacity, k), dtype=np.int32)
        if old is not None and used:
            self._pred[:used] = old[0][:used]
            self._score[:used] = old[1][:used]
            self._slices[:used] = old[2][:used]
        super()._columns(capacity)

    def _views(self) -> None:
        super()._views()
        self._pv = memoryview(self._pred)  # type: ignore[arg-type]
        self._cv = memoryview(self._score)  # type: ignore[arg-type]

    def _reserve(self, n: int, k: int) -> None:
        if self._k < 0:
            self._k = k
            self._slices = np.empty((self._ts.shape[0], k), dtype=np.int32)
        elif k != self._k:
            raise ValueError(f"{k} slice ids, the table holds {self._k}")
        self._room(n)

    def _maybe_compact(self) -> None:
        live = self._live
        dead = self._used - live
        if 2 * dead <= self._used or dead < _COMPACT_FROM:
            return
        kernels = native.kernels()
        if kernels is not None:  # the rows, ids and index of _load's below, in one call
            old = (self._ts, self._pred, self._score, self._slices, self._hash, self._ends)
            blob, used = self._blob, self._used
            room = max(16, 2 * live)
            self._used = self._live = 0
            self._columns(room)
            self._reindex(room)  # empty: no live rows
            self._blob = kernels.pending_compact(
                *old, blob, used, self._ts, self._pred, self._score, self._slices, self._hash,
                self._ends, self._slots, self._shift,
            )  # fmt: skip
            self._id_bytes = len(self._blob)
            self._used = self._live = live
            self._head = 0
            return
        rows = np.flatnonzero(~np.isnan(self._ts[: self._used]))
        self._load(
            self._gather_ids(rows),
            self._ts[rows],
            self._pred[rows],
            self._score[rows],
            self._slices[rows],
            self._hash[rows],
            spare=max(16, 2 * live),
        )

    def _load(
        self,
        ids: tuple[bytes, I64],
        ts: F64,
        pred: F64,
        score: F64,
        slices: npt.NDArray[Any],
        crcs: npt.NDArray[np.uint32],
        spare: int,
    ) -> None:
        """Hold exactly these rows (live, in arrival order), with room for ``spare``."""
        n = ts.shape[0]
        self._used = self._live = 0
        self._head = 0
        self._columns(0)
        self._columns(max(spare, n))
        data, lengths = ids
        self._blob = bytearray(data)
        self._id_bytes = len(data)
        self._ts[:n] = ts
        self._pred[:n] = pred
        self._score[:n] = score
        self._slices[:n] = slices
        self._hash[:n] = crcs
        self._ends[:n] = np.cumsum(lengths)
        self._used = self._live = n
        self._reindex(max(spare, n))

    def __getstate__(self) -> dict[str, Any]:
        rows = np.flatnonzero(~np.isnan(self._ts[: self._used]))
        data, lengths = self._gather_ids(rows)
        return {
            "k": self._k,
            "id_bytes": data,  # the ids in arrival order, UTF-8, back to back
            "id_lengths": lengths.astype(np.int32),
            "crc32": self._hash[rows],
            "ts": self._ts[rows],
            "pred": self._pred[rows],
            "score": self._score[rows],
            "slices": self._slices[rows],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._owner = None  # a copy is bound to no partition's index
        self._k = int(state["k"])
        self._blob = bytearray()
        ts = np.asarray(state["ts"], dtype=np.float64)
        k = max(self._k, 0)
        self._load(
            (bytes(state["id_bytes"]), np.asarray(state["id_lengths"], dtype=np.int64)),
            ts,
            state["pred"],
            state["score"],
            np.asarray(state["slices"], dtype=np.int32).reshape(ts.shape[0], k),
            np.asarray(state["crc32"], dtype=np.uint32),
            # the room a live table has after compacting (a restored one's first adds
            # would else grow every column and the index at once); none for a table that
            # never held a row, as a new one (its slice ids a row are not known yet)
            spare=max(16, 2 * ts.shape[0]) if self._k >= 0 else 0,
        )

    @classmethod
    def from_dict(cls, table: dict[str, Pending]) -> PendingTable:
        """A table holding the entries of ``table`` (a pending dict of a checkpoint made
        before the columnar store), in its order."""
        out = cls()
        for pid, pending in table.items():
            out[pid] = pending
        return out


class MatchedTable(IdTable):
    """The recently matched prediction ids of one model in one partition, each with its
    label's event time, in arrival order: an :class:`IdTable` (the ids' bytes in one
    buffer, CRC-32s, times in a float64 column, an open-addressing index) with no Python
    object per id. It tells a duplicate label or prediction from an orphan.

    It behaves as the ``dict[str, float]`` it replaced: :meth:`add_many` is
    ``dict.update`` (a held id keeps its place and takes the new time), :meth:`expire`
    pops from the front while the times are below a bound. Only the front leaves, so the
    live rows are always the last ones written; when the dead ones before them are more
    than half the rows used (and at least :data:`_COMPACT_FROM`), the live ones move to
    the front. It pickles as its live rows (ids' bytes, their lengths, CRC-32s, times);
    :func:`copy.copy` copies its arrays as they are, the index too.

    >>> table = MatchedTable()
    >>> table.add_many(["a", "b", "a"], np.array([10.0, 20.0, 30.0]))
    >>> list(table.items()), "b" in table, table.expire(25.0), list(table)
    ([('a', 30.0), ('b', 20.0)], True, 0, ['a', 'b'])
    >>> table.expire(35.0), len(table)
    (2, 0)
    """

    #: Bytes of a row besides its id: time (8), end offset (8), CRC-32 (4) and two index
    #: slots (2 x 4, the index is kept at most 60 % full).
    ROW_BYTES: Final = 28

    __slots__ = ("front_ts",)

    def __init__(self) -> None:
        super().__init__()
        #: The label time of the first live id (inf when none): :meth:`expire` has work only
        #: when its bound is above it, which the engine asks before calling it.
        self.front_ts = math.inf

    def __repr__(self) -> str:
        return f"MatchedTable({self._live} ids, {self._used} rows used)"

    @property
    def nbytes(self) -> int:
        """The accounted bytes of the live rows: their ids' UTF-8 bytes plus
        :data:`ROW_BYTES` each (dead rows awaiting compaction and spare capacity add at
        most as much again)."""
        return self._id_bytes + self._live * self.ROW_BYTES

    def get(self, pid: str) -> float | None:
        """The label time of ``pid``, or None."""
        row = self._locate(pid)[0]
        return None if row < 0 else float(self._tv[row])

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def ids(self) -> list[str]:
        """The live ids in arrival order (decoded by :mod:`monitor.native`'s
        ``matched_ids`` when it runs: a checkpoint stores them as a list)."""
        kernels = native.kernels()
        if kernels is not None:
            out: list[str] = kernels.matched_ids(self._blob, self._ends, self._head, self._used)
            return out
        return [pid for pid, _ in self._live_ids()]

    def items(self) -> Iterator[tuple[str, float]]:
        """``(prediction_id, label time)`` in arrival order."""
        return zip(self.ids(), self._ts[self._head : self._used].tolist(), strict=True)

    def times(self) -> F64:
        """The live ids' label times in arrival order (a copy)."""
        return self._ts[self._head : self._used].copy()

    def add_many(self, pids: list[str], ts: F64) -> None:
        """``dict.update(zip(pids, ts))``: each id not held goes at the end, in order; a
        held one (or one listed again) keeps its place and takes the later time. Times
        must be numbers (ValueError for NaN). In one call of :mod:`monitor.native`'s
        ``matched_add_groups`` when it runs (as :func:`add_matched_groups`)."""
        n = len(pids)
        if n == 0:
            return
        ts = np.ascontiguousarray(ts, dtype=np.float64)
        if ts.shape != (n,):
            raise ValueError(f"{ts.shape} times for {n} ids")
        kernels = native.kernels()
        if kernels is not None:
            kernels.matched_add_groups([self], [n], pids if type(pids) is list else list(pids),
                                       ts)  # fmt: skip
            return
        if np.isnan(ts).any():
            raise ValueError("a matched id needs its label's event time (NaN given)")
        self._room(n)
        keys, crcs = _keys(pids)
        if len(set(keys)) < n:  # an id listed twice: one by one, as dict.update goes
            for key, crc, t in zip(keys, crcs.tolist(), ts.tolist(), strict=True):
                row = self._find(key, crc)[0]
                if row >= 0:
                    self._tv[row] = t
                else:
                    self._append_keys([key], np.array([crc], dtype=np.uint32), t)
        else:
            rows = self._lookup(keys, crcs) if self._live else np.full(n, -1, dtype=np.int64)
            held = rows >= 0
            if held.any():
                self._ts[rows[held]] = ts[held]
                new = np.flatnonzero(~held)
                self._append_keys([keys[j] for j in new.tolist()], crcs[new], ts[new])
            else:
                self._append_keys(keys, crcs, ts)
        self.front_ts = self._tv[self._head]

    def held(self, pids: list[str]) -> list[int]:
        """The places in ``pids`` of the ids held, in order."""
        if not self._live or not pids:
            return []
        out: list[int] = np.flatnonzero(native.pending_owners([self], pids) >= 0).tolist()
        return out

    def expire(self, before: float) -> int:
        """Remove from the front, in arrival order, the ids whose label time is <
        ``before``, stopping at the first at or after it; return how many left."""
        if not self.front_ts < before:  # none due (the usual call)
            return 0
        head = self._head
        stop = self._due_end(head, before)
        self._id_bytes -= int(self._ev[stop - 1]) - self._start(head)
        self._ts[head:stop] = np.nan  # dead: the index passes over them
        gone = stop - head
        self._live -= gone
        self._head = stop
        self._memo = None
        if 2 * stop > self._used and stop >= _COMPACT_FROM:  # dead rows more than half
            self._load(self._state(), spare=max(16, 2 * self._live))
        else:
            self.front_ts = self._tv[stop] if self._live else math.inf
        return gone

    def footprint(self) -> dict[str, int]:
        """Bytes held, by part, for memory accounting (as :meth:`PendingTable.footprint`)."""
        used = self._used
        return {
            "id bytes (UTF-8)": len(self._blob),
            "id end offsets (int64)": 8 * used,
            "id CRC-32 (uint32)": 4 * used,
            "index slots (int32)": self._slots.nbytes,
            "ts (float64)": 8 * used,
            "spare column capacity (not written)": (self._ts.shape[0] - used) * 20,
        }

    # ------------------------------------------------------------------ state
    def _state(self) -> tuple[bytes, I64, npt.NDArray[np.uint32], F64]:
        """The live rows: their ids' bytes end to end, the ids' lengths, CRC-32s, times."""
        head, used = self._head, self._used
        start = self._start(head)
        ends = self._ends[head:used]
        lengths = np.diff(ends, prepend=start)
        return (bytes(self._blob[start : int(ends[-1]) if used > head else start]), lengths,
                self._hash[head:used].copy(), self._ts[head:used].copy())  # fmt: skip

    def _load(self, state: tuple[bytes, I64, npt.NDArray[np.uint32], F64], spare: int) -> None:
        """Hold exactly these rows (live, in arrival order: see :meth:`_state`), with room
        for ``spare``."""
        data, lengths, crcs, ts = state
        n = ts.shape[0]
        self._used = self._live = self._head = 0
        self._columns(0)
        self._columns(max(spare, n))
        self._blob = bytearray(data)
        self._id_bytes = len(data)
        self._ts[:n] = ts
        self._hash[:n] = crcs
        self._ends[:n] = np.cumsum(lengths)
        self._used = self._live = n
        self.front_ts = self._tv[0] if n else math.inf
        self._reindex(max(spare, n))

    def __getstate__(self) -> dict[str, Any]:
        data, lengths, crcs, ts = self._state()
        return {"id_bytes": data, "id_lengths": lengths.astype(np.int32), "crc32": crcs, "ts": ts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._blob = bytearray()
        ts = np.asarray(state["ts"], dtype=np.float64)
        lengths = np.asarray(state["id_lengths"], dtype=np.int64)
        self._load((bytes(state["id_bytes"]), lengths, np.asarray(state["crc32"], np.uint32), ts),
                   spare=max(16, 2 * ts.shape[0]))  # fmt: skip

    def __copy__(self) -> MatchedTable:
        """A copy of the arrays as they are (no index rebuilt: a checkpoint copies every
        partition's tables)."""
        out = MatchedTable.__new__(MatchedTable)
        out._used, out._live, out._head = self._used, self._live, self._head
        out._id_bytes, out._shift, out._memo = self._id_bytes, self._shift, None
        out.front_ts = self.front_ts
        out._blob = bytearray(self._blob)
        out._ts, out._hash, out._ends = self._ts.copy(), self._hash.copy(), self._ends.copy()
        out._slots = self._slots.copy()
        out._sv = memoryview(out._slots)  # type: ignore[arg-type]
        out._views()
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> MatchedTable:
        return self.__copy__()

    @classmethod
    def from_items(cls, pids: list[str], ts: F64) -> MatchedTable:
        """A table holding ``dict(zip(pids, ts))``, in its order."""
        out = cls()
        out.add_many(pids, ts)
        return out

    @classmethod
    def from_dict(cls, table: dict[str, float]) -> MatchedTable:
        """A table holding the entries of ``table`` (a matched dict of a checkpoint made
        before the columnar store), in its order."""
        return cls.from_items(list(table), np.array(list(table.values()), dtype=np.float64))


def add_matched_groups(tables: list[MatchedTable], sizes: list[int], pids: list[str],
                       ts: F64) -> None:  # fmt: skip
    """:meth:`MatchedTable.add_many` of many tables, end to end: the next ``sizes[g]`` of
    ``pids`` and of ``ts`` to ``tables[g]``. The same tables as a call per group, with one
    call of :mod:`monitor.native`'s ``matched_add_groups`` when it runs (a poll of many
    models matches a few ids in each of hundreds of (model, partition) tables)."""
    kernels = native.kernels()
    if kernels is None:
        a = 0
        for table, size in zip(tables, sizes, strict=True):
            b = a + size
            table.add_many(pids[a:b], ts[a:b])
            a = b
        return
    kernels.matched_add_groups(tables, sizes, pids if type(pids) is list else list(pids),
                               np.ascontiguousarray(ts, dtype=np.float64))  # fmt: skip


def add_groups(
    tables: list[PendingTable], sizes: list[int], pids: list[str], ts: F64, pred: F64,
    score: F64, slices: I64,
) -> None:  # fmt: skip
    """:meth:`PendingTable.add_many` of checked ids (new, and distinct in each table) for
    many tables, end to end: the next ``sizes[g]`` of ``pids`` and of the columns to
    ``tables[g]``. The same tables (and owner indexes) as a call per group, with one call
    of :mod:`monitor.native`'s ``pending_add_groups`` when it runs (a poll of many models
    leaves a few predictions waiting in each of hundreds of (model, partition) tables)."""
    kernels = native.kernels()
    if kernels is None:
        a = 0
        for table, size in zip(tables, sizes, strict=True):
            b = a + size
            table.add_many(pids[a:b], ts[a:b], pred[a:b], score[a:b], slices[a:b], checked=True)
            a = b
        return
    kernels.pending_add_groups(
        tables, np.array(sizes, dtype=np.int64), pids if type(pids) is list else list(pids),
        np.ascontiguousarray(ts, dtype=np.float64), np.ascontiguousarray(pred, dtype=np.float64),
        np.ascontiguousarray(score, dtype=np.float64),
        np.ascontiguousarray(slices, dtype=np.int64),
    )  # fmt: skip


def pop_groups(
    tables: list[PendingTable], sizes: list[int], pids: list[str], k: int
) -> tuple[BoolArray, F64, F64, F64, I64]:
    """:meth:`PendingTable.pop_many` of many tables, end to end: the next ``sizes[g]`` of
    ``pids`` from ``tables[g]``, each table holding ``k`` slice ids a row (or none yet).
    The same tables and results as a call per group, with one call of
    :mod:`monitor.native`'s ``pending_pop_groups`` when it runs (a poll of many models
    joins a few labels in each of hundreds of (model, partition) tables)."""
    n = len(pids)
    kernels = native.kernels()
    if kernels is None or len({id(t) for t in tables}) < len(tables):
        # a table in two groups: a pop each, compacted in between as pop_many does
        parts = []
        a = 0
        for table, size in zip(tables, sizes, strict=True):
            found, ts, pred, score, slices = table.pop_many(pids[a : a + size])
            if slices.shape[1] != k:  # a table that never held a row: none found
                slices = np.full((size, k), -1, dtype=np.int64)
            parts.append((found, ts, pred, score, slices))
            a += size
        if not parts:
            return (np.zeros(0, dtype=np.bool_), np.empty(0), np.empty(0), np.empty(0),
                    np.empty((0, k), dtype=np.int64))  # fmt: skip
        joined = [np.concatenate([p[i] for p in parts]) for i in range(5)]
        return joined[0], joined[1], joined[2], joined[3], joined[4]
    found = np.empty(n, dtype=np.bool_)
    ts, pred, score = np.empty(n), np.empty(n), np.empty(n)
    slices = np.empty((n, k), dtype=np.int64)
    gone = np.empty(n, dtype=np.uint32)
    counts = np.empty(len(tables), dtype=np.int64)
    sizes_out = np.empty(len(tables), dtype=np.int64)
    kernels.pending_pop_groups(
        tables, np.array(sizes, dtype=np.int64), pids if type(pids) is list else list(pids),
        found, ts, pred, score, slices, gone, counts, sizes_out,
    )  # fmt: skip
    a = 0
    # the ids each owner index (a partition's) uncounts: (index, starts in gone, sizes, models)
    owners: dict[int, tuple[OwnerIndex, list[int], list[int], list[int]]] = {}
    for table, size, count, size_bytes in zip(
        tables, sizes, counts.tolist(), sizes_out.tolist(), strict=True
    ):
        if count:  # what pop_many does after its kernel call
            table._id_bytes -= size_bytes
            owner = table._owner
            if owner is not None:
                run = owners.get(id(owner[0]))
                if run is None:
                    run = owners[id(owner[0])] = (owner[0], [], [], [])
                run[1].append(a)
                run[2].append(count)
                run[3].append(owner[1])
            table._live -= count
            table._maybe_compact()
        a += size
    for index, starts, counts_l, models in owners.values():  # (compaction reads no index)
        index.remove_groups(gone, starts, counts_l, models)
    return found, ts, pred, score, slices


#: Dead rows a :class:`PendingTable` keeps at least before it compacts (when they are more
#: than half its rows): a small table (one model's in a partition, with many models) would
#: else compact every poll or two, some forty numpy calls each, to free a few kilobytes.
_COMPACT_FROM: Final = 128
#: Up to this many ids, :meth:`PendingTable.add_many` sums their lengths in Python (a
#: list to numpy costs more per item than numpy's loop, less than its calls for a few).
_SUM_IN_PYTHON: Final = 64
#: Up to this many ids, :meth:`PendingTable._lookup` probes them one by one (measured: the
#: vectorised probe's fixed cost of some twenty numpy calls is worth it from about 200).
_PROBE_ONE_BY_ONE: Final = 128
_GOLDEN: Final = 0x9E3779B1  # Fibonacci hashing: the index slot is the top bits of crc * this


class IdKeys(NamedTuple):
    """Prediction ids as the pending tables look them up: UTF-8 bytes and their CRC-32."""

    keys: list[bytes]
    crcs: npt.NDArray[np.uint32]


def id_keys(pids: list[str]) -> IdKeys:
    """``pids`` ready for :meth:`PendingTable.contains_many`."""
    return IdKeys(*_keys(pids))


def _keys(pids: list[str]) -> tuple[list[bytes], npt.NDArray[np.uint32]]:
    """The ids' UTF-8 bytes (lone surrogates passed through) and the CRC-32 of each: in C
    when :mod:`monitor.native` runs, the same bytes and numbers."""
    kernels = native.kernels()
    if kernels is not None:
        crcs = np.empty(len(pids), dtype=np.uint32)
        return kernels.id_keys(pids if type(pids) is list else list(pids), crcs), crcs
    keys = [pid.encode("utf-8", "surrogatepass") for pid in pids]
    return keys, np.fromiter(map(zlib.crc32, keys), dtype=np.uint32, count=len(keys))


def _same_bytes(
    blob: npt.NDArray[np.uint8],
    starts: I64,
    key_bytes: npt.NDArray[np.uint8],
    key_starts: I64,
    lengths: I64,
) -> BoolArray:
    """Whether each stored id (``blob[start:start + length]``) equals its key
    (``key_bytes[key_start:key_start + length]``), for ids of equal length."""
    equal = np.ones(lengths.size, dtype=np.bool_)
    total = int(lengths.sum())
    if total == 0:
        return equal
    width = int(lengths[0])
    if (lengths == width).all():  # ids of one length (the usual case): two gathers
        span = np.arange(width)
        stored = blob[starts[:, None] + span]
        asked = key_bytes[key_starts[:, None] + span]
        same: BoolArray = (stored == asked).all(axis=1)
        return same
    first = np.cumsum(lengths) - lengths
    within = np.arange(total) - np.repeat(first, lengths)
    differ = (
        blob[np.repeat(starts, lengths) + within]
        != key_bytes[np.repeat(key_starts, lengths) + within]
    )
    some = lengths > 0
    equal[some] = ~np.logical_or.reduceat(differ, first[some])
    return equal


def _utf8(pid: str) -> bytes:
    return pid.encode("utf-8", "surrogatepass")


class OwnerIndex:
    """Which models of one partition hold a pending id, by the id's CRC-32: a multiset of
    ``(crc, model)`` pairs kept current by every :class:`PendingTable` bound to it (see
    :meth:`JoinBuffer.owners`), so that a label naming no model finds its candidates with
    one probe instead of one per model's table. It only narrows the search: a candidate
    is confirmed by its table, which compares the id's bytes.

    Changes are queued as they come (a poll adds and removes ids model by model, a few
    at a time) and applied together, netted per pair, before the next question (with
    :mod:`monitor.native`: each group's applied at once, in one compiled call). The
    pairs live in an open-addressing table (linear probing, power-of-two size, at most
    60 % of the slots taken) with a count each; a pair whose count falls to 0 stays as a
    tombstone (probes go past it, an insert reuses it) until the next rebuild. Never
    stored: a checkpoint's join state rebuilds it.

    >>> index = OwnerIndex()
    >>> crcs = np.array([7, 7, 9], dtype=np.uint32)
    >>> index.add(crcs, 3); index.add_one(7, 1)
    >>> index.candidates(np.array([7, 9, 8], dtype=np.uint32))
    (array([ 1,  3, -1]), array([2, 1, 0]))
    >>> index.remove(crcs[:1], 1); index.candidate(7), len(index)
    ((3, 1), 3)
    """

    __slots__ = (
        "_count", "_crc", "_filled", "_model", "_one", "_one_sign", "_queue", "_queued", "_shift"
    )

    #: Queued changes (ids) that make the next change apply the queue at once.
    QUEUE_MOST: Final = 1 << 16

    def __init__(self, capacity: int = 0) -> None:
        bits = max(4, (2 * max(capacity, 1) - 1).bit_length())
        self._shift = 32 - bits
        self._crc = np.zeros(1 << bits, dtype=np.uint32)
        self._model = np.full(1 << bits, -1, dtype=np.int32)  # -1: an empty slot
        self._count = np.zeros(1 << bits, dtype=np.int32)  # 0 with a model: a tombstone
        self._filled = 0  # slots holding a pair (live or tombstone)
        #: batch changes as they came: (CRC-32s, model, +1 | -1), made pair keys when applied
        self._queue: list[tuple[npt.NDArray[np.uint32], int, int]] = []
        self._one: list[int] = []  # single changes: pair keys (crc << 32 | model)
        self._one_sign: list[int] = []  # and +1 | -1
        self._queued = 0

    def __len__(self) -> int:
        """Ids counted (with multiplicity)."""
        self._apply()
        return int(self._count.sum())

    # ------------------------------------------------------------------ changes
    def add(self, crcs: npt.NDArray[np.uint32], model: int) -> None:
        """Count ids of ``model`` with these CRC-32s (one each, repeats counted)."""
        self._enqueue(crcs, model, 1)

    def remove(self, crcs: npt.NDArray[np.uint32], model: int) -> None:
        """Uncount ids of ``model`` with these CRC-32s (each counted before)."""
        self._enqueue(crcs, model, -1)

    def remove_groups(self, crcs: npt.NDArray[np.uint32], starts: list[int], sizes: list[int],
                      models: list[int]) -> None:  # fmt: skip
        """:meth:`remove` of several models' ids in turn: ``sizes[g]`` of ``crcs`` from
        ``starts[g]`` of model ``models[g]`` (with :mod:`monitor.native`, in one compiled
        call: a poll of many models uncounts a few ids of each of hundreds of tables)."""
        kernels = native.kernels()
        if kernels is None:
            for a, n, m in zip(starts, sizes, models, strict=True):
                self._enqueue(crcs[a : a + n], m, -1)
            return
        if self._queued:  # changes queued by the numpy code first, in their order
            self._apply()
        kernels.owner_remove_groups(
            self._crc, self._model, self._count, self._shift,
            np.ascontiguousarray(crcs, dtype=np.uint32), np.array(starts, dtype=np.int64),
            np.array(sizes, dtype=np.int64), np.array(models, dtype=np.int64),
        )  # fmt: skip

    def add_one(self, crc: int, model: int) -> None:
        """:meth:`add` of one id."""
        if native.kernels() is not None:
            self._enqueue(np.array([crc], dtype=np.uint32), model, 1)
            return
        self._one.append(crc << 32 | model)
        self._one_sign.append(1)
        self._queued += 1
        if self._queued > self.QUEUE_MOST:
            self._apply()

    def remove_one(self, crc: int, model: int) -> None:
        """:meth:`remove` of one id."""
        if native.kernels() is not None:
            self._enqueue(np.array([crc], dtype=np.uint32), model, -1)
            return
        self._one.append(crc << 32 | model)
        self._one_sign.append(-1)
        self._queued += 1
        if self._queued > self.QUEUE_MOST:
            self._apply()

    def _enqueue(self, crcs: npt.NDArray[np.uint32], model: int, sign: int) -> None:
        if crcs.size == 0:
            return
        kernels = native.kernels()
        if kernels is not None:  # applied at once, in C: see owner_change
            if self._queued:  # changes queued by the numpy code first, in their order
                self._apply()
            if sign > 0 and 5 * (self._filled + crcs.size) > 3 * self._model.size:
                self._rebuild(self._filled + crcs.size)
            self._filled += kernels.owner_change(
                self._crc, self._model, self._count, self._shift,
                np.ascontiguousarray(crcs, dtype=np.uint32), model, sign,
            )  # fmt: skip
            return
        self._queue.append((np.array(crcs, dtype=np.uint32), model, sign))  # a copy: kept
        self._queued += crcs.size
        if self._queued > self.QUEUE_MOST:
            self._apply()

    def _apply(self) -> None:
        """Apply the queued changes, netted per pair."""
        if not self._queued:
            return
        keys: list[npt.NDArray[np.uint64]] = []
        signs: list[I64] = []
        if self._queue:  # one pair key per id: crc << 32 | model
            sizes = [crcs.size for crcs, _, _ in self._queue]
            high = np.concatenate([c for c, _, _ in self._queue]).astype(np.uint64)
            low = np.repeat(np.array([m for _, m, _ in self._queue], dtype=np.uint64), sizes)
            keys.append((high << np.uint64(32)) | low)
            signs.append(np.repeat(np.array([g for _, _, g in self._queue], dtype=np.int64), sizes))
        if self._one:
            keys.append(np.array(self._one, dtype=np.uint64))
            signs.append(np.array(self._one_sign, dtype=np.int64))
        self._queue, self._one, self._one_sign, self._queued = [], [], [], 0
        pairs, at = np.unique(np.concatenate(keys), return_inverse=True)
        net = np.bincount(at, weights=np.concatenate(signs), minlength=pairs.size)
        change = np.flatnonzero(net != 0)
        if not change.size:
            return
        pairs, net = pairs[change], net[change].astype(np.int64)
        crcs = (pairs >> np.uint64(32)).astype(np.uint32)
        models = (pairs & np.uint64(0xFFFFFFFF)).astype(np.int32)
        slots = self._find(crcs, models)
        there = slots >= 0
        if (~there & (net < 0)).any():
            raise KeyError("OwnerIndex.remove: an id that was not counted")
        counts = self._count[slots[there]] + net[there]
        if (counts < 0).any():
            raise KeyError("OwnerIndex.remove: an id that was not counted")
        self._count[slots[there]] = counts
        new = np.flatnonzero(~there)
        if not new.size:
            return
        if 5 * (self._filled + new.size) > 3 * self._model.size:
            self._rebuild(self._filled + new.size)
        self._put(crcs[new], models[new], net[new])

    # ------------------------------------------------------------------ the table
    def _home(self, crcs: npt.NDArray[np.uint32]) -> I64:
        mixed = (crcs.astype(np.uint64) * _GOLDEN) & 0xFFFFFFFF
        return (mixed >> self._shift).astype(np.int64)

    def _find(self, crcs: npt.NDArray[np.uint32], models: npt.NDArray[np.int32]) -> I64:
        """Slots of the pairs ``(crc, model)`` (live or tombstone), -1 where absent (probed
        in C when :mod:`monitor.native` runs)."""
        n = crcs.size
        out = np.full(n, -1, dtype=np.int64)
        kernels = native.kernels()
        if kernels is not None:
            kernels.owner_find(self._crc, self._model, self._shift,
                               np.ascontiguousarray(crcs, dtype=np.uint32),
                               np.ascontiguousarray(models, dtype=np.int32), out)  # fmt: skip
            return out
        mask = self._model.size - 1
        pos = self._home(crcs)
        todo = np.arange(n)
        while todo.size:
            p = pos[todo]
            here = self._model[p]
            hit = (here == models[todo]) & (self._crc[p] == crcs[todo])
            out[todo[hit]] = p[hit]
            todo = todo[~hit & (here >= 0)]
            pos[todo] = (pos[todo] + 1) & mask
        return out

    def _put(self, keys: npt.NDArray[np.uint32], models: npt.NDArray[np.int32], times: I64) -> None:
        """Place distinct pairs known to be absent, each in the first free slot (empty or
        tombstone) from its home; one winner per slot per round (with :mod:`monitor.native`:
        one by one, in order; the slots may differ, never what the index answers)."""
        kernels = native.kernels()
        if kernels is not None:
            self._filled += kernels.owner_put(
                self._crc, self._model, self._count, self._shift,
                np.ascontiguousarray(keys, dtype=np.uint32),
                np.ascontiguousarray(models, dtype=np.int32),
                np.ascontiguousarray(times, dtype=np.int64),
            )  # fmt: skip
            return
        mask = self._model.size - 1
        pos = self._home(keys)
        todo = np.arange(keys.size)
        placed = np.zeros(keys.size, dtype=np.bool_)
        while todo.size:
            p = pos[todo]
            free = (self._model[p] < 0) | (self._count[p] == 0)
            slot, first = np.unique(p[free], return_index=True)
            won = todo[free][first]
            self._filled += int((self._model[slot] < 0).sum())
            self._crc[slot] = keys[won]
            self._model[slot] = models[won]
            self._count[slot] = times[won]
            placed[won] = True
            todo = todo[~placed[todo]]
            pos[todo] = (pos[todo] + 1) & mask

    def _rebuild(self, need: int) -> None:
        """Room for ``need`` pairs: the live pairs alone, in a table sized for them."""
        live = np.flatnonzero(self._count > 0)
        keys, models, times = self._crc[live], self._model[live], self._count[live]
        fresh = OwnerIndex(max(need, 2 * live.size))
        self._shift, self._crc, self._model, self._count = (
            fresh._shift, fresh._crc, fresh._model, fresh._count
        )  # fmt: skip
        self._filled = 0
        self._put(keys, models, times.astype(np.int64))

    # ------------------------------------------------------------------ questions
    def candidate(self, crc: int) -> tuple[int, int]:
        """:meth:`candidates` of one CRC-32."""
        first, many = self.candidates(np.array([crc], dtype=np.uint32))
        return int(first[0]), int(many[0])

    def candidates(self, crcs: npt.NDArray[np.uint32]) -> tuple[I64, I64]:
        """For each CRC-32: the smallest model holding an id with it (-1: none) and how
        many models do."""
        self._apply()
        n = crcs.size
        first = np.full(n, -1, dtype=np.int64)
        many = np.zeros(n, dtype=np.int64)
        kernels = native.kernels()
        if kernels is not None:  # each CRC probed in C
            probe = np.ascontiguousarray(crcs, dtype=np.uint32)
            kernels.owner_candidates(self._crc, self._model, self._count, self._shift, probe,
                                     first, many)  # fmt: skip
            return first, many
        mask = self._model.size - 1
        pos = self._home(crcs)
        todo = np.arange(n)
        while todo.size:
            p = pos[todo]
            here = self._model[p].astype(np.int64)
            hit = (self._count[p] > 0) & (self._crc[p] == crcs[todo])
            if hit.any():
                who, m = todo[hit], here[hit]
                many[who] += 1
                low = first[who]
                first[who] = np.where((low < 0) | (m < low), m, low)
            todo = todo[here >= 0]
            pos[todo] = (pos[todo] + 1) & mask
        return first, many


class EarlyLabel(NamedTuple):
    """A label whose prediction has not arrived yet; ``model`` is -1 when the label names none."""

    ts: float
    label: object
    model: int


_MISSING: Final = object()
#: An early label's model (``list(map(_MODEL, labels))`` is one C loop).
_MODEL: Final = operator.itemgetter(2)


class EarlyLabels(dict[str, EarlyLabel]):
    """The early labels of a partition (``prediction_id -> EarlyLabel``, arrival order)
    with a running count of them per model index (:attr:`by_model`, -1: naming none),
    kept by every insert and removal: a pane delta reports them each poll without a pass
    over every label. A dict in every other respect.

    >>> early = EarlyLabels({"a": EarlyLabel(1.0, 1, 0)})
    >>> early["b"] = EarlyLabel(2.0, 0, -1); early.pop("a").model, dict(early.by_model)
    (0, {0: 0, -1: 1})
    """

    __slots__ = ("by_model",)

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        #: model index (-1: the label names none) -> early labels waiting
        self.by_model: Counter[int] = Counter()
        self.update(items)

    def __setitem__(self, pid: str, label: EarlyLabel) -> None:
        old = dict.get(self, pid)
        if old is not None:
            self.by_model[old.model] -= 1
        dict.__setitem__(self, pid, label)
        self.by_model[label.model] += 1

    def __delitem__(self, pid: str) -> None:
        self.by_model[dict.pop(self, pid).model] -= 1

    def add_many(self, pids: list[str], labels: list[EarlyLabel], model: int | None = None
                 ) -> None:  # fmt: skip
        """Enter ``labels`` under ``pids``, in order, as ``self[pid] = label`` for each
        would (an id held already keeps its place and takes the new label): a poll's
        early labels with one dict update and one count update, no Python call per label.
        ``model``: the model every one of ``labels`` names, when the caller knows it (they
        are not read to be counted then)."""
        size = len(self)
        dict.update(self, zip(pids, labels, strict=True))
        if len(self) - size == len(pids):  # every id new (the batch path's case)
            if model is None:
                self.by_model.update(map(_MODEL, labels))
            else:
                self.by_model[model] += len(labels)
            return
        by_model = self.by_model  # some replaced: counted again
        by_model.clear()
        by_model.update(map(_MODEL, dict.values(self)))

    def pop_many(self, pids: list[str]) -> list[EarlyLabel]:
        """Remove the early labels of ``pids`` (each held, distinct) and return them in
        order, with one count update per model among them."""
        gone = list(map(partial(dict.pop, self), pids))
        by_model = self.by_model
        if len(by_model) == 1:  # one model named by every label ever held (the usual table)
            for model in by_model:
                by_model[model] -= len(gone)
            return gone
        for model, n in Counter(map(_MODEL, gone)).items():
            by_model[model] -= n
        return gone

    def pop(self, pid: str, *default: Any) -> Any:
        old = dict.pop(self, pid, _MISSING)
        if old is _MISSING:
            if default:
                return default[0]
            raise KeyError(pid)
        self.by_model[old.model] -= 1  # type: ignore[attr-defined]
        return old

    def popitem(self) -> tuple[str, EarlyLabel]:
        pid, old = dict.popitem(self)
        self.by_model[old.model] -= 1
        return pid, old

    def setdefault(self, pid: str, label: EarlyLabel) -> EarlyLabel:
        if pid not in self:
            self[pid] = label
        return dict.__getitem__(self, pid)

    def update(self, items: Any = (), /, **more: EarlyLabel) -> None:
        pairs = items.items() if hasattr(items, "items") else items
        listed = list(chain(pairs, more.items()))
        if listed:
            self.add_many([pid for pid, _ in listed], [label for _, label in listed])

    def clear(self) -> None:
        dict.clear(self)
        self.by_model.clear()

    def copy(self) -> EarlyLabels:
        return EarlyLabels(self.items())

    def __copy__(self) -> EarlyLabels:
        return EarlyLabels(self.items())

    def __reduce__(self) -> tuple[Any, ...]:
        return EarlyLabels, (list(self.items()),)


class JoinBuffer:
    """The join state of one partition: per-model pending predictions, early labels, and
    recently matched ids (to tell a duplicate label from an orphan).

    Which model's table holds an id is found with one probe of an :class:`OwnerIndex`
    (:meth:`owners`, :meth:`find_pending`), which the tables keep current; it is not
    part of the state (not pickled, not stored) and is rebuilt when the tables were
    replaced (a restore, a hand-over, a config change)."""

    __slots__ = ("_bound", "_owners", "early", "matched", "pending")

    #: Up to this many models, :meth:`owners` asks each table (no index to keep).
    INDEXED_FROM = 4

    def __init__(self, n_models: int) -> None:
        self.pending: list[PendingTable] = [PendingTable() for _ in range(n_models)]
        self.early: dict[str, EarlyLabel] = EarlyLabels()
        self.matched: list[MatchedTable] = [MatchedTable() for _ in range(n_models)]
        self._owners: OwnerIndex | None = None
        self._bound: list[tuple[OwnerIndex, int]] = []  # each table's binding, in order

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "early" and type(value) is not EarlyLabels:  # a dict given: counted
            value = EarlyLabels(value)
        object.__setattr__(self, name, value)

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        return None, {"pending": self.pending, "early": self.early, "matched": self.matched}

    def __setstate__(self, state: Any) -> None:
        """Restore the slots; pending and matched dicts of a checkpoint made before the
        columnar stores become :class:`PendingTable`\\ s and :class:`MatchedTable`\\ s,
        order kept."""
        slots = state[1] if isinstance(state, tuple) else state
        for name, value in slots.items():
            if name in ("pending", "early", "matched"):
                setattr(self, name, value)
        self.pending = [
            PendingTable.from_dict(t) if isinstance(t, dict) else t for t in self.pending
        ]
        self.matched = [
            MatchedTable.from_dict(t) if isinstance(t, dict) else t for t in self.matched
        ]
        self._owners = None
        self._bound = []

    def owner_index(self) -> OwnerIndex:
        """The index of which model holds which id, bound to the tables now in
        :attr:`pending` (built afresh when any of them is not the one it was built with)."""
        owners = self._owners
        pending = self.pending
        bound = self._bound
        if owners is not None and len(bound) == len(pending):
            for table, binding in zip(pending, bound, strict=True):
                if table._owner is not binding:
                    break
            else:
                return owners
        owners = self._owners = OwnerIndex(sum(len(t) for t in pending))
        self._bound = []
        for m, table in enumerate(pending):
            table._owner = (owners, m)
            self._bound.append(table._owner)
            if len(table):
                rows = np.flatnonzero(~np.isnan(table._ts[: table._used]))
                owners.add(table._hash[rows], m)
        return owners

    def owners(self, ids: IdKeys) -> I64:
        """For each id, the first model (by index) whose table holds it pending, -1 for
        none. With more than :attr:`INDEXED_FROM` models, one probe of the
        :class:`OwnerIndex` per id, then the candidate's table confirms it (an id held by
        several models, or a CRC-32 shared, asks their tables in turn); with fewer, each
        table is asked."""
        n = len(ids.keys)
        out = np.full(n, -1, dtype=np.int64)
        if n == 0:
            return out
        if len(self.pending) <= self.INDEXED_FROM:
            for m, table in enumerate(self.pending):
                if len(table):
                    free = out < 0
                    out[table.contains_many(ids) & free] = m
            return out
        index = self.owner_index()
        kernels = native.kernels()
        if kernels is not None:  # candidates and their tables' confirmation in one call
            index._apply()
            kernels.owner_first(index._crc, index._model, index._count, index._shift,
                                self.pending, ids.keys if type(ids.keys) is list
                                else list(ids.keys),
                                np.ascontiguousarray(ids.crcs, dtype=np.uint32), out)  # fmt: skip
            return out
        first, many = index.candidates(ids.crcs)
        single = np.flatnonzero(many == 1)
        if single.size:
            # each candidate model's ids together (sorted by model, in order within it)
            single = single[np.argsort(first[single], kind="stable")]
            owner = first[single]
            models, starts = np.unique(owner, return_index=True)
            bounds = [*starts.tolist(), single.size]
            at_l = single.tolist()
            crcs = ids.crcs[single]
            found: list[I64] = []
            for k, m in enumerate(models.tolist()):
                a, b = bounds[k], bounds[k + 1]
                keys = IdKeys([ids.keys[j] for j in at_l[a:b]], crcs[a:b])
                hit = self.pending[m].contains_many(keys)
                found.append(np.where(hit, m, -1))
            out[single] = np.concatenate(found)
        several = np.flatnonzero(many > 1)
        if several.size:
            keys = IdKeys([ids.keys[j] for j in several.tolist()], ids.crcs[several])
            for m, table in enumerate(self.pending):
                free = out[several] < 0
                if not free.any():
                    break
                if len(table):
                    out[several[table.contains_many(keys) & free]] = m
        return out

    def owners_of(self, pids: list[str]) -> I64:
        """:meth:`owners` of ``pids`` given as str: with up to :attr:`INDEXED_FROM` models,
        each table asked in turn by :func:`monitor.native.pending_owners` (the compiled
        kernel finds each id's bytes and CRC-32 once, with no :func:`id_keys` made); with
        more, through the owner index (the compiled ``owner_first`` given the ids as str
        finds their bytes and CRC-32 as it probes: no bytes object made per id)."""
        if len(self.pending) <= self.INDEXED_FROM:
            return native.pending_owners(self.pending, pids)
        kernels = native.kernels()
        if kernels is None or not pids:
            return self.owners(id_keys(pids))
        out = np.full(len(pids), -1, dtype=np.int64)
        index = self.owner_index()
        index._apply()
        kernels.owner_first(index._crc, index._model, index._count, index._shift,
                            self.pending, pids if type(pids) is list else list(pids), None,
                            out)  # fmt: skip
        return out

    def find_pending(self, pid: str, model: int) -> tuple[int, Pending | None]:
        """The model index and pending prediction for ``pid`` (``model`` -1: any model)."""
        if model >= 0:
            return model, self.pending[model].get(pid)
        if len(self.pending) > self.INDEXED_FROM:
            first, many = self.owner_index().candidate(zlib.crc32(_utf8(pid)))
            if many == 0:
                return -1, None
            if many == 1:
                entry = self.pending[first].get(pid)
                return (first, entry) if entry is not None else (-1, None)
        for index, table in enumerate(self.pending):
            found = table.get(pid)
            if found is not None:
                return index, found
        return -1, None

    def was_matched(self, pid: str, model: int) -> bool:
        """Whether ``pid`` was joined recently (within its TTL) for ``model`` (-1: any)."""
        if model >= 0:
            return pid in self.matched[model]
        return any(pid in table for table in self.matched)

    def add_early(self, pids: list[str], labels: list[EarlyLabel], model: int | None = None
                  ) -> None:  # fmt: skip
        """Keep ``labels`` as early labels of ``pids`` (see :meth:`EarlyLabels.add_many`)."""
        cast(EarlyLabels, self.early).add_many(pids, labels, model)  # EarlyLabels: __setattr__

    def pop_early(self, pids: list[str]) -> list[EarlyLabel]:
        """Remove and return the early labels of ``pids`` (see :meth:`EarlyLabels.pop_many`)."""
        return cast(EarlyLabels, self.early).pop_many(pids)

    def seen(self, pids: Collection[str], model: int) -> set[str]:
        """The ids among ``pids`` that wait as early labels or were joined recently for
        ``model`` (-1: any): ``pid in early or was_matched(pid, model)`` for many ids at
        once: one set operation over ``pids`` for the early labels, one probe of each
        matched table (every model's at once, for ``model`` -1: one compiled call over
        the tables that hold any id, not a call per table of a hundred models)."""
        early = self.early
        out: set[str] = early.keys() & pids if early else set()
        listed = pids if type(pids) is list else list(pids)
        if model >= 0:
            table = self.matched[model]
            if table:
                out.update(map(listed.__getitem__, table.held(listed)))
            return out
        tables = [table for table in self.matched if table]
        if tables and listed:
            held = cast("list[bool]", (native.pending_owners(tables, listed) >= 0).tolist())
            out.update(compress(listed, held))
        return out

    @staticmethod
    def expire(table: dict[str, Pending] | dict[str, EarlyLabel], before: float) -> list[Any]:
        """Pop and return entries from the front (arrival order) with event time < ``before``
        (an entry's ``ts``). The front is found by :mod:`monitor.native`'s
        ``expired_front`` when it runs (a poll's pane closes expire thousands of early
        labels: no bytecode per entry), and popped by one C loop."""
        kernels = native.kernels()
        if kernels is not None:
            gone = kernels.expired_front(table, before)
        else:
            gone = []
            for pid, entry in table.items():
                ts = entry if isinstance(entry, float) else entry.ts
                if ts >= before:
                    break
                gone.append(pid)
        if type(table) is EarlyLabels:
            return table.pop_many(gone)
        return list(map(table.pop, gone))

    @staticmethod
    def evict_oldest(table: dict[str, Pending] | dict[str, EarlyLabel]) -> None:
        """Drop the entry that arrived first."""
        del table[next(iter(table))]
