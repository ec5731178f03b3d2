"""``monitor run``: wiring, lifecycle and the one loop that owns the state.

One thread (the caller's) owns the engine. Signal handlers only set the stop flag; the
HTTP server's threads only read the Prometheus collector (which holds an immutable
report) and two callables. The loop ends with a final checkpoint::

    while not stop:
        apply assignment changes
        backpressure: while the sinks cannot deliver, input is paused (poll returns nothing)
        process(poll())  ->  dead letters
        tick: report to Prometheus, idle partitions, readiness
        checkpoint if due: flush sinks, write state+offsets, commit offsets
    checkpoint(force)
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry

from monitor import gc_policy
from monitor.config import MonitorConfig, drift_reference_text
from monitor.core.alerting import Alerting
from monitor.core.engine import Engine
from monitor.core.model import PaneSignals
from monitor.core.pipeline import Pipeline
from monitor.core.rules import AlertEvent, alert_id
from monitor.events.message import Message, MessageBatch
from monitor.http import HttpServer
from monitor.kafka.sink import KafkaSink
from monitor.kafka.source import Source, make_source
from monitor.label_pacing import LabelPacer
from monitor.logs import RateLimitedLogger
from monitor.outputs.alerts import AlertmanagerPusher, alert_dict, alert_json
from monitor.outputs.exports import Exports
from monitor.outputs.prometheus import MonitorCollector, RuntimeStats
from monitor.outputs.signals import signal_line
from monitor.readiness import CatchUp
from monitor.replicas import ReplicaStages
from monitor.state.kafka_store import KafkaStore, StoreError
from monitor.state.lock import StateLock
from monitor.state.store import LocalStore, Store, open_store

if TYPE_CHECKING:
    from monitor.startup import Prestart

__all__ = ["App"]

log = structlog.get_logger(__name__)
POLL_MS = 200
#: The rule name of the monitor's own alert while it cannot read its input.
INPUT_RULE = "monitor-input-unavailable"
#: The poll timeout while not ready: readiness is judged after each poll (see
#: ``App._judge_readiness``), so a shorter one notices the first fetch answers sooner.
STARTING_POLL_MS = 50
#: Alert transitions kept for the live view (``--tui``), newest last.
ALERT_LOG = 100
TICK_S = 1.0
#: How long a checkpoint waits for the sinks and for the offset commit. The loop is blocked
#: meanwhile (a SIGTERM waits too), and during an outage every checkpoint would wait this
#: long: the final one is shorter, so that SIGTERM ends the daemon within 10 s. A failed
#: commit is harmless (the checkpoint's offsets decide where to resume; the group's
#: committed offsets are for lag tools), a failed flush skips the state write.
FLUSH_S = 5.0
COMMIT_S = 3.0
FINAL_FLUSH_S = 4.0
#: While consumption is paused for the sinks: how often, and how long, a flush tries to
#: deliver their backlog (records that failed are sent again by it).
RETRY_S = 1.0
RETRY_FLUSH_S = 0.5
#: After a failed checkpoint write the next try comes after this, doubled at each failure
#: up to ``[state] checkpoint_interval``.
CHECKPOINT_RETRY_S = 1.0
#: ``reason`` label of ``monitor_checkpoint_failures_total`` per errno of a failed write.
_ERRNO_REASONS = {
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "no_space",
    errno.EROFS: "read_only",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EIO: "io",
}


def checkpoint_failure_reason(exc: BaseException) -> str:
    """The ``reason`` label of a failed checkpoint write: ``no_space``, ``read_only``,
    ``permission``, ``io``, ``os_error`` (another OSError), ``kafka`` (the Kafka store) or
    ``error`` (anything else, e.g. state that could not be encoded)."""
    if isinstance(exc, StoreError):
        return "kafka"
    if isinstance(exc, OSError):
        return _ERRNO_REASONS.get(exc.errno or 0, "os_error")
    return "error"


def _linger(stop: threading.Event, until: float) -> bool:
    """Wait until the monotonic time ``until`` (``kafka.min_poll_interval`` after a poll
    that brought a trickle began), unless ``stop`` is set first; return whether it was.
    Each poll costs the core a fixed amount per model, whatever it holds: a daemon that
    polled again at once would process a trickle of events one or two at a time, its CPU
    busy at a few hundred events a second; waiting, it processes them in one batch."""
    delay = until - time.monotonic()
    return delay > 0 and stop.wait(delay)


class App:
    """The daemon: Kafka source, core engine, sinks, HTTP port and checkpoints."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        stop: threading.Event | None = None,
        registry: CollectorRegistry | None = None,
        prestart: Prestart | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or (prestart.stop if prestart else threading.Event())
        self.registry = registry or (prestart.registry if prestart else CollectorRegistry())
        self.collector = MonitorCollector(
            self.registry, max_series=config.prometheus.max_series, process=True
        )
        #: One daemon per state directory (local store): taken before anything is read.
        self.lock = StateLock(config.state.dir).acquire() if config.state.store == "local" else None
        self.store: Store = open_store(config)
        #: One process (the local store): both stages here, each model's stage 2 fed by a
        #: direct call (None with replicas).
        self.core: Pipeline | None = None
        if isinstance(self.store, LocalStore):
            core = self.store.load_core(config)
            self.core = core[0] if core is not None else Pipeline(config)
            loaded: tuple[Engine, Alerting] | None = (
                (self.core.engine, core[1]) if core is not None else None
            )
        else:
            loaded = self.store.load_state(config)
        #: Stage 1 (decode, join, per input partition), the core's in one process.
        self.engine = self.core.engine if self.core is not None else (
            loaded[0] if loaded is not None else Engine(config)
        )  # fmt: skip
        #: The models' alert rules, fed the signals the models' stage 2 drains (with
        #: replicas the stage 2 driver has its own).
        self.alerting = loaded[1] if loaded is not None else Alerting(
            config, self.core.models if self.core is not None else self.engine.models
        )  # fmt: skip
        #: With replicas (the Kafka store), the two stages across them: this replica's
        #: stage 1 publishes pane deltas, and it runs stage 2 for the models it owns.
        kafka_store = self.store if isinstance(self.store, KafkaStore) else None
        self.stages = (
            ReplicaStages(config, self.engine, kafka_store)
            if config.state.store == "kafka"
            else None
        )
        #: Input partitions caught up and silent, as the last tick judged.
        self.idle: set[tuple[str, int]] = set()
        #: With a ``prestart`` (``monitor run``), the HTTP port is listening and the source
        #: joining the group already: this app adopts both.
        self.source: Source
        self.http: HttpServer
        if prestart is not None:
            self.source, self.http = prestart.source, prestart.http
            prestart.adopt(self._start_offset)
        else:
            self.source = make_source(config.kafka, start_offsets=self._start_offset)
            self.http = HttpServer(
                config.http.host,
                config.http.port,
                self.registry,
                heartbeat=lambda: self.heartbeat,
                readiness=self._readiness,
            )
        self._listening = prestart is not None
        self.sink = KafkaSink(config.kafka)
        self.heartbeat = time.time()
        self.http.heartbeat = lambda: self.heartbeat
        self.http.readiness = self._readiness
        self.http.collector = self.collector  # /metrics serves its rendered snapshot
        self.ready_reason = "starting"
        self.ready = False
        #: Readiness' lag judgement: the [readiness] bounds, with hysteresis.
        self.catch_up = CatchUp(config.readiness)
        #: Record timestamp (Unix s) of the last message read per input partition: how far
        #: behind a partition with unread messages is.
        self.last_record_ts: dict[tuple[str, int], float] = {}
        #: False while the input cannot be read (not connected, broker silent): absence
        #: rules hold meanwhile, and ``monitor_input_up`` says so.
        self.input_up = True
        #: Since when the input is unreadable (Unix s), and the monitor's own alert about it
        #: once sent (see :meth:`_input_alert`).
        self._input_down_since: float | None = None
        self._input_alert_sent: AlertEvent | None = None
        self.last_checkpoint: float | None = None
        self.checkpoints = 0
        #: Failed checkpoint writes by reason; the reason of the current outage (None: the
        #: last write succeeded), since when, and the delay before the next try.
        self.checkpoint_failures: Counter[str] = Counter()
        self.checkpoint_failing: str | None = None
        self.failing_since: float | None = None
        self._checkpoint_retry_s = 0.0
        self.dead_letters = 0
        self.last_seen: dict[tuple[str, int], float] = {}
        #: Tracked input partitions not assigned here -> since when (wall clock).
        self.unassigned_since: dict[tuple[str, int], float] = {}
        #: Partitions this replica checkpointed and handed to another (per-partition store).
        self.handed_over: set[tuple[str, int]] = set()
        self.rl = RateLimitedLogger(log, 10.0)
        self.lag: dict[tuple[str, int], int] = {}
        self.alerts_sent = 0
        #: The last alert transitions sent, as (sequence number, event): the live view
        #: (another thread) copies it and takes those newer than the last it took.
        self.alert_log: deque[tuple[int, AlertEvent]] = deque(maxlen=ALERT_LOG)
        #: True while input is paused because the sinks cannot deliver; ``held`` are the
        #: partitions this loop paused.
        self.paused = False
        self.held: set[tuple[str, int]] = set()
        #: Labels partitions paused because they ran ahead of their predictions (a backlog
        #: read by both topics at once): see :mod:`monitor.label_pacing`.
        kafka = config.kafka
        self.pacer = LabelPacer(kafka.predictions_topic, kafka.labels_topic, kafka.label_lead,
                                kafka.max_poll_records)  # fmt: skip
        # A poll held a large message since the heap was last trimmed with every output
        # delivered: the dead letters that copy such messages are freed only once sent.
        self.trim_due = False
        #: Models still in their drift warmup: the one that leaves it frees its raw
        #: predictions (tens of MB at a high rate), and the heap is trimmed then too.
        self._warming = {m.name for m in self.engine.models if m.warmup_target}
        self._next_retry = 0.0
        am = config.alertmanager
        self.alertmanager = (
            AlertmanagerPusher(
                am.url, queue_size=am.queue_size, resend_s=am.resend_interval, timeout_s=am.timeout
            )
            if am.url
            else None
        )
        #: TensorBoard scalars and CloudWatch EMF lines on stdout, when [outputs] asks.
        self.exports = Exports.for_run(config.outputs)

    # ----------------------------------------------------------------- callbacks
    def _start_offset(self, topic: str, partition: int) -> int | None:
        state = self.engine.partitions.get(partition)
        return None if state is None else state.offsets.get(topic)

    def _watermark_partitions(self) -> set[tuple[str, int]]:
        """The input partitions that hold the watermark back: every partition of both input
        topics (their count is known once connected), those assigned, and those whose
        state this process holds.

        A partition this process does not hold is read by nobody yet (a group that hands
        partitions out one by one, a stale member after a crash, a rolling deploy) or by
        another replica. If only the assigned ones counted, the watermark would run ahead
        on them and close panes that the others' unread events belong to, making those
        events late. So an unassigned partition holds it back for
        ``time.unassigned_timeout`` of wall time after this process started or lost it
        (see :meth:`_away`), after which the clock goes on without it.
        """
        kafka = self.config.kafka
        topics = (kafka.predictions_topic, kafka.labels_topic)
        numbers = set(self.engine.partitions) | set(range(self.source.partitions or 0))
        return self.source.assignment() | {(t, n) for t in topics for n in numbers}

    def _away(self, now: float) -> set[tuple[str, int]]:
        """Tracked partitions not assigned here for ``time.unassigned_timeout``, or handed
        to another replica with their state: they stop holding the watermark until they
        are assigned again."""
        assigned = self.source.assignment()
        for tp in assigned:
            self.unassigned_since.pop(tp, None)
        self.handed_over -= assigned
        timeout = self.config.time.unassigned_timeout
        away = set()
        for tp in self.engine.tracked - assigned:
            since = self.unassigned_since.setdefault(tp, now)
            if now - since >= timeout or tp in self.handed_over:
                away.add(tp)
        return away

    def _readiness(self) -> tuple[bool, str]:
        return self.ready, self.ready_reason

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT set the stop flag; the loop finishes its batch and checkpoints."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stop_requested", signal=signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # ----------------------------------------------------------------- lifecycle
    def run(self) -> int:
        """Run until the stop flag is set; return the exit code. Whatever ends the loop
        (the stop flag, an exception), the shutdown steps all run (:meth:`shutdown`)."""
        try:
            if not self._listening:
                self.http.start()
                self._listening = True
            for model in self.config.models:
                log.info(
                    "drift_reference", model=model.name, reference=drift_reference_text(model)
                )
            self._publish()
            if self.alertmanager is not None:
                self.alertmanager.start()
            self.source.connect(self.stop)
            self.sink.connect(self.stop)
            self.store.connect(self.stop)
            if self.stages is not None:
                self.stages.connect(self.stop)
            self._loop()
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        """The final checkpoint, then close clients and ports, write ``summary.json`` and
        release the state directory; a step that fails is logged and the next one runs."""
        alertmanager, lock = self.alertmanager, self.lock
        steps: list[tuple[str, Callable[[], object]]] = [
            ("checkpoint", lambda: self.checkpoint(final=True)),
            ("stages", self.stages.close if self.stages else lambda: None),
            ("source", self.source.close),
            ("sink", self.sink.close),
            ("store", self.store.close),
            ("alertmanager", alertmanager.close if alertmanager else lambda: None),
            ("http", self.http.stop),
            ("exports", self.exports.close),
            ("summary", self.write_summary),
            ("lock", lock.release if lock else lambda: None),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # e.g. a full disk for the summary: go on closing
                log.error("shutdown_step_failed", step=name,
                          error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip

    def _loop(self) -> None:
        next_tick = 0.0
        next_checkpoint = time.monotonic() + self.config.state.checkpoint_interval
        kafka = self.config.kafka
        next_poll = 0.0  # (monotonic) the earliest start of the next poll (see _linger)
        while not self.stop.is_set():
            assigned, revoked = self.source.take_assignment_changes()
            if (assigned or revoked) and self.store.partitioned:
                self._hand_over(assigned)
                if self.stop.is_set():
                    break  # a partition not restored must not be fetched (nor saved) empty
            if assigned or revoked:
                self.engine.track(self._watermark_partitions())
                now = time.time()
                for tp in assigned:
                    self.last_seen[tp] = now
                log.info("assignment_changed", assigned=sorted(assigned), revoked=sorted(revoked))
                if self.paused:
                    self.held = (self.held - revoked) | assigned
                    self.source.pause(assigned)
                next_tick = 0.0  # readiness follows an assignment at once, not a second later
            self._backpressure()
            starting = not (self.ready or self.paused) and bool(self.source.assignment())
            if not starting and _linger(self.stop, next_poll):
                break
            polled = time.monotonic()
            messages = self.source.poll(STARTING_POLL_MS if starting else POLL_MS)
            self.heartbeat = time.time()
            # A poll of less than a tenth of a full one, with less than a full one's records
            # left to read, has read what there was, a few at a time: the next one waits for
            # more to arrive. (A backlog is read on at once, and a busy input, whose polls
            # are larger, without the wait's latency.)
            wait = kafka.min_poll_interval
            short = bool(wait) and 0 < len(messages) < kafka.max_poll_records / 10 and (
                sum(self.source.lag().values()) < kafka.max_poll_records
            )
            next_poll = polled + wait if short else 0.0
            if messages:
                batch = MessageBatch.of(messages)
                self.last_seen.update(dict.fromkeys(batch.last_rows(), self.heartbeat))
                self._note_record_times(batch)
                self._process(batch)
                self._pace()
                large = gc_policy.holds_large(batch.values)
                del batch, messages  # freed before the heap is trimmed
                if large:
                    gc_policy.release()
                    self.trim_due = True
            if self.stages is not None:
                self._send_alerts(*self.stages.poll())
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_S
                self._tick()
            elif not self.ready and self._judge_readiness():
                self._publish()  # ready as soon as every position and lag is known
            if time.monotonic() >= next_checkpoint:
                self.checkpoint()
                next_checkpoint = time.monotonic() + self._checkpoint_delay()

    def _hand_over(self, assigned: set[tuple[str, int]]) -> None:
        """With a per-partition store (replicas): checkpoint and drop the partitions this
        replica no longer owns, then restore the newly assigned ones from the store before
        their first fetch (the source keeps them paused until the next poll seeks them to
        the restored offsets). Readiness is false until every one is restored."""
        owned = {number for _, number in self.source.assignment()}
        gone = sorted(n for n in self.engine.partitions if n not in owned)
        if gone:
            written: int | str = "skipped: sinks not flushed"
            out = self.stages is None or self._deltas_out(set(gone), final=False)
            if out and self.sink.flush(FLUSH_S):
                try:
                    written = self.store.save(self.engine, gone)
                except Exception as exc:
                    self._checkpoint_failed(exc, final=False)
                    written = f"failed: {str(exc)[:200]}"
            kafka = self.config.kafka
            for number in gone:
                self.engine.drop_partition(number)
                self.store.forget(number)
            if self.stages is not None:
                self.stages.restarted(gone)
                # Another replica reads it now: this one's clock need not wait for it.
                self.handed_over |= {(kafka.predictions_topic, number),
                                     (kafka.labels_topic, number)}
            log.info("partitions_handed_over", partitions=gone, checkpoint=written)
        new = sorted({number for _, number in assigned} & owned)
        if not new:
            return
        self.ready, self.ready_reason = False, f"restoring {len(new)} partition(s) from the store"
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                result = self.store.restore(self.engine, new)
            except StoreError as exc:
                self.heartbeat = time.time()  # the loop is alive, waiting for the store
                self.rl.warning(("restore",), "restore_failed", error=str(exc)[:300], retry_in_s=1)
                self.stop.wait(1.0)
                continue
            log.info("partitions_restored", result={str(k): v for k, v in result.items()},
                     seconds=round(time.monotonic() - started, 3))  # fmt: skip
            if self.stages is not None:  # a partition kept as it was goes on with its chain
                self.stages.restarted([n for n, how in result.items() if how != "kept"])
            return

    def _backpressure(self) -> None:
        """Pause every assigned input partition while the sinks cannot deliver; resume once
        a flush delivers their whole backlog.

        The sink keeps what it could not deliver and says it is blocked (records waiting to
        be sent again, too many in flight, or a broker that stopped answering); consuming on
        would only grow that backlog.
        While paused, the loop still polls (the group keeps the partitions; nothing comes)
        and tries a flush every ``RETRY_S``. Checkpoints fail meanwhile (their flush does),
        so no offset is committed past an undelivered record.
        """
        if not self.paused:
            if not self.sink.blocked:
                return
            self.paused = True
            self.held = set(self.source.assignment())
            self.source.pause(self.held)
            self._next_retry = time.monotonic() + RETRY_S
            log.warning(
                "consumption_paused", reason="outputs not delivered", backlog=self.sink.backlog
            )
            return
        if time.monotonic() < self._next_retry:
            return
        if self.sink.flush(RETRY_FLUSH_S):
            self.source.resume(self.held - self.pacer.held)  # paced ones stay paused
            self.paused = False
            self.held = set()
            log.info("consumption_resumed")
        else:
            self._next_retry = time.monotonic() + RETRY_S

    def _pace(self) -> None:
        """Pause the labels partitions that ran ahead of their predictions, resume those
        whose predictions caught up (:class:`~monitor.label_pacing.LabelPacer`). Paused
        for the outputs (:meth:`_backpressure`), a partition to resume stays paused until
        the outputs resume it."""
        event_times = {n: state.max_ts for n, state in self.engine.partitions.items()}
        pause, resume = self.pacer.decide(event_times, self.lag, self.source.assignment())
        if pause:
            self.source.pause(pause)
            log.debug("labels_paced", paused=sorted(pause))
        if resume:
            if not self.paused:
                self.source.resume(resume)
            log.debug("labels_paced", resumed=sorted(resume))

    def _process(self, messages: Sequence[Message]) -> None:
        core = self.core if self.core is not None else self.engine
        for reject in core.process(messages):
            self.sink.send_dead_letter(reject)
            self.dead_letters += 1
            self.rl.warning(
                ("reject", reject.reason),
                "event_rejected",
                reason=reject.reason,
                topic=reject.message.topic,
                partition=reject.message.partition,
                offset=reject.message.offset,
                detail=reject.detail[:200],
            )
        if self._warming and self._warmup_ended():
            self.trim_due = True  # its raw predictions are freed: given back at the next tick
        closed = core.drain_signals()
        if self.stages is None:  # else stage 1 only here: signals and alerts come from stage 2
            self._send_alerts(closed, self.alerting.feed(closed))

    def _warmup_ended(self) -> bool:
        """Whether a model left its drift warmup since the last call (stage 1 learnt its
        reference, or that the warmup failed)."""
        by_name = self.engine.by_name
        done = {n for n in self._warming if n not in by_name or not by_name[n].warmup_target}
        self._warming -= done
        return bool(done)

    def _send_alerts(self, closed: list[PaneSignals] | None, events: list[AlertEvent]) -> None:
        """Alert ``events`` to the alert topic (key = model), the log and Alertmanager; they
        and the signals of the panes just ``closed`` to the [outputs] exports."""
        if closed and self.rl.enabled("debug"):  # (a record per pane: made only if logged)
            for sig in closed:
                self.rl.debug(("signals", sig.model), "pane_closed", **signal_line(sig))
        for event in events:
            self.sink.send(self.config.kafka.alerts_topic, event.model.encode(), alert_json(event))
            self.alerts_sent += 1
            self.alert_log.append((self.alerts_sent, event))
            log.info("alert", **{k: v for k, v in alert_dict(event).items() if k != "labels"})
            if self.alertmanager is not None:
                self.alertmanager.submit(event)
        if self.exports.enabled:
            self.exports.write(closed or [], events)

    def _note_record_times(self, batch: MessageBatch) -> None:
        """Keep the record timestamp of each partition's last message in ``batch``."""
        stamps = batch.timestamps
        for tp, i in batch.last_rows().items():
            stamp = stamps[i]
            if stamp is not None and stamp > 0:
                self.last_record_ts[tp] = stamp / 1000.0

    def _input_readable(self) -> tuple[bool, str]:
        """Whether the input can be read now, and if not why: not connected, or the broker
        not answering (a frozen or stopped broker)."""
        if not self.source.connected:
            return False, "not connected to Kafka"
        silent = self._broker_silent_s()
        if silent > self.config.kafka.session_timeout / 2:
            # A frozen broker accepts TCP connections and the last fetch's highwater still
            # says "caught up": the group coordinator's silence is what gives it away.
            return False, f"broker not answering for {silent:.0f} s"
        return True, ""

    def _track_input(self) -> None:
        """Update :attr:`input_up`; log its changes. When the input comes back, every
        assigned partition counts as just seen, so that it is not taken as idle (and its
        silence as the model's) before its first fetch after the outage."""
        up, why = self._input_readable()
        now = time.time()
        if up == self.input_up:
            if not up:
                self._input_alert(why, now)
            return
        self.input_up = up
        if up:
            for tp in self.source.assignment():
                self.last_seen[tp] = now
            log.info("input_available")
            self._input_alert(None, now)
            self._input_down_since = None
        else:
            self._input_down_since = now
            log.warning("input_unavailable", reason=why,
                        holding="absence and label-starvation rules")

    def _input_alert(self, why: str | None, now: float) -> None:
        """The monitor's own alert while its input is unreadable: ``firing`` once it has
        been so for ``[readiness] input_alert_after`` (``why`` the reason), ``resolved``
        when it is back (``why`` is ``None``). It goes to the log and to Alertmanager, not
        to the alert topic (on the broker it cannot reach; the topic is the models')."""
        sent = self._input_alert_sent
        if why is not None:
            since = self._input_down_since
            if sent is not None or since is None:
                return
            if now - since < self.config.readiness.input_alert_after:
                return
            event = AlertEvent(
                alert_id=alert_id("", INPUT_RULE, since), status="firing", rule=INPUT_RULE,
                severity="critical", model="", model_version="", signal="monitor_input_up",
                value=0.0, threshold=1.0, starts_at=since, ends_at=None, ts=now,
                labels={"alertname": INPUT_RULE, "severity": "critical",
                        "group_id": self.config.kafka.group_id},
                annotations={"summary": f"monitor cannot read its input from Kafka ({why}); "
                             "its absence and label-starvation rules are held until it can"},
            )
            self._input_alert_sent = event
        elif sent is not None:
            event = dataclasses.replace(sent, status="resolved", ends_at=now, ts=now)
            self._input_alert_sent = None
        else:
            return
        log.warning("alert", **{k: v for k, v in alert_dict(event).items() if k != "labels"})
        if self.alertmanager is not None:
            self.alertmanager.submit(event)

    def _tick(self) -> None:
        """Once a second: lag, idle partitions (which may close panes), readiness, report.

        While the input cannot be read (:meth:`_input_readable`), idleness is not judged:
        a silent broker is no evidence that the models stopped predicting, so absence
        rules neither fire nor resolve until it answers again."""
        if self.trim_due and not self.sink.backlog:  # the large dead letters are sent
            gc_policy.release()
            self.trim_due = False
        self.lag = self.source.lag()
        self._track_input()
        self._pace()  # the lag just read may free a labels partition no poll reads
        if not self.input_up:
            self._judge_readiness(lag_known=True)
            self._publish()
            return
        now = time.time()
        idle = {
            tp
            for tp in self.source.assignment()
            # unknown lag (no fetch answered yet, e.g. behind another partition's large
            # backlog after a restart or a takeover) is not "caught up": not idle
            if self.lag.get(tp) == 0
            and now - self.last_seen.get(tp, now) >= self.config.time.idle_timeout
        }
        holding = self._watermark_partitions()
        if self.source.partitions and not self.engine.tracked >= holding:
            self.engine.track(holding)  # the partition count is known now
        held_back = idle | self._away(now)
        self.idle = idle
        if held_back != self.engine.idle:
            self.engine.set_idle(held_back)
            self._process([])
        if self.stages is not None:
            self.stages.input_partitions = self.source.partitions
            self.stages.publish(self._held(), idle)
            self._send_alerts(*self.stages.tick(now))
            if self.alertmanager is not None:  # a takeover: re-posting moves with the model
                if self.stages.lost_models:
                    self.alertmanager.forget_models(frozenset(self.stages.lost_models))
                for event in self.stages.adopted:
                    self.alertmanager.submit(event)
            self.stages.lost_models.clear()
            self.stages.adopted.clear()
        elif idle and idle == self.source.assignment():
            # All input is silent: event time has stopped, so absence rules are judged on
            # the wall clock (replay, without one, never does this).
            self._send_alerts(None, self.alerting.evaluate_idle(now))
        self._judge_readiness(lag_known=True)
        self._publish()

    def _judge_readiness(self, *, lag_known: bool = False) -> bool:
        """Set ``ready`` and ``ready_reason`` from the source and the sinks; return ``ready``.

        Called by each tick, and between ticks after every poll while not ready, so that
        ``/readyz`` turns 200 as soon as the assignment is restored and the first fetches
        have told every partition's lag, not up to a tick later. ``lag_known``: ``self.lag``
        was just read (else it is read here).
        """
        if not lag_known:
            self.lag = self.source.lag()
        assigned = self.source.assignment()
        readable, why = self._input_readable()
        if not readable:
            self.ready, self.ready_reason = False, why
            self.catch_up.reset()
        elif not assigned:
            self.ready, self.ready_reason = False, "no partitions assigned"
        else:
            caught_up, behind = self.catch_up.judge(
                assigned, self.lag, self.last_record_ts, time.time()
            )
            if caught_up:
                self.ready, self.ready_reason = True, "ok"
            else:
                self.ready, self.ready_reason = False, f"catching up ({behind})"
        if self.paused:
            backlog = self.sink.backlog
            self.ready, self.ready_reason = False, f"paused: {backlog} output records undelivered"
        elif self.checkpoint_failing is not None:  # storage outage: consuming goes on
            self.ready, self.ready_reason = False, f"checkpoints failing: {self.checkpoint_failing}"
        return self.ready

    def _broker_silent_s(self) -> float:
        """Seconds since the group coordinator last answered a heartbeat (0 if unknown).

        Reads kafka-python's heartbeat bookkeeping (``consumer._coordinator.heartbeat``);
        on a kafka-python without it, 0: readiness then rests on lag alone. A source that
        tells it itself (``ConfluentSource.broker_silent_s``) is asked instead.
        """
        own = getattr(self.source, "broker_silent_s", None)
        if callable(own):
            return float(own())
        consumer = getattr(self.source, "_consumer", None)
        beat = getattr(getattr(consumer, "_coordinator", None), "heartbeat", None)
        received = getattr(beat, "last_receive", None)
        if not isinstance(received, float):
            return 0.0
        reset = getattr(beat, "last_reset", received)
        latest = max(received, reset if isinstance(reset, float) else received)
        return max(0.0, time.monotonic() - latest) if latest > -math.inf else 0.0

    def _publish(self) -> None:
        runtime = RuntimeStats(
            heartbeat=self.heartbeat,
            ready=self.ready,
            assigned_partitions=len(self.source.assignment()) if self.source.connected else 0,
            lag=dict(self.lag),
            last_checkpoint=self.last_checkpoint,
            checkpoints=self.checkpoints,
            dead_letters=self.dead_letters,
            alerts=self.alerts_sent,
            output_backlog=self.sink.backlog,
            paused=self.paused,
            paced=len(self.pacer.held),
            checkpoint_failures=dict(self.checkpoint_failures),
            input_up=self.input_up,
        )
        report = (
            self.core.report() if self.core is not None else self.engine.report()
        )
        if self.stages is not None:  # the models' part is their owners' stage 2
            report = self.stages.report(report)
        else:
            self.alerting.fill(report)
        self.collector.update(report, runtime)
        #: The latest report and runtime figures, replaced whole each tick: other threads
        #: (the demo's live view) may read them without touching the engine.
        self.latest = (report, runtime)

    def checkpoint(self, final: bool = False) -> bool:
        """Flush sinks, write state with its offsets, then commit them to the group.

        Any failure leaves the group's offsets where they were: the state on disk and the
        committed offsets never claim more than was delivered.
        """
        if not self.sink.flush(FINAL_FLUSH_S if final else FLUSH_S):
            # The previous checkpoint stays: a restart re-reads from its offsets and so
            # re-derives both the state and the dead letters that were not delivered.
            # Deliberately so for the final checkpoint too: writing the state would move
            # the resume point past messages whose dead letters or alerts never left, and
            # they would be lost for good. Outputs are at-least-once, the state exact.
            log.warning(
                "checkpoint_skipped", reason="sinks not flushed (broker unreachable?)", final=final
            )
            return False
        if self.stages is not None and not self._deltas_out(self._held(), final):
            return False
        started = time.monotonic()
        try:
            if self.core is not None and isinstance(self.store, LocalStore):
                size = self.store.save(self.core, alerting=self.alerting)
            else:
                size = self.store.save(self.engine, alerting=self.alerting)
        except Exception as exc:  # OSError (full, read-only disk), StoreError, encoding
            self._checkpoint_failed(exc, final)
            return False
        if self.stages is not None:
            self.stages.checkpointed(self.engine.partitions)
            try:
                self.stages.checkpoint()  # the owned models' stage 2, for the next owner
            except Exception as exc:
                self._checkpoint_failed(exc, final)
                return False
        offsets = self.engine.offsets()
        committed = (
            self.source.commit(offsets, timeout_s=2.0 if final else COMMIT_S)
            if self.source.connected
            else False
        )
        self.last_checkpoint = time.time()
        self.checkpoints += 1
        if self.checkpoint_failing is not None:
            log.warning(
                "checkpoint_recovered",
                failed_since=self.failing_since,
                outage_s=round(self.last_checkpoint - (self.failing_since or 0.0), 1),
                failures=dict(self.checkpoint_failures),
            )
        self.checkpoint_failing = self.failing_since = None
        self._checkpoint_retry_s = 0.0
        log.info(
            "checkpoint",
            bytes=size,
            partitions=len(offsets),
            committed=committed,
            seconds=round(time.monotonic() - started, 4),
            final=final,
            events=self.engine.events,
        )
        return True

    def _held(self) -> set[int]:
        """Input partition numbers this replica reads (and holds state of)."""
        return {n for _, n in self.source.assignment()} & set(self.engine.partitions)

    def _deltas_out(self, numbers: set[int], final: bool) -> bool:
        """Publish these partitions' pane deltas up to now and wait for the broker: a
        checkpoint is written only at the end of a delta stage 2 has (replicas)."""
        assert self.stages is not None
        self.stages.publish(numbers, self.idle)
        if self.stages.flush(FINAL_FLUSH_S if final else FLUSH_S):
            return True
        log.warning("checkpoint_skipped", reason="pane deltas not delivered", final=final)
        return False

    def _checkpoint_failed(self, exc: BaseException, final: bool) -> None:
        """Count a failed state write and log it once per change of reason; offsets stay
        uncommitted, everything else goes on, and the next try comes with backoff."""
        reason = checkpoint_failure_reason(exc)
        self.checkpoint_failures[reason] += 1
        interval = self.config.state.checkpoint_interval
        self._checkpoint_retry_s = min(max(2 * self._checkpoint_retry_s, CHECKPOINT_RETRY_S),
                                       interval)  # fmt: skip
        if reason == self.checkpoint_failing and not final:
            return
        self.checkpoint_failing = reason
        if self.failing_since is None:
            self.failing_since = time.time()
        log.error(
            "checkpoint_failed",
            reason=reason,
            error=f"{type(exc).__name__}: {exc}"[:300],
            final=final,
            since=self.failing_since,
            action="consuming, /metrics and alerts go on; offsets stay at the last "
            "checkpoint; retrying with backoff (logged again when the reason changes or "
            "it succeeds)",
        )

    def _checkpoint_delay(self) -> float:
        """Seconds to the next checkpoint: the interval, or the backoff after a failure."""
        if self.checkpoint_failing is None:
            return float(self.config.state.checkpoint_interval)
        return self._checkpoint_retry_s

    def write_summary(self) -> Path:
        """``summary.json`` of the state at shutdown, in the state directory (as replay's)."""
        path = Path(self.config.state.dir) / "summary.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".summary.json.tmp")
        try:  # atomically: a full disk leaves the previous summary whole
            summary = (self.core or self.engine).summary()
            tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
