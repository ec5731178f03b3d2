"""The two stages across replicas (``[state] store = "kafka"``): this replica's stage 1
publishes its input partitions' pane deltas to the partials topic, and it runs stage 2
for the models it owns.

- **Stage 1 out.** Every tick, and right before every checkpoint of a partition, each
  input partition this replica reads gives one :class:`~monitor.core.partials.PartitionDelta`
  (:class:`~monitor.core.deltas.DeltaBook`); it is cut per model and sent to the model's
  partition of the partials topic (:func:`~monitor.kafka.partials_topic.model_partition`),
  key ``<model>/<input partition>``. A model without anything new in the partition still
  gets the partition's progress: its clock needs it. A checkpoint is written only after
  the partials up to it are acknowledged, so every checkpoint is the end of a delta that
  stage 2 has (the chain's contract, :mod:`monitor.core.partials`).
- **Stage 2 in.** The owners' consumer group (``<group_id>.owners``) over the partials
  topic gives each of its partitions, so each model, to exactly one replica. On gaining
  one, the replica resumes the model's :class:`~monitor.core.model_stage.ModelStage`
  from its stage checkpoint in the state topic (or builds it from nothing when there is
  none) and merges the partition's records after the offset the checkpoint reflects;
  until it has read what was written before the gain, its gauges are not exported and
  its signals not sent, while its alert transitions are (at least once: none may fall
  between two owners). Only the owner exports a model's gauges and sends its alerts, and
  at every checkpoint it writes each owned model's stage 2 for the next owner.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from functools import partial
from typing import Any

import structlog

from monitor.config import MonitorConfig
from monitor.core.alerting import Alerting, baseline_references
from monitor.core.deltas import DeltaBook
from monitor.core.engine import Engine
from monitor.core.model import PaneSignals
from monitor.core.model_stage import ModelStage
from monitor.core.partials import PartitionDelta, decode_delta, encode_delta
from monitor.core.report import Report
from monitor.core.rules import AlertEvent, ModelRules
from monitor.kafka.partials_topic import (
    ModelOwnership,
    PartialRecord,
    PartialsWriter,
    model_partition,
)
from monitor.state.format import decode_reference, decode_stage, encode_reference, encode_stage
from monitor.state.kafka_store import KafkaStore, StoreError

__all__ = ["ReplicaStages"]

log = structlog.get_logger(__name__)

#: Seconds between stage 1's looks in the store for warmup references it still lacks.
REFERENCE_POLL_S = 3.0


class ReplicaStages:
    """This replica's share of the two stages; see the module docstring.

    ``input_partitions`` tells the number of partitions of the input topics once the
    source knows it (None before): a model's clock waits for every one of them."""

    def __init__(self, config: MonitorConfig, engine: Engine, store: KafkaStore | None = None,
                 ) -> None:  # fmt: skip
        self.config = config
        self.engine = engine
        #: Where each owned model's stage 2 is checkpointed (the Kafka state store).
        self.store = store
        self.book = DeltaBook(engine)
        state = config.state
        topic = state.partials_topic or f"{config.kafka.group_id}.partials"
        self.writer = PartialsWriter(config, topic, state.partials_partitions)
        self.owners = ModelOwnership(
            config,
            topic,
            state.partials_partitions,
            f"{config.kafka.group_id}.owners",
            on_change=self._changed,
            start_offset=lambda _partition: None,
        )
        self.stages: dict[str, ModelStage] = {}
        #: The owned models' alert rules, fed their stages' signals (checkpointed with each
        #: model's stage 2, so they move with it).
        self.alerting = Alerting(config)
        self.input_partitions: int | None = None
        self.bad_records = 0
        #: Partials partition -> the next offset to merge (what the stages reflect).
        self.next_offset: dict[int, int] = {}
        #: Model -> the partials offset its stage was restored at: earlier records are in it.
        self.resume_at: dict[str, int] = {}
        #: Firing alerts of models restored here, for Alertmanager to be re-posted by this
        #: replica now (``run`` takes them); and models lost, whose re-posting stops here.
        self.adopted: list[AlertEvent] = []
        #: Records read before the input topics' partition count was known.
        self._early: list[PartialRecord] = []
        self.lost_models: set[str] = set()
        #: Records sent since the last flush that the broker acknowledged whole.
        self._unconfirmed: list[tuple[str, bytes, bytes]] = []
        self._topics = (config.kafka.predictions_topic, config.kafka.labels_topic)
        #: The owners' consumer lives in its own thread (a group member must poll with a
        #: timeout to join, and the run loop must not wait); it hands over what it read.
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._owned: frozenset[int] = frozenset()
        self._caught_up: frozenset[int] = frozenset()
        self._partials_partitions: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Models whose warmup reference this replica wrote to the store (as their owner).
        self._references_sent: set[str] = set()
        #: When stage 1 last looked in the store for references it still lacks.
        self._references_read = 0.0

    # ------------------------------------------------------------------ lifecycle
    def connect(self, stop: threading.Event) -> None:
        """Connect the writer and start the owners' thread (both wait out an outage)."""
        self.writer.connect(stop)
        self._thread = threading.Thread(
            target=self._own, args=(stop,), name="model-owners", daemon=True
        )
        self._thread.start()

    def _own(self, stop: threading.Event) -> None:
        """The owners' thread: join the group, read the owned partitions, hand over."""
        owners = self.owners
        try:
            owners.connect(stop)
            self._partials_partitions = owners.partitions
            while not (stop.is_set() or self._stop.is_set()):
                records = owners.poll(0.2)
                if records:
                    self._inbox.put(("records", records))
                self._owned = owners.owned()
                self._caught_up = frozenset(p for p in self._owned if owners.caught_up(p))
        except Exception as exc:  # a bug here must not pass silently: the loop logs it
            log.error("model_owners_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            self._inbox.put(("failed", exc))
        finally:
            owners.close()

    def close(self) -> None:
        """Leave the owners' group (ownership moves at once) and close the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self.writer.close()

    # ------------------------------------------------------------------ stage 1
    def publish(self, numbers: Iterable[int], idle: set[tuple[str, int]]) -> None:
        """Send what input partitions ``numbers`` added since their last delta, to every
        model (``idle``: the input partitions caught up and silent)."""
        partitions = self.writer.partitions
        if partitions is None:
            return
        for number in sorted(numbers):
            if number not in self.engine.partitions:
                continue
            quiet = frozenset(t for t in self._topics if (t, number) in idle)
            delta = self.book.take(number, quiet)
            for model in self.config.models:
                mine = [m for m in delta.models if m.model == model.name]
                part = PartitionDelta(
                    delta.format,
                    delta.number,
                    delta.session,
                    delta.seq,
                    delta.base,
                    delta.end,
                    delta.progress,
                    delta.idle,
                    delta.confirmed,
                    mine,
                )
                key = f"{model.name}/{number}".encode()
                record = (model.name, key, encode_delta(part))
                self._unconfirmed.append(record)
                self.writer.send(*record)

    def flush(self, timeout_s: float) -> bool:
        """True when every delta sent so far is acknowledged. When one was not, all those
        sent since the last acknowledged flush are sent again, in order: a delta lost
        would break its partition's chain, and stage 2 drops the copies it has already."""
        if self.writer.flush(timeout_s):
            self._unconfirmed.clear()
            return True
        log.warning("partials_resent", records=len(self._unconfirmed))
        for record in self._unconfirmed:
            self.writer.send(*record)
        return False

    def restarted(self, numbers: Iterable[int]) -> None:
        """These partitions' state was just restored (or dropped): their chains restart."""
        for number in numbers:
            self.book.restart(number)

    def checkpointed(self, numbers: Iterable[int]) -> None:
        """The checkpoint of these partitions is durable at their current offsets."""
        for number in numbers:
            state = self.engine.partitions.get(number)
            if state is not None:
                self.book.checkpointed(number, dict(state.offsets))

    # ------------------------------------------------------------------ stage 2
    def _changed(self, gained: set[int], lost: set[int]) -> None:
        """``on_change`` (owners' thread): the run loop drops the lost models' stages."""
        self._inbox.put(("change", (gained, lost)))

    def _where(self, model: str) -> int | None:
        partitions = self._partials_partitions
        return None if partitions is None else model_partition(model, partitions)

    def owned_models(self) -> list[str]:
        """The models whose stage 2 this replica runs now."""
        owned = self._owned
        return [m.name for m in self.config.models if self._where(m.name) in owned]

    def _stage(self, model: str) -> ModelStage | None:
        stage = self.stages.get(model)
        if stage is None and self.input_partitions and self._where(model) in self._owned:
            stage = self.stages[model] = self._resume(model, self.input_partitions)
        return stage

    def _resume(self, model: str, partitions: int) -> ModelStage:
        """The model's stage 2 from its last checkpoint (records before the offset it
        reflects are then skipped), or a new one built from the partials alone."""
        restored = None
        if self.store is not None:
            try:
                restored = self.store.load_stage(model, partial(decode_stage, config=self.config))
            except StoreError as exc:
                log.warning("stage_checkpoint_unreadable", model=model, error=str(exc)[:200],
                            action="rebuilt from the partials")  # fmt: skip
        if restored is not None and restored[0].partitions == partitions:
            stage, offset, rules = restored
            self.resume_at[model] = offset
            self._rules(stage, rules)
            self.adopted.extend(self.alerting.firing_events(model))
            log.info("model_stage_restored", model=model, partials_offset=offset,
                     closed_upto=stage.closed_upto)  # fmt: skip
            return stage
        self.resume_at.pop(model, None)
        log.info("model_stage_started", model=model, input_partitions=partitions)
        stage = ModelStage(self.config, model, partitions)
        self._rules(stage, None)
        return stage

    def _rules(self, stage: ModelStage, rules: ModelRules | None) -> None:
        """The rules of ``stage``'s model: ``rules`` restored with it (None: afresh)."""
        self.alerting.install(stage.name, rules)
        self.alerting.set_reference(stage.name, baseline_references(stage.model))

    def checkpoint(self) -> None:
        """Write every live stage with the partials offset it reflects (StoreError when
        the store does not take them: the caller counts it as a failed checkpoint)."""
        if self.store is None:
            return
        bodies = {}
        for name, stage in self.stages.items():
            where = self._where(name)
            if self._live(name) and where is not None and where in self.next_offset:
                bodies[name] = encode_stage(
                    stage, self.next_offset[where], self.alerting.models.get(name)
                )
        if bodies:
            self.store.save_stages(bodies)
        self.publish_references()

    def publish_references(self) -> None:
        """Write the warmup references this replica's live stages built since (or whose
        warmup failed) to the store, for every replica's stage 1: as soon as they exist,
        as until then stage 1 sends each of the model's predictions raw. StoreError when
        the store does not take one (the next call writes it)."""
        if self.store is None:
            return
        for name, stage in self.stages.items():
            if self._live(name) and name not in self._references_sent and stage.warmed_up():
                model = stage.model
                self.store.save_reference(name, encode_reference(model))
                self._references_sent.add(name)
                log.info("warmup_reference_published", model=name, built=model.profile is not None)

    def _live(self, model: str) -> bool:
        """Whether ``model``'s stage has read its history: its outputs are this replica's."""
        return model in self.stages and self._where(model) in self._caught_up

    def poll(self) -> tuple[list[PaneSignals], list[AlertEvent]]:
        """Merge the partials the owners' thread read, and return the signals and alert
        events of the panes that closed (those of a stage still reading its history are
        dropped: its previous owner sent them). Never waits."""
        touched: dict[str, ModelStage] = {}
        if self._early and self.input_partitions is not None:
            early, self._early = self._early, []
            for record in early:  # read before anything still queued: merged first
                stage = self._route(record)
                if stage is not None:
                    touched[stage.name] = stage
        while True:
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "change":
                gained, lost = item
                for model in self.config.models:
                    if self._where(model.name) in lost:
                        self.stages.pop(model.name, None)
                        touched.pop(model.name, None)
                        self.lost_models.add(model.name)
                for number in lost | gained:  # read again from the start when gained
                    self.next_offset.pop(number, None)
                log.info("models_owned_changed", gained=sorted(gained), lost=sorted(lost))
            elif kind == "records":
                for record in item:
                    stage = self._route(record)
                    if stage is not None:
                        touched[stage.name] = stage
            else:
                raise RuntimeError("the model owners' consumer stopped") from item
        for stage in touched.values():
            stage.advance()
        return self._drain()

    def _route(self, record: PartialRecord) -> ModelStage | None:
        if record.value is None:
            self.next_offset[record.partition] = record.offset + 1
            return None
        model = record.key.decode("utf-8", "replace").rpartition("/")[0]
        try:
            delta = decode_delta(record.value)
        except ValueError as exc:
            self.bad_records += 1
            log.warning("partials_record_refused", partition=record.partition,
                        offset=record.offset, error=str(exc)[:200])  # fmt: skip
            return None
        stage = self._stage(model)
        if stage is None and self.input_partitions is None:
            self._early.append(record)  # merged once the input's partition count is known
            return None
        self.next_offset[record.partition] = record.offset + 1
        if stage is None or record.offset < self.resume_at.get(model, 0):
            return None  # not owned, or in the checkpoint it was restored from
        stage.apply(delta, advance=False)
        return stage

    def _drain(
        self, now: float = 0.0, quiet: frozenset[str] = frozenset()
    ) -> tuple[list[PaneSignals], list[AlertEvent]]:
        """Signals and alert events of the stages' closed panes (the rules of each model
        evaluated on its signals, then, for the ``quiet`` models, its absence rules at
        wall-clock ``now``). A stage restored from its
        checkpoint sends its alert transitions while it catches up too: the previous owner
        may have lost the model before those panes closed (at least once: an id the
        previous owner sent already comes again). One rebuilt from nothing sends none of
        what it replays (its history was sent when it happened)."""
        signals: list[PaneSignals] = []
        alerts: list[AlertEvent] = []
        for name, stage in self.stages.items():
            got = stage.drain_signals()
            events = self.alerting.feed(got)
            if name in quiet:
                events += self.alerting.evaluate_idle(now, [name])
            if self._live(name):
                signals += got
                alerts += events
            elif name in self.resume_at:
                alerts += events
        return signals, alerts

    def learn_references(self, now: float) -> None:
        """Stage 1: take the warmup references the models' owners built, so as to histogram
        their predictions here instead of sending them raw: from this replica's own stage 2
        at once, from the store every few seconds."""
        engine = self.engine
        waiting = [m for m in engine.models if m.warmup_target]
        if not waiting:
            return
        look = self.store is not None and now - self._references_read >= REFERENCE_POLL_S
        if look:
            self._references_read = now
        for model in waiting:
            stage = self.stages.get(model.name)
            found: tuple[Any, Any, int] | None = None
            if stage is not None and stage.warmed_up():
                own = stage.model
                found = (own.profile, own.baseline, own.profile_pane or -1)
            elif look and self.store is not None:
                try:
                    found = self.store.load_reference(
                        model.name, partial(decode_reference, model=model)
                    )
                except StoreError as exc:
                    log.warning("warmup_reference_unreadable", model=model.name,
                                error=str(exc)[:200], retry_in_s=REFERENCE_POLL_S)  # fmt: skip
                    continue
            if found is not None:
                profile, baseline, pane = found
                engine.learn_profile(model.name, profile, pane, baseline)

    def tick(self, now: float) -> tuple[list[PaneSignals], list[AlertEvent]]:
        """Once a second: create the stages of owned models not heard of yet, release the
        input partitions nobody has published for ``time.unassigned_timeout``, judge
        absence rules on the wall clock when every input partition is idle, and learn the
        warmup references built since (:meth:`learn_references`) and publish those built
        here (:meth:`publish_references`)."""
        self.learn_references(now)
        try:
            self.publish_references()
        except StoreError as exc:
            log.warning("warmup_reference_not_published", error=str(exc)[:200],
                        action="written at the next tick or checkpoint")  # fmt: skip
        for model in self.owned_models():
            self._stage(model)
        timeout = self.config.time.unassigned_timeout
        quiet: set[str] = set()
        for name, stage in self.stages.items():
            stage.release_silent(now, timeout)
            if self._live(name) and all(
                n in stage.released or set(self._topics) <= stage.idle.get(n, frozenset())
                for n in range(stage.partitions)
            ):
                quiet.add(name)
        return self._drain(now, frozenset(quiet))

    def report(self, local: Report) -> Report:
        """``local`` (this replica's engine: rejects and counts of its partitions) with the
        model-level part replaced by the owned models' stage 2: a model this replica does
        not own, or still reads the history of, is left out."""
        out = Report(watermark=local.watermark, panes_closed=local.panes_closed,
                     events=local.events, rejects=dict(local.rejects),
                     unnamed=dict(local.unnamed))  # fmt: skip
        for name, stage in self.stages.items():
            if self._live(name):
                out.models[name] = stage.report()
                out.models[name].alerts = self.alerting.report(name)
        return out
