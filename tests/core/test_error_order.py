"""At a pane close the detectors are fed the buffered errors of the panes closed, each
partition's in number order, stable-sorted by event time: the order numpy's stable
argsort gives (ties kept in that order; a NaN time, which stage 1 never sends, last)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from monitor.core.model import close_signals


class _Recorder:
    """Detectors that keep what they are fed."""

    stream = "error"

    def __init__(self) -> None:
        self.fed: list[float] = []
        self.detectors = {"rec": None}

    def feed_panes(self, panes: list[list[float]]) -> list[list[int]]:
        self.fed = [value for values in panes for value in values]
        return [[0] for _ in panes]


class _Plan:
    names = ("accuracy",)

    def labels(self, windows: tuple[str, ...], extra: tuple[str, ...] = ()) -> list[str]:
        return [f"{n}@{w}" for w in windows for n in (*self.names, *extra)]

    def keyed(self, windows: tuple[str, ...], extra: tuple[str, ...] = ()
              ) -> tuple[list[str], dict[str, float]]:  # fmt: skip
        labels = self.labels(windows, extra)
        return labels, dict.fromkeys(labels, 0.0)


def _fed(error_panes: dict[int, dict[int, tuple[list[float], list[float]]]], pane: int) -> Any:
    detectors = _Recorder()
    model: Any = SimpleNamespace(name="m", detectors=detectors, registry=SimpleNamespace(keys=[0]))
    signals = close_signals(model, _Plan(), ("all",), [0.5], error_panes, pane)  # type: ignore[arg-type]
    assert signals == {"accuracy@all": 0.5, "rec:error@all": 0.0}
    return detectors.fed


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("nan", [False, True])
def test_errors_are_fed_in_numpy_s_stable_order(seed: int, nan: bool) -> None:
    rng = np.random.default_rng(seed)
    error_panes: dict[int, dict[int, tuple[list[float], list[float]]]] = {}
    for pane in range(3):
        for number in rng.permutation(4).tolist():
            k = int(rng.integers(0, 6))
            ts = (pane * 10.0 + rng.integers(0, 4, size=k) * 2.5).tolist()  # ties
            if nan and k and rng.random() < 0.3:
                ts[0] = float("nan")
            error_panes.setdefault(pane, {})[number] = (ts, rng.random(k).tolist())
    error_panes[5] = {0: ([51.0], [1.0])}  # a pane still open: not fed
    ts, errors = [], []
    for pane in range(3):
        for number in sorted(error_panes[pane]):
            ts += error_panes[pane][number][0]
            errors += error_panes[pane][number][1]
    want = np.asarray(errors)[np.argsort(np.asarray(ts), kind="stable")].tolist()
    assert _fed(error_panes, 2) == want
    assert list(error_panes) == [5]
