"""Fuzzing the length limits: event JSON with ids, class values, segments, features and
times of every kind (Unicode of all planes, lengths at and around each limit).

- the decoders return an event whose every limited string is within its limit, or raise
  :class:`DecodeFailure` with a known reason and a detail, nothing else;
- a poll of them decided whole and one message at a time gives the same decisions
  (rejects in order with their reasons, counts, metrics);
- what the join state keeps stays within the bound ``docs/operations.md`` states: every
  kept string within its limit, a pending entry at most ``4 * max_id_length +
  PendingTable.ROW_BYTES + 4 * k`` bytes, the pending bytes within ``max_pending_bytes``.

The suite runs a small budget; ``MONITOR_FUZZ_EXAMPLES=N`` a long one.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import monitor.core.fastpath as fastpath
import tests.core.test_fastpath as harness
from monitor.config import config_from_mapping
from monitor.core.join import PendingTable
from monitor.core.pipeline import Pipeline
from monitor.events.codec import REASONS, DecodeFailure, Limits, decode_label, decode_prediction
from monitor.events.message import Message
from tests.fuzz.budget import examples

ID, VALUE, SEGMENT, CATEGORY = 12, 6, 9, 7
PENDING_BYTES = 2_000
CONFIG = config_from_mapping({
    "limits": {"max_id_length": ID, "max_value_length": VALUE, "max_segment_length": SEGMENT,
               "max_category_length": CATEGORY},
    "time": {"pane": "10s", "allowed_lateness": "0s"},
    "models": [
        {"name": "b", "task": "binary", "positive_class": "yes", "windows": ["all"],
         "features": {"x": "numeric", "c": "categorical"}, "segments": ["region"],
         "max_pending": 40, "max_pending_bytes": PENDING_BYTES, "max_early_labels": 30},
        {"name": "k", "task": "multiclass", "classes": ["a", "bb", "ccc"], "windows": ["all"]},
    ],
})  # fmt: skip
LIMITS = Limits.of(CONFIG)
FUZZ = settings(max_examples=examples(60), deadline=None, suppress_health_check=list(HealthCheck))

chars = st.characters(codec="utf-8")  # every plane, no lone surrogates (not UTF-8)


def near(limit: int) -> st.SearchStrategy[str]:
    """Strings of a length at, just under or just over ``limit``, or short ones."""
    sizes = st.sampled_from([0, 1, limit - 1, limit, limit + 1, limit + 2, 2 * limit])
    return sizes.flatmap(lambda n: st.text(chars, min_size=max(n, 0), max_size=max(n, 0)))


ids = near(ID) | st.sampled_from(["p1", "p2", "p3", "p4"])  # repeats: joins, duplicates
values = near(VALUE) | st.sampled_from(["yes", "no", "a", "bb", "ccc"]) | st.integers(0, 2)
times = (st.floats(1.6e9, 1.8e9) | st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01", 12.0])
         | st.integers(1_700_000_000, 1_700_000_100))  # fmt: skip


@st.composite
def prediction(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prediction_id": draw(ids),
        "model": draw(st.sampled_from(["b", "b", "k", "zz"])),
        "ts": draw(times),
        "prediction": draw(values),
    }
    if draw(st.booleans()):
        body["segment"] = draw(st.dictionaries(st.sampled_from(["region", "other"]),
                                               near(SEGMENT), max_size=2))  # fmt: skip
    if draw(st.booleans()):
        body["model_version"] = draw(near(SEGMENT))
    if draw(st.booleans()):
        body["features"] = draw(st.dictionaries(
            st.sampled_from(["x", "c", "free"]),
            near(CATEGORY) | st.floats(allow_nan=False) | st.none() | st.booleans(),
            max_size=3,
        ))  # fmt: skip
    if draw(st.integers(0, 4)) == 0:
        body["label"] = draw(values)
    return body


@st.composite
def label(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"prediction_id": draw(ids), "ts": draw(times), "label": draw(values)}
    if draw(st.booleans()):
        body["model"] = draw(st.sampled_from(["b", "k", "zz"]))
    return body


messages = st.lists(
    st.one_of(
        st.tuples(st.just("predictions"), prediction().map(json.dumps)),
        st.tuples(st.just("labels"), label().map(json.dumps)),
    ),
    max_size=60,
)


def _within(event: Any) -> None:
    """Every limited string of a decoded event is within its limit."""
    assert len(event.prediction_id) <= ID
    for value in (getattr(event, "prediction", None), event.label):
        if isinstance(value, str):
            assert len(value) <= VALUE
    if hasattr(event, "segment"):
        assert len(event.model_version) <= SEGMENT
        assert all(len(v) <= SEGMENT for v in (event.segment or {}).values())
        for name, value in (event.features or {}).items():
            if name in LIMITS.features and isinstance(value, str):
                assert len(value) <= CATEGORY


@FUZZ
@given(prediction() | label())
def test_decoders_return_an_event_within_the_limits_or_a_reason(body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    for decode in (decode_prediction, decode_label):
        try:
            event = decode(data, 1 << 20, LIMITS)
        except DecodeFailure as exc:
            assert exc.reason in REASONS and exc.detail
            continue
        _within(event)


def _run(items: list[tuple[str, str]], whole: bool) -> tuple[Pipeline, list[Any], Any]:
    engine = Pipeline(CONFIG)
    offsets: dict[tuple[str, int], int] = {}
    batch = []
    for n, (topic, text) in enumerate(items):
        part = n % 2
        offset = offsets.get((topic, part), 0)
        offsets[(topic, part)] = offset + 1
        batch.append(Message(topic, part, offset, b"", text.encode()))
    original = fastpath.MAX_SEGMENT
    if not whole:
        fastpath.MAX_SEGMENT = 1
    try:
        half = len(batch) // 2
        rejects = engine.process(batch[:half]) + engine.process(batch[half:])
    finally:
        fastpath.MAX_SEGMENT = original
    out = [(r.reason, r.message.topic, r.message.partition, r.message.offset) for r in rejects]
    return engine, out, engine.summary()


@FUZZ
@given(messages)
def test_whole_and_one_at_a_time_agree_and_the_join_state_stays_within_the_bound(
    items: list[tuple[str, str]],
) -> None:
    fast, fast_rejects, fast_summary = _run(items, True)
    _, slow_rejects, slow_summary = _run(items, False)
    assert fast_rejects == slow_rejects
    harness.same(fast_summary, slow_summary, "summary")
    assert {r[0] for r in fast_rejects} <= set(REASONS)
    held = 0
    for state in fast.partitions.values():
        join = state.join
        for m, table in enumerate(join.pending):
            k = 2 + len(CONFIG.models[m].segments)
            for pid in table:
                assert len(pid) <= ID
            assert table.nbytes <= len(table) * (4 * ID + PendingTable.ROW_BYTES + 4 * k)
            if m == 0:
                held += table.nbytes
        for pid, early in join.early.items():
            assert len(pid) <= ID
            assert not isinstance(early.label, str) or len(early.label) <= VALUE
        assert all(len(pid) <= ID for matched in join.matched for pid in matched)
    assert held <= PENDING_BYTES
    for model in fast.models:
        assert all(len(value) <= SEGMENT for _, value in model.registry.keys)
