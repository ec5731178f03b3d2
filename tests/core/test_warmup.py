"""A drift profile built from the first panes of the stream (``reference_warmup``): the
same profile and signals whatever the partitioning, batching or a checkpoint in the middle,
and equal to scipy's statistics against the warmup sample."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from monitor.config import ConfigError, load_config
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from tests.core.outputs_stream import T0

PER_PANE = 1000  # events 0.01 s apart, 10 s panes


def _config(tmp: Path, extra: str = "") -> Path:
    path = tmp / "monitor.toml"
    path.write_text(
        f"""
[time]
pane = "10s"
allowed_lateness = "20s"
[[models]]
name = "m"
task = "binary"
positive_class = 1
windows = ["all", "1m"]
features = {{ x = "numeric", y = "numeric", c = "categorical" }}
reference_warmup = 2500
drift_bins = 10
max_categories = 3
detectors = []
{extra}
"""
    )
    return path


def _events(n: int, seed: int = 0, shift_after: int = 10**9) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        drift = 1.0 if i >= shift_after else 0.0
        x = float(rng.normal(drift, 1.0))
        c = str(rng.choice(["a", "b", "c", "d", "e"], p=[0.4, 0.3, 0.15, 0.1, 0.05]))
        score = float(rng.random())
        out.append(
            {
                "prediction_id": f"p{i}",
                "model": "m",
                "ts": T0 + i * 0.01,
                "prediction": int(score > 0.5),
                "score": score,
                "label": int(rng.random() < score),
                "features": {"x": x, "y": 0.5 * x + float(rng.normal()), "c": c},
            }
        )
    return out


def _messages(events: list[dict[str, Any]], partitions: int) -> list[Message]:
    return [
        Message("predictions", i % partitions, i // partitions, None, json.dumps(e).encode())
        for i, e in enumerate(events)
    ]


def _run(config: Path, msgs: list[Message], batch: int, engine: Pipeline | None = None) -> Pipeline:
    engine = engine or Pipeline(load_config(config))
    for start in range(0, len(msgs), batch):
        engine.process(msgs[start : start + batch])
    return engine


def test_the_warmup_profile_does_not_depend_on_partitions_batches_or_checkpoints(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    events = _events(12_000, shift_after=6000)
    one = _run(config, _messages(events, 1), 5000).summary()
    three = _run(config, _messages(events, 3), 7).summary()
    msgs = _messages(events, 4)
    half = _run(config, msgs[:2600], 300)  # the warmup is in progress here
    assert half.models[0].warmup_target
    resumed = _run(config, msgs[2600:], 999, pickle.loads(pickle.dumps(half))).summary()
    for other in (three, resumed):
        for window in ("all", "1m"):
            got = other["models"]["m"]["windows"][window]
            want = one["models"]["m"]["windows"][window]
            assert set(got) == set(want)
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key
    assert one["models"]["m"]["windows"]["all"]["psi:x"] > 0.2  # the shift after 6000


def test_warmup_statistics_equal_scipy_against_the_first_panes(tmp_path: Path) -> None:
    config = _config(tmp_path)
    events = _events(10_000, seed=1, shift_after=5000)
    # Late predictions for a warmup pane, after it closed: in neither the profile nor the
    # histograms (they count in the data-quality rates of the all window only).
    late = _events(200, seed=9)
    for i, e in enumerate(late):
        e["prediction_id"] = f"late{i}"
        e["ts"] = T0 + 15.0
        e["features"]["x"] = 50.0
    engine = _run(config, _messages(events + late, 2), 1000)
    summary = engine.summary()["models"]["m"]["windows"]["all"]
    # 2,500 wanted, panes hold 1,000: the profile is the first three panes' predictions,
    # and only the predictions after them are histogrammed.
    first = [e["features"] for e in events[: 3 * PER_PANE]]
    rest = [e["features"] for e in events[3 * PER_PANE :]]
    profile = engine.models[0].profile
    assert profile is not None and profile.rows == 3 * PER_PANE
    ref_x = np.array([f["x"] for f in first])
    edges = np.unique(np.quantile(ref_x, np.linspace(0, 1, 11)))
    assert np.array_equal(profile.numeric["x"].edges, edges)
    x = np.array([f["x"] for f in rest])

    def hist(v: np.ndarray) -> np.ndarray:
        inner = np.histogram(v, edges)[0]
        return np.concatenate([[np.sum(v < edges[0])], inner, [np.sum(v > edges[-1])]])

    w, r = hist(x), hist(ref_x)
    assert summary["js:x"] == pytest.approx(jensenshannon(w / w.sum(), r / r.sum(), base=2))
    cats = ["a", "b", "c"]  # top 3 of the warmup, then other
    ref_c = [f["c"] for f in first]
    win_c = [f["c"] for f in rest]
    rc = np.array([ref_c.count(c) for c in cats] + [sum(c not in cats for c in ref_c)])
    wc = np.array([win_c.count(c) for c in cats] + [sum(c not in cats for c in win_c)])
    assert summary["js:c"] == pytest.approx(jensenshannon(wc / wc.sum(), rc / rc.sum(), base=2))
    # score drift against the warmup's scores, PCA against the warmup's
    assert summary["ks:__score__"] is not None and summary["ks:__score__"] < 0.05
    assert summary["pca_error"] is not None
    assert summary["missing_rate:x"] == 0.0  # data quality counted from the first event


def test_no_drift_before_the_warmup_completes(tmp_path: Path) -> None:
    engine = _run(_config(tmp_path), _messages(_events(2400), 1), 500)
    summary = engine.summary()["models"]["m"]["windows"]["all"]
    assert summary.get("psi:x") is None and summary.get("ks:__score__") is None
    assert summary["missing_rate:x"] == 0.0


def test_reference_and_warmup_are_exclusive(tmp_path: Path) -> None:
    config = _config(tmp_path, 'reference = "ref.csv"')
    with pytest.raises(ConfigError, match="reference_warmup"):
        load_config(config)


def test_warmup_is_taken_with_the_kafka_store(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config.write_text('[state]\nstore = "kafka"\n' + config.read_text())
    assert load_config(config).models[0].reference_warmup > 0
