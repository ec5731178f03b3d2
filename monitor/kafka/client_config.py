"""How the daemon's Kafka clients are configured and built.

``consumer_kwargs``, ``producer_kwargs`` and ``admin_kwargs`` turn a
:class:`~monitor.config.KafkaConfig` into kafka-python keyword arguments, so
the connection settings (bootstrap servers, SASL, SSL) are spelled out in one
place. ``build_consumer`` and ``build_admin`` construct clients and, when the
construction fails (the broker is not up yet), close the half-built client so
that a retry loop does not leak one I/O thread per attempt (kafka-python
3.0.12 starts its network thread before it bootstraps).

``LogLimiter`` keeps outage logging to one line per interval.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer
from kafka import errors as kafka_errors

from monitor.config import KafkaConfig

__all__ = [
    "LogLimiter",
    "accepts_tcp",
    "admin_kwargs",
    "build_admin",
    "build_consumer",
    "common_kwargs",
    "confluent_common_config",
    "confluent_consumer_config",
    "consumer_kwargs",
    "producer_kwargs",
    "retry_connect",
]

#: Smallest per-partition fetch size (kafka-python's own default).
MIN_PARTITION_FETCH_BYTES = 1 << 20
#: Room for the batch and record headers around the largest accepted message.
RECORD_OVERHEAD_BYTES = 64 << 10
#: Largest request the producer sends: dead letters copy messages of any size.
MAX_REQUEST_BYTES = 64 << 20
#: First and largest wait between reconnection attempts during an outage.
RECONNECT_BACKOFF_MS = 500
RECONNECT_BACKOFF_MAX_MS = 30_000


def common_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection and security settings shared by every client.

    Parameters
    ----------
    cfg
        The ``[kafka]`` section of the configuration.

    Returns
    -------
    dict
        kafka-python keyword arguments: bootstrap servers (split on commas),
        client id, security protocol, SASL and SSL settings (only those that are
        set), and the reconnect backoff used to ride out a broker outage.

    Examples
    --------
    >>> common_kwargs(KafkaConfig(bootstrap_servers="a:1, b:2"))["bootstrap_servers"]
    ['a:1', 'b:2']
    """
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()],
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
        "reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if cfg.sasl_mechanism is not None:
        kwargs["sasl_mechanism"] = cfg.sasl_mechanism
    if cfg.sasl_username is not None:
        kwargs["sasl_plain_username"] = cfg.sasl_username
    if cfg.sasl_password is not None:
        kwargs["sasl_plain_password"] = cfg.sasl_password.get_secret_value()
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(cfg, name)
        if value is not None:
            kwargs[name] = value
    return kwargs


def consumer_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for the daemon's ``KafkaConsumer``.

    Offsets are never auto-committed (the checkpoint commits them after the
    state is written), a partition with no committed offset starts at the
    earliest record, and topics are never auto-created by the consumer (a
    missing input topic is a layout error, not something to paper over).
    A partition fetch holds the largest accepted message whole; larger ones
    still arrive (brokers return the first batch of a partition even when it
    exceeds the limit) so that the decoder can reject them as ``too_large``.

    Examples
    --------
    >>> kw = consumer_kwargs(KafkaConfig(group_id="g"))
    >>> kw["group_id"], kw["enable_auto_commit"], kw["auto_offset_reset"]
    ('g', False, 'earliest')
    """
    partition_bytes = max(MIN_PARTITION_FETCH_BYTES, cfg.max_message_bytes + RECORD_OVERHEAD_BYTES)
    return {
        **common_kwargs(cfg),
        "group_id": cfg.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "allow_auto_create_topics": False,
        "session_timeout_ms": round(cfg.session_timeout * 1000),
        "heartbeat_interval_ms": round(cfg.heartbeat_interval * 1000),
        "max_poll_records": cfg.max_poll_records,
        "fetch_max_bytes": max(cfg.fetch_max_bytes, partition_bytes),
        "max_partition_fetch_bytes": partition_bytes,
    }


#: librdkafka's ``security.protocol`` and ``sasl.mechanism`` spellings of the config's values.
_RDKAFKA_PROTOCOL = {
    "PLAINTEXT": "plaintext",
    "SSL": "ssl",
    "SASL_PLAINTEXT": "sasl_plaintext",
    "SASL_SSL": "sasl_ssl",
}
#: librdkafka refuses a fetch response larger than this (its default is 100 MB).
RDKAFKA_RECEIVE_MAX_BYTES = 100_000_000


def confluent_common_config(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection and security settings as librdkafka keys, for confluent-kafka clients.

    The same settings as :func:`common_kwargs`, spelled for librdkafka: SASL user and
    password, ``ssl.ca.location``, ``ssl.certificate.location`` and ``ssl.key.location``
    (only those that are set), and the same reconnect backoff.

    Examples
    --------
    >>> conf = confluent_common_config(KafkaConfig(
    ...     bootstrap_servers="a:1, b:2", security_protocol="SASL_SSL",
    ...     sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p",
    ...     ssl_cafile="/ca.pem"))
    >>> conf["bootstrap.servers"], conf["security.protocol"], conf["sasl.mechanism"]
    ('a:1,b:2', 'sasl_ssl', 'SCRAM-SHA-512')
    >>> conf["sasl.username"], conf["sasl.password"], conf["ssl.ca.location"]
    ('u', 'p', '/ca.pem')
    """
    servers = [s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()]
    conf: dict[str, Any] = {
        "bootstrap.servers": ",".join(servers),
        "client.id": cfg.client_id,
        "security.protocol": _RDKAFKA_PROTOCOL[cfg.security_protocol],
        "reconnect.backoff.ms": RECONNECT_BACKOFF_MS,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if cfg.sasl_mechanism is not None:
        conf["sasl.mechanism"] = cfg.sasl_mechanism
    if cfg.sasl_username is not None:
        conf["sasl.username"] = cfg.sasl_username
    if cfg.sasl_password is not None:
        conf["sasl.password"] = cfg.sasl_password.get_secret_value()
    for name, key in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
    ):
        value = getattr(cfg, name)
        if value is not None:
            conf[key] = value
    return conf


def confluent_consumer_config(cfg: KafkaConfig) -> dict[str, Any]:
    """librdkafka settings of the daemon's confluent-kafka ``Consumer``.

    As :func:`consumer_kwargs`: no auto-commit (nor automatic offset store), the earliest
    record when the group has no offset, no topic auto-creation, the same session,
    heartbeat and fetch sizes. Besides: ``fetch.queue.backoff.ms`` from
    ``cfg.fetch_queue_backoff`` (librdkafka's default of 1 s stalls any consumer slower
    than its fetcher), and ``enable.partition.eof`` so that the source learns the
    position of a partition that has nothing to read.

    Examples
    --------
    >>> conf = confluent_consumer_config(KafkaConfig(group_id="g"))
    >>> conf["group.id"], conf["enable.auto.commit"], conf["fetch.queue.backoff.ms"]
    ('g', False, 50)
    """
    partition_bytes = max(MIN_PARTITION_FETCH_BYTES, cfg.max_message_bytes + RECORD_OVERHEAD_BYTES)
    fetch_bytes = max(cfg.fetch_max_bytes, partition_bytes)
    return {
        **confluent_common_config(cfg),
        "group.id": cfg.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
        "enable.partition.eof": True,
        "session.timeout.ms": round(cfg.session_timeout * 1000),
        "heartbeat.interval.ms": round(cfg.heartbeat_interval * 1000),
        "fetch.max.bytes": fetch_bytes,
        "max.partition.fetch.bytes": partition_bytes,
        "receive.message.max.bytes": max(RDKAFKA_RECEIVE_MAX_BYTES, fetch_bytes + 512),
        "fetch.queue.backoff.ms": round(cfg.fetch_queue_backoff * 1000),
    }


def producer_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for the daemon's ``KafkaProducer`` (alerts and dead letters).

    Every record is acknowledged by all in-sync replicas and retried until its
    delivery timeout; requests may be large enough to copy a rejected message
    of tens of megabytes to the dead-letter topic.

    Examples
    --------
    >>> producer_kwargs(KafkaConfig())["acks"]
    'all'
    """
    return {
        **common_kwargs(cfg),
        "acks": "all",
        "retries": 2**31 - 1,
        "linger_ms": 5,
        "compression_type": None,
        "max_request_size": MAX_REQUEST_BYTES,
    }


def admin_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for a ``KafkaAdminClient`` (topic checks, group offsets).

    Examples
    --------
    >>> admin_kwargs(KafkaConfig(bootstrap_servers="127.0.0.1:9092"))["bootstrap_servers"]
    ['127.0.0.1:9092']
    """
    return common_kwargs(cfg)


class _ClosingConsumer(KafkaConsumer):
    """A ``KafkaConsumer`` that releases its I/O thread when construction fails."""

    def __init__(self, *topics: str, **configs: Any) -> None:
        try:
            super().__init__(*topics, **configs)
        except BaseException:
            _close_half_built(self)
            raise


class _ClosingAdmin(KafkaAdminClient):
    """A ``KafkaAdminClient`` that releases its I/O thread when construction fails."""

    def __init__(self, **configs: Any) -> None:
        try:
            super().__init__(**configs)
        except BaseException:
            _close_half_built(self)
            raise


def _close_half_built(client: object) -> None:
    inner = client.__dict__.get("_client")
    if inner is not None:
        with contextlib.suppress(Exception):  # best effort cleanup
            inner.close()


def build_consumer(**kwargs: Any) -> KafkaConsumer:
    """A ``KafkaConsumer``; raises kafka-python's error if the broker cannot be reached.

    Unlike calling ``KafkaConsumer(...)`` directly, a failed attempt leaves no
    background thread behind, so it can be retried in a loop.
    """
    return _ClosingConsumer(**kwargs)


def build_admin(**kwargs: Any) -> KafkaAdminClient:
    """A ``KafkaAdminClient``; like :func:`build_consumer`, a failed attempt leaks nothing."""
    return _ClosingAdmin(**kwargs)


class LogLimiter:
    """Lets a log line through at most once per ``interval_s`` per key.

    Used for outage messages, which would otherwise repeat on every poll.

    Examples
    --------
    >>> limiter = LogLimiter(60.0)
    >>> limiter.allow("poll"), limiter.allow("poll"), limiter.suppressed("poll")
    (True, False, 1)
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> bool:
        """True when a line for ``key`` may be logged now; otherwise counts it as suppressed."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        return True

    def suppressed(self, key: str) -> int:
        """How many lines for ``key`` were held back since the last one let through."""
        return self._suppressed.get(key, 0)

    def log(self, logger: Any, level: str, key: str, event: str, **fields: Any) -> None:
        """Log ``event`` at ``level`` through a structlog logger if ``key`` is due.

        The line carries ``suppressed``: how many were held back before it.
        """
        if self.allow(key):
            fields["suppressed"] = self._suppressed.pop(key, 0)
            getattr(logger, level)(event, **fields)


def accepts_tcp(server: str, timeout_s: float = 2.0) -> bool:
    """True when ``host:port`` accepts a TCP connection: a cheap check before bootstrapping.

    Examples
    --------
    >>> accepts_tcp("127.0.0.1:1")
    False
    """
    host, sep, port = server.rpartition(":")
    if not sep or "]" in port:
        host, port = server, "9092"  # kafka-python's default port
    host = host.strip("[]") or "localhost"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


T = TypeVar("T")

#: Backoff between connection attempts while the broker is down.
CONNECT_BACKOFF_FIRST_S = 0.5
CONNECT_BACKOFF_MAX_S = 30.0


def retry_connect(
    what: str,
    cfg: KafkaConfig,
    attempt: Callable[[], T],
    stop: threading.Event,
    *,
    logger: Any,
    limiter: LogLimiter,
) -> T | None:
    """Call ``attempt`` until it succeeds, waiting out a broker that is not up yet.

    Before each attempt a TCP connection to one of the bootstrap servers must
    succeed (so an attempt does not block while nothing listens). Kafka and
    socket errors are logged at a rate limit and retried after a backoff of
    0.5 s doubling to 30 s; any other exception propagates. Returns None,
    without connecting, as soon as ``stop`` is set.

    Parameters
    ----------
    what
        What is connecting (``"source"``, ``"sink"``), for the log lines.
    cfg
        The ``[kafka]`` section: where the broker is.
    attempt
        Builds and returns the connected client; raises on failure.
    stop
        Set by the daemon's signal handler.
    logger, limiter
        Where outage lines go, and how often.
    """
    servers = common_kwargs(cfg)["bootstrap_servers"]
    delay = CONNECT_BACKOFF_FIRST_S
    tries = 0
    while not stop.is_set():
        tries += 1
        try:
            if not any(accepts_tcp(server) for server in servers):
                raise kafka_errors.KafkaConnectionError(
                    f"no broker accepts connections at {servers}"
                )
            result = attempt()
            logger.info(f"kafka_{what}_connected", bootstrap=cfg.bootstrap_servers, attempts=tries)
            return result
        except (kafka_errors.KafkaError, OSError) as exc:
            limiter.log(
                logger, "warning", f"connect-{what}", "kafka_unavailable",
                client=what, bootstrap=cfg.bootstrap_servers,
                error=str(exc) or type(exc).__name__, attempt=tries, retry_in_s=delay,
            )  # fmt: skip
        stop.wait(delay)
        delay = min(delay * 2, CONNECT_BACKOFF_MAX_S)
    return None
