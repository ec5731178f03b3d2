"""The daemon end to end on a real broker: produce with confluent-kafka (an independent
client), run ``monitor run`` as a subprocess, stop it with SIGTERM, and check that its
summary equals ``monitor replay`` over a capture of the same topics, that bad messages
reached the dead-letter topic with their reasons, and that Prometheus saw the numbers.
The main test runs once per input client (``[kafka] client``).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.request
import zlib
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from monitor.broker import free_port
from monitor.config import load_config
from monitor.replay import replay
from tests.daemon import (
    Daemon,
    assert_same,
    capture,
    daemon_config,
    metric_sample,
    read_topic,
)
from tests.prom import PrometheusServer

T0 = 1_760_000_000.0
GARBAGE: list[tuple[bytes, str]] = [
    (b"\xff\xfe\x00garbage", "not_json"),
    (b'{"prediction_id": "x", "model": "fraud", "ts": 1760000000', "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (b'{"model": "fraud", "ts": 1760000000, "prediction": 1}', "missing_field"),
    (b'{"prediction_id": 7, "model": "fraud", "ts": 1760000000, "prediction": 1}', "bad_type"),
    (b'{"prediction_id": "s", "model": "fraud", "ts": 1760000000, "prediction": 1, '
     b'"score": 1.5}', "bad_value"),
    (b'{"prediction_id": "u", "model": "nope", "ts": 1760000000, "prediction": 1}',
     "unknown_model"),
    (b'{"prediction_id": "n", "model": "fraud", "ts": NaN, "prediction": 1}', "bad_value"),
    (b'{"prediction_id": "d", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "too_deep"),
    (b'{"prediction_id": "big", "pad": "' + b"x" * (10 << 20) + b'"}', "too_large"),
]


def _partition(pid: str, partitions: int) -> int:
    return zlib.crc32(pid.encode()) % partitions


def _stream(n: int, partitions: int, seed: int = 3) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Predictions and labels (each partition in event-time order), and the truth."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.sort(rng.uniform(0, 1800, n))
    y = rng.integers(0, 2, n)
    score = np.clip(np.where(y == 1, rng.beta(5, 2, n), rng.beta(2, 5, n)), 0, 1)
    pred = (score >= 0.5).astype(int)
    preds, labels = [], []
    for i in range(n):
        pid = f"p{i}"
        part = _partition(pid, partitions)
        body = {"prediction_id": pid, "model": "fraud", "ts": float(ts[i]),
                "prediction": int(pred[i]), "score": float(score[i]),
                "model_version": "v1" if i % 3 else "v2",
                "segment": {"country": ["DE", "FR", "US"][i % 3]}}
        preds.append((pid.encode(), json.dumps(body).encode(), [], part))
    order = np.argsort(ts + 30.0, kind="stable")  # labels 30 s after their prediction
    for i in order:
        pid = f"p{i}"
        body = {"prediction_id": pid, "label": int(y[i]), "ts": float(ts[i] + 30.0)}
        labels.append((pid.encode(), json.dumps(body).encode(), [], _partition(pid, partitions)))
    return preds, labels, {"y": y, "pred": pred}


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_run_matches_replay_and_dead_letters_arrive(
    broker, make_topics, produce, tmp_path, client
):
    topics = make_topics(4, 4)
    preds, labels, truth = _stream(3000, 4)
    rng = np.random.default_rng(9)
    mixed = list(preds)
    for k, (value, _reason) in enumerate(GARBAGE):
        mixed.insert(int(rng.integers(0, len(mixed))), (b"bad%d" % k, value, [], k % 4))
    produce(broker.bootstrap, topics.predictions, mixed)
    label_garbage = (b"l-bad", b'{"prediction_id": "p1", "ts": 1760000000}', [], 1)
    produce(broker.bootstrap, topics.labels, [*labels, label_garbage])
    total = len(mixed) + len(labels) + 1

    http_port = free_port()
    config_path = tmp_path / "monitor.toml"
    config_path.write_text(daemon_config(broker.bootstrap, topics, http_port, """
[time]
pane = "10s"
allowed_lateness = "20s"

[[models]]
name = "fraud"
task = "binary"
positive_class = 1
windows = ["all", "10m", "ewm5m"]
segments = ["country"]
""", client=client))
    with Daemon(config_path) as daemon:
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            daemon.assert_alive()
            try:
                text = _scrape(http_port)
            except OSError:
                time.sleep(0.5)
                continue
            if metric_sample(text, "monitor_events_processed_total") == total:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"daemon did not process {total} events: "
                                 f"{metric_sample(text, 'monitor_events_processed_total')}")
        assert metric_sample(text, "monitor_rejected_total") == len(GARBAGE) + 1
        assert metric_sample(text, "monitor_join_total", model="fraud", outcome="matched") == 3000
        true_pos = int(((truth["y"] == 1) & (truth["pred"] == 1)).sum())
        with PrometheusServer([f"127.0.0.1:{http_port}"], tmp_path) as prom:
            prom.wait_for('sum by (model) (monitor_confusion_total{model="fraud",'
                          'dimension="model",actual="positive",predicted="positive"})', true_pos)
            not_json = sum(1 for _value, reason in GARBAGE if reason == "not_json")
            prom.wait_for('sum(monitor_rejected_total{reason="not_json"})', not_json)
        code, seconds = daemon.terminate()
        assert code == 0 and seconds < 10.0

    run_summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    fraud = run_summary["models"]["fraud"]
    assert fraud["counts"]["matched"] == 3000
    assert fraud["counts"]["late"] == 0
    assert math.isclose(fraud["windows"]["all"]["accuracy"],
                        accuracy_score(truth["y"], truth["pred"]), rel_tol=1e-12)
    assert math.isclose(fraud["windows"]["all"]["f1"], f1_score(truth["y"], truth["pred"]),
                        rel_tol=1e-12)
    reasons: dict[str, int] = {}
    for _value, reason in GARBAGE:
        reasons[reason] = reasons.get(reason, 0) + 1
    reasons["missing_field"] += 1  # the label without one
    assert run_summary["rejects"] == reasons

    capture_path = tmp_path / "capture.jsonl"
    inputs = [topics.predictions, topics.labels]
    assert capture(broker.bootstrap, inputs, capture_path, total) == total
    replayed = replay(load_config(config_path), [str(capture_path)], tmp_path / "replay")
    assert_same(json.loads(json.dumps(replayed)), run_summary)

    dead = read_topic(broker.bootstrap, topics.dead_letters, len(GARBAGE) + 1)
    assert len(dead) == len(GARBAGE) + 1
    by_key = {m.key(): m for m in dead}
    for k, (value, reason) in enumerate(GARBAGE):
        msg = by_key[b"bad%d" % k]
        assert msg.value() == value
        headers = dict(msg.headers())
        assert headers["monitor.reason"] == reason.encode()
        assert headers["monitor.source.topic"] == topics.predictions.encode()
        assert int(headers["monitor.source.partition"]) == k % 4
    assert dict(by_key[b"l-bad"].headers())["monitor.source.topic"] == topics.labels.encode()


def test_bad_partition_layout_is_refused(broker, make_topics, tmp_path):
    topics = make_topics(4, 6)
    config_path = tmp_path / "monitor.toml"
    config_path.write_text(daemon_config(broker.bootstrap, topics, 0, """
[[models]]
name = "m"
task = "regression"
"""))
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(config_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert re.search(r"4", done.stderr) and re.search(r"6", done.stderr)
    assert topics.predictions in done.stderr and topics.labels in done.stderr
