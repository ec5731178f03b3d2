"""Alert rules: signals in, alert events out, in event time.

Pure core code (no I/O). The rules run beside the accumulators, not in them: an
:class:`~monitor.core.alerting.Alerting` holds a :class:`RuleBook` and evaluates a model's
rules on each :class:`~monitor.core.model.PaneSignals` its accumulator (the engine, or
the model's stage 2 with replicas) drains, in pane order, so a replay of the same input
gives the same alerts as ``run``; rule state is checkpointed with the accumulator.

Each rule moves through ``inactive -> pending -> firing -> inactive``:

- *pending*: the firing condition holds; it must keep holding for ``for`` (event time);
  a pane where it does not hold sends the rule back to inactive;
- *firing*: an alert event with ``status="firing"`` is emitted, ``starts_at`` = the end of
  the pane where the condition started to hold;
- resolution: the *resolve* condition (past ``resolve_threshold``, the hysteresis bound,
  default the firing one) must hold for ``resolve_for`` (default ``for``); then a
  ``status="resolved"`` event with the same ``alert_id`` is emitted and the rule stays
  quiet for ``cooldown``.

A signal that is undefined (NaN, absent) or a window with fewer than ``min_samples``
samples changes nothing: no data is neither a firing nor a resolution.

``alert_id`` is a hash of (model, rule, starts_at): deterministic, so a restart that
re-emits an alert (from the checkpointed state and offsets) re-emits the same id.

Absence of predictions is judged at each pane close from the model's cumulative
prediction count (``PaneSignals.predictions_total``): a model that stops while others
continue keeps being evaluated as panes close. When *all* traffic stops, event time stops
too; ``run`` then calls :meth:`RuleBook.evaluate_idle` with the wall clock (only absence
rules are evaluated there), which replay, having no wall clock, never does.

>>> from monitor.config import config_from_mapping
>>> cfg = config_from_mapping({"models": [{"name": "m", "task": "binary", "positive_class": 1,
...     "windows": ["all"], "alerts": [{"name": "acc", "signal": "accuracy@all", "op": "<",
...     "threshold": 0.8}]}]})
>>> book = RuleBook(cfg)
>>> [e.status for e in book.evaluate("m", 10.0, {"accuracy@all": 0.7}, 100.0)]
['firing']
>>> [e.status for e in book.evaluate("m", 20.0, {"accuracy@all": 0.9}, 200.0)]
['resolved']
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from monitor.catalogue import SIGNALS
from monitor.config import (
    AlertRuleConfig,
    ModelConfig,
    MonitorConfig,
    parse_signal,
)
from monitor.core.report import AlertReport

__all__ = ["AlertEvent", "ModelRules", "Rule", "RuleBook", "RuleState", "alert_id"]

Status = Literal["firing", "resolved"]
Phase = Literal["inactive", "pending", "firing"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: A detector alert resolves after this long without a detection, unless ``resolve_for``.
DETECTOR_RESOLVE_FOR = 300.0
#: What an absence alert names as its signal: seconds since the last prediction.
ABSENCE_SIGNAL = "prediction_silence_seconds"


def alert_id(model: str, rule: str, starts_at: float) -> str:
    """Deterministic id of one firing: the same (model, rule, start) gives the same id.

    >>> alert_id("fraud", "f1-low", 1700000000.0) == alert_id("fraud", "f1-low", 1.7e9)
    True
    """
    blob = f"{model}\x00{rule}\x00{starts_at!r}".encode()
    return hashlib.sha256(blob).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert transition, as DESIGN section 2 shapes it (times are Unix seconds here;
    :mod:`monitor.outputs.alerts` renders them as RFC 3339)."""

    alert_id: str
    status: Status
    rule: str
    severity: str
    model: str
    model_version: str
    signal: str
    value: float | None
    threshold: float | None
    starts_at: float
    ends_at: float | None
    ts: float
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RuleState:
    """The mutable state of one rule (checkpointed: :mod:`monitor.state.format`)."""

    phase: Phase = "inactive"
    since: float | None = None  # pending: condition holds since; firing: starts_at
    clear_since: float | None = None  # firing: resolve condition holds since
    quiet_until: float = -math.inf  # cooldown after a resolution
    value: float | None = None
    bound: float | None = None
    evaluated_at: float | None = None
    ewm_mean: float = 0.0  # control band
    ewm_var: float = 0.0
    ewm_n: int = 0
    transitions: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Check:
    """One evaluation: the value, the firing bound, and both conditions."""

    value: float
    bound: float
    active: bool
    clear: bool


class Rule:
    """A compiled rule (immutable); its state is a separate :class:`RuleState`."""

    def __init__(self, model: ModelConfig, cfg: AlertRuleConfig, pane: float) -> None:
        self.cfg = cfg
        self.model = model.name
        self.name = cfg.name
        self.kind = cfg.kind
        self.pane = pane
        self.signal = cfg.signal or self._default_signal(model)
        self.window = self.signal.rpartition("@")[2] if self.signal else ""
        self.samples_signal = self._samples_signal(model)
        #: The bound of a threshold, starvation or detector rule: the configured one, else
        #: the catalogue's usual bound for the signal (a detector's: any detection), else 0.
        self.threshold = cfg.threshold if cfg.threshold is not None else self._usual_bound()
        self.for_ = 0.0 if cfg.kind == "absence" else cfg.for_
        if cfg.resolve_for is not None:
            self.resolve_for = cfg.resolve_for
        elif cfg.kind == "detector":
            self.resolve_for = DETECTOR_RESOLVE_FOR
        else:
            self.resolve_for = self.for_
        default_op = {"absence": ">=", "label_starvation": "<", "detector": ">"}
        self.op = cfg.op or default_op.get(cfg.kind, "<")
        self.lower = self.op in ("<", "<=")
        if cfg.kind == "control_band":
            half_life = cfg.half_life or 20 * pane
            self.alpha = 1.0 - math.exp(-pane * math.log(2) / half_life)

    def _default_signal(self, model: ModelConfig) -> str:
        if self.kind == "label_starvation":
            sliding = [w for w in model.windows if w != "all"]
            return f"label_coverage@{(sliding or model.windows)[0]}"
        return ABSENCE_SIGNAL if self.kind == "absence" else ""

    def _usual_bound(self) -> float:
        if not self.signal or self.kind not in ("threshold", "label_starvation", "detector"):
            return 0.0
        found = SIGNALS.get(parse_signal(self.signal)[0])
        return found.threshold if found is not None and found.threshold is not None else 0.0

    def _samples_signal(self, model: ModelConfig) -> str | None:
        if self.kind == "absence" or not self.signal:
            return None
        name, _subject, window = parse_signal(self.signal)
        labelled = name in SIGNALS and SIGNALS[name].labelled
        return f"label_count@{window}" if labelled else f"prediction_count@{window}"

    # ----------------------------------------------------------------- conditions
    def check(
        self,
        state: RuleState,
        value: float,
        reference: tuple[float, float | None] | None,
    ) -> _Check | None:
        """The conditions for ``value`` (None when the rule cannot judge it)."""
        cfg = self.cfg
        cmp = _OPS[self.op]
        if self.kind in ("threshold", "label_starvation", "detector"):
            bound = self.threshold
            resolve = cfg.resolve_threshold if cfg.resolve_threshold is not None else bound
            return _Check(value, bound, cmp(value, bound), not cmp(value, resolve))
        if self.kind == "absence":
            return _Check(value, self.cfg.for_, value >= self.cfg.for_, value < self.cfg.for_)
        if self.kind == "relative":
            if reference is None:
                return None
            ref, sd = reference
            sign = -1.0 if self.lower else 1.0
            if cfg.drop is not None:
                resolve_drop = cfg.resolve_drop if cfg.resolve_drop is not None else cfg.drop
                bound = ref + sign * cfg.drop * abs(ref)
                resolve = ref + sign * resolve_drop * abs(ref)
            else:
                if sd is None or cfg.k is None:
                    return None
                resolve_k = cfg.resolve_k if cfg.resolve_k is not None else cfg.k
                bound = ref + sign * cfg.k * sd
                resolve = ref + sign * resolve_k * sd
            return _Check(value, bound, cmp(value, bound), not cmp(value, resolve))
        # control band: compare with the band of the values before this one
        if state.ewm_n < cfg.warmup:
            return None
        k = cfg.k if cfg.k is not None else 3.0
        resolve_k = cfg.resolve_k if cfg.resolve_k is not None else k
        sd = max(math.sqrt(max(state.ewm_var, 0.0)), 1e-12, 1e-9 * abs(state.ewm_mean))
        mean = state.ewm_mean
        low, high = mean - k * sd, mean + k * sd
        below, above = value < low, value > high
        if cfg.direction == "down":
            above = False
        elif cfg.direction == "up":
            below = False
        inside = abs(value - mean) <= resolve_k * sd
        bound = low if (below or (not above and value < mean)) else high
        return _Check(value, bound, below or above, inside)

    def update_band(self, state: RuleState, value: float) -> None:
        """Fold ``value`` into the rule's own EWMA mean and variance (control band)."""
        # Plain mean and variance until 1/alpha values are in, then exponential weights:
        # an EWMA started from one value would have a band of width zero at first.
        alpha = max(self.alpha, 1.0 / (state.ewm_n + 1))
        diff = value - state.ewm_mean
        incr = alpha * diff
        state.ewm_mean += incr
        state.ewm_var = (1.0 - alpha) * (state.ewm_var + diff * incr)
        state.ewm_n += 1


class ModelRules:
    """The rules of one model with their states, and the model's last prediction time."""

    def __init__(self, model: ModelConfig, pane: float) -> None:
        self.model = model.name
        self.rules: dict[str, Rule] = {r.name: Rule(model, r, pane) for r in model.alerts}
        self.states: dict[str, RuleState] = {name: RuleState() for name in self.rules}
        self.last_active: float | None = None  # end of the last pane with predictions
        self.predictions_seen = 0.0
        #: signal -> (reference mean, reference sd): the hook for a reference profile.
        self.references: dict[str, tuple[float, float | None]] = {}

    def reconcile(self, model: ModelConfig, pane: float) -> None:
        """Adopt a (possibly changed) config: unchanged rules keep their state."""
        old_rules, old_states = self.rules, self.states
        self.rules = {r.name: Rule(model, r, pane) for r in model.alerts}
        self.states = {}
        for name, rule in self.rules.items():
            same = name in old_rules and old_rules[name].cfg == rule.cfg
            self.states[name] = old_states[name] if same else RuleState()

    def reference(self, rule: Rule) -> tuple[float, float | None] | None:
        """The reference of a relative rule: the rule's own, else the reference profile's."""
        if rule.cfg.reference is not None:
            return rule.cfg.reference, rule.cfg.reference_sd
        return self.references.get(rule.signal)

    def evaluate(
        self, t: float, signals: Mapping[str, float], predictions_total: float
    ) -> list[AlertEvent]:
        """Evaluate every rule at pane end ``t``; return the transitions to publish."""
        if self.last_active is None or predictions_total > self.predictions_seen:
            self.last_active = t
        self.predictions_seen = max(self.predictions_seen, predictions_total)
        out: list[AlertEvent] = []
        for name, rule in self.rules.items():
            state = self.states[name]
            if rule.kind == "absence":
                value: float | None = t - self.last_active
            else:
                value = signals.get(rule.signal)
            if value is not None and not math.isfinite(value):
                value = None
            samples = signals.get(rule.samples_signal) if rule.samples_signal else None
            enough = rule.cfg.min_samples <= 0 or (
                samples is not None and math.isfinite(samples) and samples >= rule.cfg.min_samples
            )
            if value is None or not enough:
                continue
            event = self._step(rule, state, t, value)
            if rule.kind == "control_band":
                rule.update_band(state, value)
            if event is not None:
                out.append(event)
        return out

    def evaluate_idle(self, now: float) -> list[AlertEvent]:
        """Absence rules only, at wall-clock ``now``, while every input is idle (``run``)."""
        if self.last_active is None:
            return []
        out = []
        for name, rule in self.rules.items():
            if rule.kind == "absence":
                event = self._step(rule, self.states[name], now, max(now - self.last_active, 0))
                if event is not None:
                    out.append(event)
        return out

    def _step(self, rule: Rule, state: RuleState, t: float, value: float) -> AlertEvent | None:
        check = rule.check(state, value, self.reference(rule) if rule.kind == "relative" else None)
        if check is None:
            return None
        state.value, state.bound, state.evaluated_at = check.value, check.bound, t
        if state.phase == "inactive":
            if not check.active or t < state.quiet_until:
                return None
            state.phase, state.since = "pending", t
            state.transitions["pending"] += 1
        elif state.phase == "pending" and not check.active:
            state.phase, state.since = "inactive", None
            return None
        if state.phase == "pending":
            assert state.since is not None
            if t - state.since < rule.for_:
                return None
            state.phase, state.clear_since = "firing", None
            state.transitions["firing"] += 1
            return self._event(rule, state, "firing", t)
        # firing
        if not check.clear:
            state.clear_since = None
            return None
        if state.clear_since is None:
            state.clear_since = t
        if t - state.clear_since < rule.resolve_for:
            return None
        event = self._event(rule, state, "resolved", t)
        state.phase, state.since, state.clear_since = "inactive", None, None
        state.quiet_until = t + rule.cfg.cooldown
        state.transitions["resolved"] += 1
        return event

    def _event(self, rule: Rule, state: RuleState, status: Status, t: float) -> AlertEvent:
        assert state.since is not None
        starts = state.since
        fields: dict[str, Any] = {
            "value": state.value,
            "threshold": state.bound,
            "model": self.model,
            "rule": rule.name,
            "signal": rule.signal,
            "severity": rule.cfg.severity,
            "window": rule.window,
        }
        labels = {
            "alertname": rule.name,
            "model": self.model,
            "rule": rule.name,
            "severity": rule.cfg.severity,
            "signal": rule.signal,
        }
        labels.update({k: _render(v, fields) for k, v in rule.cfg.labels.items()})
        annotations = {
            "summary": _render(
                "{model}: {rule} ({signal} = {value:.4g}, bound {threshold:.4g})", fields
            ),
        }
        annotations.update({k: _render(v, fields) for k, v in rule.cfg.annotations.items()})
        return AlertEvent(
            alert_id=alert_id(self.model, rule.name, starts),
            status=status,
            rule=rule.name,
            severity=rule.cfg.severity,
            model=self.model,
            model_version="",
            signal=rule.signal,
            value=state.value,
            threshold=state.bound,
            starts_at=starts,
            ends_at=max(t, starts) if status == "resolved" else None,
            ts=t,
            labels=labels,
            annotations=annotations,
        )

    def firing_events(self) -> list[AlertEvent]:
        """A ``firing`` event for each rule firing now, as it was sent when it fired (same
        id): what a new owner of the model re-posts to Alertmanager after a takeover."""
        return [
            self._event(rule, state, "firing", state.evaluated_at or state.since or 0.0)
            for name, rule in self.rules.items()
            if (state := self.states[name]).phase == "firing" and state.since is not None
        ]

    def report(self) -> list[AlertReport]:
        """The rules' states for the Prometheus exporter and views."""
        return [
            AlertReport(
                rule=name,
                severity=rule.cfg.severity,
                kind=rule.kind,
                signal=rule.signal,
                state=self.states[name].phase,
                value=self.states[name].value,
                threshold=self.states[name].bound,
                since=self.states[name].since,
                transitions=dict(self.states[name].transitions),
            )
            for name, rule in self.rules.items()
        ]


def _render(template: str, fields: Mapping[str, Any]) -> str:
    """``template`` with ``{value}``, ``{threshold}``, ... filled in; as is if it cannot be."""
    try:
        return template.format_map(fields)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        safe = {k: ("n/a" if v is None else v) for k, v in fields.items()}
        try:
            return template.replace(":.4g}", "}").format_map(safe)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return template


class RuleBook:
    """Every model's rules with their state (an :class:`~monitor.core.alerting.Alerting`'s)."""

    def __init__(self, config: MonitorConfig) -> None:
        self.pane = config.time.pane
        self.models: dict[str, ModelRules] = {
            m.name: ModelRules(m, self.pane) for m in config.models
        }
        self._config_id = id(config)

    def reconcile(self, config: MonitorConfig) -> None:
        """Follow a config swapped in after a checkpoint load (rules may have changed)."""
        if id(config) == self._config_id:
            return
        self._config_id = id(config)
        models = {}
        for m in config.models:
            rules = self.models.get(m.name) or ModelRules(m, config.time.pane)
            rules.reconcile(m, config.time.pane)
            models[m.name] = rules
        self.models = models

    def evaluate(
        self, model: str, t: float, signals: Mapping[str, float], predictions_total: float
    ) -> list[AlertEvent]:
        """Evaluate one model's rules on the signals of the pane that ended at ``t``."""
        rules = self.models.get(model)
        return [] if rules is None else rules.evaluate(t, signals, predictions_total)

    def evaluate_idle(self, now: float) -> list[AlertEvent]:
        """Absence rules of every model at wall-clock ``now`` (all input idle; ``run`` only)."""
        return [e for rules in self.models.values() for e in rules.evaluate_idle(now)]

    def set_reference(self, model: str, values: Mapping[str, tuple[float, float | None]]) -> None:
        """Reference (mean, sd) per signal for relative rules, e.g. from a reference profile."""
        self.models[model].references.update(values)

    def report(self, model: str) -> list[AlertReport]:
        """The states of one model's rules."""
        rules = self.models.get(model)
        return [] if rules is None else rules.report()

    def firing(self) -> Iterable[tuple[str, AlertReport]]:
        """(model, rule report) of every firing rule."""
        for name, rules in self.models.items():
            for r in rules.report():
                if r.state == "firing":
                    yield name, r
