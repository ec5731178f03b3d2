"""The Kafka state store against the real (Tansu) broker, which never compacts: a replica
restores what another saved, the newest record per key wins, a corrupt, forged (HMAC) or
hostile newest record falls back to the previous one with a log line, a record that would
run code if unpickled runs nothing, and no fuzzed record raises past the store."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import threading
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from structlog.testing import capture_logs

from monitor.config import MonitorConfig, config_from_mapping
from monitor.core.engine import Engine
from monitor.events.message import Message
from monitor.state.format import encode_snapshot
from monitor.state.kafka_store import MAGIC, KafkaStore, decode_record, encode_record
from tests.state.streams import stage_one

BASE = 1_700_000_000.0
PARTS = 3


def _config(bootstrap: str, tag: str) -> MonitorConfig:
    return config_from_mapping(
        {
            "kafka": {"bootstrap_servers": bootstrap, "group_id": f"g-{tag}"},
            "state": {"store": "kafka", "topic": f"state-{tag}", "topic_partitions": 2},
            "time": {"pane": "10s", "allowed_lateness": "20s"},
            "models": [
                {
                    "name": "m",
                    "task": "binary",
                    "positive_class": 1,
                    "windows": ["all", "1m", "ewm1m"],
                    "segments": ["region"],
                }
            ],
        }
    )


def _messages(start: int, stop: int) -> list[Message]:
    """Predictions and, two steps later, their labels; partition = step % PARTS."""
    out = []
    for i in range(start, stop):
        part = i % PARTS
        body = {"prediction_id": f"p{i}", "model": "m", "ts": BASE + i, "prediction": i % 2,
                "score": (i % 10) / 10, "segment": {"region": "abc"[(i // 7) % 3]}}  # fmt: skip
        out.append(Message("predictions", part, i // PARTS, b"k", json.dumps(body).encode()))
        if i >= 2 and i % 5:
            j = i - 2
            label = {"prediction_id": f"p{j}", "label": (j // 3) % 2, "ts": BASE + i}
            out.append(Message("labels", j % PARTS, i, b"k", json.dumps(label).encode()))
    return out


def _engine(config: MonitorConfig, stop: int) -> Engine:
    engine = Engine(config)
    for i in range(0, stop, 20):
        engine.process(_messages(i, min(stop, i + 20)))
    return engine


@pytest.fixture
def store_pair(broker: Any) -> Any:
    tag = uuid.uuid4().hex[:8]
    config = _config(broker.bootstrap, tag)
    stores = [KafkaStore(config), KafkaStore(config)]
    stop = threading.Event()
    for store in stores:
        store.connect(stop)
    yield config, stores
    for store in stores:
        store.close()


def test_a_replica_restores_what_another_saved(store_pair: Any) -> None:
    config, (mine, theirs) = store_pair
    engine = _engine(config, 300)
    assert mine.save(engine) > 0
    assert mine.save(engine) < 10_000  # unchanged partitions are not written again
    other = Engine(config)
    result = theirs.restore(other, range(PARTS + 1))
    assert result == {0: "restored", 1: "restored", 2: "restored", 3: "none"}
    assert other.offsets() == engine.offsets()
    assert stage_one(other) == stage_one(engine)


def test_a_model_record_of_an_older_version_is_skipped(store_pair: Any) -> None:
    """Older versions wrote a record per model (``<group>/model/<name>``); nothing reads
    it now, so it is neither decoded nor logged as unreadable."""
    config, (mine, theirs) = store_pair
    engine = _engine(config, 200)
    mine.save(engine)
    mine._producer.send(mine.topic, key=f"{mine.prefix}model/b".encode(), value=b"old").get(10)
    other = Engine(config)
    with capture_logs() as logs:
        assert theirs.restore(other, range(PARTS)) == {n: "restored" for n in range(PARTS)}
    assert not [e for e in logs if e["event"] == "state_record_unreadable"], logs
    assert stage_one(other) == stage_one(engine)


def test_the_newest_record_per_key_wins_without_compaction(store_pair: Any) -> None:
    config, (mine, theirs) = store_pair
    engine = _engine(config, 150)
    mine.save(engine)
    first = dict(engine.offsets())
    for i in range(150, 400, 20):
        engine.process(_messages(i, i + 20))
    mine.save(engine)
    assert engine.offsets() != first
    other = Engine(config)
    theirs.restore(other, range(PARTS))
    assert other.offsets() == engine.offsets()
    assert stage_one(other) == stage_one(engine)
    # A replica holding newer state than the store keeps its own.
    engine.process(_messages(400, 420))
    assert mine.restore(engine, range(PARTS)) == {0: "kept", 1: "kept", 2: "kept"}


@pytest.mark.parametrize("damage", ["checksum", "not state"])
def test_a_corrupt_record_falls_back_to_the_previous_one(
    broker: Any, store_pair: Any, damage: str
) -> None:
    config, (mine, theirs) = store_pair
    engine = _engine(config, 200)
    mine.save(engine)
    expected = stage_one(engine)
    key = f"{config.kafka.group_id}/1".encode()
    record = encode_record("partition", mine.fingerprint, {"predictions": 10**6}, b"not state")
    if damage == "checksum":
        record = record[:-3] + b"XYZ"  # a torn or flipped body
    else:
        decode_record(record)  # passes the checksum; fails to decode
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(config.state.topic, key=key, value=record)
    producer.flush(10)
    producer.close()
    other = Engine(config)
    with capture_logs() as logs:
        result = theirs.restore(other, range(PARTS))
    assert result == {0: "restored", 1: "restored", 2: "restored"}
    lines = [e for e in logs if e["event"] == "state_record_unreadable"]
    assert len(lines) == 1 and lines[0]["key"] == key.decode(), logs
    assert lines[0]["action"] == "using the previous record"
    assert other.offsets() == engine.offsets()
    assert stage_one(other) == expected


class _Boom:
    """Unpickling this runs a command that creates a file: what an attacker would write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, key=key, value=value)
    producer.flush(10)
    producer.close()


def _real_record(bootstrap: str, topic: str, key: bytes) -> bytes:
    """The newest value under ``key`` in the state topic, read as an attacker would."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)  # fmt: skip
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    found = [r.value for r in consumer if r.key == key and r.value]
    consumer.close()
    assert found, f"no record under {key!r}"
    return found[-1]


@pytest.mark.parametrize("copy", ["header", "header and checksum"])
def test_a_record_that_would_run_code_if_unpickled_runs_nothing(
    broker: Any, store_pair: Any, tmp_path: Path, copy: str
) -> None:
    """An attacker who can produce to the state topic copies a real record's header (the
    config fingerprint, the offsets) around a pickle that creates a file when unpickled,
    as the previous format's reader would have done. Nothing runs; the partition restores
    from the good record before it."""
    config, (mine, theirs) = store_pair
    engine = _engine(config, 200)
    mine.save(engine)
    key = f"{config.kafka.group_id}/1".encode()
    real = _real_record(broker.bootstrap, config.state.topic, key)
    header, _ = decode_record(real)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(marker))
    for body in (payload, zlib.compress(payload)):
        if copy == "header":  # the header as is: its checksum is the real body's
            raw = json.dumps(header).encode()
        else:  # a checksum and length recomputed for the payload
            raw = json.dumps({**header, "sha256": hashlib.sha256(body).hexdigest(),
                              "length": len(body)}).encode()  # fmt: skip
        forged = MAGIC + len(raw).to_bytes(4, "big") + raw + body
        _produce(broker.bootstrap, config.state.topic, key, forged)
        old = {**header, "format": 1, "sha256": hashlib.sha256(body).hexdigest(),
               "length": len(body)}  # as the previous format wrote it  # fmt: skip
        raw = json.dumps(old).encode()
        _produce(broker.bootstrap, config.state.topic, key,
                 MAGIC + len(raw).to_bytes(4, "big") + raw + body)  # fmt: skip
    other = Engine(config)
    with capture_logs() as logs:
        result = theirs.restore(other, range(PARTS))
    assert not marker.exists()
    assert result == {0: "restored", 1: "restored", 2: "restored"}
    assert other.offsets() == engine.offsets()
    assert stage_one(other) == stage_one(engine)
    assert all(e["key"] == key.decode() for e in logs if e["event"] == "state_record_unreadable")
    assert any(e["event"] == "state_record_unreadable" for e in logs)


def test_a_record_failing_hmac_falls_back_to_the_previous_good_one(broker: Any) -> None:
    """With ``[state] hmac_key``, a record that is well formed and checksummed but not
    signed with the key (or signed with another) is skipped; the previous one is used."""
    tag = uuid.uuid4().hex[:8]
    raw = _config(broker.bootstrap, tag).model_dump(mode="json")
    raw["state"]["hmac_key"] = "a-key-of-at-least-16-bytes"
    config = config_from_mapping(raw)
    stop = threading.Event()
    mine, theirs = KafkaStore(config), KafkaStore(config)
    for store in (mine, theirs):
        store.connect(stop)
    try:
        engine = _engine(config, 200)
        mine.save(engine)
        expected = stage_one(engine)
        later = _engine(config, 400)
        key = f"{config.kafka.group_id}/2".encode()
        body = zlib.compress(encode_snapshot(later.export_partition(2)), 1)
        offsets = dict(later.partitions[2].offsets)
        for forged in (
            encode_record("partition", mine.fingerprint, offsets, body),  # unsigned
            encode_record("partition", mine.fingerprint, offsets, body, b"x" * 20),  # other key
        ):
            _produce(broker.bootstrap, config.state.topic, key, forged)
        other = Engine(config)
        with capture_logs() as logs:
            result = theirs.restore(other, range(PARTS))
        assert result == {0: "restored", 1: "restored", 2: "restored"}
        bad = [e for e in logs if e["event"] == "state_record_unreadable"]
        assert len(bad) == 2 and all("HMAC" in e["error"] for e in bad), logs
        assert other.offsets() == engine.offsets()
        assert stage_one(other) == expected
    finally:
        for store in (mine, theirs):
            store.close()


class _Record:
    """What ``_take`` reads of a consumer record."""

    def __init__(self, key: bytes, value: bytes | None) -> None:
        self.key, self.value, self.partition, self.offset = key, value, 0, 0


_FUZZ_CONFIG = _config("127.0.0.1:9", "fuzz")
_FUZZ_ENGINE = _engine(_FUZZ_CONFIG, 120)
_FUZZ_STORE = KafkaStore(_FUZZ_CONFIG)
_GOOD = encode_record(
    "partition", _FUZZ_STORE.fingerprint, dict(_FUZZ_ENGINE.partitions[0].offsets),
    zlib.compress(encode_snapshot(_FUZZ_ENGINE.export_partition(0)), 1),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.binary(max_size=300),
        st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(1, 255)).map(
            lambda t: _GOOD[: t[0]] + bytes([_GOOD[t[0]] ^ t[1]]) + _GOOD[t[0] + 1 :]),
        st.binary(max_size=300).map(
            lambda b: encode_record("partition", _FUZZ_STORE.fingerprint, {"p": 1}, b)),
        st.binary(max_size=300).map(
            lambda b: encode_record("partition", _FUZZ_STORE.fingerprint, {"p": 1},
                                    zlib.compress(b))),
    )
)  # fmt: skip
def test_a_fuzzed_record_never_raises_past_the_store(value: bytes) -> None:
    """Whatever follows a good record under a partition's key, reading it neither raises
    nor loses the good record (it is used when the newest does not decode)."""
    from functools import partial

    from monitor.state.kafka_store import _snapshot

    store = KafkaStore(_FUZZ_CONFIG)
    key = f"{_FUZZ_CONFIG.kafka.group_id}/0"
    store._take(_Record(key.encode(), _GOOD))
    store._take(_Record(key.encode(), value))
    found = store._decode(key, partial(_snapshot, engine=Engine(_FUZZ_CONFIG), number=0))
    assert found is not None
    engine = Engine(_FUZZ_CONFIG)
    engine.install_partition(found[1])
    engine.summary()
