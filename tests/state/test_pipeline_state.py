"""One process's checkpoint holds both stages: stage 1's engine and every model's stage 2.
A restored core goes on exactly as the original; a checkpoint written before one process
ran stage 2 as its own object (format 2: the engine held every partition's windows and
the pane clock) is migrated, and goes on to the outputs the engine would have given."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from monitor.core.alerting import Alerting
from monitor.core.engine import Engine
from monitor.core.pipeline import Pipeline
from monitor.state import format as fmt
from monitor.state.checkpoint import CheckpointStore
from tests.state.streams import messages, run, stream_config
from tests.state.test_format import _BEFORE, _BEFORE_CONFIG

END = 1000


def feed(core: Any, start: int, stop: int, step: int = 25) -> Any:
    for i in range(start, stop, step):
        core.process(messages(i, min(stop, i + step)))
    return core


def close(a: Any, b: Any, where: str = "") -> None:
    """``a`` equals ``b`` to rounding (sums taken in another order), NaN equal to NaN."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            close(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{where}/{i}")
    elif isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            assert math.isnan(b), where
        else:
            assert b == pytest.approx(a, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


@pytest.mark.parametrize("cut", [0, 40, 130, 420, 700])
def test_restored_core_continues_exactly_as_the_original(tmp_path: Path, cut: int) -> None:
    config = stream_config()
    original = feed(Pipeline(config), 0, cut)  # signals not drained: stored too
    rules = Alerting(config, original.models)
    fed = len(original.pending_signals())
    rules.alerts_out = rules.feed(original.pending_signals())
    CheckpointStore(tmp_path).save(original, rules)
    loaded = CheckpointStore(tmp_path).load_core(config)
    assert loaded is not None
    restored, restored_rules = loaded
    feed(original, cut, END)
    feed(restored, cut, END)
    signals = original.drain_signals()
    assert signals
    assert repr(restored.drain_signals()) == repr(signals)  # NaN != NaN; its repr equals
    alerts = rules.feed(signals[fed:])
    assert restored_rules.feed(signals[fed:]) == alerts
    assert repr(restored.summary()) == repr(original.summary())
    report, again = rules.fill(original.report()), restored_rules.fill(restored.report())
    assert repr(again) == repr(report)
    b = original.models[0]
    assert b.profile is not None and b.detectors is not None
    assert sum(b.detectors.totals.values()) > 0


@pytest.mark.parametrize("cut", [0, 130, 420, 700])
def test_an_engine_checkpoint_of_format_two_goes_on_as_the_engine(tmp_path: Path,
                                                                  cut: int) -> None:
    """Each model's stage 2 is built from the engine's windows, clock, counters, buffered
    errors and warmup rows; the core then gives the engine's signals, alerts and summary
    (to rounding: the windows are summed over partitions once, not at every close)."""
    config = stream_config()
    engine = run(Engine(config), 0, cut)
    rules = Alerting(config, engine.models)
    rules.alerts_out = rules.feed(engine.signals_out)
    body = msgspec.msgpack.decode(fmt.encode_engine(engine, rules))
    body["format"] = 2  # as the version before wrote it: no stages
    old, old_rules, made_under = fmt.decode_engine(msgspec.msgpack.encode(body), config)
    stages = fmt.decode_stages(msgspec.msgpack.encode(body), made_under, old)
    core = Pipeline(config, old, stages)
    assert core.panes_closed == engine.panes_closed
    run(engine, cut, END)
    feed(core, cut, END)
    want, got = engine.drain_signals(), core.drain_signals()
    assert [(s.model, s.pane_end) for s in got] == [(s.model, s.pane_end) for s in want]
    for a, b in zip(want, got, strict=True):
        close(a.signals, b.signals, f"{a.model}@{a.pane_end}")
    assert [(e.alert_id, e.status) for e in old_rules.feed(got)] == [
        (e.alert_id, e.status) for e in rules.feed(want)
    ]
    close(engine.summary(), core.summary())


def test_the_stored_format_two_fixture_goes_on_as_an_engine() -> None:
    bodies = msgspec.msgpack.decode(zlib.decompress(_BEFORE.read_bytes()))
    body = msgspec.msgpack.encode(bodies["engine"])
    old, old_rules, made_under = fmt.decode_engine(body, _BEFORE_CONFIG)
    core = Pipeline(_BEFORE_CONFIG, old, fmt.decode_stages(body, made_under, old))
    engine = run(Engine(_BEFORE_CONFIG), 0, 200)
    rules = Alerting(_BEFORE_CONFIG, engine.models)
    sent = rules.feed(engine.drain_signals())
    assert old_rules.feed(core.drain_signals()[:0]) == sent  # unsent: they come first
    feed(core, 200, 500)
    run(engine, 200, 500)
    want, got = engine.drain_signals(), core.drain_signals()
    for a, b in zip(want, got, strict=True):
        close(a.signals, b.signals, f"{a.model}@{a.pane_end}")
    assert len(want) == len(got)
    assert [(e.alert_id, e.status) for e in old_rules.feed(got)] == [
        (e.alert_id, e.status) for e in rules.feed(want)
    ]
    close(engine.summary(), core.summary())
