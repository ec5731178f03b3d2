"""CloudWatch embedded metric format lines: every line valid against the format's published
JSON schema (``emf_schema.json``, source in this directory's README) and its prose rules,
values equal to ``signals.jsonl``, alert states, the 100-metric split, and stdout shared
with the JSON log lines of ``monitor run`` (in-process and on a real broker)."""

from __future__ import annotations

import io
import json
import math
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import structlog
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from monitor.broker import free_port
from monitor.config import ConfigError, OutputsConfig, config_from_mapping, load_config
from monitor.core.model import PaneSignals
from monitor.logs import configure_logging
from monitor.outputs.cloudwatch import MAX_METRICS, EmfWriter, emf_documents, emf_lines
from monitor.outputs.exports import Exports
from monitor.outputs.tensorboard import scalar_tag
from monitor.replay import replay
from tests.daemon import Daemon, capture, daemon_config
from tests.outputs.export_stream import (
    CONFIG,
    alert_lines,
    finite_signals,
    run_replay,
    signal_lines,
    write_capture,
)

SCHEMA = json.loads((Path(__file__).parent / "emf_schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
SUBJECT_KEYS = ("feature", "class", "stream", "metric", "subject")


def check_emf(doc: dict[str, Any]) -> None:
    """The schema, then the specification's rules the schema does not encode."""
    errors = [e.message for e in VALIDATOR.iter_errors(doc)]
    assert not errors, (errors, doc)
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        assert len(directive["Metrics"]) <= MAX_METRICS
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for key in dimension_set:  # dimension targets: strings of at most 1024 chars
                assert isinstance(doc[key], str) and len(doc[key]) <= 1024, key
        for metric in directive["Metrics"]:  # metric targets: numbers on the root node
            value = doc[metric["Name"]]
            assert isinstance(value, int | float) and not isinstance(value, bool)
            assert math.isfinite(value)


def signal_values(doc: dict[str, Any]) -> dict[str, float]:
    """The ``<name>[:<subject>]@<window>`` signals an EMF object carries."""
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    (dimensions,) = directive["Dimensions"]
    subject = [doc[k] for k in dimensions if k in SUBJECT_KEYS]
    out = {}
    for metric in directive["Metrics"]:
        name = metric["Name"] + (f":{subject[0]}" if subject else "")
        out[f"{name}@{doc['window']}"] = doc[metric["Name"]]
    return out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_replay(tmp_path_factory.mktemp("cw"), "--cloudwatch")


def test_every_line_is_valid_emf(replayed: Path) -> None:
    lines = (replayed / "cloudwatch.jsonl").read_text().splitlines()
    assert len(lines) > 100
    for line in lines:
        check_emf(json.loads(line))


def test_values_dimensions_and_timestamps_equal_the_signals(replayed: Path) -> None:
    docs = [json.loads(line) for line in (replayed / "cloudwatch.jsonl").read_text().splitlines()]
    got: dict[tuple[str, int], dict[str, float]] = {}
    dimension_sets: Counter[tuple[str, ...]] = Counter()
    for doc in docs:
        if "alert_firing" in doc:
            continue
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "monitor"
        dimension_sets[tuple(directive["Dimensions"][0])] += 1
        values = got.setdefault((doc["model"], doc["_aws"]["Timestamp"]), {})
        for key, value in signal_values(doc).items():
            assert key not in values
            values[key] = value
    expected = {}
    for record in signal_lines(replayed):
        if finite_signals(record):
            expected[(record["model"], round(record["ts"] * 1000))] = finite_signals(record)
    assert got == expected  # exactly: same floats, nothing missing, nothing extra
    assert set(dimension_sets) == {
        ("model", "window"), ("model", "window", "feature"), ("model", "window", "class"),
        ("model", "window", "stream"),
    }  # fmt: skip
    psi = [d for d in docs if d.get("feature") == "amount" and "psi" in d]
    assert psi and all(d["window"] in ("all", "1m", "ewm1m") for d in psi)
    units = {m["Name"]: m["Unit"] for d in docs for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}  # noqa: E501
    assert units["prediction_count"] == "Count" and units["adwin"] == "Count"
    assert units["accuracy"] == "None" and units["psi"] == "None"


def test_alert_states_are_metrics(replayed: Path) -> None:
    docs = [json.loads(line) for line in (replayed / "cloudwatch.jsonl").read_text().splitlines()]
    states = [d for d in docs if "alert_firing" in d]
    alerts = alert_lines(replayed)
    assert len(alerts) == 2
    assert [(d["model"], d["rule"], d["alert_firing"], d["status"], d["_aws"]["Timestamp"])
            for d in states] == [
        (a["model"], a["rule"], 1 if a["status"] == "firing" else 0, a["status"],
         round(a["ts"] * 1000)) for a in alerts
    ]  # fmt: skip
    for doc in states:
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model", "rule"]]
        assert doc["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
            {"Name": "alert_firing", "Unit": "None"}
        ]


def test_groups_over_100_metrics_are_split() -> None:
    signals = {f"m{i:03d}@1h": i / 7 for i in range(250)}
    signals["nan_one@1h"] = float("nan")
    signals["psi:amount@1h"] = 0.5
    docs = emf_documents(PaneSignals("fraud", 1_700_000_010.25, signals), "ml/models")
    sizes = sorted(len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs)
    assert sizes == [1, 50, 100, 100]
    merged: dict[str, float] = {}
    for doc in docs:
        check_emf(doc)
        assert doc["_aws"]["Timestamp"] == 1_700_000_010_250
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ml/models"
        merged.update(signal_values(doc))
    del signals["nan_one@1h"]
    assert merged == signals


def test_a_pane_with_only_undefined_values_writes_nothing() -> None:
    assert emf_lines([PaneSignals("m", 10.0, {"f1@1h": float("nan")})]) == ""


def test_namespace_is_validated() -> None:
    body = {"models": [{"name": "m", "task": "regression"}]}
    outputs = {"cloudwatch": True, "cloudwatch_namespace": "ML/fraud"}
    ok = config_from_mapping({**body, "outputs": outputs})
    assert ok.outputs.cloudwatch_namespace == "ML/fraud"
    for bad in ("", "AWS/EC2", ":x", "x" * 256, "émf"):
        with pytest.raises(ConfigError, match=r"outputs\.cloudwatch_namespace"):
            config_from_mapping({**body, "outputs": {"cloudwatch_namespace": bad}})


class _SlowStream(io.StringIO):
    """A stream that hands the GIL over between characters, as a pipe under load might
    between chunks: unsynchronised writers would interleave mid-line."""

    def write(self, text: str) -> int:
        for start in range(0, len(text), 8):
            super().write(text[start : start + 8])
            time.sleep(0)
        return len(text)


def test_emf_lines_and_log_lines_never_interleave_on_stdout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _SlowStream()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("info", json=True)  # the handler writes to sys.stdout: ``out``
    try:
        exports = Exports.for_run(OutputsConfig(cloudwatch=True))
        logger = structlog.get_logger("interleave")
        pane = PaneSignals("fraud", 1_700_000_010.0, {f"m{i}@1h": i / 3 for i in range(20)})

        def logs() -> None:
            for i in range(60):
                logger.info("tick", i=i, text="x" * 40)

        thread = threading.Thread(target=logs)
        thread.start()
        for _ in range(15):
            exports.write([pane, pane])
        thread.join()
    finally:
        configure_logging("info", json=True, stream=io.StringIO())
    lines = out.getvalue().splitlines()
    emf = [json.loads(line) for line in lines if line.startswith('{"_aws"')]
    logged = [json.loads(line) for line in lines if not line.startswith('{"_aws"')]
    assert len(emf) == 30 and len(logged) == 60
    for doc in emf:
        check_emf(doc)
    assert [entry["i"] for entry in logged] == list(range(60))


def test_a_closed_stream_is_logged_not_raised() -> None:
    stream = io.StringIO()
    writer = EmfWriter(stream)
    stream.close()
    writer.write([PaneSignals("m", 10.0, {"f1@1h": 0.5})])
    assert writer.failures == 1 and writer.lines_written == 0


def test_run_prints_emf_between_its_log_lines(broker: Any, make_topics: Any, produce: Any,
                                               tmp_path: Path) -> None:
    """``monitor run`` on a real broker: stdout is JSON lines only, the EMF ones valid, and
    each equal to a line of ``monitor replay --cloudwatch`` over a capture of the topics;
    its TensorBoard scalars equal replay's signals too."""
    topics = make_topics(2, 2)
    source = tmp_path / "source.jsonl"
    write_capture(source)
    records: dict[str, list[Any]] = {topics.predictions: []}
    for line in source.read_text().splitlines():
        env = json.loads(line)
        records[topics.predictions].append(
            (env["key"].encode(), env["payload"].encode(), [], env["partition"])
        )
    produce(broker.bootstrap, topics.predictions, records[topics.predictions])
    total = len(records[topics.predictions])

    http_port = free_port()
    config_path = tmp_path / "monitor.toml"
    # No reference file here; empty labels partitions stop holding the watermark after 2 s.
    body = CONFIG.replace('reference = "reference.csv"\n', "").replace(
        'allowed_lateness = "0s"\n', 'allowed_lateness = "0s"\nidle_timeout = "2s"\n'
    )
    config_path.write_text(
        daemon_config(broker.bootstrap, topics, http_port, body)
        + '\n[outputs]\ncloudwatch = true\ncloudwatch_namespace = "monitor/test"\n'
        + 'tensorboard_dir = "tb"\n'
    )
    with Daemon(config_path) as daemon:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            daemon.assert_alive()
            if '"alert_firing":0' in daemon.log_path.read_text(errors="replace"):
                break  # the resolution comes from the last panes that can close
            time.sleep(0.5)
        code, _ = daemon.terminate()
        assert code == 0, daemon.log_tail()
    lines = daemon.log_path.read_text().splitlines()
    docs = [json.loads(line) for line in lines]  # every stdout/stderr line is one JSON object
    emf = [d for d in docs if "_aws" in d]
    logged = [d for d in docs if "_aws" not in d]
    assert emf and all("event" in d and "level" in d for d in logged)
    assert any(d["event"] == "checkpoint" and d["final"] for d in logged)
    for doc in emf:
        check_emf(doc)
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "monitor/test"

    capture_path = tmp_path / "capture.jsonl"
    assert capture(broker.bootstrap, [topics.predictions], capture_path, total) == total
    config = load_config(config_path)
    replay(config, [str(capture_path)], tmp_path / "replay")
    replayed = (tmp_path / "replay" / "cloudwatch.jsonl").read_text().splitlines()
    replayed_docs = {json.dumps(json.loads(line), sort_keys=True) for line in replayed}
    printed = [json.dumps(doc, sort_keys=True) for doc in emf]
    assert len(set(printed)) == len(printed)
    missing = [doc for doc in printed if doc not in replayed_docs]
    assert not missing, missing[:2]
    assert len(printed) >= len(replayed_docs) // 2

    expected = {
        (record["model"], scalar_tag(name), int(record["ts"])): float(np.float32(value))
        for record in signal_lines(tmp_path / "replay")
        for name, value in finite_signals(record).items()
    }
    for model in ("fraud", "intent"):
        run = EventAccumulator(str(tmp_path / "tb" / model), size_guidance={"scalars": 0})
        run.Reload()
        points = [(tag, e.step, e.value) for tag in run.Tags()["scalars"]
                  for e in run.Scalars(tag) if not tag.startswith("alert/")]  # fmt: skip
        assert len(points) > 100
        for tag, step, value in points:
            assert expected[(model, tag, step)] == value, (model, tag, step)


def test_each_kind_of_subject_has_its_dimension() -> None:
    signals = {"psi:amount@1h": 0.1, "class_recall:cat@1h": 0.5, "adwin:error@all": 1.0,
               "gap:f1@1h": -0.02, "novel:thing@1h": 3.0, "f1@1h": 0.9}  # fmt: skip
    docs = emf_documents(PaneSignals("m", 10.0, signals))
    got = {}
    for doc in docs:
        check_emf(doc)
        (dimensions,) = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        got[tuple(dimensions[2:])] = {k: doc[k] for k in dimensions[2:]}
    assert got == {
        (): {}, ("feature",): {"feature": "amount"}, ("class",): {"class": "cat"},
        ("stream",): {"stream": "error"}, ("metric",): {"metric": "f1"},
        ("subject",): {"subject": "thing"},
    }  # fmt: skip
    merged = {k: v for doc in docs for k, v in signal_values(doc).items()}
    assert merged == signals
