"""Length limits on an event's strings (``[limits]``) and the pending store's byte budget.

Each limit is checked at its edge (a string of exactly the limit is an event, one
character more a ``too_long`` reject), in characters, also for 4-byte UTF-8 characters;
a poll decided whole must take the same decisions as the same poll decided one message at
a time on a stream full of strings at and past each limit (the differential harness of
``tests/core/test_fastpath``), and the byte budget must hold, with every eviction
counted, both ways alike.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

import tests.core.test_fastpath as harness
from monitor.config import ConfigError, config_from_mapping, load_config
from monitor.core.join import PendingTable
from monitor.core.pipeline import Pipeline
from monitor.events.codec import REASONS, DecodeFailure, Limits, decode_label, decode_prediction
from monitor.events.message import Message

LIMITS = Limits(
    max_id_length=8,
    max_value_length=5,
    max_segment_length=6,
    max_category_length=7,
    features=frozenset({"c"}),
)
BIG = 1 << 20


def prediction(**fields: Any) -> bytes:
    body = {"prediction_id": "p1", "model": "m", "ts": 1.7e9, "prediction": 1, **fields}
    return json.dumps(body).encode()


def label(**fields: Any) -> bytes:
    return json.dumps({"prediction_id": "p1", "ts": 1.7e9, "label": 1, **fields}).encode()


def reason(call: Any) -> str | None:
    try:
        call()
    except DecodeFailure as exc:
        assert exc.detail
        return exc.reason
    return None


EDGES = [  # (field values at the limit, one character over)
    ({"prediction_id": "x" * 8}, {"prediction_id": "x" * 9}),
    ({"prediction_id": "\U0001f600" * 8}, {"prediction_id": "\U0001f600" * 9}),  # 4-byte chars
    ({"prediction": "y" * 5}, {"prediction": "y" * 6}),
    ({"label": "y" * 5}, {"label": "y" * 6}),
    ({"segment": {"region": "z" * 6}}, {"segment": {"region": "z" * 7}}),
    ({"segment": {"unnamed": "z" * 6}}, {"segment": {"unnamed": "z" * 7}}),
    ({"model_version": "v" * 6}, {"model_version": "v" * 7}),
    ({"features": {"c": "c" * 7}}, {"features": {"c": "c" * 8}}),
    ({"features": {"c": "c" * 7, "other": 1}}, {"features": {"c": "c" * 8, "other": 1}}),
]


@pytest.mark.parametrize(("inside", "over"), EDGES)
def test_a_prediction_at_each_limit_passes_one_character_more_is_too_long(
    inside: dict[str, Any], over: dict[str, Any]
) -> None:
    assert reason(lambda: decode_prediction(prediction(**inside), BIG, LIMITS)) is None
    assert reason(lambda: decode_prediction(prediction(**over), BIG, LIMITS)) == "too_long"
    # without limits (only the message size bounds a string), both are events
    assert reason(lambda: decode_prediction(prediction(**over), BIG)) is None


@pytest.mark.parametrize(("inside", "over"), [
    ({"prediction_id": "x" * 8}, {"prediction_id": "x" * 9}),
    ({"label": "é" * 5}, {"label": "é" * 6}),
])  # fmt: skip
def test_a_label_at_each_limit_passes_one_character_more_is_too_long(
    inside: dict[str, Any], over: dict[str, Any]
) -> None:
    assert reason(lambda: decode_label(label(**inside), BIG, LIMITS)) is None
    assert reason(lambda: decode_label(label(**over), BIG, LIMITS)) == "too_long"


def test_unwatched_features_and_non_string_values_are_not_limited() -> None:
    long = "t" * 1000
    assert reason(lambda: decode_prediction(
        prediction(features={"text": long, "c": None}, prediction=10**30), BIG, LIMITS
    )) is None  # fmt: skip
    assert "too_long" in REASONS


def test_limits_come_from_the_config_with_documented_defaults(tmp_path: Any) -> None:
    models = [{"name": "m", "task": "binary", "positive_class": 1,
               "features": {"c": "categorical", "x": "numeric"}}]  # fmt: skip
    default = Limits.of(config_from_mapping({"models": models}))
    assert default == Limits(256, 256, 256, 256, frozenset({"c", "x"}))
    path = tmp_path / "monitor.toml"
    path.write_text(
        "[limits]\nmax_id_length = 40\nmax_value_length = 3\n"
        "max_segment_length = 20\nmax_category_length = 10\n"
        '[[models]]\nname = "m"\ntask = "binary"\npositive_class = 1\n'
        "max_pending_bytes = 1000\n"
    )
    config = load_config(path)
    assert Limits.of(config) == Limits(40, 3, 20, 10, frozenset())
    assert config.models[0].max_pending_bytes == 1000
    with pytest.raises(ConfigError, match="max_id_length"):
        config_from_mapping({"limits": {"max_id_length": 0}, "models": models})


def test_the_engine_rejects_too_long_events_and_keeps_nothing_of_them() -> None:
    config = config_from_mapping({
        "limits": {"max_id_length": 16},
        "models": [{"name": "m", "task": "binary", "positive_class": 1}],
    })  # fmt: skip
    engine = Pipeline(config)
    messages = [
        Message("predictions", 0, i, b"", prediction(prediction_id=f"{'i' * 16}{i}"))
        for i in range(10)
    ] + [Message("predictions", 0, 10, b"", prediction(prediction_id="short"))]
    rejects = engine.process(messages)
    assert [r.reason for r in rejects] == ["too_long"] * 10
    assert [r.message.offset for r in rejects] == list(range(10))
    assert engine.engine.pending_total == [1]
    assert engine.summary()["rejects"] == {"too_long": 10}


def _lengthened(messages: list[Message], seed: int) -> list[Message]:
    """``messages`` with some strings set to the default limit (256) or one past it."""
    rng = random.Random(seed)
    out = []
    for msg in messages:
        if msg.value is None or rng.random() > 0.15:
            out.append(msg)
            continue
        try:
            body = json.loads(msg.value)
        except ValueError:
            out.append(msg)
            continue
        if not isinstance(body, dict):
            out.append(msg)
            continue
        size = 256 + rng.choice([0, 1])
        where = rng.choice(["id", "value", "segment", "version", "category", "unwatched"])
        if where == "id" and isinstance(body.get("prediction_id"), str):
            pid = body["prediction_id"]
            body["prediction_id"] = pid + "#" * (size - len(pid))
        elif where == "value":
            key = "label" if "label" in body else "prediction"
            body[key] = "q" * size
        elif where == "segment" and isinstance(body.get("segment"), dict):
            body["segment"]["region"] = "r" * size
        elif where == "version" and "model" in body and "label" not in body:
            body["model_version"] = "v" * size
        elif where in ("category", "unwatched") and isinstance(body.get("features"), dict):
            body["features"]["c" if where == "category" else "notes"] = "é" * size
        value = json.dumps(body).encode()
        out.append(Message(msg.topic, msg.partition, msg.offset, msg.key, value))
    return out


@pytest.mark.parametrize(("seed", "sizes"), [(11, [500]), (12, [3, 250])])
def test_whole_polls_and_one_message_at_a_time_take_the_same_length_decisions(
    seed: int, sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = _lengthened(harness.stream(seed, 4000, 0.05), seed)
    fast_engine, fast = harness.run(messages, sizes, False, monkeypatch, 1_000_000)
    slow_engine, slow = harness.run(messages, sizes, True, monkeypatch, 1_000_000)
    harness.same(fast[0], slow[0], "rejects")
    harness.same(fast[1], slow[1], "summary")
    assert fast[1]["rejects"]["too_long"] > 50
    # strings at the limit went through, also on the batch path
    kept = [pid for pid in fast_engine.partitions[0].join.pending[0] if len(pid) == 256]
    kept += [pid for p in fast_engine.partitions.values() for pid in p.join.matched[0]
             if len(pid) == 256]  # fmt: skip
    assert kept
    assert fast[2].segments <= fast[2].polls + 0.01 * fast[2].messages  # a few cuts at most
    del slow_engine


def test_the_pending_byte_budget_evicts_oldest_first_counted_both_ways(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budget = 6_000
    original = harness.config

    def small(max_pending: int) -> Any:
        config = original(max_pending)
        raw = config.model_dump()
        raw["models"][0]["max_pending_bytes"] = budget
        return config_from_mapping(raw)

    monkeypatch.setattr(harness, "config", small)
    messages = _lengthened(harness.stream(13, 5000, 0.05), 13)
    fast_engine, fast = harness.run(messages, [400, 50], False, monkeypatch, 1_000_000)
    slow_engine, slow = harness.run(messages, [400, 50], True, monkeypatch, 1_000_000)
    harness.same(fast[0], slow[0], "rejects")
    harness.same(fast[1], slow[1], "summary")
    counts = fast[1]["models"]["b"]["counts"]
    assert counts["evicted"] > 0
    for engine in (fast_engine, slow_engine):
        held = sum(p.join.pending[0].nbytes for p in engine.partitions.values())
        assert 0 < held <= budget
        # the budget is what an independent count of the pending rows' bytes says
        k = 2 + 1  # model, version, region
        expect = sum(
            len(pid.encode("utf-8", "surrogatepass")) + PendingTable.ROW_BYTES + 4 * k
            for p in engine.partitions.values()
            for pid in p.join.pending[0]
        )
        assert held == expect
        assert engine.engine.pending_total[0] == sum(len(p.join.pending[0]) for p in
                                              engine.partitions.values())


def test_a_restored_checkpoint_takes_the_running_configs_limits(tmp_path: Any) -> None:
    from monitor.state.checkpoint import CheckpointStore

    def config(max_id: int) -> Any:
        return config_from_mapping({
            "limits": {"max_id_length": max_id},
            "models": [{"name": "m", "task": "binary", "positive_class": 1}],
        })  # fmt: skip

    engine = Pipeline(config(16))
    first = Message("predictions", 0, 0, b"", prediction(prediction_id="a" * 12))
    assert engine.process([first]) == []
    store = CheckpointStore(tmp_path)
    store.save(engine)
    assert b"_limits" not in (tmp_path / "checkpoint.bin").read_bytes()  # derived, not state
    restored = CheckpointStore(tmp_path).load(config(8))
    assert restored is not None and restored.limits.max_id_length == 8
    second = Message("predictions", 0, 1, b"", prediction(prediction_id="b" * 12))
    rejects = restored.process([second])
    assert [r.reason for r in rejects] == ["too_long"]
    assert restored.pending_total == [1]
