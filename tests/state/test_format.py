"""The state format: every field of the engine's state survives encode/decode (the restored
engine continues a stream exactly as the original, and re-encodes to the same bytes), every
attribute of a state object is either stored or named as rebuilt from the config, a
checkpoint that would run code if unpickled runs nothing, an HMAC failure falls back to
the previous checkpoint, and no fuzzed input raises past the store."""

from __future__ import annotations

import json
import math
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from monitor.config import ConfigError, config_from_mapping
from monitor.core.alerting import Alerting
from monitor.core.detectors import ErrorDetectors, make_detector
from monitor.core.engine import Engine
from monitor.core.pipeline import Pipeline
from monitor.state import format as fmt
from monitor.state.checkpoint import MAGIC, CheckpointStore, config_fingerprint
from tests.state.streams import DETECTORS, run, stream_config

END = 1000


def _attrs(obj: Any) -> set[str]:
    """The instance attributes of ``obj``: its ``__dict__`` and every slot it fills."""
    names = set(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                names.add(slot)
    return names


def _same_json(a: Any, b: Any) -> None:
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("cut", [0, 40, 130, 420, 700])
def test_restored_engine_continues_exactly_as_the_original(cut: int) -> None:
    """Cut the stream anywhere (before the first pane closes, during the warmup, after the
    profile, while alerts fire and the error rate drifts): the decoded engine and alerting
    re-encode to the same bytes, and after the same tail both have the same state,
    summary, report, signals and alerts."""
    config = stream_config()
    original = run(Pipeline(config), 0, cut)  # type: ignore[arg-type]  # signals not drained
    rules = Alerting(config, original.models)
    fed = len(original.pending_signals())
    rules.alerts_out = rules.feed(original.pending_signals())  # evaluated, not sent: state
    body = fmt.encode_core(original, rules)
    restored, restored_rules, made_under = fmt.decode_core(body, config)
    assert made_under is config and restored_rules.config is config
    assert fmt.encode_core(restored, restored_rules) == body
    run(original, cut, END)  # type: ignore[arg-type]
    run(restored, cut, END)  # type: ignore[arg-type]
    assert _sessionless(fmt.encode_core(restored)) == _sessionless(fmt.encode_core(original))
    _same_json(restored.summary(), original.summary())
    signals = original.drain_signals()
    assert signals
    assert repr(restored.drain_signals()) == repr(signals)  # NaN != NaN; its repr equals
    alerts = rules.feed(signals[fed:])
    assert restored_rules.feed(signals[fed:]) == alerts and (cut < 400 or alerts)
    assert _sessionless(fmt.encode_core(restored, restored_rules)) == _sessionless(
        fmt.encode_core(original, rules)
    )
    report, again = rules.fill(original.report()), restored_rules.fill(restored.report())
    assert repr(again) == repr(report)  # NaN != NaN, its repr equals
    # the stream does use what it is meant to test
    b = original.models[0]
    assert b.profile is not None and b.detectors is not None
    assert sum(b.detectors.totals.values()) > 0
    assert any(r.transitions.get("firing") for r in rules.report("b"))
    assert original.summary()["models"]["b"]["folded"]


def _sessionless(body: bytes) -> bytes:
    """A core's body less the ids of its partitions' chains of deltas (each process's
    stage 1 starts chains of its own: a restored one numbers them anew)."""
    raw = msgspec.msgpack.decode(body)
    for stage in raw["stages"]:
        for chain in stage["chains"].values():
            chain["session"], chain["seq"], chain["retired"] = None, 0, []
    return msgspec.msgpack.encode(raw)


def _state_objects(core: Pipeline, alerting: Alerting) -> list[Any]:
    engine = core.engine
    objs: list[Any] = [engine, alerting, alerting.book, alerting.models["b"], *engine.models,
                       *core.models]  # fmt: skip
    for model in [*engine.models, *core.models]:
        objs += [model.registry]
        if model.detectors is not None:
            objs.append(model.detectors)
        if model.profile is not None:
            objs += [model.profile, *model.profile.numeric.values(),
                     *model.profile.categorical.values()]  # fmt: skip
            if model.profile.pca is not None:
                objs.append(model.profile.pca)
        if model.baseline is not None:
            objs.append(model.baseline)
    for state in engine.partitions.values():
        objs += [state, state.join, *state.join.pending, *state.join.matched]
    objs += [stage.windows for stage in core.stages.values()]
    objs += list(alerting.models["b"].states.values())
    objs += core.pending_signals()[:1] + alerting.alerts_out[:1]
    objs.append(engine.export_partition(min(engine.partitions)))
    return objs


def test_every_attribute_of_the_state_is_stored_or_rebuilt_from_the_config() -> None:
    """Walk the attributes of every state object of a busy engine: each one is named by
    the format, as stored or as rebuilt from the config. An attribute added to the engine
    later fails here until the format names it."""
    core = run(Pipeline(stream_config(dir="unused")), 0, 700, step=50)  # type: ignore[arg-type]
    engine = core.engine
    alerting = Alerting(core.config, core.models)
    alerting.alerts_out = alerting.feed(core.pending_signals())
    assert core.pending_signals() and alerting.alerts_out
    seen: set[type] = set()
    for obj in _state_objects(core, alerting):
        fields = fmt.STATE_FIELDS.get(type(obj))
        assert fields is not None, f"{type(obj).__qualname__} is not named by the state format"
        assert not fields.stored & fields.derived
        unknown = _attrs(obj) - fields.stored - fields.derived
        assert not unknown, f"{type(obj).__qualname__}: {sorted(unknown)} not in the format"
        missing = fields.stored - _attrs(obj)
        assert not missing, f"{type(obj).__qualname__}: stored {sorted(missing)} do not exist"
        seen.add(type(obj))
    assert seen == set(fmt.STATE_FIELDS)
    assert set(engine.partitions[0].join.pending[0].__getstate__()) == fmt.PENDING_KEYS


@pytest.mark.parametrize("entry", DETECTORS, ids=str)
@pytest.mark.parametrize("stream", ["error", "abs_error"])
def test_each_detector_resumes_exactly(entry: Any, stream: str) -> None:
    """Every detector's plain data rebuilds a detector that goes on exactly as the original
    (same detections on the same continuation, same data after it)."""
    name = entry if isinstance(entry, str) else entry["name"]
    if stream == "abs_error" and name in ("ddm", "eddm", "hddm_a"):
        pytest.skip(f"{name} takes 0/1 values only")
    rng = np.random.default_rng(1)
    if stream == "error":
        values = (rng.random(3000) < np.r_[np.full(1500, 0.1), np.full(1500, 0.4)]) * 1.0
    else:
        values = np.abs(rng.normal(np.r_[np.zeros(1500), np.full(1500, 2.0)], 1.0))
    original = ErrorDetectors([entry], stream)
    original.feed(values[:1200].tolist())
    rec = fmt._detectors(original)
    data = msgspec.msgpack.decode(msgspec.msgpack.encode(rec), type=fmt.DetectorsRec)
    restored = ErrorDetectors([entry], stream)
    fmt._set_detectors(restored, data, "m")
    assert original.feed(values[1200:].tolist()) == restored.feed(values[1200:].tolist())
    assert fmt._detectors(restored) == fmt._detectors(original)
    assert pickle.dumps(restored.detectors) == pickle.dumps(original.detectors)


def test_detector_data_of_another_shape_is_refused() -> None:
    rec = fmt._detectors(ErrorDetectors(["adwin", "ddm"], "error"))
    assert rec is not None
    rec.detectors["ddm"]["_p"] = {"n": "exec('boom')", "_mean": [1]}
    with pytest.raises(fmt.FormatError):
        fmt._set_detectors(ErrorDetectors(["adwin", "ddm"], "error"), rec, "m")
    rec.detectors["ddm"] = {"__class__": "os.system", "args": ["touch /tmp/x"]}
    with pytest.raises(fmt.FormatError):
        fmt._set_detectors(ErrorDetectors(["adwin", "ddm"], "error"), rec, "m")
    with pytest.raises(TypeError):  # a class outside the allow-list is never written
        fmt._plain(make_detector("adwin").__class__)


class _Boom:
    """Unpickling this runs a command that creates a file: what an attacker would write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_checkpoint_is_never_unpickled(tmp_path: Path) -> None:
    """A checkpoint of the previous format (a pickle), with a valid-looking header and
    checksum, is refused with a log line naming the upgrade path; nothing runs."""
    config = stream_config()
    store = CheckpointStore(tmp_path)
    store.save(run(Pipeline(config), 0, 200))  # type: ignore[arg-type]
    store.save(run(Pipeline(config), 0, 300))  # type: ignore[arg-type]
    good = CheckpointStore(tmp_path).load(config)
    assert good is not None and good.events > 0
    marker = tmp_path / "pwned"
    body = pickle.dumps(_Boom(marker))
    import hashlib

    header = json.dumps({"format": 1, "fingerprint": config_fingerprint(config),
                         "sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}).encode()
    store.path.write_bytes(MAGIC + len(header).to_bytes(4, "big") + header + body)
    with capture_logs() as logs:
        engine = CheckpointStore(tmp_path).load(config)
    assert not marker.exists()
    assert engine is not None and engine.events == run(Engine(config), 0, 200).events  # previous
    assert logs[0]["event"] == "checkpoint_unreadable" and "format 1" in logs[0]["error"]
    assert "docs/state.md" in logs[0]["error"]


def test_an_hmac_failure_falls_back_to_the_previous_checkpoint(tmp_path: Path) -> None:
    key = b"0123456789abcdef-secret"
    config = stream_config()
    store = CheckpointStore(tmp_path, key)
    store.save(run(Pipeline(config), 0, 100))  # type: ignore[arg-type]
    store.save(run(Pipeline(config), 0, 300))  # type: ignore[arg-type]
    # Forged: a valid body and checksum sealed with another key (or none at all).
    newest = CheckpointStore(tmp_path, b"another key, not ours").load(config)
    assert newest is None  # nothing verifies under a wrong key
    header = {"kind": "engine", "fingerprint": config_fingerprint(config)}
    forged = fmt.seal(MAGIC, header, fmt.encode_engine(run(Engine(config), 0, 900)), b"attacker")
    store.path.write_bytes(forged)
    with capture_logs() as logs:
        engine = CheckpointStore(tmp_path, key).load(config)
    assert engine is not None and engine.events == run(Engine(config), 0, 100).events
    assert "HMAC" in logs[0]["error"] and logs[1]["fallback"] is True
    unsigned = fmt.seal(MAGIC, {"kind": "engine", "fingerprint": config_fingerprint(config)},
                        fmt.encode_engine(run(Engine(config), 0, 900)))  # fmt: skip
    store.path.write_bytes(unsigned)
    engine = CheckpointStore(tmp_path, key).load(config)
    assert engine is not None and engine.events == run(Engine(config), 0, 100).events
    # the key's own checkpoints load, and without the key they still load (checksum only)
    store.save(run(Pipeline(config), 0, 300))  # type: ignore[arg-type]
    assert CheckpointStore(tmp_path).load(config).events == store.load(config).events  # type: ignore[union-attr]


def test_hmac_key_is_a_secret_overridable_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("MONITOR_STATE_HMAC_KEY", "from-the-environment-1234")
    config = config_from_mapping({"models": [{"name": "m", "task": "binary",
                                              "positive_class": 1}]})  # fmt: skip
    assert config.state.hmac_bytes() == b"from-the-environment-1234"
    assert "from-the-environment" not in repr(config) + str(config.model_dump())
    monkeypatch.setenv("MONITOR_STATE_HMAC_KEY", "short")
    with pytest.raises(ConfigError, match="16 bytes"):
        config_from_mapping({"models": [{"name": "m", "task": "binary", "positive_class": 1}]})


_SMALL = stream_config()
_BODY = fmt.encode_engine(run(Engine(_SMALL), 0, 60))
_CORE_BODY = fmt.encode_core(run(Pipeline(_SMALL), 0, 130))  # type: ignore[arg-type]
_VALUE = fmt.seal(MAGIC, {"kind": "engine", "fingerprint": config_fingerprint(_SMALL)}, _BODY)


def _mutations() -> st.SearchStrategy[bytes]:
    """Values near a real checkpoint: bytes flipped, cut, spliced, or re-sealed bodies."""
    flip = st.tuples(st.integers(0, len(_VALUE) - 1), st.integers(1, 255)).map(
        lambda t: _VALUE[: t[0]] + bytes([_VALUE[t[0]] ^ t[1]]) + _VALUE[t[0] + 1 :]
    )
    cut = st.integers(0, len(_VALUE)).map(lambda n: _VALUE[:n])
    body_flip = st.tuples(st.integers(0, len(_BODY) - 1), st.integers(1, 255)).map(
        lambda t: fmt.seal(MAGIC, {"kind": "engine", "fingerprint": config_fingerprint(_SMALL)},
                           _BODY[: t[0]] + bytes([_BODY[t[0]] ^ t[1]]) + _BODY[t[0] + 1 :])
    )  # fmt: skip
    plain = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats()
        | st.text(max_size=8) | st.binary(max_size=16),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                    max_size=4),
        max_leaves=20,
    )  # fmt: skip
    resealed = plain.map(
        lambda v: fmt.seal(MAGIC, {"kind": "engine", "fingerprint": config_fingerprint(_SMALL)},
                           msgspec.msgpack.encode({"format": 2, "engine": v}))
    )  # fmt: skip
    return st.one_of(flip, cut, body_flip, resealed, st.binary(max_size=200))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_mutations())
def test_a_fuzzed_checkpoint_never_raises_past_the_store(tmp_path_factory, value: bytes) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "checkpoint.bin").write_bytes(value)
    engine = CheckpointStore(directory).load(_SMALL)  # never raises
    if engine is not None:  # what decodes is usable: it processes and summarises
        run(engine, 60, 120)
        engine.summary()


#: A checkpoint body and a model's soft state record (no longer read) as the version that
#: evaluated rules inside the engine wrote them (format 2; same layout): :data:`_BEFORE_CONFIG` over
#: ``streams.messages(0, 200)``, signals and alerts not drained, rules evaluated in the
#: engine. Written by that version's ``encode_engine(engine)`` and
#: ``encode_soft_state(engine.soft_state("b"))``, kept as ``{"engine": ..., "soft": ...}``.
_BEFORE = Path(__file__).parent / "data" / "engine_before_alerting.msgpack.zlib"
_BEFORE_CONFIG = config_from_mapping({
    "time": {"pane": "10s", "allowed_lateness": "20s"},
    "models": [{
        "name": "b", "task": "binary", "positive_class": 1, "windows": ["all", "1m"],
        "label_ttl": "2m",
        "alerts": [
            {"name": "acc", "signal": "accuracy@1m", "op": "<", "threshold": 0.6, "for": "10s"},
            {"name": "band", "kind": "control_band", "signal": "positive_rate@1m", "warmup": 3},
            {"name": "silence", "kind": "absence", "for": "30s"},
        ],
    }],
})  # fmt: skip


def test_a_checkpoint_written_before_rules_left_the_engine_resumes_its_rules() -> None:
    """The rule state and unsent transitions in an older body become the alerting's, equal
    to what this version's alerting holds after the same stream; the stream goes on to
    the same transitions. Its signals lack the prediction count (NaN)."""
    bodies = msgspec.msgpack.decode(zlib.decompress(_BEFORE.read_bytes()))
    old, old_rules, made_under = fmt.decode_core(
        msgspec.msgpack.encode(bodies["engine"]), _BEFORE_CONFIG
    )
    assert made_under is _BEFORE_CONFIG
    core = run(Pipeline(_BEFORE_CONFIG), 0, 200)  # type: ignore[arg-type]
    rules = Alerting(_BEFORE_CONFIG, core.models)
    sent = rules.feed(core.drain_signals())
    assert [a.status for a in sent] == ["firing", "resolved", "firing"]
    assert repr(old_rules.report("b")) == repr(rules.report("b"))
    restored = old.engine.signals_out
    assert restored and all(math.isnan(s.predictions_total) for s in restored)
    assert old_rules.feed(old.drain_signals()[:0]) == sent  # unsent: they come first
    run(old, 200, 500)  # type: ignore[arg-type]
    run(core, 200, 500)  # type: ignore[arg-type]
    assert old_rules.feed(old.drain_signals()) == rules.feed(core.drain_signals())
    assert repr(old_rules.report("b")) == repr(rules.report("b"))


@pytest.mark.parametrize("shift", [-1_000_000, -400, 400, 1_000_000])
def test_a_clock_that_does_not_match_the_pane_rings_is_refused(shift: int) -> None:
    """A resealed body whose clock was moved (a flipped digit of ``closed_upto``) would make
    a model's stage 2 close, with a signal each, every pane between the clock and its
    rings: a million panes took the fuzz test past its time limit. It is refused instead,
    in a stage record and in the windows of an engine body of format 2."""
    body = msgspec.msgpack.decode(_CORE_BODY)
    assert body["stages"][0]["closed_upto"] is not None
    body["stages"][0]["closed_upto"] += shift
    with pytest.raises(fmt.FormatError, match="pane ring"):
        fmt.decode_core(msgspec.msgpack.encode(body), _SMALL)
    fmt.decode_core(_CORE_BODY, _SMALL)  # the body as written is fine
    old = _before_format_4("engine2@130")
    assert old["engine"]["closed_upto"] is not None
    old["engine"]["closed_upto"] += shift
    with pytest.raises(fmt.FormatError, match="pane ring"):
        fmt.decode_core(msgspec.msgpack.encode(old), _SMALL)
    fmt.decode_core(msgspec.msgpack.encode(_before_format_4("engine2@130")), _SMALL)


#: Bodies written by the version before format 4 (see data/make_before_format_4.py).
_BEFORE_4 = Path(__file__).parent / "data" / "before_format_4.msgpack.zlib"


def _before_format_4(name: str) -> dict[str, Any]:
    """A body of :data:`_BEFORE_4` as plain values."""
    bodies: dict[str, Any] = msgspec.msgpack.decode(zlib.decompress(_BEFORE_4.read_bytes()))
    out: dict[str, Any] = bodies[name]
    return out
