"""End to end: a real Prometheus server scrapes two replicas' HttpServers and sums them."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.core.report import ModelReport, Report, SliceReport
from monitor.http import HttpServer
from monitor.outputs.prometheus import MonitorCollector, RuntimeStats

PROMETHEUS = shutil.which("prometheus")
DEADLINE_S = 25.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replica_report(tp: int, version: str) -> Report:
    """One replica's view of model "fraud": its own partitions' counts."""
    overall = SliceReport(
        "model", "",
        windows={"all": {"f1": 0.8}},
        counters={"predictions": 10 * tp, "joined": 2 * tp, "tp": tp, "fp": 1, "tn": tp, "fn": 1},
    )
    by_version = SliceReport("version", version, counters={"tp": tp})
    fraud = ModelReport("fraud", "binary", slices=[overall, by_version],
                        counts={"predictions": 10 * tp, "matched": 2 * tp})
    return Report(models={"fraud": fraud}, rejects={("predictions", "not_json"): tp}, events=tp)


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        payload = json.load(response)
    assert payload["status"] == "success", payload
    return payload["data"]["result"]


def wait_for(base: str, promql: str, expected: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    last: object = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, "prometheus exited"
        try:
            result = query(base, promql)
            last = result
            if result and float(result[0]["value"][1]) == expected:
                return
        except (urllib.error.URLError, ConnectionError) as exc:  # not listening yet
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{promql} did not reach {expected} within {DEADLINE_S}s; last: {last!r}")


def test_real_prometheus_scrapes_and_sums_across_replicas(tmp_path: Path):
    servers = []
    for tp, version in ((10, "v1"), (7, "v2")):
        registry = CollectorRegistry()
        MonitorCollector(registry).update(
            replica_report(tp, version), RuntimeStats(heartbeat=time.time(), ready=True)
        )
        server = HttpServer("127.0.0.1", 0, registry, heartbeat=time.time,
                            readiness=lambda: (True, ""))
        server.start()
        servers.append(server)
    port = free_port()
    targets = ", ".join(f"'127.0.0.1:{s.port}'" for s in servers)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: monitor\n    static_configs:\n      - targets: [{targets}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    assert PROMETHEUS is not None
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base, 'count(up{job="monitor"} == 1)', 2, proc)
        # Additive counters sum across replicas (10 + 7 true positives).
        wait_for(
            base,
            'sum by (model) (monitor_confusion_total{model="fraud",dimension="model",'
            'actual="positive",predicted="positive"})',
            17, proc,
        )
        wait_for(base, 'sum by (model) (monitor_join_total{outcome="matched"})', 34, proc)
        wait_for(base, 'sum(monitor_rejected_total{reason="not_json"})', 17, proc)
        wait_for(base, 'count(monitor_model_metric{metric="f1",window="all"})', 2, proc)
        wait_for(base, "sum(monitor_ready)", 2, proc)
        # Every scrape (OpenMetrics, as Prometheus asks for it) parsed without error.
        with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=5) as response:
            active = json.load(response)["data"]["activeTargets"]
        assert [t["lastError"] for t in active] == ["", ""]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        for server in servers:
            server.stop()
