"""The Python API: the daemon's core over tables in a notebook or a batch job.

:func:`evaluate` takes a configuration and the prediction events (and, when known, the
label events and reference rows) as a pandas or Polars DataFrame, an Arrow table or any
iterable of dicts shaped like the event contract, runs them through the same
:class:`~monitor.core.pipeline.Pipeline` as ``monitor run`` and ``monitor replay``, and returns
a :class:`Result`: the summary, the signal of every closed pane and the alert events, as
DataFrames (lists of dicts when pandas is not installed), plus :meth:`Result.report` for
the HTML report and :meth:`Result.write` for the same files ``monitor replay`` writes.

>>> import monitor
>>> config = {"time": {"pane": "10s"}, "models": [
...     {"name": "m", "task": "binary", "positive_class": 1, "windows": ["all"]}]}
>>> preds = [{"prediction_id": f"p{i}", "model": "m", "ts": 1_700_000_000 + i,
...           "prediction": i % 2, "score": 0.9 if i % 2 else 0.1} for i in range(100)]
>>> labels = [{"prediction_id": f"p{i}", "label": 1, "ts": 1_700_000_000 + i}
...           for i in range(100)]
>>> result = monitor.evaluate(config, preds, labels)
>>> result.summary["models"]["m"]["windows"]["all"]["accuracy"]
0.5
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from monitor.config import MonitorConfig, config_from_mapping, load_config, parse_signal
from monitor.core.alerting import Alerting
from monitor.core.model import PaneSignals
from monitor.core.pipeline import Pipeline
from monitor.core.rules import AlertEvent
from monitor.events.message import Message, MessageBatch
from monitor.replay import poll_size

__all__ = ["Result", "Table", "evaluate", "events_of", "messages_of"]

#: What :func:`evaluate` accepts as a table: a pandas or Polars DataFrame, an Arrow table
#: (or record batch), or an iterable of dicts.
Table: TypeAlias = Any
ConfigLike: TypeAlias = MonitorConfig | Mapping[str, Any] | str | os.PathLike[str]

def _plain(value: Any) -> Any:
    """A JSON value for a table cell: numpy scalars to Python, NaN/NaT to null, times to
    RFC 3339 text."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat") and hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return None if value != value else _plain(value.to_pydatetime())
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _rows(table: Table) -> tuple[Iterable[Mapping[str, Any]], bool]:
    """The rows of ``table``, and whether it is a table (where an empty cell means the
    field is absent, as a column holds every field of every row)."""
    if hasattr(table, "to_pylist"):  # pyarrow Table or RecordBatch
        return table.to_pylist(), True
    if hasattr(table, "to_dicts"):  # polars DataFrame
        return table.to_dicts(), True
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # pandas DataFrame
        return table.to_dict("records"), True
    if isinstance(table, Mapping):
        raise TypeError("expected a table or an iterable of dicts, got one dict")
    return table, False


def _absent_empty(value: Any) -> Any:
    """A nested value of a table cell without its empty fields (a struct column's)."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not None}
    return value


def events_of(table: Table, nest: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The event dicts of ``table``, each cell a JSON value (null for NaN). In a table
    (pandas, Polars, Arrow) an empty cell is an absent field; dicts are taken as given.

    ``nest`` names flat columns that belong in the event's ``features`` object: a row
    without a ``features`` key gets those of its columns there. Dotted columns, as
    ``pandas.json_normalize`` writes them (``features.amount``, ``segment.country``,
    ``probabilities.cat``), go back into their object.

    >>> events_of([{"prediction_id": "a", "amount": float("nan"), "ts": 1}], nest=["amount"])
    [{'prediction_id': 'a', 'ts': 1, 'features': {'amount': None}}]
    """
    wanted = set(nest)
    events = []
    rows, tabular = _rows(table)
    for row in rows:
        event: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in row.items():
            name = str(key)
            cell = _plain(value)
            head, dot, tail = name.partition(".")
            if dot and head in _NESTED:
                if cell is not None or head == "features":
                    nested.setdefault(head, {})[tail] = cell
            elif name in wanted and "features" not in row:
                nested.setdefault("features", {})[name] = cell
            elif tabular and name != "features":
                if cell is not None:
                    event[name] = _absent_empty(cell)
            else:
                event[name] = cell
        for head, values in nested.items():
            event[head] = {**values, **(event.get(head) or {})}
        events.append(event)
    return events


#: The event's objects whose fields a flat table may hold as ``<object>.<field>`` columns.
_NESTED = ("features", "segment", "probabilities")


def _seconds(ts: Any) -> float:
    """Event time as Unix seconds for ordering; +inf when it is not a time (the engine
    rejects such an event with its reason)."""
    if isinstance(ts, bool):
        return math.inf
    if isinstance(ts, int | float):
        return float(ts) if math.isfinite(ts) else math.inf
    if isinstance(ts, str):
        try:
            parsed = dt.datetime.fromisoformat(ts)
        except ValueError:
            return math.inf
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return math.inf


def messages_of(
    config: MonitorConfig,
    predictions: Sequence[Mapping[str, Any]],
    labels: Sequence[Mapping[str, Any]] = (),
) -> list[Message]:
    """The events as the messages of one partition, in event-time order (a prediction
    before a label of the same time), each record timestamped with its event's time."""
    kafka = config.kafka
    tagged = [(_seconds(e.get("ts")), 0, i, kafka.predictions_topic, e)
              for i, e in enumerate(predictions)]
    tagged += [(_seconds(e.get("ts")), 1, i, kafka.labels_topic, e) for i, e in enumerate(labels)]
    tagged.sort(key=lambda t: t[:3])
    offsets = {kafka.predictions_topic: 0, kafka.labels_topic: 0}
    messages = []
    for seconds, _, _, topic, event in tagged:
        key = event.get("prediction_id")
        messages.append(Message(
            topic=topic,
            partition=0,
            offset=offsets[topic],
            key=None if key is None else str(key).encode(),
            value=json.dumps(event, allow_nan=False, default=str).encode(),
            headers=[],
            timestamp_ms=round(seconds * 1000) if math.isfinite(seconds) else -1,
        ))
        offsets[topic] += 1
    return messages


def _config(config: ConfigLike) -> MonitorConfig:
    if isinstance(config, MonitorConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_mapping(config)
    return load_config(config)


def _with_reference(
    config: MonitorConfig, reference: Table | Mapping[str, Table], directory: Path
) -> MonitorConfig:
    """``config`` whose models read their reference rows from files written in
    ``directory``: one table for every model, or a table per model name."""
    names = [m.name for m in config.models]
    per_model = (
        dict(reference)
        if isinstance(reference, Mapping) and set(reference) <= set(names)
        else dict.fromkeys(names, reference)
    )
    models = []
    for model in config.models:
        if model.name in per_model:
            path = directory / f"reference-{names.index(model.name)}.jsonl"
            rows = events_of(per_model[model.name], nest=model.features)
            path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
            model = model.model_copy(update={"reference": str(path), "reference_warmup": 0})
        models.append(model)
    return config.model_copy(update={"models": models})


def _frame(records: list[dict[str, Any]], columns: Sequence[str]) -> Any:
    """A pandas DataFrame of ``records`` (these columns), or the list without pandas."""
    try:
        import pandas as pd
    except ImportError:
        return records
    return pd.DataFrame.from_records(records, columns=list(columns))


SIGNAL_COLUMNS = ("model", "ts", "signal", "name", "subject", "window", "value")


@dataclass
class Result:
    """What :func:`evaluate` found: the same numbers ``monitor replay`` writes.

    ``summary`` is ``summary.json``; ``panes`` the closed panes' signals and ``events`` the
    alert transitions, in order. :attr:`signals` and :attr:`alerts` are them as tables.
    """

    summary: dict[str, Any]
    panes: list[PaneSignals] = field(repr=False)
    events: list[AlertEvent] = field(repr=False)
    metrics: str = field(repr=False)

    @property
    def signals(self) -> Any:
        """One row per (model, pane end ``ts`` in Unix seconds, signal): the signal text,
        its name, subject (None when it has none) and window, and its value (NaN where
        ``signals.jsonl`` has null)."""
        records = []
        for pane in self.panes:
            for text, value in pane.signals.items():
                name, subject, window = parse_signal(text)
                records.append({"model": pane.model, "ts": pane.pane_end, "signal": text,
                                "name": name, "subject": subject, "window": window,
                                "value": value})
        return _frame(records, SIGNAL_COLUMNS)

    @property
    def alerts(self) -> Any:
        """One row per alert transition (firing or resolved), the fields of the alert
        event (``alert_id``, ``status``, ``rule``, ``model``, ``value``, ``starts_at`` ...)."""
        from monitor.outputs.alerts import alert_dict

        records = [alert_dict(e) for e in self.events]
        columns = list(dict.fromkeys(k for r in records for k in r)) or ["alert_id", "status"]
        return _frame(records, columns)

    def write(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``signals.jsonl``, ``alerts.jsonl``, ``summary.json`` and ``metrics.prom``
        into ``out_dir`` as ``monitor replay`` does; return the directory."""
        from monitor.outputs.alerts import alert_json
        from monitor.outputs.signals import signal_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "signals.jsonl", "wb") as fh:
            for pane in self.panes:
                fh.write(signal_json(pane) + b"\n")
        (out / "alerts.jsonl").write_bytes(b"".join(alert_json(e) + b"\n" for e in self.events))
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2, sort_keys=True) + "\n")
        (out / "metrics.prom").write_text(self.metrics, encoding="utf-8")
        return out

    def report(self, path: str | os.PathLike[str] = "report.html") -> Path:
        """Write the self-contained HTML report (``monitor report``) to ``path``; needs the
        'report' extra (plotly)."""
        from monitor.extras import require

        require("report", "Result.report")
        from monitor.report_html import render_report

        target = Path(path)
        with tempfile.TemporaryDirectory(prefix="monitor-report-") as tmp:
            written, _ = render_report(self.write(tmp), tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(written.read_bytes())
        return target


def evaluate(
    config: ConfigLike,
    predictions: Table,
    labels: Table | None = None,
    reference: Table | Mapping[str, Table] | None = None,
) -> Result:
    """Run the monitor's core over a table of predictions (and labels) and return the
    :class:`Result`.

    Parameters
    ----------
    config
        A :class:`~monitor.config.MonitorConfig`, a dict shaped like the TOML file, or the
        path of one (relative paths in it are relative to the file).
    predictions
        Prediction events (``prediction_id``, ``model``, ``ts``, ``prediction``, ``score``
        ...); features either in a ``features`` column of dicts or as flat columns named
        like the config's features.
    labels
        Label events (``prediction_id``, ``label``, ``ts``), or None.
    reference
        Reference rows (feature columns, optionally ``score``/``prediction``/``label``) for
        every model, or a dict of them by model name; it replaces the config's
        ``reference`` file.

    Events are processed in event-time order as one partition, each with its own time as
    the record's timestamp; an event the daemon would reject is counted in
    ``summary["rejects"]`` by reason, as ``replay`` counts it.
    """
    cfg = _config(config)
    features = {name for m in cfg.models for name in m.features}
    preds = events_of(predictions, nest=features)
    labs = events_of(labels) if labels is not None else []
    with tempfile.TemporaryDirectory(prefix="monitor-reference-") as tmp:
        if reference is not None:
            cfg = _with_reference(cfg, reference, Path(tmp))
        engine = Pipeline(cfg)
    alerting = Alerting(cfg, engine.models)
    messages = messages_of(cfg, preds, labs)
    engine.track({(m.topic, m.partition) for m in messages})
    panes: list[PaneSignals] = []
    events: list[AlertEvent] = []
    size = poll_size(cfg)  # (polls as a replay's)
    for start in range(0, len(messages), size):
        engine.process(MessageBatch.of(messages[start:start + size]))
        closed = engine.drain_signals()
        panes += closed
        events += alerting.feed(closed)
    engine.flush(keep_signals=True)  # the pipeline is done with: no copy
    final = engine
    closed = final.drain_signals()
    panes += closed
    events += alerting.feed(closed)
    from prometheus_client import CollectorRegistry

    from monitor.outputs.prometheus import MonitorCollector, render

    registry = CollectorRegistry()
    MonitorCollector(registry).update(alerting.fill(final.report()))
    return Result(final.summary(), panes, events, render(registry).decode())
