"""The stacked pane computation against the per-window one.

:func:`~monitor.core.panemetrics.pane_signals` computes every signal once over the stacked
windows of a model; :func:`~monitor.core.metrics.compute_metrics` on each window's array
is the definition it must agree with (to 1e-12, NaN where it is NaN, same names in the same
order). The accumulators are random, with empty slices and zero denominators mixed in, for
each task, with a reference profile (feature and output drift, PCA) and a baseline
(label-free estimates, ``gap:`` signals) on.
"""

from __future__ import annotations

import gc
import json
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.config import MonitorConfig
from monitor.core.metrics import compute_metrics
from monitor.core.model import _ALWAYS, ModelState, _base
from monitor.core.model_stage import ModelStage
from monitor.core.panemetrics import pane_signals, plan_for
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

F64 = np.ndarray
MIN_SAMPLES = 40
CLASSES = ["cat", "dog", "bird"]
KINDS = ("a", "b", "c", "d", "e")


def _reference(
    path: Path, task: str, rng: np.random.Generator, rows: int = 600, heavy: float = 0.0
) -> None:
    """A reference CSV with 3 numeric features (one with 3 distinct values, so its
    histogram has fewer columns than the others), 1 categorical one and the outputs;
    ``heavy``: the share of binary scores that are all 0.5 (one score bin holding the
    mass of several drift groups)."""
    x = rng.normal(0.0, 1.0, (rows, 2))
    few = rng.integers(0, 3, rows)
    kind = rng.choice(KINDS, rows)
    head = "x0,x1,few,kind,prediction,label"
    if task == "binary":
        score = np.round(rng.random(rows), 3)
        score[rng.random(rows) < heavy] = 0.5
        pred, label = (score >= 0.5).astype(int), (rng.random(rows) < score).astype(int)
        head += ",score"
        extra = [f",{s}" for s in score.tolist()]
    elif task == "multiclass":
        pred = rng.choice(CLASSES, rows)
        label = np.where(rng.random(rows) < 0.7, pred, rng.choice(CLASSES, rows))
        extra = [""] * rows
    else:
        pred = np.round(x[:, 0] * 2.0 + rng.normal(0.0, 0.5, rows), 3)
        label = np.round(x[:, 0] * 2.0, 3)
        extra = [""] * rows
    lines = [head]
    for i in range(rows):
        lines.append(
            f"{x[i, 0]:.4f},{x[i, 1]:.4f},{few[i]},{kind[i]},{pred[i]},{label[i]}{extra[i]}"
        )
    path.write_text("\n".join(lines) + "\n")


def _config(task: str, reference: Path | None, metrics: list[str] | None = None) -> MonitorConfig:
    model: dict[str, Any] = {
        "name": "m",
        "task": task,
        "windows": ["all", "1h", "ewm30m"],
        "features": {"x0": "numeric", "x1": "numeric", "few": "numeric", "kind": "categorical"},
        "segments": ["region"],
        "drift_min_samples": MIN_SAMPLES,
        "score_bins": 50,
        "detectors": [],
    }
    if task == "binary":
        model["positive_class"] = 1
    if task == "multiclass":
        model["classes"] = CLASSES
    if reference is not None:
        model["reference"] = str(reference)
    if metrics is not None:
        model["metrics"] = metrics
    return MonitorConfig.model_validate({"time": {"pane": "10s"}, "models": [model]})


def _model(
    tmp_path: Path, task: str, with_reference: bool = True, heavy: float = 0.0
) -> ModelState:
    rng = np.random.default_rng(3)
    reference = tmp_path / "ref.csv" if with_reference else None
    if reference is not None:
        _reference(reference, task, rng, heavy=heavy)
    return ModelState(0, _config(task, reference).models[0], 10.0)


def _random_windows(model: ModelState, rows: int, seed: int) -> list[F64]:
    """Random sums for each window: counts (integers) for ``all`` and ``1h``, weights
    for ``ewm30m``; row 1 is empty, and each column is zero in a third of the rows. The
    columns are independent but for one constraint every real row meets: no more
    predicted positives than predictions (their difference is a class count)."""
    rng = np.random.default_rng(seed)
    width = model.layout.width
    out = []
    for decayed in (False, False, True):
        scale = rng.choice([1.0, 5.0, 30.0, 200.0], size=(rows, 1))
        acc = rng.poisson(scale, (rows, width)).astype(np.float64)
        if decayed:
            acc = acc * rng.uniform(0.2, 1.0, (rows, width))
        acc[rng.random((rows, width)) < 1 / 3] = 0.0
        if model.layout.task == "binary":  # predicted positives are some of the predictions
            pos, pred_n = model.layout.col("pred_pos"), model.layout.col("pred_n")
            acc[:, pos] = np.minimum(acc[:, pos], acc[:, pred_n])
        acc[1] = 0.0
        out.append(acc)
    return out


def _assert_same(expected: dict[str, F64], names: tuple[str, ...], got: F64) -> None:
    assert list(expected) == list(names)
    for i, name in enumerate(names):
        want = expected[name]
        assert got[i].shape == want.shape, name
        np.testing.assert_array_equal(np.isnan(got[i]), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12, err_msg=name)


def _compare(model: ModelState, seed: int, keep: Any = None) -> tuple[str, ...]:
    rows = 7
    windows = _random_windows(model, rows, seed)
    stack = np.concatenate(windows)
    rng = np.random.default_rng(seed + 1)
    closed = windows[0][:, model.layout.col("n")] + rng.integers(0, 3, rows)
    counts = [windows[0][:, model.layout.col("n")], windows[1][:, model.layout.col("n")], closed]
    names, values = pane_signals(
        model.layout,
        stack,
        model.class_names,
        np.concatenate(counts),
        MIN_SAMPLES,
        keep,
        None if keep is None else "subset",
    )
    assert values.shape == (len(names), 3 * rows)
    for w, (acc, count) in enumerate(zip(windows, counts, strict=True)):
        expected = compute_metrics(model.layout, acc, model.class_names, count, MIN_SAMPLES)
        if keep is not None:
            expected = {k: v for k, v in expected.items() if keep(k)}
        _assert_same(expected, names, values[:, w * rows : (w + 1) * rows])
    return names


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stacked_signals_equal_the_per_window_ones(tmp_path: Path, task: str, seed: int) -> None:
    model = _model(tmp_path, task)
    names = _compare(model, seed)
    # drift, estimates and gaps are all in
    assert "psi:few" in names and "chi2:kind" in names and "wasserstein:x0" in names
    assert "psi:__prediction__" in names and "psi:__label__" in names
    assert any(n.startswith("gap:") for n in names)
    if task == "binary":
        assert {"estimated_roc_auc", "wasserstein:__score__", "pr_auc", "mcc"} <= set(names)
    if task == "multiclass":
        assert "estimated_f1" in names and "class_recall:dog" in names


@pytest.mark.parametrize("seed", [7, 8])
def test_a_reference_score_bin_heavier_than_a_drift_group_leaves_empty_groups(
    tmp_path: Path, seed: int
) -> None:
    # 60 % of the reference scores in one bin: the drift groups it spans hold nothing,
    # in the reference and in every window, and the groups after it keep their places
    model = _model(tmp_path, "binary", heavy=0.6)
    names = _compare(model, seed)
    assert "psi:__score__" in names and "js:__score__" in names


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_stacked_signals_without_a_reference_equal_the_per_window_ones(
    tmp_path: Path, task: str
) -> None:
    names = _compare(_model(tmp_path, task, with_reference=False), 4)
    assert "missing_rate:x0" in names and not any(n.startswith("psi:") for n in names)


@pytest.mark.parametrize(
    "metrics",
    [
        ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"],
        ["mcc", "pr_auc"],
        ["balanced_accuracy"],
    ],
)
def test_a_metric_subset_gives_the_per_window_subset(tmp_path: Path, metrics: list[str]) -> None:
    model = _model(tmp_path, "binary")
    wanted = set(metrics)

    def keep(name: str) -> bool:
        return _base(name) in wanted or _base(name) in _ALWAYS

    names = _compare(model, 5, keep)
    assert {f"gap:{m}" for m in metrics} <= set(names)
    others = {"accuracy", "mcc", "pr_auc", "specificity", "brier"} - wanted
    assert not others & set(names)


def test_an_empty_slice_gives_nan_metrics_and_zero_counts(tmp_path: Path) -> None:
    model = _model(tmp_path, "binary")
    acc = np.zeros((2, model.layout.width))
    names, values = pane_signals(model.layout, acc, (), None, MIN_SAMPLES)
    got = dict(zip(names, values, strict=True))
    for name in ("accuracy", "precision", "roc_auc", "estimated_f1", "psi:x0", "gap:f1"):
        assert np.isnan(got[name]).all(), name
    assert (got["prediction_count"] == 0).all() and (got["label_count"] == 0).all()


def test_a_plan_is_kept_until_the_baseline_changes(tmp_path: Path) -> None:
    model = _model(tmp_path, "binary")
    layout = model.layout
    first = plan_for(layout, (), MIN_SAMPLES)
    assert plan_for(layout, (), MIN_SAMPLES) is first
    layout.baseline = None
    second = plan_for(layout, (), MIN_SAMPLES)
    assert second is not first
    assert "estimated_accuracy" in second.names and not any(
        n.startswith("gap:") for n in second.names
    )


def _per_window(stage: ModelStage) -> dict[str, dict[str, F64]]:
    """The pane computation of a model's stage 2, one window at a time (as it was made
    before the windows were stacked)."""
    out = {}
    model, w = stage.model, stage.windows
    sums: dict[str, F64] = {}
    sliding, decay = iter(w.sliding), iter(w.decay)
    for spec in model.windows:
        kind = spec.kind
        sums[spec.name] = w.cum if kind == "all" else next(sliding if kind == "sliding" else decay)
    closed = w.cum[:, model.layout.col("n")] - w.late_n
    for spec in model.windows:
        count = closed if spec.kind == "decay" else None
        values = compute_metrics(
            model.layout, sums[spec.name], model.class_names, count, MIN_SAMPLES
        )
        if model.metrics is not None:
            keep = set(model.metrics)
            values = {k: v for k, v in values.items() if _base(k) in keep or _base(k) in _ALWAYS}
        out[spec.name] = values
    return out


@pytest.mark.parametrize("metrics", [None, ["accuracy", "f1", "roc_auc"]])
def test_the_engine_emits_what_the_per_window_computation_gave(
    tmp_path: Path, metrics: list[str] | None
) -> None:
    rng = np.random.default_rng(9)
    _reference(tmp_path / "ref.csv", "binary", rng)
    engine = Pipeline(_config("binary", tmp_path / "ref.csv", metrics))
    t0 = 1_700_000_000.0
    msgs = []
    for i in range(3000):
        score = round(float(rng.random()), 3)
        event = {
            "prediction_id": f"p{i}",
            "model": "m",
            "ts": t0 + i,
            "prediction": int(score >= 0.5),
            "score": score,
            "features": {
                "x0": rng.normal(),
                "x1": rng.normal(),
                "few": int(rng.integers(3)),
                "kind": str(rng.choice(KINDS)),
            },
            "segment": {"region": str(rng.choice(["n", "s", "e"]))},
        }
        msgs.append(Message("predictions", 0, i, None, json.dumps(event).encode()))
        if i % 5:
            label = {"prediction_id": f"p{i}", "label": int(rng.random() < score), "ts": t0 + i}
            msgs.append(Message("labels", 0, i, None, json.dumps(label).encode()))
    for start in range(0, len(msgs), 500):
        engine.process(msgs[start : start + 500])
    stage = engine.stages["m"]
    model = stage.model
    assert engine.panes_closed > 100
    expected = _per_window(stage)
    got = stage.compute()
    assert list(got) == list(expected)
    for window, values in expected.items():
        names = tuple(got[window])
        _assert_same(values, names, np.array([got[window][n] for n in names]))
    assert model.last.keys() == got.keys()


def test_a_plan_does_not_keep_its_layout_alive(tmp_path: Path) -> None:
    model = _model(tmp_path, "binary")
    layout = model.layout
    plan_for(layout, (), MIN_SAMPLES)
    gone = weakref.ref(layout)
    del model, layout
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_empty_and_zero_rows_raise_no_numpy_warning(tmp_path: Path, task: str) -> None:
    model = _model(tmp_path, task)
    stack = np.concatenate([np.zeros((2, model.layout.width)), *_random_windows(model, 3, 6)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names, values = pane_signals(model.layout, stack, model.class_names, None, MIN_SAMPLES)
    assert np.isnan(values[:, :2]).any() and values.shape == (len(names), 11)


def _degenerate(model: ModelState, rows: int, seed: int) -> F64:
    """Random binary sums with rows of one kind each after the first 8: an empty row;
    labels of one class only (no negatives, then no positives); every prediction a
    positive (the predicted negatives' score histogram 0) and none; joined pairs but no
    scores (NaN scores are not binned); one score bin only; a single event."""
    lay = model.layout
    acc = _random_windows(model, rows, seed)[0]
    hist, pp = lay.cols("score_hist"), lay.cols("pp_hist")
    pos, neg = lay.cols("pos_hist"), lay.cols("neg_hist")
    acc[8] = 0.0
    acc[9, neg] = 0.0
    acc[9, [lay.col("fp"), lay.col("tn")]] = 0.0
    acc[10, pos] = 0.0
    acc[10, [lay.col("tp"), lay.col("fn")]] = 0.0
    acc[11, pp] = acc[11, hist]
    acc[12, pp] = 0.0
    acc[13, hist] = acc[13, pp] = acc[13, pos] = acc[13, neg] = 0.0
    acc[13, [lay.col("score_n"), lay.col("score_sum"), lay.col("scored_n")]] = 0.0
    for a in (hist, pp, pos, neg):
        acc[14, a] = 0.0
        acc[14, a.start + 7] = 50.0
    acc[15] = 0.0
    for name in ("pred_n", "n", "tp", "score_n", "scored_n"):
        acc[15, lay.col(name)] = 1.0
    acc[15, lay.col("pred_pos")] = 1.0
    for a in (hist, pp, pos):
        acc[15, a.start + 120 % lay.bins] = 1.0
    return acc


@pytest.mark.parametrize("seed", [11, 12])
def test_degenerate_and_many_rows_equal_the_per_row_definition(tmp_path: Path, seed: int) -> None:
    model = _model(tmp_path, "binary")
    acc = _degenerate(model, 60, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names, values = pane_signals(model.layout, acc, (), None, MIN_SAMPLES)
    expected = compute_metrics(model.layout, acc, (), None, MIN_SAMPLES)
    _assert_same(expected, names, values)
    got = dict(zip(names, values, strict=True))
    assert np.isnan(got["accuracy"][8]) and got["prediction_count"][8] == 0
    assert np.isnan(got["roc_auc"][9]) and np.isnan(got["roc_auc"][10])
    assert got["estimated_recall"][12] == 0.0 or np.isnan(got["estimated_recall"][12])


def test_a_panes_model_signals_are_its_windows_whole_model_values(tmp_path: Path) -> None:
    """The flat ``signal@window`` values of the last pane, made from the stacked array with
    names made once, are each window's whole-model row, the detectors' counts after each
    window's signals; ``model.last`` pickles as plain dicts."""
    import pickle

    rng = np.random.default_rng(4)
    _reference(tmp_path / "ref.csv", "binary", rng)
    config = _config("binary", tmp_path / "ref.csv").model_dump(mode="json")
    del config["models"][0]["detectors"]  # the default detectors
    engine = Pipeline(MonitorConfig.model_validate(config))
    t0 = 1_700_000_000.0
    msgs = []
    for i in range(1500):
        score = round(float(rng.random()), 3)
        event = {
            "prediction_id": f"p{i}", "model": "m", "ts": t0 + i, "score": score,
            "prediction": int(score >= 0.5),
            "features": {"x0": rng.normal(), "x1": rng.normal(), "few": int(rng.integers(3)),
                         "kind": str(rng.choice(KINDS))},
            "segment": {"region": str(rng.choice(["n", "s"]))},
        }  # fmt: skip
        msgs.append(Message("predictions", 0, i, None, json.dumps(event).encode()))
        label = {"prediction_id": f"p{i}", "label": int(rng.random() < score), "ts": t0 + i}
        msgs.append(Message("labels", 0, i, None, json.dumps(label).encode()))
    for start in range(0, len(msgs), 500):
        engine.process(msgs[start : start + 500])
    model = engine.models[0]
    last = engine.drain_signals()[-1].signals
    expected = {
        f"{metric}@{window}": float(v[0])
        for window, metrics in model.last.items()
        for metric, v in metrics.items()
    }
    assert list(last) == list(expected)
    assert model.detectors is not None and model.last_detections
    stream = model.detectors.stream
    for name in model.last_detections:
        assert last[f"{name}:{stream}@all"] == float(model.last_detections[name])
    for name, value in expected.items():
        assert (np.isnan(value) and np.isnan(last[name])) or last[name] == value
    copy = pickle.loads(pickle.dumps(model.last))
    assert type(copy) is dict and list(copy) == list(model.last)
    for window, metrics in model.last.items():
        assert list(copy[window]) == list(metrics)
        for name, values in metrics.items():
            np.testing.assert_array_equal(copy[window][name], values)
