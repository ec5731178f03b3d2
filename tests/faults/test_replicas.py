"""Replicas (issue: exactly-once, item 5): two ``monitor run`` processes in one group over
6-partition input topics, state in the Kafka store. While a stream with delayed labels
flows, replica B is SIGKILLed; A takes its partitions over after the session timeout and
restores their hard state from the store; B is then started again and takes three of them
back (A checkpoints and drops them, B restores them). At the end, the additive counters
exported by A and B, summed sample by sample, equal ``monitor replay`` of the same topics
(one process that saw everything once): nothing lost, nothing counted twice.

Event time runs at a quarter of wall time here so that the takeover gap (session timeout
plus the group join, ~10-15 s of wall time) stays well inside ``allowed_lateness`` in event
time: no event is ever late, so the comparison is exact whichever replica's pane clock was
ahead (DESIGN section 6: a takeover slower than the lateness makes the re-read events late).
"""

from __future__ import annotations

import json
import math
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from monitor.broker import free_port
from monitor.config import load_config
from monitor.replay import replay
from tests.daemon import capture, daemon_config
from tests.faults.harness import Daemon, PacedProducer, Stream

T0 = 1_770_000_000.0
PARTITIONS = 6
PREDICTIONS = 6000
PRODUCE_S = 40.0
EVENT_SPAN_S = PRODUCE_S / 4  # event time runs at a quarter of wall time
#: Counter families that are sums over the partitions' hard state: they add across
#: replicas. (Per-process ones, such as events processed or checkpoints, do not.)
ADDITIVE = {
    "monitor_slice_predictions_total",
    "monitor_slice_joined_total",
    "monitor_confusion_total",
    "monitor_slice_scored_total",
    "monitor_log_loss_total",
    "monitor_brier_score_total",
    "monitor_score_total",
    "monitor_predictions_received_total",
    "monitor_labels_received_total",
    "monitor_join_total",
    "monitor_late_events_total",
    "monitor_rejected_total",
}

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
detectors = []
"""


def _stream(seed: int = 8, features: bool = False) -> tuple[Stream, int]:
    """Predictions spread evenly over ``EVENT_SPAN_S``; 90 % labelled 0.2-2 s later (event
    time); versions and regions (slices the replicas number in different orders); a few
    bad messages. ``features``: an ``amount`` (numeric, shifted in the second half, 2 %
    missing) and a ``country`` (categorical, a new value in the second half). Returns the
    stream and the number of labels."""
    rng = np.random.default_rng(seed)
    arrivals: list[tuple[float, str, bytes, bytes, int]] = []
    labels = 0
    bad: Counter[str] = Counter()
    for i in range(PREDICTIONS):
        t = T0 + EVENT_SPAN_S * i / PREDICTIONS
        pid = f"p{i}"
        part = zlib.crc32(pid.encode()) % PARTITIONS
        y = int(rng.integers(0, 2))
        score = float(rng.beta(5, 2) if y else rng.beta(2, 5))
        region = ["eu", "us", "apac", "latam"][(i * 7 + part) % 4]
        body = {"prediction_id": pid, "model": "fraud", "ts": t, "prediction": int(score >= 0.5),
                "score": round(score, 5), "model_version": f"v{i % 3}",
                "segment": {"region": region}}  # fmt: skip
        if features:
            late = i >= PREDICTIONS // 2
            amount = None if rng.random() < 0.02 else round(float(rng.normal(late * 1.5, 1)), 4)
            country = ["fr", "de", "es"] + (["it"] if late else [])
            body["features"] = {"amount": amount, "country": str(rng.choice(country))}
        arrivals.append((t, "predictions", pid.encode(), json.dumps(body).encode(), part))
        if rng.random() < 0.9:
            lt = t + float(rng.uniform(0.2, 2.0))
            label = {"prediction_id": pid, "label": y, "ts": lt}
            arrivals.append((lt, "labels", pid.encode(), json.dumps(label).encode(), part))
            labels += 1
        if i % 500 == 7:
            arrivals.append((t, "predictions", b"bad-%d" % i, b"{not json", part))
            bad["not_json"] += 1
    arrivals.sort(key=lambda a: a[0])
    messages = [(kind, key, value, part) for _, kind, key, value, part in arrivals]
    return Stream(messages, dict(bad)), labels


def _counters(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ADDITIVE:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _wait(daemons: list[Daemon], what: str, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in daemons:
            assert d.alive(), d.log_tail()
        if done():
            return
        time.sleep(0.3)
    tails = "\n".join(d.log_tail() for d in daemons)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def _restored(daemon: Daemon) -> int:
    """Partitions the daemon restored from the store (``partitions_restored`` lines)."""
    n = 0
    for line in daemon.log_path.read_text(errors="replace").splitlines():
        if '"partitions_restored"' in line:
            n += sum(v == "restored" for v in json.loads(line)["result"].values())
    return n


def test_replica_killed_mid_stream_its_partitions_resume_elsewhere_exactly(
    broker: Any, make_topics: Any, tmp_path: Path
) -> None:
    topics = make_topics(PARTITIONS, PARTITIONS)
    stream, n_labels = _stream()
    state = f'store = "kafka"\ntopic = "state-{uuid.uuid4().hex[:8]}"'
    daemons = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        port = free_port()
        config = tmp_path / name / "monitor.toml"
        # The confluent client here (test_replica_exactness runs kafka-python): a
        # partition taken over starts where the store's state, not the group's committed
        # offset, says (commits are refused during the rebalance).
        text = daemon_config(
            broker.bootstrap, topics, port, BODY, checkpoint_interval="1s", state=state,
            client="confluent",
        )  # fmt: skip
        config.write_text(text)
        daemons.append(Daemon(config, port, tmp_path / name / "daemon.log"))
    a, b = daemons

    def assigned(d: Daemon) -> float | None:
        return d.sample("monitor_assigned_partitions")

    def total(name: str, **labels: str) -> float:
        return sum(d.sample(name, **labels) or 0.0 for d in daemons if d.alive())

    producer = PacedProducer(broker.bootstrap, topics, stream, PRODUCE_S)
    try:
        a.start()
        _wait([a], "A to own every partition", lambda: assigned(a) == 2 * PARTITIONS, 60)
        b.start()
        _wait(daemons, "a 3/3 split", lambda: assigned(a) == assigned(b) == PARTITIONS, 60)
        producer.start()
        _wait(daemons, "B to be mid-stream", lambda: producer.sent > len(stream) // 5, 60)
        b.kill()
        killed_at = producer.sent
        # Assigned (the gauge follows the client at once) and restored from B's records
        # (the run loop does that right after it learns of the assignment).
        def took_over() -> bool:
            return assigned(a) == 2 * PARTITIONS and _restored(a) >= PARTITIONS // 2

        _wait([a], "A to take B's partitions and restore them", took_over, 60)
        b.start()  # B comes back and takes three partitions from A while data flows
        _wait(daemons, "a 3/3 split again", lambda: assigned(a) == assigned(b) == PARTITIONS, 60)
        producer.join(timeout=PRODUCE_S + 60)
        assert not producer.is_alive() and not producer.errors, producer.errors[:3]
        seen: list[list[str]] = []

        def settled() -> bool:
            # Caught up (lag 0 everywhere) and every counter of both replicas still for
            # about 4 s. Not "counters reached the totals": a lost event must show as a
            # difference below. Stage 2 merges what stage 1 read a tick or more later (the
            # last labels trail the last predictions), so the input's lag alone says little.
            lag = sum(d.sample("monitor_consumer_lag") or 0.0 for d in daemons)
            seen.append([d.get("/metrics")[1] for d in daemons])
            still = len(seen) > 12 and all(
                _counters(x) == _counters(y) for x, y in zip(seen[-1], seen[-12], strict=True)
            )
            return (
                lag == 0
                and (assigned(a) or 0) + (assigned(b) or 0) == 2 * PARTITIONS
                and still
                and total("monitor_predictions_received_total") > 0
            )

        _wait(daemons, "both replicas caught up", settled, 90)
        scraped_text = seen[-1]
        scraped = [_counters(text) for text in scraped_text]
        # Panes close on the model's owner (stage 2), which may be either replica; each
        # replica's monitor_panes_closed_total is its stage-1 clock, held back by the
        # partitions the other reads.
        panes = sum(
            sample.value
            for text in scraped_text
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "monitor_model_accumulator"
            and sample.labels.get("name") == "panes_closed"
        )
        for d in daemons:
            code, _ = d.terminate()
            assert code == 0, d.log_tail()
    except AssertionError as exc:
        tail = broker.log_path.read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}\n--- broker log tail:\n{tail}") from exc
    finally:
        for d in daemons:
            d.ensure_dead()
    assert killed_at < len(stream), "the kill landed after the stream ended"
    assert panes > 0  # panes closed in the run: the pane rings moved too, not only totals
    assert _restored(b) >= 1, b.log_tail()  # B's second start restored from A's records

    summed: dict[Any, float] = {}
    for counters in scraped:
        for key, value in counters.items():
            summed[key] = summed.get(key, 0.0) + value
    cap = tmp_path / "capture.jsonl"
    assert capture(broker.bootstrap, [topics.predictions, topics.labels], cap, len(stream)) == len(
        stream
    )
    out = tmp_path / "replay"
    replay(load_config(a.config), [str(cap)], out)
    expected = _counters((out / "metrics.prom").read_text())
    assert expected[("monitor_late_events_total", (("model", "fraud"),))] == 0
    assert expected[("monitor_predictions_received_total", (("model", "fraud"),))] == PREDICTIONS
    assert expected[("monitor_labels_received_total", (("model", "fraud"),))] == n_labels
    assert {k for k, v in summed.items() if v} == {k for k, v in expected.items() if v}
    for d, text in zip(daemons, scraped_text, strict=True):  # kept for a post-mortem
        (d.log_path.parent / "metrics.prom").write_text(text)
    wrong = [
        (key, summed.get(key), value)
        for key, value in expected.items()
        if not math.isclose(summed.get(key, 0.0), value, rel_tol=1e-9, abs_tol=1e-9)
    ]
    assert not wrong, wrong
