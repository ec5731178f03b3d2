"""The predictions a model holds raw for its warmup are stored as columns (format 5): each
value comes back as it was, of the same type (floats packed, the others as sent); rows of
format 4 (a record a row) are migrated to the chunk that format read, and checkpoints of
format 4 written while models warmed up go on exactly as the version that wrote them."""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.alerting import Alerting
from monitor.core.layout import Layout
from monitor.core.pipeline import Pipeline
from monitor.core.warmup_buffer import WarmChunk, chunk_of_rows, concat, split, unsplit
from monitor.state import format as fmt
from monitor.state import kafka_store
from monitor.state.checkpoint import MAGIC, CheckpointStore, config_fingerprint
from tests.state.data.make_before_format_5 import stage_fed
from tests.state.streams import run, stream_config

END = 700
FEATURES = {"x": "numeric", "y": "numeric", "c": "categorical"}

#: What a feature's value or a prediction can be: floats (NaN, infinities, -0.0 too),
#: integers, booleans, text, null.
_VALUE = st.one_of(
    st.floats(),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)


def _typed(values: list[Any]) -> list[tuple[str, str]]:
    """Each value's type and repr (1 == 1.0 == True, NaN != NaN: neither says enough)."""
    return [(type(v).__name__, repr(v)) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(_VALUE, max_size=30) | st.lists(st.floats(), max_size=30))
def test_a_column_comes_back_value_for_value_and_type_for_type(values: list[Any]) -> None:
    column = split(values)
    assert _typed(unsplit(column)) == _typed(values)
    rec = fmt._column(column)
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(rec), type=fmt.ColumnRec)
    assert _typed(unsplit(fmt._set_column(again, len(values)))) == _typed(values)
    if values and all(type(v) is float for v in values):  # one packed array, nothing else
        assert rec.floats is not None and rec.at is None and rec.values == []
        assert np.frombuffer(rec.floats.data).tobytes() == np.array(values).tobytes()


def _mixed(n: int) -> list[dict[str, Any] | None]:
    """Features of ``n`` predictions: ``x`` all floats, ``y`` floats with missing values and
    mismatches (text, booleans), ``c`` text with floats, booleans, integers and None; some
    predictions without features or without some of them."""
    out: list[dict[str, Any] | None] = []
    others: list[Any] = ["eu", 1.5, True, None, 3, "us", False, -0.0, math.nan, "eu"]
    for i in range(n):
        if i % 11 == 10:
            out.append(None)
            continue
        f: dict[str, Any] = {"x": i / 7, "c": others[i % len(others)]}
        if i % 5:
            f["y"] = [float(i), None, "high", True][i % 4]
        out.append(f)
    return out


def _chunk(layout: Layout, n: int) -> WarmChunk:
    predictions: list[Any] = ["a", 1, 0.5, True, 0, False, "b"]
    return WarmChunk.of(layout, [1e9 + i / 3 for i in range(n)], [(0, i % 3 - 1) for i in range(n)],
                        _mixed(n), [predictions[i % 7] for i in range(n)],
                        [math.nan if i % 9 == 0 else i / n for i in range(n)])  # fmt: skip


def _same(a: WarmChunk, b: WarmChunk, *, scores_rtol: float = 0.0) -> None:
    """The same chunk, bit for bit, its values of the same types (``==`` of chunks holds
    NaN sent as a feature's value unequal to itself); the scores within ``scores_rtol``
    of each other where told (see :data:`_RTOL`)."""
    for name in ("ts", "slices", "codes", "numbers", "scores"):
        x, y = getattr(a, name), getattr(b, name)
        if name == "scores" and scores_rtol:
            assert x.shape == y.shape and np.allclose(x, y, rtol=scores_rtol, atol=0.0,
                                                      equal_nan=True), name  # fmt: skip
            continue
        assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), name
    assert _typed(a.predictions) == _typed(b.predictions)
    assert {k: _typed(v) for k, v in a.others.items()} == {
        k: _typed(v) for k, v in b.others.items()
    }


@pytest.mark.parametrize("n", [1, 2, 40])
def test_a_chunk_of_mixed_values_comes_back_the_same(n: int) -> None:
    layout = Layout("binary", features=FEATURES)
    chunk = _chunk(layout, n)
    rec = fmt._warm_rec(layout, [chunk.head(n // 2), chunk.head(n)])  # two chunks: one record
    assert rec is not None and rec.rows == n // 2 + n
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(rec), type=fmt.WarmColumnsRec)
    restored = fmt._set_warm(layout, again, 2, 3)
    _same(restored, concat([chunk.head(n // 2), chunk.head(n)]))
    x = again.features["x"]  # packed, its values missing where a row has no features
    assert x.floats is not None and x.values == [None] * sum(
        f is None for f in [*_mixed(n // 2), *_mixed(n)])
    sample = fmt._warm_rec(layout, [chunk], sample=True)
    assert sample is not None and sample.ts is None and sample.slices is None
    kept = fmt._set_warm(layout, sample, None)
    assert kept.slices.shape == (n, 0) and not kept.ts.any()
    _same(WarmChunk(chunk.ts * 0, chunk.slices[:, :0], chunk.codes, chunk.numbers,
                    chunk.others, chunk.predictions, chunk.scores), kept)  # fmt: skip
    assert fmt._warm_rec(layout, []) is None and fmt._warm_rec(layout, [chunk.head(0)]) is None


@pytest.mark.parametrize("sample", [False, True])
def test_rows_of_format_four_become_the_chunk_that_format_read(sample: bool) -> None:
    """Rows as format 4 wrote them (a record a row, the features a mapping; a warmup
    sample's without event times or slices) migrate to columns that make the chunk
    format 4 made of the rows."""
    layout = Layout("binary", features=FEATURES)
    chunk = _chunk(layout, 40)
    rows = [fmt.WarmupRec(f, p, float(s), 0.0 if sample else float(t),
                          [] if sample else list(slices))
            for t, slices, f, p, s in chunk.rows(layout)]  # fmt: skip
    plain = msgspec.msgpack.decode(msgspec.msgpack.encode(rows))
    old = msgspec.convert(plain, list[fmt.WarmupRec])
    want = chunk_of_rows(layout, [(w.ts, tuple(w.slices), w.features, w.prediction, w.score)
                                  for w in old])  # fmt: skip
    rec = fmt._columns_of_rows(plain, sample=sample)
    assert rec is not None
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(rec), type=fmt.WarmColumnsRec)
    _same(fmt._set_warm(layout, again, None if sample else 2, 3), want)
    assert fmt._columns_of_rows([], sample=sample) is None


def test_bad_columns_are_refused() -> None:
    layout = Layout("binary", features=FEATURES)
    rec = fmt._warm_rec(layout, [_chunk(layout, 12)])
    assert rec is not None
    col = rec.features["y"]
    assert col.at is not None
    bad = [
        msgspec.structs.replace(rec, rows=13),
        msgspec.structs.replace(rec, rows=-1),
        msgspec.structs.replace(rec, slices=None),
        msgspec.structs.replace(rec, features={"y": msgspec.structs.replace(col, values=[])}),
        msgspec.structs.replace(rec, features={"y": msgspec.structs.replace(
            col, at=fmt._arr(np.array([5, 3]), np.int64), values=[None, None])}),
        msgspec.structs.replace(rec, features={"y": msgspec.structs.replace(
            col, at=fmt._arr(np.array([12]), np.int64), values=[None])}),
        msgspec.structs.replace(rec, predictions=fmt.ColumnRec(values=[1])),
    ]
    for r in bad:
        with pytest.raises(fmt.FormatError):
            fmt._set_warm(layout, r, 2, 3)
    with pytest.raises(fmt.FormatError):  # slices of another width, or ids out of range
        fmt._set_warm(layout, rec, 3, 3)
    with pytest.raises(fmt.FormatError):
        fmt._set_warm(layout, rec, 2, 1)
    with pytest.raises(fmt.FormatError):  # a warmup sample keeps neither
        fmt._set_warm(layout, rec, None)
    for rows in ([{"features": {}, "prediction": 1, "score": 0.5, "slices": [0]},
                  {"features": {}, "prediction": 1, "score": 0.5, "slices": [0, 1]}],
                 [{"features": {}, "prediction": 1, "score": 0.5, "slices": [2**40]}],
                 [{"features": [], "prediction": 1, "score": 0.5}], "rows"):  # fmt: skip
        with pytest.raises(fmt.FormatError):
            fmt._columns_of_rows(rows)


#: Bodies of format 4 written while models warmed up (see data/make_before_format_5.py).
_BEFORE_5 = Path(__file__).parent / "data" / "before_format_5.msgpack.zlib"


def _before_format_5(name: str) -> dict[str, Any]:
    bodies: dict[str, Any] = msgspec.msgpack.decode(zlib.decompress(_BEFORE_5.read_bytes()))
    out: dict[str, Any] = bodies[name]
    return out


def _sessionless(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage records less the ids of their chains of deltas (each process's stage 1 starts
    chains of its own)."""
    for stage in stages:
        for chain in stage["chains"].values():
            chain["session"], chain["seq"], chain["retired"] = None, 0, []
    return stages


def _plain(body: bytes) -> dict[str, Any]:
    """A core's or stage's body, decoded, less the ids of its chains (see
    :func:`_sessionless`)."""
    raw: dict[str, Any] = msgspec.msgpack.decode(body)
    _sessionless(raw.get("stages") or [raw["stage"]])
    return raw


#: How far apart two floats of the fixture's state and this run's may be. The fixture was
#: written on another processor: numpy's exp and log (the stream's scores, a model's log
#: loss) may differ there in the last bit, as its vector code differs by instruction set.
_RTOL = 1e-12


def _alike(a: Any, b: Any, path: str = "") -> None:
    """``a`` and ``b`` (plain values of a body, of signals or alerts) hold the same things:
    equal but for floats, which are within :data:`_RTOL` of each other (NaN where the other
    is NaN), in float64 arrays (:class:`monitor.state.format.Arr` records) too."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        if a.get("dtype") == "<f8" and isinstance(a.get("data"), bytes):
            x, y = np.frombuffer(a["data"]), np.frombuffer(b["data"])
            assert a["shape"] == b["shape"] and np.allclose(x, y, rtol=_RTOL, atol=0.0,
                                                            equal_nan=True), path  # fmt: skip
            return
        for k in a:
            _alike(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _alike(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=_RTOL), path
    else:
        assert type(a) is type(b) and a == b, path


@pytest.mark.parametrize("cut", [40, 80])
def test_a_core_checkpoint_of_format_four_warming_up_goes_on_exactly(cut: int) -> None:
    """One process's checkpoint of format 4 written while model ``b`` warmed up (its
    buffer of open panes and its sample, each prediction a record): it holds the state
    this version holds after the same messages (it re-encodes to the same body) and goes
    on to the same signals, alerts and summary."""
    config = stream_config()
    old = _before_format_5(f"core4@{cut}")
    assert old["format"] == 4
    stage = next(s for s in old["stages"] if s["name"] == "b")
    assert stage["model"]["warmup_rows"] and any(stage["warm"].values())
    core, old_rules, made_under = fmt.decode_core(msgspec.msgpack.encode(old), config)
    assert made_under is config
    straight = run(Pipeline(config), 0, cut)  # type: ignore[arg-type]
    rules = Alerting(config, straight.models)
    rules.alerts_out = rules.feed(straight.pending_signals())  # type: ignore[attr-defined]
    _alike(_plain(fmt.encode_core(core, old_rules)), _plain(fmt.encode_core(straight, rules)))  # type: ignore[arg-type]
    run(straight, cut, END)
    run(core, cut, END)  # type: ignore[arg-type]
    want, got = straight.drain_signals(), core.drain_signals()
    assert want
    _alike([(s.model, s.pane_end, s.signals, s.predictions_total) for s in got],
           [(s.model, s.pane_end, s.signals, s.predictions_total) for s in want])
    _alike(msgspec.to_builtins(old_rules.feed(got)), msgspec.to_builtins(rules.feed(want)))
    _alike(msgspec.to_builtins(core.summary()), msgspec.to_builtins(straight.summary()))


def test_a_stage_record_of_format_four_restores_its_raw_rows() -> None:
    """A model's stage 2 record of format 4 with raw rows in its warmup buffer, its sample
    and its delta pieces (kept to undo them): the stage it restores is the one this
    version holds after the same deltas."""
    config = stream_config()
    old = _before_format_5("stage4@40")
    assert old["format"] == 4
    pieces = [pc for c in old["stage"]["chains"].values() for a in c["history"]
              for pc in a["pieces"] if pc["warm"]]  # fmt: skip
    assert pieces
    stage, offset, rules = fmt.decode_stage(msgspec.msgpack.encode(old), config)
    assert offset == 7 and rules is None
    mine = stage_fed(40)
    _alike(_plain(fmt.encode_stage(stage, 7)), _plain(fmt.encode_stage(mine, 7)))
    for p, parts in mine.warm.items():
        for n, chunks in parts.items():
            assert len(chunks) == 1 or not chunks
            _same(stage.warm[p][n][0], chunks[0], scores_rtol=_RTOL)


@pytest.mark.parametrize("stages", [True, False])
def test_a_checkpoint_file_of_format_four_is_read(tmp_path: Path, stages: bool) -> None:
    """A checkpoint file the version before wrote (its header says format 4) is read and
    migrated, not refused for its format: a restart after the upgrade resumes its state
    (as a Kafka store's record of format 4 does); an unknown format is still refused."""
    config = stream_config()
    body = msgspec.msgpack.encode(_before_format_5("core4@40"))
    header = {"kind": "engine", "fingerprint": config_fingerprint(config), "format": 4,
              "length": len(body), "sha256": hashlib.sha256(body).hexdigest(), "mac": None}
    raw = json.dumps(header, sort_keys=True).encode()
    (tmp_path / "checkpoint.bin").write_bytes(MAGIC + len(raw).to_bytes(4, "big") + raw + body)
    store = CheckpointStore(tmp_path)
    straight = run(Pipeline(config), 0, 40)  # type: ignore[arg-type]
    if stages:
        loaded = store.load_core(config)
        assert loaded is not None
        _alike(_plain(fmt.encode_core(loaded[0])), _plain(fmt.encode_core(straight)))  # type: ignore[arg-type]
    else:
        engine = store.load(config)
        assert engine is not None
        want = fmt.decode_engine(fmt.encode_core(straight), config)[0]  # type: ignore[arg-type]
        assert fmt.encode_engine(engine) == fmt.encode_engine(want)
    value = fmt.seal(kafka_store.MAGIC, {"kind": "partition", "fingerprint": "f",
                                         "offsets": {}}, body)  # fmt: skip
    at = len(kafka_store.MAGIC) + 4
    size = int.from_bytes(value[len(kafka_store.MAGIC):at], "big")
    for version, readable in ((4, True), (2, True), (1, False), (99, False), ([4], False)):
        head = {**json.loads(value[at:at + size]), "format": version}
        raw = json.dumps(head).encode()
        record = kafka_store.MAGIC + len(raw).to_bytes(4, "big") + raw + body
        if readable:
            assert kafka_store.decode_record(record)[1] == body
        else:
            with pytest.raises(fmt.FormatError):
                kafka_store.decode_record(record)
