"""The Python API gives the numbers ``monitor replay`` gives on the same events.

The events are the demo's (``monitor demo --capture``: drift after a minute, so alerts
fire). They are written as a one-partition capture in event-time order, each record
timestamped with its event's time (what :func:`monitor.evaluate` documents it does),
replayed with the command line, and evaluated from pandas, Polars, Arrow and plain dicts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import monitor
from monitor.cli import main
from monitor.demo import write_capture

SECONDS = 240
RATE = 20


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's events, their one-partition capture and its replay."""
    base = tmp_path_factory.mktemp("api")
    write_capture(base, SECONDS, RATE)
    predictions: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for line in (base / "capture.jsonl").read_text().splitlines():
        envelope = json.loads(line)
        try:
            event = json.loads(envelope["payload"])
        except (TypeError, ValueError):
            continue  # the demo's garbage bytes: not an event a table can hold
        if isinstance(event, dict) and isinstance(event.get("ts"), int | float):
            (predictions if envelope["topic"] == "predictions" else labels).append(event)
    ordered = sorted(
        [(e["ts"], 0, i, "predictions", e) for i, e in enumerate(predictions)]
        + [(e["ts"], 1, i, "labels", e) for i, e in enumerate(labels)],
        key=lambda t: t[:3],
    )
    offsets = {"predictions": 0, "labels": 0}
    with open(base / "one-partition.jsonl", "w", encoding="utf-8") as fh:
        for ts, _, _, topic, event in ordered:
            fh.write(json.dumps({
                "topic": topic, "partition": 0, "offset": offsets[topic],
                "ts": round(ts * 1000), "key": event.get("prediction_id"),
                "payload": json.dumps(event),
            }) + "\n")
            offsets[topic] += 1
    out = base / "replay"
    code = main(["replay", "--no-progress", "--config", str(base / "monitor.toml"),
                 "--out", str(out), str(base / "one-partition.jsonl")])
    assert code == 0
    return {"base": base, "out": out, "predictions": predictions, "labels": labels}


def _replayed_signals(out: Path) -> list[tuple[str, float, str, float]]:
    rows = []
    for line in (out / "signals.jsonl").read_text().splitlines():
        record = json.loads(line)
        for name, value in record["signals"].items():
            rows.append((record["model"], record["ts"], name,
                         math.nan if value is None else value))
    return rows


def _same(a: list[tuple[str, float, str, float]], b: list[tuple[str, float, str, float]]) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b, strict=True):
        assert x[:3] == y[:3]
        assert (math.isnan(x[3]) and math.isnan(y[3])) or x[3] == y[3], (x, y)


def _compare(result: monitor.Result, out: Path) -> None:
    assert result.summary == json.loads((out / "summary.json").read_text())
    frame = result.signals
    got = list(zip(frame["model"], frame["ts"], frame["signal"], frame["value"], strict=True))
    _same(got, _replayed_signals(out))
    replayed_alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert result.alerts.to_dict("records") == replayed_alerts
    assert result.metrics == (out / "metrics.prom").read_text()


def test_the_demo_capture_fires_alerts(demo: dict[str, Any]) -> None:
    """The comparison below covers alerts only if there are some."""
    alerts = (demo["out"] / "alerts.jsonl").read_text().splitlines()
    assert "firing" in {json.loads(a)["status"] for a in alerts}


def test_evaluate_on_dicts_equals_replay(demo: dict[str, Any]) -> None:
    result = monitor.evaluate(demo["base"] / "monitor.toml", demo["predictions"], demo["labels"])
    _compare(result, demo["out"])
    assert result.summary["models"]["fraud"]["counts"]["matched"] > 0


def test_evaluate_on_pandas_polars_and_arrow_equals_replay(demo: dict[str, Any]) -> None:
    preds = pd.DataFrame(demo["predictions"])
    labels = pd.DataFrame(demo["labels"])
    config = demo["base"] / "monitor.toml"
    for p, lab in (
        (preds, labels),
        (pl.DataFrame(demo["predictions"]), pl.DataFrame(demo["labels"])),
        (pa.Table.from_pylist(demo["predictions"]), pa.Table.from_pylist(demo["labels"])),
    ):
        _compare(monitor.evaluate(config, p, lab), demo["out"])


def test_flat_feature_columns_and_a_reference_table(demo: dict[str, Any]) -> None:
    """Features as columns (``json_normalize``) and the reference rows as a DataFrame give
    the numbers of the file-based run."""
    flat = pd.json_normalize(demo["predictions"], max_level=1)
    assert "features.amount" in flat.columns
    reference = pd.read_csv(demo["base"] / "reference.csv")
    config = monitor.api.load_config(demo["base"] / "monitor.toml")
    no_file = config.model_copy(update={"models": [
        m.model_copy(update={"reference": None}) for m in config.models]})
    result = monitor.evaluate(no_file, flat, pd.DataFrame(demo["labels"]), reference=reference)
    _compare(result, demo["out"])
    without = monitor.evaluate(no_file, flat, pd.DataFrame(demo["labels"]))
    drift = without.signals
    assert drift[drift["name"] == "psi"]["value"].isna().all()  # no reference, no drift


def test_write_gives_the_replay_files_and_report_renders(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    result = monitor.evaluate(demo["base"] / "monitor.toml", demo["predictions"], demo["labels"])
    out = result.write(tmp_path / "files")
    for name in ("signals.jsonl", "alerts.jsonl", "summary.json", "metrics.prom"):
        assert (out / name).read_bytes() == (demo["out"] / name).read_bytes(), name
    page = result.report(tmp_path / "r" / "report.html")
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") or html.lower().startswith("<!doctype html>")
    assert "accuracy" in html


def test_rejected_events_are_counted_like_replay() -> None:
    config = {"time": {"pane": "10s"}, "models": [
        {"name": "m", "task": "binary", "positive_class": 1, "windows": ["all"]}]}
    preds = [
        {"prediction_id": "a", "model": "m", "ts": 1_700_000_000, "prediction": 1},
        {"prediction_id": "b", "model": "nope", "ts": 1_700_000_001, "prediction": 1},
        {"model": "m", "ts": 1_700_000_002, "prediction": 1},
    ]
    result = monitor.evaluate(config, preds)
    assert sum(result.summary["rejects"].values()) == 2
    assert result.summary["models"]["m"]["counts"]["predictions"] == 1


def test_a_dict_is_not_a_table() -> None:
    with pytest.raises(TypeError, match="one dict"):
        monitor.evaluate({"models": [{"name": "m", "task": "regression"}]}, {"a": 1})


def test_report_without_plotly_names_the_extra(
    demo: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from monitor.extras import MissingExtra

    result = monitor.evaluate(demo["base"] / "monitor.toml", demo["predictions"][:50])
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(MissingExtra) as info:
        result.report(tmp_path / "r.html")
    assert str(info.value) == (
        "Result.report needs the 'report' extra: pip install 'kafka-model-monitor[report]'"
    )
    assert not (tmp_path / "r.html").exists()
