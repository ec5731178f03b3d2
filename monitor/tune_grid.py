"""The grid of ``monitor tune``: parameter paths, their values, and one validated config each.

A grid file is TOML mapping a parameter path to the list of values to try::

    "models.fraud.alerts.accuracy-low.threshold" = [0.85, 0.87, 0.89]
    "models.fraud.alerts.accuracy-low.for" = ["0s", "5m", "15m"]
    "models.fraud.alerts.accuracy-low.window" = ["ewm10m", "ewm30m"]
    "models.fraud.detectors.cusum.false_alarm_budget" = [1e4, 1e6]

Paths (a nested table is read as the dotted path of its keys):

- ``models.<model>.<key>``: a key of the model (``windows``, ``label_ttl``, ...);
- ``models.<model>.alerts.<rule>.<key>``: a key of one alert rule (``threshold``,
  ``resolve_threshold``, ``for``, ``resolve_for``, ``cooldown``, ``drop``, ``k``,
  ``half_life``, ``min_samples``, ...), or ``window``: the rule's signal read over another
  window of the model (``accuracy@ewm30m`` -> ``accuracy@ewm10m``), the window being added
  to the model's windows when it lacks it, so the signal the rule reads is always computed;
- ``models.<model>.detectors.<detector>.<option>``: an option of a detector entry
  (``cusum``: ``false_alarm_budget``, ``delta``, ``reference_error``, ``warmup``).

Every value, and then every combination, goes through the normal config validation; a
path that names nothing, or a value the config rejects, is a :class:`GridError` naming
the key.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.config import (
    AlertRuleConfig,
    ConfigError,
    CusumOptions,
    ModelConfig,
    MonitorConfig,
    config_from_mapping,
    parse_signal,
)

__all__ = [
    "GridError",
    "Setting",
    "default_grid",
    "expand_grid",
    "load_grid",
    "setting_label",
]

#: Model keys a grid may not vary (they name the model or are varied by finer paths).
_FIXED_MODEL_KEYS = ("name", "task", "alerts")
_RULE_KEYS = (
    *sorted({(f.alias or n) for n, f in AlertRuleConfig.model_fields.items()} - {"name"}),
    "window",
)
_MODEL_KEYS = tuple(sorted(set(ModelConfig.model_fields) - set(_FIXED_MODEL_KEYS)))
_CUSUM_KEYS = tuple(sorted(set(CusumOptions.model_fields) - {"name"}))


class GridError(Exception):
    """A grid that cannot be used; ``problems`` holds one line per problem, naming the key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Setting:
    """One point of the grid: its position, the (path, value) pairs, the validated config."""

    index: int
    values: tuple[tuple[str, Any], ...]
    config: MonitorConfig


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def load_grid(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """Read a grid file: parameter path -> non-empty list of values; raise GridError."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise GridError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise GridError([f"{name}: invalid TOML: {exc}"]) from None
    grid: dict[str, list[Any]] = {}
    problems = []
    for key, values in _flatten(raw).items():
        if not isinstance(values, list) or not values:
            problems.append(f"{name}: {key}: expected a non-empty list of values, got {values!r}")
            continue
        grid[key] = values
    if not grid and not problems:
        problems.append(f"{name}: the grid is empty")
    if problems:
        raise GridError(problems)
    return grid


def _named(items: list[Any], name: str) -> int | None:
    for i, item in enumerate(items):
        item_name = item if isinstance(item, str) else item.get("name")
        if item_name == name:
            return i
    return None


def _split_name(rest: str, names: list[str]) -> tuple[str, str] | None:
    """``rest`` = ``<name>.<tail>`` for the longest known name (names may contain dots)."""
    for name in sorted(names, key=len, reverse=True):
        if rest.startswith(name + "."):
            return name, rest[len(name) + 1 :]
    return None


def apply_value(mapping: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` to ``value`` in a config mapping (as dumped by pydantic); GridError if the
    path names nothing."""
    if not path.startswith("models."):
        raise GridError([f"{path}: a grid path starts with 'models.<model>.'"])
    models = mapping["models"]
    found = _split_name(path[len("models.") :], [m["name"] for m in models])
    if found is None:
        names = [m["name"] for m in models]
        raise GridError([f"{path}: no model of that name in the config; models: {names}"])
    model_name, tail = found
    model = models[_named(models, model_name) or 0]
    if tail.startswith("alerts."):
        rules = model["alerts"]
        hit = _split_name(tail[len("alerts.") :], [r["name"] for r in rules])
        if hit is None:
            raise GridError(
                [f"{path}: model {model_name!r} has no such rule; rules: "
                 f"{[r['name'] for r in rules]}"]
            )
        rule_name, key = hit
        rule = rules[_named(rules, rule_name) or 0]
        if key not in _RULE_KEYS:
            raise GridError([f"{path}: unknown rule key {key!r}; valid: {list(_RULE_KEYS)}"])
        if key == "window":
            if not isinstance(value, str) or not rule.get("signal"):
                raise GridError([f"{path}: a window name for a rule with a signal, got {value!r}"])
            name, subject, _ = parse_signal(rule["signal"])
            rule["signal"] = f"{name}{':' + subject if subject else ''}@{value}"
            if value not in model["windows"]:
                model["windows"] = [*model["windows"], value]
        else:
            rule[key] = value
        return
    if tail.startswith("detectors."):
        detectors = model["detectors"]
        hit = _split_name(tail[len("detectors.") :], ["cusum"])
        if hit is None or _named(detectors, hit[0]) is None:
            names = [d if isinstance(d, str) else d["name"] for d in detectors]
            raise GridError(
                [f"{path}: options exist only for a configured cusum detector; "
                 f"detectors of {model_name!r}: {names}"]
            )
        _, key = hit
        if key not in _CUSUM_KEYS:
            raise GridError([f"{path}: unknown cusum option {key!r}; valid: {list(_CUSUM_KEYS)}"])
        i = _named(detectors, "cusum")
        assert i is not None
        entry = detectors[i]
        detectors[i] = {**({"name": "cusum"} if isinstance(entry, str) else entry), key: value}
        return
    if tail not in _MODEL_KEYS:
        raise GridError([f"{path}: unknown model key {tail!r}; valid: {list(_MODEL_KEYS)}"])
    model[tail] = value


def _validate(
    base: dict[str, Any], values: tuple[tuple[str, Any], ...], where: str
) -> MonitorConfig:
    mapping = copy.deepcopy(base)
    for path, value in values:
        try:
            apply_value(mapping, path, value)
        except GridError as exc:
            raise GridError([f"{where}: {p}" for p in exc.problems]) from None
    try:
        return config_from_mapping(mapping, where)
    except ConfigError as exc:
        raise GridError(exc.problems) from None


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{value}"


def expand_grid(
    config: MonitorConfig, grid: Mapping[str, list[Any]], source: str = "grid",
    max_settings: int = 1000,
) -> list[Setting]:
    """Every combination of the grid's values as a validated :class:`Setting`, in grid order
    (the last key varies fastest); GridError names the key (and value) that fails."""
    base = config.model_dump(by_alias=True)
    problems: list[str] = []
    for path, values in grid.items():
        for value in values:
            try:
                _validate(base, ((path, value),), f"{source}: {path} = {_fmt(value)}")
            except GridError as exc:
                problems.extend(exc.problems)
    if problems:
        raise GridError(problems)
    total = math.prod(len(v) for v in grid.values())
    if total > max_settings:
        raise GridError(
            [f"{source}: {total} settings, more than --max-settings {max_settings}; "
             "shorten the value lists"]
        )
    settings = []
    keys = list(grid)
    for index, combo in enumerate(itertools.product(*(grid[k] for k in keys))):
        pairs = tuple(zip(keys, combo, strict=True))
        label = ", ".join(f"{k} = {_fmt(v)}" for k, v in pairs)
        settings.append(Setting(index, pairs, _validate(base, pairs, f"{source}: {label}")))
    return settings


def _scaled(value: float, factors: tuple[float, ...]) -> list[float]:
    return [round(value * f, 6) for f in factors]


def default_grid(config: MonitorConfig) -> dict[str, list[Any]]:
    """A small grid from the config itself: every rule's bound scaled by 0.95/1/1.05
    (``k`` and ``drop`` by 0.5/1/1.5), its ``for`` times 0/1/2 (0, 3 and 6 panes when 0),
    and a cusum detector's ``false_alarm_budget`` times 0.01/1/100. Bounds that would cross
    the rule's ``resolve_threshold`` are left out."""
    grid: dict[str, list[Any]] = {}
    pane = config.time.pane
    for model in config.models:
        prefix = f"models.{model.name}"
        for rule in model.alerts:
            at = f"{prefix}.alerts.{rule.name}"
            if rule.kind in ("threshold", "label_starvation") and rule.threshold:
                values = _scaled(rule.threshold, (0.95, 1.0, 1.05))
                if rule.resolve_threshold is not None:
                    lower = (rule.op or "<") in ("<", "<=")
                    values = [
                        v for v in values
                        if (v <= rule.resolve_threshold if lower else v >= rule.resolve_threshold)
                    ]
                grid[f"{at}.threshold"] = sorted(set(values))
            for key in ("k", "drop"):
                current = getattr(rule, key)
                if current is not None and rule.kind in ("relative", "control_band"):
                    grid[f"{at}.{key}"] = _scaled(current, (0.5, 1.0, 1.5))
            if rule.kind == "absence":
                grid[f"{at}.for"] = [rule.for_ * 0.5, rule.for_, rule.for_ * 2]
            elif rule.kind != "detector":
                grid[f"{at}.for"] = (
                    [0.0, rule.for_, rule.for_ * 2] if rule.for_ > 0 else [0.0, 3 * pane, 6 * pane]
                )
        for entry in model.detectors:
            if entry == "cusum" or isinstance(entry, CusumOptions):
                budget = entry.false_alarm_budget if isinstance(entry, CusumOptions) else 1e6
                grid[f"{prefix}.detectors.cusum.false_alarm_budget"] = [
                    max(budget / 100, 10.0), budget, budget * 100
                ]
    return grid


def setting_label(setting: Setting) -> dict[str, Any]:
    """Short column names for a setting's values: ``alerts.<rule>.<key>`` (the
    ``models.<model>.`` prefix dropped when the config has one model)."""
    out: dict[str, Any] = {}
    for path, value in setting.values:
        short = path
        if len(setting.config.models) == 1:
            for model in setting.config.models:
                if path.startswith(f"models.{model.name}."):
                    short = path[len(f"models.{model.name}.") :]
        out[short] = value
    return out
