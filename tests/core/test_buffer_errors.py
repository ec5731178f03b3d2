"""A poll's errors of many models' joined pairs go to the ledgers
(``Engine._buffer_errors``): each (model, pane, partition) group's errors and event times
in input order, after what the ledger held, as ``DeltaLedger.add_errors`` of each group
would put them; panes that hold sums already keep them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from monitor.core.engine import Engine
from monitor.core.fastpath import Chunk
from monitor.core.partials import DeltaLedger
from monitor.core.tasks.regression import RegressionTask

PANE = 10.0


def _pairs(rng: np.random.Generator, n: int) -> Chunk:
    ts = 1000.0 + rng.random(n) * 50.0  # several panes
    return Chunk(np.arange(n), rng.integers(0, 3, size=n), ts, rng.normal(size=n),
                 rng.random(n), np.zeros((n, 2), dtype=np.int64), label=rng.normal(size=n),
                 delay=rng.random(n))  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_each_groups_errors_in_input_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    task = RegressionTask()
    models = [SimpleNamespace(index=i, layout=SimpleNamespace(kind=task),
                              registry=SimpleNamespace(keys=[()])) for i in (0, 2, 3)]  # fmt: skip
    outcomes = [(m, _pairs(rng, int(rng.integers(1, 40)))) for m in models]

    def ledgers() -> dict[int, DeltaLedger]:
        out = {p: DeltaLedger(PANE, [4] * 4, [[0.1]] * 4) for p in range(3)}
        out[1].add_sums(2, 102, np.ones((1, 4)), [np.ones((1, 4))])  # a pane with sums
        out[1].add_errors(2, 102, 1, [0.5], [9.0])  # and errors before
        return out

    engine = SimpleNamespace(ledgers=ledgers(), pane=PANE)
    Engine._buffer_errors(engine, outcomes)  # type: ignore[arg-type]

    want = ledgers()
    for model, pairs in outcomes:
        err = task.errors(pairs.pred, pairs.label)
        pane = np.floor(pairs.ts / PANE).astype(np.int64)
        for i in range(len(pairs.ts)):
            p = int(pairs.part[i])
            want[p].add_errors(model.index, int(pane[i]), 1, [float(pairs.ts[i])],
                               [float(err[i])])  # fmt: skip
    for p, ledger in want.items():
        got = engine.ledgers[p]
        for m in range(4):
            assert sorted(got.panes[m]) == sorted(ledger.panes[m])
            for pane, acc in ledger.panes[m].items():
                mine = got.panes[m][pane]
                assert mine.err_ts == acc.err_ts
                assert mine.err == acc.err
                assert mine.rows.tolist() == acc.rows.tolist()
                assert np.array_equal(mine.plain, acc.plain)
