"""Signals as TensorBoard scalars, so production can be watched like training.

``[outputs] tensorboard_dir`` (or ``monitor replay --tensorboard DIR``) turns it on.
Under that directory each model is one *run* (a subdirectory named after the model);
each closed pane is one event whose step is the pane end in whole Unix seconds of
**event time** and whose wall time is the same pane end (fractional seconds kept), so
the "step" and "wall" axes of TensorBoard both read event time. Tags group by signal
name, then subject, then window::

    accuracy@1h        ->  accuracy/1h
    psi:amount@ewm30m  ->  psi/amount/ewm30m
    class_recall:cat@all -> class_recall/cat/all

Characters TensorBoard does not accept in a tag (anything but letters, digits, ``_``,
``.``, ``-`` and ``/``) become ``_``; should two signals then meet on one tag, the later
one gets a short hash suffix. Undefined values (NaN) and infinities are skipped: a
window with no labels yet leaves a gap, not a zero. Alert transitions are scalars too:
``alert/<rule>`` is 1 when the rule fires and 0 when it resolves, at the step of the
pane that caused it (a transition judged on the wall clock while all input is idle gets
the step of the model's last pane, so steps never go back within a run).

Values are stored as 32-bit floats (TensorBoard's scalar type). Events are written
synchronously with tensorboardX's :class:`~tensorboardX.event_file_writer.EventsWriter`
and flushed once per batch of panes. (tensorboardX's ``SummaryWriter`` queues events to a
background thread, and its ``flush`` does not wait for that queue, so "flushed when the
batch is done" would not hold.) A daemon restarted from a checkpoint re-emits the panes
closed since that checkpoint into a new event file of the same run: each new file begins
with a session ``START`` marker at its first step, so TensorBoard's reader drops the older
copies of those steps (its "purge orphaned data", as after a training restart). For the
same reason, give each ``replay`` its own directory.

>>> scalar_tag("psi:amount@1h"), scalar_tag("f1@ewm30m"), scalar_tag("class_share:a b@all")
('psi/amount/1h', 'f1/ewm30m', 'class_share/a_b/all')
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from monitor.core.model import PaneSignals
from monitor.core.rules import AlertEvent
from monitor.extras import require
from monitor.logs import rate_limited

__all__ = ["TensorBoardWriter", "scalar_tag"]

log = structlog.get_logger(__name__)
_INVALID = re.compile(r"[^-/\w.]")


def scalar_tag(signal: str) -> str:
    """The TensorBoard tag of a signal ``<name>[:<subject>]@<window>``: name/subject/window."""
    head, at, window = signal.rpartition("@")
    if not at:
        return _INVALID.sub("_", signal).lstrip("/") or "_"
    name, _, subject = head.partition(":")
    parts = (name, subject, window) if subject else (name, window)
    return "/".join(_INVALID.sub("_", part) for part in parts).lstrip("/") or "_"


class _Run:
    """One model's event file and its tag table."""

    def __init__(self, directory: Path) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        directory.mkdir(parents=True, exist_ok=True)
        # The suffix keeps two writers started in the same second (a restart) apart, and
        # sorts them in start order as TensorBoard's directory loader reads them.
        suffix = f".{time.time_ns()}.{os.getpid()}"
        self.writer = EventsWriter(str(directory / "events"), filename_suffix=suffix)
        self.tags: dict[str, str] = {}  # signal -> tag
        self.owners: dict[str, str] = {}  # tag -> signal
        self.last_step: int | None = None
        self.dirty = False

    def write(self, event: Any) -> None:
        """Append ``event``; the first one is preceded by the session START marker."""
        if self.last_step is None:
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            start = SessionLog(status=SessionLog.START)
            self.writer.write_event(
                Event(step=event.step, wall_time=event.wall_time, session_log=start)
            )
        self.writer.write_event(event)
        self.last_step = event.step if self.last_step is None else max(self.last_step, event.step)
        self.dirty = True

    def tag(self, signal: str) -> str:
        tag = self.tags.get(signal)
        if tag is None:
            tag = scalar_tag(signal)
            if self.owners.get(tag, signal) != signal:
                tag = f"{tag}_{hashlib.sha256(signal.encode()).hexdigest()[:8]}"
            self.tags[signal] = tag
            self.owners[tag] = signal
        return tag


class TensorBoardWriter:
    """Writes :class:`PaneSignals` and :class:`AlertEvent` s as TensorBoard scalars.

    Parameters
    ----------
    logdir
        The directory TensorBoard is pointed at (``tensorboard --logdir DIR``); each
        model's run is the subdirectory of its name, created when it first has a pane.

    A write that fails (disk full, directory removed) is logged and dropped: an optional
    export never stops the monitor. :attr:`failures` counts them.

    >>> import tempfile
    >>> from monitor.core.model import PaneSignals
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tb = TensorBoardWriter(tmp)
    ...     tb.write([PaneSignals("fraud", 1700000010.0, {"f1@1h": 0.9, "f1@all": float("nan")})])
    ...     tb.close()
    ...     sorted(p.name for p in Path(tmp).iterdir()), tb.scalars_written
    (['fraud'], 1)
    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        require("tensorboard", "TensorBoard scalars ([outputs] tensorboard_dir)")
        self.logdir = Path(logdir)
        self._runs: dict[str, _Run] = {}
        self.scalars_written = 0
        self.failures = 0

    def write(self, signals: Sequence[PaneSignals], alerts: Sequence[AlertEvent] = ()) -> None:
        """Append one batch (signals and alerts drained together), in event-time order per
        model, then flush every run it touched."""
        if not signals and not alerts:
            return
        items: list[tuple[str, float, int, int, PaneSignals | AlertEvent]] = [
            (sig.model, sig.pane_end, 0, i, sig) for i, sig in enumerate(signals)
        ]
        items.extend((ev.model, ev.ts, 1, i, ev) for i, ev in enumerate(alerts))
        items.sort(key=lambda item: item[:4])
        try:
            for _model, _time, _kind, _index, item in items:
                if isinstance(item, PaneSignals):
                    self._signals(item)
                else:
                    self._alert(item)
            self.flush()
        except OSError as exc:
            self._failed(exc)

    def _run(self, model: str) -> _Run:
        run = self._runs.get(model)
        if run is None:
            run = self._runs[model] = _Run(self.logdir / model)
        return run

    def _signals(self, sig: PaneSignals) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        run = self._run(sig.model)
        values = [
            Summary.Value(tag=run.tag(name), simple_value=value)
            for name, value in sig.signals.items()
            if math.isfinite(value)
        ]
        if values:
            summary = Summary(value=values)
            run.write(Event(wall_time=sig.pane_end, step=int(sig.pane_end), summary=summary))
            self.scalars_written += len(values)

    def _alert(self, event: AlertEvent) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        run = self._run(event.model)
        step = int(event.ts) if run.last_step is None else run.last_step
        value = Summary.Value(
            tag=f"alert/{_INVALID.sub('_', event.rule)}",
            simple_value=1.0 if event.status == "firing" else 0.0,
        )
        run.write(Event(wall_time=event.ts, step=step, summary=Summary(value=[value])))
        self.scalars_written += 1

    def flush(self) -> None:
        """Flush the event files written to since the last flush."""
        for run in self._runs.values():
            if run.dirty:
                run.writer.flush()
                run.dirty = False

    def close(self) -> None:
        """Flush and close every event file."""
        for run in self._runs.values():
            try:
                run.writer.close()
            except OSError as exc:
                self._failed(exc)
        self._runs.clear()

    def _failed(self, exc: OSError) -> None:
        self.failures += 1
        if (suppressed := rate_limited(("tensorboard", "write"), 60.0)) is not None:
            log.error(
                "tensorboard_write_failed",
                logdir=str(self.logdir),
                error=str(exc),
                suppressed=suppressed,
            )

    @property
    def runs(self) -> dict[str, Path]:
        """Run name -> its directory, for the runs written so far."""
        return {model: self.logdir / model for model in self._runs}
