"""Every model's stage 2 fed a poll's deltas together (``model_stage.hand_over``, as one
process feeds them) ends bit for bit where the same stages fed each delta by
``ModelStage.apply`` end: windows, counters, error and warmup buffers, chains and their
undo history, signals. Final deltas (checkpointed before they are taken) and others, new
sessions, stale deltas delivered again, late panes, raw warmup predictions, a stage
registry that numbers the slices otherwise and one that folds some of them together;
with the compiled kernels and with the numpy code."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from monitor.core.deltas import DeltaBook, QuietParts
from monitor.core.engine import Engine
from monitor.core.model_stage import ModelStage, hand_over
from monitor.core.partials import PartitionDelta
from monitor.core.warmup_buffer import WarmChunk, concat
from monitor.core.windows import ring_array
from tests.core.test_model_stage import PARTS, TOPICS, config, polls, stream

pytestmark = pytest.mark.usefixtures("kernels")


def _state(stage: ModelStage) -> Any:
    """Everything a stage holds that its inputs change (sessions are uuids: compared by
    where they stand in the chain)."""
    w = stage.windows
    chains = {
        n: (c.end, c.seq, len(c.retired), [
            (a.base, a.end, a.progress_before, sorted(a.idle_before), a.counts.tobytes(),
             a.delay.tobytes(), a.delay_sum, a.waiting_before,
             [(p.pane, p.plain.tobytes(), [d.tobytes() for d in p.decay], p.errors,
               None if p.warm is None else len(p.warm)) for p in a.pieces])
            for a in c.history])
        for n, c in stage.chains.items()
    }  # fmt: skip
    return (
        {p: a.tobytes() for p, a in w.open.items()},
        {p: [a.tobytes() for a in arrs] for p, arrs in w.open_decay.items()},
        w.cum.tobytes(), [a.tobytes() for a in w.sliding], [a.tobytes() for a in w.decay],
        {p: ring_array(a, w.rows, w.width).tobytes() for p, a in w.ring.items()},
        stage.counts.tobytes(), stage.delay.tobytes(), stage.delay_sum, stage.error_panes,
        {p: {n: _warm_columns(chunks) for n, chunks in parts.items()}
         for p, parts in stage.warm.items()},
        stage.waiting, stage.progress, stage.idle, stage.released, stage.stale, chains,
        list(stage.model.registry.keys), dict(stage.model.registry.folded),
        stage.watermark, stage.closed_upto,
        [(s.pane_end, repr(s.signals)) for s in stage.signals_out],
    )  # fmt: skip


def _warm_columns(chunks: list[WarmChunk]) -> Any:
    """A partition's raw predictions of a pane in the warmup buffer, every column."""
    c = concat(chunks)
    return (c.ts.tobytes(), c.slices.tobytes(), c.codes.tobytes(), c.numbers.tobytes(),
            repr(c.others), repr(c.predictions), c.scores.tobytes())  # fmt: skip


def handed_alike(each: dict[str, ModelStage], together: dict[str, ModelStage],
                 deltas: list[PartitionDelta], where: Any = None,
                 left: list[QuietParts | None] | None = None) -> None:  # fmt: skip
    """Feed ``deltas`` to the stages ``each`` one by one (``apply``) and to their copies
    ``together`` at once (``hand_over``), close what the clock passed in both, and check
    that both hold the same (``where``: said when they do not). ``left``: the parts left
    out of each delta (``DeltaBook.take_handed``), handed over so to ``together``; the
    stages ``each`` are given the whole delta."""
    for i, delta in enumerate(deltas):
        quiet = None if left is None else left[i]
        whole = delta if quiet is None else quiet.whole(delta)
        for stage in each.values():
            stage.apply(whole, advance=False)
    hand_over(list(together.values()), deltas, left)
    for name, stage in each.items():
        stage.advance()
        together[name].advance()
        assert _state(together[name]) == _state(stage), (where, name)


@pytest.mark.parametrize("registry", ["same", "reordered", "folded"])
@pytest.mark.parametrize("warmup", [0, 300])
def test_deltas_handed_over_together_equal_each_applied(registry: str, warmup: int) -> None:
    cfg = config(warmup=warmup)
    rng = random.Random(f"{registry}{warmup}")
    engine = Engine(cfg)
    engine.track([(t, p) for t in TOPICS for p in range(PARTS)])
    book = DeltaBook(engine)
    each = {m.name: ModelStage(cfg, m.name, PARTS) for m in cfg.models}
    for stage in [each["m"]]:  # (the model with a segment)
        if registry == "reordered":  # stage 2 met the slices in another order
            for value in "cba":
                stage.model.registry.lookup("segment:region", value)
        elif registry == "folded":  # stage 2 folds slices that stage 1 keeps apart
            stage.model.registry.caps["segment:region"] = 1
    together = copy.deepcopy(each)
    sent: list[PartitionDelta] = []
    kinds = {"final": 0, "other": 0}
    undoable = 0  # polls after which some stage kept pieces to undo
    quiet = 0  # parts left out of their deltas (take_handed)
    for i, batch in enumerate(polls(stream(3000, 7, shuffle=0.03), 7)):
        for number in sorted(engine.partitions):
            if rng.random() < 0.05:  # a new session, going on from where the chain is
                book.restart(number)
        engine.process(batch)
        engine.drain_signals()
        deltas: list[PartitionDelta] = []
        left: list[QuietParts | None] = []
        for number in sorted(engine.partitions):
            final = rng.random() < 0.8
            if final:  # as one process: the delta ends at a durable checkpoint
                book.checkpointed(number, engine.partitions[number].offsets)
            kinds["final" if final else "other"] += 1
            if i % 2:  # the parts that add nothing left out, as Pipeline takes them
                delta, parts = book.take_handed(number)
                quiet += len(parts.waiting)
            else:
                delta, parts = book.take(number, arrays=True), None
            deltas.append(delta)
            left.append(parts)
        if sent and rng.random() < 0.1:  # an old delta again: stale
            at = rng.randrange(len(deltas) + 1)
            deltas.insert(at, rng.choice(sent))
            left.insert(at, None)
        sent += [d if q is None else q.whole(d) for d, q in zip(deltas, left, strict=True)]
        handed_alike(each, together, deltas, i, left)
        undoable += any(a.pieces for s in each.values() for c in s.chains.values()
                        for a in c.history)  # fmt: skip
    assert kinds["final"] > 50 and kinds["other"] > 10 and quiet, (kinds, quiet)
    assert each["m"].panes_closed > 50 and each["m"].stale
    assert undoable > 5
    if warmup:
        assert each["m"].model.profile_pane is not None
