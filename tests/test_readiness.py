"""``CatchUp``: readiness' tolerance and hysteresis on plain lag figures."""

from __future__ import annotations

import numpy as np

from monitor.config import ReadinessConfig
from monitor.readiness import CatchUp

A, B = ("predictions", 0), ("labels", 0)
BOTH = {A, B}


def test_steady_in_flight_lag_never_flips() -> None:
    """A minute of a steady load: 0 to 400 messages in flight at each judgement."""
    catch_up = CatchUp(ReadinessConfig())
    rng = np.random.default_rng(3)
    seen = []
    for step in range(600):
        now = step * 0.1
        lag = {A: int(rng.integers(0, 200)), B: int(rng.integers(0, 200))}
        seen.append(catch_up.judge(BOTH, lag, {A: now - 0.5, B: now - 0.5}, now)[0])
    assert all(seen)


def test_falling_behind_turns_unready_only_after_unready_after() -> None:
    catch_up = CatchUp(ReadinessConfig(max_lag=1000, max_lag_time=30, unready_after=10))
    assert catch_up.judge(BOTH, {A: 0, B: 0}, {}, 0.0) == (True, "0 messages, 0 s behind")
    for t in range(1, 11):  # out of bounds from t = 1
        ready, why = catch_up.judge(BOTH, {A: 5000, B: 0}, {}, float(t))
        assert ready is (t < 11)
    ready, why = catch_up.judge(BOTH, {A: 5000, B: 0}, {}, 11.0)
    assert not ready and why == "5000 messages, 0 s behind"
    # back within the bounds but not within half of them: still catching up
    assert not catch_up.judge(BOTH, {A: 900, B: 0}, {}, 12.0)[0]
    assert catch_up.judge(BOTH, {A: 400, B: 0}, {}, 13.0)[0]


def test_a_short_excursion_resets_the_grace() -> None:
    catch_up = CatchUp(ReadinessConfig(max_lag=100, max_lag_time=30, unready_after=10))
    assert catch_up.judge(BOTH, {A: 0, B: 0}, {}, 0.0)[0]
    assert catch_up.judge(BOTH, {A: 500, B: 0}, {}, 1.0)[0]
    assert catch_up.judge(BOTH, {A: 10, B: 0}, {}, 8.0)[0]  # back: the clock restarts
    assert catch_up.judge(BOTH, {A: 500, B: 0}, {}, 9.0)[0]
    assert catch_up.judge(BOTH, {A: 500, B: 0}, {}, 18.5)[0]
    assert not catch_up.judge(BOTH, {A: 500, B: 0}, {}, 19.0)[0]


def test_seconds_behind_count_only_for_partitions_with_messages_waiting() -> None:
    bounds = ReadinessConfig(max_lag=1_000_000, max_lag_time=30, unready_after=0)
    catch_up = CatchUp(bounds)
    # B's last record is an hour old but nothing waits there: it is idle, not behind
    assert catch_up.judge(BOTH, {A: 3, B: 0}, {A: 99.0, B: -3600.0}, 100.0)[0]
    ready, why = catch_up.judge(BOTH, {A: 3, B: 0}, {A: 40.0, B: -3600.0}, 100.0)
    assert not ready and why == "3 messages, 60 s behind"


def test_unknown_positions_are_not_caught_up() -> None:
    catch_up = CatchUp(ReadinessConfig())
    ready, why = catch_up.judge(BOTH, {A: 0}, {}, 0.0)
    assert not ready and why == "1 partition position(s) not known yet"
    assert catch_up.judge(BOTH, {A: 0, B: 0}, {}, 0.1)[0]
