"""A model that leaves its drift warmup frees the raw predictions it held (tens of MB at a
high rate), and ``monitor run`` gives that memory back: the heap is trimmed at the tick
after the poll that ended the warmup (in-process daemon, real broker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import monitor.gc_policy
from monitor.app import App
from monitor.config import config_from_mapping
from tests.conftest import prediction_json, produce_records


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The times ``gc_policy.release`` was called (it still trims)."""
    calls: list[float] = []
    release = monitor.gc_policy.release

    def counted() -> bool:
        calls.append(time.monotonic())
        return release()

    monkeypatch.setattr(monitor.gc_policy, "release", counted)
    yield calls


def test_the_heap_is_trimmed_once_the_warmup_reference_is_built(
    broker: Any, make_topics: Any, tmp_path: Path, trims: list[float]
) -> None:
    topics = make_topics(1, 1)
    config = config_from_mapping({
        "kafka": {"bootstrap_servers": broker.bootstrap, "group_id": topics.group_id,
                  "predictions_topic": topics.predictions, "labels_topic": topics.labels,
                  "alerts_topic": topics.alerts, "dead_letter_topic": topics.dead_letters,
                  "session_timeout": 6, "heartbeat_interval": 1},
        "http": {"listen": "127.0.0.1:0"},
        "state": {"dir": str(tmp_path), "checkpoint_interval": 60},
        "time": {"pane": "10s", "allowed_lateness": "5s", "idle_timeout": "2s"},
        "models": [{"name": "m", "task": "binary", "positive_class": 1,
                    "features": {"x": "numeric"}, "reference_warmup": 100}],
    })  # fmt: skip
    # 400 predictions over 400 s of event time: the panes that hold the first 100 close
    # long before the last one arrives (the empty labels partition is idle after 2 s).
    produce_records(broker.bootstrap, topics.predictions,
                    [(b"k", prediction_json(i, features={"x": i % 17}), [], 0)
                     for i in range(400)])  # fmt: skip
    app = App(config)
    assert app.engine.by_name["m"].warmup_target == 100
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while app.engine.by_name["m"].warmup_target and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not app.engine.by_name["m"].warmup_target, "the warmup never ended"
        ended = time.monotonic()
        # The trim is counted as it starts; the daemon clears trim_due once it returns.
        while (not [t for t in trims if t >= ended - 5] or app.trim_due) and (
            time.monotonic() < ended + 10
        ):
            time.sleep(0.1)
        # No large message came: the only reason to trim is the warmup's end.
        assert trims, "the heap was not trimmed after the warmup"
        assert not app.trim_due
    finally:
        app.stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
