"""A partition's stage-1 state moves between engines (replicas): one engine runs
partitions 0-1, another 2-3, then the second's partitions are exported (encoded, as a store
does) and installed into the first, which reads on from the snapshot's offsets. Its state
must be the single engine's exactly, whichever engine's clock was ahead and although the
two numbered their slices in different orders (each model's stage 2 across replicas:
tests/faults/test_replica_exactness.py, tests/core/test_model_stage.py)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from monitor.config import MonitorConfig, config_from_mapping
from monitor.core.counts import EXPIRED
from monitor.core.engine import Engine
from monitor.core.pipeline import Pipeline
from monitor.core.windows import ring_array
from monitor.events.message import Message
from monitor.state.format import decode_snapshot, encode_snapshot
from tests.state.streams import stage_one

BASE = 1_700_000_000.0
PARTS = 4
STEPS = 600
TOPICS = ("predictions", "labels")


def _config() -> MonitorConfig:
    return config_from_mapping(
        {
            "time": {"pane": "10s", "allowed_lateness": "30s"},
            "models": [
                {
                    "name": "m",
                    "task": "binary",
                    "positive_class": 1,
                    "windows": ["all", "1m", "ewm2m"],
                    "segments": ["region"],
                    "label_ttl": "40s",
                    "detectors": [],
                }
            ],
        }
    )


def _stream(seed: int = 3) -> list[tuple[float, Message]]:
    """(arrival time, message), in arrival order; labels 1-60 s after their prediction
    (some past the TTL: expired), regions first seen in a different order per partition."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, str, int, bytes, bytes]] = []
    for i in range(STEPS):
        ts = BASE + i * 0.5
        part = i % PARTS
        pid = f"p{i}"
        y = int(rng.integers(0, 2))
        score = float(rng.beta(5, 2) if y else rng.beta(2, 5))
        region = ["north", "south", "east", "west"][(part + i // 40) % 4]
        body = {"prediction_id": pid, "model": "m", "ts": ts, "prediction": int(score >= 0.5),
                "score": round(score, 4), "segment": {"region": region}}  # fmt: skip
        out.append((ts, "predictions", part, pid.encode(), json.dumps(body).encode()))
        if rng.random() < 0.9:
            delay = float(rng.uniform(1.0, 60.0))
            label = {"prediction_id": pid, "label": y, "ts": ts + delay}
            out.append((ts + delay, "labels", part, pid.encode(), json.dumps(label).encode()))
    out.sort(key=lambda r: r[0])
    offsets: dict[tuple[str, int], int] = {}
    msgs = []
    for at, topic, part, key, value in out:
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        msgs.append((at, Message(topic, part, off, key, value)))
    return msgs


def _feed(engine: Engine, msgs: list[Message], batch: int = 25) -> None:
    for i in range(0, len(msgs), batch):
        engine.process(msgs[i : i + batch])


def _tps(parts: range | list[int]) -> set[tuple[str, int]]:
    return {(t, p) for t in TOPICS for p in parts}


@pytest.mark.parametrize(
    ("cut_a", "cut_b"),
    [
        (215.0, 200.0),  # the receiving engine's pane clock is ahead
        (200.0, 215.0),  # the snapshot's is ahead
        (150.0, 150.0),
        (20.0, 200.0),  # the receiver has closed no pane yet (a replica just started)
    ],
)
def test_partition_handover_equals_single_engine(cut_a: float, cut_b: float) -> None:
    config = _config()
    stream = _stream()
    single = Engine(config)
    single.track(_tps(range(PARTS)))
    _feed(single, [m for _, m in stream])

    a, b = Engine(config), Engine(config)
    a.track(_tps([0, 1]))
    b.track(_tps([2, 3]))
    mine, theirs = {0, 1}, {2, 3}
    _feed(a, [m for t, m in stream if m.partition in mine and t < BASE + cut_a])
    _feed(b, [m for t, m in stream if m.partition in theirs and t < BASE + cut_b])
    assert b.closed_upto is not None and (a.closed_upto is None) == (cut_a < 30)
    assert a.models[0].registry.keys != b.models[0].registry.keys  # numbered differently
    for number in sorted(theirs):
        snap = decode_snapshot(encode_snapshot(b.export_partition(number)), a)  # as a store
        assert b.drop_partition(number) is not None
        a.install_partition(snap)
    assert not b.partitions and b.pending_total == [0] and b.early_total == 0
    a.track(_tps(range(PARTS)))
    offsets = a.offsets()
    rest = [
        m
        for t, m in stream
        if (m.partition in mine and t >= BASE + cut_a)
        or (m.partition in theirs and m.offset >= offsets[(m.topic, m.partition)])
    ]
    _feed(a, rest)
    assert a.pending_total == [sum(len(s.join.pending[0]) for s in a.partitions.values())]
    assert a.pending_total == single.pending_total and a.early_total == single.early_total
    result, expected = stage_one(a), stage_one(single)
    assert sum(s.counts[0][EXPIRED] for s in single.partitions.values()) > 0
    assert result == expected


def test_drop_partition_releases_the_watermark() -> None:
    engine = Engine(_config())
    engine.track(_tps(range(PARTS)))
    _feed(engine, [m for _, m in _stream() if m.partition != 3][:400])
    held = engine.closed_upto  # partition 3 never spoke: nothing closed
    assert held is None
    engine.drop_partition(3)
    engine.track(_tps([0, 1, 2]))
    engine.process([])
    assert engine.closed_upto is not None


def test_window_sets_pickle_sparse_and_round_trip_exactly() -> None:
    core = Pipeline(_config())
    core.track(_tps(range(PARTS)))
    _feed(core, [m for _, m in _stream()])  # type: ignore[arg-type]
    w = core.stages["m"].windows
    assert w.ring and w.open  # panes in the sliding ring and still open
    back = pickle.loads(pickle.dumps(w))
    for name in ("open", "ring"):
        mine, theirs = getattr(w, name), getattr(back, name)
        assert mine.keys() == theirs.keys()
        for p in mine:
            assert np.array_equal(ring_array(mine[p], w.rows, w.width),
                                  ring_array(theirs[p], w.rows, w.width))  # fmt: skip
    # as a checkpoint written before sparse pickling (and before the ring kept cells)
    legacy = dict(w.__dict__)
    legacy["ring"] = {p: ring_array(a, w.rows, w.width) for p, a in w.ring.items()}
    dense = pickle.dumps(legacy)
    size = len(pickle.dumps(w))
    assert size < len(dense)
    old = object.__new__(type(w))
    old.__setstate__(pickle.loads(dense))
    assert all(np.array_equal(ring_array(old.ring[p], w.rows, w.width),
                              ring_array(w.ring[p], w.rows, w.width)) for p in w.ring)  # fmt: skip
