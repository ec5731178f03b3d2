"""A delta handed over in one process (``DeltaBook.take(arrays=True)``: the ledger's arrays
and stage 1's count rows themselves) holds what the same delta encoded and decoded holds,
value for value, and a model's stage 2 fed either way ends bit for bit the same: windows,
counters, error buffers and chains. Models with and without slices, panes whose rows are
all zero, a partition with nothing new."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import msgspec
import numpy as np

from monitor.config import config_from_mapping
from monitor.core.deltas import DeltaBook
from monitor.core.engine import Engine
from monitor.core.model_stage import ModelStage
from monitor.core.partials import PartitionDelta, decode_delta, encode_delta
from monitor.events.message import Message

T0 = 1_700_000_000.0
TOPICS = ("predictions", "labels")
PARTS = 3


def _config() -> Any:
    sliced = {"name": "s", "task": "binary", "positive_class": 1, "label_ttl": "10m",
              "windows": ["all", "1m", "ewm1m"], "detectors": ["adwin"],
              "segments": ["region"], "max_segment_values": 2}
    plain = {"name": "p", "task": "regression", "windows": ["all", "ewm30s", "ewm2m"],
             "label_ttl": "10m"}
    return config_from_mapping({
        "kafka": {"predictions_topic": TOPICS[0], "labels_topic": TOPICS[1]},
        "time": {"pane": "10s", "allowed_lateness": "5s"},
        "models": [sliced, plain],
    })


def _stream(n: int, seed: int) -> list[Message]:
    """Predictions of both models over PARTS partitions (partition 2 silent in the middle),
    labels 2-30 s later; zero predictions and labels of the regression model (rows whose
    sums cancel to zero are possible) and segment values beyond the cap (folded)."""
    rng = random.Random(seed)
    out: list[tuple[float, int, str, bytes]] = []
    for i in range(n):
        t = T0 + i * 0.41
        part = rng.randrange(PARTS - 1 if n // 3 < i < 2 * n // 3 else PARTS)
        pid = f"q{i}"
        if i % 3 == 2:
            body: dict[str, Any] = {"prediction_id": pid, "model": "p", "ts": t,
                                    "prediction": rng.choice([0.0, -0.0, rng.gauss(0, 2)])}
            label: Any = rng.choice([0.0, rng.gauss(0, 2)])
        else:
            body = {"prediction_id": pid, "model": "s", "ts": t,
                    "prediction": int(rng.random() < 0.5), "score": round(rng.random(), 3),
                    "segment": {"region": rng.choice("abcd")}}
            label = int(rng.random() < 0.5)
        out.append((t, part, "predictions", json.dumps(body).encode()))
        if rng.random() < 0.8:
            lt = t + rng.uniform(2, 30)
            out.append((lt, part, "labels",
                        json.dumps({"prediction_id": pid, "ts": lt, "label": label}).encode()))
    out.sort(key=lambda x: x[0])
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for _, part, topic, value in out:
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        messages.append(Message(topic, part, off, None, value))
    return messages


def _same_delta(handed: PartitionDelta, wired: PartitionDelta) -> None:
    assert (handed.number, handed.base, handed.end, handed.progress, handed.idle) == (
        wired.number, wired.base, wired.end, wired.progress, wired.idle)
    assert len(handed.models) == len(wired.models)
    for a, b in zip(handed.models, wired.models, strict=True):
        assert (a.model, a.width, a.slice_keys, a.folded, a.pending, a.early) == (
            b.model, b.width, b.slice_keys, b.folded, b.pending, b.early)
        assert np.asarray(a.counts).tolist() == b.counts
        assert np.asarray(a.delay).tolist() == b.delay
        assert a.delay_sum == b.delay_sum
        assert [p.pane for p in a.panes] == [p.pane for p in b.panes]
        for pa, pb in zip(a.panes, b.panes, strict=True):
            assert pa.rows == pb.rows
            plain_a, decay_a = handed.blocks(a, pa)
            plain_b, decay_b = wired.blocks(b, pb)
            assert plain_a.tobytes() == plain_b.tobytes()
            assert [d.tobytes() for d in decay_a] == [d.tobytes() for d in decay_b]
            encode = msgspec.msgpack.encode  # (NaN scores: compared as encoded)
            assert encode((pa.err_ts, pa.err, pa.warm)) == encode((pb.err_ts, pb.err, pb.warm))


def _stage_state(stage: ModelStage) -> Any:
    w = stage.windows
    return (
        {p: a.tobytes() for p, a in w.open.items()},
        {p: [a.tobytes() for a in arrs] for p, arrs in w.open_decay.items()},
        stage.counts.tobytes(), stage.delay.tobytes(), stage.delay_sum,
        stage.error_panes, stage.waiting, stage.progress, stage.idle,
        {n: (c.end, c.seq, len(c.history)) for n, c in stage.chains.items()},  # (sessions: uuids)
        list(stage.model.registry.keys), dict(stage.model.registry.folded),
    )


def test_a_delta_handed_over_as_arrays_is_the_delta_the_wire_carries() -> None:
    cfg = _config()
    messages = _stream(1500, seed=5)
    rng = random.Random(3)
    engine = Engine(cfg)
    engine.track([(t, p) for t in TOPICS for p in range(PARTS)])
    book = DeltaBook(engine)
    handed_stages = {m.name: ModelStage(cfg, m.name, PARTS) for m in cfg.models}
    wired_stages = copy.deepcopy(handed_stages)
    i = 0
    while i < len(messages):
        k = rng.randrange(1, 200)
        engine.process(messages[i : i + k])
        i += k
        for number in sorted(engine.partitions):
            # the same delta taken both ways: stage 1 (its book and engine) copied first
            twin = copy.deepcopy(book)
            handed = book.take(number, arrays=True)
            wired = decode_delta(encode_delta(twin.take(number)))
            book, engine = twin, twin.engine  # both took the same: go on with the copy
            _same_delta(handed, wired)
            for name, stage in handed_stages.items():
                stage.apply(handed, advance=False)
                wired_stages[name].apply(wired, advance=False)
        for name, stage in handed_stages.items():
            stage.advance()
            wired_stages[name].advance()
            assert _stage_state(stage) == _stage_state(wired_stages[name])
    assert any(s.panes_closed for s in handed_stages.values())
