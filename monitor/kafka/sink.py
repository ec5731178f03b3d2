"""The output side: a producer for alert events and dead letters.

:class:`KafkaSink` wraps a kafka-python ``KafkaProducer`` (acks from all
in-sync replicas, idempotent, retried until the delivery timeout). Records
wait in the producer's buffer through a broker outage; :meth:`KafkaSink.flush`
says whether everything handed over since the previous flush was delivered,
which is what a checkpoint needs before it commits input offsets (flush the
sinks, write the state, commit: any failure leaves the offsets where they were).

When the producer reaches a state it cannot recover from (for example a broker
that lost its idempotent-producer state, as a restarted Tansu does), its
pending records fail and the next send builds a new producer.

Backpressure: a record whose delivery fails (the broker refuses the topic's
writes, the delivery timeout passes, the producer had to be rebuilt) is kept and
sent again by the next :meth:`KafkaSink.flush`, never dropped; only a record the
client can never send (larger than the largest request) is dropped, counted and
logged. :attr:`KafkaSink.blocked` tells the run loop to stop consuming while
records wait to be sent again, or while more than ``max_backlog`` are in
flight, or the oldest has waited more than ``stall_s``, so that the backlog
stays bounded; :meth:`KafkaSink.flush` returning
True says the backlog is gone.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any, NamedTuple

import structlog
from kafka import KafkaProducer
from kafka import errors as kafka_errors

from monitor.config import KafkaConfig
from monitor.events.message import Reject
from monitor.kafka.client_config import (
    LogLimiter,
    accepts_tcp,
    producer_kwargs,
    retry_connect,
)

__all__ = ["KafkaSink"]

log = structlog.get_logger(__name__)

#: How long one connection attempt waits for the broker's metadata.
BOOTSTRAP_TIMEOUT_MS = 10_000
#: Records in flight (handed to the producer, not yet acknowledged) above which the sink
#: says it is blocked: the run loop stops consuming until they are delivered.
MAX_BACKLOG = 50_000
#: A record in flight this long (seconds) without an answer means the broker is not taking
#: writes (frozen, partitioned away): the sink says it is blocked.
STALL_S = 5.0
#: Errors that sending again cannot cure: the record is dropped and counted.
_PERMANENT = (kafka_errors.MessageSizeTooLargeError,)


class _Record(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class KafkaSink:
    """Sends records to Kafka, counting the ones that could not be delivered.

    Parameters
    ----------
    cfg
        The ``[kafka]`` section: connection settings, alert and dead-letter topics.
    max_block_s
        Longest a :meth:`send` may block waiting for a topic's metadata (only
        when the topic was never seen and the broker is unreachable).
    delivery_timeout_s
        How long a record may wait in the buffer (broker down) before it fails.

    Attributes
    ----------
    failed : int
        Failed delivery attempts, since the sink was created (a record sent again
        and failing again counts again).
    delivered : int
        Records acknowledged by the broker, since the sink was created.
    dropped : int
        Records given up on: the client can never send them (too large).

    Examples
    --------
    ::

        sink = KafkaSink(cfg.kafka)
        sink.connect(stop)
        sink.send_dead_letter(reject)
        if sink.flush(10.0):
            ...  # safe to checkpoint
        sink.close()
    """

    def __init__(
        self,
        cfg: KafkaConfig,
        *,
        max_block_s: float = 5.0,
        delivery_timeout_s: float = 120.0,
        max_backlog: int = MAX_BACKLOG,
        stall_s: float = STALL_S,
    ) -> None:
        self.cfg = cfg
        self.max_block_s = max_block_s
        self.delivery_timeout_s = delivery_timeout_s
        self.max_backlog = max_backlog
        self.stall_s = stall_s
        self.failed = 0
        self.delivered = 0
        self.dropped = 0
        self._dropped_at_flush = 0
        self._ids = itertools.count()
        #: Records handed to the producer and not yet acknowledged, by send id, with the
        #: monotonic time they were handed over (oldest first).
        self._in_flight: dict[int, tuple[_Record, float]] = {}
        #: Records whose delivery failed, in the order they were first sent.
        self._retry: deque[_Record] = deque()
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._limiter = LogLimiter(10.0)

    @property
    def connected(self) -> bool:
        """True while a producer exists."""
        return self._producer is not None

    @property
    def backlog(self) -> int:
        """Records not yet delivered: in flight, or failed and waiting to be sent again."""
        with self._lock:
            return len(self._in_flight) + len(self._retry)

    @property
    def blocked(self) -> bool:
        """True while records wait to be sent again, more than ``max_backlog`` are in
        flight, or the oldest in flight has waited more than ``stall_s``: the caller
        should stop producing more (stop consuming) until a :meth:`flush` returns True."""
        with self._lock:
            if self._retry or len(self._in_flight) > self.max_backlog:
                return True
            oldest = next(iter(self._in_flight.values()), None)
        return oldest is not None and time.monotonic() - oldest[1] > self.stall_s

    def _build(self) -> KafkaProducer:
        request_timeout_ms = 30_000
        producer = KafkaProducer(
            **producer_kwargs(self.cfg),
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            max_block_ms=int(self.max_block_s * 1000),
            request_timeout_ms=request_timeout_ms,
            delivery_timeout_ms=max(int(self.delivery_timeout_s * 1000), request_timeout_ms + 5),
        )
        for topic in dict.fromkeys((self.cfg.alerts_topic, self.cfg.dead_letter_topic)):
            try:  # learn the output topics' layout now, while the broker is known to be up
                producer.partitions_for(topic)
            except kafka_errors.KafkaError as exc:
                log.warning("kafka_sink_topic_unavailable", topic=topic, error=str(exc))
        return producer

    def connect(self, stop: threading.Event) -> None:
        """Create the producer, waiting out a broker that is not up yet.

        Backs off like the source (0.5 s doubling to 30 s) and returns early,
        unconnected, when ``stop`` is set.
        """
        if self._producer is None:
            self._producer = retry_connect(
                "sink", self.cfg, self._build, stop, logger=log, limiter=self._limiter
            )

    def _ensure_producer(self) -> KafkaProducer | None:
        producer = self._producer
        if producer is not None and _fatal(producer):
            log.warning("kafka_sink_producer_reset", reason="fatal producer error")
            self._producer = None
            with self._lock:  # whatever the old producer still holds is sent again
                self._retry.extend(record for record, _ in self._in_flight.values())
                self._in_flight.clear()
            _close_quietly(producer, 0.0)
            producer = None
        if producer is None:
            servers = producer_kwargs(self.cfg)["bootstrap_servers"]
            if not any(accepts_tcp(server, 0.5) for server in servers):
                return None
            try:
                producer = self._producer = self._build()
            except kafka_errors.KafkaError as exc:
                self._limiter.log(log, "warning", "build", "kafka_unavailable", error=str(exc))
                return None
        return producer

    def _on_success(self, _metadata: Any, ident: int = -1) -> None:
        with self._lock:
            self._in_flight.pop(ident, None)
            self.delivered += 1

    def _on_error(self, exc: BaseException, ident: int = -1, record: _Record | None = None) -> None:
        """A failed delivery: the record waits to be sent again, unless it never can be."""
        with self._lock:
            self.failed += 1
            if ident >= 0:
                sent = self._in_flight.pop(ident, None)
                record = sent[0] if sent is not None else record
            if record is not None:
                if isinstance(exc, _PERMANENT):
                    self.dropped += 1
                else:
                    self._retry.append(record)
        self._limiter.log(
            log, "error", "send", "kafka_send_failed",
            topic=record.topic if record else "", error=str(exc) or type(exc).__name__,
            failed_total=self.failed, dropped_total=self.dropped,
        )  # fmt: skip

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> bool:
        """Hand one record to the producer; True when it was accepted into the buffer.

        Delivery happens in the background; a record that cannot be delivered
        (delivery timeout, broker refusal, no producer) adds to ``failed`` and
        waits to be sent again by :meth:`flush` (which returns False until it is
        delivered); one the client can never send (too large) is dropped. Never
        raises on Kafka errors.
        """
        if key is None and value is None:
            value = b""  # Kafka needs a key or a value
        return self._send(_Record(topic, key, value, list(headers or [])))

    def _send(self, record: _Record) -> bool:
        producer = self._ensure_producer()
        if producer is None:
            self._on_error(kafka_errors.KafkaConnectionError("no producer"), record=record)
            return False
        ident = next(self._ids)
        with self._lock:
            self._in_flight[ident] = (record, time.monotonic())
        try:
            future = producer.send(
                record.topic, value=record.value, key=record.key, headers=list(record.headers)
            )
        except (kafka_errors.KafkaError, ValueError, TypeError) as exc:
            if not isinstance(exc, kafka_errors.KafkaError):
                exc = kafka_errors.MessageSizeTooLargeError(str(exc))  # a record it cannot take
            self._on_error(exc, ident)
            return False
        future.add_callback(self._on_success, ident=ident)
        future.add_errback(self._on_error, ident=ident)
        return True

    def send_dead_letter(self, reject: Reject) -> bool:
        """Copy a rejected message to ``cfg.dead_letter_topic``: original key and bytes,
        original headers plus the reason and source coordinates."""
        message = reject.message
        return self.send(
            self.cfg.dead_letter_topic, message.key, message.value, reject.dead_letter_headers()
        )

    def flush(self, timeout_s: float) -> bool:
        """Send again the records that failed, then wait up to ``timeout_s`` for every one.

        Returns True when everything handed to :meth:`send` was delivered (no
        record in flight or waiting to be sent again, none dropped since the
        previous flush); False on a timeout (the records stay buffered and keep
        being retried) or when any of them failed. Never raises.
        """
        with self._lock:
            again, self._retry = list(self._retry), deque()
        for index, record in enumerate(again):
            if not self._send(record):
                with self._lock:  # still failing at once: keep the rest, in order, for later
                    self._retry.extend(again[index + 1 :])
                break
        producer = self._producer
        ok = True
        if producer is not None:
            try:
                producer.flush(timeout=timeout_s)
            except kafka_errors.KafkaError as exc:
                ok = False
                self._limiter.log(
                    log, "warning", "flush", "kafka_flush_incomplete",
                    timeout_s=timeout_s, error=str(exc) or type(exc).__name__,
                )  # fmt: skip
            if _fatal(producer):  # its records have failed; the next send builds a new one
                self._ensure_producer()
        with self._lock:
            new_drops = self.dropped - self._dropped_at_flush
            self._dropped_at_flush = self.dropped
            clear = not self._in_flight and not self._retry
        return ok and clear and new_drops == 0

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush for at most ``timeout_s``, then close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            _close_quietly(producer, timeout_s)


def _fatal(producer: KafkaProducer) -> bool:
    """True when the producer's idempotence state is broken for good (kafka-python 3.0.12)."""
    manager = getattr(producer, "_transaction_manager", None)
    check = getattr(manager, "has_fatal_error", None)
    return bool(check()) if callable(check) else False


def _close_quietly(producer: KafkaProducer, timeout_s: float) -> None:
    try:
        producer.close(timeout=timeout_s)
    except Exception as exc:  # closing during an outage may fail; nothing to do about it
        log.debug("kafka_producer_close_failed", error=str(exc))
