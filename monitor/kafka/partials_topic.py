"""The transport between the two stages: pane deltas in the partials topic, and stage-2
ownership of models through a consumer group over that topic.

Stage 1 runs per input partition and publishes *pane deltas* (what each input partition
added to each model's panes, as a chain; see :mod:`monitor.core.partials`); stage 2 runs
per model, with exactly one owner in
the cluster at a time. This module carries the partials from one to the other and elects
the owners. It knows nothing of what the records mean: keys and values are opaque bytes
that the stages encode and decode.

Record contract
---------------
- **Partition = model.** Every record of a model goes to the explicit partition
  :func:`model_partition` ``(model, n)`` of the topic (``n`` its partition count): both
  sides compute it the same way, so the member that owns a partition owns every model
  that hashes to it and reads all of their partials in one ordered stream.
- **Key** (opaque bytes, required): ``<model>/<input partition>`` for the stages. Keys
  beginning with
  :data:`FENCE_PREFIX` are reserved for this module's fences and refused by
  :meth:`PartialsWriter.send`; :meth:`ModelOwnership.poll` never returns them.
- **Value** (opaque bytes) or ``None``; readers get the latter as ``value=None``.
- The topic is created when missing with ``cleanup.policy=delete`` (every delta counts:
  none may be compacted away), ``retention.ms`` from ``[state] partials_retention`` (a
  new owner resumes a model's stage 2 from its checkpoint, written at every checkpoint of
  the owner, and reads the deltas after it) and the requested partition count. If
  it exists with another count, that count is used (and logged):
  :func:`model_partition` is always taken over the real count, by both sides.

Delivery semantics
------------------
At least once. The writer's producer waits for all in-sync replicas (``acks=all``),
retries, and keeps one request in flight per connection, so the records of a key are
written in the order they were sent. It is not idempotent: a retry may write a record
twice. **Duplicates are harmless**: each delta names its place in its partition's chain
(session and number), and stage 2 drops one it has applied already. A record that
cannot be delivered is never silently lost: it is counted (:attr:`PartialsWriter.failed`)
and makes the next :meth:`PartialsWriter.flush` return False, so stage 1 must not
checkpoint the input offsets those partials reflect, and the stages send what it held
again (:class:`~monitor.replicas.ReplicaStages`).

Ownership and rebalances
------------------------
:class:`ModelOwnership` is a member of a consumer group (``"<group>.owners"``) subscribed
to the topic; the group gives each partition, and so each model, to exactly one member.
Every revocation and every assignment the group makes is reported, in order, from inside
:meth:`ModelOwnership.poll` on the caller's thread, as ``on_change(gained, lost)``; the
loss is reported by the very poll in which the group revokes the partition, which (with
the eager protocol) is before any other member can be given it, so two members never
both believe they own a model. With eager rebalancing (kafka-python's default assignors;
the only kind Tansu does) every rebalance revokes everything first: a member reports all
its partitions lost, then, a join later, those it is given, including any it had before.
Each gained partition is then positioned at ``start_offset(partition)``, None meaning the
beginning of the partition: the group's committed offsets are never used to position a
reader. An owner that keeps a lost partition's state in memory can return its own next
offset there and read on without re-reading; otherwise it returns its checkpoint's. After
a gain, :meth:`ModelOwnership.caught_up` says when everything written to the partition
before the gain has been read: when the new owner may close panes and alert. A poll never
returns a record of a partition the member does not own when the poll returns.
:meth:`ModelOwnership.close` leaves the group, so that the others take its partitions
over in the next rebalance rather than after a session timeout.

Threading: kafka-python calls the rebalance listener on its I/O thread; the listener here
only records what changed and pauses newly assigned partitions until the thread that
calls :meth:`ModelOwnership.poll` has positioned them. Call every method of
:class:`ModelOwnership` from that one thread. :class:`PartialsWriter`'s counters are
updated from the producer's I/O thread under a lock.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

import structlog
from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka import errors as kafka_errors

from monitor.config import KafkaConfig, MonitorConfig
from monitor.kafka.client_config import (
    LogLimiter,
    admin_kwargs,
    build_admin,
    build_consumer,
    consumer_kwargs,
    producer_kwargs,
    retry_connect,
)
from monitor.kafka.topics import partition_counts

__all__ = [
    "FENCE_PREFIX",
    "ModelOwnership",
    "OnChange",
    "PartialRecord",
    "PartialsWriter",
    "StartOffset",
    "model_partition",
]

log = structlog.get_logger(__name__)

#: Keys beginning with these bytes are this module's fences (a tombstone a new owner
#: appends to learn where a partition ended when it gained it): reserved, never returned.
FENCE_PREFIX: Final = b"\x00monitor.fence/"
#: How long topic creation waits for the broker.
CREATE_TIMEOUT_S: Final = 20.0
#: How long one connection attempt waits for the broker's metadata.
BOOTSTRAP_TIMEOUT_MS: Final = 10_000
#: How long the broker may hold a fetch that finds nothing (a new owner's first records
#: and the fence come sooner than with the client's default of 500 ms).
FETCH_MAX_WAIT_MS: Final = 100
#: How long :meth:`PartialsWriter.close` and :meth:`ModelOwnership.close` wait at most.
CLOSE_TIMEOUT_S: Final = 5.0

#: ``on_change(gained, lost)``: partitions of the partials topic this member gained and lost.
OnChange = Callable[[set[int], set[int]], None]
#: ``start_offset(partition)``: the next offset to read of a gained partition, or None for
#: the beginning of the partition.
StartOffset = Callable[[int], "int | None"]


def model_partition(model: str, partitions: int) -> int:
    """The partition of the partials topic that carries ``model``'s records.

    The contract both stages use: ``zlib.crc32`` of the model name's UTF-8 bytes, modulo
    the topic's partition count. It is stable across processes, Python versions and
    restarts (unlike ``hash``), so a writer and an owner always agree.

    Parameters
    ----------
    model
        The model's name, as in the configuration.
    partitions
        The partials topic's partition count (positive).

    Examples
    --------
    >>> model_partition("fraud", 4), model_partition("churn", 4), model_partition("fraud", 1)
    (2, 0, 0)
    """
    if partitions < 1:
        raise ValueError(f"Invalid 'partitions': {partitions!r}; must be at least 1")
    return zlib.crc32(model.encode("utf-8")) % partitions


class PartialRecord(NamedTuple):
    """One record of the partials topic as an owner reads it.

    ``value`` is None for a tombstone; ``timestamp_ms`` is the record's Kafka timestamp
    (-1 when it has none).
    """

    partition: int
    offset: int
    key: bytes
    value: bytes | None
    timestamp_ms: int


def _ensure_topic(
    kafka: KafkaConfig, topic: str, partitions: int, retention_ms: int = -1,
    max_bytes: int = 1_048_588,
) -> int:
    """Create ``topic`` (kept whole, ``partitions`` partitions) when missing; its real count.

    A topic that exists with another count is used as it is, with a log line: changing a
    topic's partition count would move models between partitions under their owners.
    """
    admin = build_admin(**admin_kwargs(kafka))
    try:
        count = partition_counts(admin, [topic])[topic]
        if count is None:
            spec = {
                topic: {
                    "num_partitions": partitions,
                    "replication_factor": -1,  # the broker's default
                    "configs": {
                        "cleanup.policy": "delete",
                        "retention.ms": str(retention_ms),
                        "max.message.bytes": str(max_bytes),
                    },
                }
            }
            response = admin.create_topics(
                spec, timeout_ms=int(CREATE_TIMEOUT_S * 1000), raise_errors=False
            )
            for result in response.get("topics", []):
                code = result.get("error_code", 0)
                if code and code != kafka_errors.TopicAlreadyExistsError.errno:
                    raise kafka_errors.for_code(code)(f"creating partials topic {topic!r}")
            count = partition_counts(admin, [topic])[topic]
            if count is None:  # created, but not visible in the metadata yet: retried
                raise kafka_errors.UnknownTopicOrPartitionError(f"partials topic {topic!r}")
            log.info("partials_topic_created", topic=topic, partitions=count)
        if count != partitions:
            log.warning(
                "partials_topic_partition_count_differs", topic=topic, partitions=count,
                requested=partitions, action=f"using the topic's {count} partitions",
            )  # fmt: skip
        return count
    finally:
        admin.close()


def _producer(kafka: KafkaConfig, max_bytes: int) -> KafkaProducer:
    """A producer that keeps each key's records in send order and survives a broker that
    forgets producer ids (not idempotent: a delta sent twice is dropped by stage 2)."""
    return KafkaProducer(
        **{**producer_kwargs(kafka), "max_request_size": max_bytes},
        enable_idempotence=False,
        max_in_flight_requests_per_connection=1,  # retries cannot reorder a key's records
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
    )


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class PartialsWriter:
    """Stage 1's producer of pane partials: each record to its model's partition.

    Parameters
    ----------
    config
        The daemon's configuration; ``[kafka]`` gives the broker, security and client
        settings.
    topic
        The partials topic.
    partitions
        Partition count to create the topic with when it is missing (an existing topic
        keeps its own; :attr:`partitions` is the real one after :meth:`connect`).

    Attributes
    ----------
    partitions : int | None
        The topic's real partition count, known after :meth:`connect`.
    sent : int
        Records handed to :meth:`send` (accepted or not), since the writer was created.
    delivered : int
        Records the broker acknowledged.
    failed : int
        Records that could not be delivered (refused, timed out, not connected, too
        large): export it as a counter. Each one also makes the next :meth:`flush` False.

    Examples
    --------
    ::

        writer = PartialsWriter(config, "monitor.partials", 12)
        writer.connect(stop)
        writer.send("fraud", key, value)
        if writer.flush(10.0):
            ...  # every partial sent so far is in the topic: checkpoint the input offsets
        writer.close()
    """

    def __init__(self, config: MonitorConfig, topic: str, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"Invalid 'partitions': {partitions!r}; must be at least 1")
        self.kafka = config.kafka
        #: ``retention.ms`` of the topic when this creates it (``[state] partials_retention``).
        self.retention_ms = round(config.state.partials_retention * 1000)
        #: The largest record (``[state] max_record_bytes``): topic and producer limit.
        self.max_bytes = config.state.max_record_bytes
        self.topic = topic
        self.requested_partitions = partitions
        self.partitions: int | None = None
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self._in_flight = 0
        self._unreported = 0  # failures not yet reported by a flush
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._limiter = LogLimiter(10.0)

    @property
    def connected(self) -> bool:
        """True once :meth:`connect` has built the producer (and until :meth:`close`)."""
        return self._producer is not None

    @property
    def in_flight(self) -> int:
        """Records sent and not yet acknowledged or failed."""
        with self._lock:
            return self._in_flight

    def connect(self, stop: threading.Event) -> None:
        """Create the topic when missing and the producer, waiting out a broker outage.

        Backs off 0.5 s doubling to 30 s, logging at a rate limit; returns early,
        unconnected, when ``stop`` is set.
        """
        if self._producer is None:
            retry_connect("partials_writer", self.kafka, self._connect_once, stop,
                          logger=log, limiter=self._limiter)  # fmt: skip

    def _connect_once(self) -> bool:
        count = _ensure_topic(self.kafka, self.topic, self.requested_partitions,
                              self.retention_ms, self.max_bytes)  # fmt: skip
        producer = _producer(self.kafka, self.max_bytes)
        try:
            producer.partitions_for(self.topic)  # learn the layout while the broker is up
        except BaseException:
            producer.close(timeout=0)
            raise
        self.partitions, self._producer = count, producer
        log.info("partials_writer_connected", topic=self.topic, partitions=count)
        return True

    def send(self, model: str, key: bytes, value: bytes | None) -> None:
        """Send one record (``value=None``: a tombstone) to ``model``'s partition.

        Returns at once; delivery happens in the background. Never raises on Kafka
        errors: a record that cannot be delivered adds to :attr:`failed` and makes the
        next :meth:`flush` return False.

        Raises
        ------
        ValueError
            When ``key`` begins with the reserved :data:`FENCE_PREFIX`.
        """
        if key.startswith(FENCE_PREFIX):
            raise ValueError(f"keys beginning with {FENCE_PREFIX!r} are reserved for fences")
        with self._lock:
            self.sent += 1
        producer, partitions = self._producer, self.partitions
        if producer is None or partitions is None:
            self._on_error(kafka_errors.KafkaConnectionError("partials writer not connected"),
                           counted=False)  # fmt: skip
            return
        with self._lock:
            self._in_flight += 1
        try:
            future = producer.send(
                self.topic, key=key, value=value, partition=model_partition(model, partitions)
            )
        except (kafka_errors.KafkaError, ValueError, TypeError, AssertionError) as exc:
            self._on_error(exc)  # refused before it was buffered (too large, no metadata)
            return
        future.add_callback(self._on_success)
        future.add_errback(self._on_error)

    def _on_success(self, _metadata: Any) -> None:
        with self._lock:
            self._in_flight -= 1
            self.delivered += 1

    def _on_error(self, exc: BaseException, counted: bool = True) -> None:
        with self._lock:
            if counted:
                self._in_flight -= 1
            self.failed += 1
            self._unreported += 1
            failed = self.failed
        self._limiter.log(
            log, "error", "send", "partials_send_failed",
            topic=self.topic, error=_reason(exc), failed_total=failed,
        )  # fmt: skip

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every record sent so far to be acknowledged.

        True only when none is still in flight and none failed since the previous
        flush: then every record :meth:`send` was given is in the topic. False on a
        timeout (the records stay in flight, and count for the next flush) or when any
        failed. Never raises.
        """
        producer = self._producer
        ok = True
        if producer is not None:
            try:
                producer.flush(timeout=timeout_s)
            except kafka_errors.KafkaError as exc:
                ok = False
                self._limiter.log(
                    log, "warning", "flush", "partials_flush_incomplete",
                    topic=self.topic, timeout_s=timeout_s, error=_reason(exc),
                )  # fmt: skip
        with self._lock:
            failures, self._unreported = self._unreported, 0
            clear = self._in_flight == 0
        return ok and clear and failures == 0

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Send what is buffered (waiting at most ``timeout_s``), then close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout_s)
            except Exception as exc:  # closing during an outage may fail; nothing to do
                log.debug("partials_writer_close_failed", error=_reason(exc))


class _Listener(ConsumerRebalanceListener):
    """Records rebalances for :class:`ModelOwnership`; runs on kafka-python's I/O thread."""

    def __init__(self, owner: ModelOwnership, consumer: KafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._owner._revoked({tp.partition for tp in revoked})

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        self._owner._revoked({tp.partition for tp in lost})

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        tps = list(assigned)
        self._owner._assigned({tp.partition for tp in tps})
        if tps:
            self._consumer.pause(*tps)  # no fetch before the poll thread positions them


class ModelOwnership:
    """Stage 2's membership: which models this process owns, and their partials.

    A member of consumer group ``group_id`` subscribed to the partials topic; the group
    gives each partition (so each model, by :func:`model_partition`) to one member.

    Parameters
    ----------
    config
        The daemon's configuration; ``[kafka]`` gives the broker, security, client,
        session and heartbeat settings (a member that stops heartbeating loses its
        partitions after ``session_timeout``).
    topic
        The partials topic; created when missing as :class:`PartialsWriter` does.
    partitions
        Partition count to create the topic with when it is missing.
    group_id
        The owners' consumer group, e.g. ``f"{config.kafka.group_id}.owners"``.
    on_change
        ``on_change(gained, lost)``, called from inside :meth:`poll` for every change of
        the partitions this member owns, in the order the group made them (either set
        may be empty, not both; changes that do not overlap are merged into one call, a
        partition lost and given back makes two). :meth:`owned` already answers the set
        as of the end of the rebalances seen. It runs before the gained partitions are
        positioned, so it can load their checkpoints for ``start_offset``. An exception
        it raises propagates out of :meth:`poll`; the calls left and the positioning
        happen in the next :meth:`poll`.
    start_offset
        ``start_offset(partition)``: the next offset to read of a gained partition (the
        owner's own checkpoint), or None for the beginning of the partition. Called
        once per gain, from :meth:`poll`, after ``on_change``.

    Notes
    -----
    Offsets are committed to the group asynchronously after every poll that returned
    records (the offset after the last record returned of each owned partition), only so
    that ordinary lag tools (``kafka-consumer-groups``, kafka_exporter, Burrow) show how
    far behind the owners are. They are never read back: a gained partition is positioned
    by ``start_offset`` alone, since only the owner's checkpoint knows which partials its
    state reflects. A failed commit is therefore harmless and only logged.

    Examples
    --------
    ::

        owners = ModelOwnership(config, "monitor.partials", 12, "monitor.owners",
                                on_change=stage2.on_change, start_offset=stage2.next_offset)
        owners.connect(stop)
        while not stop.is_set():
            for record in owners.poll(0.5):
                stage2.merge(record)
            ready = [p for p in owners.owned() if owners.caught_up(p)]
            ...
        owners.close()
    """

    def __init__(
        self,
        config: MonitorConfig,
        topic: str,
        partitions: int,
        group_id: str,
        *,
        on_change: OnChange,
        start_offset: StartOffset,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"Invalid 'partitions': {partitions!r}; must be at least 1")
        self.kafka = config.kafka
        #: ``retention.ms`` of the topic when this creates it (``[state] partials_retention``).
        self.retention_ms = round(config.state.partials_retention * 1000)
        #: The largest record (``[state] max_record_bytes``): topic and producer limit.
        self.max_bytes = config.state.max_record_bytes
        self.topic = topic
        self.requested_partitions = partitions
        self.group_id = group_id
        #: The topic's real partition count, known after :meth:`connect`.
        self.partitions: int | None = None
        #: Commits the broker refused or that could not be sent (they are only for lag).
        self.commit_failures = 0
        self._on_change = on_change
        self._start_offset = start_offset
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._fence_key = FENCE_PREFIX + uuid.uuid4().hex.encode()
        self._lock = threading.Lock()
        # Written by the listener (I/O thread), under the lock:
        self._assignment: set[int] = set()  # what the group gives this member now
        self._unpositioned: set[int] = set()  # assigned, paused, waiting for a seek
        self._events: list[tuple[bool, set[int]]] = []  # (assigned?, partitions), in order
        # The poll thread's own:
        self._owned: frozenset[int] = frozenset()
        self._needs_start: set[int] = set()  # gained, ``start_offset`` not yet applied
        self._resume: dict[int, int | None] = {}  # next offset to read; None = beginning
        self._fence: dict[int, int] = {}  # offset of the fence appended after the gain
        self._fence_sends: dict[int, Any] = {}  # partition -> future of the fence in flight
        self._committed: dict[int, int] = {}
        self._notify: list[tuple[set[int], set[int]]] = []  # on_change calls still to make
        self._limiter = LogLimiter(10.0)

    # ------------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        """True once :meth:`connect` has subscribed (and until :meth:`close`)."""
        return self._consumer is not None

    def connect(self, stop: threading.Event) -> None:
        """Create the topic when missing, then subscribe; waits out a broker outage.

        Backs off 0.5 s doubling to 30 s, logging at a rate limit; returns early,
        unconnected, when ``stop`` is set. The group join itself happens in :meth:`poll`.
        """
        if self._consumer is None:
            retry_connect("partials_owner", self.kafka, self._connect_once, stop,
                          logger=log, limiter=self._limiter)  # fmt: skip

    def _connect_once(self) -> bool:
        count = _ensure_topic(self.kafka, self.topic, self.requested_partitions,
                              self.retention_ms, self.max_bytes)  # fmt: skip
        consumer = build_consumer(
            **{**consumer_kwargs(self.kafka), "group_id": self.group_id},
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        try:
            producer = _producer(self.kafka, self.max_bytes)
        except BaseException:
            _close_consumer(consumer)
            raise
        try:
            consumer.subscribe(topics=[self.topic], listener=_Listener(self, consumer))
        except BaseException:
            _close_consumer(consumer)
            producer.close(timeout=0)
            raise
        self.partitions, self._consumer, self._producer = count, consumer, producer
        log.info("partials_owner_subscribed", topic=self.topic, group_id=self.group_id,
                 partitions=count)  # fmt: skip
        return True

    def close(self) -> None:
        """Leave the group at once (another member takes the partitions over in the next
        rebalance, not after a session timeout) and close the clients. ``on_change`` is
        not called: the caller knows it owns nothing any more."""
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            _close_consumer(consumer)
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # closing during an outage may fail; nothing to do
                log.debug("partials_owner_close_failed", error=_reason(exc))
        with self._lock:
            self._assignment.clear()
            self._unpositioned.clear()
            self._events.clear()
        self._notify.clear()
        self._owned = frozenset()
        self._needs_start.clear()
        self._resume.clear()
        self._fence.clear()
        self._fence_sends.clear()

    # ------------------------------------------------------------------ listener (I/O thread)
    def _assigned(self, partitions: set[int]) -> None:
        with self._lock:
            self._assignment |= partitions
            self._unpositioned |= partitions
            self._events.append((True, set(partitions)))

    def _revoked(self, partitions: set[int]) -> None:
        with self._lock:
            self._assignment -= partitions
            self._unpositioned -= partitions
            self._events.append((False, set(partitions)))

    # ------------------------------------------------------------------ ownership
    def owned(self) -> frozenset[int]:
        """The partials-topic partitions this member owns now (as of the last poll)."""
        return self._owned

    def owns_model(self, model: str) -> bool:
        """True when this member owns ``model``'s partition now."""
        partitions = self.partitions
        return partitions is not None and model_partition(model, partitions) in self._owned

    def caught_up(self, partition: int) -> bool:
        """True when everything written to ``partition`` before this member gained it has
        been read (returned by :meth:`poll`), from ``start_offset`` on.

        Known by a fence: on a gain the member appends a tombstone under its own key to
        the partition and waits until it reads past that record's offset (no end-offset
        query, which some brokers answer wrongly). False for a partition not owned, and
        while the fence is not yet written (broker outage).
        """
        if partition not in self._owned or partition in self._needs_start:
            return False
        fence, resume = self._fence.get(partition), self._resume.get(partition)
        return fence is not None and resume is not None and resume > fence

    # ------------------------------------------------------------------ reading
    def poll(self, timeout_s: float) -> list[PartialRecord]:
        """Records of the owned partitions, each partition's in offset order.

        Waits at most ``timeout_s`` for records. Handles rebalances (``on_change``, then
        ``start_offset`` for each gained partition) and fences. Never returns fences, nor
        a record of a partition not owned when it returns. Never raises on a broker
        outage: it logs at a rate limit and returns ``[]``.
        """
        consumer = self._consumer
        if consumer is None:
            time.sleep(timeout_s)
            return []
        try:
            self._apply_changes(consumer)
            self._tend_fences()
            batches = consumer.poll(
                timeout_ms=int(timeout_s * 1000), max_records=self.kafka.max_poll_records
            )
        except kafka_errors.KafkaError as exc:
            self._limiter.log(log, "warning", "poll", "partials_poll_failed",
                              topic=self.topic, error=_reason(exc))  # fmt: skip
            return []
        with self._lock:  # what the listener changed during that poll
            assignment, unpositioned = set(self._assignment), set(self._unpositioned)
        found: list[PartialRecord] = []
        for tp in sorted(batches, key=lambda t: t.partition):
            number = tp.partition
            if number not in assignment or number in unpositioned or number not in self._owned:
                continue  # revoked, or (re)assigned and read again once positioned
            for r in batches[tp]:
                self._resume[number] = r.offset + 1
                if r.key is None:
                    self._limiter.log(log, "warning", "keyless", "partials_record_without_key",
                                      partition=number, offset=r.offset)  # fmt: skip
                    continue
                if r.key.startswith(FENCE_PREFIX):
                    continue
                stamp = r.timestamp if r.timestamp is not None else -1
                found.append(PartialRecord(number, r.offset, r.key, r.value, stamp))
        try:
            self._apply_changes(consumer)  # on_change within the poll that saw the rebalance
            self._commit(consumer, bool(batches))
        except kafka_errors.KafkaError as exc:
            self._limiter.log(log, "warning", "poll", "partials_poll_failed",
                              topic=self.topic, error=_reason(exc))  # fmt: skip
        return [r for r in found if r.partition in self._owned]

    def _apply_changes(self, consumer: KafkaConsumer) -> None:
        """Report the rebalances seen since the last call (``on_change``), then position
        the partitions gained."""
        with self._lock:
            events, self._events = self._events, []
            unpositioned = set(self._unpositioned)
            assignment = set(self._assignment)
        # In order: a partition lost and given back is reported lost, then gained (two
        # calls), and read again from start_offset. Changes that do not overlap are merged.
        owned = set(self._owned)
        groups: list[tuple[set[int], set[int]]] = []
        gained: set[int] = set()
        lost: set[int] = set()
        for assigned, partitions in events:
            if assigned:
                new = partitions - owned
                if new & lost:
                    groups.append((gained, lost))
                    gained, lost = set(), set()
                gained |= new
                owned |= new
            else:
                gone = partitions & owned
                if gone & gained:
                    groups.append((gained, lost))
                    gained, lost = set(), set()
                lost |= gone
                owned -= gone
        groups.append((gained, lost))
        for change_gained, change_lost in groups:
            for number in change_lost:
                self._needs_start.discard(number)
                self._forget(number)
            self._needs_start |= change_gained
        self._owned = frozenset(owned)
        self._notify += [group for group in groups if group[0] or group[1]]
        while self._notify:  # those left by an on_change that raised come first
            change_gained, change_lost = self._notify.pop(0)
            log.info(
                "partials_ownership_changed", topic=self.topic, group_id=self.group_id,
                gained=sorted(change_gained), lost=sorted(change_lost), owned=sorted(owned),
            )  # fmt: skip
            self._on_change(set(change_gained), set(change_lost))
        if not unpositioned:
            return
        ready: list[TopicPartition] = []
        for number in sorted(unpositioned & assignment):
            tp = TopicPartition(self.topic, number)
            if number in self._needs_start:
                offset = self._start_offset(number)
                self._resume[number] = None if offset is None else int(offset)
                self._fence.pop(number, None)
                self._fence_sends.pop(number, None)
                self._needs_start.discard(number)
                self._send_fence(number)
                log.info("partials_partition_gained", topic=self.topic, partition=number,
                         start_offset="beginning" if offset is None else offset)  # fmt: skip
            offset = self._resume.get(number)  # given again while owned: read on
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
            ready.append(tp)
        with self._lock:
            self._unpositioned -= {tp.partition for tp in ready}
            still = [tp for tp in ready if tp.partition in self._assignment]
        if still:
            consumer.resume(*still)

    def _forget(self, number: int) -> None:
        self._resume.pop(number, None)
        self._fence.pop(number, None)
        self._fence_sends.pop(number, None)
        self._committed.pop(number, None)

    # ------------------------------------------------------------------ fences
    def _send_fence(self, number: int) -> None:
        producer = self._producer
        if producer is None:
            return
        try:
            self._fence_sends[number] = producer.send(
                self.topic, key=self._fence_key, value=None, partition=number
            )
        except kafka_errors.KafkaError as exc:
            self._limiter.log(log, "warning", "fence", "partials_fence_failed",
                              topic=self.topic, partition=number, error=_reason(exc))  # fmt: skip

    def _tend_fences(self) -> None:
        """Record the offsets of fences written; send again those that failed."""
        for number in sorted(self._owned - self._needs_start):
            if number in self._fence:
                continue
            future = self._fence_sends.get(number)
            if future is None:
                self._send_fence(number)
            elif future.is_done:
                if future.succeeded():
                    self._fence[number] = int(future.value.offset)
                    del self._fence_sends[number]
                else:
                    self._limiter.log(log, "warning", "fence", "partials_fence_failed",
                                      topic=self.topic, partition=number,
                                      error=_reason(future.exception))  # fmt: skip
                    self._send_fence(number)

    # ------------------------------------------------------------------ offsets (lag only)
    def _commit(self, consumer: KafkaConsumer, read: bool) -> None:
        if not read:
            return
        offsets = {
            TopicPartition(self.topic, number): OffsetAndMetadata(offset, "", -1)
            for number, offset in self._resume.items()
            if offset is not None
            and number in self._owned
            and self._committed.get(number) != offset
        }
        if not offsets:
            return
        for tp, meta in offsets.items():
            self._committed[tp.partition] = meta.offset
        consumer.commit_async(offsets=offsets, callback=self._committed_cb)

    def _committed_cb(self, _offsets: Any, response: Any) -> None:
        if isinstance(response, BaseException):
            self.commit_failures += 1
            self._limiter.log(log, "info", "commit", "partials_commit_failed",
                              group_id=self.group_id, error=_reason(response),
                              note="lag reporting only")  # fmt: skip


def _close_consumer(consumer: KafkaConsumer) -> None:
    try:
        consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))
    except Exception as exc:  # closing during an outage may fail; nothing to do about it
        log.debug("partials_owner_close_failed", error=_reason(exc))
