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

import numpy as np
import numpy.typing as npt

from monitor.core.counts import COUNT_NAMES
from monitor.core.engine import LATE, Engine, PartitionState
from monitor.core.join import EarlyLabels
from monitor.core.partials import FORMAT, ModelDelta, PartitionDelta

__all__ = ["DeltaBook"]

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
        # arrays, which nothing else holds, as its pane blocks are arrays)
        counts: list[list[float]] = list(d_counts) if arrays else d_counts.tolist()
        delays: list[list[float]] = list(d_delay) if arrays else d_delay.tolist()
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
        for model, taken in zip(engine.models, panes, strict=True):
            m = model.index
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
        return delta


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
