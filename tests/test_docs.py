"""The documents in docs/: the configuration reference matches the models it is generated
from, every key in it is described and overridable as it says, and no page links outside
the repository or uses planning words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor import docgen
from monitor.catalogue import SIGNALS
from monitor.config import MonitorConfig, config_from_mapping

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
MINIMAL = {"models": [{"name": "fraud", "task": "binary", "positive_class": 1,
                       "alerts": [{"name": "f1-low", "signal": "f1@1h", "op": "<",
                                   "threshold": 0.8}]}]}


def test_configuration_reference_is_up_to_date() -> None:
    """Fails when a key, type, default or description in monitor/config.py changed without
    `python -m monitor.docgen --write`."""
    assert REFERENCE.read_text(encoding="utf-8") == docgen.render(), (
        "docs/configuration.md is out of date: run python -m monitor.docgen --write"
    )


def test_metrics_reference_is_up_to_date() -> None:
    """Fails when a signal of the catalogue or a Prometheus family changed without
    `python -m monitor.docgen --write`."""
    assert (DOCS / "metrics.md").read_text(encoding="utf-8") == docgen.render_metrics(), (
        "docs/metrics.md is out of date: run python -m monitor.docgen --write"
    )
    assert docgen.main(["--check"]) == 0


def test_docgen_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    assert docgen.main(["--check", "--docs", str(tmp_path)]) == 1  # missing files
    assert docgen.main(["--write", "--docs", str(tmp_path)]) == 0
    assert docgen.main(["--check", "--docs", str(tmp_path)]) == 0
    stale = tmp_path / "configuration.md"
    stale.write_text(stale.read_text().replace("`MONITOR__HTTP__LISTEN`", "`X`"))
    assert docgen.main(["--check", "--docs", str(tmp_path)]) == 1


def test_every_signal_and_metric_family_is_described() -> None:
    names = docgen.signal_names()
    assert {"f1", "psi", "gap", "adwin", "estimated_f1", "label_coverage"} <= set(names)
    for name in names:
        assert SIGNALS[name].description.strip(), f"signal {name!r} has no description"
        assert docgen._signal_tasks(name), f"signal {name!r} belongs to no task"
    reference = (DOCS / "metrics.md").read_text(encoding="utf-8")
    for name in names:
        assert f"| `{name}` |" in reference, f"signal {name!r} is not in docs/metrics.md"
    families = docgen._families()
    exposed = {name for name, *_ in families}
    assert {"monitor_model_metric", "monitor_confusion_total", "monitor_consumer_lag",
            "monitor_label_delay_seconds", "monitor_ready"} <= exposed
    assert all(doc for *_, doc in families)


def test_every_listed_family_is_what_the_exporter_exposes() -> None:
    """The names in the reference are the names a scrape shows (counters with _total)."""
    from prometheus_client import CollectorRegistry

    from monitor.core.pipeline import Pipeline
    from monitor.outputs.prometheus import MonitorCollector, RuntimeStats, render

    registry = CollectorRegistry()
    collector = MonitorCollector(registry)
    collector.update(Pipeline(config_from_mapping(MINIMAL)).report(), RuntimeStats())
    text = render(registry).decode()
    listed = {name for name, *_ in docgen._families()}
    shown = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert shown and shown <= listed, shown - listed


def _all_fields(model: type) -> set[str]:
    """Every ``Model.field`` reachable from MonitorConfig."""
    from pydantic import BaseModel

    seen: set[str] = set()
    stack: list[type[BaseModel]] = [model]
    done: set[type] = set()
    while stack:
        current = stack.pop()
        if current in done:
            continue
        done.add(current)
        for name, info in current.model_fields.items():
            seen.add(f"{current.__name__}.{name}")
            for inner in re.findall(r"monitor\.config\.(\w+)", str(info.annotation)):
                import monitor.config as cfg

                stack.append(getattr(cfg, inner))
    return seen


def test_every_key_of_every_table_is_in_the_reference_with_a_description() -> None:
    listed = {
        f"{model.__name__}.{name}"
        for _, model, _ in docgen.TABLES
        for name in model.model_fields
    }
    assert _all_fields(MonitorConfig) - {
        f"MonitorConfig.{k}" for k in MonitorConfig.model_fields
    } <= listed
    for _, model, env_path in docgen.TABLES:
        for row in docgen.rows(model, env_path):
            assert row.description, f"{model.__name__}.{row.key} has no description"
            assert row.type and row.default
    assert set(docgen.MORE_DESCRIPTIONS) <= listed, "a description names a key that is gone"


def _leaf_value(row: docgen.Row) -> str | None:
    """A valid environment value for the key of ``row`` that differs from its default."""
    values = {
        "integer": "7",
        "duration": "7s",
        "number": "0.5",
        "boolean": "true",
    }
    return values.get(row.type)


@pytest.mark.parametrize(
    ("heading", "model", "env_path"),
    [t for t in docgen.TABLES if t[2] and "<model>" not in t[2]],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_listed_variable_overrides_its_key(
    heading: str, model: type, env_path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable in the reference's environment column reaches the key it is listed for."""
    table = env_path[0]
    checked = 0
    for row in docgen.rows(model, env_path):
        value = _leaf_value(row)
        if value is None:
            continue
        monkeypatch.setenv(row.env, value)
        try:
            config = config_from_mapping(MINIMAL)
        except Exception:
            monkeypatch.delenv(row.env)
            continue  # a value the key's own checks refuse (e.g. a too-small bound)
        got = getattr(getattr(config, table), row.key)
        expected = {"7": 7, "7s": 7.0, "0.5": 0.5, "true": True}[value]
        assert got == expected, row.env
        monkeypatch.delenv(row.env)
        checked += 1
    assert checked or heading in ("[http]", "[alertmanager]")


def test_model_and_rule_variables_pick_by_name_and_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR__MODELS__FRAUD__LABEL_TTL", "2h")
    monkeypatch.setenv("MONITOR__MODELS__0__WINDOWS", '["all", "1h", "10m"]')
    monkeypatch.setenv("MONITOR__MODELS__fraud__ALERTS__F1-LOW__THRESHOLD", "0.6")
    monkeypatch.setenv("MONITOR__MODELS__0__ALERTS__0__FOR", "5m")
    monkeypatch.setenv("MONITOR__HTTP__LISTEN", "0.0.0.0:9108")
    monkeypatch.setenv("MONITOR__KAFKA__GROUP_ID", "1234")
    config = config_from_mapping(MINIMAL)
    model = config.models[0]
    assert model.label_ttl == 7200.0
    assert model.windows == ["all", "1h", "10m"]
    assert model.alerts[0].threshold == 0.6 and model.alerts[0].for_ == 300.0
    assert config.http.listen == "0.0.0.0:9108"
    assert config.kafka.group_id == "1234"  # a text key keeps digits as text
    assert MINIMAL["models"][0]["alerts"][0]["threshold"] == 0.8  # the input is not changed


def test_new_variables_win_over_the_old_kafka_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_KAFKA_BOOTSTRAP", "old:9092")
    assert config_from_mapping(MINIMAL).kafka.bootstrap_servers == "old:9092"
    monkeypatch.setenv("MONITOR__KAFKA__BOOTSTRAP_SERVERS", "new:9092")
    assert config_from_mapping(MINIMAL).kafka.bootstrap_servers == "new:9092"


@pytest.mark.parametrize(
    "name",
    ["MONITOR__HTTP__LISTN", "MONITOR__MODELS__NOPE__LABEL_TTL", "MONITOR__MODELS__9__TASK",
     "MONITOR__HTTP__LISTEN__X", "MONITOR__COLOUR"],
)
def test_a_variable_naming_no_key_is_an_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.config import ConfigError

    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as info:
        config_from_mapping(MINIMAL, "f.toml")
    assert info.value.problems == [
        f"f.toml: environment {name}: no such config key "
        f"({'.'.join(p.lower() for p in name.split('__')[1:])})"
    ]


def test_a_bad_value_from_the_environment_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.config import ConfigError

    monkeypatch.setenv("MONITOR__TIME__PANE", "soon")
    with pytest.raises(ConfigError) as info:
        config_from_mapping(MINIMAL, "f.toml")
    assert info.value.problems[0].startswith("f.toml: time.pane: ")
    assert info.value.problems[-1] == (
        "f.toml: (with values from the environment: MONITOR__TIME__PANE)"
    )


def test_kubernetes_service_variables_are_not_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Service named 'monitor' gives pods MONITOR_PORT and friends (one underscore)."""
    monkeypatch.setenv("MONITOR_PORT", "tcp://10.0.0.1:9108")
    monkeypatch.setenv("MONITOR_SERVICE_HOST", "10.0.0.1")
    assert config_from_mapping(MINIMAL).http.listen == "127.0.0.1:9108"


USER_DOCS = sorted(p.name for p in DOCS.glob("*.md"))
#: Words of the project's planning, not of a user's page.
PLANNING = re.compile(r"\bissue(?:'s)? ?#?\d|\bthe issue\b|\bitem \d|\bTODO\b|\bXXX\b")


@pytest.mark.parametrize("name", USER_DOCS)
def test_user_docs_stay_inside_the_repository(name: str) -> None:
    """Every link of a page under docs/ resolves to a file of the repository, and no page
    speaks of the project's planning."""
    text = (DOCS / name).read_text(encoding="utf-8")
    # code blocks and inline code quote messages such as `models[0](fraud)`: not links
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        assert not target.startswith(("http://", "https://", "/")), f"{name}: {target}"
        if target.startswith("#"):
            continue
        path = (DOCS / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), f"{name}: broken link {target}"
    assert not PLANNING.search(text), f"{name}: {PLANNING.search(text)}"


def test_the_example_config_shows_every_key() -> None:
    """config/example.toml names every key of every table (set, or commented out)."""
    text = (ROOT / "config" / "example.toml").read_text(encoding="utf-8")
    missing = [
        f"{heading} {row.key}"
        for heading, model, env_path in docgen.TABLES
        for row in docgen.rows(model, env_path)
        if not re.search(rf"^\s*#?\s*{re.escape(row.key.split('.')[-1])}\s*=", text, re.M)
        and row.key.split(".")[-1] != "alerts"
    ]
    assert not missing


def test_the_readme_stays_short_and_inside_the_repository() -> None:
    """The README is the front page: within 300 lines, every link to a file of the
    repository, and the two commands first."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    first = text.split("```")[1].strip().splitlines()
    assert [line.split()[:2] for line in first[1:]] == [["./dev", "demo"], ["./dev", "test"]]
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        assert not target.startswith(("http://", "https://", "/", "..")), target
        assert (ROOT / target.split("#")[0]).exists(), f"broken link {target}"


def test_the_docs_lint_sees_the_pages_this_package_points_to() -> None:
    assert {"configuration.md", "install.md", "python-api.md", "deploy.md", "metrics.md",
            "benchmarks.md", "design.md"} <= set(USER_DOCS)


def test_python_api_worked_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``>>>`` line of docs/python-api.md runs and prints what the page shows."""
    import doctest

    monkeypatch.chdir(tmp_path)
    failed, attempted = doctest.testfile(
        str(DOCS / "python-api.md"), module_relative=False, verbose=False,
        optionflags=doctest.NORMALIZE_WHITESPACE,
    )
    assert attempted > 10 and failed == 0
    assert (tmp_path / "fraud-report.html").stat().st_size > 0
