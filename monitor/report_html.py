"""``monitor report``: a replay's output directory as one self-contained HTML page of plots.

The page is built from the files ``monitor replay`` writes (``signals.jsonl``,
``alerts.jsonl``, ``summary.json`` and ``metrics.prom``) and holds, per model:

- the production learning curve: every performance metric over time, one trace per
  window, with reference values (signals named ``reference…`` or a ``reference`` table in
  the summary) drawn as dashed lines, and any ``gap…`` / ``estimated_…`` signal in a figure
  of its own;
- the label-free prediction signals (volume, positive rate, mean score, class shares);
- feature drift as heatmaps (features x time), one per window, the statistic chosen from a
  menu (PSI first);
- data-quality rates (missing, type mismatch, NaN, out of range, unseen, problem rate);
- label coverage per window and the label-delay histogram;
- the alert timeline: firing intervals, firing and resolved marks, detector detections.

Plots are Plotly figures; plotly.js is embedded once, inline, so the page makes no
network request. Series longer than :data:`MAX_POINTS` panes are averaged over equal runs
of consecutive panes (detector detections are summed), which keeps the page small.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots
from prometheus_client.parser import text_string_to_metric_families

from monitor import catalogue
from monitor.catalogue import SIGNALS

__all__ = [
    "MAX_POINTS",
    "Figure",
    "ModelSeries",
    "ReportError",
    "build_figures",
    "downsample",
    "load_alerts",
    "load_label_delay",
    "load_signals",
    "render_report",
    "split_signal",
]

#: Most points per series on the page (about one per pixel of a plot's width); longer
#: series are averaged over runs of panes.
MAX_POINTS = 600
#: Drift statistics, in the order the heatmap menu offers them (the first one present shows).
DRIFT_STATISTICS: tuple[str, ...] = catalogue.DRIFT_STATISTICS
#: Data-quality rates: the per-feature ``*_rate`` signals and the per-model ones.
QUALITY_SIGNALS: tuple[str, ...] = (
    *(s for s in catalogue.DRIFT_SIGNALS if SIGNALS[s].kind == "quality"),
    *catalogue.MODEL_QUALITY_SIGNALS,
)
#: Prediction-side signals that need no label.
LABEL_FREE_SIGNALS: tuple[str, ...] = catalogue.UNLABELLED_METRICS
LABEL_SIGNALS: tuple[str, ...] = catalogue.COVERAGE_SIGNALS
#: Statistics where a small value means drift (drawn with the colour scale reversed).
_SMALL_IS_DRIFT = {s for s in DRIFT_STATISTICS if SIGNALS[s].higher_is == "better"}
#: Fixed colour range of each drift statistic's heatmap: from 0 to twice the catalogue's
#: usual alert bound (PSI 0.25; JS, Wasserstein/sd and binned KS 0.1; chi-square p-value
#: 0.05), which so sits mid-scale: a calm feature stays pale whatever the page's largest
#: value, and values past the top are drawn as the top colour.
DRIFT_COLOUR_RANGE: dict[str, tuple[float, float]] = {
    s: (0.0, 2 * bound)
    for s in DRIFT_STATISTICS
    if (bound := SIGNALS[s].threshold) is not None
}
#: Signals that are shares (0..1), shown as percentages, and their axis title.
_SHARE_AXIS = {"tickformat": ".1%", "title": {"text": "share of predictions"}}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


class ReportError(Exception):
    """A replay directory that cannot be reported on; the message names the file and why."""


@dataclass(slots=True)
class ModelSeries:
    """One model's signals over time: pane ends (Unix s) and one value array per signal
    (NaN where the signal was undefined or absent in a pane)."""

    model: str
    ts: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(slots=True)
class Figure:
    """One plot of the page: ``key`` is its HTML id, ``section`` the heading it sits under."""

    key: str
    section: str
    title: str
    figure: go.Figure


def split_signal(name: str) -> tuple[str, str, str]:
    """``<metric>[:<subject>]@<window>`` -> (metric, subject, window); missing parts are ''.

    >>> split_signal("psi:amount@1h")
    ('psi', 'amount', '1h')
    >>> split_signal("accuracy@all")
    ('accuracy', '', 'all')
    """
    base, _, window = name.rpartition("@")
    if not base:
        base, window = window, ""
    metric, _, subject = base.partition(":")
    return metric, subject, window


class _Line(msgspec.Struct):
    model: str
    ts: float
    signals: dict[str, float | None]


_LINE = msgspec.json.Decoder(_Line)


def load_signals(path: Path) -> dict[str, ModelSeries]:
    """``signals.jsonl`` as one :class:`ModelSeries` per model, in pane order."""
    rows: dict[str, list[_Line]] = {}
    try:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                if line.isspace():
                    continue
                try:
                    record = _LINE.decode(line)
                except msgspec.DecodeError as exc:
                    raise ReportError(f"{path}:{number}: not a signals record: {exc}") from None
                rows.setdefault(record.model, []).append(record)
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return {model: _series(model, records) for model, records in rows.items()}


def _series(model: str, records: list[_Line]) -> ModelSeries:
    """One model's records as a table: runs of records with the same signal names (the
    usual case: a model's signals only change with its config) become numpy blocks at once."""
    names: list[str] = []
    index: dict[str, int] = {}
    blocks: list[tuple[list[int], np.ndarray]] = []
    start = 0
    while start < len(records):
        keys = tuple(records[start].signals)
        stop = start + 1
        while stop < len(records) and tuple(records[stop].signals) == keys:
            stop += 1
        for name in keys:
            if name not in index:
                index[name] = len(names)
                names.append(name)
        # None (an undefined value) becomes NaN in a float array.
        block = np.array([list(r.signals.values()) for r in records[start:stop]], dtype=float)
        blocks.append(([index[k] for k in keys], block.reshape(stop - start, len(keys))))
        start = stop
    table = np.full((len(records), len(names)), np.nan)
    row = 0
    for columns, block in blocks:
        table[row:row + len(block), columns] = block
        row += len(block)
    ts = np.array([r.ts for r in records], dtype=float)
    order = np.argsort(ts, kind="stable")
    table = table[order]
    return ModelSeries(model, ts[order], {n: table[:, i] for n, i in index.items()})


def load_alerts(path: Path) -> list[dict[str, Any]]:
    """The alert events of ``alerts.jsonl`` (an absent file means no alert)."""
    if not path.exists():
        return []
    events = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise TypeError("not a JSON object")
            for key in ("ts", "starts_at", "ends_at"):
                if key == "ts" or event.get(key) is not None:
                    _when(event[key])
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{path}:{number}: not an alert event: {exc}") from None
        events.append(event)
    return events


def load_label_delay(path: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per model, the label-delay histogram of ``metrics.prom``: bucket names and the
    (non-cumulative) count in each (empty when the file or the histogram is absent)."""
    if not path.exists():
        return {}
    cumulative: dict[str, list[tuple[float, float]]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from None
    try:
        for family in text_string_to_metric_families(text):
            if family.name != "monitor_label_delay_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    cumulative.setdefault(sample.labels.get("model", ""), []).append(
                        (bound, sample.value)
                    )
    except ValueError as exc:
        raise ReportError(f"{path}: not a Prometheus exposition: {exc}") from None
    out = {}
    for model, buckets in cumulative.items():
        buckets.sort()
        counts = np.diff(np.array([0.0] + [n for _, n in buckets]))
        names = []
        previous = 0.0
        for bound, _ in buckets:
            names.append(f"> {_seconds(previous)}" if math.isinf(bound)
                         else f"≤ {_seconds(bound)}")
            previous = bound if math.isfinite(bound) else previous
        out[model] = (names, counts)
    return out


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def downsample(
    ts: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points: runs of consecutive panes, each stamped with its last
    pane's end, reduced to the mean of their defined values (``how="sum"``: the sum).

    >>> t, v = downsample(np.arange(6.0), np.array([1.0, 3.0, np.nan, np.nan, 5.0, 7.0]), 3)
    >>> t.tolist(), v.tolist()
    ([1.0, 3.0, 5.0], [2.0, nan, 6.0])
    """
    n = len(ts)
    if n <= max_points:
        return ts, values
    run = math.ceil(n / max_points)
    starts = np.arange(0, n, run)
    ends = np.minimum(starts + run, n) - 1
    defined = np.isfinite(values)
    sums = np.add.reduceat(np.where(defined, values, 0.0), starts)
    counts = np.add.reduceat(defined.astype(np.int64), starts)
    if how == "sum":
        reduced = np.where(counts > 0, sums, np.nan)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            reduced = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return ts[ends], reduced


def _when(value: Any) -> float:
    """Unix seconds of an alert time (RFC 3339 text or a number)."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


def _dates(ts: np.ndarray) -> np.ndarray:
    """Epoch milliseconds, which a ``date`` axis reads: 8 bytes a point on the page, where
    an ISO date string would take about 30."""
    return np.round(np.asarray(ts, dtype=float) * 1000.0)


# ------------------------------------------------------------------------------ figures


@dataclass(slots=True)
class _Signals:
    """A model's signals grouped by kind: metric -> subject -> window -> values."""

    series: ModelSeries
    windows: list[str]
    groups: dict[str, dict[str, dict[str, np.ndarray]]]

    @classmethod
    def of(cls, series: ModelSeries) -> _Signals:
        groups: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        windows: list[str] = []
        for name, values in series.values.items():
            metric, subject, window = split_signal(name)
            groups.setdefault(metric, {}).setdefault(subject, {})[window] = values
            if window not in windows:
                windows.append(window)
        return cls(series, sorted(windows, key=_window_order), groups)

    def has_values(self, metric: str) -> bool:
        return any(
            np.isfinite(v).any() for by_window in self.groups.get(metric, {}).values()
            for v in by_window.values()
        )

    def line(self, values: np.ndarray, how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
        ts, reduced = downsample(self.series.ts, values, how=how)
        # float32 is plenty on a plot and halves what the page carries per value.
        return _dates(ts), reduced.astype(np.float32)


def _window_order(window: str) -> tuple[int, float, str]:
    """``all`` first, then sliding windows by span, then ``ewm`` ones by half-life."""
    if window == "all":
        return (0, 0.0, window)
    kind = 2 if window.startswith("ewm") else 1
    match = re.fullmatch(r"(?:ewm)?(\d+(?:\.\d+)?)([smhd])", window)
    if match is None:
        return (3, 0.0, window)
    span = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return (kind, span, window)


def _unit(metric: str) -> dict[str, Any]:
    """Axis settings that give a metric's values their unit (shares as %, counts, s)."""
    unit = SIGNALS[metric].unit if metric in SIGNALS else None
    if unit == "share" or metric.endswith("_rate"):
        return {"tickformat": ".1%", "title": {"text": "share"}}
    if unit == "count" or metric.endswith("_count"):
        return {"tickformat": ",.0f", "title": {"text": "count"}}
    if metric.endswith(("_seconds", "_delay")):
        return {"tickformat": ",.3~g", "title": {"text": "seconds"}}
    return {"tickformat": ".3~f"}  # no SI prefixes: 0.0004, not "400µ"


def _is_reference(metric: str) -> bool:
    return metric.startswith(("reference", "ref_"))


def _is_gap(metric: str) -> bool:
    return metric.startswith(("gap", "estimated_"))


def _is_performance(metric: str) -> bool:
    """Metrics that need labels (the catalogue's performance metrics, less the binning
    error of roc_auc); a name the catalogue does not know counts unless it is a reference
    or gap value."""
    if metric in SIGNALS:
        return SIGNALS[metric].labelled and not SIGNALS[metric].part_of
    return not (_is_reference(metric) or _is_gap(metric) or metric.endswith("_bin_error"))


def _referred(metric: str, subject: str) -> str:
    """The performance metric a reference signal is for: ``reference:f1`` or
    ``reference_f1`` -> ``f1``."""
    if subject:
        return subject
    return re.sub(r"^(reference|ref)_?", "", metric)


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _layout(fig: go.Figure, title: str, height: int, dates: bool = True) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        template="plotly_white",
        hovermode="x unified",
    )
    if dates:
        fig.update_xaxes(type="date")
    return fig


def _names(sig: _Signals, metrics: Iterable[str]) -> list[str]:
    """``metric[:subject]`` of every signal of ``metrics`` with a defined value."""
    return [
        f"{m}:{s}" if s else m
        for m in metrics if sig.has_values(m)
        for s, by_window in sorted(sig.groups[m].items())
        if any(np.isfinite(v).any() for v in by_window.values())
    ]


def _grid(
    sig: _Signals, names: list[str], title: str, key: str, section: str,
    reference: dict[str, float] | None = None,
) -> list[Figure]:
    """One subplot per ``metric[:subject]``, one trace per window (a colour per window),
    reference signals and values as dashed lines in the subplot of their metric."""
    if not names:
        return []
    cols = 2 if len(names) > 1 else 1
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, shared_xaxes=True,
                        vertical_spacing=min(0.3 / max(rows - 1, 1), 0.08),
                        horizontal_spacing=0.08)
    refs: dict[str, dict[str, np.ndarray]] = {}
    for metric, by_subject in sig.groups.items():
        if _is_reference(metric):
            for subject, by_window in by_subject.items():
                refs.setdefault(_referred(metric, subject), {}).update(by_window)
    shown: set[str] = set()
    for i, name in enumerate(names):
        metric, _, subject = name.partition(":")
        row, col = i // cols + 1, i % cols + 1
        for w, window in enumerate(sig.windows):
            values = sig.groups[metric][subject].get(window)
            if values is None:
                continue
            x, y = sig.line(values)
            fig.add_trace(
                go.Scatter(x=x, y=y, mode="lines", name=window, legendgroup=window,
                           showlegend=window not in shown, line={"color": _colour(w)},
                           connectgaps=False),
                row=row, col=col,
            )
            shown.add(window)
        for window, values in refs.get(name, {}).items():
            x, y = sig.line(values)
            fig.add_trace(
                go.Scatter(x=x, y=y, mode="lines", name=f"reference {window}",
                           legendgroup="reference", showlegend="reference" not in shown,
                           line={"color": "#555", "dash": "dash"}),
                row=row, col=col,
            )
            shown.add("reference")
        if reference and name in reference:
            fig.add_hline(y=reference[name], line={"color": "#555", "dash": "dash"},
                          row=row, col=col)
        unit = _unit(metric)
        if unit:
            fig.update_yaxes(row=row, col=col, **unit)
    fig = _layout(fig, title, max(360, 230 * rows + 60))
    return [Figure(key, section, title, fig)]


def _performance(sig: _Signals, reference: dict[str, float], key: str) -> list[Figure]:
    names = _names(sig, sorted(m for m in sig.groups if _is_performance(m)))
    return _grid(sig, names, "Performance over time, by window (the production learning "
                 "curve)", f"{key}-performance", "Performance", reference)


def _estimated_vs_realized(
    sig: _Signals, reference: dict[str, float], key: str
) -> list[Figure]:
    """One subplot per metric with a label-free estimate: the realized value (labels) and
    the estimate over the shortest sliding window (else ``all``), with the reference value
    as a dashed line. A drop the estimate does not see (a concept drift) shows as the two
    lines parting."""
    pairs = []
    for metric in sorted(sig.groups):
        realized = metric.removeprefix("estimated_")
        if metric == realized or realized not in sig.groups:
            continue
        common = [w for w in sig.windows
                  if w in sig.groups[metric].get("", {}) and w in sig.groups[realized].get("", {})]
        if common:
            window = next((w for w in common if w != "all"), common[0])
            pairs.append((realized, metric, window))
    if not pairs:
        return []
    fig = make_subplots(rows=len(pairs), cols=1, shared_xaxes=True,
                        subplot_titles=[f"{r}@{w}" for r, _, w in pairs],
                        vertical_spacing=min(0.3 / max(len(pairs) - 1, 1), 0.08))
    for row, (realized, metric, window) in enumerate(pairs, start=1):
        for name, values, colour, dash in (
            ("realized (labels)", sig.groups[realized][""][window], _colour(0), None),
            ("estimated (no labels)", sig.groups[metric][""][window], _colour(1), "dot"),
        ):
            x, y = sig.line(values)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, legendgroup=name,
                                     showlegend=row == 1, line={"color": colour, "dash": dash}),
                          row=row, col=1)
        if realized in reference:
            fig.add_trace(go.Scatter(
                x=_dates(sig.series.ts[[0, -1]]), y=[reference[realized]] * 2, mode="lines",
                name="reference", legendgroup="reference", showlegend=row == 1,
                line={"color": "#555", "dash": "dash"}), row=row, col=1)
        fig.update_yaxes(tickformat=".3~f", row=row, col=1)
    title = "Estimated (no labels) and realized (labels) performance, with the reference"
    fig = _layout(fig, title, max(340, 200 * len(pairs) + 100))
    return [Figure(f"{key}-estimated", "Performance", "Estimated and realized", fig)]


def _gap(sig: _Signals, key: str) -> list[Figure]:
    fig = go.Figure()
    i = 0
    for metric in sorted(sig.groups):
        if not (_is_gap(metric) or _is_reference(metric)):
            continue
        for subject, by_window in sorted(sig.groups[metric].items()):
            for window in sig.windows:
                values = by_window.get(window)
                if values is None or not np.isfinite(values).any():
                    continue
                x, y = sig.line(values)
                label = f"{metric}:{subject}@{window}" if subject else f"{metric}@{window}"
                dash = "dash" if _is_reference(metric) else None
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label,
                                         line={"color": _colour(i), "dash": dash}))
                i += 1
    if not fig.data:
        return []
    fig.add_hline(y=0.0, line={"color": "#999", "width": 1})
    fig = _layout(fig, "Reference, generalization gap and estimated performance", 380)
    return [Figure(f"{key}-gap", "Performance", "Reference and gap", fig)]


def _subplots_by_window(
    sig: _Signals, metrics: Sequence[str], title: str, key: str, section: str,
    yrange: tuple[float, float] | None = None,
) -> list[Figure]:
    present = [m for m in metrics if sig.has_values(m)]
    windows = [w for w in sig.windows
               if any(w in by_w for m in present for by_w in sig.groups[m].values())]
    if not present or not windows:
        return []
    fig = make_subplots(rows=len(windows), cols=1, shared_xaxes=True,
                        subplot_titles=[f"window {w}" for w in windows],
                        vertical_spacing=min(0.3 / max(len(windows) - 1, 1), 0.08))
    colours: dict[str, str] = {}
    for row, window in enumerate(windows, start=1):
        for metric in present:
            for subject, by_window in sorted(sig.groups[metric].items()):
                values = by_window.get(window)
                if values is None or not np.isfinite(values).any():
                    continue
                label = f"{metric}:{subject}" if subject else metric
                first = label not in colours
                colour = colours.setdefault(label, _colour(len(colours)))
                x, y = sig.line(values)
                fig.add_trace(
                    go.Scatter(x=x, y=y, mode="lines", name=label, legendgroup=label,
                               showlegend=first, line={"color": colour}),
                    row=row, col=1,
                )
        if yrange is not None:
            fig.update_yaxes(range=list(yrange), row=row, col=1)
    fig.update_yaxes(**_SHARE_AXIS)
    fig = _layout(fig, title, max(340, 220 * len(windows) + 80))
    return [Figure(key, section, title, fig)]


def _drift(sig: _Signals, key: str) -> list[Figure]:
    stats = [s for s in DRIFT_STATISTICS if sig.has_values(s)]
    out = []
    for window in sig.windows:
        traces: list[tuple[str, go.Heatmap]] = []
        for stat in stats:
            features = [f for f, by_w in sorted(sig.groups[stat].items())
                        if window in by_w and np.isfinite(by_w[window]).any()]
            if not features:
                continue
            rows = [sig.line(sig.groups[stat][f][window]) for f in features]
            z = np.vstack([y for _, y in rows])
            zmin, zmax = DRIFT_COLOUR_RANGE.get(stat, (None, None))
            traces.append((stat, go.Heatmap(
                x=rows[0][0], y=features, z=z, name=stat, visible=not traces,
                zmin=zmin, zmax=zmax, zauto=zmin is None,
                colorscale="YlOrRd_r" if stat in _SMALL_IS_DRIFT else "YlOrRd",
                colorbar={"title": {"text": stat}}, hoverongaps=False,
                hovertemplate="%{y}<br>%{x}<br>" + stat + " = %{z:.4g}<extra></extra>",
            )))
        if not traces:
            continue
        fig = go.Figure([t for _, t in traces])
        n_features = max(len(t.y) for _, t in traces)
        if len(traces) > 1:
            buttons = [
                {"label": stat, "method": "update",
                 "args": [{"visible": [j == i for j in range(len(traces))]},
                          {"title.text": f"Feature drift ({stat}), window {window}"}]}
                for i, (stat, _) in enumerate(traces)
            ]
            fig.update_layout(updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right",
                                            "y": 1.18, "yanchor": "top", "direction": "down"}])
        fig = _layout(fig, f"Feature drift ({traces[0][0]}), window {window}",
                      max(300, 40 * n_features + 180))
        fig.update_layout(hovermode="closest")
        out.append(Figure(f"{key}-drift-{_slug(window)}", "Feature drift",
                          f"Drift heatmap, window {window}", fig))
    return out


def _label_delay(delay: tuple[list[str], np.ndarray] | None, key: str) -> list[Figure]:
    if delay is None or not delay[1].sum():
        return []
    names, counts = delay
    fig = go.Figure(go.Bar(x=names, y=counts, marker={"color": _colour(0)},
                           hovertemplate="%{x}: %{y:,.0f} labels<extra></extra>"))
    fig = _layout(fig, "Label delay (event time from prediction to label), all labels", 320,
                  dates=False)
    fig.update_layout(hovermode="closest", xaxis={"title": {"text": "delay"}},
                      yaxis={"title": {"text": "labels"}})
    return [Figure(f"{key}-label-delay", "Labels", "Label delay", fig)]


def _timeline(sig: _Signals, alerts: list[dict[str, Any]], key: str) -> list[Figure]:
    fig = go.Figure()
    end = float(sig.series.ts[-1]) if len(sig.series.ts) else None
    rows: list[str] = []
    by_id: dict[str, dict[str, dict[str, Any]]] = {}
    for event in alerts:
        by_id.setdefault(str(event.get("alert_id")), {})[str(event.get("status"))] = event
    firing_x: list[Any] = []
    firing_y: list[str] = []
    firing_text: list[str] = []
    resolved_x: list[Any] = []
    resolved_y: list[str] = []
    resolved_text: list[str] = []
    for events in by_id.values():
        first = events.get("firing") or events.get("resolved") or {}
        row = f"{first.get('rule', '?')} ({first.get('severity', '?')})"
        if row not in rows:
            rows.append(row)
        start = _when(first.get("starts_at") or first["ts"])
        resolved = events.get("resolved")
        stop = _when(resolved["ts"]) if resolved else (end if end is not None else start)
        fig.add_trace(go.Scatter(
            x=_dates(np.array([start, stop])), y=[row, row], mode="lines",
            line={"color": "#d62728" if resolved is None else "#e89a9a", "width": 10},
            name="firing" + ("" if resolved else " (still at the end)"), showlegend=False,
            hoverinfo="skip",
        ))
        for status, xs, ys, texts in (("firing", firing_x, firing_y, firing_text),
                                      ("resolved", resolved_x, resolved_y, resolved_text)):
            mark = events.get(status)
            if mark is None:
                continue
            xs.append(_when(mark["ts"]))
            ys.append(row)
            value = mark.get("value")
            shown = f"{value:.4g}" if isinstance(value, int | float) else "-"
            texts.append(f"{status}: {mark.get('signal', '')} = {shown} "
                         f"(threshold {mark.get('threshold')})")
    for label, xs, ys, texts, symbol, colour in (
        ("firing", firing_x, firing_y, firing_text, "triangle-up", "#d62728"),
        ("resolved", resolved_x, resolved_y, resolved_text, "circle", "#2ca02c"),
    ):
        if xs:
            fig.add_trace(go.Scatter(x=_dates(np.array(xs)), y=ys, mode="markers", name=label,
                                     marker={"symbol": symbol, "size": 13, "color": colour},
                                     text=texts, hovertemplate="%{text}<extra></extra>"))
    for metric in catalogue.DETECTOR_SIGNALS:
        for subject, by_window in sorted(sig.groups.get(metric, {}).items()):
            values = next(iter(by_window.values()))  # the same detections at every window
            ts, counts = downsample(sig.series.ts, values, how="sum")
            hit = np.isfinite(counts) & (counts > 0)
            if not hit.any():
                continue
            row = f"{metric}:{subject} detections"
            rows.append(row)
            fig.add_trace(go.Scatter(
                x=_dates(ts[hit]), y=[row] * int(hit.sum()), mode="markers", name=row,
                marker={"symbol": "diamond", "size": 11, "color": "#9467bd"},
                text=[f"{int(c)} detection(s)" for c in counts[hit]],
                hovertemplate="%{text}<extra></extra>",
            ))
    if not fig.data:
        return []
    if len(sig.series.ts):
        fig.update_xaxes(range=list(_dates(sig.series.ts[[0, -1]])))
    fig.update_yaxes(categoryorder="array", categoryarray=rows[::-1])
    fig = _layout(fig, "Alerts: firing intervals, firing ▲ and resolved ● events; detector "
                  "detections ◆", max(260, 60 * len(rows) + 160))
    fig.update_layout(hovermode="closest")
    return [Figure(f"{key}-alerts", "Alerts", "Alert timeline", fig)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def build_figures(
    series: ModelSeries,
    alerts: Iterable[dict[str, Any]] = (),
    label_delay: tuple[list[str], np.ndarray] | None = None,
    reference: dict[str, float] | None = None,
) -> list[Figure]:
    """Every figure of one model's section, in page order."""
    sig = _Signals.of(series)
    key = f"fig-{_slug(series.model)}"
    own = [a for a in alerts if a.get("model") == series.model]
    return [
        *_performance(sig, reference or {}, key),
        *_estimated_vs_realized(sig, reference or {}, key),
        *_gap(sig, key),
        *_grid(sig, _names(sig, LABEL_FREE_SIGNALS), "Predictions (no labels needed)",
               f"{key}-predictions", "Predictions"),
        *_drift(sig, key),
        *_subplots_by_window(sig, QUALITY_SIGNALS, "Data quality: share of predictions",
                             f"{key}-quality", "Data quality"),
        *_grid(sig, _names(sig, LABEL_SIGNALS), "Label coverage (joined labels / predictions) "
               "and labelled pairs, by window", f"{key}-labels", "Labels"),
        *_label_delay(label_delay, key),
        *_timeline(sig, own, key),
    ]


# --------------------------------------------------------------------------------- page

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 2rem 3rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #ddd; margin-top: 2.5rem; }
h3 { margin: 1.5rem 0 0.3rem; color: #444; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
td, th { border: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 0.9rem; } .figure { margin: 0.5rem 0 1rem; }
nav a { margin-right: 1rem; }
table.verdict td { text-align: left; }
"""


def _table(rows: Iterable[tuple[str, Any]], head: tuple[str, str]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{_number(v)}</td></tr>" for k, v in rows
    )
    return (f"<table><tr><th>{html.escape(head[0])}</th><th>{html.escape(head[1])}</th></tr>"
            f"{body}</table>")


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, int | float):
        return f"{value:,.4g}"
    return html.escape(str(value))


def _span(ts: np.ndarray) -> str:
    if not len(ts):
        return "no closed pane"
    first, last = (datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%d %H:%M:%S")
                   for t in (ts[0], ts[-1]))
    return f"{len(ts):,} panes closing from {first} to {last} UTC"


#: PSI above which a feature counts as drifted in the verdict (the usual "major shift").
VERDICT_PSI = 0.25


@dataclass(frozen=True, slots=True)
class Verdict:
    """One model's line at the top of the report."""

    model: str
    status: str  # "alerting", "recovered", "drift", "ok" or "no data"
    alerts: str
    drift: str
    performance: str


def model_verdict(
    series: ModelSeries, alerts: Iterable[dict[str, Any]], reference: dict[str, float]
) -> Verdict:
    """The model's verdict: alerting (an alert still firing at the end), recovered (alerts
    fired and all resolved), drift (a feature's PSI above :data:`VERDICT_PSI` without an
    alert), else ok; with what it rests on."""
    own = [a for a in alerts if a.get("model") == series.model]
    firing = {a.get("alert_id"): a for a in own if a.get("status") == "firing"}
    resolved = {a.get("alert_id") for a in own if a.get("status") == "resolved"}
    open_rules = sorted({str(a.get("rule")) for i, a in firing.items() if i not in resolved})
    sig = _Signals.of(series)
    drifted = []
    for feature, by_window in sorted(sig.groups.get("psi", {}).items()):
        peak = max((float(np.nanmax(v)) for v in by_window.values() if np.isfinite(v).any()),
                   default=math.nan)
        if peak > VERDICT_PSI:
            drifted.append(f"{feature} (PSI {peak:.2g})")
    perf = []
    for metric in sorted(m for m in sig.groups if _is_performance(m)):
        windows = [w for w in sig.windows if w != "all" and w in sig.groups[metric].get("", {})]
        if not windows:
            continue
        values = sig.groups[metric][""][windows[0]]
        finite = values[np.isfinite(values)]
        if not len(finite):
            continue
        text = f"{metric}@{windows[0]} {finite[-1]:.3f} at the end"
        if metric in reference:
            text += f" (reference {reference[metric]:.3f})"
        perf.append(text)
        if len(perf) == 2:
            break
    if not len(series.ts):
        status = "no data"
    elif open_rules:
        status = "alerting"
    elif firing:
        status = "recovered"
    elif drifted:
        status = "drift"
    else:
        status = "ok"
    alert_text = f"{len(firing)} fired"
    if open_rules:
        alert_text += f"; still firing at the end: {', '.join(open_rules)}"
    return Verdict(series.model, status, alert_text, ", ".join(drifted) or "none",
                   "; ".join(perf) or "no labelled metric")


_VERDICT_COLOUR = {"alerting": "#d62728", "recovered": "#ff7f0e", "drift": "#ff7f0e",
                   "ok": "#2ca02c", "no data": "#777"}


def _verdict_table(verdicts: list[Verdict]) -> str:
    head = ("model", "verdict", "alerts", f"features drifted (PSI > {VERDICT_PSI})",
            "performance")
    rows = "".join(
        f"<tr><td><a href='#model-{_slug(v.model)}'>{html.escape(v.model)}</a></td>"
        f"<td style='color:{_VERDICT_COLOUR[v.status]};font-weight:bold'>{v.status}</td>"
        f"<td>{html.escape(v.alerts)}</td><td>{html.escape(v.drift)}</td>"
        f"<td>{html.escape(v.performance)}</td></tr>"
        for v in verdicts
    )
    return ("<table class='verdict'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + rows + "</table>")


def _reference_table(model: dict[str, Any]) -> dict[str, float]:
    """A ``reference`` table of metric values in a model's summary, when there is one."""
    found = model.get("reference")
    if not isinstance(found, dict):
        return {}
    return {k: float(v) for k, v in found.items() if isinstance(v, int | float)}


def render_report(replay_dir: str | Path, out_dir: str | Path) -> tuple[Path, list[Figure]]:
    """Write ``out_dir/report.html`` from the files of ``replay_dir``; return its path and
    the figures on it (their ``key`` is the id of each plot's ``<div>``)."""
    src = Path(replay_dir)
    if not src.is_dir():
        raise ReportError(f"{src}: not a directory (expected a 'monitor replay' output)")
    signals_path = src / "signals.jsonl"
    if not signals_path.exists():
        raise ReportError(f"{src}: no signals.jsonl here (is it a 'monitor replay' output?)")
    series = load_signals(signals_path)
    alerts = load_alerts(src / "alerts.jsonl")
    delays = load_label_delay(src / "metrics.prom")
    summary: dict[str, Any] = {}
    if (src / "summary.json").exists():
        try:
            summary = json.loads((src / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReportError(f"{src / 'summary.json'}: not JSON: {exc}") from None
        if not isinstance(summary, dict):
            raise ReportError(f"{src / 'summary.json'}: not a JSON object")
    models_summary = summary.get("models") or {}
    rejects = summary.get("rejects") or {}
    if not isinstance(models_summary, dict) or not isinstance(rejects, dict):
        raise ReportError(f"{src / 'summary.json'}: 'models' and 'rejects' must be objects")
    names = sorted(set(series) | set(models_summary))
    if not names:
        raise ReportError(f"{signals_path}: no model has a closed pane: nothing to plot")

    figures: list[Figure] = []
    parts = [f"<h1>monitor report</h1><p class='note'>From <code>{html.escape(str(src))}"
             f"</code>. Times are event times (UTC), at pane ends.</p>"]
    verdicts = [
        model_verdict(series.get(n, ModelSeries(n, np.empty(0))), alerts,
                      _reference_table(models_summary.get(n) or {}))
        for n in names
    ]
    parts.append("<h3>Verdict</h3>" + _verdict_table(verdicts))
    if rejects:
        parts.append("<h3>Rejected input (all models)</h3>"
                     + _table(sorted(rejects.items()), ("reason", "messages")))
    config = {"displaylogo": False, "responsive": True}
    for name in names:
        model = models_summary.get(name) or {}
        model_series = series.get(name, ModelSeries(name, np.empty(0)))
        parts.append(f"<h2 id='model-{_slug(name)}'>Model {html.escape(name)}</h2>"
                     f"<p class='note'>{_span(model_series.ts)}.</p>")
        counts = model.get("counts") or {}
        if counts:
            parts.append(_table(sorted(counts.items()), ("count", "value")))
        model_figures = build_figures(model_series, alerts, delays.get(name),
                                      _reference_table(model))
        if not any(f.section == "Alerts" for f in model_figures):
            model_figures.append(_no_alerts(model_series, f"fig-{_slug(name)}"))
        section = ""
        for fig in model_figures:
            if fig.section != section:
                section = fig.section
                parts.append(f"<h3>{html.escape(section)}</h3>")
            parts.append("<div class='figure'>" + fig.figure.to_html(
                full_html=False, include_plotlyjs=False, div_id=fig.key, config=config,
            ) + "</div>")
        figures.extend(model_figures)
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>monitor report</title>"
        f"<style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        "</head><body>" + "\n".join(parts) + "</body></html>\n"
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path, figures


def _no_alerts(series: ModelSeries, key: str) -> Figure:
    """An empty timeline over the model's time span, so the page says 'no alert' plainly."""
    fig = go.Figure(go.Scatter(x=_dates(series.ts[[0, -1]]) if len(series.ts) else [],
                               y=["no alert", "no alert"] if len(series.ts) else [],
                               mode="lines", line={"color": "#2ca02c", "width": 2},
                               name="no alert"))
    fig = _layout(fig, "Alerts: none fired", 220)
    return Figure(f"{key}-alerts", "Alerts", "Alert timeline", fig)
