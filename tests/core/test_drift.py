"""Feature drift and data-quality signals against scipy and numpy on the same samples.

The reference file and the prediction events go through the real path (``load_config``,
the :class:`~monitor.core.engine.Engine`, ``summary()``); the expected values are computed
independently from the raw samples: ``np.histogram`` over the profile's edges (plus
counts below and above them), scipy's ``jensenshannon``, ``ks_2samp``,
``wasserstein_distance`` and ``chi2_contingency``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy import stats
from scipy.spatial.distance import jensenshannon

from monitor.cli import main
from monitor.config import ConfigError, load_config
from monitor.core.alerting import Alerting
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from monitor.outputs.prometheus import MonitorCollector

T0 = 1_700_000_000.0
CATS = ("US", "DE", "FR", "IT", "ES")


def _write_config(tmp: Path, extra: str = "", reference: str = "ref.csv") -> Path:
    if "drift_min_samples" not in extra:  # these tests check statistics on small windows
        extra = "drift_min_samples = 100\n" + extra
    path = tmp / "monitor.toml"
    path.write_text(
        f"""
[time]
pane = "10s"
[[models]]
name = "m"
task = "binary"
positive_class = 1
windows = ["all", "1h"]
features = {{ amount = "numeric", country = "categorical" }}
reference = "{reference}"
drift_bins = 10
max_categories = 3
detectors = []
{extra}
"""
    )
    return path


def _write_reference(tmp: Path, amount: np.ndarray, country: list[str]) -> None:
    lines = ["amount,country,prediction,score,label"]
    lines += [f"{float(a)!r},{c},1,0.5,0" for a, c in zip(amount, country, strict=True)]
    (tmp / "ref.csv").write_text("\n".join(lines) + "\n")


def _messages(features: list[dict[str, Any]], partitions: int = 1) -> list[Message]:
    out = []
    for i, feats in enumerate(features):
        event = {
            "prediction_id": f"p{i}",
            "model": "m",
            "ts": T0 + i * 0.01,
            "prediction": 1,
            "score": 0.5,
            "features": feats,
        }
        out.append(
            Message("predictions", i % partitions, i, f"p{i}".encode(), json.dumps(event).encode())
        )
    return out


def _run(config_path: Path, features: list[dict[str, Any]], partitions: int = 1) -> Pipeline:
    engine = Pipeline(load_config(config_path))
    msgs = _messages(features, partitions)
    for start in range(0, len(msgs), 997):
        engine.process(msgs[start : start + 997])
    return engine


def _binned(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Counts below, per bin (np.histogram: half-open, last closed), above: independently."""
    inside = x[(x >= edges[0]) & (x <= edges[-1])]
    hist = np.histogram(inside, bins=edges)[0]
    return np.concatenate([[np.sum(x < edges[0])], hist, [np.sum(x > edges[-1])]]).astype(float)


@pytest.fixture
def drifted(tmp_path: Path) -> tuple[Pipeline, dict[str, Any]]:
    rng = np.random.default_rng(7)
    ref_amount = rng.normal(100.0, 15.0, 4000)
    ref_country = list(rng.choice(CATS[:4], 4000, p=[0.5, 0.3, 0.15, 0.05]))
    _write_reference(tmp_path, ref_amount, ref_country)
    amount = rng.normal(106.0, 18.0, 3000)
    country = list(rng.choice(CATS, 3000, p=[0.4, 0.3, 0.1, 0.1, 0.1]))
    engine = _run(
        _write_config(tmp_path),
        [{"amount": float(a), "country": c} for a, c in zip(amount, country, strict=True)],
    )
    data = {"ref_amount": ref_amount, "amount": amount, "ref_country": ref_country}
    data["country"] = country
    return engine, data


def _signals(engine: Pipeline, window: str = "all") -> dict[str, Any]:
    out: dict[str, Any] = engine.summary()["models"]["m"]["windows"][window]
    return out


def test_psi_and_js_equal_the_formula_and_scipy_on_the_same_bins(drifted: Any) -> None:
    engine, data = drifted
    got = _signals(engine)
    edges = engine.models[0].profile.numeric["amount"].edges
    r = _binned(edges, data["ref_amount"])
    p = _binned(edges, data["amount"])
    r, p = r / r.sum(), p / p.sum()
    pf, rf = np.maximum(p, 1e-4), np.maximum(r, 1e-4)
    assert got["psi:amount"] == pytest.approx(float(np.sum((pf - rf) * np.log(pf / rf))), 1e-12)
    assert got["js:amount"] == pytest.approx(float(jensenshannon(p, r, base=2)), abs=1e-12)
    # categorical: top 3 reference categories and "other" (IT and the unseen ES)
    top = ["US", "DE", "FR"]

    def cat_hist(values: list[str]) -> np.ndarray:
        counts = [sum(v == c for v in values) for c in top]
        return np.array([*counts, len(values) - sum(counts)], dtype=float)

    rc, pc = cat_hist(data["ref_country"]), cat_hist(data["country"])
    r, p = rc / rc.sum(), pc / pc.sum()
    pf, rf = np.maximum(p, 1e-4), np.maximum(r, 1e-4)
    assert got["psi:country"] == pytest.approx(float(np.sum((pf - rf) * np.log(pf / rf))), 1e-12)
    assert got["js:country"] == pytest.approx(float(jensenshannon(p, r, base=2)), abs=1e-12)


def test_chi2_is_the_p_value_of_scipy_chi2_contingency_on_the_same_counts(drifted: Any) -> None:
    engine, data = drifted
    top = ["US", "DE", "FR"]

    def cat_hist(values: list[str]) -> list[float]:
        counts = [float(sum(v == c for v in values)) for c in top]
        return [*counts, len(values) - sum(counts)]

    table = np.array([cat_hist(data["ref_country"]), cat_hist(data["country"])])
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert _signals(engine)["chi2:country"] == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_numeric_chi2_is_scipy_chi2_contingency_over_the_quantile_buckets(drifted: Any) -> None:
    engine, data = drifted
    edges = engine.models[0].profile.numeric["amount"].edges
    table = np.array([_binned(edges, data["ref_amount"]), _binned(edges, data["amount"])])
    table = table[:, table.sum(axis=0) > 0]  # buckets neither sample uses drop out
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert _signals(engine)["chi2:amount"] == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_chi2_p_value_matches_scipy_when_drift_is_mild(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    _write_reference(tmp_path, rng.normal(0, 1, 500), list(rng.choice(CATS[:3], 500)))
    country = list(rng.choice(CATS[:3], 400, p=[0.36, 0.33, 0.31]))
    engine = _run(_write_config(tmp_path), [{"amount": 0.0, "country": c} for c in country])
    ref = engine.models[0].profile.categorical["country"]
    table = np.array(
        [ref.counts[:3], [sum(v == c for v in country) for c in ref.categories]], dtype=float
    )
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert 1e-6 < expected < 1.0
    assert _signals(engine)["chi2:country"] == pytest.approx(expected, rel=1e-9)


def test_ks_is_below_scipy_ks_2samp_by_at_most_the_largest_bin_mass(drifted: Any) -> None:
    engine, data = drifted
    got = _signals(engine)["ks:amount"]
    true = stats.ks_2samp(data["ref_amount"], data["amount"]).statistic
    edges = engine.models[0].profile.numeric["amount"].edges
    r = _binned(edges, data["ref_amount"])
    p = _binned(edges, data["amount"])
    bound = max((r / r.sum()).max(), (p / p.sum()).max())
    assert got <= true + 1e-12
    assert true - got <= bound
    # and it is the largest CDF difference at the column boundaries
    cdf = np.abs(np.cumsum(p / p.sum()) - np.cumsum(r / r.sum()))[:-1].max()
    assert got == pytest.approx(cdf, abs=1e-12)


def test_wasserstein_over_reference_sd_is_within_the_stated_bound_of_scipy(drifted: Any) -> None:
    engine, data = drifted
    got = _signals(engine)["wasserstein:amount"]
    sd = float(np.std(data["ref_amount"]))
    true = stats.wasserstein_distance(data["ref_amount"], data["amount"]) / sd
    edges = engine.models[0].profile.numeric["amount"].edges
    r = _binned(edges, data["ref_amount"])[1:-1] / len(data["ref_amount"])
    p = _binned(edges, data["amount"])[1:-1] / len(data["amount"])
    bound = float(np.sum(np.diff(edges) * (p + r))) / sd
    assert abs(got - true) <= bound
    assert abs(got - true) < 0.02  # in practice far inside the bound


def test_wasserstein_is_exact_when_the_cdfs_do_not_cross(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    ref = rng.uniform(0.0, 10.0, 2000)
    _write_reference(tmp_path, ref, ["US"] * len(ref))
    amount = rng.uniform(0.0, 10.0, 1500) ** 0.5 * 10.0**0.5 + 4.0  # right of ref, overflows
    engine = _run(_write_config(tmp_path), [{"amount": float(a), "country": "US"} for a in amount])
    got = _signals(engine)["wasserstein:amount"]
    true = stats.wasserstein_distance(ref, amount) / float(np.std(ref))
    edges = engine.models[0].profile.numeric["amount"].edges
    r = _binned(edges, ref)
    p = _binned(edges, amount)
    d = np.cumsum(p / p.sum()) - np.cumsum(r / r.sum())
    assert np.all(d <= 1e-12)  # F_p <= F_r at every boundary (here: everywhere)
    assert got == pytest.approx(true, rel=1e-9)


def test_data_quality_rates_equal_numpy_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    _write_reference(tmp_path, rng.uniform(0.0, 1.0, 1000), list(rng.choice(CATS[:4], 1000)))
    kinds = rng.integers(0, 7, 2000)
    feats: list[dict[str, Any]] = []
    for i, k in enumerate(kinds):
        f: dict[str, Any] = {"amount": float(rng.uniform(0.0, 1.0)), "country": "US"}
        if k == 1:
            del f["amount"]
        elif k == 2:
            f["amount"] = None
        elif k == 3:
            f["amount"] = "12" if i % 2 else True
        elif k == 4:
            f["amount"] = -5.0 if i % 2 else 7.0
        elif k == 5:
            f["country"] = "ES" if i % 2 else 3.5  # unseen; a float is a type mismatch
        elif k == 6:
            f["country"] = None
        feats.append(f)
    engine = _run(_write_config(tmp_path), feats)
    got = _signals(engine)
    n = len(kinds)
    odd = np.arange(n) % 2 == 1
    assert got["missing_rate:amount"] == np.sum((kinds == 1) | (kinds == 2)) / n
    assert got["type_mismatch_rate:amount"] == np.sum(kinds == 3) / n
    assert got["out_of_range_rate:amount"] == np.sum(kinds == 4) / n
    assert got["nan_rate:amount"] == 0.0
    assert got["unseen_rate:country"] == np.sum((kinds == 5) & odd) / n
    assert got["type_mismatch_rate:country"] == np.sum((kinds == 5) & ~odd) / n
    assert got["missing_rate:country"] == np.sum(kinds == 6) / n
    assert got["problem_rate"] == np.sum(kinds > 0) / n


def test_drift_is_nan_below_min_samples_but_rates_are_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _write_reference(tmp_path, rng.normal(0, 1, 300), list(rng.choice(CATS[:3], 300)))
    feats = [{"amount": float(x), "country": "US"} for x in rng.normal(0, 1, 49)]
    feats += [{"amount": None, "country": "US"}] * 10
    engine = _run(_write_config(tmp_path, "drift_min_samples = 50"), feats)
    got = _signals(engine)
    for name in ("psi", "js", "ks", "wasserstein"):
        assert got[f"{name}:amount"] is None  # NaN in summary.json is null
    assert got["psi:country"] is not None  # 59 values of country
    assert got["missing_rate:amount"] == pytest.approx(10 / 59)


def test_drift_signals_do_not_depend_on_partitions_or_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    _write_reference(tmp_path, rng.normal(0, 1, 1000), list(rng.choice(CATS[:4], 1000)))
    feats = [
        {"amount": float(x), "country": str(c)}
        for x, c in zip(rng.normal(0.3, 1.2, 3000), rng.choice(CATS, 3000), strict=True)
    ]
    one = _signals(_run(_write_config(tmp_path), feats, partitions=1))
    three = _signals(_run(_write_config(tmp_path), feats, partitions=3))
    drift = {k: v for k, v in one.items() if k.split(":")[-1] in ("amount", "country")}
    assert len(drift) == 15
    for key, value in drift.items():
        assert three[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_drift_signals_reach_prometheus_rules_and_sliding_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    _write_reference(tmp_path, rng.normal(0, 1, 1000), list(rng.choice(CATS[:3], 1000)))
    rule = """
[[models.alerts]]
name = "amount-drift"
signal = "psi:amount@1h"
op = ">"
threshold = 0.25
[[models.alerts]]
name = "bad-rows"
signal = "problem_rate@1h"
op = ">"
threshold = 0.5
"""
    feats = [{"amount": float(x), "country": "US"} for x in rng.normal(1.5, 1.0, 3000)]
    engine = _run(_write_config(tmp_path, rule), feats)
    final = engine.flushed(keep_signals=True)
    alerting = Alerting(engine.config, engine.models)
    closed = engine.drain_signals() + final.drain_signals()
    fired = [a.rule for a in alerting.feed(closed) if a.status == "firing"]
    assert fired == ["amount-drift"]
    assert _signals(engine, "1h")["psi:amount"] > 0.5
    registry = CollectorRegistry()
    MonitorCollector(registry).update(alerting.fill(final.report()))
    labels = {"model": "m", "window": "1h", "metric": "psi:amount", "dimension": "model"}
    value = registry.get_sample_value("monitor_model_metric", {**labels, "slice": ""})
    assert value == pytest.approx(_signals(engine, "1h")["psi:amount"])
    by_feature = {"model": "m", "window": "1h", "feature": "amount", "method": "psi"}
    assert registry.get_sample_value("monitor_drift", by_feature) == value
    score = {**by_feature, "feature": "__score__"}  # the reference has scores
    assert registry.get_sample_value("monitor_drift", score) is not None


def test_drift_signal_names_are_checked_against_the_features(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _write_reference(tmp_path, rng.normal(0, 1, 10), ["US"] * 10)
    bad = '[[models.alerts]]\nname = "x"\nsignal = "psi:height@1h"\nop = ">"\nthreshold = 1'
    with pytest.raises(ConfigError, match="'height' is not a configured feature"):
        load_config(_write_config(tmp_path, bad))


@pytest.mark.parametrize(
    ("reference", "content", "message"),
    [
        ("absent.csv", None, "absent.csv: model 'm': cannot read: No such file"),
        ("ref.csv", "amount,prediction\n1.0,1\n", "column 'country': not in the CSV header"),
        ("ref.csv", "amount,country\nx,US\n", "column 'amount': no numeric values"),
        ("ref.jsonl", '{"amount": 1.0}\n', "column 'country': in no row of the reference"),
        ("ref.jsonl", '{"amount": 1.0, "country": "US"}\n[1]\n', "line 2: not a JSON object"),
        ("ref.csv", b"amount,country\n1.0,\xff\n", "not UTF-8"),
    ],
)
def test_an_unusable_reference_fails_at_load_naming_file_column_and_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reference: str,
    content: str | bytes | None,
    message: str,
) -> None:
    if isinstance(content, bytes):
        (tmp_path / reference).write_bytes(content)
    elif content is not None:
        (tmp_path / reference).write_text(content)
    config = _write_config(tmp_path, reference=reference)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert message in "\n".join(info.value.problems)
    assert str(tmp_path / reference) in info.value.problems[0]
    assert main(["check-config", str(config)]) == 2
    assert message in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["replay", "--config", str(config), "--out", str(out), str(config)]) == 2


def test_without_a_reference_only_the_quality_rates_are_emitted(tmp_path: Path) -> None:
    config = _write_config(tmp_path).read_text().replace('reference = "ref.csv"\n', "")
    (tmp_path / "monitor.toml").write_text(config)
    feats = [{"amount": None if i % 4 == 0 else 1.0, "country": "US"} for i in range(400)]
    got = _signals(_run(tmp_path / "monitor.toml", feats))
    assert got["missing_rate:amount"] == 0.25
    assert got["problem_rate"] == 0.25
    assert not any(k.startswith(("psi:", "js:", "ks:", "out_of_range")) for k in got)
    assert math.isfinite(got["type_mismatch_rate:country"])


# --- the chi-square p-value without scipy --------------------------------------------------

_DOF = [*range(1, 41), 49, 50, 51, 99, 100, 101, 200, 501, 1000, 1001, 2001, 5000, 10_000]


def _chi2_grid() -> tuple[np.ndarray, np.ndarray]:
    """Degrees of freedom and statistics: from far below the mean through it to the far
    tail (p-values down to 1e-300), for small and large degrees of freedom."""
    ks, xs = [], []
    for k in _DOF:
        points = {k * f for f in (1e-9, 1e-3, 0.1, 0.5, 0.9, 0.99, 1.0, 1.01, 1.1, 1.5, 2.0, 5.0)}
        points |= {k + d * math.sqrt(2.0 * k) for d in (-3, -1, 0, 1, 2, 5, 10, 20, 30)}
        points |= {0.5, 3.0, 40.0, 300.0, 1000.0, 1350.0}
        for x in sorted(p for p in points if p > 0):
            ks.append(float(k))
            xs.append(x)
    return np.array(ks), np.array(xs)


@pytest.mark.usefixtures("kernels")
def test_chi2_sf_equals_scipy_chi2_sf_to_the_far_tail_and_large_dof() -> None:
    from monitor.core.drift import chi2_sf

    k, x = _chi2_grid()
    got = chi2_sf(k, x)
    expected = stats.chi2.sf(x, k)
    shown = expected > 1e-300  # below, both are 0 or subnormal
    assert shown.sum() > 900
    assert np.all(got[~shown] < 1e-290)
    # cephes and this code each round differently; the closed form below shows that the
    # larger differences (dof in the thousands, p-values far out) are cephes' own
    rel = np.abs(got[shown] - expected[shown]) / expected[shown]
    small = k[shown] <= 100
    assert rel[small].max() < 5e-13
    assert rel.max() < 1e-11


def test_chi2_sf_of_even_dof_is_the_closed_form_sum_to_a_few_ulps() -> None:
    """``P(X > x) = exp(-x/2) sum_{j < k/2} (x/2)**j / j!`` for even ``k``, summed exactly
    (60 decimal digits)."""
    from decimal import Decimal, localcontext

    from monitor.core.drift import chi2_sf

    def exact(k: int, x: float) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 60
            y = Decimal(x) / 2
            term = total = Decimal(1)
            for j in range(1, k // 2):
                term = term * y / j
                total += term
            return (-y).exp() * total

    worst = 0.0
    for k in (2, 4, 10, 22, 100, 1000, 2000, 10_000):
        for x in {k * f for f in (0.01, 0.5, 0.9, 1.0, 1.1, 1.5, 2.0)} | {1000.0, 1400.0}:
            want = exact(k, x)
            if want < Decimal("1e-300"):
                continue
            got = Decimal(float(chi2_sf(k, x)))
            worst = max(worst, float(abs(got - want) / want))
    assert worst < 2e-12  # 1e-12 at 10,000 dof in the tail; cephes is off by 3e-12 there


def test_chi2_sf_edges_and_the_compiled_kernel_gives_the_python_bits() -> None:
    from monitor import native
    from monitor.core.drift import chi2_sf

    dof = [1.0, 3.0, 3.0, 3.0, 2.5, 0.0, np.nan, 4.0]
    edges = chi2_sf(dof, [0.0, -1.0, np.inf, np.nan, 1.0, 1.0, 1.0, 1e-320])
    assert edges[:3].tolist() == [1.0, 1.0, 0.0]
    assert np.isnan(edges[3:6]).all()  # a NaN statistic, or dof not a whole number >= 1
    assert edges[7] == 1.0
    assert chi2_sf(np.ones((2, 3)), 2.0).shape == (2, 3)
    k, x = _chi2_grid()
    before = native.use(True)
    try:
        if not native.available():
            pytest.fail("monitor._native is not built")
        compiled = chi2_sf(k, x)
        native.use(False)
        assert np.array_equal(chi2_sf(k, x), compiled)
    finally:
        native.use(before)
