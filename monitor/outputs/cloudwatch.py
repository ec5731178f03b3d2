"""Signals and alert states as CloudWatch embedded metric format (EMF) lines.

``[outputs] cloudwatch = true`` makes ``monitor run`` print them on stdout, beside its
JSON log lines, where a CloudWatch agent (or the Lambda/ECS log driver) turns them into
metrics with no extra service; ``monitor replay`` writes the same lines to
``cloudwatch.jsonl``. Each line is one JSON object (the format's "root node"):

.. code-block:: json

    {"_aws": {"Timestamp": 1700000010000,
              "CloudWatchMetrics": [{"Namespace": "monitor",
                                     "Dimensions": [["model", "window", "feature"]],
                                     "Metrics": [{"Name": "psi", "Unit": "None"}, ...]}]},
     "model": "fraud", "window": "1h", "feature": "amount", "psi": 0.031, ...}

- one object per model, window and subject per closed pane, ``Timestamp`` = the pane end
  in **event time** (milliseconds); signals without a subject (``f1@1h``) have the
  dimensions ``model, window``; a subject adds ``feature`` (drift signals, ``psi:amount``),
  ``class`` (``class_recall:cat``) or ``stream`` (detectors, ``adwin:error``), and the
  metric is named by the signal's name alone (``psi``); ``gap:f1`` has ``metric=f1``, and
  any other subject is the dimension ``subject``;
- an object has at most 100 metrics (the format's limit): a larger group is split into
  several objects with the same dimensions;
- undefined values (NaN) and infinities are left out (JSON has no NaN); a group with
  none left is not written;
- units: ``Count`` for counts (``prediction_count``, ``label_count``, detections), else
  ``None`` (ratios, scores, distances);
- an alert transition is one object with dimensions ``model, rule`` and the metric
  ``alert_firing`` (1 firing, 0 resolved) at the transition's time, plus ``severity``,
  ``signal``, ``status``, ``alert_id``, ``value`` and ``threshold`` as plain members
  (searchable in CloudWatch Logs Insights, not metrics).

CloudWatch accepts datapoints up to two weeks old and two hours ahead: the lines of a
replay of older traffic are for inspection (or Logs Insights), not for metrics.

>>> from monitor.core.model import PaneSignals
>>> docs = emf_documents(PaneSignals("fraud", 1700000010.0, {"f1@1h": 0.9, "psi:amount@1h": 0.2}))
>>> [(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], d.get("f1"), d.get("psi")) for d in docs]
[([['model', 'window']], 0.9, None), ([['model', 'window', 'feature']], None, 0.2)]
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec
import structlog

from monitor.catalogue import SIGNALS
from monitor.core.model import PaneSignals
from monitor.core.rules import AlertEvent
from monitor.logs import rate_limited

__all__ = [
    "MAX_DIMENSIONS",
    "MAX_METRICS",
    "EmfWriter",
    "emf_alert",
    "emf_documents",
    "emf_lines",
    "stdout_lock",
]

log = structlog.get_logger(__name__)
#: Most metric definitions one metric directive may hold (the format's limit).
MAX_METRICS = 100
#: Most dimension keys one dimension set may hold (the format's limit).
MAX_DIMENSIONS = 30
#: Longest dimension value the format accepts.
MAX_DIMENSION_VALUE = 1024
DEFAULT_NAMESPACE = "monitor"
#: Signals counted in events (or detections): CloudWatch unit ``Count``; the rest ``None``.
_COUNTS = frozenset(name for name, s in SIGNALS.items() if s.unit == "count")
_encode = msgspec.json.Encoder().encode


def _split(signal: str) -> tuple[str, str | None, str | None, str]:
    """``psi:amount@1h`` -> (``psi``, ``feature``, ``amount``, ``1h``)."""
    head, _, window = signal.rpartition("@")
    name, _, subject = head.partition(":")
    if not subject:
        return name, None, None, window
    # the catalogue's subject: feature (drift), stream (detectors), class, metric (gap)
    found = SIGNALS.get(name)
    key = found.subject if found is not None and found.subject else "subject"
    return name, key, subject[:MAX_DIMENSION_VALUE], window


def _unit(name: str) -> str:
    return "Count" if name in _COUNTS else "None"


def _timestamp(seconds: float) -> int:
    return round(seconds * 1000.0)


def emf_documents(sig: PaneSignals, namespace: str = DEFAULT_NAMESPACE) -> list[dict[str, Any]]:
    """The EMF objects of one model's closed pane: one per window and subject (split at
    :data:`MAX_METRICS` metrics), finite values only."""
    groups: dict[tuple[str, str | None, str | None], dict[str, float]] = {}
    for signal, value in sig.signals.items():
        if not math.isfinite(value):
            continue
        name, key, subject, window = _split(signal)
        groups.setdefault((window, key, subject), {})[name] = value
    timestamp = _timestamp(sig.pane_end)
    docs: list[dict[str, Any]] = []
    for (window, key, subject), metrics in groups.items():
        dimensions = ["model", "window"] if key is None else ["model", "window", key]
        names = list(metrics)
        for start in range(0, len(names), MAX_METRICS):
            chunk = names[start : start + MAX_METRICS]
            doc: dict[str, Any] = {
                "_aws": {
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": namespace,
                            "Dimensions": [dimensions],
                            "Metrics": [{"Name": n, "Unit": _unit(n)} for n in chunk],
                        }
                    ],
                },
                "model": sig.model,
                "window": window,
            }
            if key is not None:
                doc[key] = subject
            for n in chunk:
                doc[n] = metrics[n]
            docs.append(doc)
    return docs


def emf_alert(event: AlertEvent, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    """The EMF object of one alert transition: ``alert_firing`` 1 (firing) or 0 (resolved)."""

    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return {
        "_aws": {
            "Timestamp": _timestamp(event.ts),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [["model", "rule"]],
                    "Metrics": [{"Name": "alert_firing", "Unit": "None"}],
                }
            ],
        },
        "model": event.model,
        "rule": event.rule,
        "alert_firing": 1 if event.status == "firing" else 0,
        "status": event.status,
        "severity": event.severity,
        "signal": event.signal,
        "alert_id": event.alert_id,
        "value": finite(event.value),
        "threshold": finite(event.threshold),
    }


def emf_lines(
    signals: Sequence[PaneSignals],
    alerts: Sequence[AlertEvent] = (),
    namespace: str = DEFAULT_NAMESPACE,
) -> str:
    """One batch as text: one compact JSON object per line, each ending in a newline."""
    parts = [_encode(doc) for sig in signals for doc in emf_documents(sig, namespace)]
    parts.extend(_encode(emf_alert(event, namespace)) for event in alerts)
    if not parts:
        return ""
    return (b"\n".join(parts) + b"\n").decode()


def stdout_lock() -> threading.Lock | threading.RLock | None:
    """The lock of the logging handler that writes to stdout, if there is one.

    Log lines are written under their handler's lock, one ``write`` per line; writing EMF
    under the same lock means that no log line (from any thread: kafka-python logs from
    its own) can land inside a batch of EMF lines, and no EMF line inside a log line.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            return handler.lock
    return None


class EmfWriter:
    """Writes EMF lines for each batch of signals and alerts to a text stream.

    Parameters
    ----------
    stream
        Where the lines go: ``sys.stdout`` in ``run``, ``cloudwatch.jsonl`` in ``replay``.
    namespace
        The CloudWatch namespace of every metric.
    lock
        Held while a batch is written and flushed; :func:`stdout_lock` when the stream
        is shared with the log lines.

    A write that fails is logged and dropped (an optional export never stops the monitor);
    :attr:`failures` counts them.

    >>> import io
    >>> from monitor.core.model import PaneSignals
    >>> out = io.StringIO()
    >>> EmfWriter(out, "ml").write([PaneSignals("fraud", 1.5, {"f1@1h": 0.5})])
    >>> out.getvalue()[:39]
    '{"_aws":{"Timestamp":1500,"CloudWatchMe'
    """

    def __init__(
        self,
        stream: TextIO,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        lock: threading.Lock | threading.RLock | None = None,
    ) -> None:
        self.stream = stream
        self.namespace = namespace
        self.lock = lock if lock is not None else threading.Lock()
        self.lines_written = 0
        self.failures = 0

    def write(self, signals: Sequence[PaneSignals], alerts: Sequence[AlertEvent] = ()) -> None:
        """Write one batch and flush the stream."""
        text = emf_lines(signals, alerts, self.namespace)
        if not text:
            return
        try:
            with self.lock:
                self.stream.write(text)
                self.stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self.failures += 1
            if (suppressed := rate_limited(("cloudwatch", "write"), 60.0)) is not None:
                log.error("cloudwatch_write_failed", error=str(exc), suppressed=suppressed)
            return
        self.lines_written += text.count("\n")
