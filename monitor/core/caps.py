"""Evictions at the join's caps, decided over inserts and removals in arrival order.

A model's waiting predictions are capped in number (``max_pending``) and in bytes
(``max_pending_bytes``) over all partitions; the early labels in number
(``max_early_labels``, the largest of the models'). Before an entry is added at a cap,
entries are evicted, oldest first in arrival order: from the partition the new entry goes
to if it holds any, else from the first partition by number that holds some. A waiting
prediction is evicted while the model is at either cap (one or more for one insert); an
early label once per insert at its cap.

:class:`PendingCaps` and :class:`EarlyCaps` are where those rules are written. They replay
a sequence of inserts and removals (a label joining a waiting prediction, a prediction
joining an early label) in arrival order over the counts alone, without touching the
tables: those of a segment of a poll (see :mod:`monitor.core.fastpath`). The entries
evicted from a partition are always the oldest ones still there, so :meth:`apply` removes
them from the front of each table once the segment's inserts and removals are in. An
entry removed after it was evicted (:class:`Conflict`), or one evicted before a later
message names its id (:meth:`conflicts`), means the segment's other decisions assumed it
was still there: the batch path then cuts the segment before that message, or before the
eviction.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from monitor.core.counts import EARLY_LABELS_EVICTED, EVICTED

if TYPE_CHECKING:
    from monitor.core.engine import Engine
    from monitor.core.join import EarlyLabel, PendingTable

__all__ = ["Conflict", "EarlyCaps", "PendingCaps"]

I64 = npt.NDArray[np.int64]


class Conflict(Exception):
    """An entry was evicted before a message of the same sequence used it."""


class _Queue:
    """One partition's entries as the cap sees them: those held at the start (oldest
    first), then those inserted, with a front pointer that passes the evicted ones."""

    __slots__ = ("evicted", "gone", "index", "live", "new", "new_at", "size", "taken", "victims")

    def __init__(self, size: int) -> None:
        self.size = size  # entries held at the start
        self.taken = 0  # of those, passed by the front (evicted, or removed before)
        self.gone: set[int] = set()  # held ones removed before the front reached them
        self.new: list[list[Any]] = []  # inserted: [id, bytes, still there]
        self.index: dict[str, int] = {}
        self.new_at = 0
        self.live = size
        self.victims = 0
        #: (place among the held entries, or -1 - place among the inserted; when)
        self.evicted: list[tuple[int, int]] = []

    def push(self, pid: str, nbytes: int) -> None:
        self.index[pid] = len(self.new)
        self.new.append([pid, nbytes, True])
        self.live += 1

    def pop_new(self, at: int) -> int:
        """Evict the oldest inserted entry still there (the held ones are all passed);
        return its place among the inserted."""
        while True:
            place = self.new_at
            self.new_at += 1
            entry = self.new[place]
            if entry[2]:
                entry[2] = False
                self.live -= 1
                self.victims += 1
                self.evicted.append((-1 - place, at))
                return place

    def remove_new(self, pid: str) -> int:
        entry = self.new[self.index[pid]]
        if not entry[2]:
            raise Conflict(pid)
        entry[2] = False
        self.live -= 1
        nbytes: int = entry[1]
        return nbytes


class _PendingQueue(_Queue):
    __slots__ = ("sizes", "table")

    def __init__(self, table: PendingTable) -> None:
        super().__init__(len(table))
        self.table = table
        self.sizes: I64 = np.zeros(0, dtype=np.int64)  # bytes of the first held entries

    def pop_front(self, at: int) -> int:
        while self.taken < self.size:
            place = self.taken
            self.taken += 1
            if place in self.gone:
                continue
            if place >= self.sizes.size:
                self.sizes = self.table.front_bytes(min(self.size, 2 * place + 16))
            self.live -= 1
            self.victims += 1
            self.evicted.append((place, at))
            return int(self.sizes[place])
        nbytes: int = self.new[self.pop_new(at)][1]
        return nbytes

    def remove_held(self, place: int, nbytes: int) -> int:
        if place < self.taken:
            raise Conflict(place)
        self.gone.add(place)
        self.live -= 1
        return nbytes


class PendingCaps:
    """The evictions of model ``m``'s waiting predictions at its caps (entries, bytes)
    over a sequence of inserts and removals in arrival order, from ``engine``'s state."""

    def __init__(self, engine: Engine, m: int) -> None:
        config = engine.models[m].config
        self.m = m
        self.most = config.max_pending
        self.most_bytes = config.max_pending_bytes
        self.tables = {n: s.join.pending[m] for n, s in engine.partitions.items()}
        self.count = engine.pending_total[m]
        self.nbytes = sum(t.nbytes for t in self.tables.values())
        self.queues: dict[int, _PendingQueue] = {}
        #: per partition, id -> (place among its held entries, bytes): :meth:`hold`
        self.held: dict[int, dict[str, tuple[int, int]]] = {}

    def full(self, nbytes: int) -> bool:
        """Whether an insert of ``nbytes`` now evicts."""
        return bool(self.count) and (
            self.count >= self.most or self.nbytes + nbytes > self.most_bytes
        )

    def _queue(self, number: int) -> _PendingQueue:
        queue = self.queues.get(number)
        if queue is None:
            queue = self.queues[number] = _PendingQueue(self.tables[number])
        return queue

    def _live(self, number: int) -> int:
        queue = self.queues.get(number)
        return len(self.tables[number]) if queue is None else queue.live

    def insert(self, number: int, pid: str, nbytes: int, at: int) -> None:
        """A prediction ``pid`` of ``nbytes`` starts waiting in partition ``number`` (message
        ``at``): evict first while the model is at a cap."""
        queue = self._queue(number)
        while self.full(nbytes):
            victim = queue
            if not queue.live:  # the first partition by number that holds any
                victim = self._queue(next(n for n in sorted(self.tables) if self._live(n)))
            self.nbytes -= victim.pop_front(at)
            self.count -= 1
        queue.push(pid, nbytes)
        self.count += 1
        self.nbytes += nbytes

    def hold(self, number: int, pids: list[str]) -> None:
        """Look up, before :meth:`remove`, the places of waiting predictions that the
        sequence removes from partition ``number`` (all at once)."""
        rank, size = self.tables[number].ranks(pids)
        into = self.held.setdefault(number, {})
        into.update(zip(pids, zip(rank.tolist(), size.tolist(), strict=True), strict=True))

    def remove(self, number: int, pid: str) -> None:
        """A label joins the waiting prediction ``pid`` (held at the start, see
        :meth:`hold`, or inserted before); :class:`Conflict` if it was evicted."""
        queue = self._queue(number)
        if pid in queue.index:
            self.nbytes -= queue.remove_new(pid)
        else:
            place, nbytes = self.held[number][pid]
            self.nbytes -= queue.remove_held(place, nbytes)
        self.count -= 1

    @property
    def evicted(self) -> int:
        return sum(q.victims for q in self.queues.values())

    def conflicts(self, named: dict[int, dict[str, int]], deferred: set[tuple[int, str]]
                  ) -> int | None:
        """The first message whose insert evicted a prediction whose id is named by a
        message after the eviction (``named``: partition -> id -> index of the last message
        naming it) or by one decided only after the evictions are applied (``deferred``:
        (partition, id)); None if there is none."""
        first: int | None = None
        for number, queue in self.queues.items():
            if not queue.evicted:
                continue
            last = named.get(number, {})
            held = self.tables[number].front_ids(queue.taken) if queue.taken else []
            for place, at in queue.evicted:
                pid = held[place] if place >= 0 else queue.new[-1 - place][0]
                if last.get(pid, -1) > at or (number, pid) in deferred:
                    first = at if first is None else min(first, at)
        return first

    def apply(self, engine: Engine) -> None:
        """Evict and count, the tables holding every insert before the evictions' (the
        victims are the oldest entries there)."""
        m = self.m
        for number, queue in self.queues.items():
            if queue.victims:
                self.tables[number].evict_front(queue.victims)
                engine.partitions[number].counts[m][EVICTED] += queue.victims
                engine.pending_total[m] -= queue.victims


class _EarlyQueue(_Queue):
    __slots__ = ("held", "joined", "passed")

    def __init__(self, early: dict[str, EarlyLabel]) -> None:
        super().__init__(len(early))
        self.held = iter(early)
        self.joined: set[str] = set()  # held ones removed before the front reached them
        self.passed: set[str] = set()  # held ones evicted

    def pop_front(self, at: int) -> str:
        """Evict the oldest label still there; return its id."""
        while self.taken < self.size:
            self.taken += 1
            pid = next(self.held)
            if pid in self.joined:
                continue
            self.passed.add(pid)
            self.live -= 1
            self.victims += 1
            self.evicted.append((0, at))
            return pid
        label: str = self.new[self.pop_new(at)][0]
        return label

    def remove(self, pid: str) -> None:
        if pid in self.index:
            self.remove_new(pid)
            return
        if pid in self.passed:
            raise Conflict(pid)
        self.joined.add(pid)
        self.live -= 1


class EarlyCaps:
    """The evictions of early labels at their cap over a sequence of inserts and
    removals in arrival order, from ``engine``'s state."""

    def __init__(self, engine: Engine) -> None:
        self.most = engine.early_cap
        self.tables = {n: s.join.early for n, s in engine.partitions.items()}
        self.count = engine.early_total
        self.queues: dict[int, _EarlyQueue] = {}
        self.victims: list[tuple[int, str, int]] = []  # (partition, id, when)

    def full(self) -> bool:
        """Whether an insert now evicts."""
        return self.count > 0 and self.count >= self.most

    def _queue(self, number: int) -> _EarlyQueue:
        queue = self.queues.get(number)
        if queue is None:
            queue = self.queues[number] = _EarlyQueue(self.tables[number])
        return queue

    def _live(self, number: int) -> int:
        queue = self.queues.get(number)
        return len(self.tables[number]) if queue is None else queue.live

    def insert(self, number: int, pid: str, at: int) -> None:
        """A label ``pid`` starts waiting for its prediction in partition ``number``
        (message ``at``): evict one first at the cap."""
        queue = self._queue(number)
        if self.full():
            victim = number
            if not queue.live:  # the first partition by number that holds any
                victim = next(n for n in sorted(self.tables) if self._live(n))
            self.victims.append((victim, self._queue(victim).pop_front(at), at))
            self.count -= 1
        queue.push(pid, 0)
        self.count += 1

    def remove(self, number: int, pid: str) -> None:
        """A prediction joins the early label ``pid``; :class:`Conflict` if it was evicted."""
        self._queue(number).remove(pid)
        self.count -= 1

    @property
    def evicted(self) -> int:
        return len(self.victims)

    def conflicts(self, named: dict[int, dict[str, int]], deferred: set[tuple[int, str]]
                  ) -> int | None:
        """The first message whose insert evicted a label whose id is named by a message
        after the eviction or by one decided only after the evictions (see
        :meth:`PendingCaps.conflicts`); None if there is none."""
        return min(
            (at for n, pid, at in self.victims
             if named.get(n, {}).get(pid, -1) > at or (n, pid) in deferred),
            default=None,
        )  # fmt: skip

    def apply(self, engine: Engine) -> None:
        """Evict and count, the tables holding every insert before the evictions'."""
        for number, queue in self.queues.items():
            if not queue.victims:
                continue
            state = engine.partitions[number]
            early = state.join.early
            for pid in list(islice(early, queue.victims)):
                gone = early.pop(pid)
                if gone.model >= 0:
                    state.counts[gone.model][EARLY_LABELS_EVICTED] += 1
                else:
                    state.unnamed["early_labels_evicted"] += 1
            engine.early_total -= queue.victims
