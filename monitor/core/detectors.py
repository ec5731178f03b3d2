"""Concept-drift detectors on the error stream of joined pairs, per model.

The stream is the 0/1 error (prediction != label) of a classification model, or the
absolute error of a regression model, of every joined pair, ordered by event time:
errors are buffered per pane (the pane of the label's event time) and per partition, and
fed when the pane closes, partitions in number order, stable-sorted by event time. So
the detector sees the same sequence whatever order the partitions were polled in
(joined pairs that arrive after their pane closed are late and are not fed).

Every detector counts only a **rise** of the error (a model getting better is not an
alert). The signal ``<name>:<stream>@<window>`` (stream ``error`` or ``abs_error``) is the
number of detections in the pane just closed, the same for every window of the model;
``<name>_total:<stream>`` counters are in the report.

- ``adwin``: river's ``ADWIN`` with its default settings, made one-sided (a detection
  counts when ADWIN's estimate after dropping the old part of its window is above the
  estimate before).
- ``cusum``: :class:`CalibratedCusum`, a one-sided Bernoulli CUSUM whose threshold is set
  so that the expected number of events between false alarms is ``false_alarm_budget``
  (computed exactly from a Markov chain, not by simulation, and cached).
- ``page_hinkley`` (river, ``mode="up"``), ``ddm``, ``eddm``, ``hddm_a`` and ``hddm_w``
  (river's ``DDM``, ``EDDM``, ``HDDMA`` and ``HDDMW``, one-sided by construction):
  river's defaults.
- ``kswin``: river's ``KSWIN`` (defaults, ``seed=0`` so that it is deterministic), counted
  when the recent part of its window has a higher mean than the older part. It runs a
  scipy KS test on every event (a few thousand events per second): for low-rate models.

>>> det = ErrorDetectors(["adwin"], "error")
>>> det.feed([0.0] * 2000 + [1.0] * 300)
{'adwin': 1}
"""

from __future__ import annotations

import collections
import math
import operator
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from functools import lru_cache, reduce
from itertools import accumulate, chain, islice, takewhile
from typing import Any

import numpy as np
from river import drift

from monitor import native
from monitor.core.tasks import task_of

__all__ = [
    "DETECTORS",
    "CalibratedCusum",
    "ErrorDetectors",
    "KswinUp",
    "bernoulli_cusum_arl",
    "calibrate_cusum",
    "error_stream",
    "make_detector",
]

#: Detectors that can be configured (``detectors = [...]`` of a model).
DETECTORS: tuple[str, ...] = (
    "adwin",
    "cusum",
    "page_hinkley",
    "ddm",
    "eddm",
    "hddm_a",
    "hddm_w",
    "kswin",
)

#: Largest number of Markov-chain states used to calibrate a CUSUM threshold.
_MAX_STATES = 1500
#: Most entries of the band a threshold search solves (8 bytes each): a search step beyond
#: it is cut back, the threshold found is the same (the smallest that meets the budget).
_MAX_BAND = 1 << 24


def error_stream(task: str) -> str:
    """The stream a model's detectors watch: ``error`` (0/1) or ``abs_error`` (regression)."""
    return task_of(task).error_stream


def bernoulli_cusum_arl(p: float, r: int, m: int, h: int) -> float:
    """Exact expected events to an alarm of the integer CUSUM ``S = max(0, S + m·x − r)``.

    ``x`` is 0/1 with ``P(x = 1) = p``, the chain starts at 0 and alarms when ``S > h``; this
    is the CUSUM ``S = max(0, S + x − r/m)`` with threshold ``h/m`` (Brook & Evans' Markov
    chain, exact because the grid is exact). The expected run lengths ``L`` from every
    state solve ``(I − P) L = 1``; from state ``i`` the chain moves to ``i + m − r`` or to
    ``max(i − r, 0)``, so ``I − P`` is a band of ``r`` diagonals below the main one and
    ``m − r`` above. Gaussian elimination without pivoting solves it in ``h·r·(m − r)``
    steps, each pivot taken as its row's probability of leaving the states left
    (Grassmann, Taksar and Heyman's way): every step then adds numbers of one sign, so
    the result keeps its precision even where ``L`` is beyond ``1e16``, where a general
    solver returns noise. The compiled kernel runs it, or :func:`_cusum_arl_numpy` to
    the same bits; no sparse solver is loaded.
    """
    if not (0 < r < m and h >= 0):
        raise ValueError(f"need 0 < r < m and h >= 0, got r={r}, m={m}, h={h}")
    kernels = native.kernels()
    if kernels is not None:
        return float(kernels.cusum_arl(float(p), int(r), int(m), int(h)))
    return _cusum_arl_numpy(float(p), int(r), int(m), int(h))


def _cusum_arl_numpy(p: float, r: int, m: int, h: int) -> float:
    """:func:`bernoulli_cusum_arl` by numpy: each step of the compiled kernel's band
    elimination done on a row block at once, every entry through the same operations."""
    n, up, w = h + 1, m - r, m + 1
    # Row i of I - P, columns i - r .. i + up, at band[i * w : (i + 1) * w]; the end is
    # padded so that the sheared views below stay inside the array.
    band = np.zeros((n + r + 1) * w)
    rows = band[: n * w].reshape(n, w)
    rows[:, r] = 1.0
    i = np.arange(n)
    rows[i[i + up <= h], r + up] = -p
    rows[i, np.maximum(i - r, 0) - i + r] -= 1.0 - p
    b = np.ones(n)
    absorb = np.where(i + up <= h, 0.0, p)
    item = band.itemsize
    # below[i, t, c]: row i + t at column i + c (t = 0: the pivot row from its diagonal on)
    below = np.lib.stride_tricks.as_strided(
        band[r:], shape=(n, r + 1, up + 1), strides=(w * item, (w - 1) * item, item)
    )
    terms = np.empty(up + 1)
    for k in range(n):
        block = below[k]
        # the pivot: the row's sum (its probability of leaving), added term by term in
        # order as the kernel does, instead of a difference that cancels
        terms[0] = absorb[k]
        np.negative(block[0, 1:], out=terms[1:])
        block[0, 0] = diag = np.add.accumulate(terms)[-1]
        last = min(r, n - 1 - k)
        if last == 0:
            continue
        f = block[1 : last + 1, 0] / diag
        block[1 : last + 1, 1:] -= np.multiply.outer(f, block[0, 1:])
        b[k + 1 : k + last + 1] -= f * b[k]
        absorb[k + 1 : k + last + 1] -= f * absorb[k]
    # above[i, s]: row i - up + s at column i (s = up: the diagonal), rows before 0 padding
    front = np.zeros(up * w + (n + r + 1) * w)
    front[up * w :] = band
    above = np.lib.stride_tricks.as_strided(
        front[up * w + r - up * (w - 1) :], shape=(n, up + 1), strides=(w * item, (w - 1) * item)
    )
    for k in range(n - 1, -1, -1):
        col = above[k]
        b[k] /= col[up]
        first = max(k - up, 0)
        b[first:k] -= col[up - (k - first) : up] * b[k]
    return float(b[0])


@lru_cache(maxsize=256)
def calibrate_cusum(p0: float, p1: float, budget: float) -> tuple[int, int, int]:
    """``(r, m, h)``: the CUSUM for a rise from ``p0`` to ``p1`` with ARL0 >= ``budget``.

    ``k = r/m`` approximates the likelihood-ratio optimal reference value
    ``ln((1 − p0)/(1 − p1)) / ln(p1(1 − p0) / (p0(1 − p1)))`` and ``h`` is the smallest integer
    threshold whose exact no-drift average run length is at least ``budget``.
    """
    if not 0.0 < p0 < p1 < 1.0:
        raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")
    theta = math.log(p1 * (1 - p0) / (p0 * (1 - p1)))
    k = math.log((1 - p0) / (1 - p1)) / theta
    h_est = max(math.log(budget) / theta, 1.0)  # Wald/Siegmund order of magnitude
    # k = r/m: the smallest grid whose k is within 10 % of (k - p0) of the optimum
    best: tuple[float, int, int] | None = None
    for m in range(2, 1000):
        r = round(k * m)
        if not 0 < r < m or r / m <= p0:
            continue
        err = abs(r / m - k)
        if best is None or err < best[0]:
            best = (err, r, m)
        if err <= 0.1 * (k - p0) or (h_est + 1) * (m + 1) > _MAX_STATES:
            break
    if best is None:
        raise ValueError(f"cannot calibrate a CUSUM for p0={p0}, p1={p1}")
    _, r, m = best
    # log ARL is nearly linear in h: secant steps, then the exact smallest h by unit steps
    target = math.log(budget)

    seen: dict[int, float] = {}

    def log_arl(h: int) -> float:
        if h not in seen:  # the searches below come back to thresholds they have solved
            seen[h] = math.log(bernoulli_cusum_arl(p0, r, m, h))
        return seen[h]

    h1 = max(int(h_est * m * 0.5), 1)
    h2 = max(int(h_est * m), h1 + 1)
    f1, f2 = log_arl(h1), log_arl(h2)
    for _ in range(6):
        if f2 == f1:
            break
        h3 = max(round(h2 + (target - f2) * (h2 - h1) / (f2 - f1)), 1)
        h3 = min(h3, 50 * _MAX_STATES, _MAX_BAND // (m + 1))
        if h3 == h2:
            break
        h1, f1, h2, f2 = h2, f2, h3, log_arl(h3)
    hi = h2
    while log_arl(hi) < target:
        hi += 1
    while hi > 1 and log_arl(hi - 1) >= target:
        hi -= 1
    return r, m, hi


class CalibratedCusum:
    """One-sided upper CUSUM on 0/1 errors, calibrated to a false-alarm budget.

    ``S = max(0, S + x − k)``, alarm when ``S > h``, then ``S = 0``. ``k`` is set for a rise
    of the error rate from ``p0`` to ``p1 = p0 + delta`` and ``h`` so that the expected number
    of events between false alarms at error rate ``p0`` is ``false_alarm_budget``. ``p0`` is
    ``reference_error`` or, when not given, learned from the first ``warmup`` events (the
    error rate plus one standard error, so that an estimate on the low side does not
    multiply false alarms); nothing is detected during the warmup.

    Real-valued input (absolute errors of a regression model) is turned into 0/1 by the
    warmup's ``1 − exceed_share`` quantile (default 90 %): the CUSUM watches the share of
    errors above it, whose reference is the share above it in the warmup.
    The state is plain numbers: deterministic and picklable.
    """

    def __init__(
        self,
        reference_error: float | None = None,
        delta: float = 0.05,
        false_alarm_budget: float = 1_000_000,
        warmup: int = 10_000,
        binary: bool = True,
        exceed_share: float = 0.1,
    ) -> None:
        if reference_error is not None and not 0.0 < reference_error < 1.0:
            raise ValueError("reference_error must be in (0, 1)")
        if delta <= 0 or false_alarm_budget < 10 or warmup < 1:
            raise ValueError("need delta > 0, false_alarm_budget >= 10, warmup >= 1")
        self.delta = float(delta)
        self.budget = float(false_alarm_budget)
        self.warmup = int(warmup)
        self.binary = binary
        self.exceed_share = exceed_share
        self.cut: float | None = 0.5 if binary else None  # x > cut counts as an error
        self._warm: list[float] = []
        self.p0: float | None = None
        self.p1 = 0.0
        self.k = 0.0
        self.h = 0.0
        self._r = self._m = self._h = 0
        self._s = 0  # integer state: S·m
        self.drift_detected = False
        if reference_error is not None and binary:
            self._set_reference(float(reference_error))

    def _set_reference(self, p0: float) -> None:
        self.p0 = p0
        self.p1 = min(p0 + self.delta, (1.0 + p0) / 2.0)
        self._r, self._m, self._h = calibrate_cusum(p0, self.p1, self.budget)
        self.k, self.h = self._r / self._m, self._h / self._m

    def _end_warmup(self) -> None:
        values = np.asarray(self._warm)
        self._warm = []
        if not self.binary:
            self.cut = float(np.quantile(values, 1.0 - self.exceed_share))
        assert self.cut is not None
        n = len(values)
        rate = float(np.mean(values > self.cut))
        p0 = rate + math.sqrt(max(rate * (1.0 - rate), 1.0 / n) / n)
        self._set_reference(min(max(p0, 1.0 / n), 0.9))

    @property
    def statistic(self) -> float:
        """The current CUSUM ``S`` (in error units)."""
        return self._s / self._m if self._m else 0.0

    def update(self, x: float) -> bool:
        """Feed one error; True when it raised an alarm (the statistic is then reset)."""
        if self.p0 is None:
            self._warm.append(float(x))
            if len(self._warm) >= self.warmup:
                self._end_warmup()
            self.drift_detected = False
            return False
        assert self.cut is not None
        s = self._s + (self._m if x > self.cut else 0) - self._r
        if s > self._h:
            self._s = 0
            self.drift_detected = True
            return True
        self._s = s if s > 0 else 0
        self.drift_detected = False
        return False

    def update_many(self, values: list[float]) -> int:
        """Feed ``values`` in order, as :meth:`update` one by one; the alarms raised."""
        alarms = 0
        at = 0
        if self.p0 is None and values:  # still learning its reference: as update() does
            at = min(len(values), self.warmup - len(self._warm))
            self._warm.extend(map(float, values[:at]))
            if len(self._warm) >= self.warmup:
                self._end_warmup()
            self.drift_detected = False
        if at == len(values):
            return alarms
        return self._fed([values[at:] if at else values])[0]

    def update_panes(self, panes: list[list[float]]) -> list[int]:
        """:meth:`update_many` of each of ``panes`` in turn (an empty one is not fed): the
        alarms of each, in one call (once past the warmup, one loop over every pane)."""
        if self.p0 is not None:
            return self._fed(panes)
        update_many = self.update_many
        return [update_many(values) if values else 0 for values in panes]

    def _fed(self, panes: list[list[float]]) -> list[int]:
        """Feed each of ``panes`` in turn, past the warmup; the alarms of each (by the
        compiled kernel, ``monitor._native.cusum_panes``, when :mod:`monitor.native` runs
        and the errors are floats, the numbers ints: the same counts and state)."""
        cut, m, r, h = self.cut, self._m, self._r, self._h
        assert cut is not None
        compiled = native.kernels()
        if compiled is not None:
            done = compiled.cusum_panes(panes, cut, m, r, h, self._s, self.drift_detected)
            if done is not None:
                out: list[int] = done[0]
                self._s, self.drift_detected = done[1], done[2]
                return out
        s, detected = self._s, self.drift_detected
        out = []
        for values in panes:
            alarms = 0
            for x in values:
                s += (m if x > cut else 0) - r
                if s > h:
                    s = 0
                    detected = True
                    alarms += 1
                else:
                    if s < 0:
                        s = 0
                    detected = False
            out.append(alarms)
        self._s, self.drift_detected = s, detected
        return out


class RiverUp:
    """A river detector counted one-sided: ADWIN only when its estimate went up."""

    def __init__(self, detector: Any, check_estimate: bool) -> None:
        self.detector = detector
        self.check_estimate = check_estimate

    def update(self, x: float) -> bool:
        det = self.detector
        if self.check_estimate:
            before = det.estimation
            det.update(x)
            return bool(det.drift_detected and det.estimation > before)
        det.update(x)
        return bool(det.drift_detected)

    def update_many(self, values: list[float]) -> int:
        """Feed ``values`` in order, as :meth:`update` one by one; the detections counted."""
        det = self.detector
        if self.check_estimate and type(det) is drift.ADWIN:
            return _adwin_rises(det, values)
        update = det.update
        found = 0
        if self.check_estimate:
            for x in values:
                before = det.estimation
                update(x)
                if det.drift_detected and det.estimation > before:
                    found += 1
        else:
            for x in values:
                update(x)
                if det.drift_detected:
                    found += 1
        return found

    def update_panes(self, panes: list[list[float]]) -> list[int]:
        """:meth:`update_many` of each of ``panes`` in turn (an empty one is not fed): the
        detections of each. ADWIN counted one-sided is fed every pane's values as one run
        (what :func:`_adwin_rise_at` finds does not depend on where its calls start), each
        detection counted in the pane of the value that raised it."""
        det = self.detector
        if not (self.check_estimate and type(det) is drift.ADWIN):
            update_many = self.update_many
            return [update_many(values) if values else 0 for values in panes]
        out = [0] * len(panes)
        values = panes[0] if len(panes) == 1 else list(chain.from_iterable(panes))
        rises = _adwin_rise_at(det, values)
        if rises:
            ends = list(accumulate(map(len, panes)))
            for at in rises:
                out[bisect_right(ends, at)] += 1
        return out


def _adwin_rises(det: Any, values: list[float]) -> int:
    """:func:`_adwin_rise_at`'s detections counted."""
    return len(_adwin_rise_at(det, values))


def _adwin_rise_at(det: Any, values: list[float]) -> list[int]:
    """River's ADWIN fed ``values`` in order: the places of the values whose detection's
    estimate went up, in order. What ``update`` and ``estimation`` do, one value at a
    time, called on the detector's window (``_helper``, compiled) without their Python
    wrappers. River's ``update`` starts a new window after a detection.

    The window is fed by C loops (``map`` and ``takewhile``) up to the next detection,
    with no bytecode per value. Until the window is cut, an update adds the value to its
    sum (the same float additions, in order, as ``reduce`` makes them) and 1 to its
    width, and a cut is a detection: the estimate before the update that cut it is the
    window's sum and width before the run plus those of the values before that one."""
    found: list[int] = []
    n = len(values)
    at = 0
    while at < n:
        helper = det._helper
        width = helper.get_width()
        total = helper.get_total()
        before = total / width if width else 0.0  # the estimate, before a reset too
        if det._drift_detected:  # the window after a detection: a new one, as update does
            det._reset()
            helper = det._helper
            total, width = 0.0, 0
        rest = values if at == 0 else islice(values, at, None)
        quiet = len(list(takewhile(operator.not_, map(helper.update, rest))))
        stop = at + quiet  # the value that cut the window, or the end
        if stop == n:
            det._drift_detected = False
            break
        if quiet:
            before = reduce(operator.add, islice(values, at, stop), total) / (width + quiet)
        det._drift_detected = True
        width = helper.get_width()
        if (helper.get_total() / width if width else 0.0) > before:
            found.append(stop)
        at = stop + 1
    return found


class KswinUp:
    """River's KSWIN counted one-sided: a detection whose recent values have the higher mean.

    KSWIN keeps a window of its last ``window_size`` values and tests the newest
    ``stat_size`` against a random sample of the rest; a copy of that window tells which
    way the change went (after a detection KSWIN keeps only the newest part, as here).
    """

    def __init__(self, seed: int = 0) -> None:
        self.detector = drift.KSWIN(seed=seed)
        self.values: collections.deque[float] = collections.deque(maxlen=self.detector.window_size)

    def update(self, x: float) -> bool:
        det = self.detector
        if det.drift_detected:  # KSWIN resets itself at this update
            self.values = collections.deque(
                list(self.values)[-det.stat_size :], maxlen=det.window_size
            )
        self.values.append(x)
        det.update(x)
        if not det.drift_detected:
            return False
        values = list(self.values)
        recent, older = values[-det.stat_size :], values[: -det.stat_size]
        return bool(older) and sum(recent) / len(recent) > sum(older) / len(older)

    def update_many(self, values: list[float]) -> int:
        """Feed ``values`` in order; the detections counted."""
        return sum(self.update(x) for x in values)

    def update_panes(self, panes: list[list[float]]) -> list[int]:
        """:meth:`update_many` of each of ``panes`` in turn (an empty one is not fed)."""
        return [self.update_many(values) if values else 0 for values in panes]


def _spec(entry: Any) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a ``detectors`` entry: a name, a mapping or a config object."""
    if isinstance(entry, str):
        return entry, {}
    opts = dict(entry) if isinstance(entry, Mapping) else entry.model_dump(exclude_none=True)
    return str(opts.pop("name")), opts


def make_detector(entry: Any, stream: str = "error") -> CalibratedCusum | RiverUp | KswinUp:
    """The adapter the engine feeds for one ``detectors`` entry (a name or name + options)."""
    name, opts = _spec(entry)
    if name == "cusum":
        return CalibratedCusum(**opts, binary=stream == "error")
    if opts:
        raise ValueError(f"detector {name!r} takes no options; got {sorted(opts)}")
    if name == "adwin":
        return RiverUp(drift.ADWIN(), check_estimate=True)
    if name == "page_hinkley":
        return RiverUp(drift.PageHinkley(mode="up"), check_estimate=False)
    if name == "ddm":
        return RiverUp(drift.binary.DDM(), check_estimate=False)
    if name == "hddm_a":
        return RiverUp(drift.binary.HDDMA(), check_estimate=False)
    if name == "eddm":
        return RiverUp(drift.binary.EDDM(), check_estimate=False)
    if name == "hddm_w":
        return RiverUp(drift.binary.HDDMW(), check_estimate=False)
    if name == "kswin":
        return KswinUp()
    raise ValueError(f"Invalid detector: {name!r}; valid: {list(DETECTORS)}")


class ErrorDetectors:
    """The detectors of one model, fed in event-time order; pickles with the engine."""

    def __init__(self, names: Iterable[Any], stream: str) -> None:
        self.stream = stream
        self.detectors: dict[str, CalibratedCusum | RiverUp | KswinUp] = {}
        for entry in names:
            name, _ = _spec(entry)
            self.detectors[name] = make_detector(entry, stream)
        self.totals = dict.fromkeys(self.detectors, 0)

    def feed(self, values: Iterable[float]) -> dict[str, int]:
        """Update every detector with ``values`` in order; upward detections per detector."""
        return dict(zip(self.detectors, self.feed_panes([list(values)])[0], strict=True))

    def feed_panes(self, panes: list[list[float]]) -> list[list[int]]:
        """:meth:`feed` of each pane's ``values``, pane after pane: per pane, the upward
        detections of each detector (in the detectors' order). Each detector is fed every
        pane in turn (the detectors keep no state in common)."""
        counts: list[list[int]] = [[] for _ in panes]
        for name, det in self.detectors.items():
            found = det.update_panes(panes)
            self.totals[name] += sum(found)
            for pane, n in zip(counts, found, strict=True):
                pane.append(n)
        return counts
