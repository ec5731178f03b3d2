"""Two replicas give the model one process gives (issue: one event-time clock and one state
per model). Replicas A and B in one group over 6-partition topics with the Kafka state
store; a single process C (local store, its own group and alert topic) reads the same
topics. While a stream with delayed labels, slices and garbage flows, B is SIGKILLed and
started again, then A is stopped with SIGTERM and started again (a rolling deploy).

At the end every model-level series (``monitor_model_metric`` of every window, metric
and slice, the model counters, the label-delay histogram, the alert rule states) comes
from exactly one replica, and equals C's; the alert transitions sent by the replicas
(id and status) are C's.

``MONITOR_REPLICAS=2,3`` runs it with three replicas too (4 input partitions each).

Event time runs at a quarter of wall time so that the takeovers stay inside the allowed
lateness in event time: no event is late anywhere, and the comparison is exact.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.broker import free_port
from tests.daemon import daemon_config, read_topic
from tests.faults.harness import Daemon, PacedProducer
from tests.faults.test_replicas import PARTITIONS, PRODUCE_S, _stream, _wait

BODY = """
[time]
pane = "500ms"
allowed_lateness = "6s"
idle_timeout = "5s"

[[models]]
name = "fraud"
task = "binary"
positive_class = 1
label_ttl = "10m"
windows = ["all", "5s", "ewm5s"]
segments = ["region"]
detectors = ["adwin", "cusum"]
# The drift reference is the first 1,500 predictions: built once, by the model's owner.
features = { amount = "numeric", country = "categorical" }
reference_warmup = 1500
drift_min_samples = 50

[[models.alerts]]
name = "accuracy-low"
signal = "accuracy@5s"
op = "<"
threshold = 0.89
resolve_threshold = 0.893

[[models.alerts]]
name = "drift-of-errors"
kind = "detector"
signal = "cusum:error@all"
"""
#: Families that are the model's (stage 2): they come from the model's owner alone.
MODEL_FAMILIES = (
    "monitor_model_metric",
    "monitor_slice_predictions_total",
    "monitor_slice_joined_total",
    "monitor_confusion_total",
    "monitor_predictions_received_total",
    "monitor_labels_received_total",
    "monitor_join_total",
    "monitor_late_events_total",
    "monitor_label_delay_seconds",
    "monitor_alert_state",
    "monitor_pending_predictions",
)


def _model_series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # model="": stage 1's count of labels naming no model, each replica's own.
            if sample.name.startswith(MODEL_FAMILIES) and sample.labels.get("model"):
                labels = {k: v for k, v in sample.labels.items() if k != "group_id"}
                out[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return out


def _owns_partials(daemon: Daemon) -> bool:
    """Whether the daemon's latest start has been given partitions of the partials topic."""
    text = daemon.log_path.read_text(errors="replace")
    latest = text[text.rfind("--- start"):]
    return any(
        '"partials_ownership_changed"' in line and json.loads(line)["owned"]
        for line in latest.splitlines()
        if line.startswith("{")
    )


def _same(got: float, want: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


Views = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def settled_views(daemons: list[Daemon], timeout: float) -> tuple[list[Views], Views]:
    """Wait until everything is read and every model series of every daemon (the replicas,
    then the single process last) has been still for a few seconds; their views then.
    Not "equal to it": a difference must show in :func:`assert_same_as_one_process`."""
    last: list[list[Views]] = []

    def settled() -> bool:
        lag = sum(d.sample("monitor_consumer_lag") or 0.0 for d in daemons)
        views = [_model_series(d.get("/metrics")[1]) for d in daemons]
        last.append(views)
        one_owner = sum(bool(v) for v in views[:-1]) == 1
        return (
            lag == 0 and one_owner and bool(views[-1]) and len(last) > 15
            and last[-1] == last[-15]
        )  # fmt: skip

    _wait(daemons, "every daemon caught up and still", settled, timeout)
    *replica_views, single = last[-1]
    return replica_views, single


def assert_same_as_one_process(
    bootstrap: str, topics: Any, replicas: list[Daemon], replica_views: list[Views],
    single: Views, learnt: bool = True,
) -> None:  # fmt: skip
    """Exactly one replica exports the model's series, and they equal the single
    process's; the warmup reference was built by stage 2 alone (and, with ``learnt``,
    every replica's stage 1 learnt it); the replicas' alert topic holds the single
    process's alert transitions (its own topic: ``<alerts>-single``)."""
    exporting = [v for v in replica_views if v]
    assert len(exporting) == 1, "the model's series must come from exactly one replica"
    owner = exporting[0]
    assert single[("monitor_predictions_received_total", (("model", "fraud"),))] > 0
    assert single[("monitor_late_events_total", (("model", "fraud"),))] == 0
    psi = [v for (name, labels), v in single.items()
           if name == "monitor_model_metric" and ("metric", "psi:amount") in labels]  # fmt: skip
    assert psi and max(psi) > 0.1, "the shift of amount must show against the warmup reference"
    for d in replicas:
        events = [json.loads(line) for line in d.log_path.read_text().splitlines()
                  if line.startswith("{") and '"warmup_profile_' in line]  # fmt: skip
        assert not [e for e in events if e["event"] == "warmup_profile_built"
                    and e["logger"] == "monitor.core.engine"], d.log_tail()  # fmt: skip
        if learnt:
            assert any(e["event"] == "warmup_profile_learnt" for e in events), d.log_tail()
    assert set(owner) == set(single), sorted(set(owner) ^ set(single))[:10]
    different = {k: (owner[k], v) for k, v in single.items() if not _same(owner[k], v)}
    assert not different, (len(different), len(single), sorted(different.items())[:20])

    def transitions(topic: str) -> set[tuple[str, str]]:
        return {
            (body["alert_id"], body["status"])
            for body in (json.loads(m.value()) for m in read_topic(bootstrap, topic))
        }

    want = transitions(f"{topics.alerts}-single")
    assert want, "the stream must make the rules fire"
    got = transitions(topics.alerts)
    assert got == want, (sorted(got - want), sorted(want - got))


#: Replica counts to run: 2 always; ``MONITOR_REPLICAS=2,3`` adds a 3-replica run.
COUNTS = [int(n) for n in os.environ.get("MONITOR_REPLICAS", "2").split(",")]


@pytest.mark.parametrize("n", COUNTS, ids=[f"{n}-replicas" for n in COUNTS])
def test_replicas_through_a_crash_and_a_rolling_deploy_equal_one_process(
    broker: Any, make_topics: Any, tmp_path: Path, n: int
) -> None:
    topics = make_topics(PARTITIONS, PARTITIONS)
    stream, _labels = _stream(seed=21, features=True)
    state = f'store = "kafka"\ntopic = "state-{uuid.uuid4().hex[:8]}"'
    replicas: list[Daemon] = []
    for name in [f"r{i}" for i in range(n)] + ["single"]:
        (tmp_path / name).mkdir()
        port = free_port()
        text = daemon_config(
            broker.bootstrap, topics, port, BODY, checkpoint_interval="1s",
            state=state if name != "single" else "",
        )  # fmt: skip
        if name == "single":  # one process on its own: its own group and alert topic
            text = text.replace(topics.group_id, f"{topics.group_id}-single")
            text = text.replace(topics.alerts, f"{topics.alerts}-single")
        config = tmp_path / name / "monitor.toml"
        config.write_text(text)
        replicas.append(Daemon(config, port, tmp_path / name / "daemon.log"))
    c = replicas.pop()
    daemons = [*replicas, c]
    a, b = replicas[0], replicas[1]
    share = 2 * PARTITIONS // n

    def assigned(d: Daemon) -> float | None:
        return d.sample("monitor_assigned_partitions")

    def split() -> bool:
        return all(assigned(d) == share for d in replicas)

    def owners() -> int:
        return sum(bool(_model_series(d.get("/metrics")[1])) for d in replicas)

    producer = PacedProducer(broker.bootstrap, topics, stream, PRODUCE_S)
    try:
        c.start()
        a.start()
        _wait([a, c], "A to own every partition", lambda: assigned(a) == 2 * PARTITIONS, 60)
        for d in replicas[1:]:
            d.start()
        _wait(replicas, "an even split", split, 90)
        producer.start()
        _wait(replicas, "a quarter of the stream", lambda: producer.sent > len(stream) // 4, 60)
        b.kill()
        others = [d for d in replicas if d is not b]
        _wait(others, "B's partitions taken over",
              lambda: sum(assigned(d) or 0 for d in others) == 2 * PARTITIONS, 60)  # fmt: skip
        b.start()
        _wait(replicas, "an even split again", split, 90)
        # A rolling deploy: once the group has settled (the model has its owner again), A
        # stops, then comes back. (Tansu stalls a group for good when a member leaves in
        # the middle of a rebalance; Apache Kafka does not.)
        _wait(replicas, "B in the owners' group", lambda: _owns_partials(b), 60)
        _wait(replicas, "the model to have an owner", lambda: owners() == 1, 60)
        code, _ = a.terminate()
        assert code == 0, a.log_tail()
        others = [d for d in replicas if d is not a]
        _wait(others, "A's partitions taken over",
              lambda: sum(assigned(d) or 0 for d in others) == 2 * PARTITIONS, 60)  # fmt: skip
        a.start()
        _wait(replicas, "an even split at last", split, 90)
        producer.join(timeout=PRODUCE_S + 60)
        assert not producer.is_alive() and not producer.errors, producer.errors[:3]
        assert producer.sent == len(stream)
        replica_views, c_view = settled_views(daemons, 120)
    except AssertionError as exc:
        tail = broker.log_path.read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}\n--- broker log tail:\n{tail}") from exc
    finally:
        for d in daemons:
            if d.alive():
                d.terminate()
            d.ensure_dead()

    assert_same_as_one_process(broker.bootstrap, topics, replicas, replica_views, c_view)
