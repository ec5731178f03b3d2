"""One process's two stages (:class:`~monitor.core.pipeline.Pipeline`: stage 1 handing
its pane deltas to every model's stage 2 by a direct call) give what one engine holding
every partition gives: the same signals at every pane close, the same report and
summary, with a warmup reference built by stage 2."""

from __future__ import annotations

import math
from typing import Any

import pytest

from monitor.core.alerting import Alerting
from monitor.core.engine import Engine, PaneSignals
from monitor.core.pipeline import Pipeline
from tests.core.test_model_stage import PARTS, TOPICS, config, oracle, polls, same, stream


def piped(cfg: Any, batches: Any, keep: list[Pipeline] | None = None,
          ) -> dict[str, list[PaneSignals]]:
    core = Pipeline(cfg)
    if keep is not None:
        keep.append(core)
    core.track([(t, p) for t in TOPICS for p in range(PARTS)])
    out: dict[str, list[PaneSignals]] = {"m": [], "r": []}
    for batch in batches:
        core.process(batch)
        for s in core.drain_signals():
            out[s.model].append(s)
    return out


def close(a: Any, b: Any, where: str = "") -> None:
    """``a`` equals ``b`` to the last few ulps, recursively (NaN equals NaN)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            close(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{where}/{i}")
    elif isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            assert math.isnan(b), where
        else:
            assert b == pytest.approx(a, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


@pytest.mark.parametrize(("seed", "warmup"), [(1, 0), (2, 0), (21, 800)])
def test_one_process_equals_one_engine(seed: int, warmup: int) -> None:
    cfg = config(warmup=warmup)
    batches = polls(stream(4000, seed, shuffle=0.02), seed)
    engines: list[Engine] = []
    want = oracle(cfg, batches, engines)
    cores: list[Pipeline] = []
    got = piped(cfg, batches, cores)
    for name in want:
        same(want[name], got[name])
    engine, core = engines[0], cores[0]
    assert core.panes_closed == engine.panes_closed
    assert core.watermark == engine.watermark
    one, two = Alerting(cfg, engine.models), Alerting(cfg, core.models)
    one.feed(want["m"] + want["r"])
    two.feed(sorted(got["m"] + got["r"], key=lambda s: s.pane_end))
    theirs, mine = one.fill(engine.report()), two.fill(core.report())
    assert mine.rejects == theirs.rejects
    for name in want:
        a, b = theirs.models[name], mine.models[name]
        close(a.counts, b.counts, name)
        assert a.label_delay_buckets == pytest.approx(b.label_delay_buckets)
        close([(s.dimension, s.value, s.counters, s.windows) for s in a.slices],
              [(s.dimension, s.value, s.counters, s.windows) for s in b.slices], name)
        assert [x.transitions for x in a.alerts] == [x.transitions for x in b.alerts]
    close(engine.summary(), core.summary())
    e_final, c_final = engine.flushed(keep_signals=True), core.flushed(keep_signals=True)
    e_sig, c_sig = e_final.drain_signals(), c_final.drain_signals()
    assert [(s.model, s.pane_end) for s in e_sig] == [(s.model, s.pane_end) for s in c_sig]
    for a, b in zip(e_sig, c_sig, strict=True):
        close(a.signals, b.signals, f"{a.model}@{a.pane_end}")
    if warmup:
        assert core.models[0].profile_pane == engine.models[0].profile_pane
        assert core.engine.models[0].profile is not None  # stage 1 learnt it
