"""Scrape cost: ``/metrics`` with ~10k series, and whether serving it stalls processing
(issue item 7).

In one process, as in ``run``: an engine of ``--models`` binary models (every binary
metric, 3 windows, one segment key with 50 values, 10 features), the ``HttpServer`` and
``MonitorCollector`` of the daemon on a loopback port, and a processing loop on the main
thread that feeds polls of ``--batch`` messages to ``Engine.process`` and, every 50
polls, publishes ``engine.report()`` to the collector (the run loop's tick).

The same stream is processed twice from a fresh engine: once with nobody scraping, once
with a client process scraping ``/metrics`` back to back. Poll ``i`` does the same work in
both runs, so its extra time in the second is the stall scrapes caused; the report gives
the distribution of poll times in both runs, the largest extra time of a poll, and the
scrape durations. Target: no poll delayed by more than 10 ms::

    python bench/scrape.py
    python bench/scrape.py --events 50000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from monitor.core.engine import Engine  # noqa: E402
from monitor.http import HttpServer  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402
from monitor.outputs.prometheus import MonitorCollector, RuntimeStats  # noqa: E402

TARGET_MS = 10.0
TICK_POLLS = 50
#: Seconds of the two parts of a render, measured with nothing else running.
RENDER: dict[str, list[float]] = {"build families": [],
                                  "build + text format (generate_latest)": []}


SCRAPER = """
import json, sys, threading, time, urllib.request
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
durations, size = [], 0
while not stop.is_set():
    t0 = time.perf_counter()
    with urllib.request.urlopen(sys.argv[1], timeout=30) as resp:
        size = len(resp.read())
    durations.append(time.perf_counter() - t0)
    if len(durations) == 1:
        print("started", flush=True)
print(json.dumps({"durations": durations, "size": size}), flush=True)
"""


class Scraper:
    """A separate process (as Prometheus is) GETting ``/metrics`` back to back until
    :meth:`finish`; then ``durations`` holds each scrape's seconds, ``size`` the body's."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.durations: list[float] = []
        self.size = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start scraping; returns once the first scrape is done."""
        self.proc = subprocess.Popen([sys.executable, "-c", SCRAPER, self.url], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def finish(self) -> None:
        """Stop scraping and collect the figures."""
        if self.proc is None:
            return
        out, _ = self.proc.communicate("", timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
        self.durations, self.size = result["durations"], result["size"]


class Probe(threading.Thread):
    """Sleeps 1 ms at a time and records how late it wakes: the longest stretch it waited
    for the interpreter lock while others (the loop, the scrapes) held it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.late: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.001)
            self.late.append(time.perf_counter() - t0 - 0.001)


def run_once(models: int, polls: list[list[benchlib.Message]], warm: int,
             scrape: bool) -> tuple[list[float], Scraper | None, int, Probe]:
    """Process ``polls`` (the first ``warm`` untimed); the timed polls' seconds, the
    scraper if any, and the number of series the last scrape (or a render) held."""
    cfg = benchlib.config(models, segments=1)
    engine = Engine(cfg)
    engine.track(benchlib.all_partitions())
    registry = CollectorRegistry()
    collector = MonitorCollector(registry)
    http = HttpServer("127.0.0.1", 0, registry, heartbeat=time.time,
                      readiness=lambda: (True, "ok"))
    http.start()
    scraper = Scraper(f"{http.url}/metrics") if scrape else None
    probe = Probe()
    durations: list[float] = []
    try:
        for i, batch in enumerate(polls):
            t0 = time.perf_counter()
            engine.process(batch)
            engine.drain_signals()
            engine.drain_alerts()
            if i % TICK_POLLS == 0:
                collector.update(engine.report(), RuntimeStats(heartbeat=time.time(),
                                                               ready=True))
            elapsed = time.perf_counter() - t0
            if i == warm:
                probe.start()
            if i == warm and scraper is not None:
                scraper.start()
            if i > warm:
                durations.append(elapsed)
        with urllib.request.urlopen(f"{http.url}/metrics", timeout=30) as resp:
            text = resp.read().decode()
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        for _ in range(3):  # one render split in two, on this thread, nothing else running
            t0 = time.perf_counter()
            families = list(collector.collect())
            t1 = time.perf_counter()
            generate_latest(registry)
            t2 = time.perf_counter()
            RENDER["build families"].append(t1 - t0)
            RENDER["build + text format (generate_latest)"].append(t2 - t1)
        del families
    finally:
        probe.stop.set()
        probe.join(5)
        if scraper is not None:
            scraper.finish()
        http.stop()
    return durations, scraper, series, probe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12, help="models (sets the series)")
    parser.add_argument("--events", type=int, default=300_000, help="predictions")
    parser.add_argument("--batch", type=int, default=1000, help="messages per poll")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    polls = benchlib.batches(
        benchlib.stream(args.events, models=args.models, segments=1, rate=2000.0),
        args.batch)
    warm = len(polls) // 3  # panes have closed and every slice exists by then
    quiet, _, series, quiet_probe = run_once(args.models, polls, warm, scrape=False)
    busy, scraper, _, busy_probe = run_once(args.models, polls, warm, scrape=True)
    assert scraper is not None
    extra = [b - q for q, b in zip(quiet, busy, strict=True)]
    stall_ms = max(extra) * 1000
    print("## Scrape cost (item 7)\n")
    print(f"machine: {benchlib.machine()}\n")
    print(f"exposition: {series:,} series, {scraper.size / 1e6:.1f} MB ({args.models} models "
          f"x every binary metric x 3 windows x 50 segment values, with their counters); "
          f"{len(quiet):,} timed polls of {args.batch:,} messages, a report published "
          f"every {TICK_POLLS} polls\n")
    print("| measurement | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in (
        ("`/metrics` scrape", scraper.durations),
        ("poll, nobody scraping", quiet),
        ("poll, scrapes back to back", busy),
        ("extra time of the same poll while scraping", extra),
        ("1 ms probe thread's wait for the GIL, nobody scraping", quiet_probe.late),
        ("1 ms probe thread's wait for the GIL, scrapes back to back", busy_probe.late),
    ):
        ms = [v * 1000 for v in values]
        print(f"| {name} | {benchlib.percentile(ms, 0.5):.1f} | "
              f"{benchlib.percentile(ms, 0.99):.1f} | {max(ms):.1f} |")
    print("\nOne render on the bench's thread with nothing else running (min of 3): " + ", ".join(
        f"{name} {min(v) * 1000:.0f} ms" for name, v in RENDER.items()) + ".\n")
    print(f"{len(scraper.durations)} scrapes while processing; processing took "
          f"{sum(busy) / sum(quiet):.2f}x as long with them (the scrape is rendered on the "
          f"daemon's HTTP thread, which takes the GIL from the loop).\n")
    print("The probe's wait is the longest stretch one thread held the interpreter "
          "lock: the finest grain at which a scrape can block the loop thread.\n")
    verdict = "met" if stall_ms <= TARGET_MS else "NOT met"
    print(f"target: a scrape never blocks processing for more than {TARGET_MS:.0f} ms: "
          f"**{verdict}** (largest extra time of one poll {stall_ms:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
