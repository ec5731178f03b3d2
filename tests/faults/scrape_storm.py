"""A scrape storm against :class:`monitor.http.HttpServer`, in processes of its own.

``python scrape_storm.py run SECONDS SCRAPERS`` serves a registry of a few thousand
series (rendered per scrape: no pre-rendered snapshot, the costlier path), starts one
process of ``SCRAPERS`` threads that scrape ``/metrics`` back to back (raw sockets, as
Prometheus would: gzip, half asking for OpenMetrics) and one process that asks
``/healthz`` every 100 ms, each with a 5 s timeout, for ``SECONDS``; then prints one JSON
object: the probes' latencies and statuses, the scrapes done and failed, the server's
render count, and the kernel's ``TcpExtListenOverflows`` before and after (of the network
namespace it runs in: the test runs it in a fresh one when it can, so the count is its
own). Loopback only.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

SERIES = 3000


def overflows() -> int:
    """``TcpExtListenOverflows`` of this network namespace."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


class _Many(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("storm_value", "a series per label", labels=["i"])
        for i in range(SERIES):
            family.add_metric([str(i)], float(i))
        yield family


def request(port: int, path: str, accept: str = "") -> tuple[int, int]:
    """Status and bytes of one GET over a fresh connection (5 s timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n"
        if accept:
            head += f"Accept: {accept}\r\n"
        sock.sendall((head + "\r\n").encode())
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, len(data)


def scrapers(port: int, seconds: float, n: int) -> dict[str, int]:
    done = [0] * n
    failed = [0] * n
    end = time.monotonic() + seconds
    openmetrics = "application/openmetrics-text; version=1.0.0"

    def work(i: int) -> None:
        while time.monotonic() < end:
            try:
                status, _ = request(port, "/metrics", openmetrics if i % 2 else "")
            except OSError:
                status = 0
            if status == 200:
                done[i] += 1
            else:
                failed[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"scrapes": sum(done), "failed": sum(failed)}


def prober(port: int, seconds: float) -> dict[str, list[Any]]:
    latencies: list[float] = []
    statuses: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            status, _ = request(port, "/healthz")
        except OSError:
            status = 0
        latencies.append(time.monotonic() - start)
        statuses.append(status)
        time.sleep(0.1)
    return {"latencies": latencies, "statuses": statuses}


def run(seconds: float, n: int) -> dict[str, Any]:
    from monitor.http import HttpServer

    registry = CollectorRegistry()
    registry.register(_Many())
    server = HttpServer("127.0.0.1", 0, registry, heartbeat=time.time,
                        readiness=lambda: (True, "ready"))  # fmt: skip
    before = overflows()
    server.start()
    try:
        me = [sys.executable, __file__]
        storm = subprocess.Popen([*me, "scrape", str(server.port), str(seconds), str(n)],
                                 stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(0.5)  # the storm is on when the probes start
        probes = subprocess.Popen([*me, "probe", str(server.port), str(seconds - 1)],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        out_probes, _ = probes.communicate(timeout=seconds + 60)
        out_storm, _ = storm.communicate(timeout=seconds + 60)
    finally:
        server.stop()
    result: dict[str, Any] = {**json.loads(out_storm), **json.loads(out_probes)}
    result.update(overflows_before=before, overflows_after=overflows(),
                  renders=getattr(server, "renders", None))  # fmt: skip
    return result


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "run":
        print(json.dumps(run(float(args[0]), int(args[1]))))
    elif command == "scrape":
        print(json.dumps(scrapers(int(args[0]), float(args[1]), int(args[2]))))
    elif command == "probe":
        print(json.dumps(prober(int(args[0]), float(args[1]))))
