"""Alerts end to end on a real broker: ``monitor run`` as a subprocess over a drifting
stream produces firing and resolved events on the alert topic, keyed by model, that an
independent client (confluent-kafka) reads with DESIGN section 2's fields; Prometheus
export shows the rule's transitions."""

from __future__ import annotations

import json
import urllib.request
import zlib
from pathlib import Path
from typing import Any

from monitor.broker import free_port
from tests.daemon import Daemon, daemon_config, read_topic

T0 = 1_760_000_000.0
FIELDS = {
    "alert_id", "status", "rule", "severity", "model", "model_version", "signal", "value",
    "threshold", "starts_at", "ends_at", "ts", "labels", "annotations",
}


def _records(partitions: int) -> list[Any]:
    """Two predictions a second for 10 min, labels inline: wrong from minute 3 to 6."""
    out = []
    for i in range(1200):
        t = T0 + i / 2
        wrong = 360 <= i < 720
        pid = f"p{i}"
        body = {"prediction_id": pid, "model": "fraud", "ts": t, "prediction": 1,
                "score": 0.8, "label": 0 if wrong else 1}
        out.append((pid.encode(), json.dumps(body).encode(), [],
                    zlib.crc32(pid.encode()) % partitions))
    return out


def test_daemon_sends_firing_and_resolved_alerts_to_the_alert_topic(
    broker, make_topics, produce, tmp_path: Path
) -> None:
    topics = make_topics(2, 2)
    produce(broker.bootstrap, topics.predictions, _records(2))
    port = free_port()
    config = tmp_path / "monitor.toml"
    config.write_text(daemon_config(broker.bootstrap, topics, port, """
[time]
pane = "10s"
allowed_lateness = "0s"
idle_timeout = "1s"      # the labels topic stays empty: do not let it hold the watermark

[[models]]
name = "fraud"
task = "binary"
positive_class = 1
windows = ["all", "1m"]

[[models.alerts]]
name = "accuracy-low"
signal = "accuracy@1m"
op = "<"
threshold = 0.8
resolve_threshold = 0.9
for = "30s"
severity = "critical"
labels = { team = "risk" }
annotations = { summary = "accuracy {value:.2f} below {threshold} on {model}" }
"""))
    with Daemon(config) as daemon:
        messages = read_topic(broker.bootstrap, topics.alerts, 2)
        daemon.assert_alive()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        code, _seconds = daemon.terminate(timeout=30)
        assert code == 0
    assert len(messages) == 2, (tmp_path / "daemon.log").read_text()[-3000:]
    assert [m.key() for m in messages] == [b"fraud", b"fraud"]
    firing, resolved = (json.loads(m.value()) for m in messages)
    assert set(firing) == FIELDS and set(resolved) == FIELDS
    assert (firing["status"], resolved["status"]) == ("firing", "resolved")
    assert firing["alert_id"] == resolved["alert_id"]
    assert firing["rule"] == "accuracy-low" and firing["severity"] == "critical"
    assert firing["signal"] == "accuracy@1m" and firing["threshold"] == 0.8
    assert firing["labels"]["team"] == "risk" and firing["labels"]["alertname"] == "accuracy-low"
    assert firing["annotations"]["summary"] == (
        f"accuracy {firing['value']:.2f} below 0.8 on fraud"
    )
    assert firing["starts_at"].startswith("2025-10-09T08:5")  # event time, not wall time
    assert firing["ends_at"] is None and resolved["ends_at"] > resolved["starts_at"]
    assert 'monitor_alert_transitions_total{model="fraud",rule="accuracy-low",status="firing"}' \
        in metrics
    # Replaying the same input gives the same alerts (same ids): replay == run.
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(
        json.dumps({"topic": topics.predictions, "partition": part, "offset": n,
                    "key": key.decode(), "payload": value.decode()}) + "\n"
        for n, (key, value, _h, part) in enumerate(_records(2))
    ))  # fmt: skip
    from monitor.config import load_config
    from monitor.replay import replay

    replay(load_config(config), [str(capture)], tmp_path / "replay")
    replayed = [json.loads(line) for line in (tmp_path / "replay" / "alerts.jsonl").open()]
    assert [(a["alert_id"], a["status"]) for a in replayed] == [
        (firing["alert_id"], "firing"), (resolved["alert_id"], "resolved")
    ]
