"""Many models sharing a trickle: most of a poll's parts add nothing to their model, and
``Pipeline`` leaves them out of the deltas it hands over (``DeltaBook.take_handed``). The
stages end bit for bit where stages handed the whole deltas end (windows, counters,
waiting counts, chains, registries, signals), also where a left-out part must be made
after all: a stage's first delta of a partition (applied whole), and labels that name no
model waiting for their prediction (every model's waiting count changes while nothing is
added to it)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from monitor.config import config_from_mapping
from monitor.core.deltas import QuietParts
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from tests.core.test_hand_over import _state
from tests.core.test_model_stage import as_messages, polls

pytestmark = pytest.mark.usefixtures("kernels")

T0 = 1_700_000_000.0
TOPICS = ("predictions", "labels")
PARTS = 3
MODELS = 12


def _config() -> Any:
    models = []
    for k in range(MODELS):
        model: dict[str, Any] = {
            "name": f"m{k}", "task": "binary", "positive_class": 1, "label_ttl": "2m",
            "windows": ["all", "1m", "ewm30s"], "reference_warmup": 0,
        }  # fmt: skip
        if k % 3 == 0:
            model["segments"] = ["region"]
        models.append(model)
    return config_from_mapping({
        "kafka": {"predictions_topic": TOPICS[0], "labels_topic": TOPICS[1]},
        "time": {"pane": "5s", "allowed_lateness": "5s"},
        "models": models,
    })  # fmt: skip


def _stream(n: int, seed: int) -> list[list[Message]]:
    """``n`` predictions at about 3 a second over MODELS models (a few models busy, the
    others heard from now and then), their labels 2-30 s later, some labels before their
    prediction (naming no model: every model's count of labels waiting changes) and some
    never, garbage and labels sent twice; cut into polls of 1 to 12 messages."""
    rng = random.Random(seed)
    out: list[tuple[float, int, str, bytes]] = []
    weights = [8.0 if k < 2 else 0.3 for k in range(MODELS)]
    for i in range(n):
        t = T0 + i * 0.33
        k = rng.choices(range(MODELS), weights)[0]
        part = rng.randrange(PARTS)
        pid = f"p{i}"
        body = {"prediction_id": pid, "model": f"m{k}", "ts": t,
                "prediction": int(rng.random() < 0.4), "score": round(rng.random(), 3),
                "segment": {"region": rng.choice("ab")}}  # fmt: skip
        label = json.dumps({"prediction_id": pid, "ts": t + 1,
                            "label": int(rng.random() < 0.5)}).encode()  # fmt: skip
        early = rng.random() < 0.05
        sent = t + 3 if early else t  # an early label: its prediction comes 3 s later
        out.append((sent, part, "predictions", json.dumps(body).encode()))
        if early:
            out.append((t, part, "labels", label))
        elif rng.random() < 0.85:
            out.append((t + rng.uniform(2, 30), part, "labels", label))
        if rng.random() < 0.02:  # garbage, and a label sent twice
            out.append((t, part, rng.choice(TOPICS), b"{not json"))
            out.append((t + 40, part, "labels", label))
    out.sort(key=lambda x: x[0])
    return polls(as_messages(out), seed, 13)


def test_quiet_parts_left_out_end_where_whole_deltas_end(monkeypatch: Any) -> None:
    cfg = _config()
    left_out, whole = Pipeline(cfg), Pipeline(cfg)
    for pipeline in (left_out, whole):
        pipeline.track([(t, p) for t in TOPICS for p in range(PARTS)])
    book = whole.book  # this one hands every part over

    def take_whole(number: int) -> tuple[Any, None]:
        return book.take(number, arrays=True), None

    monkeypatch.setattr(book, "take_handed", take_whole)
    made = {"part": 0, "waiting": 0}
    part = QuietParts.part

    def counted(self: QuietParts, name: str) -> Any:
        made["part"] += 1
        return part(self, name)

    monkeypatch.setattr(QuietParts, "part", counted)
    quiet = 0
    take = left_out.book.take_handed

    def take_counted(number: int) -> Any:
        delta, parts = take(number)
        nonlocal quiet
        quiet += len(parts.waiting)
        made["waiting"] += sum(1 for held in parts.waiting.values() if held[1])
        return delta, parts

    monkeypatch.setattr(left_out.book, "take_handed", take_counted)
    signals = rejects = 0
    for i, batch in enumerate(_stream(2500, 3)):
        got_rejects = left_out.process(batch)
        assert got_rejects == whole.process(batch), i
        rejects += len(got_rejects)
        got, want = left_out.drain_signals(), whole.drain_signals()
        assert [(s.model, s.pane_end, repr(s.signals)) for s in got] == [
            (s.model, s.pane_end, repr(s.signals)) for s in want
        ], i
        signals += len(got)
        if i % 50 == 0 or i < 5:
            for name, stage in whole.stages.items():
                assert _state(left_out.stages[name]) == _state(stage), (i, name)
    for name, stage in whole.stages.items():
        assert _state(left_out.stages[name]) == _state(stage), name
    parts = len(_stream(2500, 3)) * PARTS * MODELS
    # most parts were left out, some were made after all, and panes closed
    assert quiet > parts // 2 and made["part"] > 20 and made["waiting"] > 100, (
        quiet, parts, made)  # fmt: skip
    assert signals > 500 and rejects > 50, (signals, rejects)
