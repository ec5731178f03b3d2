"""Static checks of the container files (no Docker daemon needed)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from monitor.config import config_from_mapping

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def _instructions(text: str) -> dict[str, list[str]]:
    """Dockerfile instructions by keyword, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    found: dict[str, list[str]] = {}
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        found.setdefault(keyword.upper(), []).append(rest.strip())
    return found


def test_dockerfile_structure() -> None:
    found = _instructions((DOCKER / "Dockerfile").read_text())
    assert found["FROM"] == ["python:3.11-slim"]
    assert any("pip install ." in run for run in found["RUN"])
    assert found["USER"] and found["USER"][-1] not in ("root", "0")
    assert found["EXPOSE"] == ["9108"]
    assert found["ENTRYPOINT"] == ['["monitor"]']
    assert found["CMD"] == ['["run", "--config", "/etc/monitor/monitor.toml"]']
    (healthcheck,) = found["HEALTHCHECK"]
    assert "/healthz" in healthcheck and "urllib" in healthcheck


def test_compose_file_parses_and_its_config_is_valid() -> None:
    import yaml

    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"monitor", "prometheus", "kafka"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["monitor"]["build"]["dockerfile"] == "docker/Dockerfile"
    content = compose["configs"]["monitor-config"]["content"]
    config = config_from_mapping(tomllib.loads(content), "docker-compose.yml")
    assert config.http.listen == "0.0.0.0:9108"


def test_compose_prometheus_scrapes_the_monitor() -> None:
    text = (DOCKER / "prometheus.yml").read_text()
    assert '"monitor:9108"' in text
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml" in (
        DOCKER / "docker-compose.yml"
    ).read_text()


def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(DOCKER / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
