"""Deltas of a partition that read nothing since the last one (a quiet partition, a poll
that held none of its messages): handed over together (``model_stage.hand_over``) they end
where :meth:`ModelStage.apply` of each ends, bit for bit, also when stage 1 evicted
waiting predictions without reading an offset; and a stage keeps no record of them to
undo, so a partition that stays quiet does not grow its chain's history poll after poll
(it did: a record per model per poll)."""

from __future__ import annotations

import copy
import math

import pytest

from monitor.core.deltas import DeltaBook, QuietParts
from monitor.core.engine import Engine
from monitor.core.model_stage import ModelStage
from monitor.core.partials import PartitionDelta
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from tests.core.test_hand_over import handed_alike
from tests.core.test_model_stage import PARTS, TOPICS, config, polls, stream

pytestmark = pytest.mark.usefixtures("kernels")


def _only(batch: list[Message], parts: set[int]) -> list[Message]:
    return [m for m in batch if m.partition in parts]


def test_quiet_deltas_handed_over_together_equal_each_applied() -> None:
    cfg = config()
    engine = Engine(cfg)
    engine.track([(t, p) for t in TOPICS for p in range(PARTS)])
    book = DeltaBook(engine)
    each = {m.name: ModelStage(cfg, m.name, PARTS) for m in cfg.models}
    together = copy.deepcopy(each)
    quiet = evicted = left_out = 0
    left: list[QuietParts | None] = []

    def take() -> list[PartitionDelta]:
        """A poll's deltas, every other one with its quiet parts left out (as Pipeline
        takes them): ``left`` holds those parts, and ``quiet.whole`` gives each whole."""
        nonlocal left_out
        deltas, left[:] = [], []
        for number in sorted(engine.partitions):
            book.checkpointed(number, engine.partitions[number].offsets)
            if number % 2:
                delta, parts = book.take_handed(number)
                left_out += len(parts.waiting)
                deltas.append(delta)
                left.append(parts)
            else:
                deltas.append(book.take(number, arrays=True))
                left.append(None)
        return deltas

    def whole(deltas: list[PartitionDelta]) -> list[PartitionDelta]:
        return [d if q is None else q.whole(d) for d, q in zip(deltas, left, strict=True)]

    # Polls that hold only some partitions' messages (the others' deltas read nothing),
    # and polls that hold nothing.
    for i, batch in enumerate(polls(stream(2000, 11), 3)):
        parts = {i % PARTS} if i % 3 else set(range(PARTS))
        for held in (_only(batch, parts), []):
            engine.process(held)
            engine.drain_signals()
            deltas = take()
            quiet += sum(d.base == d.end for d in deltas)
            handed_alike(each, together, deltas, i, left)
    # Then the clock passes every label's ttl: stage 1 evicts the predictions still
    # waiting, reading no offset (deltas that read nothing but add counts).
    last = max(s.closed_upto or 0 for s in each.values())
    for step in range(1, 4):
        engine.close_through(last + step * 40)
        engine.drain_signals()
        deltas = take()
        evicted += sum(d.base == d.end and any(any(md.counts) for md in d.models)
                       for d in whole(deltas))  # fmt: skip
        handed_alike(each, together, deltas, step, left)
    assert quiet > 50 and evicted and left_out > 50, (quiet, evicted, left_out)


def test_a_quiet_partition_keeps_no_history() -> None:
    pipeline = Pipeline(config())
    pipeline.track([(t, p) for t in TOPICS for p in range(PARTS)])
    for i, batch in enumerate(polls(stream(1500, 5), 5)):
        pipeline.process(batch if i < 3 else _only(batch, {0, 1}))  # then 2 is quiet
        pipeline.drain_signals()
    for _ in range(200):  # and then nothing arrives
        pipeline.process([])
    for stage in pipeline.stages.values():
        assert {n: len(c.history) for n, c in stage.chains.items()} == {0: 0, 1: 0, 2: 0}
    assert math.isfinite(pipeline.engine.watermark)
