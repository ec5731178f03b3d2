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
