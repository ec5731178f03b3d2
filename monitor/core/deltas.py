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
from operator import itemgetter

import numpy as np

from monitor.core.engine import LATE, Engine
from monitor.core.join import EarlyLabels
from monitor.core.partials import FORMAT, ModelDelta, PartitionDelta

__all__ = ["DeltaBook"]


class DeltaBook:
    """What stage 1 published last for each input partition of ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: partition -> (offsets, counts per model, delay per model, delay sum per model)
        self.published: dict[int, tuple[dict[str, int], list[list[float]], object, object]] = {}
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
        self.published[number] = (
            dict(state.offsets),
            [list(c) for c in state.counts],
            state.delay.copy(),
            state.delay_sum.copy(),
        )
        self.confirmed[number] = dict(state.offsets)
        self.engine.ledgers.pop(number, None)

    def checkpointed(self, number: int, offsets: dict[str, int]) -> None:
        """The partition's checkpoint at ``offsets`` is durable (say so in the next delta)."""
        self.confirmed[number] = dict(offsets)

    def take(self, number: int, idle: frozenset[str] = frozenset()) -> PartitionDelta:
        """Everything partition ``number`` added since its last delta, as the next one."""
        engine = self.engine
        state = engine.partition(number)
        ledger = engine.ledgers[number]
        n_models = len(engine.models)
        base, counts, delay, delay_sum = self.published.get(
            number,
            (
                {},
                [[0.0] * len(state.counts[0]) for _ in range(n_models)],
                np.zeros_like(state.delay),
                np.zeros_like(state.delay_sum),
            ),
        )
        # early labels per model index (-1: naming none), as the join keeps them counted
        early = state.join.early
        by_model = (
            early.by_model
            if isinstance(early, EarlyLabels)
            else Counter(map(itemgetter(2), early.values()))
        )
        models = []
        for model in engine.models:
            m = model.index
            panes = ledger.take(m)
            d_counts = [a - b for a, b in zip(state.counts[m], counts[m], strict=True)]
            d_counts[LATE] = 0.0  # stage 2 counts what is late by its own clock
            d_delay = (state.delay[m] - np.asarray(delay)[m]).tolist()
            d_sum = float(state.delay_sum[m] - np.asarray(delay_sum)[m])
            models.append(
                ModelDelta(
                    model.name,
                    model.layout.width,
                    list(model.registry.keys),
                    panes,
                    d_counts,
                    d_delay,
                    d_sum,
                    dict(model.registry.folded),
                    len(state.join.pending[m]),
                    by_model[-1] + by_model[m],
                )
            )
        end = dict(state.offsets)
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
        self.published[number] = (
            end,
            [list(c) for c in state.counts],
            state.delay.copy(),
            state.delay_sum.copy(),
        )
        return delta
