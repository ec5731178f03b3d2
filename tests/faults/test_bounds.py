"""Bounded resources under a flood (issue item 6), on the core's state.

``bench/bounds.py`` runs in a subprocess (a clean RSS): labels for ids that never come,
predictions that never get labels, each of those with a distinct model version, segment
value and category value, and valid traffic mixed in. Here, at a CI size
(``MONITOR_BOUNDS_EVENTS`` per flood, default 150,000, caps 10,000), the run must show:

- memory flat at the caps: RSS after 100 % of the run within a stated margin of RSS after
  10 % (by then every cap is full; without the caps the buffers would grow ~10x more);
- every eviction and fold counted, exactly;
- a Prometheus exposition over the engine with the same, bounded, number of series at
  10 % and 100 %: slices at most ``1 + (max_versions + 1) + (max_segment_values + 1)``;
- the valid traffic's metrics equal to scikit-learn's on it, for the model and for each of
  its versions and regions.

The full sizes (10M, 10M, 1M distinct) are ``python bench/bounds.py`` (see its docstring).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

ROOT = Path(__file__).resolve().parents[2]
EVENTS = int(os.environ.get("MONITOR_BOUNDS_EVENTS", "150000"))
DISTINCT = max(EVENTS // 4, 100)
VALID = max(EVENTS // 20, 100)
CAP = 10_000
MAX_VERSIONS = 20
MAX_SEGMENT_VALUES = 50
#: Allowed RSS growth from 10 % to 100 % of the run: allocator noise and the valid
#: traffic's own bookkeeping (recently matched ids, the outcome lists kept for the
#: comparison). Without the caps, the 90 % of the flood still to come would add
#: ~0.9 * 2 * EVENTS entries to the buffers: ~80 MB at the CI size.
RSS_MARGIN = 16 << 20


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    argv = [
        sys.executable, str(ROOT / "bench" / "bounds.py"),
        "--labels", str(EVENTS), "--predictions", str(EVENTS), "--distinct", str(DISTINCT),
        "--valid", str(VALID), "--max-pending", str(CAP), "--max-early-labels", str(CAP),
        "--max-versions", str(MAX_VERSIONS), "--max-segment-values", str(MAX_SEGMENT_VALUES),
        "--batch", "20000",
    ]  # fmt: skip
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_memory_stays_flat_at_the_caps(run: dict[str, Any]) -> None:
    assert run["at_10"] >= 2 * CAP  # both buffers were full at the first measurement
    growth = run["rss_100"] - run["rss_10"]
    assert growth < RSS_MARGIN, (
        f"RSS grew {growth / 2**20:.1f} MiB from 10 % to 100 % of the run "
        f"({run['rss_10'] / 2**20:.0f} -> {run['rss_100'] / 2**20:.0f} MiB)"
    )


def _folds(flood: int, distinct: int, registered: int) -> int:
    """Flood events whose value was not among the first ``registered`` distinct ones: the
    value of flood event k is ``k % distinct``."""
    k = np.arange(flood)
    return int(np.count_nonzero(k % distinct >= registered))


def test_every_eviction_and_fold_is_counted(run: dict[str, Any]) -> None:
    counts = run["counts"]
    assert counts["predictions"] == EVENTS + VALID
    assert counts["labels"] == EVENTS + VALID
    assert counts["matched"] == VALID
    assert counts["pending"] == CAP and counts["early_labels_pending"] == CAP
    assert counts["evicted"] == EVENTS - CAP
    assert counts["early_labels_evicted"] == EVENTS - CAP
    assert counts["expired"] == counts["orphan_labels"] == counts["late"] == 0
    # the valid traffic registered v1, v2, eu and us first; the flood took the rest
    assert run["folded"] == {
        "version": _folds(EVENTS, DISTINCT, MAX_VERSIONS - 2),
        "segment:region": _folds(EVENTS, DISTINCT, MAX_SEGMENT_VALUES - 2),
    }
    versions = [s for s in run["slices"] if s.startswith("version=")]
    regions = [s for s in run["slices"] if s.startswith("segment:region=")]
    assert len(versions) == MAX_VERSIONS + 1 and "version=__other__" in versions
    assert len(regions) == MAX_SEGMENT_VALUES + 1 and "segment:region=__other__" in regions
    # categories never add state: the flood's are all in the reference's unseen bucket
    assert run["windows"]["unseen_rate:c"] == pytest.approx(EVENTS / (EVENTS + VALID), abs=1e-12)


def test_prometheus_series_stay_under_their_caps(run: dict[str, Any]) -> None:
    assert run["series_100"] == run["series_10"]
    slices = 1 + (MAX_VERSIONS + 1) + (MAX_SEGMENT_VALUES + 1)
    assert run["series_100"] < 30 * slices  # a few dozen series a slice, not one per value


def _expected(y: np.ndarray, p: np.ndarray, s: np.ndarray) -> dict[str, float]:
    tn, fp, _fn, _tp = skm.confusion_matrix(y, p, labels=[0, 1]).ravel()
    return {
        "accuracy": skm.accuracy_score(y, p),
        "precision": skm.precision_score(y, p, zero_division=0),
        "recall": skm.recall_score(y, p, zero_division=0),
        "f1": skm.f1_score(y, p, zero_division=0),
        "specificity": tn / (tn + fp),
        "balanced_accuracy": skm.balanced_accuracy_score(y, p),
        "mcc": skm.matthews_corrcoef(y, p),
        "log_loss": skm.log_loss(y, s, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, s),
        "label_count": float(len(y)),
    }


def test_valid_traffic_keeps_its_exact_metrics(run: dict[str, Any]) -> None:
    valid = run["valid"]
    y = np.array(valid["y_true"])
    p = np.array(valid["y_pred"])
    s = np.array(valid["score"])
    assert len(y) == VALID
    groups = {"model": np.ones(len(y), bool)}
    for name in ("v1", "v2"):
        groups[f"version={name}"] = np.array(valid["version"]) == name
    for name in ("eu", "us"):
        groups[f"segment:region={name}"] = np.array(valid["region"]) == name
    for group, mask in groups.items():
        got = run["windows"] if group == "model" else run["slice_windows"][group]
        for metric, want in _expected(y[mask], p[mask], s[mask]).items():
            assert got[metric] == pytest.approx(want, rel=1e-9, abs=1e-12), (group, metric)
