"""Stage 1's bookkeeping of the chain of pane deltas it publishes, per input partition.

:class:`DeltaBook` turns what an :class:`~monitor.core.engine.Engine` added to a
partition since the last delta into a :class:`~monitor.core.partials.PartitionDelta`, with
the counters' increments, the offsets at both ends and the partition's event-time
progress.

The chain's contract (see :mod:`monitor.core.partials`): take a delta right before every
checkpoint of the partition, so that every checkpoint is the ``end`` of a published
delta, and after a restore start the chain again at the restored offsets
(:meth:`DeltaBook.restart`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from itertools import chain
from operator import itemgetter
from typing import Any, cast

import msgspec
import numpy as np
import numpy.typing as npt

from monitor.core.counts import COUNT_NAMES
from monitor.core.engine import LATE, Engine, PartitionState
from monitor.core.join import EarlyLabels
from monitor.core.partials import FORMAT, ModelDelta, PartitionDelta

__all__ = ["DeltaBook", "QuietParts"]

F64 = npt.NDArray[np.float64]


class DeltaBook:
    """What stage 1 published last for each input partition of ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: partition -> (offsets, counts per model, delay per model, delay sum per model)
        self.published: dict[int, tuple[dict[str, int], F64, F64, F64]] = {}
        self.confirmed: dict[int, dict[str, int]] = {}
        self.sessions: dict[int, tuple[str, int]] = {}  # partition -> (session, last seq)

    def restart(self, number: int) -> None:
        """The partition's state was just installed (restored or handed over): its chain
        goes on from the offsets and counters that state reflects, a checkpoint."""
        self.sessions.pop(number, None)
        state = self.engine.partitions.get(number)
        if state is None:
            self.published.pop(number, None)
            self.confirmed.pop(number, None)
            return
        self.published[number] = _published(state)
        self.confirmed[number] = dict(state.offsets)
        self.engine.ledgers.pop(number, None)

    def checkpointed(self, number: int, offsets: dict[str, int]) -> None:
        """The partition's checkpoint at ``offsets`` is durable (say so in the next delta)."""
        self.confirmed[number] = dict(offsets)

    def take(self, number: int, idle: frozenset[str] = frozenset(),
             arrays: bool = False) -> PartitionDelta:  # fmt: skip
        """Everything partition ``number`` added since its last delta, as the next one
        (``arrays``: a delta handed over in the process, never encoded, whose pane blocks
        are the arrays themselves, see :meth:`DeltaLedger.take
        <monitor.core.partials.DeltaLedger.take>`)."""
        return self._take(number, idle, arrays, None)

    def take_handed(self, number: int) -> tuple[PartitionDelta, QuietParts]:
        """:meth:`take` of a delta handed over in the process (``arrays``) with the parts
        of the models it adds nothing to left out of it (no pane, counter, delay or delay
        sum: most of a poll's parts when many models share a trickle; with one model,
        nothing is left out), described by the :class:`QuietParts` given with it, which
        makes any of them on demand: the delta :meth:`take` would give is the two together
        (:meth:`QuietParts.whole`)."""
        left = QuietParts(self.engine)
        return self._take(number, frozenset(), True, left), left

    def _take(self, number: int, idle: frozenset[str], arrays: bool,
              left: QuietParts | None) -> PartitionDelta:  # fmt: skip
        """:meth:`take`, and with ``left`` :meth:`take_handed` (whose quiet parts ``left``
        is given)."""
        engine = self.engine
        state = engine.partition(number)
        ledger = engine.ledgers[number]
        published = self.published.get(number)
        now = _published(state)
        # every model's increments in one subtraction per array (the same values as one
        # model's at a time), read as lists once
        if published is None:
            base: dict[str, int] = {}
            d_counts, d_delay, d_sum = now[1].copy(), now[2], now[3]
        else:
            base = published[0]
            d_counts = now[1] - published[1]
            d_delay, d_sum = now[2] - published[2], now[3] - published[3]
        d_counts[:, LATE : LATE + 1] = 0.0  # stage 2 counts what is late by its own clock
        # (handed over in the process: each model's counts and delays as rows of these
        # arrays, which nothing else holds, as its pane blocks are arrays; else lists)
        counts: Any = d_counts if arrays else d_counts.tolist()
        delays: Any = d_delay if arrays else d_delay.tolist()
        sums = d_sum.tolist()
        # early labels per model index (-1: naming none), as the join keeps them counted
        early = state.join.early
        by_model = (
            early.by_model
            if isinstance(early, EarlyLabels)
            else Counter(map(itemgetter(2), early.values()))
        )
        unnamed = by_model.get(-1, 0)
        pending = state.join.pending
        models = []
        panes = ledger.take_all(arrays, [model.index for model in engine.models])
        if left is not None and len(engine.models) > 1:
            # the models this delta adds a counter or delay to (one model's part is made
            # whatever it holds: its few numpy calls a partition would cost more)
            adds = cast("list[bool]", (d_counts.any(axis=1) | d_delay.any(axis=1)
                                       | (d_sum != 0)).tolist())  # fmt: skip
            left.hold(d_counts, d_delay, sums)
            busy: list[str] = []  # the models of the parts in the delta: each adds something
        else:
            left = None
        for model, taken in zip(engine.models, panes, strict=True):
            m = model.index
            if left is not None and not taken and not adds[m]:  # a quiet part: left out
                left.waiting[model.name] = (len(pending[m]), unnamed + by_model.get(m, 0))
                continue
            if left is not None:
                busy.append(model.name)
            registry = model.registry
            models.append(
                ModelDelta(
                    model.name,
                    model.layout.width,
                    list(registry.keys),
                    taken,
                    counts[m],
                    delays[m],
                    sums[m],
                    dict(registry.folded),
                    len(pending[m]),
                    unnamed + by_model.get(m, 0),
                )
            )
        end = now[0]
        session, seq = self.sessions.get(number) or (uuid.uuid4().hex, 0)
        self.sessions[number] = (session, seq + 1)
        delta = PartitionDelta(
            FORMAT,
            number,
            session,
            seq + 1,
            dict(base),
            end,
            dict(state.max_ts),
            sorted(idle),
            self.confirmed.get(number),
            models,
        )
        self.published[number] = (end, *now[1:])
        if left is not None:
            left.busy = frozenset(busy)
        return delta


class QuietParts:
    """The parts of a delta handed over in the process (:meth:`DeltaBook.take_handed`)
    that add nothing to their model, left out of it: each one's counts of waiting events
    (``waiting``, by model name: what a stage 2 compares with its own), and the part
    itself made on demand (:meth:`part`), as :meth:`DeltaBook.take` would have made it;
    ``busy``, the models whose part is in the delta (each adds something), when parts
    were left out. Made right before the hand-over: the models' registries are read when
    a part is made, and stage 1 changes nothing of them in between."""

    __slots__ = ("_engine", "_held", "busy", "waiting")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        #: model name -> (predictions waiting for a label, labels waiting) at the end
        self.waiting: dict[str, tuple[int, int]] = {}
        self._held: tuple[F64, F64, list[float]] | None = None
        #: The models whose part the delta holds, all of which add something (a pane, a
        #: counter, a delay or a delay sum), read off stage 1's arrays when the quiet parts
        #: were left out; None: nothing was left out (one model), whose part is read.
        self.busy: frozenset[str] | None = None

    def hold(self, counts: F64, delay: F64, sums: list[float]) -> None:
        """Keep the delta's increments (a row of each model's), what its parts are made of."""
        self._held = (counts, delay, sums)

    def part(self, name: str) -> ModelDelta:
        """The left-out part of model ``name``."""
        assert self._held is not None
        counts, delay, sums = self._held
        model = self._engine.by_name[name]
        m = model.index
        registry = model.registry
        pending, early = self.waiting[name]
        return ModelDelta(model.name, model.layout.width, list(registry.keys), [], counts[m],
                          delay[m], sums[m], dict(registry.folded), pending, early)  # fmt: skip

    def whole(self, delta: PartitionDelta) -> PartitionDelta:
        """``delta`` with its left-out parts in it, in the models' order: the delta
        :meth:`DeltaBook.take` gives."""
        given = {md.model: md for md in delta.models}
        models = [given[model.name] if model.name in given else self.part(model.name)
                  for model in self._engine.models]  # fmt: skip
        return msgspec.structs.replace(delta, models=models)


def _published(state: PartitionState) -> tuple[dict[str, int], F64, F64, F64]:
    """What a partition's state reflects, as a delta's end: its offsets, counts per model,
    label-delay histogram per model and delay sum per model (copies)."""
    counts = state.counts  # one list of COUNT_NAMES floats per model
    flat = np.fromiter(chain.from_iterable(counts), np.float64, len(counts) * len(COUNT_NAMES))
    return (
        dict(state.offsets),
        flat.reshape(len(counts), len(COUNT_NAMES)),
        state.delay.copy(),
        state.delay_sum.copy(),
    )
