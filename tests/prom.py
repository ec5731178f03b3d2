"""A real Prometheus server for tests: started on a free loopback port, scraping given targets."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType

from monitor.broker import free_port


class PrometheusServer:
    """Debian's ``prometheus`` binary scraping ``targets`` every second; stopped on exit."""

    def __init__(self, targets: list[str], workdir: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (./dev test installs it)"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        listed = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: monitor\n    static_configs:\n      - targets: [{listed}]\n"
        )
        self._log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def query(self, promql: str) -> list[dict]:  # type: ignore[type-arg]
        """Instant query; the result vector."""
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            payload = json.load(response)
        assert payload["status"] == "success", payload
        return payload["data"]["result"]  # type: ignore[no-any-return]

    def wait_for(self, promql: str, expected: float, timeout: float = 30.0) -> None:
        """Wait until ``promql`` returns ``expected`` as its first value; fail with the last."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited"
            try:
                result = self.query(promql)
                last = result
                if result and float(result[0]["value"][1]) == expected:
                    return
            except (urllib.error.URLError, ConnectionError) as exc:
                last = exc
            time.sleep(0.25)
        raise AssertionError(f"{promql} did not reach {expected} in {timeout}s; last: {last!r}")

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()
