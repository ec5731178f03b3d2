"""Replicas through SIGKILLs at random instants, some in the middle of a rebalance (issue
13). Replicas A and B in one group over 6-partition topics with the Kafka state store; a
single process C (local store, its own group and alert topic) reads the same topics as
the oracle. While a stream with delayed labels, slices, features (a warmup reference and
a shift) and bad messages is produced, ``KILLS`` SIGKILLs land on random replicas, each
killed replica started again after a random 0.5-4 s:

- a *steady* kill lands a random 0.5-``MAX_UPTIME_S`` s after the group has settled (an
  even split and the model owned);
- a *rebalance* kill (``KILLS // 2`` of them, never the first, in a random order) lands
  right after the previous victim was started again: once it has subscribed and the
  group is rebalancing (the assignment gauges of the live replicas no longer add up to
  the 12 input partitions), a random 0-1 s later, on either replica
  (the one joining, or the one giving partitions up).

Each kill is recorded in ``kills.json`` (kind, victim, seconds since the test began, UTC
time to line it up with the daemons' logs, messages produced, every live replica's
``monitor_assigned_partitions`` just before it, whether the group was rebalancing then),
and at least one must have landed during a rebalance. At the end, once everything is read
and every model-level series of every daemon has been still for ~15 samples: the model's
owner's every model-level series equals C's (as in ``test_replica_exactness``), exactly
one replica exports the model's series, and the set of (``alert_id``, status) on the
replicas' alert topic equals C's.

Size: ``EVENTS`` messages (40k here, ~2 min on 2 cores) and ``KILLS`` kills (5); the issue
asks for 1M with 10 kills, which is one command::

    MONITOR_REPLICA_CRASH_EVENTS=1000000 MONITOR_REPLICA_CRASH_KILLS=10 \\
        python -m pytest -n 0 tests/faults/test_replica_crashes.py

``MONITOR_REPLICA_CRASH_SEED`` (default 13) varies the run.

What Tansu forced: a SIGKILL in the middle of a rebalance does not stall a Tansu group (the
dead member stays in it until its session timeout, the partitions it was given wait for
that, then the group rebalances again): rebalance kills land as above, back to back when
two come in a row. What stalls a Tansu group for good is a member *leaving* (SIGTERM,
LeaveGroup) mid-rebalance, which this test never does (Apache Kafka copes with both). A
steady kill still waits for the group to settle, so that the kills outside a rebalance
are really outside one and the run cannot chain kills into a group that never settles.
Event time runs at a quarter of wall time (as in ``test_replicas``) so that no takeover
keeps a partition unread for long in event time: nothing is late anywhere and the
comparison is exact.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.broker import free_port
from tests.daemon import daemon_config
from tests.faults.harness import Daemon, PacedProducer, Stream
from tests.faults.test_replica_exactness import (
    BODY,
    _model_series,
    _owns_partials,
    assert_same_as_one_process,
    settled_views,
)
from tests.faults.test_replicas import PARTITIONS, _wait

EVENTS = int(os.environ.get("MONITOR_REPLICA_CRASH_EVENTS", "40000"))  # the issue: 1_000_000
KILLS = int(os.environ.get("MONITOR_REPLICA_CRASH_KILLS", "5"))  # the issue: 10
SEED = int(os.environ.get("MONITOR_REPLICA_CRASH_SEED", "13"))
#: Wall time over which the stream is produced: the kills land while data flows.
PRODUCE_S = max(75.0, EVENTS / 1500)
#: Longest wait, once the group has settled, before a steady kill: the kills spread over
#: most of the production, however long (a kill cycle takes ~15 s besides this wait).
MAX_UPTIME_S = max(8.0, 2 * (0.8 * PRODUCE_S - 15 * KILLS) / max(1, KILLS - KILLS // 2))
#: pytest-timeout for the run: the suite's 300 s at the default size, more for the issue's.
TIMEOUT_S = int(300 + 2 * (PRODUCE_S - 75) + EVENTS / 1000)
T0 = 1_780_000_000.0


def _stream(n_messages: int, seed: int) -> Stream:
    """About ``n_messages`` messages: predictions of ``fraud`` spread evenly over a quarter
    of ``PRODUCE_S`` of event time, 90 % labelled 0.2-2 s later, versions and regions, an
    ``amount`` (shifted in the second half, 2 % missing) and a ``country`` (a new value in
    the second half), a bad message every 500 predictions. Each partition is in event-time
    order (as ``test_replicas._stream``, at any size)."""
    rng = np.random.default_rng(seed)
    n_pred = max(3000, int(n_messages / 1.9))
    span = PRODUCE_S / 4
    arrivals: list[tuple[float, str, bytes, bytes, int]] = []
    bad: Counter[str] = Counter()
    for i in range(n_pred):
        t = T0 + span * i / n_pred
        pid = f"p{i}"
        part = zlib.crc32(pid.encode()) % PARTITIONS
        y = int(rng.integers(0, 2))
        score = float(rng.beta(5, 2) if y else rng.beta(2, 5))
        late = i >= n_pred // 2
        amount = None if rng.random() < 0.02 else round(float(rng.normal(late * 1.5, 1)), 4)
        country = ["fr", "de", "es"] + (["it"] if late else [])
        body = {"prediction_id": pid, "model": "fraud", "ts": t, "prediction": int(score >= 0.5),
                "score": round(score, 5), "model_version": f"v{i % 3}",
                "segment": {"region": ["eu", "us", "apac", "latam"][(i * 7 + part) % 4]},
                "features": {"amount": amount, "country": str(rng.choice(country))}}  # fmt: skip
        arrivals.append((t, "predictions", pid.encode(), json.dumps(body).encode(), part))
        if rng.random() < 0.9:
            lt = t + float(rng.uniform(0.2, 2.0))
            label = {"prediction_id": pid, "label": y, "ts": lt}
            arrivals.append((lt, "labels", pid.encode(), json.dumps(label).encode(), part))
        if i % 500 == 7:
            arrivals.append((t, "predictions", b"bad-%d" % i, b"{not json", part))
            bad["not_json"] += 1
    arrivals.sort(key=lambda a: a[0])
    return Stream([(kind, key, value, part) for _, kind, key, value, part in arrivals], dict(bad))


def _log_events(daemon: Daemon, *names: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in daemon.log_path.read_text(errors="replace").splitlines()
        if line.startswith("{") and any(f'"{name}"' in line for name in names)
    ]


def _utc() -> str:
    """Wall-clock time as the daemons' log lines stamp it (to line kills up with them)."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"


def _subscribed(daemon: Daemon) -> bool:
    """Whether the daemon's latest start has subscribed to the input topics (its join is
    under way or done)."""
    text = daemon.log_path.read_text(errors="replace")
    return '"kafka_source_subscribed"' in text[text.rfind("--- start") :]


@pytest.mark.timeout(TIMEOUT_S)
def test_replicas_through_sigkills_in_and_out_of_rebalances_equal_one_process(
    broker: Any, make_topics: Any, tmp_path: Path
) -> None:
    topics = make_topics(PARTITIONS, PARTITIONS)
    stream = _stream(EVENTS, SEED)
    state = f'store = "kafka"\ntopic = "state-{uuid.uuid4().hex[:8]}"'
    daemons: list[Daemon] = []
    for name in ("a", "b", "single"):
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
        daemons.append(Daemon(config, port, tmp_path / name / "daemon.log"))
    a, b, c = daemons
    replicas = [a, b]
    rng = np.random.default_rng(SEED)
    began = time.monotonic()

    def assigned(d: Daemon) -> float | None:
        return d.sample("monitor_assigned_partitions") if d.alive() else None

    def split() -> bool:
        return all(assigned(d) == PARTITIONS for d in replicas)

    def owners() -> int:
        return sum(bool(_model_series(d.get("/metrics")[1])) for d in replicas)

    def settled_group() -> bool:
        return split() and all(_owns_partials(d) for d in replicas) and owners() == 1

    def rebalancing() -> bool:
        """Both replicas up, the restarted one subscribed, and the input partitions not
        (or no longer) all assigned: the group is between two assignments."""
        seen = [assigned(d) for d in replicas]
        return all(s is not None for s in seen) and sum(s or 0 for s in seen) != 2 * PARTITIONS

    # The first kill is steady; half the others (in a random order) are rebalance kills.
    rebalance_kills = KILLS // 2
    rest = ["rebalance"] * rebalance_kills + ["steady"] * (KILLS - 1 - rebalance_kills)
    kinds = ["steady", *(str(k) for k in rng.permutation(rest))][:KILLS]
    kills: list[dict[str, Any]] = []
    producer = PacedProducer(broker.bootstrap, topics, stream, PRODUCE_S)
    try:
        c.start()
        a.start()
        _wait([a, c], "A to own every partition", lambda: assigned(a) == 2 * PARTITIONS, 60)
        b.start()
        _wait(replicas, "an even split", split, 90)
        producer.start()
        for kind in kinds:
            if kind == "steady":
                _wait(daemons, "the group to settle", settled_group, 120)
                deadline = time.monotonic() + float(rng.uniform(0.5, MAX_UPTIME_S))
                while time.monotonic() < deadline:
                    for d in daemons:
                        assert d.alive(), d.log_tail()
                    time.sleep(0.2)
            else:
                restarted = kills[-1]["daemon"]
                _wait(daemons, "the restarted replica to subscribe",
                      lambda r=restarted: _subscribed(r), 60)  # fmt: skip
                # The rebalance its join sets off: a few seconds at most; if it was over
                # before it could be seen, the kill lands anyway (and is recorded so).
                deadline = time.monotonic() + 15.0
                while time.monotonic() < deadline and not rebalancing():
                    time.sleep(0.1)
                time.sleep(float(rng.uniform(0.0, 1.0)))
            victim = replicas[int(rng.integers(0, 2))]
            before = {("a" if d is a else "b"): assigned(d) for d in replicas}
            in_rebalance = all(v is not None for v in before.values()) and (
                sum(v or 0 for v in before.values()) != 2 * PARTITIONS
            )
            victim.kill()
            kills.append({
                "kind": kind, "victim": "a" if victim is a else "b", "daemon": victim,
                "at_s": round(time.monotonic() - began, 2), "utc": _utc(), "sent": producer.sent,
                "assigned_before": before, "in_rebalance": in_rebalance,
            })  # fmt: skip
            time.sleep(float(rng.uniform(0.5, 4.0)))
            victim.start()
        _wait(daemons, "an even split at last", split, 120)
        producer.join(timeout=PRODUCE_S + 120)
        assert not producer.is_alive() and not producer.errors, producer.errors[:3]
        assert producer.sent == len(stream)
        replica_views, c_view = settled_views(daemons, 180 + EVENTS / 2000)
        for d in daemons:  # kept for a post-mortem
            (d.log_path.parent / "metrics.prom").write_text(d.get("/metrics")[1])
    except AssertionError as exc:
        tail = broker.log_path.read_text(errors="replace")[-3000:]
        record = [{k: v for k, v in kill.items() if k != "daemon"} for kill in kills]
        (tmp_path / "kills.json").write_text(json.dumps(record, indent=1))
        raise AssertionError(f"{exc}\n--- kills: {record}\n--- broker log tail:\n{tail}") from exc
    finally:
        for d in daemons:
            if d.alive():
                d.terminate()
            d.ensure_dead()

    record = [{k: v for k, v in kill.items() if k != "daemon"} for kill in kills]
    (tmp_path / "kills.json").write_text(json.dumps(record, indent=1))
    print(f"\n{len(stream)} messages over {PRODUCE_S:.0f} s, kills: {record}")
    assert len(kills) == KILLS
    assert any(k["in_rebalance"] for k in kills), record

    # Every replica restarted reads the reference its model's stage 2 built from the store:
    # no replica need log learning it again.
    assert_same_as_one_process(broker.bootstrap, topics, replicas, replica_views, c_view,
                               learnt=False)  # fmt: skip
