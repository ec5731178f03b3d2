"""Alert latency at a high input rate (issue item 5).

A Tansu broker, ``monitor run`` with one binary model (10 numeric features, every binary
metric, windows ``1s`` and ``all``), a 1 s pane, no allowed lateness, a 1 s idle timeout
(the unused labels partition stops holding the watermark) and the rule
``accuracy@1s < 0.5`` (``for = 0``). Predictions carry their label inline; one pane in
every ``--period`` seconds has only wrong predictions, so the rule fires when that pane
closes and resolves when the next one does.

A confluent-kafka producer paces ``--rate`` predictions per second for ``--seconds``
(event time = the wall clock at production). With no allowed lateness, the event that
makes the rule fire is the first one whose event time reaches the end of the bad pane:
it moves the watermark past the pane, which closes it. The producer notes the wall time
just before producing the first event of every second; a confluent-kafka consumer of the
alert topic (a thread of this process, so its arrival times may lag by the interpreter's
5 ms switch interval) notes when each alert arrives. The latency of an alert (firing or
resolved) is its arrival minus the send time of the event that closed its pane (the
alert's ``ts`` is that pane's end). Firings during the first ``--warmup`` seconds are
left out. Target: p99 <= 1 s at 50,000 events/s.

With ``--profile``, a second daemon (fresh topics, same broker) is then run under cProfile
and fed at the same rate for half as long; its main thread's time is split by stage
(``benchlib.stage_split``; ``kafka consume`` is ``KafkaSource.poll`` and kafka-python
under it), to show what holds the daemon's rate back::

    python bench/latency.py                          # 50,000/s for 25 s
    python bench/latency.py --rate 5000 --seconds 10 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from confluent_kafka import Consumer, Producer, TopicPartition

from monitor.broker import EmbeddedBroker
from monitor.logs import configure_logging

TARGET = 1.0


def body(period: int) -> dict[str, Any]:
    """The daemon's [time] and [[models]] tables."""
    del period
    model = benchlib.model_dict("m0", windows=1, extra={"windows": ["1s", "all"]})
    model["alerts"] = [{"name": "accuracy-low", "signal": "accuracy@1s", "op": "<",
                        "threshold": 0.5, "for": "0s", "severity": "critical"}]
    return {"time": {"pane": "1s", "allowed_lateness": "0s", "idle_timeout": "1s"},
            "models": [model]}


class AlertReader(threading.Thread):
    """Reads the alert topic from the start; records (arrival wall time, alert dict)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-latency",
                                  "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
        self.consumer.assign([TopicPartition(topic, 0, 0)])
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            now = time.time()
            self.arrivals.append((now, json.loads(msg.value())))
        self.consumer.close()


def produce(bootstrap: str, topic: str, rate: float, seconds: float,
            period: int) -> tuple[dict[int, float], int, float]:
    """Pace predictions; return {second: wall time of its first event}, count, seconds."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2,
                         "queue.buffering.max.messages": 2_000_000,
                         "batch.num.messages": 10_000})
    rng = random.Random(7)
    feats = [
        "{" + ",".join(f'"f{j}":{rng.gauss(0, 1):.2f}' for j in range(10)) + "}"
        for _ in range(512)
    ]
    scores = [round(rng.random(), 3) for _ in range(512)]
    closers: dict[int, float] = {}
    current = -1
    sent = 0
    start = time.time()
    end = start + seconds
    produce_one = producer.produce
    while True:
        now = time.time()
        if now >= end:
            break
        owed = int((now - start) * rate) - sent
        if owed <= 0:
            producer.poll(0)
            time.sleep(0.0005)
            continue
        for _ in range(min(owed, 2000)):
            ts = time.time()
            second = int(ts)
            if second != current:
                closers[second] = ts
                current = second
            k = sent & 511
            pred = int(scores[k] >= 0.5)
            label = 1 - pred if second % period == period - 1 else pred
            pid = f"p{sent}"
            value = (f'{{"prediction_id":"{pid}","model":"m0","ts":{ts:.6f},'
                     f'"prediction":{pred},"score":{scores[k]},"label":{label},'
                     f'"features":{feats[k]}}}')
            while True:
                try:
                    produce_one(topic, value.encode(), pid.encode())
                    break
                except BufferError:
                    producer.poll(0.005)
            sent += 1
        producer.poll(0)
    producer.flush(30)
    return closers, sent, time.time() - start


def processed(daemon: benchlib.Daemon) -> float:
    """``monitor_events_processed_total`` from the daemon's /metrics (NaN if unreadable)."""
    status, text = daemon.get("/metrics")
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("monitor_events_processed_total"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan") if status != 200 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50_000, help="predictions per second")
    parser.add_argument("--seconds", type=float, default=25.0, help="production time")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds left out")
    parser.add_argument("--period", type=int, default=3, help="one bad pane per period (s)")
    parser.add_argument("--profile", action="store_true", help="then a cProfile'd daemon")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        daemon = benchlib.Daemon(Path(tmp), broker.bootstrap, body(args.period),
                                 topics="lat", checkpoint_interval="10s")
        daemon.create_topics(partitions=1)
        reader = AlertReader(broker.bootstrap, daemon.topics["alerts"])
        reader.start()
        daemon.start()
        try:
            daemon.wait_ready()
            time.sleep(1.5)  # idle timeout: the silent labels partition stops holding
            before = processed(daemon)
            closers, sent, took = produce(broker.bootstrap, daemon.topics["predictions"],
                                          args.rate, args.seconds, args.period)
            t_end = time.time()
            at_end = processed(daemon)
            while time.time() < t_end + 30.0 and processed(daemon) < before + sent:
                time.sleep(0.2)
            time.sleep(1.0)  # the last alerts
            after = processed(daemon)
            caught_up_by = time.time()
        finally:
            reader.stop.set()
            daemon.stop()
            reader.join(5)
    first = min(closers) + args.warmup
    lat: dict[str, list[float]] = {"firing": [], "resolved": []}
    for arrival, alert in reader.arrivals:
        end = _pane_end(alert)
        if end in closers and end >= first:
            lat.setdefault(alert["status"], []).append(arrival - closers[end])
    bad_panes = [s for s in closers if s >= first and s % args.period == 0]
    everything = lat["firing"] + lat["resolved"]
    p99 = benchlib.percentile(everything, 0.99)
    print("## Alert latency (item 5)\n")
    print(f"machine: {benchlib.machine()}; broker, daemon and this client share it\n")
    print(f"input: {sent:,} predictions in {took:.1f} s = **{sent / took:,.0f}/s achieved** "
          f"(asked {args.rate:,.0f}/s), 1 partition, labels inline; the daemon had processed "
          f"{at_end - before:,.0f} of them ({(at_end - before) / took:,.0f}/s) when the "
          f"last was sent, {after - before:,.0f} {caught_up_by - t_end:.1f} s later\n")
    print(f"firings expected after the warmup: {len(bad_panes)}; alerts received: "
          f"{len(lat['firing'])} firing, {len(lat['resolved'])} resolved\n")
    print("| alerts | n | p50 s | p99 s | max s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in (("firing", lat["firing"]), ("resolved", lat["resolved"]),
                         ("all", everything)):
        print(f"| {name} | {len(values)} | {benchlib.percentile(values, 0.5):.3f} | "
              f"{benchlib.percentile(values, 0.99):.3f} | "
              f"{max(values) if values else float('nan'):.3f} |")
    if args.profile:
        profile(args.rate, args.seconds / 2, args.period)
    verdict = "met" if everything and p99 <= TARGET and sent / took >= 0.95 * 50_000 else (
        "NOT met" if everything and p99 > TARGET else "not measured at 50,000/s")
    print(f"\ntarget p99 <= {TARGET:.0f} s at 50,000 events/s: **{verdict}**")
    return 0


def profile(rate: float, seconds: float, period: int) -> None:
    """Feed a daemon running under cProfile; print its stage split."""
    import pstats

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        daemon = benchlib.Daemon(Path(tmp), broker.bootstrap, body(period), topics="prof",
                                 checkpoint_interval="10s")
        daemon.create_topics(partitions=1)
        out = Path(tmp) / "daemon.prof"
        daemon.start(profile_to=out)
        try:
            daemon.wait_ready(timeout=180)
            before = processed(daemon)
            _, sent, took = produce(broker.bootstrap, daemon.topics["predictions"], rate,
                                    seconds, period)
            deadline = time.time() + 60
            while time.time() < deadline and processed(daemon) < before + sent:
                time.sleep(0.5)
            behind = before + sent - processed(daemon)
        finally:
            daemon.stop()
        stats = pstats.Stats(str(out))
    split = benchlib.stage_split(stats)
    idle = split.pop("idle wait", 0.0)  # before and after the burst, and between fetches
    print(f"\nThe daemon under cProfile, fed {sent:,} predictions at {sent / took:,.0f}/s "
          f"({behind:,.0f} not processed 60 s later); its main thread's time by stage "
          f"(the {idle:.1f} s it waited in select, sleeps and locks left out):\n")
    print(benchlib.stage_table(split))
    print("\nFunctions with the most self time:\n")
    print(benchlib.top_functions(stats, 12))


def _pane_end(alert: dict[str, Any]) -> int:
    """The alert's ``ts`` (the end of the pane whose close raised it), whole seconds."""
    return round(datetime.fromisoformat(alert["ts"].replace("Z", "+00:00")).timestamp())


if __name__ == "__main__":
    sys.exit(main())
