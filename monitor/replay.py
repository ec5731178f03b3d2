"""``monitor replay``: the same core as ``run``, over captured messages, without Kafka.

An input is JSON lines in one of two formats, processed in file order:

- ``kcat``: kcat's ``-J`` envelope, one consumed message a line::

      {"topic": "predictions", "partition": 0, "offset": 42, "key": "p-1", "payload": "{...}"}

  A line that is not such an envelope is counted as a reject (``bad_envelope``) with its
  file and line logged, and the replay goes on.
- ``events``: plain events, one prediction or label event (section 2 of the contract) a
  line, as a model server logs them. A line with a ``prediction`` field goes to the
  predictions topic, any other line to the labels topic, each as partition 0 with the
  line's running number per topic as its offset; a line that is not a valid event is
  rejected by the codec with its usual reason (``not_json``, ``missing_field``, ...).

``auto`` (the default) takes each input's first non-blank line: a kcat envelope makes it
a kcat capture, anything else a file of events. ``-`` reads standard input (copied to a
temporary file first: the capture's partitions are read before its messages).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
import structlog
from prometheus_client import CollectorRegistry

from monitor import native
from monitor.config import MonitorConfig, drift_reference_text
from monitor.core.alerting import Alerting
from monitor.core.pipeline import Pipeline
from monitor.events.codec import DECODE_ERRORS, decode_all
from monitor.events.message import Message, MessageBatch
from monitor.outputs.alerts import alert_json
from monitor.outputs.exports import Exports
from monitor.outputs.prometheus import MonitorCollector, render
from monitor.outputs.signals import signal_lines

__all__ = [
    "InputError",
    "NoUsableInput",
    "Progress",
    "capture_partitions",
    "check_inputs",
    "count_lines",
    "iter_capture",
    "poll_size",
    "replay",
]

log = structlog.get_logger(__name__)
#: Messages read from the inputs at a time by :func:`iter_capture` (a reading chunk: the
#: replay's polls are ``kafka.max_poll_records`` messages, see :func:`poll_size`).
BATCH = 5_000


def poll_size(config: MonitorConfig) -> int:
    """The messages of one poll of a replay (and of ``tune``'s and the Python API's):
    ``kafka.max_poll_records``, as many as a poll of ``run`` returns while it reads a
    backlog, so that a replay closes panes where ``run`` catching up the same records
    would (the watermark moves once a poll)."""
    return config.kafka.max_poll_records


class Progress(Protocol):
    """What a replay needs of a progress display; :class:`monitor.tui.ProgressBars` is one."""

    def add(self, description: str, total: float | None, unit: str = "") -> Any:
        """A new bar counting ``unit`` up to ``total``; returns its handle."""
        ...

    def advance(self, task: Any, n: float = 1.0) -> None:
        """Count ``n`` more done on the bar ``task``."""
        ...

    def finish(self, task: Any) -> None:
        """Mark the bar ``task`` complete."""
        ...


def count_lines(paths: Sequence[str]) -> int:
    """Lines of ``paths`` (a last one without a newline counts), read in 1 MiB blocks."""
    total = 0
    for path in paths:
        last = b"\n"
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                total += block.count(b"\n")
                last = block[-1:]
        if last != b"\n":
            total += 1
    return total


#: What an input's lines are: kcat ``-J`` envelopes, plain events, or decided per input.
InputFormat = Literal["auto", "kcat", "events"]
#: The topics plain events are put on: (predictions, labels).
Topics = tuple[str, str]
_DEFAULT_TOPICS: Topics = ("predictions", "labels")


class InputError(ValueError):
    """An input that cannot be read at all (missing, a directory, no permission)."""


class NoUsableInput(ValueError):
    """The inputs were read, but not one line was a usable event."""


class Envelope(msgspec.Struct, gc=False):
    """One line of a kcat ``-J`` capture."""

    topic: str
    partition: int
    payload: str | None
    offset: int = -1
    key: str | None = None
    ts: int = -1
    headers: list[str] | dict[str, str] | None = None


class _Where(msgspec.Struct, gc=False):
    topic: str
    partition: int


_ENVELOPE = msgspec.json.Decoder(Envelope)
_WHERE = msgspec.json.Decoder(_Where)
#: Bytes of lines a capture is read in at a time (``readlines``' hint).
_READ_HINT = 1 << 20
#: The buffer of ``signals.jsonl``: a sparse stream closes a pane every few messages, each
#: pane's record some kilobytes; one write to the file per megabyte, not per record.
_WRITE_BUFFER = 1 << 20


class _Kind(msgspec.Struct):
    """What tells a prediction event from a label event (other fields are ignored)."""

    prediction: msgspec.Raw | None = None


_KIND = msgspec.json.Decoder(_Kind)


def check_inputs(paths: list[str]) -> None:
    """Raise :class:`InputError` naming the first input that is missing, a directory or
    unreadable (``-``, standard input, is always readable)."""
    for path in paths:
        if path == "-":
            continue
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory, not a capture or events file")
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def input_format(path: str, fmt: InputFormat = "auto") -> Literal["kcat", "events"]:
    """The format of one input: ``fmt`` unless ``auto``, else what its first non-blank line
    is (a kcat envelope, or anything else: events)."""
    if fmt != "auto":
        return fmt
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                _ENVELOPE.decode(line)
            except DECODE_ERRORS:
                return "events"
            return "kcat"
    return "kcat"


def _event_topic(line: bytes, topics: Topics) -> str:
    try:
        kind = _KIND.decode(line)
    except DECODE_ERRORS:
        return topics[0]  # not an event object: the codec rejects it on the predictions topic
    return topics[0] if kind.prediction is not None else topics[1]


def capture_partitions(
    paths: list[str], fmt: InputFormat = "auto", topics: Topics = _DEFAULT_TOPICS
) -> set[tuple[str, int]]:
    """Every (topic, partition) the inputs hold: as ``run`` tracks every assigned partition,
    each of these holds the watermark back from the start, whatever the line order."""
    found: set[tuple[str, int]] = set()
    for path in paths:
        if input_format(path, fmt) == "kcat":
            _kcat_partitions(path, found)
            continue
        with open(path, "rb") as fh:
            while lines := fh.readlines(_READ_HINT):
                found.update((_event_topic(line, topics), 0) for line in lines if line.strip())
    return found


def _kcat_partitions(path: str, found: set[tuple[str, int]]) -> None:
    """Add the (topic, partition) pairs of the kcat capture ``path`` to ``found``.

    A line that starts as a found pair's lines do adds no pair, valid or not (kcat writes
    topic and partition first): only the other lines are decoded. The capture is read
    ``_READ_HINT`` bytes at a time, and the compiled ``kcat_unknown`` (or a pattern) finds
    where the read's other lines start: no bytes object is made for the rest. When the
    first :data:`_FEW` of those add a pair, the rest of the read is scanned again with it
    (at a capture's start every pair is unknown: its first read is not decoded whole). A
    line that a read cuts is put together with its end from the next read."""
    known, other = _line_starts(found)
    kernels = native.kernels()
    with open(path, "rb") as fh:
        head = b""  # the start of the line the last read cut
        while chunk := fh.read(_READ_HINT):
            first = chunk.find(b"\n") + 1  # where the chunk's first whole line starts
            if not first:
                head += chunk
                continue
            last = chunk.rfind(b"\n")  # the newline that ends the chunk's last whole line
            line = head + chunk[:first]
            if not line.startswith(known) and _add_pairs(found, [line]):
                known, other = _line_starts(found)
            head = chunk[last + 1 :]
            at = first
            while at <= last:
                if kernels is not None:
                    starts = kernels.kcat_unknown(chunk, at, last + 1, known)
                else:
                    starts = [nl.end() for nl in other.finditer(chunk, at - 1, last)]
                # The first few lines of an unknown pair first: the capture's first lines
                # hold its pairs (all of them are unknown at its start), then the rest of
                # the chunk is scanned again with what they found.
                new = _add_pairs(found, [chunk[i : chunk.index(b"\n", i)] for i in starts[:_FEW]])
                if new:
                    known, other = _line_starts(found)
                if not new or len(starts) <= _FEW:
                    rest = [chunk[i : chunk.index(b"\n", i)] for i in starts[_FEW:]]
                    if _add_pairs(found, rest):
                        known, other = _line_starts(found)
                    break
                at = starts[_FEW]
        if head and not head.startswith(known):
            _add_pairs(found, [head])


#: The prescan decodes this many lines that may hold a new pair before it scans on.
_FEW = 8


def _line_starts(pairs: set[tuple[str, int]]) -> tuple[tuple[bytes, ...], re.Pattern[bytes]]:
    """How the compact kcat lines of ``pairs`` start, and a pattern that finds a newline
    no such start follows (every newline while there is no pair)."""
    prefixes = tuple(_where_prefix(topic, number) for topic, number in pairs)
    if not prefixes:
        return prefixes, re.compile(b"\n")
    return prefixes, re.compile(b"\n(?!" + _any_of(sorted(prefixes)) + b")")


def _any_of(words: list[bytes]) -> bytes:
    """A pattern that matches any of ``words`` (sorted, none a prefix of another), the
    starts they share written once: a line is compared with each start once, not with
    each pair's whole prefix in turn."""
    common = _shared_start(words)
    if len(words) == 1:
        return re.escape(common)
    if common:
        return re.escape(common) + b"(?:" + _any_of([w[len(common) :] for w in words]) + b")"
    groups: dict[int, list[bytes]] = {}
    for word in words:
        groups.setdefault(word[0], []).append(word)
    return b"|".join(_any_of(group) for group in groups.values())


def _shared_start(words: list[bytes]) -> bytes:
    """The bytes every one of ``words`` starts with (those the first and the last in
    sorted order share)."""
    first, last = min(words), max(words)
    n = 0
    while n < len(first) and first[n] == last[n]:
        n += 1
    return first[:n]


def _add_pairs(found: set[tuple[str, int]], lines: list[bytes]) -> bool:
    """Add the pairs of those of ``lines`` that are envelopes to ``found``; whether any
    was new."""
    new = {(w.topic, w.partition) for w in decode_all(_WHERE, lines) if w is not None}
    if new <= found:
        return False
    found |= new
    return True


def _where_prefix(topic: str, partition: int) -> bytes:
    """How a compact kcat ``-J`` line of ``topic`` and ``partition`` starts."""
    return b'{"topic":%b,"partition":%d,' % (msgspec.json.encode(topic), partition)


def _headers(raw: list[str] | dict[str, str] | None) -> list[tuple[str, bytes]]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [(k, v.encode()) for k, v in raw.items()]
    return [(raw[i], raw[i + 1].encode()) for i in range(0, len(raw) - 1, 2)]


def iter_capture(
    paths: list[str],
    bad: dict[str, int],
    fmt: InputFormat = "auto",
    topics: Topics = _DEFAULT_TOPICS,
) -> Iterator[Message]:
    """Messages of the input files in order; counts unusable lines in ``bad``."""
    for batch in read_batches(paths, bad, BATCH, fmt, topics):
        yield from batch


def _events_envelopes(
    path: str, topics: Topics, offsets: dict[str, int]
) -> Iterator[tuple[Envelope, int]]:
    """The lines of a plain-events file as envelopes (partition 0, running offsets per
    topic kept in ``offsets`` across files), with their line numbers."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            topic = _event_topic(text, topics)
            offset = offsets.get(topic, 0)
            offsets[topic] = offset + 1
            yield Envelope(topic, 0, text.decode("utf-8", "replace"), offset), number


def read_batches(
    paths: list[str],
    bad: dict[str, int],
    size: int,
    fmt: InputFormat = "auto",
    topics: Topics = _DEFAULT_TOPICS,
) -> Iterator[MessageBatch]:
    """The messages of :func:`iter_capture`, ``size`` at a time, as columns (a whole
    :class:`Message` is built only for the ones the core rejects). A capture is read a
    block of lines at a time, each line read once."""
    pending = _Pending()
    offsets: dict[str, int] = {}
    for path in paths:
        if input_format(path, fmt) == "events":
            for env, number in _events_envelopes(path, topics, offsets):
                pending.add(env, number)
                if len(pending.numbers) >= size:
                    yield pending.take(size)
            continue
        with open(path, "rb") as fh:
            first = 1  # the line number of the block's first line
            if native.kernels() is not None:
                for chunk, start, stop in _chunks(fh):
                    first += pending.add_chunk(chunk, start, stop, first, path, bad)
                    while len(pending.numbers) >= size:
                        yield pending.take(size)
                continue
            while lines := fh.readlines(_READ_HINT):
                pending.add_lines(lines, first, path, bad)
                first += len(lines)
                while len(pending.numbers) >= size:
                    yield pending.take(size)
    while pending.numbers:
        yield pending.take(size)


def _chunks(fh: Any) -> Iterator[tuple[bytes, int, int]]:
    """The file ``fh`` read ``_READ_HINT`` bytes at a time, as ``(chunk, start, stop)``:
    whole lines ``chunk[start:stop]``, each ended by a newline but the file's last. A line
    that a read cuts comes alone, put together with its end from the next read (a read is
    not copied to join it)."""
    rest = b""
    while block := fh.read(_READ_HINT):
        start = 0
        if rest:
            start = block.find(b"\n") + 1
            if not start:  # the cut line goes on past this read
                rest += block
                continue
            line = rest + block[:start]
            yield line, 0, len(line)
        stop = block.rfind(b"\n") + 1
        if stop > start:
            yield block, start, stop
        rest = block[max(start, stop) :]
    if rest:
        yield rest, 0, len(rest)


class _Pending:
    """Messages read and not handed out yet, as the columns of a :class:`MessageBatch`,
    with each one's line number and what it was read from (its line, the block of lines it
    is one of, or its envelope)."""

    def __init__(self) -> None:
        self.topics: list[str] = []
        self.partitions: list[int] = []
        self.offsets: list[int] = []  # -1: none in the envelope (its line number stands in)
        self.stamps: list[int] = []
        self.payloads: list[bytes | None] = []
        self.numbers: list[int] = []
        self.sources: list[bytes | Envelope | _Chunk] = []

    def _columns(self) -> tuple[list[Any], ...]:
        return (self.topics, self.partitions, self.offsets, self.stamps, self.payloads,
                self.numbers, self.sources)  # fmt: skip

    def add(self, env: Envelope, number: int) -> None:
        """One message, from its envelope."""
        self.topics.append(env.topic)
        self.partitions.append(env.partition)
        self.offsets.append(env.offset)
        self.stamps.append(env.ts)
        self.payloads.append(_utf8(env.payload))
        self.numbers.append(number)
        self.sources.append(env)

    def add_lines(self, lines: list[bytes], first: int, path: str, bad: dict[str, int]) -> None:
        """The messages of a block of kcat ``lines`` (the first is line ``first`` of
        ``path``); a line that is not an envelope is counted in ``bad`` (but a blank one).

        The compiled reader takes the lines in their plainest form; msgspec decodes the
        others (all of them without it), so that each line reads as msgspec reads it."""
        kernels = native.kernels()
        if kernels is not None:
            topics, partitions, offsets, stamps, payloads, others = kernels.kcat_lines(lines)
        else:
            topics, partitions, offsets, stamps, payloads = ([None] * len(lines) for _ in "12345")
            others = range(len(lines))
        numbers = list(range(first, first + len(lines)))
        read = (topics, partitions, offsets, stamps, payloads)
        skip = _decode_others(read, others, [lines[i] for i in others], first, path, bad)
        self._extend((*read, numbers, list(lines) if skip else lines), skip)

    def add_chunk(
        self, chunk: bytes, start: int, stop: int, first: int, path: str, bad: dict[str, int]
    ) -> int:
        """The messages of the kcat lines ``chunk[start:stop]`` (the first is line ``first`` of
        ``path``), read by the compiled reader straight from the chunk: as
        :meth:`add_lines`, with no bytes object per line (a message the core rejects is
        rebuilt from its line, cut out of the chunk then). Returns the number of lines."""
        kernels = native.kernels()
        assert kernels is not None
        *read, others, starts = kernels.kcat_chunk(chunk, start, stop)
        n = len(read[0])
        source = _Chunk(chunk, starts, first)
        skip = _decode_others(read, others, [source.line(first + i) for i in others],
                              first, path, bad)  # fmt: skip
        self._extend((*read, list(range(first, first + n)), [source] * n), skip)
        return n

    def _extend(self, columns: tuple[list[Any], ...], skip: list[int]) -> None:
        """Add the read ``columns`` but their rows ``skip`` (lines that are no envelope)."""
        if len(skip) * 8 > len(columns[0]):
            keep = sorted(set(range(len(columns[0]))).difference(skip))
            columns = tuple([column[i] for i in keep] for column in columns)
        elif skip:  # a few lines out of every column, from the last one on
            for i in reversed(skip):
                for column in columns:
                    del column[i]
        for mine, read in zip(self._columns(), columns, strict=True):
            mine.extend(read)

    def take(self, size: int) -> MessageBatch:
        """The first ``size`` messages (or all there are) as a batch."""
        columns = self._columns()
        topics, partitions, offsets, stamps, payloads, numbers, sources = (
            column[:size] for column in columns
        )
        for column in columns:
            del column[:size]
        if min(offsets) < 0:  # no offset in the envelope: its line number
            offsets = [o if o >= 0 else n for o, n in zip(offsets, numbers, strict=True)]
        return MessageBatch(
            topics, partitions, offsets, payloads,
            lambda i: _message(sources[i], numbers[i]), stamps,
        )  # fmt: skip


def _decode_others(
    read: tuple[list[Any], ...] | list[list[Any]],
    others: list[int],
    lines: list[bytes],
    first: int,
    path: str,
    bad: dict[str, int],
) -> list[int]:
    """Decode with msgspec the ``lines`` (rows ``others`` of the columns ``read``) that the
    compiled reader left, into those columns; the rows that are no envelope, counted in
    ``bad`` unless blank."""
    skip = []
    topics, partitions, offsets, stamps, payloads = read
    for i, line, env in zip(others, lines, decode_all(_ENVELOPE, lines), strict=True):
        if env is None:
            skip.append(i)
            if line.strip():
                _bad_line(bad, path, first + i, line)
            continue
        topics[i], partitions[i], offsets[i] = env.topic, env.partition, env.offset
        stamps[i], payloads[i] = env.ts, _utf8(env.payload)
    return skip


class _Chunk:
    """A block of a capture read at once (its lines start at ``starts``, int64s as bytes,
    the first is line ``first``): what a message read from it was read from."""

    __slots__ = ("data", "first", "starts")

    def __init__(self, data: bytes, starts: bytes, first: int) -> None:
        self.data = data
        self.starts = starts
        self.first = first

    def line(self, number: int) -> bytes:
        """Line ``number`` of the capture, with its newline."""
        at = memoryview(self.starts).cast("q")
        i = number - self.first
        return self.data[at[i] : at[i + 1]]


def _utf8(text: str | None) -> bytes | None:
    """A payload as UTF-8 bytes (a lone surrogate, which JSON's ``\\ud800`` escapes can
    make, replaced by ``?``)."""
    if text is None:
        return None
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _bad_line(bad: dict[str, int], path: str, number: int, line: bytes) -> None:
    """Count a capture line that is not an envelope; log the first ten with the reason."""
    bad["bad_envelope"] = bad.get("bad_envelope", 0) + 1
    if bad["bad_envelope"] <= 10:
        try:  # decoded again for the reason (it failed before)
            _ENVELOPE.decode(line)
        except DECODE_ERRORS as exc:
            log.warning("capture_line_skipped", file=path, line=number, reason=str(exc)[:200])


def _message(source: bytes | Envelope | _Chunk, number: int) -> Message:
    """The whole message read from ``source`` (a capture's line, or the block of lines it
    is line ``number`` of, decoded again, or an envelope), line ``number`` of its input."""
    if isinstance(source, _Chunk):
        source = source.line(number)
    env = _ENVELOPE.decode(source) if isinstance(source, bytes) else source
    return Message(
        topic=env.topic,
        partition=env.partition,
        offset=env.offset if env.offset >= 0 else number,
        key=None if env.key is None else env.key.encode(),
        value=_utf8(env.payload),
        headers=_headers(env.headers),
        timestamp_ms=env.ts,
    )


@contextlib.contextmanager
def _materialized(paths: list[str]) -> Iterator[list[str]]:
    """``paths`` with ``-`` replaced by a temporary copy of standard input (read twice:
    once for its partitions, once for its messages)."""
    if "-" not in paths:
        yield paths
        return
    with tempfile.NamedTemporaryFile(prefix="monitor-stdin-", suffix=".jsonl") as copy:
        shutil.copyfileobj(sys.stdin.buffer, copy)
        copy.flush()
        yield [copy.name if p == "-" else p for p in paths]


def replay(
    config: MonitorConfig,
    captures: list[str],
    out_dir: str | os.PathLike[str],
    progress: Progress | None = None,
    fmt: InputFormat = "auto",
) -> dict[str, Any]:
    """Run the core over ``captures`` and write the four output files (and those of the
    ``[outputs]`` exports turned on: TensorBoard runs, ``cloudwatch.jsonl``); return the summary.
    With ``progress``, a bar counts messages read against the captures' lines.

    ``fmt`` says what the inputs' lines are (see the module docstring); ``-`` is standard
    input. Raises :class:`InputError` before any output for an input that cannot be read,
    and :class:`NoUsableInput` after writing the outputs when not one line was a usable
    event."""
    check_inputs(captures)
    with _materialized(captures) as paths:
        return _replay(config, paths, out_dir, progress, fmt, shown=captures)


def _replay(
    config: MonitorConfig,
    captures: list[str],
    out_dir: str | os.PathLike[str],
    progress: Progress | None,
    fmt: InputFormat,
    shown: list[str],
) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for model in config.models:
        log.info("drift_reference", model=model.name, reference=drift_reference_text(model))
    engine = Pipeline(config)
    alerting = Alerting(config, engine.models)
    topics = (config.kafka.predictions_topic, config.kafka.labels_topic)
    inputs = set(topics)
    engine.track(tp for tp in capture_partitions(captures, fmt, topics) if tp[0] in inputs)
    bad: dict[str, int] = {}
    bar = None
    if progress is not None:
        bar = progress.add("replay", total=count_lines(captures), unit="messages")
    with (
        open(out / "signals.jsonl", "wb", buffering=_WRITE_BUFFER) as signals,
        open(out / "alerts.jsonl", "wb") as alerts,
        Exports.for_replay(config.outputs, out) as exports,
    ):

        def emit(source: Pipeline) -> None:
            closed = source.drain_signals()
            events = alerting.feed(closed)
            signals.write(signal_lines(closed))  # the lines of panes closed together at once
            for event in events:
                alerts.write(alert_json(event) + b"\n")
            exports.write(closed, events)

        for batch in read_batches(captures, bad, poll_size(config), fmt, topics):
            engine.process(batch)
            if progress is not None:
                progress.advance(bar, len(batch))
            emit(engine)
        if progress is not None:
            progress.finish(bar)
        engine.flush(keep_signals=True)  # the pipeline is done with: no copy
        final = engine
        emit(final)
    summary = final.summary()
    usable = engine.events - sum(summary["rejects"].values())
    for reason, n in bad.items():
        summary["rejects"][reason] = summary["rejects"].get(reason, 0) + n
    registry = CollectorRegistry()
    collector = MonitorCollector(registry, max_series=config.prometheus.max_series)
    collector.update(alerting.fill(final.report()))
    # the text update() rendered already: the bytes prometheus_client's render of the
    # registry gives (tests/outputs/test_metrics_render.py), without rendering it again
    exposition = collector.exposition()
    prom = exposition.body() if exposition is not None else render(registry)
    (out / "metrics.prom").write_bytes(prom)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log.info("replay_done", events=engine.events, out=str(out), rejects=summary["rejects"])
    if usable <= 0:
        rejected = ", ".join(f"{n} {reason}" for reason, n in sorted(summary["rejects"].items()))
        raise NoUsableInput(
            f"no usable event in {', '.join(shown)}"
            + (f" (rejected: {rejected})" if rejected else " (no lines)")
            + "; is --format right? (kcat -J envelopes, or one event object a line)"
        )
    return summary
