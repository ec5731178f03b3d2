"""``monitor demo`` end to end: broker, traffic, daemon, /metrics, and a clean exit."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.broker import free_port

DURATION_S = 25.0
EXIT_GRACE_S = 15.0


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=2.0) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@pytest.mark.timeout(90)
def test_demo_serves_metrics_and_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "demo", "--seconds", str(DURATION_S),
             "--no-view", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        matched = rejected = 0.0
        while time.monotonic() - started < DURATION_S:
            assert proc.poll() is None, f"demo exited early:\n{log.read_text()[-3000:]}"
            try:
                samples = _scrape(url)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
                continue
            matched = _total(samples, "monitor_join_total", model="fraud", outcome="matched")
            rejected = _total(samples, "monitor_rejected_total")
            if matched > 0 and rejected > 0:
                break
            time.sleep(1.0)
        assert matched > 0, f"no matched predictions on /metrics:\n{log.read_text()[-3000:]}"
        assert rejected > 0, f"no rejects on /metrics:\n{log.read_text()[-3000:]}"

        remaining = DURATION_S + EXIT_GRACE_S - (time.monotonic() - started)
        code = proc.wait(timeout=max(remaining, 1.0))
        assert code == 0, f"demo exited with {code}:\n{log.read_text()[-3000:]}"
        text = log.read_text()
        assert "demo_stopped" in text
        assert '"final": true' in text  # the daemon wrote its final checkpoint
    finally:
        if proc.poll() is None:
            proc.terminate()  # lets the demo stop its broker; SIGKILL would orphan it
            try:
                proc.wait(timeout=EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
