"""Labels read in step with their predictions (:mod:`monitor.label_pacing`): the pacer's
decisions, and a daemon catching up a backlog of both topics on a real broker, where the
label records (smaller, so more of them per fetch) would otherwise run far ahead."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from monitor.app import App
from monitor.config import config_from_mapping
from monitor.events.message import Message
from monitor.label_pacing import LabelPacer
from tests.conftest import prediction_json, produce_records

P, L = "predictions", "labels"


def _pacer(lead: float = 60.0) -> LabelPacer:
    return LabelPacer(P, L, lead)


ASSIGNED = {(P, 0), (L, 0), (P, 1), (L, 1)}


def test_a_labels_partition_ahead_of_predictions_with_a_backlog_is_paused() -> None:
    pacer = _pacer()
    times = {0: {P: 1000.0, L: 1061.0}, 1: {P: 1000.0, L: 1059.0}}
    pause, resume = pacer.decide(times, {(P, 0): 5, (P, 1): 5}, ASSIGNED)
    assert (pause, resume) == ({(L, 0)}, set())
    assert pacer.held == {(L, 0)}
    # Still ahead: nothing changes.
    assert pacer.decide(times, {(P, 0): 5, (P, 1): 5}, ASSIGNED) == (set(), set())


def test_labels_read_before_any_prediction_wait_for_a_backlog_of_predictions() -> None:
    pacer = _pacer()
    times = {0: {L: 1000.0}}
    assert pacer.decide(times, {(P, 0): 1}, ASSIGNED)[0] == {(L, 0)}
    # The predictions partition not read from yet (no lag known): its records are to come.
    assert _pacer().decide(times, {}, ASSIGNED)[0] == {(L, 0)}
    # Nothing of them to read (lag 0): never paused.
    assert _pacer().decide(times, {(P, 0): 0}, ASSIGNED) == (set(), set())


@pytest.mark.parametrize(
    ("times", "lag", "assigned"),
    [
        ({0: {P: 1031.0, L: 1061.0}}, {(P, 0): 5}, ASSIGNED),  # within half the lead
        ({0: {P: 1000.0, L: 1061.0}}, {(P, 0): 0}, ASSIGNED),  # predictions read to the end
        ({0: {P: 1000.0, L: 1061.0}}, {(P, 0): 5}, ASSIGNED - {(P, 0)}),  # twin not here
    ],
)
def test_a_paused_labels_partition_is_resumed(
    times: dict[int, dict[str, float]], lag: dict[tuple[str, int], int], assigned: set[Any]
) -> None:
    pacer = _pacer()
    assert pacer.decide({0: {P: 1000.0, L: 1061.0}}, {(P, 0): 5}, ASSIGNED)[0] == {(L, 0)}
    assert pacer.decide(times, lag, assigned) == (set(), {(L, 0)})
    assert not pacer.held


def test_hysteresis_keeps_it_paused_until_half_the_lead() -> None:
    pacer = _pacer()
    pacer.decide({0: {P: 1000.0, L: 1061.0}}, {(P, 0): 5}, ASSIGNED)
    assert pacer.decide({0: {P: 1020.0, L: 1061.0}}, {(P, 0): 5}, ASSIGNED) == (set(), set())
    assert pacer.decide({0: {P: 1040.0, L: 1061.0}}, {(P, 0): 5}, ASSIGNED) == (set(), {(L, 0)})


def test_at_the_head_labels_from_a_clock_ahead_are_not_paused() -> None:
    """A predictions partition with no more than a poll's records left is at the head:
    labels 2 min ahead of it (their producer's clock) are read, and a labels partition
    paused during a catch-up is resumed once the backlog is read, whatever its lead."""
    pacer = LabelPacer(P, L, 60.0, backlog=500)
    times = {0: {P: 1000.0, L: 1120.0}}
    assert pacer.decide(times, {(P, 0): 500}, ASSIGNED) == (set(), set())
    assert pacer.decide(times, {(P, 0): 501}, ASSIGNED) == ({(L, 0)}, set())
    assert pacer.decide(times, {(P, 0): 40}, ASSIGNED) == (set(), {(L, 0)})
    # Not read from yet: a backlog, whatever the threshold.
    assert pacer.decide(times, {}, ASSIGNED) == ({(L, 0)}, set())


def test_a_revoked_partition_is_forgotten_and_a_lead_of_zero_never_pauses() -> None:
    pacer = _pacer()
    pacer.decide({0: {P: 1000.0, L: 1061.0}}, {(P, 0): 5}, ASSIGNED)
    assert pacer.decide({}, {}, {(P, 1), (L, 1)}) == (set(), set())
    assert not pacer.held
    off = _pacer(0.0)
    assert off.decide({0: {P: 1000.0, L: 9999.0}}, {(P, 0): 5}, ASSIGNED) == (set(), set())


# -- a backlog on a real broker ------------------------------------------------------------

PREDICTIONS = 20_000
PARTS = 2
# 400 B predictions: a partition's 4 MB take several fetches (1 MB a partition each),
# its labels' 0.7 MB one.
NOTE = "n" * 300


def _label_json(i: int) -> bytes:
    """The label of ``prediction_json(i)``, 2 s of event time after it."""
    return json.dumps({"prediction_id": f"p{i}", "label": i % 2, "ts": 1_700_000_002 + i}).encode()


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_a_backlog_is_read_in_step_and_every_label_joins(
    broker: Any, make_topics: Any, tmp_path: Path, client: str
) -> None:
    """20,000 predictions (one a second of event time) and their labels wait in both topics.
    Read as fetched, the labels would run thousands ahead; paced, they stay within the lead
    (10 s) and a poll: the early labels never reach the cap of 3,000, so none is evicted,
    and every label joins its prediction."""
    topics = make_topics(PARTS)
    produce_records(broker.bootstrap, topics.predictions,
                    [(f"p{i}".encode(), prediction_json(i, features={"note": NOTE}), [], i % PARTS)
                     for i in range(PREDICTIONS)])  # fmt: skip
    produce_records(broker.bootstrap, topics.labels,
                    [(f"p{i}".encode(), _label_json(i), [], i % PARTS)
                     for i in range(PREDICTIONS)])  # fmt: skip
    config = config_from_mapping({
        "kafka": {"bootstrap_servers": broker.bootstrap, "group_id": topics.group_id,
                  "predictions_topic": topics.predictions, "labels_topic": topics.labels,
                  "alerts_topic": topics.alerts, "dead_letter_topic": topics.dead_letters,
                  "session_timeout": 6, "heartbeat_interval": 1, "client": client,
                  "max_poll_records": 500, "label_lead": "10s"},
        "http": {"listen": "127.0.0.1:0"},
        "state": {"dir": str(tmp_path), "checkpoint_interval": 60},
        "time": {"pane": "1m", "allowed_lateness": "1h"},
        "models": [{"name": "m", "task": "binary", "positive_class": 1,
                    "max_early_labels": 3_000, "label_ttl": "30d"}],
    })  # fmt: skip

    class Watched(App):
        """The daemon, noting after each poll how many early labels wait and whether the
        pacer holds a labels partition back."""

        seen = 0
        peak_early = 0
        paced = False

        def _process(self, messages: Sequence[Message]) -> None:
            super()._process(messages)
            self.seen += len(messages)
            early = sum(len(s.join.early) for s in self.engine.partitions.values())
            self.peak_early = max(self.peak_early, early)
            self.paced |= bool(self.pacer.held)

    app = Watched(config)
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while app.seen < 2 * PREDICTIONS and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.1)
    finally:
        app.stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert app.seen == 2 * PREDICTIONS, f"read {app.seen} of {2 * PREDICTIONS} messages"
    counts = app.engine.summary()["models"]["m"]["counts"]
    assert app.paced, "the labels never ran ahead: the test did not exercise pacing"
    assert counts["labels"] == PREDICTIONS, counts
    assert counts["matched"] == PREDICTIONS
    assert app.peak_early < 3_000, app.peak_early
