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
"""

from __future__ import annotations

import threading
from typing import Any

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
        Records that could not be delivered, since the sink was created.
    delivered : int
        Records acknowledged by the broker, since the sink was created.

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
        self, cfg: KafkaConfig, *, max_block_s: float = 5.0, delivery_timeout_s: float = 120.0
    ) -> None:
        self.cfg = cfg
        self.max_block_s = max_block_s
        self.delivery_timeout_s = delivery_timeout_s
        self.failed = 0
        self.delivered = 0
        self._failed_at_flush = 0
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._limiter = LogLimiter(10.0)

    @property
    def connected(self) -> bool:
        """True while a producer exists."""
        return self._producer is not None

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

    def _on_success(self, _metadata: Any) -> None:
        with self._lock:
            self.delivered += 1

    def _on_error(self, exc: BaseException, topic: str = "") -> None:
        with self._lock:
            self.failed += 1
        self._limiter.log(
            log, "error", "send", "kafka_send_failed",
            topic=topic, error=str(exc) or type(exc).__name__, failed_total=self.failed,
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
        (too large, delivery timeout, broker refusal) adds to ``failed`` and
        makes the next :meth:`flush` return False. Never raises on Kafka errors.
        """
        producer = self._ensure_producer()
        if producer is None:
            self._on_error(kafka_errors.KafkaConnectionError("no producer"), topic)
            return False
        if key is None and value is None:
            value = b""  # Kafka needs a key or a value
        try:
            future = producer.send(topic, value=value, key=key, headers=list(headers or []))
        except (kafka_errors.KafkaError, ValueError, TypeError) as exc:
            self._on_error(exc, topic)
            return False
        future.add_callback(self._on_success)
        future.add_errback(self._on_error, topic=topic)
        return True

    def send_dead_letter(self, reject: Reject) -> bool:
        """Copy a rejected message to ``cfg.dead_letter_topic``: original key and bytes,
        original headers plus the reason and source coordinates."""
        message = reject.message
        return self.send(
            self.cfg.dead_letter_topic, message.key, message.value, reject.dead_letter_headers()
        )

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every buffered record.

        Returns True when everything handed to :meth:`send` since the previous
        flush was delivered; False on a timeout (the records stay buffered and
        keep being retried) or when any of them failed. Never raises.
        """
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
            new_failures = self.failed - self._failed_at_flush
            self._failed_at_flush = self.failed
        return ok and new_failures == 0

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
