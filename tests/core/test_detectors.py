"""Concept-drift detectors: ADWIN equals river's, the CUSUM meets its false-alarm budget."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from river import drift

from monitor.config import ConfigError, config_from_mapping
from monitor.core.alerting import Alerting
from monitor.core.detectors import (
    CalibratedCusum,
    ErrorDetectors,
    RiverUp,
    bernoulli_cusum_arl,
    calibrate_cusum,
    make_detector,
)
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

T0 = 1_700_000_000.0
PANE = 10.0


def _config(detectors: list[str] | None = None) -> dict[str, object]:
    model: dict[str, object] = {
        "name": "m",
        "task": "binary",
        "positive_class": 1,
        "windows": ["all", "1m"],
        "alerts": [{"name": "errors-up", "kind": "detector", "signal": "adwin:error@all"}],
    }
    if detectors is not None:
        model["detectors"] = detectors
        model["alerts"] = []
    return {"time": {"pane": "10s", "allowed_lateness": "0s"}, "models": [model]}


def _stream(seed: int = 0, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Event times (0.05 s apart) and 0/1 errors whose rate rises from 0.1 to 0.2 half-way."""
    rng = np.random.default_rng(seed)
    rate = np.where(np.arange(n) < n // 2, 0.1, 0.2)
    return T0 + np.arange(n) * 0.05, (rng.random(n) < rate).astype(float)


def _messages(ts: np.ndarray, err: np.ndarray, partitions: int) -> list[list[Message]]:
    """Per partition, its messages in order (labels inline: joined at prediction time)."""
    out: list[list[Message]] = [[] for _ in range(partitions)]
    for i, (t, e) in enumerate(zip(ts, err, strict=True)):
        p = i % partitions
        event = {
            "prediction_id": f"p{i}",
            "model": "m",
            "ts": float(t),
            "prediction": 1,
            "label": 0 if e else 1,
        }
        out[p].append(Message("predictions", p, len(out[p]), None, json.dumps(event).encode()))
    return out


def _run(per_part: list[list[Message]], chunk: int, config: dict[str, object]) -> Pipeline:
    engine = Pipeline(config_from_mapping(config))
    engine.track(("predictions", p) for p in range(len(per_part)))
    # round-robin over partitions, `chunk` messages at a time from each
    pos = [0] * len(per_part)
    while any(pos[p] < len(msgs) for p, msgs in enumerate(per_part)):
        batch: list[Message] = []
        for p, msgs in enumerate(per_part):
            batch.extend(msgs[pos[p] : pos[p] + chunk])
            pos[p] += chunk
        engine.process(batch)
    return engine


def _river_detections(ts: np.ndarray, err: np.ndarray) -> list[int]:
    """Pane index of each upward detection of river's default ADWIN on the stream."""
    adwin = drift.ADWIN()
    panes = []
    for t, e in zip(ts, err, strict=True):
        before = adwin.estimation
        adwin.update(e)
        if adwin.drift_detected and adwin.estimation > before:
            panes.append(int(np.floor(t / PANE)))
    return panes


def _engine_detections(engine: Pipeline) -> list[int]:
    final = engine.flushed(keep_signals=True)
    signals = engine.drain_signals() + final.drain_signals()
    out = []
    for sig in signals:
        found = sig.signals.get("adwin:error@all", 0.0)
        assert sig.signals.get("adwin:error@1m", 0.0) == found
        pane = round(sig.pane_end / PANE) - 1
        out.extend([pane] * int(found))
    return out


def test_adwin_signal_equals_river_adwin_fed_the_same_stream() -> None:
    ts, err = _stream()
    expected = _river_detections(ts, err)
    assert expected, "the rise from 0.1 to 0.2 must be detected"
    assert _engine_detections(_run(_messages(ts, err, 1), 500, _config())) == expected


def test_adwin_is_deterministic_across_partitions_batches_and_pickling() -> None:
    ts, err = _stream(seed=3)
    expected = _river_detections(ts, err)
    for partitions, chunk in ((1, 500), (3, 137), (4, 1000)):
        engine = _run(_messages(ts, err, partitions), chunk, _config())
        engine = pickle.loads(pickle.dumps(engine))
        assert _engine_detections(engine) == expected, (partitions, chunk)


def test_detector_rule_fires_on_a_rise_and_not_on_an_improvement() -> None:
    ts, err = _stream(seed=5)
    engine = _run(_messages(ts, err, 2), 400, _config())
    final = engine.flushed(keep_signals=True)
    alerts = Alerting(engine.config).feed(engine.drain_signals() + final.drain_signals())
    assert [a.status for a in alerts][:1] == ["firing"]
    assert alerts[0].signal == "adwin:error@all"
    better = _run(_messages(ts, err[::-1].copy(), 2), 400, _config())  # 0.2 then 0.1
    assert _engine_detections(better) == []


def test_no_detector_signals_when_detectors_are_off() -> None:
    ts, err = _stream(n=2000)
    engine = _run(_messages(ts, err, 1), 500, _config(detectors=[]))
    assert all("adwin:error@all" not in s.signals for s in engine.drain_signals())


# --- calibrated CUSUM --------------------------------------------------------------------


def _bernoulli(rates: list[tuple[float, int]], seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return np.concatenate([(rng.random(n) < p).astype(float) for p, n in rates]).tolist()


def test_cusum_arl_without_drift_matches_the_false_alarm_budget() -> None:
    """Exact Markov-chain ARL is >= the budget, and a seeded simulation agrees with it."""
    budget = 2_000
    det = CalibratedCusum(reference_error=0.1, false_alarm_budget=budget)
    r, m, h = calibrate_cusum(0.1, 0.15, budget)
    exact = bernoulli_cusum_arl(0.1, r, m, h)
    assert budget <= exact < 1.1 * budget
    assert bernoulli_cusum_arl(0.1, r, m, h - 1) < budget  # smallest threshold that meets it
    events = 1_000_000
    alarms = sum(det.update(x) for x in _bernoulli([(0.1, events)], seed=11))
    measured = events / alarms  # ~500 alarms: standard error about 4.5 %
    assert abs(measured - exact) / exact < 0.15, (measured, exact)


def test_cusum_learns_its_reference_in_the_warmup_and_stays_quiet() -> None:
    det = CalibratedCusum(false_alarm_budget=2_000, warmup=5_000)
    stream = _bernoulli([(0.2, 200_000)], seed=2)
    alarms = sum(det.update(x) for x in stream)
    assert det.p0 is not None and 0.2 < det.p0 < 0.215  # estimate + one standard error
    assert alarms * 2_000 / (len(stream) - 5_000) < 1.2  # at most ~ the budget's rate


def test_cusum_detects_an_abrupt_rise_quickly() -> None:
    delays = []
    for seed in range(10):
        det = make_detector({"name": "cusum", "reference_error": 0.1})
        hits = [
            i for i, x in enumerate(_bernoulli([(0.1, 5_000), (0.2, 5_000)], seed)) if det.update(x)
        ]
        assert hits and hits[0] >= 5_000, (seed, hits[:3])
        delays.append(hits[0] - 5_000)
    assert float(np.median(delays)) < 500, delays


def test_cusum_never_fires_on_an_improvement() -> None:
    for seed in range(3):
        det = CalibratedCusum(warmup=10_000)  # learns 0.2, then the model gets better
        assert not any(det.update(x) for x in _bernoulli([(0.2, 10_000), (0.05, 100_000)], seed))


def test_detectors_pickle_mid_stream_and_continue_identically() -> None:
    stream = _bernoulli([(0.1, 12_000), (0.2, 4_000), (0.1, 4_000), (0.3, 4_000)], seed=4)
    names = ["adwin", "cusum", {"name": "cusum", "reference_error": 0.1}, "page_hinkley"]
    for cut in (3_000, 11_000, 13_000):
        whole = ErrorDetectors(names[:2] + names[3:], "error")
        given = ErrorDetectors(names[2:3], "error")
        first = ErrorDetectors(names[:2] + names[3:], "error")
        first_given = ErrorDetectors(names[2:3], "error")
        first.feed(stream[:cut])
        first_given.feed(stream[:cut])
        expected = [whole.feed(stream[:cut]), whole.feed(stream[cut:]), given.feed(stream)]
        copy = pickle.loads(pickle.dumps(first))
        copy_given = pickle.loads(pickle.dumps(first_given))
        assert copy.feed(stream[cut:]) == expected[1]
        copy_given.feed(stream[cut:])
        assert copy.totals == whole.totals and copy_given.totals == given.totals
    assert whole.totals["cusum"] >= 1 and given.totals["cusum"] >= 1


def test_cusum_on_absolute_errors_watches_the_share_above_the_warmup_quantile() -> None:
    rng = np.random.default_rng(8)
    errors = np.abs(np.concatenate([rng.normal(0, 1, 10_000), rng.normal(0, 1.5, 3_000)]))
    det = make_detector("cusum", "abs_error")
    hits = [i for i, x in enumerate(errors.tolist()) if det.update(x)]
    assert hits and 10_000 <= hits[0] < 11_000


def _cusum_config(alert: str = "cusum:error@all") -> dict[str, object]:
    config = _config()
    model = config["models"][0]  # type: ignore[index]
    model["detectors"] = ["adwin", {"name": "cusum", "reference_error": 0.1}]
    model["alerts"] = [{"name": "errors-up", "kind": "detector", "signal": alert}]
    return config


def test_config_selects_cusum_and_the_engine_signal_equals_the_detector() -> None:
    ts, err = _stream(seed=6)
    det = CalibratedCusum(reference_error=0.1)
    expected = [int(np.floor(t / PANE)) for t, e in zip(ts, err, strict=True) if det.update(e)]
    assert expected
    engine = _run(_messages(ts, err, 3), 250, _cusum_config())
    final = engine.flushed(keep_signals=True)
    found = []
    closed = engine.drain_signals() + final.drain_signals()
    for sig in closed:
        n = sig.signals.get("cusum:error@all", 0.0)
        assert sig.signals.get("cusum:error@1m", 0.0) == n
        assert "adwin:error@all" in sig.signals
        found.extend([round(sig.pane_end / PANE) - 1] * int(n))
    assert found == expected
    alerts = Alerting(engine.config).feed(closed)
    assert alerts and alerts[0].signal == "cusum:error@all"


def test_config_validates_detector_entries() -> None:
    cfg = config_from_mapping(_cusum_config())
    model = cfg.models[0]
    assert model.detector_names == ["adwin", "cusum"]
    model.check_signal("cusum:error@1m", "detector")
    plain = _config()
    plain["models"][0]["detectors"] = ["adwin", "cusum", "page_hinkley"]  # type: ignore[index]
    config_from_mapping(plain).models[0].check_signal("page_hinkley:error@all", "detector")
    bad: list[object] = [
        ["adwin", "adwin"],
        ["cusum", {"name": "cusum"}],
        [{"name": "cusum", "reference_error": 1.5}],
        [{"name": "cusum", "budget": 10}],
        ["fhddm"],
    ]
    for detectors in bad:
        config = _config()
        config["models"][0]["detectors"] = detectors  # type: ignore[index]
        with pytest.raises(ConfigError):
            config_from_mapping(config)
    config = _config()  # a rule on a detector the model does not run
    config["models"][0]["detectors"] = ["adwin"]  # type: ignore[index]
    config["models"][0]["alerts"][0]["signal"] = "cusum:error@all"  # type: ignore[index]
    with pytest.raises(ConfigError):
        config_from_mapping(config)


@pytest.mark.parametrize(
    ("name", "river_detector"),
    [
        ("ddm", drift.binary.DDM),
        ("eddm", drift.binary.EDDM),
        ("hddm_a", drift.binary.HDDMA),
        ("hddm_w", drift.binary.HDDMW),
    ],
)
def test_river_binary_detectors_detect_exactly_as_river(name: str, river_detector: type) -> None:
    """Their river tests are one-sided already: the adapter changes nothing."""
    stream = _bernoulli([(0.1, 5_000), (0.3, 2_000), (0.1, 3_000), (0.4, 2_000)], seed=6)
    ours = make_detector(name)
    theirs = river_detector()
    mine, river_hits = [], []
    for i, x in enumerate(stream):
        if ours.update(x):
            mine.append(i)
        theirs.update(x)
        if theirs.drift_detected:
            river_hits.append(i)
    assert mine == river_hits and mine


def test_kswin_counts_the_rises_river_kswin_detects() -> None:
    up = _bernoulli([(0.1, 3_000), (0.6, 300)], seed=7)
    down = _bernoulli([(0.6, 3_000), (0.1, 300)], seed=7)
    for stream, rising in ((up, True), (down, False)):
        ours = make_detector("kswin")
        theirs = drift.KSWIN(seed=0)
        mine, river_hits = [], []
        for i, x in enumerate(stream):
            if ours.update(x):
                mine.append(i)
            theirs.update(x)
            if theirs.drift_detected:
                river_hits.append(i)
        after = [i for i in river_hits if i >= 3_000]
        assert after  # river sees the change either way
        assert set(mine) <= set(river_hits)
        assert bool([i for i in mine if i >= 3_000]) == rising


@pytest.mark.parametrize("entry", ["cusum", "adwin", "page_hinkley", "ddm", "kswin"])
def test_a_batch_fed_at_once_decides_as_one_value_at_a_time(entry: str) -> None:
    """``update_many`` (a pane's errors in one call) counts the detections ``update``
    counts fed the same values one by one, and leaves the detector in the same state."""
    rng = np.random.default_rng(3)
    stream = np.concatenate([rng.random(3000) < 0.1, rng.random(1500) < 0.4]).astype(float)
    one, many = make_detector(entry), make_detector(entry)
    for start in range(0, len(stream), 37):
        values = stream[start : start + 37].tolist()
        assert many.update_many(values) == sum(one.update(x) for x in values)
    assert pickle.dumps(one) == pickle.dumps(many)


@pytest.mark.parametrize("binary", [True, False])
def test_cusum_fed_in_batches_of_any_size_decides_as_one_value_at_a_time(binary: bool) -> None:
    """Batches of 1 to 700 values, through the end of the warmup (mid-batch), many alarms
    and long quiet runs: the same alarms, in the same batches, and the same state as the
    values fed one by one."""
    rng = np.random.default_rng(11 if binary else 12)
    rate = np.repeat([0.1, 0.35, 0.1, 0.6, 0.05, 0.2], 6_000)
    hits = rng.random(len(rate)) < rate
    stream = hits.astype(float) if binary else rng.exponential(1.0, len(rate)) * (1 + 4 * hits)
    one = CalibratedCusum(warmup=2_000, binary=binary, false_alarm_budget=5_000)
    many = CalibratedCusum(warmup=2_000, binary=binary, false_alarm_budget=5_000)
    at, total = 0, 0
    while at < len(stream):
        values = stream[at : at + int(rng.integers(1, 700))].tolist()
        found = many.update_many(values)
        assert found == sum(one.update(x) for x in values)
        assert many.drift_detected == one.drift_detected
        total += found
        at += len(values)
    assert total >= 10
    assert pickle.dumps(one) == pickle.dumps(many)


@pytest.mark.parametrize("kind", ["errors", "absolute errors", "alternating"])
def test_adwin_fed_in_batches_counts_river_adwins_rises_and_ends_in_its_state(kind: str) -> None:
    """Many detections, up and down, of 0/1 and real values, cut into batches of any size:
    the batch path keeps the window's sum and width itself between cuts, and must count
    what river's ADWIN fed one value at a time counts and end with the same window."""
    rng = np.random.default_rng({"errors": 1, "absolute errors": 2, "alternating": 3}[kind])
    n = 40_000
    if kind == "alternating":
        rate = np.where(np.arange(n) % 4000 < 2000, 0.05, 0.6)
        values = (rng.random(n) < rate).astype(float)
    else:
        rate = np.repeat(rng.random(8), n // 8)
        values = (
            (rng.random(n) < rate).astype(float)
            if kind == "errors"
            else rng.exponential(1.0, n) * (1.0 + 3.0 * rate)
        )
    river_adwin, rises = drift.ADWIN(), 0
    for x in values.tolist():
        before = river_adwin.estimation
        river_adwin.update(x)
        rises += bool(river_adwin.drift_detected and river_adwin.estimation > before)
    mine = make_detector("adwin")
    assert isinstance(mine, RiverUp)
    found, at = 0, 0
    while at < n:
        size = int(rng.integers(1, 900))
        found += mine.update_many(values[at : at + size].tolist())
        at += size
    assert rises >= 3 and found == rises
    state = [(d.total, d.width, d.variance, d.drift_detected) for d in (mine.detector, river_adwin)]
    assert state[0] == state[1]


@pytest.mark.parametrize("entry", ["cusum", "adwin", "page_hinkley", "ddm", "kswin"])
@pytest.mark.parametrize("kind", ["errors", "absolute errors"])
def test_panes_fed_in_one_call_decide_as_one_call_a_pane(entry: str, kind: str) -> None:
    """``update_panes`` (a batch of panes, ADWIN's as one run of values) counts in each
    pane the detections one ``update_many`` per pane counts there: panes of any size,
    empty ones and ones of a single value among them, through the CUSUM's warmup, many
    detections; the detectors end in the same state."""
    if kind == "absolute errors" and entry in ("ddm", "kswin"):
        pytest.skip("0/1 values only")
    rng = np.random.default_rng(5)
    rate = np.repeat([0.1, 0.5, 0.05, 0.6, 0.1, 0.45, 0.1], 3_000)
    hits = rng.random(len(rate)) < rate
    stream = hits.astype(float) if kind == "errors" else rng.exponential(1.0, len(rate)) * (
        1 + 4 * hits
    )
    each, together = make_detector(entry), make_detector(entry)
    at, total = 0, 0
    while at < len(stream):
        panes = []
        for _ in range(int(rng.integers(1, 60))):
            size = int(rng.choice([0, 1, 2, 7, 30, 200]))
            panes.append(stream[at : at + size].tolist())
            at += size
        want = [each.update_many(values) if values else 0 for values in panes]
        assert together.update_panes(panes) == want
        total += sum(want)
    assert total >= 3
    assert pickle.dumps(each) == pickle.dumps(together)


# --- the CUSUM's exact run length without scipy's sparse solver ---------------------------


def _arl_exact(p: float, r: int, m: int, h: int) -> float:
    """The same chain's run length in exact rational arithmetic (``p`` as the float it is)."""
    from fractions import Fraction

    n, up, q = h + 1, m - r, 1 - Fraction(p)
    a = [[Fraction(0)] * n for _ in range(n)]
    for i in range(n):
        a[i][i] += 1
        if i + up <= h:
            a[i][i + up] -= Fraction(p)
        a[i][max(i - r, 0)] -= q
    b = [Fraction(1)] * n
    for i in range(n):  # plain elimination: exact arithmetic needs no pivoting
        for j in range(i + 1, min(n, i + r + 1)):
            f = a[j][i] / a[i][i]
            for c in range(i, min(n, i + up + 1)):
                a[j][c] -= f * a[i][c]
            b[j] -= f * b[i]
    x = [Fraction(0)] * n
    for i in range(n - 1, -1, -1):
        x[i] = (b[i] - sum(a[i][c] * x[c] for c in range(i + 1, min(n, i + up + 1)))) / a[i][i]
    return float(x[0])


def _arl_scipy(p: float, r: int, m: int, h: int) -> float:
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    n, up = h + 1, m - r
    idx = np.arange(n)
    ok = idx + up <= h
    rows = np.concatenate([idx, idx[ok], idx])
    cols = np.concatenate([idx, idx[ok] + up, np.maximum(idx - r, 0)])
    vals = np.concatenate([np.ones(n), np.full(int(ok.sum()), -p), np.full(n, p - 1.0)])
    mat = sparse.csc_matrix((vals, (rows, cols)), shape=(n, n))
    return float(spsolve(mat, np.ones(n))[0])


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize(
    ("p", "r", "m", "h"),
    [(0.1, 1, 2, 0), (0.9, 9, 10, 3), (0.3, 5, 11, 50), (0.0731, 1, 12, 100),
     (0.5, 3, 4, 40), (0.2, 3, 5, 60)],
)  # fmt: skip
def test_cusum_arl_is_the_exact_rational_solution(p: float, r: int, m: int, h: int) -> None:
    """To a few ulps, also where the run length is 1e11 to 1e20 and a general solver
    (scipy's, for the last two) is off by 1e-6 or more."""
    exact = _arl_exact(p, r, m, h)
    assert bernoulli_cusum_arl(p, r, m, h) == pytest.approx(exact, rel=1e-14)


@pytest.mark.usefixtures("kernels")
def test_cusum_arl_equals_scipys_sparse_solve_where_that_is_well_conditioned() -> None:
    for p, r, m, h in [(0.01, 1, 50, 200), (0.05, 3, 47, 400), (0.2, 7, 31, 300),
                       (0.12, 1, 9, 120), (0.3, 2, 5, 25)]:  # fmt: skip
        expected = _arl_scipy(p, r, m, h)
        assert expected < 1e9
        assert bernoulli_cusum_arl(p, r, m, h) == pytest.approx(expected, rel=1e-9)


def test_cusum_arl_compiled_and_numpy_give_the_same_bits() -> None:
    from monitor import native
    from monitor.core.detectors import _cusum_arl_numpy

    if not native.available():
        pytest.fail("monitor._native is not built")
    from monitor import _native as kernels

    for args in [(0.1, 1, 2, 0), (0.3, 5, 11, 50), (0.05, 3, 47, 1500), (0.0731, 1, 12, 1390)]:
        assert kernels.cusum_arl(*args) == _cusum_arl_numpy(*args)


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize(
    ("p0", "p1", "budget"),
    [(0.05, 0.1, 1e6), (0.1, 0.15, 1e6), (0.1513, 0.2013, 1e4), (0.6, 0.61, 1e5),
     (0.0731, 0.0831, 1e7), (0.45, 0.46, 1e6), (0.2, 0.21, 1e4)],
)  # fmt: skip
def test_calibrated_threshold_is_the_smallest_whose_exact_arl_meets_the_budget(
    p0: float, p1: float, budget: float
) -> None:
    """Checked with scipy's sparse solver, well conditioned at run lengths near the budget.
    The last four made the threshold search, which goes through far larger run lengths,
    get a negative or NaN run length from that solver (a matrix singular to working
    precision) or a threshold 20 times too high."""
    calibrate_cusum.cache_clear()
    r, m, h = calibrate_cusum(p0, p1, budget)
    assert _arl_scipy(p0, r, m, h) >= budget
    assert h == 1 or _arl_scipy(p0, r, m, h - 1) < budget
