"""A small capture for the export tests: two models (binary with drift features and an
alert that fires and resolves; multiclass with per-class signals), and a replay of it
through the command line with ``--tensorboard`` and ``--cloudwatch``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

T0 = 1_760_000_000.0
MINUTES = 8
CLASSES = ["billing", "support", "sales"]

CONFIG = """\
[time]
pane = "10s"
allowed_lateness = "0s"

[[models]]
name = "fraud"
task = "binary"
positive_class = 1
windows = ["all", "1m", "ewm1m"]
features = { amount = "numeric", country = "categorical" }
reference = "reference.csv"
drift_min_samples = 50
detectors = ["adwin"]

[[models.alerts]]
name = "acc-low"
signal = "accuracy@1m"
op = "<"
threshold = 0.8
resolve_threshold = 0.9
for = "30s"
severity = "critical"

[[models]]
name = "intent"
task = "multiclass"
classes = ["billing", "support", "sales"]
windows = ["all", "1m"]
metrics = ["accuracy", "macro_f1", "class_recall"]
"""


def write_capture(path: Path) -> int:
    """Inline-labelled predictions, 2 per second per model; fraud is wrong for minutes 3-5
    (accuracy@1m falls below 0.8, then recovers). Returns the number of lines."""
    lines = []
    offset = 0
    for i in range(MINUTES * 60 * 2):
        t = T0 + i / 2
        wrong = 180 <= i / 2 < 300
        pid = f"f{i}"
        fraud = {"prediction_id": pid, "model": "fraud", "ts": t, "prediction": 1,
                 "score": round(0.55 + (i % 40) / 100, 2), "label": 0 if wrong and i % 5 else 1,
                 "features": {"amount": 10.0 + (i % 50) * (3.0 if wrong else 1.0),
                              "country": ["US", "DE", "FR"][i % 3]}}
        lines.append(json.dumps({"topic": "predictions", "partition": i % 2, "offset": offset,
                                 "key": pid, "payload": json.dumps(fraud)}))
        offset += 1
        qid = f"q{i}"
        intent = {"prediction_id": qid, "model": "intent", "ts": t,
                  "prediction": CLASSES[i % 3], "label": CLASSES[(i // 2) % 3]}
        lines.append(json.dumps({"topic": "predictions", "partition": i % 2, "offset": offset,
                                 "key": qid, "payload": json.dumps(intent)}))
        offset += 1
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def run_replay(base: Path, *extra: str) -> Path:
    """``monitor replay`` of the capture into ``base/out`` (config, capture made here)."""
    config = base / "monitor.toml"
    config.write_text(CONFIG)
    rows = [f"{10.0 + i % 50},{['US', 'DE', 'FR'][i % 3]}" for i in range(300)]
    (base / "reference.csv").write_text("amount,country\n" + "\n".join(rows) + "\n")
    capture = base / "capture.jsonl"
    write_capture(capture)
    out = base / "out"
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "--config", str(config),
         "--out", str(out), *extra, str(capture)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return out


def signal_lines(out: Path) -> list[dict[str, Any]]:
    """The records of ``signals.jsonl``."""
    return [json.loads(line) for line in (out / "signals.jsonl").read_text().splitlines()]


def alert_lines(out: Path) -> list[dict[str, Any]]:
    """The records of ``alerts.jsonl``, with ``ts`` as Unix seconds."""
    events = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    for event in events:
        event["ts"] = datetime.fromisoformat(event["ts"]).timestamp()
    return events


def finite_signals(record: dict[str, Any]) -> dict[str, float]:
    """The signals of a ``signals.jsonl`` record that have a value."""
    return {k: v for k, v in record["signals"].items() if v is not None and math.isfinite(v)}
