"""Static checks of the container files (no Docker daemon needed)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from monitor.config import config_from_mapping

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


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


def _stages(text: str) -> list[dict[str, list[str]]]:
    """The instructions of each build stage, in order (split at FROM)."""
    stages = re.split(r"(?m)^(?=FROM )", re.sub(r"\\\n", " ", text))
    return [_instructions(stage) for stage in stages if stage.startswith("FROM ")]


def test_dockerfile_structure() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    found = _instructions(text)
    build, runtime = _stages(text)
    # Multi-stage: the venv is built in one stage and copied into a clean slim image.
    assert build["FROM"] == ["python:3.11-slim AS build"]
    assert runtime["FROM"] == ["python:3.11-slim"]
    assert runtime["COPY"] == ["--from=build /opt/monitor /opt/monitor"]
    assert not any("pip install" in run for run in runtime.get("RUN", []))
    (install,) = [run for run in build["RUN"] if "pip install" in run]
    assert "-c constraints.txt" in install and '".${EXTRAS:+[$EXTRAS]}"' in install
    assert build["ARG"] == ['EXTRAS=""']  # the core by default; extras only when asked
    assert runtime["USER"] == ["10001:10001"]
    assert found["EXPOSE"] == ["9108"]
    assert found["ENTRYPOINT"] == ['["monitor"]']
    assert found["CMD"] == ['["run", "--config", "/etc/monitor/monitor.toml"]']
    (healthcheck,) = found["HEALTHCHECK"]
    assert "/healthz" in healthcheck and "urllib" in healthcheck
    for copy in build["COPY"]:
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def _image_env() -> dict[str, str]:
    (_, runtime) = _stages((DOCKER / "Dockerfile").read_text())
    env = {}
    for line in runtime["ENV"]:
        for name, value in re.findall(r"(\w+)=(\S+)", line):
            env[name] = value
    return env


def test_image_listens_on_all_interfaces_and_keeps_state_writable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image's environment makes a config with no [http] table scrapeable from outside
    the container, and puts the state in the non-root user's directory."""
    env = _image_env()
    for name, value in env.items():
        if name.startswith("MONITOR"):
            monkeypatch.setenv(name, value)
    config = config_from_mapping({"models": [{"name": "m", "task": "regression"}]})
    assert config.http.listen == "0.0.0.0:9108"
    assert config.state.dir == "/var/lib/monitor/state"
    assert env["PATH"].startswith("/opt/monitor/bin:")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKER / "Dockerfile")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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


def test_compose_runs_alertmanager_grafana_and_a_traffic_generator() -> None:
    import yaml

    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"alertmanager", "grafana", "traffic", "kafka-init"} <= set(services)
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:")
    assert "9093:9093" in services["alertmanager"]["ports"]
    assert "./alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in (
        services["alertmanager"]["volumes"]
    )
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:") and "3000:3000" in grafana["ports"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    for volume in grafana["volumes"] + services["alertmanager"]["volumes"]:
        assert (DOCKER / volume.split(":")[0]).exists(), volume
    traffic = services["traffic"]
    assert traffic["image"] == services["monitor"]["image"]
    assert traffic["command"][:3] == ["demo", "--produce-to", "kafka:9092"]
    content = compose["configs"]["monitor-config"]["content"]
    config = config_from_mapping(tomllib.loads(content), "docker-compose.yml")
    assert config.alertmanager.url == "http://alertmanager:9093"
    assert {r.kind for r in config.models[0].alerts} >= {"threshold", "absence"}


def test_alertmanager_config_passes_amtool() -> None:
    result = subprocess.run(
        ["amtool", "check-config", str(DOCKER / "alertmanager.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_sends_to_the_compose_alertmanager() -> None:
    import yaml

    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    import json

    import yaml

    grafana = DOCKER / "grafana"
    sources = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((grafana / "provisioning/dashboards/monitor.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((grafana / "dashboards/monitor.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]
