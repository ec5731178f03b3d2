"""Concept-drift detectors: the engine's ADWIN equals river's ADWIN fed the same stream."""

from __future__ import annotations

import json
import pickle

import numpy as np
from river import drift

from monitor.config import config_from_mapping
from monitor.core.engine import Engine
from monitor.events.message import Message

T0 = 1_700_000_000.0
PANE = 10.0


def _config(detectors: list[str] | None = None) -> dict[str, object]:
    model: dict[str, object] = {
        "name": "m",
        "task": "binary",
        "positive_class": 1,
        "windows": ["all", "1m"],
        "alerts": [{"name": "errors-up", "kind": "detector", "signal": "adwin:error@all"}],
    }
    if detectors is not None:
        model["detectors"] = detectors
        model["alerts"] = []
    return {"time": {"pane": "10s", "allowed_lateness": "0s"}, "models": [model]}


def _stream(seed: int = 0, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Event times (0.05 s apart) and 0/1 errors whose rate rises from 0.1 to 0.2 half-way."""
    rng = np.random.default_rng(seed)
    rate = np.where(np.arange(n) < n // 2, 0.1, 0.2)
    return T0 + np.arange(n) * 0.05, (rng.random(n) < rate).astype(float)


def _messages(ts: np.ndarray, err: np.ndarray, partitions: int) -> list[list[Message]]:
    """Per partition, its messages in order (labels inline: joined at prediction time)."""
    out: list[list[Message]] = [[] for _ in range(partitions)]
    for i, (t, e) in enumerate(zip(ts, err, strict=True)):
        p = i % partitions
        event = {
            "prediction_id": f"p{i}",
            "model": "m",
            "ts": float(t),
            "prediction": 1,
            "label": 0 if e else 1,
        }
        out[p].append(Message("predictions", p, len(out[p]), None, json.dumps(event).encode()))
    return out


def _run(per_part: list[list[Message]], chunk: int, config: dict[str, object]) -> Engine:
    engine = Engine(config_from_mapping(config))
    engine.track(("predictions", p) for p in range(len(per_part)))
    # round-robin over partitions, `chunk` messages at a time from each
    pos = [0] * len(per_part)
    while any(pos[p] < len(msgs) for p, msgs in enumerate(per_part)):
        batch: list[Message] = []
        for p, msgs in enumerate(per_part):
            batch.extend(msgs[pos[p] : pos[p] + chunk])
            pos[p] += chunk
        engine.process(batch)
    return engine


def _river_detections(ts: np.ndarray, err: np.ndarray) -> list[int]:
    """Pane index of each upward detection of river's default ADWIN on the stream."""
    adwin = drift.ADWIN()
    panes = []
    for t, e in zip(ts, err, strict=True):
        before = adwin.estimation
        adwin.update(e)
        if adwin.drift_detected and adwin.estimation > before:
            panes.append(int(np.floor(t / PANE)))
    return panes


def _engine_detections(engine: Engine) -> list[int]:
    final = engine.flushed(keep_signals=True)
    signals = engine.drain_signals() + final.drain_signals()
    out = []
    for sig in signals:
        found = sig.signals.get("adwin:error@all", 0.0)
        assert sig.signals.get("adwin:error@1m", 0.0) == found
        pane = round(sig.pane_end / PANE) - 1
        out.extend([pane] * int(found))
    return out


def test_adwin_signal_equals_river_adwin_fed_the_same_stream() -> None:
    ts, err = _stream()
    expected = _river_detections(ts, err)
    assert expected, "the rise from 0.1 to 0.2 must be detected"
    assert _engine_detections(_run(_messages(ts, err, 1), 500, _config())) == expected


def test_adwin_is_deterministic_across_partitions_batches_and_pickling() -> None:
    ts, err = _stream(seed=3)
    expected = _river_detections(ts, err)
    for partitions, chunk in ((1, 500), (3, 137), (4, 1000)):
        engine = _run(_messages(ts, err, partitions), chunk, _config())
        engine = pickle.loads(pickle.dumps(engine))
        assert _engine_detections(engine) == expected, (partitions, chunk)


def test_detector_rule_fires_on_a_rise_and_not_on_an_improvement() -> None:
    ts, err = _stream(seed=5)
    engine = _run(_messages(ts, err, 2), 400, _config())
    final = engine.flushed(keep_signals=True)
    alerts = engine.drain_alerts() + final.drain_alerts()
    assert [a.status for a in alerts][:1] == ["firing"]
    assert alerts[0].signal == "adwin:error@all"
    better = _run(_messages(ts, err[::-1].copy(), 2), 400, _config())  # 0.2 then 0.1
    assert _engine_detections(better) == []


def test_no_detector_signals_when_detectors_are_off() -> None:
    ts, err = _stream(n=2000)
    engine = _run(_messages(ts, err, 1), 500, _config(detectors=[]))
    assert all("adwin:error@all" not in s.signals for s in engine.drain_signals())
