"""Scaling out: two ``monitor run`` replicas in one group against one, on the same topics.

Starts an embedded Tansu broker, fills 6-partition input topics with ``--events``
predictions (10 numeric features) and labels for 80 % of them, then, for 1 and for 2
replicas in a fresh consumer group each (state in the Kafka store, as replicas run):
starts the replicas together, samples ``monitor_events_processed_total`` and
``monitor_assigned_partitions`` of each every 0.2 s, and takes the rate over the steady
stretch: from the first sample where the group has settled (every partition assigned,
each replica holding its share) until 90 % of the messages are processed. The ratio is
2-replica rate over 1-replica rate, measured in this one run. No assertions::

    python bench/replicas.py                    # 600,000 predictions + labels
    python bench/replicas.py --events 200000    # quick
    python bench/replicas.py --client kafka-python
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tomllib
import zlib
from pathlib import Path
from typing import Any

import tomli_w
from benchlib import Daemon, machine
from e2e_throughput import FEATURES, generate, produce

PARTITIONS = 6
TARGET = 1.7


def sample(daemon: Daemon) -> tuple[float, int]:
    """(events processed, partitions assigned) of one replica; (0, 0) when it does not answer."""
    status, body = daemon.get("/metrics", timeout=2.0)
    if status != 200:
        return 0.0, 0
    processed, assigned = 0.0, 0
    for line in body.decode().splitlines():
        if line.startswith("monitor_events_processed_total "):
            processed = float(line.split()[1])
        elif line.startswith("monitor_assigned_partitions "):
            assigned = int(float(line.split()[1]))
    return processed, assigned


def measure(bootstrap: str, work: Path, replicas: int, client: str, total: int,
            topics: str) -> dict[str, Any]:
    body = {
        "time": {"pane": "10s", "allowed_lateness": "1m"},
        "models": [{
            "name": "m", "task": "binary", "positive_class": 1, "label_ttl": "6h",
            "max_early_labels": 2_000_000, "windows": ["all", "1h", "ewm30m"],
            "features": dict.fromkeys(FEATURES, "numeric"), "detectors": ["adwin", "cusum"],
        }],
    }
    daemons = []
    for i in range(replicas):
        d = work / f"r{replicas}-{i}"
        d.mkdir()
        daemon = Daemon(d, bootstrap, {**body}, topics=topics, checkpoint_interval="10s")
        # one group per measurement; the Kafka store, as replicas run
        cfg = tomllib.loads(daemon.config_path.read_text())
        cfg["kafka"]["group_id"] = f"{topics}-monitor-{replicas}"
        cfg["kafka"]["client"] = client
        cfg["state"] = {"store": "kafka", "topic": f"{topics}.state-{replicas}",
                        "topic_partitions": 1, "checkpoint_interval": "10s",
                        "dir": str(d / "state")}
        daemon.config_path.write_text(tomli_w.dumps(cfg))
        daemons.append(daemon)
    for daemon in daemons:
        daemon.start()
    share = PARTITIONS * 2 // replicas
    samples: list[tuple[float, float, bool]] = []
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            got = [sample(d) for d in daemons]
            done = sum(p for p, _ in got)
            settled = all(a == share for _, a in got)
            samples.append((now, done, settled))
            if done >= total:
                break
            time.sleep(0.2)
    finally:
        for daemon in daemons:
            daemon.stop()
    start = next((s for s in samples if s[2] and s[1] > 0), None)
    end = next((s for s in samples if s[1] >= 0.9 * total), None)
    if start is None or end is None or end[0] <= start[0]:
        raise RuntimeError(f"no steady stretch for {replicas} replica(s): last {samples[-3:]}\n"
                           + daemons[0].log_tail())
    return {"replicas": replicas, "rate": (end[1] - start[1]) / (end[0] - start[0]),
            "seconds": end[0] - start[0], "from": start[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    args = parser.parse_args()
    from monitor.broker import EmbeddedBroker, create_topics

    messages, _ = generate(args.events)
    total = len(messages)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        work = Path(tmp)
        names = {"predictions": "scale.predictions", "labels": "scale.labels",
                 "alerts": "scale.alerts", "dead_letters": "scale.dead-letters"}
        create_topics(broker.bootstrap, {names["predictions"]: PARTITIONS,
                                         names["labels"]: PARTITIONS, names["alerts"]: 1,
                                         names["dead_letters"]: 1})
        # generate() spreads messages over 4 partitions: spread them over 6 instead.
        spread = [(topic, key, value, zlib.crc32(key) % PARTITIONS)
                  for topic, key, value, _ in messages]
        produce(broker.bootstrap, names, spread)
        results = [measure(broker.bootstrap, work, n, args.client, total, "scale")
                   for n in (1, 2)]
    one, two = results
    print(f"machine: {machine()}")
    print(f"{total:,} messages over {PARTITIONS} partitions, client {args.client}")
    print("| replicas | messages/s (steady) | seconds measured |")
    print("| ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['replicas']} | {r['rate']:,.0f} | {r['seconds']:.1f} |")
    ratio = two["rate"] / one["rate"]
    verdict = "met" if ratio >= TARGET else "not met"
    print(f"two replicas / one: {ratio:.2f}x (goal >= {TARGET}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
