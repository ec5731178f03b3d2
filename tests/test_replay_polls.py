"""A replay, and the Python API over tables, feed the core polls of
``kafka.max_poll_records`` messages: the polls ``run`` makes while it reads a backlog, so
that panes close where they would close in ``run`` catching up the same records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import monitor
from monitor.config import config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.replay import replay

EVENTS = 250


def _config(poll: int) -> Any:
    return config_from_mapping({
        "kafka": {"max_poll_records": poll},
        "models": [{"name": "m", "task": "binary", "positive_class": "1"}],
    })


def _event(i: int) -> dict[str, Any]:
    return {"prediction_id": f"p{i}", "model": "m", "ts": 1_700_000_000 + i, "prediction": 1}


def _sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the polls :meth:`Pipeline.process` is given from now on."""
    sizes: list[int] = []
    process = Pipeline.process

    def counted(self: Pipeline, messages: Any) -> Any:
        sizes.append(len(messages))
        return process(self, messages)

    monkeypatch.setattr(Pipeline, "process", counted)
    return sizes


@pytest.mark.parametrize(("poll", "expected"), [(100, [100, 100, 50]), (10_000, [EVENTS])])
def test_a_replay_reads_polls_of_max_poll_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, poll: int, expected: list[int]
) -> None:
    capture = tmp_path / "capture.jsonl"
    with open(capture, "w", encoding="utf-8") as fh:
        for i in range(EVENTS):
            fh.write(json.dumps({"topic": "predictions", "partition": 0, "offset": i,
                                 "payload": json.dumps(_event(i))}) + "\n")  # fmt: skip
    sizes = _sizes(monkeypatch)
    summary = replay(_config(poll), [str(capture)], tmp_path / "out")
    assert sizes == expected
    assert summary["models"]["m"]["counts"]["predictions"] == EVENTS


@pytest.mark.parametrize(("poll", "expected"), [(100, [100, 100, 50]), (10_000, [EVENTS])])
def test_evaluate_gives_the_core_polls_of_max_poll_records(
    monkeypatch: pytest.MonkeyPatch, poll: int, expected: list[int]
) -> None:
    sizes = _sizes(monkeypatch)
    monitor.evaluate(_config(poll), [_event(i) for i in range(EVENTS)])
    assert sizes == expected
