"""Recovery: time from start to ready with 1M pending predictions in the checkpoint
(issue item 6).

Builds the checkpoint in this process: the config ``monitor run`` will read (one binary
model, 10 numeric features, windows ``all``/``1h``/``ewm30m``, ``max_pending`` 2M, label
TTL 1 d), an engine fed ``--pending`` predictions that never get a label, saved with
``CheckpointStore``. Then, against a fresh Tansu broker with the input topics created
(empty), for each input client (kafka-python, confluent):

- ``monitor run`` with an empty state directory (the start-up and group join alone);
- the same with that checkpoint: seconds from the spawn to ``/readyz`` 200;
- ``CheckpointStore.load`` of the checkpoint in this process (the part the state adds).

Besides, with the bare clients (no daemon), where the group join's seconds go: subscribe
to first assignment by session timeout (Tansu holds a forming group's JoinGroup for half
of it; Apache Kafka for ``group.initial.rebalance.delay.ms``), and assignment to every
partition's lag known by fetch wait (an empty partition's first fetch is answered after
``fetch_max_wait_ms``).

Target: ready <= 5 s with 1M pending::

    python bench/recovery.py
    python bench/recovery.py --pending 100000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib

from monitor.broker import EmbeddedBroker
from monitor.config import load_config
from monitor.core.pipeline import Pipeline
from monitor.logs import configure_logging
from monitor.state.checkpoint import MAGIC, CheckpointStore
from monitor.state.format import decode_engine

TARGET = 5.0
#: Log events that mark the phases of a daemon's start, in the order they happen.
PHASES = ("http_listening", "kafka_source_subscribed", "checkpoint_loaded",
          "assignment_changed")
CLIENTS = ("kafka-python", "confluent")
#: Heartbeat interval by session timeout: the daemons' (6 s) and the config's defaults (10 s).
HEARTBEAT_MS = {6000: 1000, 10000: 3000}
#: Seconds of the parts of a checkpoint load, measured in-process.
PARTS: dict[str, float] = {}


EXPLAINED = """
Where the seconds from the spawn to ready go, and what the daemon does about each:

- **Interpreter, config, logging, the Kafka client: ~0.4 s to listening.** `monitor run`
  (`monitor.startup.Prestart`) binds the HTTP port and starts the connect and the group join
  from light modules only, before it imports the engine (scipy, river, sklearn: ~1 s) and
  loads the checkpoint. Until the state is loaded, `/readyz` answers 503 "starting: loading
  the state" and `/healthz` 200.
- **The group join: the broker's, ~3 s.** Both clients wait the same time (table above):
  Tansu holds the JoinGroup of a forming group for half the session timeout, in 1 s steps
  (its coordinator's debug log shows the join loop at `elapsed_ms` 0, 1001, 2003, 3004; 5 s
  with the config's default 10 s session), then answers. A static member
  (`group_instance_id`) waits twice as long there. Apache Kafka holds the first join of an
  empty group for `group.initial.rebalance.delay.ms` (a broker setting, 3 s by default),
  and refuses sessions under `group.min.session.timeout.ms` (6 s): no standard client
  setting shortens the join against either, so the daemon spends it on its own start-up
  instead. kafka-python joins only inside `poll`: a background thread polls until the
  assignment arrives (new partitions stay paused, positions do not move), then the run loop
  takes the consumer over; librdkafka joins on its own threads once subscribed. Reading the
  checkpoint and importing the engine now overlap the join: with the checkpoint, the
  assignment comes no later than with an empty state unless the load outlasts the join.
  One catch with kafka-python 3.0.12: today's checkpoint unpickles in one `pickle.loads`
  that holds the interpreter lock for ~3 s at 1M pending, and a join that completes while
  no poll is waiting for it (the waiting poll's timer ran out during the stall) is thrown
  away and sent again: a second 3 s window (seen in 2 of 3 daemon starts with 1M pending,
  and in 2-6 of 9 in-process starts under a 3 s stall). The background join therefore
  waits in the group coordinator's own poll with a 5 s timer: 0 of 9 under the same stall.
  librdkafka's threads do not need the lock.
- **The first fetch: the fetch wait.** An empty partition's high watermark (the lag
  `/readyz` waits for) comes with the first fetch answer, which the broker holds for the
  fetch wait when there is nothing to return: 500 ms by default, about 1 s for librdkafka
  (two rounds after an assignment). The daemon's consumers wait at most 100 ms (a few more
  idle fetches a second; none of it when records flow): kafka-python then knows every lag
  ~0.1-0.3 s after the assignment; librdkafka ~0.3 s, but in about one start in four ~1 s
  (seen in-process too, with the source alone; not traced further).
- **Readiness: judged after every poll while not ready,** not at the next one-second tick:
  `/readyz` turns 200 within a poll (50 ms while starting) of the last lag becoming known.
"""


def build_checkpoint(daemon: benchlib.Daemon, pending: int, bootstrap: str) -> tuple[int, float]:
    """Save a checkpoint of ``pending`` waiting predictions where ``daemon`` will look, with
    the same predictions written to the input topic (so that the checkpoint's offsets are
    its end, as after a clean stop); return the checkpoint's size in bytes and the seconds
    one ``CheckpointStore.load`` takes."""
    from confluent_kafka import Producer

    cfg = load_config(daemon.config_path)
    engine = Pipeline(cfg)
    topics = daemon.topics
    engine.track(benchlib.all_partitions(topics["predictions"], topics["labels"]))
    source = benchlib.stream(pending, label_share=0.0, predictions_topic=topics["predictions"],
                             labels_topic=topics["labels"])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                         "batch.num.messages": 10_000, "queue.buffering.max.kbytes": 1_048_576})
    failed: list[str] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    while batch := list(islice(source, 10_000)):
        for m in batch:
            while True:
                try:
                    producer.produce(m.topic, m.value, m.key, partition=m.partition,
                                     on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
        engine.process(batch)
        engine.drain_signals()
    if producer.flush(300) or failed:
        raise RuntimeError(f"producing the predictions failed: {failed[:3]}")
    store = CheckpointStore(cfg.state.dir)
    size = store.save(engine)
    del engine
    t0 = time.perf_counter()
    loaded = CheckpointStore(cfg.state.dir).load(cfg)
    load_s = time.perf_counter() - t0
    assert loaded is not None
    raw = store.path.read_bytes()
    header_len = int.from_bytes(raw[len(MAGIC):len(MAGIC) + 4], "big")
    body = raw[len(MAGIC) + 4 + header_len:]
    t0 = time.perf_counter()
    hashlib.sha256(body).hexdigest()
    PARTS["sha256 of the body"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    decode_engine(body, cfg)
    PARTS["decode_engine of the body (the engine)"] = time.perf_counter() - t0
    waiting = sum(len(t) for s in loaded.partitions.values() for t in s.join.pending)
    if waiting != pending:
        raise RuntimeError(f"checkpoint holds {waiting} pending, not {pending}")
    return size, load_s


def loaded_line(daemon: benchlib.Daemon) -> dict[str, object] | None:
    """The daemon's ``checkpoint_loaded`` log record, if it logged one."""
    for line in (daemon.workdir / "daemon.log").read_text(errors="replace").splitlines():
        if "checkpoint_loaded" in line:
            try:
                record: dict[str, object] = json.loads(line)
                return record
            except json.JSONDecodeError:
                continue
    return None


def _kafka_python_join(bootstrap: str, topics: list[str], group: str, session_ms: int,
                       extra: dict[str, object]) -> tuple[float, float]:
    """kafka-python: seconds from subscribe to the assignment, then to every highwater."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, session_timeout_ms=session_ms,
                             heartbeat_interval_ms=HEARTBEAT_MS[session_ms], **extra)
    try:
        t0 = time.monotonic()
        consumer.subscribe(topics)
        while not consumer.assignment():
            consumer.poll(timeout_ms=20)
        t1 = time.monotonic()
        while any(consumer.highwater(tp) is None for tp in consumer.assignment()):
            consumer.poll(timeout_ms=20)
        return t1 - t0, time.monotonic() - t1
    finally:
        consumer.close()


def _confluent_join(bootstrap: str, topics: list[str], group: str, session_ms: int,
                    extra: dict[str, object]) -> tuple[float, float]:
    """confluent-kafka: seconds from subscribe to ``on_assign``, then to every partition's
    end-of-partition event (its position and high watermark known)."""
    from confluent_kafka import Consumer

    assigned: list[tuple[float, int]] = []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "session.timeout.ms": session_ms,
                         "heartbeat.interval.ms": HEARTBEAT_MS[session_ms], **extra})
    try:
        t0 = time.monotonic()
        consumer.subscribe(topics, on_assign=lambda _c, parts: assigned.append(
            (time.monotonic(), len(parts))))
        eof: set[tuple[str, int]] = set()
        while not assigned or len(eof) < assigned[0][1]:
            for m in consumer.consume(100, 0.02):
                if m.error() is not None:
                    eof.add((m.topic(), m.partition()))
        t1 = assigned[0][0]
        return t1 - t0, time.monotonic() - t1
    finally:
        consumer.close()


def join_table(bootstrap: str) -> list[str]:
    """Markdown rows: the join and the first fetch with the bare clients, by setting."""
    from monitor.broker import create_topics

    topics = ["join.predictions", "join.labels"]
    create_topics(bootstrap, dict.fromkeys(topics, benchlib.PARTITIONS))
    cases: list[tuple[str, str, int, dict[str, object]]] = [
        ("kafka-python", "", 6000, {}),
        ("kafka-python", "", 10000, {}),
        ("kafka-python", "`fetch_max_wait_ms=100` (the daemon's)", 6000,
         {"fetch_max_wait_ms": 100}),
        ("kafka-python", "static member (`group_instance_id`)", 6000,
         {"group_instance_id": "replica-0"}),
        ("confluent", "", 6000, {}),
        ("confluent", "", 10000, {}),
        ("confluent", "`fetch.wait.max.ms=100` (the daemon's)", 6000,
         {"fetch.wait.max.ms": 100}),
    ]
    rows = []
    for n, (client, note, session_ms, extra) in enumerate(cases):
        measure = _kafka_python_join if client == "kafka-python" else _confluent_join
        join_s, fetch_s = measure(bootstrap, topics, f"join-{n}", session_ms, extra)
        rows.append(f"| {client} | {session_ms / 1000:.0f} s | {note or 'defaults'} | "
                    f"{join_s:.2f} | {fetch_s:.2f} |")
    return rows


def final_events(daemon: benchlib.Daemon) -> object:
    """``events`` of the daemon's final ``checkpoint`` log record (None without one)."""
    events = None
    for line in (daemon.workdir / "daemon.log").read_text(errors="replace").splitlines():
        if '"checkpoint"' in line and '"final": true' in line:
            events = json.loads(line).get("events")
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    body = {"models": [benchlib.model_dict("m0", extra={"max_pending": 2_000_000,
                                                         "label_ttl": "1d"})]}
    empty_s: dict[str, float] = {}
    full_s: dict[str, float] = {}
    phases: dict[tuple[str, str], dict[str, float]] = {}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        empty_dir, full_dir = Path(tmp) / "empty", Path(tmp) / "full"
        empty_dir.mkdir()
        full_dir.mkdir()
        empty = benchlib.Daemon(empty_dir, broker.bootstrap, body, topics="rec")
        empty.create_topics()
        for client in CLIENTS:  # before the predictions are written: start-up alone
            os.environ["MONITOR_KAFKA_CLIENT"] = client  # the daemons' [kafka] client
            shutil.rmtree(empty_dir / "state", ignore_errors=True)
            empty = benchlib.Daemon(empty_dir, broker.bootstrap, body, topics="rec")
            empty.start()
            try:
                empty_s[client] = empty.wait_ready()
                phases[client, "empty"] = empty.phases(PHASES)
            finally:
                empty.stop()
            (empty_dir / "daemon.log").unlink()  # the next client's daemon logs afresh
        full = benchlib.Daemon(full_dir, broker.bootstrap, body, topics="rec")
        t0 = time.perf_counter()
        size, load_s = build_checkpoint(full, args.pending, broker.bootstrap)
        build_s = time.perf_counter() - t0
        record = None
        for client in CLIENTS:
            os.environ["MONITOR_KAFKA_CLIENT"] = client
            # The same checkpoint each time: the daemon's final checkpoint rewrites it with
            # the same state (no event arrives).
            full = benchlib.Daemon(full_dir, broker.bootstrap, body, topics="rec")
            full.start()
            try:
                full_s[client] = full.wait_ready()
                record = loaded_line(full)
                phases[client, "full"] = full.phases(PHASES)
            finally:
                full.stop()
            if record is None:
                raise RuntimeError(f"the daemon did not load the checkpoint: {full.log_tail()}")
            final = final_events(full)
            if final != args.pending:  # it read nothing again (the checkpoint's offsets held)
                raise RuntimeError(f"the daemon ended with {final} events, not {args.pending}")
            (full_dir / "daemon.log").unlink()
        os.environ.pop("MONITOR_KAFKA_CLIENT", None)
        joins = join_table(broker.bootstrap)
        shutil.rmtree(full_dir / "state", ignore_errors=True)
    assert record is not None
    print("## Recovery (item 6)\n")
    print(f"machine: {benchlib.machine()}\n")
    print(f"checkpoint: {args.pending:,} pending predictions, {size / 1e6:.0f} MB, built in "
          f"{build_s:.0f} s, its predictions written to the input topic too (the "
          f"checkpoint's offsets are its end); the daemon logged `checkpoint_loaded` with "
          f"events={record.get('events')} and read nothing more; session timeout 6 s\n")
    print("| measurement | kafka-python | confluent |")
    print("| --- | ---: | ---: |")
    print("| `monitor run` start to `/readyz` 200, empty state (topics empty too) | "
          + " | ".join(f"{empty_s[c]:.2f}" for c in CLIENTS) + " |")
    print(f"| **`monitor run` start to `/readyz` 200, {args.pending:,} pending** | "
          + " | ".join(f"**{full_s[c]:.2f}**" for c in CLIENTS) + " |")
    print(f"\n`CheckpointStore.load` of that checkpoint, in-process: {load_s:.2f} s ("
          + ", ".join(f"{part} {seconds:.2f} s" for part, seconds in PARTS.items()) + ").\n")
    print("Phases, seconds from the spawn to the first log record of each (ready: the "
          "first `/readyz` 200, polled every 20 ms):\n")
    print("| phase | " + " | ".join(f"{c}, {k}" for c in CLIENTS for k in ("empty", "checkpoint"))
          + " |")
    print("| --- |" + " ---: |" * 2 * len(CLIENTS))
    for phase in PHASES:
        cells = [phases[c, k].get(phase) for c in CLIENTS for k in ("empty", "full")]
        print(f"| {phase} | " + " | ".join("" if v is None else f"{v:.2f}" for v in cells)
              + " |")
    print("| ready | " + " | ".join(f"{(empty_s if k == 'empty' else full_s)[c]:.2f}"
                                    for c in CLIENTS for k in ("empty", "full")) + " |")
    print("\nThe group join and the first fetch with the bare clients on the same broker "
          "(a new group each; topics of 4 partitions, empty): seconds from `subscribe` to "
          "the assignment, and from the assignment to every partition's lag known:\n")
    print("| client | session timeout | settings | subscribe -> assigned | "
          "assigned -> lag known |")
    print("| --- | ---: | --- | ---: | ---: |")
    print("\n".join(joins))
    print(EXPLAINED)
    worst = max(full_s.values())
    verdict = "met" if worst <= TARGET else "NOT met"
    kp = phases["kafka-python", "full"]
    join = kp.get("assignment_changed", 0.0) - kp.get("kafka_source_subscribed", 0.0)
    print(f"\ntarget ready <= {TARGET:.0f} s with the checkpoint: **{verdict}** "
          f"({worst:.2f} s, the slower client); listening {kp.get('http_listening', 0.0):.2f} s "
          f"after the spawn, the group join ({join:.2f} s) overlaps the checkpoint load "
          f"(loaded at {kp.get('checkpoint_loaded', 0.0):.2f} s), ready "
          f"{full_s['kafka-python'] - kp.get('assignment_changed', 0.0):.2f} s after the "
          "assignment (the first fetch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
