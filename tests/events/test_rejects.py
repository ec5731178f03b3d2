"""Whatever arrives, the engine never raises; every bad message is a reject with a reason;
and bad messages, interleaved into a valid stream, change nothing but the reject counts."""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from monitor.config import config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.events.codec import REASONS
from monitor.events.message import Message

T0 = 1_700_000_000.0
CONFIG = {
    "time": {"pane": "1m", "allowed_lateness": "0s"},
    "models": [
        {"name": "b", "task": "binary", "positive_class": 1, "classes": [0, 1],
         "windows": ["all", "1h", "ewm30m"], "segments": ["country"], "score_bins": 20,
         "label_ttl": "30d"},
        {"name": "mc", "task": "multiclass", "classes": ["x", "y", "z"],
         "windows": ["all", "1h", "ewm30m"], "label_ttl": "30d"},
        {"name": "r", "task": "regression", "windows": ["all", "1h", "ewm30m"],
         "label_ttl": "30d"},
    ],
}


def make_engine(**kafka: Any) -> Pipeline:
    raw = copy.deepcopy(CONFIG)
    if kafka:
        raw["kafka"] = kafka
    return Pipeline(config_from_mapping(raw))


def valid_prediction(pid: str = "p", model: str = "b", **extra: Any) -> dict[str, Any]:
    value = {"b": 1, "mc": "x", "r": 2.5}[model]
    return {"prediction_id": pid, "model": model, "ts": T0, "prediction": value, **extra}


def enc(body: Any) -> bytes:
    return json.dumps(body).encode()


def pred_bytes(**fields: Any) -> bytes:
    """A valid prediction of model b with ``fields`` replaced (a value of ... drops it)."""
    body = valid_prediction()
    for key, value in fields.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return enc(body)


def label_bytes(**fields: Any) -> bytes:
    body: dict[str, Any] = {"prediction_id": "p", "label": 1, "ts": T0}
    for key, value in fields.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return enc(body)


def raw_pred(fragment: str) -> bytes:
    """A prediction with a raw JSON fragment spliced in (for literals json cannot write)."""
    return ('{"prediction_id": "p", "model": "b", "prediction": 1, ' + fragment + "}").encode()


DEEP = 10_000
# (topic, value, reason)
CASES: list[tuple[str, bytes | None, str]] = [
    # not JSON
    ("predictions", b"", "not_json"),
    ("predictions", b"{", "not_json"),
    ("predictions", enc(valid_prediction())[:-7], "not_json"),
    ("labels", label_bytes()[:10], "not_json"),
    ("predictions", b"\xff\xfe\xfd garbage", "not_json"),
    ("labels", b"\x00\x01\x02", "not_json"),
    ("predictions", b"\xef\xbb\xbf" + enc(valid_prediction()), "not_json"),  # BOM
    ("predictions", None, "not_json"),  # tombstone
    ("labels", None, "not_json"),
    ("predictions", b"{'prediction_id': 'p'}", "not_json"),
    # JSON, not an object
    ("predictions", b"[1, 2, 3]", "not_object"),
    ("predictions", b"42", "not_object"),
    ("predictions", b'"a string"', "not_object"),
    ("predictions", b"null", "not_object"),
    ("predictions", b"true", "not_object"),
    ("labels", b"[]", "not_object"),
    ("labels", b"3.5", "not_object"),
    ("labels", b"null", "not_object"),
    # missing fields
    ("predictions", b"{}", "missing_field"),
    ("predictions", pred_bytes(prediction_id=...), "missing_field"),
    ("predictions", pred_bytes(model=...), "missing_field"),
    ("predictions", pred_bytes(ts=...), "missing_field"),
    ("predictions", pred_bytes(prediction=...), "missing_field"),
    ("labels", label_bytes(prediction_id=...), "missing_field"),
    ("labels", label_bytes(label=...), "missing_field"),
    ("labels", label_bytes(ts=...), "missing_field"),
    # mistyped fields
    ("predictions", pred_bytes(prediction_id=5), "bad_type"),
    ("predictions", pred_bytes(prediction_id=None), "bad_type"),
    ("predictions", pred_bytes(model=["b"]), "bad_type"),
    ("predictions", pred_bytes(ts=True), "bad_type"),
    ("predictions", pred_bytes(ts={"s": 1}), "bad_type"),
    ("predictions", pred_bytes(ts=None), "bad_type"),
    ("predictions", pred_bytes(prediction={"a": 1}), "bad_type"),
    ("predictions", pred_bytes(prediction=[1]), "bad_type"),
    ("predictions", pred_bytes(prediction=None), "bad_type"),
    ("predictions", pred_bytes(score="0.5"), "bad_type"),
    ("predictions", pred_bytes(model_version=3), "bad_type"),
    ("predictions", pred_bytes(segment={"country": 5}), "bad_type"),
    ("predictions", pred_bytes(segment=["US"]), "bad_type"),
    ("predictions", pred_bytes(features=[1, 2]), "bad_type"),
    ("predictions", pred_bytes(features={"a": {"b": 1}}), "bad_type"),
    ("predictions", pred_bytes(probabilities={"x": "high"}), "bad_type"),
    ("predictions", enc(valid_prediction(model="r", prediction="tall")), "bad_type"),
    ("predictions", enc(valid_prediction(model="r", prediction=True)), "bad_type"),
    ("labels", label_bytes(label=None), "bad_type"),
    ("labels", label_bytes(label=[1]), "bad_type"),
    ("labels", label_bytes(ts="x", prediction_id=7), "bad_type"),
    ("labels", label_bytes(model=1), "bad_type"),
    ("labels", label_bytes(model="r", label="tall"), "bad_type"),
    # values out of range
    ("predictions", pred_bytes(score=1.5), "bad_value"),
    ("predictions", pred_bytes(score=-0.01), "bad_value"),
    ("predictions", pred_bytes(probabilities={"x": 1.2}), "bad_value"),
    ("predictions", raw_pred('"ts": 1e400'), "bad_value"),
    ("predictions", raw_pred('"ts": -1e400'), "bad_value"),
    ("predictions", raw_pred('"ts": 1700000000, "score": 1e400'), "bad_value"),
    ("predictions", enc(valid_prediction(model="r")).replace(b"2.5", b"1e400"), "bad_value"),
    ("predictions", pred_bytes(ts=1.7e12), "bad_value"),  # milliseconds
    ("predictions", pred_bytes(ts=1.7e15), "bad_value"),  # microseconds
    ("predictions", pred_bytes(ts=0), "bad_value"),
    ("predictions", pred_bytes(ts=-5), "bad_value"),
    ("predictions", pred_bytes(ts=10**30), "bad_value"),
    ("predictions", pred_bytes(ts="2024-13-45T00:00:00Z"), "bad_value"),
    ("predictions", pred_bytes(ts="yesterday"), "bad_value"),
    ("predictions", pred_bytes(ts=""), "bad_value"),
    ("predictions", pred_bytes(ts="2024-05-01T12:00:00"), "bad_value"),  # no offset
    ("predictions", pred_bytes(ts="2024-05-01"), "bad_value"),
    ("predictions", pred_bytes(ts="1700000000"), "bad_value"),
    ("predictions", pred_bytes(ts="2250-01-01T00:00:00Z"), "bad_value"),
    ("labels", label_bytes(ts=1.7e12), "bad_value"),
    ("labels", label_bytes(ts="not a time"), "bad_value"),
    ("labels", label_bytes(ts="2024-05-01T12:00:00+25:00"), "bad_value"),
    # NaN and Infinity are not JSON numbers: a producer writing them sent a bad value
    ("predictions", raw_pred('"ts": 1700000000, "score": NaN'), "bad_value"),
    ("predictions", raw_pred('"ts": NaN'), "bad_value"),
    ("predictions", raw_pred('"ts": Infinity'), "bad_value"),
    ("predictions", raw_pred('"ts": -Infinity'), "bad_value"),
    ("labels", b'{"prediction_id": "p", "label": 1, "ts": NaN}', "bad_value"),
    # size and depth
    ("predictions", pred_bytes(features={"blob": "x" * (10 * 1024 * 1024)}), "too_large"),
    ("labels", b" " * (1024 * 1024 + 1), "too_large"),
    ("predictions", raw_pred('"ts": 1700000000, "extra": ' + "[" * DEEP + "]" * DEEP),
     "too_deep"),
    ("predictions", raw_pred('"ts": 1700000000, "extra": ' + '{"a": ' * DEEP + "1" + "}" * DEEP),
     "too_deep"),
    ("labels", b'{"prediction_id": "p", "label": 1, "ts": 1700000000, "x": '
     + b"[" * DEEP + b"]" * DEEP + b"}", "too_deep"),
    # names the config does not know
    ("predictions", pred_bytes(model="nope"), "unknown_model"),
    ("predictions", pred_bytes(model=""), "unknown_model"),
    ("labels", label_bytes(model="nope"), "unknown_model"),
    ("predictions", pred_bytes(prediction=2), "unknown_class"),
    ("predictions", pred_bytes(prediction="1.5"), "unknown_class"),
    ("predictions", pred_bytes(label=7), "unknown_class"),
    ("predictions", enc(valid_prediction(model="mc", prediction="w")), "unknown_class"),
    ("predictions", enc(valid_prediction(model="mc", label="W")), "unknown_class"),
    ("labels", label_bytes(model="mc", label="w"), "unknown_class"),
    ("labels", label_bytes(model="b", label="cat"), "unknown_class"),
]


def _case_id(case: tuple[str, bytes | None, str]) -> str:
    topic, value, reason = case
    shown = "None" if value is None else value[:40].decode("latin-1")
    return f"{reason}:{topic}:{shown}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_each_bad_message_is_a_reject_with_its_reason(
    case: tuple[str, bytes | None, str],
) -> None:
    topic, value, reason = case
    engine = make_engine()
    msg = Message(topic, 3, 41, b"key", value, headers=[("trace", b"t-1")])
    rejects = engine.process([msg])
    assert [r.reason for r in rejects] == [reason]
    reject = rejects[0]
    assert reject.reason in REASONS
    assert reject.message is msg
    headers = dict(reject.dead_letter_headers())
    assert headers["trace"] == b"t-1"
    assert headers["monitor.reason"] == reason.encode()
    assert headers["monitor.source.topic"] == topic.encode()
    assert headers["monitor.source.partition"] == b"3"
    assert headers["monitor.source.offset"] == b"41"
    assert len(headers["monitor.detail"]) <= 500
    summary = engine.summary()
    assert summary["rejects"] == {reason: 1}
    assert engine.offsets() == {(topic, 3): 42}  # a reject is consumed, not retried
    for model in summary["models"].values():
        assert model["counts"]["predictions"] == 0 and model["counts"]["labels"] == 0
        assert model["windows"]["all"]["prediction_count"] == 0.0
        assert model["slices"] == {}


UTF8_GARBAGE: list[tuple[str, bytes]] = [
    ("predictions", b'{"prediction_id": "a\xff", "model": "b", "ts": 1700000000, "prediction": 1}'),
    ("predictions", b'{"prediction_id": "a", "model": "b", "ts": 1.7e9, "prediction": "\xc3"}'),
    ("predictions", b'{"prediction_id": "a", "model": "b\xc3", "ts": 1700000000, "prediction": 1}'),
    ("predictions", b'{"prediction_id": "a", "model": "b", "ts": "2024\xff", "prediction": 1}'),
    ("labels", b'{"prediction_id": "a", "label": "\xe2\x82", "ts": 1700000000}'),
    ("labels", b'{"prediction_id": "\xed\xa0\x80", "label": 1, "ts": 1700000000}'),  # surrogate
    ("labels", b'{"prediction_id": "\xff", "label": 1, "ts": 1700000000}'),
]


@pytest.mark.parametrize(("topic", "value"), UTF8_GARBAGE)
def test_invalid_utf8_inside_strings_is_not_json(topic: str, value: bytes) -> None:
    """Text that is not UTF-8 is ``not_json`` (the contract: JSON, UTF-8), never an
    exception out of ``process``."""
    engine = make_engine()
    rejects = engine.process([Message(topic, 0, 0, None, value)])
    assert [r.reason for r in rejects] == ["not_json"]


def test_messages_up_to_max_message_bytes_pass_and_larger_ones_do_not() -> None:
    engine = make_engine(max_message_bytes=1000)
    body = valid_prediction(features={"pad": ""})
    size = len(enc(body))
    body["features"] = {"pad": "x" * (1000 - size)}
    ok = enc(body)
    assert len(ok) == 1000
    body["prediction_id"] = "q"
    body["features"] = {"pad": "x" * (1001 - size)}
    big = enc(body)
    rejects = engine.process([Message("predictions", 0, 0, None, ok),
                              Message("predictions", 0, 1, None, big)])
    assert [r.reason for r in rejects] == ["too_large"]
    assert engine.summary()["models"]["b"]["counts"]["predictions"] == 1


def test_context_dependent_rejects() -> None:
    """Duplicates, mismatched models and labels for unknown predictions."""
    engine = make_engine()
    m = [
        Message("predictions", 0, 0, None, enc(valid_prediction("a"))),
        Message("predictions", 0, 1, None, enc(valid_prediction("a", prediction=0))),
        Message("labels", 0, 0, None, label_bytes(prediction_id="a", model="mc")),
        Message("labels", 0, 1, None, label_bytes(prediction_id="a", label=0)),
        Message("labels", 0, 2, None, label_bytes(prediction_id="a")),
        Message("predictions", 0, 2, None, enc(valid_prediction("a", label=1))),
        # A label for a prediction never seen is no reject: it waits for its prediction.
        Message("labels", 0, 3, None, label_bytes(prediction_id="never", model="b")),
        Message("labels", 0, 4, None, label_bytes(prediction_id="never-unnamed")),
    ]
    reasons = [(r.reason, r.message.offset, r.message.topic) for r in engine.process(m)]
    assert reasons == [("duplicate", 1, "predictions"), ("model_mismatch", 0, "labels"),
                       ("duplicate", 2, "labels"), ("duplicate", 2, "predictions")]
    summary = engine.summary()
    assert summary["rejects"] == {"duplicate": 3, "model_mismatch": 1}
    c = summary["models"]["b"]["counts"]
    assert (c["predictions"], c["matched"], c["duplicate_predictions"]) == (1, 1, 2)
    assert (c["duplicate_labels"], c["early_labels_pending"], c["labels"]) == (1, 2, 2)
    assert summary["models"]["b"]["windows"]["all"]["accuracy"] == 0.0  # pred 1, label 0


def test_unknown_topic_is_rejected() -> None:
    engine = make_engine()
    rejects = engine.process([Message("elsewhere", 0, 0, None, enc(valid_prediction()))])
    assert len(rejects) == 1
    assert engine.summary()["models"]["b"]["counts"]["predictions"] == 0


# --------------------------------------------------------------------------- random bytes
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["predictions", "labels"]), st.binary(max_size=80)),
                min_size=1, max_size=8))
def test_random_bytes_never_raise_and_are_rejected(items: list[tuple[str, bytes]]) -> None:
    engine = make_engine()
    msgs = [Message(t, i % 3, i, None, v) for i, (t, v) in enumerate(items)]
    rejects = engine.process(msgs)
    assert len(rejects) == len(msgs)
    assert all(r.reason in REASONS for r in rejects)
    assert [r.message for r in rejects] == msgs
    summary = engine.summary()
    assert sum(summary["rejects"].values()) == len(msgs)
    for model in summary["models"].values():
        assert model["counts"]["predictions"] == 0


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=100, deadline=None)
@given(topic=st.sampled_from(["predictions", "labels"]),
       value=json_values.filter(lambda v: not isinstance(v, dict)))
def test_json_that_is_not_an_object_is_not_object(topic: str, value: Any) -> None:
    engine = make_engine()
    rejects = engine.process([Message(topic, 0, 0, None, enc(value))])
    assert [r.reason for r in rejects] == ["not_object"]


# --------------------------------------------------------------------------- garbage invariance
GARBAGE_FIXED = [(t, v, r) for t, v, r in CASES if r not in ("too_large", "too_deep")]
GARBAGE_FIXED += [next(c for c in CASES if c[2] == "too_large"),
                  next(c for c in CASES if c[2] == "too_deep")]
GARBAGE_FIXED += [(t, v, "not_json") for t, v in UTF8_GARBAGE]


def valid_stream(seed: int, n: int, parts: int) -> list[list[Message]]:
    """Poll batches of a valid stream: three models, early and late labels, in-order
    partitions."""
    rng = np.random.default_rng(seed)
    queues: list[list[tuple[float, bytes]]] = [[] for _ in range(2 * parts)]
    for i in range(n):
        model = ["b", "mc", "r"][int(rng.integers(0, 3))]
        ts = T0 + float(rng.uniform(0, 3 * 3600))
        part = int(rng.integers(0, parts))
        if model == "b":
            score = (math.floor(rng.uniform() * 20) + 0.5) / 20
            pred: Any = int(score > 0.5)
            label: Any = int(rng.integers(0, 2))
            extra: dict[str, Any] = {"score": score,
                                     "segment": {"country": ["US", "DE"][int(rng.integers(0, 2))]}}
        elif model == "mc":
            pred, label, extra = "xyz"[int(rng.integers(0, 3))], "xyz"[int(rng.integers(0, 3))], {}
        else:
            label = float(rng.normal(3, 1))
            pred, extra = label + float(rng.normal()), {}
        pid = f"{model}{i}"
        body = valid_prediction(pid, model, ts=ts, prediction=pred, **extra)
        queues[2 * part].append((ts, enc(body)))
        if rng.uniform() < 0.8:
            lts = ts + float(rng.uniform(0, 1800))
            lab = {"prediction_id": pid, "label": label, "ts": lts}
            if rng.uniform() < 0.5:
                lab["model"] = model
            queues[2 * part + 1].append((lts, enc(lab)))
    for q in queues:
        q.sort(key=lambda item: item[0])
    heads = [0] * len(queues)
    flat: list[Message] = []
    while any(heads[q] < len(queues[q]) for q in range(len(queues))):
        q = int(rng.choice([q for q in range(len(queues)) if heads[q] < len(queues[q])]))
        topic = ("predictions", "labels")[q % 2]
        flat.append(Message(topic, q // 2, heads[q], None, queues[q][heads[q]][1]))
        heads[q] += 1
    batches, k = [], 0
    while k < len(flat):
        size = int(rng.integers(1, 30))
        batches.append(flat[k:k + size])
        k += size
    return batches


def context_garbage(rng: np.random.Generator, batches: list[list[Message]], count: int
                    ) -> list[tuple[int, int, Message, set[str]]]:
    """Bad messages that are bad only given what came before: duplicates of earlier
    predictions and labels (same partition, later position), and labels naming their
    model with a class it does not have (a duplicate, instead, when a label for the
    same id is already there). Returns (batch, position, message, allowed reasons)."""
    flat = [(b, i, m) for b, batch in enumerate(batches) for i, m in enumerate(batch)]
    out = []
    for _ in range(count):
        if not flat:
            break
        b, i, m = flat[int(rng.integers(0, len(flat)))]
        body = json.loads(m.value or b"")
        later = [(b2, i2) for b2, i2, m2 in flat if (b2, i2) > (b, i)]
        if m.topic == "predictions":
            if not later:
                continue
            b2, i2 = later[int(rng.integers(0, len(later)))]
            body["prediction"] = {"b": 0, "mc": "z", "r": -1.0}[body["model"]]
            body["ts"] = body["ts"] + 7
            out.append((b2, i2 + 1, Message("predictions", m.partition, -1, None, enc(body)),
                        {"duplicate"}))
        elif rng.uniform() < 0.5 and later:
            b2, i2 = later[int(rng.integers(0, len(later)))]
            body["label"] = {"b": 0, "mc": "y", "r": 0.5}.get(body.get("model", "b"), 0)
            out.append((b2, i2 + 1, Message("labels", m.partition, -1, None, enc(body)),
                        {"duplicate"}))
        else:
            model = body["prediction_id"].rstrip("0123456789")
            body["model"] = model
            body["label"] = {"b": 5, "mc": "w", "r": "w"}[model]
            reasons = {"bad_type" if model == "r" else "unknown_class", "duplicate"}
            pos = int(rng.integers(0, len(batches)))
            out.append((pos, int(rng.integers(0, len(batches[pos]) + 1)),
                        Message("labels", int(rng.integers(0, 6)), -1, None, enc(body)), reasons))
    return out


def run_batches(batches: list[list[Message]], parts: int) -> tuple[dict[str, Any], list[Any]]:
    engine = make_engine()
    engine.track([(t, p) for t in ("predictions", "labels") for p in range(parts)])
    for p in range(parts):
        # Partition states in the same order in both runs, whichever partition a bad
        # message names first: sums over partitions then add in the same order, bit for bit.
        engine.engine.partition(p)
    rejects = []
    for batch in batches:
        rejects += engine.process(batch)
    return engine.summary(), rejects


@settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 120), parts=st.integers(1, 3),
       fixed=st.lists(st.tuples(st.sampled_from(GARBAGE_FIXED), st.integers(0, 10**6),
                                st.integers(0, 5)), max_size=12),
       noise=st.lists(st.tuples(st.sampled_from(["predictions", "labels"]),
                                st.binary(max_size=40), st.integers(0, 10**6),
                                st.integers(0, 5)), max_size=6),
       context=st.integers(0, 8))
def test_garbage_interleaved_into_a_valid_stream_changes_nothing_else(
    seed: int, n: int, parts: int, fixed: list[Any], noise: list[Any], context: int
) -> None:
    batches = valid_stream(seed, n, parts)
    clean, clean_rejects = run_batches(batches, parts)
    assert clean_rejects == [] and clean["rejects"] == {}

    if not batches:
        batches = [[]]
    dirty = [list(b) for b in batches]
    inserts: list[tuple[int, int, Message, set[str]]] = []
    for (topic, value, reason), where, part in fixed:
        b = where % len(dirty)
        inserts.append((b, where % (len(dirty[b]) + 1), Message(topic, part, -1, None, value),
                        {reason}))
    for topic, value, where, part in noise:
        b = where % len(dirty)
        inserts.append((b, where % (len(dirty[b]) + 1), Message(topic, part, -1, None, value),
                        set(REASONS)))
    inserts += context_garbage(np.random.default_rng(seed + 1), batches, context)
    # Insert from the back so that earlier positions stay valid.
    for b, i, msg, _ in sorted(inserts, key=lambda x: (x[0], x[1]), reverse=True):
        dirty[b].insert(i, msg)
    next_offset: Counter[tuple[str, int]] = Counter()
    for batch in dirty:
        for msg in batch:
            msg.offset = next_offset[(msg.topic, msg.partition)]
            next_offset[(msg.topic, msg.partition)] += 1

    garbage = {id(msg): reason for _, _, msg, reason in inserts}
    summary, rejects = run_batches(dirty, parts)
    assert sorted(id(r.message) for r in rejects) == sorted(garbage)
    for r in rejects:
        assert r.reason in garbage[id(r.message)], (r.reason, r.detail, r.message.value)
    assert sum(summary["rejects"].values()) == len(inserts)
    assert summary["rejects"] == dict(sorted(Counter(r.reason for r in rejects).items()))
    # The valid events' metrics, windows, slices and counts are untouched, except the
    # per-model counts of duplicates, which the duplicates themselves add to.
    for name, model in summary["models"].items():
        want = copy.deepcopy(clean["models"][name])
        for key in ("duplicate_predictions", "duplicate_labels"):
            want["counts"][key] = model["counts"][key]
        assert model == want
    dups = sum(m["counts"]["duplicate_predictions"] for m in summary["models"].values())
    assert dups == sum(1 for r in rejects
                       if r.reason == "duplicate" and r.message.topic == "predictions")
