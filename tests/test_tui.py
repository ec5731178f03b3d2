"""The live terminal view (:mod:`monitor.tui`), ``monitor run --tui`` without a terminal, and
the progress bars of ``monitor replay``.

The view is fed with real reports: a real :class:`~monitor.core.engine.Engine` over a
small synthetic stream that gets steadily worse pane after pane (so each sparkline's
history is monotone, and an alert fires), and rendered to a string console.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog.testing
from rich.console import Console

from monitor import cli
from monitor.config import load_config
from monitor.core.alerting import Alerting
from monitor.core.pipeline import Pipeline
from monitor.core.report import ModelReport, Report, SliceReport
from monitor.core.rules import AlertEvent
from monitor.events.message import Message
from monitor.outputs.prometheus import RuntimeStats
from monitor.replay import count_lines, replay
from monitor.tui import AppFeed, LiveView, ProgressBars, live_session, sparkline

T0 = 1_760_000_000.0
PANES = 10
PER_PANE = 60
BLOCKS = "▁▂▃▄▅▆▇█"

CONFIG = """\
[time]
pane = "10s"
allowed_lateness = "0s"

[[models]]
name = "clf"
task = "binary"
positive_class = 1
windows = ["all", "30s"]
features = { x = "numeric", y = "numeric" }
reference = "reference.csv"
drift_min_samples = 20
detectors = []

[[models.alerts]]
name = "accuracy-low"
signal = "accuracy@all"
op = "<"
threshold = 0.8
for = "0s"
severity = "warning"

[[models]]
name = "reg"
task = "regression"
windows = ["all"]
detectors = []
"""


@pytest.fixture(autouse=True)
def _logs_to_the_real_stderr() -> Iterator[None]:
    """The CLI tests configure logging onto pytest's captured stdout, closed after them."""
    yield
    from monitor.logs import configure_logging

    configure_logging("info", json=True, stream=sys.__stderr__)


def _write_stream(tmp: Path) -> tuple[Path, list[list[Message]]]:
    """Config, reference, and one batch of messages per pane: in pane ``k`` a share
    ``0.07 k`` of clf's predictions are wrong and its feature ``x`` moves ``0.3 k`` away
    from the reference (``y`` stays); reg's absolute error is ``k + 1``. The last batch
    closes the last pane."""
    rng = np.random.default_rng(3)
    reference = rng.normal(0.0, 1.0, (2000, 2))
    (tmp / "reference.csv").write_text(
        "x,y\n" + "\n".join(f"{a!r},{b!r}" for a, b in reference.tolist()) + "\n"
    )
    config = tmp / "monitor.toml"
    config.write_text(CONFIG)
    batches: list[list[Message]] = []
    offset = 0
    for k in range(PANES + 1):
        batch = []
        n = PER_PANE if k < PANES else 1
        for i in range(n):
            ts = T0 + k * 10 + i * 10 / PER_PANE
            label = i % 2
            wrong = i < round(0.07 * k * n)
            clf = {"prediction_id": f"c{k}-{i}", "model": "clf", "ts": ts,
                   "prediction": 1 - label if wrong else label, "label": label,
                   "score": 0.9 if (1 - label if wrong else label) else 0.1,
                   "features": {"x": float(rng.normal(0.3 * k, 1.0)),
                                "y": float(rng.normal(0.0, 1.0))}}
            reg = {"prediction_id": f"r{k}-{i}", "model": "reg", "ts": ts,
                   "prediction": 1.0, "label": 1.0 + (k + 1) * (1 if i % 2 else -1)}
            for body in (clf, reg):
                batch.append(Message("predictions", 0, offset, None, json.dumps(body).encode()))
                offset += 1
        batches.append(batch)
    return config, batches


def _feed(view: LiveView, config: Path, batches: list[list[Message]]) -> tuple[
        Report, list[AlertEvent]]:
    """The engine over the batches, the view updated after each (one tick per pane)."""
    engine = Pipeline(load_config(config))
    alerting = Alerting(engine.config, engine.models)
    engine.track([("predictions", 0)])
    fired: list[AlertEvent] = []
    report = engine.report()
    for k, batch in enumerate(batches):
        assert not engine.process(batch)
        alerts = alerting.feed(engine.drain_signals())
        fired += alerts
        report = alerting.fill(engine.report())
        runtime = RuntimeStats(ready=True, assigned_partitions=2,
                               lag={("predictions", 0): 12, ("predictions", 1): 30,
                                    ("labels", 0): 5})
        view.update(report, runtime, alerts, now=1000.0 + k)
    return report, fired


def _text(view: LiveView, width: int = 200, fit: bool = False) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(view.render(width if fit else None))
    out = console.file.getvalue()
    assert isinstance(out, str)
    return out


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> tuple[LiveView, Report, list[AlertEvent]]:
    config, batches = _write_stream(tmp_path_factory.mktemp("tui"))
    view = LiveView("monitor test", spark_width=PANES)
    report, fired = _feed(view, config, batches)
    return view, report, fired


def _levels(spark: str) -> list[int]:
    return [BLOCKS.index(c) for c in spark]


def test_metrics_per_window_with_values_and_sparklines(
    fed: tuple[LiveView, Report, list[AlertEvent]],
) -> None:
    view, report, _ = fed
    text = _text(view)
    clf = report.models["clf"].overall.windows
    assert "clf (binary)" in text and "reg (regression)" in text
    for window in ("all", "30s"):
        for metric in ("accuracy", "f1", "roc_auc", "label_coverage"):
            assert f"{clf[window][metric]:.3f}" in text, (window, metric)
    accuracy = view.spark("clf", "accuracy@all")
    # One value per closed pane, each pane worse than the last: a falling line.
    assert len(accuracy) == PANES
    levels = _levels(accuracy)
    assert levels == sorted(levels, reverse=True) and levels[0] == 7 and levels[-1] == 0
    # In the table a metric's windows share one scale, shown beside them.
    scale = view.row_scale("clf", "accuracy", clf)
    assert scale is not None
    row = next(line for line in text.splitlines() if line.startswith("│ accuracy "))
    for window in ("all", "30s"):
        shown = view.spark("clf", f"accuracy@{window}", scale=scale)
        assert f"{clf[window]['accuracy']:.3f} {shown}" in row
    assert f"{scale[0]:.3f}..{scale[1]:.3f}" in row
    mae = view.spark("reg", "mae@all")
    assert _levels(mae) == sorted(_levels(mae)) and mae[0] == "▁" and mae[-1] == "█"
    reg = report.models["reg"].overall.windows
    mae_scale = view.row_scale("reg", "mae", reg)
    assert f"{reg['all']['mae']:.3f} {view.spark('reg', 'mae@all', scale=mae_scale)}" in text
    assert "rmse" in text
    # The binary task's metrics only: no regression metric in clf's table and vice versa.
    line = next(row for row in text.splitlines() if "roc_auc" in row)
    assert "mae" not in line


@pytest.mark.parametrize(("width", "spark"), [(50, 3), (56, 6), (60, 8), (120, PANES)])
def test_sparklines_shorten_to_fit_the_terminal(
    fed: tuple[LiveView, Report, list[AlertEvent]], width: int, spark: int,
) -> None:
    """Metric rows: label column 18 (estimated_accuracy) + 2, border 4, per window 10 +
    spark (at least 1)."""
    view, report, _ = fed
    text = _text(view, width, fit=True)
    windows = report.models["clf"].overall.windows
    row = next(line for line in text.splitlines() if line.startswith("│ accuracy"))
    assert "…" not in row and len(row) <= width
    scale = view.row_scale("clf", "accuracy", windows, spark)
    for window in ("all", "30s"):
        shown = view.spark("clf", f"accuracy@{window}", spark, scale)
        assert len(shown) == spark
        assert f"{windows[window]['accuracy']:.3f} {shown}" in row
    assert "estimated_accuracy" in text


def test_drift_signals_largest_first_with_history(
    fed: tuple[LiveView, Report, list[AlertEvent]],
) -> None:
    view, report, _ = fed
    text = _text(view)
    psi = report.models["clf"].overall.windows["30s"]["psi:x"]
    assert math.isfinite(psi) and psi > 0.5
    assert "drift (30s)" in text and f"{psi:.3f}" in text and "wasserstein:x" in text
    # Largest PSI and Wasserstein distance first, smallest chi-square p-value first, then
    # the PCA reconstruction error (two numeric features).
    assert [name for name, _ in view.top_drift_signals(report.models["clf"])] == [
        "psi:x@30s", "psi:y@30s", "wasserstein:x@30s", "wasserstein:y@30s",
        "chi2:x@30s", "chi2:y@30s", "pca_error@30s"]
    one = LiveView(top_drift=1)
    assert [name for name, _ in one.top_drift_signals(report.models["clf"])] == [
        "psi:x@30s", "wasserstein:x@30s", "chi2:x@30s", "pca_error@30s"]
    spark = view.spark("clf", "wasserstein:x@30s")
    # The feature moves away from the reference pane after pane (NaN below the sample floor).
    levels = _levels(spark.strip())
    assert len(levels) >= PANES - 3 and levels == sorted(levels) and levels[-1] == 7


def test_alerts_firing_and_transitions_listed(
    fed: tuple[LiveView, Report, list[AlertEvent]],
) -> None:
    view, _, fired = fed
    assert [e.status for e in fired] == ["firing"]
    text = _text(view)
    assert "accuracy-low FIRING" in text
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(fired[0].ts, UTC).strftime("%H:%M:%S")
    row = next(line for line in text.splitlines() if when in line and "firing" in line)
    assert "clf" in row and "accuracy-low" in row and "accuracy@all" in row
    assert f"{fired[0].value:.3f}" in row and "0.800" in row


def test_lag_per_topic_throughput_and_rejects(
    fed: tuple[LiveView, Report, list[AlertEvent]],
) -> None:
    view, _, _ = fed
    text = _text(view)
    assert "consumer lag labels 5, predictions 42" in text
    # events/s: 2 * PER_PANE events a second between the updates (now = 1000 + k).
    rate = view.rate[-1]
    assert rate == pytest.approx(2 * PER_PANE * (PANES - 1) / 9 + 2 / 9, rel=0.2)
    assert f"events/s {rate:,.0f}" in text
    assert "rejects 0" in text


def test_rejects_are_counted_by_reason() -> None:
    view = LiveView()
    report = Report(rejects={("predictions", "not_json"): 3, ("labels", "not_json"): 2,
                             ("labels", "missing_field"): 1})
    view.update(report, RuntimeStats())
    assert "rejects 6 (not_json 5, missing_field 1)" in _text(view)


def _one_metric(pane: int, value: float) -> Report:
    overall = SliceReport("model", "", windows={"all": {"accuracy": value}})
    return Report(models={"m": ModelReport("m", "binary", slices=[overall])},
                  panes_closed=pane)


def test_rings_are_bounded_and_sparklines_show_the_latest_values() -> None:
    view = LiveView(history=4, spark_width=3, transitions=1)
    for pane, value in enumerate([9.0, 0.0, 5.0, 1.0, 2.0, 3.0]):
        view.update(_one_metric(pane, value), RuntimeStats())
        view.update(_one_metric(pane, value), RuntimeStats())  # no pane closed: no value
    assert list(view.series["m", "accuracy@all"]) == [5.0, 1.0, 2.0, 3.0]
    assert view.spark("m", "accuracy@all") == "▁▅█"  # 1, 2, 3
    assert "3.000 ▁▅█" in _text(view)


def test_a_render_error_is_shown_and_logged_once(
    fed: tuple[LiveView, Report, list[AlertEvent]],
) -> None:
    _, report, _ = fed
    broken = LiveView("broken")
    broken.update(report, RuntimeStats())
    calls = []

    def boom(*_: Any) -> Any:
        calls.append(1)
        raise ZeroDivisionError("bad panel")

    broken._model_panel = boom  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        assert "failed to render: ZeroDivisionError('bad panel')" in _text(broken)
        assert "failed to render" in _text(broken)
        broken.update(None, None)  # type: ignore[arg-type]
        broken.update(None, None)  # type: ignore[arg-type]
    assert len(calls) == 2
    assert [(e["event"], e["stage"]) for e in logs] == [
        ("tui_failed", "render"), ("tui_failed", "update")]


def test_app_feed_takes_only_new_alert_transitions(
    fed: tuple[LiveView, Report, list[AlertEvent]],
) -> None:
    from collections import deque

    _, report, fired = fed

    class FakeApp:  # the two attributes App publishes for the view
        def __init__(self) -> None:
            self.latest: tuple[Report, RuntimeStats] | None = None
            self.alert_log: deque[tuple[int, AlertEvent]] = deque(maxlen=3)

    app = FakeApp()
    view = LiveView()
    feed = AppFeed(app)
    assert not feed.pull(view)
    app.latest = (report, RuntimeStats())
    app.alert_log.append((1, fired[0]))
    assert feed.pull(view)
    assert not feed.pull(view)  # nothing published since
    app.alert_log.append((2, fired[0]))
    app.latest = (report, RuntimeStats())
    assert feed.pull(view)
    assert len(view.transitions) == 2


def test_sparkline_scaling() -> None:
    assert sparkline([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) == BLOCKS
    assert sparkline([3.0, 3.0]) == "▁▁"
    assert sparkline([float("nan"), 1.0, 0.0]) == " █▁"
    assert sparkline([]) == ""


# --------------------------------------------------------------------- run --tui, replay


def test_run_tui_without_a_terminal_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config, _ = _write_stream(tmp_path)
    assert cli.main(["run", "--tui", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert "--tui needs a terminal on stdout" in captured.err
    assert captured.out == ""  # the daemon did not start (no log line)


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _capture(tmp: Path) -> tuple[Path, int]:
    config, batches = _write_stream(tmp)
    lines = [json.dumps({"topic": m.topic, "partition": m.partition, "offset": m.offset,
                         "payload": (m.value or b"").decode()})
             for batch in batches for m in batch]
    capture = tmp / "capture.jsonl"
    capture.write_text("\n".join(lines) + "\n")
    return config, len(lines)


def test_replay_progress_on_a_terminal(tmp_path: Path) -> None:
    config, n = _capture(tmp_path)
    assert count_lines([str(tmp_path / "capture.jsonl")]) == n
    out = io.StringIO()
    with ProgressBars(Console(file=out, force_terminal=True, width=120,
                              color_system=None)) as bars:
        replay(load_config(config), [str(tmp_path / "capture.jsonl")], tmp_path / "out",
               progress=bars)
    text = out.getvalue()
    assert "replay" in text and f"{n}/{n} messages" in text
    assert re.search(r"messages [\d,]+/s", text)


@pytest.mark.parametrize("terminal,flag,bars", [
    (True, [], True), (True, ["--no-progress"], False), (False, [], False),
])
def test_replay_cli_progress_only_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    terminal: bool, flag: list[str], bars: bool,
) -> None:
    config, n = _capture(tmp_path)
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    code = cli.main(["replay", *flag, "--config", str(config), "--out", str(tmp_path / "out"),
                     str(tmp_path / "capture.jsonl")])
    assert code == 0
    assert (tmp_path / "out" / "summary.json").exists()
    if bars:
        assert f"{n}/{n}" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err.getvalue())
    else:
        assert err.getvalue() == ""


def test_the_app_logs_its_alerts_for_the_view(tmp_path: Path) -> None:
    """App keeps the transitions it sends (here to an unreachable loopback broker: the
    sink refuses at once) in ``alert_log``, from which AppFeed takes the new ones."""
    from monitor.app import App
    from monitor.broker import free_port

    config, batches = _write_stream(tmp_path)
    config.write_text(CONFIG + f"""
[kafka]
bootstrap_servers = "127.0.0.1:{free_port()}"
[state]
dir = "{tmp_path / 'state'}"
""")
    app = App(load_config(config))
    view = LiveView()
    feed = AppFeed(app)
    for batch in batches:
        app._process(batch)
        app._publish()
        feed.pull(view)
    assert [(seq, e.status, e.rule) for seq, e in app.alert_log] == [(1, "firing", "accuracy-low")]
    assert [(t.status, t.rule) for t in view.transitions] == [("firing", "accuracy-low")]
    assert "accuracy-low FIRING" in _text(view)


def test_a_small_move_is_not_drawn_as_a_cliff() -> None:
    """accuracy 0.862 -> 0.860 stays about level: a 0..1 metric is drawn over at least 0.1;
    a fall of 0.14 (the demo's drift) still spans the blocks."""
    view = LiveView()
    for value in (0.862, 0.8615, 0.861, 0.860):
        view._record("m", "accuracy@5m", value)
    levels = _levels(view.spark("m", "accuracy@5m"))
    assert max(levels) - min(levels) <= 1  # one block at most, not the full height
    for value in (0.88, 0.80, 0.74):
        view._record("m", "f1@5m", value)
    assert view.spark("m", "f1@5m") == "█▄▁"


def test_log_lines_stay_inside_the_view() -> None:
    """While the view is shown, log lines go to its tail (the last few, inside the panel),
    not to the terminal above it; header lines are cut, not wrapped."""
    import structlog as structlog_

    console = Console(file=io.StringIO(), width=100, force_terminal=True)
    long_header = "demo model fraud · " + "x" * 200
    view = LiveView(header=long_header)
    view.update(Report(), RuntimeStats())
    with live_session(view, "info", console=console):
        for i in range(6):
            structlog_.get_logger("test").warning("something_odd", n=i)
        assert view.log_tail is not None
        assert [line.count("something_odd") for line in view.log_tail.lines] == [1] * 4
        assert "n=5" in view.log_tail.lines[-1]
        inner = Console(file=io.StringIO(), width=100)
        inner.print(view.render(100))
        shown = inner.file.getvalue()
    assert "recent log lines" in shown and "n=5" in shown and "n=1" not in shown
    assert sum("demo model fraud" in line for line in shown.splitlines()) == 1
    assert all(len(line) <= 100 for line in shown.splitlines())
    assert "something_odd" not in console.file.getvalue()  # nothing above the view
