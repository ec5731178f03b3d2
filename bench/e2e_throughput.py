"""End-to-end throughput of the daemon against bare Kafka consumers, on one Tansu broker.

Starts an embedded Tansu broker, produces ``--events`` prediction events (about 200 bytes:
10 numeric features, 4 partitions) and labels for 80 % of them (1 s to 10 min of event
time later, in event-time order), then measures, each in a fresh subprocess reading every
message of both topics:

- (a)  bare kafka-python: ``KafkaConsumer.poll(max_records=10_000)`` batches and a typed
       ``msgspec`` decode of each value (the fastest JSON decoder here), nothing else;
- (a') bare confluent-kafka: ``Consumer.consume(10_000)`` batches, the same decode;
- (s), (s') the daemon's source alone, kafka-python and confluent: ``poll`` into the
       engine's ``Message`` objects, no decode (where the source stage tops out);
- (b)  the daemon (``monitor.app.App``, what ``monitor run`` runs) with the kafka-python
       source: a binary model with every binary metric, windows ``all``/``1h``/``ewm30m``
       (pane 10 s), drift signals on all 10 features against a reference profile, ADWIN,
       four alert rules, the HTTP port, checkpoints every 10 s, alerts to their topic;
- (b') the same daemon with ``[kafka] client = "confluent"``.

Events per second run from the first batch in hand to the last message processed (group
joins and start-up are left out); the ratios b/a and b'/a' come from this one run. Each run
also prints the CPU seconds of its process (every thread: the clients' fetchers too) over the
same span, and the ratio per CPU second, which other work on the machine moves less. No
assertions::

    python bench/e2e_throughput.py                     # 1,000,000 predictions + labels
    python bench/e2e_throughput.py --events 100000     # quick
    python bench/e2e_throughput.py --only b2 --profile # cProfile of (b'), top functions
    python bench/e2e_throughput.py --no-gc             # the same with gc disabled (an experiment)
    python bench/e2e_throughput.py --label-lead 0s     # labels read as fetched, not paced
    python bench/e2e_throughput.py --one-core          # each process on one core: the target

The target, (b') at half the rate of (a') or more, is judged on one core (``--one-core``:
each measured process, the clients' fetcher threads too, pinned to the last core; the broker
runs where it runs); without it the ratio is printed, not judged. (a') and (b') run
``--pairs`` times (3 unless told), one after the other, with one more (a') after the last
(b'); each (b') is set against the faster of the two (a') runs on either side of it, and
the target is judged on the median of those ratios. On this shared machine one pair's
ratio moves by a tenth from run to run, and the bare consumer's time alone by up to half
(2.5 to 3.9 s for the same messages, when other tenants load the machine): a slow bare
run must not pass the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from benchlib import cpu_model

PARTITIONS = 4
FEATURES = [f"f{i}" for i in range(10)]
WINDOWS = ["all", "1h", "ewm30m"]
START_TS = 1_700_000_000.0
EVENTS_PER_S = 200.0  # event-time rate of the generated traffic
LABEL_SHARE = 0.8
BATCH = 10_000
TARGET = 0.5  # (b2)/(a2): the daemon over the bare consumer, confluent client
JUDGED_FROM = 500_000  # messages: a shorter run measures the clients' start-up
RUNS = {
    "a": "bare kafka-python (poll batches + msgspec decode)",
    "a2": "bare confluent-kafka (consume batches + msgspec decode)",
    "s": "the daemon's kafka-python source alone (poll into Message objects, no decode)",
    "s2": "the daemon's confluent source alone (poll into Message objects, no decode)",
    "b": "daemon, kafka-python source",
    "b2": "daemon, confluent source",
}


class Prediction(msgspec.Struct):
    """What the bare consumers decode a prediction into (typed: msgspec's fastest path)."""

    prediction_id: str
    model: str
    ts: float
    prediction: int
    score: float | None = None
    features: dict[str, float] | None = None


class Label(msgspec.Struct):
    """What the bare consumers decode a label into."""

    prediction_id: str
    label: int
    ts: float


# -- traffic -----------------------------------------------------------------------------


def generate(events: int, seed: int = 1) -> tuple[list[tuple[str, bytes, bytes, int]], float]:
    """Messages ``(kind, key, value, partition)`` in event-time order; mean prediction bytes."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(0.0, 1.0, (events, len(FEATURES))), 1)
    score = np.round(1.0 / (1.0 + np.exp(-(x[:, 0] + 0.5 * x[:, 1]))), 3)
    ts = START_TS + np.arange(events) / EVENTS_PER_S
    labelled = rng.random(events) < LABEL_SHARE
    label_ts = ts + rng.uniform(1.0, 600.0, events)
    label = (rng.random(events) < score).astype(int)
    out: list[tuple[float, int, str, bytes, bytes, int]] = []
    size = 0
    for i in range(events):
        pid = f"p{i:08d}"
        key = pid.encode()
        part = zlib.crc32(key) % PARTITIONS
        feats = ",".join(f'"{n}":{v}' for n, v in zip(FEATURES, x[i].tolist(), strict=True))
        payload = (
            f'{{"prediction_id":"{pid}","model":"m","ts":{ts[i]:.2f},'
            f'"prediction":{int(score[i] >= 0.5)},"score":{score[i]},"features":{{{feats}}}}}'
        ).encode()
        size += len(payload)
        out.append((float(ts[i]), i, "predictions", key, payload, part))
        if labelled[i]:
            body = f'{{"prediction_id":"{pid}","label":{label[i]},"ts":{label_ts[i]:.2f}}}'
            out.append((float(label_ts[i]), i, "labels", key, body.encode(), part))
    out.sort(key=lambda m: (m[0], m[1]))
    return [(kind, key, value, part) for _t, _i, kind, key, value, part in out], size / events


def produce(bootstrap: str, names: dict[str, str], messages: list[Any]) -> None:
    """Write the messages with confluent-kafka's producer and wait for every ack."""
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 50,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    })
    failed: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    for n, (kind, key, value, part) in enumerate(messages):
        while True:
            try:
                producer.produce(names[kind], value, key, partition=part, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or failed:
        raise RuntimeError(f"produce failed: {left} unacknowledged, errors {failed[:3]}")


def reference_csv(path: Path, rows: int = 20_000, seed: int = 2) -> None:
    """The features' reference profile: the same distribution as the traffic (no drift)."""
    x = np.round(np.random.default_rng(seed).normal(0.0, 1.0, (rows, len(FEATURES))), 3)
    lines = [",".join(FEATURES)] + [",".join(map(str, row)) for row in x.tolist()]
    path.write_text("\n".join(lines) + "\n")


def daemon_config(bootstrap: str, names: dict[str, str], client: str, work: Path,
                  label_lead: str | None = None) -> Any:  # fmt: skip
    """The daemon's configuration for run (b) or (b'); ``label_lead``: ``[kafka] label_lead``
    (None: its default)."""
    from monitor.config import MonitorConfig

    return MonitorConfig.model_validate({
        "kafka": {
            "client": client,
            "bootstrap_servers": bootstrap,
            "group_id": f"bench-{client}-{os.getpid()}",
            "predictions_topic": names["predictions"],
            "labels_topic": names["labels"],
            "alerts_topic": names["alerts"],
            "dead_letter_topic": names["dead_letters"],
            "session_timeout": "6s",
            "heartbeat_interval": "1s",
            **({} if label_lead is None else {"label_lead": label_lead}),
        },
        "http": {"listen": "127.0.0.1:0"},
        "state": {"dir": str(work / f"state-{client}-{os.getpid()}"),  # each run from scratch
                  "checkpoint_interval": "10s"},
        "time": {"pane": "10s", "allowed_lateness": "1m"},
        "models": [{
            "name": "m",
            "task": "binary",
            "positive_class": 1,
            "label_ttl": "6h",
            "windows": WINDOWS,
            "features": dict.fromkeys(FEATURES, "numeric"),
            "reference": str(work / "reference.csv"),
            "alerts": [
                {"name": "f1-low", "signal": "f1@1h", "op": "<", "threshold": 0.5,
                 "for": "5m", "min_samples": 200},
                {"name": "accuracy-low", "signal": "accuracy@ewm30m", "op": "<",
                 "threshold": 0.6, "for": "10m"},
                {"name": "f0-drift", "signal": "psi:f0@1h", "op": ">", "threshold": 0.2,
                 "for": "5m"},
                {"name": "error-drift", "kind": "detector", "signal": "adwin:error@all"},
            ],
        }],
    })  # fmt: skip


# -- the four measurements, each in its own process ---------------------------------------


def run_bare_kafka_python(bootstrap: str, names: dict[str, str], total: int) -> dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=BATCH,
        fetch_max_bytes=52_428_800,
        max_partition_fetch_bytes=1 << 20,
    )
    consumer.assign(
        [TopicPartition(names[k], p) for k in ("predictions", "labels") for p in range(PARTITIONS)]
    )
    decoders = {names["predictions"]: msgspec.json.Decoder(Prediction).decode,
                names["labels"]: msgspec.json.Decoder(Label).decode}  # fmt: skip
    seen, first, cpu_first = 0, None, 0.0
    deadline = time.monotonic() + 600
    while seen < total and time.monotonic() < deadline:
        records = consumer.poll(timeout_ms=500, max_records=BATCH)
        if records and first is None:
            first, cpu_first = time.perf_counter(), time.process_time()
        for tp, batch in records.items():
            decode = decoders[tp.topic]
            for r in batch:
                decode(r.value)
            seen += len(batch)
    end, cpu_end = time.perf_counter(), time.process_time()
    consumer.close()
    return {"messages": seen, "seconds": end - (first or end),
            "cpu": cpu_end - (cpu_first if first else cpu_end)}


def run_bare_confluent(bootstrap: str, names: dict[str, str], total: int) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bare-{os.getpid()}",
        "enable.auto.commit": False,
        "fetch.queue.backoff.ms": 50,
    })
    consumer.assign([
        TopicPartition(names[k], p, OFFSET_BEGINNING)
        for k in ("predictions", "labels") for p in range(PARTITIONS)
    ])  # fmt: skip
    decoders = {names["predictions"]: msgspec.json.Decoder(Prediction).decode,
                names["labels"]: msgspec.json.Decoder(Label).decode}  # fmt: skip
    seen, first, cpu_first = 0, None, 0.0
    deadline = time.monotonic() + 600
    while seen < total and time.monotonic() < deadline:
        batch = consumer.consume(BATCH, 0.5)
        if batch and first is None:
            first, cpu_first = time.perf_counter(), time.process_time()
        for m in batch:
            if m.error() is None:
                decoders[m.topic()](m.value())
                seen += 1
    end, cpu_end = time.perf_counter(), time.process_time()
    consumer.close()
    return {"messages": seen, "seconds": end - (first or end),
            "cpu": cpu_end - (cpu_first if first else cpu_end)}


def run_source(
    bootstrap: str, names: dict[str, str], total: int, client: str, work: Path
) -> dict[str, Any]:
    """The daemon's source without the engine: where the source stage tops out."""
    from monitor.kafka.source import make_source

    source = make_source(daemon_config(bootstrap, names, client, work).kafka,
                         start_offsets=lambda _t, _p: None)  # fmt: skip
    source.connect(threading.Event())
    seen, first, cpu_first = 0, None, 0.0
    deadline = time.monotonic() + 600
    while seen < total and time.monotonic() < deadline:
        batch = source.poll(500)
        if batch and first is None:
            first, cpu_first = time.perf_counter(), time.process_time()
        seen += len(batch)
    end, cpu_end = time.perf_counter(), time.process_time()
    source.close()
    return {"messages": seen, "seconds": end - (first or end),
            "cpu": cpu_end - (cpu_first if first else cpu_end)}


def run_daemon(
    bootstrap: str, names: dict[str, str], total: int, client: str, work: Path, profile: bool,
    label_lead: str | None = None,
) -> dict[str, Any]:
    from monitor.app import App
    from monitor.logs import configure_logging

    configure_logging("warning", json=True, stream=sys.stderr)

    class TimedApp(App):
        """The daemon, timing its batches: stops once every message is processed."""

        first: float | None = None
        end: float | None = None
        cpu_first = cpu_end = 0.0
        seen = 0

        def _process(self, messages: list[Any]) -> None:
            if messages and self.first is None:
                self.first, self.cpu_first = time.perf_counter(), time.process_time()
            super()._process(messages)
            self.seen += len(messages)
            if self.seen >= total and self.end is None:
                self.end, self.cpu_end = time.perf_counter(), time.process_time()
                self.stop.set()

    app = TimedApp(daemon_config(bootstrap, names, client, work, label_lead))
    timer = threading.Timer(900, app.stop.set)
    timer.start()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    app.run()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(work / f"daemon-{client}.prof"))
    timer.cancel()
    summary = (app.core or app.engine).summary()
    counts = summary["models"]["m"]["counts"]
    # The bench's labels name no model: those evicted unjoined are counted apart.
    unnamed = summary.get("unnamed_labels", {})
    end = app.end or time.perf_counter()
    return {
        "messages": app.seen,
        "seconds": end - (app.first or end),
        "cpu": app.cpu_end - app.cpu_first if app.end else 0.0,
        "matched": counts.get("matched"),
        "late": counts.get("late"),
        "evicted": counts.get("early_labels_evicted", 0) + unnamed.get("early_labels_evicted", 0),
        "alerts": app.alerts_sent,
        "rejects": app.dead_letters,
    }


def worker(args: argparse.Namespace) -> int:
    names = json.loads(args.names)
    work = Path(args.work)
    if args.worker == "a":
        result = run_bare_kafka_python(args.bootstrap, names, args.total)
    elif args.worker == "a2":
        result = run_bare_confluent(args.bootstrap, names, args.total)
    elif args.worker in ("s", "s2"):
        client = "kafka-python" if args.worker == "s" else "confluent"
        result = run_source(args.bootstrap, names, args.total, client, work)
    else:
        client = "kafka-python" if args.worker == "b" else "confluent"
        result = run_daemon(args.bootstrap, names, args.total, client, work, args.profile,
                            args.label_lead)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def measure(run: str, bootstrap: str, names: dict[str, str], total: int, work: Path,
            profile: bool, no_gc: bool = False, label_lead: str | None = None,
            one_core: bool = False) -> dict[str, Any]:  # fmt: skip
    cmd = [sys.executable, __file__, "--worker", run, "--bootstrap", bootstrap,
           "--names", json.dumps(names), "--total", str(total), "--work", str(work)]  # fmt: skip
    if profile:
        cmd.append("--profile")
    if no_gc:
        cmd.append("--no-gc")
    if label_lead is not None:
        cmd += ["--label-lead", label_lead]
    if one_core:
        cmd.append("--one-core")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    raise RuntimeError(f"run {run} failed ({done.returncode}):\n{done.stderr[-3000:]}")


# -- the machine ---------------------------------------------------------------------------




def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.platform()}; {cpu_model()}, {os.cpu_count()} cores (load {load:.1f}); "
        f"Python {platform.python_version()}"
    )


def print_profile(path: Path, top: int = 30) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="prediction events")
    parser.add_argument("--only", default="a,a2,s,s2,b,b2",
                        help="runs, comma-separated: a,a2,s,s2,b,b2")
    parser.add_argument("--profile", action="store_true", help="cProfile the daemon runs")
    parser.add_argument("--no-gc", action="store_true",
                        help="run the workers with the cyclic garbage collector disabled")
    parser.add_argument("--label-lead", help="the daemon's [kafka] label_lead (0s: labels "
                        "not paced, read as fetched); default: the config's default")
    parser.add_argument("--one-core", action="store_true",
                        help="pin each measured process (every thread: the clients' fetchers "
                             "too) to one core, the last; the broker runs where it runs")
    parser.add_argument("--pairs", type=int, default=3,
                        help="times (a2) and (b2) run, one after the other, when both are "
                             "asked for: the target is judged on the median of their ratios "
                             "(default 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.one_core:  # before any client starts its threads: they inherit it
            os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        if args.no_gc:
            import gc

            gc.disable()
        else:
            from monitor import gc_policy

            gc_policy.tune()  # as ``monitor run`` does
        return worker(args)
    runs = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs {sorted(unknown)}; valid: {sorted(RUNS)}")

    from monitor.broker import EmbeddedBroker, create_topics

    work = Path(tempfile.mkdtemp(prefix="monitor-e2e-bench-"))
    names = {"predictions": "predictions", "labels": "labels",
             "alerts": "monitor.alerts", "dead_letters": "monitor.dead-letters"}  # fmt: skip
    t0 = time.perf_counter()
    messages, mean_bytes = generate(args.events)
    gen_s = time.perf_counter() - t0
    reference_csv(work / "reference.csv")
    total = len(messages)
    results: dict[str, dict[str, Any]] = {}
    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap, {names["predictions"]: PARTITIONS,
                                         names["labels"]: PARTITIONS,
                                         names["alerts"]: 1, names["dead_letters"]: 1})  # fmt: skip
        t0 = time.perf_counter()
        produce(broker.bootstrap, names, messages)
        produce_s = time.perf_counter() - t0
        del messages
        print(f"machine   {machine()}")
        print(f"traffic   {args.events:,} predictions + {total - args.events:,} labels = "
              f"{total:,} messages, {PARTITIONS} partitions, prediction payload "
              f"{mean_bytes:.0f} B mean, 10 numeric features; generated in {gen_s:.1f} s, "
              f"produced to Tansu in {produce_s:.1f} s ({total / produce_s:,.0f}/s)")
        print("daemon    binary model, every binary metric, windows all/1h/ewm30m, pane 10 s, "
              "drift on 10 features vs a reference, ADWIN, 4 alert rules, label_lead "
              f"{args.label_lead or '1m (the default)'}", flush=True)
        pair = "a2" in runs and "b2" in runs
        again = [r for _ in range(max(0, args.pairs - 1)) for r in ("a2", "b2")] if pair else []
        if pair:
            again.append("a2")  # (the bare run after the last pair's daemon)
        bare_rates: list[float] = []  # (a2) of each run, in order
        daemon_rates: list[float] = []  # (b2) of each pair
        for run in runs + again:
            if run == "a2" and run in results:
                if len(daemon_rates) < args.pairs:
                    print(f"pair {len(daemon_rates) + 1} of {args.pairs}", flush=True)
                else:
                    print("the bare consumer again, after the last pair", flush=True)
            result = measure(run, broker.bootstrap, names, total, work, args.profile, args.no_gc,
                             args.label_lead, args.one_core)
            results[run] = result
            rate = result["messages"] / result["seconds"] if result["seconds"] > 0 else 0.0
            result["rate"] = rate
            extra = ""
            if run in ("b", "b2"):
                extra = (f"  (matched {result['matched']:,.0f}, late {result['late']:,.0f}, "
                         f"early labels evicted {result['evicted']:,.0f}, "
                         f"alerts {result['alerts']}, rejects {result['rejects']})")
            cpu = result.get("cpu", 0.0)
            result["cpu_rate"] = result["messages"] / cpu if cpu > 0 else 0.0
            print(f"({run:<2})      {result['messages']:>10,} messages in "
                  f"{result['seconds']:7.2f} s  {rate:>11,.0f} events/s  {RUNS[run]}{extra}",
                  flush=True)  # fmt: skip
            print(f"          CPU {cpu:7.2f} s (every thread of the process), "
                  f"{result['cpu_rate']:,.0f} events per CPU s", flush=True)
            if pair and run == "a2":
                bare_rates.append(rate)
            elif pair and run == "b2":
                daemon_rates.append(rate)
    # each (b2) against the faster of the (a2) runs before and after it
    ratios = [rate / max(bare_rates[i : i + 2]) for i, rate in enumerate(daemon_rates)
              if max(bare_rates[i : i + 2], default=0.0) > 0]  # fmt: skip
    for daemon_run, bare_run in (("b", "a"), ("b2", "a2"), ("b2", "a")):
        if daemon_run in results and bare_run in results and results[bare_run]["rate"] > 0:
            ratio = results[daemon_run]["rate"] / results[bare_run]["rate"]
            by_cpu = (results[daemon_run]["cpu_rate"] / results[bare_run]["cpu_rate"]
                      if results[bare_run]["cpu_rate"] > 0 else 0.0)  # fmt: skip
            print(f"ratio     ({daemon_run})/({bare_run}) = {ratio:.2f} "
                  f"(per CPU second: {by_cpu:.2f}, what load on other cores moves less)")
    if "b2" in results and "a2" in results and results["a2"]["rate"] > 0:
        ratio, rate = results["b2"]["rate"] / results["a2"]["rate"], results["b2"]["rate"]
        median = ""
        if ratios:
            ratio = statistics.median_low(ratios)  # a pair's own ratio, also when even
            rate = daemon_rates[ratios.index(ratio)]
        if len(ratios) > 1:
            median = f", the median of {len(ratios)} pairs"
            print(f"pairs     (b2)/(a2) of each pair, against the faster (a2) on either side, "
                  f"in order: {', '.join(f'{r:.2f}' for r in ratios)}; median {ratio:.2f}")
        verdict = "met" if ratio >= TARGET else "NOT met"
        if results["a2"]["messages"] < JUDGED_FROM:
            # the bare consumer's fetch start-up is most of a short run
            verdict = f"not judged below {JUDGED_FROM:,} messages"
        elif not args.one_core:  # the target is on one core: the clients' threads share it
            verdict = "not judged: threads on any core (the target pins them, --one-core)"
        print(f"target (b2)/(a2) >= {TARGET} on one core (the daemon with the confluent source "
              f"over a bare confluent consumer that decodes): **{verdict}** ({ratio:.2f}{median}, "
              f"{rate:,.0f} events/s)")
    if args.profile:
        for client in ("kafka-python", "confluent"):
            path = work / f"daemon-{client}.prof"
            if path.exists():
                print(f"\n=== cProfile of the daemon, {client} source ===")
                print_profile(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
