"""The partials topic against a real (Tansu) broker: a model's records land in its partition
and reach its owner in order, byte for byte; two owners split the partitions and hand them
over on close, a new owner reads from its start offset (never the group's committed one) and
is caught up only once it has read what came before its gain; connect waits for a broker
that starts late; a record that cannot be delivered fails the next flush."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaAdminClient
from structlog.testing import capture_logs

from monitor.broker import EmbeddedBroker, create_topics, free_port
from monitor.config import MonitorConfig, config_from_mapping
from monitor.kafka.partials_topic import (
    FENCE_PREFIX,
    ModelOwnership,
    PartialRecord,
    PartialsWriter,
    model_partition,
)

#: One model per partition of a 4-partition topic (crc32 % 4 = 0, 1, 2, 3).
MODELS = {0: "churn", 1: "m0", 2: "fraud", 3: "m1"}
JOIN_S = 20.0
#: Session timeout of the two-owner test. Tansu completes a rebalance about half a session
#: timeout after it starts; a member that vanished without leaving the group would be
#: noticed only after a whole one, so its handover takes at least 1.5 of them (9.2 s
#: measured at 6 s), and one that left takes about half (3.4 s at 6 s; 6.5 s on a loaded
#: machine): a handover under 1.4 session timeouts shows close left the group.
SESSION_S = 10.0

Sent = dict[int, list[tuple[bytes, bytes | None]]]


def _config(bootstrap: str, session_timeout_s: float = 6.0) -> MonitorConfig:
    return config_from_mapping(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "client_id": "monitor-test",
                "session_timeout": session_timeout_s,
                "heartbeat_interval": 1,  # a group join takes ~3 s instead of ~23 s
            },
            "models": [{"name": "m", "task": "binary", "positive_class": 1, "windows": ["all"]}],
        }
    )


def _names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"partials-{tag}", f"owners-{tag}"


def _none(_partition: int) -> int | None:
    return None


def _ignore(_gained: set[int], _lost: set[int]) -> None:
    return None


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def read_partitions(bootstrap: str, topic: str, partitions: int, count: int) -> Sent:
    """Every partition's records (key, value), read with confluent-kafka, a client
    independent of the one under test, until ``count`` records arrived."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
         "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: Sent = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + 15.0
    try:
        while sum(map(len, got.values())) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got[msg.partition()].append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return got


@pytest.fixture
def closing() -> Iterator[list[PartialsWriter | ModelOwnership]]:
    """Writers and owners made by a test, closed at its end."""
    made: list[PartialsWriter | ModelOwnership] = []
    yield made
    for client in made:
        client.close()


def connected_writer(
    config: MonitorConfig, topic: str, partitions: int, made: list
) -> PartialsWriter:
    writer = PartialsWriter(config, topic, partitions)
    made.append(writer)
    writer.connect(threading.Event())
    assert writer.connected
    return writer


def write(writer: PartialsWriter, sent: Sent, partition: int, records: int, tag: str) -> None:
    """Send ``records`` records of the model of ``partition``, noting them in ``sent``."""
    model = MODELS[partition]
    for i in range(records):
        key = f"{model}/{tag}/{i}".encode()
        value = bytes([partition, i, 0, 255]) + tag.encode()
        writer.send(model, key, value)
        sent.setdefault(partition, []).append((key, value))


def test_model_partition_is_crc32_of_the_name_modulo_the_count():
    # pinned: writers and owners of different versions must keep agreeing
    assert [model_partition(m, 4) for m in ("churn", "m0", "fraud", "m1")] == [0, 1, 2, 3]
    assert [model_partition("fraud", n) for n in (1, 2, 3, 7, 12)] == [0, 0, 1, 1, 10]
    assert model_partition("modèle", 12) == 5  # the UTF-8 bytes
    with pytest.raises(ValueError, match="partitions"):
        model_partition("fraud", 0)


def test_a_models_records_land_in_its_partition_and_its_owner_reads_them_in_order(broker, closing):
    topic, group = _names()
    config = _config(broker.bootstrap)
    writer = connected_writer(config, topic, 4, closing)
    assert writer.partitions == 4
    sent: Sent = {p: [] for p in range(4)}
    for i in range(40):  # interleaved models, repeated keys, tombstones, an empty value
        partition = i % 4
        model = MODELS[partition]
        key = f"{model}/pane/{i % 3}".encode()
        value = None if i % 7 == 3 else (b"" if i == 10 else bytes([i, 0, 0xFF, 0x80]) * i)
        writer.send(model, key, value)
        sent[partition].append((key, value))
    assert writer.flush(10.0)
    assert (writer.sent, writer.delivered, writer.failed, writer.in_flight) == (40, 40, 0, 0)
    assert read_partitions(broker.bootstrap, topic, 4, 40) == sent  # each in its model's partition

    changes: list[tuple[set[int], set[int]]] = []
    owner = ModelOwnership(config, topic, 4, group, on_change=lambda g, lost: changes.append(
        (g, lost)), start_offset=_none)  # fmt: skip
    closing.append(owner)
    owner.connect(threading.Event())
    got: list[PartialRecord] = []
    deadline = time.monotonic() + JOIN_S
    while not (owner.owned() and all(owner.caught_up(p) for p in range(4))):
        assert time.monotonic() < deadline, "the owner never caught up"
        got += owner.poll(0.2)
    got += owner.poll(0.3)  # anything more would be a duplicate or a fence
    assert owner.owned() == frozenset(range(4)) and changes == [({0, 1, 2, 3}, set())]
    assert all(owner.owns_model(m) for m in MODELS.values())
    assert {p: [(r.key, r.value) for r in got if r.partition == p] for p in range(4)} == sent
    for p in range(4):
        offsets = [r.offset for r in got if r.partition == p]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert not any(r.key.startswith(FENCE_PREFIX) for r in got)
    assert all(r.timestamp_ms > 0 for r in got)

    # the group's committed offsets follow the reads, for lag tools (1 fence per partition)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:

        def committed() -> dict[int, int]:
            offsets = admin.list_group_offsets(group).get(group, {})
            return {tp.partition: meta.offset for tp, meta in offsets.items()}

        wait_for(lambda: committed() == {p: 11 for p in range(4)}, 10.0, "the commits")
    finally:
        admin.close()


def replay(changes: list[tuple[set[int], set[int]]]) -> set[int]:
    """The partitions owned after ``changes``, checking each is a real change."""
    owned: set[int] = set()
    for gained, lost in changes:
        assert gained or lost, changes
        assert not gained & owned and lost <= owned, changes  # gains new, losses held
        owned = (owned - lost) | gained
    return owned


class Member(threading.Thread):
    """An owner polled by a thread of its own, as stage 2's loop does. It checks, after
    every poll, that a partition it calls caught up has delivered every record the test
    wrote to it before the gain (from the start offset on)."""

    def __init__(self, config: MonitorConfig, topic: str, group: str, written: Sent) -> None:
        super().__init__(daemon=True)
        self.written = written
        #: start offsets handed out for the next gains (absent = None, the beginning)
        self.starts: dict[int, int] = {}
        self.ownership = ModelOwnership(config, topic, 4, group, on_change=self._changed,
                                        start_offset=self._start)  # fmt: skip
        self.ownership.connect(threading.Event())
        self.halt = threading.Event()
        self.changes: list[tuple[set[int], set[int]]] = []
        #: records read per owned partition since its gain
        self.read: dict[int, list[tuple[bytes, bytes | None]]] = {}
        #: what the partition held before its gain, from the start offset on
        self.expected: dict[int, list[tuple[bytes, bytes | None]]] = {}
        self.caught: set[int] = set()
        self.owned: frozenset[int] = frozenset()
        self.polls = 0
        self.errors: list[str] = []

    def _changed(self, gained: set[int], lost: set[int]) -> None:
        self.changes.append((set(gained), set(lost)))
        for p in lost:
            self.read.pop(p, None)
            self.caught.discard(p)
        for p in gained:
            self.read[p] = []
            self.expected[p] = list(self.written.get(p, []))[self.starts.get(p, 0) :]

    def _start(self, partition: int) -> int | None:
        return self.starts.get(partition)

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                for r in self.ownership.poll(0.1):
                    if r.partition not in self.read:
                        self.errors.append(f"record of partition {r.partition}, not owned")
                    self.read.setdefault(r.partition, []).append((r.key, r.value))
                self.owned = self.ownership.owned()
                for p in self.owned:
                    if self.ownership.caught_up(p):
                        before = self.expected[p]
                        if self.read[p][: len(before)] != before:
                            self.errors.append(f"partition {p} caught up after {self.read[p]}")
                        self.caught.add(p)
                self.polls += 1
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))
        finally:
            self.ownership.close()

    def finish(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(10)
        else:  # never started (or done): close here
            self.ownership.close()


def test_two_owners_split_the_partitions_and_the_survivor_takes_all_over(broker, closing):
    topic, group = _names()
    config = _config(broker.bootstrap, session_timeout_s=SESSION_S)
    writer = connected_writer(config, topic, 4, closing)
    written: Sent = {}
    for p in range(4):
        write(writer, written, p, 3, "first")
    assert writer.flush(10.0)

    one = Member(config, topic, group, written)
    two = Member(config, topic, group, written)
    members = [one, two]
    try:
        one.start()
        wait_for(lambda: one.caught == {0, 1, 2, 3}, JOIN_S, "the first owner to catch up")
        assert one.errors == []
        assert one.read == written  # from the beginning: start_offset said None
        assert one.changes == [({0, 1, 2, 3}, set())]

        two.starts = {p: 1 for p in range(4)}  # its checkpoint: the first record of each is in it
        two.start()

        def split() -> bool:
            return (
                bool(one.owned) and bool(two.owned) and not one.owned & two.owned
                and one.owned | two.owned == {0, 1, 2, 3}
            )  # fmt: skip

        wait_for(split, JOIN_S, "the two owners to split the partitions")
        polls = one.polls, two.polls
        wait_for(lambda: one.polls > polls[0] + 5 and two.polls > polls[1] + 5, 20.0, "polls")
        assert split(), (one.owned, two.owned)  # still split a few polls later: settled
        kept, moved = set(one.owned), set(two.owned)
        wait_for(lambda: two.caught == moved, 30.0, "the second owner to catch up")
        assert two.changes == [(moved, set())]
        assert replay(one.changes) == kept and any(moved <= lost for _, lost in one.changes)
        assert {p: two.read[p] for p in moved} == {p: written[p][1:] for p in moved}
        assert {p: one.read[p] for p in kept} == {p: written[p] for p in kept}

        for p in range(4):
            write(writer, written, p, 2, "second")
        assert writer.flush(10.0)

        def both_read() -> bool:
            return all(one.read[p] == written[p] for p in kept) and all(
                two.read[p] == written[p][1:] for p in moved
            )

        wait_for(both_read, 30.0, "each owner to read the new records of its partitions")

        two.starts = {p: 1 for p in moved}  # no checkpoint of the others: the beginning
        began = time.monotonic()
        one.finish()  # leaves the group; its committed offsets are at the end of its partitions
        wait_for(lambda: two.owned == {0, 1, 2, 3}, 30.0, "the survivor to own all four")
        handover_s = time.monotonic() - began
        assert replay(two.changes) == {0, 1, 2, 3} and kept <= two.changes[-1][0]
        wait_for(lambda: two.caught == {0, 1, 2, 3}, 30.0, "the survivor to catch up")
        # one's commits are at the end of its partitions: a reader positioned by them
        # would read nothing here
        assert {p: two.read[p] for p in kept} == {p: written[p] for p in kept}
        assert {p: two.read[p] for p in moved} == {p: written[p][1:] for p in moved}
        assert handover_s < 1.4 * SESSION_S  # close left the group: no session timeout waited out
    finally:
        for member in members:
            member.finish()
    assert one.errors == [] and two.errors == []


def test_connect_waits_for_a_broker_that_starts_late(closing):
    port = free_port()
    late = EmbeddedBroker(port)
    topic, group = _names()
    config = _config(late.bootstrap)
    started = threading.Event()

    def start_later() -> None:
        time.sleep(2.0)
        late.start()
        started.set()

    writer = PartialsWriter(config, topic, 3)
    owner = ModelOwnership(config, topic, 3, group, on_change=_ignore, start_offset=_none)
    closing += [writer, owner]
    starter = threading.Thread(target=start_later, daemon=True)
    owner_connect = threading.Thread(target=owner.connect, args=(threading.Event(),))
    try:
        began = time.monotonic()
        starter.start()
        owner_connect.start()
        writer.connect(threading.Event())
        owner_connect.join(15.0)
        assert started.is_set() and writer.connected and owner.connected
        assert 2.0 <= time.monotonic() - began < 12.0
        assert writer.partitions == owner.partitions == 3  # made by us, not auto-created (4)

        writer.send("fraud", b"fraud/pane/0", b"\x01\x02")
        assert writer.flush(10.0)
        got: list[PartialRecord] = []
        deadline = time.monotonic() + JOIN_S
        while not owner.caught_up(model_partition("fraud", 3)):
            assert time.monotonic() < deadline, "the owner never caught up"
            got += owner.poll(0.2)
        assert [(r.partition, r.key, r.value) for r in got] == [(1, b"fraud/pane/0", b"\x01\x02")]
    finally:
        starter.join(30)
        for client in closing:
            client.close()
        late.close()


def test_an_existing_topic_keeps_its_partition_count(broker, closing):
    topic, _ = _names()
    create_topics(broker.bootstrap, {topic: 2}, {"cleanup.policy": "compact"})
    with capture_logs() as logs:
        writer = connected_writer(_config(broker.bootstrap), topic, 4, closing)
    assert writer.partitions == 2
    assert any(e["event"] == "partials_topic_partition_count_differs" for e in logs)
    writer.send("m0", b"m0/k", b"v")  # crc32 % 2 == 1
    writer.send("fraud", b"fraud/k", b"w")  # % 2 == 0 (% 4 == 2: a partition that is not there)
    assert writer.flush(10.0)
    assert read_partitions(broker.bootstrap, topic, 2, 2) == {
        0: [(b"fraud/k", b"w")],
        1: [(b"m0/k", b"v")],
    }


def test_a_refused_record_is_counted_and_fails_the_next_flush_only(tmp_path: Path, closing):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    topic, _ = _names()
    (schemas / f"{topic}.json").write_text(json.dumps(  # the broker refuses every value
        {"type": "object", "properties": {"value": {"type": "object", "required": ["never"]}}}
    ))  # fmt: skip
    with EmbeddedBroker(schema_dir=schemas) as own:
        writer = connected_writer(_config(own.bootstrap), topic, 1, closing)
        writer.send("fraud", b"fraud/pane/0", b"refused")
        assert writer.flush(10.0) is False
        assert (writer.sent, writer.delivered, writer.failed, writer.in_flight) == (1, 0, 1, 0)
        assert writer.flush(1.0) is True  # reported once; nothing sent since
        writer.close()


def test_a_writer_that_is_not_connected_counts_what_it_is_given():
    writer = PartialsWriter(_config(f"127.0.0.1:{free_port()}"), "partials", 4)
    writer.send("fraud", b"k", b"v")
    assert writer.failed == 1 and writer.flush(0.1) is False and writer.flush(0.1) is True
    with pytest.raises(ValueError, match="reserved"):
        writer.send("fraud", FENCE_PREFIX + b"x", None)
