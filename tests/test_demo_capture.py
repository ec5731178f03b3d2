"""``monitor demo --capture``: the demo stream as a kcat capture, with its reference and config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import load_config
from monitor.demo import CAPTURE_START, MODEL, REFERENCE_ROWS, demo_config


def test_capture_holds_the_demo_traffic_and_a_config_like_the_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--capture", str(tmp_path), "--seconds", "20", "--rate", "50"]) == 0
    assert "capture.jsonl" in capsys.readouterr().out
    config = load_config(str(tmp_path / "monitor.toml"))
    model = config.models[0]
    expected = demo_config("127.0.0.1:9092", 0, ".").models[0]
    assert model.reference == str(tmp_path / "reference.csv")
    # the capture's reference is a file; the live demo's, its first predictions
    assert model.reference_warmup == 0 and expected.reference_warmup > 0
    same = {"reference", "reference_warmup"}
    assert model.model_dump(exclude=same) == expected.model_dump(exclude=same)
    assert config.time.pane == 5.0

    predictions: dict[str, float] = {}
    labels: dict[str, float] = {}
    for line in (tmp_path / "capture.jsonl").read_text().splitlines():
        envelope = json.loads(line)
        assert envelope["partition"] in range(4)
        try:
            event = json.loads(envelope["payload"])
        except ValueError:
            continue  # the demo's garbage messages
        if not isinstance(event, dict) or "ts" not in event or event.get("model") != MODEL:
            continue
        target = predictions if envelope["topic"] == "predictions" else labels
        if "label" in event or envelope["topic"] == "predictions":
            target[envelope["key"]] = float(event["ts"])
    # 20 s at 50/s, a few malformed; event time from CAPTURE_START, labels 2-20 s later.
    assert 950 <= len(predictions) <= 1000
    assert min(predictions.values()) > CAPTURE_START
    assert max(predictions.values()) <= CAPTURE_START + 20.0
    assert set(labels) <= set(predictions)
    assert len(labels) > 0.9 * len(predictions)
    delays = [labels[k] - predictions[k] for k in labels]
    assert min(delays) >= 2.0 and max(delays) <= 20.1

    with open(tmp_path / "reference.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert 0.98 * REFERENCE_ROWS <= len(rows) <= REFERENCE_ROWS
    assert {r["country"] for r in rows} <= {"US", "GB", "DE", "FR", "BR", "IN"}


def test_capture_needs_a_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--capture", str(tmp_path), "--seconds", "0"]) == 2
    assert "--seconds" in capsys.readouterr().err
