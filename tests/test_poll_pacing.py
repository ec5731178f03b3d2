"""``kafka.min_poll_interval``: a daemon whose input trickles in processes what arrives
between polls as one batch, instead of polling again at once and processing events one or
two at a time (each poll costs the core a fixed amount per model: at a few hundred events a
second that kept a core busy); a backlog is still read poll after poll without a wait
(in-process daemon, real broker, both input clients)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from monitor.app import App
from monitor.config import config_from_mapping
from tests.conftest import prediction_json, produce_records

CLIENTS = ["kafka-python", "confluent"]


def _config(broker: Any, topics: Any, tmp_path: Path, client: str, interval: str,
            most: int = 10_000) -> Any:  # fmt: skip
    return config_from_mapping({
        "kafka": {"bootstrap_servers": broker.bootstrap, "group_id": topics.group_id,
                  "predictions_topic": topics.predictions, "labels_topic": topics.labels,
                  "alerts_topic": topics.alerts, "dead_letter_topic": topics.dead_letters,
                  "session_timeout": 6, "heartbeat_interval": 1, "client": client,
                  "min_poll_interval": interval, "max_poll_records": most},
        "http": {"listen": "127.0.0.1:0"},
        "state": {"dir": str(tmp_path / f"state-{interval}"), "checkpoint_interval": 60},
        "time": {"pane": "10s", "allowed_lateness": "5s", "idle_timeout": "2s"},
        "models": [{"name": "m", "task": "binary", "positive_class": 1,
                    "features": {"x": "numeric"}}],
    })  # fmt: skip


@contextmanager
def _running(config: Any) -> Iterator[tuple[App, list[int]]]:
    """The daemon running in a thread, ready; yields it and the sizes of the polls its
    core was given (every one that held a message)."""
    app = App(config)
    sizes: list[int] = []
    process = app._process

    def counted(messages: Any) -> None:
        sizes.append(len(messages))
        process(messages)

    app._process = counted  # type: ignore[method-assign]
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not app.ready and time.monotonic() < deadline:
            assert thread.is_alive(), "the daemon stopped"
            time.sleep(0.05)
        assert app.ready, "the daemon never became ready"
        yield app, sizes
    finally:
        app.stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def _trickle(bootstrap: str, topic: str, rate: float, seconds: float, first: int) -> int:
    """Produce predictions ``first``, ``first + 1``, ... at ``rate`` a second for
    ``seconds``, each on its own (a producer that sends as its model serves); how many."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    start, sent = time.monotonic(), 0
    while (now := time.monotonic()) - start < seconds:
        while sent < (now - start) * rate:
            producer.produce(topic, prediction_json(first + sent, features={"x": sent % 7}),
                             f"p{first + sent}".encode())  # fmt: skip
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    assert producer.flush(30) == 0
    return sent


def _processed(app: App, sizes: list[int], n: int) -> None:
    deadline = time.monotonic() + 30
    while sum(sizes) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(sizes) == n, f"{sum(sizes)} of {n} messages processed"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_trickle_is_processed_in_batches_of_the_interval(
    broker: Any, make_topics: Any, tmp_path: Path, client: str
) -> None:
    polls = {}
    for interval in ("0s", "1s"):
        topics = make_topics(2, 2)
        with _running(_config(broker, topics, tmp_path, client, interval)) as (app, sizes):
            sent = _trickle(broker.bootstrap, topics.predictions, 100.0, 4.0, 0)
            _processed(app, sizes, sent)
            polls[interval] = len(sizes)
    # 4 s of events, a poll at most every second (and the last ones): a handful of batches
    assert polls["1s"] <= 4 + 4, polls
    # polled again at once, the same trickle came in many small ones
    assert polls["0s"] >= 25, polls


@pytest.mark.parametrize("client", CLIENTS)
def test_a_backlog_is_read_without_waiting_between_polls(
    broker: Any, make_topics: Any, tmp_path: Path, client: str
) -> None:
    topics = make_topics(2, 2)
    n = 40_000
    produce_records(broker.bootstrap, topics.predictions,
                    [(f"p{i}".encode(), prediction_json(i, features={"x": i % 7}), [], None)
                     for i in range(n)])  # fmt: skip
    # A poll of 100,000 records at most: a fetch (1 MB a partition) brings far fewer, less
    # than a tenth of that, while most of the backlog is still to read. A 10 s wait after
    # such a poll would show as a gap of 10 s; the backlog is read in a second or two.
    config = _config(broker, topics, tmp_path, client, "10s", most=100_000)
    with _running(config) as (_, sizes):
        ready = time.monotonic()
        while sum(sizes) < n and time.monotonic() < ready + 40:
            time.sleep(0.05)
        took = time.monotonic() - ready
        assert sum(sizes) == n, f"{sum(sizes)} of {n} messages after 40 s: {sizes}"
        assert took < 9.0, f"{took:.1f} s to read the backlog in polls of {sizes}"
