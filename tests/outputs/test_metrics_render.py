"""The pre-rendered exposition against prometheus_client's own, and how /metrics serves it.

The collector renders each published snapshot once (``MonitorCollector.update``); scrapes
serve those bytes. Its text must be what prometheus_client's ``generate_latest`` makes of
the same collector: same families, samples, labels and values, in both formats, whatever
the report holds (NaN and absent values, infinities, large counters, label values that
need escaping) and however it changes from tick to tick (the render keeps line prefixes
between ticks and must notice every change of the series set).
"""

from __future__ import annotations

import gzip
import math
import random
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from monitor.config import DRIFT_SIGNALS
from monitor.core.report import (
    LABEL_DELAY_BUCKETS,
    AlertReport,
    ModelReport,
    Report,
    SliceReport,
)
from monitor.http import HttpServer
from monitor.outputs.prometheus import MonitorCollector, RuntimeStats

NAN = float("nan")
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
#: What Prometheus sends (it prefers OpenMetrics, and compresses).
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.5,"
                     "application/openmetrics-text;version=0.0.1;q=0.4,"
                     "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
#: Label values that need escaping, or are otherwise awkward.
AWKWARD = ['D"E\\x\nnew', "back\\slash", 'quo"te', "new\nline", "", "ünïcødé ✓", "a,b=c}",
           "__other__", "\\n", '\\"']
METRICS = ["accuracy", "f1", "roc_auc", "mae", "mape", "psi:amount", "js:age",
           f"{DRIFT_SIGNALS[-1]}:amount", "missing_rate:amount", "psi:", "label_coverage"]
COUNTERS = ["predictions", "joined", "tp", "fp", "tn", "fn", "scored_n", "log_loss_sum",
            "brier_sum", "score_sum", "abs_error_sum", "squared_error_sum", "ape_sum",
            "error_sum", "label_sum", "pred_sum", "confusion:cat:dog", "confusion:a:b:c",
            "confusion:x", "brand_new"]
#: Slice sums that are gauges (monitor_regression_signed_error, monitor_slice_accumulator).
GAUGES = {"error_sum", "label_sum", "pred_sum", "confusion:x", "brand_new"}


def value(rng: random.Random) -> float:
    """A metric or counter value: often NaN, sometimes special or large."""
    roll = rng.random()
    if roll < 0.3:
        return NAN
    if roll < 0.35:
        return rng.choice([math.inf, -math.inf, -0.0, 0.0, 1e22, 1e-7, -5e7])
    if roll < 0.5:
        return float(rng.randrange(10**6, 10**12))  # Go writes these with an exponent
    if roll < 0.55:
        return rng.randrange(0, 1000)  # an int, as the core's counters can be
    return rng.uniform(-10, 10)


def counter_value(rng: random.Random, key: str) -> float:
    """A counter's value (never NaN or negative: OpenMetrics forbids it), or for the slice
    sums exported as gauges any value."""
    if key in GAUGES:
        return value(rng)
    found = value(rng)
    return 0.0 if math.isnan(found) or found < 0 else found


def random_report(rng: random.Random) -> Report:
    """Models with whole-model, version and segment slices, windows, counters, alerts."""
    models = {}
    for m in range(rng.randint(1, 4)):
        name = rng.choice(["fraud", "churn", 'm"q', f"model-{m}", "ünï"]) + str(m)
        slices = [SliceReport("model", "")]
        slices += [SliceReport("version", rng.choice(["v1", "v2", "v\\3"]) + str(i))
                   for i in range(rng.randint(0, 2))]
        slices += [SliceReport("segment:" + rng.choice(["country", 'de"vice']),
                               rng.choice(AWKWARD) + str(i))
                   for i in range(rng.randint(0, 4))]
        for s in slices:
            for window in rng.sample(["all", "1h", "5m", "ewm1m"], rng.randint(0, 3)):
                s.windows[window] = {k: value(rng)
                                     for k in rng.sample(METRICS, rng.randint(0, len(METRICS)))}
            s.counters = {k: counter_value(rng, k)
                          for k in rng.sample(COUNTERS, rng.randint(0, 12))}
        counts = {k: rng.randrange(0, 10**7) for k in rng.sample(
            ["predictions", "labels", "matched", "expired", "late", "pending",
             "early_labels_pending", "orphan_labels", "brand_new_count", 'we"ird'],
            rng.randint(0, 10))}
        buckets = sorted(rng.randrange(0, 100) for _ in range(len(LABEL_DELAY_BUCKETS) + 1))
        alerts = [AlertReport(rng.choice(["f1-low", 'r"ule', "silent"]) + str(i),
                              rng.choice(["critical", "warning"]), "threshold", "f1@1h",
                              rng.choice(["firing", "pending", "inactive"]),
                              transitions={"firing": rng.randrange(5)})
                  for i in range(rng.randint(0, 2))]
        models[name] = ModelReport(name, "binary", slices=slices, counts=counts,
                                   label_delay_buckets=rng.choice([[], buckets]),
                                   label_delay_sum=rng.uniform(0, 1e7), alerts=alerts)
    rejects = {(rng.choice(["predictions", "labels"]), rng.choice(AWKWARD) + str(i)):
               rng.randrange(100) for i in range(rng.randint(0, 3))}
    return Report(models=models, rejects=rejects,
                  watermark=rng.choice([-math.inf, 1.7e9 + rng.random()]),
                  panes_closed=rng.randrange(10**9), events=rng.randrange(10**9))


def random_runtime(rng: random.Random) -> RuntimeStats | None:
    if rng.random() < 0.3:
        return None
    return RuntimeStats(
        heartbeat=rng.choice([0.0, 1.7e9 + rng.random()]), ready=rng.random() < 0.5,
        assigned_partitions=rng.randrange(8),
        lag={(rng.choice(["predictions", "labels"]), p): rng.randrange(10**7)
             for p in range(rng.randint(0, 4))},
        last_checkpoint=rng.choice([None, 1.7e9]), checkpoints=rng.randrange(100),
        dead_letters=rng.randrange(100), alerts=rng.randrange(100),
        output_backlog=rng.randrange(10), paused=rng.random() < 0.5)


def samples(families: Iterator) -> list[tuple[str, str, str, str, list[tuple]]]:
    """Parsed families as comparable values (NaN-safe: values by their repr)."""
    return [
        (f.name, f.type, f.documentation, f.unit,
         [(s.name, tuple(sorted(s.labels.items())), repr(float(s.value))) for s in f.samples])
        for f in families
    ]


def assert_same_as_prometheus_client(collector: MonitorCollector,
                                     registry: CollectorRegistry) -> None:
    exposition = collector.exposition()
    assert exposition is not None
    fast_text = exposition.body()
    fast_om = exposition.body(openmetrics=True)
    reference_text = generate_latest(registry)
    reference_om = generate_openmetrics(registry)
    parsed = samples(parse_text(fast_text.decode()))
    assert parsed == samples(parse_text(reference_text.decode()))
    assert samples(parse_openmetrics(fast_om.decode())) == samples(
        parse_openmetrics(reference_om.decode()))
    assert any(rows for *_, rows in parsed)
    # Not only the same parse: the same bytes, so every scraper sees what it saw before.
    assert fast_text == reference_text
    assert fast_om == reference_om


@pytest.mark.parametrize("seed", range(12))
def test_render_equals_prometheus_client_over_changing_reports(seed):
    """A sequence of random reports, each partly reusing the previous one's structure: the
    render (which keeps prefixes between ticks) matches prometheus_client every time."""
    rng = random.Random(seed)
    registry = CollectorRegistry()
    collector = MonitorCollector(registry, max_series=rng.choice([0, 5, 40, 10_000]))
    assert_same_as_prometheus_client(collector, registry)  # before the first report
    report = random_report(rng)
    for _ in range(8):
        collector.update(report, random_runtime(rng))
        assert_same_as_prometheus_client(collector, registry)
        roll = rng.random()
        if roll < 0.4:  # same series, new values (the steady state)
            for model in report.models.values():
                for s in model.slices:
                    for by_metric in s.windows.values():
                        for k in by_metric:
                            by_metric[k] = value(rng)
                    for k in s.counters:
                        s.counters[k] = counter_value(rng, k)
        elif roll < 0.7:  # one slice gains a metric, another loses its counters
            model = rng.choice(list(report.models.values()))
            s = rng.choice(model.slices)
            s.windows.setdefault("all", {})[f"psi:new{rng.randrange(3)}"] = value(rng)
            rng.choice(model.slices).counters.clear()
        else:
            report = random_report(rng)


def test_every_family_with_escaping_matches_and_passes_promtool():
    """The fixed report of test_prometheus (every family) plus awkward label values."""
    from tests.outputs.test_prometheus import make_report, runtime

    registry = CollectorRegistry()
    collector = MonitorCollector(registry)
    report = make_report()
    report.models["intent"] = ModelReport(
        "intent", "multiclass",
        slices=[SliceReport("model", "", counters={"confusion:a:b": 1}),
                *(SliceReport("segment:c\\o\"l", v, windows={"all": {"accuracy": 0.5}},
                              counters={"confusion:a:b": 2}) for v in AWKWARD)],
        alerts=[AlertReport("acc-low", "warning", "threshold", "accuracy@1h", "firing",
                            transitions={"pending": 1, "firing": 1})],
    )
    collector.update(report, runtime())
    assert_same_as_prometheus_client(collector, registry)
    exposition = collector.exposition()
    assert exposition is not None
    text = exposition.body()
    assert b'slice="D\\"E\\\\x\\nnew"' in text  # quotes, backslashes and newlines escaped
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (./dev test installs it)")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


def test_render_runs_once_per_update_and_never_per_scrape(monkeypatch):
    """Scrapes of one snapshot, in any format, never call the collector's collect() nor
    render again; they get the very same bytes (gzip included)."""
    from tests.outputs.test_prometheus import make_report, runtime

    registry = CollectorRegistry()
    collector = MonitorCollector(registry)
    renders = 0
    render = collector._renderer.render

    def counting(*args, **kwargs):
        nonlocal renders
        renders += 1
        return render(*args, **kwargs)

    monkeypatch.setattr(collector._renderer, "render", counting)
    collected = 0
    collect = collector.collect

    def counting_collect():
        nonlocal collected
        collected += 1
        return collect()

    monkeypatch.setattr(collector, "collect", counting_collect)
    collector.update(make_report(), runtime())
    assert renders == 1
    with HttpServer("127.0.0.1", 0, registry, heartbeat=lambda: 1.0,
                    readiness=lambda: (True, ""), collector=collector) as server:
        bodies: dict[tuple[str, str], set[bytes]] = {}
        for _ in range(3):
            for accept in ("", OPENMETRICS, PROMETHEUS_ACCEPT, "text/plain;version=1.0.0"):
                for encoding in ("", "gzip"):
                    status, headers, body = get(server, accept, encoding)
                    assert status == 200
                    assert (headers.get("Content-Encoding") == "gzip") == (encoding == "gzip")
                    bodies.setdefault((accept, encoding), set()).add(body)
        assert renders == 1 and collected == 0
        assert all(len(seen) == 1 for seen in bodies.values())
        (plain,) = bodies[("", "")]
        (om,) = bodies[(OPENMETRICS, "")]
        (om_gzip,) = bodies[(PROMETHEUS_ACCEPT, "gzip")]
        assert plain == generate_latest(registry)  # (these two call collect())
        assert om == generate_openmetrics(registry)
        assert gzip.decompress(om_gzip) == om
        # A new snapshot: one render, new bytes.
        collected = 0
        report = make_report()
        report.events = 99
        collector.update(report, runtime())
        assert renders == 2
        assert b"monitor_events_processed_total 99.0" in get(server, "", "")[2]
        assert b"monitor_events_processed_total 99.0" in gzip.decompress(
            get(server, PROMETHEUS_ACCEPT, "gzip")[2])
        assert renders == 2 and collected == 0


def test_requests_the_cache_cannot_answer_are_rendered_as_before():
    """``name[]`` filters and other name escapings go through prometheus_client."""
    from tests.outputs.test_prometheus import make_report, runtime

    registry = CollectorRegistry()
    collector = MonitorCollector(registry)
    collector.update(make_report(), runtime())
    with HttpServer("127.0.0.1", 0, registry, heartbeat=lambda: 1.0,
                    readiness=lambda: (True, ""), collector=collector) as server:
        body = get(server, "", "", "?name[]=monitor_events_processed_total")[2]
        assert body == generate_latest(
            registry.restricted_registry(["monitor_events_processed_total"]))
        dots = "application/openmetrics-text; version=1.0.0; escaping=dots"
        status, headers, body = get(server, dots, "")
        assert status == 200 and "escaping=dots" in headers["Content-Type"]
        assert body == choose_encoder(dots)[0](registry)  # prometheus_client's escaping
        assert b"monitor__events__processed" in body


def test_failed_render_keeps_the_loop_running_and_scrapes_fall_back(monkeypatch):
    from tests.outputs.test_prometheus import make_report

    registry = CollectorRegistry()
    collector = MonitorCollector(registry)

    def broken(*args, **kwargs):
        raise RuntimeError("render bug")

    monkeypatch.setattr(collector._renderer, "render", broken)
    collector.update(make_report())  # does not raise
    assert collector.exposition() is None
    with HttpServer("127.0.0.1", 0, registry, heartbeat=lambda: 1.0,
                    readiness=lambda: (True, ""), collector=collector) as server:
        status, _, body = get(server, "", "")
    assert status == 200 and body == generate_latest(registry)
    assert b"monitor_events_processed_total 153.0" in body


def test_scrapes_during_updates_see_one_snapshot_at_a_time():
    """Each report carries its own number everywhere; a served body never mixes two."""
    registry = CollectorRegistry()
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

    names = ("monitor_model_metric", "monitor_slice_joined_total",
             "monitor_predictions_received_total", "monitor_events_processed_total")
    thread = threading.Thread(target=writer)
    with HttpServer("127.0.0.1", 0, registry, heartbeat=lambda: 1.0,
                    readiness=lambda: (True, ""), collector=collector) as server:
        thread.start()
        try:
            seen = set()
            for i in range(150):
                accept, encoding = [("", ""), (PROMETHEUS_ACCEPT, "gzip")][i % 2]
                body = get(server, accept, encoding)[2]
                text = (gzip.decompress(body) if encoding else body).decode()
                parse = parse_openmetrics if accept else parse_text
                values = {s.value for f in parse(text) for s in f.samples if s.name in names}
                assert len(values) == 1, values
                seen |= values
        finally:
            stop.set()
            thread.join()
    assert len(seen) > 1  # the writer did publish meanwhile


def get(server: HttpServer, accept: str, encoding: str, query: str = ""
        ) -> tuple[int, dict[str, str], bytes]:
    headers = {"Accept": accept, "Accept-Encoding": encoding}
    request = urllib.request.Request(f"{server.url}/metrics{query}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()
