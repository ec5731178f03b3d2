"""Broker faults (issue 5, item 4), each with a broker of its own.

- Frozen (SIGSTOP) for ``FREEZE_S`` while traffic keeps coming: the daemon stays alive,
  ``/readyz`` turns 503 and back to 200, the lag drains, and its summary equals replay's.
- Stopped for good: the daemon stays alive and keeps retrying (logging at a rate limit),
  and SIGTERM ends it with exit code 0 within 10 s, after a final local checkpoint.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from monitor.broker import EmbeddedBroker, create_topics, free_port
from monitor.config import load_config
from monitor.replay import replay
from tests.daemon import assert_same, capture
from tests.faults.harness import (
    Daemon,
    PacedProducer,
    Stream,
    make_stream,
    write_config,
)

#: Twice the group's session timeout (6 s), four times the broker silence after which
#: /readyz turns 503 (half the session timeout): the 503 has room to be seen.
FREEZE_S = 12.0


def _topics(broker: EmbeddedBroker) -> SimpleNamespace:
    tag = uuid.uuid4().hex[:8]
    names = SimpleNamespace(
        predictions=f"predictions-{tag}", labels=f"labels-{tag}", alerts=f"alerts-{tag}",
        dead_letters=f"dead-letters-{tag}", group_id=f"group-{tag}",
    )  # fmt: skip
    create_topics(
        broker.bootstrap,
        {names.predictions: 2, names.labels: 2, names.alerts: 1, names.dead_letters: 1},
    )
    return names


def _halves(stream: Stream) -> tuple[Stream, Stream]:
    half = len(stream.messages) // 2
    return Stream(stream.messages[:half]), Stream(stream.messages[half:])


def test_frozen_broker_daemon_survives_readiness_flips_and_nothing_is_lost(tmp_path: Path):
    with EmbeddedBroker() as broker:
        topics = _topics(broker)
        stream = make_stream(20_000, 2, seed=21, span_s=3600)
        first, second = _halves(stream)
        port = free_port()
        config = write_config(tmp_path / "monitor.toml", broker.bootstrap, topics, port,
                              idle_timeout="60s")  # fmt: skip
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            producer = PacedProducer(broker.bootstrap, topics, first, 1.0)
            producer.run()
            daemon.start()
            daemon.wait_processed(len(first), timeout=60)
            _wait_ready(daemon, 200, timeout=15)
            # Traffic keeps coming through the freeze (the producer buffers it).
            producer = PacedProducer(broker.bootstrap, topics, second, FREEZE_S + 5)
            producer.start()
            time.sleep(2.0)
            broker.freeze()
            frozen_at = time.monotonic()
            statuses = set()
            while time.monotonic() - frozen_at < FREEZE_S:
                assert daemon.alive(), daemon.log_tail()
                statuses.add(daemon.get("/readyz", timeout=1.0)[0])
                status, _ = daemon.get("/healthz", timeout=1.0)
                assert status == 200  # alive: the loop keeps its heartbeat
                time.sleep(0.5)
            broker.thaw()
            assert 503 in statuses, statuses
            producer.join(timeout=60)
            assert not producer.errors, producer.errors[:3]
            daemon.wait_processed(len(stream), timeout=60)
            _wait_ready(daemon, 200, timeout=30)  # back to ready, lag drained
            assert daemon.sample("monitor_consumer_lag") in (0.0, None)
            code, took = daemon.terminate()
            assert code == 0 and took < 10.0, daemon.log_tail()
        finally:
            daemon.ensure_dead()
        cap = tmp_path / "capture.jsonl"
        n = capture(broker.bootstrap, [topics.predictions, topics.labels], cap, len(stream))
        assert n == len(stream)
    run_summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    replayed = replay(load_config(config), [str(cap)], tmp_path / "replay")
    assert_same(json.loads(json.dumps(replayed)), run_summary)


def _wait_ready(daemon: Daemon, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = daemon.get("/readyz")
        if status == want:
            return
        time.sleep(0.3)
    raise AssertionError(f"/readyz is {status} {body!r}, not {want}\n{daemon.log_tail()}")


def test_broker_gone_for_good_daemon_retries_then_stops_cleanly_with_a_final_checkpoint(
    tmp_path: Path,
):
    broker = EmbeddedBroker().start()
    try:
        topics = _topics(broker)
        stream = make_stream(5_000, 2, seed=22, span_s=1200)
        PacedProducer(broker.bootstrap, topics, stream, 0.5).run()
        port = free_port()
        config = write_config(tmp_path / "monitor.toml", broker.bootstrap, topics, port,
                              checkpoint_interval="1s")  # fmt: skip
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        daemon.start()
        daemon.wait_processed(len(stream), timeout=60)
        broker.stop()
        down_at = time.monotonic()
        while time.monotonic() - down_at < 15.0:
            assert daemon.alive(), daemon.log_tail()
            time.sleep(0.5)
        _wait_ready(daemon, 503, timeout=5)
        code, took = daemon.terminate(timeout=30)
        assert code == 0, daemon.log_tail()
        assert took < 10.0, (took, daemon.log_tail())
    finally:
        daemon.ensure_dead()
        broker.close()
    lines = [json.loads(x) for x in daemon.log_path.read_text().splitlines() if x.startswith("{")]
    final = [x for x in lines if x.get("event") == "checkpoint" and x.get("final")]
    assert final, daemon.log_tail()
    assert final[-1]["events"] == len(stream)
    # Retries are logged at a rate limit: a handful of warnings in 15 s, not one per poll.
    warnings = [
        x["event"]
        for x in lines
        if x.get("level") in ("warning", "error") and x.get("event", "").startswith("kafka")
    ]
    assert len(warnings) < 30, warnings
