"""Label-free performance estimates (CBPE): exact against a per-event computation, and
tracking the realized metrics on calibrated and (with the calibration map) miscalibrated
streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from tests.core.outputs_stream import (
    binary_events,
    binary_rows,
    run,
    write_config,
    write_reference,
)

#: |estimate - realized| allowed on 20k events (about 3.5 standard errors of accuracy).
TOLERANCE = 0.015
NAMES = ("accuracy", "precision", "recall", "f1")


def _realized(rows: Any) -> dict[str, float]:
    y, p = rows.label, rows.pred
    return {
        "accuracy": accuracy_score(y, p),
        "precision": precision_score(y, p),
        "recall": recall_score(y, p),
        "f1": f1_score(y, p),
    }


def test_calibrated_scores_estimate_the_realized_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    rows = binary_rows(rng, 20_000)
    got = run(write_config(tmp_path, None), binary_events(rows))
    real = _realized(rows)
    for name in NAMES:
        assert got[f"estimated_{name}"] == pytest.approx(real[name], abs=TOLERANCE), name
    # the estimate itself, computed event by event: bin midpoints as probabilities
    c = (np.floor(rows.score * 200).clip(0, 199) + 0.5) / 200
    tp = np.sum(np.where(rows.pred == 1, c, 0.0))
    tn = np.sum(np.where(rows.pred == 0, 1.0 - c, 0.0))
    fp = np.sum(np.where(rows.pred == 1, 1.0 - c, 0.0))
    fn = np.sum(np.where(rows.pred == 0, c, 0.0))
    assert got["estimated_accuracy"] == pytest.approx((tp + tn) / len(c), rel=1e-12)
    assert got["estimated_precision"] == pytest.approx(tp / (tp + fp), rel=1e-12)
    assert got["estimated_recall"] == pytest.approx(tp / (tp + fn), rel=1e-12)
    assert got["estimated_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-12)


def test_the_calibration_map_corrects_overconfident_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    reference = binary_rows(rng, 20_000, sharpen=3.0)
    rows = binary_rows(rng, 20_000, sharpen=3.0)
    real = _realized(rows)
    raw = run(write_config(tmp_path, None), binary_events(rows, labelled=False))
    # trusting overconfident scores overstates accuracy
    assert raw["estimated_accuracy"] - real["accuracy"] > 3 * TOLERANCE
    write_reference(tmp_path / "ref.csv", reference)
    got = run(write_config(tmp_path, "ref.csv"), binary_events(rows, labelled=False))
    for name in NAMES:
        assert got[f"estimated_{name}"] == pytest.approx(real[name], abs=TOLERANCE), name
    assert got["accuracy"] is None  # no label reached the engine: the estimate stands alone


def test_estimates_follow_a_shift_that_labels_have_not_shown_yet(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    write_reference(tmp_path / "ref.csv", binary_rows(rng, 10_000))
    shifted = binary_rows(rng, 20_000, shift=1.0)  # more positives, easier cases
    got = run(write_config(tmp_path, "ref.csv"), binary_events(shifted, labelled=False))
    real = _realized(shifted)
    for name in NAMES:
        assert got[f"estimated_{name}"] == pytest.approx(real[name], abs=TOLERANCE), name


def test_multiclass_estimates_from_probabilities(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    n, classes = 20_000, np.array(["a", "b", "c"])
    logits = rng.normal(0.0, 1.5, (n, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    label = np.array([rng.choice(3, p=p) for p in probs])
    pred = probs.argmax(axis=1)
    events: list[dict[str, Any]] = [
        {
            "prediction": str(classes[pred[i]]),
            "label": str(classes[label[i]]),
            "probabilities": {str(c): float(probs[i, j]) for j, c in enumerate(classes)},
        }
        for i in range(n)
    ]
    events[0].pop("probabilities")  # an event without probabilities is not estimated
    got = run(write_config(tmp_path, None, task="multiclass"), events)
    # exact: the mean probability of the predicted class over the events that have one
    assert got["estimated_accuracy"] == pytest.approx(
        float(probs[np.arange(1, n), pred[1:]].mean()), rel=1e-12
    )
    expected_conf = np.zeros((3, 3))
    for true in range(3):
        np.add.at(expected_conf[true], pred[1:], probs[1:, true])
    diag = np.diag(expected_conf)
    macro_recall = float(np.mean(diag / expected_conf.sum(axis=1)))
    macro_precision = float(np.mean(diag / expected_conf.sum(axis=0)))
    assert got["estimated_recall"] == pytest.approx(macro_recall, rel=1e-9)
    assert got["estimated_precision"] == pytest.approx(macro_precision, rel=1e-9)
    assert got["estimated_accuracy"] == pytest.approx(accuracy_score(label, pred), abs=TOLERANCE)
    assert got["estimated_f1"] == pytest.approx(
        f1_score(label, pred, average="macro"), abs=TOLERANCE
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def test_multiclass_estimates_are_calibrated_per_class_on_the_reference(tmp_path: Path) -> None:
    """Probabilities three times too sharp: the estimates equal a computation with
    scikit-learn's IsotonicRegression fitted per class (one against the rest) on the
    reference rows, applied to the window's probabilities and renormalised; and they
    land nearer the realized metrics than the raw probabilities would."""
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(21)
    classes = ["a", "b", "c"]

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits = rng.normal(0.0, 1.0, (n, 3)) + np.array([0.3, 0.0, -0.3])
        true = _softmax(logits)
        label = np.array([rng.choice(3, p=p) for p in true])
        shown = np.round(_softmax(3.0 * logits), 4)  # overconfident, 4 decimals
        return shown, label, shown.argmax(axis=1)

    def rows(probs: np.ndarray, label: np.ndarray, pred: np.ndarray) -> list[dict[str, Any]]:
        return [
            {
                "prediction": classes[pred[i]],
                "label": classes[label[i]],
                "probabilities": {c: float(probs[i, j]) for j, c in enumerate(classes)},
                "features": {"x1": 0.0, "x2": float(i % 7)},
            }
            for i in range(len(label))
        ]

    ref_p, ref_y, ref_pred = sample(6000)
    (tmp_path / "ref.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows(ref_p, ref_y, ref_pred))
    )
    win_p, win_y, win_pred = sample(8000)
    events = rows(win_p, win_y, win_pred)
    got = run(write_config(tmp_path, "ref.jsonl", task="multiclass"), events)

    ref_norm = ref_p / ref_p.sum(axis=1, keepdims=True)
    win_norm = win_p / win_p.sum(axis=1, keepdims=True)
    calibrated = np.column_stack(
        [
            IsotonicRegression(out_of_bounds="clip")
            .fit(ref_norm[:, k], (ref_y == k).astype(float))
            .predict(win_norm[:, k])
            for k in range(3)
        ]
    )
    calibrated /= calibrated.sum(axis=1, keepdims=True)
    conf = np.zeros((3, 3))
    for true in range(3):
        np.add.at(conf[true], win_pred, calibrated[:, true])
    diag = np.diag(conf)
    expected = {
        "estimated_accuracy": diag.sum() / len(win_y),
        "estimated_recall": float(np.mean(diag / conf.sum(axis=1))),
        "estimated_precision": float(np.mean(diag / conf.sum(axis=0))),
        "estimated_f1": float(np.mean(2 * diag / (conf.sum(axis=1) + conf.sum(axis=0)))),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
    raw = float(win_norm[np.arange(len(win_y)), win_pred].mean())
    real = accuracy_score(win_y, win_pred)
    assert abs(got["estimated_accuracy"] - real) < abs(raw - real) - 0.05
    assert got["estimated_accuracy"] == pytest.approx(real, abs=0.03)
