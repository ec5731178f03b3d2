"""``monitor rules export``: the config's alert rules as a Prometheus alerting-rules file.

For teams that alert from Prometheus instead of the monitor's alert topic. Each rule
becomes one alerting rule over the series the daemon exports (see
:mod:`monitor.outputs.prometheus`); a signal ``<name>[:<subject>]@<window>`` is the
whole-model series ``monitor_model_metric{model, window, metric="<name>[:<subject>]",
dimension="model", slice=""}``.

Every series selector also carries ``[prometheus] rules_selector`` (default
``job="monitor"``), so the rules only read this monitor's series, not those of another
monitor scraped by the same Prometheus.

How the kinds translate (PromQL evaluates at scrape time, in wall time):

- ``threshold``, ``label_starvation``: ``series <op> threshold``;
  hysteresis (``resolve_threshold``) as ``... or (series <op> resolve and on() ALERTS{...})``;
- ``relative``: the bound from the rule's own ``reference`` (a rule that only has a
  reference profile is left out, with a comment);
- ``control_band``: ``avg_over_time`` / ``stddev_over_time`` over twice the half-life, an
  approximation of the monitor's EWMA band;
- ``detector``: ``increase(monitor_detector_detections_total{model, detector}[span]) <op>
  threshold`` over a span of at least a minute (four panes), so a detection is seen
  whatever the scrape interval;
- ``absence``: ``increase(monitor_predictions_received_total{model}[for]) == 0``; its
  summary says how long the model has been silent (``$value`` would be 0);
- ``for`` -> ``for``, ``resolve_for`` -> ``keep_firing_for``; ``min_samples`` ->
  ``and on(...) label_count`` (or ``prediction_count``) ``>= n``;
- templates: ``{value}`` -> ``{{ $value }}`` (``{value:.2f}`` ->
  ``{{ $value | printf "%.2f" }}``), the other fields are filled in.

>>> from monitor.config import config_from_mapping
>>> cfg = config_from_mapping({"models": [{"name": "m", "task": "binary",
...     "positive_class": 1, "windows": ["1h"], "alerts": [{"name": "f1-low",
...     "signal": "f1@1h", "op": "<", "threshold": 0.8}]}]})
>>> rule_expressions(cfg)["f1-low"] == selector("m", "f1@1h") + " < 0.8"
True
>>> selector("m", "f1@1h", 'job="x"')
'monitor_model_metric{job="x",model="m",window="1h",metric="f1",dimension="model",slice=""}'

A second group, ``monitor-self``, watches the monitor itself (see :func:`self_rules`).
"""

from __future__ import annotations

import json
import math
import string

from monitor.config import AlertRuleConfig, ModelConfig, MonitorConfig
from monitor.core.rules import Rule

__all__ = ["export_rules", "rule_expressions", "selector", "self_rules"]


def _q(text: str) -> str:
    """A PromQL / YAML double-quoted string."""
    return json.dumps(text)


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else f"{value:g}"


def _duration(seconds: float) -> str:
    """Prometheus duration: ``90`` -> ``1m30s``."""
    whole = max(round(seconds), 0)
    if whole == 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out


def _series(name: str, scope: str, **labels: str) -> str:
    """``name{scope,label="value",...}``."""
    matchers = [scope] if scope else []
    matchers += [f"{k}={_q(v)}" for k, v in labels.items()]
    return f"{name}{{{','.join(matchers)}}}"


def selector(model: str, signal: str, scope: str = 'job="monitor"') -> str:
    """The exported series of a signal of a model (whole model), within ``scope`` (label
    matchers, ``[prometheus] rules_selector``).

    Hook for signals exported under their own families (drift): map them here.
    """
    name, _, window = signal.rpartition("@")
    return _series("monitor_model_metric", scope, model=model, window=window, metric=name,
                   dimension="model", slice="")


_ON = "on(model, window, dimension, slice)"


def _detector_span(rule: Rule) -> float:
    """The span a detector rule counts detections over: a minute, or four panes."""
    return max(60.0, 4 * rule.pane)


def _expression(model: ModelConfig, cfg: AlertRuleConfig, rule: Rule, scope: str) -> str | None:
    kind = cfg.kind
    if kind == "absence":
        received = _series("monitor_predictions_received_total", scope, model=model.name)
        return f"increase({received}[{_duration(cfg.for_)}]) == 0"
    if kind == "detector":
        detector = rule.signal.rpartition("@")[0].partition(":")[0]
        found = _series("monitor_detector_detections_total", scope, model=model.name,
                        detector=detector)
        bound = rule.threshold
        return f"increase({found}[{_duration(_detector_span(rule))}]) {rule.op} {_num(bound)}"
    series = selector(model.name, rule.signal, scope)
    op = rule.op
    if kind in ("threshold", "label_starvation"):
        bound = rule.threshold
        resolve = cfg.resolve_threshold
    elif kind == "relative":
        if cfg.reference is None:
            return None
        sign = -1.0 if rule.lower else 1.0
        ref = cfg.reference
        if cfg.drop is not None:
            bound = ref + sign * cfg.drop * abs(ref)
            resolve = None if cfg.resolve_drop is None else ref + sign * cfg.resolve_drop * abs(ref)
        else:
            assert cfg.k is not None and cfg.reference_sd is not None
            bound = ref + sign * cfg.k * cfg.reference_sd
            ref_sd = cfg.reference_sd
            resolve = None if cfg.resolve_k is None else ref + sign * cfg.resolve_k * ref_sd
    else:  # control band
        span = _duration(2 * (cfg.half_life or 20 * rule.pane))
        k = _num(cfg.k if cfg.k is not None else 3.0)
        mean = f"avg_over_time({series}[{span}])"
        sd = f"stddev_over_time({series}[{span}])"
        if cfg.direction == "down":
            expr = f"{series} < {mean} - {k} * {sd}"
        elif cfg.direction == "up":
            expr = f"{series} > {mean} + {k} * {sd}"
        else:
            expr = f"abs({series} - {mean}) > {k} * {sd}"
        return _with_samples(expr, model, cfg, rule, scope)
    expr = f"{series} {op} {_num(bound)}"
    if resolve is not None and resolve != bound:
        firing = _series("ALERTS", scope, alertname=cfg.name, model=model.name,
                         alertstate="firing")
        expr = f"{expr} or ({series} {op} {_num(resolve)} and on() {firing})"
    return _with_samples(expr, model, cfg, rule, scope)


def _with_samples(
    expr: str, model: ModelConfig, cfg: AlertRuleConfig, rule: Rule, scope: str
) -> str:
    if cfg.min_samples <= 0 or rule.samples_signal is None:
        return expr
    samples = selector(model.name, rule.samples_signal, scope)
    return f"({expr}) and {_ON} {samples} >= {cfg.min_samples}"


def rule_expressions(config: MonitorConfig) -> dict[str, str]:
    """``{rule name: PromQL}`` (model name prefixed when two models share a rule name)."""
    out: dict[str, str] = {}
    scope = config.prometheus.rules_selector
    for model in config.models:
        for cfg in model.alerts:
            expr = _expression(model, cfg, Rule(model, cfg, config.time.pane), scope)
            if expr is not None:
                key = cfg.name if cfg.name not in out else f"{model.name}/{cfg.name}"
                out[key] = expr
    return out


def _template(text: str, fields: dict[str, str | float]) -> str:
    """A monitor annotation template as a Prometheus one."""
    out = []
    for literal, name, spec, conv in string.Formatter().parse(text):
        out.append(literal.replace("{{", "{ {"))
        if name is None:
            continue
        if name == "value":
            out.append(f'{{{{ $value | printf "%{spec}" }}}}' if spec else "{{ $value }}")
            continue
        value = fields.get(name, "")
        try:
            out.append(format(value, spec or ""))
        except (ValueError, TypeError):
            out.append(str(value))
        del conv
    return "".join(out)


def export_rules(config: MonitorConfig) -> str:
    """The rules file (YAML) for ``promtool check rules`` and Prometheus' ``rule_files``."""
    lines = [
        "# Generated by `monitor rules export`: the monitor's alert rules over its exported",
        "# series, for alerting from Prometheus. Regenerate after changing the config.",
        "groups:",
    ]
    for model in config.models:
        lines.append(f"  - name: {_q('monitor-' + model.name)}")
        lines.append("    rules:")
        if not model.alerts:
            lines[-1] = "    rules: []"
        for cfg in model.alerts:
            rule = Rule(model, cfg, config.time.pane)
            expr = _expression(model, cfg, rule, config.prometheus.rules_selector)
            if expr is None:
                lines.append(f"      # {cfg.name}: left out, its reference comes from a profile")
                continue
            bound = cfg.threshold if cfg.threshold is not None else cfg.for_
            fields: dict[str, str | float] = {
                "threshold": bound if bound is not None and math.isfinite(bound) else "",
                "model": model.name,
                "rule": cfg.name,
                "signal": rule.signal,
                "severity": cfg.severity,
                "window": rule.window,
            }
            lines.append(f"      - alert: {_q(cfg.name)}")
            lines.append(f"        expr: {_q(expr)}")
            if rule.for_ > 0:
                lines.append(f"        for: {_duration(rule.for_)}")
            if rule.resolve_for > 0:
                lines.append(f"        keep_firing_for: {_duration(rule.resolve_for)}")
            labels = {"model": model.name, "rule": cfg.name, "severity": cfg.severity}
            labels.update({k: _template(v, fields) for k, v in cfg.labels.items()})
            lines.append("        labels:")
            lines += [f"          {k}: {_q(v)}" for k, v in labels.items()]
            if cfg.kind == "absence":
                summary = f"{model.name}: no predictions for {_duration(cfg.for_)}"
            elif cfg.kind == "detector":
                span = _duration(_detector_span(rule))
                summary = f"{model.name}: {{value:.4g}} {rule.signal} detection(s) in {span}"
            else:
                summary = f"{model.name}: {cfg.name} ({rule.signal} = {{value:.4g}})"
            annotations = {"summary": summary, **cfg.annotations}
            lines.append("        annotations:")
            lines += [f"          {k}: {_q(_template(v, fields))}" for k, v in annotations.items()]
    lines += self_rules(config)
    return "\n".join(lines) + "\n"


#: The monitor-self group: (alert, PromQL with ``{s}`` for the scope matchers, for,
#: severity, summary). ``{max_lag}`` and ``{stale}`` come from the config.
_SELF_RULES: tuple[tuple[str, str, str, str, str], ...] = (
    ("MonitorDown", "up{{{s}}} == 0", "1m", "critical",
     "monitor {{{{ $labels.instance }}}} is down: Prometheus cannot scrape it"),
    ("MonitorInputUnavailable", "monitor_input_up{{{s}}} == 0", "1m", "critical",
     "monitor {{{{ $labels.instance }}}} cannot read its input from Kafka; its model alerts "
     "(absence, label starvation) hold until it can"),
    ("MonitorNotReady", "monitor_ready{{{s}}} == 0", "10m", "warning",
     "monitor {{{{ $labels.instance }}}} has not been ready for 10m"),
    ("MonitorCheckpointStale",
     "time() - monitor_checkpoint_last_timestamp_seconds{{{s}}} > {stale}", "0s",
     "critical",
     "monitor {{{{ $labels.instance }}}}: no successful checkpoint for "
     "{{{{ $value | humanizeDuration }}}}"),
    ("MonitorLagGrowing",
     "sum by (job, instance) (monitor_consumer_lag{{{s}}}) > {max_lag} "
     "and sum by (job, instance) (delta(monitor_consumer_lag{{{s}}}[10m])) > 0", "10m",
     "warning",
     "monitor {{{{ $labels.instance }}}} falls behind its input: "
     "{{{{ $value }}}} messages and growing"),
)


def self_rules(config: MonitorConfig) -> list[str]:
    """The ``monitor-self`` group's lines: the monitor down, not reading its input, not
    ready, without a successful checkpoint for three intervals (and at least 5 minutes),
    and behind by more than ``[readiness] max_lag`` messages and growing for 10 minutes."""
    scope = config.prometheus.rules_selector
    stale = _num(max(300.0, 3 * config.state.checkpoint_interval))
    lines = ["  - name: \"monitor-self\"", "    rules:"]
    for name, expr, for_, severity, summary in _SELF_RULES:
        text = expr.format(s=scope, stale=stale, max_lag=config.readiness.max_lag)
        text = text.replace("{}", "")  # an empty scope
        lines.append(f"      - alert: {_q(name)}")
        lines.append(f"        expr: {_q(text)}")
        if for_ != "0s":
            lines.append(f"        for: {for_}")
        lines.append("        labels:")
        lines.append(f"          severity: {_q(severity)}")
        lines.append("        annotations:")
        lines.append(f"          summary: {_q(summary.format())}")
    return lines
