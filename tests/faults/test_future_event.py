"""One prediction from a producer whose clock says 2099, inside a steady stream, on a
1-partition and a 2-partition topic (the second partition idle past ``idle_timeout``, so
the watermark is the largest time read): the daemon rejects it as ``future`` and
dead-letters it, nothing is late, and every window, metric and counter equals a replay of
the same stream without it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from monitor.broker import free_port
from monitor.config import load_config
from monitor.replay import replay
from tests.daemon import assert_same, capture, read_topic
from tests.faults.harness import Daemon, PacedProducer, make_stream, write_config

EVENTS = 8_000
OUTLIER = json.dumps({"prediction_id": "clock-2099", "model": "fraud", "ts": 4_070_000_000,
                      "prediction": 1, "score": 0.9}).encode()


@pytest.mark.parametrize("partitions", [1, 2])
def test_future_prediction_changes_no_window(broker, make_topics, tmp_path: Path,
                                             partitions: int) -> None:
    topics = make_topics(partitions, partitions)
    stream = make_stream(EVENTS, 1, seed=8)  # all traffic on partition 0; 1 stays silent
    stream.messages.insert(len(stream.messages) // 2, ("predictions", b"clock-2099", OUTLIER, 0))
    total = len(stream)
    producer = PacedProducer(broker.bootstrap, topics, stream, 3.0)
    producer.start()
    producer.join(timeout=120)
    assert not producer.is_alive() and not producer.errors, producer.errors[:3]

    port = free_port()
    config = write_config(tmp_path / "monitor.toml", broker.bootstrap, topics, port,
                          idle_timeout="2s")
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    try:
        daemon.start()
        daemon.wait_processed(total, timeout=180)
        time.sleep(4)  # partition 1 (if any) idle past idle_timeout; a tick after it
        rejected = daemon.sample("monitor_rejected_total", reason="future")
        late = daemon.sample("monitor_late_events_total")
        code, _ = daemon.terminate()
        assert code == 0, daemon.log_tail()
    finally:
        daemon.ensure_dead()
    assert rejected == 1 and not late, (rejected, late)
    letters = read_topic(broker.bootstrap, topics.dead_letters)
    dead = [m for m in letters if m.key() == b"clock-2099"]
    assert len(dead) == 1
    assert dict(dead[0].headers())["monitor.reason"] == b"future"

    # The same stream without the outlier, replayed: the daemon's windows are its windows.
    cap = tmp_path / "capture.jsonl"
    assert capture(broker.bootstrap, [topics.predictions, topics.labels], cap, total) == total
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(line for line in cap.read_text().splitlines(keepends=True)
                             if "clock-2099" not in line))
    replayed = json.loads(json.dumps(replay(load_config(config), [str(clean)], tmp_path / "r")))
    run = json.loads((tmp_path / "state" / "summary.json").read_text())
    assert run["models"]["fraud"]["counts"]["late"] == 0
    assert_same(replayed["models"], run["models"])
    assert run["rejects"] == {**replayed["rejects"], "future": 1}
