"""Alert outputs: the JSON of DESIGN section 2, replay's alerts.jsonl over a drifting
capture, and the push to a real Alertmanager (Debian's ``prometheus-alertmanager``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.broker import free_port
from monitor.config import config_from_mapping
from monitor.core.rules import AlertEvent, alert_id
from monitor.outputs.alerts import AlertmanagerPusher, alert_dict, alert_json, rfc3339
from monitor.replay import replay

T0 = 1_760_000_000.0
FIELDS = {
    "alert_id", "status", "rule", "severity", "model", "model_version", "signal", "value",
    "threshold", "starts_at", "ends_at", "ts", "labels", "annotations",
}


def _event(status: str = "firing", starts: float = T0, ends: float | None = None) -> AlertEvent:
    return AlertEvent(
        alert_id=alert_id("fraud", "acc-low", starts), status=status,  # type: ignore[arg-type]
        rule="acc-low", severity="critical", model="fraud", model_version="", signal="f1@1h",
        value=0.61, threshold=0.8, starts_at=starts, ends_at=ends, ts=ends or starts,
        labels={"alertname": "acc-low", "model": "fraud", "rule": "acc-low",
                "severity": "critical", "signal": "f1@1h", "team": "risk"},
        annotations={"summary": "F1 0.61 < 0.8"},
    )  # fmt: skip


def test_alert_json_has_exactly_the_design_fields_with_rfc3339_times() -> None:
    body = json.loads(alert_json(_event("resolved", T0, T0 + 90.25)))
    assert set(body) == FIELDS
    assert body["starts_at"] == "2025-10-09T08:53:20.000Z"
    assert body["ends_at"] == "2025-10-09T08:54:50.250Z"
    assert body["status"] == "resolved" and body["value"] == 0.61 and body["threshold"] == 0.8
    assert all(isinstance(v, str) for v in body["labels"].values())
    assert alert_json(_event()) == alert_json(_event())  # same event, same bytes
    assert alert_dict(_event())["ends_at"] is None


# ------------------------------------------------------------------------------ replay


def _capture(path: Path, minutes: int = 12) -> None:
    """Predictions with inline labels, 4 per second: right for 4 min, wrong for 4, right."""
    lines = []
    for i in range(minutes * 60 * 4):
        t = T0 + i / 4
        wrong = 240 <= i / 4 < 480
        pid = f"p{i}"
        body = {"prediction_id": pid, "model": "fraud", "ts": t, "prediction": 1,
                "score": 0.9, "label": 0 if wrong and i % 5 else 1}
        lines.append(json.dumps({"topic": "predictions", "partition": 0, "offset": i,
                                 "key": pid, "payload": json.dumps(body)}))
    path.write_text("\n".join(lines) + "\n")


def _replay_config() -> Any:
    return config_from_mapping({
        "time": {"pane": "10s", "allowed_lateness": "0s"},
        "models": [{
            "name": "fraud", "task": "binary", "positive_class": 1,
            "windows": ["all", "1m", "ewm1m"],
            "alerts": [
                {"name": "acc-low", "signal": "accuracy@1m", "op": "<", "threshold": 0.8,
                 "resolve_threshold": 0.9, "for": "30s", "severity": "critical",
                 "annotations": {"summary": "accuracy {value:.2f} < {threshold} ({model})"}},
                {"name": "starved", "kind": "label_starvation", "threshold": 0.5, "for": "1m"},
            ],
        }],
    })  # fmt: skip


def test_replay_writes_firing_then_resolved_to_alerts_jsonl(tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    _capture(capture)
    config = _replay_config()
    replay(config, [str(capture)], tmp_path / "a")
    replay(config, [str(capture)], tmp_path / "b")
    text = (tmp_path / "a" / "alerts.jsonl").read_bytes()
    assert text == (tmp_path / "b" / "alerts.jsonl").read_bytes()  # deterministic
    events = [json.loads(line) for line in text.splitlines()]
    assert [(e["rule"], e["status"]) for e in events] == [
        ("acc-low", "firing"), ("acc-low", "resolved")
    ]
    firing, resolved = events
    assert set(firing) == FIELDS
    assert firing["alert_id"] == resolved["alert_id"]
    assert firing["severity"] == "critical" and firing["model"] == "fraud"
    assert firing["signal"] == "accuracy@1m" and firing["threshold"] == 0.8
    assert firing["value"] < 0.8 and resolved["value"] >= 0.9
    assert firing["annotations"]["summary"].startswith("accuracy 0.")
    start = T0 + 240
    assert rfc3339(start) < firing["starts_at"] < rfc3339(start + 120)
    assert rfc3339(start + 240) < resolved["ends_at"] < rfc3339(start + 360)
    assert firing["ends_at"] is None and resolved["starts_at"] == firing["starts_at"]
    prom = (tmp_path / "a" / "metrics.prom").read_text()
    assert 'monitor_alert_firing{model="fraud",rule="acc-low",severity="critical"} 0.0' in prom
    assert ('monitor_alert_transitions_total{model="fraud",rule="acc-low",status="resolved"} 1.0'
            in prom)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["models"]["fraud"]["windows"]["all"]["label_coverage"] == 1.0


# ------------------------------------------------------------------------ Alertmanager

AM_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager on a free loopback port, clustering off; yields its base URL."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "prometheus-alertmanager is not installed (./dev test installs it)"
    port = free_port()
    (tmp_path / "am.yml").write_text(AM_CONFIG)
    log = (tmp_path / "am.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "am.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "alertmanager did not become ready"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _alerts(base: str, **params: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"filter": 'alertname="acc-low"', **params})
    with urllib.request.urlopen(f"{base}/api/v2/alerts?{query}", timeout=5) as response:
        return json.load(response)  # type: ignore[no-any-return]


def _wait(base: str, check: Any, **params: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        found = _alerts(base, **params)
        if check(found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def test_alertmanager_receives_firing_then_resolved(alertmanager: str) -> None:
    now = time.time()
    pusher = AlertmanagerPusher(alertmanager, resend_s=1.0)
    pusher.start()
    try:
        firing = _event("firing", starts=now - 60)
        pusher.submit(firing)
        (alert,) = _wait(alertmanager, lambda found: len(found) == 1)
        assert alert["labels"] == firing.labels
        assert alert["annotations"]["summary"] == "F1 0.61 < 0.8"
        assert alert["annotations"]["alert_id"] == firing.alert_id
        assert alert["status"]["state"] == "active"
        assert alert["startsAt"].startswith(rfc3339(now - 60)[:19])
        time.sleep(1.5)  # a re-send keeps it active (endsAt pushed ahead)
        assert [a["status"]["state"] for a in _alerts(alertmanager)] == ["active"]
        pusher.submit(_event("resolved", starts=now - 60, ends=time.time() - 1))
        _wait(alertmanager, lambda found: found == [])  # resolved alerts leave the list
    finally:
        pusher.close()
    assert pusher.sent >= 3 and pusher.dropped == 0


def test_alertmanager_pusher_retries_until_alertmanager_is_up(tmp_path: Path) -> None:
    port = free_port()
    pusher = AlertmanagerPusher(f"http://127.0.0.1:{port}", max_backoff_s=0.5, timeout_s=1.0)
    pusher.start()
    started = time.monotonic()
    pusher.submit(_event())  # nothing listens: submit must not block
    assert time.monotonic() - started < 0.1
    deadline = time.monotonic() + 10
    while pusher.failed_attempts < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pusher.close(timeout_s=0.5)
    assert pusher.failed_attempts >= 2 and pusher.sent == 0


def test_a_takeover_moves_re_posting_to_the_new_owner(alertmanager: str) -> None:
    """Replica A sent a firing alert and re-posts it; the model moves to replica B, which
    re-posts it from the restored rule state (same id) and later resolves it. A forgot the
    model's alerts: its re-posts would otherwise bring the resolved alert back."""
    now = time.time()
    old_owner = AlertmanagerPusher(alertmanager, resend_s=0.5)
    new_owner = AlertmanagerPusher(alertmanager, resend_s=0.5)
    old_owner.start()
    new_owner.start()
    try:
        firing = _event("firing", starts=now - 60)
        old_owner.submit(firing)
        _wait(alertmanager, lambda found: len(found) == 1)
        old_owner.forget_models(frozenset({"fraud"}))
        new_owner.submit(firing)  # adopted with the model
        time.sleep(1.2)
        new_owner.submit(_event("resolved", starts=now - 60, ends=time.time() - 1))
        _wait(alertmanager, lambda found: found == [])
        time.sleep(2.0)  # four of the old owner's re-send intervals
        assert _alerts(alertmanager) == []
    finally:
        old_owner.close()
        new_owner.close()
