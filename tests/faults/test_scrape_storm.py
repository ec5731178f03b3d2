"""A scrape storm: 50 parallel scrapers of ``/metrics`` for 10 s (``scrape_storm.py``).

Every ``/healthz`` asked meanwhile (every 100 ms, from a process of its own) answers 200
within 0.5 s, the kernel counts no listen-queue overflow, no scrape fails, and the
scrapes share renders (about one per second per distinct exposition asked, not one per
scrape). The storm runs in a fresh network namespace when the machine allows it (root),
so the overflow counter is its own; else in the host's (loopback only).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("scrape_storm.py")
SECONDS = 10
SCRAPERS = 50


def _isolated() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0


def test_fifty_scrapers_for_ten_seconds_starve_no_probe_and_overflow_no_queue() -> None:
    command = [sys.executable, str(SCRIPT), "run", str(SECONDS), str(SCRAPERS)]
    if _isolated():
        inner = shlex.join(command)
        command = ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {inner}"]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 120,
                          env=env, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    latencies, statuses = result["latencies"], result["statuses"]
    assert len(latencies) >= 20  # probes ran through the storm
    assert set(statuses) == {200}, statuses
    assert max(latencies) < 0.5, sorted(latencies)[-5:]
    assert result["overflows_after"] == result["overflows_before"], result
    assert result["failed"] == 0, result
    assert result["scrapes"] > 100, result
    # two expositions asked (text, OpenMetrics): at most one render per second each
    assert result["renders"] <= 2 * (SECONDS + 2), result
