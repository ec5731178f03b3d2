"""Predictions waiting for their labels, and labels that came first, for one input partition.

Both input topics are keyed by ``prediction_id`` and co-partitioned, so a prediction and its
label meet in the buffer of the same partition number. Entries leave by matching, by their
TTL in event time (checked against the watermark, oldest first in arrival order), or by
eviction at a cap; every exit is counted by the caller, none is silent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["EarlyLabel", "JoinBuffer", "Pending"]


class Pending(NamedTuple):
    """A prediction waiting for its label: what its outcome terms need, nothing more."""

    ts: float
    pred: float
    score: float
    slices: tuple[int, ...]


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
        self.pending: list[dict[str, Pending]] = [{} for _ in range(n_models)]
        self.early: dict[str, EarlyLabel] = {}
        self.matched: list[dict[str, float]] = [{} for _ in range(n_models)]

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
