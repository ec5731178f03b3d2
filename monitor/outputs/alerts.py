"""Alert events as JSON (the alert topic, ``alerts.jsonl``) and as Alertmanager alerts.

:func:`alert_json` renders an :class:`~monitor.core.rules.AlertEvent` exactly as DESIGN
section 2 shapes it, times in RFC 3339 (UTC, millisecond precision), keys sorted so the
same event always gives the same bytes:

>>> from monitor.core.rules import AlertEvent
>>> event = AlertEvent("a1", "firing", "f1-low", "critical", "fraud", "", "f1@1h", 0.71, 0.8,
...                    1700000000.0, None, 1700000000.0, {"alertname": "f1-low"}, {})
>>> alert_json(event)[:60]
b'{"alert_id":"a1","annotations":{},"ends_at":null,"labels":{"'

:class:`AlertmanagerPusher` posts firing and resolved alerts to Alertmanager's
``/api/v2/alerts`` from a background thread with a bounded queue and retries with
backoff, so the run loop never blocks on it. Alertmanager forgets a firing alert that is
not re-sent (``resolve_timeout``), so firing alerts are re-posted every ``resend_s``
with ``endsAt`` a few intervals ahead until their resolution is sent.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from monitor.core.rules import AlertEvent

__all__ = ["AlertmanagerPusher", "alert_dict", "alert_json", "alertmanager_alert", "rfc3339"]

log = structlog.get_logger(__name__)


def rfc3339(ts: float) -> str:
    """Unix seconds as RFC 3339 in UTC with milliseconds.

    >>> rfc3339(1700000000.5)
    '2023-11-14T22:13:20.500Z'
    """
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def alert_dict(event: AlertEvent) -> dict[str, Any]:
    """The alert event as a JSON-ready dict (DESIGN section 2)."""
    return {
        "alert_id": event.alert_id,
        "status": event.status,
        "rule": event.rule,
        "severity": event.severity,
        "model": event.model,
        "model_version": event.model_version,
        "signal": event.signal,
        "value": _num(event.value),
        "threshold": _num(event.threshold),
        "starts_at": rfc3339(event.starts_at),
        "ends_at": None if event.ends_at is None else rfc3339(event.ends_at),
        "ts": rfc3339(event.ts),
        "labels": dict(event.labels),
        "annotations": dict(event.annotations),
    }


def alert_json(event: AlertEvent) -> bytes:
    """The alert event's message value: compact JSON, sorted keys, UTF-8."""
    return json.dumps(
        alert_dict(event), sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode()


def alertmanager_alert(event: AlertEvent, ends_at: float | None = None) -> dict[str, Any]:
    """One alert of Alertmanager's v2 ``postableAlert`` shape."""
    body: dict[str, Any] = {
        "labels": dict(event.labels),
        "annotations": {**event.annotations, "alert_id": event.alert_id},
        "startsAt": rfc3339(event.starts_at),
    }
    end = event.ends_at if event.status == "resolved" else ends_at
    if end is not None:
        body["endsAt"] = rfc3339(end)
    return body


class AlertmanagerPusher:
    """Posts alerts to Alertmanager from a daemon thread; :meth:`submit` never blocks.

    Parameters
    ----------
    url
        Alertmanager's base URL, e.g. ``http://127.0.0.1:9093``.
    queue_size
        Events waiting to be posted; past it the oldest is dropped (and counted).
    resend_s
        Firing alerts are re-posted this often, with ``endsAt`` four intervals ahead.
    timeout_s, max_backoff_s
        Per-request timeout; retries back off from 0.5 s, doubling up to this.

    Attributes
    ----------
    sent, dropped, failed_attempts : int
        Posts that succeeded, events dropped from a full queue, failed attempts.
    """

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 1000,
        resend_s: float = 60.0,
        timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/api/v2/alerts"
        self.resend_s = resend_s
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.sent = 0
        self.dropped = 0
        self.failed_attempts = 0
        self._queue: queue.Queue[AlertEvent] = queue.Queue(maxsize=queue_size)
        self._firing: dict[str, AlertEvent] = {}
        self._forget: queue.SimpleQueue[frozenset[str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alertmanager", daemon=True)

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def submit(self, event: AlertEvent) -> None:
        """Queue an event for posting; drops the oldest queued one when full."""
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def forget_models(self, models: frozenset[str]) -> None:
        """Stop re-posting the firing alerts of these models (another replica owns them
        now and re-posts them itself)."""
        self._forget.put(models)

    def close(self, timeout_s: float = 5.0) -> None:
        """Post what is queued (for at most ``timeout_s``), then stop the thread."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)

    def _run(self) -> None:
        next_resend = time.monotonic() + self.resend_s
        while not self._stop.is_set():
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                event = None
            while not self._forget.empty():
                gone = self._forget.get_nowait()
                self._firing = {k: e for k, e in self._firing.items() if e.model not in gone}
            if event is not None:
                if event.status == "firing":
                    self._firing[event.alert_id] = event
                else:
                    self._firing.pop(event.alert_id, None)
                self._post([self._body(event)])
            if time.monotonic() >= next_resend:
                next_resend = time.monotonic() + self.resend_s
                if self._firing:
                    self._post([self._body(e) for e in self._firing.values()])

    def _body(self, event: AlertEvent) -> dict[str, Any]:
        return alertmanager_alert(event, ends_at=time.time() + 4 * self.resend_s)

    def _post(self, alerts: list[Mapping[str, Any]]) -> bool:
        data = json.dumps(alerts).encode()
        backoff = 0.5
        while not self._stop.is_set():
            request = urllib.request.Request(
                self.endpoint, data=data, method="POST",
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.sent += 1
                return True
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.failed_attempts += 1
                status = getattr(exc, "code", None)
                log.warning("alertmanager_post_failed", url=self.endpoint, error=str(exc),
                            status=status, retry_in_s=backoff)  # fmt: skip
                if status is not None and 400 <= status < 500 and status != 429:
                    return False  # a request Alertmanager refuses will not improve
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
        return False
