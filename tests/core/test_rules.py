"""Alert rules: every kind, the lifecycle, hysteresis, for/cooldown, min samples, and
deterministic alert ids across a checkpoint in the middle of a stream."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from monitor.config import ConfigError, MonitorConfig, config_from_mapping
from monitor.core.alerting import Alerting
from monitor.core.pipeline import Pipeline
from monitor.core.rules import AlertEvent, RuleBook, alert_id
from monitor.events.message import Message
from monitor.state.format import decode_core, encode_core

PANE = 10.0
T0 = 1_700_000_000.0


def _config(*rules: dict[str, Any], task: str = "binary", **model: Any) -> MonitorConfig:
    spec: dict[str, Any] = {
        "name": "fraud",
        "task": task,
        "windows": ["all", "1m", "ewm1m"],
        "features": {"amount": "numeric"},
        "alerts": list(rules),
        **model,
    }
    if task == "binary":
        spec.setdefault("positive_class", 1)
    return config_from_mapping({"time": {"pane": "10s"}, "models": [spec]})


def _feed(
    book: RuleBook,
    values: list[float | None],
    signal: str,
    *,
    extra: dict[str, float] | None = None,
    start: int = 0,
    predictions: list[float] | None = None,
) -> list[tuple[int, AlertEvent]]:
    """Evaluate one pane per value; return (pane index, event) of every transition."""
    out = []
    for i, value in enumerate(values, start=start):
        signals = dict(extra or {})
        if value is not None:
            signals[signal] = value
        seen = predictions[i - start] if predictions is not None else float(i + 1)
        for event in book.evaluate("fraud", T0 + (i + 1) * PANE, signals, seen):
            out.append((i, event))
    return out


def _statuses(events: list[tuple[int, AlertEvent]]) -> list[tuple[int, str]]:
    return [(i, e.status) for i, e in events]


def test_threshold_fires_and_resolves_with_the_schema_fields() -> None:
    cfg = _config({"name": "f1-low", "signal": "f1@1m", "op": "<", "threshold": 0.8,
                   "severity": "critical", "labels": {"team": "risk"},
                   "annotations": {"summary": "F1 {value:.2f} < {threshold} on {model}"}})
    events = _feed(RuleBook(cfg), [0.9, 0.7, 0.7, 0.9], "f1@1m")
    assert _statuses(events) == [(1, "firing"), (3, "resolved")]
    firing, resolved = events[0][1], events[1][1]
    assert firing.alert_id == resolved.alert_id == alert_id("fraud", "f1-low", T0 + 2 * PANE)
    assert firing.starts_at == T0 + 20 and firing.ends_at is None and firing.ts == T0 + 20
    assert resolved.ends_at == T0 + 40 and resolved.value == 0.9
    assert firing.threshold == 0.8 and firing.value == 0.7 and firing.signal == "f1@1m"
    assert firing.severity == "critical" and firing.model == "fraud"
    assert firing.labels == {"alertname": "f1-low", "model": "fraud", "rule": "f1-low",
                             "severity": "critical", "signal": "f1@1m", "team": "risk"}
    assert firing.annotations["summary"] == "F1 0.70 < 0.8 on fraud"


def test_for_needs_the_condition_to_hold_that_long_in_event_time() -> None:
    cfg = _config({"name": "r", "signal": "f1@1m", "op": "<", "threshold": 0.8, "for": "30s"})
    # Broken runs of 2 and 3 bad panes do not fire; the 4th consecutive one does (30 s held).
    values = [0.7, 0.7, 0.9, 0.7, 0.7, 0.7, 0.9, 0.7, 0.7, 0.7, 0.7]
    events = _feed(RuleBook(cfg), values, "f1@1m")
    assert _statuses(events) == [(10, "firing")]
    assert events[0][1].starts_at == T0 + 8 * PANE  # when the condition began to hold


def test_flapping_signal_fires_once_and_resolves_once() -> None:
    cfg = _config({"name": "r", "signal": "accuracy@1m", "op": "<", "threshold": 0.8,
                   "resolve_threshold": 0.85})
    wobble = [0.8 + (0.01 if i % 2 else -0.01) for i in range(200)]  # 0.79, 0.81, ...
    values = [0.9] * 5 + wobble + [0.9] * 5
    events = _feed(RuleBook(cfg), values, "accuracy@1m")
    assert _statuses(events) == [(5, "firing"), (205, "resolved")]


def test_resolve_for_defaults_to_for_so_a_wobble_does_not_flap() -> None:
    cfg = _config({"name": "r", "signal": "accuracy@1m", "op": "<", "threshold": 0.8,
                   "for": "20s"})
    wobble = [0.79, 0.79, 0.79] + [0.79 if i % 2 else 0.81 for i in range(100)] + [0.9] * 4
    events = _feed(RuleBook(cfg), wobble, "accuracy@1m")
    assert _statuses(events) == [(2, "firing"), (105, "resolved")]


def test_cooldown_keeps_a_resolved_rule_quiet() -> None:
    cfg = _config({"name": "r", "signal": "f1@1m", "op": "<", "threshold": 0.8,
                   "cooldown": "1m"})
    values = [0.7, 0.9, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    events = _feed(RuleBook(cfg), values, "f1@1m")
    # resolved at pane 1 (t = 20 s); quiet until 80 s: pane 7 ends at 80 s.
    assert _statuses(events) == [(0, "firing"), (1, "resolved"), (7, "firing")]


def test_undefined_values_and_too_few_samples_change_nothing() -> None:
    cfg = _config({"name": "r", "signal": "f1@1m", "op": "<", "threshold": 0.8,
                   "min_samples": 100})
    book = RuleBook(cfg)
    few = {"label_count@1m": 20.0}
    assert _feed(book, [0.1, math.nan, None], "f1@1m", extra=few) == []
    many = {"label_count@1m": 500.0}
    assert _statuses(_feed(book, [0.1], "f1@1m", extra=many, start=3)) == [(3, "firing")]
    # NaN / missing while firing neither resolves nor re-fires
    assert _feed(book, [math.nan, None], "f1@1m", extra=many, start=4) == []
    assert _statuses(_feed(book, [0.95], "f1@1m", extra=many, start=6)) == [(6, "resolved")]


def test_prediction_side_signals_count_predictions_as_samples() -> None:
    cfg = _config({"name": "r", "signal": "positive_rate@1m", "op": ">", "threshold": 0.5,
                   "min_samples": 10})
    book = RuleBook(cfg)
    assert _feed(book, [0.9], "positive_rate@1m", extra={"prediction_count@1m": 5}) == []
    events = _feed(book, [0.9], "positive_rate@1m", extra={"prediction_count@1m": 50}, start=1)
    assert _statuses(events) == [(1, "firing")]


def test_relative_drop_against_the_reference_value() -> None:
    cfg = _config({"name": "r", "kind": "relative", "signal": "accuracy@1m", "reference": 0.9,
                   "drop": 0.1, "resolve_drop": 0.05})
    events = _feed(RuleBook(cfg), [0.88, 0.80, 0.83, 0.86], "accuracy@1m")
    assert _statuses(events) == [(1, "firing"), (3, "resolved")]
    assert events[0][1].threshold == pytest.approx(0.81)


def test_relative_k_reference_standard_deviations_and_the_profile_hook() -> None:
    cfg = _config({"name": "r", "kind": "relative", "signal": "log_loss@1m", "op": ">",
                   "k": 3, "reference": 0.3, "reference_sd": 0.02})
    book = RuleBook(cfg)
    events = _feed(book, [0.33, 0.37], "log_loss@1m")
    assert _statuses(events) == [(1, "firing")]
    assert events[0][1].threshold == pytest.approx(0.36)
    # The rule's own reference wins over a reference profile's...
    book.set_reference("fraud", {"log_loss@1m": (0.5, 0.1)})
    assert _feed(book, [0.37], "log_loss@1m", start=2) == []
    # ...which serves a rule that has none.
    cfg = _config({"name": "r", "kind": "relative", "signal": "log_loss@1m", "op": ">",
                   "k": 3})
    book = RuleBook(cfg)
    book.set_reference("fraud", {"log_loss@1m": (0.5, 0.1)})
    assert _statuses(_feed(book, [0.7, 0.9], "log_loss@1m")) == [(1, "firing")]


def test_relative_rule_without_a_reference_does_not_evaluate() -> None:
    cfg = _config({"name": "r", "kind": "relative", "signal": "accuracy@1m", "drop": 0.1})
    assert _feed(RuleBook(cfg), [0.1, 0.1], "accuracy@1m") == []


def test_control_band_fires_when_the_signal_leaves_its_ewma_band() -> None:
    cfg = _config({"name": "r", "kind": "control_band", "signal": "score_mean@ewm1m", "k": 4,
                   "half_life": "5m", "warmup": 20, "resolve_k": 2})
    steady = [0.3 + 0.01 * ((i * 7) % 5 - 2) for i in range(60)]
    values = [*steady, 0.6, 0.6, 0.3, 0.3]
    events = _feed(RuleBook(cfg), values, "score_mean@ewm1m")
    assert _statuses(events) == [(60, "firing"), (62, "resolved")]
    assert 0.3 < events[0][1].threshold < 0.4  # upper edge of the band


def test_control_band_one_sided() -> None:
    cfg = _config({"name": "r", "kind": "control_band", "signal": "score_mean@ewm1m",
                   "direction": "down", "warmup": 5})
    values = [0.3, 0.31, 0.29, 0.3, 0.31, 0.29, 0.9]  # up: ignored
    assert _feed(RuleBook(cfg), values, "score_mean@ewm1m") == []


def test_detector_fires_on_a_detection_and_resolves_after_a_quiet_spell() -> None:
    cfg = _config({"name": "r", "kind": "detector", "signal": "adwin:error@all",
                   "resolve_for": "30s"})
    values = [0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    events = _feed(RuleBook(cfg), [float(v) for v in values], "adwin:error@all")
    # pane 5 re-detects while firing (no new alert); resolves 30 s after pane 6 cleared.
    assert _statuses(events) == [(2, "firing"), (9, "resolved")]


def test_absence_when_the_model_goes_silent_while_panes_close() -> None:
    cfg = _config({"name": "silent", "kind": "absence", "for": "1m", "severity": "critical"})
    book = RuleBook(cfg)
    seen = [10, 20, 30] + [30] * 8 + [40]
    events = _feed(book, [None] * len(seen), "unused", predictions=[float(x) for x in seen])
    # last predictions in pane 2 (ends at 30 s); silent 60 s at pane 8; back in pane 11
    assert _statuses(events) == [(8, "firing"), (11, "resolved")]
    assert events[0][1].value == 60.0 and events[0][1].threshold == 60.0


def test_absence_on_wall_clock_when_all_input_is_idle() -> None:
    cfg = _config({"name": "silent", "kind": "absence", "for": "1m"})
    book = RuleBook(cfg)
    _feed(book, [None], "x", predictions=[5.0])
    assert book.evaluate_idle(T0 + 30) == []
    (event,) = book.evaluate_idle(T0 + 80)
    assert event.status == "firing" and event.value == 70.0


def test_label_starvation_reads_label_coverage() -> None:
    cfg = _config({"name": "starved", "kind": "label_starvation", "threshold": 0.5,
                   "for": "20s", "min_samples": 10})
    book = RuleBook(cfg)
    counts = {"prediction_count@1m": 100.0}
    events = _feed(book, [0.9, 0.3, 0.2, 0.1, 0.8], "label_coverage@1m", extra=counts)
    assert _statuses(events) == [(3, "firing")]
    assert events[0][1].signal == "label_coverage@1m"


def _message(topic: str, offset: int, body: dict[str, Any]) -> Message:
    return Message(topic, 0, offset, body["prediction_id"].encode(), json.dumps(body).encode())


def _drifting_stream() -> list[Message]:
    """Accuracy 1.0 for 3 min, 0.0 for 3 min, 1.0 again: labels inline."""
    out = []
    for i in range(540):
        ts = T0 + i
        wrong = 180 <= i < 360
        out.append(_message("predictions", i, {"prediction_id": f"p{i}", "model": "fraud",
                                               "ts": ts, "prediction": 1,
                                               "label": 0 if wrong else 1}))
    return out


def _engine_alerts(cfg: MonitorConfig, messages: list[Message], cut: int | None) -> list[Any]:
    engine = Pipeline(cfg)
    alerting = Alerting(cfg, engine.models)
    engine.track([("predictions", 0)])
    events: list[AlertEvent] = []
    for start in range(0, len(messages), 37):
        engine.process(messages[start : start + 37])
        events += alerting.feed(engine.drain_signals())
        if cut is not None and start >= cut:  # a checkpoint and restart
            engine, alerting, _ = decode_core(encode_core(engine, alerting), cfg)
            cut = None
    return [(e.alert_id, e.status, e.starts_at, e.ends_at) for e in events]


def test_engine_alert_ids_survive_a_checkpoint_mid_stream() -> None:
    cfg = _config({"name": "acc", "signal": "accuracy@1m", "op": "<", "threshold": 0.8,
                   "for": "20s"}, windows=["all", "1m"])
    messages = _drifting_stream()
    straight = _engine_alerts(cfg, messages, None)
    assert [s for _, s, _, _ in straight] == ["firing", "resolved"]
    for cut in (100, 200, 300, 400):
        assert _engine_alerts(cfg, messages, cut) == straight


def test_rule_state_is_kept_by_a_checkpoint_loaded_under_the_running_config() -> None:
    rule = {"name": "acc", "signal": "accuracy@1m", "op": "<", "threshold": 0.8}
    cfg = _config(rule, windows=["all", "1m"])
    engine = Pipeline(cfg)
    alerting = Alerting(cfg, engine.models)
    engine.track([("predictions", 0)])
    messages = _drifting_stream()
    engine.process(messages[:300])
    assert [e.status for e in alerting.feed(engine.drain_signals())] == ["firing"]
    running = _config(rule, windows=["all", "1m"])  # an equal config, read again at start
    restored, alerting, made_under = decode_core(encode_core(engine, alerting), running)
    assert made_under is running and alerting.config is running
    restored.process(messages[300:])
    assert [e.status for e in alerting.feed(restored.drain_signals())] == ["resolved"]


def test_engine_and_model_stage_know_nothing_of_rules() -> None:
    """Rules run beside the accumulators (:mod:`monitor.core.alerting`), not in them."""
    import monitor.core.engine as engine_module
    import monitor.core.model_stage as stage_module

    for module in (engine_module, stage_module):
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        assert "monitor.core.rules" not in source and "RuleBook" not in source
    assert not hasattr(Pipeline(_config()), "drain_alerts")


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"signal": "f1@2h", "op": "<", "threshold": 0.8},
         "alerts[0](bad).signal: unknown window '2h'"),
        ({"signal": "f2@1m", "op": "<", "threshold": 0.8},
         "alerts[0](bad).signal: unknown signal name 'f2'"),
        ({"signal": "psi:age@1m", "op": ">", "threshold": 0.2},
         "alerts[0](bad).signal: 'psi:age@1m': 'age' is not a configured feature"),
        ({"signal": "f1@1m", "op": "<", "threshold": "0.8"},
         "alerts[0](bad).threshold: expected a number"),
        ({"signal": "f1@1m", "op": "<", "threshold": 0.8, "for": "-1m"},
         "alerts[0](bad).for: expected a duration"),
        ({"signal": "f1@1m", "op": "!=", "threshold": 0.8}, "alerts[0](bad).op:"),
        ({"signal": "f1@1m", "op": "<"}, "alerts[0](bad): Value error, a threshold rule needs"),
        ({"kind": "nope", "signal": "f1@1m"}, "alerts[0](bad).kind:"),
        ({"signal": "f1@1m", "op": "<", "threshold": 0.8, "resolve_threshold": 0.7},
         "resolve_threshold must be on the healthy side"),
        ({"signal": "f1@1m", "op": "<", "threshold": 0.8, "annotations": {"s": "{oops}"}},
         "unknown template field {oops}"),
        ({"signal": "f1@1m", "op": "<", "threshold": 0.8, "labels": {"model": "x"}},
         "label 'model' is set by the monitor"),
        ({"kind": "absence"}, "an absence rule needs 'for' > 0"),
        ({"kind": "detector", "signal": "psi:amount@1m"}, "is not a detector signal"),
        ({"kind": "label_starvation", "signal": "f1@1m", "threshold": 0.5},
         "reads label_coverage"),
        ({"kind": "relative", "signal": "f1@1m", "drop": 0.1, "k": 2}, "exactly one of"),
    ],
)
def test_a_bad_rule_is_a_config_error_naming_the_rule_and_key(
    rule: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _config({"name": "bad", **rule}, windows=["all", "1m"])
    text = "\n".join(info.value.problems)
    assert "models[0](fraud)." in text, text
    assert needle.replace("Value error, ", "") in text, text


def test_good_rules_of_every_kind_validate() -> None:
    cfg = _config(
        {"name": "a", "signal": "f1@1m", "op": "<", "threshold": 0.8},
        {"name": "b", "kind": "relative", "signal": "accuracy@ewm1m", "drop": 0.1,
         "reference": 0.9},
        {"name": "c", "kind": "control_band", "signal": "psi:amount@1m", "k": 3},
        {"name": "d", "kind": "detector", "signal": "adwin:error@all"},
        {"name": "e", "kind": "absence", "for": "5m"},
        {"name": "f", "kind": "label_starvation", "threshold": 0.2, "for": "10m"},
        {"name": "g", "signal": "missing_rate:amount@all", "op": ">", "threshold": 0.1},
    )
    assert [r.kind for r in cfg.models[0].alerts] == [
        "threshold", "relative", "control_band", "detector", "absence", "label_starvation",
        "threshold",
    ]
    multi = _config({"name": "cr", "signal": "class_recall:cat@1m", "op": "<",
                     "threshold": 0.5}, task="multiclass", classes=["cat", "dog"])
    assert multi.models[0].alerts[0].signal == "class_recall:cat@1m"
