"""A group that hands the daemon one partition first and the other later.

Another member of the same group (a plain kafka-python consumer, as a stale member after a
crash or the old pod of a rolling deploy would be) holds one partition of both input topics
while the daemon starts, reads the other to its end and sits idle past ``idle_timeout``;
then it leaves and the daemon gets the held one too. That one is not the daemon's yet, but
it is a partition of the input topics: it holds the event-time clock back (for
``time.unassigned_timeout``), so none of its events is late, and the daemon ends with the
same summary (every window, metric, slice and counter), the same alerts and the same
rejects as ``monitor replay`` of the same topics read whole, which sees every partition
from the start. The stream also carries one prediction from a producer whose clock says
2099: it is rejected as ``future`` and moves no clock.

Without the clock's hold, the first partition alone moved the clock hours ahead, and every
event of the other was counted late.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from monitor.broker import free_port
from monitor.config import load_config
from monitor.replay import replay
from tests.daemon import assert_same, capture, read_topic
from tests.faults.harness import Daemon, PacedProducer, make_stream, write_config

EVENTS = 30_000
IDLE_S = 5.0  # the daemon's idle_timeout


class Holder(threading.Thread):
    """A member of the daemon's group that holds what it is assigned, reads nothing and
    commits nothing, until :meth:`leave`."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_records=1,
        )
        self.consumer.subscribe(topics)
        self.stop = threading.Event()
        self.assignments: list[set[tuple[str, int]]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            self.consumer.poll(timeout_ms=200, max_records=1)
            now = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            with self.lock:
                if not self.assignments or self.assignments[-1] != now:
                    self.assignments.append(now)
        self.consumer.close(autocommit=False)

    def held(self) -> set[tuple[str, int]]:
        with self.lock:
            return set(self.assignments[-1]) if self.assignments else set()

    def leave(self) -> None:
        self.stop.set()
        self.join(timeout=30)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_partition_assigned_late_changes_no_window(broker, make_topics, tmp_path: Path) -> None:
    topics = make_topics(2, 2)
    stream = make_stream(EVENTS, 2, seed=3)
    # One prediction from a producer whose clock is 73 years ahead, in partition 1's middle.
    future = json.dumps({"prediction_id": "clock-2099", "model": "fraud", "ts": 4_070_000_000,
                         "prediction": 1, "score": 0.9}).encode()
    stream.messages.insert(len(stream.messages) // 2, ("predictions", b"clock-2099", future, 1))
    stream.bad["future"] = 1
    total = len(stream)
    producer = PacedProducer(broker.bootstrap, topics, stream, 5.0)
    producer.start()
    producer.join(timeout=120)
    assert not producer.is_alive() and not producer.errors, producer.errors[:3]

    holder = Holder(broker.bootstrap, topics.group_id, [topics.predictions, topics.labels])
    holder.start()
    wait_for(lambda: len(holder.held()) == 4, 60, "the holder to be assigned every partition")

    port = free_port()
    config = write_config(tmp_path / "monitor.toml", broker.bootstrap, topics, port,
                          idle_timeout=f"{IDLE_S:g}s")
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    try:
        daemon.start()
        wait_for(lambda: len(holder.held()) == 2, 60, "the group to split the partitions")
        # One partition number of both topics each (range assignment, co-partitioned).
        held = {number for _, number in holder.held()}
        assert len(held) == 1, holder.held()
        share = sum(1 for message in stream.messages if message[3] not in held)
        assert 0 < share < total, share
        # The daemon reads its partition to the end (exactly its share: nothing of the
        # held one) and sits idle past idle_timeout, and a tick after it, while the other
        # is held elsewhere: from then on only the hold keeps the clock back.
        assert daemon.wait_processed(share, timeout=120) == share
        time.sleep(IDLE_S + 2.0)
        assert daemon.alive(), daemon.log_tail()
        partial = daemon.sample("monitor_events_processed_total") or 0.0
        assert partial == share, (partial, share)  # only its own partition's share so far
        holder.leave()
        daemon.wait_processed(total, timeout=180)
        time.sleep(1.5)  # a tick: counters current
        late = daemon.sample("monitor_late_events_total")
        code, _ = daemon.terminate()
        assert code == 0, daemon.log_tail()
    finally:
        holder.stop.set()
        daemon.ensure_dead()
    assert not late, f"{late} events late\n{daemon.log_tail()}"

    run_summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    cap = tmp_path / "capture.jsonl"
    assert capture(broker.bootstrap, [topics.predictions, topics.labels], cap, total) == total
    replayed = replay(load_config(config), [str(cap)], tmp_path / "replay")
    assert_same(json.loads(json.dumps(replayed)), run_summary)
    assert run_summary["rejects"] == stream.bad
    for model in run_summary["models"].values():
        assert model["counts"]["late"] == 0
    # The alerts on the topic are replay's: same ids, same transitions.
    expected = {
        (a["alert_id"], a["status"])
        for a in map(json.loads, (tmp_path / "replay" / "alerts.jsonl").read_text().splitlines())
    }
    sent = {(a["alert_id"], a["status"]) for a in
            (json.loads(m.value()) for m in read_topic(broker.bootstrap, topics.alerts))}
    assert sent == expected
