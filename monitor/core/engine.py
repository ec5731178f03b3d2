"""Stage 1 of the core: decode, validate, join and pane partials per input partition.

Knows nothing of Kafka, HTTP or Prometheus, and decides nothing about closing panes: what
each poll adds to each model's panes is kept per input partition (a
:class:`~monitor.core.partials.DeltaLedger`) for the model's stage 2
(:mod:`monitor.core.model_stage`), which holds the windows, closes the panes and computes
the signals. One process joins the two stages by a direct call
(:class:`~monitor.core.pipeline.Pipeline`, what ``run``, ``replay``, ``tune`` and the
Python API use); replicas through the partials topic.

>>> from monitor.config import config_from_mapping
>>> cfg = config_from_mapping({"models": [{"name": "m", "task": "binary", "positive_class": 1,
...                                        "windows": ["all"]}]})
>>> engine = Engine(cfg)
>>> msgs = [Message("predictions", 0, 0, b"a", b'{"prediction_id": "a", "model": "m", '
...                 b'"ts": 1700000000, "prediction": 1, "label": 1}')]
>>> engine.process(msgs)
[]
>>> engine.partitions[0].counts[0][MATCHED]
1.0

Decoding, checks and the join of a poll's messages are :mod:`monitor.core.fastpath`'s
(the batch path, the only one: it cuts a poll into segments where it must, see
:func:`~monitor.core.fastpath.split_and_join`); the engine holds the state they change,
accumulates what they gathered and moves the clock once per poll.

State is kept per input partition number (join buffers, counters, the offsets they
reflect), so partitions merge by addition and the results do not depend on the order in
which partitions were polled. The watermark is the smallest, over the input partitions
being tracked, of the largest event time seen, less ``allowed_lateness``; stage 1's clock
only expires what waits in the join (``label_ttl``, in event time).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate, chain, pairwise
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt
import structlog

from monitor import native
from monitor.config import (
    ModelConfig,
    MonitorConfig,
)
from monitor.core.baseline import Baseline
from monitor.core.counts import (
    COUNT_NAMES,
    EXPIRED,
    MATCHED,  # noqa: F401  (the module docstring's example reads it)
    ORPHAN_LABELS,
    UNNAMED_COUNTS,
)
from monitor.core.counts import (
    LATE as LATE,  # deltas and model_stage import it from here
)
from monitor.core.fastpath import Chunk, joined, split_and_join
from monitor.core.join import JoinBuffer
from monitor.core.layout import (
    Layout,
    Terms,
    feature_columns,
    feature_terms_many,
    scatter_groups,
)
from monitor.core.model import ModelState, PaneSignals, install_profile
from monitor.core.partials import DeltaLedger
from monitor.core.reference import ReferenceProfile
from monitor.core.report import LABEL_DELAY_BUCKETS, Report
from monitor.events.codec import Limits
from monitor.events.message import Message, MessageBatch, Reject

__all__ = ["Engine", "PartitionSnapshot", "same_time_and_topics"]

F64 = npt.NDArray[np.float64]
_log = structlog.get_logger(__name__)

_DELAY_EDGES = np.array(LABEL_DELAY_BUCKETS)


@dataclass
class PartitionState:
    """Hard state of one input partition number (both topics): exact and additive."""

    join: JoinBuffer
    counts: list[list[float]]  # [model][COUNT_NAMES index]: plain floats, cheap per event
    delay: F64  # (models, buckets + 1) label-delay histogram, last column = +Inf
    delay_sum: F64  # (models,)
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset to read
    max_ts: dict[str, float] = field(default_factory=dict)  # topic -> largest event time
    rejects: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Labels that named no model and left the join without joining, by how they left
    #: (``orphan_labels``, ``early_labels_evicted``): no model's count can hold them.
    unnamed: Counter[str] = field(default_factory=Counter)


@dataclass
class PartitionSnapshot:
    """One partition number's hard state as it leaves an engine, with what is needed to
    install it into another (a replica that takes the partition over): the slice keys its
    pending predictions are numbered by, and the clock it was kept at."""

    number: int
    state: PartitionState
    slice_keys: dict[str, list[tuple[str, str]]]  # model -> registry keys (row order)
    closed_upto: int | None
    watermark: float


#: Events' terms: columns and values, each ``(events, terms)``.
_Terms = tuple[npt.NDArray[np.int64], F64]
#: A set of events' terms: (partition, time, slices, columns, values) columns.
#: Events' terms to scatter: partitions, times, slice ids, columns and values (each a 2-D
#: block, or two side by side: the task's and the features', see :func:`_beside`).
_Set = tuple[npt.NDArray[np.int64], F64, npt.NDArray[np.int64], Any, Any]


class _Sets(NamedTuple):
    """A model's sets of terms of a poll: its predictions', its joined pairs' (None: none)."""

    predictions: _Set | None
    pairs: _Set | None


class _Batch:
    """One model's events of a poll, gathered for accumulation: the batch path's
    :class:`~monitor.core.fastpath.Chunk` columns, each event with its index in the poll."""

    __slots__ = ("chunks_o", "chunks_p")

    def __init__(self) -> None:
        self.chunks_p: list[Chunk] = []
        self.chunks_o: list[Chunk] = []

    def predictions(self, k: int, features: Iterable[str]) -> Chunk | None:
        """The poll's predictions as one chunk (``k`` slice columns), or None; its
        ``feats`` are the columns of ``features`` (but the numeric ones, when the chunks
        hold those in their ``numeric`` block). The chunks stay in the order they were
        taken (per segment, per model and partition): the sums of a (partition, pane) are
        taken in poll order whatever the cuts, and equal to rounding."""
        del k  # the chunks' slice columns are the model's already
        chunks = self.chunks_p
        if not chunks:
            return None
        names = list(features)
        columns = [
            c.feats if isinstance(c.feats, dict) else feature_columns(c.feats or [], names)
            for c in chunks
        ]
        if len(chunks) == 1:
            chunks[0].feats = columns[0]
            return chunks[0]
        # The numeric features' blocks: every chunk's or none (fastpath._feature_columns),
        # its columns then the other features'.
        blocks = [c.numeric for c in chunks if c.numeric is not None]
        numeric = None
        if blocks:
            numeric = (
                np.concatenate([b[0] for b in blocks], axis=1),
                np.concatenate([b[1] for b in blocks], axis=1),
            )
        out = Chunk(
            joined([c.idx for c in chunks]),
            0,
            joined([c.ts for c in chunks]),
            joined([c.pred for c in chunks]),
            joined([c.score for c in chunks]),
            joined([c.slices for c in chunks]),
            feats={n: list(chain.from_iterable(c[n] for c in columns)) for n in columns[0]},
            numeric=numeric,
            prob=[p for c in chunks for p in (c.prob or ())] or None,
        )
        out.part = joined([c.part for c in chunks])
        return out

    def outcomes(self, k: int) -> Chunk | None:
        """The poll's joined pairs as one chunk in poll order (``k`` slice columns), or None."""
        del k  # the chunks' slice columns are the model's already
        chunks = self.chunks_o
        if not chunks:
            return None
        if len(chunks) == 1:
            return chunks[0]
        idx = joined([c.idx for c in chunks])
        order = np.argsort(idx, kind="stable")  # poll order: the detectors see event order
        out = Chunk(
            idx[order],
            0,
            joined([c.ts for c in chunks])[order],
            joined([c.pred for c in chunks])[order],
            joined([c.score for c in chunks])[order],
            joined([c.slices for c in chunks])[order],
            label=joined([c.label for c in chunks if c.label is not None])[order],
            delay=joined([c.delay for c in chunks if c.delay is not None])[order],
        )
        out.part = joined([c.part for c in chunks])[order]
        return out


class Engine:
    """Stage 1 over all configured models; see the module docstring."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.pane = config.time.pane
        self.lateness = config.time.allowed_lateness
        self.models = [ModelState(i, m, self.pane) for i, m in enumerate(config.models)]
        self.by_name = {m.name: m for m in self.models}
        self.partitions: dict[int, PartitionState] = {}
        self.topic_kind = {
            config.kafka.predictions_topic: "predictions",
            config.kafka.labels_topic: "labels",
        }
        self.max_bytes = config.kafka.max_message_bytes
        self.max_future = config.time.max_future
        #: The latest acceptable event time of each message of the poll being processed.
        self._latest: F64 = np.zeros(0)
        self.watermark = -math.inf
        self.closed_upto: int | None = None  # panes below this index are closed
        self.tracked: set[tuple[str, int]] = set()  # input partitions holding the watermark
        self.idle: set[tuple[str, int]] = set()
        self.panes_closed = 0
        self.events = 0
        self.pending_total = [0] * len(self.models)
        self.early_total = 0
        self.early_cap = max(m.max_early_labels for m in config.models)
        #: Signals of a checkpoint's stage 2 not drained when it was written (one
        #: process's :class:`~monitor.core.pipeline.Pipeline` drains them first).
        self.signals_out: list[PaneSignals] = []
        self._batches: list[_Batch] = []  # per model, while a poll is processed
        #: Per partition number, what stage 1 added since its last pane delta: it waits
        #: there until a :class:`~monitor.core.deltas.DeltaBook` takes it.
        self.ledgers: defaultdict[int, DeltaLedger] = self._new_ledgers()
        #: Before the clock started: the first pane any event went to (see
        #: :meth:`close_through`).
        self.first_pane: int | None = None

    @property
    def limits(self) -> Limits:
        """The string length limits of :attr:`config` (``too_long`` rejects), worked out
        once per config (a restored checkpoint is given the running config)."""
        kept = self.__dict__.get("_limits")
        if kept is None or kept[0] is not self.config:
            kept = self.__dict__["_limits"] = (self.config, Limits.of(self.config))
        limits: Limits = kept[1]
        return limits

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_limits", None)  # derived from the config: never in a checkpoint
        state.pop("_task_keys", None)  # derived from the layouts
        return state

    def _task_key(self, layout: Layout) -> tuple[Any, ...] | None:
        """:func:`_task_key` of ``layout``, worked out once per layout object (a model's
        layout is replaced, not changed, when its reference arrives)."""
        keys = self.__dict__.get("_task_keys")
        if keys is None:
            keys = self.__dict__["_task_keys"] = {}
        kept = keys.get(id(layout))
        if kept is None or kept[0] is not layout:
            kept = keys[id(layout)] = (layout, _task_key(layout))
        key: tuple[Any, ...] | None = kept[1]
        return key

    # ------------------------------------------------------------------ partitions
    def partition(self, number: int) -> PartitionState:
        """The state of a partition number, created empty on first use."""
        state = self.partitions.get(number)
        if state is None:
            n = len(self.models)
            state = self.partitions[number] = PartitionState(
                join=JoinBuffer(n),
                counts=[[0.0] * len(COUNT_NAMES) for _ in range(n)],
                delay=np.zeros((n, len(LABEL_DELAY_BUCKETS) + 1)),
                delay_sum=np.zeros(n),
            )
        return state

    def adopt(self, old: Engine) -> dict[str, str]:
        """Take over the state of ``old``, an engine loaded from a checkpoint made under
        another config; ``self`` is a fresh engine for the new config.

        A model whose config (less its alert rules) is unchanged keeps its slice registry
        and, in every partition, its counts, label-delay histogram, pending predictions,
        recently matched ids and the early labels naming it (its stage 2 is kept by the
        caller, its rules' state by :meth:`Alerting.adopt
        <monitor.core.alerting.Alerting.adopt>`). A changed or new model
        starts empty at the checkpoint's offsets; a removed one is dropped. Offsets, event
        times, rejects, the watermark and the clock are carried. Returns
        ``{model: "kept" | "rebuilt" | "added" | "removed"}``.

        Raises ValueError when the pane, the allowed lateness or the input topics differ:
        every window and the pane clock depend on them, so nothing can be kept.
        """
        if not same_time_and_topics(old.config, self.config):
            raise ValueError("[time] or the input topics changed: no state can be kept")
        old_by_name = {m.name: m for m in old.models}
        status: dict[str, str] = {}
        remap: dict[int, int] = {}  # old model index -> new, for kept models
        for model in self.models:
            was = old_by_name.get(model.name)
            if was is None:
                status[model.name] = "added"
            elif _model_shape(was.config) != _model_shape(model.config) or (
                was.layout.width != model.layout.width
            ):
                status[model.name] = "rebuilt"
            else:
                status[model.name] = "kept"
                remap[was.index] = model.index
                model.registry = was.registry
                model.detectors = was.detectors
                model.last_detections = was.last_detections
                self.pending_total[model.index] = old.pending_total[was.index]
        for name in old_by_name:
            status.setdefault(name, "removed")
        for number, was_state in old.partitions.items():
            state = self.partition(number)
            for o, n in remap.items():
                state.counts[n] = list(was_state.counts[o])
                state.delay[n] = was_state.delay[o]
                state.delay_sum[n] = was_state.delay_sum[o]
                state.join.pending[n] = was_state.join.pending[o]
                state.join.matched[n] = was_state.join.matched[o]
            for pid, early in was_state.join.early.items():  # arrival order kept
                if early.model < 0:
                    state.join.early[pid] = early
                elif early.model in remap:
                    state.join.early[pid] = early._replace(model=remap[early.model])
            state.offsets = dict(was_state.offsets)
            state.max_ts = dict(was_state.max_ts)
            state.rejects = Counter(was_state.rejects)
            state.unnamed = Counter(was_state.unnamed)
        self.early_total = sum(len(s.join.early) for s in self.partitions.values())
        self.watermark = old.watermark
        self.closed_upto = old.closed_upto
        self.first_pane = old.first_pane
        self.panes_closed = old.panes_closed
        self.events = old.events
        self.tracked = set(old.tracked)
        self.idle = set(old.idle)
        kept = {self.models[n].name for n in remap.values()}
        self.signals_out = [s for s in old.signals_out if s.model in kept]
        return status

    def export_partition(self, number: int) -> PartitionSnapshot:
        """The hard state of partition ``number`` (both topics) for a per-partition store.

        The snapshot refers to the live state: pickle it (or drop the partition) before
        processing more messages."""
        return PartitionSnapshot(
            number=number,
            state=self.partitions[number],
            slice_keys={m.name: list(m.registry.keys) for m in self.models},
            closed_upto=self.closed_upto,
            watermark=self.watermark,
        )

    def drop_partition(self, number: int) -> PartitionState | None:
        """Forget partition ``number`` (revoked for good): its state, its share of the join
        totals, and its place in the watermark."""
        state = self.partitions.pop(number, None)
        if state is None:
            return None
        for m in range(len(self.models)):
            self.pending_total[m] -= len(state.join.pending[m])
        self.early_total -= len(state.join.early)
        self.tracked = {tp for tp in self.tracked if tp[1] != number}
        self.idle = {tp for tp in self.idle if tp[1] != number}
        return state

    def install_partition(self, snap: PartitionSnapshot) -> None:
        """Take over partition ``snap.number`` from a snapshot (made by any engine with the
        same config), replacing whatever this engine held for it. Its pending predictions
        are renumbered into this engine's slice registry."""
        self.drop_partition(snap.number)
        state = snap.state
        for model in self.models:
            m = model.index
            keys = snap.slice_keys.get(model.name, [("model", "")])
            mapping = np.array([model.registry.lookup(d, v) for d, v in keys], dtype=np.int64)
            if not np.array_equal(mapping, np.arange(len(keys))):
                state.join.pending[m].remap_slices(mapping)
            self.pending_total[m] += len(state.join.pending[m])
        self.early_total += len(state.join.early)
        self.partitions[snap.number] = state

    def offsets(self) -> dict[tuple[str, int], int]:
        """Next offset to read per (topic, partition), as reflected by the state."""
        return {(t, p): o for p, s in self.partitions.items() for t, o in s.offsets.items()}

    def track(self, partitions: Iterable[tuple[str, int]]) -> None:
        """The input partitions that make the watermark (assigned ones in ``run``, every one
        in the capture in ``replay``); each holds it back until it speaks. When none are
        given, every partition seen so far counts."""
        self.tracked = set(partitions)

    def set_idle(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Input partitions that stop holding the watermark back (silent and caught up)."""
        self.idle = set(partitions)

    def _new_ledgers(self) -> defaultdict[int, DeltaLedger]:
        widths = [m.layout.width for m in self.models]
        rates = [
            [math.log(2) / s.seconds for s in m.windows if s.kind == "decay"] for m in self.models
        ]
        return defaultdict(partial(DeltaLedger, self.pane, widths, rates))  # picklable

    # ------------------------------------------------------------------ processing
    def process(self, messages: Sequence[Message]) -> list[Reject]:
        """Decode, join and accumulate one poll batch into each partition's ledger; move
        the clock (expiring what waits in the join past ``label_ttl``).

        Every message is decided by the batch path (:func:`~monitor.core.fastpath.
        split_and_join`), in consecutive segments of the poll; the clock moves once, at
        the poll's end. Returns the rejects (for the dead-letter topic), in poll order.
        """
        batches = self._batches = [_Batch() for _ in self.models]
        batch = MessageBatch.of(messages)
        self.events += len(batch)
        stamps = _floats(batch.timestamps) / 1000.0
        # No timestamp (-1), or 0 as some tools write for none: the wall clock instead.
        self._latest = np.where(stamps > 0, stamps, time.time()) + self.max_future
        for (topic, number), offset in _last_offsets(batch).items():
            self.partition(number).offsets[topic] = offset + 1
        decided = split_and_join(self, batch)
        self._accumulate(batches)
        self._batches = []
        self._advance()
        return decided.rejects

    def batch_of(self, m: int) -> _Batch:
        """The events of model ``m`` gathered so far in the poll being processed."""
        return self._batches[m]

    def latest_times(self, at: npt.NDArray[np.int64]) -> F64:
        """The latest acceptable event time of the poll's messages at indices ``at``: their
        record timestamp (the wall clock when a record has none) plus ``time.max_future``."""
        return self._latest[at]

    # ------------------------------------------------------------------ accumulate
    def _accumulate(self, batches: Sequence[_Batch]) -> None:
        """Add each model's events of the poll (``batches``, one per model) to the ledgers:
        every model's terms (the task's terms of models alike made together, see
        :meth:`_task_terms`), scattered at once (see :meth:`_scatter`), then every model's
        label delays and the errors its detectors wait for."""
        gathered = []
        pairs_of = _outcomes(batches)
        for model, batch, pairs in zip(self.models, batches, pairs_of, strict=True):
            if pairs is None and not batch.chunks_p:
                continue  # (none of its events in the poll: most models', in a trickle)
            k = 2 + len(model.registry.segments)
            gathered.append((model, batch.predictions(k, model.layout.features), pairs))
        task = self._task_terms(gathered)
        features = self._feature_terms(gathered)
        terms: list[tuple[ModelState, _Sets]] = []
        outcomes: list[tuple[ModelState, Chunk]] = []
        for (model, preds, pairs), made, feats in zip(gathered, task, features, strict=True):
            sets = self._terms(model, preds, pairs, [*made, feats])
            if sets.predictions is not None or sets.pairs is not None:
                terms.append((model, sets))
            if pairs is not None:
                outcomes.append((model, pairs))
        self._scatter(terms)
        self._label_delays(outcomes)
        self._buffer_errors([(model, pairs) for model, pairs in outcomes
                             if model.detectors is not None])  # fmt: skip

    def _task_terms(
        self, gathered: Sequence[tuple[ModelState, Chunk | None, Chunk | None]]
    ) -> list[list[_Terms | None]]:
        """Each model's task terms of its predictions and of its joined pairs (None: made
        by :meth:`_terms`, or none): those of models whose layouts give the same terms
        (:func:`_task_key`) in one :meth:`~monitor.core.layout.Layout.prediction_terms` and
        one :meth:`~monitor.core.layout.Layout.outcome_terms` call over all their events,
        cut back per model (each event's terms depend on that event alone: the same
        values as the model's own call), not one call per model."""
        made: list[list[_Terms | None]] = [[None, None] for _ in gathered]
        alike: dict[Any, list[int]] = {}
        for i, (model, preds, _) in enumerate(gathered):
            key = self._task_key(model.layout)
            if key is not None and not (preds is not None and preds.prob):
                alike.setdefault(key, []).append(i)
        sides: list[list[Chunk | None]] = [[g[1] for g in gathered], [g[2] for g in gathered]]
        for members in alike.values():
            if len(members) < 2:
                continue
            layout = gathered[members[0]][0].layout
            for kind, side in enumerate(sides):  # the predictions', then the joined pairs'
                chosen = [(i, c) for i in members if (c := side[i]) is not None]
                if len(chosen) < 2:
                    continue
                pred = joined([c.pred for _, c in chosen])
                score = joined([c.score for _, c in chosen])
                if kind == 0:
                    cols, vals = layout.prediction_terms(pred, score)
                else:
                    labels = [c.label for _, c in chosen if c.label is not None]  # (every one)
                    cols, vals = layout.outcome_terms(pred, score, joined(labels))
                a = 0
                for i, c in chosen:
                    b = a + len(c.pred)
                    made[i][kind] = (cols[a:b], vals[a:b])
                    a = b
        return made

    def _feature_terms(
        self, gathered: Sequence[tuple[ModelState, Chunk | None, Chunk | None]]
    ) -> list[_Terms | None]:
        """Each model's feature terms of its predictions (None: made by :meth:`_terms`):
        those of models whose layouts have one :meth:`~monitor.core.layout.Layout.
        numeric_shape`, every prediction of theirs past the warmup profile's panes, made
        by one :func:`~monitor.core.layout.feature_terms_many` call (each event's terms
        depend on that event and its model's reference alone: the same values as the
        model's own call)."""
        made: list[_Terms | None] = [None] * len(gathered)
        shapes: list[tuple[int, Any]] = []  # (model's place, its numeric shape)
        for i, (model, preds, _) in enumerate(gathered):
            if preds is None or preds.numeric is None or not model.layout.features:
                continue
            shape = model.layout.numeric_shape()
            if shape is not None:
                shapes.append((i, shape))
        if not shapes:
            return made
        # each candidate's earliest event time, every model's at once (a minimum is exact)
        times = [cast(Chunk, gathered[i][1]).ts for i, _ in shapes]
        firsts = np.minimum.reduceat(
            joined(times), list(accumulate((len(t) for t in times[:-1]), initial=0))
        ).tolist() if all(len(t) for t in times) else [float(t.min()) for t in times]
        alike: dict[Any, list[int]] = {}
        for (i, shape), first in zip(shapes, firsts, strict=True):
            model = gathered[i][0]
            if model.profile_pane is not None and not (
                math.floor(float(first) / self.pane) > model.profile_pane
            ):  # some of its events are the profile's own: its call leaves them out
                continue
            alike.setdefault(shape, []).append(i)
        for members in alike.values():
            if len(members) < 2:
                continue
            chosen = [gathered[i] for i in members]
            done = feature_terms_many([g[0].layout for g in chosen],
                                      [g[1].numeric for g in chosen if g[1] is not None
                                       and g[1].numeric is not None])  # fmt: skip
            if done is not None:
                for i, one in zip(members, done, strict=True):
                    made[i] = one
        return made

    def _terms(self, model: ModelState, preds: Chunk | None, pairs: Chunk | None,
               made: Sequence[_Terms | None]) -> _Sets:  # fmt: skip
        """A model's terms of the poll: its predictions' (``preds``) and its joined pairs'
        (``pairs``); ``made``, the task's terms of each and the predictions' feature terms
        made with other models' (None: made here)."""
        layout = model.layout
        predictions: _Set | None = None
        paired: _Set | None = None
        if preds is not None:
            if made[0] is not None:
                cols, vals = made[0]
            else:
                probs = np.asarray(preds.prob) if preds.prob else None
                cols, vals = layout.prediction_terms(preds.pred, preds.score, probs)
            if layout.features:
                if made[2] is not None:
                    f_cols, f_vals = made[2]
                else:
                    use = None
                    if model.profile_pane is not None:
                        use = np.floor(preds.ts / self.pane) > model.profile_pane
                    columns = preds.feats if isinstance(preds.feats, dict) else None
                    f_cols, f_vals = layout.feature_terms(
                        None, use, columns=columns, numeric=preds.numeric
                    )
                # side by side, put together with the other models' (_scatter_shape)
                predictions = (preds.part, preds.ts, preds.slices, (cols, f_cols), (vals, f_vals))
            else:
                predictions = (preds.part, preds.ts, preds.slices, cols, vals)
        if pairs is not None:
            assert pairs.label is not None and pairs.delay is not None
            if made[1] is not None:
                cols, vals = made[1]
            else:
                cols, vals = layout.outcome_terms(pairs.pred, pairs.score, pairs.label)
            paired = (pairs.part, pairs.ts, pairs.slices, cols, vals)
        return _Sets(predictions, paired)

    def _buffer_errors(self, outcomes: Sequence[tuple[ModelState, Chunk]]) -> None:
        """Keep the poll's errors of the models' joined pairs (``outcomes``: the models
        with detectors) per (model, pane, partition) in the ledgers for the detectors
        (stage 2 decides what is on time, and feeds them): every model's at once, a
        group's errors in their order."""
        if not outcomes:
            return
        ts = joined([p.ts for _, p in outcomes])
        if not len(ts):
            return
        part = joined([p.part for _, p in outcomes])
        kind = outcomes[0][0].layout.kind
        if all(m.layout.kind is kind for m, _ in outcomes):  # one task: one call
            labels = [p.label for _, p in outcomes if p.label is not None]  # (every pair's)
            err = kind.errors(joined([p.pred for _, p in outcomes]), joined(labels))
        else:
            err = joined([m.layout.kind.errors(p.pred, p.label) for m, p in outcomes
                           if p.label is not None])  # fmt: skip
        slot = np.repeat(np.arange(len(outcomes)), [len(p.ts) for _, p in outcomes])
        pane = np.floor(ts / self.pane).astype(np.int64)
        low = int(pane.min())
        panes = int(pane.max()) - low + 1
        # a partition's groups one after the other (then by model slot, then pane)
        slots = len(outcomes)
        keys, order, bounds = _group_bounds((part * slots + slot) * panes + (pane - low),
                                            (int(part.max()) + 1) * slots * panes)
        ts_l, err_l = ts[order].tolist(), err[order].tolist()
        ts_g = [ts_l[a:b] for a, b in pairwise(bounds)]
        err_g = [err_l[a:b] for a, b in pairwise(bounds)]
        rest, at = np.divmod(np.asarray(keys, dtype=np.int64), panes)
        number_of, slot_of = np.divmod(rest, slots)
        numbers_l, runs = _runs(number_of)
        index = np.array([model.index for model, _ in outcomes], dtype=np.int64)
        m_l, pane_l = index[slot_of].tolist(), (at + low).tolist()
        ledgers = self.ledgers
        for number, a, b in zip(numbers_l, runs, runs[1:], strict=False):  # (runs: one more)
            ledgers[number].add_errors_many(m_l[a:b], pane_l[a:b], ts_g[a:b], err_g[a:b])

    def _label_delays(self, outcomes: Sequence[tuple[ModelState, Chunk]]) -> None:
        """Add the poll's label delays of the models' joined pairs (seconds, negative ones
        as 0) to each partition's histograms: every model's at once."""
        if not outcomes:
            return
        part = joined([p.part for _, p in outcomes])
        if not len(part):
            return
        delay = np.maximum(joined([p.delay for _, p in outcomes]), 0.0)
        model = np.repeat([m.index for m, _ in outcomes], [len(p.part) for _, p in outcomes])
        span = int(part.max()) + 1
        buckets = len(_DELAY_EDGES) + 1
        keys, order, bounds = _group_bounds(model * span + part, len(self.models) * span)
        ordered = delay[order]  # a group's delays in their order, one after the other
        bucket = np.searchsorted(_DELAY_EDGES, ordered)
        group = np.repeat(np.arange(len(keys)), np.diff(bounds))
        counts = np.bincount(group * buckets + bucket, minlength=len(keys) * buckets).reshape(
            len(keys), buckets
        )
        sums = _group_sums(ordered, bounds)
        # each group's (model, partition), the groups of a partition together (keys
        # ascending: a model's partitions in order, one group each)
        by_number: dict[int, list[int]] = {}
        for g, key in enumerate(keys):
            by_number.setdefault(key % span, []).append(g)
        partitions = self.partitions
        for number in sorted(by_number):
            at = by_number[number]
            state = partitions[number]
            if len(at) == 1:  # (one model: a row each)
                g = at[0]
                m = keys[g] // span
                state.delay[m] += counts[g]
                state.delay_sum[m] += sums[g]
                continue
            m_at = [keys[g] // span for g in at]
            state.delay[m_at] += counts[at]
            state.delay_sum[m_at] += sums[at]

    def _scatter(self, items: Sequence[tuple[ModelState, _Sets]]) -> None:
        """Events' terms go to their partition's ledger, pane by pane, whatever the clock
        (stage 2 decides what is late): each model's predictions' sums, then its pairs'
        added to them, in each pane. Models of one shape (row width, decay rates, slice
        columns) are scattered by one :func:`~monitor.core.layout.scatter_panes` call, a
        (model, partition, pane) group each: a poll of many models pays its fixed costs
        once, not once per model."""
        shapes: dict[tuple[int, tuple[float, ...], int], list[tuple[ModelState, _Sets]]] = {}
        for model, sets in items:
            rates = tuple(math.log(2) / s.seconds for s in model.windows if s.kind == "decay")
            one = sets.predictions if sets.predictions is not None else sets.pairs
            assert one is not None
            shapes.setdefault((model.layout.width, rates, one[2].shape[1]), []).append(
                (model, sets)
            )
        for (width, rates, _), group in shapes.items():
            self._scatter_shape(width, list(rates), group)

    def _scatter_shape(
        self, width: int, rates: list[float], items: Sequence[tuple[ModelState, _Sets]]
    ) -> None:
        """:meth:`_scatter` of models of one shape."""
        # (kind, terms) -> [(model slot, set)]: the predictions' sets first; sets of one
        # kind and width of terms go together (a model's are in one of them).
        kinds: dict[tuple[int, int], list[tuple[int, _Set]]] = {}
        for slot, (_, sets) in enumerate(items):
            for kind, one in enumerate(sets):
                if one is not None:
                    kinds.setdefault((kind, _width(one[3])), []).append((slot, one))
        order = sorted(kinds, key=lambda key: key[0])
        parts = [[one for _, one in kinds[key]] for key in order]
        slots = [np.repeat([slot for slot, _ in kinds[key]], [len(one[1]) for _, one in
                           kinds[key]]) for key in order]  # fmt: skip
        ts = [joined([one[1] for one in chosen]) for chosen in parts]
        panes = [np.floor(t / self.pane).astype(np.int64) for t in ts]
        low = min(int(p.min()) for p in panes)
        high = max(int(p.max()) for p in panes)
        if self.closed_upto is None:
            first = self.first_pane
            self.first_pane = low if first is None else min(first, low)
        span = high - low + 1
        numbers = [joined([one[0] for one in chosen]) for chosen in parts]
        count = max(int(n.max()) for n in numbers) + 1
        # Every (model, partition, pane) group's sums at once (bit for bit what
        # DeltaLedger.add adds group by group: a group's events stay in their order).
        # (a partition's groups one after the other, a model's in pane order within them)
        keys = [(n * len(items) + s) * span + (p - low)
                for s, n, p in zip(slots, numbers, panes, strict=True)]  # fmt: skip
        uniq, group = _distinct(joined(keys), len(items) * count * span)
        cuts = np.cumsum([len(k) for k in keys])[:-1]
        terms = []
        for ids, chosen, t in zip(np.split(group, cuts), parts, ts, strict=True):
            slices = joined([one[2] for one in chosen])
            cols, vals = _beside([one[3] for one in chosen]), _beside([one[4] for one in chosen])
            terms.append(Terms(ids, slices, cols, vals, t))
        rows = max(len(model.registry.keys) for model, _ in items)
        group_panes = uniq % span + low
        blocks = scatter_groups((rows, width), rates, self.pane, group_panes, terms)
        # each partition's groups to its ledger in one call
        number_of, slot_of = np.divmod(uniq // span, len(items))
        numbers_l, bounds = _runs(number_of)
        models = np.array([model.index for model, _ in items], dtype=np.int64)
        m_l, pane_l = models[slot_of].tolist(), group_panes.tolist()
        ledgers = self.ledgers
        b_rows, b_cols, b_plain, b_decay = blocks
        for number, a, b in zip(numbers_l, bounds, bounds[1:], strict=False):  # (bounds: one more)
            ledgers[number].add_sums_many(m_l[a:b], pane_l[a:b], b_rows[a:b], b_cols[a:b],
                                          b_plain[a:b], b_decay[a:b])  # fmt: skip

    # ------------------------------------------------------------------ time
    def _watermark(self) -> float:
        highs: dict[tuple[str, int], float] = {tp: -math.inf for tp in self.tracked}
        for number, state in self.partitions.items():
            for topic, ts in state.max_ts.items():
                if not self.tracked or (topic, number) in self.tracked:
                    highs[(topic, number)] = ts
        live = [ts for tp, ts in highs.items() if tp not in self.idle]
        if not highs:
            return -math.inf
        return (min(live) if live else max(highs.values())) - self.lateness

    def _advance(self) -> None:
        mark = self._watermark()
        if mark > self.watermark:
            self.watermark = mark
        if not math.isfinite(self.watermark):
            return
        self.close_through(math.floor(self.watermark / self.pane))

    def close_through(self, upto: int) -> None:
        """The panes below ``upto`` are past: the join's entries older than their end less
        ``label_ttl`` expire. The clock starts at the first pane any event went to (before
        that, nothing waits), and expiring once at the last pane's end takes what expiring
        at each pane's end would."""
        if self.closed_upto is None:
            first = self.first_pane
            if first is None:
                return
            self.closed_upto = min(first, upto)
            self.first_pane = None
        if upto <= self.closed_upto:
            return
        self.panes_closed += upto - self.closed_upto
        self.closed_upto = upto
        self._expire(upto * self.pane)

    def _expire(self, now: float) -> None:
        # each model's bound (in model order), and the early labels' (the longest TTL)
        befores = [(model.index, now - model.config.label_ttl) for model in self.models]
        ttl = max(m.config.label_ttl for m in self.models)
        for state in self.partitions.values():
            join = state.join
            for m, before in befores:
                gone = join.pending[m].expire(before)
                if gone:
                    state.counts[m][EXPIRED] += gone
                    self.pending_total[m] -= gone
                matched = join.matched[m]
                if matched.front_ts < before:  # else none is due
                    matched.expire(before)
            for label in JoinBuffer.expire(join.early, now - ttl):
                self.early_total -= 1
                if label.model >= 0:
                    state.counts[label.model][ORPHAN_LABELS] += 1
                else:
                    state.unnamed["orphan_labels"] += 1

    # ------------------------------------------------------------------ warmup reference
    def _install_profile(self, model: ModelState, profile: ReferenceProfile, pane: int,
                         baseline: Baseline | None = None) -> None:  # fmt: skip
        """Use a warmup ``profile`` the model's stage 2 built from the panes through
        ``pane``: later predictions are histogrammed here, not sent raw."""
        install_profile(model, profile, pane, baseline)
        _log.info(
            "warmup_profile_learnt",
            model=model.name,
            predictions=profile.rows,
            last_pane_end=(pane + 1) * self.pane,
        )

    def learn_profile(self, name: str, profile: ReferenceProfile | None, pane: int,
                      baseline: Baseline | None = None) -> bool:  # fmt: skip
        """Stage 1 of replicas: take the warmup ``profile`` the model's stage 2 built from
        the panes through ``pane`` (with its ``baseline``); from now on this engine
        histograms the model's predictions itself instead of sending them raw. None: the
        warmup failed, nothing is sent for it any more. False when it knew already."""
        model = self.by_name[name]
        if not model.warmup_target:
            return False
        if profile is None:
            model.warmup_target = 0
            model.warmup_rows = []
            _log.info("warmup_failure_learnt", model=name)
            return True
        self._install_profile(model, profile, pane, baseline)
        return True

    def drain_signals(self) -> list[PaneSignals]:
        """The signals a checkpoint held undrained (see :attr:`signals_out`), once."""
        out, self.signals_out = self.signals_out, []
        return out

    # ------------------------------------------------------------------ reports
    def report(self) -> Report:
        """Stage 1's own figures (clock, events, rejects): the models' come from their
        stage 2."""
        report = Report(
            watermark=self.watermark, panes_closed=self.panes_closed, events=self.events
        )
        for state in self.partitions.values():
            for key, n in state.rejects.items():
                report.rejects[key] = report.rejects.get(key, 0) + n
        report.unnamed = self.unnamed_labels()
        return report

    def unnamed_labels(self) -> dict[str, float]:
        """Labels that named no model and left the join without joining, by how they
        left (:data:`~monitor.core.counts.UNNAMED_COUNTS`), over the partitions held."""
        out = dict.fromkeys(UNNAMED_COUNTS, 0.0)
        for state in self.partitions.values():
            for name, n in state.unnamed.items():
                out[name] += n
        return out

    def summary(self) -> dict[str, Any]:
        """Stage 1's part of ``summary.json`` over the partitions it holds: each model's
        counts (what waits in the join included) and the rejects by reason. The models'
        windows and metrics are their stage 2's."""
        models: dict[str, Any] = {}
        for model in self.models:
            m = model.index
            counts = {name: 0.0 for name in COUNT_NAMES}
            for state in self.partitions.values():
                for name, n in zip(COUNT_NAMES, state.counts[m], strict=True):
                    counts[name] += n
            counts["pending"] = float(sum(len(s.join.pending[m]) for s in self.partitions.values()))
            counts["early_labels_pending"] = float(sum(
                1 for s in self.partitions.values() for e in s.join.early.values()
                if e.model in (-1, m)
            ))  # fmt: skip
            models[model.name] = {"counts": counts}
        rejects: Counter[str] = Counter()
        for state in self.partitions.values():
            for (_topic, reason), n in state.rejects.items():
                rejects[reason] += n
        return {"models": models, "rejects": dict(sorted(rejects.items())),
                "unnamed_labels": self.unnamed_labels()}  # fmt: skip


def _outcomes(batches: Sequence[_Batch]) -> list[Chunk | None]:
    """Each model's :meth:`_Batch.outcomes`: the models whose pairs of the poll are in
    several chunks (a segment's plain predictions joined by their label message, others
    joining predictions that waited) put in poll order by one sort of all of them (per
    width of slice ids), each model's pairs in the order its own call gives them."""
    out: list[Chunk | None] = [None] * len(batches)
    widths: dict[int, list[int]] = {}
    for i, batch in enumerate(batches):
        chunks = batch.chunks_o
        if len(chunks) == 1:
            out[i] = chunks[0]
        elif chunks:
            widths.setdefault(chunks[0].slices.shape[1], []).append(i)
    for members in widths.values():
        if len(members) == 1:
            out[members[0]] = batches[members[0]].outcomes(0)
            continue
        chunks = [c for i in members for c in batches[i].chunks_o]
        sizes = [sum(len(c.idx) for c in batches[i].chunks_o) for i in members]
        idx = joined([c.idx for c in chunks])
        slot = np.repeat(np.arange(len(members), dtype=np.int64), sizes)
        # poll order within each model (the detectors see event order), stably
        order = np.argsort(slot * (int(idx.max()) + 1) + idx, kind="stable")
        ts, pred, score, slices, part = (
            joined([getattr(c, name) for c in chunks])[order]
            for name in ("ts", "pred", "score", "slices", "part")
        )
        label = joined([c.label for c in chunks if c.label is not None])[order]
        delay = joined([c.delay for c in chunks if c.delay is not None])[order]
        idx = idx[order]
        a = 0
        for i, n in zip(members, sizes, strict=True):
            b = a + n
            out[i] = Chunk(idx[a:b], part[a:b], ts[a:b], pred[a:b], score[a:b], slices[a:b],
                           label=label[a:b], delay=delay[a:b])  # fmt: skip
            a = b
    return out


def _width(block: Any) -> int:
    """Columns of a :data:`_Set`'s terms (a 2-D block, or two side by side)."""
    if isinstance(block, tuple):
        return int(block[0].shape[1] + block[1].shape[1])
    return int(block.shape[1])


def _beside(blocks: list[Any]) -> Any:
    """Terms of several sets end to end (rows), each a 2-D block or two side by side (the
    task's and the features'): the same array as each set's blocks put side by side and
    the sets' stacked, in one copy by the compiled ``join_rows`` when :mod:`monitor.native`
    runs, else with two copies of all the terms for sets of many models (each side
    stacked, then the sides put together) instead of a pair of copies per set."""
    kernels = native.kernels()
    if kernels is not None and (len(blocks) > 1 or type(blocks[0]) is tuple):
        out = kernels.join_rows(blocks, np.empty)
        if out is not None:
            return out
    if all(type(b) is tuple for b in blocks) and len({b[0].shape[1] for b in blocks}) == 1:
        return np.concatenate([joined([b[0] for b in blocks]), joined([b[1] for b in blocks])],
                              axis=1)  # fmt: skip
    return joined([np.concatenate(b, axis=1) if type(b) is tuple else b for b in blocks])


def _last_offsets(batch: MessageBatch) -> dict[tuple[str, int], int]:
    """The offset of the last message of each (topic, partition) of ``batch``, the pairs in
    order of first appearance (partitions are created in that order)."""
    offsets = batch.offsets
    return {pair: offsets[i] for pair, i in batch.last_rows().items()}


def _task_key(layout: Layout) -> tuple[Any, ...] | None:
    """What a layout's task terms (:meth:`~monitor.core.layout.Layout.prediction_terms`
    and :meth:`~monitor.core.layout.Layout.outcome_terms`) depend on: a task is stateless,
    and its terms read the layout's classes, score bins and task columns (which come
    first); layouts with equal keys give every event the same terms. None when they read
    more: class probabilities (calibrated by the model's baseline) or a regression
    reference's output histograms (``layout.outputs``)."""
    kind = layout.kind
    if kind.uses_probabilities or layout.outputs:
        return None
    names = [f if isinstance(f, str) else f[0] for f in kind.columns(layout.n_classes, layout.bins)]
    return (kind, layout.n_classes, layout.bins, tuple(layout.fields[n] for n in names))


#: The most keys :func:`_distinct` marks in a table rather than sorts.
_DENSE_KEYS = 1 << 20


def _distinct(key: npt.NDArray[np.int64], space: int
              ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:  # fmt: skip
    """``np.unique(key, return_inverse=True)`` of keys in ``range(space)``: the distinct
    keys ascending, and each key's position among them. Where the space is small (the
    (model, partition, pane) groups of a poll), marked in a table of it and counted, not
    sorted."""
    if space > _DENSE_KEYS:
        uniq, inverse = np.unique(key, return_inverse=True)
        return uniq, inverse
    present = np.zeros(space, dtype=np.bool_)
    present[key] = True
    position = np.cumsum(present, dtype=np.intp)
    position -= 1
    return np.flatnonzero(present), position[key]


def _group_sums(values: F64, bounds: list[int]) -> F64:
    """Each group's sum of ``values`` (group ``g``: ``values[bounds[g]:bounds[g + 1]]``) as
    the model's own pairs summed it (the same values in order): ``np.add.reduce`` of each
    (what ``sum()`` calls, without its Python-level wrapper), by one compiled loop that
    sums as numpy does (bit for bit) when :mod:`monitor.native` runs, else group by group
    (a poll of many models has hundreds of (model, partition) groups)."""
    kernels = native.kernels()
    if kernels is not None:
        out: F64 = np.empty(len(bounds) - 1, dtype=np.float64)
        kernels.group_sums(np.ascontiguousarray(values, dtype=np.float64), bounds, out)
        return out
    total = np.add.reduce
    return np.array([total(values[a:b]) for a, b in pairwise(bounds)], dtype=np.float64)


def _floats(values: list[int]) -> F64:
    """``values`` (ints or floats) as float64, as ``np.array(values, dtype=np.float64)``
    makes them: by the compiled kernel, one C loop with no type discovery (a poll's record
    timestamps), or numpy where it declines (another type, an int beyond a float)."""
    kernels = native.kernels()
    if kernels is not None and type(values) is list:
        out: F64 = np.empty(len(values), dtype=np.float64)
        if kernels.as_floats(values, out):
            return out
    return np.array(values, dtype=np.float64)


def _group_bounds(key: npt.NDArray[np.int64], space: int
                  ) -> tuple[list[int], npt.NDArray[np.intp], list[int]]:  # fmt: skip
    """The distinct keys (ascending), the positions that sort ``key`` (stably: a key's
    positions stay in their order) and where each key's run starts in that order, then
    the end: one sort instead of a mask over the whole batch per key (a poll of a sparse
    stream spans hundreds of panes, of many models hundreds of groups). Keys in
    ``range(space)`` of at most 16 bits are sorted as the narrowest unsigned integers that
    hold them: numpy's stable sort of those is a radix sort, not the comparisons of its
    timsort (keys of many models' groups come in no order), and a stable sort's order is
    one whatever the algorithm."""
    if space <= 1 << 16:
        order = np.argsort(key.astype(np.uint8 if space <= 1 << 8 else np.uint16), kind="stable")
    else:
        order = np.argsort(key, kind="stable")
    keys, bounds = _runs(key[order])
    return keys, order, bounds


def _runs(key: npt.NDArray[np.int64]) -> tuple[list[int], list[int]]:
    """The runs of equal keys of ``key`` (sorted, not empty): each run's key, and where
    each run starts, then the end.

    >>> _runs(np.array([3, 3, 5, 8, 8, 8]))
    ([3, 5, 8], [0, 2, 3, 6])
    """
    cuts = np.flatnonzero(key[1:] != key[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(key)]
    return key[bounds[:-1]].tolist(), bounds


def _model_shape(model: ModelConfig) -> Any:
    """What a model's state depends on: its config less the alert rules."""
    return model.model_dump(mode="json", exclude={"alerts"})


def same_time_and_topics(a: MonitorConfig, b: MonitorConfig) -> bool:
    """Whether two configs agree on the pane, the allowed lateness and the input topics,
    which every window and the pane clock depend on (``idle_timeout`` does not matter)."""
    return (a.time.pane, a.time.allowed_lateness) == (b.time.pane, b.time.allowed_lateness) and (
        a.kafka.predictions_topic,
        a.kafka.labels_topic,
    ) == (b.kafka.predictions_topic, b.kafka.labels_topic)
