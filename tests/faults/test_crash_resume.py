"""Crash and resume (issue 5, item 3): SIGKILL the daemon at random instants while a
stream with delayed labels and bad messages is being produced, restart it each time with
the same state directory, and at the end its ``summary.json`` must equal ``monitor replay``
of a capture of the same topics: every counter, metric, window and slice (floats within
1e-9). Alerts seen on the alert topic are all replay's, with replay's ids (a repeat across
a crash carries the same ``alert_id``), and every bad message reached the dead-letter topic.

Size: ``EVENTS`` messages (200k here, ~2.5 min on 2 cores); the issue asks for 1M with 10
kills, which is one command::

    MONITOR_CRASH_EVENTS=1000000 python -m pytest tests/faults/test_crash_resume.py

``MONITOR_CRASH_KILLS`` (default 10) and ``MONITOR_CRASH_SEED`` (default 5) vary the run.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from monitor.broker import free_port
from monitor.config import load_config
from monitor.replay import replay
from tests.daemon import assert_same, capture, read_topic
from tests.faults.harness import (
    Daemon,
    PacedProducer,
    make_stream,
    write_config,
)

EVENTS = int(os.environ.get("MONITOR_CRASH_EVENTS", "200000"))  # the issue asks for 1_000_000
KILLS = int(os.environ.get("MONITOR_CRASH_KILLS", "10"))
SEED = int(os.environ.get("MONITOR_CRASH_SEED", "5"))
#: Wall time over which the stream is produced: the kills land while data flows.
PRODUCE_S = max(45.0, EVENTS / 5000)
#: Longest uptime before a kill: the kills spread over the production, however long.
MAX_UPTIME_S = max(12.0, 2 * PRODUCE_S / KILLS)


def test_sigkill_at_random_instants_loses_and_double_counts_nothing(
    broker, make_topics, tmp_path: Path
) -> None:
    topics = make_topics(4, 4)
    stream = make_stream(EVENTS, 4, seed=SEED)
    total = len(stream)
    port = free_port()
    config = write_config(tmp_path / "monitor.toml", broker.bootstrap, topics, port)
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    producer = PacedProducer(broker.bootstrap, topics, stream, PRODUCE_S)
    rng = np.random.default_rng(SEED)
    # (uptime, events processed when killed, whether the stream was still being produced)
    kills: list[tuple[float, float | None, bool]] = []
    try:
        daemon.start()
        producer.start()
        for _ in range(KILLS):
            # A random instant: during start-up, the group join, catching up, a checkpoint
            # write (every second) or steady processing.
            uptime = float(rng.uniform(1.0, MAX_UPTIME_S))
            deadline = time.monotonic() + uptime
            processed = None
            while time.monotonic() < deadline:
                assert daemon.alive(), daemon.log_tail()
                processed = daemon.sample("monitor_events_processed_total") or processed
                time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
            producing = producer.is_alive()
            daemon.kill()
            kills.append((round(uptime, 2), processed, producing))
            daemon.start()
        producer.join(timeout=PRODUCE_S + 120)
        assert not producer.is_alive() and not producer.errors, producer.errors[:3]
        processed_final = daemon.wait_processed(total, timeout=120 + EVENTS / 2000)
        # Nothing counted twice: the counter restored from checkpoints lands exactly.
        time.sleep(1.5)
        assert daemon.sample("monitor_events_processed_total") == total
        assert processed_final == total
        code, took = daemon.terminate()
        assert code == 0, daemon.log_tail()
        assert took < 10.0
    finally:
        daemon.ensure_dead()
    assert len(kills) == KILLS
    # Most kills landed while there was work: after the restore with messages left, or in
    # the start-up or group join (nothing processed yet in that life: a restarted member
    # waits for the killed one's session to end) while the stream was still produced.
    restored = [k for k in kills if k[1] is not None and k[1] < total]
    joining = [k for k in kills if k[1] is None and k[2]]
    assert len(restored) + len(joining) >= KILLS // 2, kills
    assert restored, kills  # some in the middle of processing
    log_text = daemon.log_path.read_text(errors="replace")
    assert log_text.count("checkpoint_loaded") >= len(restored) // 2, kills

    run_summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    cap = tmp_path / "capture.jsonl"
    assert capture(broker.bootstrap, [topics.predictions, topics.labels], cap, total) == total
    replayed = replay(load_config(config), [str(cap)], tmp_path / "replay")
    assert_same(json.loads(json.dumps(replayed)), run_summary)
    assert run_summary["rejects"] == stream.bad
    fraud = run_summary["models"]["fraud"]["counts"]
    assert fraud["late"] == 0 and fraud["expired"] > 0 and fraud["matched"] > 0

    # Alerts: whatever reached the topic is replay's, with replay's ids; a repeat after a
    # crash is the same transition with the same id. The drift's firing and resolution are
    # both there (they happen mid-stream, not in the panes only the final flush closes).
    expected = {
        (a["alert_id"], a["status"]): a
        for a in map(json.loads, (tmp_path / "replay" / "alerts.jsonl").read_text().splitlines())
    }
    assert {s for _, s in expected} == {"firing", "resolved"}, expected
    sent = [json.loads(m.value()) for m in read_topic(broker.bootstrap, topics.alerts)]
    assert sent, daemon.log_tail()
    for alert in sent:
        assert expected.get((alert["alert_id"], alert["status"])) == alert, alert
    assert {(a["alert_id"], a["status"]) for a in sent} == set(expected)

    # Dead letters: at least once each (a crash before a checkpoint re-sends some).
    dead = Counter(m.key() for m in read_topic(broker.bootstrap, topics.dead_letters))
    assert stream.bad_keys <= set(dead), sorted(stream.bad_keys - set(dead))[:5]
    print(
        f"\n{total} events, kills (uptime s, processed): {kills}, "
        f"dead letters {sum(dead.values())} for {sum(stream.bad.values())} rejects"
    )
