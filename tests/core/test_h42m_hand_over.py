"""The hand-over of a poll's deltas stage after stage (``model_stage.hand_over``): a
delta handed over with its counters as arrays (``HandedPartitionDelta``) has them added
to every stage that took it on the usual path at once, after the blocks; stages that took
only some of the poll's deltas so (a new session, a stale delta, one not final) add those
only; deltas from the wire (no arrays) are taken one by one. Every case ends bit for bit
where ``ModelStage.apply`` of each delta ends; a handed delta holds the same values as the
wire's, its counters' rows views of its arrays, and its ``base`` is the previous ``end``."""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import pytest

from monitor.core.deltas import DeltaBook
from monitor.core.engine import Engine
from monitor.core.model_stage import ModelStage, _add_counts, hand_over
from monitor.core.partials import (
    HandedPartitionDelta,
    PartitionDelta,
    decode_delta,
    encode_delta,
)
from tests.core.test_hand_over import _state
from tests.core.test_model_stage import PARTS, TOPICS, config, polls, stream

pytestmark = pytest.mark.usefixtures("kernels")


def _run(wire: bool, mixed: bool) -> tuple[int, int]:
    """Feed a stream's polls to two sets of stages, one by ``hand_over`` and one delta by
    delta, and compare them after each poll; return how many stages took every delta
    of a poll on the usual path and how many only some of them."""
    cfg = config()
    rng = random.Random(f"{wire}{mixed}")
    engine = Engine(cfg)
    engine.track([(t, p) for t in TOPICS for p in range(PARTS)])
    book = DeltaBook(engine)
    each = {m.name: ModelStage(cfg, m.name, PARTS) for m in cfg.models}
    together = copy.deepcopy(each)
    sent: list[PartitionDelta] = []
    seen: list[tuple[int, int]] = []  # (deltas whose counters hand_over added, deltas)
    take = ModelStage._hand_over

    def counted(stage: ModelStage, prepared: Any, now: float, merges: Any) -> list[int]:
        out = take(stage, prepared, now, merges)
        seen.append((len(out), len(prepared)))
        return out

    ModelStage._hand_over = counted  # type: ignore[method-assign]
    try:
        return _feed(engine, book, each, together, sent, rng, wire, mixed, seen)
    finally:
        ModelStage._hand_over = take  # type: ignore[method-assign]


def _feed(engine: Engine, book: DeltaBook, each: dict[str, ModelStage],
          together: dict[str, ModelStage], sent: list[PartitionDelta], rng: random.Random,
          wire: bool, mixed: bool, seen: list[tuple[int, int]]) -> tuple[int, int]:  # fmt: skip
    """:func:`_run`'s polls."""
    for i, batch in enumerate(polls(stream(2500, 11, shuffle=0.03), 7)):
        engine.process(batch)
        engine.drain_signals()
        deltas = []
        for number in sorted(engine.partitions):
            if mixed and rng.random() < 0.05:
                book.restart(number)
            if not mixed or rng.random() < 0.8:
                book.checkpointed(number, engine.partitions[number].offsets)
            delta = book.take(number, arrays=not wire)
            deltas.append(decode_delta(encode_delta(delta)) if wire else delta)
        if mixed and sent and rng.random() < 0.2:  # an old delta again: stale
            deltas.insert(rng.randrange(len(deltas) + 1), rng.choice(sent))
        sent += deltas
        for delta in deltas:
            for stage in each.values():
                stage.apply(delta, advance=False)
        hand_over(list(together.values()), deltas)
        for name, stage in each.items():
            stage.advance()
            together[name].advance()
            assert _state(together[name]) == _state(stage), (i, name)
    whole = sum(n == k for n, k in seen)
    some = sum(0 < n < k for n, k in seen)
    return whole, some


@pytest.mark.parametrize("mixed", [False, True])
def test_counters_added_together_equal_each_delta_applied(mixed: bool) -> None:
    whole, some = _run(wire=False, mixed=mixed)
    if mixed:  # new sessions, stale and non-final deltas: most polls' deltas in part
        assert some > 5 and whole >= 1
    else:
        assert whole > 20


def test_wire_deltas_handed_over_equal_each_applied() -> None:
    whole, some = _run(wire=True, mixed=True)
    assert whole + some == 0  # no arrays: every counter added by its own delta


def test_a_handed_delta_holds_its_counters_as_arrays() -> None:
    cfg = config()
    engine = Engine(cfg)
    engine.track([(t, p) for t in TOPICS for p in range(PARTS)])
    book = DeltaBook(engine)
    twin = None
    for batch in polls(stream(800, 5, shuffle=0.0), 7):
        engine.process(batch)
        for number in sorted(engine.partitions):
            twin = copy.deepcopy(book)
            handed = book.take(number, arrays=True)
            wired = twin.take(number)
            assert type(handed) is HandedPartitionDelta and type(wired) is PartitionDelta
            assert handed.counts_rows is not None and handed.delay_rows is not None
            assert handed.counts_rows.tolist() == [md.counts for md in wired.models]
            assert handed.delay_rows.tolist() == [md.delay for md in wired.models]
            for i, md in enumerate(handed.models):
                assert isinstance(md.counts, np.ndarray) and md.counts.base is handed.counts_rows
                assert np.array_equal(md.counts, handed.counts_rows[i])
                assert np.array_equal(md.delay, handed.delay_rows[i])
            nxt = book.take(number, arrays=True)
            assert nxt.base is handed.end  # the chain's point itself, not a copy
    assert twin is not None


def test_add_counts_of_some_deltas_adds_those_rows_only() -> None:
    cfg = config()
    stages = [ModelStage(cfg, m.name, PARTS) for m in cfg.models]
    names = [s.name for s in stages]
    rng = np.random.default_rng(4)
    deltas = []
    for k in range(3):
        counts = rng.integers(0, 50, (len(names), len(stages[0].counts))).astype(np.float64)
        delay = rng.integers(0, 9, (len(names), len(stages[0].delay))).astype(np.float64)
        deltas.append(HandedPartitionDelta(1, k, "s", 1, {}, {}, {}, [], None, [],
                                           counts_rows=counts, delay_rows=delay))  # fmt: skip
    taken = [[0, 1, 2], [1]][: len(stages)]
    _add_counts(list(zip(stages, taken, strict=False)), names, deltas)
    for stage, ks in zip(stages, taken, strict=False):
        r = names.index(stage.name)
        want_c = np.zeros_like(stage.counts)
        want_d = np.zeros_like(stage.delay)
        for k in ks:
            want_c += deltas[k].counts_rows[r]  # type: ignore[index]
            want_d += deltas[k].delay_rows[r]  # type: ignore[index]
        assert stage.counts.tobytes() == want_c.tobytes()
        assert stage.delay.tobytes() == want_d.tobytes()
