"""The batch path of ``Engine.process`` against the per-message path it stands in for.

The per-message path is the reference: every poll below is processed by two engines, one
as shipped and one with the batch path turned off (every message one by one), on streams
full of what the batch path must hand over: duplicates within and across polls, labels
before their predictions, labels naming another model, unknown models and classes, bad
JSON, out-of-range scores and times, times ahead of the record's timestamp, RFC 3339
times, predictions carrying their label, segments past their cap, several partitions and
models, the pending cap. Counts, rejects (in order, with reasons) and every metric must
agree. Streams that sit at the caps (entries, bytes, early labels) for many polls check
that the batch path places the evictions itself, and both paths are held to a plain-Python
model of the eviction rules (:func:`reference_join`).
"""

from __future__ import annotations

import heapq
import json
import math
import random
import zlib
from typing import Any

import numpy as np
import pytest

import monitor.core.engine as engine_module
from monitor.config import config_from_mapping
from monitor.core.engine import Engine
from monitor.core.fastpath import split_and_join
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

T0 = 1_700_000_000.0
FEATURES = {"x": "numeric", "y": "numeric", "c": "categorical"}


def config(max_pending: int = 1_000_000, ttl: str = "5m", max_early: int = 100_000,
           warmup: int = 0, max_bytes: int | None = None) -> Any:
    reference = None
    models = [
        {
            "name": "b",
            "task": "binary",
            "positive_class": 1,
            "windows": ["all", "1m", "ewm1m"],
            "segments": ["region"],
            "max_segment_values": 3,
            "max_pending": max_pending,
            "max_early_labels": max_early,
            "label_ttl": ttl,
            "features": FEATURES,
            "detectors": ["adwin", "cusum"],
        },
        {
            "name": "k",
            "task": "multiclass",
            "classes": ["a", "b", "c"],
            "windows": ["all", "1m"],
            "label_ttl": ttl,
            "max_early_labels": max_early,
        },
        {"name": "r", "task": "regression", "windows": ["all"], "label_ttl": ttl,
         "max_early_labels": max_early},
    ]
    del reference
    for model in models:
        # No drift profile unless asked: while a warmup collects its reference the engine
        # reads the model's predictions one by one, and the batch path is what this compares.
        model["reference_warmup"] = 0
    models[0]["reference_warmup"] = warmup
    if max_bytes is not None:
        models[0]["max_pending_bytes"] = max_bytes
    return config_from_mapping(
        {"time": {"pane": "10s", "allowed_lateness": "5s"}, "models": models}
    )


def stream(seed: int, n: int, noise: float = 1.0) -> list[Message]:
    """A messy stream in arrival order over 3 partitions of both topics; ``noise`` scales
    the share of odd events (0: none)."""
    rng = random.Random(seed)
    odd = (lambda: rng.random() / noise) if noise else (lambda: 1.0)
    offsets: dict[tuple[str, int], int] = {}
    out: list[Message] = []
    ids: list[tuple[str, str]] = []  # (id, model) of predictions so far

    def emit(topic: str, part: int, value: bytes | None, key: str = "") -> None:
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        # the record's timestamp: when the producer sent it (a while after the event)
        stamp = int((T0 + len(out) * 0.05 + 30) * 1000)
        out.append(Message(topic, part, offset, key.encode(), value, timestamp_ms=stamp))

    def part_of(pid: str) -> int:
        return sum(pid.encode()) % 3

    held: list[tuple[int, int, bytes | None, str]] = []  # predictions whose label came first
    for i in range(n):
        for due in [h for h in held if h[0] <= i]:
            held.remove(due)
            emit("predictions", due[1], due[2], due[3])
        t = T0 + i * 0.05 + rng.uniform(-3, 3)
        roll = rng.random()
        if roll < 0.55 or not ids:
            model = rng.choice("bbbbkr")
            pid = f"p{i}" if odd() > 0.02 or not ids else rng.choice(ids)[0]
            body: dict[str, Any] = {"prediction_id": pid, "model": model, "ts": t}
            if model == "b":
                body["prediction"] = rng.choice([0, 1, 1, True, "1", 1.0])
                body["score"] = rng.random() if odd() > 0.02 else 1.5
                body["features"] = {
                    "x": rng.gauss(0, 1),
                    "y": rng.choice([rng.random(), None, "oops"]) if noise else rng.random(),
                    "c": rng.choice(["u", "v", "w", 3]),
                }
                if rng.random() < 0.03:  # one the config does not name: decoded as a dict
                    body["features"]["extra"] = rng.choice([1.5, "s", None])
                if odd() < 0.005:
                    body["features"]["x"] = [1]  # not a scalar: rejected
                if rng.random() < 0.02:
                    body["features"] = None
                body["segment"] = {"region": rng.choice("abcdefg" if noise else "abc")}
                body["model_version"] = rng.choice(["v1", "v1", "v2"])
            elif model == "k":
                odd_class = "zz" if noise and i % 50 == 0 else "a"
                body["prediction"] = rng.choice(["a", "b", "c", "c", odd_class])
                body["probabilities"] = {"a": 0.2, "b": 0.3, "c": 0.5}
            else:
                body["prediction"] = rng.gauss(10, 3)
            if odd() < 0.05:
                body["label"] = body["prediction"] if model != "k" else "b"
            if odd() < 0.03:
                body["ts"] = "2023-11-14T22:13:20Z"
            if odd() < 0.01:
                body["ts"] = 12.0  # implausible: seconds expected
            if odd() < 0.005:
                body["ts"] = 4_000_000_000.0  # a producer with a broken clock: future
            if odd() < 0.01:
                body["model"] = "nope"
            value: bytes | None = json.dumps(body).encode()
            if odd() < 0.01:
                value = rng.choice([b"{not json", b"[]", None, b'{"prediction_id": 3}'])
            if rng.random() < 0.04 and len(ids) > 3:  # its label comes first
                label = {"prediction_id": pid, "ts": t + 1, "label": body.get("prediction", 1)}
                if rng.random() < 0.5:
                    label["model"] = model
                emit("labels", part_of(pid), json.dumps(label).encode(), pid)
                if odd() < 0.05:
                    ids.append((pid, model))  # and another label later
                if rng.random() < 0.7:  # the prediction some polls later
                    held.append((i + rng.randrange(50, 900), part_of(pid), value, pid))
                    continue
            elif "label" not in body or odd() < 0.1:
                ids.append((pid, model))
            emit("predictions", part_of(pid), value, pid)
        else:
            recent = ids[-400:]
            pid, model = rng.choice(recent)
            if odd() > 0.1:  # each prediction labelled once, but for odd duplicates
                pid, model = ids.pop(len(ids) - 1 - rng.randrange(len(recent)))
            label_value: Any = {"b": rng.choice([0, 1]), "k": rng.choice("abc"),
                                "r": rng.gauss(10, 3)}[model]
            body = {"prediction_id": pid, "ts": t + rng.uniform(0, 20), "label": label_value}
            if rng.random() < 0.3:
                body["model"] = model if odd() > 0.05 else rng.choice("bkr")
            if odd() < 0.01:
                body["label"] = "martian"
            if odd() < 0.005:
                body["ts"] = t + 7200  # beyond time.max_future: future
            emit("labels", part_of(pid), json.dumps(body).encode(), pid)
    return out


def join_state(engine: Pipeline) -> dict[int, Any]:
    """Each partition's join state, every table in arrival order (expiry and eviction go by
    it): pending ids and columns per model, matched ids and times, early labels."""
    out: dict[int, Any] = {}
    # slice ids by what they stand for: the two paths may number new values differently
    keys = [m.registry.keys for m in engine.engine.models]  # stage 1's
    stages = list(engine.stages.values())

    def row(m: int, p: Any) -> tuple[Any, ...]:
        return (p.ts, p.pred, p.score, tuple(keys[m][k] if k >= 0 else None for k in p.slices))

    for number in sorted(engine.partitions):
        join = engine.partitions[number].join
        out[number] = {
            "pending": [
                [(pid, row(m, p)) for pid, p in t.items()] for m, t in enumerate(join.pending)
            ],
            "matched": [list(t.items()) for t in join.matched],
            "early": [(pid, tuple(e)) for pid, e in join.early.items()],
            "counts": engine.partitions[number].counts,
            # predictions kept by each model's stage 2 for a warmup reference, per pane
            # (of those still open), in arrival order
            "warmup": {
                m: {
                    pane: [
                        (r[0], tuple(stage.model.registry.keys[k] if k >= 0 else None
                                     for k in r[1]),
                         tuple((r[2] or {}).get(n) for n in FEATURES), r[3], r[4])
                        for r in parts[number]
                    ]
                    for pane, parts in sorted(stage.warm.items()) if number in parts
                }
                for m, stage in enumerate(stages)
            },
        }
    out[-1] = [  # and those of closed panes, taken into the warmup sample
        [(tuple((r[0] or {}).get(n) for n in FEATURES), r[1], r[2]) for r in m.warmup_rows]
        for m in engine.models
    ]
    return out


def run(messages: list[Message], sizes: list[int], batch_path: bool,
        monkeypatch: pytest.MonkeyPatch, max_pending: int, partitions: int = 3,
        **options: Any) -> tuple[Pipeline, list[Any]]:
    engine = Pipeline(config(max_pending, **options))
    engine.track({(t, p) for t in ("predictions", "labels") for p in range(partitions)})
    # messages, of which one by one, of which left at a cap, entries the batch path evicted
    share = [0, 0, 0, 0]

    def counting(engine: Engine, msgs: list[Message]) -> list[int]:
        slow = split_and_join(engine, msgs)
        share[0] += len(msgs)
        share[1] += len(slow)
        share[2] += slow.at_caps
        share[3] += slow.evicted
        return slow

    with monkeypatch.context() as patch:
        if batch_path:
            patch.setattr(engine_module, "split_and_join", counting)
        else:
            patch.setattr(engine_module, "split_and_join", lambda _e, msgs: list(range(len(msgs))))
        rejects: list[Any] = []
        i = 0
        k = 0
        while i < len(messages):
            size = sizes[k % len(sizes)]
            k += 1
            batch = messages[i : i + size]
            i += size
            rejects += [
                (r.reason, r.message.topic, r.message.partition, r.message.offset, r.detail)
                for r in engine.process(batch)
            ]
        summary = engine.summary()
    return engine, [rejects, summary, share, join_state(engine)]


def same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12) or (math.isnan(a) and math.isnan(b)), (
            where, a, b)
    else:
        assert a == b, where


@pytest.mark.parametrize(("seed", "sizes", "max_pending", "noise"), [
    (1, [500], 1_000_000, 1.0),
    (2, [7, 300, 1], 1_000_000, 1.0),
    (3, [2000], 150, 1.0),  # the pending cap is reached: evictions one by one
    (5, [400, 100], 1_000_000, 0.05),  # odd events are rarer: most go in batches
    (6, [1000], 1_000_000, 0.02),
])
def test_batch_path_equals_per_message_path(
    seed: int, sizes: list[int], max_pending: int, noise: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = stream(seed, 6000, noise)
    fast_engine, fast = run(messages, sizes, True, monkeypatch, max_pending)
    slow_engine, slow = run(messages, sizes, False, monkeypatch, max_pending)
    same(fast[0], slow[0], "rejects")
    same(fast[1], slow[1], "summary")
    same(fast[3], slow[3], "join")
    messages_seen, one_by_one = fast[2][:2]
    if noise < 0.5:
        assert one_by_one < 0.5 * messages_seen, (one_by_one, messages_seen)
    counts = fast[1]["models"]["b"]["counts"]
    # The stream exercises what it should: joins, rejects of several kinds, evictions.
    assert counts["matched"] > 500
    kinds = {r[0] for r in fast[0]}
    assert kinds >= ({"not_json", "bad_value", "unknown_model", "duplicate", "future"}
                     if noise > 0.5 else {"duplicate"})
    assert counts["early_labels_evicted"] + counts["orphan_labels"] + counts["matched"] > 0
    if max_pending < 1000:
        assert counts["evicted"] > 0
    for model in fast_engine.models:
        fast_total, slow_total = fast_engine.engine.pending_total, slow_engine.engine.pending_total
        assert fast_total[model.index] == slow_total[model.index]
        assert model.registry.folded == slow_engine.models[model.index].registry.folded
        assert sorted(model.registry.keys) == sorted(slow_engine.models[model.index].registry.keys)


def test_batch_path_takes_the_ordinary_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean stream goes through the batch path (else the test above proves nothing
    about it): only labels whose prediction is not waiting go one by one."""
    messages = stream(4, 4000, noise=0.0)
    seen: list[tuple[int, int]] = []

    def counting(engine: Engine, msgs: list[Message]) -> list[int]:
        slow = split_and_join(engine, msgs)
        seen.append((len(msgs), len(slow)))
        assert np.all(np.diff(slow) > 0)
        return slow

    monkeypatch.setattr(engine_module, "split_and_join", counting)
    engine = Pipeline(config())
    for i in range(0, len(messages), 500):
        engine.process(messages[i : i + 500])
    total, slow = map(sum, zip(*seen, strict=True))
    assert slow < 0.05 * total, (slow, total)


def noisy_stream(seed: int, n: int, partitions: int = 4) -> list[Message]:
    """A stream shaped like a real topic's noise, over ``partitions`` partitions of both
    topics: labels a while after their predictions (some never), labels sent twice (at once,
    as a retry, or later), predictions sent twice, labels before their predictions (the
    prediction in the same poll or a later one), labels naming the wrong or an unknown model,
    predictions of an unknown model, predictions carrying their label, model versions that
    keep coming (their cap is reached mid-stream) and garbage of several kinds in every
    stretch of the stream."""
    rng = random.Random(seed)
    offsets: dict[tuple[str, int], int] = {}
    out: list[Message] = []
    later: list[tuple[int, int, str, int, bytes | None, str]] = []  # (step, seq, topic, ...)
    seq = 0

    def emit(topic: str, part: int, value: bytes | None, key: str, step: int) -> None:
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        stamp = int((T0 + step * 0.1 + 30) * 1000)
        out.append(Message(topic, part, offset, key.encode(), value, timestamp_ms=stamp))

    def schedule(step: int, topic: str, part: int, value: bytes | None, key: str) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(later, (step, seq, topic, part, value, key))

    def garbage(step: int) -> None:
        topic = rng.choice(["predictions", "labels", "other"])
        value = rng.choice([b"{not json", b"[]", None, b'{"prediction_id": 3}', b"{}",
                            b'{"prediction_id": "x", "model": "b", "ts": "soon"}'])
        emit(topic, rng.randrange(partitions), value, "g", step)

    recent: list[tuple[str, str, float]] = []
    for step in range(n):
        while later and later[0][0] <= step:
            _, _, topic, part, value, key = heapq.heappop(later)
            emit(topic, part, value, key, step)
        if rng.random() < 0.03:
            garbage(step)
        t = T0 + step * 0.1 + rng.uniform(-1, 1)
        model = rng.choice("bbbbbkr") if rng.random() > 0.02 else "zz"
        pid = f"q{seed}-{step}"
        if recent and rng.random() < 0.01:  # a prediction id used again
            pid = rng.choice(recent[-50:])[0]
        part = zlib.crc32(pid.encode()) % partitions
        body: dict[str, Any] = {"prediction_id": pid, "model": model, "ts": t}
        if model in "bz":
            body["prediction"] = rng.choice([0, 1])
            body["score"] = rng.random()
            body["features"] = {"x": rng.gauss(0, 1), "y": rng.random(),
                                "c": rng.choice("uvw")}
            if rng.random() < 0.05:
                del body["features"]["y"]  # missing
            body["segment"] = {"region": rng.choice("abcdef")}
            body["model_version"] = f"v{step // 40}"  # a new one now and then: cap at 20
        elif model == "k":
            body["prediction"] = rng.choice("abc")
            body["probabilities"] = {"a": 0.2, "b": 0.3, "c": 0.5}
        else:
            body["prediction"] = rng.gauss(10, 3)
        truth: Any = {"b": rng.choice([0, 1]), "k": rng.choice("abc"), "r": rng.gauss(10, 3),
                      "z": 1}[model[0]]
        if rng.random() < 0.02:
            body["label"] = truth
        value = json.dumps(body).encode()
        label_body: dict[str, Any] = {"prediction_id": pid, "label": truth}
        roll = rng.random()
        if roll < 0.3:
            label_body["model"] = model
        elif roll < 0.32:
            label_body["model"] = rng.choice(["b", "k", "r", "nope"])
        if rng.random() < 0.04:  # its label first, the prediction soon or much later
            label_body["ts"] = t + 0.5
            emit("labels", part, json.dumps(label_body).encode(), pid, step)
            if rng.random() < 0.1:
                emit("labels", part, json.dumps(label_body).encode(), pid, step)
            schedule(step + rng.choice([0, 1, 3, 40, 400]), "predictions", part, value, pid)
            continue
        emit("predictions", part, value, pid, step)
        if rng.random() < 0.005:
            emit("predictions", part, value, pid, step)  # sent twice at once
        recent.append((pid, model, t))
        if rng.random() < 0.8:
            delay = rng.choice([0, 1, 2, 10, 50, 200, 600])
            label_body["ts"] = t + delay * 0.1 + rng.uniform(0, 1)
            label = json.dumps(label_body).encode()
            if rng.random() < 0.01:
                label = b'{"prediction_id": "' + pid.encode() + b'", "label": "martian"}'
            schedule(step + delay, "labels", part, label, pid)
            if rng.random() < 0.03:  # sent twice: a retry at once, or much later
                schedule(step + delay + rng.choice([0, 0, 1, 30, 500]), "labels", part, label,
                         pid)
    while later:
        _, _, topic, part, value, key = heapq.heappop(later)
        emit(topic, part, value, key, n)
    return out


@pytest.mark.parametrize(("seed", "options"), [
    (11, {}),
    (12, {"ttl": "30s"}),  # predictions and matched ids expire: arrival order shows
    (13, {"ttl": "20s", "max_early": 30}),  # the early-label cap is reached
    (14, {"max_pending": 300, "ttl": "1m"}),  # the pending cap is reached
    (15, {"warmup": 300, "ttl": "1m"}),  # model b builds its reference first
    (16, {"ttl": "45s"}),
    (18, {"warmup": 100_000}),  # still in its warmup at the end: the rows kept compare
])
def test_noisy_stream_same_on_both_paths(seed: int, options: dict[str, Any],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Property-style: random poll sizes over a noisy stream (fixed seeds); both paths give
    the same rejects in order, counts, metrics and join state (in arrival order)."""
    rng = random.Random(seed)
    messages = noisy_stream(seed, 5000)
    sizes = [rng.choice([1, 3, 40, 250, 800, 2000]) for _ in range(40)]
    max_pending = options.pop("max_pending", 1_000_000)
    fast_engine, fast = run(messages, sizes, True, monkeypatch, max_pending, 4, **options)
    slow_engine, slow = run(messages, sizes, False, monkeypatch, max_pending, 4, **options)
    same(fast[0], slow[0], "rejects")
    same(fast[1], slow[1], "summary")
    same(fast[3], slow[3], "join")
    kinds = {r[0] for r in fast[0]}
    assert {"duplicate", "unknown_model", "not_json"} <= kinds, kinds
    for model in fast_engine.models:
        assert model.registry.folded == slow_engine.models[model.index].registry.folded
    assert fast_engine.models[0].registry.folded["version"] > 0  # the cap was reached
    assert fast_engine.engine.early_total == slow_engine.engine.early_total
    assert fast_engine.engine.pending_total == slow_engine.engine.pending_total
    if not options:
        messages_seen, one_by_one = fast[2][:2]
        assert one_by_one < 0.2 * messages_seen, (one_by_one, messages_seen)


def test_a_duplicate_label_goes_one_by_one_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll with one label sent twice (after its prediction, in the same poll) joins the
    prediction and the first label in the batch path and leaves only the retry, a
    duplicate, to the per-message path; the outcome is the reference's."""
    rng = random.Random(3)
    messages: list[Message] = []
    offsets: dict[tuple[str, int], int] = {}

    def emit(topic: str, value: bytes) -> None:
        pid = json.loads(value)["prediction_id"]
        part = zlib.crc32(pid.encode()) % 2
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        stamp = int((T0 + 100) * 1000)
        messages.append(Message(topic, part, offset, pid.encode(), value, timestamp_ms=stamp))

    for i in range(400):
        body = {"prediction_id": f"d{i}", "model": "r", "ts": T0 + i * 0.1,
                "prediction": rng.random()}
        emit("predictions", json.dumps(body).encode())
    for i in range(0, 400, 2):
        label = json.dumps({"prediction_id": f"d{i}", "ts": T0 + 50, "label": 1.0}).encode()
        emit("labels", label)
        if i == 100:
            emit("labels", label)  # the retry
    seen: list[int] = []

    def counting(engine: Engine, msgs: list[Message]) -> list[int]:
        slow = split_and_join(engine, msgs)
        seen.extend(slow)
        return slow

    _, fast = run(messages, [len(messages)], True, monkeypatch, 1_000_000, 2)
    _, slow = run(messages, [len(messages)], False, monkeypatch, 1_000_000, 2)
    same(fast[:2], slow[:2])
    same(fast[3], slow[3], "join")
    assert [r[0] for r in fast[0]] == ["duplicate"]
    assert fast[2][:2] == [len(messages), 1]
    monkeypatch.setattr(engine_module, "split_and_join", counting)
    Pipeline(config()).process(messages)
    assert [json.loads(messages[i].value or b"")["prediction_id"] for i in seen] == ["d100"]


def capped_stream(seed: int, n: int, partitions: int = 4, never: float = 0.2,
                  orphans: float = 0.0, soon: tuple[int, ...] = (0, 1, 30, 300)
                  ) -> list[Message]:
    """A stream that sits at the caps: ``never`` of the predictions get no label (they wait
    until evicted), the others a label a few to a few hundred messages later; in every
    stretch of it, predictions sent again in a later poll, labels sent twice (at once, or
    later), labels before their prediction (in the same poll or a later one), labels
    naming no model, and garbage. One model version and few segment values: no slice
    registry reaches its cap."""
    rng = random.Random(seed)
    offsets: dict[tuple[str, int], int] = {}
    out: list[Message] = []
    later: list[tuple[int, int, str, int, bytes | None, str]] = []
    seq = 0

    def emit(topic: str, part: int, value: bytes | None, key: str, step: int) -> None:
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        stamp = int((T0 + step * 0.1 + 30) * 1000)
        out.append(Message(topic, part, offset, key.encode(), value, timestamp_ms=stamp))

    def schedule(step: int, topic: str, part: int, value: bytes | None, key: str) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(later, (step, seq, topic, part, value, key))

    sent: list[tuple[str, int, bytes]] = []
    for step in range(n):
        while later and later[0][0] <= step:
            _, _, topic, part, value, key = heapq.heappop(later)
            emit(topic, part, value, key, step)
        if rng.random() < 0.03:
            emit(rng.choice(["predictions", "labels"]), rng.randrange(partitions),
                 rng.choice([b"{not json", b"[]", None, b"{}"]), "g", step)
        if len(sent) > 900 and rng.random() < 0.01:  # a prediction sent again, much later
            pid, part, value = rng.choice(sent[-2000:-900])
            emit("predictions", part, value, pid, step)
        t = T0 + step * 0.1
        model = rng.choice("bbbbkr")
        pid = f"c{seed}-{step}-" + "x" * rng.randrange(8)
        part = zlib.crc32(pid.encode()) % partitions
        body: dict[str, Any] = {"prediction_id": pid, "model": model, "ts": t,
                                "model_version": "v1"}
        if model == "b":
            body["prediction"] = rng.choice([0, 1])
            body["score"] = rng.random()
            body["features"] = {"x": rng.gauss(0, 1), "y": rng.random(), "c": rng.choice("uvw")}
            body["segment"] = {"region": rng.choice("abc")}
        elif model == "k":
            body["prediction"] = rng.choice("abc")
            body["probabilities"] = {"a": 0.2, "b": 0.3, "c": 0.5}
        else:
            body["prediction"] = rng.gauss(10, 3)
        truth: Any = {"b": rng.choice([0, 1]), "k": rng.choice("abc"), "r": rng.gauss(10, 3)}[model]
        value = json.dumps(body).encode()
        label_body: dict[str, Any] = {"prediction_id": pid, "label": truth}
        if rng.random() < 0.3:
            label_body["model"] = model
        if rng.random() < orphans:  # a label whose prediction never comes
            emit("labels", part, json.dumps({**label_body, "prediction_id": f"o{pid}",
                                             "ts": t}).encode(), pid, step)
        if rng.random() < 0.03:  # its label first
            label_body["ts"] = t + 0.5
            emit("labels", part, json.dumps(label_body).encode(), pid, step)
            schedule(step + rng.choice(soon), "predictions", part, value, pid)
            continue
        emit("predictions", part, value, pid, step)
        sent.append((pid, part, value))
        if rng.random() < never:
            continue
        delay = rng.choice([1, 5, 40, 100, 300])
        label_body["ts"] = t + delay * 0.1
        label = json.dumps(label_body).encode()
        schedule(step + delay, "labels", part, label, pid)
        if delay >= 300 and rng.random() < 0.05:  # sent twice: a retry at once, or later
            schedule(step + delay + rng.choice([0, 0, 400]), "labels", part, label, pid)
    while later:
        _, _, topic, part, value, key = heapq.heappop(later)
        emit(topic, part, value, key, n)
    return out


@pytest.mark.parametrize(("seed", "options", "evicted", "share"), [
    (21, {"max_pending": 150}, "evicted", 0.9),  # the entry cap, most polls
    (22, {"max_bytes": 9_000}, "evicted", 0.8),  # the byte cap
    # the early-label cap (a label and its prediction in one poll with an eviction between
    # them: one by one, see docs/design.md; here the predictions come a poll or more later)
    (23, {"max_early": 12, "never": 0.0, "orphans": 0.2, "soon": (300, 600)},
     "early_labels_evicted", 0.9),
    # both caps, tiny: entries are evicted that later messages of the poll name, and the
    # labels and predictions that would find them cannot go one by one at the other cap
    (24, {"max_pending": 40, "max_early": 5}, "evicted", 0.05),
])
def test_a_stream_at_the_caps_stays_in_the_batch_path(
    seed: int, options: dict[str, Any], evicted: str, share: float,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that sits at a cap for most of its polls, with duplicates, retries, early
    labels and garbage in every poll: the batch path decides the evictions itself (no
    partition is left one by one whole) and every outcome is the per-message path's."""
    rng = random.Random(seed)
    never = options.pop("never", 0.2)
    messages = capped_stream(seed, 4000, never=never, orphans=options.pop("orphans", 0.0),
                             soon=options.pop("soon", (0, 1, 30, 300)))
    # Polls of at most 250 messages: a label's retry is never in the poll of its prediction
    # (a prediction, its label and a retry in one poll go one by one, see docs/design.md).
    sizes = [rng.choice([1, 40, 250]) for _ in range(40)]
    max_pending = options.pop("max_pending", 1_000_000)
    fast_engine, fast = run(messages, sizes, True, monkeypatch, max_pending, 4, **options)
    slow_engine, slow = run(messages, sizes, False, monkeypatch, max_pending, 4, **options)
    same(fast[0], slow[0], "rejects")
    same(fast[1], slow[1], "summary")
    same(fast[3], slow[3], "join")
    assert fast_engine.engine.pending_total == slow_engine.engine.pending_total
    assert fast_engine.engine.early_total == slow_engine.engine.early_total
    messages_seen, one_by_one, at_caps, batch_evicted = fast[2]
    counts = fast[1]["models"]["b"]["counts"]
    total = sum(m["counts"][evicted] for m in fast[1]["models"].values())
    assert total > 100, total  # the cap was reached again and again
    # by the batch path: all of them at the entry cap; where an eviction would take an entry
    # a later message of the poll names (small caps), the poll goes one by one (at_caps)
    assert batch_evicted >= share * total, (batch_evicted, total)
    if share >= 0.8:
        assert at_caps == 0  # no poll left to the per-message path for a cap
        # garbage, rejects, labels whose prediction was evicted
        assert one_by_one < 0.15 * messages_seen, (one_by_one, messages_seen)
    assert counts["matched"] > 500
    assert {r[0] for r in fast[0]} >= {"duplicate", "not_json"}


def reference_join(messages: list[Message], max_pending: int, max_bytes: int,
                   max_early: int) -> tuple[dict[int, list[str]], dict[int, list[str]], int, int]:
    """The join of the documented rules in plain Python, for one model (``r``, no segments)
    and labels naming it or none: per partition the waiting ids and the early labels in
    arrival order, and the evictions of each kind. A prediction whose id waits or was
    joined is a duplicate; one whose label came first joins it; else it waits, after
    evicting while the model is at its caps (entries; bytes: the id's UTF-8 bytes, 44 and
    4 per slice id, 2 here), oldest first: from its own partition if it holds any, else
    from the first partition by number that does. A label joins its waiting prediction; a
    label of a waiting, early or joined id is a duplicate; else it waits, after evicting
    one early label the same way if at their cap. Nothing expires (a long TTL)."""
    pending: dict[int, dict[str, int]] = {}
    early: dict[int, dict[str, None]] = {}
    matched: dict[int, set[str]] = {}
    evicted = early_evicted = 0
    for msg in messages:
        body = json.loads(msg.value or b"")
        pid, part = body["prediction_id"], msg.partition
        mine = pending.setdefault(part, {})
        waiting = early.setdefault(part, {})
        done = matched.setdefault(part, set())
        if msg.topic == "predictions":
            if pid in mine or pid in done:
                continue
            if pid in waiting:
                del waiting[pid]
                done.add(pid)
                continue
            size = len(pid.encode()) + 44 + 8
            while sum(map(len, pending.values())) and (
                sum(map(len, pending.values())) >= max_pending
                or sum(sum(t.values()) for t in pending.values()) + size > max_bytes
            ):
                victim = mine if mine else pending[min(n for n, t in pending.items() if t)]
                del victim[next(iter(victim))]
                evicted += 1
            mine[pid] = size
        elif pid in mine:
            del mine[pid]
            done.add(pid)
        elif pid not in waiting and pid not in done:
            if sum(map(len, early.values())) >= max_early:
                victim_e = waiting if waiting else early[min(n for n, t in early.items() if t)]
                del victim_e[next(iter(victim_e))]
                early_evicted += 1
            waiting[pid] = None
    return ({n: list(t) for n, t in pending.items()}, {n: list(t) for n, t in early.items()},
            evicted, early_evicted)


@pytest.mark.parametrize(("max_pending", "max_bytes", "max_early"), [
    (60, 10**9, 10**6), (10**6, 4_000, 10**6), (60, 4_000, 8),
])
def test_evictions_equal_a_plain_reference(max_pending: int, max_bytes: int, max_early: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Both paths evict what a plain-Python reference of the rules evicts, in order."""
    rng = random.Random(max_early)
    messages: list[Message] = []
    offsets: dict[tuple[str, int], int] = {}

    def emit(topic: str, body: dict[str, Any]) -> None:
        pid = body["prediction_id"]
        part = zlib.crc32(pid.encode()) % 3
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        stamp = int((T0 + 100) * 1000)
        messages.append(Message(topic, part, offset, pid.encode(), json.dumps(body).encode(),
                                timestamp_ms=stamp))

    waiting: list[str] = []
    for i in range(3000):
        pid = f"e{i}" + "y" * rng.randrange(10)
        if rng.random() < 0.05:  # its label first
            emit("labels", {"prediction_id": pid, "ts": T0 + 1, "label": 1.0})
        emit("predictions", {"prediction_id": pid, "model": "r", "ts": T0 + i * 0.01,
                             "prediction": rng.random()})
        if rng.random() < 0.7:
            waiting.append(pid)
        if waiting and rng.random() < 0.6:  # a label for one of the recent predictions
            emit("labels", {"prediction_id": waiting.pop(rng.randrange(len(waiting))),
                            "model": rng.choice(["r", None]), "ts": T0 + 50, "label": 1.0})
        if rng.random() < 0.05:  # a label whose prediction never comes
            emit("labels", {"prediction_id": f"o{i}", "ts": T0 + 1, "label": 1.0})
    want = reference_join(messages, max_pending, max_bytes, max_early)
    cfg = config_from_mapping({"time": {"pane": "10s", "allowed_lateness": "5s"}, "models": [
        {"name": "r", "task": "regression", "windows": ["all"], "label_ttl": "1d",
         "max_pending": max_pending, "max_pending_bytes": max_bytes,
         "max_early_labels": max_early, "reference_warmup": 0}]})
    for batch_path in (True, False):
        engine = Pipeline(cfg)
        with monkeypatch.context() as patch:
            if not batch_path:
                patch.setattr(engine_module, "split_and_join",
                              lambda _e, msgs: list(range(len(msgs))))
            for i in range(0, len(messages), 300):
                engine.process(messages[i : i + 300])
        r = engine.models[0].index
        got_pending = {n: list(s.join.pending[r]) for n, s in engine.partitions.items()}
        got_early = {n: list(s.join.early) for n, s in engine.partitions.items()}
        report = engine.summary()["models"]
        assert {n: t for n, t in got_pending.items() if t} == {
            n: t for n, t in want[0].items() if t}, batch_path
        assert {n: t for n, t in got_early.items() if t} == {
            n: t for n, t in want[1].items() if t}, batch_path
        assert report["r"]["counts"]["evicted"] == want[2], batch_path
        # early labels naming no model are evicted uncounted by model: at most the total
        assert report["r"]["counts"]["early_labels_evicted"] <= want[3]
        assert engine.engine.early_total == sum(map(len, want[1].values()))
    assert want[2] > 0 or want[3] > 0


@pytest.mark.parametrize("seed", [31, 32, 33, 34])
def test_repeats_of_evicted_ids_within_a_poll_equal_the_reference(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls at both caps whose messages name ids evicted within the same poll, before or
    after their eviction: predictions sent again, labels sent again, labels whose
    prediction was just evicted. Both paths give the plain-Python reference's join state
    and eviction counts."""
    rng = random.Random(seed)
    messages: list[Message] = []
    offsets: dict[tuple[str, int], int] = {}

    def emit(topic: str, body: dict[str, Any]) -> None:
        pid = body["prediction_id"]
        part = zlib.crc32(pid.encode()) % 3
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        messages.append(Message(topic, part, offset, pid.encode(), json.dumps(body).encode(),
                                timestamp_ms=int((T0 + 100) * 1000)))

    seen: list[str] = []
    for i in range(2500):
        roll = rng.random()
        if roll < 0.55 or not seen:
            pid = f"n{i}"
            seen.append(pid)
            emit("predictions", {"prediction_id": pid, "model": "r", "ts": T0 + i * 0.01,
                                 "prediction": 1.0})
        elif roll < 0.65:  # a prediction sent again, recent or old
            pid = rng.choice(seen[-rng.choice([5, 60, 400]):])
            emit("predictions", {"prediction_id": pid, "model": "r", "ts": T0 + i * 0.01,
                                 "prediction": 1.0})
        elif roll < 0.95:  # a label, some twice in a row
            pid = rng.choice(seen[-rng.choice([5, 60, 400]):])
            for _ in range(2 if rng.random() < 0.2 else 1):
                emit("labels", {"prediction_id": pid, "ts": T0 + 50, "label": 1.0})
        else:  # a label first
            pid = f"n{i}"
            emit("labels", {"prediction_id": pid, "ts": T0 + 50, "label": 1.0})
            seen.append(pid)
    max_pending, max_early = 50, 20
    want = reference_join(messages, max_pending, 10**9, max_early)
    cfg = config_from_mapping({"time": {"pane": "10s", "allowed_lateness": "5s"}, "models": [
        {"name": "r", "task": "regression", "windows": ["all"], "label_ttl": "1d",
         "max_pending": max_pending, "max_early_labels": max_early, "reference_warmup": 0}]})
    sizes = [rng.choice([1, 30, 200, 600]) for _ in range(30)]
    seen_polls = [0, 0]
    for batch_path in (True, False):
        engine = Pipeline(cfg)

        def counting(engine: Engine, msgs: list[Message]) -> list[int]:
            slow = split_and_join(engine, msgs)
            seen_polls[0] += 1
            seen_polls[1] += slow.at_caps > 0
            return slow

        with monkeypatch.context() as patch:
            patch.setattr(engine_module, "split_and_join", counting if batch_path else
                          lambda _e, msgs: list(range(len(msgs))))
            at = k = 0
            while at < len(messages):
                size = sizes[k % len(sizes)]
                engine.process(messages[at : at + size])
                at += size
                k += 1
        pending = {n: list(s.join.pending[0]) for n, s in engine.partitions.items()}
        early = {n: list(s.join.early) for n, s in engine.partitions.items()}
        assert {n: t for n, t in pending.items() if t} == {
            n: t for n, t in want[0].items() if t}, batch_path
        assert {n: t for n, t in early.items() if t} == {
            n: t for n, t in want[1].items() if t}, batch_path
        assert engine.summary()["models"]["r"]["counts"]["evicted"] == want[2], batch_path
    assert want[2] > 200 and want[3] > 20
    assert seen_polls[1] < seen_polls[0], seen_polls  # most polls placed their evictions
