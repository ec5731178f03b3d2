"""A seeded stream that puts every kind of engine state to use, for the state-format tests:
two models (binary with segments, versions, features, a warmup profile, every detector
and alert rules; regression with detectors), delayed labels, labels that come first,
labels that never find their prediction, duplicates, garbage, several partitions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from monitor.config import MonitorConfig, config_from_mapping
from monitor.core.engine import Engine
from monitor.events.message import Message

BASE = 1_700_000_000.0
PARTS = 3
DETECTORS: list[Any] = [
    "adwin", {"name": "cusum", "warmup": 40}, "page_hinkley", "ddm", "eddm", "hddm_a",
    "hddm_w", "kswin",
]  # fmt: skip


def stream_config(**state: Any) -> MonitorConfig:
    """Two models that between them hold every kind of state the engine keeps."""
    return config_from_mapping({
        "state": state,
        "time": {"pane": "10s", "allowed_lateness": "20s"},
        "models": [
            {"name": "b", "task": "binary", "positive_class": 1,
             "windows": ["all", "1m", "ewm1m"], "segments": ["region"],
             "max_segment_values": 2, "max_versions": 3,
             "features": {"x": "numeric", "y": "numeric", "c": "categorical"},
             "reference_warmup": 60, "detectors": DETECTORS, "label_ttl": "2m",
             "alerts": [
                 {"name": "acc", "signal": "accuracy@1m", "op": "<", "threshold": 0.6,
                  "for": "10s"},
                 {"name": "band", "kind": "control_band", "signal": "positive_rate@1m",
                  "warmup": 3},
                 {"name": "silence", "kind": "absence", "for": "30s"},
             ]},
            {"name": "r", "task": "regression", "windows": ["all", "2m"],
             "detectors": ["adwin", "cusum"], "label_ttl": "1m"},
        ],
    })  # fmt: skip


def messages(start: int, stop: int, seed: int = 3) -> list[Message]:
    """Messages ``start`` to ``stop`` of the stream (the same ones whatever the cut)."""
    out = []
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        part = i % PARTS
        drifted = i > 600
        x = float(rng.normal(3.0 if drifted else 0.0))
        body: dict[str, Any] = {
            "prediction_id": f"p{i}", "model": "b", "ts": BASE + i, "prediction": int(x > 0),
            "score": float(1 / (1 + np.exp(-x))), "model_version": f"v{i // 150}",
            "segment": {"region": "abcd"[int(rng.integers(4))]},
            "features": {"x": x, "y": float(rng.normal()) if i % 7 else None,
                         "c": "uvw"[int(rng.integers(3))]},
        }  # fmt: skip
        if i % 23 == 0:
            body["label"] = int(x > 0.5)  # known at prediction time
        out.append(Message("predictions", part, i, b"k", json.dumps(body).encode()))
        if i % 4 == 0:
            reg = {"prediction_id": f"r{i}", "model": "r", "ts": BASE + i,
                   "prediction": float(rng.normal(10.0))}  # fmt: skip
            out.append(Message("predictions", part, 100_000 + i, b"k", json.dumps(reg).encode()))
            if i % 8 == 0:
                lab = {"prediction_id": f"r{i}", "label": float(rng.normal(10.0)),
                       "ts": BASE + i + 3}  # fmt: skip
                out.append(Message("labels", part, 100_000 + i, b"k", json.dumps(lab).encode()))
        j = i - 5  # labels five events late; every 9th never comes; every 13th comes first
        if j >= 0 and j % 9:
            lab = {"prediction_id": f"p{j}", "label": int((j * 7) % 10 < (8 if j < 600 else 3)),
                   "ts": BASE + i}  # fmt: skip
            out.append(Message("labels", j % PARTS, 200_000 + i, b"k", json.dumps(lab).encode()))
        k = i + 4
        if k % 13 == 0:
            lab = {"prediction_id": f"p{k}", "label": 1, "ts": BASE + i, "model": "b"}
            out.append(Message("labels", k % PARTS, 300_000 + i, b"k", json.dumps(lab).encode()))
        if i % 31 == 0:
            out.append(Message("labels", part, 400_000 + i, b"k",
                               json.dumps({"prediction_id": f"ghost{i}", "label": 0,
                                           "ts": BASE + i}).encode()))  # fmt: skip
        if i % 97 == 0:
            out.append(Message("predictions", part, 500_000 + i, b"k", b"{not json"))
            out.append(Message("labels", part, 500_000 + i, b"k", json.dumps(
                {"prediction_id": f"p{max(j, 0)}", "label": 1, "ts": BASE + i}).encode()))
    return out


def run(engine: Engine, start: int, stop: int, step: int = 25) -> Engine:
    """Feed messages ``start`` to ``stop`` in polls of ``step``."""
    for i in range(start, stop, step):
        engine.process(messages(i, min(stop, i + step)))
    return engine


def stage_one(engine: Engine) -> str:
    """Stage 1's state per partition as a restore gives it back, exactly (NaN as written):
    offsets, event times, counters, label delays, rejects and the join's tables in
    arrival order (pending ids and columns, matched ids, early labels)."""
    out = {}
    for n, s in sorted(engine.partitions.items()):
        out[n] = (
            s.offsets, s.max_ts, s.counts, s.delay.tolist(), s.delay_sum.tolist(),
            sorted(s.rejects.items()),
            [[(pid, p.ts, p.pred, p.score) for pid, p in t.items()] for t in s.join.pending],
            [list(t.items()) for t in s.join.matched],
            [(pid, tuple(e)) for pid, e in s.join.early.items()],
        )  # fmt: skip
    return repr(out)
