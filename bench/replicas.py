"""Scaling out: two ``monitor run`` replicas in one group against one, on the same topics.

Starts an embedded Tansu broker, fills 6-partition input topics with ``--events``
predictions (10 numeric features) and labels for 80 % of them, then, for 1 and for 2
replicas in a fresh consumer group each (state in the Kafka store, as replicas run):
starts the replicas together, samples ``monitor_events_processed_total`` and
``monitor_assigned_partitions`` of each every 0.2 s, and takes the rate over the steady
stretch: from the first sample where the group has settled (every partition assigned,
each replica holding its share) until 90 % of the messages are processed or, if sooner,
until one replica is nearly through its own partitions (95 % of what it processed in
the end): past that it idles while the other finishes, which a saturated topic, where
input never runs out, does not do. The ratio is 2-replica rate over 1-replica rate,
measured in this one run. It also tells the CPU
seconds each process (every replica, the broker) used over the steady stretch, and what
that is per wall second: on a machine with few cores, it shows where they went. No
assertions::

    python bench/replicas.py                    # 1,000,000 predictions + labels
    python bench/replicas.py --events 200000    # quick
    python bench/replicas.py --client kafka-python
    python bench/replicas.py --reference-warmup 0   # no drift reference
    python bench/replicas.py --replicas 1 --profile /tmp/prof   # cProfile each replica
"""

from __future__ import annotations

import argparse
import os
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


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a live process used so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(bootstrap: str, work: Path, replicas: int, client: str, total: int,
            topics: str, *, warmup: int | None, broker_pid: int | None,
            profile: Path | None) -> dict[str, Any]:
    body = {
        "time": {"pane": "10s", "allowed_lateness": "1m"},
        "models": [{
            "name": "m", "task": "binary", "positive_class": 1, "label_ttl": "6h",
            "max_early_labels": 2_000_000, "windows": ["all", "1h", "ewm30m"],
            "features": dict.fromkeys(FEATURES, "numeric"), "detectors": ["adwin", "cusum"],
            **({} if warmup is None else {"reference_warmup": warmup}),
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
    for i, daemon in enumerate(daemons):
        daemon.start(None if profile is None else profile / f"r{replicas}-{i}.prof")
    share = PARTITIONS * 2 // replicas
    # (monotonic time, processed, settled, CPU seconds of each replica then the broker,
    # processed by each replica)
    samples: list[tuple[float, float, bool, list[float], list[float]]] = []
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            got = [sample(d) for d in daemons]
            done = sum(p for p, _ in got)
            settled = all(a == share for _, a in got)
            cpu = [cpu_seconds(d.proc.pid) for d in daemons] + [cpu_seconds(broker_pid)]
            samples.append((now, done, settled, cpu, [p for p, _ in got]))
            if done >= total:
                break
            time.sleep(0.2)
    finally:
        for daemon in daemons:
            daemon.stop()
    start = next((s for s in samples if s[2] and s[1] > 0), None)
    final = [max(s[4][i] for s in samples) for i in range(replicas)]
    end = next((s for s in samples if s[1] >= 0.9 * total
                or any(0 < 0.95 * last <= mine for mine, last in zip(s[4], final, strict=True))),
               None)  # fmt: skip
    if start is None or end is None or end[0] <= start[0]:
        raise RuntimeError(f"no steady stretch for {replicas} replica(s): last {samples[-3:]}\n"
                           + daemons[0].log_tail())
    seconds = end[0] - start[0]
    cpu = [(b - a) / seconds for a, b in zip(start[3], end[3], strict=True)]
    each = [(b - a) / seconds for a, b in zip(start[4], end[4], strict=True)]
    return {"replicas": replicas, "rate": (end[1] - start[1]) / seconds,
            "seconds": seconds, "from": start[1], "cpu": cpu, "each": each}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    parser.add_argument("--reference-warmup", type=int, default=None,
                        help="the model's reference_warmup (default: the config's default)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2],
                        help="replica counts to measure, in order (the ratio needs 1 and 2)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the replicas' configs and logs here (default: a temporary "
                        "directory)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run each replica under cProfile, writing r<n>-<i>.prof here")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    from monitor.broker import EmbeddedBroker, create_topics

    messages, _ = generate(args.events)
    total = len(messages)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        work = Path(tmp) if args.workdir is None else args.workdir
        work.mkdir(parents=True, exist_ok=True)
        names = {"predictions": "scale.predictions", "labels": "scale.labels",
                 "alerts": "scale.alerts", "dead_letters": "scale.dead-letters"}
        create_topics(broker.bootstrap, {names["predictions"]: PARTITIONS,
                                         names["labels"]: PARTITIONS, names["alerts"]: 1,
                                         names["dead_letters"]: 1})
        # generate() spreads messages over 4 partitions: spread them over 6 instead.
        spread = [(topic, key, value, zlib.crc32(key) % PARTITIONS)
                  for topic, key, value, _ in messages]
        produce(broker.bootstrap, names, spread)
        load = os.getloadavg()
        results = [measure(broker.bootstrap, work, n, args.client, total, "scale",
                           warmup=args.reference_warmup, broker_pid=broker.pid,
                           profile=args.profile)
                   for n in args.replicas]  # fmt: skip
    print(f"machine: {machine()}")
    warmup = "default" if args.reference_warmup is None else args.reference_warmup
    print(f"{total:,} messages over {PARTITIONS} partitions, client {args.client}, "
          f"reference_warmup {warmup}, load average before {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")  # fmt: skip
    print("| replicas | messages/s (steady) | each replica's | seconds measured "
          "| CPU per wall second (each replica; broker) |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for r in results:
        cpu = ", ".join(f"{c:.2f}" for c in r["cpu"][:-1]) + f"; {r['cpu'][-1]:.2f}"
        each = ", ".join(f"{e:,.0f}" for e in r["each"])
        print(f"| {r['replicas']} | {r['rate']:,.0f} | {each} | {r['seconds']:.1f} | {cpu} |")
    rates = {r["replicas"]: r["rate"] for r in results}
    if 1 in rates and 2 in rates:
        ratio = rates[2] / rates[1]
        busiest = {r["replicas"]: max(r["cpu"][:-1]) for r in results}
        if busiest[1] > 0 and busiest[2] > 0:
            free = (rates[2] / busiest[2]) / (rates[1] / busiest[1])
            print(f"\nper CPU second of the busiest replica: {rates[1] / busiest[1]:,.0f} "
                  f"(one), {rates[2] / busiest[2]:,.0f} (two): {free:.2f}x, the ratio if "
                  "each replica had a core to itself")  # fmt: skip
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"\ntarget two replicas >= {TARGET}x one replica's rate: **{verdict}** "
              f"({ratio:.2f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
