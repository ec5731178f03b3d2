"""``monitor replay``: the same core as ``run``, over captured messages, without Kafka.

A capture is JSON lines in kcat's ``-J`` envelope::

    {"topic": "predictions", "partition": 0, "offset": 42, "key": "p-1", "payload": "{...}"}

processed in file order. A line that is not such an envelope is counted as a reject
(``bad_envelope``) with its file and line logged, and the replay goes on.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from prometheus_client import CollectorRegistry

from monitor.config import MonitorConfig
from monitor.core.engine import Engine, PaneSignals
from monitor.events.message import Message, MessageBatch
from monitor.outputs.alerts import alert_json
from monitor.outputs.exports import Exports
from monitor.outputs.prometheus import MonitorCollector, render

if TYPE_CHECKING:
    from monitor.tui import ProgressBars

__all__ = ["capture_partitions", "iter_capture", "replay", "signal_line"]

log = structlog.get_logger(__name__)
BATCH = 5_000


class Envelope(msgspec.Struct):
    """One line of a kcat ``-J`` capture."""

    topic: str
    partition: int
    payload: str | None
    offset: int = -1
    key: str | None = None
    ts: int = -1
    headers: list[str] | dict[str, str] | None = None


class _Where(msgspec.Struct):
    topic: str
    partition: int


_ENVELOPE = msgspec.json.Decoder(Envelope)
_WHERE = msgspec.json.Decoder(_Where)


def capture_partitions(paths: list[str]) -> set[tuple[str, int]]:
    """Every (topic, partition) a capture holds: as ``run`` tracks every assigned partition,
    each of these holds the watermark back from the start, whatever the line order."""
    found: set[tuple[str, int]] = set()
    for path in paths:
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    where = _WHERE.decode(line)
                except (msgspec.DecodeError, RecursionError):
                    continue
                found.add((where.topic, where.partition))
    return found


def _headers(raw: list[str] | dict[str, str] | None) -> list[tuple[str, bytes]]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [(k, v.encode()) for k, v in raw.items()]
    return [(raw[i], raw[i + 1].encode()) for i in range(0, len(raw) - 1, 2)]


def iter_capture(paths: list[str], bad: dict[str, int]) -> Iterator[Message]:
    """Messages of the capture files in order; counts unusable lines in ``bad``."""
    for batch in read_batches(paths, bad, BATCH):
        yield from batch


def read_batches(paths: list[str], bad: dict[str, int], size: int) -> Iterator[MessageBatch]:
    """The messages of :func:`iter_capture`, ``size`` at a time, as columns (a whole
    :class:`Message` is built only for the ones the core looks at one by one)."""
    envelopes: list[Envelope] = []
    numbers: list[int] = []

    def batch() -> MessageBatch:
        envs, lines = list(envelopes), list(numbers)
        envelopes.clear()
        numbers.clear()
        return MessageBatch(
            [e.topic for e in envs],
            [e.partition for e in envs],
            [e.offset if e.offset >= 0 else n for e, n in zip(envs, lines, strict=True)],
            [None if e.payload is None else e.payload.encode("utf-8", "replace") for e in envs],
            lambda i: _message(envs[i], lines[i]),
            [e.ts for e in envs],
        )

    for path in paths:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    env = _ENVELOPE.decode(line)
                except (msgspec.DecodeError, RecursionError) as exc:
                    if not line.strip():
                        continue
                    bad["bad_envelope"] = bad.get("bad_envelope", 0) + 1
                    if bad["bad_envelope"] <= 10:
                        log.warning(
                            "capture_line_skipped", file=path, line=number, reason=str(exc)[:200]
                        )
                    continue
                envelopes.append(env)
                numbers.append(number)
                if len(envelopes) >= size:
                    yield batch()
    if envelopes:
        yield batch()


def _message(env: Envelope, number: int) -> Message:
    return Message(
        topic=env.topic,
        partition=env.partition,
        offset=env.offset if env.offset >= 0 else number,
        key=None if env.key is None else env.key.encode(),
        value=None if env.payload is None else env.payload.encode("utf-8", "replace"),
        headers=_headers(env.headers),
        timestamp_ms=env.ts,
    )


def _clean(value: float) -> float | None:
    return value if math.isfinite(value) else None


def signal_line(sig: PaneSignals) -> dict[str, Any]:
    """A ``signals.jsonl`` record: model, pane end (Unix seconds), signal values (null = NaN)."""
    return {
        "model": sig.model,
        "ts": sig.pane_end,
        "signals": {k: _clean(v) for k, v in sig.signals.items()},
    }


def replay(
    config: MonitorConfig,
    captures: list[str],
    out_dir: str | os.PathLike[str],
    progress: ProgressBars | None = None,
) -> dict[str, Any]:
    """Run the core over ``captures`` and write the four output files (and those of the
    ``[outputs]`` exports turned on: TensorBoard runs, ``cloudwatch.jsonl``); return the summary.
    With ``progress``, a bar counts messages read against the captures' lines."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine(config)
    inputs = {config.kafka.predictions_topic, config.kafka.labels_topic}
    engine.track(tp for tp in capture_partitions(captures) if tp[0] in inputs)
    bad: dict[str, int] = {}
    bar = None
    if progress is not None:
        from monitor.tui import count_lines

        bar = progress.add("replay", total=count_lines(captures), unit="messages")
    with (
        open(out / "signals.jsonl", "w", encoding="utf-8") as signals,
        open(out / "alerts.jsonl", "wb") as alerts,
        Exports.for_replay(config.outputs, out) as exports,
    ):

        def emit(source: Engine) -> None:
            closed, events = source.drain_signals(), source.drain_alerts()
            for sig in closed:
                signals.write(json.dumps(signal_line(sig), allow_nan=False) + "\n")
            for event in events:
                alerts.write(alert_json(event) + b"\n")
            exports.write(closed, events)

        for batch in read_batches(captures, bad, BATCH):
            engine.process(batch)
            if progress is not None:
                progress.advance(bar, len(batch))
            emit(engine)
        if progress is not None:
            progress.finish(bar)
        final = engine.flushed(keep_signals=True)
        emit(final)
    summary = final.summary()
    for reason, n in bad.items():
        summary["rejects"][reason] = summary["rejects"].get(reason, 0) + n
    registry = CollectorRegistry()
    collector = MonitorCollector(registry)
    collector.update(final.report())
    (out / "metrics.prom").write_bytes(render(registry))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log.info("replay_done", events=engine.events, out=str(out), rejects=summary["rejects"])
    return summary
