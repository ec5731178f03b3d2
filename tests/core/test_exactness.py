"""Every metric of every window kind equals scikit-learn on the same events.

Random streams (hypothesis) of predictions and labels, spread over hours, split over
1-4 partitions, with random label delays, labels polled before or after their
predictions, random poll-batch boundaries and random allowed lateness, are fed to the
:class:`~monitor.core.engine.Engine`; ``summary()`` is then compared with scikit-learn
(labelled metrics) and numpy (prediction-side metrics) computed directly on the events:

- ``all``: every joined pair (every accepted prediction for prediction-side metrics);
- sliding ``1h``: pairs whose label time lies in the last 1 h of closed panes, that is in
  ``[end - 1h, end)`` with ``end`` the end of the last pane holding data;
- decay ``ewm30m``: every pair, with ``sample_weight = exp(-(end - t) * ln2 / 30 min)``.

Each partition's messages are in event-time order on each topic and every partition is
tracked from the start, so no event is ever late (asserted through ``counts.late``).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from monitor.config import canonical_class, config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

T0 = 1_700_000_000.0
LN2 = math.log(2.0)
SPAN_1H = 3600.0
HALF_LIFE = 1800.0
WINDOWS = ("all", "1h", "ewm30m")
SEGMENT_VALUES = ("US", "DE", "FR")
VERSIONS = ("", "v1", "v2")
TOL = 1e-9
EPS = float(np.finfo(np.float64).eps)  # scikit-learn's floor of |label| in MAPE

pytestmark = pytest.mark.filterwarnings("ignore")


# --------------------------------------------------------------------------- events
@dataclass
class Event:
    """One prediction and the fate of its label, with both the JSON values and codes."""

    model: str
    pid: str
    part: int
    ts: float
    pred_json: Any
    pred: float  # binary 0/1, multiclass index, regression value
    score: float  # NaN when the event carries none
    version: str
    country: str | None
    label_json: Any = None
    label: float = math.nan
    label_ts: float = math.nan
    inline: bool = False
    label_names_model: bool = False

    @property
    def labelled(self) -> bool:
        return not math.isnan(self.label_ts)


@dataclass
class ModelSpec:
    name: str
    task: str
    config: dict[str, Any]
    classes: tuple[str, ...] = ()  # canonical class names (multiclass)


BINARY_REPRS = {
    # positive class, (negative json, positive json) for predictions, same for labels
    "int": (1, (0, 1), (0.0, 1.0)),
    "bool": (True, (False, True), (0, 1)),
    "str": ("yes", ("no", "yes"), ("no", "yes")),
}


def binary_spec(name: str, repr_: str, bins: int) -> ModelSpec:
    positive = BINARY_REPRS[repr_][0]
    return ModelSpec(name, "binary", {
        "name": name, "task": "binary", "positive_class": positive, "windows": list(WINDOWS),
        "segments": ["country"], "score_bins": bins, "label_ttl": "30d",
    })


def multiclass_spec(name: str, classes: list[Any]) -> ModelSpec:
    return ModelSpec(name, "multiclass", {
        "name": name, "task": "multiclass", "classes": classes, "windows": list(WINDOWS),
        "segments": ["country"], "label_ttl": "30d",
    }, tuple(canonical_class(c) for c in classes))


def regression_spec(name: str) -> ModelSpec:
    return ModelSpec(name, "regression", {
        "name": name, "task": "regression", "windows": list(WINDOWS),
        "segments": ["country"], "label_ttl": "30d",
    })


def draw_events(rng: np.random.Generator, spec: ModelSpec, n: int, parts: int, span: float,
                max_delay: float, score_mode: str, bins: int, repr_: str = "int",
                labelled: float = 0.8, inline: float = 0.1) -> list[Event]:
    """``n`` predictions of one model with random times, partitions, values and labels."""
    ts = T0 + rng.uniform(0.0, span, n)
    if rng.random() < 0.3:  # some streams put many events on the same instants
        ts = np.round(ts / 60.0) * 60.0
    out = []
    skew = rng.dirichlet(np.ones(4))
    for i in range(n):
        version = VERSIONS[rng.integers(0, 3)]
        country = None if rng.random() < 0.15 else SEGMENT_VALUES[rng.integers(0, 3)]
        score = math.nan
        if spec.task == "binary":
            y = int(rng.random() < 0.4 + 0.3 * skew[0])
            if score_mode == "grid" or (score_mode == "mixed" and rng.random() < 0.7):
                u = min(max(rng.beta(1 + 2 * y, 3 - 2 * y), 0.0), 1.0)
                score = (math.floor(u * bins) + 0.5) / bins
            elif score_mode == "raw":
                score = float(min(max(rng.beta(1 + 2 * y, 3 - 2 * y), 1e-6), 1 - 1e-6))
            pred = int(score > 0.5) if not math.isnan(score) else int(rng.random() < 0.5)
            if rng.random() < 0.1:
                pred = 1 - pred
            negpos_pred, negpos_label = BINARY_REPRS[repr_][1], BINARY_REPRS[repr_][2]
            pred_json, label_json = negpos_pred[pred], negpos_label[y]
            pred_code, label_code = float(pred), float(y)
        elif spec.task == "multiclass":
            k = len(spec.classes)
            raw = spec.config["classes"]
            probs = skew[:k] / skew[:k].sum()
            y = int(rng.choice(k, p=probs))
            pred = y if rng.random() < 0.6 else int(rng.integers(0, k))
            pred_json, label_json = raw[pred], raw[y]
            if isinstance(label_json, int) and rng.random() < 0.5:
                label_json = float(label_json)  # 2.0 is the class 2
            pred_code, label_code = float(pred), float(y)
        else:
            offset = float(rng.uniform(-10, 10))
            label_code = float(np.round(offset + rng.normal(0.0, 3.0), 3))
            if rng.random() < 0.05:
                label_code = 0.0  # MAPE's epsilon floor
            pred_code = float(label_code + rng.normal(0.2, 1.0))
            label_json, pred_json = label_code, pred_code
        ev = Event(spec.name, f"{spec.name}-{i}", int(rng.integers(0, parts)), float(ts[i]),
                   pred_json, pred_code, score, version, country)
        r = rng.random()
        if r < inline:
            ev.inline = True
            ev.label_json, ev.label, ev.label_ts = label_json, label_code, ev.ts
        elif r < labelled:
            delay = 0.0 if rng.random() < 0.1 else float(rng.exponential(max_delay / 3 + 1e-3))
            ev.label_json, ev.label = label_json, label_code
            ev.label_ts = ev.ts + min(delay, max_delay)
            ev.label_names_model = bool(rng.random() < 0.5)
        out.append(ev)
    return out


def prediction_json(ev: Event) -> bytes:
    body: dict[str, Any] = {"prediction_id": ev.pid, "model": ev.model, "ts": ev.ts,
                            "prediction": ev.pred_json}
    if ev.version:
        body["model_version"] = ev.version
    if not math.isnan(ev.score):
        body["score"] = ev.score
    if ev.country is not None:
        body["segment"] = {"country": ev.country, "unwatched": "x"}
    if ev.inline:
        body["label"] = ev.label_json
    return json.dumps(body).encode()


def label_json(ev: Event) -> bytes:
    body: dict[str, Any] = {"prediction_id": ev.pid, "label": ev.label_json, "ts": ev.label_ts}
    if ev.label_names_model:
        body["model"] = ev.model
    return json.dumps(body).encode()


def messages(rng: np.random.Generator, events: list[Event], parts: int) -> list[Message]:
    """Every partition's predictions and labels in event-time order, queues merged at random."""
    queues: list[list[tuple[float, str, bytes]]] = []
    for p in range(parts):
        preds = sorted((e.ts, e.pid, prediction_json(e)) for e in events if e.part == p)
        labels = sorted((e.label_ts, e.pid, label_json(e)) for e in events
                        if e.part == p and e.labelled and not e.inline)
        queues += [preds, labels]
    topics = ["predictions", "labels"] * parts
    heads = [0] * len(queues)
    out = []
    while True:
        live = [q for q in range(len(queues)) if heads[q] < len(queues[q])]
        if not live:
            return out
        q = live[int(rng.integers(0, len(live)))]
        take = int(rng.integers(1, 6))
        for _ in range(take):
            if heads[q] >= len(queues[q]):
                break
            out.append(Message(topics[q], q // 2, heads[q], None, queues[q][heads[q]][2]))
            heads[q] += 1


def run_engine(rng: np.random.Generator, specs: list[ModelSpec], events: list[Event],
               parts: int, pane: str, lateness: str) -> tuple[Pipeline, dict[str, Any]]:
    cfg = config_from_mapping({"time": {"pane": pane, "allowed_lateness": lateness},
                               "models": [s.config for s in specs]})
    engine = Pipeline(cfg)
    engine.track([(t, p) for t in ("predictions", "labels") for p in range(parts)])
    msgs = messages(rng, events, parts)
    k = 0
    while k < len(msgs):
        size = int(rng.integers(1, max(2, len(msgs) // 3) + 1))
        rejects = engine.process(msgs[k:k + size])
        assert rejects == [], [(r.reason, r.detail) for r in rejects[:3]]
        k += size
    return engine, engine.summary()


# --------------------------------------------------------------------------- references
def _nan_dict(names: list[str]) -> dict[str, float]:
    return dict.fromkeys(names, math.nan)


BINARY_LABELLED = ["accuracy", "precision", "recall", "f1", "specificity", "balanced_accuracy",
                   "mcc", "log_loss", "brier", "roc_auc", "roc_auc_bin_error", "pr_auc"]


def ref_binary(y: np.ndarray, p: np.ndarray, s: np.ndarray, w: np.ndarray, bins: int,
               grid: bool) -> dict[str, float]:
    if len(y) == 0:
        return _nan_dict(BINARY_LABELLED)
    out = {
        "accuracy": skm.accuracy_score(y, p, sample_weight=w),
        "precision": skm.precision_score(y, p, zero_division=0, sample_weight=w),
        "recall": skm.recall_score(y, p, zero_division=0, sample_weight=w),
        "f1": skm.f1_score(y, p, zero_division=0, sample_weight=w),
        "specificity": skm.recall_score(y, p, pos_label=0, zero_division=0, sample_weight=w),
        "balanced_accuracy": skm.balanced_accuracy_score(y, p, sample_weight=w),
        "mcc": skm.matthews_corrcoef(y, p, sample_weight=w),
    }
    has = ~np.isnan(s)
    ys, ss, ws = y[has], s[has], w[has]
    out.update(_nan_dict(["log_loss", "brier", "roc_auc", "roc_auc_bin_error", "pr_auc"]))
    if has.any():
        out["log_loss"] = skm.log_loss(ys, ss, labels=[0, 1], sample_weight=ws)
        out["brier"] = skm.brier_score_loss(ys, ss, sample_weight=ws, pos_label=1, labels=[0, 1])
        if len(np.unique(ys)) == 2:
            out["roc_auc"] = skm.roc_auc_score(ys, ss, sample_weight=ws)
            b = np.clip(np.floor(ss * bins).astype(int), 0, bins - 1)
            pos = np.bincount(b, weights=ws * (ys == 1), minlength=bins)
            neg = np.bincount(b, weights=ws * (ys == 0), minlength=bins)
            out["roc_auc_bin_error"] = 0.5 * float((pos * neg).sum()) / (pos.sum() * neg.sum())
        if (ys == 1).any():
            out["pr_auc"] = skm.average_precision_score(ys, ss, sample_weight=ws)
        if not grid:
            # Against raw scores AUC/AP are checked separately (bound, floored scores).
            out["raw_scores"] = ss  # type: ignore[assignment]
            out["raw_labels"] = ys  # type: ignore[assignment]
            out["raw_weights"] = ws  # type: ignore[assignment]
    return out


def ref_multiclass(y: np.ndarray, p: np.ndarray, w: np.ndarray,
                   classes: tuple[str, ...]) -> dict[str, float]:
    names = ["accuracy", "mcc"] + [f"{a}_{m}" for a in ("macro", "micro", "weighted")
                                   for m in ("precision", "recall", "f1")]
    names += [f"class_recall:{c}" for c in classes]
    if len(y) == 0:
        return _nan_dict(names)
    out = {"accuracy": skm.accuracy_score(y, p, sample_weight=w),
           "mcc": skm.matthews_corrcoef(y, p, sample_weight=w)}
    for avg in ("macro", "micro", "weighted"):
        out[f"{avg}_precision"] = skm.precision_score(y, p, average=avg, zero_division=0,
                                                      sample_weight=w)
        out[f"{avg}_recall"] = skm.recall_score(y, p, average=avg, zero_division=0,
                                                sample_weight=w)
        out[f"{avg}_f1"] = skm.f1_score(y, p, average=avg, zero_division=0, sample_weight=w)
    per_class = skm.recall_score(y, p, labels=list(range(len(classes))), average=None,
                                 zero_division=0, sample_weight=w)
    for i, c in enumerate(classes):
        out[f"class_recall:{c}"] = float(per_class[i]) if (y == i).any() else math.nan
    return out


def ref_regression(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict[str, float]:
    names = ["mae", "rmse", "mape", "r2", "mean_error"]
    if len(y) == 0:
        return _nan_dict(names)
    return {
        "mae": skm.mean_absolute_error(y, p, sample_weight=w),
        "rmse": skm.root_mean_squared_error(y, p, sample_weight=w),
        "mape": skm.mean_absolute_percentage_error(y, p, sample_weight=w),
        "r2": skm.r2_score(y, p, sample_weight=w),
        "mean_error": float(np.average(p - y, weights=w)),
    }


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    return float((x * w).sum() / w.sum()) if len(x) and w.sum() > 0 else math.nan


def ref_unlabelled(spec: ModelSpec, ev: list[Event], w: np.ndarray) -> dict[str, float]:
    """Prediction-side metrics with weights ``w`` (0/1 for sliding windows)."""
    keep = w > 0
    w = w[keep]
    pred = np.array([e.pred for e in ev], dtype=float)[keep]
    out = {"prediction_count": float(w.sum())}
    if spec.task == "binary":
        score = np.array([e.score for e in ev], dtype=float)[keep]
        has = ~np.isnan(score)
        out["positive_rate"] = _wmean(pred, w)
        out["score_mean"] = _wmean(score[has], w[has])
    elif spec.task == "multiclass":
        for i, c in enumerate(spec.classes):
            out[f"class_share:{c}"] = _wmean((pred == i).astype(float), w)
    else:
        out["prediction_mean"] = _wmean(pred, w)
    return out


def window_weights(times: np.ndarray, pane: float, end_pane: int, window: str) -> np.ndarray:
    """Weight of each event in a window at the end: 1/0 (all, sliding) or the decay."""
    if window == "all":
        return np.ones(len(times))
    end = (end_pane + 1) * pane
    if window == "1h":
        n = round(SPAN_1H / pane)
        return (np.floor(times / pane) > end_pane - n).astype(float)
    return np.exp(-(end - times) * LN2 / HALF_LIFE)


def expected(spec: ModelSpec, events: list[Event], subset: np.ndarray, pane: float,
             end_pane: int, bins: int, grid: bool) -> dict[str, dict[str, float]]:
    """Expected metrics of one slice (``subset`` of ``events``) in every window."""
    ev = [e for e, keep in zip(events, subset, strict=True) if keep]
    joined = [e for e in ev if e.labelled]
    y = np.array([e.label for e in joined], dtype=float)
    p = np.array([e.pred for e in joined], dtype=float)
    s = np.array([e.score for e in joined], dtype=float)
    lts = np.array([e.label_ts for e in joined], dtype=float)
    pts = np.array([e.ts for e in ev], dtype=float)
    out = {}
    for window in WINDOWS:
        w = window_weights(lts, pane, end_pane, window)
        keep = w > 0
        yi, pi, si, wi = y[keep].astype(int), p[keep], s[keep], w[keep]
        if spec.task == "binary":
            vals = ref_binary(yi, pi.astype(int), si, wi, bins, grid)
        elif spec.task == "multiclass":
            vals = ref_multiclass(yi, pi.astype(int), wi, spec.classes)
        else:
            vals = ref_regression(y[keep], pi, wi)
        vals.update(ref_unlabelled(spec, ev, window_weights(pts, pane, end_pane, window)))
        vals["label_count"] = float(wi.sum())  # joined in the window / predictions in it
        count = vals["prediction_count"]
        vals["label_coverage"] = min(vals["label_count"] / count, 1.0) if count > 0 else math.nan
        out[window] = vals
    return out


def _close(actual: float | None, want: float) -> bool:
    if want is None or math.isnan(want):
        return actual is None
    return actual is not None and math.isclose(actual, want, rel_tol=TOL, abs_tol=TOL)


def compare(summary: dict[str, Any], spec: ModelSpec, events: list[Event], pane: float,
            bins: int, grid: bool) -> list[str]:
    """Every mismatch between the engine's summary and the references, as text."""
    mine = [e for e in events if e.model == spec.name]
    if not mine:
        return []
    # Panes close for every model at once: the end is that of the last pane of any model.
    times = [e.ts for e in events] + [e.label_ts for e in events if e.labelled]
    end_pane = math.floor(max(times) / pane)
    model = summary["models"][spec.name]
    slices: dict[str, np.ndarray] = {"": np.ones(len(mine), bool)}
    for v in VERSIONS[1:]:
        slices[f"version={v}"] = np.array([e.version == v for e in mine])
    for c in SEGMENT_VALUES:
        slices[f"segment:country={c}"] = np.array([e.country == c for e in mine])
    problems = []
    seen = {k for k, mask in slices.items() if k and mask.any()}
    if set(model["slices"]) != seen:
        problems.append(f"slices {sorted(model['slices'])} != {sorted(seen)}")
    for key, mask in slices.items():
        if key and not mask.any():
            continue
        got = model["windows"] if key == "" else model["slices"].get(key)
        if got is None:
            continue
        want = expected(spec, mine, mask, pane, end_pane, bins, grid)
        for window in WINDOWS:
            w_got, w_want = got[window], dict(want[window])
            raw = {k: w_want.pop(k) for k in ("raw_scores", "raw_labels", "raw_weights")
                   if k in w_want}
            if raw:
                problems += check_raw_auc(key, window, w_got, raw, bins)
                w_want.pop("roc_auc"), w_want.pop("pr_auc"), w_want.pop("roc_auc_bin_error")
                w_got = {k: v for k, v in w_got.items()
                         if k not in ("roc_auc", "pr_auc", "roc_auc_bin_error")}
            # concept-drift detectors are checked against river in test_detectors.py, the
            # label-free estimates in test_estimate.py
            w_got = {k: v for k, v in w_got.items()
                     if not k.startswith(("adwin:", "cusum:", "estimated_"))}
            if set(w_got) != set(w_want):
                problems.append(f"[{key or 'model'}][{window}] metric names "
                                f"{sorted(set(w_got) ^ set(w_want))} differ")
            for metric, value in w_want.items():
                if not _close(w_got.get(metric), value):
                    problems.append(f"[{key or 'model'}][{window}] {metric}: engine "
                                    f"{w_got.get(metric)!r}, expected {value!r}")
    return problems


def check_raw_auc(key: str, window: str, got: dict[str, Any], raw: dict[str, np.ndarray],
                  bins: int) -> list[str]:
    """Raw scores: AUC within the reported bound; AUC and AP exact on floored scores."""
    y, s, w = raw["raw_labels"], raw["raw_scores"], raw["raw_weights"]
    out = []
    floored = np.floor(s * bins) / bins
    if len(np.unique(y)) == 2:
        exact = skm.roc_auc_score(y, s, sample_weight=w)
        auc, bound = got["roc_auc"], got["roc_auc_bin_error"]
        if auc is None or bound is None or abs(auc - exact) > bound + 1e-12:
            out.append(f"[{key}][{window}] roc_auc {auc} vs sklearn {exact}: beyond bound {bound}")
        on_grid = skm.roc_auc_score(y, floored, sample_weight=w)
        if not _close(auc, on_grid):
            out.append(f"[{key}][{window}] roc_auc {auc} != sklearn on floored scores {on_grid}")
    elif got["roc_auc"] is not None:
        out.append(f"[{key}][{window}] roc_auc of a one-class window is {got['roc_auc']}")
    if (y == 1).any():
        ap = skm.average_precision_score(y, floored, sample_weight=w)
        if not _close(got["pr_auc"], ap):
            out.append(f"[{key}][{window}] pr_auc {got['pr_auc']} != sklearn on floored {ap}")
    return out


def check_counters(summary: dict[str, Any], spec: ModelSpec, events: list[Event]) -> list[str]:
    """The cumulative additive counters of the whole model (window ``all``)."""
    mine = [e for e in events if e.model == spec.name]
    joined = [e for e in mine if e.labelled]
    y = np.array([e.label for e in joined], dtype=float)
    p = np.array([e.pred for e in joined], dtype=float)
    want: dict[str, float] = {"predictions": len(mine), "joined": len(joined)}
    if spec.task == "binary":
        s = np.array([e.score for e in joined], dtype=float)
        has = ~np.isnan(s)
        want.update(tp=float(((y == 1) & (p == 1)).sum()), fp=float(((y == 0) & (p == 1)).sum()),
                    tn=float(((y == 0) & (p == 0)).sum()), fn=float(((y == 1) & (p == 0)).sum()),
                    scored_n=float(has.sum()),
                    brier_sum=float(((s[has] - y[has]) ** 2).sum()),
                    score_sum=float(np.nansum([e.score for e in mine])))
        want["log_loss_sum"] = (skm.log_loss(y[has], s[has], labels=[0, 1], normalize=False)
                                if has.any() else 0.0)
    elif spec.task == "multiclass":
        for i, t in enumerate(spec.classes):
            for j, q in enumerate(spec.classes):
                want[f"confusion:{t}:{q}"] = float(((y == i) & (p == j)).sum())
    else:
        err = p - y
        want.update(error_sum=float(err.sum()), abs_error_sum=float(np.abs(err).sum()),
                    squared_error_sum=float((err**2).sum()), label_sum=float(y.sum()),
                    ape_sum=float((np.abs(err) / np.maximum(np.abs(y), EPS)).sum()),
                    pred_sum=float(sum(e.pred for e in mine)))
    got = summary["models"][spec.name]["counters"]
    problems = [f"counters {sorted(set(got) ^ set(want))} differ"] if set(got) != set(want) else []
    for key, value in want.items():
        if not _close(got.get(key), value):
            problems.append(f"counter {key}: engine {got.get(key)!r}, expected {value!r}")
    return problems


def check_counts(summary: dict[str, Any], specs: list[ModelSpec], events: list[Event]) -> None:
    for spec in specs:
        mine = [e for e in events if e.model == spec.name]
        counts = summary["models"][spec.name]["counts"]
        labelled = sum(e.labelled for e in mine)
        assert counts["late"] == 0
        assert counts["predictions"] == len(mine)
        assert counts["matched"] == labelled
        assert counts["labels"] == labelled  # inline labels count as labels too
        assert counts["pending"] == len(mine) - labelled
        for name in ("expired", "evicted", "orphan_labels", "duplicate_labels",
                     "duplicate_predictions", "early_labels_evicted", "early_labels_pending"):
            assert counts[name] == 0, name
    assert summary["rejects"] == {}


# --------------------------------------------------------------------------- properties
stream_params = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(1, 400),
    "parts": st.integers(1, 4),
    "span": st.sampled_from([0.0, 600.0, 3000.0, 2 * 3600.0, 5 * 3600.0]),
    "max_delay": st.sampled_from([0.0, 30.0, 1800.0, 3 * 3600.0]),
    "pane": st.sampled_from(["10s", "1m", "5m", "15m"]),
    "lateness": st.sampled_from(["0s", "30s", "10m"]),
    "labelled": st.sampled_from([1.0, 0.8, 0.3]),
})

# No shrinking: a failure lists every mismatch of the example (and its seed), and shrinking
# a stream of hundreds of events would take minutes.
SETTINGS = settings(max_examples=15, deadline=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _run_one(params: dict[str, Any], specs: list[ModelSpec], score_mode: str, bins: int,
             repr_: str = "int") -> None:
    rng = np.random.default_rng(params["seed"])
    events: list[Event] = []
    for spec in specs:
        events += draw_events(rng, spec, params["n"], params["parts"], params["span"],
                              params["max_delay"], score_mode, bins, repr_,
                              labelled=params["labelled"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _engine, summary = run_engine(rng, specs, events, params["parts"], params["pane"],
                                      params["lateness"])
        check_counts(summary, specs, events)
        pane = float(params["pane"][:-1]) * (60.0 if params["pane"].endswith("m") else 1.0)
        problems = []
        for spec in specs:
            problems += compare(summary, spec, events, pane, bins, score_mode != "raw")
            problems += check_counters(summary, spec, events)
    assert not problems, "\n".join(problems[:40])


@SETTINGS
@given(params=stream_params, bins=st.sampled_from([10, 64, 200]),
       repr_=st.sampled_from(sorted(BINARY_REPRS)))
def test_binary_grid_scores_equal_sklearn(params: dict[str, Any], bins: int, repr_: str) -> None:
    _run_one(params, [binary_spec("b", repr_, bins)], "grid", bins, repr_)


@SETTINGS
@given(params=stream_params, repr_=st.sampled_from(sorted(BINARY_REPRS)))
def test_binary_without_scores_equal_sklearn(params: dict[str, Any], repr_: str) -> None:
    _run_one(params, [binary_spec("b", repr_, 50)], "none", 50, repr_)


@settings(SETTINGS, max_examples=10)
@given(params=stream_params)
def test_binary_some_scores_missing_equal_sklearn(params: dict[str, Any]) -> None:
    _run_one(params, [binary_spec("b", "int", 20)], "mixed", 20)


@settings(SETTINGS, max_examples=12)
@given(params=stream_params, bins=st.sampled_from([10, 100, 1000]))
def test_binary_raw_scores_auc_within_reported_bound(params: dict[str, Any], bins: int) -> None:
    _run_one(params, [binary_spec("b", "int", bins)], "raw", bins)


@SETTINGS
@given(params=stream_params,
       classes=st.sampled_from([["cat", "dog", "bird"], [0, 1, 2, 3], ["a", "b", "c", "d"]]))
def test_multiclass_equal_sklearn(params: dict[str, Any], classes: list[Any]) -> None:
    _run_one(params, [multiclass_spec("mc", classes)], "none", 50)


@SETTINGS
@given(params=stream_params)
def test_regression_equal_sklearn(params: dict[str, Any]) -> None:
    _run_one(params, [regression_spec("reg")], "none", 50)


@settings(SETTINGS, max_examples=6)
@given(params=stream_params)
def test_three_models_in_one_stream_each_equal_sklearn(params: dict[str, Any]) -> None:
    """Models sharing partitions and batches do not disturb one another."""
    specs = [binary_spec("b", "str", 40), multiclass_spec("mc", ["x", "y", "z"]),
             regression_spec("reg")]
    _run_one(params, specs, "grid", 40, "str")


def test_empty_windows_are_none_and_one_class_auc_is_none() -> None:
    """Sliding window with no pairs: every labelled metric None; one-class: roc_auc None."""
    cfg = config_from_mapping({"time": {"pane": "10s", "allowed_lateness": "0s"}, "models": [
        {"name": "b", "task": "binary", "positive_class": 1, "windows": list(WINDOWS)}]})
    engine = Pipeline(cfg)
    msgs = []
    for i in range(5):  # one-class pairs, long before the end
        body = {"prediction_id": f"p{i}", "model": "b", "ts": T0 + i, "prediction": i % 2,
                "score": 0.25 + 0.1 * i, "label": 1}
        msgs.append(Message("predictions", 0, i, None, json.dumps(body).encode()))
    body = {"prediction_id": "late-unlabelled", "model": "b", "ts": T0 + 3 * 3600.0,
            "prediction": 1, "score": 0.9}
    msgs.append(Message("predictions", 0, 5, None, json.dumps(body).encode()))
    assert engine.process(msgs) == []
    windows = engine.summary()["models"]["b"]["windows"]
    for metric in BINARY_LABELLED:
        assert windows["1h"][metric] is None, metric
    assert windows["1h"]["prediction_count"] == 1.0
    assert windows["1h"]["score_mean"] == 0.9
    assert windows["all"]["roc_auc"] is None and windows["ewm30m"]["roc_auc"] is None
    assert windows["all"]["roc_auc_bin_error"] is None
    assert windows["all"]["accuracy"] == 0.4
    assert windows["all"]["pr_auc"] == 1.0  # all positives: AP is 1 as in sklearn


def test_regression_r2_in_decay_window_with_small_total_weight() -> None:
    """r2 is defined by the number of samples (>= 2), not by their total decayed weight.

    Three pairs 5 h before the end: their ewm30m weights are 2**-10 each, so the decayed
    ``n`` is < 2 but scikit-learn's r2_score(sample_weight=w) is still a number.
    """
    cfg = config_from_mapping({"time": {"pane": "10s", "allowed_lateness": "0s"}, "models": [
        {"name": "r", "task": "regression", "windows": ["all", "ewm30m"]}]})
    engine = Pipeline(cfg)
    rows = [(1.0, 1.5), (2.0, 2.0), (3.0, 2.5)]
    msgs = []
    for i, (label, pred) in enumerate(rows):
        body = {"prediction_id": f"p{i}", "model": "r", "ts": T0, "prediction": pred,
                "label": label}
        msgs.append(Message("predictions", 0, i, None, json.dumps(body).encode()))
    body = {"prediction_id": "later", "model": "r", "ts": T0 + 5 * 3600.0 - 10, "prediction": 0.0}
    msgs.append(Message("predictions", 0, 3, None, json.dumps(body).encode()))
    assert engine.process(msgs) == []
    windows = engine.summary()["models"]["r"]["windows"]
    y, p = [r[0] for r in rows], [r[1] for r in rows]
    w = [2.0 ** -10] * 3
    assert windows["all"]["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-12)
    assert windows["ewm30m"]["r2"] == pytest.approx(skm.r2_score(y, p, sample_weight=w),
                                                    rel=1e-9)


def test_slices_past_their_cap_fold_into_other() -> None:
    """Versions and segment values past their caps share ``__other__``, whose metrics are
    scikit-learn's on exactly the folded events."""
    cfg = config_from_mapping({"time": {"pane": "10s", "allowed_lateness": "0s"}, "models": [
        {"name": "b", "task": "binary", "positive_class": 1, "windows": ["all"],
         "max_versions": 2, "segments": ["c"], "max_segment_values": 1}]})
    engine = Pipeline(cfg)
    rows = [("v1", "x", 1, 1), ("v2", "y", 1, 0), ("v3", "z", 0, 0), ("v4", "x", 1, 1),
            ("v3", "w", 1, 0), ("v1", "x", 0, 0), ("v4", "y", 0, 1)]
    msgs = [Message("predictions", 0, i, None, json.dumps({
        "prediction_id": f"p{i}", "model": "b", "ts": T0 + i, "prediction": p, "label": y,
        "model_version": v, "segment": {"c": c}}).encode()) for i, (v, c, p, y) in enumerate(rows)]
    assert engine.process(msgs) == []
    model = engine.summary()["models"]["b"]
    assert set(model["slices"]) == {"version=v1", "version=v2", "version=__other__",
                                    "segment:c=x", "segment:c=__other__"}
    groups = {"version=__other__": lambda r: r[0] in ("v3", "v4"),
              "segment:c=__other__": lambda r: r[1] != "x", "version=v1": lambda r: r[0] == "v1"}
    for key, member in groups.items():
        sel = [r for r in rows if member(r)]
        y, p = [r[3] for r in sel], [r[2] for r in sel]
        got = model["slices"][key]["all"]
        assert got["prediction_count"] == len(sel)
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p), rel=1e-12)
        assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(y, p), abs=1e-12)
    assert model["folded"] == {"version": 4, "segment:c": 4}
