"""Fuzzing the decoder: arbitrary bytes and structured-but-wrong JSON never escape as an
exception; every bad message is a reject with one of the known reasons.

The suite runs a small budget; ``bench/fuzz.py`` (or ``MONITOR_FUZZ_EXAMPLES=N``) a long one.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.events.codec import (
    REASONS,
    DecodeFailure,
    ModelCodec,
    decode_label,
    decode_prediction,
)
from monitor.events.message import Message
from tests.fuzz.budget import examples

MAX_BYTES = 4096
FUZZ = settings(
    max_examples=examples(100), deadline=None, suppress_health_check=list(HealthCheck)
)

CONFIG = config_from_mapping({
    "kafka": {"max_message_bytes": MAX_BYTES},
    "time": {"pane": "10s", "allowed_lateness": "0s"},
    "models": [
        {"name": "b", "task": "binary", "positive_class": "yes", "windows": ["all", "1m"],
         "features": {"x": "numeric", "c": "categorical"}, "segments": ["region"],
         "max_versions": 2, "max_segment_values": 2, "max_pending": 50, "max_early_labels": 50},
        {"name": "m", "task": "multiclass", "classes": ["a", "b", 3], "windows": ["ewm1m"]},
        {"name": "r", "task": "regression", "windows": ["all"]},
    ],
})  # fmt: skip

# JSON values of every type, including the awkward ones: huge and tiny numbers, NaN-free
# floats at the edges, deep nesting, long and non-ASCII strings.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["b", "m", "r", "yes", "a", "3", "2024-05-01T12:00:00Z", "2024-05-01"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
FIELDS = ["prediction_id", "model", "ts", "prediction", "score", "label", "model_version",
          "segment", "features", "probabilities"]
good_ts = st.floats(min_value=1.6e9, max_value=1.8e9) | st.integers(1_600_000_000, 1_800_000_000)


@st.composite
def event_like(draw: st.DrawFn) -> Any:
    """An object with (mostly) the right field names and values of any type: the shape
    a buggy producer sends."""
    body: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS))):
        if name == "ts":
            body[name] = draw(good_ts | json_values)
        elif name == "model":
            body[name] = draw(st.sampled_from(["b", "m", "r", "zz"]) | json_values)
        elif name == "prediction_id":
            body[name] = draw(st.text(max_size=6) | json_values)
        else:
            body[name] = draw(json_values)
    body.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)))
    return body


def encoded(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


payloads = (
    st.binary(max_size=200)
    | json_values.map(encoded)
    | event_like().map(encoded)
    | st.builds(lambda v, n: b"[" * n + encoded(v) + b"]" * n, json_values, st.integers(0, 3000))
    | st.just(b"x" * (MAX_BYTES + 1))
    | st.none()
)


@FUZZ
@given(payloads)
def test_decoders_return_an_event_or_raise_a_known_reason(data: bytes | None) -> None:
    codecs = [ModelCodec(m) for m in CONFIG.models]
    for decode in (decode_prediction, decode_label):
        try:
            event = decode(data, MAX_BYTES)
        except DecodeFailure as exc:
            assert exc.reason in REASONS, exc.reason
            continue
        for codec in codecs:  # the value checks that need the model never raise otherwise
            for value in (getattr(event, "prediction", None), event.label):
                if value is None:
                    continue
                try:
                    codec.code(value, "label")
                except DecodeFailure as exc:
                    assert exc.reason in REASONS, exc.reason


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["predictions", "labels", "other"]),
                          st.integers(0, 2), payloads), max_size=40))
def test_engine_rejects_with_known_reasons_and_never_raises(
    items: list[tuple[str, int, bytes | None]],
) -> None:
    engine = Pipeline(CONFIG)
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for topic, part, value in items:
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        messages.append(Message(topic, part, offset, b"k", value))
    rejects = engine.process(messages)
    assert {r.reason for r in rejects} <= set(REASONS)
    assert all(r.message.topic != "other" or r.reason == "unknown_topic" for r in rejects)
    # every message is consumed (its offset advances), good or bad
    assert engine.offsets() == offsets
    # and the state stays reportable
    engine.report()
    engine.summary()
