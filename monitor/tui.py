"""The live terminal view of ``monitor demo`` and ``monitor run --tui``, and progress bars.

:class:`LiveView` is fed once per tick with the daemon's latest
:class:`~monitor.core.report.Report`, its :class:`~monitor.outputs.prometheus.RuntimeStats`
and the alert transitions sent since the previous tick (:class:`AppFeed` reads all
three from a running :class:`~monitor.app.App` without touching its engine). It keeps a
bounded ring of recent values per (model, signal), one value per closed pane, and renders
with ``rich``: per model the task's headline metrics per window and the largest drift
signals, each with a sparkline; the alert rules that fire; the last alert transitions; lag
per input topic, events/s and rejects.

The view runs in its own thread (``run --tui``) or the demo's main thread, at most twice a
second; the daemon's loop only appends to a bounded deque. Neither :meth:`LiveView.update`
nor :meth:`LiveView.render` raises: an error is logged once and the view shows it instead
of the panel, and the daemon keeps going.

:class:`ProgressBars` are ``rich.progress`` bars for ``monitor replay`` and ``monitor tune``
on a terminal, and do nothing without one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TextIO, cast

import structlog
from rich import box
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from monitor.catalogue import SIGNALS
from monitor.config import MonitorConfig
from monitor.core.report import ModelReport, Report
from monitor.core.rules import AlertEvent
from monitor.outputs.prometheus import RuntimeStats

__all__ = [
    "HEADLINE_METRICS",
    "AppFeed",
    "LiveView",
    "ProgressBars",
    "live_session",
    "run_tui",
    "run_view",
    "sparkline",
]

log = structlog.get_logger(__name__)

#: The metrics shown per window, by task (names of :mod:`monitor.catalogue`);
#: ``label_coverage`` and ``estimated_accuracy`` follow when the report has them.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "f1", "roc_auc"),
    "multiclass": ("accuracy", "macro_f1"),
    "regression": ("mae", "rmse"),
}
EXTRA_METRICS = ("label_coverage", "estimated_accuracy")
#: Drift statistics shown, with the direction that means "more drift" (the catalogue's).
DRIFT_STATS: dict[str, str] = {
    s: "low" if SIGNALS[s].higher_is == "better" else "high" for s in ("psi", "wasserstein", "chi2")
}
#: Longest refresh rate of the view (Hz).
MAX_HZ = 2.0

_BLOCKS = "▁▂▃▄▅▆▇█"


def spark_scale(values: Iterable[float], min_span: float = 0.0) -> tuple[float, float] | None:
    """The (low, high) a sparkline of ``values`` is drawn between: their finite range,
    widened about its middle to at least ``min_span``; ``None`` without a finite value.

    >>> [round(x, 3) for x in spark_scale([0.862, 0.860], min_span=0.1)]
    [0.811, 0.911]
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    lo, hi = min(finite), max(finite)
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return lo, hi


def sparkline(values: Iterable[float], scale: tuple[float, float] | None = None) -> str:
    """Unicode block sparkline drawn between ``scale`` (low, high), by default the smallest
    and largest finite value; values outside the scale are clipped to it.

    A value that is not finite is a blank; a constant series is all lowest blocks.

    >>> sparkline([0.0, 0.5, 1.0])
    '▁▅█'
    >>> sparkline([2.0, float("nan"), 2.0])
    '▁ ▁'
    >>> sparkline([0.862, 0.861, 0.860], scale=(0.8, 0.9))  # no cliff from 0.002
    '▅▅▅'
    """
    values = list(values)
    if scale is None:
        scale = spark_scale(values)
    if scale is None:
        return " " * len(values)
    lo, hi = scale
    span = hi - lo
    top = len(_BLOCKS) - 1
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        else:
            level = 0 if span <= 1e-12 else round((min(max(v, lo), hi) - lo) / span * top)
            out.append(_BLOCKS[level])
    return "".join(out)


#: Smallest range a metric's sparklines are drawn over: a move of 0.002 in an accuracy
#: is not drawn as a cliff. Metrics in 0..1 get 0.1; others their own range.
SPARK_MIN_SPAN = 0.1
#: Units (of :mod:`monitor.catalogue`) whose values lie in 0..1 (or -1..1).
_BOUNDED_UNITS = frozenset({"share", "unit_interval", "correlation", "p_value"})


#: Narrowest terminal that shows the sparklines' scale column.
SCALE_MIN_WIDTH = 80


def _min_span(metric: str) -> float:
    head = metric.split(":", 1)[0]
    bounded = head in SIGNALS and SIGNALS[head].unit in _BOUNDED_UNITS
    return SPARK_MIN_SPAN if bounded or metric.endswith("_rate") else 0.0


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -digits):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


@dataclass(frozen=True, slots=True)
class Transition:
    """One alert transition as the view lists it."""

    ts: float
    model: str
    rule: str
    status: str
    signal: str
    value: float | None
    threshold: float | None


class LiveView:
    """The live terminal view: fed by :meth:`update` once per tick, drawn by :meth:`render`.

    Parameters
    ----------
    title
        The panel's title.
    history
        Values kept per (model, signal) for its sparkline (one per closed pane).
    spark_width
        Sparkline characters drawn (the most recent values).
    transitions
        Alert transitions listed (the most recent).
    top_drift
        Drift signals listed per statistic (psi, wasserstein, chi2), plus ``pca_error``.
    header, footer
        Optional extra lines: a callable returning markup (called at each render), or text.

    Examples
    --------
    >>> from io import StringIO
    >>> view = LiveView("monitor")
    >>> view.update(Report(), RuntimeStats())
    >>> console = Console(file=StringIO(), width=80)
    >>> console.print(view.render())
    >>> "no model has reported yet" in console.file.getvalue()
    True
    """

    def __init__(
        self,
        title: str = "monitor",
        *,
        history: int = 120,
        spark_width: int = 20,
        transitions: int = 8,
        top_drift: int = 2,
        header: Callable[[], str] | str | None = None,
        footer: str = "",
    ) -> None:
        for name, value in (("history", history), ("spark_width", spark_width),
                            ("transitions", transitions), ("top_drift", top_drift)):
            if value < 1:
                raise ValueError(f"Invalid {name!r}: {value!r}; valid: >= 1")
        self.title = title
        self.history = history
        self.spark_width = spark_width
        self.top_drift = top_drift
        self.header = header
        self.footer = footer
        self.series: dict[tuple[str, str], deque[float]] = {}
        self.transitions: deque[Transition] = deque(maxlen=transitions)
        self.report: Report | None = None
        self.runtime: RuntimeStats | None = None
        self.rate: deque[float] = deque(maxlen=history)
        self._rate_points: deque[tuple[float, int]] = deque(maxlen=10)
        self._last_pane: int | None = None
        self._failed: set[str] = set()
        #: Log lines kept while the view is shown (see :func:`live_session`), shown inside it.
        self.log_tail: LogTail | None = None

    # ------------------------------------------------------------------ feeding
    def update(
        self,
        report: Report,
        runtime: RuntimeStats,
        alerts: Sequence[AlertEvent] = (),
        now: float | None = None,
    ) -> None:
        """Take the latest report and runtime figures, and the alert transitions sent since
        the previous call. Sparklines get a value each time a pane has closed since."""
        try:
            self._update(report, runtime, alerts, time.time() if now is None else now)
        except Exception:
            self._log_once("update")

    def _update(self, report: Report, runtime: RuntimeStats, alerts: Sequence[AlertEvent],
                now: float) -> None:
        self.report, self.runtime = report, runtime
        for event in alerts:
            self.transitions.append(Transition(
                event.ts, event.model, event.rule, event.status, event.signal,
                event.value, event.threshold,
            ))
        self._rate_points.append((now, report.events))
        (t0, e0), (t1, e1) = self._rate_points[0], self._rate_points[-1]
        if t1 > t0:
            self.rate.append((e1 - e0) / (t1 - t0))
        if report.panes_closed == self._last_pane:
            return
        self._last_pane = report.panes_closed
        for model in report.models.values():
            if not model.slices:
                continue
            windows = model.overall.windows
            for window, metrics in windows.items():
                for name in self._headline(model):
                    if name in metrics:
                        self._record(model.name, f"{name}@{window}", metrics[name])
            window = self.drift_window(model)
            for name, value in windows.get(window, {}).items():
                if _is_drift(name):
                    self._record(model.name, f"{name}@{window}", value)

    def _record(self, model: str, signal: str, value: float) -> None:
        ring = self.series.get((model, signal))
        if ring is None:
            ring = self.series[model, signal] = deque(maxlen=self.history)
        ring.append(value)

    @staticmethod
    def _headline(model: ModelReport) -> tuple[str, ...]:
        return HEADLINE_METRICS.get(model.task, ()) + EXTRA_METRICS

    @staticmethod
    def drift_window(model: ModelReport) -> str:
        """The window whose drift signals are shown: the first one that is not ``all``."""
        windows = list(model.overall.windows) if model.slices else []
        recent = [w for w in windows if w != "all"]
        return recent[0] if recent else "all"

    def spark(self, model: str, signal: str, width: int | None = None,
              scale: tuple[float, float] | None = None) -> str:
        """The sparkline of ``signal`` (``name@window``) of ``model``: its last values, at
        most ``width`` (by default ``spark_width``), drawn between ``scale`` (default:
        their own range, at least :func:`_min_span` of the metric)."""
        ring = self.series.get((model, signal))
        if not ring:
            return ""
        values = list(ring)[-(width or self.spark_width):]
        if scale is None:
            scale = spark_scale(values, _min_span(signal.rsplit("@", 1)[0]))
        return sparkline(values, scale)

    def row_scale(self, model: str, name: str, windows: Iterable[str],
                  width: int | None = None) -> tuple[float, float] | None:
        """One scale for a metric's sparklines in every window (so that they compare): the
        range of the values they draw, at least :func:`_min_span` of the metric."""
        drawn: list[float] = []
        for window in windows:
            ring = self.series.get((model, f"{name}@{window}"))
            if ring:
                drawn.extend(list(ring)[-(width or self.spark_width):])
        return spark_scale(drawn, _min_span(name))

    def top_drift_signals(self, model: ModelReport) -> list[tuple[str, float]]:
        """The drift signals listed for ``model``: per statistic the ``top_drift`` largest
        (smallest p-values for chi2), then ``pca_error``; as (``name@window``, value)."""
        window = self.drift_window(model)
        values = model.overall.windows.get(window, {}) if model.slices else {}
        out: list[tuple[str, float]] = []
        for stat, worse in DRIFT_STATS.items():
            found = [(n, v) for n, v in values.items()
                     if n.startswith(stat + ":") and math.isfinite(v)]
            found.sort(key=lambda item: item[1], reverse=worse == "high")
            out += [(f"{n}@{window}", v) for n, v in found[: self.top_drift]]
        if "pca_error" in values:
            out.append((f"pca_error@{window}", values["pca_error"]))
        return out

    # ------------------------------------------------------------------ drawing
    def render(self, width: int | None = None) -> RenderableType:
        """The view as one ``rich`` renderable, its sparklines shortened to fit ``width``
        columns if given; never raises."""
        try:
            return self._render(width)
        except Exception as exc:
            self._log_once("render")
            return Panel(Text(f"the view failed to render: {exc!r}"), title=self.title)

    def _log_once(self, what: str) -> None:
        if what not in self._failed:
            self._failed.add(what)
            log.exception("tui_failed", stage=what)

    def _render(self, width: int | None) -> RenderableType:
        parts: list[RenderableType] = []
        if self.header is not None:
            header = Text.from_markup(self.header() if callable(self.header) else self.header)
            parts.extend(_one_line(line) for line in header.split())
        report, runtime = self.report, self.runtime
        if report is None or runtime is None:
            parts.append(Text("starting the daemon, joining the consumer group ..."))
        else:
            parts.extend(_one_line(line) for line in self._runtime_text(report, runtime).split())
            if not report.models:
                parts.append(Text("no model has reported yet"))
            for model in report.models.values():
                parts.append(self._model_panel(model, width))
            parts.append(self._transitions_table())
        if self.log_tail is not None and self.log_tail.lines:
            parts.append(Text("recent log lines", style="bold"))
            parts.extend(_one_line(Text(line, style="dim")) for line in self.log_tail.lines)
        return Panel(Group(*parts), title=f"[bold]{self.title}[/]", subtitle=self.footer or None,
                     border_style="blue")

    def _runtime_text(self, report: Report, runtime: RuntimeStats) -> Text:
        lag = ", ".join(
            f"{t} {int(n):,}" for t, n in sorted(lag_by_topic(runtime.lag).items())) or "-"
        rate = self.rate[-1] if self.rate else None
        rate_text = "-" if rate is None else f"{rate:,.0f}"
        rejects = sum(report.rejects.values())
        reasons: dict[str, int] = {}
        for (_, reason), n in report.rejects.items():
            reasons[reason] = reasons.get(reason, 0) + n
        top = sorted(reasons.items(), key=lambda item: -item[1])[:3]
        reject_text = f"{rejects:,}" + (
            " (" + ", ".join(f"{r} {n:,}" for r, n in top) + ")" if top else "")
        if math.isfinite(report.watermark):
            watermark = f"{_utc(report.watermark)} UTC ({time.time() - report.watermark:.1f} s ago)"
        else:
            watermark = "not yet"
        text = Text()
        text.append("events/s ", style="bold")
        text.append(f"{rate_text} ")
        text.append(sparkline(list(self.rate)[-self.spark_width:]), style="green")
        text.append(f" · events {report.events:,} · ")
        text.append("consumer lag ", style="bold")
        text.append(f"{lag}\n")
        text.append("rejects ", style="bold")
        text.append(f"{reject_text} · dead letters {runtime.dead_letters:,} · ")
        text.append("watermark ", style="bold")
        text.append(f"{watermark} · panes {report.panes_closed:,} · partitions "
                    f"{runtime.assigned_partitions} · ready {'yes' if runtime.ready else 'no'} · "
                    f"checkpoints {runtime.checkpoints} · alerts sent {runtime.alerts}")
        return text

    def _model_panel(self, model: ModelReport, width: int | None) -> RenderableType:
        counts = model.counts
        head = Text.from_markup(
            f"[bold cyan]{model.name}[/] ({model.task}) · predictions "
            f"{int(counts.get('predictions', 0)):,} · labels {int(counts.get('labels', 0)):,} · "
            f"matched {int(counts.get('matched', 0)):,} · pending {int(counts.get('pending', 0)):,}"
            f" · expired {int(counts.get('expired', 0)):,}"
        )
        if not model.slices:
            return Group(head, Text("no pane closed yet"))
        windows = model.overall.windows
        names = [n for n in self._headline(model) if any(n in windows[w] for w in windows)]
        label = max((len(n) for n in names), default=6)
        spark = self.spark_width
        if width is not None and windows:
            # panel border and padding 4, label column + 2, per window "  0.123 " + 2
            # and the scale column ("0.811..0.911") 14 when there is room for it
            scale_room = 14 if width >= SCALE_MIN_WIDTH else 0
            spark = max(1, min(spark, (width - 4 - label - 2 - scale_room) // len(windows) - 10))
        metrics = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        metrics.add_column("metric", style="bold", no_wrap=True, min_width=label)
        for window in windows:
            metrics.add_column(window, justify="left", no_wrap=True)
        with_scale = width is None or width >= SCALE_MIN_WIDTH
        if with_scale:
            metrics.add_column("scale", justify="left", no_wrap=True, style="dim")
        for name in names:
            cells = []
            scale = self.row_scale(model.name, name, windows, spark)
            for window in windows:
                value = windows[window].get(name)
                cell = Text(f"{_fmt(value):>7} ")
                cell.append(self.spark(model.name, f"{name}@{window}", spark, scale),
                            style="green")
                cells.append(cell)
            scale_text = "" if scale is None else f"{_fmt(scale[0])}..{_fmt(scale[1])}"
            metrics.add_row(name, *cells, *([scale_text] if with_scale else []))
        drift = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        drift.add_column(f"drift ({self.drift_window(model)})", style="bold", no_wrap=True)
        drift.add_column("value", justify="right")
        drift.add_column("history", no_wrap=True)
        for signal, value in self.top_drift_signals(model):
            drift.add_row(signal.rsplit("@", 1)[0], _fmt(value),
                          Text(self.spark(model.name, signal), style="magenta"))
        # Side by side when the terminal is wide enough, else one under the other.
        tables = [metrics, drift] if drift.row_count else [metrics]
        return Group(head, Columns(tables, padding=(0, 3)), self._rules_text(model))

    @staticmethod
    def _rules_text(model: ModelReport) -> Text:
        text = Text()
        text.append("alerts ", style="bold")
        if not model.alerts:
            text.append("no rules")
            return text
        active = [a for a in model.alerts if a.state != "inactive"]
        if not active:
            text.append(f"{len(model.alerts)} rule(s), none firing", style="green")
            return text
        for i, a in enumerate(active):
            if i:
                text.append(" · ")
            since = "" if a.since is None else f" since {_utc(a.since)}"
            text.append(f"{a.rule} {a.state.upper()}",
                        style="bold red" if a.state == "firing" else "yellow")
            text.append(f" ({a.signal} {_fmt(a.value)} vs {_fmt(a.threshold)}{since})")
        return text

    def _transitions_table(self) -> RenderableType:
        if not self.transitions:
            return Text.from_markup("[bold]alert transitions[/] none yet")
        table = Table(title="alert transitions (event time, UTC)", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for column in ("time", "model", "rule", "status", "signal", "value", "threshold"):
            table.add_column(column, justify="right" if column in ("value", "threshold")
                             else "left")
        for t in reversed(self.transitions):
            style = "bold red" if t.status == "firing" else "green"
            table.add_row(_utc(t.ts), t.model, t.rule, Text(t.status, style=style), t.signal,
                          _fmt(t.value), _fmt(t.threshold))
        return table


def _one_line(text: Text) -> Text:
    """``text`` cut with an ellipsis at the panel's width instead of wrapped."""
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class LogTail(io.TextIOBase):
    """A text stream keeping the last ``size`` log lines written to it: while the live
    view is shown, log lines go here and the view shows them inside its panel, instead
    of scrolling over it."""

    def __init__(self, size: int = 4) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *done, self._partial = (self._partial + text).split("\n")
        self.lines.extend(line for line in done if line.strip())
        return len(text)

    def isatty(self) -> bool:
        return False


def _is_drift(name: str) -> bool:
    """The drift statistics the view draws, and the per-model drift signal (pca_error)."""
    head, _, subject = name.partition(":")
    model_level = not subject and head in SIGNALS and SIGNALS[head].kind == "drift"
    return head in DRIFT_STATS or model_level


# ------------------------------------------------------------------------- feeding a view


class _AppLike(Protocol):
    alert_log: deque[tuple[int, AlertEvent]]


class AppFeed:
    """Feeds a view from a running app, from any thread, reading only: its ``latest``
    (report, runtime), replaced whole each tick, and its ``alert_log`` of (sequence number,
    event), of which it takes those newer than the last taken."""

    def __init__(self, app: _AppLike) -> None:
        self.app = app
        self.seq = 0
        self.latest: object = None

    def pull(self, view: LiveView) -> bool:
        """Update ``view`` if the app has published since the last pull; whether it had."""
        latest: tuple[Report, RuntimeStats] | None = getattr(self.app, "latest", None)
        if latest is None or latest is self.latest:
            return False
        self.latest = latest
        logged = tuple(self.app.alert_log)  # one C-level copy: safe against the loop's appends
        new = [event for seq, event in logged if seq > self.seq]
        if logged:
            self.seq = max(self.seq, logged[-1][0])
        view.update(latest[0], latest[1], new)
        return True


def run_view(
    view: LiveView,
    app: _AppLike,
    live: Live,
    until: Callable[[], bool],
    hz: float = MAX_HZ,
) -> None:
    """Redraw ``live`` from ``app`` until ``until()``: checks at ``hz`` (at most
    :data:`MAX_HZ`), draws when the app has published (once a second) or, for the header's
    clock, a second after the last draw. A failing terminal write is logged once and the
    loop goes on: the daemon must not notice the view."""
    period = 1.0 / min(hz, MAX_HZ)
    feed = AppFeed(app)
    failed = False
    drawn = -math.inf
    while True:
        started = time.monotonic()
        if feed.pull(view) or started - drawn >= 1.0:
            drawn = started
            try:
                live.update(view.render(live.console.width), refresh=True)
            except Exception:
                if not failed:
                    failed = True
                    log.exception("tui_draw_failed")
        if until():
            return
        time.sleep(max(0.0, period - (time.monotonic() - started)))


@contextlib.contextmanager
def live_session(view: LiveView, level: str, console: Console | None = None,
                 logs_through_view: bool = True) -> Iterator[Live]:
    """A ``rich`` Live display of ``view``; with ``logs_through_view``, log lines go into
    the view (its last few lines, inside the panel: nothing scrolls over it) while it is
    shown, and back to stdout after."""
    from monitor.logs import configure_logging

    console = console or Console()
    with Live(view.render(console.width), console=console, auto_refresh=False, transient=False,
              redirect_stdout=logs_through_view, redirect_stderr=logs_through_view) as live:
        if logs_through_view:
            view.log_tail = LogTail()
            configure_logging(level, json=False, stream=cast(TextIO, view.log_tail))
        try:
            yield live
        finally:
            if logs_through_view:
                view.log_tail = None
                configure_logging(level, json=False, stream=sys.__stdout__)


def current_level() -> str:
    """The root logger's level name, as :func:`~monitor.logs.configure_logging` takes it."""
    return logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()


def start_view_thread(view: LiveView, app: _AppLike, live: Live,
                      stop: threading.Event) -> threading.Thread:
    """:func:`run_view` in a daemon thread until ``stop`` is set (``monitor run --tui``)."""
    thread = threading.Thread(target=run_view, args=(view, app, live, stop.is_set),
                              name="monitor-tui", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------- progress


class ProgressBars:
    """``rich.progress`` bars on ``console`` (a terminal), or nothing when it is ``None``.

    >>> with ProgressBars(None) as bars:
    ...     task = bars.add("replay", total=10, unit="events")
    ...     bars.advance(task, 10)
    """

    def __init__(self, console: Console | None) -> None:
        self.progress: Progress | None = None
        if console is not None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TextColumn("[cyan]{task.fields[speed]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
                refresh_per_second=4,
                # stdout carries the logs (and may be a file): never divert it to the bars
                redirect_stdout=False,
            )

    @classmethod
    def on_stderr(cls, enabled: bool = True) -> ProgressBars:
        """Bars on stderr when ``enabled`` and stderr is a terminal; else none."""
        on = enabled and sys.stderr.isatty()
        return cls(Console(stderr=True) if on else None)

    def __enter__(self) -> ProgressBars:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def add(self, description: str, total: float | None, unit: str = "") -> TaskID | None:
        """A new bar; ``unit`` names what is counted (its rate per second is shown)."""
        if self.progress is None:
            return None
        return self.progress.add_task(description, total=total, unit=unit, speed="")

    def advance(self, task: TaskID | None, n: float = 1.0) -> None:
        """Count ``n`` more done on ``task``."""
        if self.progress is None or task is None:
            return
        self.progress.advance(task, n)
        done = self.progress.tasks[self._index(task)]
        if done.elapsed:  # the mean rate since the start: steadier than rich's recent one
            self.progress.update(task, speed=f"{done.completed / done.elapsed:,.0f}/s")

    def finish(self, task: TaskID | None) -> None:
        """Mark ``task`` complete (its total may have been an estimate)."""
        if self.progress is None or task is None:
            return
        done = self.progress.tasks[self._index(task)]
        self.progress.update(task, total=done.completed, completed=done.completed)
        self.progress.refresh()

    def _index(self, task: TaskID) -> int:
        assert self.progress is not None
        return next(i for i, t in enumerate(self.progress.tasks) if t.id == task)


def lag_by_topic(lag: Mapping[tuple[str, int], float]) -> dict[str, float]:
    """Consumer lag summed per topic."""
    out: dict[str, float] = {}
    for (topic, _), n in lag.items():
        out[topic] = out.get(topic, 0.0) + n
    return out


# --------------------------------------------------------------------------- run --tui


def run_tui(config: MonitorConfig, level: str) -> int:
    """``monitor run --tui``: the daemon in this thread, the live view in another.

    Needs a terminal on stdout: without one it prints why on stderr and returns 2 (the
    daemon does not start). Logs go to stderr: while the view is shown they are printed
    above it (console renderer) when stderr is the terminal too, and are JSON lines when
    stderr is redirected (``2>monitor.log``). ``[outputs] cloudwatch`` (EMF lines on stdout)
    would tear the view, so it is refused the same way.
    """
    from monitor.app import App
    from monitor.kafka.topics import TopicLayoutError
    from monitor.logs import configure_logging

    if not sys.stdout.isatty():
        print("monitor run: --tui needs a terminal on stdout; without one, run without --tui "
              "(JSON log lines on stdout)", file=sys.stderr)
        return 2
    if config.outputs.cloudwatch:
        print("monitor run: --tui and [outputs] cloudwatch both write to stdout; turn one off",
              file=sys.stderr)
        return 2
    through_view = sys.stderr.isatty()
    configure_logging(level, json=not through_view, stream=sys.stderr)
    app = App(config)
    app.install_signal_handlers()
    names = ", ".join(m.name for m in config.models)
    view = LiveView(f"monitor run · {names}",
                    footer=f"/metrics on {config.http.host}:{config.http.port} · Ctrl-C stops")
    with live_session(view, level, logs_through_view=through_view) as live:
        thread = start_view_thread(view, app, live, app.stop)
        try:
            return app.run()
        except TopicLayoutError as exc:
            print(f"monitor: {exc}", file=sys.stderr)
            return 2
        finally:
            app.stop.set()
            thread.join(2.0)
