"""The Kafka checkpoint store: the state of each input partition number and of each model's
stage 2 in a compacted topic that every replica of a group reads.

Records (key, value):

- ``<group>/<n>``: the hard state of input partition number ``n`` (both input topics; see
  :class:`~monitor.core.engine.PartitionSnapshot`) with the offsets it reflects;
- ``<group>/stage/<name>``: a model's stage 2 (windows, clock, detectors, rule state), as
  its owner last wrote it (:meth:`KafkaStore.save_stages`);
- ``<group>/reference/<name>``: the warmup reference a model's stage 2 built;
- ``<group>/model/<name>``: written by older versions (a model's detectors as stage 1 kept
  them); skipped when read;
- ``<group>/fence/<id>``: a tombstone a reader writes to learn where the topic ends.

A value is sealed by :func:`monitor.state.format.seal`: ``MAGIC``, a 4-byte header length, a
JSON header (format, kind, config fingerprint, offsets, SHA-256 and length of the body),
the body (the state in the explicit format of :mod:`monitor.state.format`, never a pickle,
zlib-compressed) and, with ``[state] hmac_key``, an HMAC-SHA256 of all of it. The topic is
created at start when missing, ``cleanup.policy=compact`` and ``max.message.bytes`` =
``[state] max_record_bytes``; records larger than that fail the checkpoint (raise the limit:
a partition's state grows with its pending predictions and slices, not with time).

Reading does not rely on compaction having run: the reader consumes the whole topic (then
only what is new) and keeps, per key, the newest record whose checksum (and HMAC, with a
key) holds and the one before it. A record that fails them, or then fails to decode as
what its key says (a partition snapshot of that number, a model's stage), is skipped
with a log line and the previous one is used; decoding never runs code named by a record.
Every snapshot is consistent with its own offsets,
so any of them is a correct place to resume; a newer one only means less to re-read.

To know it has read everything written before a restore, the reader appends a fence (a
tombstone under its own key) to every partition of the topic and reads up to it: this
needs no end-offset query, which some brokers answer wrongly.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final

import structlog
from kafka import KafkaProducer, TopicPartition
from kafka import errors as kafka_errors

from monitor.config import MonitorConfig
from monitor.core.alerting import Alerting
from monitor.core.engine import Engine
from monitor.kafka.client_config import (
    LogLimiter,
    admin_kwargs,
    build_admin,
    build_consumer,
    common_kwargs,
    producer_kwargs,
    retry_connect,
)
from monitor.kafka.topics import partition_counts
from monitor.state.checkpoint import config_fingerprint
from monitor.state.format import (
    check_envelope,
    decode_snapshot,
    encode_snapshot,
    seal,
    unseal,
)

__all__ = ["KafkaStore", "StoreError", "decode_record", "encode_record"]

MAGIC: Final = b"MONITOR-STATE"
#: How long a save waits for the broker's acknowledgements, and a restore for the fence.
WAIT_S: Final = 20.0
#: The largest body a record may inflate to (a bound on a hostile zlib stream).
MAX_BODY: Final = 1 << 30
log = structlog.get_logger(__name__)


class StoreError(Exception):
    """The store could not be read or written (broker unreachable, record refused)."""


def encode_record(
    kind: str, fingerprint: str, offsets: dict[str, int], body: bytes, key: bytes | None = None
) -> bytes:
    """A store value: magic, header length, JSON header, body (already compressed), and
    the HMAC with ``key``.

    >>> value = encode_record("partition", "f", {"t": 3}, b"xyz")
    >>> decode_record(value)[0]["offsets"], decode_record(value)[1]
    ({'t': 3}, b'xyz')
    """
    header = {"kind": kind, "fingerprint": fingerprint, "offsets": offsets}
    return seal(MAGIC, header, body, key)


def decode_record(value: bytes, key: bytes | None = None) -> tuple[dict[str, Any], bytes]:
    """The header and body of a store value; ValueError when it is torn, corrupt, fails
    the HMAC (with ``key``) or is of another format."""
    header, body = unseal(MAGIC, value, key)
    if not isinstance(header.get("fingerprint"), str) or not isinstance(
        header.get("offsets"), dict
    ):
        raise ValueError("header lacks the fingerprint or the offsets")
    return header, body


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(body, MAX_BODY)
    if inflater.unconsumed_tail:
        raise ValueError(f"record body inflates past {MAX_BODY} bytes")
    return out


class KafkaStore:
    """Checkpoints of a consumer group's replicas in a compacted Kafka topic.

    Parameters
    ----------
    config
        The daemon's configuration: ``[kafka]`` for the connection and the group,
        ``[state] topic``, ``topic_partitions`` and ``max_record_bytes`` for the topic.
    """

    partitioned = True

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.kafka = config.kafka
        self.topic = config.state.topic
        self.prefix = f"{config.kafka.group_id}/"
        self.fingerprint = config_fingerprint(config)
        self.key = config.state.hmac_bytes()
        self._fence_key = f"{self.prefix}fence/{uuid.uuid4().hex}".encode()
        self._producer: KafkaProducer | None = None
        self._reader: Any = None
        self._tps: list[TopicPartition] = []
        #: key -> the newest readable records (oldest first, at most two)
        self._latest: dict[str, deque[bytes]] = {}
        #: partition number -> the offsets of the last record written or installed
        self._saved: dict[int, dict[str, int]] = {}
        self._limiter = LogLimiter(10.0)

    # ------------------------------------------------------------------ connection
    def connect(self, stop: threading.Event) -> None:
        """Create the topic if missing, the producer and the reader; waits out an outage."""
        if self._producer is None:
            retry_connect("state", self.kafka, self._connect_once, stop, logger=log,
                          limiter=self._limiter)  # fmt: skip

    def _connect_once(self) -> bool:
        admin = build_admin(**admin_kwargs(self.kafka))
        try:
            count = partition_counts(admin, [self.topic])[self.topic]
            if count is None:
                count = self._create_topic(admin)
        finally:
            admin.close()
        limit = self.config.state.max_record_bytes
        producer = KafkaProducer(
            **{**producer_kwargs(self.kafka), "max_request_size": limit},
            max_in_flight_requests_per_connection=1,  # retries keep the order per key
        )
        try:
            reader = build_consumer(
                **common_kwargs(self.kafka),
                group_id=None,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                max_partition_fetch_bytes=limit + 4096,
                fetch_max_bytes=max(limit + 4096, self.kafka.fetch_max_bytes),
            )
        except BaseException:
            producer.close(timeout=0)
            raise
        self._tps = [TopicPartition(self.topic, p) for p in range(count)]
        reader.assign(self._tps)
        reader.seek_to_beginning(*self._tps)
        self._producer, self._reader = producer, reader
        log.info("state_store_connected", store="kafka", topic=self.topic, partitions=count)
        return True

    def _create_topic(self, admin: Any) -> int:
        count = self.config.state.topic_partitions
        spec = {
            self.topic: {
                "num_partitions": count,
                "replication_factor": -1,  # the broker's default
                "configs": {
                    "cleanup.policy": "compact",
                    "max.message.bytes": str(self.config.state.max_record_bytes),
                },
            }
        }
        response = admin.create_topics(spec, timeout_ms=int(WAIT_S * 1000), raise_errors=False)
        for result in response.get("topics", []):
            code = result.get("error_code", 0)
            if code and code != kafka_errors.TopicAlreadyExistsError.errno:
                raise kafka_errors.for_code(code)(f"creating state topic {self.topic!r}")
        counted = partition_counts(admin, [self.topic])[self.topic]
        log.info("state_topic_created", topic=self.topic, partitions=counted or count)
        return counted or count

    def close(self) -> None:
        """Close the producer (flushing what it holds) and the reader."""
        producer, self._producer = self._producer, None
        reader, self._reader = self._reader, None
        try:
            if producer is not None:
                producer.close(timeout=5)
            if reader is not None:
                reader.close()
        except Exception as exc:  # closing during an outage may fail; nothing to do about it
            log.debug("state_store_close_failed", error=str(exc))

    # ------------------------------------------------------------------ store protocol
    def load(self, config: MonitorConfig) -> Engine | None:
        """None: the engine starts empty and each partition is restored on assignment."""
        return None

    def load_state(self, config: MonitorConfig) -> tuple[Engine, Alerting] | None:
        """None, as :meth:`load` (a model's rule state comes with its stage 2)."""
        return None

    def _key(self, number: int) -> bytes:
        return f"{self.prefix}{number}".encode()

    def _stage_key(self, name: str) -> bytes:
        return f"{self.prefix}stage/{name}".encode()

    def save_stages(self, bodies: dict[str, bytes]) -> int:
        """Write models' stage 2 (:func:`~monitor.state.format.encode_stage` bodies, by
        model name) and wait for the broker; StoreError when one is not acknowledged."""
        producer = self._producer
        if producer is None:
            raise StoreError("state store not connected")
        size = 0
        try:
            sent = []
            for name, body in bodies.items():
                value = encode_record("stage", self.fingerprint, {}, zlib.compress(body, 1),
                                      self.key)  # fmt: skip
                size += len(value)
                sent.append(producer.send(self.topic, key=self._stage_key(name), value=value))
            producer.flush(timeout=WAIT_S)
            for future in sent:
                future.get(timeout=0)
        except (kafka_errors.KafkaError, AssertionError) as exc:
            reason = str(exc) or type(exc).__name__
            raise StoreError(f"stage records not written: {reason}") from exc
        return size

    def _reference_key(self, name: str) -> bytes:
        return f"{self.prefix}reference/{name}".encode()

    def save_reference(self, name: str, body: bytes) -> int:
        """Write model ``name``'s warmup reference (:func:`~monitor.state.format.
        encode_reference`) for every replica's stage 1, and wait for the broker;
        StoreError when it is not acknowledged."""
        producer = self._producer
        if producer is None:
            raise StoreError("state store not connected")
        value = encode_record("reference", self.fingerprint, {}, zlib.compress(body, 1),
                              self.key)  # fmt: skip
        try:
            producer.send(self.topic, key=self._reference_key(name), value=value).get(
                timeout=WAIT_S
            )
        except (kafka_errors.KafkaError, AssertionError) as exc:
            reason = str(exc) or type(exc).__name__
            raise StoreError(f"reference record not written: {reason}") from exc
        return len(value)

    def load_reference(self, name: str, decode: Callable[[bytes], Any]) -> Any:
        """Model ``name``'s warmup reference decoded by ``decode``, or None (not built yet,
        or unreadable). StoreError when the topic cannot be read to its end in time."""
        self._catch_up()
        found = self._decode(self._reference_key(name).decode(), decode)
        return None if found is None else found[1]

    def load_stage(self, name: str, decode: Callable[[bytes], Any]) -> Any:
        """The newest usable stage 2 record of model ``name`` decoded by ``decode``, or None
        (none written, or none readable: the caller rebuilds it from the partials)."""
        self._catch_up()
        found = self._decode(self._stage_key(name).decode(), decode)
        return None if found is None else found[1]

    def save(
        self,
        engine: Engine,
        numbers: Iterable[int] | None = None,
        alerting: Alerting | None = None,
    ) -> int:
        """Write the partitions' state (those read from since their last write) and wait for
        the broker to acknowledge all of it (acks=all).
        ``alerting`` is not written: each model's rule state is in its stage 2 record.

        Raises :class:`StoreError` when a record is not acknowledged in time: the caller
        must then not commit offsets."""
        producer = self._producer
        if producer is None:
            raise StoreError("state store not connected")
        wanted = sorted(engine.partitions if numbers is None else numbers)
        sent: list[tuple[Any, int | None, dict[str, int]]] = []
        size = 0
        try:
            for number in wanted:
                state = engine.partitions.get(number)
                if state is None or self._saved.get(number) == state.offsets:
                    continue  # nothing read since the record the store holds
                body = zlib.compress(encode_snapshot(engine.export_partition(number)), 1)
                value = encode_record("partition", self.fingerprint, dict(state.offsets), body,
                                      self.key)  # fmt: skip
                size += len(value)
                future = producer.send(self.topic, key=self._key(number), value=value)
                sent.append((future, number, dict(state.offsets)))
            producer.flush(timeout=WAIT_S)
            for future, _, _ in sent:
                future.get(timeout=0)
        except (kafka_errors.KafkaError, AssertionError) as exc:
            reason = str(exc) or type(exc).__name__
            raise StoreError(f"state records not written: {reason}") from exc
        for _, written, offsets in sent:
            if written is not None:
                self._saved[written] = offsets
        return size

    def forget(self, number: int) -> None:
        """This replica no longer holds partition ``number`` (dropped after a revoke)."""
        self._saved.pop(number, None)

    def restore(self, engine: Engine, numbers: Iterable[int]) -> dict[int, str]:
        """Read the topic up to now, then install into ``engine`` the newest readable
        snapshot of each partition number that is ahead of what ``engine`` holds.

        Raises :class:`StoreError` when the topic cannot be read to its end in time."""
        self._catch_up()
        result: dict[int, str] = {}
        for number in sorted(set(numbers)):
            key = self._key(number).decode()
            found = self._decode(key, partial(_snapshot, engine=engine, number=number))
            held = engine.partitions.get(number)
            if found is None:
                unreadable = bool(self._latest.get(key))
                result[number] = "kept" if held is not None else (
                    "unreadable" if unreadable else "none")  # fmt: skip
                continue
            offsets, snap = found
            if held is not None and all(held.offsets.get(t, -1) >= o for t, o in offsets.items()):
                result[number] = "kept"  # this replica's own state is as new or newer
                continue
            engine.install_partition(snap)
            self._saved[number] = dict(snap.state.offsets)
            result[number] = "restored"
            log.info("partition_restored", partition=number, offsets=snap.state.offsets,
                     store="kafka", topic=self.topic)  # fmt: skip
        return result

    # ------------------------------------------------------------------ reading
    def _catch_up(self) -> None:
        """Read every record written before now (up to a fence this call appends)."""
        producer, reader = self._producer, self._reader
        if producer is None or reader is None:
            raise StoreError("state store not connected")
        try:
            fences = [
                producer.send(self.topic, key=self._fence_key, value=None, partition=tp.partition)
                for tp in self._tps
            ]
            producer.flush(timeout=WAIT_S)
            target = {tp: f.get(timeout=0).offset for tp, f in zip(self._tps, fences, strict=True)}
            deadline = time.monotonic() + WAIT_S
            while any(reader.position(tp) <= off for tp, off in target.items()):
                if time.monotonic() > deadline:
                    raise StoreError(f"state topic {self.topic!r} not read to its end in time")
                for records in reader.poll(timeout_ms=200, max_records=10_000).values():
                    for record in records:
                        self._take(record)
        except kafka_errors.KafkaError as exc:
            raise StoreError(f"state topic not readable: {str(exc) or type(exc).__name__}") from exc

    def _take(self, record: Any) -> None:
        try:
            key = record.key.decode()
        except (AttributeError, UnicodeDecodeError):
            return
        if not key.startswith(self.prefix) or key.startswith(
            (f"{self.prefix}fence/", f"{self.prefix}model/")
        ):
            return  # fences, and the model records of older versions: nothing reads them
        if record.value is None:  # a tombstone: the state was deleted on purpose
            self._latest.pop(key, None)
            return
        try:
            _, body = decode_record(record.value, self.key)
            kind = (
                "stage" if key.startswith(f"{self.prefix}stage/")
                else "reference" if key.startswith(f"{self.prefix}reference/")
                else "snapshot"
            )  # fmt: skip
            check_envelope(_inflate(body), kind)  # the previous good record stays
        except Exception as exc:
            log.warning(
                "state_record_unreadable",
                key=key,
                partition=record.partition,
                offset=record.offset,
                error=f"{type(exc).__name__}: {exc}"[:300],
                action="using the previous record" if key in self._latest else "none left",
            )
            return
        self._latest.setdefault(key, deque(maxlen=2)).append(record.value)

    def _decode(
        self, key: str, decode: Callable[[bytes], Any]
    ) -> tuple[dict[str, int], Any] | None:
        """(offsets, decoded body) of the newest usable record under ``key``: a record
        that does not decode (``decode`` of its inflated body raises) falls back to the
        one before, with a log line, as does one made under another config."""
        kept = self._latest.get(key) or deque()
        for value in reversed(kept):
            header, body = decode_record(value, self.key)
            action = "using the previous record" if value is not kept[0] else "none left"
            if header["fingerprint"] != self.fingerprint:
                log.warning(
                    "state_config_changed", key=key, action=f"ignored (made under another "
                    f"config of models/time/topics); {action}",
                )  # fmt: skip
                continue
            try:
                offsets = {str(t): int(o) for t, o in header["offsets"].items()}
                return offsets, decode(_inflate(body))
            except Exception as exc:  # not what the key says, or not valid state
                log.warning(
                    "state_record_unreadable", key=key,
                    error=f"{type(exc).__name__}: {exc}"[:300], action=action,
                )  # fmt: skip
        return None


def _snapshot(body: bytes, engine: Engine, number: int) -> Any:
    """The partition snapshot of a record under partition ``number``'s key."""
    snap = decode_snapshot(body, engine)
    if snap.number != number:
        raise ValueError(f"snapshot of partition {snap.number} under the key of {number}")
    return snap
