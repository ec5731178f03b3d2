"""The input side: a consumer-group member reading the predictions and labels topics.

:class:`KafkaSource` wraps a kafka-python ``KafkaConsumer``. It never decides
where to read from on its own: every partition it is given is positioned at
the offset the checkpoint says comes next (``start_offsets``), falling back to
the group's committed offset, then to the earliest record. Offsets are
committed only when the checkpoint asks (after the state is written).

Threading: kafka-python runs the rebalance listener on its I/O thread while
the thread calling ``poll`` waits. The listener here only records what
changed and pauses newly assigned partitions; the thread that calls
:meth:`KafkaSource.poll` seeks them before their first fetch, and learns about
the changes from :meth:`KafkaSource.take_assignment_changes`. Every other
method must be called from that same thread.

A broker outage never raises out of ``poll``, ``commit``, ``lag`` or
``caught_up``: they log (at a rate limit) and return an empty or false
answer, and the consumer reconnects on its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import structlog
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka import errors as kafka_errors

from monitor.config import KafkaConfig
from monitor.events.message import Message, MessageBatch
from monitor.kafka.client_config import (
    LogLimiter,
    build_consumer,
    consumer_kwargs,
    retry_connect,
)
from monitor.kafka.common import FETCH_MAX_WAIT_MS, TP, BackgroundConnect, StartOffsets
from monitor.kafka.topics import check_copartitioning

__all__ = ["TP", "BackgroundConnect", "KafkaSource", "Source", "StartOffsets", "make_source"]

log = structlog.get_logger(__name__)

#: How long one attempt waits for the broker's metadata once its port accepts connections.
BOOTSTRAP_TIMEOUT_MS = 10_000
#: How long the background join waits for the group coordinator at a time: longer than
#: the interpreter stalls of a checkpoint load, short enough for a stop to be seen.
JOIN_WAIT_MS = 5_000
#: Poll timeout of the background join (:meth:`KafkaSource.start_connect`): how soon a
#: :meth:`KafkaSource.connect` takes the consumer over.
JOIN_POLL_MS = 50
#: How long :meth:`KafkaSource.close` waits for a background connect that never got taken
#: over (it ends when its join is answered, or when the stop flag ends its retries).
CLOSE_WAIT_S = 5.0


class Source(Protocol):
    """What the run loop needs of an input source; :class:`KafkaSource` (kafka-python) and
    :class:`~monitor.kafka.confluent_source.ConfluentSource` (confluent-kafka) both are one.

    Every method but :meth:`connect` and :meth:`close` is called from the loop's thread
    and never raises on a broker outage. See :class:`KafkaSource` for each one's contract.
    """

    #: Partition count of each input topic, known after :meth:`connect`.
    partitions: int | None

    @property
    def connected(self) -> bool:
        """True once :meth:`connect` has returned with a consumer (and until :meth:`close`)."""
        ...

    def connect(self, stop: threading.Event) -> None:
        """Check the topic layout and subscribe, waiting out an outage until ``stop``."""
        ...

    def start_connect(self, stop: threading.Event) -> None:
        """Begin :meth:`connect` on a background thread and return at once.

        The group join takes seconds (the coordinator waits for members to gather), so
        ``monitor run`` starts it before it loads its state. The next :meth:`connect`
        takes over: it waits for the background connect and raises what it raised.
        """
        ...

    def close(self) -> None:
        """Leave the group; offsets are not committed here."""
        ...

    def take_assignment_changes(self) -> tuple[set[TP], set[TP]]:
        """Partitions ``(assigned, revoked)`` since the last call."""
        ...

    def poll(self, timeout_ms: int) -> Sequence[Message]:
        """Up to ``max_poll_records`` messages, each partition's in offset order (a list,
        or a :class:`~monitor.events.message.MessageBatch` of columns)."""
        ...

    def assignment(self) -> set[TP]:
        """The partitions this member holds now."""
        ...

    def commit(self, offsets: dict[TP, int], *, timeout_s: float = 10.0) -> bool:
        """Commit next-offsets of assigned partitions; False when it failed."""
        ...

    def lag(self) -> dict[TP, int]:
        """Records not yet read per assigned partition whose position is known."""
        ...

    def caught_up(self) -> bool:
        """True when every assigned partition has nothing left to read."""
        ...

    def pause(self, partitions: Iterable[TP]) -> None:
        """Stop fetching these partitions until :meth:`resume`."""
        ...

    def resume(self, partitions: Iterable[TP]) -> None:
        """Fetch these partitions again."""
        ...

    def paused(self) -> set[TP]:
        """Partitions paused by :meth:`pause` and still assigned."""
        ...


def _message(r: Any) -> Message:
    """A :class:`Message` from a kafka-python record (a null header value becomes ``b""``)."""
    return Message(
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
        key=r.key,
        value=r.value,
        headers=[(k, v if v is not None else b"") for k, v in (r.headers or ())],
        timestamp_ms=r.timestamp if r.timestamp is not None else -1,
    )


def make_source(cfg: KafkaConfig, *, start_offsets: StartOffsets) -> Source:
    """The source ``cfg.client`` names: ``kafka-python`` or ``confluent``."""
    if cfg.client == "confluent":
        from monitor.extras import require

        require("confluent", '[kafka] client = "confluent"')
        from monitor.kafka.confluent_source import ConfluentSource

        return ConfluentSource(cfg, start_offsets=start_offsets)
    return KafkaSource(cfg, start_offsets=start_offsets)


class _Listener(ConsumerRebalanceListener):
    """Forwards rebalance callbacks to the source; runs on kafka-python's I/O thread."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._source._on_revoked(revoked)

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        self._source._on_revoked(lost)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._source._on_assigned(assigned)


class KafkaSource:
    """A member of the consumer group ``cfg.group_id``, reading both input topics.

    Parameters
    ----------
    cfg
        The ``[kafka]`` section of the configuration.
    start_offsets
        ``start_offsets(topic, partition)`` returns the next offset to read for
        a partition, as recorded in the checkpoint, or None to use the group's
        committed offset (or the earliest record when there is none). It is
        called from the thread that calls :meth:`poll`, once per assignment
        of the partition, before the partition is fetched.

    Examples
    --------
    A run loop, in outline::

        source = KafkaSource(cfg.kafka, start_offsets=store.next_offset)
        source.connect(stop)
        while not stop.is_set():
            messages = source.poll(500)
            assigned, revoked = source.take_assignment_changes()
            ...
        source.close()
    """

    def __init__(self, cfg: KafkaConfig, *, start_offsets: StartOffsets) -> None:
        self.cfg = cfg
        self._start_offsets = start_offsets
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._assigned: set[TP] = set()
        self._revoked: set[TP] = set()
        self._pending_seek: set[TP] = set()
        self._user_paused: set[TP] = set()
        self._limiter = LogLimiter(10.0)
        #: The background connect of :meth:`start_connect`, until :meth:`connect` takes over,
        #: and the consumer it built (``_consumer`` stays None until then).
        self._background: BackgroundConnect | None = None
        self._joining: KafkaConsumer | None = None
        #: Partition count of each input topic, known after :meth:`connect`.
        self.partitions: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once :meth:`connect` has returned with a consumer (and until :meth:`close`)."""
        return self._consumer is not None

    def start_connect(self, stop: threading.Event) -> None:
        """Begin :meth:`connect` on a background thread, which then drives the group join
        until partitions are assigned (kafka-python joins a group only when polled).

        Nothing is read meanwhile: newly assigned partitions are paused by the rebalance
        listener until the first :meth:`poll` seeks them. :meth:`connect` (from the thread
        that polls afterwards) waits for the thread (at most until the join in flight is
        answered) and takes over the consumer, joined or still joining.
        """
        if self._consumer is not None or self._background is not None:
            return
        self._background = BackgroundConnect(lambda handoff: self._connect_and_join(stop, handoff))

    def _connect_and_join(self, stop: threading.Event, handoff: threading.Event) -> None:
        consumer = self._retry_connect(stop)
        if consumer is None:
            return
        self._joining = consumer
        try:
            # The group's leader remembers the topics' metadata it assigned from, and
            # rejoins (another join window) when an update arrives that differs. An update
            # fetched now, before the join, is the one the assignment sees, also when the
            # answers to the join wait for the interpreter (a checkpoint unpickling).
            consumer.topics()
            # kafka-python 3.0.12 completes a join only for a poll that is waiting for it:
            # a join that finishes between two polls (e.g. while a long unpickle holds the
            # interpreter lock and the waiting poll's timer runs out) is thrown away and
            # sent again, costing another join window. So wait for the join in the group
            # coordinator's own poll, with a timer longer than such a stall, where that
            # method exists; else poll the consumer (partitions stay paused, nothing read).
            coordinator_poll = getattr(getattr(consumer, "_coordinator", None), "poll", None)
            while not (stop.is_set() or handoff.is_set() or consumer.assignment()):
                if callable(coordinator_poll):
                    coordinator_poll(timeout_ms=JOIN_WAIT_MS)
                else:
                    consumer.poll(timeout_ms=JOIN_POLL_MS, max_records=1, update_offsets=False)
        except kafka_errors.KafkaError as exc:  # the caller's polls go on with the join
            self._limiter.log(log, "warning", "poll", "kafka_poll_failed", error=str(exc))

    def connect(self, stop: threading.Event) -> None:
        """Create the consumer and subscribe, waiting out a broker that is not up yet.

        Retries with exponential backoff (0.5 s doubling to 30 s), logging at a
        rate limit, and returns early, unconnected, when ``stop`` is set. Before
        subscribing it checks that both input topics exist and are
        co-partitioned.

        Raises
        ------
        TopicLayoutError
            When an input topic is missing or the partition counts differ: a
            layout error that waiting will not fix.
        """
        if self._consumer is not None:
            return
        background, self._background = self._background, None
        if background is not None:
            try:
                background.wait()
            finally:
                self._consumer, self._joining = self._joining, None
            return
        self._consumer = self._retry_connect(stop)

    def _retry_connect(self, stop: threading.Event) -> KafkaConsumer | None:
        consumer = retry_connect(
            "source", self.cfg, self._connect_once, stop, logger=log, limiter=self._limiter
        )
        if consumer is not None:
            log.info(
                "kafka_source_subscribed",
                group_id=self.cfg.group_id,
                topics=[self.cfg.predictions_topic, self.cfg.labels_topic],
                partitions=self.partitions,
            )
        return consumer

    def _connect_once(self) -> KafkaConsumer:
        consumer = build_consumer(
            **consumer_kwargs(self.cfg),
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        try:
            self.partitions = check_copartitioning(self.cfg, consumer)
            consumer.subscribe(
                topics=[self.cfg.predictions_topic, self.cfg.labels_topic],
                listener=_Listener(self),
            )
        except BaseException:
            _close_quietly(consumer)
            raise
        return consumer

    def close(self) -> None:
        """Leave the group and close the consumer; offsets are not committed here."""
        background, self._background = self._background, None
        if background is not None:
            with contextlib.suppress(Exception):  # its error belonged to a connect never made
                background.wait(CLOSE_WAIT_S)
        consumer, self._consumer, self._joining = self._consumer or self._joining, None, None
        if consumer is not None:
            _close_quietly(consumer)
        with self._lock:
            self._pending_seek.clear()
            self._user_paused.clear()

    # -- rebalance bookkeeping (I/O thread) ------------------------------------------------

    def _on_assigned(self, partitions: Iterable[TopicPartition]) -> None:
        tps = list(partitions)
        with self._lock:
            keys = {(tp.topic, tp.partition) for tp in tps}
            self._assigned |= keys
            self._pending_seek |= keys
        consumer = self._consumer or self._joining
        if consumer is not None and tps:
            consumer.pause(*tps)  # no fetch before the seek to the checkpoint's offset

    def _on_revoked(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            keys = {(tp.topic, tp.partition) for tp in partitions}
            self._assigned -= keys
            self._revoked |= keys
            self._pending_seek -= keys
            self._user_paused -= keys

    def take_assignment_changes(self) -> tuple[set[TP], set[TP]]:
        """Partitions assigned and revoked since the last call, as ``(assigned, revoked)``.

        A partition in both sets was revoked and then assigned again: drop its
        state, then restore it from the checkpoint (its fetch position is
        reset to ``start_offsets`` as for any new assignment). A partition only
        in ``revoked`` is no longer this member's.
        """
        with self._lock:
            assigned, revoked = self._assigned, self._revoked
            self._assigned, self._revoked = set(), set()
        return assigned, revoked

    def _apply_pending_seeks(self, consumer: KafkaConsumer) -> None:
        with self._lock:
            pending = sorted(self._pending_seek)
        if not pending:
            return
        owned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        ready: list[TopicPartition] = []
        for topic, partition in pending:
            if (topic, partition) not in owned:
                continue
            tp = TopicPartition(topic, partition)
            offset = self._start_offsets(topic, partition)
            if offset is not None:
                consumer.seek(tp, int(offset))
            log.info(
                "kafka_partition_assigned",
                topic=topic, partition=partition,
                start_offset=offset if offset is not None else "committed",
            )  # fmt: skip
            ready.append(tp)
        with self._lock:
            self._pending_seek.difference_update(pending)
            resume = [tp for tp in ready if (tp.topic, tp.partition) not in self._user_paused]
        if resume:
            consumer.resume(*resume)

    # -- reading ---------------------------------------------------------------------------

    def poll(self, timeout_ms: int) -> Sequence[Message]:
        """One poll: up to ``cfg.max_poll_records`` messages, waiting at most ``timeout_ms``.

        Newly assigned partitions are first positioned at ``start_offsets``.
        Messages come grouped by ``(topic, partition)`` in sorted order, each
        partition's in offset order. A null header value becomes ``b""``.
        Never raises on a broker outage: it logs at a rate limit and returns ``[]``.
        """
        consumer = self._consumer
        if consumer is None:
            time.sleep(timeout_ms / 1000)
            return []
        try:
            self._apply_pending_seeks(consumer)
            records = consumer.poll(timeout_ms=timeout_ms, max_records=self.cfg.max_poll_records)
        except kafka_errors.KafkaError as exc:
            self._limiter.log(
                log, "warning", "poll", "kafka_poll_failed", error=str(exc) or type(exc).__name__
            )
            return []
        if not records:
            return []
        with self._lock:
            pending = set(self._pending_seek)
        found: list[Any] = []
        last: dict[TP, int] = {}  # each partition's last row (its records come together)
        for tp in sorted(records, key=lambda t: (t.topic, t.partition)):
            if (tp.topic, tp.partition) in pending:
                continue  # assigned during this poll: read again after the seek
            if records[tp]:
                found.extend(records[tp])
                last[tp.topic, tp.partition] = len(found) - 1
        if not found:
            return []
        return MessageBatch(
            [r.topic for r in found],
            [r.partition for r in found],
            [r.offset for r in found],
            [r.value for r in found],
            lambda i: _message(found[i]),
            [-1 if r.timestamp is None else r.timestamp for r in found],
            last=last,
        )

    def assignment(self) -> set[TP]:
        """The partitions this member holds now."""
        consumer = self._consumer
        if consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in consumer.assignment()}

    # -- offsets ---------------------------------------------------------------------------

    def commit(self, offsets: dict[TP, int], *, timeout_s: float = 10.0) -> bool:
        """Commit next-offsets (last processed + 1) to the group, for assigned partitions only.

        Offsets of partitions this member does not hold are left out (their
        new owner commits them). Returns False, and logs, when the commit
        fails (outage, rebalance in progress); never raises.
        """
        consumer = self._consumer
        if consumer is None:
            return False
        owned = self.assignment()
        to_commit = {
            TopicPartition(topic, partition): OffsetAndMetadata(int(offset), "", -1)
            for (topic, partition), offset in offsets.items()
            if (topic, partition) in owned
        }
        if not to_commit:
            return True
        try:
            consumer.commit(offsets=to_commit, timeout_ms=int(timeout_s * 1000))
        except kafka_errors.KafkaError as exc:
            self._limiter.log(
                log, "warning", "commit", "kafka_commit_failed",
                error=str(exc) or type(exc).__name__, partitions=len(to_commit),
            )  # fmt: skip
            return False
        return True

    def lag(self) -> dict[TP, int]:
        """Records not yet read, per assigned partition: highwater minus position.

        Uses the highwater mark the broker returned with the last fetch
        (``end_offsets`` is wrong on Tansu); a partition with no fetch yet, or
        not yet positioned after its assignment, is left out.
        """
        consumer = self._consumer
        if consumer is None:
            return {}
        with self._lock:
            pending = set(self._pending_seek)
        result: dict[TP, int] = {}
        try:
            for tp in consumer.assignment():
                key = (tp.topic, tp.partition)
                if key in pending:
                    continue
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                position = consumer.position(tp, timeout_ms=0)
                if position is None:
                    continue
                result[key] = max(0, int(highwater) - int(position))
        except kafka_errors.KafkaError as exc:
            self._limiter.log(log, "warning", "lag", "kafka_lag_failed", error=str(exc))
        return result

    def caught_up(self) -> bool:
        """True when every assigned partition has been fetched and has nothing left to read.

        Vacuously true when nothing is assigned; check :meth:`assignment` too.
        """
        consumer = self._consumer
        if consumer is None:
            return False
        owned = self.assignment()
        lag = self.lag()
        return all(lag.get(tp) == 0 for tp in owned)

    # -- backpressure ----------------------------------------------------------------------

    def pause(self, partitions: Iterable[TP]) -> None:
        """Stop fetching these partitions until :meth:`resume` (or until they are revoked)."""
        consumer = self._consumer
        keys = set(partitions)
        with self._lock:
            self._user_paused |= keys
        if consumer is not None:
            owned = self.assignment()
            tps = [TopicPartition(t, p) for t, p in sorted(keys & owned)]
            if tps:
                consumer.pause(*tps)

    def resume(self, partitions: Iterable[TP]) -> None:
        """Fetch these partitions again (a partition awaiting its first seek stays held)."""
        consumer = self._consumer
        keys = set(partitions)
        with self._lock:
            self._user_paused -= keys
            keys -= self._pending_seek
        if consumer is not None:
            owned = self.assignment()
            tps = [TopicPartition(t, p) for t, p in sorted(keys & owned)]
            if tps:
                consumer.resume(*tps)
                _unpark(consumer, tps)

    def paused(self) -> set[TP]:
        """Partitions paused by :meth:`pause` and still assigned."""
        with self._lock:
            return set(self._user_paused) & self.assignment()


def _unpark(consumer: Any, tps: list[TopicPartition]) -> None:
    """Make kafka-python fetch resumed partitions again from their positions.

    kafka-python 3.0 parks the records it had fetched for a partition that was then paused
    and, after ``resume``, hands them back only at a poll that finds no other partition's
    records in line (its check is for ``None``, and a drained batch stays in line): until
    then it neither returns the partition's records nor fetches it again, so a partition
    resumed while another is being read can stall for good. The parked records were not
    returned, so the position still stands before them: dropping them makes the next fetch
    read them again. (Private attributes, looked up defensively: another version without
    them is left alone.)
    """
    fetcher = getattr(consumer, "_fetcher", None)
    for name in ("_paused_partition_records", "_paused_completed_fetches"):
        parked = getattr(fetcher, name, None)
        if not isinstance(parked, dict):
            continue
        for tp in tps:
            held = parked.pop(tp, None)
            drain = getattr(held, "drain", None)
            if callable(drain):
                drain()


def _close_quietly(consumer: Any) -> None:
    try:
        consumer.close(autocommit=False, timeout_ms=5000)
    except Exception as exc:  # closing during an outage may fail; nothing to do about it
        log.debug("kafka_consumer_close_failed", error=str(exc))
