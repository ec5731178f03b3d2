"""``monitor rules export``: the config's alert rules as a Prometheus alerting-rules file.

For teams that alert from Prometheus instead of the monitor's alert topic. Each rule
becomes one alerting rule over the series the daemon exports (see
:mod:`monitor.outputs.prometheus`); a signal ``<name>[:<subject>]@<window>`` is the
whole-model series ``monitor_model_metric{model, window, metric="<name>[:<subject>]",
dimension="model", slice=""}``.

How the kinds translate (PromQL evaluates at scrape time, in wall time):

- ``threshold``, ``label_starvation``, ``detector``: ``series <op> threshold``;
  hysteresis (``resolve_threshold``) as ``... or (series <op> resolve and on() ALERTS{...})``;
- ``relative``: the bound from the rule's own ``reference`` (a rule that only has a
  reference profile is left out, with a comment);
- ``control_band``: ``avg_over_time`` / ``stddev_over_time`` over twice the half-life, an
  approximation of the monitor's EWMA band;
- ``absence``: ``increase(monitor_predictions_received_total{model}[for]) == 0``;
- ``for`` -> ``for``, ``resolve_for`` -> ``keep_firing_for``; ``min_samples`` ->
  ``and on(...) label_count`` (or ``prediction_count``) ``>= n``;
- templates: ``{value}`` -> ``{{ $value }}`` (``{value:.2f}`` ->
  ``{{ $value | printf "%.2f" }}``), the other fields are filled in.

>>> from monitor.config import config_from_mapping
>>> cfg = config_from_mapping({"models": [{"name": "m", "task": "binary",
...     "positive_class": 1, "windows": ["1h"], "alerts": [{"name": "f1-low",
...     "signal": "f1@1h", "op": "<", "threshold": 0.8}]}]})
>>> print(rule_expressions(cfg)["f1-low"])
monitor_model_metric{model="m",window="1h",metric="f1",dimension="model",slice=""} < 0.8
"""

from __future__ import annotations

import json
import math
import string

from monitor.config import AlertRuleConfig, ModelConfig, MonitorConfig
from monitor.core.rules import Rule

__all__ = ["export_rules", "rule_expressions", "selector"]


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


def selector(model: str, signal: str) -> str:
    """The exported series of a signal of a model (whole model).

    Hook for signals exported under their own families (drift): map them here.
    """
    name, _, window = signal.rpartition("@")
    return (
        f"monitor_model_metric{{model={_q(model)},window={_q(window)},metric={_q(name)},"
        f'dimension="model",slice=""}}'
    )


_ON = "on(model, window, dimension, slice)"


def _expression(model: ModelConfig, cfg: AlertRuleConfig, rule: Rule) -> str | None:
    kind = cfg.kind
    if kind == "absence":
        return (
            f"increase(monitor_predictions_received_total{{model={_q(model.name)}}}"
            f"[{_duration(cfg.for_)}]) == 0"
        )
    series = selector(model.name, rule.signal)
    op = rule.op
    if kind in ("threshold", "label_starvation", "detector"):
        bound = cfg.threshold if cfg.threshold is not None else 0.0
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
        return _with_samples(expr, model, cfg, rule)
    expr = f"{series} {op} {_num(bound)}"
    if resolve is not None and resolve != bound:
        firing = f'ALERTS{{alertname={_q(cfg.name)},model={_q(model.name)},alertstate="firing"}}'
        expr = f"{expr} or ({series} {op} {_num(resolve)} and on() {firing})"
    return _with_samples(expr, model, cfg, rule)


def _with_samples(expr: str, model: ModelConfig, cfg: AlertRuleConfig, rule: Rule) -> str:
    if cfg.min_samples <= 0 or rule.samples_signal is None:
        return expr
    samples = selector(model.name, rule.samples_signal)
    return f"({expr}) and {_ON} {samples} >= {cfg.min_samples}"


def rule_expressions(config: MonitorConfig) -> dict[str, str]:
    """``{rule name: PromQL}`` (model name prefixed when two models share a rule name)."""
    out: dict[str, str] = {}
    for model in config.models:
        for cfg in model.alerts:
            expr = _expression(model, cfg, Rule(model, cfg, config.time.pane))
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
            expr = _expression(model, cfg, rule)
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
            summary = f"{model.name}: {cfg.name} ({rule.signal} = {{value:.4g}})"
            annotations = {"summary": summary, **cfg.annotations}
            lines.append("        annotations:")
            lines += [f"          {k}: {_q(_template(v, fields))}" for k, v in annotations.items()]
    return "\n".join(lines) + "\n"
