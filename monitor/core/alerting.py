"""Alerting: the models' pane signals in, alert transitions out, beside the accumulators.

The accumulators (:class:`~monitor.core.engine.Engine` in one process, a model's
:class:`~monitor.core.model_stage.ModelStage` with replicas) only produce
:class:`~monitor.core.model.PaneSignals`: each pane close gives a model's signal values
and its cumulative prediction count. Whoever drains them (the run loop, ``replay``,
:func:`monitor.api.evaluate`, the replicas' stage 2 driver) feeds them to an
:class:`Alerting`, which evaluates the model's rules (:mod:`monitor.core.rules`) on them
in event time and returns the transitions to send. The wall-clock evaluation of absence
rules while every input is idle (``run`` only) is here too.

An :class:`Alerting` is state: the rules' phases and the models' last prediction times.
It is checkpointed with the accumulator that feeds it (:func:`monitor.state.format.encode_engine`,
:func:`~monitor.state.format.encode_stage`), so a restart re-emits the same alert ids.
Signals must be fed in the order their panes closed, each exactly once.

>>> from monitor.config import config_from_mapping
>>> from monitor.core.model import PaneSignals
>>> cfg = config_from_mapping({"models": [{"name": "m", "task": "binary", "positive_class": 1,
...     "windows": ["all"], "alerts": [{"name": "acc", "signal": "accuracy@all", "op": "<",
...     "threshold": 0.8}]}]})
>>> alerting = Alerting(cfg)
>>> [e.status for e in alerting.feed([PaneSignals("m", 10.0, {"accuracy@all": 0.7}, 100.0)])]
['firing']
>>> [r.state for r in alerting.report("m")]
['firing']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from monitor.config import ModelConfig, MonitorConfig
from monitor.core.model import ModelState, PaneSignals
from monitor.core.report import AlertReport, Report
from monitor.core.rules import AlertEvent, ModelRules, RuleBook

__all__ = ["Alerting", "baseline_references"]

#: The signals a model without rules is evaluated on: it reads none.
_NONE: Mapping[str, float] = {}


def baseline_references(model: ModelState) -> dict[str, tuple[float, float | None]]:
    """The references of a model's relative rules from the baseline of the config's
    ``reference`` file: every baseline metric, in every window (no standard deviation).
    None without such a file (a baseline a warmup builds later is not a reference)."""
    if model.baseline is None or not model.config.reference:
        return {}
    return {
        f"{metric}@{spec.name}": (value, None)
        for metric, value in model.baseline.metrics.items()
        for spec in model.windows
    }


class Alerting:
    """Every configured model's alert rules and their state; see the module docstring.

    ``models``: the models' states as built for ``config``, whose reference baselines are
    the references of relative rules (:func:`baseline_references`)."""

    def __init__(self, config: MonitorConfig, models: Iterable[ModelState] = ()) -> None:
        self.config = config
        self.book = RuleBook(config)
        #: Transitions restored from a checkpoint made before they were sent: the next
        #: :meth:`feed` or :meth:`evaluate_idle` returns them first.
        self.alerts_out: list[AlertEvent] = []
        for model in models:
            references = baseline_references(model)
            if references and model.name in self.book.models:
                self.book.set_reference(model.name, references)

    @property
    def models(self) -> dict[str, ModelRules]:
        """Per model name, its rules with their state."""
        return self.book.models

    def feed(self, signals: Iterable[PaneSignals]) -> list[AlertEvent]:
        """Evaluate each model's rules on the signals of its panes that closed, in order;
        the transitions to send (those restored and not yet sent first)."""
        out, self.alerts_out = self.alerts_out, []
        models = self.book.models
        for sig in signals:
            rules = models.get(sig.model)
            if rules is not None:  # a model without rules reads no signal (nor makes the dict)
                values = sig.signals if rules.rules else _NONE
                out += rules.evaluate(sig.pane_end, values, sig.predictions_total)
        return out

    def evaluate_idle(self, now: float, models: Iterable[str] | None = None) -> list[AlertEvent]:
        """Absence rules at wall-clock ``now`` while all input is idle (event time stopped),
        of ``models`` (None: every model); ``run`` calls it, ``replay`` never does."""
        out, self.alerts_out = self.alerts_out, []
        names = self.book.models if models is None else models
        for name in names:
            rules = self.book.models.get(name)
            if rules is not None:
                out += rules.evaluate_idle(now)
        return out

    def set_reference(self, model: str, values: Mapping[str, tuple[float, float | None]]) -> None:
        """Reference (mean, sd) per signal for ``model``'s relative rules."""
        self.book.set_reference(model, values)

    def install(self, model: str, rules: ModelRules | None) -> None:
        """Take ``rules`` (e.g. restored with the model's stage 2) as ``model``'s, under
        this config: rules changed since start afresh. None: start the model afresh."""
        fresh = ModelRules(self._model_config(model), self.config.time.pane)
        held = self.book.models.get(model)
        if held is not None:
            fresh.references = dict(held.references)
        if rules is not None:
            rules.reconcile(self._model_config(model), self.config.time.pane)
            rules.references = fresh.references
            fresh = rules
        self.book.models[model] = fresh

    def adopt(self, old: Alerting, kept: Iterable[str]) -> None:
        """Take over the rule state of ``kept`` models from ``old`` (made under another
        config): their unchanged rules keep their state, changed or new ones start afresh;
        transitions ``old`` held unsent for them are kept."""
        kept = set(kept)
        for name in kept:
            rules = old.book.models.get(name)
            if rules is not None and name in self.book.models:
                self.install(name, rules)
        self.alerts_out = [a for a in old.alerts_out if a.model in kept]

    def firing_events(self, model: str) -> list[AlertEvent]:
        """A ``firing`` event for each of ``model``'s rules firing now, with the id it was
        sent with (what a new owner of the model re-posts to Alertmanager)."""
        rules = self.book.models.get(model)
        return [] if rules is None else rules.firing_events()

    def report(self, model: str) -> list[AlertReport]:
        """The states of one model's rules."""
        return self.book.report(model)

    def fill(self, report: Report) -> Report:
        """``report`` with each of its models' rule states (the accumulators leave them
        out); returned for chaining."""
        for name, model in report.models.items():
            model.alerts = self.book.report(name)
        return report

    def _model_config(self, model: str) -> ModelConfig:
        return next(m for m in self.config.models if m.name == model)
