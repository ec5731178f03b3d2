"""Predictions waiting for their labels, and labels that came first, for one input partition.

Both input topics are keyed by ``prediction_id`` and co-partitioned, so a prediction and its
label meet in the buffer of the same partition number. Entries leave by matching, by their
TTL in event time (checked against the watermark, oldest first in arrival order), or by
eviction at a cap; every exit is counted by the caller, none is silent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import islice, takewhile
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["EarlyLabel", "JoinBuffer", "Pending", "PendingTable"]

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


class PendingTable:
    """The predictions of one model in one partition that wait for their labels, stored
    by column.

    One dict maps each ``prediction_id`` to its row (the dict's order is the arrival
    order); the rows' event time, prediction and score (float64: they feed exact metrics)
    and slice ids (int32, ``k`` per row, ``k`` fixed at the first insert) live in numpy
    columns that grow by doubling. A row leaves by :meth:`pop` (its event time is set to
    NaN: a dead row); when dead rows are more than half of the rows used, the live ones are
    compacted to the front in arrival order. It pickles as the live rows alone: the ids in
    arrival order and one array per column.

    >>> table = PendingTable()
    >>> table["a"] = Pending(10.0, 1.0, 0.9, (0, -1))
    >>> table["b"] = Pending(20.0, 0.0, 0.2, (0, 3))
    >>> table.pop("a")
    Pending(ts=10.0, pred=1.0, score=0.9, slices=(0, -1))
    >>> table.expire(25.0), len(table)
    (1, 0)
    """

    __slots__ = ("_k", "_pred", "_rows", "_score", "_slices", "_ts", "_used")

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self._used = 0  # rows written so far (live and dead)
        self._k = -1  # slice ids per row; -1 until the first insert
        self._ts: F64 = np.empty(0)
        self._pred: F64 = np.empty(0)
        self._score: F64 = np.empty(0)
        self._slices: I32 = np.empty((0, 0), dtype=np.int32)

    # ------------------------------------------------------------------ dict-like
    def __len__(self) -> int:
        return len(self._rows)

    def __bool__(self) -> bool:
        return bool(self._rows)

    def __contains__(self, pid: object) -> bool:
        return pid in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    @property
    def k(self) -> int:
        """Slice ids per row (fixed at the first insert; -1 before it, when :meth:`pop_many`
        returns slices of shape ``(n, 0)``)."""
        return self._k

    def __repr__(self) -> str:
        return f"PendingTable({len(self._rows)} pending, {self._used} rows used)"

    def _entry(self, row: int) -> Pending:
        return Pending(
            self._ts.item(row),
            self._pred.item(row),
            self._score.item(row),
            tuple(self._slices[row].tolist()),
        )

    def footprint(self) -> dict[str, int]:
        """Bytes held, by part (``sys.getsizeof``, before the allocator's rounding; numpy
        capacity not yet written is mostly not resident): for memory accounting."""
        row = 24 + 4 * max(self._k, 0)
        return {
            "dict": sys.getsizeof(self._rows),
            "id strings": sum(map(sys.getsizeof, self._rows)),
            "row ints": sum(sys.getsizeof(r) for r in self._rows.values() if r > 256),
            "columns (rows used)": self._used * row,
            "columns (capacity)": self._ts.shape[0] * row,
        }

    def get(self, pid: str) -> Pending | None:
        """The pending prediction of ``pid``, or None."""
        row = self._rows.get(pid)
        return None if row is None else self._entry(row)

    def __getitem__(self, pid: str) -> Pending:
        return self._entry(self._rows[pid])

    def __setitem__(self, pid: str, pending: Pending) -> None:
        """Add ``pid`` at the end of the arrival order (a known ``pid`` is overwritten in
        place, keeping its place, as in a dict)."""
        row = self._rows.get(pid)
        if row is None:
            self._reserve(1, len(pending.slices))
            row = self._used
            self._used += 1
            self._rows[pid] = row
        elif len(pending.slices) != self._k:
            raise ValueError(f"{len(pending.slices)} slice ids, the table holds {self._k}")
        self._ts[row] = pending.ts
        self._pred[row] = pending.pred
        self._score[row] = pending.score
        self._slices[row] = pending.slices

    def pop(self, pid: str) -> Pending:
        """Remove ``pid`` and return its pending prediction; KeyError if absent."""
        row = self._rows.pop(pid)
        out = self._entry(row)
        self._ts[row] = np.nan
        self._maybe_compact()
        return out

    def __delitem__(self, pid: str) -> None:
        self._ts[self._rows.pop(pid)] = np.nan
        self._maybe_compact()

    def items(self) -> Iterator[tuple[str, Pending]]:
        """``(prediction_id, Pending)`` in arrival order (do not modify the table meanwhile)."""
        for pid, row in self._rows.items():
            yield pid, self._entry(row)

    def evict_oldest(self) -> Pending:
        """Remove and return the prediction that arrived first; KeyError if empty."""
        if not self._rows:
            raise KeyError("evict_oldest from an empty PendingTable")
        return self.pop(next(iter(self._rows)))

    def expire(self, before: float) -> int:
        """Remove from the front, in arrival order, the predictions with event time <
        ``before``, stopping at the first one at or after it; return how many left."""
        if not self._rows:
            return 0
        start = next(iter(self._rows.values()))  # the oldest live row
        stop = self._used
        chunk = 1024
        at = start
        while at < self._used:  # the first live row at or after ``before`` (dead: NaN)
            end = min(at + chunk, self._used)
            hits = np.flatnonzero(self._ts[at:end] >= before)
            if hits.size:
                stop = at + int(hits[0])
                break
            at = end
            chunk *= 4
        gone = list(takewhile(lambda row: row < stop, self._rows.values()))
        if not gone:
            return 0
        for pid in list(islice(self._rows, len(gone))):
            del self._rows[pid]
        self._ts[start:stop] = np.nan
        self._maybe_compact()
        return len(gone)

    # ------------------------------------------------------------------ batches
    def add_many(self, pids: list[str], ts: F64, pred: F64, score: F64, slices: I64) -> None:
        """Append ``pids`` (new and distinct: the caller checks) in order, with their
        columns; ``slices`` has shape ``(len(pids), k)``."""
        n = len(pids)
        if n == 0:
            return
        slices = np.asarray(slices)
        if slices.ndim != 2 or slices.shape[0] != n:
            raise ValueError(f"slices of shape {slices.shape}, expected ({n}, k)")
        if not self._rows.keys().isdisjoint(pids):
            raise ValueError("add_many: an id is pending already")
        self._reserve(n, slices.shape[1])
        at = self._used
        end = at + n
        self._ts[at:end] = ts
        self._pred[at:end] = pred
        self._score[at:end] = score
        self._slices[at:end] = slices
        self._used = end
        before = len(self._rows)
        self._rows.update(zip(pids, range(at, end), strict=True))
        if len(self._rows) != before + n:  # an id repeated in the batch: undo, refuse
            for pid in set(pids):
                del self._rows[pid]
            self._ts[at:end] = np.nan
            raise ValueError("add_many: an id is repeated in the batch")

    def pop_many(self, pids: list[str]) -> tuple[BoolArray, F64, F64, F64, I64]:
        """Remove the pending predictions of ``pids``; return ``(found, ts, pred, score,
        slices)`` aligned with ``pids`` (NaN and -1 where not found; an id listed twice is
        found at its first occurrence only)."""
        n = len(pids)
        k = max(self._k, 0)
        pop = self._rows.pop
        rows = np.fromiter((pop(pid, -1) for pid in pids), dtype=np.int64, count=n)
        found = rows >= 0
        ts = np.full(n, np.nan)
        pred = np.full(n, np.nan)
        score = np.full(n, np.nan)
        slices = np.full((n, k), -1, dtype=np.int64)
        if found.any():
            hit = rows[found]
            ts[found] = self._ts[hit]
            pred[found] = self._pred[hit]
            score[found] = self._score[hit]
            slices[found] = self._slices[hit]
            self._ts[hit] = np.nan
            self._maybe_compact()
        return found, ts, pred, score, slices

    def remap_slices(self, mapping: I64) -> None:
        """Renumber slice ids: each id ``i >= 0`` becomes ``mapping[i]`` (-1 stays -1)."""
        if self._used == 0 or self._k <= 0:
            return
        used = self._slices[: self._used]
        table = np.asarray(mapping, dtype=np.int64)
        valid = used >= 0
        used[valid] = table[used[valid]]

    # ------------------------------------------------------------------ storage
    def _reserve(self, n: int, k: int) -> None:
        if self._k < 0:
            self._k = k
            self._slices = np.empty((0, k), dtype=np.int32)
        elif k != self._k:
            raise ValueError(f"{k} slice ids, the table holds {self._k}")
        need = self._used + n
        if need <= self._ts.shape[0]:
            return
        self._resize(max(need, 2 * self._ts.shape[0], 16))

    def _resize(self, capacity: int) -> None:
        used = self._used
        for name in ("_ts", "_pred", "_score"):
            column = np.empty(capacity)
            column[:used] = getattr(self, name)[:used]
            setattr(self, name, column)
        slices = np.empty((capacity, self._k), dtype=np.int32)
        slices[:used] = self._slices[:used]
        self._slices = slices

    def _maybe_compact(self) -> None:
        live = len(self._rows)
        if 2 * (self._used - live) <= self._used:
            return
        if live == 0:
            self._used = 0
            if self._ts.shape[0] > 1024:
                self._resize(16)
            return
        rows = np.fromiter(self._rows.values(), dtype=np.int64, count=live)
        self._ts[:live] = self._ts[rows]
        self._pred[:live] = self._pred[rows]
        self._score[:live] = self._score[rows]
        self._slices[:live] = self._slices[rows]
        self._rows = dict(zip(self._rows, range(live), strict=True))
        self._used = live
        if self._ts.shape[0] > 4 * live and self._ts.shape[0] > 1024:
            self._resize(2 * live)

    def __getstate__(self) -> dict[str, Any]:
        rows = np.fromiter(self._rows.values(), dtype=np.int64, count=len(self._rows))
        return {
            "ids": list(self._rows),
            "ts": self._ts[rows],
            "pred": self._pred[rows],
            "score": self._score[rows],
            "slices": self._slices[rows],
            "k": self._k,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        ids: list[str] = state["ids"]
        n = len(ids)
        self._k = int(state["k"])
        self._ts = np.require(state["ts"], np.float64, ["C", "W"])
        self._pred = np.require(state["pred"], np.float64, ["C", "W"])
        self._score = np.require(state["score"], np.float64, ["C", "W"])
        slices = np.require(state["slices"], np.int32, ["C", "W"])
        self._slices = slices.reshape(n, max(self._k, 0))
        self._used = n
        self._rows = dict(zip(ids, range(n), strict=True))

    @classmethod
    def from_dict(cls, table: dict[str, Pending]) -> PendingTable:
        """A table holding the entries of ``table`` (a pending dict of a checkpoint made
        before the columnar store), in its order."""
        out = cls()
        for pid, pending in table.items():
            out[pid] = pending
        return out


class EarlyLabel(NamedTuple):
    """A label whose prediction has not arrived yet; ``model`` is -1 when the label names none."""

    ts: float
    label: object
    model: int


class JoinBuffer:
    """The join state of one partition: per-model pending predictions, early labels, and
    recently matched ids (to tell a duplicate label from an orphan)."""

    __slots__ = ("early", "matched", "pending")

    def __init__(self, n_models: int) -> None:
        self.pending: list[PendingTable] = [PendingTable() for _ in range(n_models)]
        self.early: dict[str, EarlyLabel] = {}
        self.matched: list[dict[str, float]] = [{} for _ in range(n_models)]

    def __setstate__(self, state: Any) -> None:
        """Restore the slots; pending dicts of a checkpoint made before the columnar store
        (``prediction_id -> Pending``) become :class:`PendingTable`s, order kept."""
        slots = state[1] if isinstance(state, tuple) else state
        for name, value in slots.items():
            setattr(self, name, value)
        self.pending = [
            PendingTable.from_dict(t) if isinstance(t, dict) else t for t in self.pending
        ]

    def find_pending(self, pid: str, model: int) -> tuple[int, Pending | None]:
        """The model index and pending prediction for ``pid`` (``model`` -1: any model)."""
        if model >= 0:
            return model, self.pending[model].get(pid)
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

    @staticmethod
    def expire(
        table: dict[str, float] | dict[str, Pending] | dict[str, EarlyLabel], before: float
    ) -> list[Any]:
        """Pop and return entries from the front (arrival order) with event time < ``before``."""
        gone = []
        for pid, entry in table.items():
            ts = entry if isinstance(entry, float) else entry.ts
            if ts >= before:
                break
            gone.append(pid)
        return [table.pop(pid) for pid in gone]

    @staticmethod
    def evict_oldest(table: dict[str, Pending] | dict[str, EarlyLabel] | dict[str, float]) -> None:
        """Drop the entry that arrived first."""
        del table[next(iter(table))]
