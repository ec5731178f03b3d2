"""Readiness' judgement of the input lag: a tolerance and a hysteresis, without I/O.

``/readyz`` and ``monitor_ready`` must not follow every poll: at a steady load a few
hundred messages are always in flight between two fetches, and a readiness that wants a
lag of exactly 0 flips several times a minute (Kubernetes would take the pod in and out
of service each time). :class:`CatchUp` says "caught up" while the input is behind by at
most ``max_lag`` messages in all and at most ``max_lag_time`` seconds, and only changes
its mind after ``unready_after`` out of those bounds; once it has said "behind", it wants
to be within half the bounds before it says "caught up" again.

>>> from monitor.config import ReadinessConfig
>>> catch_up = CatchUp(ReadinessConfig(max_lag=100, max_lag_time=30, unready_after=10))
>>> tp = ("predictions", 0)
>>> catch_up.judge({tp}, {tp: 80}, {}, now=0.0)   # behind, not yet within half the bounds
(False, '80 messages, 0 s behind')
>>> catch_up.judge({tp}, {tp: 40}, {}, now=1.0)[0]
True
>>> catch_up.judge({tp}, {tp: 500}, {}, now=2.0)[0]  # a burst: still caught up ...
True
>>> catch_up.judge({tp}, {tp: 500}, {}, now=12.0)[0]  # ... until out of bounds for 10 s
False
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from monitor.config import ReadinessConfig

__all__ = ["CatchUp"]

TP = tuple[str, int]


class CatchUp:
    """Whether the input is caught up within :class:`~monitor.config.ReadinessConfig`'s
    bounds, with hysteresis (see the module docstring)."""

    def __init__(self, bounds: ReadinessConfig) -> None:
        self.bounds = bounds
        self.caught_up = False
        self.out_since: float | None = None

    def reset(self) -> None:
        """Forget the judgement (the input was lost: judge afresh when it is back)."""
        self.caught_up, self.out_since = False, None

    def judge(
        self,
        assigned: Set[TP],
        lag: Mapping[TP, int],
        last_record_ts: Mapping[TP, float],
        now: float,
    ) -> tuple[bool, str]:
        """Caught up or not, and how far behind in words.

        ``lag``: messages behind per partition whose position is known (one of
        ``assigned`` missing from it is out of bounds); ``last_record_ts``: the record
        time (Unix s) of the last message read per partition, whose age, for a partition
        with messages waiting, is how many seconds behind it is.
        """
        unknown = sum(1 for tp in assigned if tp not in lag)
        messages = sum(lag.values())
        seconds = max(
            (now - last_record_ts[tp] for tp, n in lag.items() if n > 0 and tp in last_record_ts),
            default=0.0,
        )
        scale = 1.0 if self.caught_up else 0.5
        within = (
            unknown == 0
            and messages <= self.bounds.max_lag * scale
            and seconds <= self.bounds.max_lag_time * scale
        )
        if within:
            self.caught_up, self.out_since = True, None
        elif self.caught_up:
            if self.out_since is None:
                self.out_since = now
            if now - self.out_since >= self.bounds.unready_after:
                self.caught_up, self.out_since = False, None
        if unknown:
            return self.caught_up, f"{unknown} partition position(s) not known yet"
        return self.caught_up, f"{messages} messages, {max(seconds, 0.0):.0f} s behind"
