"""The Prometheus metric bundle: values from a hand-made Report, promtool-clean exposition."""

from __future__ import annotations

import math
import shutil
import subprocess
import threading

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries

from monitor import __version__
from monitor.core.report import (
    LABEL_DELAY_BUCKETS,
    AlertReport,
    ModelReport,
    Report,
    SliceReport,
)
from monitor.outputs.prometheus import MonitorCollector, RuntimeStats, render

NAN = float("nan")


def make_report() -> Report:
    """Two models (binary, regression), version and segment slices, NaNs, rejects."""
    delay = [0.0, 1.0, 2.0, 4.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 6.0, 7.0]
    fraud = ModelReport(
        name="fraud",
        task="binary",
        slices=[
            SliceReport(
                "model",
                "",
                windows={
                    "all": {"f1": 0.8, "accuracy": 0.9, "roc_auc": NAN, "psi:amount": 0.02},
                    "1h": {"f1": 0.75, "accuracy": NAN},
                },
                counters={
                    "predictions": 100, "joined": 40, "tp": 10, "fp": 3, "tn": 25, "fn": 2,
                    "scored_n": 38, "log_loss_sum": 9.5, "brier_sum": 3.25, "score_sum": 21.0,
                },
            ),
            SliceReport(
                "version",
                "v2",
                windows={"all": {"f1": 0.7}},
                counters={"predictions": 60, "joined": 20, "tp": 5, "fp": 2, "tn": 12, "fn": 1},
            ),
            SliceReport(
                "segment:country",
                'D"E\\x\nnew',  # quotes, backslashes and newlines must be escaped
                windows={"all": {"f1": 0.6}},
                counters={"predictions": 30, "joined": 10, "tp": 2, "fp": 1, "tn": 6, "fn": 1},
            ),
        ],
        counts={
            "predictions": 100, "labels": 45, "matched": 40, "expired": 3, "orphan_labels": 2,
            "duplicate_labels": 1, "late": 4, "pending": 57, "early_labels_pending": 3,
            "brand_new_count": 9, "adwin_detections": 3, "ddm_detections": 0,
        },
        label_delay_buckets=delay,
        label_delay_sum=12345.5,
    )
    prices = ModelReport(
        name="prices",
        task="regression",
        slices=[
            SliceReport(
                "model",
                "",
                windows={"all": {"mae": 2.5, "rmse": 3.0, "mape": math.inf, "r2": NAN}},
                counters={
                    "predictions": 8, "joined": 4, "abs_error_sum": 10.0,
                    "squared_error_sum": 36.0, "error_sum": -2.0, "label_sum": 100.0,
                    "ape_sum": 0.4, "pred_sum": 98.0,
                },
            )
        ],
        counts={"predictions": 8, "labels": 4, "matched": 4},
    )
    return Report(
        models={"fraud": fraud, "prices": prices},
        rejects={("predictions", "not_json"): 3, ("labels", "missing_field"): 1},
        watermark=1_700_000_000.0,
        panes_closed=12,
        events=153,
    )


def runtime() -> RuntimeStats:
    return RuntimeStats(
        heartbeat=1_700_000_100.0,
        ready=True,
        assigned_partitions=4,
        lag={("predictions", 0): 5, ("labels", 1): 0},
        last_checkpoint=1_700_000_050.0,
        checkpoints=7,
        dead_letters=4,
        alerts=2,
        checkpoint_failures={"no_space": 3, "read_only": 1},
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def collector(registry: CollectorRegistry) -> MonitorCollector:
    c = MonitorCollector(registry)
    c.update(make_report(), runtime())
    return c


def mm(registry: CollectorRegistry, **labels: str) -> float | None:
    base = {"model": "fraud", "window": "all", "dimension": "model", "slice": ""}
    return registry.get_sample_value("monitor_model_metric", {**base, **labels})


def test_model_metric_exported_per_model_window_and_slice(registry, collector):
    assert mm(registry, metric="f1") == 0.8
    assert mm(registry, metric="f1", window="1h") == 0.75
    assert mm(registry, metric="f1", dimension="version", slice="v2") == 0.7
    assert mm(registry, metric="mae", model="prices") == 2.5
    assert mm(registry, metric="mape", model="prices") == math.inf


def test_nan_metric_is_absent_not_nan(registry, collector):
    assert mm(registry, metric="roc_auc") is None
    assert mm(registry, metric="accuracy", window="1h") is None
    assert mm(registry, metric="r2", model="prices") is None
    assert b"NaN" not in render(registry)


def test_binary_confusion_cells_are_actual_predicted_positive_negative(registry, collector):
    def cell(actual, predicted, dimension="model", slice_=""):
        return registry.get_sample_value(
            "monitor_confusion_total",
            {"model": "fraud", "dimension": dimension, "slice": slice_,
             "actual": actual, "predicted": predicted},
        )

    assert cell("positive", "positive") == 10
    assert cell("negative", "positive") == 3
    assert cell("negative", "negative") == 25
    assert cell("positive", "negative") == 2
    assert cell("positive", "positive", "version", "v2") == 5
    labels = {"model": "fraud", "dimension": "model", "slice": ""}
    assert registry.get_sample_value("monitor_slice_predictions_total", labels) == 100
    assert registry.get_sample_value("monitor_slice_joined_total", labels) == 40


def test_multiclass_confusion_keeps_class_names(registry):
    collector = MonitorCollector(registry)
    intent = ModelReport(
        "intent", "multiclass",
        slices=[
            SliceReport("model", "", counters={"confusion:cat:dog": 3, "confusion:dog:dog": 5})
        ],
    )
    collector.update(Report(models={"intent": intent}))
    base = {"model": "intent", "dimension": "model", "slice": ""}
    assert registry.get_sample_value(
        "monitor_confusion_total", {**base, "actual": "cat", "predicted": "dog"}) == 3
    assert registry.get_sample_value(
        "monitor_confusion_total", {**base, "actual": "dog", "predicted": "dog"}) == 5


def test_regression_sums_and_unknown_counters_are_exported(registry, collector):
    labels = {"model": "prices", "dimension": "model", "slice": ""}
    get = registry.get_sample_value
    assert get("monitor_regression_absolute_error_total", labels) == 10.0
    assert get("monitor_regression_squared_error_total", labels) == 36.0
    assert get("monitor_regression_signed_error", labels) == -2.0
    assert get("monitor_regression_absolute_percentage_error_total", labels) == 0.4
    assert get("monitor_slice_accumulator", {**labels, "name": "label_sum"}) == 100.0
    assert get("monitor_slice_accumulator", {**labels, "name": "pred_sum"}) == 98.0
    assert get("monitor_model_accumulator", {"model": "fraud", "name": "brand_new_count"}) == 9


def test_binary_score_sums_have_their_own_counters(registry, collector):
    labels = {"model": "fraud", "dimension": "model", "slice": ""}
    get = registry.get_sample_value
    assert get("monitor_slice_scored_total", labels) == 38
    assert get("monitor_log_loss_total", labels) == 9.5
    assert get("monitor_brier_score_total", labels) == 3.25
    assert get("monitor_score_total", labels) == 21.0
    assert get("monitor_slice_accumulator", {**labels, "name": "scored_n"}) is None


def test_model_counts_and_every_join_outcome(registry, collector):
    get = registry.get_sample_value
    assert get("monitor_predictions_received_total", {"model": "fraud"}) == 100
    assert get("monitor_labels_received_total", {"model": "fraud"}) == 45
    assert get("monitor_late_events_total", {"model": "fraud"}) == 4
    assert get("monitor_pending_predictions", {"model": "fraud"}) == 57
    assert get("monitor_pending_labels", {"model": "fraud"}) == 3
    expected = {
        "matched": 40, "expired": 3, "evicted": 0, "orphan_label": 2, "duplicate_label": 1,
        "duplicate_prediction": 0, "early_label_evicted": 0,
    }
    for outcome, value in expected.items():
        assert get("monitor_join_total", {"model": "fraud", "outcome": outcome}) == value
    assert get("monitor_join_total", {"model": "prices", "outcome": "matched"}) == 4


def test_label_delay_histogram(registry, collector):
    get = registry.get_sample_value
    assert get("monitor_label_delay_seconds_bucket", {"model": "fraud", "le": "1.0"}) == 0
    assert get("monitor_label_delay_seconds_bucket", {"model": "fraud", "le": "60.0"}) == 4
    assert get("monitor_label_delay_seconds_bucket", {"model": "fraud", "le": "+Inf"}) == 7
    assert get("monitor_label_delay_seconds_count", {"model": "fraud"}) == 7
    assert get("monitor_label_delay_seconds_sum", {"model": "fraud"}) == 12345.5
    # A model without delays yet still has an (empty) histogram.
    assert get("monitor_label_delay_seconds_count", {"model": "prices"}) == 0
    bounds = [
        s.labels["le"] for m in registry.collect() if m.name == "monitor_label_delay_seconds"
        for s in m.samples if s.name.endswith("_bucket") and s.labels["model"] == "fraud"
    ]
    assert len(bounds) == len(LABEL_DELAY_BUCKETS) + 1


def test_rejects_and_report_level_values(registry, collector):
    get = registry.get_sample_value
    assert get("monitor_rejected_total", {"topic": "predictions", "reason": "not_json"}) == 3
    assert get("monitor_rejected_total", {"topic": "labels", "reason": "missing_field"}) == 1
    assert get("monitor_watermark_timestamp_seconds") == 1_700_000_000.0
    assert get("monitor_panes_closed_total") == 12
    assert get("monitor_events_processed_total") == 153
    assert get("monitor_series_dropped") == 0
    assert get("monitor_build_info", {"version": __version__}) == 1


def test_runtime_stats_exported(registry, collector):
    get = registry.get_sample_value
    assert get("monitor_consumer_lag", {"topic": "predictions", "partition": "0"}) == 5
    assert get("monitor_consumer_lag", {"topic": "labels", "partition": "1"}) == 0
    assert get("monitor_checkpoint_last_timestamp_seconds") == 1_700_000_050.0
    assert get("monitor_checkpoints_total") == 7
    assert get("monitor_checkpoint_failures_total", {"reason": "no_space"}) == 3
    assert get("monitor_checkpoint_failures_total", {"reason": "read_only"}) == 1
    assert get("monitor_loop_heartbeat_timestamp_seconds") == 1_700_000_100.0
    assert get("monitor_assigned_partitions") == 4
    assert get("monitor_ready") == 1
    assert get("monitor_dead_letters_total") == 4
    assert get("monitor_alerts_sent_total") == 2


def test_without_runtime_stats_runtime_families_are_absent(registry):
    collector = MonitorCollector(registry)
    collector.update(make_report())
    names = {m.name for m in registry.collect()}
    assert "monitor_events_processed" in names
    assert not names & {"monitor_ready", "monitor_consumer_lag", "monitor_checkpoints"}


def test_before_first_update_only_build_info(registry):
    MonitorCollector(registry, version="9.9.9")
    assert [m.name for m in registry.collect()] == ["monitor_build_info"]
    assert registry.get_sample_value("monitor_build_info", {"version": "9.9.9"}) == 1


def test_unwatermarked_report_has_no_watermark_series(registry):
    MonitorCollector(registry).update(Report())
    assert registry.get_sample_value("monitor_watermark_timestamp_seconds") is None
    assert registry.get_sample_value("monitor_events_processed_total") == 0


def test_slice_gone_from_report_is_no_longer_exported(registry, collector):
    report = make_report()
    report.models["fraud"].slices.pop(1)  # version v2 folded away
    collector.update(report)
    assert mm(registry, metric="f1", dimension="version", slice="v2") is None
    assert mm(registry, metric="f1") == 0.8


def _promtool(exposition: bytes) -> subprocess.CompletedProcess[bytes]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed (./dev test installs it)"
    return subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )


def test_exposition_passes_promtool_check_metrics(registry, collector):
    result = _promtool(render(registry))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


def test_every_family_passes_promtool_check_metrics(registry):
    """All families at once, including the fall-back ones, in one exposition."""
    collector = MonitorCollector(registry)
    report = make_report()
    report.models["intent"] = ModelReport(
        "intent", "multiclass", slices=[SliceReport("model", "", counters={"confusion:a:b": 1})],
        alerts=[AlertReport("acc-low", "warning", "threshold", "accuracy@1h", "firing",
                            transitions={"pending": 1, "firing": 1})],
    )
    collector.update(report, runtime())
    text = render(registry)
    result = _promtool(text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""
    described = {m.name for m in collector.describe()}
    exported = {m.name for m in registry.collect()}
    assert exported == described  # every family shows up in this report


def test_openmetrics_exposition_parses(registry, collector):
    text = generate_openmetrics(registry).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["monitor_confusion"].type == "counter"
    assert families["monitor_label_delay_seconds"].unit == "seconds"


def test_registering_twice_in_one_registry_is_refused(registry, collector):
    with pytest.raises(DuplicateTimeseries):
        MonitorCollector(registry)


def test_restricted_registry_selects_our_families(registry, collector):
    restricted = registry.restricted_registry(["monitor_ready"])
    assert [m.name for m in restricted.collect()] == ["monitor_ready"]


def test_series_cap_keeps_whole_model_slices_first_and_counts_the_rest(registry):
    collector = MonitorCollector(registry, max_series=4)
    collector.update(make_report())
    # Non-NaN values: fraud whole-model 4 (f1, accuracy, psi:amount @all, f1 @1h), prices 3
    # (mae, rmse, mape), fraud version 1, fraud segment 1 = 9; 4 kept, 5 dropped.
    samples = [
        s for m in registry.collect() if m.name == "monitor_model_metric" for s in m.samples
    ]
    assert len(samples) == 4
    assert all(s.labels["dimension"] == "model" for s in samples)
    assert mm(registry, metric="f1") == 0.8  # whole-model slices go first
    assert registry.get_sample_value("monitor_series_dropped") == 5
    # Other families are not capped.
    labels = {"model": "fraud", "dimension": "version", "slice": "v2"}
    assert registry.get_sample_value("monitor_slice_predictions_total", labels) == 60
    result = _promtool(render(registry))
    assert result.returncode == 0, result.stdout + result.stderr


def test_series_cap_zero_drops_all_model_metrics(registry):
    collector = MonitorCollector(registry, max_series=0)
    collector.update(make_report())
    assert registry.get_sample_value("monitor_series_dropped") == 9
    assert mm(registry, metric="f1") is None
    assert registry.get_sample_value("monitor_drift", {"model": "fraud", "window": "all",
                                      "feature": "amount", "method": "psi"}) is None


def test_invalid_max_series_is_refused(registry):
    with pytest.raises(ValueError, match="max_series"):
        MonitorCollector(registry, max_series=-1)


def test_mismatched_histogram_is_skipped_not_fatal(registry):
    collector = MonitorCollector(registry)
    collector.update(Report(models={"m": ModelReport("m", "binary", label_delay_buckets=[1.0])}))
    assert registry.get_sample_value("monitor_label_delay_seconds_count", {"model": "m"}) is None
    assert registry.get_sample_value("monitor_predictions_received_total", {"model": "m"}) == 0


def test_scrape_during_updates_sees_one_report_at_a_time(registry):
    """Each report carries its own number everywhere; a scrape must never mix two."""
    collector = MonitorCollector(registry)

    def report(n: int) -> Report:
        s = SliceReport("model", "", windows={"all": {"f1": float(n)}}, counters={"joined": n})
        model = ModelReport("m", "binary", slices=[s], counts={"predictions": n})
        return Report(models={"m": model}, events=n)

    collector.update(report(0))
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            collector.update(report(n))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            values = {
                s.value for m in collector.collect() if m.name != "monitor_build_info"
                for s in m.samples
                if s.name in (
                    "monitor_model_metric", "monitor_slice_joined_total",
                    "monitor_predictions_received_total", "monitor_events_processed_total",
                )
            }
            assert len(values) == 1, values
    finally:
        stop.set()
        thread.join()


def test_alert_rule_states_are_exported(registry, collector):
    report = make_report()
    report.models["fraud"].alerts = [
        AlertReport("f1-low", "critical", "threshold", "f1@1h", "firing",
                    transitions={"pending": 2, "firing": 2, "resolved": 1}),
        AlertReport("silent", "warning", "absence", "prediction_silence_seconds", "pending",
                    transitions={"pending": 1}),
    ]
    collector.update(report)
    get = registry.get_sample_value
    labels = {"model": "fraud", "rule": "f1-low"}
    assert get("monitor_alert_firing", {**labels, "severity": "critical"}) == 1.0
    assert get("monitor_alert_firing", {"model": "fraud", "rule": "silent",
                                        "severity": "warning"}) == 0.0
    assert get("monitor_alert_transitions_total", {**labels, "status": "resolved"}) == 1.0
    assert get("monitor_alert_transitions_total", {**labels, "status": "firing"}) == 2.0
    assert get("monitor_alert_transitions_total", {"model": "fraud", "rule": "silent",
                                                   "status": "firing"}) == 0.0


def test_detector_detections_are_a_counter(registry, collector):
    """Detections per detector are monitor_detector_detections_total (a counter that
    increase() reads), not a gauge among the other accumulators."""
    get = registry.get_sample_value
    assert get("monitor_detector_detections_total", {"model": "fraud", "detector": "adwin"}) == 3
    assert get("monitor_detector_detections_total", {"model": "fraud", "detector": "ddm"}) == 0
    assert get("monitor_model_accumulator", {"model": "fraud", "name": "adwin_detections"}) is None
    text = render(registry).decode()
    assert "# TYPE monitor_detector_detections_total counter" in text


def _families(body: bytes) -> set[str]:
    return {line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE")}


def test_process_and_gc_collectors_with_the_fast_render(registry):
    """With process=True the served bytes hold prometheus_client's default process, GC
    and platform families after the monitor's, in both formats, promtool-clean, the same
    families as a render of the registry; they are read again on each update."""
    import gc

    collector = MonitorCollector(registry, process=True)
    collector.update(make_report(), runtime())
    exposition = collector.exposition()
    assert exposition is not None
    text = exposition.body()
    families = _families(text)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_start_time_seconds", "process_open_fds",
                 "python_gc_collections_total", "python_gc_objects_collected_total",
                 "python_info"):
        assert name in families, name
    assert families == _families(render(registry))
    assert text.decode().index("monitor_build_info") < text.decode().index("process_cpu")
    result = _promtool(text)
    assert result.returncode == 0, result.stdout + result.stderr
    om = exposition.body(openmetrics=True).decode()
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1
    assert "python_gc_collections_total" in {f.name + "_total" for f in
                                             text_string_to_metric_families(om)}

    def collections(body: bytes) -> float:
        line = next(ln for ln in body.decode().splitlines()
                    if ln.startswith('python_gc_collections_total{generation="2"}'))
        return float(line.rsplit(" ", 1)[1])

    before = collections(text)
    gc.collect()
    collector.update(make_report(), runtime())
    after = collector.exposition()
    assert after is not None and collections(after.body()) == before + 1


def test_without_process_no_process_series(registry, collector):
    assert not {f for f in _families(render(registry)) if not f.startswith("monitor_")}
