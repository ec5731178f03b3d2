"""The event-time clock cannot be moved by one event: a time far ahead of its Kafka
record's timestamp is rejected as ``future`` and never counts as a partition's progress,
on one partition and on two with the other idle (where the watermark is the largest
partition's time)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitor.config import config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from tests.daemon import assert_same

T0 = 1_700_000_000.0
TOPICS = ("predictions", "labels")


def engine(**time: Any) -> Pipeline:
    model = {"name": "m", "task": "binary", "positive_class": 1, "label_ttl": "10m",
             "windows": ["all", "5m", "ewm2m"], "detectors": ["adwin", "cusum"]}
    return Pipeline(config_from_mapping({"time": {"pane": "10s", "allowed_lateness": "0s", **time},
                                       "models": [model]}))


def steady(n: int, part: int = 0) -> list[Message]:
    """A prediction a second, its label 20 s later; records stamped when produced."""
    out: list[Message] = []
    for i in range(n):
        t = T0 + i
        pid = f"{part}-{i}"
        pred = {"prediction_id": pid, "model": "m", "ts": t, "prediction": i % 2,
                "score": (i % 7) / 7}
        out.append(Message("predictions", part, 2 * i, None, json.dumps(pred).encode(),
                           timestamp_ms=int((t + 0.5) * 1000)))
        label = {"prediction_id": pid, "ts": t + 20, "label": (i // 3) % 2}
        out.append(Message("labels", part, 2 * i + 1, None, json.dumps(label).encode(),
                           timestamp_ms=int((t + 20.5) * 1000)))
    out.sort(key=lambda m: m.timestamp_ms)
    return out


def outlier(at: Message, ts: float) -> Message:
    """A valid-looking prediction from a producer whose clock says ``ts``, read just after
    ``at`` (its record stamped by the broker's clock)."""
    body = {"prediction_id": "from-2099", "model": "m", "ts": ts, "prediction": 1, "score": 0.9}
    return Message("predictions", at.partition, at.offset, None, json.dumps(body).encode(),
                   timestamp_ms=at.timestamp_ms)


def run(messages: list[Message], *, idle_other: bool, batch: int = 50) -> dict[str, Any]:
    e = engine()
    parts = (0, 1) if idle_other else (0,)
    e.track([(t, p) for t in TOPICS for p in parts])
    if idle_other:
        e.set_idle([(t, 1) for t in TOPICS])  # silent past idle_timeout: stops holding it
    rejects: list[str] = []
    for i in range(0, len(messages), batch):
        rejects += [r.reason for r in e.process(messages[i:i + batch])]
        assert e.watermark < T0 + 10_000  # never moved by the outlier
    out = e.summary()
    out["rejects_seen"] = rejects
    return out


@pytest.mark.parametrize("idle_other", [False, True], ids=["1-partition", "2-partitions-idle"])
@pytest.mark.parametrize("when", [4_070_000_000.0, T0 + 2 * 3600])  # in 2098; two hours ahead
def test_one_future_event_changes_no_window(idle_other: bool, when: float) -> None:
    clean = steady(600)
    dirty = list(clean)
    dirty.insert(300, outlier(clean[299], when))
    want = run(clean, idle_other=idle_other)
    got = run(dirty, idle_other=idle_other)
    assert got["rejects_seen"] == ["future"] and want["rejects_seen"] == []
    assert got["rejects"] == {"future": 1}
    assert got["models"]["m"]["counts"]["late"] == 0
    assert got["models"]["m"]["counts"]["expired"] == want["models"]["m"]["counts"]["expired"]
    assert_same(got["models"], want["models"])


def test_a_time_within_max_future_is_accepted() -> None:
    """A producer clock 30 min ahead is within the default hour: accepted (a time zone
    mistake is caught, ordinary skew is not)."""
    messages = steady(10)
    messages.append(outlier(messages[-1], T0 + 9 + 1800))
    e = engine()
    assert e.process(messages) == []
    e2 = engine(max_future="10m")
    assert [r.reason for r in e2.process(messages)] == ["future"]


def test_without_record_timestamps_the_wall_clock_is_the_reference() -> None:
    """Records without a timestamp (a capture of plain events): the wall clock decides."""
    past = Message("predictions", 0, 0, None, json.dumps(
        {"prediction_id": "a", "model": "m", "ts": T0, "prediction": 1}).encode())
    ahead = Message("predictions", 0, 1, None, json.dumps(
        {"prediction_id": "b", "model": "m", "ts": 4_000_000_000.0, "prediction": 1}).encode())
    e = engine()
    rejects = e.process([past, ahead])
    assert [(r.reason, r.message.offset) for r in rejects] == [("future", 1)]
    assert "ahead of its record's timestamp" in rejects[0].detail
