"""KafkaSink against a real broker; records are read back with confluent-kafka."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from monitor.broker import EmbeddedBroker, create_topics, free_port
from monitor.events.message import Message, Reject
from monitor.kafka.sink import KafkaSink


def read_back(bootstrap: str, topic: str, count: int, timeout_s: float = 15.0) -> list:
    """The first ``count`` records of partition 0 of ``topic``, read with confluent-kafka."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}",
         "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg)
    finally:
        consumer.close()
    return got


@pytest.fixture
def sinks() -> Iterator[list[KafkaSink]]:
    made: list[KafkaSink] = []
    yield made
    for sink in made:
        sink.close(1.0)


def connected_sink(cfg, made: list[KafkaSink]) -> KafkaSink:
    sink = KafkaSink(cfg)
    made.append(sink)
    sink.connect(threading.Event())
    assert sink.connected
    return sink


def test_dead_letters_keep_the_original_bytes_and_name_the_reason(
    broker, topics, kafka_config, sinks
):
    sink = connected_sink(kafka_config(broker, topics), sinks)
    big = b"\xff" * (10 * 1024 * 1024)
    rejects = [
        Reject(Message(topics.predictions, 2, 41, b"id-1", b"{not json", [("trace", b"t1")]),
               "not_json", "Expecting property name"),
        Reject(Message(topics.labels, 0, 7, b"id-2", big), "too_large", "10485760 bytes"),
        Reject(Message(topics.labels, 3, 0, None, None), "not_object"),
    ]  # fmt: skip
    assert all(sink.send_dead_letter(r) for r in rejects)
    assert sink.flush(30.0)
    assert (sink.failed, sink.delivered) == (0, 3)

    got = read_back(broker.bootstrap, topics.dead_letters, 3)
    assert [m.key() for m in got] == [b"id-1", b"id-2", None]
    assert [m.value() for m in got] == [b"{not json", big, b""]
    first = dict(got[0].headers())
    assert first["trace"] == b"t1"
    assert first["monitor.reason"] == b"not_json"
    assert first["monitor.detail"] == b"Expecting property name"
    assert first["monitor.source.topic"] == topics.predictions.encode()
    assert (first["monitor.source.partition"], first["monitor.source.offset"]) == (b"2", b"41")
    assert dict(got[1].headers())["monitor.reason"] == b"too_large"
    assert dict(got[2].headers())["monitor.source.partition"] == b"3"


def test_a_record_that_cannot_be_sent_is_counted_and_fails_the_next_flush_only(
    broker, topics, kafka_config, sinks
):
    sink = connected_sink(kafka_config(broker, topics), sinks)
    assert sink.send(topics.alerts, b"m", b"x" * (70 * 1024 * 1024)) is False  # > 64 MiB requests
    assert sink.failed == 1
    assert sink.flush(5.0) is False
    assert sink.send(topics.alerts, b"m", b'{"status": "firing"}', [("k", b"v")])
    assert sink.flush(5.0) is True
    assert [m.value() for m in read_back(broker.bootstrap, topics.alerts, 1)] == [
        b'{"status": "firing"}'
    ]


def test_records_wait_out_a_frozen_broker(make_topics, kafka_config, sinks):
    with EmbeddedBroker() as own:
        names = make_topics(1, 1)
        create_topics(own.bootstrap, {names.alerts: 1, names.dead_letters: 1})
        sink = connected_sink(kafka_config(own, names), sinks)
        assert sink.send(names.alerts, b"m", b"before") and sink.flush(5.0)
        own.freeze()
        try:
            assert sink.send(names.alerts, b"m", b"during")  # buffered
            began = time.monotonic()
            assert sink.flush(1.0) is False
            assert time.monotonic() - began < 3.0
        finally:
            own.thaw()
        assert sink.flush(15.0) is True
        assert sink.failed == 0
        got = read_back(own.bootstrap, names.alerts, 2)
        assert [m.value() for m in got] == [b"before", b"during"]
        sink.close(1.0)


def test_sink_recovers_after_the_broker_restarts_empty(make_topics, kafka_config, sinks):
    with EmbeddedBroker() as own:
        names = make_topics(1, 1)
        create_topics(own.bootstrap, {names.alerts: 1, names.dead_letters: 1})
        sink = connected_sink(kafka_config(own, names), sinks)
        assert sink.send(names.alerts, b"m", b"first") and sink.flush(5.0)
        own.stop()
        own.start()  # Tansu comes back empty: its idempotent-producer state is gone
        create_topics(own.bootstrap, {names.alerts: 1, names.dead_letters: 1})
        results = []
        for attempt in range(5):
            sink.send(names.alerts, b"m", f"after-{attempt}".encode())
            results.append(sink.flush(10.0))
            if results[-1]:
                break
        assert results[-1] is True, results
        assert sink.failed >= results.count(False)  # every failed flush had counted failures
        # records that failed with the broken producer were sent again, none lost
        got = read_back(own.bootstrap, names.alerts, len(results) + 1, timeout_s=5.0)
        assert sorted(m.value() for m in got) == [f"after-{i}".encode() for i in
                                                   range(len(results))]  # fmt: skip
        assert sink.backlog == 0 and sink.dropped == 0
        sink.close(1.0)


def test_connect_returns_when_stop_is_set_while_the_broker_is_down(topics, kafka_config):
    sink = KafkaSink(kafka_config(f"127.0.0.1:{free_port()}", topics))
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    began = time.monotonic()
    sink.connect(stop)
    assert time.monotonic() - began < 3.0 and not sink.connected
    assert sink.send(topics.alerts, b"k", b"v") is False  # nothing to send with: counted
    assert sink.failed == 1 and sink.flush(0.1) is False


def test_too_many_records_in_flight_block_until_a_flush_delivers_them(
    broker, topics, kafka_config, sinks
):
    sink = KafkaSink(kafka_config(broker, topics), max_backlog=3)
    sinks.append(sink)
    sink.connect(threading.Event())
    for i in range(3):
        assert sink.send(topics.alerts, b"m", f"{i}".encode())
    blocked_at_3 = sink.blocked
    assert sink.send(topics.alerts, b"m", b"3")
    blocked_at_4 = sink.blocked or sink.backlog < 4  # (unless acks came back meanwhile)
    assert sink.flush(10.0) is True
    assert not blocked_at_3 and blocked_at_4
    assert (sink.backlog, sink.blocked, sink.delivered) == (0, False, 4)
