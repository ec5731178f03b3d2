"""Concept-drift detectors on the error stream of joined pairs, per model.

The stream is the 0/1 error (prediction != label) of a classification model, or the
absolute error of a regression model, of every joined pair, ordered by event time:
errors are buffered per pane (the pane of the label's event time) and per partition, and
fed when the pane closes, partitions in number order, stable-sorted by event time. So
the detector sees the same sequence whatever order the partitions were polled in
(joined pairs that arrive after their pane closed are late and are not fed).

The detector is river's ``ADWIN`` with its default settings, made **one-sided**: a
detection counts only when the error level went up (ADWIN's estimate after dropping the
old part of its window is above the estimate before), since a model getting better is
not an alert. The signal ``adwin:<stream>@<window>`` (``error`` or ``abs_error``) is the
number of such detections in the pane just closed, the same for every window of the
model; ``adwin_total:<stream>`` counters are in the report.

>>> det = ErrorDetectors(["adwin"], "error")
>>> det.feed([0.0] * 2000 + [1.0] * 300)
{'adwin': 1}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from river import drift

__all__ = ["DETECTORS", "ErrorDetectors", "error_stream"]

#: Detectors that can be configured (``detectors = [...]`` of a model).
DETECTORS: tuple[str, ...] = ("adwin",)


def error_stream(task: str) -> str:
    """The stream a model's detectors watch: ``error`` (0/1) or ``abs_error`` (regression)."""
    return "abs_error" if task == "regression" else "error"


def _make(name: str) -> Any:
    if name == "adwin":
        return drift.ADWIN()
    raise ValueError(f"Invalid detector: {name!r}; valid: {list(DETECTORS)}")


class ErrorDetectors:
    """The detectors of one model, fed in event-time order; pickles with the engine."""

    def __init__(self, names: Iterable[str], stream: str) -> None:
        self.stream = stream
        self.detectors = {name: _make(name) for name in names}
        self.totals = dict.fromkeys(self.detectors, 0)

    def feed(self, values: Iterable[float]) -> dict[str, int]:
        """Update every detector with ``values`` in order; upward detections per detector."""
        found = dict.fromkeys(self.detectors, 0)
        items = list(values)
        for name, det in self.detectors.items():
            n = 0
            for value in items:
                before = det.estimation
                det.update(value)
                if det.drift_detected and det.estimation > before:
                    n += 1
            found[name] = n
            self.totals[name] += n
        return found
