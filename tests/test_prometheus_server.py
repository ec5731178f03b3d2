"""End to end: a real Prometheus server scrapes two replicas' HttpServers and sums them."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.core.report import ModelReport, Report, SliceReport
from monitor.http import HttpServer
from monitor.outputs.prometheus import MonitorCollector, RuntimeStats
from tests.prom import PrometheusServer


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
    targets = [f"127.0.0.1:{s.port}" for s in servers]
    try:
        with PrometheusServer(targets, tmp_path) as prom:
            prom.wait_for('count(up{job="monitor"} == 1)', 2)
            # Additive counters sum across replicas (10 + 7 true positives).
            prom.wait_for(
                'sum by (model) (monitor_confusion_total{model="fraud",dimension="model",'
                'actual="positive",predicted="positive"})',
                17,
            )
            prom.wait_for('sum by (model) (monitor_join_total{outcome="matched"})', 34)
            prom.wait_for('sum(monitor_rejected_total{reason="not_json"})', 17)
            prom.wait_for('count(monitor_model_metric{metric="f1",window="all"})', 2)
            prom.wait_for("sum(monitor_ready)", 2)
            # Every scrape (OpenMetrics, as Prometheus asks for it) parsed without error.
            with urllib.request.urlopen(f"{prom.base}/api/v1/targets", timeout=5) as response:
                active = json.load(response)["data"]["activeTargets"]
            assert [t["lastError"] for t in active] == ["", ""]
    finally:
        for server in servers:
            server.stop()
