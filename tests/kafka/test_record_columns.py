"""One ``consume``'s records as the columns of a batch (``_record_columns`` of the confluent
source): the compiled pass (``monitor._native.record_columns``) and the Python code that
stands in for it give the same columns, errors and last row per partition, on
confluent-kafka's own records and on any object with their methods; the batch, the engine
and the run loop read each partition's last row from what the source gave."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError
from confluent_kafka import Message as Record

from monitor import native
from monitor.app import App
from monitor.core.engine import _last_offsets
from monitor.events.message import MessageBatch, _last_rows
from monitor.kafka.confluent_source import _record_columns


def _both(records: list[Any]) -> tuple[Any, Any]:
    """``_record_columns(records)`` compiled, then in Python."""
    before = native.use(True)
    try:
        compiled = _record_columns(records)
        native.use(False)
        python = _record_columns(records)
    finally:
        native.use(before)
    return compiled, python


def _records(seed: int) -> list[Record]:
    """A consume's worth of records: runs of a few partitions of two topics, as librdkafka
    hands them over, with end-of-partition events and fetch errors among them, null
    values, records without a timestamp and partitions past the small ints."""
    rng = random.Random(seed)
    pairs = [(rng.choice(["predictions", "labels", "é"]), rng.choice([0, 1, 3, 300, 70000]))
             for _ in range(rng.randrange(1, 6))]  # fmt: skip
    offsets = {pair: rng.randrange(2**40) for pair in pairs}
    out: list[Record] = []
    size = rng.randrange(0, 400)
    while len(out) < size:
        pair = rng.choice(pairs)
        partition = pair[1]
        for _ in range(rng.randrange(1, 30)):
            topic = pair[0].encode().decode()  # a str of its own, as librdkafka's records
            kind = rng.random()
            if kind < 0.03:
                code = KafkaError._PARTITION_EOF if kind < 0.02 else KafkaError._TRANSPORT
                out.append(Record(topic=topic, partition=partition, offset=offsets[pair],
                                  error=KafkaError(code)))  # fmt: skip
                continue
            stamp = (0, -1) if kind < 0.1 else (1, rng.randrange(2**41))
            value = None if kind > 0.95 else rng.randbytes(rng.randrange(0, 40))
            out.append(Record(topic=topic, partition=partition, offset=offsets[pair],
                              value=value, timestamp=stamp))  # fmt: skip
            offsets[pair] += 1
    return out


def _check(records: list[Any]) -> None:
    compiled, python = _both(records)
    assert compiled == python
    assert list(compiled[7]) == list(python[7])  # the pairs in the same order
    topics, partitions, offsets, values, stamps, kept, errors, last = compiled
    assert [r.error() is None for r in records].count(True) == len(kept) == len(topics)
    assert errors == [r for r in records if r.error() is not None]
    assert [r.offset() for r in kept] == offsets
    assert [r.timestamp()[1] for r in kept] == stamps
    assert [r.value() for r in kept] == values
    every = dict(zip(zip(topics, partitions, strict=True), range(len(kept)), strict=True))
    assert last == every and list(last) == list(every)


@pytest.mark.parametrize("seed", range(40))
def test_compiled_and_python_give_the_same_columns_of_confluent_records(seed: int) -> None:
    _check(_records(seed))


def test_an_empty_consume_and_one_of_errors_only() -> None:
    _check([])
    eof = Record(topic="predictions", partition=0, offset=7,
                 error=KafkaError(KafkaError._PARTITION_EOF))  # fmt: skip
    _check([eof, eof])
    compiled, _ = _both([eof])
    assert compiled[5] == [] and compiled[6] == [eof] and compiled[7] == {}


def test_confluent_records_are_read_from_their_struct_and_others_through_methods() -> None:
    """The compiled pass reads confluent-kafka's records from their C struct once their
    methods agreed with it (a new confluent-kafka that lays it out otherwise fails the
    check: this test says so); a subclass, which may override a method, is called."""
    if not native.available():
        pytest.fail("monitor._native is not built (tests/core/test_native.py says why)")
    from monitor import _native

    class Sub(Record):  # type: ignore[misc]
        def offset(self) -> int:
            return 5

    plain = Record(topic="labels", partition=2, offset=9, value=b"v", timestamp=(1, 4))
    failed = Record(topic="labels", partition=2, offset=9,
                    error=KafkaError(KafkaError._PARTITION_EOF))  # fmt: skip
    assert _native.record_direct(plain) and _native.record_direct(failed)
    sub = Sub(topic="labels", partition=2, offset=9, value=b"v", timestamp=(1, 4))
    assert not _native.record_direct(sub)
    assert not _native.record_direct(Fake("labels", 2, 9))
    # nothing to check the layout with: no partition, no offset or no topic
    for unset in ({"partition": -1}, {"offset": -1}, {"topic": None}):
        record = Record(**{"topic": "labels", "partition": 2, "offset": 9, **unset})
        assert not _native.record_direct(record)
    records = [plain, sub, Record(topic="labels", partition=2, offset=10, timestamp=(1, 5))]
    _check(records)
    assert _both(records)[0][2] == [9, 5, 10]


def test_records_consumed_from_a_broker_read_the_same_both_ways(broker, topics, produce) -> None:
    """Records as ``consume`` makes them (their error field holds None, not NULL as the
    constructor leaves it; end-of-partition events among them) read from their struct and
    through their methods alike."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    sent = [(b"k%d" % i, None if i % 7 == 3 else b"v%d" % i, [], i % 4) for i in range(200)]
    produce(broker.bootstrap, topics.predictions, sent)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": topics.group_id,
                         "enable.partition.eof": True, "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topics.predictions, p, OFFSET_BEGINNING) for p in range(4)])
    records: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while sum(r.error() is None for r in records) < len(sent) or not any(
            r.error() is not None for r in records
        ):
            assert time.monotonic() < deadline, "the records did not all arrive"
            records += consumer.consume(500, 0.5)
    finally:
        consumer.close()
    if native.available():
        from monitor import _native

        assert all(_native.record_direct(r) for r in records)
    _check(records)
    _, partitions, offsets, values, *_ = _both(records)[0]
    got = sorted(zip(partitions, offsets, values, strict=True))
    assert [v for _, _, v in got] == [v for _, v, _, _ in sorted(sent, key=lambda r: (r[3],))]


def test_records_without_partition_or_offset_read_as_through_their_methods() -> None:
    """A record the struct cannot give every value of (no partition: None; no offset:
    None), first in a consume or after ones read from the struct, reads as in Python."""
    full = [Record(topic="labels", partition=1, offset=o, value=b"x", timestamp=(1, o))
            for o in range(3)]  # fmt: skip
    odd = [Record(topic="labels", partition=-1, offset=4, value=b"y", timestamp=(1, 7)),
           Record(topic="labels", partition=1, offset=-1, value=b"z", timestamp=(0, -1))]
    for records in (full + odd, odd + full, odd[1:] + full + odd[:1]):
        compiled, python = _both(records)
        assert compiled == python


class Fake:
    """An object with the methods of a librdkafka record, not of its type: the compiled
    pass calls it by name. ``timestamp`` gives a list, which the pass indexes like any
    sequence."""

    def __init__(self, topic: str, partition: int, offset: int, error: object = None) -> None:
        self._topic, self._partition, self._offset, self._error = topic, partition, offset, error

    def error(self) -> object:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return b"v%d" % self._offset

    def timestamp(self) -> list[int]:
        return [1, 1000 + self._offset]


def test_any_object_with_the_methods_reads_the_same_mixed_with_confluent_records() -> None:
    records: list[Any] = [Fake("labels", 2, 5), Record(topic="labels", partition=2, offset=6,
                          value=b"x", timestamp=(1, 9))]  # fmt: skip
    records += [Fake("predictions", 0, 1, error="broken"), Fake("predictions", 0, 2)]
    records.append(Record(topic="labels", partition=2, offset=7, timestamp=(1, 10)))
    _check(records)
    compiled, _ = _both(records)
    assert compiled[7] == {("labels", 2): 3, ("predictions", 0): 2}


def test_a_failing_method_raises_out_of_both() -> None:
    class Broken(Fake):
        def value(self) -> bytes:
            raise RuntimeError("value lost")

    for compiled in (True, False):
        before = native.use(compiled)
        try:
            with pytest.raises(RuntimeError, match="value lost"):
                _record_columns([Fake("labels", 0, 1), Broken("labels", 0, 2)])
            with pytest.raises(AttributeError):
                _record_columns([object()])
        finally:
            native.use(before)


def test_a_pairs_topic_is_one_object_in_the_column() -> None:
    """librdkafka's records each make their topic's str (as ``_records``'s do): the
    compiled pass puts the first one of each pair in the column, so that the core's
    comparisons of topics find them identical."""
    records = _records(3)
    assert len({id(r.topic()) for r in records}) > 2
    before = native.use(True)
    try:
        topics, partitions, *_, last = _record_columns(records)
    finally:
        native.use(before)
    first = {pair: pair[0] for pair in last}
    for topic, partition in zip(topics, partitions, strict=True):
        assert topic is first[topic, partition]


@pytest.mark.usefixtures("kernels")
def test_batch_engine_and_loop_read_the_sources_last_rows() -> None:
    records = _records(11)
    topics, partitions, offsets, values, stamps, _, _, last = _record_columns(records)
    given = MessageBatch(topics, partitions, offsets, values, lambda i: None, stamps, last=last)
    found = MessageBatch(topics, partitions, offsets, values, lambda i: None, stamps)
    assert given.last_rows() is last
    assert found.last_rows() == last and list(found.last_rows()) == list(last)
    assert given.sources() == found.sources() == set(zip(topics, partitions, strict=True))
    assert _last_offsets(given) == _last_offsets(found)
    assert list(_last_offsets(given).values()) == [offsets[i] for i in last.values()]

    loop = SimpleNamespace(last_record_ts={("old", 0): 5.0})
    App._note_record_times(loop, given)  # type: ignore[arg-type]
    expected = {("old", 0): 5.0}
    for pair, i in last.items():
        if stamps[i] > 0:
            expected[pair] = stamps[i] / 1000.0
    assert loop.last_record_ts == expected


def test_last_rows_from_the_columns_is_a_dict_built_over_every_message() -> None:
    rng = random.Random(5)
    for _ in range(200):
        size = rng.randrange(0, 300)
        topics = [rng.choice("ab") for _ in range(size)]
        partitions = [rng.randrange(4) for _ in range(size)]
        every = dict(zip(zip(topics, partitions, strict=True), range(size), strict=True))
        found = _last_rows(topics, partitions)
        assert found == every and list(found) == list(every)
