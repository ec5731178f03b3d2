"""The Prometheus metric bundle: every metric the daemon exports, built in one place.

The core never imports ``prometheus_client``. Once per tick the run loop hands the
latest :class:`~monitor.core.report.Report` and a :class:`RuntimeStats` to
:meth:`MonitorCollector.update`, which renders the exposition of that snapshot once and
swaps both in with one attribute assignment. ``/metrics`` (on an HTTP server thread)
serves those bytes (:meth:`MonitorCollector.exposition`), so scraping never touches the
core's state and never renders under the interpreter lock the loop needs; label sets
that are no longer in the report (a revoked model, a folded segment) simply stop being
exported. :meth:`MonitorCollector.collect` builds the same families with prometheus_client
(``registry.get_sample_value``, ``name[]`` filters, ``metrics.prom``); the render writes
the same bytes as ``generate_latest`` of it, about 10x faster: the text before each
value (``name{labels} ``) is kept from one tick to the next, and while the report's slices,
windows and keys stay the same, a tick only formats the values.

Metric families (namespace ``monitor_``; label values are exported as given and
prometheus_client escapes them; ``S`` = ``model, dimension, slice``):

======================================================  =========  ====================
family                                                  type       labels
======================================================  =========  ====================
``monitor_model_metric``                                gauge      S, window, metric
``monitor_drift``                                       gauge      model, window,
                                                                   feature, method
``monitor_slice_predictions_total``                     counter    S
``monitor_slice_joined_total``                          counter    S
``monitor_confusion_total``                             counter    S, actual, predicted
``monitor_slice_scored_total``                          counter    S
``monitor_log_loss_total``                              counter    S
``monitor_brier_score_total``                           counter    S
``monitor_score_total``                                 counter    S
``monitor_regression_absolute_error_total``             counter    S
``monitor_regression_squared_error_total``              counter    S
``monitor_regression_absolute_percentage_error_total``  counter    S
``monitor_regression_signed_error``                     gauge      S
``monitor_slice_accumulator``                           gauge      S, name
``monitor_predictions_received_total``                  counter    model
``monitor_labels_received_total``                       counter    model
``monitor_join_total``                                  counter    model, outcome
``monitor_late_events_total``                           counter    model
``monitor_pending_predictions``                         gauge      model
``monitor_pending_labels``                              gauge      model
``monitor_label_delay_seconds``                         histogram  model
``monitor_model_accumulator``                           gauge      model, name
``monitor_detector_detections_total``                   counter    model, detector
``monitor_alert_firing``                                gauge      model, rule, severity
``monitor_alert_transitions_total``                     counter    model, rule, status
``monitor_rejected_total``                              counter    topic, reason
``monitor_watermark_timestamp_seconds``                 gauge
``monitor_panes_closed_total``                          counter
``monitor_events_processed_total``                      counter
``monitor_series_dropped``                              gauge
``monitor_consumer_lag``                                gauge      topic, partition
``monitor_checkpoint_last_timestamp_seconds``           gauge
``monitor_checkpoints_total``                           counter
``monitor_checkpoint_failures_total``                   counter    reason
``monitor_loop_heartbeat_timestamp_seconds``            gauge
``monitor_assigned_partitions``                         gauge
``monitor_ready``                                       gauge
``monitor_input_up``                                    gauge
``monitor_dead_letters_total``                          counter
``monitor_output_backlog``                              gauge
``monitor_consumption_paused``                          gauge
``monitor_labels_paced_partitions``                     gauge
``monitor_alerts_sent_total``                           counter
``monitor_build_info``                                  gauge      version
======================================================  =========  ====================

With ``process=True`` (the daemon), prometheus_client's default collectors are exported
too, after the families above: ``process_*`` (CPU seconds, resident and virtual memory,
open and maximum file descriptors, start time; Linux only), ``python_gc_*`` (collections,
collected and uncollectable objects per generation) and ``python_info``. They are read
when the run loop publishes a snapshot (once a second), not at scrape time.

``monitor_detector_detections_total`` counts each concept-drift detector's detections
since the state began (it survives restarts with the checkpoint): alert on
``increase(...[5m]) > 0``, which a scrape cannot miss, unlike the last pane's count.

``outcome`` is one of ``matched``, ``expired``, ``evicted``, ``orphan_label``,
``duplicate_label``, ``duplicate_prediction``, ``early_label_evicted``. A label that names
no model and leaves the join without its prediction (``orphan_label``,
``early_label_evicted``) is counted with ``model=""``: no model's series can hold it. The runtime
families (consumer lag to alerts) are exported only when the loop passes
:class:`RuntimeStats` (not in ``replay``).

Slices: ``dimension`` is ``model`` (``slice=""``, the whole model), ``version`` (``slice`` is
the model version) or ``segment:<key>`` (``slice`` is the segment value); the core folds
values past its caps into ``__other__``. Every slice family repeats the same events once
per dimension, so **always filter on** ``dimension``.

With replicas, a model's series (``monitor_model_metric`` and its counters) come from the
replica that owns the model, alone, and equal what one process gives (docs/replicas.md).
Additive counters are the per-slice cumulative sums of the core (window ``all``), one
family per kind so that units never mix, so rates and ratios over any span come from
them. Recall of the
positive class over 1 h, across replicas::

    sum by (model) (increase(monitor_confusion_total{dimension="model",
        actual="positive",predicted="positive"}[1h]))
    / sum by (model) (increase(monitor_confusion_total{dimension="model",
        actual="positive"}[1h]))

and MAE over 1 h::

    sum by (model) (increase(monitor_regression_absolute_error_total{dimension="model"}[1h]))
    / sum by (model) (increase(monitor_slice_joined_total{dimension="model"}[1h]))

- ``monitor_confusion_total``: binary ``tp``/``fp``/``tn``/``fn`` become
  ``actual``/``predicted`` in ``positive``/``negative`` (the same words for every binary
  model, whatever its positive class is called); multiclass ``confusion:<true>:<pred>``
  keeps the class names.
- ``monitor_regression_signed_error`` is the sum of signed errors: it can go down, so it
  is a gauge (still additive: ``sum by`` works; use ``delta``, not ``rate``).
- Other sums (``label_sum``, ``pred_sum``: signed, so not counters) and keys the core
  adds later that this module does not know yet are exported, not lost, as
  ``monitor_slice_accumulator{name=...}`` / ``monitor_model_accumulator{name=...}``.

NaN: a metric that is undefined (no labels yet, one class only) is **absent**, not NaN.
NaN poisons ``sum``/``avg`` across replicas and compares false with every threshold, while
an absent series is what PromQL already means by "no data" (``absent()``, ``or``).
Infinities (e.g. MAPE with a zero label) are real values and are exported.

Cardinality: the core caps versions and segment values per model; on top of that
``monitor_model_metric`` (the widest family) holds at most ``max_series`` series per
scrape. Whole-model slices are taken first, then versions and segments, in report order;
the rest are dropped, and ``monitor_series_dropped`` says how many were dropped from the
latest report. It is a gauge, not a counter: the same series are dropped again on every
scrape of the same report, so a running total would only count scrapes.
"""

from __future__ import annotations

import gzip
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import structlog
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from monitor.catalogue import DRIFT_SIGNALS
from monitor.core.report import LABEL_DELAY_BUCKETS, ModelReport, Report, SliceReport
from monitor.logs import RateLimitedLogger
from monitor.version import __version__

__all__ = ["DEFAULT_MAX_SERIES", "Exposition", "MonitorCollector", "RuntimeStats", "render"]

DEFAULT_MAX_SERIES = 10_000

_log = RateLimitedLogger(structlog.get_logger(__name__), 300.0)

# ModelReport.counts key -> monitor_join_total{outcome}
_JOIN_OUTCOMES: dict[str, str] = {
    "matched": "matched",
    "expired": "expired",
    "evicted": "evicted",
    "orphan_labels": "orphan_label",
    "duplicate_labels": "duplicate_label",
    "duplicate_predictions": "duplicate_prediction",
    "early_labels_evicted": "early_label_evicted",
}
_MODEL_COUNTS_KNOWN = {
    *_JOIN_OUTCOMES, "predictions", "labels", "late", "pending", "early_labels_pending",
}
# ModelReport.counts keys ``<detector>_detections``: monitor_detector_detections_total
_DETECTIONS = "_detections"
# Binary confusion cells -> (actual, predicted)
_BINARY_CELLS: dict[str, tuple[str, str]] = {
    "tp": ("positive", "positive"),
    "fp": ("negative", "positive"),
    "tn": ("negative", "negative"),
    "fn": ("positive", "negative"),
}
_SLICE = ("model", "dimension", "slice")
# monitor_label_delay_seconds' ``le`` labels
_BUCKET_BOUNDS = [floatToGoString(b) for b in LABEL_DELAY_BUCKETS] + ["+Inf"]
_DRIFT_METHODS = frozenset(DRIFT_SIGNALS)
# SliceReport.counters key -> attribute of _Families (one family per kind of sum)
_SLICE_FAMILIES: dict[str, str] = {
    "predictions": "slice_predictions",
    "joined": "slice_joined",
    "scored_n": "scored",
    "log_loss_sum": "log_loss",
    "brier_sum": "brier",
    "score_sum": "score",
    "abs_error_sum": "abs_error",
    "squared_error_sum": "sq_error",
    "ape_sum": "ape",
    "error_sum": "signed_error",
}


@dataclass(frozen=True, slots=True)
class RuntimeStats:
    """What the run loop knows beyond the core's report; exported as-is on each scrape.

    ``lag`` maps (topic, partition) to messages behind the end of the partition;
    ``heartbeat`` and ``last_checkpoint`` are Unix times (``None``/0 when not yet);
    ``checkpoints``, ``dead_letters`` and ``alerts`` are totals since the process started.
    """

    heartbeat: float = 0.0
    ready: bool = False
    assigned_partitions: int = 0
    lag: Mapping[tuple[str, int], float] = field(default_factory=dict)
    last_checkpoint: float | None = None
    checkpoints: int = 0
    dead_letters: int = 0
    alerts: int = 0
    #: Alert and dead-letter records not yet delivered; whether input is paused for them.
    output_backlog: int = 0
    paused: bool = False
    #: Labels partitions paused because they ran ahead of their predictions in event time.
    paced: int = 0
    #: Failed checkpoint writes since start, by reason (see ``monitor.app``).
    checkpoint_failures: Mapping[str, int] = field(default_factory=dict)
    #: Whether the input can be read: connected, and the broker answering.
    input_up: bool = True


@dataclass(frozen=True, slots=True)
class _Snapshot:
    report: Report | None
    runtime: RuntimeStats | None
    #: Its rendered text; ``None`` if the render failed (scrapes then use ``collect``).
    exposition: Exposition | None = None


class _Families:
    """Every family of one scrape, empty until filled."""

    def __init__(self) -> None:
        #: Label names of each family, by family name (for the fast render).
        self._labels: dict[str, tuple[str, ...]] = {"monitor_label_delay_seconds": ("model",)}

        def gauge(
            name: str, doc: str, labels: tuple[str, ...] = (), unit: str = ""
        ) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"monitor_{name}", doc, labels=labels, unit=unit)
            self._labels[family.name] = labels
            return family

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
            family = CounterMetricFamily(f"monitor_{name}", doc, labels=labels)
            self._labels[family.name] = labels
            return family

        self.model_metric = gauge(
            "model_metric",
            "Value of a model metric per window and slice; absent while undefined.",
            ("model", "window", "metric", "dimension", "slice"),
        )
        self.drift = gauge(
            "drift",
            "Drift and data-quality signals of the whole model by feature (or __score__, "
            "__prediction__, __label__) and method; the same values as monitor_model_metric.",
            ("model", "window", "feature", "method"),
        )
        self.slice_predictions = counter(
            "slice_predictions", "Predictions counted in a slice (cumulative).", _SLICE
        )
        self.slice_joined = counter(
            "slice_joined", "Predictions joined with their label in a slice (cumulative).", _SLICE
        )
        self.confusion = counter(
            "confusion",
            "Joined predictions per actual and predicted class; binary models use "
            "positive/negative.",
            (*_SLICE, "actual", "predicted"),
        )
        self.scored = counter(
            "slice_scored", "Joined predictions that carried a score (cumulative).", _SLICE
        )
        self.log_loss = counter(
            "log_loss", "Sum of the log loss of joined, scored predictions.", _SLICE
        )
        self.brier = counter(
            "brier_score", "Sum of the Brier score of joined, scored predictions.", _SLICE
        )
        self.score = counter(
            "score", "Sum of the positive-class scores of predictions.", _SLICE
        )
        self.ape = counter(
            "regression_absolute_percentage_error",
            "Sum of absolute percentage errors (as fractions) of joined predictions.",
            _SLICE,
        )
        self.abs_error = counter(
            "regression_absolute_error", "Sum of absolute errors of joined predictions.", _SLICE
        )
        self.sq_error = counter(
            "regression_squared_error", "Sum of squared errors of joined predictions.", _SLICE
        )
        self.signed_error = gauge(
            "regression_signed_error",
            "Sum of signed errors of joined predictions (can decrease; additive).",
            _SLICE,
        )
        self.slice_other = gauge(
            "slice_accumulator", "Other additive per-slice sums reported by the core.",
            (*_SLICE, "name"),
        )
        self.predictions = counter(
            "predictions_received", "Valid prediction events received.", ("model",)
        )
        self.labels = counter("labels_received", "Valid label events received.", ("model",))
        self.join = counter(
            "join",
            "Outcomes of the prediction-label join; model=\"\": labels naming no model that"
            " left unjoined.",
            ("model", "outcome"),
        )
        self.late = counter(
            "late_events", "Events for an already closed pane (cumulative window only).",
            ("model",),
        )
        self.pending_predictions = gauge(
            "pending_predictions", "Predictions waiting for their label.", ("model",)
        )
        self.pending_labels = gauge(
            "pending_labels", "Labels waiting for their prediction.", ("model",)
        )
        self.label_delay = HistogramMetricFamily(
            "monitor_label_delay",
            "Event-time delay between a prediction and its label.",
            labels=("model",),
            unit="seconds",
        )
        self.model_other = gauge(
            "model_accumulator", "Other per-model counts reported by the core.", ("model", "name")
        )
        self.detections = counter(
            "detector_detections",
            "Concept-drift detections of each detector since the state began.",
            ("model", "detector"),
        )
        self.alert_firing = gauge(
            "alert_firing",
            "1 while an alert rule fires, else 0 (one series per configured rule).",
            ("model", "rule", "severity"),
        )
        self.alert_transitions = counter(
            "alert_transitions",
            "Alert rule transitions (pending, firing, resolved) since the state began.",
            ("model", "rule", "status"),
        )
        self.rejected = counter(
            "rejected", "Input messages rejected, by topic and reason.", ("topic", "reason")
        )
        self.watermark = gauge(
            "watermark_timestamp", "Event-time watermark (Unix time).", unit="seconds"
        )
        self.panes_closed = counter("panes_closed", "Panes closed by the watermark.")
        self.events = counter("events_processed", "Events processed by the core.")
        self.series_dropped = gauge(
            "series_dropped",
            "Series of monitor_model_metric left out of the latest report by the max_series cap.",
        )
        self.lag = gauge(
            "consumer_lag", "Messages between the consumer position and the partition end.",
            ("topic", "partition"),
        )
        self.checkpoint_last = gauge(
            "checkpoint_last_timestamp",
            "Unix time of the last completed checkpoint.",
            unit="seconds",
        )
        self.checkpoints = counter("checkpoints", "Checkpoints completed since start.")
        self.checkpoint_failures = counter(
            "checkpoint_failures",
            "Checkpoint writes that failed since start (offsets stay uncommitted), by reason.",
            ("reason",),
        )
        self.heartbeat = gauge(
            "loop_heartbeat_timestamp",
            "Unix time of the run loop's last iteration.",
            unit="seconds",
        )
        self.assigned = gauge("assigned_partitions", "Input partitions assigned to this replica.")
        self.ready = gauge(
            "ready", "1 when partitions are assigned, state restored and caught up (within "
            "the [readiness] tolerance)."
        )
        self.input_up = gauge(
            "input_up", "1 while the input can be read (connected, the broker answering)."
        )
        self.dead_letters = counter(
            "dead_letters", "Rejected messages copied to the dead-letter topic."
        )
        self.output_backlog = gauge(
            "output_backlog", "Alert and dead-letter records not yet delivered to Kafka."
        )
        self.paused = gauge(
            "consumption_paused", "1 while input is paused because the outputs cannot deliver."
        )
        self.paced = gauge(
            "labels_paced_partitions",
            "Labels partitions paused while they run ahead of their predictions in event time.",
        )
        self.alerts = counter("alerts_sent", "Alert events sent to the alert topic.")
        self.build_info = gauge(
            "build_info", "Build of the monitor; the value is always 1.", ("version",)
        )

    def all(self) -> list[Metric]:
        return [m for m in vars(self).values() if isinstance(m, Metric)]

    def label_names(self, family: Metric) -> tuple[str, ...]:
        """The label names ``family`` was declared with."""
        return self._labels[family.name]


class MonitorCollector:
    """A prometheus_client collector exporting the latest report and runtime stats.

    It registers itself with ``registry``. The run loop calls :meth:`update` once per
    tick; scrapes call :meth:`collect` from any thread. ``max_series`` caps the series of
    ``monitor_model_metric`` (see the module docstring).

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> collector = MonitorCollector(registry)
    >>> collector.update(Report(events=3))
    >>> registry.get_sample_value("monitor_events_processed_total")
    3.0
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_series: int = DEFAULT_MAX_SERIES,
        version: str = __version__,
        process: bool = False,
    ) -> None:
        if max_series < 0:
            raise ValueError(f"Invalid 'max_series': {max_series!r}; must be >= 0")
        self.max_series = max_series
        self.version = version
        self._renderer = _Renderer()
        self._lock = threading.Lock()
        #: prometheus_client's default collectors (process, GC, platform), when exported.
        self._process: CollectorRegistry | None = None
        defaults: list[Collector] = []
        if process:
            self._process = CollectorRegistry(auto_describe=True)
            defaults = [ProcessCollector(registry=self._process),
                        GCCollector(registry=self._process),
                        PlatformCollector(registry=self._process)]
        self._snapshot = self._rendered(_Snapshot(None, None))
        registry.register(self)
        # The defaults also in ``registry``, after this collector: what a render of the
        # registry (a filtered scrape) returns is what the rendered snapshot holds.
        for default in defaults:
            registry.register(default)

    def update(self, report: Report, runtime: RuntimeStats | None = None) -> None:
        """Publish a new report (and runtime stats; ``None`` omits the runtime families).

        The caller hands ``report`` over: it must not be mutated afterwards. The snapshot's
        exposition is rendered here, once (a few ms for 10k series: only the values are
        formatted, the text around them is kept from the previous tick), so that scrapes,
        on the HTTP threads, only copy bytes and never hold the interpreter lock against
        the run loop. The swap is a single attribute assignment, so a concurrent scrape
        sees either the old or the new snapshot, never a mix.
        """
        with self._lock:
            self._snapshot = self._rendered(_Snapshot(report, runtime))

    def exposition(self) -> Exposition | None:
        """The current snapshot rendered (what ``/metrics`` serves); ``None`` if its render
        failed, in which case :meth:`collect` with prometheus_client is the way to serve it."""
        return self._snapshot.exposition

    def _rendered(self, snapshot: _Snapshot) -> _Snapshot:
        try:
            exposition = self._renderer.render(snapshot, self.version, self.max_series)
            if self._process is not None:
                exposition.tail = self._process_tail
        except Exception as exc:  # a bug here must not stop the run loop
            _log.error("render", "prometheus_render_failed", error=repr(exc), exc_info=True)
            return snapshot
        return _Snapshot(snapshot.report, snapshot.runtime, exposition)

    def _process_tail(self, openmetrics: bool) -> bytes:
        """The process, GC and platform families in text 0.0.4 or OpenMetrics (without
        ``# EOF``), read when a scrape first asks a snapshot for that format: they read
        ``/proc`` and cost more than the monitor's own families, so they are not rendered
        at every tick, only for the snapshots that are scraped (and are then as fresh as
        the scrape)."""
        assert self._process is not None
        if openmetrics:
            return openmetrics_format.generate_latest(self._process).removesuffix(b"# EOF\n")
        return generate_latest(self._process)

    def describe(self) -> Iterator[Metric]:
        """Every family this collector can export (lets the registry detect clashes)."""
        yield from _Families().all()

    def collect(self) -> Iterator[Metric]:
        """Build the families from the current snapshot."""
        snapshot = self._snapshot  # read once: the loop may swap it meanwhile
        f = _Families()
        f.build_info.add_metric([self.version], 1.0)
        if snapshot.report is not None:
            self._add_report(f, snapshot.report)
        if snapshot.runtime is not None:
            _add_runtime(f, snapshot.runtime)
        for family in f.all():
            if family.samples:
                yield family

    def _add_report(self, f: _Families, report: Report) -> None:
        for model in report.models.values():
            _add_model(f, model)
        for key, count in sorted(report.unnamed.items()):
            f.join.add_metric(["", _JOIN_OUTCOMES[key]], float(count))
        for (topic, reason), count in report.rejects.items():
            f.rejected.add_metric([topic, reason], float(count))
        if math.isfinite(report.watermark):
            f.watermark.add_metric([], report.watermark)
        f.panes_closed.add_metric([], float(report.panes_closed))
        f.events.add_metric([], float(report.events))

        # monitor_model_metric under the cap: whole-model slices first, then the others.
        ordered = [
            (model.name, s)
            for whole in (True, False)
            for model in report.models.values()
            for s in model.slices
            if (s.dimension == "model") == whole
        ]
        room = self.max_series
        dropped = 0
        for name, s in ordered:
            for window, values in s.windows.items():
                for metric, value in values.items():
                    if math.isnan(value):
                        continue
                    if room <= 0:
                        dropped += 1
                        continue
                    room -= 1
                    f.model_metric.add_metric([name, window, metric, s.dimension, s.value], value)
                    method, _, feature = metric.partition(":")
                    if s.dimension == "model" and feature and method in _DRIFT_METHODS:
                        f.drift.add_metric([name, window, feature, method], value)
        f.series_dropped.add_metric([], float(dropped))
        if dropped:
            _log.warning(
                "series_dropped",
                "prometheus_series_dropped",
                family="monitor_model_metric",
                dropped=dropped,
                max_series=self.max_series,
            )


def _add_model(f: _Families, model: ModelReport) -> None:
    name = model.name
    counts = model.counts
    f.predictions.add_metric([name], float(counts.get("predictions", 0.0)))
    f.labels.add_metric([name], float(counts.get("labels", 0.0)))
    for key, outcome in _JOIN_OUTCOMES.items():
        f.join.add_metric([name, outcome], float(counts.get(key, 0.0)))
    f.late.add_metric([name], float(counts.get("late", 0.0)))
    f.pending_predictions.add_metric([name], float(counts.get("pending", 0.0)))
    f.pending_labels.add_metric([name], float(counts.get("early_labels_pending", 0.0)))
    for key, value in counts.items():
        if key.endswith(_DETECTIONS):
            f.detections.add_metric([name, key.removesuffix(_DETECTIONS)], float(value))
        elif key not in _MODEL_COUNTS_KNOWN:
            f.model_other.add_metric([name, key], float(value))

    buckets = model.label_delay_buckets or [0.0] * (len(LABEL_DELAY_BUCKETS) + 1)
    if len(buckets) == len(LABEL_DELAY_BUCKETS) + 1:
        bounds = [floatToGoString(b) for b in LABEL_DELAY_BUCKETS] + ["+Inf"]
        f.label_delay.add_metric(
            [name],
            [(le, float(v)) for le, v in zip(bounds, buckets, strict=True)],
            float(model.label_delay_sum),
        )
    else:
        _bad_histogram(name, buckets)

    for s in model.slices:
        _add_slice_counters(f, name, s)
    for alert in model.alerts:
        firing = 1.0 if alert.state == "firing" else 0.0
        f.alert_firing.add_metric([name, alert.rule, alert.severity], firing)
        for status in ("pending", "firing", "resolved"):
            count = float(alert.transitions.get(status, 0))
            f.alert_transitions.add_metric([name, alert.rule, status], count)


def _add_slice_counters(f: _Families, model: str, s: SliceReport) -> None:
    labels = [model, s.dimension, s.value]
    for key, raw in s.counters.items():
        value = float(raw)
        attr = _SLICE_FAMILIES.get(key)
        if attr is not None:
            getattr(f, attr).add_metric(labels, value)
        elif key in _BINARY_CELLS:
            f.confusion.add_metric([*labels, *_BINARY_CELLS[key]], value)
        elif key.startswith("confusion:") and key.count(":") >= 2:
            actual, _, predicted = key[len("confusion:"):].partition(":")
            f.confusion.add_metric([*labels, actual, predicted], value)
        else:
            f.slice_other.add_metric([*labels, key], value)


def _add_runtime(f: _Families, runtime: RuntimeStats) -> None:
    if runtime.heartbeat > 0:
        f.heartbeat.add_metric([], runtime.heartbeat)
    f.ready.add_metric([], 1.0 if runtime.ready else 0.0)
    f.input_up.add_metric([], 1.0 if runtime.input_up else 0.0)
    f.assigned.add_metric([], float(runtime.assigned_partitions))
    for (topic, partition), lag in sorted(runtime.lag.items()):
        f.lag.add_metric([topic, str(partition)], float(lag))
    if runtime.last_checkpoint is not None:
        f.checkpoint_last.add_metric([], runtime.last_checkpoint)
    f.checkpoints.add_metric([], float(runtime.checkpoints))
    for reason, n in sorted(runtime.checkpoint_failures.items()):
        f.checkpoint_failures.add_metric([reason], float(n))
    f.dead_letters.add_metric([], float(runtime.dead_letters))
    f.alerts.add_metric([], float(runtime.alerts))
    f.output_backlog.add_metric([], float(runtime.output_backlog))
    f.paused.add_metric([], 1.0 if runtime.paused else 0.0)
    f.paced.add_metric([], float(runtime.paced))


# --- The fast render: the exposition text of one snapshot, built once at update ---------
#
# prometheus_client builds a Sample per series and formats it, labels sorted and escaped,
# at every scrape: ~8 us a series. Here the text before each value (``name{labels} ``) is
# kept from tick to tick. The wide parts of the report (every slice's metrics per window,
# every slice's counters) are read into flat value arrays in a fixed order; their layout
# (family and prefix per position) is kept while the report's slices, windows and keys
# are the same, and a changed layout takes over the prefixes of the groups (a slice's
# window, a slice's counters) it still has. A tick then formats the values (``repr``;
# numpy picks the few that need Go's float syntax) and joins strings. Series go in the
# same order, with the same bytes, as prometheus_client's ``generate_latest`` of
# :meth:`MonitorCollector.collect`.


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line_prefix(sample: str, labels: Iterable[tuple[str, str]]) -> str:
    """``sample{k="v",...} ``: labels sorted by name and escaped, as prometheus_client does."""
    pairs = sorted(labels)
    if not pairs:
        return f"{sample} "
    inner = ",".join(f'{k}="{_escape_label_value(str(v))}"' for k, v in pairs)
    return f"{sample}{{{inner}}} "


def _go_floats(values: np.ndarray) -> list[str]:
    """``floatToGoString`` of each value: ``repr`` except for NaN, infinities and positive
    values from 1e6 (where Go writes an exponent and Python does not), which are rare."""
    out = list(map(repr, values.tolist()))
    plain = (values < 1e6) & (values > -math.inf)  # False for NaN too
    for i in np.flatnonzero(~plain).tolist():
        out[i] = floatToGoString(values[i])
    return out


class _FamilyText:
    """The fixed text of one family: headers in both formats and its series' prefixes."""

    __slots__ = ("_new", "_old", "index", "labels", "om_header", "sample", "text_header")

    def __init__(self, index: int, metric: Metric, labels: tuple[str, ...]) -> None:
        name, kind, doc = metric.name, metric.type, metric.documentation
        self.index = index
        self.labels = labels
        #: The name of its samples (histograms add their suffix per sample).
        self.sample = f"{name}_total" if kind == "counter" else name
        text_doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        self.text_header = f"# HELP {self.sample} {text_doc}\n# TYPE {self.sample} {kind}\n"
        om_doc = _escape_label_value(doc)
        unit = f"# UNIT {name} {metric.unit}\n" if metric.unit else ""
        self.om_header = f"# HELP {name} {om_doc}\n# TYPE {name} {kind}\n{unit}"
        # Prefixes by label values: those used by the render under way and the previous.
        self._old: dict[tuple[str, ...], str] = {}
        self._new: dict[tuple[str, ...], str] = {}

    def prefix(self, values: tuple[str, ...], suffix: str = "", extra: tuple[str, ...] = ()
               ) -> str:
        """The line prefix of the series with these label values (``extra`` are
        ``(name, value)`` pairs flattened, e.g. histograms' ``le``)."""
        key = (suffix, *values, *extra)
        found = self._new.get(key)
        if found is None:
            found = self._old.get(key)
            if found is None:
                pairs = [*zip(self.labels, values, strict=True),
                         *zip(extra[::2], extra[1::2], strict=True)]
                found = _line_prefix(self.sample + suffix, pairs)
            self._new[key] = found
        return found

    def rotate(self) -> None:
        """End of a render: forget the prefixes it did not use."""
        self._old, self._new = self._new, {}


class Exposition:
    """One snapshot's ``/metrics`` body, rendered once; every scrape of it shares the bytes.

    The text 0.0.4 and OpenMetrics bodies differ only in the family headers: each is joined
    from the shared sample blocks on first use, and its gzip compressed on first use (zlib
    releases the interpreter lock while it compresses).
    """

    def __init__(self, families: list[_FamilyText], blocks: list[bytes]) -> None:
        self._families = families
        self._blocks = blocks
        #: Renders the text 0.0.4 or OpenMetrics (without ``# EOF``) of other collectors
        #: (process, GC), appended after the monitor's families when a body is first
        #: joined; set before the first :meth:`body`, None for none.
        self.tail: Callable[[bool], bytes] | None = None
        self._bodies: dict[tuple[bool, bool], bytes] = {}
        self._lock = threading.Lock()

    def body(self, *, openmetrics: bool = False, gzipped: bool = False) -> bytes:
        """The exposition in text 0.0.4 or OpenMetrics 1.0.0, optionally gzip-compressed."""
        key = (openmetrics, gzipped)
        found = self._bodies.get(key)
        if found is not None:
            return found
        with self._lock:  # concurrent scrapes of a new snapshot build it once
            found = self._bodies.get(key)
            if found is None:
                if gzipped:
                    plain = self._bodies.get((openmetrics, False)) or self._join(openmetrics)
                    self._bodies[(openmetrics, False)] = plain
                    found = gzip.compress(plain, compresslevel=1, mtime=0)
                else:
                    found = self._join(openmetrics)
                self._bodies[key] = found
        return found

    def _join(self, openmetrics: bool) -> bytes:
        parts: list[bytes] = []
        for family, block in zip(self._families, self._blocks, strict=True):
            header = family.om_header if openmetrics else family.text_header
            parts.append(header.encode())
            parts.append(block)
        if self.tail is not None:
            try:
                parts.append(self.tail(openmetrics))
            except Exception as exc:  # the monitor's families are served all the same
                _log.error("render", "prometheus_render_failed", error=repr(exc), exc_info=True)
        if openmetrics:
            parts.append(b"# EOF\n")
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Layout:
    """The series of one part of the report in the order a render reads its values: the
    keys they were derived from (equal keys, equal series), then per value its family and
    line prefix."""

    keys: list[tuple[object, ...]]
    families: np.ndarray  # intp
    prefixes: np.ndarray  # object (str)


_NO_LAYOUT = _Layout([], np.empty(0, dtype=np.intp), np.empty(0, dtype=object))


@dataclass(frozen=True, slots=True)
class _MetricLayout:
    """The values of ``monitor_model_metric`` in the order a render reads them: one group
    per window of a slice (``keys``: model, dimension, slice, window, metric names).

    Most of these values are undefined (NaN, not exported) at any time, so a line prefix
    is built when its series is first exported (``built``), then kept.
    """

    keys: list[tuple[object, ...]]
    #: Group key -> its first position, for the next layout to take over its prefixes.
    starts: dict[tuple[object, ...], int]
    group_of: np.ndarray  # intp: position -> group
    prefixes: np.ndarray  # object: str once built, else None
    built: np.ndarray  # bool
    drift_at: np.ndarray  # intp: positions of drift signals (also monitor_drift series)
    drift_prefixes: np.ndarray  # object: their monitor_drift prefixes


_NO_METRICS = _MetricLayout([], {}, np.empty(0, dtype=np.intp), np.empty(0, dtype=object),
                            np.empty(0, dtype=bool), np.empty(0, dtype=np.intp),
                            np.empty(0, dtype=object))


class _Renderer:
    """Renders snapshots into :class:`Exposition` s, keeping line prefixes between renders.

    The two wide parts, ``monitor_model_metric`` (with ``monitor_drift``) and the per-slice
    counters, keep a :class:`_Layout`: while the report's slices, windows and keys stay the
    same (the steady state), a render only reads the values into an array. A changed part
    gets a new layout, built from the prefixes of the groups (a slice's window, a slice's
    counters) it already had. Not thread-safe: :class:`MonitorCollector` serialises calls.
    """

    def __init__(self) -> None:
        f = _Families()
        metrics = [(attr, m) for attr, m in vars(f).items() if isinstance(m, Metric)]
        self.f = {attr: _FamilyText(i, m, f.label_names(m)) for i, (attr, m) in enumerate(metrics)}
        self.order = list(self.f.values())
        self._metrics = _NO_METRICS
        self._counters = _NO_LAYOUT
        # Prefixes of the groups of the current layouts, by group key.
        self._drift_groups: dict[tuple[object, ...], list[tuple[int, str]]] = {}
        self._slice_groups: dict[tuple[object, ...], tuple[list[int], list[str]]] = {}

    def render(self, snapshot: _Snapshot, version: str, max_series: int) -> Exposition:
        """The exposition of ``snapshot``: the same text as ``generate_latest(collect())``."""
        fams: list[int] = []  # the narrow families, per series: family index, prefix, value
        prefixes: list[str] = []
        values: list[float] = []
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        f = self.f

        def add(family: _FamilyText, prefix: str, value: float) -> None:
            fams.append(family.index)
            prefixes.append(prefix)
            values.append(value)

        add(f["build_info"], f["build_info"].prefix((version,)), 1.0)
        report, runtime = snapshot.report, snapshot.runtime
        if report is not None:
            for model in report.models.values():
                self._model(model, add)
            for key, count in sorted(report.unnamed.items()):
                add(f["join"], f["join"].prefix(("", _JOIN_OUTCOMES[key])), count)
            parts.append(self._slice_counters(report))
            for (topic, reason), count in report.rejects.items():
                add(f["rejected"], f["rejected"].prefix((topic, reason)), count)
            if math.isfinite(report.watermark):
                add(f["watermark"], f["watermark"].prefix(()), report.watermark)
            add(f["panes_closed"], f["panes_closed"].prefix(()), report.panes_closed)
            add(f["events"], f["events"].prefix(()), report.events)
            dropped = self._model_metrics(report, max_series, parts)
            add(f["series_dropped"], f["series_dropped"].prefix(()), dropped)
        if runtime is not None:
            self._runtime(runtime, add)
        for family in self.order:
            family.rotate()
        parts.append((np.array(fams, dtype=np.intp), np.array(prefixes, dtype=object),
                      np.array(values, dtype=np.float64)))
        return self._assemble(parts)

    def _assemble(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                  ) -> Exposition:
        index = np.concatenate([p[0] for p in parts])
        order = np.argsort(index, kind="stable")  # by family, each in the order added
        lines = np.concatenate([p[1] for p in parts])[order].tolist()
        texts = _go_floats(np.concatenate([p[2] for p in parts])[order])
        n = len(lines)
        pieces: list[str] = [""] * (3 * n)
        pieces[0::3] = lines
        pieces[1::3] = texts
        pieces[2::3] = ["\n"] * n
        counts = np.bincount(index, minlength=len(self.order)).tolist()
        present: list[_FamilyText] = []
        blocks: list[bytes] = []
        start = 0
        for family, count in zip(self.order, counts, strict=True):
            if count:
                present.append(family)
                blocks.append("".join(pieces[3 * start:3 * (start + count)]).encode())
                start += count
        return Exposition(present, blocks)

    def _model(self, model: ModelReport, add: Callable[[_FamilyText, str, float], None]
               ) -> None:
        f = self.f
        name = model.name
        one = (name,)
        counts = model.counts
        add(f["predictions"], f["predictions"].prefix(one), counts.get("predictions", 0.0))
        add(f["labels"], f["labels"].prefix(one), counts.get("labels", 0.0))
        join = f["join"]
        for key, outcome in _JOIN_OUTCOMES.items():
            add(join, join.prefix((name, outcome)), counts.get(key, 0.0))
        add(f["late"], f["late"].prefix(one), counts.get("late", 0.0))
        add(f["pending_predictions"], f["pending_predictions"].prefix(one),
            counts.get("pending", 0.0))
        add(f["pending_labels"], f["pending_labels"].prefix(one),
            counts.get("early_labels_pending", 0.0))
        other, detections = f["model_other"], f["detections"]
        for key, value in counts.items():
            if key.endswith(_DETECTIONS):
                add(detections, detections.prefix((name, key.removesuffix(_DETECTIONS))), value)
            elif key not in _MODEL_COUNTS_KNOWN:
                add(other, other.prefix((name, key)), value)

        buckets = model.label_delay_buckets or [0.0] * (len(LABEL_DELAY_BUCKETS) + 1)
        if len(buckets) == len(LABEL_DELAY_BUCKETS) + 1:
            delay = f["label_delay"]
            for le, value in zip(_BUCKET_BOUNDS, buckets, strict=True):
                add(delay, delay.prefix(one, "_bucket", ("le", le)), value)
            if float(_BUCKET_BOUNDS[0]) >= 0:  # as HistogramMetricFamily.add_metric
                add(delay, delay.prefix(one, "_count"), buckets[-1])
                add(delay, delay.prefix(one, "_sum"), model.label_delay_sum)
        else:
            _bad_histogram(name, buckets)

        firing, transitions = f["alert_firing"], f["alert_transitions"]
        for alert in model.alerts:
            add(firing, firing.prefix((name, alert.rule, alert.severity)),
                1.0 if alert.state == "firing" else 0.0)
            for status in ("pending", "firing", "resolved"):
                add(transitions, transitions.prefix((name, alert.rule, status)),
                    alert.transitions.get(status, 0))

    def _slice_counters(self, report: Report) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every slice's additive counters: families, prefixes and values."""
        keys: list[tuple[object, ...]] = []
        read: list[float] = []
        for model in report.models.values():
            name = model.name
            for s in model.slices:
                keys.append((name, s.dimension, s.value, tuple(s.counters)))
                read.extend(s.counters.values())
        layout = self._counters
        if layout.keys != keys:
            layout = self._counters = self._counter_layout(report, keys)
        return layout.families, layout.prefixes, _floats(read)

    def _counter_layout(self, report: Report, keys: list[tuple[object, ...]]) -> _Layout:
        groups = {}
        fams: list[int] = []
        prefixes: list[str] = []
        slices = (s for model in report.models.values() for s in model.slices)
        for key, s in zip(keys, slices, strict=True):
            group = self._slice_groups.get(key) or self._slice_group(str(key[0]), s)
            groups[key] = group
            fams.extend(group[0])
            prefixes.extend(group[1])
        self._slice_groups = groups
        return _Layout(keys, np.array(fams, dtype=np.intp), _objects(prefixes))

    def _slice_group(self, model: str, s: SliceReport) -> tuple[list[int], list[str]]:
        """Family and prefix of each of a slice's counters, in its counters' order."""
        f = self.f
        labels = (model, s.dimension, s.value)
        fams: list[int] = []
        prefixes: list[str] = []
        for key in s.counters:
            attr = _SLICE_FAMILIES.get(key)
            if attr is not None:
                family, prefix = f[attr], f[attr].prefix(labels)
            elif key in _BINARY_CELLS:
                family = f["confusion"]
                prefix = family.prefix((*labels, *_BINARY_CELLS[key]))
            elif key.startswith("confusion:") and key.count(":") >= 2:
                actual, _, predicted = key[len("confusion:"):].partition(":")
                family = f["confusion"]
                prefix = family.prefix((*labels, actual, predicted))
            else:
                family = f["slice_other"]
                prefix = family.prefix((*labels, key))
            fams.append(family.index)
            prefixes.append(prefix)
        return fams, prefixes

    def _model_metrics(self, report: Report, max_series: int,
                       parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> int:
        """Adds ``monitor_model_metric`` and ``monitor_drift`` under the cap to ``parts``;
        the number of series dropped by it."""
        ordered = [
            (model.name, s)
            for whole in (True, False)
            for model in report.models.values()
            for s in model.slices
            if (s.dimension == "model") == whole
        ]
        keys: list[tuple[object, ...]] = []
        read: list[float] = []
        for name, s in ordered:
            for window, by_metric in s.windows.items():
                keys.append((name, s.dimension, s.value, window, tuple(by_metric)))
                read.extend(by_metric.values())
        layout = self._metrics
        if layout.keys != keys:
            layout = self._metrics = self._metric_layout(ordered, keys)
        found = _floats(read)
        keep = ~np.isnan(found)  # undefined metrics are absent
        dropped = max(0, int(np.count_nonzero(keep)) - max_series)
        if dropped:
            keep &= np.cumsum(keep) <= max_series
            _log.warning(
                "series_dropped",
                "prometheus_series_dropped",
                family="monitor_model_metric",
                dropped=dropped,
                max_series=max_series,
            )
        kept_at = np.flatnonzero(keep)
        missing = kept_at[~layout.built[kept_at]]
        if len(missing):
            self._build_prefixes(layout, missing)
        parts.append((np.full(len(kept_at), self.f["model_metric"].index, dtype=np.intp),
                      layout.prefixes[kept_at], found[kept_at]))
        drift = keep[layout.drift_at]
        parts.append((np.full(int(np.count_nonzero(drift)), self.f["drift"].index,
                              dtype=np.intp),
                      layout.drift_prefixes[drift], found[layout.drift_at[drift]]))
        return dropped

    def _build_prefixes(self, layout: _MetricLayout, positions: np.ndarray) -> None:
        mm = self.f["model_metric"]
        keys, starts = layout.keys, layout.starts
        for at in positions.tolist():
            key = keys[int(layout.group_of[at])]
            model, dimension, value, window, metrics = key
            metric = metrics[at - starts[key]]  # type: ignore[index]
            layout.prefixes[at] = mm.prefix(
                (str(model), str(window), str(metric), str(dimension), str(value)))
        layout.built[positions] = True

    def _metric_layout(self, ordered: list[tuple[str, SliceReport]],
                       keys: list[tuple[object, ...]]) -> _MetricLayout:
        """The layout of ``keys``, taking over the prefixes the previous one had built."""
        old = self._metrics
        starts: dict[tuple[object, ...], int] = {}
        prefixes: list[np.ndarray] = []
        built: list[np.ndarray] = []
        sizes: list[int] = []
        drift_groups: dict[tuple[object, ...], list[tuple[int, str]]] = {}
        drift_at: list[int] = []
        drift_prefixes: list[str] = []
        position = 0
        windows = ((name, s, w, m) for name, s in ordered for w, m in s.windows.items())
        for key, (name, s, window, by_metric) in zip(keys, windows, strict=True):
            size = len(by_metric)
            before = old.starts.get(key)
            if before is not None:
                prefixes.append(old.prefixes[before:before + size])
                built.append(old.built[before:before + size])
            else:
                prefixes.append(np.full(size, None, dtype=object))
                built.append(np.zeros(size, dtype=bool))
            if key not in starts:
                starts[key] = position
            if s.dimension == "model":
                drift = self._drift_groups.get(key)
                if drift is None:
                    drift = self._drift_group(name, window, by_metric)
                drift_groups[key] = drift
                for at, prefix in drift:
                    drift_at.append(position + at)
                    drift_prefixes.append(prefix)
            sizes.append(size)
            position += size
        self._drift_groups = drift_groups
        return _MetricLayout(
            keys, starts,
            np.repeat(np.arange(len(keys), dtype=np.intp), sizes),
            np.concatenate(prefixes) if prefixes else np.empty(0, dtype=object),
            np.concatenate(built) if built else np.empty(0, dtype=bool),
            np.array(drift_at, dtype=np.intp), _objects(drift_prefixes))

    def _drift_group(self, model: str, window: str, by_metric: Mapping[str, float]
                     ) -> list[tuple[int, str]]:
        """The position and ``monitor_drift`` prefix of the metrics of a whole-model
        slice's window that are drift signals."""
        drift = self.f["drift"]
        found: list[tuple[int, str]] = []
        for i, metric in enumerate(by_metric):
            method, _, feature = metric.partition(":")
            if feature and method in _DRIFT_METHODS:
                found.append((i, drift.prefix((model, window, feature, method))))
        return found

    def _runtime(self, runtime: RuntimeStats,
                 add: Callable[[_FamilyText, str, float], None]) -> None:
        f = self.f
        if runtime.heartbeat > 0:
            add(f["heartbeat"], f["heartbeat"].prefix(()), runtime.heartbeat)
        add(f["ready"], f["ready"].prefix(()), 1.0 if runtime.ready else 0.0)
        add(f["input_up"], f["input_up"].prefix(()), 1.0 if runtime.input_up else 0.0)
        add(f["assigned"], f["assigned"].prefix(()), runtime.assigned_partitions)
        lag = f["lag"]
        for (topic, partition), behind in sorted(runtime.lag.items()):
            add(lag, lag.prefix((topic, str(partition))), behind)
        if runtime.last_checkpoint is not None:
            add(f["checkpoint_last"], f["checkpoint_last"].prefix(()), runtime.last_checkpoint)
        add(f["checkpoints"], f["checkpoints"].prefix(()), runtime.checkpoints)
        failures = f["checkpoint_failures"]
        for reason, n in sorted(runtime.checkpoint_failures.items()):
            add(failures, failures.prefix((reason,)), n)
        add(f["dead_letters"], f["dead_letters"].prefix(()), runtime.dead_letters)
        add(f["alerts"], f["alerts"].prefix(()), runtime.alerts)
        add(f["output_backlog"], f["output_backlog"].prefix(()), runtime.output_backlog)
        add(f["paused"], f["paused"].prefix(()), 1.0 if runtime.paused else 0.0)
        add(f["paced"], f["paced"].prefix(()), runtime.paced)


def _floats(read: list[float]) -> np.ndarray:
    """The values read, as a float64 array."""
    return np.fromiter(read, dtype=np.float64, count=len(read))


def _objects(items: list[str]) -> np.ndarray:
    """A 1-d object array of ``items`` (strings; never split into characters)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def render(registry: CollectorRegistry) -> bytes:
    """The registry's exposition in the Prometheus text format (for ``metrics.prom``)."""
    return generate_latest(registry)


def _bad_histogram(model: str, buckets: list[float]) -> None:
    """Log (rate-limited) a label-delay histogram of the wrong shape, left unexported."""
    _log.error(
        ("label_delay_buckets", model),
        "prometheus_bad_histogram",
        model=model,
        buckets=len(buckets),
        expected=len(LABEL_DELAY_BUCKETS) + 1,
    )
