"""The input side on confluent-kafka (librdkafka): the same contract as :class:`KafkaSource`.

:class:`ConfluentSource` is chosen with ``[kafka] client = "confluent"``. It reads several
times more messages per second than kafka-python: librdkafka fetches and decompresses on
its own threads, and ``consume(n, timeout)`` hands over a whole batch per call.

How it maps onto the :class:`~monitor.kafka.source.Source` contract:

- **Rebalances** are eager (librdkafka's default assignors). librdkafka runs the
  ``on_assign``/``on_revoke``/``on_lost`` callbacks inside ``consume``, on the thread that
  calls :meth:`ConfluentSource.poll`. Newly assigned partitions stay paused until the next
  :meth:`~ConfluentSource.poll`, so the caller sees the assignment
  (``take_assignment_changes``) and installs their state before their first message (the
  engine must track a partition before its events move the watermark; replicas restore
  it from the store). That poll asks ``start_offsets`` and seeks each one to the offset
  its state gives (without one: the group's committed offset, then the earliest record)
  before resuming it. A batch during which a rebalance happened drops what it read of
  the partitions that left, and holds back what it read of those assigned again, unless
  their seek says to read them again.
- **Commits** are of explicit offsets and synchronous for the caller, bounded by
  ``timeout_s``: sent asynchronously, then confirmed by reading the group's offsets back
  (``committed``, which takes a timeout). librdkafka's own synchronous commit cannot be
  bounded, and while it waits for a frozen broker every other call on the consumer waits.
- **Lag** is the high watermark librdkafka cached from the last fetch response (the
  broker's "latest offset" lookups are wrong on Tansu) minus the position of the next
  message :meth:`poll` will return; with ``enable.partition.eof`` the end-of-partition
  events also give the position of a partition that had nothing to read.
- **Outages** never raise out of ``poll``, ``commit``, ``lag`` or ``caught_up``: errors are
  logged at a rate limit and the call answers empty or false; librdkafka reconnects on its
  own. ``connect`` maps librdkafka's errors to kafka-python's so that the shared retry
  loop (:func:`~monitor.kafka.client_config.retry_connect`) waits them out the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from kafka import errors as kafka_errors

from monitor import native
from monitor.config import KafkaConfig
from monitor.events.message import Message, MessageBatch
from monitor.kafka.client_config import LogLimiter, confluent_consumer_config, retry_connect
from monitor.kafka.common import FETCH_MAX_WAIT_MS, TP, BackgroundConnect, StartOffsets
from monitor.kafka.topics import check_copartitioning

__all__ = ["ConfluentSource"]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

#: How long one attempt waits for the broker's metadata once its port accepts connections.
BOOTSTRAP_TIMEOUT_S = 10.0
#: Longest wait for the consumer to leave the group on close (the daemon must stop in 10 s).
CLOSE_TIMEOUT_S = 3.0
#: How often librdkafka reports its statistics (answers received: broker liveness).
STATS_INTERVAL_MS = 1000
#: Pause between two reads of the group's offsets while a commit is not confirmed yet.
COMMIT_CHECK_S = 0.05
#: Longest wait for the group's committed offsets of newly assigned partitions, per poll
#: (a partition whose offsets do not come stays paused and is asked again at the next poll).
COMMITTED_TIMEOUT_S = 2.0
#: librdkafka's own log lines go to this stdlib logger (under ``kafka``, like kafka-python's).
RDKAFKA_LOGGER = "kafka.librdkafka"
_EOF = KafkaError._PARTITION_EOF


class _RateLimit(logging.Filter):
    """Lets librdkafka's lines through at most once per ``interval_s`` per facility.

    librdkafka logs every failed reconnection (``FAIL``) at error level: one line per
    attempt during an outage. The next line let through carries ``suppressed=N``.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        facility = str(record.msg).split(" ", 1)[0]
        now = time.monotonic()
        if now - self._last.get(facility, -math.inf) < self.interval_s:
            self._held[facility] = self._held.get(facility, 0) + 1
            return False
        self._last[facility] = now
        held = self._held.pop(facility, 0)
        if held:
            record.msg = f"{record.msg} (suppressed={held})"
        return True


_RDKAFKA_LOG = logging.getLogger(RDKAFKA_LOGGER)
_RDKAFKA_LOG.addFilter(_RateLimit())


class _TopicCounts:
    """A metadata snapshot answering as a consumer would, for ``check_copartitioning``."""

    def __init__(self, topics: dict[str, Any]) -> None:
        self._partitions = {
            name: set(meta.partitions) for name, meta in topics.items() if meta.error is None
        }

    def topics(self) -> set[str]:
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self._partitions.get(topic)


class ConfluentSource:
    """A member of the consumer group ``cfg.group_id`` on confluent-kafka, reading both inputs.

    Parameters
    ----------
    cfg
        The ``[kafka]`` section of the configuration.
    start_offsets
        ``start_offsets(topic, partition)``: the next offset to read per the checkpoint,
        or None for the group's committed offset (the earliest record without one).
        Called once per assignment of a partition, from the thread that calls
        :meth:`poll`, before the partition is fetched.

    Examples
    --------
    The same run loop as :class:`~monitor.kafka.source.KafkaSource`'s::

        source = ConfluentSource(cfg.kafka, start_offsets=store.next_offset)
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
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()
        self._assigned: set[TP] = set()
        #: The assignment, kept from the callbacks (``Consumer.assignment`` is a round trip
        #: through librdkafka's main thread).
        self._owned: set[TP] = set()
        self._revoked: set[TP] = set()
        self._user_paused: set[TP] = set()
        #: Partitions (re)assigned or revoked during the current ``consume`` call.
        self._touched: set[TP] = set()
        #: Next offset known without a consumed message: the checkpoint's, or end of partition.
        self._known_position: dict[TP, int] = {}
        #: Start offsets asked of the caller for partitions whose seek failed (retried).
        self._start_at: dict[TP, int | None] = {}
        #: The group's committed offsets (``OFFSET_BEGINNING`` where none is) of partitions
        #: without a start offset, asked once per assignment, kept until their seek.
        self._committed: dict[TP, int] = {}
        #: Assigned (and paused) during a ``consume``: resumed at the start of the next poll,
        #: after the caller has seen the assignment.
        self._pending: set[TP] = set()
        #: Records read during a rebalance of partitions assigned in it: the next poll's.
        self._held: list[Any] = []
        #: Offsets below these were handed over already: dropped when read again.
        self._guard: dict[TP, int] = {}
        self._limiter = LogLimiter(10.0)
        #: Responses received from the brokers so far, and when that count last grew.
        self._received = 0
        self._last_answer: float | None = None
        #: The background connect of :meth:`start_connect`, until :meth:`connect` takes over,
        #: and the consumer it built (``_consumer`` stays None until then).
        self._background: BackgroundConnect | None = None
        self._joining: Consumer | None = None
        #: Partition count of each input topic, known after :meth:`connect`.
        self.partitions: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once :meth:`connect` has returned with a consumer (and until :meth:`close`)."""
        return self._consumer is not None

    def connect(self, stop: threading.Event) -> None:
        """Create the consumer and subscribe, waiting out a broker that is not up yet.

        Retries as :meth:`KafkaSource.connect <monitor.kafka.source.KafkaSource.connect>`
        does (0.5 s doubling to 30 s, logged at a rate limit) and returns early,
        unconnected, when ``stop`` is set.

        Raises
        ------
        TopicLayoutError
            When an input topic is missing or the partition counts differ.
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

    def start_connect(self, stop: threading.Event) -> None:
        """Begin :meth:`connect` on a background thread and return at once.

        librdkafka joins the group on its own threads once subscribed, so the join goes
        on while the caller loads its state; the assignment is then served by the first
        :meth:`poll` after :meth:`connect` (which waits for this thread) has taken over.
        """
        if self._consumer is not None or self._background is not None:
            return

        def connect(_handoff: threading.Event) -> None:
            self._joining = self._retry_connect(stop)

        self._background = BackgroundConnect(connect)

    def _retry_connect(self, stop: threading.Event) -> Consumer | None:
        consumer = retry_connect(
            "source", self.cfg, self._connect_once, stop, logger=log, limiter=self._limiter
        )
        if consumer is not None:
            log.info(
                "kafka_source_subscribed",
                client="confluent",
                group_id=self.cfg.group_id,
                topics=[self.cfg.predictions_topic, self.cfg.labels_topic],
                partitions=self.partitions,
            )
        return consumer

    def _connect_once(self) -> Consumer:
        conf = confluent_consumer_config(self.cfg)
        conf["error_cb"] = self._on_error
        conf["stats_cb"] = self._on_stats
        conf["statistics.interval.ms"] = STATS_INTERVAL_MS
        conf["logger"] = _RDKAFKA_LOG
        conf["fetch.wait.max.ms"] = FETCH_MAX_WAIT_MS
        consumer = Consumer(conf)
        try:
            try:
                # All topics: naming one would let a broker that ignores the no-create
                # flag (Tansu) create it.
                metadata = consumer.list_topics(timeout=BOOTSTRAP_TIMEOUT_S)
            except KafkaException as exc:
                raise kafka_errors.KafkaConnectionError(f"metadata: {exc}") from exc
            self.partitions = check_copartitioning(self.cfg, _TopicCounts(metadata.topics))
            consumer.subscribe(
                [self.cfg.predictions_topic, self.cfg.labels_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
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
                background.wait(CLOSE_TIMEOUT_S)
        consumer, self._consumer, self._joining = self._consumer or self._joining, None, None
        if consumer is not None:
            _close_quietly(consumer)
        with self._lock:
            self._owned.clear()
            self._user_paused.clear()
            self._known_position.clear()
            self._pending.clear()
            self._held.clear()
            self._guard.clear()
            self._start_at.clear()
            self._committed.clear()

    # -- callbacks (run by librdkafka inside consume, on the polling thread) ----------------

    def _on_error(self, error: KafkaError) -> None:
        self._limiter.log(
            log, "warning", f"error-{error.code()}", "kafka_client_error",
            client="confluent", error=error.str(), fatal=error.fatal(),
        )  # fmt: skip

    def _on_stats(self, text: str) -> None:
        try:
            brokers = json.loads(text).get("brokers", {})
            received = sum(int(b.get("rx", 0)) for b in brokers.values())
        except (ValueError, TypeError, AttributeError):
            return
        if received > self._received:
            self._received = received
            self._last_answer = time.monotonic()

    def broker_silent_s(self) -> float:
        """Seconds since a broker last answered anything (0 before the first statistics).

        From librdkafka's statistics (responses received per broker, every second): a
        live broker answers a fetch at least every ``fetch.wait.max.ms``. A frozen one
        accepts connections and the cached watermarks still say "caught up": this is
        what gives it away (``/readyz``).
        """
        if self._consumer is None or self._last_answer is None:
            return 0.0
        return max(0.0, time.monotonic() - self._last_answer)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys: set[TP] = set()
        for tp in partitions:
            key = (tp.topic, tp.partition)
            keys.add(key)
            # Positioned at the next poll (``_resume_pending``), once the caller has learnt
            # of the assignment and installed the partition's state.
            tp.offset = OFFSET_INVALID
            with self._lock:
                self._known_position.pop(key, None)
        consumer.assign(partitions)
        # Held until the next poll, as KafkaSource does: the caller learns of the assignment
        # (take_assignment_changes) before it gets any message of these partitions.
        consumer.pause(partitions)
        with self._lock:
            self._owned = keys
            self._assigned |= keys
            self._touched |= keys
            self._pending |= keys

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        with self._lock:
            self._owned = set()
            self._assigned -= keys
            self._revoked |= keys
            self._touched |= keys
            self._user_paused -= keys
            for key in keys:
                self._known_position.pop(key, None)
                self._guard.pop(key, None)
                self._start_at.pop(key, None)
                self._committed.pop(key, None)
            self._pending -= keys
            self._held = [m for m in self._held if (m.topic(), m.partition()) not in keys]
        consumer.unassign()  # eager protocol: everything goes; the assignment brings some back

    def take_assignment_changes(self) -> tuple[set[TP], set[TP]]:
        """Partitions assigned and revoked since the last call, as ``(assigned, revoked)``.

        The same meaning as :meth:`KafkaSource.take_assignment_changes
        <monitor.kafka.source.KafkaSource.take_assignment_changes>`.
        """
        with self._lock:
            assigned, revoked = self._assigned, self._revoked
            self._assigned, self._revoked = set(), set()
        return assigned, revoked

    # -- reading ---------------------------------------------------------------------------

    def poll(self, timeout_ms: int) -> Sequence[Message]:
        """One ``consume``: up to ``cfg.max_poll_records`` messages within ``timeout_ms``.

        Each partition's messages come in offset order (partitions interleaved as
        librdkafka fetched them). A null header value becomes ``b""``; a message without a
        timestamp has ``timestamp_ms == -1``. Never raises on a broker outage: it logs at
        a rate limit and returns ``[]``.
        """
        consumer = self._consumer
        if consumer is None:
            time.sleep(timeout_ms / 1000)
            return []
        try:
            if self._pending:
                self._resume_pending(consumer)
            # Any: the stubs type every field optional, which only error messages are.
            # What the fetcher has queued, at once; only when nothing is, wait for the
            # first message, then take what came with it. (``consume`` waits until it has
            # the number asked for or the timeout passes: asked straight away, a poll
            # would wait for a full batch while the core idles.)
            most = self.cfg.max_poll_records
            batch: list[Any] = consumer.consume(most, 0)
            if not batch:
                batch = consumer.consume(1, timeout_ms / 1000)
                if batch and most > 1:
                    batch += consumer.consume(most - 1, 0)
        except KafkaException as exc:
            self._limiter.log(log, "warning", "poll", "kafka_poll_failed", error=str(exc))
            return []
        if not batch and not self._held:
            return []
        with self._lock:
            touched, self._touched = self._touched, set()
            waiting = touched | self._pending
        held, self._held = self._held, []
        # Columns straight from librdkafka's records, a whole Message only for the few the
        # core rejects.
        topics, partitions, offsets, values, stamps, rows, errors, last = _record_columns(
            held + batch if held else batch
        )
        for m in errors:
            self._on_message_error(m, m.error())
        if (waiting or self._guard or held) and topics:
            keep = self._sort_out(topics, partitions, offsets, rows, len(held), waiting)
            if len(keep) < len(topics):
                topics, partitions = _pick(topics, keep), _pick(partitions, keep)
                offsets, values = _pick(offsets, keep), _pick(values, keep)
                stamps, rows = _pick(stamps, keep), _pick(rows, keep)
                last = {}
                for j, key in enumerate(zip(topics, partitions, strict=True)):
                    last[key] = j
        if not topics:  # error records only (a partition's end, a broker's complaint)
            return []
        return MessageBatch(
            topics, partitions, offsets, values,
            lambda i: _message(rows[i]), stamps, last=last,
        )  # fmt: skip

    def _sort_out(self, topics: list[str], partitions: list[int], offsets: list[int],
                  rows: list[Any], held: int, waiting: set[TP]) -> list[int]:  # fmt: skip
        """The rows of a batch to hand over when a rebalance touched some partitions during
        its ``consume``, a partition waits for its start position, an offset guard is up or
        the last poll held records back (its first ``held`` rows).

        A row below its partition's guard was handed over already, or lies before the
        position a seek gave: dropped (the guard of records held back is theirs). What the
        batch read of a partition no longer assigned is dropped (the new owner reads it).
        What it read of one assigned (again) during the call, or not positioned yet (its
        seek failed), is held back to a later poll, so that the caller sees the assignment
        first: dropped if the seek then positions the partition (the fetcher reads again
        from there), else handed over. The fetcher may read such records again: the guard,
        the offset after the last one held, drops them then."""
        guard = self._guard
        owned = self.assignment() if waiting else set()
        keep = []
        for i in range(len(topics)):
            key = (topics[i], partitions[i])
            floor = guard.get(key) if i >= held else None
            if floor is not None:
                if offsets[i] < floor:
                    continue
                del guard[key]
            if key not in waiting:
                keep.append(i)
            elif key in owned:
                self._held.append(rows[i])
                guard[key] = offsets[i] + 1
        return keep

    def _resume_pending(self, consumer: Consumer) -> None:
        """Position the partitions assigned since the last poll and resume them. It runs at
        the poll after the one that saw the assignment, so the caller has learnt of it
        (``take_assignment_changes``) and installed the partitions' state, which may come
        from a store ahead of the group's committed offsets (replicas).

        Every partition is positioned by a seek: at its ``start_offsets``, else at the
        group's committed offset, else at its earliest record. None is left to the
        position ``assign`` gave it: librdkafka can lose that position for a partition
        paused right after its assignment (the pause outdates the fetcher's start), and
        the partition then reads nothing. A partition whose seek fails (librdkafka has
        not applied the assignment yet), or whose committed offset does not come, stays
        paused and is tried again at the next poll. What an earlier call held back of a
        partition is dropped at its seek: the fetcher reads it again from there."""
        with self._lock:
            pending = sorted(self._pending)
        for key in pending:
            if key not in self._start_at:  # asked once per assignment, kept for a retry
                self._start_at[key] = self._start_offsets(*key)
        failed = self._committed_starts(
            consumer, [key for key in pending if self._start_at[key] is None]
        )
        for key in pending:
            if key in failed:
                continue
            offset = self._start_at[key]
            where = self._committed[key] if offset is None else offset
            try:
                consumer.seek(TopicPartition(key[0], key[1], int(where)))
            except KafkaException as exc:  # tried again at the next poll, still paused
                failed.add(key)
                self._limiter.log(log, "info", f"seek-{key}", "kafka_seek_retried",
                                  topic=key[0], partition=key[1], error=str(exc))  # fmt: skip
                continue
            self._held = [m for m in self._held if (m.topic(), m.partition()) != key]
            if offset is not None:
                # (not at a committed offset: one past the partition's end resets to its
                # start, whose records a guard would drop)
                with self._lock:
                    # what the fetcher had read before the seek may still come: dropped
                    self._guard[key] = int(offset)
                    self._known_position[key] = int(offset)
            del self._start_at[key]
            self._committed.pop(key, None)
            log.info(
                "kafka_partition_assigned", topic=key[0], partition=key[1],
                start_offset=offset if offset is not None else "committed",
                position=int(where) if where >= 0 else "earliest",
            )  # fmt: skip
        with self._lock:
            ready = sorted(self._pending - self._user_paused - failed)
            self._pending &= failed
        if ready:
            consumer.resume([TopicPartition(t, p) for t, p in ready])

    def _committed_starts(self, consumer: Consumer, keys: list[TP]) -> set[TP]:
        """Ask the group's committed offsets of ``keys`` not asked yet, kept in
        ``_committed`` until the partition's seek (``OFFSET_BEGINNING`` where the group
        committed none). Returns the partitions whose answer did not come."""
        ask = [key for key in keys if key not in self._committed]
        if not ask:
            return set()
        try:
            got = consumer.committed(
                [TopicPartition(t, p) for t, p in ask], timeout=COMMITTED_TIMEOUT_S
            )
        except (KafkaException, RuntimeError) as exc:
            self._limiter.log(
                log, "info", "committed-starts", "kafka_committed_retried",
                partitions=len(ask), error=str(exc) or type(exc).__name__,
            )  # fmt: skip
            return set(ask)
        failed: set[TP] = set()
        answered: set[TP] = set()
        for tp in got:
            key = (tp.topic, tp.partition)
            answered.add(key)
            if tp.error is not None:
                failed.add(key)
            elif tp.offset >= 0:
                self._committed[key] = int(tp.offset)
            else:  # nothing committed
                self._committed[key] = OFFSET_BEGINNING
        failed |= set(ask) - answered
        if failed:
            self._limiter.log(
                log, "info", "committed-starts", "kafka_committed_retried",
                partitions=len(failed), error="no answer for some partitions",
            )  # fmt: skip
        return failed

    def _on_message_error(self, m: Any, error: KafkaError) -> None:
        if error.code() == _EOF:
            with self._lock:
                self._known_position[(m.topic(), m.partition())] = int(m.offset())
            return
        self._limiter.log(
            log, "warning", f"message-{error.code()}", "kafka_fetch_error",
            topic=m.topic(), partition=m.partition(), error=error.str(),
        )  # fmt: skip

    def assignment(self) -> set[TP]:
        """The partitions this member holds now."""
        if self._consumer is None:
            return set()
        with self._lock:
            return set(self._owned)

    # -- offsets ---------------------------------------------------------------------------

    def commit(self, offsets: dict[TP, int], *, timeout_s: float = 10.0) -> bool:
        """Commit next-offsets (last processed + 1) to the group, for assigned partitions only.

        Waits at most ``timeout_s`` for the broker to confirm. Returns False, and logs,
        when the commit fails or is not confirmed in time; never raises.
        """
        consumer = self._consumer
        if consumer is None:
            return False
        owned = self.assignment()
        to_commit = [
            TopicPartition(topic, partition, int(offset))
            for (topic, partition), offset in sorted(offsets.items())
            if (topic, partition) in owned
        ]
        if not to_commit:
            return True
        deadline = time.monotonic() + timeout_s
        error = ""
        try:
            # Asynchronous, then confirmed by reading the group's offsets back: librdkafka's
            # synchronous commit cannot be bounded, and while one waits for an unresponsive
            # broker every other call on the consumer (consume included) waits with it.
            consumer.commit(offsets=to_commit, asynchronous=True)
            wanted = {(tp.topic, tp.partition): tp.offset for tp in to_commit}
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    error = error or f"not confirmed within {timeout_s} s"
                    break
                got = consumer.committed(
                    [TopicPartition(t, p) for t, p in wanted], timeout=remaining
                )
                behind = [
                    tp
                    for tp in got
                    if tp.error is not None or tp.offset < wanted[tp.topic, tp.partition]
                ]
                if not behind:
                    return True
                first = behind[0]
                error = f"{first.topic}[{first.partition}] at {first.offset}: {first.error}"
                time.sleep(min(COMMIT_CHECK_S, max(0.0, deadline - time.monotonic())))
        except (KafkaException, RuntimeError) as exc:
            error = str(exc) or type(exc).__name__
        self._limiter.log(
            log, "warning", "commit", "kafka_commit_failed",
            error=error, partitions=len(to_commit),
        )  # fmt: skip
        return False

    def lag(self) -> dict[TP, int]:
        """Records not yet read, per assigned partition: high watermark minus position.

        The high watermark is the one librdkafka cached from the last fetch response; the
        position is that of the next message :meth:`poll` returns (or the checkpoint's
        offset, or the end of the partition, before any message). A partition whose
        watermark or position is not known yet is left out.
        """
        consumer = self._consumer
        if consumer is None:
            return {}
        result: dict[TP, int] = {}
        try:
            with self._lock:
                pending = set(self._pending)
            owned = sorted(self.assignment() - pending)
            positions = consumer.position([TopicPartition(t, p) for t, p in owned])
            with self._lock:
                known = dict(self._known_position)
            for tp in positions:
                key = (tp.topic, tp.partition)
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                if high is None or high < 0:
                    continue
                position = max(tp.offset, known.get(key, -1))
                if position < 0 and low == high:
                    # Nothing stored: nothing to read wherever the fetcher stands. (A start
                    # past the end, e.g. offsets kept across a topic's re-creation, is reset
                    # to the earliest record and brings no end-of-partition event.)
                    position = high
                if position < 0:
                    continue
                result[key] = max(0, int(high) - int(position))
        except (KafkaException, RuntimeError) as exc:
            self._limiter.log(log, "warning", "lag", "kafka_lag_failed", error=str(exc))
        return result

    def caught_up(self) -> bool:
        """True when every assigned partition has been fetched and has nothing left to read.

        Vacuously true when nothing is assigned; check :meth:`assignment` too.
        """
        if self._consumer is None:
            return False
        owned = self.assignment()
        lag = self.lag()
        return all(lag.get(tp) == 0 for tp in owned)

    # -- backpressure ----------------------------------------------------------------------

    def pause(self, partitions: Iterable[TP]) -> None:
        """Stop fetching these partitions until :meth:`resume` (or until they are revoked)."""
        keys = set(partitions)
        with self._lock:
            self._user_paused |= keys
        self._apply(keys, pause=True)

    def resume(self, partitions: Iterable[TP]) -> None:
        """Fetch these partitions again."""
        keys = set(partitions)
        with self._lock:
            self._user_paused -= keys
            keys -= self._pending
        self._apply(keys, pause=False)

    def _apply(self, keys: set[TP], *, pause: bool) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        tps = [TopicPartition(t, p) for t, p in sorted(keys & self.assignment())]
        if not tps:
            return
        try:
            if pause:
                consumer.pause(tps)
            else:
                consumer.resume(tps)
        except KafkaException as exc:
            self._limiter.log(log, "warning", "pause", "kafka_pause_failed", error=str(exc))

    def paused(self) -> set[TP]:
        """Partitions paused by :meth:`pause` and still assigned."""
        with self._lock:
            held = set(self._user_paused)
        return held & self.assignment()


def _close_quietly(consumer: Consumer, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close, waiting at most ``timeout_s``: with the broker down, librdkafka's close waits
    for the group session to expire. The close goes on in the background after that."""

    def run() -> None:
        try:
            consumer.close()
        except Exception as exc:  # closing during an outage may fail; nothing to do about it
            log.debug("kafka_consumer_close_failed", error=str(exc))

    thread = threading.Thread(target=run, name="monitor-consumer-close", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        log.warning("kafka_consumer_close_slow", waited_s=timeout_s)


#: What :func:`_record_columns` returns: the columns (topics, partitions, offsets, values,
#: record timestamps), the records they are of, the records with an error, and the row of
#: each (topic, partition)'s last record.
RecordColumns = tuple[
    list[str],
    list[int],
    list[int],
    list[bytes | None],
    list[int],
    list[Any],
    list[Any],
    dict[TP, int],
]


def _record_columns(records: list[Any]) -> RecordColumns:
    """One ``consume``'s librdkafka records as the columns of a :class:`MessageBatch`: of
    each record without an error, its topic, partition, offset, value and timestamp (ms,
    -1 when it has none), with the records they are of; the records that carry an error
    (end of partition, fetch errors), in order; and the row of each (topic, partition)'s
    last record, the pairs in order of first appearance (what the run loop keeps per
    partition). In one compiled pass over the records when ``monitor._native`` is built,
    else in Python with the same results."""
    kernels = native.kernels()
    if kernels is not None:
        columns: RecordColumns = kernels.record_columns(records)
        return columns
    errors = [m for m in records if m.error() is not None]
    kept = [m for m in records if m.error() is None] if errors else list(records)
    topics = [m.topic() for m in kept]
    partitions = [m.partition() for m in kept]
    last = dict(zip(zip(topics, partitions, strict=True), range(len(kept)), strict=True))
    return (
        topics, partitions, [m.offset() for m in kept], [m.value() for m in kept],
        [m.timestamp()[1] for m in kept], kept, errors, last,
    )  # fmt: skip


def _pick(column: list[_T], rows: list[int]) -> list[_T]:
    """The items ``rows`` of ``column``, in that order."""
    return [column[i] for i in rows]


def _message(m: Any) -> Message:
    """A :class:`Message` from a librdkafka record (a null header value becomes ``b""``)."""
    headers = m.headers()
    return Message(
        m.topic(),
        m.partition(),
        m.offset(),
        m.key(),
        m.value(),
        [(k, b"" if v is None else v) for k, v in headers] if headers else [],
        m.timestamp()[1],
    )
