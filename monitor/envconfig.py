"""Every config key overridable from the environment: ``MONITOR__<TABLE>__<KEY>=value``.

The name is ``MONITOR`` and the key path joined by double underscores, in any case:
``MONITOR__HTTP__LISTEN=0.0.0.0:9108`` sets ``[http] listen``. A model (and an alert
rule of a model) is picked by its name or its index in the file:
``MONITOR__MODELS__FRAUD__LABEL_TTL=2h`` or ``MONITOR__MODELS__0__LABEL_TTL=2h``.

A value for a text key is taken as written. Any other value is read as a TOML value when
it is one (``500``, ``true``, ``0.25``, ``["all", "1h"]``, ``{name = "cusum"}``) and as
text otherwise (durations like ``10s``). An empty value is ignored. A name that matches
no key is an error, so a typo does not pass silently. These overrides apply after the
older ``MONITOR_KAFKA_*`` variables (single underscore), which keep working.
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

__all__ = ["PREFIX", "SEPARATOR", "apply_env", "env_name"]

PREFIX = "MONITOR"
SEPARATOR = "__"


def env_name(*path: str) -> str:
    """The variable that overrides the key at ``path``.

    >>> env_name("http", "listen")
    'MONITOR__HTTP__LISTEN'
    """
    return SEPARATOR.join((PREFIX, *path)).upper()


def _args(annotation: Any) -> list[Any]:
    """``annotation`` and the types inside it (unions, Optional, Annotated, lists)."""
    found = [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _args(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(_args(arg))
    return found


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in _args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _list_model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in _args(annotation):
        if typing.get_origin(arg) is list:
            (item,) = typing.get_args(arg)
            return _model_of(item)
    return None


def _takes_text(annotation: Any) -> bool:
    """Whether a key of this type is text (then its value is taken as written)."""
    for arg in _args(annotation):
        if arg is str or arg is SecretStr:
            return True
        if typing.get_origin(arg) is typing.Literal and all(
            isinstance(v, str) for v in typing.get_args(arg)
        ):
            return True
    return False


def _value(text: str, annotation: Any) -> Any:
    if _takes_text(annotation):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _field(model: type[BaseModel], part: str) -> tuple[str, Any]:
    """The key (its name in the file) and type of ``model``'s field spelled ``part``."""
    wanted = part.lower()
    for name, info in model.model_fields.items():
        key = info.alias or name
        if wanted in (name.lower(), key.lower()):
            return key, info.annotation
    raise KeyError(part)


def _element(items: list[Any], part: str) -> dict[str, Any]:
    """The list element ``part`` names: an index, or the ``name`` of one."""
    if part.isdigit() and int(part) < len(items):
        element = items[int(part)]
    else:
        wanted = part.lower()
        named = [i for i in items if isinstance(i, dict) and str(i.get("name")).lower() == wanted]
        if not named:
            raise KeyError(part)
        element = named[0]
    if not isinstance(element, dict):
        raise KeyError(part)
    return element


def _set(data: dict[str, Any], model: type[BaseModel], parts: list[str], text: str) -> None:
    key, annotation = _field(model, parts[0])
    rest = parts[1:]
    if not rest:
        data[key] = _value(text, annotation)
        return
    sub = _model_of(annotation)
    if sub is not None:
        table = data.get(key)
        if not isinstance(table, dict):
            table = data[key] = {}
        _set(table, sub, rest, text)
        return
    item_model = _list_model_of(annotation)
    items = data.get(key)
    if item_model is None or not isinstance(items, list) or len(rest) < 2:
        raise KeyError(parts[1])
    _set(_element(items, rest[0]), item_model, rest[1:], text)


def apply_env(
    data: Mapping[str, Any], environ: Mapping[str, str], model: type[BaseModel]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """``data`` (a parsed config file) with the ``MONITOR__*`` overrides of ``environ``
    applied, checked against ``model``; one line per variable that names no key; and the
    variables applied (so that an invalid value can be traced to the environment).

    >>> from monitor.config import MonitorConfig
    >>> data, bad, applied = apply_env({"models": [{"name": "m"}]},
    ...     {"MONITOR__HTTP__LISTEN": "0.0.0.0:9108", "MONITOR__MODELS__M__LABEL_TTL": "2h",
    ...      "MONITOR__KAFKA__MAX_POLL_RECORDS": "500", "MONITOR__HTTP__LISTN": "x"},
    ...     MonitorConfig)
    >>> data["http"], data["models"][0]["label_ttl"], data["kafka"]["max_poll_records"]
    ({'listen': '0.0.0.0:9108'}, '2h', 500)
    >>> bad, len(applied)
    (['MONITOR__HTTP__LISTN: no such config key (http.listn)'], 3)
    """
    out = _copy(data)
    problems: list[str] = []
    applied: list[str] = []
    start = PREFIX + SEPARATOR
    for name in sorted(environ):
        if not name.upper().startswith(start) or not environ[name]:
            continue
        parts = name[len(start):].split(SEPARATOR)
        try:
            _set(out, model, parts, environ[name])
        except KeyError:
            path = ".".join(p.lower() for p in parts)
            problems.append(f"{name}: no such config key ({path})")
        else:
            applied.append(name)
    return out, problems, applied


def _copy(value: Any) -> Any:
    """A copy of nested dicts and lists (leaves shared), so overrides leave ``data`` alone."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
