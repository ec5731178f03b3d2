"""``monitor report``: the HTML page of a replay of the demo stream, loaded in headless Chromium.

The browser is Debian's ``chromium`` driven over the DevTools protocol (``websocket-client``):
every ``Network.requestWillBeSent`` event is recorded, so a page that fetched anything
(a CDN copy of plotly.js, a font, an image) would be seen. ``./dev test`` installs
Chromium; without it these tests fail rather than skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websocket

from monitor.cli import main
from monitor.demo import write_capture
from monitor.report_html import (
    DRIFT_COLOUR_RANGE,
    MAX_POINTS,
    ModelSeries,
    build_figures,
    model_verdict,
    render_report,
)

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "report-screenshot.png"
#: Demo traffic: 5.5 min of event time at 40 predictions/s. The drift runs from 60 s to
#: 180 s; the demo's rule (accuracy@ewm1m < 0.8 for 30 s) fires near 2:00, resolves near 4:50.
SECONDS, RATE = 330.0, 40.0
RENDER_TIMEOUT_S = 30.0


# ------------------------------------------------------------------------------ browser


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        exe = shutil.which("chromium")
        assert exe is not None, "Debian 'chromium' is not installed (./dev test installs it)"
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.events: list[dict[str, Any]] = []
        self._id = 0
        try:
            port = self._port(profile / "DevToolsActivePort")
            pages = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
            self.ws = websocket.create_connection(url, timeout=RENDER_TIMEOUT_S,
                                                  suppress_origin=True)
            self.call("Network.enable")
            self.call("Page.enable")
        except BaseException:
            self.close()
            raise

    def _port(self, active: Path) -> int:
        # Chromium's own start: 1-2 s on an idle machine, over 20 s once under a full
        # suite on two busy cores (CI saw it); the test is about the report, not this.
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "chromium exited at start"
            if active.exists() and active.read_text().strip():
                return int(active.read_text().split()[0])
            time.sleep(0.1)
        raise AssertionError("chromium did not open its DevTools port")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command; keep the events that arrive meanwhile; return its result."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                assert "error" not in message, f"{method}: {message['error']}"
                return dict(message.get("result", {}))
            self.events.append(message)

    def wait_event(self, method: str) -> dict[str, Any]:
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def load(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def requested(self) -> list[str]:
        """URLs of every request the page made since the last :meth:`load`."""
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> None:
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=min(height, 16000),
                  deviceScaleFactor=1, mobile=False)
        time.sleep(0.5)  # responsive plots re-lay out to the new viewport
        data = self.call("Page.captureScreenshot", format="png")["data"]
        import base64

        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        b = Browser(Path(profile))
        try:
            yield b
        finally:
            b.close()


# ------------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo stream captured without a broker, replayed and reported by the CLI."""
    base = tmp_path_factory.mktemp("report")
    write_capture(base / "demo", SECONDS, RATE)
    out = base / "replay-out"
    # Relative paths, as a user types them: the page names "replay-out", not a temp dir.
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "report", "--out", "replay-out", "--config",
         "demo/monitor.toml", "demo/capture.jsonl"],
        capture_output=True, text=True, timeout=120, cwd=base,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert re.search(r"report\.html: \d+ plot\(s\)", result.stdout), result.stdout
    return base, out


def _figure_ids(page: Path) -> list[str]:
    return re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page.read_text())


def test_every_plot_renders_without_network_requests(
    demo_report: tuple[Path, Path], browser: Browser
) -> None:
    _, out = demo_report
    page = out / "report.html"
    ids = _figure_ids(page)
    # One plot per kind: learning curves, the generalization gap and label-free estimates
    # (the demo's reference has predictions, scores and labels), predictions, a drift
    # heatmap per window, data quality, labels, label delay, the alert timeline.
    expected = {"performance", "estimated", "gap", "predictions", "drift-all", "drift-5m",
                "drift-ewm1m", "quality", "labels", "label-delay", "alerts"}
    assert {i.removeprefix("fig-fraud-") for i in ids} == expected
    url = page.as_uri()
    browser.load(url)
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    rendered: list[str] = []
    while time.monotonic() < deadline:
        rendered = browser.evaluate(
            "Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".filter(d => d.querySelector('.main-svg') && d._fullLayout).map(d => d.id)"
        )
        if len(rendered) == len(ids):
            break
        time.sleep(0.2)
    # data: URLs are drawn in the page (Plotly paints heatmaps into PNG data URLs): no I/O.
    assert [u for u in browser.requested() if not u.startswith("data:")] == [url]
    assert sorted(rendered) == sorted(ids)
    # Every figure has drawn its data: lines, heatmap images or bars in the plot area.
    empty = browser.evaluate(
        "Array.from(document.querySelectorAll('.plotly-graph-div')).filter(d => "
        "!d.querySelector('.scatterlayer path.js-line, .scatterlayer path.point, "
        ".heatmaplayer image, .barlayer path')).map(d => d.id)"
    )
    assert empty == []

    shot = out / "report.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000
    if os.environ.get("MONITOR_UPDATE_SCREENSHOT"):  # refresh docs/report-screenshot.png
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_the_network_check_sees_a_request(browser: Browser, tmp_path: Path) -> None:
    """The recorder above is not blind: a page with a remote image is caught."""
    page = tmp_path / "fetches.html"
    page.write_text("<html><body><img src='http://127.0.0.1:9/x.png'></body></html>")
    browser.load(page.as_uri())
    assert "http://127.0.0.1:9/x.png" in browser.requested()


def test_page_is_self_contained_and_bounded(demo_report: tuple[Path, Path]) -> None:
    _, out = demo_report
    text = (out / "report.html").read_text()
    # Nothing is loaded by reference: plotly.js is inline, there are no stylesheets or fonts.
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", text)
    assert "<link" not in text
    assert text.count("Plotly.newPlot") == len(_figure_ids(out / "report.html"))
    assert len(text) < 8_000_000


def test_alert_timeline_has_the_demo_alert(demo_report: tuple[Path, Path]) -> None:
    _, out = demo_report
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert [a["status"] for a in alerts] == ["firing", "resolved"]
    _, figures = render_report(out, out / "again")
    timeline = next(f.figure for f in figures if f.key == "fig-fraud-alerts")
    names = {t.name for t in timeline.data}
    assert {"firing", "resolved"} <= names


def test_report_from_a_replay_dir_matches_the_one_from_captures(
    demo_report: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = demo_report
    code = main(["report", "--out", str(tmp_path), "--from", str(out)])
    assert code == 0, capsys.readouterr().err
    assert _figure_ids(tmp_path / "report.html") == _figure_ids(out / "report.html")


# ----------------------------------------------------------------------- figures, units


def _series(n: int, names: list[str]) -> ModelSeries:
    rng = np.random.default_rng(3)
    ts = 1_700_000_000.0 + 10.0 * np.arange(n)
    return ModelSeries("m", ts, {name: rng.random(n) for name in names})


def test_gap_and_estimated_signals_get_their_figure() -> None:
    names = ["accuracy@1h", "reference:accuracy@1h", "gap:accuracy@1h",
             "estimated_accuracy@1h"]
    figures = {f.key: f for f in build_figures(_series(50, names))}
    assert "fig-m-gap" in figures
    traces = {t.name for t in figures["fig-m-gap"].figure.data}
    assert traces == {"gap:accuracy@1h", "estimated_accuracy@1h", "reference:accuracy@1h"}
    performance = {t.name for t in figures["fig-m-performance"].figure.data}
    assert performance == {"1h", "reference 1h"}


def test_without_gap_signals_there_is_no_gap_figure() -> None:
    keys = [f.key for f in build_figures(_series(50, ["accuracy@1h", "psi:x@1h"]))]
    assert keys == ["fig-m-performance", "fig-m-drift-1h"]


def test_long_series_are_downsampled() -> None:
    n = 7 * 24 * 360  # a week of 10 s panes
    figures = build_figures(_series(n, ["f1@1h", "f1@all", "psi:x@1h", "js:x@1h"]))
    for fig in figures:
        for trace in fig.figure.data:
            assert len(trace.x) <= MAX_POINTS, (fig.key, trace.name)


# --------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "{tmp}/nowhere"], "not a directory"),
        (["--from", "{tmp}"], "no signals.jsonl"),
        ([], "give --from REPLAY_DIR, or --config FILE and at least one CAPTURE"),
        (["--config", "{tmp}/c.toml"], "at least one CAPTURE"),
        (["--from", "{tmp}", "x.jsonl"], "not both"),
        (["--config", "{tmp}/c.toml", "{tmp}/missing.jsonl"], "no such capture file"),
        (["--from", "{tmp}/bad"], "bad/signals.jsonl:2: not a signals record"),
        (["--from", "{tmp}/bad-alert"], "bad-alert/alerts.jsonl:1: not an alert event"),
        (["--from", "{tmp}/bad-summary"], "bad-summary/summary.json: not JSON"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = '{"model": "m", "ts": 1.0, "signals": {"f1@all": 0.5}}\n'
    for name, files in {
        "bad": {"signals.jsonl": good + '{"model": "m", "ts": "x"}\n'},
        "bad-alert": {"signals.jsonl": good, "alerts.jsonl": '{"ts": "yesterday"}\n'},
        "bad-summary": {"signals.jsonl": good, "summary.json": "{models"},
    }.items():
        (tmp_path / name).mkdir()
        for file, text in files.items():
            (tmp_path / name / file).write_text(text)
    argv = ["report", "--out", str(tmp_path / "out"), *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("monitor report: ")
    assert message in err


def test_each_model_gets_its_section_and_only_its_alerts(tmp_path: Path) -> None:
    lines = [
        {"model": model, "ts": 1_700_000_000.0 + 10 * i,
         "signals": {"accuracy@all": 0.9 - 0.01 * i, "psi:x@all": 0.01 * i}}
        for i in range(1, 20) for model in ("a", "b")
    ]
    (tmp_path / "signals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    alert = {"alert_id": "1", "status": "firing", "rule": "low", "severity": "warning",
             "model": "a", "signal": "accuracy@all", "value": 0.8, "threshold": 0.85,
             "starts_at": "2023-11-14T22:15:00Z", "ends_at": None,
             "ts": "2023-11-14T22:15:30.000Z"}
    (tmp_path / "alerts.jsonl").write_text(json.dumps(alert) + "\n")
    path, figures = render_report(tmp_path, tmp_path / "out")
    keys = {f.key: f for f in figures}
    assert set(keys) == {f"fig-{m}-{k}" for m in ("a", "b")
                         for k in ("performance", "drift-all", "alerts")}
    assert {t.name for t in keys["fig-a-alerts"].figure.data} >= {"firing"}
    assert {t.name for t in keys["fig-b-alerts"].figure.data} == {"no alert"}
    text = path.read_text()
    assert "id='model-a'" in text and "id='model-b'" in text


def test_a_model_without_a_closed_pane_still_gets_a_section(tmp_path: Path) -> None:
    (tmp_path / "signals.jsonl").write_text("")
    (tmp_path / "summary.json").write_text(json.dumps(
        {"models": {"m": {"counts": {"predictions": 3.0}}}, "rejects": {}}))
    path, figures = render_report(tmp_path, tmp_path)
    assert [f.key for f in figures] == ["fig-m-alerts"]
    assert "Model m" in path.read_text()


# ------------------------------------------------------------ scales, overlay, verdict


def test_drift_heatmaps_have_fixed_colour_scales() -> None:
    """A PSI of 0.03 at most is drawn pale: the scale is 0..0.5 (PSI's 0.25 threshold mid
    scale), not stretched to the page's maximum; p-values reversed on 0..0.1."""
    series = _series(50, ["psi:x@1h", "chi2:x@1h"])
    series.values["psi:x@1h"] *= 0.03
    drift = next(f.figure for f in build_figures(series) if f.key == "fig-m-drift-1h")
    by_name = {t.name: t for t in drift.data}
    psi, chi2 = by_name["psi"], by_name["chi2"]
    assert (psi.zmin, psi.zmax, psi.zauto) == (0.0, 0.5, False)
    assert float(np.max(psi.z)) <= 0.03
    assert (chi2.zmin, chi2.zmax) == DRIFT_COLOUR_RANGE["chi2"] == (0.0, 0.1)
    assert chi2.colorscale != psi.colorscale  # reversed: small p-values are the red end


def test_estimated_and_realized_on_one_plot_with_the_reference() -> None:
    names = ["accuracy@all", "accuracy@5m", "estimated_accuracy@5m", "estimated_accuracy@all",
             "f1@5m"]
    figures = {f.key: f for f in build_figures(_series(50, names), reference={"accuracy": 0.9})}
    overlay = figures["fig-m-estimated"].figure
    traces = [(t.name, t.yaxis) for t in overlay.data]
    assert traces == [("realized (labels)", "y"), ("estimated (no labels)", "y"),
                      ("reference", "y")]
    assert list(overlay.data[2].y) == [0.9, 0.9]
    assert overlay.layout.annotations[0].text == "accuracy@5m"  # the sliding window


def test_rates_are_shown_as_percentages_not_si_prefixes() -> None:
    figures = {f.key: f for f in build_figures(
        _series(50, ["missing_rate:x@1h", "label_coverage@1h", "label_count@1h"]))}
    assert figures["fig-m-quality"].figure.layout.yaxis.tickformat == ".1%"
    labels = figures["fig-m-labels"].figure.layout
    assert (labels.yaxis.tickformat, labels.yaxis2.tickformat) == (".1%", ",.0f")


def _alert(status: str, rule: str, alert_id: str) -> dict[str, Any]:
    return {"model": "m", "status": status, "rule": rule, "alert_id": alert_id,
            "ts": "2023-11-14T22:13:20Z"}


@pytest.mark.parametrize(
    ("alerts", "psi", "status"),
    [
        ([_alert("firing", "acc", "a"), _alert("resolved", "acc", "a"),
          _alert("firing", "f1", "b")], 0.0, "alerting"),
        ([_alert("firing", "acc", "a"), _alert("resolved", "acc", "a")], 0.0, "recovered"),
        ([], 0.4, "drift"),
        ([], 0.2, "ok"),
    ],
)
def test_verdict_per_model(alerts: list[dict[str, Any]], psi: float, status: str) -> None:
    series = _series(50, ["accuracy@1h", "psi:x@1h"])
    series.values["psi:x@1h"] = np.full(50, psi)
    verdict = model_verdict(series, alerts, {"accuracy": 0.9})
    assert verdict.status == status
    if status == "alerting":
        assert verdict.alerts == "2 fired; still firing at the end: f1"
    assert verdict.performance.startswith("accuracy@1h ")
    assert verdict.performance.endswith("(reference 0.900)")


def test_the_demo_report_opens_with_its_verdict(demo_report: tuple[Path, Path]) -> None:
    _, out = demo_report
    text = (out / "report.html").read_text()
    top = text[:text.index("<h2")]
    assert "<h3>Verdict</h3>" in top and "recovered" in top  # the demo's alert resolved
    assert re.search(r"<td>accuracy@5m 0\.\d{3} at the end", top)
