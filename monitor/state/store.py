"""What ``monitor run`` needs of a state store, and the store a config asks for.

Two stores satisfy :class:`Store`:

Both write the explicit state format of :mod:`monitor.state.format` (never a pickle).

- ``local`` (:class:`LocalStore`): one atomic file with the whole engine (and its alert
  rules' state) in ``[state] dir``, the embedded default for a single replica. State is
  loaded once at start; partitions keep their state across rebalances (there is no one to
  hand it to).
- ``kafka`` (:class:`~monitor.state.kafka_store.KafkaStore`): one record per input
  partition number and one per model in a compacted topic every replica reads, so a
  partition's hard state follows it to whichever replica the group gives it. The engine
  starts empty; each assigned partition is restored from its record before it is fetched,
  and a partition revoked for good is checkpointed, then dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from monitor.config import MonitorConfig
from monitor.core.alerting import Alerting
from monitor.core.engine import Engine
from monitor.core.pipeline import Pipeline
from monitor.state.checkpoint import CheckpointStore

__all__ = ["LocalStore", "Store", "open_store"]


class Store(Protocol):
    """A checkpoint store as the run loop uses it."""

    #: True when state is kept per partition and restored on assignment (replicas).
    partitioned: bool

    def connect(self, stop: threading.Event) -> None:
        """Reach the store (create it if missing); return early when ``stop`` is set."""

    def load(self, config: MonitorConfig) -> Engine | None:
        """The engine to start from (None: start empty)."""

    def load_state(self, config: MonitorConfig) -> tuple[Engine, Alerting] | None:
        """The engine and the alerting its signals feed to start from (None: start empty)."""

    def save(
        self,
        engine: Engine,
        numbers: Iterable[int] | None = None,
        alerting: Alerting | None = None,
    ) -> int:
        """Write the state of partition ``numbers`` (None: every partition held) with the
        offsets it reflects, and of ``alerting`` where the store keeps it, durably, before
        returning the bytes written. Raises when the write is not known to be durable: the
        caller then does not commit offsets."""

    def restore(self, engine: Engine, numbers: Iterable[int]) -> dict[int, str]:
        """Install the stored state of partition ``numbers`` into ``engine``; per number,
        what happened (``restored``, ``kept``, ``none``, ``unreadable``)."""

    def forget(self, number: int) -> None:
        """Partition ``number`` was dropped from the engine (revoked for good)."""

    def close(self) -> None:
        """Release clients and files."""


class LocalStore(CheckpointStore):
    """The local-directory checkpoint (:class:`CheckpointStore`) as a :class:`Store`."""

    partitioned = False

    def connect(self, stop: threading.Event) -> None:
        """Nothing to reach: the directory is created on the first save."""

    def save(  # type: ignore[override]
        self,
        engine: Engine | Pipeline,
        numbers: Iterable[int] | None = None,
        alerting: Alerting | None = None,
    ) -> int:
        """Write the whole core (both stages) and ``alerting`` (one file holds every
        partition)."""
        return super().save(engine, alerting)

    def restore(self, engine: Engine, numbers: Iterable[int]) -> dict[int, str]:
        """The whole state was loaded at start: partitions keep what the engine holds."""
        return {n: "kept" if n in engine.partitions else "none" for n in numbers}

    def forget(self, number: int) -> None:
        """Nothing to forget: the local store never drops a partition."""

    def close(self) -> None:
        """Nothing to release."""


def open_store(config: MonitorConfig) -> Store:
    """The store ``[state] store`` names."""
    if config.state.store == "kafka":
        from monitor.state.kafka_store import KafkaStore

        return KafkaStore(config)
    return LocalStore(config.state.dir, config.state.hmac_bytes())
