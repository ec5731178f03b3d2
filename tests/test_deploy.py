"""The Kubernetes manifests in deploy/k8s, checked without a cluster.

Built-in kinds are validated by ``kubernetes-validate`` (the Kubernetes OpenAPI schemas,
strict: an unknown field is an error); the ServiceMonitor by the JSON schema of the
prometheus-operator's ServiceMonitor model (``cloudcoil.models.prometheus_operator``),
made strict the same way. Then the pieces must fit: probes on /healthz and /readyz at
the port the config listens on, selectors that select, the ConfigMap a valid config.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from monitor.config import MonitorConfig, config_from_mapping

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.37.0"


def _documents() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None and doc.get("kind") != "Kustomization":
                found[doc["kind"]] = doc
    return found


DOCS = _documents()


def _strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists its
    properties (the CRD's structural schema prunes unknown fields; here they are errors)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _servicemonitor_schema() -> dict[str, Any]:
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    return _strict(ServiceMonitor.model_json_schema(by_alias=True))  # type: ignore[no-any-return]


def _validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "ServiceMonitor":
        jsonschema.validate(doc, _servicemonitor_schema())
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_manifests_hold_the_four_kinds_and_kustomize_lists_every_file() -> None:
    assert set(DOCS) == {"ConfigMap", "Deployment", "Service", "ServiceMonitor"}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("kind", sorted(DOCS))
def test_manifest_passes_its_schema(kind: str) -> None:
    _validate(DOCS[kind])


@pytest.mark.parametrize(
    ("kind", "path", "bad"),
    [
        ("Deployment", ["spec", "template", "spec", "containers", 0, "livenessProbe", "httpGet"],
         {"pth": "/healthz", "port": "http"}),
        ("Deployment", ["spec", "replicas"], "one"),
        ("Service", ["spec", "ports", 0, "port"], "http"),
        ("ServiceMonitor", ["spec", "endpoints", 0], {"port": "http", "intervall": "15s"}),
        ("ServiceMonitor", ["spec", "selector"], None),
    ],
)
def test_the_validators_refuse_a_broken_manifest(kind: str, path: list[Any], bad: Any) -> None:
    """The checks above can fail: a typo or a wrong type in each kind is refused."""
    doc = copy.deepcopy(DOCS[kind])
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    if bad is None:
        del node[path[-1]]
    else:
        node[path[-1]] = bad
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        _validate(doc)


def _container() -> dict[str, Any]:
    (container,) = DOCS["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _config(monkeypatch: pytest.MonkeyPatch) -> MonitorConfig:
    """The ConfigMap's file with the container's environment applied, as the pod loads it."""
    for var in _container()["env"]:
        if "value" in var:
            monkeypatch.setenv(var["name"], var["value"])
    text = DOCS["ConfigMap"]["data"]["monitor.toml"]
    return config_from_mapping(tomllib.loads(text), "configmap.yaml")


def test_probes_reach_healthz_and_readyz_on_the_listening_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = _container()
    config = _config(monkeypatch)
    (port,) = container["ports"]
    assert port["containerPort"] == config.http.port
    assert config.http.host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["args"][-1] == "/etc/monitor/monitor.toml"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/monitor"


def test_the_pod_runs_as_the_image_user_without_privileges() -> None:
    spec = DOCS["Deployment"]["spec"]["template"]["spec"]
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert f"USER {spec['securityContext']['runAsUser']}:" in dockerfile
    assert spec["securityContext"]["runAsNonRoot"] is True
    context = _container()["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]


def test_selectors_connect_deployment_service_and_servicemonitor() -> None:
    deployment, service, monitor = DOCS["Deployment"], DOCS["Service"], DOCS["ServiceMonitor"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {
        p["name"] for p in _container()["ports"]
    }
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])


def test_the_configmap_is_a_valid_config_that_replicas_can_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(monkeypatch)
    assert config.kafka.bootstrap_servers == "kafka:9092"
    assert config.state.store == "kafka"  # pods keep no state of their own
