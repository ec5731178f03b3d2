"""Fuzzing the config loader: whatever a TOML file holds, ``load_config`` returns a config
or raises :class:`~monitor.config.ConfigError` whose every line names the file (and, for
a bad value, the key path); never another exception.

Documents are the example config with random edits (values of any TOML type put at any
key, keys removed, unknown keys added), arbitrary TOML documents, and arbitrary text.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import ConfigError, MonitorConfig, load_config
from tests.fuzz.budget import examples

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"
BASE = tomllib.loads(EXAMPLE.read_text())
FUZZ = settings(
    max_examples=examples(120), deadline=None, suppress_health_check=list(HealthCheck)
)

toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()  # NaN and infinities included: TOML has them
    | st.text(max_size=20)
    | st.sampled_from(["10s", "-1s", "0s", "1w", "5m", "ewm1m", "all", "binary", "127.0.0.1:0",
                       "accuracy@1h < 0.8", "SASL_SSL", "PLAIN", "{", "__other__"])
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.times()
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a parsed document (dict keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


BASE_PATHS = _paths(BASE)


def _edit(doc: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    """A copy of ``doc`` with ``path`` replaced by ``value``, removed, or given a sibling."""
    if not path:
        return doc
    head, rest = path[0], path[1:]
    if isinstance(doc, dict) and isinstance(head, str):
        copy: Any = dict(doc)
    elif isinstance(doc, list) and isinstance(head, int):
        copy = list(doc)
    else:
        raise KeyError(head)  # an earlier edit changed what is at this path
    if rest:
        copy[head] = _edit(copy[head], rest, action, value)
    elif action == "set":
        copy[head] = value
    elif action == "delete":
        del copy[head]
    elif isinstance(copy, dict):
        copy[f"{head}_unknown"] = value
    return copy


@st.composite
def edited_example(draw: st.DrawFn) -> dict[str, Any]:
    doc: Any = BASE
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(BASE_PATHS))
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        try:
            doc = _edit(doc, path, action, draw(toml_values))
        except (KeyError, IndexError):  # an earlier edit removed or retyped the path
            continue
    return dict(doc)


documents = edited_example() | st.dictionaries(st.text(min_size=1, max_size=8), toml_values,
                                               max_size=5)


def _check(path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert exc.path == str(path)
        assert exc.problems, "a ConfigError without a problem"
        for line in exc.problems:
            assert line.startswith(f"{path}: "), line
            assert line[len(f"{path}: ") :].strip(), line
        return
    assert isinstance(config, MonitorConfig)
    for model in config.models:  # what the loader let through is usable
        assert model.max_pending > 0 and math.isfinite(config.time.pane)


@FUZZ
@given(documents)
def test_any_toml_document_is_a_config_or_a_config_error(
    tmp_path_factory: Any, doc: dict[str, Any]
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "monitor.toml"
    path.write_text(tomli_w.dumps(doc))
    _check(path)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_is_a_config_or_a_config_error(tmp_path_factory: Any, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "monitor.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _check(path)


@FUZZ
@given(st.binary(max_size=64))
def test_bytes_that_are_not_utf8_are_a_config_error(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "monitor.toml"
    path.write_bytes(b'[kafka]\nclient_id = "' + data + b'"\n')
    _check(path)
