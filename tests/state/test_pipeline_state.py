"""One process's checkpoint holds both stages: stage 1's engine and every model's stage 2.
A restored core goes on exactly as the original; a checkpoint written before one process
ran stage 2 as its own object (format 2: the engine held every partition's windows and
the pane clock) is migrated, and goes on to the outputs one process gives; so do a
checkpoint and a partition record of format 3 (stage 1 still wrote empty windows)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from monitor.core.alerting import Alerting
from monitor.core.deltas import DeltaBook
from monitor.core.engine import Engine
from monitor.core.pipeline import Pipeline
from monitor.state import format as fmt
from monitor.state.checkpoint import CheckpointStore
from tests.state.streams import messages, run, stream_config
from tests.state.test_format import _BEFORE, _BEFORE_CONFIG, _before_format_4

END = 1000


def feed(core: Any, start: int, stop: int, step: int = 25) -> Any:
    for i in range(start, stop, step):
        core.process(messages(i, min(stop, i + step)))
    return core


def _before_unnamed(
    straight: dict[str, Any], resumed: dict[str, Any]
) -> tuple[dict[str, Any], ...]:
    """The two summaries without ``unnamed_labels``, which a state written before they were
    kept resumes from zero: the resumed run counts those after the checkpoint only."""
    a, b = dict(straight), dict(resumed)
    was, now = a.pop("unnamed_labels"), b.pop("unnamed_labels")
    assert all(0 <= now[k] <= was[k] for k in was), (was, now)
    return a, b


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
def test_an_engine_checkpoint_of_format_two_goes_on_as_one_process(cut: int) -> None:
    """A checkpoint the engine alone wrote (format 2: each partition's windows, the pane
    clock, no stage records; written by the version before format 4 after ``cut``
    messages): each model's stage 2 is built from its windows, clock, counters, buffered
    errors and warmup rows, and the core goes on to the signals, alerts and summary of one
    process that read the whole stream (to rounding: the windows were summed over
    partitions once, not at every close)."""
    config = stream_config()
    body = msgspec.msgpack.encode(_before_format_4(f"engine2@{cut}"))
    core, old_rules, made_under = fmt.decode_core(body, config)
    assert made_under is config
    straight = feed(Pipeline(config), 0, cut)
    rules = Alerting(config, straight.models)
    rules.alerts_out = rules.feed(straight.pending_signals())
    assert core.panes_closed == straight.panes_closed
    assert core.offsets() == straight.offsets()
    feed(straight, cut, END)
    feed(core, cut, END)
    want, got = straight.drain_signals(), core.drain_signals()
    assert [(s.model, s.pane_end) for s in got] == [(s.model, s.pane_end) for s in want]
    for a, b in zip(want, got, strict=True):
        close(a.signals, b.signals, f"{a.model}@{a.pane_end}")
    assert [(e.alert_id, e.status) for e in old_rules.feed(got)] == [
        (e.alert_id, e.status) for e in rules.feed(want)
    ]
    close(*_before_unnamed(straight.summary(), core.summary()))


def test_the_stored_format_two_fixture_goes_on_as_one_process() -> None:
    bodies = msgspec.msgpack.decode(zlib.decompress(_BEFORE.read_bytes()))
    body = msgspec.msgpack.encode(bodies["engine"])
    core, old_rules, _ = fmt.decode_core(body, _BEFORE_CONFIG)
    straight = feed(Pipeline(_BEFORE_CONFIG), 0, 200)
    rules = Alerting(_BEFORE_CONFIG, straight.models)
    sent = rules.feed(straight.drain_signals())
    assert old_rules.feed(core.drain_signals()[:0]) == sent  # unsent: they come first
    feed(core, 200, 500)
    feed(straight, 200, 500)
    want, got = straight.drain_signals(), core.drain_signals()
    got = got[len(got) - len(want):]  # the restored undrained signals come first
    for a, b in zip(want, got, strict=True):
        close(a.signals, b.signals, f"{a.model}@{a.pane_end}")
    assert [(e.alert_id, e.status) for e in old_rules.feed(got)] == [
        (e.alert_id, e.status) for e in rules.feed(want)
    ]
    close(*_before_unnamed(straight.summary(), core.summary()))


def test_a_core_checkpoint_of_format_three_goes_on_exactly() -> None:
    """One process's checkpoint of format 3 (stage 1 without windows, each model's stage
    2), written by the version before format 4: it goes on to exactly what one process
    that read the whole stream gives (to rounding: that version summed a poll's
    predictions in another order, its per-message path's last, so a window's sums may
    differ in their last bit; the alerts are the same)."""
    config = stream_config()
    body = msgspec.msgpack.encode(_before_format_4("core3@420"))
    core, old_rules, made_under = fmt.decode_core(body, config)
    assert made_under is config
    straight = feed(Pipeline(config), 0, 420)
    rules = Alerting(config, straight.models)
    rules.alerts_out = rules.feed(straight.pending_signals())
    assert repr(old_rules.report("b")) == repr(rules.report("b"))
    got = core.drain_signals()  # undrained when written (computed by that version)
    want = straight.drain_signals()
    assert [(s.model, s.pane_end) for s in got] == [(s.model, s.pane_end) for s in want]
    feed(straight, 420, END)
    feed(core, 420, END)
    want, got = straight.drain_signals(), core.drain_signals()
    assert want and [(s.model, s.pane_end) for s in got] == [(s.model, s.pane_end) for s in want]
    for a, b in zip(want, got, strict=True):
        close(a.signals, b.signals, f"{a.model}@{a.pane_end}")
    assert old_rules.feed(got) == rules.feed(want)
    close(*reversed(_before_unnamed(straight.summary(), core.summary())))


def test_a_partition_snapshot_of_format_three_is_read_without_its_windows() -> None:
    """Replicas: a partition record written by the version before format 4 (stage 1 with
    deltas) installs into this version's stage 1 as the state it writes itself."""
    config = stream_config()
    engine = Engine(config)
    DeltaBook(engine)
    run(engine, 0, 420)
    for number in sorted(engine.partitions):
        old = _before_format_4(f"snapshot3@420/{number}")
        assert "windows" in old["snapshot"]["state"] and old["format"] == 3
        snap = fmt.decode_snapshot(msgspec.msgpack.encode(old), Engine(config))
        # That version did not keep the counts of labels naming no model that left unjoined.
        assert not snap.state.unnamed
        snap.state.unnamed = engine.partitions[number].unnamed.copy()
        mine = fmt.encode_snapshot(engine.export_partition(number))
        assert fmt.encode_snapshot(snap) == mine
