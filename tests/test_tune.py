"""``monitor tune`` on a tiny capture whose alerts and scores can be worked out by hand.

The stream: one binary model, a prediction every 10 s for 3 h of event time, each labelled
in the same second, 6 per 1-minute pane. Every prediction is right except

- incident A, 01:00-01:30, and incident B, 02:00-02:30: every prediction wrong;
- two wrong predictions in the panes 00:30 and 02:45 (noise, no incident).

The rule ``acc`` reads ``accuracy@5m`` (the last 5 closed panes) with ``for = 0``. By hand:

- threshold 0.5: accuracy@5m is 0.8, 0.6, 0.4 at the pane ends 01:01, 01:02, 01:03, so it
  fires at 01:03 (delay 180 s, 18 predictions) for each incident, and never on the noise
  (28/30 = 0.93);
- threshold 0.95: it fires at the first bad pane of each incident (delay 60 s, 6
  predictions), and on both noise panes: 2 false alerts in 3 h = 16 per day;
- threshold 0.0: accuracy is never below 0: both incidents missed.

Three folds of one hour: fold 0 holds no incident (only the 00:30 noise), fold 1 holds A,
fold 2 holds B.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from monitor.config import ModelConfig, load_config
from monitor.replay import replay
from monitor.tune import Incident, IncidentError, load_incidents, run_settings, tune
from monitor.tune_grid import GridError, default_grid, expand_grid

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
HOUR = 3600.0
INCIDENTS = [("m", T0 + 1 * HOUR, T0 + 1.5 * HOUR), ("m", T0 + 2 * HOUR, T0 + 2.5 * HOUR)]
NOISE_PANES = (30, 165)  # minutes 00:30 and 02:45

CONFIG = """\
[time]
pane = "1m"
allowed_lateness = "0s"

[[models]]
name = "m"
task = "binary"
positive_class = 1
windows = ["all", "5m"]
detectors = []

[[models.alerts]]
name = "acc"
signal = "accuracy@5m"
op = "<"
threshold = 0.5
"""

THRESHOLDS = [0.0, 0.5, 0.95]


def _capture(path: Path) -> None:
    lines = []
    for i in range(3 * 360):
        t = T0 + 10.0 * i
        minute = i // 6
        wrong = any(start <= t < end for _, start, end in INCIDENTS) or (
            minute in NOISE_PANES and i % 6 < 2
        )
        pid = f"p{i}"
        pred = {"prediction_id": pid, "model": "m", "ts": t, "prediction": 1, "score": 0.9}
        label = {"prediction_id": pid, "model": "m", "ts": t, "label": 0 if wrong else 1}
        for topic, offset, value in (("predictions", i, pred), ("labels", i, label)):
            env = {"topic": topic, "partition": 0, "offset": offset, "key": pid,
                   "payload": json.dumps(value)}
            lines.append(json.dumps(env))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tune")
    (root / "config.toml").write_text(CONFIG)
    _capture(root / "capture.jsonl")
    (root / "incidents.csv").write_text(
        "model,start,end\nm,2026-01-05T01:00:00Z,2026-01-05T01:30:00Z\n"
        f"m,{T0 + 2 * HOUR:.0f},{T0 + 2.5 * HOUR:.0f}\n"
    )
    (root / "grid.toml").write_text(f'"models.m.alerts.acc.threshold" = {THRESHOLDS}\n')
    config = load_config(root / "config.toml")
    return {"root": root, "config": config, "capture": [str(root / "capture.jsonl")]}


def _settings(case: dict[str, Any], grid: dict[str, list[Any]]) -> Any:
    return expand_grid(case["config"], grid)


def test_winner_and_hand_computed_scores(case: dict[str, Any]) -> None:
    settings = _settings(case, {"models.m.alerts.acc.threshold": THRESHOLDS})
    incidents = [Incident(*i) for i in INCIDENTS]
    result = tune(case["capture"], settings, incidents, folds=3, jobs=1)
    assert result.winner == 1  # 0.5, the middle of the grid: not won by grid order
    assert result.order == [1, 2, 0]
    good, tight, blind = (result.totals[i] for i in (1, 2, 0))
    assert (good.incidents, good.missed, good.false_alerts) == (2, 0, 0)
    assert good.delays_s == [180.0, 180.0]
    assert good.delays_events == [18.0, 18.0]
    assert (tight.missed, tight.false_alerts) == (0, 2)
    assert tight.delays_s == [60.0, 60.0]
    assert tight.delays_events == [6.0, 6.0]
    assert tight.false_per_day == pytest.approx(16.0)
    assert (blind.missed, blind.false_alerts, blind.delays_s) == (2, 0, [])
    assert math.isnan(blind.median_delay_s)
    # per fold: the 00:30 noise in fold 0, A in fold 1, B and the 02:45 noise in fold 2
    assert [s.false_alerts for s in result.fold_scores[2]] == [1, 0, 1]
    assert [s.incidents for s in result.fold_scores[1]] == [0, 1, 1]
    assert [s.days for s in result.fold_scores[1]] == pytest.approx([1 / 24] * 3)
    # the front: 0.5 (no miss, slow) and 0.95 (no miss, fast, noisy); 0.0 is dominated
    assert sorted(result.pareto) == [1, 2]


def test_cross_validation_selects_on_earlier_folds_only(case: dict[str, Any]) -> None:
    settings = _settings(case, {"models.m.alerts.acc.threshold": THRESHOLDS})
    result = tune(case["capture"], settings, [Incident(*i) for i in INCIDENTS], folds=3)
    first, second = result.cv
    # Fold 0 has no incident: 0.0 and 0.5 tie there, and grid order picks 0.0, which then
    # misses incident A in fold 1. On fold 1 alone 0.95 would win (fast, and its false
    # alerts fall in folds 0 and 2): selection did not look at the fold it is scored on.
    assert (first["fold"], first["chosen_on_folds"], first["chosen"]) == (1, [0], 0)
    assert first["best_in_fold"] == 2
    assert first["best_in_fold_score"]["delays_s"] == [60.0]
    assert (first["score"]["incidents"], first["score"]["missed"]) == (1, 1)
    # On folds 0-1, 0.95's false alert (12/day) is over the budget: 0.5 is chosen.
    assert (second["chosen_on_folds"], second["chosen"]) == ([0, 1], 1)
    assert (second["score"]["missed"], second["score"]["delays_s"]) == (0, [180.0])
    assert (result.out_of_fold.incidents, result.out_of_fold.missed) == (2, 1)


def test_firings_equal_a_full_replay(case: dict[str, Any], tmp_path: Path) -> None:
    """Rules re-evaluated on the recorded panes give exactly the alerts of ``replay``."""
    settings = _settings(case, {"models.m.alerts.acc.threshold": [0.95]})
    firings = run_settings(case["capture"], settings).firings[0]
    replay(settings[0].config, case["capture"], tmp_path)
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    fired = [a for a in alerts if a["status"] == "firing"]
    assert len(fired) == len(firings) == 4
    from datetime import datetime

    def unix(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    assert [(unix(a["starts_at"]), unix(a["ts"])) for a in fired] == [
        (f.starts_at, f.raised) for f in firings
    ]
    resolved = {a["alert_id"]: unix(a["ends_at"]) for a in alerts if a["status"] == "resolved"}
    assert sorted(resolved.values()) == sorted(f.ends_at for f in firings if f.ends_at)


def test_parallel_equals_serial(case: dict[str, Any]) -> None:
    grid = {
        "models.m.alerts.acc.threshold": [0.5, 0.95],
        "models.m.alerts.acc.window": ["5m", "ewm5m"],  # adds ewm5m: a second engine replay
        "models.m.alerts.acc.for": ["0s", "2m"],
    }
    settings = _settings(case, grid)
    assert "ewm5m" in settings[2].config.models[0].windows
    incidents = [Incident(*i) for i in INCIDENTS]
    serial = tune(case["capture"], settings, incidents, jobs=1)
    parallel = tune(case["capture"], settings, incidents, jobs=2)
    assert serial.replayed.groups == parallel.replayed.groups == 2
    assert serial.replayed.firings == parallel.replayed.firings
    assert serial.as_json()["ranked"] == parallel.as_json()["ranked"]
    assert serial.cv == parallel.cv
    # for = 2m delays the 0.5 rule by two panes: 300 s
    delayed = next(i for i, s in enumerate(settings) if dict(s.values) == {
        "models.m.alerts.acc.threshold": 0.5, "models.m.alerts.acc.window": "5m",
        "models.m.alerts.acc.for": "2m"})
    assert serial.totals[delayed].delays_s == [300.0, 300.0]


def test_cli_outputs_and_winner_fragment(
    case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = case["root"]
    code = main([
        "--log-level", "warning", "tune", "--config", str(root / "config.toml"),
        "--incidents", str(root / "incidents.csv"), "--grid", str(root / "grid.toml"),
        "--jobs", "1", "--out", str(tmp_path), *case["capture"],
    ])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "tune.json").read_text())
    assert report["winner"]["values"] == {"models.m.alerts.acc.threshold": 0.5}
    assert report["ranked"][0]["total"]["delays_s"] == [180.0, 180.0]
    csv_rows = (tmp_path / "tune.csv").read_text().splitlines()
    assert len(csv_rows) == 4 and csv_rows[0].startswith("rank,setting,alerts.acc.threshold")
    winner = (tmp_path / "winner.toml").read_text()
    assert winner.split("[[models]]", 1)[1] in out
    # the fragment, pasted over the model's table, is a valid config with the winning rule
    model = ModelConfig.model_validate(tomllib.loads(winner)["models"][0])
    assert model == case["config"].models[0]
    assert "3 settings" in out


@pytest.mark.parametrize(
    ("grid", "named"),
    [
        ('"models.m.alerts.nope.threshold" = [0.5]\n', "models.m.alerts.nope.threshold"),
        ('"models.m.alerts.acc.treshold" = [0.5]\n', "models.m.alerts.acc.treshold"),
        ('"models.x.windows" = [["all"]]\n', "models.x.windows"),
        ('"models.m.alerts.acc.threshold" = ["high"]\n', "models.m.alerts.acc.threshold"),
        ('"models.m.alerts.acc.window" = ["ewm"]\n', "models.m.alerts.acc.window"),
        ('"models.m.alerts.acc.threshold" = 0.5\n', "models.m.alerts.acc.threshold"),
    ],
)
def test_bad_grid_exits_2_naming_the_key(
    case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    grid: str, named: str,
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(grid)
    root = case["root"]
    code = main([
        "tune", "--config", str(root / "config.toml"), "--incidents",
        str(root / "incidents.csv"), "--grid", str(path), "--out", str(tmp_path / "o"),
        *case["capture"],
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert named in err
    assert not (tmp_path / "o").exists()


def test_incidents_files(tmp_path: Path) -> None:
    jsonl = tmp_path / "i.jsonl"
    jsonl.write_text(
        '{"model": "m", "start": "2026-01-05T01:00:00+01:00", "end": 1767571300}\n\n'
    )
    assert load_incidents(jsonl, ["m"]) == [Incident("m", T0, T0 + 100)]
    bad = tmp_path / "bad.csv"
    bad.write_text("model,start,end\nm,0,10\nz,0,10\nm,soon,10\nm,10,5\n")
    with pytest.raises(IncidentError) as exc:
        load_incidents(bad, ["m"])
    assert [p.split(": ")[0] for p in exc.value.problems] == [f"{bad}:{n}" for n in (3, 4, 5)]


def test_default_grid_from_the_config(case: dict[str, Any]) -> None:
    grid = default_grid(case["config"])
    assert grid == {
        "models.m.alerts.acc.threshold": [0.475, 0.5, 0.525],
        "models.m.alerts.acc.for": [0.0, 180.0, 360.0],
    }
    assert len(expand_grid(case["config"], grid)) == 9
    with pytest.raises(GridError, match="max-settings"):
        expand_grid(case["config"], grid, max_settings=5)


def test_capture_without_events_exits_2(
    case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not an envelope\n")
    root = case["root"]
    for capture in (empty, tmp_path / "missing.jsonl"):
        code = main([
            "--log-level", "error", "tune", "--config", str(root / "config.toml"),
            "--incidents", str(root / "incidents.csv"), "--out", str(tmp_path / "o"),
            str(capture),
        ])
        assert code == 2
        assert "monitor tune:" in capsys.readouterr().err


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("flag", [[], ["--no-progress"]])
def test_progress_bars_on_a_terminal_only(
    case: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], flag: list[str],
) -> None:
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    root = case["root"]
    code = main([
        "--log-level", "warning", "tune", *flag, "--config", str(root / "config.toml"),
        "--incidents", str(root / "incidents.csv"), "--grid", str(root / "grid.toml"),
        "--jobs", "1", "--out", str(tmp_path), *case["capture"],
    ])
    assert code == 0
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err.getvalue())
    if flag:
        assert shown == ""
    else:
        # one engine group (the grid changes only a threshold), three settings
        assert "1/1 replays" in shown and "3/3 settings" in shown
    assert "3 settings" in capsys.readouterr().out


def test_winner_keeps_durations_and_relative_reference(
    case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fragment is pasted back into the same config: a tuned ``for`` reads as a
    duration and a relative ``reference`` stays relative (not the loader's absolute path);
    a setting that detects nothing prints its median delay as n/a, not None."""
    root = case["root"]
    (tmp_path / "ref.csv").write_text("x\n" + "\n".join(str(i % 7) for i in range(50)) + "\n")
    (tmp_path / "config.toml").write_text(
        CONFIG.replace('detectors = []', 'detectors = []\nreference = "ref.csv"\n'
                       'features = { x = "numeric" }')
    )
    (tmp_path / "grid.toml").write_text(
        '"models.m.alerts.acc.threshold" = [0.0]\n"models.m.alerts.acc.for" = [0.0, 60.0]\n'
    )
    code = main([
        "tune", "--config", str(tmp_path / "config.toml"), "--log-level", "warning",
        "--incidents", str(root / "incidents.csv"), "--grid", str(tmp_path / "grid.toml"),
        "--jobs", "1", "--out", str(tmp_path / "out"), "--no-progress", *case["capture"],
    ])
    out = capsys.readouterr().out
    assert code == 0
    winner = (tmp_path / "out" / "winner.toml").read_text()
    assert re.search(r'^#   models\.m\.alerts\.acc\.for = "(0s|1m)"$', winner, re.M), winner
    assert tomllib.loads(winner)["models"][0]["reference"] == "ref.csv"
    assert "None" not in out
    assert "median delay n/a" in out  # threshold 0: never fires, so no delay at all


def test_a_model_without_an_all_window_records_the_same_firings_and_counts(
    case: dict[str, Any],
) -> None:
    """Tune reads each pane's prediction count from the engine's signals (it drives the
    engine, it does not extend it); a model whose windows lack ``all`` gets the same."""
    grid = {"models.m.alerts.acc.threshold": [0.95]}
    base = case["config"]
    only_5m = base.model_copy(
        update={"models": [base.models[0].model_copy(update={"windows": ["5m"]})]}
    )
    got = run_settings(case["capture"], _settings({"config": only_5m}, grid))
    want = run_settings(case["capture"], _settings(case, grid))
    assert got.firings == want.firings and len(got.firings[0]) == 4
    assert got.timeline["m"][0].tolist() == want.timeline["m"][0].tolist()
    assert got.timeline["m"][1].tolist() == want.timeline["m"][1].tolist()
    assert got.timeline["m"][1][-1] == 3 * 360  # every prediction, once
    assert list(got.timeline["m"][1]) == sorted(got.timeline["m"][1])


def test_tune_drives_the_engine_without_subclassing_it() -> None:
    import monitor.tune
    from monitor.core.engine import Engine

    classes = [v for v in vars(monitor.tune).values() if isinstance(v, type)]
    assert not [c.__name__ for c in classes if issubclass(c, Engine) and c is not Engine]
