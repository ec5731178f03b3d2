"""The Prometheus metric bundle: every metric the daemon exports, built in one place.

The core never imports ``prometheus_client``. Once per tick the run loop hands the
latest :class:`~monitor.core.report.Report` and a :class:`RuntimeStats` to
:meth:`MonitorCollector.update`, which swaps them in with one attribute assignment.
A scrape (on an HTTP server thread) reads that immutable snapshot and builds the metric
families from it, so scraping never touches the core's state and never blocks the loop,
and label sets that are no longer in the report (a revoked model, a folded segment)
simply stop being exported.

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
``monitor_loop_heartbeat_timestamp_seconds``            gauge
``monitor_assigned_partitions``                         gauge
``monitor_ready``                                       gauge
``monitor_dead_letters_total``                          counter
``monitor_output_backlog``                              gauge
``monitor_consumption_paused``                          gauge
``monitor_alerts_sent_total``                           counter
``monitor_build_info``                                  gauge      version
======================================================  =========  ====================

``outcome`` is one of ``matched``, ``expired``, ``evicted``, ``orphan_label``,
``duplicate_label``, ``duplicate_prediction``, ``early_label_evicted``. The runtime
families (consumer lag to alerts) are exported only when the loop passes
:class:`RuntimeStats` (not in ``replay``).

Slices: ``dimension`` is ``model`` (``slice=""``, the whole model), ``version`` (``slice`` is
the model version) or ``segment:<key>`` (``slice`` is the segment value); the core folds
values past its caps into ``__other__``. Every slice family repeats the same events once
per dimension, so **always filter on** ``dimension``.

``monitor_model_metric`` values are computed by each replica over the partitions it
owns, so with several replicas they are partial. Additive counters are the per-slice
cumulative sums of the core (window ``all``), one family per kind so that units never
mix; they sum across replicas, so cluster-wide metrics come from them. Recall of the
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

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from monitor import __version__
from monitor.config import DRIFT_SIGNALS
from monitor.core.report import LABEL_DELAY_BUCKETS, ModelReport, Report, SliceReport
from monitor.logs import RateLimitedLogger

__all__ = ["DEFAULT_MAX_SERIES", "MonitorCollector", "RuntimeStats", "render"]

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
# Binary confusion cells -> (actual, predicted)
_BINARY_CELLS: dict[str, tuple[str, str]] = {
    "tp": ("positive", "positive"),
    "fp": ("negative", "positive"),
    "tn": ("negative", "negative"),
    "fn": ("positive", "negative"),
}
_SLICE = ("model", "dimension", "slice")
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


@dataclass(frozen=True, slots=True)
class _Snapshot:
    report: Report | None
    runtime: RuntimeStats | None


class _Families:
    """Every family of one scrape, empty until filled."""

    def __init__(self) -> None:
        def gauge(
            name: str, doc: str, labels: tuple[str, ...] = (), unit: str = ""
        ) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"monitor_{name}", doc, labels=labels, unit=unit)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(f"monitor_{name}", doc, labels=labels)

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
            "join", "Outcomes of the prediction-label join.", ("model", "outcome")
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
        self.heartbeat = gauge(
            "loop_heartbeat_timestamp",
            "Unix time of the run loop's last iteration.",
            unit="seconds",
        )
        self.assigned = gauge("assigned_partitions", "Input partitions assigned to this replica.")
        self.ready = gauge("ready", "1 when partitions are assigned, state restored and caught up.")
        self.dead_letters = counter(
            "dead_letters", "Rejected messages copied to the dead-letter topic."
        )
        self.output_backlog = gauge(
            "output_backlog", "Alert and dead-letter records not yet delivered to Kafka."
        )
        self.paused = gauge(
            "consumption_paused", "1 while input is paused because the outputs cannot deliver."
        )
        self.alerts = counter("alerts_sent", "Alert events sent to the alert topic.")
        self.build_info = gauge(
            "build_info", "Build of the monitor; the value is always 1.", ("version",)
        )

    def all(self) -> list[Metric]:
        return list(vars(self).values())


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
    ) -> None:
        if max_series < 0:
            raise ValueError(f"Invalid 'max_series': {max_series!r}; must be >= 0")
        self.max_series = max_series
        self.version = version
        self._snapshot = _Snapshot(None, None)
        registry.register(self)

    def update(self, report: Report, runtime: RuntimeStats | None = None) -> None:
        """Publish a new report (and runtime stats; ``None`` omits the runtime families).

        The caller hands ``report`` over: it must not be mutated afterwards. The swap is a
        single attribute assignment, so a concurrent scrape sees either the old or the new
        snapshot, never a mix.
        """
        self._snapshot = _Snapshot(report, runtime)

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
        if key not in _MODEL_COUNTS_KNOWN:
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
        _log.error(
            ("label_delay_buckets", name),
            "prometheus_bad_histogram",
            model=name,
            buckets=len(buckets),
            expected=len(LABEL_DELAY_BUCKETS) + 1,
        )

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
    f.assigned.add_metric([], float(runtime.assigned_partitions))
    for (topic, partition), lag in sorted(runtime.lag.items()):
        f.lag.add_metric([topic, str(partition)], float(lag))
    if runtime.last_checkpoint is not None:
        f.checkpoint_last.add_metric([], runtime.last_checkpoint)
    f.checkpoints.add_metric([], float(runtime.checkpoints))
    f.dead_letters.add_metric([], float(runtime.dead_letters))
    f.alerts.add_metric([], float(runtime.alerts))
    f.output_backlog.add_metric([], float(runtime.output_backlog))
    f.paused.add_metric([], 1.0 if runtime.paused else 0.0)


def render(registry: CollectorRegistry) -> bytes:
    """The registry's exposition in the Prometheus text format (for ``metrics.prom``)."""
    return generate_latest(registry)
