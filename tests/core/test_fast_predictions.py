"""The compiled reading of the usual predictions straight from their JSON
(``monitor._native.decode_predictions``, see ``fastpath._made_inline``) against msgspec's
decoding of the same messages: each event the same struct (its features aside, which are in
the feature table), the same feature table, the same messages declined; and a noisy stream
decided by a pipeline the same, bit for bit, with the fast reading on and off."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import numpy as np
import pytest

from monitor import native
from monitor.core import fastpath
from monitor.events.codec import DECODE_ERRORS, DEFAULT_LIMITS, Limits

pytestmark = pytest.mark.skipif(native.kernels() is None, reason="the compiled module is not built")

NAMES = ("amount", "country", "age")


def _numbers(rng: random.Random) -> Any:
    """A JSON number's text or value of the kinds streams send, and some odd ones."""
    return rng.choice([
        rng.randint(-5, 5), rng.random(), round(rng.gauss(0, 100), rng.randint(0, 6)),
        "1e3", "-0", "-0.0", "0.5E-3", "123456789012345678", "1234567890123456789",
        "12345678901234567.5", "1e400", "01", "1.", ".5", "-", "1700000000.123",
        "1700000000.123456", 2**53 + 1, "3.0e22", "3.0e23",
    ])  # fmt: skip


def _text(rng: random.Random, longest: int = 12) -> str:
    return rng.choice([
        "a", "", "de", "x" * longest, "x" * (longest + 1), "caf\u00e9", "tab\there", "q\"uote",
        "back\\slash", "\u2603", "m",
    ])  # fmt: skip


def _value(rng: random.Random) -> Any:
    return rng.choice([0, 1, True, False, None, 2.5, "yes", "", [1], {"a": 1}, _numbers(rng)])


def _render(v: Any) -> str:
    """``v`` as JSON text; a str starting with a digit, '-' or '.' is sent as a bare number."""
    if isinstance(v, str) and v and (v[0].isdigit() or v[0] in "-."):
        return v
    return json.dumps(v)


def _payload(rng: random.Random, i: int) -> bytes:
    """A prediction: mostly the usual shape, often with one thing odd about it."""
    fields: dict[str, str] = {
        "prediction_id": json.dumps(f"p-{i}"),
        "model": json.dumps("m"),
        "ts": _render(str(round(1_700_000_000 + i / 7, rng.choice([2, 3, 3, 3, 7])))),
        "prediction": json.dumps(rng.randint(0, 1)),
    }
    if rng.random() < 0.7:
        fields["score"] = _render(rng.choice([round(rng.random(), 3), None, _numbers(rng)]))
    if rng.random() < 0.8:
        usual = rng.random() < 0.7
        feats = {n: _render(round(rng.gauss(0, 9), 2) if usual else
                            rng.choice([_numbers(rng), None, _text(rng)]))
                 for n in NAMES if rng.random() < 0.9}  # fmt: skip
        if rng.random() < 0.05:
            feats["other"] = "1"
        body = ",".join(f"{json.dumps(k)}:{v}" for k, v in feats.items())
        fields["features"] = rng.choice([f"{{{body}}}"] * 8 + ["null", "[1]", "3", '"x"'])
    odd = rng.random()
    if odd < 0.05:
        fields["model_version"] = json.dumps(_text(rng))
    elif odd < 0.1:
        fields["segment"] = rng.choice(['{"region":"eu"}', "{}", "null", '{"r":1}',
                                        '{"r":"a","r":"b"}', '{"r":"' + "y" * 80 + '"}'])
    elif odd < 0.13:
        fields["probabilities"] = rng.choice(["null", '{"0":0.4,"1":0.6}'])
    elif odd < 0.17:
        fields["label"] = _render(_value(rng))
    elif odd < 0.21:
        fields["prediction"] = _render(_value(rng))
    elif odd < 0.24:
        fields["ts"] = rng.choice(['"2023-01-01T00:00:00Z"', "null", "true", "1e400",
                                   '"yesterday"', "1700000000", "-0", "17e8"])
    elif odd < 0.27:
        del fields[rng.choice(list(fields))]
    elif odd < 0.3:
        fields["prediction_id"] = json.dumps(_text(rng, DEFAULT_LIMITS.max_id_length))
    elif odd < 0.32:
        fields["unknown"] = "1"
    elif odd < 0.34:
        fields["model"] = rng.choice(["null", "1", json.dumps("m\u00e9")])
    items = list(fields.items())
    rng.shuffle(items)
    sep = rng.choice([",", ", ", " ,\n"])
    colon = rng.choice([":", ": "])
    text = "{" + sep.join(f'"{k}"{colon}{v}' for k, v in items) + "}"
    last = rng.random()
    if last < 0.02:
        text += " x"
    elif last < 0.04:
        text = text[:-1]
    elif last < 0.06:
        text = text.replace('"model"', '"mod\\u0065l"')
    elif last < 0.08:
        text = text.replace('"ts"', '"ts":1,"ts"', 1)
    elif last < 0.1:
        text = "  " + text + "\n"
    return text.encode()


def _read(values: list[bytes | None], fast: bool, limits: Limits = DEFAULT_LIMITS) -> Any:
    """What ``_decode_predictions``' compiled branch makes of ``values`` (the structs, the
    feature table's codes, values and strings, and which were read inline)."""
    kernels = native.kernels()
    assert kernels is not None
    typed, _ = fastpath._raw_typed(NAMES, limits)
    n = len(values)
    codes = np.empty((len(NAMES), n), dtype=np.int8)
    x = np.empty((len(NAMES), n))
    inline = np.zeros(n, dtype=bool)
    if fast:
        made = fastpath._made_inline(typed)
        assert made is not None
        out, declined, strs = kernels.decode_predictions(
            typed.decode, values, 1 << 16, DECODE_ERRORS, made, NAMES,
            limits.max_category_length,
            (limits.max_id_length, limits.max_value_length, limits.max_segment_length),
            codes, x, inline,
        )  # fmt: skip
    else:
        out = fastpath._decode_each(typed, values, 1 << 16)
        raws = [None if e is None else e.features for e in out]
        declined, strs = kernels.read_features(raws, NAMES, limits.max_category_length, codes, x)
    return out, codes, x, strs, declined, inline


def _strs_of(codes: Any, x: Any, strs: list[str]) -> list[list[Any]]:
    """The table's cells as values (the string itself where a cell holds one)."""
    return [[strs[int(v)] if c == 2 else (c, v) for c, v in zip(cr, xr, strict=True)]
            for cr, xr in zip(codes.tolist(), x.tolist(), strict=True)]  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_each_prediction_reads_as_msgspec_decodes_it(seed: int) -> None:
    rng = random.Random(seed)
    values: list[bytes | None] = [_payload(rng, i) for i in range(3000)]
    values[5] = None
    values[9] = b"not json"
    fast = _read(values, True)
    slow = _read(values, False)
    out_f, codes_f, x_f, strs_f, declined_f, inline = fast
    out_s, codes_s, x_s, strs_s, declined_s, _ = slow
    assert declined_f == declined_s
    np.testing.assert_array_equal(codes_f, codes_s)
    assert _strs_of(codes_f, np.nan_to_num(x_f, nan=-7.0), strs_f) == _strs_of(
        codes_s, np.nan_to_num(x_s, nan=-7.0), strs_s)
    # the same bits, -0.0 and NaN included
    np.testing.assert_array_equal(x_f.view(np.int64)[codes_f != 2],
                                  x_s.view(np.int64)[codes_s != 2])
    for i, (f, s) in enumerate(zip(out_f, out_s, strict=True)):
        if s is None:
            assert f is None, values[i]
            continue
        assert f is not None, values[i]
        if inline[i]:
            assert f.features is None
            assert msgspec.structs.replace(s, features=None) == f, values[i]
            for name in msgspec.structs.fields(type(f)):
                a, b = getattr(f, name.name), getattr(s, name.name)
                if name.name != "features":
                    assert type(a) is type(b) and (a == b or (a != a and b != b)), (name, values[i])
            if type(f.ts) is float:
                assert np.float64(f.ts).view(np.int64) == np.float64(s.ts).view(np.int64)
        else:
            assert f == s
    # the usual predictions are read inline; the odd ones are all still decided by msgspec
    assert inline.sum() > len(values) // 3
    assert (~inline & np.array([e is not None for e in out_s])).sum() > len(values) // 10


def test_strings_beyond_the_limits_are_declined_to_msgspec() -> None:
    limits = Limits(max_id_length=4, max_value_length=3, max_segment_length=2)
    values: list[bytes | None] = [
        b'{"prediction_id":"abcd","model":"m","ts":1,"prediction":"abc","segment":{"r":"eu"}}',
        b'{"prediction_id":"abcde","model":"m","ts":1,"prediction":1}',
        b'{"prediction_id":"a","model":"m","ts":1,"prediction":"abcd"}',
        b'{"prediction_id":"a","model":"m","ts":1,"prediction":1,"segment":{"r":"eur"}}',
        b'{"prediction_id":"a","model":"m","ts":1,"prediction":1,"model_version":"v10"}',
    ]
    out_f, *_, inline = _read(values, True, limits)
    out_s, *_ = _read(values, False, limits)
    assert inline.tolist() == [True, False, False, False, False]
    assert [e is None for e in out_f] == [e is None for e in out_s]
    assert [e is None for e in out_f] == [False, True, True, True, True]


def test_repeated_strings_are_read_once_and_equal_msgspec_s() -> None:
    """A poll's predictions name a few models, versions and segment values over and over:
    the kernel gives each such string once made again (the first few of each kind), and
    every event is still what msgspec decodes; a string that only starts like a kept one
    (longer, escaped, beyond the limit, not ASCII) is not taken for it."""
    limits = Limits(max_segment_length=4)
    rng = random.Random(3)
    texts = ["eu", "us", "eu\\u0041", 'eu\\"x', "euro", "europe", "e", "", "caf\u00e9"]
    values: list[bytes | None] = []
    for i in range(400):
        segment = ",".join(f'"{k}":"{rng.choice(texts)}"' for k in rng.sample(["r", "c"], 2))
        values.append((f'{{"prediction_id":"p-{i}","model":"{rng.choice(["m", "n", "m"])}",'
                       f'"ts":{1_700_000_000 + i},"prediction":1,'
                       f'"model_version":"{rng.choice(["v1", "v2", "v10", "v1x", ""])}",'
                       f'"segment":{{{segment}}}}}').encode())  # fmt: skip
    out_f, *_, inline = _read(values, True, limits)
    out_s, *_ = _read(values, False, limits)
    assert 0 < inline.sum() < len(values)
    assert [e is None for e in out_f] == [e is None for e in out_s]
    for f, s in zip(out_f, out_s, strict=True):
        if s is not None:
            assert (f.model, f.model_version, f.segment) == (s.model, s.model_version, s.segment)
            assert [type(v) for v in (f.model, f.model_version, *f.segment.values())] == [
                str] * (2 + len(f.segment))
    made = [e for e, i in zip(out_f, inline, strict=True) if i]
    versions = {e.model_version: e.model_version for e in made}
    assert all(e.model_version is versions[e.model_version] for e in made)
    models = {e.model: e.model for e in made}
    assert all(e.model is models[e.model] for e in made)


def test_features_of_an_inline_prediction_are_made_again_from_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where a model's events' features are read (a numeric feature sent as a string), a
    prediction read inline gives the struct msgspec would have decoded its features to."""
    engine = _engine()
    monkeypatch.setattr(fastpath, "_warming", lambda engine: False)  # (as past its warmup)
    values: list[bytes | None] = [
        b'{"prediction_id":"a","model":"m","ts":1,"prediction":1,'
        b'"features":{"amount":"high","country":"de","age":3}}',
        b'{"prediction_id":"b","model":"m","ts":1,"prediction":1,"features":{"age":null}}',
        b'{"prediction_id":"c","model":"m","ts":1,"prediction":1}',
    ]
    events, table = fastpath._decode_predictions(engine, values, 0, [0, 1, 2])
    assert table is not None and table.inline is not None and table.inline.all()
    idx = np.arange(3, dtype=np.int64)
    (feats,) = fastpath._attrs(events, ("features",))
    made = fastpath._inline_features(engine, feats, idx, table)
    decoder = fastpath._typed(fastpath._all_features(engine), engine.limits)[0]
    for got, value in zip(made, values, strict=True):
        want = decoder.decode(value).features
        assert got == (want if want is not None else type(got)())


def _engine() -> Any:
    from monitor.config import config_from_mapping
    from monitor.core.engine import Engine

    cfg = config_from_mapping({
        "kafka": {"predictions_topic": "p", "labels_topic": "l"},
        "models": [{"name": "m", "task": "binary", "positive_class": 1, "reference_warmup": 1,
                    "features": {"amount": "numeric", "country": "categorical",
                                 "age": "numeric"}}],
    }, "test")  # fmt: skip
    return Engine(cfg)


def _pipeline_stream(n: int, seed: int) -> list[Any]:
    """``n`` predictions of two models with features (now and then a numeric one sent as a
    string, a feature missing, a string too long, an odd payload from the generator
    above), their labels 1-20 s later, garbage; cut into polls of 1 to 40 messages."""
    from tests.core.test_model_stage import as_messages, polls

    rng = random.Random(seed)
    out: list[tuple[float, int, str, bytes]] = []
    for i in range(n):
        t = 1_700_000_000.0 + i * 0.1
        part = rng.randrange(3)
        feats: dict[str, Any] = {"amount": round(rng.gauss(10, 3), 2),
                                 "country": rng.choice(["de", "fr", "x" * 70]),
                                 "age": rng.randint(18, 90)}  # fmt: skip
        if rng.random() < 0.03:
            feats["amount"] = "high"
        if rng.random() < 0.05:
            del feats["age"]
        body = {"prediction_id": f"p{i}", "model": rng.choice(["m0", "m1"]), "ts": round(t, 2),
                "prediction": int(rng.random() < 0.4), "score": round(rng.random(), 3),
                "features": feats}  # fmt: skip
        value = json.dumps(body).encode()
        if rng.random() < 0.03:
            value = _payload(rng, i).replace(b'"model":', b'"model":"m0","x":').replace(
                b'"m"', b'"m1"') if rng.random() < 0.5 else _payload(rng, i)
        out.append((t, part, "predictions", value))
        if rng.random() < 0.8:
            label = {"prediction_id": f"p{i}", "ts": round(t + 1, 2), "label": rng.randint(0, 1)}
            out.append((t + rng.uniform(1, 20), part, "labels", json.dumps(label).encode()))
        if rng.random() < 0.01:
            out.append((t, part, "predictions", b"{not json"))
    out.sort(key=lambda m: m[0])
    return polls(as_messages(out), seed, 40)


def test_a_pipeline_decides_a_stream_the_same_with_the_inline_reading_on_and_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from monitor.config import config_from_mapping
    from monitor.core.pipeline import Pipeline
    from tests.core.test_hand_over import _state

    models = [{"name": f"m{k}", "task": "binary", "positive_class": 1, "reference_warmup": 0,
               "windows": ["all", "1m"], "drift_min_samples": 5,
               "features": {"amount": "numeric", "country": "categorical", "age": "numeric"}}
              for k in range(2)]  # fmt: skip
    cfg = config_from_mapping({
        "kafka": {"predictions_topic": "predictions", "labels_topic": "labels"},
        "time": {"pane": "5s", "allowed_lateness": "5s"},
        "models": models,
    })  # fmt: skip
    fast, slow = Pipeline(cfg), Pipeline(cfg)
    for p in (fast, slow):
        p.track([(t, n) for t in ("predictions", "labels") for n in range(3)])
    read = {"inline": 0, "made": 0}
    decode = fastpath._decode_predictions
    again = fastpath._inline_features

    def counted(*args: Any) -> Any:
        events, table = decode(*args)
        if table is not None and table.inline is not None:
            read["inline"] += int(table.inline.sum())
        return events, table

    def counted_again(*args: Any) -> Any:
        read["made"] += 1
        return again(*args)

    monkeypatch.setattr(fastpath, "_decode_predictions", counted)
    monkeypatch.setattr(fastpath, "_inline_features", counted_again)
    signals = 0
    for i, batch in enumerate(_pipeline_stream(4000, 5)):
        monkeypatch.setattr(fastpath, "FAST_PREDICTIONS", True)
        got_rejects = fast.process(batch)
        monkeypatch.setattr(fastpath, "FAST_PREDICTIONS", False)
        assert [(r.reason, r.detail) for r in got_rejects] == [
            (r.reason, r.detail) for r in slow.process(batch)], i
        got, want = fast.drain_signals(), slow.drain_signals()
        assert [(s.model, s.pane_end, repr(s.signals)) for s in got] == [
            (s.model, s.pane_end, repr(s.signals)) for s in want], i
        signals += len(got)
    for name, stage in slow.stages.items():
        assert _state(fast.stages[name]) == _state(stage), name
    assert fast.summary() == slow.summary()
    # most predictions were read inline, and features were made again from the table
    assert read["inline"] > 3000 and read["made"] > 5 and signals > 50, (read, signals)
