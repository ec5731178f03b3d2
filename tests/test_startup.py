"""The daemon's start (in-process, real broker): the HTTP port and the group join begin
before the state loads (``monitor.startup.Prestart``), and ``/readyz`` turns 200 as soon
as every assigned partition's lag is known, without waiting for a tick."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import monitor.app
import monitor.kafka.source
from monitor.app import App
from monitor.config import MonitorConfig, config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from monitor.startup import STARTING, Prestart
from monitor.state.checkpoint import CheckpointStore
from tests.conftest import http_get, prediction_json, produce_records

READY_WITHIN_S = 30.0


def _config(broker: Any, topics: Any, state_dir: Path) -> MonitorConfig:
    return config_from_mapping(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap,
                "group_id": topics.group_id,
                "predictions_topic": topics.predictions,
                "labels_topic": topics.labels,
                "alerts_topic": topics.alerts,
                "dead_letter_topic": topics.dead_letters,
                "session_timeout": 6,
                "heartbeat_interval": 1,
            },
            "http": {"listen": "127.0.0.1:0"},
            "state": {"dir": str(state_dir), "checkpoint_interval": 60},
            "models": [{"name": "m", "task": "binary", "positive_class": 1}],
        }
    )


@pytest.fixture
def start() -> Iterator[Callable[[App], threading.Thread]]:
    """``start(app)`` runs ``app`` on a thread; every app started is stopped at the end."""
    started: list[tuple[App, threading.Thread]] = []

    def run(app: App) -> threading.Thread:
        thread = threading.Thread(target=app.run, daemon=True)
        thread.start()
        started.append((app, thread))
        return thread

    yield run
    for app, thread in started:
        app.stop.set()
        thread.join(timeout=20)


def _wait_ready(app: App) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline and not app.ready:
        time.sleep(0.05)
    assert app.ready, app.ready_reason


def test_ready_as_soon_as_lag_is_known_not_at_the_next_tick(
    broker: Any, make_topics: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: Any
) -> None:
    # The tick that follows the assignment comes right after the first poll, before the
    # first fetch has answered (empty partitions: the broker holds it for the fetch wait,
    # made a second here), and the next one is an hour away: only a readiness judged
    # between ticks gets to 200.
    monkeypatch.setattr(monitor.app, "TICK_S", 3600.0)
    monkeypatch.setattr(monitor.kafka.source, "FETCH_MAX_WAIT_MS", 1000)
    topics = make_topics(2, 2)
    app = App(_config(broker, topics, tmp_path))
    thread = start(app)
    _wait_ready(app)
    assert app.ready_reason == "ok"
    assert http_get(f"{app.http.url}/readyz") == (200, "ok\n")
    assert app.lag == {(t, p): 0 for t in (topics.predictions, topics.labels) for p in (0, 1)}
    # published at the flip, by the loop thread right after it sets ``ready`` (so maybe a
    # moment after this thread saw it): within seconds, where the next tick is an hour away
    deadline = time.monotonic() + 5.0
    while app.registry.get_sample_value("monitor_ready") != 1.0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.registry.get_sample_value("monitor_ready") == 1.0
    app.stop.set()
    thread.join(timeout=20)
    assert not thread.is_alive()


def test_prestart_listens_and_joins_while_the_checkpoint_loads_then_resumes_from_it(
    broker: Any, make_topics: Any, tmp_path: Path, start: Any
) -> None:
    topics = make_topics(1, 1)
    config = _config(broker, topics, tmp_path)
    produce_records(
        broker.bootstrap, topics.predictions, [(b"k", prediction_json(i), [], 0) for i in range(8)]
    )
    # An earlier run processed the first 5 (with inline labels, which the copies on the
    # topic lack) and checkpointed them: the restart must read only offsets 5..7.
    earlier = Pipeline(config)
    earlier.process(
        [Message(topics.predictions, 0, i, b"k", prediction_json(i, label=1)) for i in range(5)]
    )
    CheckpointStore(config.state.dir).save(earlier)

    prestart = Prestart(config).start()
    url = prestart.http.url
    assert http_get(f"{url}/readyz") == (503, f"{STARTING}\n")
    assert http_get(f"{url}/healthz")[0] == 200
    assert not prestart.source.connected  # joining in the background, not handed over

    app = App(config, prestart=prestart)
    assert app.http is prestart.http and app.source is prestart.source
    assert app.registry is prestart.registry
    assert app.engine.events == 5
    assert http_get(f"{url}/readyz")[1] == "starting\n"  # the app's own reason from now on
    start(app)
    _wait_ready(app)
    assert http_get(f"{url}/readyz") == (200, "ok\n")
    assert app.core is not None
    counts = app.core.report().models["m"].counts
    assert counts["predictions"] == 8 and counts["matched"] == 5, counts


def test_sigterm_as_soon_as_the_port_answers_stops_cleanly(
    broker: Any, make_topics: Any, tmp_path: Path
) -> None:
    """The HTTP port answers before the app has built its engine (prestart): a SIGTERM
    then (an orchestrator stopping a pod that just came up) ends the run with exit 0 and
    its final checkpoint, not with the signal's default death."""
    from monitor.broker import free_port
    from tests.daemon import Daemon, daemon_config

    topics = make_topics(2)
    port = free_port()
    config = tmp_path / "monitor.toml"
    body = '[[models]]\nname = "m"\ntask = "binary"\npositive_class = 1\n'
    config.write_text(daemon_config(broker.bootstrap, topics, port, body))
    with Daemon(config) as daemon:
        deadline = time.monotonic() + 30
        while not _answers(port):
            daemon.assert_alive()
            assert time.monotonic() < deadline, daemon.log_tail()
            time.sleep(0.01)
        code, _ = daemon.terminate(timeout=30)
        assert code == 0, daemon.log_tail()


def _answers(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
