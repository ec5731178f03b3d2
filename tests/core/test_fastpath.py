"""The batch path of ``Engine.process``: a poll decided whole against the same poll
decided one message at a time.

``split_and_join`` decides every message of a poll, cutting the poll into consecutive
segments where it cannot decide a message with the ones before it; a message alone in its
segment has no message of the poll to interact with. Every poll below is processed twice
through the same ``Engine.process``: whole, and in segments of one message each
(``fastpath.MAX_SEGMENT = 1``; the clock still moves only at each poll's end), on streams
full of what makes a poll hard to decide at once: duplicates within and across polls,
labels before their predictions, labels naming another model, unknown models and classes,
bad JSON, out-of-range scores and times, times ahead of the record's timestamp, RFC 3339
times, predictions carrying their label, segments past their cap, several partitions and
models, the caps (entries, bytes, early labels). The join state (every table in arrival
order), counts, rejects (in order, with reasons and details), evictions, warmup rows and
the rows stage 1 hands to stage 2 must be equal. Both are also held to a plain-Python model
of the eviction rules (:func:`reference_join`), and the number of segments is bounded.
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
import monitor.core.fastpath as fastpath
from monitor.config import config_from_mapping
from monitor.core.engine import Engine
from monitor.core.fastpath import Decided, split_and_join
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message, MessageBatch

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
                        for chunk in parts[number]
                        for r in chunk.rows(stage.model.layout)
                    ]
                    for pane, parts in sorted(stage.warm.items()) if number in parts
                }
                for m, stage in enumerate(stages)
            },
        }
    out[-1] = [  # and those of closed panes, taken into the warmup sample
        [(tuple((r[2] or {}).get(n) for n in FEATURES), r[3], r[4])
         for chunk in m.warmup_rows for r in chunk.rows(m.layout)]
        for m in engine.models
    ]
    return out


def ledger_rows(engine: Engine) -> dict[tuple[int, int, int], Any]:
    """What stage 1 hands to stage 2 for each (partition, model, pane): each slice's plain
    and decayed sums (rows by what they stand for, all-zero ones left out), the joined
    pairs' errors and the warmup rows, in arrival order."""
    out: dict[tuple[int, int, int], Any] = {}
    for number in sorted(engine.ledgers):
        for m, panes in enumerate(engine.ledgers[number].panes):
            keys = engine.models[m].registry.keys

            def key(r: int, keys: Any = keys) -> Any:
                return keys[r] if r >= 0 else None

            for pane in sorted(panes):
                acc = panes[pane]
                rows = {  # acc.rows: the registry row of each row of the blocks
                    key(int(r)): (acc.plain[i].tolist(), [d[i].tolist() for d in acc.decay])
                    for i, r in enumerate(acc.rows)
                    if acc.plain[i].any() or any(d[i].any() for d in acc.decay)
                }
                warm = [(w.ts, tuple(key(k) for k in w.slices),
                         tuple((w.features or {}).get(n) for n in FEATURES), w.prediction,
                         w.score) for w in acc.warm]  # fmt: skip
                out[(number, m, pane)] = (rows, list(acc.err_ts), list(acc.err), warm)
    return out


class Cuts:
    """How the polls of a run were cut: messages, segments, messages decided alone,
    entries evicted, polls, and the polls that needed more than one segment."""

    def __init__(self) -> None:
        self.messages = self.segments = self.alone = self.evicted = self.polls = 0
        self.cut_polls = 0

    def add(self, decided: Decided) -> None:
        self.messages += decided.messages
        self.segments += decided.segments
        self.alone += decided.alone
        self.evicted += decided.evicted
        self.polls += 1
        self.cut_polls += decided.segments > 1


def run(messages: list[Message], sizes: list[int], one_at_a_time: bool,
        monkeypatch: pytest.MonkeyPatch, max_pending: int, partitions: int = 3,
        cfg: Any = None, **options: Any) -> tuple[Pipeline, list[Any]]:  # fmt: skip
    """The stream in polls of ``sizes`` (in turn), each decided whole or one message at a
    time; returns the pipeline and [rejects, summary, cuts, join state, ledger rows].
    ``cfg``: the config (else :func:`config` of ``max_pending`` and ``options``)."""
    engine = Pipeline(config(max_pending, **options) if cfg is None else cfg)
    engine.track({(t, p) for t in ("predictions", "labels") for p in range(partitions)})
    cuts = Cuts()
    handed: list[Any] = []
    hand_over = engine._hand_over

    def counting(engine: Engine, msgs: MessageBatch) -> Decided:
        decided = split_and_join(engine, msgs)
        cuts.add(decided)
        return decided

    def taking() -> None:  # what stage 1 hands over after each poll
        handed.append(ledger_rows(engine.engine))
        hand_over()

    with monkeypatch.context() as patch:
        patch.setattr(engine_module, "split_and_join", counting)
        patch.setattr(engine, "_hand_over", taking)
        if one_at_a_time:
            patch.setattr(fastpath, "MAX_SEGMENT", 1)
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
    return engine, [rejects, summary, cuts, join_state(engine), handed]


def both(messages: list[Message], sizes: list[int], monkeypatch: pytest.MonkeyPatch,
         max_pending: int, partitions: int = 3, **options: Any) -> tuple[Pipeline, list[Any]]:
    """The stream decided whole and one message at a time: every outcome equal (the
    whole run's pipeline and outcomes returned)."""
    whole_engine, whole = run(messages, sizes, False, monkeypatch, max_pending, partitions,
                              **options)  # fmt: skip
    alone_engine, alone = run(messages, sizes, True, monkeypatch, max_pending, partitions,
                              **options)  # fmt: skip
    same(whole[0], alone[0], "rejects")
    same(whole[1], alone[1], "summary")
    same(whole[3], alone[3], "join")
    # each (partition, pane)'s sums are taken in poll order both ways, in blocks of
    # another size: equal to rounding
    same(whole[4], alone[4], "ledger rows")
    assert whole[2].evicted == alone[2].evicted
    assert whole[2].messages == alone[2].messages == alone[2].segments
    stage_1 = (whole_engine.engine, alone_engine.engine)
    assert stage_1[0].pending_total == stage_1[1].pending_total
    assert stage_1[0].early_total == stage_1[1].early_total
    for model in whole_engine.models:
        other = alone_engine.models[model.index]
        assert model.registry.folded == other.registry.folded
        assert sorted(model.registry.keys) == sorted(other.registry.keys)
    return whole_engine, whole


def same(a: Any, b: Any, where: str = "") -> None:
    """Equal structures, floats within 1e-9 (relative to ``b``) or 1e-12, NaN equal to NaN.

    Exactly equal parts pass at C speed (``==``); only the parts that differ are walked
    down to their floats (a run hands over millions of them: ``pytest.approx`` on each
    took most of this module's time)."""
    try:
        if a == b:
            return
    except (TypeError, ValueError):  # arrays and the like: compared piece by piece
        pass
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        # pytest.approx(b, rel=1e-9, abs=1e-12), without its cost per call
        close = math.isfinite(a - b) and abs(a - b) <= max(1e-9 * abs(b), 1e-12)
        assert close or (math.isnan(a) and math.isnan(b)), (where, a, b)
    else:
        assert a == b, where


@pytest.mark.parametrize(("seed", "sizes", "max_pending", "noise"), [
    (1, [500], 1_000_000, 1.0),
    (2, [7, 300, 1], 1_000_000, 1.0),
    (3, [2000], 150, 1.0),  # the pending cap is reached
    (5, [400, 100], 1_000_000, 0.05),  # odd events are rarer
    (6, [1000], 1_000_000, 0.02),
])
def test_a_poll_whole_equals_its_messages_one_at_a_time(
    seed: int, sizes: list[int], max_pending: int, noise: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = stream(seed, 6000, noise)
    _, fast = both(messages, sizes, monkeypatch, max_pending)
    cuts = fast[2]
    if noise < 0.5:
        assert cuts.segments <= 3 * cuts.polls, (cuts.segments, cuts.polls)
        assert cuts.alone == 0
    counts = fast[1]["models"]["b"]["counts"]
    # The stream exercises what it should: joins, rejects of several kinds, evictions.
    assert counts["matched"] > 500
    kinds = {r[0] for r in fast[0]}
    assert kinds >= ({"not_json", "bad_value", "unknown_model", "duplicate", "future"}
                     if noise > 0.5 else {"duplicate"})
    assert counts["early_labels_evicted"] + counts["orphan_labels"] + counts["matched"] > 0
    if max_pending < 1000:
        assert counts["evicted"] > 0
        assert cuts.evicted == sum(m["counts"]["evicted"] for m in fast[1]["models"].values())


def test_a_clean_stream_is_one_segment_a_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean stream (labels before their predictions, predictions carrying their label,
    labels a poll or more later) is decided one segment per poll."""
    messages = stream(4, 4000, noise=0.0)
    seen = Cuts()

    def counting(engine: Engine, msgs: MessageBatch) -> Decided:
        decided = split_and_join(engine, msgs)
        seen.add(decided)
        return decided

    monkeypatch.setattr(engine_module, "split_and_join", counting)
    engine = Pipeline(config())
    for i in range(0, len(messages), 500):
        engine.process(messages[i : i + 500])
    assert seen.segments == seen.polls, (seen.segments, seen.polls)
    assert seen.alone == 0


def renumbered(messages: list[Message]) -> list[Message]:
    """The messages with offsets in order per topic and partition (after insertions)."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for m in messages:
        offset = offsets.get((m.topic, m.partition), 0)
        offsets[(m.topic, m.partition)] = offset + 1
        out.append(Message(m.topic, m.partition, offset, m.key, m.value,
                           timestamp_ms=m.timestamp_ms))  # fmt: skip
    return out


def test_garbage_and_duplicate_labels_do_not_cut_a_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clean stream with 1 % garbage and 0.5 % of its labels sent twice (at once, or
    later): rejects and ordinary duplicates are decided inside a segment, so each poll is
    still one segment, and the outcome is the one of messages decided one at a time."""
    rng = random.Random(8)
    clean = stream(8, 6000, noise=0.0)
    messages: list[Message] = []
    again: list[tuple[int, Message]] = []
    for m in clean:
        while again and again[0][0] <= len(messages):
            messages.append(again.pop(0)[1])
        messages.append(m)
        if rng.random() < 0.01:
            value = rng.choice([b"{not json", b"[]", None, b'{"prediction_id": 3}', b"{}"])
            messages.append(Message(rng.choice(["predictions", "labels", "other"]),
                                    m.partition, 0, b"g", value,
                                    timestamp_ms=m.timestamp_ms))  # fmt: skip
        if m.topic == "labels" and rng.random() < 0.005:
            again.append((len(messages) + rng.choice([0, 0, 400]), m))
    messages = renumbered(messages)
    _, whole = both(messages, [2000], monkeypatch, 1_000_000)
    cuts = whole[2]
    assert cuts.segments == cuts.polls, (cuts.segments, cuts.polls)
    kinds = {r[0] for r in whole[0]}
    assert {"duplicate", "not_json", "unknown_topic"} <= kinds, kinds


def test_a_pathological_poll_costs_a_bounded_plan_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poll in which every message names an id that other messages of the poll name in
    ways the planner does not decide at once (a prediction, its label, the prediction
    again, the label again, ...): at most one segment per message, and the messages
    planned in all stay within a constant times the poll's length (never quadratic)."""
    messages: list[Message] = []
    for i in range(1500):
        pid = f"x{i % 3}"  # each id: a prediction, its label, the prediction again, ...
        if i % 2:
            body: dict[str, Any] = {"prediction_id": pid, "ts": T0 + 1, "label": 1.0}
            topic = "labels"
        else:
            body = {"prediction_id": pid, "model": "r", "ts": T0 + 1, "prediction": 1.0}
            topic = "predictions"
        messages.append(Message(topic, 0, 0, pid.encode(), json.dumps(body).encode(),
                                timestamp_ms=int((T0 + 100) * 1000)))  # fmt: skip
    messages = renumbered(messages)
    planned = [0, 0]
    segment = fastpath._segment

    def counting(engine: Engine, msgs: MessageBatch, a: int, b: int, out: Decided) -> int:
        planned[0] += 1
        planned[1] += b - a
        return segment(engine, msgs, a, b, out)

    monkeypatch.setattr(fastpath, "_segment", counting)
    _, whole = both(messages, [len(messages)], monkeypatch, 1_000_000, 1)
    cuts = whole[2]
    n = len(messages)
    assert cuts.segments <= n
    assert cuts.segments > 100  # it is pathological
    assert planned[0] <= 6 * n + 2 * n  # the run one at a time plans each message once
    assert planned[1] <= 300 * n, planned  # quadratic would be ~n * n / 2


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
def test_a_noisy_stream_whole_equals_it_one_at_a_time(
    seed: int, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Property-style: random poll sizes over a noisy stream (fixed seeds); whole polls
    and messages one at a time give the same rejects in order, counts, metrics, join state
    (in arrival order), warmup rows and ledger rows."""
    rng = random.Random(seed)
    messages = noisy_stream(seed, 5000)
    sizes = [rng.choice([1, 3, 40, 250, 800, 2000]) for _ in range(40)]
    max_pending = options.pop("max_pending", 1_000_000)
    fast_engine, fast = both(messages, sizes, monkeypatch, max_pending, 4, **options)
    kinds = {r[0] for r in fast[0]}
    assert {"duplicate", "unknown_model", "not_json"} <= kinds, kinds
    assert fast_engine.models[0].registry.folded["version"] > 0  # the cap was reached
    if not options:
        cuts = fast[2]
        # a stream far noisier than a real one (4 % of labels first, 1 % of ids reused,
        # retries of labels before their prediction): a few segments a poll, few alone
        assert cuts.segments < 0.03 * cuts.messages, (cuts.segments, cuts.messages)
        assert cuts.alone < 0.005 * cuts.messages, (cuts.alone, cuts.messages)


def test_a_duplicate_label_is_decided_in_its_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll with one label sent twice (after its prediction, in the same poll) is one
    segment: the prediction and the first label are joined and the retry is a duplicate;
    the outcome is the one of messages decided one at a time."""
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
    _, fast = both(messages, [len(messages)], monkeypatch, 1_000_000, 2)
    assert [r[0] for r in fast[0]] == ["duplicate"]
    assert "'d100'" in fast[0][0][4]  # the retry
    assert (fast[2].messages, fast[2].segments, fast[2].alone) == (len(messages), 1, 0)


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


@pytest.mark.parametrize(("seed", "options", "evicted", "cut"), [
    (21, {"max_pending": 150}, "evicted", 0.35),  # the entry cap, most polls
    (22, {"max_bytes": 9_000}, "evicted", 0.35),  # the byte cap
    # the early-label cap (the predictions come a poll or more later)
    (23, {"max_early": 12, "never": 0.0, "orphans": 0.2, "soon": (300, 600)},
     "early_labels_evicted", 0.35),
    # both caps, tiny: entries are evicted that later messages of the poll name, and the
    # labels and predictions that would find them are decided after a cut
    (24, {"max_pending": 40, "max_early": 5}, "evicted", 1.0),
])
def test_a_stream_at_the_caps_whole_equals_it_one_at_a_time(
    seed: int, options: dict[str, Any], evicted: str, cut: float,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that sits at a cap for most of its polls, with duplicates, retries, early
    labels and garbage in every poll: the planner places the evictions over the poll in
    arrival order (:mod:`monitor.core.caps`), cutting it only where an eviction takes an
    entry a later message of the poll names, and every outcome is the one of messages
    decided one at a time."""
    rng = random.Random(seed)
    never = options.pop("never", 0.2)
    messages = capped_stream(seed, 4000, never=never, orphans=options.pop("orphans", 0.0),
                             soon=options.pop("soon", (0, 1, 30, 300)))
    sizes = [rng.choice([1, 40, 250]) for _ in range(40)]
    max_pending = options.pop("max_pending", 1_000_000)
    _, fast = both(messages, sizes, monkeypatch, max_pending, 4, **options)
    cuts = fast[2]
    counts = fast[1]["models"]["b"]["counts"]
    total = sum(m["counts"][evicted] for m in fast[1]["models"].values())
    assert total > 100, total  # the cap was reached again and again
    # most polls are one segment; a poll is cut where an eviction takes an entry a later
    # message names, or a reject names
    assert cuts.cut_polls <= cut * cuts.polls, (cuts.cut_polls, cuts.polls)
    assert cuts.alone == 0
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
    """Whole polls and messages one at a time evict what a plain-Python reference of the
    rules evicts, in order."""
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
    for one_at_a_time in (False, True):
        engine = Pipeline(cfg)
        with monkeypatch.context() as patch:
            if one_at_a_time:
                patch.setattr(fastpath, "MAX_SEGMENT", 1)
            for i in range(0, len(messages), 300):
                engine.process(messages[i : i + 300])
        r = engine.models[0].index
        got_pending = {n: list(s.join.pending[r]) for n, s in engine.partitions.items()}
        got_early = {n: list(s.join.early) for n, s in engine.partitions.items()}
        report = engine.summary()["models"]
        assert {n: t for n, t in got_pending.items() if t} == {
            n: t for n, t in want[0].items() if t}, one_at_a_time
        assert {n: t for n, t in got_early.items() if t} == {
            n: t for n, t in want[1].items() if t}, one_at_a_time
        assert report["r"]["counts"]["evicted"] == want[2], one_at_a_time
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
    prediction was just evicted. Whole polls and messages one at a time give the
    plain-Python reference's join state and eviction counts."""
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
    seen = Cuts()
    for one_at_a_time in (False, True):
        engine = Pipeline(cfg)

        def counting(engine: Engine, msgs: MessageBatch, whole: bool = not one_at_a_time
                     ) -> Decided:
            decided = split_and_join(engine, msgs)
            if whole:
                seen.add(decided)
            return decided

        with monkeypatch.context() as patch:
            patch.setattr(engine_module, "split_and_join", counting)
            if one_at_a_time:
                patch.setattr(fastpath, "MAX_SEGMENT", 1)
            at = k = 0
            while at < len(messages):
                size = sizes[k % len(sizes)]
                engine.process(messages[at : at + size])
                at += size
                k += 1
        pending = {n: list(s.join.pending[0]) for n, s in engine.partitions.items()}
        early = {n: list(s.join.early) for n, s in engine.partitions.items()}
        assert {n: t for n, t in pending.items() if t} == {
            n: t for n, t in want[0].items() if t}, one_at_a_time
        assert {n: t for n, t in early.items() if t} == {
            n: t for n, t in want[1].items() if t}, one_at_a_time
        assert engine.summary()["models"]["r"]["counts"]["evicted"] == want[2], one_at_a_time
    assert want[2] > 200 and want[3] > 20
    # the polls are cut where an eviction takes an entry a later message names: a few
    # segments a poll, not one a message
    assert seen.segments < 0.25 * seen.messages, (seen.segments, seen.messages)


@pytest.mark.parametrize(
    "partitions,models",
    [
        ([0], [0]),
        ([0, 1, 2, 3], [0]),
        ([0, 1, 2, 3], [-2, -1, 0, 1, 2]),
        # keys past 16 bits: (model + 2) * 300 + partition, and (0, 0) and (218, 136) are
        # 65,536 apart, which a sort of the keys cut to 16 bits would mix up
        ([0, 136, 299], [-2, -1, 0, 218, 299]),
    ],
)
def test_group_gives_each_model_and_partition_its_positions_in_order(
    partitions: list[int], models: list[int]
) -> None:
    from monitor.core.fastpath import _group

    rng = random.Random(len(partitions) * 100 + len(models))
    parts = [rng.choice(partitions) for _ in range(5000)]
    named = [rng.choice(models) for _ in range(5000)]
    expected: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(named, parts, strict=True)):
        expected.setdefault(key, []).append(i)
    got = _group(parts, named)
    assert {key: rows for key, (rows, _) in got.items()} == expected
    for rows, sel in got.values():
        assert sel.dtype == np.int64 and sel.tolist() == rows


def versions_config() -> Any:
    """Six models without segments, their versions capped at four."""
    return config_from_mapping({
        "time": {"pane": "10s", "allowed_lateness": "5s"},
        "models": [
            {"name": f"m{i}", "task": "binary", "positive_class": 1, "windows": ["all", "1m"],
             "max_versions": 4, "reference_warmup": 0}
            for i in range(6)
        ],
    })  # fmt: skip


def versions_stream(seed: int, n: int) -> list[Message]:
    """Predictions of six models over 3 partitions, with a version or none, new versions
    appearing as the stream goes on (past a model's cap: folded), and their labels, some
    naming the model."""
    rng = random.Random(seed)
    offsets: dict[tuple[str, int], int] = {}
    out: list[Message] = []
    waiting: list[tuple[str, str]] = []

    def emit(topic: str, pid: str, body: dict[str, Any]) -> None:
        part = zlib.crc32(pid.encode()) % 3
        offset = offsets.get((topic, part), 0)
        offsets[topic, part] = offset + 1
        stamp = int((T0 + len(out) * 0.05 + 30) * 1000)
        out.append(Message(topic, part, offset, pid.encode(), json.dumps(body).encode(),
                           timestamp_ms=stamp))  # fmt: skip

    for i in range(n):
        t = T0 + i * 0.05
        if rng.random() < 0.6 or not waiting:
            model = f"m{rng.randrange(6)}"
            pid = f"p{i}"
            body: dict[str, Any] = {"prediction_id": pid, "model": model, "ts": t,
                                    "prediction": rng.choice([0, 1]), "score": rng.random()}
            # each even stretch of the stream one version (new as it starts); each odd one
            # a new version first, then a mix of it, the one before and none. Half of the
            # models register one of their own first: their ids differ, their cap of four
            # is met sooner.
            era, at = divmod(i, 1200)
            if i < 200 and int(model[1:]) >= 3:
                version = f"w{model}"
            elif era % 2 == 0 or at < 60:
                version = f"v{era}"
            else:
                version = rng.choice([f"v{era - 1}", f"v{era}", "", None])
            if version is not None:
                body["model_version"] = version
            emit("predictions", pid, body)
            waiting.append((pid, model))
        else:
            pid, model = waiting.pop(rng.randrange(len(waiting)))
            label: dict[str, Any] = {"prediction_id": pid, "ts": t + 1,
                                     "label": rng.choice([0, 1])}
            if rng.random() < 0.5:
                label["model"] = model
            emit("labels", pid, label)
    return out


@pytest.mark.parametrize("sizes", [[500], [40, 300, 7]])
def test_many_models_with_versions_whole_equals_one_at_a_time(
    sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many models without segments whose versions change as the stream goes on (new ones
    met in a poll, a mix of several and none, some models past their cap): the poll decided
    whole equals its messages one at a time, registries and folded counts included."""
    engine, _ = both(versions_stream(3, 9000), sizes, monkeypatch, 1_000_000,
                     cfg=versions_config())  # fmt: skip
    keys = [m.registry.keys for m in engine.models]
    assert keys[0] != keys[3], keys  # registered in another order: other ids
    folded = [m.registry.folded for m in engine.models]
    assert any(any(f.values()) for f in folded), folded  # past the caps: folded
