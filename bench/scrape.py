"""Scrape cost: ``/metrics`` with ~10k series, and whether serving it stalls processing
(issue item 7).

In one process, as in ``run``: an engine of ``--models`` binary models (every binary
metric, 3 windows, one segment key with 50 values, 10 features), the ``HttpServer`` and
``MonitorCollector`` of the daemon on a loopback port, and a processing loop on the main
thread that feeds polls of ``--batch`` messages to ``Engine.process`` and, every 50
polls, publishes ``engine.report()`` to the collector (the run loop's tick), which renders
the snapshot's exposition there, once.

The same stream is processed four times from a fresh engine: twice with nobody
scraping, once with a client process scraping ``/metrics`` back to back, once with it
scraping every ``--interval`` seconds (alternating a plain text request and Prometheus'
own: OpenMetrics, gzip, on a kept-alive connection). Poll ``i`` does the same work in
every run, so its extra time while scraping is the stall scrapes caused, and its
difference between the two quiet runs is what the shared machine alone does to a poll.
The report gives the distribution of poll times, the largest extra time of a poll, the
render time per published snapshot (on the loop) and the server's work per scrape.
Target: no poll delayed by more than 10 ms::

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
import zlib  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from monitor import http as http_module  # noqa: E402
from monitor.core.alerting import Alerting  # noqa: E402
from monitor.core.pipeline import Pipeline  # noqa: E402
from monitor.core.report import Report  # noqa: E402
from monitor.http import HttpServer  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402
from monitor.outputs.prometheus import MonitorCollector, RuntimeStats  # noqa: E402

TARGET_MS = 10.0
TICK_POLLS = 50
#: Seconds of one render of the last snapshot, measured with nothing else running.
RENDER: dict[str, list[float]] = {"prometheus_client (collect + generate_latest)": [],
                                  "this collector's render (update)": []}
#: What Prometheus sends (it prefers OpenMetrics, and compresses).
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.5,"
                     "application/openmetrics-text;version=0.0.1;q=0.4,"
                     "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
#: Requests a scraper cycles through: (Accept, Accept-Encoding).
KINDS = (("", ""), (PROMETHEUS_ACCEPT, "gzip"))


SCRAPER = """
import http.client, json, sys, threading, time, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
kinds = json.loads(sys.argv[2])
interval = float(sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
durations, size = [], 0
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)  # kept alive
while not stop.is_set():
    accept, encoding = kinds[len(durations) % len(kinds)]
    t0 = time.perf_counter()
    conn.request("GET", url.path, headers={"Accept": accept, "Accept-Encoding": encoding})
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, resp.status
    durations.append(time.perf_counter() - t0)
    if not encoding:
        size = len(body)
    if len(durations) == 1:
        print("started", flush=True)
    stop.wait(max(0.0, interval - (time.perf_counter() - t0)))
conn.close()
print(json.dumps({"durations": durations, "size": size}), flush=True)
"""


class Scraper:
    """A separate process (as Prometheus is) GETting ``/metrics`` back to back on one
    kept-alive connection (as Prometheus does), cycling through :data:`KINDS`, until
    :meth:`finish`; then ``durations`` holds each scrape's seconds, ``size`` the
    uncompressed body's bytes."""

    def __init__(self, url: str, interval: float = 0.0) -> None:
        self.url = url
        self.interval = interval
        self.durations: list[float] = []
        self.size = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start scraping; returns once the first scrape is done."""
        self.proc = subprocess.Popen([sys.executable, "-c", SCRAPER, self.url,
                                      json.dumps(KINDS), str(self.interval)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def finish(self) -> None:
        """Stop scraping and collect the figures."""
        if self.proc is None or self.proc.returncode is not None:
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


@dataclass
class Run:
    """One processing run: the timed polls' seconds, the publishes' (``update``: the render
    of a snapshot) seconds, the scraper if any, the 1 ms probe, the series exported."""

    polls: list[float]
    publishes: list[float]
    scraper: Scraper | None
    probe: Probe
    series: int = 0


def run_once(models: int, polls: list[list[benchlib.Message]], warm: int,
             scrape: bool, interval: float = 0.0, measure: bool = False) -> Run:
    """Process ``polls`` (the first ``warm`` untimed), scraping meanwhile if ``scrape``;
    after the run, measure one render and the server's work per scrape (nothing else
    running) into :data:`RENDER` and :data:`SERVE`."""
    cfg = benchlib.config(models, segments=1)
    engine = Pipeline(cfg)
    alerting = Alerting(cfg, engine.models)
    engine.track(benchlib.all_partitions())
    registry = CollectorRegistry()
    collector = MonitorCollector(registry)
    http = HttpServer("127.0.0.1", 0, registry, heartbeat=time.time,
                      readiness=lambda: (True, "ok"), collector=collector)
    http.start()
    scraper = Scraper(f"{http.url}/metrics", interval) if scrape else None
    run = Run([], [], scraper, Probe())
    try:
        for i, batch in enumerate(polls):
            t0 = time.perf_counter()
            engine.process(batch)
            alerting.feed(engine.drain_signals())
            published = 0.0
            if i % TICK_POLLS == 0:
                report = engine.report()
                runtime = RuntimeStats(heartbeat=time.time(), ready=True)
                t1 = time.perf_counter()
                collector.update(report, runtime)
                published = time.perf_counter() - t1
            elapsed = time.perf_counter() - t0
            if i == warm:
                run.probe.start()
            if i == warm and run.scraper is not None:
                run.scraper.start()
            if i > warm:
                run.polls.append(elapsed)
                if published:
                    run.publishes.append(published)
        run.probe.stop.set()
        run.probe.join(5)
        if run.scraper is not None:
            run.scraper.finish()
        report = engine.report()  # the end of the stream: what the measurements below use
        runtime = RuntimeStats(heartbeat=time.time(), ready=True)
        collector.update(report, runtime)
        with urllib.request.urlopen(f"{http.url}/metrics", timeout=30) as resp:
            text = resp.read().decode()
        run.series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        if measure:
            measure_render_and_serve(collector, registry, http, report, runtime)
    finally:
        run.probe.stop.set()
        if run.scraper is not None and run.scraper.proc is not None:
            run.scraper.proc.kill()
        http.stop()
    return run


#: How many metric values (defined or not) the last report held; how many defined ones
#: ``max_series`` left out.
RENDER_VALUES: list[int] = [0, 0]
#: Seconds of the server's work for one scrape (``HttpServer._metrics``), by request kind.
SERVE: dict[str, list[float]] = {}
#: CPU seconds of the server thread per request (``/metrics``) while processing, all of
#: it and the part outside zlib (which compresses with the interpreter lock released).
#: A thread holds the lock only while it runs, so the latter is the most a scrape can
#: take from the loop.
REQUEST_CPU: dict[str, list[float]] = {"all": [], "outside zlib": []}
_ZLIB = threading.local()


def record_request_cpu() -> None:
    """Instrument the server and zlib (in this process only) to time each request's thread
    CPU, and the part of it spent compressing."""
    handle = http_module._Handler.handle_one_request
    compress = zlib.compress

    def timed_compress(*args: Any, **kwargs: Any) -> bytes:
        t0 = time.thread_time()
        try:
            return compress(*args, **kwargs)
        finally:
            _ZLIB.cpu = getattr(_ZLIB, "cpu", 0.0) + time.thread_time() - t0

    def timed_request(self: http_module._Handler) -> None:
        _ZLIB.cpu = 0.0
        t0 = time.thread_time()
        try:
            handle(self)
        finally:
            if self.raw_requestline and self.path.startswith("/metrics"):
                spent = time.thread_time() - t0
                REQUEST_CPU["all"].append(spent)
                REQUEST_CPU["outside zlib"].append(spent - _ZLIB.cpu)

    http_module._Handler.handle_one_request = timed_request  # type: ignore[method-assign]
    zlib.compress = timed_compress


def measure_render_and_serve(collector: MonitorCollector, registry: CollectorRegistry,
                             http: HttpServer, report: Report, runtime: RuntimeStats) -> None:
    """One render of the last report both ways, and the server's work per scrape."""
    RENDER_VALUES[:] = [sum(len(m) for model in report.models.values() for s in model.slices
                            for m in s.windows.values()),
                        int(registry.get_sample_value("monitor_series_dropped") or 0)]
    for _ in range(5):
        RENDER["prometheus_client (collect + generate_latest)"].append(
            benchlib.timed(lambda: generate_latest(registry)))
        RENDER["this collector's render (update)"].append(
            benchlib.timed(lambda: collector.update(report, runtime)))
        # The first gzip request of a snapshot joins the OpenMetrics body and compresses it.
        SERVE.setdefault("first OpenMetrics + gzip scrape of a snapshot", []).append(
            benchlib.timed(lambda: http._metrics("", PROMETHEUS_ACCEPT, "gzip")))
    for name, (accept, encoding) in (("text", KINDS[0]), ("OpenMetrics + gzip", KINDS[1])):
        for _ in range(200):
            SERVE.setdefault(f"{name}, snapshot already served", []).append(
                benchlib.timed(lambda: http._metrics("", accept, encoding)))  # noqa: B023


def table_row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    if not ms:
        return f"| {name} | - | - | - |"
    return (f"| {name} | {benchlib.percentile(ms, 0.5):.1f} | "
            f"{benchlib.percentile(ms, 0.99):.1f} | {max(ms):.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12, help="models (sets the series)")
    parser.add_argument("--events", type=int, default=300_000, help="predictions")
    parser.add_argument("--batch", type=int, default=1000, help="messages per poll")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between the scrapes of the paced run")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    record_request_cpu()
    polls = benchlib.batches(
        benchlib.stream(args.events, models=args.models, segments=1, rate=2000.0),
        args.batch)
    warm = len(polls) // 3  # panes have closed and every slice exists by then
    quiet = run_once(args.models, polls, warm, scrape=False)
    busy = run_once(args.models, polls, warm, scrape=True, measure=True)
    again = run_once(args.models, polls, warm, scrape=False)
    paced = run_once(args.models, polls, warm, scrape=True, interval=args.interval)
    assert paced.scraper is not None
    paced_extra = [p - q for q, p in zip(quiet.polls, paced.polls, strict=True)]
    scraper = busy.scraper
    assert scraper is not None
    extra = [b - q for q, b in zip(quiet.polls, busy.polls, strict=True)]
    noise = [a - q for q, a in zip(quiet.polls, again.polls, strict=True)]
    stall_ms = max(extra) * 1000
    print("## Scrape cost (item 7)\n")
    print(f"machine: {benchlib.machine()}\n")
    print(f"exposition: {busy.series:,} series, {scraper.size / 1e6:.1f} MB ({args.models} "
          f"models x every binary metric x 3 windows x 50 segment values, with their "
          f"counters); {len(quiet.polls):,} timed polls of {args.batch:,} messages, a report "
          f"published (and rendered) every {TICK_POLLS} polls; the scraper alternates a "
          f"text request and Prometheus' (OpenMetrics, gzip)\n")
    print("| measurement | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in (
        ("`/metrics` scrape (client side)", scraper.durations),
        ("poll, nobody scraping", quiet.polls),
        ("poll, scrapes back to back", busy.polls),
        ("poll, nobody scraping (second run)", again.polls),
        ("**extra time of the same poll while scraping**", extra),
        (f"poll, one scrape every {args.interval:g} s", paced.polls),
        (f"**extra time of the same poll, one scrape every {args.interval:g} s**",
         paced_extra),
        ("difference of the same poll between the two runs without scrapes", noise),
        ("publish (`update`: renders the snapshot), nobody scraping", quiet.publishes),
        ("publish (`update`: renders the snapshot), scrapes back to back", busy.publishes),
        ("server thread's CPU time per `/metrics` request, while processing",
         REQUEST_CPU["all"]),
        ("the same, outside zlib (holding the interpreter lock at most)",
         REQUEST_CPU["outside zlib"]),
        ("1 ms probe thread's wait for the GIL, nobody scraping", quiet.probe.late),
        ("1 ms probe thread's wait for the GIL, scrapes back to back", busy.probe.late),
    ):
        print(table_row(name, values))
    old, new = (min(v) for v in RENDER.values())
    print(f"\nRender per published snapshot, the last report, nothing else running in this "
          f"process (min of 5): {new * 1000:.1f} ms on the loop thread in `update` "
          f"(prometheus_client's collect + generate_latest of the same: {old * 1000:.0f} ms, "
          f"{old / new:.0f}x as long), once per tick whether or not anyone scrapes. Most of "
          f"it is reading the report's {RENDER_VALUES[0]:,} metric values (the undefined "
          f"ones, and the {RENDER_VALUES[1]:,} defined ones past `max_series`, included) "
          f"and formatting the exported ones.\n")
    print("Server work per scrape (`HttpServer._metrics`, nothing else running in this "
          "process): " + ", ".join(
        f"{name} {benchlib.percentile(v, 0.5) * 1e6:,.0f} us p50" for name, v in SERVE.items())
        + " (zlib compresses outside the interpreter lock); the rest of a scrape is the "
          "socket write, also outside it.\n")
    lost = sum(busy.polls) - sum(quiet.polls)
    rate = len(scraper.durations) / sum(busy.polls)
    print(f"{len(scraper.durations):,} scrapes while processing back to back ({rate:,.0f} "
          f"a second; {len(paced.scraper.durations):,} in the paced run); "
          f"processing took {sum(busy.polls) / sum(quiet.polls):.2f}x as long with them "
          f"({sum(again.polls) / sum(quiet.polls):.2f}x in the second run without): "
          f"{lost / max(1, len(scraper.durations)) * 1000:.2f} ms of processing lost per "
          f"scrape, on this 2-core machine where the scraping process competes for the "
          f"cores too; at Prometheus' usual 15 s interval, "
          f"{lost / max(1, len(scraper.durations)) / 15 * 100:.3f} % of the loop's time.\n")
    print("The probe's wait is the longest stretch one thread held the interpreter "
          "lock: the finest grain at which a scrape can block the loop thread. Differences "
          "between the two runs without scrapes are the shared machine's doing (other "
          "processes, descheduling), not the monitor's.\n")
    hold_ms = max(REQUEST_CPU["outside zlib"]) * 1000
    verdict = "met" if hold_ms <= TARGET_MS else "NOT met"
    print("The verdict below is judged on the server thread's CPU time per scrape outside "
          "zlib: a thread holds the interpreter lock only while it runs (and zlib releases "
          "it), so this is the most a scrape can take from the loop. The polls' extra time "
          "(also given) mixes it with the scraping process competing for the 2 cores and "
          "with the other jobs on the machine, whose size the two runs without scrapes "
          "show.\n")
    print(f"target: a scrape never blocks processing for more than {TARGET_MS:.0f} ms: "
          f"**{verdict}** (a scrape's server thread ran at most {hold_ms:.1f} ms outside "
          f"zlib, {len(REQUEST_CPU['all'])} scrapes; largest extra time of one poll while "
          f"scraping {stall_ms:.1f} ms, p99 {benchlib.percentile(extra, 0.99) * 1000:.1f} ms "
          f"back to back, {max(paced_extra) * 1000:.1f} ms, p99 "
          f"{benchlib.percentile(paced_extra, 0.99) * 1000:.1f} ms with one scrape every "
          f"{args.interval:g} s; "
          f"between the two runs without scrapes: largest {max(noise) * 1000:.1f} ms, p99 "
          f"{benchlib.percentile(noise, 0.99) * 1000:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
