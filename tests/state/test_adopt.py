"""A checkpoint from another config: models whose config (less alert rules) is unchanged keep
their state, changed and new ones start empty at the checkpoint's offsets, removed ones are
dropped, and one log line says which; a change of pane or lateness drops everything."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.config import MonitorConfig, config_from_mapping
from monitor.core.alerting import Alerting
from monitor.core.engine import Engine
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from monitor.state.checkpoint import CheckpointStore

BASE = 1_700_000_000
STEPS = 400
CUT = 210  # steps before the checkpoint (an m1 label is early there)
BATCH = 10  # steps per poll batch


def _model(name: str, windows: list[str], alerts: list[dict[str, Any]] | None = None) -> dict:
    return {
        "name": name,
        "task": "binary",
        "positive_class": 1,
        "windows": windows,
        "segments": ["region"],
        "alerts": alerts or [],
    }


def _rule(name: str, threshold: float) -> dict[str, Any]:
    return {"name": name, "signal": "accuracy@all", "op": "<", "threshold": threshold}


def _config(models: list[dict], pane: str = "10s", idle: str = "30s") -> MonitorConfig:
    return config_from_mapping({"time": {"pane": pane, "idle_timeout": idle}, "models": models})


CONFIG_A = _config(
    [
        _model("gone", ["all"]),
        _model("m1", ["all", "1m", "ewm2m"], [_rule("low", 0.9), _rule("lower", 0.2)]),
        _model("m2", ["all", "1m"]),
    ]
)
NEW = _rule("new", 0.1)
# m1: same but its alert rules ("low" unchanged, "lower" changed, "new" added); m2: another
# window; m3 added; "gone" removed. Model indices shift.
CONFIG_B = _config(
    [
        _model("m1", ["all", "1m", "ewm2m"], [_rule("low", 0.9), _rule("lower", 0.3), NEW]),
        _model("m3", ["all", "1m"]),
        _model("m2", ["all", "5m"]),
    ]
)


def _steps() -> list[list[Message]]:
    """Messages per step: every model predicts at each step on partition ``i % 2``; labels
    come 3 steps later (``m1``'s every 5th without a model name), and every 7th ``m1``
    label comes 2 steps before its prediction (an early label)."""
    offsets: Counter[tuple[str, int]] = Counter()
    out: list[list[Message]] = []

    def msg(topic: str, part: int, body: dict[str, Any]) -> Message:
        offset = offsets[(topic, part)]
        offsets[(topic, part)] += 1
        return Message(topic, part, offset, b"k", json.dumps(body).encode())

    for i in range(STEPS):
        ts = BASE + 2 * i
        batch = []
        for name in ("gone", "m1", "m2", "m3"):
            early = name == "m1" and (i + 2) % 7 == 0
            if early and i + 2 < STEPS:
                batch.append(
                    msg(
                        "labels",
                        i % 2,
                        {"prediction_id": f"{name}-{i + 2}", "model": name, "ts": ts, "label": 1},
                    )
                )
            batch.append(
                msg(
                    "predictions",
                    i % 2,
                    {
                        "prediction_id": f"{name}-{i}",
                        "model": name,
                        "ts": ts,
                        "prediction": i % 2,
                        "score": (i % 10) / 10,
                        "segment": {"region": "eu" if i % 3 else "us"},
                    },
                )
            )
            j = i - 3
            if j >= 0 and not (name == "m1" and j % 7 == 0):
                label: dict[str, Any] = {
                    "prediction_id": f"{name}-{j}",
                    "ts": ts,
                    "label": (j // 2) % 2,
                }
                if not (name == "m1" and j % 5 == 0):
                    label["model"] = name
                batch.append(msg("labels", j % 2, label))
        out.append(batch)
    return out


def _run(
    engine: Pipeline, steps: list[list[Message]], alerting: Alerting | None = None
) -> Pipeline:
    """Feed ``steps`` to ``engine``, its signals to ``alerting`` (the run loop's rules)."""
    alerting = alerting if alerting is not None else Alerting(engine.config, engine.models)
    for at in range(0, len(steps), BATCH):
        engine.process([m for step in steps[at : at + BATCH] for m in step])
        alerting.feed(engine.drain_signals())
    return engine


def _restart(
    tmp_path: Path, config: MonitorConfig
) -> tuple[tuple[Pipeline, Alerting] | None, list[dict]]:
    steps = _steps()
    engine = Pipeline(CONFIG_A)
    alerting = Alerting(CONFIG_A, engine.models)
    _run(engine, steps[: CUT // BATCH * BATCH], alerting)
    CheckpointStore(tmp_path).save(engine, alerting)
    with capture_logs() as logs:
        loaded = CheckpointStore(tmp_path).load_core(config)
    return loaded, logs


def test_unchanged_model_keeps_everything_changed_and_new_ones_start_at_the_checkpoint(
    tmp_path,
):
    steps = _steps()
    cut = CUT // BATCH * BATCH
    loaded, logs = _restart(tmp_path, CONFIG_B)
    assert loaded is not None
    engine, alerting = loaded
    assert [e["event"] for e in logs] == ["checkpoint_config_changed", "checkpoint_loaded"]
    line = logs[0]
    assert line["kept"] == ["m1"] and line["rebuilt"] == ["m2"]
    assert line["added"] == ["m3"] and line["removed"] == ["gone"]
    assert "start empty at the checkpoint's offsets" in line["action"]
    assert engine.config is CONFIG_B and alerting.config is CONFIG_B
    before = engine.summary()["models"]["m1"]
    assert before["counts"]["pending"] > 0 and before["counts"]["early_labels_pending"] > 0

    resumed = _run(engine, steps[cut:], alerting)
    straight = Pipeline(CONFIG_B)
    straight_rules = Alerting(CONFIG_B, straight.models)
    _run(straight, steps, straight_rules)
    got, want = resumed.summary(), straight.summary()
    # m1: nothing lost, nothing counted twice; its unchanged rule kept its state
    assert got["models"]["m1"] == want["models"]["m1"]
    detectors = [e.stages["m1"].model.detectors for e in (resumed, straight)]
    assert pickle.dumps(detectors[0]) == pickle.dumps(detectors[1])  # their inner state too
    low = {r.rule: r for r in alerting.report("m1")}
    assert low["low"] == {r.rule: r for r in straight_rules.report("m1")}["low"]
    assert low["low"].state == "firing" and low["low"].since is not None
    assert low["low"].since < BASE + 2 * cut  # fired before the checkpoint, not again after
    # m2 and m3: as a run of config B over the events after the checkpoint only
    fresh = _run(Pipeline(CONFIG_B), steps[cut:]).summary()
    for name in ("m2", "m3"):
        assert got["models"][name]["counts"]["predictions"] == STEPS - cut
        assert got["models"][name] == fresh["models"][name], name
    assert resumed.offsets() == straight.offsets()
    assert resumed.events == straight.events


def test_adopt_reports_each_model_and_remaps_early_labels(tmp_path):
    old = _run(Pipeline(CONFIG_A), _steps()[:CUT]).engine
    new = Engine(CONFIG_B)
    assert new.adopt(old) == {"m1": "kept", "m2": "rebuilt", "m3": "added", "gone": "removed"}
    m1_old, m1_new = old.by_name["m1"].index, new.by_name["m1"].index
    assert m1_old != m1_new
    early = [e for s in new.partitions.values() for e in s.join.early.values()]
    assert early and {e.model for e in early} <= {m1_new}
    assert new.early_total == len(early)
    assert new.pending_total[m1_new] == old.pending_total[m1_old] > 0
    assert new.pending_total[new.by_name["m2"].index] == 0
    for number, state in new.partitions.items():
        assert state.offsets == old.partitions[number].offsets
        assert not state.join.pending[new.by_name["m2"].index]
        assert state.counts[new.by_name["m3"].index] == [0.0] * len(state.counts[0])


def test_idle_timeout_and_rules_changed_keeps_every_model(tmp_path):
    """``idle_timeout`` changes the fingerprint but no state depends on it."""
    changed = _config(
        [
            _model("gone", ["all"]),
            _model("m1", ["all", "1m", "ewm2m"], [_rule("low", 0.5)]),
            _model("m2", ["all", "1m"]),
        ],
        idle="2m",
    )
    loaded, logs = _restart(tmp_path, changed)
    assert loaded is not None
    assert (
        loaded[0].summary()["models"]
        == _run(Pipeline(changed), _steps()[: CUT // BATCH * BATCH]).summary()["models"]
    )
    assert logs[0]["kept"] == ["gone", "m1", "m2"]
    assert logs[0]["rebuilt"] == logs[0]["added"] == logs[0]["removed"] == []


@pytest.mark.parametrize("pane", ["30s"])
def test_time_change_drops_everything(tmp_path, pane):
    loaded, logs = _restart(tmp_path, _config(CONFIG_B.model_dump()["models"], pane=pane))
    assert loaded is None
    assert [e["event"] for e in logs] == ["checkpoint_config_changed"]
    assert logs[0]["dropped"] == ["gone", "m1", "m2"]
    assert "state dropped" in logs[0]["action"]


def test_adopt_refuses_another_pane():
    old = Engine(CONFIG_A)
    with pytest.raises(ValueError, match="time"):
        Engine(_config([_model("m1", ["all"])], pane="20s")).adopt(old)
