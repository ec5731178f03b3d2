"""The generated references in ``docs/``: so they cannot drift from the code.

- ``docs/configuration.md`` from the pydantic models of :mod:`monitor.config`: every key
  of every table with its type, default, the environment variable that overrides it
  (:mod:`monitor.envconfig`) and its description (the field's own, else the line in
  :data:`MORE_DESCRIPTIONS`);
- ``docs/metrics.md`` from the catalogue of signals, :mod:`monitor.catalogue` (each
  signal's form, kind, unit, direction, usual alert bound, tasks and description), and
  the Prometheus metric families of :mod:`monitor.outputs.prometheus`.

``python -m monitor.docgen --write`` rewrites both; ``python -m monitor.docgen --check``
exits 1 when one differs from what the code says (the tests run the same comparison).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from monitor import config as cfg
from monitor.catalogue import DETECTOR_STREAMS, OUTPUT_SUBJECTS, SIGNALS, TASKS, Signal
from monitor.envconfig import env_name

__all__ = [
    "MORE_DESCRIPTIONS",
    "TABLES",
    "Row",
    "main",
    "render",
    "render_metrics",
    "rows",
    "signal_names",
]

#: The tables of the file, in order: heading, model, key path of the environment variable.
TABLES: list[tuple[str, type[BaseModel], tuple[str, ...]]] = [
    ("[kafka]", cfg.KafkaConfig, ("kafka",)),
    ("[http]", cfg.HttpConfig, ("http",)),
    ("[state]", cfg.StateConfig, ("state",)),
    ("[time]", cfg.TimeConfig, ("time",)),
    ("[limits]", cfg.LimitsConfig, ("limits",)),
    ("[readiness]", cfg.ReadinessConfig, ("readiness",)),
    ("[prometheus]", cfg.PrometheusConfig, ("prometheus",)),
    ("[alertmanager]", cfg.AlertmanagerConfig, ("alertmanager",)),
    ("[outputs]", cfg.OutputsConfig, ("outputs",)),
    ("[[models]]", cfg.ModelConfig, ("models", "<model>")),
    ("[[models.alerts]]", cfg.AlertRuleConfig, ("models", "<model>", "alerts", "<rule>")),
    ('models.detectors: {name = "cusum", ...}', cfg.CusumOptions, ()),
]

#: Descriptions of keys whose field has none, by ``Model.field``.
MORE_DESCRIPTIONS: dict[str, str] = {
    "KafkaConfig.predictions_topic": "input topic of prediction events, keyed by prediction_id",
    "KafkaConfig.labels_topic": "input topic of label events (same partition count)",
    "KafkaConfig.alerts_topic": "output topic of alert events (key: the model)",
    "KafkaConfig.dead_letter_topic": "output topic of rejected input messages",
    "KafkaConfig.security_protocol": "how the client talks to the brokers",
    "KafkaConfig.sasl_mechanism": "required with SASL_*",
    "KafkaConfig.sasl_username": "SASL user (better set from the environment)",
    "KafkaConfig.sasl_password": "SASL password (a secret: never logged; set it from the "
    "environment)",
    "KafkaConfig.ssl_cafile": "CA bundle to verify the brokers (PEM)",
    "KafkaConfig.ssl_certfile": "client certificate (PEM)",
    "KafkaConfig.ssl_keyfile": "client private key (PEM)",
    "ModelConfig.name": "the model's name, unique in the file (the 'model' label)",
    "ModelConfig.task": "what the model predicts",
    "ModelConfig.positive_class": "binary: the label value counted as positive",
    "ModelConfig.classes": "multiclass: every class; binary: optionally both classes",
    "ModelConfig.windows": "'all' (cumulative), a sliding span like '1h', or 'ewm' + half-life",
    "ModelConfig.features": 'features to profile: {amount = "numeric", country = "categorical"}',
    "ModelConfig.alerts": "alert rules, see [[models.alerts]]",
    "AlertRuleConfig.severity": "the alert's severity label",
    "AlertRuleConfig.labels": "extra alert labels (templates allowed)",
    "AlertRuleConfig.annotations": "alert annotations, e.g. summary (templates allowed)",
    "CusumOptions.name": "selects the CUSUM detector",
}

_UNIT_SECONDS = (("w", 604800.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


@dataclass(frozen=True)
class Row:
    """One key of a table as the reference shows it."""

    key: str
    type: str
    default: str
    env: str
    description: str


def _validator_names(info: FieldInfo) -> set[str]:
    return {getattr(getattr(m, "func", None), "__name__", "") for m in info.metadata}


def _type(annotation: Any) -> str:
    """A short reader's name for a type: ``text``, ``integer``, ``"a" | "b"``, ``list of text``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        validators = {getattr(getattr(m, "func", None), "__name__", "")
                      for m in annotation.__metadata__}
        if "parse_duration" in validators:
            return "duration"
        if "_number" in validators:
            return "number"
        return _type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return " | ".join(f'"{v}"' for v in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type(typing.get_args(annotation)[0])}"
    if origin is dict:
        return f"table of {_type(typing.get_args(annotation)[1])}"
    names = {str: "text", int: "integer", float: "number", bool: "boolean", SecretStr: "secret"}
    if annotation in names:
        return names[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"table ({annotation.__name__})"
    return str(annotation).replace("typing.", "")


def _duration(seconds: float) -> str:
    """``"10s"``, ``"5m"``, ``"250ms"``, as a config file writes a duration.

    >>> _duration(21600.0), _duration(0.05), _duration(0.0)
    ('"6h"', '"50ms"', '"0s"')
    """
    for unit, size in _UNIT_SECONDS:
        if seconds >= size and (seconds / size).is_integer():
            return f'"{seconds / size:g}{unit}"'
    if seconds == 0:
        return '"0s"'
    return f'"{seconds * 1000:g}ms"'


def _literal(value: Any, duration: bool) -> str:
    if value is None:
        return "unset"
    if duration and isinstance(value, int | float):
        return _duration(float(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int):
        return f"{value:_}" if value >= 10_000 else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v, duration) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_literal(v, duration)}" for k, v in value.items()) + "}"
    return str(value)


def _default(info: FieldInfo, duration: bool) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(table)"
        return _literal(value, duration)
    if info.default is PydanticUndefined:
        return "required"
    return _literal(info.default, duration)


def rows(model: type[BaseModel], env_path: tuple[str, ...]) -> Iterator[Row]:
    """The rows of ``model``'s table; ``env_path`` is the table's part of the variable name."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        validators = _validator_names(info)
        duration = "parse_duration" in validators
        kind = "duration" if duration else _type(info.annotation)
        if "_number" in validators:
            kind = "number"
        if duration and info.default is None:
            kind = "duration"
        description = info.description or MORE_DESCRIPTIONS.get(f"{model.__name__}.{name}", "")
        env = env_name(*env_path, key) if env_path else "(inside models.detectors)"
        yield Row(key, kind, _default(info, duration), env, description)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _prose(text: str) -> str:
    """``text`` (a description or a docstring) as Markdown that shows it as written."""
    text = text.replace("``", "`")
    out: list[str] = []
    for i, part in enumerate(text.split("`")):
        if i % 2 == 0:  # outside code spans: escape what Markdown would take as markup
            for char in "\\<>*_[]":
                part = part.replace(char, "\\" + char)
        out.append(part)
    return _cell("`".join(out))


def render() -> str:
    """The whole reference, as Markdown."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m monitor.docgen --write` from monitor/config.py; "
        "do not edit. -->",
        "",
        "The daemon reads one TOML file (`monitor run --config FILE`; check it with "
        "`monitor check-config FILE`). Unknown keys are errors; every error names the key "
        "and the reason. Durations are text like `\"250ms\"`, `\"10s\"`, `\"5m\"`, `\"1.5h\"`, "
        "`\"2d\"`, `\"1w\"` (or a number of seconds). Relative paths are relative to the "
        "file's directory. `config/example.toml` is a complete, commented example.",
        "",
        "## Environment overrides",
        "",
        "Every key can be set from the environment: `MONITOR__<TABLE>__<KEY>=value`, the key "
        "path joined by double underscores (any case), as listed in the tables below. A "
        "model, and an alert rule of a model, is picked by its name or by its index in the "
        "file: `MONITOR__MODELS__FRAUD__LABEL_TTL=2h` or `MONITOR__MODELS__0__LABEL_TTL=2h`. "
        "Text keys take the value as written; other keys read it as a TOML value when it is "
        "one (`500`, `true`, `[\"all\", \"1h\"]`) and as text otherwise (`10s`). Empty "
        "values are ignored; a `MONITOR__` variable that names no key is an error, and the "
        "errors of an invalid config end with a line naming the variables that were "
        "applied. The environment wins over the file.",
        "",
        "The connection variables `MONITOR_KAFKA_BOOTSTRAP`, `MONITOR_KAFKA_SECURITY_PROTOCOL`, "
        "`MONITOR_KAFKA_SASL_MECHANISM`, `MONITOR_KAFKA_SASL_USERNAME`, "
        "`MONITOR_KAFKA_SASL_PASSWORD`, `MONITOR_KAFKA_SSL_CAFILE`, "
        "`MONITOR_KAFKA_SSL_CERTFILE`, `MONITOR_KAFKA_SSL_KEYFILE` and `MONITOR_KAFKA_CLIENT` "
        "(one underscore) keep working; the `MONITOR__KAFKA__*` form wins when both are set.",
    ]
    for heading, model, env_path in TABLES:
        out += ["", f"## `{heading}`", ""]
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        out += [_prose(" ".join(line.strip() for line in doc.splitlines())), ""]
        out += [
            "| key | type | default | environment | description |",
            "|---|---|---|---|---|",
        ]
        for row in rows(model, env_path):
            out.append(
                f"| `{row.key}` | {_cell(row.type)} | `{_cell(row.default)}` | "
                f"`{row.env}` | {_prose(row.description)} |"
            )
    return "\n".join(out) + "\n"


def signal_names() -> list[str]:
    """Every signal name of :mod:`monitor.catalogue`, in catalogue order."""
    return list(SIGNALS)


def _signal_form(name: str) -> str:
    subject = SIGNALS[name].subject
    if subject == "feature":
        outputs = ", ".join(f"`{s}`" for s in OUTPUT_SUBJECTS)
        return f"`{name}:<feature>@<window>`, or a subject of {outputs}"
    if subject == "metric":
        return f"`{name}:<metric>@<window>`"
    if subject == "stream":
        streams = " or ".join(f"`{s}`" for s in DETECTOR_STREAMS)
        return f"`{name}:<stream>@<window>`, stream {streams}"
    if subject == "class":
        return f"`{name}:<class>@<window>`"
    return f"`{name}@<window>`"


def _signal_tasks(name: str) -> list[str]:
    return [task for task in TASKS if task in SIGNALS[name].tasks]


#: How the reference words a signal's direction and unit.
_DIRECTION = {"better": "higher is better", "worse": "higher is worse", "neither": "either way"}
_UNIT = {
    "share": "share 0..1",
    "unit_interval": "0..1",
    "correlation": "-1..1",
    "count": "count",
    "p_value": "p-value",
    "label_units": "label's unit",
    "number": "number",
}


def _bound(signal: Signal) -> str:
    if signal.threshold is None:
        return ""
    op = "<" if signal.higher_is == "better" else ">"
    return f"{op} {signal.threshold:g}"


def _families() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(exposed name, type, labels, help) of every Prometheus family the daemon exports."""
    from prometheus_client.metrics_core import Metric

    from monitor.outputs.prometheus import _Families

    families = _Families()
    out = []
    for family in vars(families).values():
        if isinstance(family, Metric):
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = families._labels.get(family.name, ())
            out.append((name, family.type, labels, family.documentation))
    return out


def render_metrics() -> str:
    """The signals and metrics reference, as Markdown."""
    out = [
        "# Signals and metrics reference",
        "",
        "<!-- Generated by `python -m monitor.docgen --write` from monitor/catalogue.py and "
        "monitor/outputs/prometheus.py; do not edit. -->",
        "",
        "## Signals",
        "",
        "A signal is `<name>[:<subject>]@<window>`, for example `f1@1h`, "
        "`psi:amount@ewm30m` or `class_recall:cat@all`. Every signal of a model is "
        "computed on each of its windows at every pane close, written to "
        "`signals.jsonl` and `summary.json` by `monitor replay`, returned by "
        "`monitor.evaluate`, read by alert rules, and exported as "
        "`monitor_model_metric{metric=\"<name>[:<subject>]\"}`. A value that is "
        "undefined (no labels yet, too few values for a drift statistic) is null in the "
        "files and absent in Prometheus.",
        "",
        "Drift statistics need a reference profile (`reference` or `reference_warmup`) "
        "and at least `drift_min_samples` values in the window; the data-quality rates "
        "(`missing_rate` ... `problem_rate`) need neither. A drift subject is a configured "
        "feature, or `__score__` (binary: the score), `__prediction__` (the predicted "
        "class or value) or `__label__` (the labels of joined pairs).",
        "",
        "The kind says what a signal is: `metric` (a performance metric: needs labels, and "
        "a model's `metrics` selects it), `prediction` (a statistic of the predictions "
        "alone), `coverage`, `estimate` (label-free, CBPE), `drift`, `quality` (feature "
        "data quality), `gap` and `detector`. The usual alert is the bound the HTML "
        "report's colour scales are centred on and a detector rule's default.",
        "",
        "| signal | form | kind | unit | direction | usual alert | tasks | what it is |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, signal in SIGNALS.items():
        out.append(
            f"| `{name}` | {_cell(_signal_form(name))} | {signal.kind} | {_UNIT[signal.unit]} | "
            f"{_DIRECTION[signal.higher_is]} | {_bound(signal)} | "
            f"{', '.join(_signal_tasks(name))} | {_prose(signal.description)} |"
        )
    out += [
        "",
        "## Prometheus metrics",
        "",
        "Every family the daemon exports on `/metrics`. `dimension` and `slice` say which "
        "part of a model a series covers: `dimension=\"model\"` (the whole model, "
        "`slice=\"\"`), `\"version\"` (a model version) or `\"segment:<key>\"` (a "
        "segment value); every slice family repeats the same events once per dimension, "
        "so always filter on `dimension`. The families from `monitor_consumer_lag` on "
        "describe the running daemon and are not in `monitor replay`'s `metrics.prom`.",
        "",
        "| metric | type | labels | what it is |",
        "|---|---|---|---|",
    ]
    for name, kind, labels, doc in _families():
        shown = ", ".join(f"`{label}`" for label in labels) or "none"
        out.append(f"| `{name}` | {kind} | {shown} | {_prose(doc)} |")
    return "\n".join(out) + "\n"


DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
#: Each generated file under ``docs/`` and the function that renders it.
GENERATED = {"configuration.md": render, "metrics.md": render_metrics}


def main(argv: list[str] | None = None) -> int:
    """``python -m monitor.docgen [--write | --check] [--docs DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m monitor.docgen", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 when one is out of date")
    parser.add_argument("--docs", default=str(DOCS_DIR), help="the docs directory")
    args = parser.parse_args(argv)
    stale = []
    for name, make in GENERATED.items():
        text = make()
        path = Path(args.docs) / name
        if args.write:
            path.write_text(text, encoding="utf-8")
        elif args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                stale.append(str(path))
        else:
            sys.stdout.write(text)
    for name in stale:
        print(f"{name} is out of date: run python -m monitor.docgen --write", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
