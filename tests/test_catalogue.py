"""The catalogue of signals is what the core computes, and what its consumers read."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import monitor
from monitor import catalogue
from monitor.catalogue import SIGNALS, TASKS, base_metric, computed_signals
from monitor.config import config_from_mapping
from monitor.core.layout import Layout
from monitor.core.metrics import compute_metrics

CLASSES = {"binary": ("0", "1"), "multiclass": ("cat", "dog", "eel"), "regression": ()}
T0 = 1_700_000_000


def _split(names: list[str]) -> tuple[set[str], dict[str, set[str]]]:
    """Names without a subject, and subject -> the names that carry it."""
    plain, subjects = set(), {}
    for name in names:
        head, _, subject = name.partition(":")
        if subject:
            subjects.setdefault(head, set()).add(subject)
        else:
            plain.add(head)
    return plain, subjects


@pytest.mark.parametrize("task", TASKS)
def test_compute_metrics_produces_exactly_the_catalogue_of_its_task(task: str) -> None:
    classes = CLASSES[task]
    layout = Layout(task, max(len(classes), 2))
    acc = np.random.default_rng(1).integers(1, 20, size=(2, layout.width)).astype(float)
    produced = list(compute_metrics(layout, acc, classes))
    plain, subjects = _split(produced)
    expected = computed_signals(task, features=False)
    with_class = {n for n in expected if SIGNALS[n].subject == "class"}
    assert plain == set(expected) - with_class
    assert subjects == {name: set(classes) for name in with_class}


def _events(task: str, n: int = 400) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    rng = random.Random(7)
    preds, labels = [], []
    for i in range(n):
        event: dict[str, object] = {
            "prediction_id": f"p{i}", "model": "m", "ts": T0 + i,
            "features": {"amount": rng.gauss(10 + (i > n // 2) * 5, 2),
                         "age": rng.gauss(40, 9), "country": rng.choice("abc")},
        }
        if task == "binary":
            score = rng.random()
            event |= {"prediction": int(score > 0.5), "score": score}
            label: object = int(rng.random() < score)
        elif task == "multiclass":
            probs = [rng.random() for _ in CLASSES[task]]
            total = sum(probs)
            event |= {"prediction": CLASSES[task][probs.index(max(probs))],
                      "probabilities": {c: p / total
                                        for c, p in zip(CLASSES[task], probs, strict=True)}}
            label = rng.choice(CLASSES[task])
        else:
            event |= {"prediction": rng.gauss(0, 1)}
            label = rng.gauss(0, 1)
        preds.append(event)
        labels.append({"prediction_id": f"p{i}", "label": label, "ts": T0 + i})
    return preds, labels


def _model(task: str) -> dict[str, object]:
    model: dict[str, object] = {
        "name": "m", "task": task, "windows": ["all"],
        "features": {"amount": "numeric", "age": "numeric", "country": "categorical"},
        "detectors": ["adwin"], "drift_min_samples": 10,
    }
    if task == "binary":
        model["positive_class"] = 1
    if task == "multiclass":
        model["classes"] = list(CLASSES[task])
    return model


@pytest.mark.parametrize("task", TASKS)
def test_every_signal_a_model_emits_is_in_the_catalogue_for_its_task(task: str) -> None:
    config = config_from_mapping({"time": {"pane": "10s"}, "models": [_model(task)]}, "t")
    preds, labels = _events(task)
    reference = preds[:200]
    result = monitor.evaluate(config, preds, labels, reference=[
        {**p["features"], "prediction": p["prediction"], "label": lab["label"],
         **({"score": p["score"]} if "score" in p else {})}
        for p, lab in zip(reference, labels[:200], strict=True)
    ])
    names = {k.rpartition("@")[0] for pane in result.panes for k in pane.signals}
    assert names, "no signal at all"
    for name in names:
        head, _, subject = name.partition(":")
        assert head in SIGNALS, f"{name!r} is not in the catalogue"
        signal = SIGNALS[head]
        assert task in signal.tasks, f"{name!r}: the catalogue does not give it to {task}"
        if signal.subject == "metric":
            assert base_metric(name) in catalogue.GAP_METRICS
        elif signal.subject:
            assert subject, f"{name!r} lacks its {signal.subject}"
        else:
            assert not subject, f"{name!r} takes no subject"
    plain = {n.partition(":")[0] for n in names}
    # everything the catalogue says a model of this task with features computes
    assert set(computed_signals(task, features=True)) <= plain
    assert {"psi", "missing_rate", "gap", "adwin"} <= plain


def test_a_multiclass_model_may_select_mcc_which_it_computes() -> None:
    model = _model("multiclass") | {"metrics": ["accuracy", "mcc"]}
    config = config_from_mapping({"models": [model]}, "t")
    assert config.models[0].metrics == ["accuracy", "mcc"]


@pytest.mark.parametrize("name", list(SIGNALS))
def test_every_entry_is_complete_and_consistent(name: str) -> None:
    signal = SIGNALS[name]
    assert signal.tasks and set(signal.tasks) <= set(TASKS)
    assert signal.kind in catalogue.KINDS
    assert signal.description.strip()
    if signal.threshold is not None:
        assert math.isfinite(signal.threshold) and signal.higher_is != "neither"
    if signal.part_of:
        assert SIGNALS[signal.part_of].kind == signal.kind


def test_the_derived_lists_are_the_catalogue_s() -> None:
    assert catalogue.TASK_METRICS["binary"][:4] == ("accuracy", "precision", "recall", "f1")
    assert "roc_auc_bin_error" not in catalogue.TASK_METRICS["binary"]  # follows roc_auc
    assert "mcc" in catalogue.TASK_METRICS["multiclass"]
    assert catalogue.DRIFT_STATISTICS == ("psi", "js", "wasserstein", "ks", "chi2")
    assert "missing_rate" in catalogue.DRIFT_SIGNALS
    assert catalogue.MODEL_QUALITY_SIGNALS == ["problem_rate", "pca_error"]
    assert "f1" not in catalogue.ALWAYS_COMPUTED
    assert {"psi", "label_coverage", "estimated_f1", "class_share"} <= catalogue.ALWAYS_COMPUTED


def test_the_report_and_the_live_view_take_scales_and_directions_from_it() -> None:
    from monitor import report_html, tui

    assert report_html.DRIFT_STATISTICS == catalogue.DRIFT_STATISTICS
    assert report_html.DRIFT_COLOUR_RANGE["psi"] == (0.0, 0.5)  # twice the usual 0.25
    assert sorted(report_html._SMALL_IS_DRIFT) == ["chi2"]
    assert tui.DRIFT_STATS == {"psi": "high", "wasserstein": "high", "chi2": "low"}
    for task, names in tui.HEADLINE_METRICS.items():
        assert all(task in SIGNALS[n].tasks for n in names), task
    assert all(n in SIGNALS for n in tui.EXTRA_METRICS)
    assert report_html._unit("label_coverage")["tickformat"] == ".1%"
    assert report_html._unit("label_count")["tickformat"] == ",.0f"
    assert report_html._is_performance("mcc") and not report_html._is_performance("psi")
    assert not report_html._is_performance("roc_auc_bin_error")


def test_a_detector_rule_without_a_threshold_takes_the_catalogue_bound() -> None:
    from monitor.core.rules import Rule

    model = _model("binary") | {"alerts": [
        {"name": "d", "kind": "detector", "signal": "adwin:error@all"},
        {"name": "t", "signal": "psi:amount@all", "op": ">", "threshold": 0.3},
    ]}
    config = config_from_mapping({"models": [model]}, "t")
    m = config.models[0]
    detector, threshold = (Rule(m, cfg, 10.0) for cfg in m.alerts)
    assert detector.threshold == SIGNALS["adwin"].threshold == 0.0
    assert threshold.threshold == 0.3  # a configured bound wins


@pytest.mark.parametrize("task", TASKS)
def test_rule_signal_validation_accepts_the_task_s_signals_and_no_other(task: str) -> None:
    model = config_from_mapping({"models": [_model(task)]}, "t").models[0]
    subjects = {"class": CLASSES[task][0] if CLASSES[task] else "", "feature": "amount",
                "stream": "abs_error" if task == "regression" else "error", "metric": ""}
    for name, signal in SIGNALS.items():
        if signal.kind == "gap" or (signal.kind == "detector" and name != "adwin"):
            continue  # gap needs a reference with labels; the model runs adwin alone
        subject = subjects[signal.subject] if signal.subject else ""
        text = f"{name}:{subject}@all" if subject else f"{name}@all"
        kind = "detector" if signal.kind == "detector" else "threshold"
        if task in signal.tasks:
            model.check_signal(text, kind)
        elif not signal.subject:
            with pytest.raises(ValueError, match="unknown signal name"):
                model.check_signal(text, kind)
