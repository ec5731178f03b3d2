"""Engine._scatter of every model of a poll at once leaves in the ledgers bit for bit
what scattering one model at a time leaves: models with and without their drift profile
yet (terms of two widths), segments, polls of many panes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.core.engine import Engine
from monitor.core.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import benchlib


def _one_at_a_time(engine: Engine) -> None:
    """Make ``engine`` scatter each model's terms by a call of its own."""
    merged = engine._scatter

    def each(items: Any) -> None:
        for item in items:
            merged([item])

    engine._scatter = each  # type: ignore[method-assign]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit (NaN as NaN, -0.0 as -0.0)."""
    same = np.array_equal(a, b, equal_nan=True)
    return bool(same and np.array_equal(np.signbit(a), np.signbit(b)))


def _wide(block: np.ndarray, cols: np.ndarray | None, width: int) -> np.ndarray:
    """A ledger pane's block of the columns ``cols`` (None: every column) spread over the
    row width: a call may keep a pane's sums sparse or whole by the density of its groups,
    and the content, not the form, must agree."""
    if cols is None:
        return block
    out = np.zeros((block.shape[0], width))
    out[:, cols] = block
    return out


@pytest.mark.parametrize(("models", "segments"), [(7, 0), (5, 1)])
def test_scattering_models_at_once_equals_one_at_a_time(models: int, segments: int) -> None:
    cfg = benchlib.config(models, features=3, segments=segments, windows=3, lateness="10s",
                          extra={"reference_warmup": 40})  # fmt: skip
    polls = benchlib.batches(benchlib.stream(3_000, models=models, features=3,
                                             segments=segments), size=700)  # fmt: skip
    merged, single = Engine(cfg), Engine(cfg)
    _one_at_a_time(single)
    for engine in (merged, single):
        engine.track(benchlib.all_partitions())
    for poll in polls:
        merged.process(poll)
        single.process(poll)
        assert merged.ledgers.keys() == single.ledgers.keys()
        for number, ledger in merged.ledgers.items():
            other = single.ledgers[number]
            for m, panes in enumerate(ledger.panes):
                assert panes.keys() == other.panes[m].keys()
                for pane, got in panes.items():
                    want = other.panes[m][pane]
                    width = merged.models[m].layout.width
                    assert np.array_equal(got.rows, want.rows)
                    assert _same(_wide(got.plain, got.cols, width),
                                 _wide(want.plain, want.cols, width))  # fmt: skip
                    assert len(got.decay) == len(want.decay)
                    assert all(_same(_wide(g, got.cols, width), _wide(w, want.cols, width))
                               for g, w in zip(got.decay, want.decay, strict=True))  # fmt: skip
                    assert (got.err_ts, got.err) == (want.err_ts, want.err)


def test_pipelines_whose_models_learn_their_profiles_at_other_times_agree() -> None:
    """Models whose drift profiles arrive in other polls (terms of two widths in a poll):
    the signals and the summary equal those of scattering one model at a time."""
    cfg = benchlib.config(4, features=3, windows=3, lateness="10s")
    models = [m.model_copy(update={"reference_warmup": 40 + 150 * i})
              for i, m in enumerate(cfg.models)]  # fmt: skip
    cfg = cfg.model_copy(update={"models": models})
    polls = benchlib.batches(benchlib.stream(6_000, models=4, features=3, rate=20.0), size=500)
    merged, single = Pipeline(cfg), Pipeline(cfg)
    _one_at_a_time(single.engine)
    widths = set()
    for pipeline in (merged, single):
        pipeline.track(benchlib.all_partitions())
    for poll in polls:
        merged.process(poll)
        single.process(poll)
        widths.add(tuple(m.profile is not None for m in merged.models))
        assert repr(merged.drain_signals()) == repr(single.drain_signals())
    assert len(widths) > 2  # some polls had models with and without a profile
    assert repr(merged.flushed().summary()) == repr(single.flushed().summary())


@pytest.mark.parametrize("seed", range(5))
def test_distinct_group_keys_are_numpys_unique(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The groups' keys made distinct in a table (a small key space) or sorted (a large
    one) are what np.unique with the inverse gives."""
    from monitor.core import engine

    rng = np.random.default_rng(seed)
    space = int(rng.integers(1, 5000))
    key = rng.integers(0, space, size=int(rng.integers(1, 3000))).astype(np.int64)
    want = np.unique(key, return_inverse=True)
    for dense in (1 << 20, 0):
        monkeypatch.setattr(engine, "_DENSE_KEYS", dense)
        uniq, inverse = engine._distinct(key, space)
        assert uniq.tolist() == want[0].tolist() and inverse.tolist() == want[1].tolist()
        assert inverse.dtype == want[1].dtype
