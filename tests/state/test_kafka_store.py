"""The Kafka state store against the real (Tansu) broker, which never compacts: a replica
restores what another saved, the newest record per key wins, and a corrupt newest record
falls back to the previous one with a log line."""

from __future__ import annotations

import json
import pickle
import threading
import uuid
from typing import Any

import pytest
from kafka import KafkaProducer
from structlog.testing import capture_logs

from monitor.config import MonitorConfig, config_from_mapping
from monitor.core.engine import Engine
from monitor.events.message import Message
from monitor.state.kafka_store import KafkaStore, decode_record, encode_record
from tests.daemon import assert_same

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
    assert_same(other.summary(), engine.summary())
    # Soft state (per model record): the detectors resume where the writer left them.
    theirs_detectors, mine_detectors = other.models[0].detectors, engine.models[0].detectors
    assert theirs_detectors is not None and mine_detectors is not None
    assert engine.panes_closed > 0
    assert pickle.dumps(theirs_detectors) == pickle.dumps(mine_detectors)
    assert pickle.dumps(Engine(config).models[0].detectors) != pickle.dumps(mine_detectors)


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
    assert_same(other.summary(), engine.summary())
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
    expected = engine.summary()
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
    assert_same(other.summary(), expected)
