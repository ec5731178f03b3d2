"""Panes, windows and the watermark: order independence, late events, long gaps, signals."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from monitor.config import config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

T0 = 1_700_000_000.0  # a multiple of every pane used here
LN2 = math.log(2.0)
TOPICS = ("predictions", "labels")


def make_engine(pane: str = "10s", lateness: str = "0s", windows: list[str] | None = None,
                models: list[dict[str, Any]] | None = None) -> Pipeline:
    windows = windows or ["all", "1h", "ewm30m"]
    models = models or [{"name": "b", "task": "binary", "positive_class": 1, "score_bins": 20}]
    for m in models:
        m.setdefault("windows", windows)
        m.setdefault("label_ttl", "30d")
    return Pipeline(config_from_mapping({"time": {"pane": pane, "allowed_lateness": lateness},
                                       "models": models}))


def pred_msg(pid: str, ts: float, pred: Any, *, model: str = "b", part: int = 0,
             offset: int = 0, **extra: Any) -> Message:
    body = {"prediction_id": pid, "model": model, "ts": ts, "prediction": pred, **extra}
    # produced when it happened: the record's timestamp is the event's time
    return Message("predictions", part, offset, None, json.dumps(body).encode(),
                   timestamp_ms=int(ts * 1000))


def label_msg(pid: str, ts: float, label: Any, *, part: int = 0, offset: int = 0,
              **extra: Any) -> Message:
    body = {"prediction_id": pid, "ts": ts, "label": label, **extra}
    return Message("labels", part, offset, None, json.dumps(body).encode(),
                   timestamp_ms=int(ts * 1000))


# --------------------------------------------------------------------------- order independence
MODELS = [
    {"name": "b", "task": "binary", "positive_class": 1, "score_bins": 20,
     "segments": ["country"]},
    {"name": "mc", "task": "multiclass", "classes": ["x", "y", "z"]},
    {"name": "r", "task": "regression"},
]


def build_queues(seed: int, n: int, parts: int, span: float, lateness: float,
                 max_delay: float) -> list[list[Message]]:
    """Per (topic, partition) queues of messages, each in its own fixed arrival order.

    Within a queue an event may arrive after events up to ``lateness`` later in event
    time than itself (bounded disorder), never more, so no event is ever behind the
    watermark whatever the interleaving of the queues.
    """
    rng = np.random.default_rng(seed)
    queues: list[list[tuple[float, Message]]] = [[] for _ in range(2 * parts)]
    for i in range(n):
        model = MODELS[int(rng.integers(0, 3))]
        name = model["name"]
        ts = T0 + float(rng.uniform(0, span))
        part = int(rng.integers(0, parts))
        if name == "b":
            y = int(rng.integers(0, 2))
            score = (math.floor(rng.uniform() * 20) + 0.5) / 20
            pred: Any = int(score > 0.5)
            label: Any = y
            extra = {"score": score, "segment": {"country": ["US", "DE"][int(rng.integers(0, 2))]},
                     "model_version": ["v1", "v2"][int(rng.integers(0, 2))]}
        elif name == "mc":
            pred, label, extra = ["x", "y", "z"][int(rng.integers(0, 3))], \
                ["x", "y", "z"][int(rng.integers(0, 3))], {}
        else:
            label = float(rng.normal(5, 2))
            pred, extra = label + float(rng.normal(0, 1)), {}
        pid = f"{name}-{i}"
        arrive = ts + float(rng.uniform(0, lateness)) * 0.99
        queues[2 * part].append((arrive, pred_msg(pid, ts, pred, model=name, part=part, **extra)))
        if rng.uniform() < 0.8:
            lts = ts + float(rng.uniform(0, max_delay))
            arrive = lts + float(rng.uniform(0, lateness)) * 0.99
            named = {"model": name} if rng.uniform() < 0.5 else {}
            queues[2 * part + 1].append((arrive, label_msg(pid, lts, label, part=part, **named)))
    out = []
    for q, items in enumerate(queues):
        items.sort(key=lambda item: item[0])
        msgs = [m for _, m in items]
        for offset, m in enumerate(msgs):
            m.offset = offset
        assert all(m.topic == TOPICS[q % 2] for m in msgs)
        out.append(msgs)
    return out


def interleave(queues: list[list[Message]], seed: int, max_run: int) -> list[Message]:
    rng = np.random.default_rng(seed)
    heads = [0] * len(queues)
    out: list[Message] = []
    while True:
        live = [q for q in range(len(queues)) if heads[q] < len(queues[q])]
        if not live:
            return out
        q = live[int(rng.integers(0, len(live)))]
        take = min(int(rng.integers(1, max_run + 1)), len(queues[q]) - heads[q])
        out += queues[q][heads[q]:heads[q] + take]
        heads[q] += take


def run(msgs: list[Message], parts: int, lateness: str, seed: int, max_batch: int,
        pane: str = "1m") -> dict[str, Any]:
    engine = make_engine(pane, lateness, models=[dict(m) for m in MODELS])
    engine.track([(t, p) for t in TOPICS for p in range(parts)])
    rng = np.random.default_rng(seed)
    k = 0
    while k < len(msgs):
        size = int(rng.integers(1, max_batch + 1))
        assert engine.process(msgs[k:k + size]) == []
        k += size
    return engine.summary()


def assert_same_summary(a: Any, b: Any, path: str = "") -> None:
    """Equal structure; counts (and anything integral) exactly, other floats within 1e-12."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_same_summary(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, float) and isinstance(b, float):
        # A counter holding whole numbers on both sides is a count; a sum of scores can be
        # whole on one side and off by rounding on the other (10.0, 9.999999999999998).
        if "counts" in path or ("counters" in path and a.is_integer() and b.is_integer()):
            assert a == b, f"{path}: {a} != {b}"
        else:
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), parts=st.integers(1, 4),
       span=st.sampled_from([60.0, 1800.0, 3 * 3600.0]),
       lateness=st.sampled_from(["0s", "2m", "10m"]),
       max_delay=st.sampled_from([0.0, 300.0, 5400.0]))
@example(seed=1219463, n=101, parts=1, span=10800.0, lateness="10m", max_delay=300.0)
def test_summary_does_not_depend_on_interleaving_or_batches(
    seed: int, n: int, parts: int, span: float, lateness: str, max_delay: float
) -> None:
    """Same events, same per-partition order, other interleaving and poll batches:
    the same summary; and nothing is late (no event is behind the watermark)."""
    late_s = float(lateness[:-1]) * 60.0
    queues = build_queues(seed, n, parts, span, late_s, max_delay)
    one = run(interleave(queues, seed + 1, 1), parts, lateness, seed + 2, 1)
    two = run(interleave(queues, seed + 3, 40), parts, lateness, seed + 4, 97)
    everything = [m for q in queues for m in q]
    three = run(everything, parts, lateness, seed, len(everything))  # one batch, queue order
    for summary in (one, two, three):
        for model in summary["models"].values():
            assert model["counts"]["late"] == 0, model["counts"]
    assert_same_summary(one, two)
    assert_same_summary(one, three)


def test_out_of_order_within_allowed_lateness_is_not_late() -> None:
    """An event behind the newest one but ahead of the watermark is on time.

    Pane 10 s, allowed lateness 60 s: after a prediction at T+1000 the watermark is T+940;
    a prediction at T+970 arriving next is ahead of it, so it must land in its own pane
    (counted in the sliding and decay windows), not be counted late.
    """
    engine = make_engine("10s", "60s")
    assert engine.process([pred_msg("a", T0 + 1000, 1)]) == []
    assert engine.process([pred_msg("b", T0 + 970, 0, offset=1)]) == []
    assert engine.watermark == T0 + 940
    model = engine.summary()["models"]["b"]
    assert model["counts"]["late"] == 0
    assert model["windows"]["1h"]["prediction_count"] == 2.0
    assert model["windows"]["1h"]["positive_rate"] == 0.5


# --------------------------------------------------------------------------- late events
def test_late_events_merge_into_every_window_that_holds_their_pane() -> None:
    """A late event (its pane closed) is counted as late and merged where its pane still
    counts: ``all``, the sliding windows whose span holds the pane, and the decay windows
    with the weight it would have had, so that no window depends on when it was read."""
    engine = make_engine("10s", "0s")
    engine.track([("predictions", 0), ("labels", 0)])
    assert engine.process([
        pred_msg("on-time", T0 + 5000, 1, score=0.75),
        label_msg("on-time", T0 + 5000, 1),
    ]) == []
    assert engine.watermark == T0 + 5000
    # Behind the watermark (its pane, and every pane before T+5000, is closed): late.
    assert engine.process([
        pred_msg("late", T0 + 4500, 1, score=0.5, offset=1),
        label_msg("late", T0 + 4505, 0, offset=1),
        # older than the 1 h window at the end: in ``all`` and the decay window only
        pred_msg("old", T0 + 100, 0, score=0.25, offset=2),
        label_msg("old", T0 + 105, 0, offset=2),
    ]) == []
    model = engine.summary()["models"]["b"]
    counts = model["counts"]
    assert counts["late"] == 4  # the prediction's side and the pair's side, twice
    assert counts["matched"] == 3 and counts["predictions"] == 3
    w = model["windows"]
    assert w["all"]["accuracy"] == pytest.approx(2 / 3, rel=1e-15)
    assert w["all"]["prediction_count"] == 3.0
    assert w["all"]["brier"] == pytest.approx((0.5**2 + 0.25**2 + 0.25**2) / 3, rel=1e-15)
    assert w["1h"]["accuracy"] == 0.5 and w["1h"]["prediction_count"] == 2.0
    # Decay window: every event with weight exp(-(end - t) ln2 / 30 min), end = T+5010.
    end = T0 + 5010
    weight = {t: math.exp(-(end - T0 - t) * LN2 / 1800) for t in (5000, 4500, 4505, 100, 105)}
    assert w["ewm30m"]["prediction_count"] == pytest.approx(
        weight[5000] + weight[4500] + weight[100], rel=1e-12)
    assert w["ewm30m"]["score_mean"] == pytest.approx(
        (0.75 * weight[5000] + 0.5 * weight[4500] + 0.25 * weight[100])
        / (weight[5000] + weight[4500] + weight[100]), rel=1e-12)
    assert w["ewm30m"]["accuracy"] == pytest.approx(
        (weight[5000] + weight[105]) / (weight[5000] + weight[4505] + weight[105]), rel=1e-12)
    assert model["counters"]["joined"] == 3.0 and model["counters"]["tp"] == 1.0


def test_windows_do_not_depend_on_when_a_partition_is_read() -> None:
    """Two partitions, one read entirely before the other (its events all late): every
    window ends equal to reading them interleaved."""
    def stream(part: int) -> list[Message]:
        out = []
        for i in range(60):
            t = T0 + 60 * i + 7 * part
            pid = f"{part}-{i}"
            out.append(pred_msg(pid, t, i % 2, score=(i % 10) / 10, part=part, offset=2 * i))
            out.append(label_msg(pid, t + 30, (i // 3) % 2, part=part, offset=2 * i + 1))
        return out

    def run(batches: list[list[Message]]) -> tuple[dict[str, Any], int]:
        engine = make_engine("10s", "0s", windows=["all", "10m", "ewm5m"])
        engine.track([(t, p) for t in TOPICS for p in (0, 1)])
        engine.set_idle([])
        for batch in batches:
            engine.process(batch)
        summary = engine.summary()["models"]["b"]
        return summary["windows"], summary["counts"]["late"]

    a, b = stream(0), stream(1)
    together, late_together = run([sorted(a + b, key=lambda m: json.loads(m.value or b"{}")["ts"])])
    # Partition 0 alone first, with partition 1 idle (its clock runs ahead), then 1.
    engine_first = make_engine("10s", "0s", windows=["all", "10m", "ewm5m"])
    engine_first.track([(t, p) for t in TOPICS for p in (0, 1)])
    engine_first.set_idle([(t, 1) for t in TOPICS])
    engine_first.process(a)
    engine_first.set_idle([])
    engine_first.process(b)
    summary = engine_first.summary()["models"]["b"]
    assert late_together == 0 and summary["counts"]["late"] > 0
    for window, metrics in together.items():
        for name, value in metrics.items():
            got = summary["windows"][window][name]
            if value is None:
                assert got is None, (window, name)
            else:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (window, name)


def test_late_label_of_on_time_prediction() -> None:
    """The pair belongs to the label's pane: a label behind the watermark is late even when
    its prediction was on time, and is merged into the windows that hold its pane."""
    engine = make_engine("10s", "0s")
    engine.track([("predictions", 0), ("labels", 0)])
    assert engine.process([pred_msg("p", T0 + 100, 1), pred_msg("q", T0 + 2000, 1, offset=1),
                           label_msg("x", T0 + 2000, 1)]) == []
    assert engine.process([label_msg("p", T0 + 150, 1, offset=1)]) == []
    model = engine.summary()["models"]["b"]
    assert model["counts"]["late"] == 1
    assert model["windows"]["all"]["accuracy"] == 1.0
    assert model["windows"]["1h"]["accuracy"] == 1.0
    assert model["windows"]["1h"]["prediction_count"] == 2.0
    assert model["counters"]["joined"] == 1.0


# --------------------------------------------------------------------------- long gaps
def _gap_run(gap: float, windows: list[str]) -> tuple[Pipeline, dict[str, Any], float]:
    engine = make_engine("10s", "0s", windows=windows)
    engine.track([("predictions", 0), ("predictions", 1)])
    t = [T0, T0 + 5, T0 + gap, T0 + gap + 95]
    msgs = [pred_msg(f"p{i}", ts, 1, part=i % 2, offset=i // 2, score=0.5, label=i % 2)
            for i, ts in enumerate(t)]
    start = time.perf_counter()
    for i in range(0, 4, 2):  # each batch advances both partitions
        assert engine.process(msgs[i:i + 2]) == []
    summary = engine.summary()
    return engine, summary, time.perf_counter() - start


def test_watermark_gap_of_years_is_fast_and_decay_is_exact() -> None:
    year = 365 * 86400.0
    windows = ["all", "1h", "ewm30m", "ewm52w"]
    engine, summary, elapsed = _gap_run(30 * year, windows)
    assert elapsed < 3.0
    w = summary["models"]["b"]["windows"]
    end = T0 + 30 * year + 100
    times = np.array([T0, T0 + 5, T0 + 30 * year, T0 + 30 * year + 95])
    for name, half_life in (("ewm30m", 1800.0), ("ewm52w", 52 * 604800.0)):
        weight = np.exp(-(end - times) * LN2 / half_life)
        assert w[name]["prediction_count"] == pytest.approx(weight.sum(), rel=1e-9), name
        correct = np.array([0, 1, 0, 1], dtype=float)  # prediction 1, labels 0 1 0 1
        assert w[name]["accuracy"] == pytest.approx((weight * correct).sum() / weight.sum(),
                                                     rel=1e-9), name
    assert w["1h"]["prediction_count"] == 2.0 and w["all"]["prediction_count"] == 4.0
    assert w["all"]["accuracy"] == 0.5
    assert engine.watermark == T0 + 30 * year  # the smaller of the two partitions


def test_gap_length_does_not_change_the_work() -> None:
    """Closing an empty stretch costs the same for 1 day or 30 years: empty panes are
    skipped once no sliding window holds data (only decay moves)."""
    counts = []
    for gap in (86400.0, 30 * 365 * 86400.0):
        engine, _summary, _ = _gap_run(gap, ["all", "1h", "ewm30m"])
        flushed = engine.flushed(keep_signals=True)
        counts.append(len(engine.drain_signals()) + len(flushed.drain_signals()))
    assert counts[0] == counts[1]
    assert counts[0] <= 2 * 360 + 30


# --------------------------------------------------------------------------- signals
def test_signals_per_closed_pane_have_metric_at_window_names() -> None:
    engine = make_engine("1m", "0s", models=[dict(m) for m in MODELS])
    queues = build_queues(7, 300, 2, 2 * 3600.0, 0.0, 600.0)
    msgs = interleave(queues, 8, 5)
    engine.track([(t, p) for t in TOPICS for p in range(2)])
    for k in range(0, len(msgs), 50):
        assert engine.process(msgs[k:k + 50]) == []
    signals = engine.drain_signals()
    assert engine.drain_signals() == []
    summary = engine.summary()
    assert signals
    by_model: dict[str, list[Any]] = {}
    for s in signals:
        by_model.setdefault(s.model, []).append(s)
    assert set(by_model) == {"b", "mc", "r"}
    for name, items in by_model.items():
        windows = summary["models"][name]["windows"]
        names = {f"{metric}@{window}" for window, metrics in windows.items() for metric in metrics}
        ends = [s.pane_end for s in items]
        assert ends == sorted(set(ends)), "one signal set per closed pane, in order"
        assert all(e % 60 == 0 for e in ends)
        assert ends[-1] <= engine.watermark
        for s in items:
            assert set(s.signals) == names
            assert all(isinstance(v, float) for v in s.signals.values())
        assert {"b": "f1@1h", "mc": "macro_f1@ewm30m", "r": "mae@1h"}[name] in names
    # Flushing closes the rest; its last signals are the summary's values.
    flushed = engine.flushed(keep_signals=True).drain_signals()
    assert flushed and flushed[0].pane_end > max(s.pane_end for s in signals)
    for name in ("b", "mc", "r"):
        last = [s for s in flushed if s.model == name][-1]
        for window, metrics in summary["models"][name]["windows"].items():
            for metric, value in metrics.items():
                got = last.signals[f"{metric}@{window}"]
                if value is None:
                    assert math.isnan(got), (name, metric, window)
                else:
                    assert got == pytest.approx(value, rel=1e-12, abs=1e-15), (metric, window)
    # summary() does not close the engine's own panes.
    assert engine.drain_signals() == []


# --------------------------------------------------------------------------- sliding sums
def test_sliding_window_does_not_lose_small_sums_next_to_huge_ones() -> None:
    """A sliding window must hold exactly the sums of its panes, whatever their magnitudes.

    Regression, pane 10 s, window 1h (360 panes). Pane 0: label 0.0, prediction 1.0, whose
    absolute percentage error is 1/eps = 4.5e15 (scikit-learn's floor). Pane 5: APE 0.1.
    Pane 370: APE 0.05. At the end the 1 h window holds pane 370 only, so its MAPE is 0.05;
    subtracting 4.5e15 from a running total that absorbed the 0.1 loses the 0.1 and the
    window ends at about 0.05 - 0.1 < 0 until the next re-sum.
    """
    engine = make_engine("10s", "0s", windows=["all", "1h"],
                         models=[{"name": "r", "task": "regression"}])
    rows = [(T0, 0.0, 1.0), (T0 + 50, 1.0, 1.1), (T0 + 3700, 2.0, 2.1)]
    for i, (ts, label, pred) in enumerate(rows):
        assert engine.process([pred_msg(f"p{i}", ts, pred, model="r", offset=i,
                                        label=label)]) == []
    w = engine.summary()["models"]["r"]["windows"]["1h"]
    assert w["prediction_count"] == 1.0
    assert w["mae"] == pytest.approx(0.1, rel=1e-12)
    assert w["mape"] == pytest.approx(0.1 / 2.0, rel=1e-9)


@pytest.mark.parametrize("disjoint", [True, False], ids=["own-columns", "shared-columns"])
@pytest.mark.parametrize("holes", [True, False, "position"],
                         ids=["some-slices-absent", "every-slice", "a-position-absent"])
@pytest.mark.parametrize("block_cells", [1 << 20, 64, 1])
def test_many_panes_at_once_add_what_one_pane_at_a_time_adds(
    monkeypatch, block_cells, holes, disjoint
) -> None:
    """The batch of a sparse stream spans hundreds of (partition, pane) groups; their sums
    come from one bincount per block of groups (``scatter_panes``), and must equal, bit for
    bit, each group's own ``scatter_pane`` into zeros: the windows of one process and of a
    replica (which adds pane by pane) are compared exactly."""
    from monitor.core import layout

    monkeypatch.setattr(layout, "_BLOCK_CELLS", block_cells)
    rng = np.random.default_rng(7)
    rows, width, n, groups = 5, 9, 400, 37
    rates = [math.log(2) / 1800.0, math.log(2) / 60.0]
    panes = np.sort(rng.choice(10_000, groups, replace=False)).astype(np.int64) + 170_000_000
    group = rng.integers(0, groups, n)
    group[:groups] = np.arange(groups)  # every group has events
    slices = rng.integers(-1 if holes else 0, rows, (n, 3))
    slices[:, 0] = 0
    if holes == "position":  # no event has a value there (a stream with no model_version)
        slices[:, 1] = -1
    cols = rng.integers(0, width, (n, 4))
    vals = rng.normal(0.0, 1e3, (n, 4)) * rng.integers(0, 2, (n, 4))
    ts = (panes[group] + rng.random(n)) * 10.0
    # two sets of events (a poll's predictions, then its pairs), each group's second set
    # added to its first
    second = rng.random(n) < 0.4
    if disjoint:  # as a poll's predictions and pairs: no column is both's
        cols[~second] %= 4
        cols[second] = 4 + cols[second] % (width - 4)
    sets = [layout.Terms(group[m], slices[m], cols[m], vals[m], ts[m]) for m in (~second, second)]
    got = list(layout.scatter_panes((rows, width), rates, 10.0, panes, sets))
    assert [g for g, _, _, _, _ in got] == list(range(groups))
    for g, used, some, held, held_decay in got:
        columns = np.arange(width) if some is None else some  # (None: every column)
        plain = np.zeros((rows, width))
        plain[np.ix_(used, columns)] = held
        decay = [np.zeros((rows, width)) for _ in rates]
        for d, h in zip(decay, held_decay, strict=True):
            d[np.ix_(used, columns)] = h
        touched = np.unique(slices[group == g])
        assert used.tolist() == touched[touched >= 0].tolist()
        if some is not None:  # (None: whole rows)
            assert columns.tolist() == np.unique(cols[group == g]).tolist()
        want, want_decay = np.zeros((rows, width)), [np.zeros((rows, width)) for _ in rates]
        for m in (~second, second):
            sel = (group == g) & m
            layout.scatter_pane(want, want_decay, rates, (int(panes[g]) + 1) * 10.0,
                                slices[sel], cols[sel], vals[sel], ts[sel])  # fmt: skip
        assert np.array_equal(plain, want)
        assert all(np.array_equal(a, b) for a, b in zip(decay, want_decay, strict=True))
