"""Drift of the model's outputs (score, prediction, label), the PCA signal and the
generalization gap, against scipy, scikit-learn and numpy on the same samples."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score

from monitor.config import ConfigError, config_from_mapping, load_config
from monitor.core.alerting import Alerting
from monitor.core.pipeline import Pipeline
from monitor.core.reference import PcaReference
from tests.core.outputs_stream import (
    binary_events,
    binary_rows,
    run,
    write_config,
    write_reference,
)

BINS = 200  # score_bins default


def _floored(score: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(score * BINS), 0, BINS - 1) / BINS


def _psi(p: np.ndarray, r: np.ndarray) -> float:
    p, r = np.maximum(p, 1e-4), np.maximum(r, 1e-4)
    return float(np.sum((p - r) * np.log(p / r)))


def test_score_drift_equals_scipy_on_the_bin_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    ref = binary_rows(rng, 5000)
    write_reference(tmp_path / "ref.csv", ref)
    rows = binary_rows(rng, 8000, shift=0.4)
    got = run(write_config(tmp_path, "ref.csv"), binary_events(rows), partitions=3)
    a, b = _floored(ref.score), _floored(rows.score)
    # On scores floored to the grid the binned statistics are exact.
    assert got["ks:__score__"] == pytest.approx(stats.ks_2samp(b, a).statistic, abs=1e-12)
    w = stats.wasserstein_distance(b, a) / float(np.std(a))
    assert got["wasserstein:__score__"] == pytest.approx(w, rel=1e-9)
    # Against the raw scores they are off by at most one bin width (KS: the largest bin mass).
    raw_ks = stats.ks_2samp(rows.score, ref.score).statistic
    hist = np.bincount((b * BINS).astype(int), minlength=BINS) / len(b)
    assert abs(got["ks:__score__"] - raw_ks) <= hist.max() + 1e-12
    raw_w = stats.wasserstein_distance(rows.score, ref.score)
    assert abs(got["wasserstein:__score__"] * float(np.std(a)) - raw_w) <= 1.0 / BINS
    assert got["psi:__score__"] > 0.1  # a 0.4-sd shift of the input moves the scores


def test_label_and_prediction_drift_equal_scipy(tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    ref = binary_rows(rng, 5000)
    write_reference(tmp_path / "ref.csv", ref)
    rows = binary_rows(rng, 6000, shift=0.5)
    got = run(write_config(tmp_path, "ref.csv"), binary_events(rows))
    for subject, window, reference in (
        ("__label__", rows.label, ref.label),
        ("__prediction__", rows.pred, ref.pred),
    ):
        w = np.bincount(window, minlength=2).astype(float)
        r = np.bincount(reference, minlength=2).astype(float)
        chi2 = stats.chi2_contingency(np.stack([r, w]), correction=False).pvalue
        assert got[f"chi2:{subject}"] == pytest.approx(chi2, rel=1e-9, abs=1e-300)
        assert got[f"js:{subject}"] == pytest.approx(
            jensenshannon(w / w.sum(), r / r.sum(), base=2), rel=1e-9
        )
        assert got[f"psi:{subject}"] == pytest.approx(_psi(w / w.sum(), r / r.sum()), rel=1e-9)
        assert got[f"chi2:{subject}"] < 1e-6  # the shift moves the prior


def test_regression_prediction_and_label_drift_use_reference_quantiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(23)
    n_ref, n = 4000, 6000
    ref_label = rng.normal(10.0, 2.0, n_ref)
    ref_pred = ref_label + rng.normal(0.0, 1.0, n_ref)
    lines = ["x1,x2,prediction,label"] + [
        f"{rng.normal()!r},{rng.normal()!r},{float(p)!r},{float(y)!r}"
        for p, y in zip(ref_pred, ref_label, strict=True)
    ]
    (tmp_path / "ref.csv").write_text("\n".join(lines) + "\n")
    label = rng.normal(11.0, 2.5, n)
    pred = label + rng.normal(0.0, 1.0, n)
    events = [
        {"prediction": float(p), "label": float(y), "features": {"x1": 0.0, "x2": 0.0}}
        for p, y in zip(pred, label, strict=True)
    ]
    got = run(write_config(tmp_path, "ref.csv", task="regression"), events)
    for subject, window, reference in (("__prediction__", pred, ref_pred),
                                       ("__label__", label, ref_label)):
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, 21)))
        def hist(x: np.ndarray, edges: np.ndarray = edges) -> np.ndarray:
            inner = np.histogram(x, edges)[0]
            return np.concatenate([[np.sum(x < edges[0])], inner, [np.sum(x > edges[-1])]])
        w, r = hist(window), hist(reference)
        assert got[f"js:{subject}"] == pytest.approx(
            jensenshannon(w / w.sum(), r / r.sum(), base=2), rel=1e-9
        )
        true_ks = stats.ks_2samp(window, reference).statistic
        assert got[f"ks:{subject}"] <= true_ks + 1e-12
        assert true_ks - got[f"ks:{subject}"] <= max(w.max() / w.sum(), r.max() / r.sum())
        true_w = stats.wasserstein_distance(window, reference) / float(np.std(reference))
        assert got[f"wasserstein:{subject}"] == pytest.approx(true_w, rel=0.05)
    assert got["gap:mae"] == pytest.approx(
        mean_absolute_error(label, pred) - mean_absolute_error(ref_label, ref_pred), rel=1e-9
    )


def test_pca_error_equals_sklearn_and_sees_a_broken_correlation(tmp_path: Path) -> None:
    rng = np.random.default_rng(24)
    ref = binary_rows(rng, 5000)
    write_reference(tmp_path / "ref.csv", ref)
    config = write_config(tmp_path, "ref.csv")
    same = binary_rows(rng, 5000)
    broken = binary_rows(rng, 5000, correlated=False)  # same marginals, no correlation
    got_same = run(config, binary_events(same))
    got_broken = run(config, binary_events(broken))
    x_ref = np.column_stack([ref.x1, ref.x2])
    mean, sd = x_ref.mean(axis=0), x_ref.std(axis=0)
    pca = PCA(n_components=1).fit((x_ref - mean) / sd)  # 2 features, 90 % variance: 1 kept
    assert pca.explained_variance_ratio_[0] >= 0.9

    def error(x: np.ndarray) -> float:
        z = (x - mean) / sd
        return float(np.mean(np.sum((z - pca.inverse_transform(pca.transform(z))) ** 2, axis=1)))

    base = error(x_ref)
    for got, rows in ((got_same, same), (got_broken, broken)):
        x = np.column_stack([rows.x1, rows.x2])
        assert got["pca_error"] == pytest.approx(error(x) / base, rel=1e-9)
    assert got_same["pca_error"] == pytest.approx(1.0, abs=0.1)
    assert got_broken["pca_error"] > 2.0
    # the marginals alone hardly move
    assert got_broken["psi:x2"] < 0.05


def test_an_events_pca_error_is_the_row_formula_in_any_batch() -> None:
    """The errors are computed over columns of events (``(features, events)``): an event's
    error is the reconstruction error written per row, whatever events it comes with (a
    poll is cut into segments anywhere; the matrix product may round the last bit
    differently by batch shape, as any float sum does)."""
    rng = np.random.default_rng(7)
    d, k, n = 10, 7, 3000
    mean, scale = rng.normal(size=d), rng.random(d) + 0.5
    components = np.linalg.qr(rng.normal(size=(d, d)))[0][:k]
    ref = PcaReference(tuple(f"f{i}" for i in range(d)), mean, scale, components, 1.0)
    x = rng.normal(size=(d, n)) * 3
    whole = ref.errors(x)
    for start, size in ((0, 1), (5, 2), (17, 9), (100, 64), (1000, 1001), (2999, 1)):
        part = ref.errors(np.ascontiguousarray(x[:, start : start + size]))
        assert np.allclose(part, whole[start : start + size], rtol=1e-12, atol=1e-12)
    z = (x.T - mean) / scale
    rebuilt = (z @ components.T) @ components
    assert np.allclose(whole, ((z - rebuilt) ** 2).sum(axis=1), rtol=1e-12, atol=1e-12)


def test_gap_is_the_window_metric_minus_the_reference_metric(tmp_path: Path) -> None:
    rng = np.random.default_rng(25)
    ref = binary_rows(rng, 5000)
    write_reference(tmp_path / "ref.csv", ref)
    rows = binary_rows(rng, 5000, sharpen=0.3)  # underconfident: worse AUC? same ranking
    rows.pred = (rng.random(len(rows.pred)) < 0.3).astype(int)  # a broken model
    got = run(write_config(tmp_path, "ref.csv"), binary_events(rows))
    assert got["gap:accuracy"] == pytest.approx(
        accuracy_score(rows.label, rows.pred) - accuracy_score(ref.label, ref.pred), rel=1e-9
    )
    assert got["gap:f1"] == pytest.approx(
        f1_score(rows.label, rows.pred) - f1_score(ref.label, ref.pred), rel=1e-9
    )
    floored_auc = roc_auc_score(ref.label, _floored(ref.score))
    assert got["roc_auc"] - got["gap:roc_auc"] == pytest.approx(floored_auc, rel=1e-9)
    assert got["gap:accuracy"] < -0.1


def test_without_output_columns_there_is_no_gap_or_output_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(26)
    write_reference(tmp_path / "ref.csv", binary_rows(rng, 2000), outputs=False)
    got = run(write_config(tmp_path, "ref.csv"), binary_events(binary_rows(rng, 3000)))
    assert not [k for k in got if k.startswith("gap:") or "__" in k]
    assert got["psi:x1"] is not None and got["estimated_accuracy"] is not None


def test_min_samples_hold_back_output_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(27)
    write_reference(tmp_path / "ref.csv", binary_rows(rng, 2000))
    config = write_config(tmp_path, "ref.csv", extra="drift_min_samples = 500")
    got = run(config, binary_events(binary_rows(rng, 499)))
    for key in ("psi:__score__", "chi2:__label__", "pca_error", "estimated_accuracy"):
        assert got[key] is None, key
    got = run(config, binary_events(binary_rows(rng, 500)))
    for key in ("psi:__score__", "chi2:__label__", "pca_error", "estimated_accuracy"):
        assert got[key] is not None and math.isfinite(got[key]), key


def _model(**extra: Any) -> dict[str, Any]:
    return {"models": [{"name": "m", "task": "binary", "positive_class": 1,
                        "windows": ["1h"], **extra}]}


def test_config_names_output_subjects_gap_and_estimates() -> None:
    ok = ["psi:__score__@1h", "chi2:__label__@1h", "js:__prediction__@1h", "gap:f1@1h",
          "estimated_f1@1h", "pca_error@1h"]
    for signal in ok:
        rule = {"name": "r", "signal": signal, "op": ">", "threshold": 0.1}
        config_from_mapping(_model(features={"x": "numeric"}, alerts=[rule]))
    for signal in ("gap:positive_rate@1h", "psi:__nope__@1h", "gap@1h"):
        rule = {"name": "r", "signal": signal, "op": ">", "threshold": 0.1}
        with pytest.raises(ConfigError):
            config_from_mapping(_model(alerts=[rule]))
    with pytest.raises(ConfigError, match="reserved"):
        config_from_mapping(_model(features={"__score__": "numeric"}))


def test_reference_metrics_become_relative_rule_references(tmp_path: Path) -> None:
    rng = np.random.default_rng(28)
    ref = binary_rows(rng, 3000)
    write_reference(tmp_path / "ref.csv", ref)
    engine = Pipeline(load_config(write_config(tmp_path, "ref.csv")))
    refs = Alerting(engine.config, engine.models).models["m"].references
    assert refs["accuracy@1h"][0] == pytest.approx(accuracy_score(ref.label, ref.pred))
