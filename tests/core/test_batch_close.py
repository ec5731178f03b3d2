"""Many panes closed in one call of :meth:`ModelStage.close_through
<monitor.core.model_stage.ModelStage.close_through>` (a backlog: their metrics in one
stacked computation) give, bit for bit, the signals of the same panes closed one call
each: same panes, same names in the same order, same values (NaN where NaN), the
detectors fed the same errors in the same order; the panes before the one at which the
warmup reference is built (the signals' plan changes there) are computed with the plan
they closed under, within the same call.

The stacked computation itself is checked row by row: the rows of many panes computed
in one :meth:`PanePlan.compute <monitor.core.panemetrics.PanePlan.compute>` equal, bit
for bit, each pane's rows computed alone, for every task."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import monitor.core.model_stage as model_stage
from monitor.config import config_from_mapping
from monitor.core.model import PaneSignals
from monitor.core.model_stage import ModelStage
from monitor.core.panemetrics import plan_for
from monitor.core.pipeline import Pipeline
from tests.core.test_model_stage import PARTS, TOPICS, stream
from tests.core.test_pane_signals import MIN_SAMPLES, _model, _random_windows

#: A partition every run tracks and none writes to: it holds the pane clock back, so that
#: every pane is still open when the test closes them.
SILENT = PARTS


def _reference(path: Path, rows: int = 800) -> None:
    """A reference CSV for the features of :func:`stream`'s model ``m``."""
    rng = random.Random(5)
    lines = ["x,c,prediction,score,label"]
    for _ in range(rows):
        score = round(rng.random(), 3)
        lines.append(f"{rng.gauss(0, 1):.4f},{rng.choice('pqr')},{int(score >= 0.5)},{score},"
                     f"{int(rng.random() < 0.45)}")
    path.write_text("\n".join(lines) + "\n")


def _config(reference: Path | None) -> Any:
    """Model ``m`` (binary, 3 windows, slices by region, drift features, detectors) with a
    reference file, or with a reference built from the stream's first predictions; model
    ``r`` (regression: a decay window's count is the closed panes' event count)."""
    model: dict[str, Any] = {
        "name": "m", "task": "binary", "positive_class": 1, "label_ttl": "10m",
        "windows": ["all", "2m", "ewm1m"], "detectors": ["adwin", "cusum"],
        "segments": ["region"], "features": {"x": "numeric", "c": "categorical"},
        "drift_min_samples": 20,
    }
    if reference is None:
        model["reference_warmup"] = 800
    else:
        model["reference"] = str(reference)
    other = {"name": "r", "task": "regression", "windows": ["all", "5m", "ewm30s"],
             "label_ttl": "10m", "reference_warmup": 0, "detectors": ["page_hinkley"]}
    return config_from_mapping({
        "kafka": {"predictions_topic": TOPICS[0], "labels_topic": TOPICS[1]},
        "time": {"pane": "10s", "allowed_lateness": "5s"},
        "models": [model, other],
    })


def _held(cfg: Any, messages: int, seed: int) -> Pipeline:
    """A pipeline that read ``messages`` messages with no pane closed (the pane clock held
    back by :data:`SILENT`): each model's stage holds every pane open."""
    core = Pipeline(cfg)
    core.track([(t, p) for t in TOPICS for p in range(PARTS + 1)])
    batch = stream(messages, seed, shuffle=0.02)
    for start in range(0, len(batch), 250):
        core.process(batch[start : start + 250])
    assert core.panes_closed == 0
    return core


def _close(stage: ModelStage, panes: list[int]) -> list[PaneSignals]:
    for upto in panes:
        stage.close_through(upto)
    return stage.drain_signals()


def _identical(want: list[PaneSignals], got: list[PaneSignals]) -> None:
    """Bit for bit: same panes, names in the same order, values, NaN where NaN."""
    assert [s.pane_end for s in got] == [s.pane_end for s in want]
    for w, g in zip(want, got, strict=True):
        assert (g.model, g.predictions_total) == (w.model, w.predictions_total)
        assert list(g.signals) == list(w.signals), w.pane_end
        a = np.array(list(w.signals.values()))
        b = np.array(list(g.signals.values()))
        assert np.array_equal(a, b, equal_nan=True), w.pane_end
        assert a.tobytes() == b.tobytes(), w.pane_end


def _same_state(a: ModelStage, b: ModelStage) -> None:
    """What a pane close leaves behind: detectors, last values, buffers."""
    assert a.panes_closed == b.panes_closed and a.closed_upto == b.closed_upto
    assert a.error_panes == b.error_panes and a.warm == b.warm
    ma, mb = a.model, b.model
    if ma.detectors is not None:
        assert mb.detectors is not None
        assert ma.detectors.totals == mb.detectors.totals
        assert ma.last_detections == mb.last_detections
    assert list(ma.last) == list(mb.last)
    for window in ma.last:
        assert list(ma.last[window]) == list(mb.last[window])
        for name, values in ma.last[window].items():
            assert np.array_equal(values, mb.last[window][name], equal_nan=True), name


@pytest.mark.parametrize("warmup", [False, True])
def test_a_backlog_closed_in_one_call_equals_one_call_per_pane(
    tmp_path: Path, warmup: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = None if warmup else tmp_path / "ref.csv"
    if reference is not None:
        _reference(reference)
    core = _held(_config(reference), 3000, seed=4)
    for name, stage in core.stages.items():
        first, last = min(stage.windows.open), max(stage.windows.open)
        upto = last + 2  # every pane, and one empty after the last
        panes = list(range(first + 1, upto + 1))
        assert len(panes) > 100
        one_each = _close(copy.deepcopy(stage), panes)
        alone = copy.deepcopy(stage)
        backlog = _close(alone, [upto])
        assert len(one_each) == upto - first and len(backlog) == len(one_each)
        _identical(one_each, backlog)
        # the batch cut in several (a cap reached, and a last batch shorter than the others)
        monkeypatch.setattr(model_stage, "BATCH_PANES", 7)
        capped_stage = copy.deepcopy(stage)
        capped = _close(capped_stage, [first + 40, upto])
        monkeypatch.undo()
        _identical(one_each, capped)
        one = copy.deepcopy(stage)
        _close(one, panes)
        _same_state(one, alone)
        _same_state(one, capped_stage)
        if name == "m":
            drift = [any(k.startswith("psi:x@") for k in s.signals) for s in backlog]
            assert drift[-1]
            if warmup:  # the plan changed within the call: no drift signals before it
                assert not drift[0]
                assert stage.model.warmup_target and one.model.profile_pane is not None
                assert alone.model.profile_pane == one.model.profile_pane
            else:
                assert all(drift)



def test_a_batch_is_bounded_in_panes_and_in_memory(tmp_path: Path) -> None:
    core = _held(_config(None), 1500, seed=6)
    stage = core.stages["m"]
    windows = len(stage.model.windows)
    per_pane = windows * stage.model.layout.width  # the whole-model rows
    slices = (len(stage.model.registry.keys) - 1) * windows * stage.model.layout.width
    fits = min(model_stage.BATCH_PANES, model_stage.BATCH_FLOATS // per_pane)
    assert 1 < fits <= model_stage.BATCH_PANES
    batch = model_stage._Batch()
    stage.closed_upto = min(stage.windows.open) + 1
    assert stage.model.warmup_target  # warming up: batched all the same
    stage._take(batch, stage.closed_upto - 1, 10_000)
    assert batch.size == fits and not batch.last
    assert batch.sums.size <= model_stage.BATCH_FLOATS + slices  # and one pane's slices
    batch = model_stage._Batch()
    stage._take(batch, stage.closed_upto - 1, 3)
    assert batch.size == 3 and not batch.last
    batch = model_stage._Batch()
    stage._take(batch, stage.closed_upto - 1, 1)
    assert batch.size == 1 and batch.last  # the last pane of the call: its slices too


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("panes", [2, 37])
def test_rows_stacked_from_many_panes_equal_each_pane_alone(
    tmp_path: Path, task: str, panes: int
) -> None:
    model = _model(tmp_path, task)
    plan = plan_for(model.layout, model.class_names, MIN_SAMPLES)
    stacks, counts = [], []
    for seed in range(panes):
        windows = _random_windows(model, 7, 100 + seed)
        stacks.append(np.concatenate(windows))
        counts.append(np.concatenate([w[:, model.layout.col("n")] for w in windows]))
    many = plan.compute(np.concatenate(stacks), np.concatenate(counts), len(stacks[0]))
    width = many.shape[1] // panes
    for j, (stack, count) in enumerate(zip(stacks, counts, strict=True)):
        alone = plan.compute(stack, count)
        got = many[:, j * width : (j + 1) * width]
        assert np.array_equal(alone, got, equal_nan=True), j
        assert alone.tobytes() == np.ascontiguousarray(got).tobytes(), j
