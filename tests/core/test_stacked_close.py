"""Models whose pane closes are computed together (:func:`monitor.core.model_stage.
flush_together`, one :func:`~monitor.core.panemetrics.stacked_plan` for the models whose
plans share a shape) get, bit for bit, the signals and the per-slice values each model's
own computation gives: same panes, same names, same values (NaN where NaN), each with its
own drift reference, calibration and baseline."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest

import monitor.core.model_stage as model_stage
import monitor.core.pipeline as pipeline
from monitor.config import config_from_mapping
from monitor.core.model import PaneSignals
from monitor.core.panemetrics import stacked_plan
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

T0 = 1_700_000_000.0
PARTS = 3
BINARY = [f"m{i}" for i in range(5)]


def _config(segments: bool) -> Any:
    """Five binary models alike (their references built from their own first
    predictions, with a PCA of their two numeric features), one with other features
    (another shape) and a regression model (a plan that computes alone); the binary ones
    sliced by region with ``segments``, else with the whole-model row alone."""
    models: list[dict[str, Any]] = [
        {"name": name, "task": "binary", "positive_class": 1, "label_ttl": "10m",
         "windows": ["all", "2m", "ewm1m"], "detectors": ["adwin"],
         "segments": ["region"] if segments else [],
         "features": {"x": "numeric", "z": "numeric", "c": "categorical"},
         "drift_min_samples": 20,
         "reference_warmup": 150}
        for name in BINARY
    ]  # fmt: skip
    models.append({"name": "other", "task": "binary", "positive_class": 1,
                   "label_ttl": "10m", "windows": ["all", "2m", "ewm1m"],
                   "features": {"x": "numeric"}, "reference_warmup": 150})  # fmt: skip
    models.append({"name": "r", "task": "regression", "windows": ["all", "5m"],
                   "label_ttl": "10m", "reference_warmup": 0})  # fmt: skip
    return config_from_mapping({
        "kafka": {"predictions_topic": "predictions", "labels_topic": "labels"},
        "time": {"pane": "10s", "allowed_lateness": "5s"},
        "models": models,
    })  # fmt: skip


def _stream(n: int, seed: int) -> list[Message]:
    """Predictions round-robin over the models (each model's features drawn apart, a
    drift in the second half), labels 5-40 s later, a few late messages."""
    rng = random.Random(seed)
    names = [*BINARY, "other", "r"]
    out: list[tuple[float, int, str, bytes]] = []
    for i in range(n):
        t = T0 + i * 0.11
        name = names[i % len(names)]
        pid = f"p{i}"
        label: Any
        if name == "r":
            body: dict[str, Any] = {"prediction_id": pid, "model": name, "ts": t,
                                    "prediction": rng.gauss(3, 1)}  # fmt: skip
            label = rng.gauss(3, 1.2)
        else:
            shift = 1.0 if i > n // 2 else 0.0
            k = int(name[1:]) if name in BINARY else 7
            body = {"prediction_id": pid, "model": name, "ts": t,
                    "prediction": int(rng.random() < 0.4), "score": round(rng.random(), 3),
                    "segment": {"region": rng.choice("ab")},
                    "features": {"x": round(rng.gauss(shift + 0.1 * k, 1 + 0.05 * k), 4),
                                 "z": round(rng.gauss(0, 1), 4),
                                 "c": rng.choice("pqrs" if shift else "pqr")}}  # fmt: skip
            label = int(rng.random() < 0.45)
        part = rng.randrange(PARTS)
        out.append((t, part, "predictions", json.dumps(body).encode()))
        if rng.random() < 0.85:
            lt = t + rng.uniform(5, 40)
            lab = {"prediction_id": pid, "ts": lt, "label": label}
            out.append((lt, part, "labels", json.dumps(lab).encode()))
    out.sort(key=lambda x: x[0])
    for i in range(0, len(out), 97):  # a few beyond the allowed lateness
        j = min(len(out) - 1, i + 150)
        out[i], out[j] = out[j], out[i]
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for t, part, topic, value in out:
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        messages.append(Message(topic, part, off, None, value, timestamp_ms=int(t * 1000)))
    return messages


def _alone(pending: list[tuple[Any, Any]]) -> None:
    for stage, batch in pending:
        stage._flush(batch)


def _run(cfg: Any, messages: list[Message], poll: int) -> tuple[list[PaneSignals], Pipeline]:
    core = Pipeline(cfg)
    core.track([(t, p) for t in ("predictions", "labels") for p in range(PARTS)])
    signals: list[PaneSignals] = []
    for start in range(0, len(messages), poll):
        core.process(messages[start : start + poll])
        signals += core.drain_signals()
    return signals, core


def _same_value(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize(("poll", "segments"), [(400, True), (3000, True), (150, False),
                                               (3000, False)])  # fmt: skip
def test_models_closed_together_get_each_ones_own_values(
    monkeypatch: pytest.MonkeyPatch, poll: int, segments: bool
) -> None:
    cfg = _config(segments)
    messages = _stream(9000, 3)
    stacked: list[int] = []

    def counting(plans: Any, rows: int) -> Any:
        stacked.append(len(plans))
        return stacked_plan(plans, rows)

    monkeypatch.setattr(model_stage, "stacked_plan", counting)
    together, core = _run(cfg, messages, poll)
    monkeypatch.setattr(pipeline, "flush_together", _alone)
    alone, solo = _run(cfg, messages, poll)
    assert stacked and max(stacked) >= 2  # models were computed together
    assert [(s.model, s.pane_end) for s in together] == [(s.model, s.pane_end) for s in alone]
    assert len({s.model for s in together}) == len(cfg.models)
    for got, want in zip(together, alone, strict=True):
        assert list(got.signals) == list(want.signals)
        for key, value in want.signals.items():
            assert _same_value(got.signals[key], value), (want.model, want.pane_end, key)
        assert got.predictions_total == want.predictions_total
    for name, stage in core.stages.items():
        last, want_last = stage.model.last, solo.stages[name].model.last
        assert list(last) == list(want_last)
        for window in want_last:
            for metric, values in want_last[window].items():
                np.testing.assert_array_equal(last[window][metric], values)
    assert core.summary() == solo.summary()
    assert any("pca_error@all" in s.signals for s in together)
