"""The Grafana dashboard only queries series the daemon exports: every metric name in
every PromQL expression is checked against a real exposition (a replay's metrics.prom,
plus the runtime families the run loop adds)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import config_from_mapping
from monitor.core.report import Report
from monitor.outputs.prometheus import MonitorCollector, RuntimeStats, render
from monitor.replay import replay

DASHBOARD = Path(__file__).resolve().parent.parent / "docker" / "grafana" / "dashboards"
# PromQL functions, aggregations and keywords (everything an identifier can be but a metric).
_NOT_METRICS = {
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "time", "rate", "irate", "increase", "delta", "idelta", "deriv",
    "histogram_quantile", "abs", "absent", "avg_over_time", "max_over_time", "min_over_time",
    "stddev_over_time", "sum_over_time", "count_over_time", "label_values", "vector", "scalar",
    "clamp_min", "clamp_max", "round", "sort", "sort_desc", "changes", "resets",
    "label_replace", "query_result", "inf", "nan",
}


def _expressions(node: Any) -> list[str]:
    """Every PromQL string of the dashboard: panel targets and templating queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, dict) and "query" in value:
                found.append(value["query"])
            else:
                found += _expressions(value)
    elif isinstance(node, list):
        for item in node:
            found += _expressions(item)
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names used by a PromQL expression (label matchers, strings, ranges and
    grouping clauses removed; functions and keywords left out).

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / b'))
    ['a_bucket', 'b']
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\blabel_values\(([^,]*),\s*\w+\s*\)", r"(\1)", text)  # (metric, label)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in _NOT_METRICS:
            continue
        names.add(word)
    return names


def _exported(tmp_path: Path) -> set[str]:
    """Sample names of a replay's exposition and of the runtime families."""
    capture = tmp_path / "capture.jsonl"
    lines = []
    for i in range(200):
        body = {"prediction_id": f"p{i}", "model": "fraud", "ts": 1_760_000_000 + i,
                "prediction": i % 2, "score": 0.7, "label": 1}
        lines.append(json.dumps({"topic": "predictions", "partition": 0, "offset": i,
                                 "payload": json.dumps(body)}))
    lines.append(json.dumps({"topic": "predictions", "partition": 0, "offset": 200,
                             "payload": "not json"}))  # a reject: monitor_rejected_total
    capture.write_text("\n".join(lines) + "\n")
    config = config_from_mapping({"models": [{
        "name": "fraud", "task": "binary", "positive_class": 1, "windows": ["all", "1m"],
        "alerts": [{"name": "acc", "signal": "accuracy@1m", "op": "<", "threshold": 0.8}],
    }]})  # fmt: skip
    replay(config, [str(capture)], tmp_path / "out")
    names = set()
    for text in ((tmp_path / "out" / "metrics.prom").read_text(), _runtime_exposition()):
        for family in text_string_to_metric_families(text):
            names |= {sample.name for sample in family.samples}
    return names


def _runtime_exposition() -> str:
    registry = CollectorRegistry()
    MonitorCollector(registry).update(
        Report(), RuntimeStats(heartbeat=1.0, lag={("t", 0): 1}, last_checkpoint=1.0)
    )
    return render(registry).decode()


def test_every_dashboard_query_names_series_the_daemon_exports(tmp_path: Path) -> None:
    exported = _exported(tmp_path)
    assert "monitor_alert_firing" in exported and "monitor_consumer_lag" in exported
    for path in sorted(DASHBOARD.glob("*.json")):
        exprs = _expressions(json.loads(path.read_text()))
        assert len(exprs) >= 20, path
        for expr in exprs:
            used = metric_names(expr)
            assert used, expr
            assert used <= exported, (path.name, expr, sorted(used - exported))


def test_dashboard_has_the_panels_operators_need() -> None:
    dashboard = json.loads((DASHBOARD / "monitor.json").read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in ("Metrics by window", "Feature drift (PSI) by feature", "Label coverage",
                   "Label delay (p50, p90)", "Alerts firing", "Consumer lag",
                   "Rejects by reason", "Checkpoint age", "Missing values by feature"):
        assert wanted in titles
    kinds = {p["title"]: p["type"] for p in dashboard["panels"]}
    assert kinds["Feature drift (PSI) by feature"] == "heatmap"
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"model", "window"}
