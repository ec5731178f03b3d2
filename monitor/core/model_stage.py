"""Stage 2: one model's windows, clock, signals and detectors, fed by the pane deltas
(:mod:`monitor.core.partials`) of every input partition. Its signals go to the model's
alert rules (:class:`~monitor.core.alerting.Alerting`) wherever it is drained.

Exactly one process owns a model's stage 2 at a time: in one process it is fed by a
direct call (:class:`~monitor.core.pipeline.Pipeline`), with replicas through the partials
topic (:mod:`monitor.replicas`). It merges the deltas of all input partitions, wherever
stage 1 ran them, so the model's numbers do not depend on how the partitions are spread
over processes:

- **Windows.** One :class:`~monitor.core.windows.WindowSet` for the whole model. A delta
  for an open pane adds to it; one for a closed pane is merged where the pane still counts
  (``all``, the sliding windows that hold it, decay windows at its exact weight) and is
  counted as late. What was emitted stays as it was.
- **Clock.** The watermark is the smallest, over every partition of both input topics, of
  the largest event time that partition's deltas reported, less ``allowed_lateness``; a
  partition reported idle (caught up and silent) stops holding it back, and one never
  heard of holds it back until :attr:`ModelStage.release` lets it go (``run`` does so after
  ``time.unassigned_timeout``). It never moves back.
- **Exact through crashes.** Each partition's deltas form a chain (``base`` = the previous
  ``end``). A delta whose ``base`` is an earlier point of the chain (stage 1 restarted from
  its checkpoint) first undoes what was applied after that point; one that fits nowhere
  is dropped and counted. Stage 1 re-reads the same input, so the chain that follows
  re-adds the same sums: nothing counts twice and nothing is lost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import structlog

from monitor import native
from monitor.catalogue import ALWAYS_COMPUTED, base_metric
from monitor.config import MonitorConfig
from monitor.core.counts import COUNT_NAMES, LATE
from monitor.core.layout import Terms, scatter_pane, scatter_panes
from monitor.core.model import (
    ModelState,
    PaneSignals,
    install_profile,
    pane_signals,
    slice_counters,
    take_errors,
    take_errors_each,
    warmup_profile,
)
from monitor.core.panemetrics import PanePlan, WindowValues, plan_for, stacked_plan
from monitor.core.partials import (
    HandedPaneDelta,
    ModelDelta,
    PaneDelta,
    PartitionDelta,
    WarmRow,
)
from monitor.core.report import LABEL_DELAY_BUCKETS, ModelReport, SliceReport
from monitor.core.warmup_buffer import WarmChunk, concat, drop_last
from monitor.core.windows import QUEUED_MAX, RowMerges, WindowSet, pad_rows

if TYPE_CHECKING:
    from monitor.core.deltas import QuietParts

__all__ = ["ModelStage", "flush_together", "hand_over"]

F64 = npt.NDArray[np.float64]
_log = structlog.get_logger(__name__)


def _index(rows: list[int]) -> npt.NDArray[np.int64] | slice:
    """Distinct slice rows as an index: a slice where they follow one another (a view of
    an array: no gather and scatter), else an array of them."""
    if rows and rows[-1] - rows[0] == len(rows) - 1 and rows == list(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return np.array(rows, dtype=np.int64)


class _Piece:
    """One pane of one applied delta, in this stage's rows, kept to undo it: its sums as
    ``(slices, width)`` arrays ``plain`` and ``decay`` (made when read), held as the
    delta's blocks of the distinct slice rows ``rows`` (an index: an array or a slice)
    when it came with them, and of the distinct columns ``cols`` (ascending) of a model
    ``width`` wide when it came with them (the other cells of its rows are zero)."""

    __slots__ = ("_decay", "_plain", "cols", "errors", "pane", "rows", "slices", "warm", "width")

    def __init__(self, pane: int, plain: F64, decay: list[F64], errors: int,
                 warm: WarmChunk | None = None,
                 rows: npt.NDArray[np.int64] | slice | None = None,
                 slices: int = 0, cols: npt.NDArray[np.int64] | None = None,
                 width: int = 0) -> None:  # fmt: skip
        self.pane = pane
        self._plain = plain
        self._decay = decay
        self.errors = errors  # errors appended to the pane's buffer (0: the pane had closed)
        #: Raw predictions appended to the pane's warmup buffer (those histogrammed on
        #: arrival are in ``plain`` and ``decay``; those too late for the warmup, nowhere).
        self.warm = warm
        self.rows = rows  # None: ``plain`` and ``decay`` are whole arrays
        self.slices = slices  # the stage's slice rows when it was applied (with ``rows``)
        self.cols = cols  # None: blocks of every column
        self.width = width

    def _wide(self, block: F64) -> F64:
        """A block of the piece's rows, of every column."""
        if self.cols is None:
            return block
        out = np.zeros((block.shape[0], self.width))
        out[:, self.cols] = block
        return out

    def _whole(self, block: F64) -> F64:
        block = self._wide(block)
        if self.rows is None:
            return block
        out = np.zeros((self.slices, block.shape[1]))
        out[self.rows] = block
        return out

    @property
    def plain(self) -> F64:
        """The plain sums, ``(slices, width)``."""
        return self._whole(self._plain)

    @property
    def decay(self) -> list[F64]:
        """The sums of each decay window, ``(slices, width)``."""
        return [self._whole(d) for d in self._decay]

    def add(self, plain: F64, decay: list[F64]) -> None:
        """Add whole ``(slices, width)`` sums to the piece's."""
        self._plain = self.plain + plain
        self._decay = [d + h for d, h in zip(self.decay, decay, strict=True)]
        self.rows = None
        self.cols = None

    def blocks(self) -> tuple[F64, list[F64]]:
        """The plain and decay sums as held (of ``rows`` only, when it is given), of every
        column."""
        return self._wide(self._plain), [self._wide(d) for d in self._decay]


#: An applied delta's counts and label delays when it has no part for the model: never
#: written to (an undo subtracts them), so one array serves every such delta.
_NO_COUNTS = np.zeros(len(COUNT_NAMES))
_NO_DELAY = np.zeros(len(LABEL_DELAY_BUCKETS) + 1)
_NO_COUNTS.flags.writeable = False
_NO_DELAY.flags.writeable = False


@dataclass
class _Applied:
    base: dict[str, int]
    end: dict[str, int]
    progress_before: dict[str, float]
    idle_before: frozenset[str]
    pieces: list[_Piece]
    counts: F64
    delay: F64
    delay_sum: float
    waiting_before: tuple[int, int] | None  # (pending, early) of the partition before


def _nothing(applied: _Applied) -> bool:
    """Whether ``applied`` added nothing (no piece, counter or delay)."""
    return not (applied.pieces or applied.delay_sum or applied.counts.any()
                or applied.delay.any())  # fmt: skip


@dataclass
class _Chain:
    """Where a partition's chain of deltas stands, and what to undo on a restart."""

    end: dict[str, int] = field(default_factory=dict)
    history: list[_Applied] = field(default_factory=list)  # since the confirmed checkpoint
    session: str | None = None
    seq: int = 0
    retired: set[str] = field(default_factory=set)  # older sessions: their deltas are stale


#: The most panes whose signals one stacked computation takes (see
#: :meth:`ModelStage.close_through`), and the most values of window sums they hold (2 MiB
#: of them): a backlog's memory stays bounded and the arrays of one computation stay in
#: the processor's cache (larger batches measured slower).
BATCH_PANES = 64
BATCH_FLOATS = 1 << 18


#: An empty batch's sums (never written to: :meth:`ModelStage._start` makes a batch's own).
_NO_SUMS = np.empty((0, 0))
_NO_SUMS.flags.writeable = False


@dataclass
class _Batch:
    """Closed panes whose signals are not computed yet, their window sums stacked as
    :meth:`ModelStage._pane_stack` stacks them: the whole-model row of every window of
    each pane, then (``last``) the slice rows of the last pane of the call, the only pane
    whose slice values anything reads (``model.last``, for reports). ``count``: each stacked
    row's joined events where the task needs them (a decay window's are its closed
    counts); ``seen``: the predictions seen when each pane closed."""

    panes: list[int] = field(default_factory=list)
    size: int = 0  # the most panes it takes
    sums: F64 = field(default_factory=lambda: _NO_SUMS)  # (size * windows + tail, width)
    count: F64 | None = None  # (size * windows + tail,)
    last: bool = False  # the slice rows of its last pane follow the whole-model rows
    seen: list[float] = field(default_factory=list)


class ModelStage:
    """Stage 2 of model ``name``: see the module docstring.

    ``partitions`` is the number of partitions of each input topic (co-partitioned)."""

    def __init__(self, config: MonitorConfig, name: str, partitions: int) -> None:
        index = next(i for i, m in enumerate(config.models) if m.name == name)
        self.config = config
        self.name = name
        self.pane = config.time.pane
        self.lateness = config.time.allowed_lateness
        self.topics = (config.kafka.predictions_topic, config.kafka.labels_topic)
        self.model = ModelState(index, config.models[index], self.pane)
        self.windows: WindowSet = self.model.new_windows()
        self.partitions = partitions
        self.progress: dict[int, dict[str, float]] = {}
        self.idle: dict[int, frozenset[str]] = {}
        self.released: set[int] = set()
        self.chains: dict[int, _Chain] = {}
        self.watermark = -math.inf
        self.closed_upto: int | None = None
        self.panes_closed = 0
        self.error_panes: dict[int, dict[int, tuple[list[float], list[float]]]] = {}
        #: pane -> partition -> predictions sent raw for the warmup reference, waiting for
        #: their pane to close (a chunk of columns per delta, in input order)
        self.warm: dict[int, dict[int, list[WarmChunk]]] = {}
        self.counts = np.zeros(len(COUNT_NAMES))
        self.delay = np.zeros(len(LABEL_DELAY_BUCKETS) + 1)
        self.delay_sum = 0.0
        #: partition -> (predictions waiting for a label, labels waiting) as last reported
        self.waiting: dict[int, tuple[int, int]] = {}
        #: partition -> wall-clock time its last delta was applied (see :meth:`release_silent`)
        self.heard: dict[int, float] = {}
        self.started = time.time()
        self.stale = 0  # deltas that fitted no chain (dropped)
        self.signals_out: list[PaneSignals] = []
        self._last_plan: PanePlan | None = None  # the plan of the last close (see _plan)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the signal plan (made again at the next close)."""
        state = self.__dict__.copy()
        state["_last_plan"] = None
        state.pop("_sampled", None)  # (see _sample_size)
        state.pop("_errors_low", None)  # (see _errors_through)
        return state

    # ------------------------------------------------------------------ input
    def apply(self, delta: PartitionDelta, advance: bool = True) -> bool:
        """Merge one partition's delta; False when it fits no point of the partition's
        chain (a stale duplicate) and was dropped. Then (with ``advance``) close the panes
        the clock passed: give False when more deltas read together follow, and call
        :meth:`advance` after the last, so that their panes close once, with all of them."""
        mine = next((m for m in delta.models if m.model == self.name), None)
        return self.apply_part(delta, mine, advance)

    def apply_part(self, delta: PartitionDelta, mine: ModelDelta | None,
                   advance: bool = True) -> bool:  # fmt: skip
        """:meth:`apply` with this model's part of ``delta`` given (None: it has none),
        not looked for among ``delta.models``: a process that feeds every model's stage
        the same delta hands each its own part."""
        number = delta.number
        chain = self.chains.get(number)
        if chain is None:
            chain = self.chains[number] = _Chain()
        if delta.session == chain.session:
            fits = delta.seq == chain.seq + 1 and delta.base == chain.end
            at = len(chain.history)
        elif delta.session in chain.retired:
            fits, at = False, 0
        else:  # a new run of stage 1: it starts at a checkpoint this chain went through
            found = next((i for i, a in enumerate(chain.history) if a.base == delta.base), None)
            at = len(chain.history) if delta.base == chain.end else found  # type: ignore[assignment]
            fits = at is not None
        if not fits:
            self.stale += 1
            _log.info(
                "stale_delta",
                model=self.name,
                partition=delta.number,
                session=delta.session,
                seq=delta.seq,
            )
            return False
        if at < len(chain.history):
            for applied in reversed(chain.history[at:]):
                self._undo(number, applied)
            del chain.history[at:]
        if delta.session != chain.session:
            if chain.session is not None:
                chain.retired.add(chain.session)
            chain.session = delta.session
        chain.seq = delta.seq
        # The delta's offsets and progress are held as they are, not copied: no one
        # writes to them (a stage replaces them whole; many stages share one delta's).
        applied = _Applied(
            delta.base,
            delta.end,
            self.progress.get(number) or {},
            self.idle.get(number, frozenset()),
            [],
            _NO_COUNTS,
            _NO_DELAY,
            0.0,
            self.waiting.get(number),
        )
        if mine is not None:
            self._add(delta, mine, applied)
        chain.end = delta.end
        history = chain.history
        if delta.base != delta.end or not _nothing(applied):
            # (A delta that read no offset and added nothing is not kept: undone, it would
            # give back only what the delta of a restart sets again, and kept, a partition
            # that stays quiet would add a record per poll to the history.)
            history.append(applied)
        confirmed = delta.confirmed
        if confirmed is not None:
            for keep, held in enumerate(history):
                if held.base == confirmed:
                    del history[:keep]
                    break
            else:
                if confirmed == chain.end:
                    history.clear()
        self.progress[number] = delta.progress
        self.idle[number] = frozenset(delta.idle)
        self.released.discard(number)
        self.heard[number] = time.time()
        if advance:
            self.advance()
        return True

    def _buffer_errors(self, number: int, pd: PaneDelta) -> None:
        """Keep a pane delta's detector errors (and their times) with partition ``number``'s
        others of the pane, for the detectors when the pane closes."""
        parts = self.error_panes.get(pd.pane)
        if parts is None:
            parts = self.error_panes[pd.pane] = {}
            low = self.__dict__.get("_errors_low")
            if low is not None and pd.pane < low[1]:
                self._errors_low = (low[0], pd.pane)
        buffered = parts.get(number)
        if buffered is None:
            if type(pd) is HandedPaneDelta:  # its lists are no one else's: kept as they are
                parts[number] = (pd.err_ts, pd.err)
                return
            buffered = parts[number] = ([], [])
        buffered[0].extend(pd.err_ts)
        buffered[1].extend(pd.err)

    def _add_open(self, parts: list[tuple[PartitionDelta, ModelDelta]],
                  merges: RowMerges) -> None:  # fmt: skip
        """:meth:`_add` of each of ``parts`` (a delta and this model's part of it), in
        order, whose panes are all open and hold no raw predictions unless the model is in
        its warmup (they go to its buffer, :meth:`_take_warm`), with no piece kept to
        undo it: its row blocks (and its counters' increments, when they are arrays) are
        queued in ``merges``, those of a pane the windows hold no arrays of with the pane
        (:meth:`WindowSet.queue <monitor.core.windows.WindowSet.queue>`, inlined), until
        it closes; then the counters' increments are added, and its counts of waiting
        events and its folded slices taken. (Run for every model each poll, with its
        parts of all the partitions: what is read of the stage and its windows is read
        once, and what :meth:`_buffer_errors` does is inlined.)"""
        keys = self.model.registry.keys
        w = self.windows
        ops, queued, width = merges.ops, w.queued, w.width
        held, held_decay = w.arrays()
        error_panes = self.error_panes
        handed = HandedPaneDelta
        added: list[F64] = []  # the parts' counters' increments that are arrays, in order
        delays: list[F64] = []  # (and their label delays')
        for delta, md in parts:
            slice_keys = md.slice_keys
            if keys[: len(slice_keys)] == slice_keys:
                # every slice known here, in stage 1's order (looking them up finds each
                # at its own index)
                remap, distinct, same = [], True, True
            else:
                remap = self._rows(md)
                distinct = len(set(remap)) == len(remap)
                same = distinct and remap == list(range(len(remap)))
            rows = len(keys)
            if rows > w.rows:  # the arrays are replaced: the blocks queued go in first
                merges.run()
                w.grow(rows)
                ops, queued = merges.ops, w.queued  # (run made a new list)
                held, held_decay = w.arrays()
            number = delta.number
            warm: dict[int, WarmChunk] | None = None  # (a model in its warmup: see below)
            if len(md.panes) > 1 and self.model.warmup_target:
                if not remap:  # (every slice known here, in stage 1's order)
                    remap = self._rows(md)
                cut = self._warm_chunks(md, remap)  # the raw rows of many panes: made at once
                if cut is not None:
                    warm = {md.panes[i].pane: chunk for i, chunk in cut.items()}
            for pd in md.panes:
                if distinct:
                    given = None  # the rows as the ledger's int64 array (handed, same rows)
                    if type(pd) is handed and isinstance(pd.plain, np.ndarray):
                        plain, decay, cols = pd.plain, pd.decay, pd.cols  # (as row_blocks)
                        if same:
                            given = pd.at
                    else:
                        plain, decay, cols = delta.row_blocks(md, pd)
                    present = pd.rows if same else [remap[r] for r in pd.rows]
                    pane = pd.pane
                    # (merges.add, inlined)
                    if len(present) == 1:  # (most panes of a model without segments)
                        first: int | npt.NDArray[np.int64] = present[0]
                    elif cols is not None and given is not None:
                        first = given  # (the rows as they are)
                    else:
                        at = _index(present)
                        first = at.start if isinstance(at, slice) else at
                    acc = held.get(pane)
                    if acc is not None:  # a pane held as arrays
                        ops.append((acc, held_decay[pane], plain, decay, first, width, 1, cols))
                    else:  # (WindowSet.queue, inlined)
                        blocks = queued.get(pane)
                        if blocks is None:
                            scratch, scratch_decay = w.scratch()
                            queued[pane] = [(scratch, scratch_decay, plain, decay, first,
                                             width, 0, cols)]  # fmt: skip
                        else:
                            head = blocks[0]
                            blocks.append((head[0], head[1], plain, decay, first, width, 1,
                                           cols))  # fmt: skip
                            if len(blocks) > QUEUED_MAX:  # made arrays (the ops after go there)
                                w.settle(pane)
                else:
                    pane = pd.pane
                    plain, decay = delta.blocks(md, pd)
                    merges.run()  # added straight to the pane: after the blocks queued
                    ops = merges.ops  # (run made a new list)
                    where = np.array(remap, dtype=np.int64).take(pd.rows)
                    whole = [np.zeros((rows, md.width)) for _ in range(1 + len(decay))]
                    for target, block in zip(whole, [plain, *decay], strict=True):
                        np.add.at(target, where, block)
                    w.add_sums(pane, None, whole[0], whole[1:])
                if pd.warm:  # raw predictions of the model in its warmup (see _hand_stage)
                    if not remap:  # (every slice known here, in stage 1's order)
                        remap = self._rows(md)
                    self._take_warm(number, pd, remap, None,
                                    None if warm is None else warm.get(pd.pane))  # fmt: skip
                if pd.err:  # (_buffer_errors, inlined)
                    buffered = error_panes.get(pane)
                    if buffered is None:
                        buffered = error_panes[pane] = {}
                        low = self.__dict__.get("_errors_low")
                        if low is not None and pane < low[1]:
                            self._errors_low = (low[0], pane)
                    lists = buffered.get(number)
                    if lists is not None:  # (an earlier poll's errors of the pane: after them)
                        lists[0].extend(pd.err_ts)
                        lists[1].extend(pd.err)
                    elif type(pd) is handed:
                        buffered[number] = (pd.err_ts, pd.err)  # its lists: no one else's
                    else:
                        self._buffer_errors(number, pd)
            # The counters' increments: those that are arrays (rows of stage 1's, handed
            # over in the process) are added with the blocks, below.
            counts, delay = md.counts, md.delay
            if isinstance(counts, np.ndarray) and isinstance(delay, np.ndarray):
                added.append(counts)
                delays.append(delay)
            else:
                self.counts += counts
                self.delay += delay
            self.delay_sum += md.delay_sum
            self.waiting[number] = (md.pending, md.early)
            if md.folded:
                self._fold(md.folded)
        if added:  # one op for the parts' counts and one for their delays, added in order
            merges.add_each_to(self.counts, added)
            merges.add_each_to(self.delay, delays)

    def _fold(self, counts: dict[str, int]) -> None:
        """Take a part's counts of values folded into ``__other__`` per slice dimension
        (stage 1's running totals: the largest is the latest)."""
        folded = self.model.registry.folded
        for dimension, n in counts.items():
            folded[dimension] = max(folded[dimension], n)

    def resume(self, number: int, offsets: dict[str, int]) -> None:
        """Partition ``number``'s deltas go on from ``offsets``, a point its sums here
        already reflect (one process restored both stages from the same checkpoint):
        nothing before it is undone."""
        chain = self.chains.setdefault(number, _Chain())
        chain.end = dict(offsets)
        chain.history.clear()

    def _rows(self, md: ModelDelta) -> list[int]:
        """This registry's row of each of the delta's slice keys (registering new ones)."""
        registry = self.model.registry
        return [registry.lookup(d, v) for d, v in md.slice_keys]

    def _add(self, delta: PartitionDelta, md: ModelDelta, applied: _Applied) -> None:
        remap = self._rows(md)
        rows = len(self.model.registry.keys)
        self.windows.grow(rows)
        # Distinct slices of stage 1 are distinct rows here unless this registry folded
        # some of them together (at its caps): only then must rows be added up.
        distinct = len(set(remap)) == len(remap)
        # (and they are the same rows when both registries met the keys in the same order)
        same = distinct and remap == list(range(len(remap)))
        number = delta.number
        chunks = self._warm_chunks(md, remap) if self.model.warmup_target else None
        # The pieces' blocks of columns, queued for one compiled pass: run before anything
        # else writes to the windows (a pane's raw predictions histogrammed, below).
        merges = RowMerges()
        closed = self.closed_upto
        for i, pd in enumerate(md.panes):
            if distinct:  # (a block of the columns its events touched kept so)
                plain, decay, cols = delta.row_blocks(md, pd)
                at = _index(pd.rows if same else [remap[r] for r in pd.rows])
                piece = _Piece(pd.pane, plain, decay, 0, None, at, rows, cols, md.width)
                if cols is not None and (closed is None or pd.pane >= closed):
                    # (_merge_piece of an open pane's block of columns, queued)
                    merges.add(self.windows, pd.pane, at, plain, decay, cols)
                else:
                    merges.run()
                    self._merge_piece(piece, 1.0)
            else:
                merges.run()
                plain, decay = delta.blocks(md, pd)
                where = np.array(remap, dtype=np.int64).take(pd.rows)
                whole = [np.zeros((rows, md.width)) for _ in range(1 + len(decay))]
                for target, block in zip(whole, [plain, *decay], strict=True):
                    np.add.at(target, where, block)
                piece = _Piece(pd.pane, whole[0], whole[1:], 0)
                self._merge_piece(piece, 1.0)
            if pd.err and (self.closed_upto is None or pd.pane >= self.closed_upto):
                self._buffer_errors(number, pd)
                piece.errors = len(pd.err)
            if pd.warm:
                chunk = None if chunks is None else chunks.get(i)
                if not self.model.warmup_target:  # (it may write to the windows)
                    merges.run()
                piece.warm = self._take_warm(number, pd, remap, piece, chunk)
            applied.pieces.append(piece)
        merges.run()
        # (rows of stage 1's arrays when handed over in the process: taken as they are)
        applied.counts = np.asarray(md.counts, dtype=np.float64)
        applied.delay = np.asarray(md.delay, dtype=np.float64)
        applied.delay_sum = md.delay_sum
        self.counts += applied.counts
        self.delay += applied.delay
        self.delay_sum += applied.delay_sum
        self.waiting[number] = (md.pending, md.early)
        if md.folded:
            self._fold(md.folded)

    def _warm_chunks(self, md: ModelDelta, remap: list[int]) -> dict[int, WarmChunk] | None:
        """The chunks :meth:`_take_warm` makes of the predictions sent raw of each pane of
        ``md`` that the warmup buffer takes (by the pane's place in ``md.panes``; None when
        none does), made as one chunk of all of them and cut pane by pane: a poll of the
        warmup sends a few predictions in each of a hundred panes."""
        closed = self.closed_upto
        taken = [(i, pd.warm) for i, pd in enumerate(md.panes)
                 if pd.warm and (closed is None or pd.pane >= closed)]  # fmt: skip
        if len(taken) < 2:
            return None
        rows = [w for _, warm in taken for w in warm]
        whole = self._warm_chunk(rows, remap)
        out = {}
        start = 0
        for i, warm in taken:
            end = start + len(warm)
            out[i] = WarmChunk(
                whole.ts[start:end],
                whole.slices[start:end],
                np.ascontiguousarray(whole.codes[:, start:end]),
                np.ascontiguousarray(whole.numbers[:, start:end]),
                {name: values[start:end] for name, values in whole.others.items()},
                whole.predictions[start:end],
                whole.scores[start:end],
            )
            start = end
        return out

    def _warm_chunk(self, warm: list[WarmRow], remap: list[int]) -> WarmChunk:
        """Predictions sent raw as a chunk of columns, their slice positions (of the
        delta's ``slice_keys``) as the stage's rows."""
        # Slice positions of the message's slice_keys (-1: none) as the stage's rows.
        where = np.array([*remap, -1], dtype=np.int64)
        return WarmChunk.of(
            self.model.layout,
            [w.ts for w in warm],
            where[np.array([w.slices for w in warm], dtype=np.int64)],
            [w.features for w in warm],
            [w.prediction for w in warm],
            [w.score for w in warm],
        )

    def _take_warm(self, number: int, pd: PaneDelta, remap: list[int],
                   piece: _Piece | None = None, chunk: WarmChunk | None = None
                   ) -> WarmChunk | None:  # fmt: skip
        """Take a pane's predictions sent raw (stage 1 had no warmup reference), as one
        engine would have: into the warmup buffer while the model warms up and their pane
        is open; histogrammed at once (added to ``piece``, the undo) when the reference
        exists and they are past the panes it was built from; else nowhere. Returns the
        rows buffered (as columns, see :mod:`monitor.core.warmup_buffer`). ``chunk``:
        those rows as a chunk already (see :meth:`_warm_chunks`)."""
        model = self.model
        if model.warmup_target:
            if self.closed_upto is not None and pd.pane < self.closed_upto:
                return None
        elif model.profile_pane is None or pd.pane <= model.profile_pane:
            return None
        if chunk is None:
            chunk = self._warm_chunk(pd.warm, remap)
        if model.warmup_target:
            self.warm.setdefault(pd.pane, {}).setdefault(number, []).append(chunk)
            return chunk
        got = self._warm_blocks(pd.pane, [chunk])
        if got is not None:
            self._merge(pd.pane, got[0], got[1], 1.0)
            assert piece is not None  # (only a model past its warmup histograms them)
            piece.add(got[0], got[1])
        return None

    def warmed_up(self) -> bool:
        """Whether the model's warmup is over here: its reference built (``profile_pane``
        set) or the warmup given up. False for a model with a reference file or none."""
        model = self.model
        if model.profile_pane is not None:
            return True
        wanted = model.config.reference_warmup and not model.config.reference
        return bool(wanted) and model.profile is None and not model.warmup_target

    def _warm_terms(self, chunks: list[WarmChunk], groups: list[int] | None = None
                    ) -> Terms | None:  # fmt: skip
        """The profile's terms of raw predictions (their data-quality terms are in their
        pane's sums already), as :class:`~monitor.core.layout.Terms` of group 0; None
        without features or predictions. ``groups``: the chunks' sizes, each chunk's
        terms those of its own call (see :meth:`~monitor.core.layout.Layout.feature_terms`)."""
        layout = self.model.layout
        if not layout.features or not any(chunks):
            return None
        chunk = concat(chunks)
        columns, numeric = chunk.terms_input()
        cols, vals = layout.feature_terms(None, profile_only=True, columns=columns,
                                          numeric=numeric, groups=groups)  # fmt: skip
        return Terms(np.zeros(len(chunk.ts), dtype=np.int64), chunk.slices, cols, vals, chunk.ts)

    def _warm_blocks(self, pane: int, chunks: list[WarmChunk]) -> tuple[F64, list[F64]] | None:
        """The profile's terms of raw predictions of ``pane`` (see :meth:`_warm_terms`), as
        plain and decay blocks; None without features."""
        terms = self._warm_terms(chunks)
        if terms is None:
            return None
        layout = self.model.layout
        slices, cols, vals, ts = terms.slices, terms.cols, terms.vals, terms.ts
        shape = (len(self.model.registry.keys), layout.width)
        plain = np.zeros(shape)
        decay = [np.zeros(shape) for _ in self.windows.decay_rates]
        scatter_pane(plain, decay, self.windows.decay_rates, (pane + 1) * self.pane,
                     slices, cols, vals, ts)  # fmt: skip
        return plain, decay

    def _warm_up(self, pane: int, batch: _Batch) -> None:
        """At the close of ``pane``: take the raw predictions of the panes closed into the
        warmup sample (partition by partition, as one engine does) and, once it is large
        enough, build the model's reference and histogram the predictions of later panes.
        The signals of the panes before ``pane`` waiting in ``batch`` are computed first,
        with the plan they closed under: the reference changes it from ``pane`` on."""
        model = self.model
        self._warm_take(pane)
        profile = warmup_profile(model, self._sample_size())
        if profile is None:
            if not model.warmup_target:  # the warmup failed: nothing more is kept for it
                self.warm.clear()
            return
        self._flush(batch)
        install_profile(model, profile, pane)
        # (every pane still held is above ``pane``: open)
        self._add_warm([(p, parts[number]) for p, parts in sorted(self.warm.items())
                        for number in sorted(parts)])  # fmt: skip
        self.warm.clear()
        _log.info("warmup_profile_built", model=self.name, predictions=profile.rows,
                  last_pane_end=(pane + 1) * self.pane)  # fmt: skip

    def _warm_take(self, pane: int) -> None:
        """Take the raw predictions of the panes closed through ``pane`` into the model's
        warmup sample, partition by partition (as one engine does)."""
        closed = sorted(p for p in self.warm if p <= pane)
        numbers = sorted({n for p in closed for n in self.warm[p]})
        for number in numbers:
            for p in closed:
                chunks = self.warm[p].pop(number, None)
                if chunks:
                    self.model.warmup_rows.extend(chunks)
        for p in closed:
            if not self.warm[p]:
                del self.warm[p]

    def _add_warm(self, groups: list[tuple[int, list[WarmChunk]]]) -> None:
        """Histogram the raw predictions of open panes, ``(pane, chunks)`` after ``(pane,
        chunks)``: what :meth:`_merge` of each one's :meth:`_warm_blocks` in turn adds,
        bit for bit, with one feature-terms call (each group's terms those of its own
        call) and one :func:`~monitor.core.layout.scatter_panes` call for all of them (a
        block of the rows and columns each one's terms touch: the other cells of its
        dense blocks are zeros) and their blocks added in one
        :class:`~monitor.core.windows.RowMerges` pass, in order. At the close that builds
        a warmup reference, the panes open then hold a few predictions per partition."""
        w = self.windows
        chunks: list[WarmChunk] = []
        panes: list[int] = []
        sizes: list[int] = []
        for pane, held in groups:
            assert self.closed_upto is None or pane >= self.closed_upto
            chunk = concat(held) if held else None
            if chunk is not None and len(chunk):
                chunks.append(chunk)
                panes.append(pane)
                sizes.append(len(chunk))
        # every group's terms in one call, each the terms of the group's own call
        merged = self._warm_terms(chunks, sizes)
        if merged is None:
            return
        merged = merged._replace(group=np.repeat(np.arange(len(sizes), dtype=np.int64), sizes))
        shape = (len(self.model.registry.keys), self.model.layout.width)
        blocks = scatter_panes(shape, w.decay_rates, self.pane, np.array(panes, dtype=np.int64),
                               [merged])  # fmt: skip
        merges = RowMerges()
        for g, rows, cols, plain, decay in blocks:
            merges.add(w, panes[g], rows, plain, decay, cols)
        merges.run()

    def _sample_size(self) -> int:
        """The predictions in the model's warmup sample (``model.warmup_rows``), counted
        once each: the sample only grows (chunks appended, none changed) until it is
        replaced, and a pane close of the warmup asks for its size. The count is kept
        with the list it is of, not in the stage's state."""
        rows = self.model.warmup_rows
        held: tuple[list[WarmChunk], int, int] | None = self.__dict__.get("_sampled")
        if held is None or held[0] is not rows or held[1] > len(rows):
            held = (rows, 0, 0)
        _, counted, size = held
        if counted < len(rows):
            size += sum(map(len, rows[counted:]))
        self._sampled = (rows, len(rows), size)
        return size

    def _merge(self, pane: int, plain: F64, decay: list[F64], sign: float) -> None:
        """Add (``sign`` 1) or take back (-1) a pane's sums, open or closed."""
        w = self.windows
        if sign != 1.0:
            plain, decay = sign * plain, [sign * d for d in decay]
        if self.closed_upto is None or pane >= self.closed_upto:
            w.add_sums(pane, None, plain, decay)
            return
        w.add_sums(pane, self.closed_upto, plain, decay)
        lay = self.model.layout
        events = float(plain[0, lay.col("pred_n")] + plain[0, lay.col("n")])
        self.counts[LATE] += events

    def _merge_piece(self, piece: _Piece, sign: float) -> None:
        """:meth:`_merge` a piece's sums: an open pane's straight into its rows."""
        rows = piece.rows
        if rows is not None and (self.closed_upto is None or piece.pane >= self.closed_upto):
            if piece.cols is not None and sign == 1.0:  # those cells of its rows only
                merges = RowMerges()
                merges.add(self.windows, piece.pane, rows, piece._plain, piece._decay,
                           piece.cols)  # fmt: skip
                merges.run()
                return
            plain, decay = piece.blocks()
            self.windows.add_rows(piece.pane, rows, plain, decay, sign)
            return
        slices = len(self.model.registry.keys)
        self._merge(piece.pane, pad_rows(piece.plain, slices),
                    [pad_rows(d, slices) for d in piece.decay], sign)  # fmt: skip

    def _undo(self, number: int, applied: _Applied) -> None:
        for piece in reversed(applied.pieces):
            self._merge_piece(piece, -1.0)
            if piece.warm:
                self._undo_warm(number, piece)
            if piece.errors:
                buffered = self.error_panes.get(piece.pane, {}).get(number)
                if buffered is not None:  # not fed to the detectors yet
                    del buffered[0][-piece.errors :]
                    del buffered[1][-piece.errors :]
        self.counts -= applied.counts
        self.delay -= applied.delay
        self.delay_sum -= applied.delay_sum
        self.progress[number] = dict(applied.progress_before)
        self.idle[number] = applied.idle_before
        if applied.waiting_before is None:
            self.waiting.pop(number, None)
        else:
            self.waiting[number] = applied.waiting_before

    def _undo_warm(self, number: int, piece: _Piece) -> None:
        """Take back predictions a piece put in the warmup buffer: out of the buffer while
        their pane is open; their histogram when the reference built since covers their
        pane; nothing once they are in the sample (the chain that re-reads them finds their
        pane closed and leaves them out, so they count once)."""
        model, warm = self.model, piece.warm
        if warm is None:
            return
        if model.warmup_target:
            chunks = self.warm.get(piece.pane, {}).get(number)
            if chunks is not None and (self.closed_upto is None or piece.pane >= self.closed_upto):
                drop_last(chunks, len(warm))
        elif model.profile_pane is not None and piece.pane > model.profile_pane:
            got = self._warm_blocks(piece.pane, [warm])
            if got is not None:
                self._merge(piece.pane, got[0], got[1], -1.0)

    def release(self, numbers: set[int]) -> None:
        """Stop waiting for these partitions until they report again (nobody holds them)."""
        self.released |= numbers
        self.advance()

    def release_silent(self, now: float, timeout: float) -> set[int]:
        """Release the partitions not heard of for ``timeout`` seconds of wall time (since
        this stage started, for one never heard of): nobody holds them, or their holder
        cannot publish. They hold the clock again from their next delta. Returns them."""
        silent = {
            n
            for n in range(self.partitions)
            if n not in self.released and now - self.heard.get(n, self.started) >= timeout
        }
        if silent:
            _log.info("partitions_released", model=self.name, partitions=sorted(silent))
            self.release(silent)
        return silent

    # ------------------------------------------------------------------ time
    def _watermark(self) -> float:
        highs: dict[tuple[str, int], float] = {}
        for number in range(self.partitions):
            reported = self.progress.get(number, {})
            for topic in self.topics:
                highs[(topic, number)] = reported.get(topic, -math.inf)
        live = [
            ts
            for (topic, number), ts in highs.items()
            if topic not in self.idle.get(number, ()) and number not in self.released
        ]
        if not highs:
            return -math.inf
        return (min(live) if live else max(highs.values())) - self.lateness

    def advance(self) -> None:
        """Move the watermark to what the partitions reported; close the panes it passed."""
        mark = self._watermark()
        if mark > self.watermark:
            self.watermark = mark
        if math.isfinite(self.watermark):
            self.close_through(math.floor(self.watermark / self.pane))

    def close_through(self, upto: int, defer: bool = False) -> _Batch | None:
        """Close every pane below ``upto``, in order, emitting the model's signals per pane.

        The windows roll pane by pane; each closed pane's whole-model window sums are
        copied (and the slice rows of the last one, which ``model.last`` keeps for
        reports), and the metrics of the panes of one call are computed together, in one
        stacked computation (:meth:`_flush`), at most :data:`BATCH_PANES` panes and
        :data:`BATCH_FLOATS` values of sums at a time, so that a backlog's memory stays
        bounded. Each row of a pane's values depends on its own sums only, and the
        whole-model rows of a pane are one block of the products (see :meth:`_values`), so
        they are the same, bit for bit, as when the pane closes alone; the detectors are
        fed and the signals emitted in pane order.
        The reference a warmup builds at a pane changes the signals' plan from that pane
        on: the panes before it are computed first, with the plan they closed under.

        ``defer``: the last panes' signals are not computed; their batch is returned
        (None: there is none) for :func:`flush_together` to compute with other models'."""
        w = self.windows
        if self.closed_upto is None:
            low = w.lowest_open()
            if low is None:
                return None
            self.closed_upto = min(low, upto)
        if self.closed_upto >= upto:  # nothing to close (most polls, for most models)
            return None
        batch = _Batch()
        # runs of panes closed in one call each (WindowSet.roll) when their copies are the
        # whole-model rows only (not the last pane's)
        roll = self._roll_sources()
        while self.closed_upto < upto:
            pane = self.closed_upto
            if (roll is not None and upto - pane > 1 and not w.ring_empty()
                    and self._roll(batch, pane, upto, roll)):  # fmt: skip
                if len(batch.panes) == batch.size and not (defer and self.closed_upto >= upto):
                    self._flush(batch)
                continue
            # Only an empty ring lets empty panes be skipped: the first open pane is
            # looked for then (a backlog holds many open panes).
            first = w.lowest_open() if w.ring_empty() else pane
            if first is None or first > pane:
                target = upto if first is None else min(first, upto)
                if target - pane > 1:
                    w.skip_empty(target - 1 - pane)
                    self.panes_closed += target - pane - 1
                    pane = self.closed_upto = target - 1
            w.close(pane)
            self.closed_upto = pane + 1
            self.panes_closed += 1
            if self.model.warmup_target:
                self._warm_up(pane, batch)
            self._take(batch, pane, upto - pane)
            if len(batch.panes) == batch.size and not (defer and self.closed_upto >= upto):
                self._flush(batch)
        w.recycle()
        if defer:
            return batch if batch.panes else None
        self._flush(batch)
        return None

    # ------------------------------------------------------------------ signals
    def compute(self, final: bool = False) -> dict[str, dict[str, F64]]:
        """Every window's metrics per slice row, as of the last close (``final``: with the
        open panes counted in ``all``, as at the end of input)."""
        return self._stacked(final).by_window()

    def _window_sums(self, out: F64, final: bool = False) -> None:
        """Write the windows' sums, window after window, into ``out`` ``(windows *
        slices, width)`` (``final``: the open panes counted in ``all``)."""
        rows = len(self.model.registry.keys)
        for i, sums in enumerate(self._sources(final)):
            out[i * rows : (i + 1) * rows] = sums[:rows]

    def _sources(self, final: bool = False) -> list[F64]:
        """Each window's sums ``(slices, width)``, in the model's window order (``final``:
        the open panes counted in ``all``)."""
        w = self.windows
        out: list[F64] = []
        sliding = iter(w.sliding)
        decay = iter(w.decay)
        for spec in self.model.windows:
            if spec.kind == "all":
                out.append(w.cum + w.open_total() if final else w.cum)
            elif spec.kind == "sliding":
                out.append(next(sliding))
            else:
                out.append(next(decay))
        return out

    def _closed_counts(self) -> F64:
        """Joined events per slice row of the closed panes (a decay window's count)."""
        w = self.windows
        closed: F64 = w.cum[:, self.model.layout.col("n")] - w.late_n
        return closed

    def _pane_stack(self, head: F64, tail: F64 | None, count: F64 | None,
                    final: bool = False) -> None:  # fmt: skip
        """Write one pane's window sums as a pane close stacks them: the whole-model row
        (slice row 0) of every window into ``head`` ``(windows, width)``, and the other
        slice rows, window after window, into ``tail`` ``(windows * (slices - 1), width)``
        (None: not wanted); into ``count`` (None: not wanted) each of those rows' joined
        events, the closed counts for a decay window (``final``: the open panes counted in
        ``all``)."""
        model = self.model
        rows = len(model.registry.keys)
        sources = self._sources(final)
        if all(len(sums) == 1 for sums in sources):  # the whole model's row only: one copy
            np.concatenate(sources, out=head)
        else:
            for i, sums in enumerate(sources):
                head[i] = sums[0]
        if tail is not None and rows > 1:
            for i, sums in enumerate(sources):
                tail[i * (rows - 1) : (i + 1) * (rows - 1)] = sums[1:rows]
        if count is not None:
            n = model.layout.col("n")
            closed = self._closed_counts()
            windows = len(sources)
            for i, (spec, sums) in enumerate(zip(model.windows, sources, strict=True)):
                column = closed if spec.kind == "decay" else sums[:, n]
                count[i] = column[0]
                if tail is not None:
                    at = windows + i * (rows - 1)
                    count[at : at + rows - 1] = column[1:rows]

    def _plan(self) -> PanePlan:
        """The model's signal plan as it stands (its reference may change at a warmup)."""
        model = self.model
        plan = self._last_plan
        if plan is not None and plan.fits(model.layout):
            return plan
        wanted = None if model.metrics is None else set(model.metrics)

        def keep(name: str) -> bool:  # asked once per layout: the plan keeps the answer
            base = base_metric(name)
            return wanted is None or base in wanted or base in ALWAYS_COMPUTED

        plan = self._last_plan = plan_for(
            model.layout, model.class_names, model.config.drift_min_samples, keep, model.metrics
        )
        return plan

    def _stacked(self, final: bool = False) -> WindowValues:
        """:meth:`compute`'s values as one stacked array, computed as a pane close
        computes them (the same values, bit for bit)."""
        batch = _Batch()
        self._start(batch, 1)
        self._stack(batch, final, last=True)
        values = self._values(batch)[1]
        assert values is not None
        return values

    def _start(self, batch: _Batch, size: int) -> None:
        """Make ``batch`` room for ``size`` panes and one pane's slice rows."""
        model = self.model
        rows = len(model.registry.keys)
        windows = len(model.windows)
        stacked = (size + rows - 1) * windows
        batch.size = size
        batch.sums = np.empty((stacked, model.layout.width))
        batch.count = np.empty(stacked) if model.layout.kind.needs_sample_count else None

    def _stack(self, batch: _Batch, final: bool = False, last: bool = False) -> None:
        """Stack the windows' sums as the next pane of ``batch`` (``last``: with the slice
        rows, after the whole-model rows of the panes before it)."""
        windows = len(self.model.windows)
        at = len(batch.panes) * windows
        tail = None
        if last:
            batch.last = True
            tail = batch.sums[at + windows : at + windows * len(self.model.registry.keys)]
        count = None if batch.count is None else batch.count[at:]
        self._pane_stack(batch.sums[at : at + windows], tail, count, final)

    def _take(self, batch: _Batch, pane: int, remaining: int) -> None:
        """Copy what the just closed ``pane``'s signals are computed from into ``batch``
        (made for at most ``remaining`` panes when it is empty; the slice rows too when
        it is the last of them, ``remaining`` 1)."""
        model = self.model
        if not batch.panes:
            self._start(batch, self._batch_size(remaining))
        w = self.windows
        if remaining == 1 or batch.count is not None:
            self._stack(batch, last=remaining == 1)
        else:  # the whole-model rows only (_stack's, without its general case's calls)
            # one call copies each window's row 0 (the compiled kernel, else numpy's loop)
            (native.kernels() or native).first_rows(
                batch.sums, len(batch.panes) * len(model.windows), self._sources()
            )
        batch.panes.append(pane)
        batch.seen.append(w.cum.item(0, model.layout.col("pred_n")))

    def _roll(self, batch: _Batch, pane: int, upto: int, sources: list[int]) -> int:
        """Close a run of panes from ``pane`` (below ``upto - 1``: the last one's slice rows
        are copied too) as the loop of :meth:`close_through` closes each, in one call
        (:meth:`WindowSet.roll <monitor.core.windows.WindowSet.roll>`, ``sources`` its
        windows' sums), at most as many as ``batch`` has room for and, in the model's
        warmup, those whose predictions leave its sample too small to build the reference
        (see :meth:`_warm_limit`); returns how many it closed (0: none)."""
        w = self.windows
        if not batch.panes:
            self._start(batch, self._batch_size(upto - pane))
        last = min(upto - 1, pane + batch.size - len(batch.panes))
        warm = bool(self.model.warmup_target)
        if warm:
            last = self._warm_limit(pane, last)
        closed, taken = w.roll(pane, last, batch.sums, len(batch.panes) * len(sources), sources,
                               batch.panes, batch.seen,
                               self.model.layout.col("pred_n"))  # fmt: skip
        self.closed_upto = pane + closed
        self.panes_closed += closed
        if warm:  # what _warm_up does after each of those closes (no reference is built)
            for p in range(pane, pane + taken):
                self._warm_take(p)
        if taken < closed:  # (a window was summed again after its close: copied as alone)
            if warm:
                self._warm_up(pane + taken, batch)
            self._take(batch, pane + taken, upto - pane - taken)
        return closed

    def _warm_limit(self, pane: int, last: int) -> int:
        """The first pane from ``pane`` below ``last`` whose close may build the model's
        warmup reference (:meth:`_warm_up`: its sample then holds ``warmup_target``
        predictions), else ``last``."""
        target = self.model.warmup_target
        size = self._sample_size()
        size += sum(len(chunk) for p, parts in self.warm.items() if p < pane
                    for chunks in parts.values() for chunk in chunks)  # fmt: skip
        for p in range(pane, last):
            parts = self.warm.get(p)
            if parts:
                size += sum(len(chunk) for chunks in parts.values() for chunk in chunks)
            if size >= target:
                return p
        return last

    def _batch_size(self, remaining: int) -> int:
        """The most panes a batch takes when ``remaining`` panes are left to close."""
        per_pane = len(self.model.windows) * self.model.layout.width
        return max(1, min(BATCH_PANES, remaining, BATCH_FLOATS // max(1, per_pane)))

    def _roll_sources(self) -> list[int] | None:
        """The windows' sums a pane close copies, as :meth:`WindowSet.roll
        <monitor.core.windows.WindowSet.roll>` numbers them, in the model's window order;
        None when the copies take the windows' counts as well (see :meth:`_stack`)."""
        model = self.model
        if model.layout.kind.needs_sample_count:
            return None
        sliding = decay = 0
        sliding_count = len(self.windows.sliding_panes)
        out: list[int] = []
        for spec in model.windows:
            if spec.kind == "all":
                out.append(0)
            elif spec.kind == "sliding":
                sliding += 1
                out.append(sliding)
            else:
                decay += 1
                out.append(sliding_count + decay)
        return out

    def _used(self, batch: _Batch) -> int:
        """The rows of ``batch.sums`` its panes fill."""
        windows = len(self.model.windows)
        tail = (len(self.model.registry.keys) - 1) * windows if batch.last else 0
        return (len(batch.panes) or 1) * windows + tail

    def _values(self, batch: _Batch, computed: F64 | None = None
                ) -> tuple[PanePlan, WindowValues | None, F64]:  # fmt: skip
        """The signals of the panes in ``batch`` in one :meth:`PanePlan.compute
        <monitor.core.panemetrics.PanePlan.compute>` (``computed``: its result, made with
        other models', see :func:`flush_together`): the plan, every window's values of
        the last pane (None without its slice rows) and, per pane (a row), the whole-model
        values window after window (what :meth:`WindowValues.model_signals
        <monitor.core.panemetrics.WindowValues.model_signals>` takes as ``whole``).

        The matrix products run in blocks of as many rows as the model has windows, each
        pane's whole-model rows one of them, so a pane's whole-model values do not depend
        on the other panes, nor on whether its slice rows were computed (see
        :func:`~monitor.core.panemetrics._mm`)."""
        model = self.model
        windows = len(model.windows)
        used = self._used(batch)
        plan = self._plan()
        if computed is None:
            count = None if batch.count is None else batch.count[:used]
            values = plan.compute(batch.sums[:used], count, windows)
        else:
            values = computed
        fulls, wholes = _read_values(
            [plan], values, len(batch.panes) or 1, windows, len(model.registry.keys),
            batch.last, _names(model),
        )  # fmt: skip
        return plan, fulls[0], wholes[0]

    def _flush(self, batch: _Batch, computed: F64 | None = None) -> None:
        """Compute the signals of the panes in ``batch`` (:meth:`_values`; ``computed``:
        given), then feed the detectors and emit each pane's signals, in pane order;
        empty ``batch``."""
        if not batch.panes:
            return
        self._emit(batch, *self._values(batch, computed))

    def _emit(self, batch: _Batch, plan: PanePlan, full: WindowValues | None,
              whole: F64, names: tuple[str, ...] | None = None) -> None:  # fmt: skip
        """Feed the detectors and emit the signals of the panes in ``batch``, whose values
        are ``full`` and ``whole`` (see :meth:`_values`), in pane order; empty ``batch``.
        ``names``: the model's windows' (None: read from the model). The panes' signals
        are made together (:func:`~monitor.core.model.pane_signals`), as one
        :func:`~monitor.core.model.close_signals` per pane makes them."""
        model, width = self.model, self.pane
        if names is None:
            names = _names(model)
        panes = batch.panes
        taken = None
        if model.detectors is not None:  # _errors_through of each pane, in one call
            buffered = self.error_panes
            held: tuple[dict[int, Any], int] | None = self.__dict__.get("_errors_low")
            low = held[1] if held is not None and held[0] is buffered else None
            taken = take_errors_each(buffered, panes, low)
            if panes:
                self._errors_low = (buffered, panes[-1] + 1)
        ends = [(pane + 1) * width for pane in panes]
        self.signals_out += pane_signals(model, plan, names, whole, taken, full, ends, batch.seen)
        batch.panes.clear()
        batch.seen.clear()
        batch.last = False

    def _errors_through(self, pane: int) -> tuple[list[float], list[float]]:
        """The buffered errors of the panes through ``pane`` (see
        :func:`~monitor.core.model.take_errors`), taken out. Panes close in order: the
        lowest pane buffered is known (kept with the buffer it is of, not in the stage's
        state) and, as a rule, is ``pane`` or above it, so that only ``pane`` is looked up,
        not every pane of a backlog searched at each close."""
        buffered = self.error_panes
        low: tuple[dict[int, Any], int] | None = self.__dict__.get("_errors_low")
        if low is not None and low[0] is buffered and low[1] >= pane:
            taken = take_errors(buffered, [pane])
        else:
            taken = take_errors(buffered, pane)
        self._errors_low = (buffered, pane + 1)  # every pane left is above it
        return taken

    def drain_signals(self) -> list[PaneSignals]:
        """Signals of the panes closed since the last call."""
        out, self.signals_out = self.signals_out, []
        return out

    def counters(self) -> dict[str, float]:
        """The model's counters over every partition (``COUNT_NAMES``)."""
        return {name: float(self.counts[i]) for i, name in enumerate(COUNT_NAMES)}

    def report(self) -> ModelReport:
        """The model's picture, as :meth:`~monitor.core.engine.Engine.report` gives it for
        one process: metrics per window as of the last pane close, counters now."""
        model = self.model
        out = ModelReport(name=self.name, task=model.config.task)
        out.counts = self.counters()
        out.counts["pending"] = float(sum(p for p, _ in self.waiting.values()))
        out.counts["early_labels_pending"] = float(sum(e for _, e in self.waiting.values()))
        out.counts["stale_deltas"] = float(self.stale)  # monitor_model_accumulator
        out.counts["panes_closed"] = float(self.panes_closed)  # the model's own clock
        if model.detectors is not None:
            for name, total in model.detectors.totals.items():
                out.counts[f"{name}_detections"] = float(total)
        out.label_delay_buckets = np.cumsum(self.delay).tolist()
        out.label_delay_sum = float(self.delay_sum)
        cumulative = self.windows.cum + self.windows.open_total()
        for row, (dimension, value) in enumerate(model.registry.keys):
            windows = {
                window: {metric: float(v[row]) for metric, v in metrics.items()}
                for window, metrics in model.last.items()
                if row < model.last_rows
            }
            counters = slice_counters(model, cumulative[row]) if row < len(cumulative) else {}
            out.slices.append(SliceReport(dimension, value, windows, counters))
        return out

    def describe(self) -> dict[str, Any]:
        """A short picture for logs and tests."""
        return {
            "model": self.name,
            "watermark": self.watermark,
            "closed_upto": self.closed_upto,
            "panes_closed": self.panes_closed,
            "stale": self.stale,
        }


def _names(model: ModelState) -> tuple[str, ...]:
    """The names of the model's windows, in its order."""
    return tuple(spec.name for spec in model.windows)


def _read_values(
    plans: list[PanePlan], values: F64, k: int, windows: int, rows: int, last: bool,
    names: tuple[str, ...],
) -> tuple[list[WindowValues | None], F64]:  # fmt: skip
    """What :meth:`ModelStage._values` reads of ``values``, the result of a computation
    of the batches of ``len(plans)`` models side by side (each model's rows together),
    each of ``k`` panes, ``windows`` windows, ``rows`` slice rows (with the last pane's
    slice rows when ``last``), for each model: every window's values of the last pane
    (None without its slice rows), and per pane the whole-model values window after
    window (``(models, k, windows * signals)``). Read for all the models at once: a few
    numpy calls, not a few per model."""
    size = values.shape[0]
    models = len(plans)
    used = values.shape[1] // models
    by_model = values.reshape(size, models, used)
    head = by_model[:, :, : k * windows].reshape(size, models, k, windows)
    wholes: F64 = np.ascontiguousarray(head.transpose(1, 2, 3, 0)).reshape(
        models, k, windows * size
    )
    if not last:
        return [None] * models, wholes
    every = np.empty((models, size, windows, rows))  # each model's (names, windows, rows)
    every[:, :, :, 0] = head[:, :, k - 1].transpose(1, 0, 2)
    every[:, :, :, 1:] = (
        by_model[:, :, k * windows :].reshape(size, models, windows, rows - 1).transpose(1, 0, 2, 3)
    )
    return [WindowValues(plan, names, every[i]) for i, plan in enumerate(plans)], wholes


def flush_together(pending: list[tuple[ModelStage, _Batch]]) -> None:
    """Flush each stage's batch (:meth:`ModelStage.close_through` with ``defer``), the
    signals of models whose plans share a shape (:meth:`PanePlan.shape
    <monitor.core.panemetrics.PanePlan.shape>`) and whose batches hold as many panes,
    windows and slice rows computed in one :func:`~monitor.core.panemetrics.stacked_plan`
    and read in one :func:`_read_values`: the values of each model's rows are those of
    its own computation, bit for bit, for the numpy calls of one model's."""
    groups: dict[tuple[int, int, int, int, bool, tuple[str, ...]],
                 list[tuple[ModelStage, _Batch, PanePlan]]] = {}  # fmt: skip
    for stage, batch in pending:
        plan = stage._plan()
        shape = plan.shape()
        if shape is None or batch.count is not None:
            stage._flush(batch)
            continue
        model = stage.model
        key = (shape, len(batch.panes), len(model.registry.keys), len(model.windows),
               batch.last, _names(model))  # fmt: skip
        groups.setdefault(key, []).append((stage, batch, plan))
    for (_, k, rows, windows, last, names), members in groups.items():
        if len(members) == 1:
            stage, batch, _ = members[0]
            stage._flush(batch)
            continue
        used = members[0][0]._used(members[0][1])
        plans = [plan for _, _, plan in members]
        stacked = stacked_plan(plans, used)
        sums = np.concatenate([b.sums[:used] for _, b, _ in members])
        values = stacked.compute(sums, None, windows)
        fulls, wholes = _read_values(plans, values, k, windows, rows, last, names)
        for i, (stage, batch, plan) in enumerate(members):
            stage._emit(batch, plan, fulls[i], wholes[i], names)


#: A delta as :func:`_hand_stage` takes it: the delta, its parts by model, its idle topics,
#: whether it is final, whether it read no offset, the models it adds something to, and
#: the parts left out of it (see :meth:`DeltaBook.take_handed
#: <monitor.core.deltas.DeltaBook.take_handed>`; None: none is).
_Given = tuple[PartitionDelta, dict[str, ModelDelta], frozenset[str], bool, bool,
               frozenset[str], "QuietParts | None"]  # fmt: skip


def _busy(delta: PartitionDelta) -> frozenset[str]:
    """The models whose part of ``delta`` adds something (a pane, a counter or a delay):
    those whose record :meth:`ModelStage.apply_part` would find not :func:`_nothing`, their
    counters and delays read as two arrays, not model by model."""
    models = delta.models
    if not models:
        return frozenset()
    counts: F64 = np.asarray([md.counts for md in models], dtype=np.float64)
    delay: F64 = np.asarray([md.delay for md in models], dtype=np.float64)
    added = cast("list[bool]", (counts.any(axis=1) | delay.any(axis=1)).tolist())
    return frozenset(md.model for md, a in zip(models, added, strict=True)
                     if a or md.panes or md.delay_sum)  # fmt: skip


def hand_over(stages: list[ModelStage], deltas: list[PartitionDelta],
              left: Sequence[QuietParts | None] | None = None) -> None:  # fmt: skip
    """Apply ``deltas`` to every stage as :meth:`ModelStage.apply` of each, in the order
    given, with ``advance`` False, does (a process that reads every partition hands a
    poll's deltas over so), stage after stage (each stage's objects are read while they
    are in the processor's cache; the stages share nothing): a final delta (see
    :func:`_hand_stage`) has its row blocks queued and added with every other stage's in
    one pass; any other delta is applied by :meth:`ModelStage.apply_part`, after the blocks
    queued before it. ``left``: of each delta, the parts left out of it (see
    :meth:`DeltaBook.take_handed <monitor.core.deltas.DeltaBook.take_handed>`), each
    applied as if the delta held it: the same as :meth:`ModelStage.apply` of the whole
    delta (:meth:`QuietParts.whole <monitor.core.deltas.QuietParts.whole>`)."""
    merges = RowMerges()
    now = time.time()
    given: list[_Given] = []
    for i, delta in enumerate(deltas):
        end = delta.end
        parts = {md.model: md for md in delta.models}
        quiet = None if left is None else left[i]
        # (the models a delta's parts add to, as stage 1 read them when it left the quiet
        # parts out: every part it holds adds something)
        busy = quiet.busy if quiet is not None and quiet.busy is not None else _busy(delta)
        given.append((delta, parts, frozenset(delta.idle), delta.confirmed == end,
                      delta.base == end, busy, quiet))  # fmt: skip
    for stage in stages:
        _hand_stage(stage, given, now, merges)
    merges.run()


def _hand_stage(stage: ModelStage, given: list[_Given], now: float,
                merges: RowMerges) -> None:  # fmt: skip
    """:func:`hand_over` of the deltas ``given`` to ``stage``: each with the parts of its
    models by name, its idle topics, whether it is final (its ``end`` is the partition's
    durable checkpoint, so nothing of it is kept to undo), whether it read no offset, and
    the models it adds something to; ``now`` the time they are applied. A final delta
    that follows the partition's chain, whose part's panes are all open and hold no raw
    predictions unless the model is in its warmup (and that adds nothing to this model if
    it read no offset: such a delta's record is kept to undo), is taken as
    :meth:`ModelStage.apply_part` (``advance`` False) would, with no piece kept to undo
    it: the chain goes on and the row blocks (and the counters' increments, when they are
    arrays) are queued by :meth:`ModelStage._add_open`, one call for the run of such parts
    (run ``merges`` before the stage's windows are read); a part that adds nothing and leaves the
    partition's waiting counts as they are changes nothing there, and is left out (most
    of a poll's parts when many models share a trickle). Any other delta is given to
    :meth:`ModelStage.apply_part`, after the parts and blocks queued before it. A part
    left out of its delta (by :meth:`DeltaBook.take_handed
    <monitor.core.deltas.DeltaBook.take_handed>`) adds nothing: it is made only where
    it changes something (the stage's waiting counts, or a delta applied whole)."""
    name, chains = stage.name, stage.chains
    progress, idles, released, heard = stage.progress, stage.idle, stage.released, stage.heard
    waiting = stage.waiting
    opened: list[tuple[PartitionDelta, ModelDelta]] = []  # parts for _add_open, in order
    for delta, parts, idle, final, quiet, busy, left in given:
        mine = parts.get(name)
        held = None  # the waiting counts of a part left out of the delta
        if mine is None and left is not None:
            held = left.waiting.get(name)
        number = delta.number
        chain = chains.get(number)
        session, seq = delta.session, delta.seq
        fits = (
            final and chain is not None and not chain.history and delta.base == chain.end
            and (seq == chain.seq + 1 if session == chain.session
                 else session not in chain.retired)
            and not (quiet and name in busy)
        )  # fmt: skip
        if fits and mine is not None:
            closed = stage.closed_upto
            low = -math.inf if closed is None else closed
            for pd in mine.panes:  # (a loop: no generator made per part)
                # (raw predictions of an open pane go to the warmup buffer: taken so too)
                if pd.pane < low or (pd.warm and not stage.model.warmup_target):
                    fits = False
                    break
        if not fits:
            if opened:  # the parts before it first, as they came
                stage._add_open(opened, merges)
                opened = []
            merges.run()
            if held is not None:
                assert left is not None
                mine = left.part(name)
            stage.apply_part(delta, mine, advance=False)
            continue
        assert chain is not None
        if session != chain.session:
            if chain.session is not None:
                chain.retired.add(chain.session)
            chain.session = session
        chain.seq = seq
        if mine is not None and (
            name in busy or waiting.get(number) != (mine.pending, mine.early)
        ):
            opened.append((delta, mine))
        elif held is not None and waiting.get(number) != held:
            assert left is not None
            opened.append((delta, left.part(name)))
        chain.end = delta.end
        progress[number] = delta.progress
        idles[number] = idle
        released.discard(number)
        heard[number] = now
    if opened:
        stage._add_open(opened, merges)
