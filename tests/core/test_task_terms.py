"""Models whose layouts give the same task terms (:func:`monitor.core.engine._task_key`)
have them made in one call over all their events of a poll
(:meth:`~monitor.core.engine.Engine._task_terms`): every model's pane sums, signals and
counters are, bit for bit, those of one call per model."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

import monitor.core.engine as engine_module
from monitor.config import config_from_mapping
from monitor.core.layout import Layout
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

pytestmark = pytest.mark.usefixtures("kernels")

T0 = 1_700_000_000.0
PARTS = 3


def test_task_key_groups_layouts_by_what_their_task_terms_read() -> None:
    key = engine_module._task_key
    plain = Layout("binary", score_bins=50)
    featured = Layout("binary", score_bins=50, features={"x": "numeric", "c": "categorical"})
    assert key(plain) is not None and key(plain) == key(featured)
    assert key(Layout("binary", score_bins=20)) != key(plain)
    assert key(Layout("regression")) == key(Layout("regression", features={"x": "numeric"}))
    assert key(Layout("regression")) != key(plain)
    assert key(Layout("multiclass", n_classes=3)) is None  # probabilities: the baseline's


def test_engine_keeps_each_layouts_own_task_key() -> None:
    """The engine works a layout's key out once per layout object: each layout, a new
    one too (a model rebuilt), gets its own key, not one kept for another."""
    engine = engine_module.Engine(_config())
    layouts = [Layout("binary", score_bins=50), Layout("binary", score_bins=20)]
    for layout in [*layouts, *reversed(layouts)]:
        assert engine._task_key(layout) == engine_module._task_key(layout)
    fresh = Layout("regression")
    assert engine._task_key(fresh) == engine_module._task_key(fresh) != engine._task_key(layouts[0])
    assert "_task_keys" not in engine.__getstate__()  # derived: never in a checkpoint


def _config() -> Any:
    """Binary models with other features, warmups and slices (alike for their task
    terms), one with other score bins, two regression models and a multiclass one."""
    binary: dict[str, Any] = {
        "task": "binary", "positive_class": 1, "label_ttl": "10m",
        "windows": ["all", "2m", "ewm1m"], "detectors": ["adwin"],
    }  # fmt: skip
    models: list[dict[str, Any]] = [
        {**binary, "name": "b0", "features": {"x": "numeric", "c": "categorical"},
         "reference_warmup": 120, "segments": ["region"]},
        {**binary, "name": "b1", "features": {"x": "numeric"}, "reference_warmup": 80},
        {**binary, "name": "b2"},
        {**binary, "name": "b3", "score_bins": 40},
        {"name": "r0", "task": "regression", "windows": ["all", "5m"], "label_ttl": "10m"},
        {"name": "r1", "task": "regression", "windows": ["all"], "label_ttl": "10m",
         "features": {"x": "numeric"}},
        {"name": "mc", "task": "multiclass", "classes": ["a", "b", "c"], "windows": ["all"],
         "label_ttl": "10m"},
    ]  # fmt: skip
    return config_from_mapping({
        "kafka": {"predictions_topic": "predictions", "labels_topic": "labels"},
        "time": {"pane": "10s", "allowed_lateness": "5s"},
        "models": models,
    })  # fmt: skip


def _stream(n: int, seed: int) -> list[Message]:
    """Predictions round-robin over the models, labels for most of them 5-40 s later."""
    rng = random.Random(seed)
    names = ["b0", "b1", "b2", "b3", "r0", "r1", "mc"]
    out: list[tuple[float, int, str, bytes]] = []
    for i in range(n):
        t = T0 + i * 0.13
        name = names[i % len(names)]
        body: dict[str, Any] = {"prediction_id": f"p{i}", "model": name, "ts": t,
                                "features": {"x": round(rng.gauss(0, 1), 4),
                                             "c": rng.choice("pqr")},
                                "segment": {"region": rng.choice("ab")}}  # fmt: skip
        label: Any
        if name.startswith("r"):
            body["prediction"] = rng.gauss(3, 1)
            label = rng.gauss(3, 1.2)
        elif name == "mc":
            body["prediction"] = rng.choice("abc")
            weights = [rng.random() for _ in range(3)]
            body["probabilities"] = {
                c: w / sum(weights) for c, w in zip("abc", weights, strict=True)
            }
            label = rng.choice("abc")
        else:
            body["prediction"] = int(rng.random() < 0.4)
            if rng.random() < 0.9:
                body["score"] = round(rng.random(), 3)
            label = int(rng.random() < 0.45)
        part = rng.randrange(PARTS)
        out.append((t, part, "predictions", json.dumps(body).encode()))
        if rng.random() < 0.8:
            lt = t + rng.uniform(5, 40)
            lab = {"prediction_id": f"p{i}", "ts": lt, "label": label}
            out.append((lt, part, "labels", json.dumps(lab).encode()))
    out.sort(key=lambda x: x[0])
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for t, part, topic, value in out:
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        messages.append(Message(topic, part, off, None, value, timestamp_ms=int(t * 1000)))
    return messages


def _run(messages: list[Message], poll: int) -> tuple[list[str], Pipeline]:
    core = Pipeline(_config())
    core.track([(t, p) for t in ("predictions", "labels") for p in range(PARTS)])
    signals: list[str] = []
    for start in range(0, len(messages), poll):
        core.process(messages[start : start + poll])
        signals += [repr(s) for s in core.drain_signals()]
    return signals, core


def _arrays(core: Pipeline) -> list[np.ndarray]:
    """Every window sum, open pane and counter of every model, in a fixed order."""
    out: list[np.ndarray] = []
    for stage in core.stages.values():
        w = stage.windows
        out += [w.cum, *w.sliding, *w.decay, stage.counts, stage.delay]
        for pane in sorted(w.open):
            out += [w.open[pane], *w.open_decay[pane]]
    for number in sorted(core.engine.partitions):
        state = core.engine.partitions[number]
        out += [np.array(state.counts), state.delay, state.delay_sum]
    return out


@pytest.mark.parametrize("poll", [170, 2500])
def test_terms_made_together_are_each_models_own(
    poll: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = _stream(4000, seed=poll)
    together, core = _run(messages, poll)
    monkeypatch.setattr(engine_module, "_task_key", lambda layout: None)  # one call each
    alone, ref = _run(messages, poll)
    assert together == alone
    assert len(together) > 50
    mine, theirs = _arrays(core), _arrays(ref)
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()
    assert core.summary() == ref.summary()
