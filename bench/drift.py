"""Concept-drift detectors on 0/1 error streams: detection delay, misses, false alarms.

    python bench/drift.py                      # ~1-2 minutes
    python bench/drift.py --stationary-seeds 10 --events 1000000 --only cusum

Streams are 0/1 errors with a known change point: ``--pre`` events at the base error rate
(long enough for the CUSUM's 10,000-event warmup), then a rise (0.10 -> 0.20, 0.20 ->
0.25 / 0.30 / 0.40). The delay is the number of events from the change to the first
detection at or after it; a change with no detection within ``--max-delay`` events is
missed. False alarms are counted on stationary streams at each base rate (``--events``
per seed, ``--stationary-seeds`` seeds) and reported per 1M events; when there are none,
the rule of three gives the 95 % upper bound 3 / events.

Detectors are fed directly (not through the engine), through the same adapters the
engine uses (``monitor.core.detectors.make_detector``), except ``river ADWIN`` which is
river's default two-sided ADWIN counted as river counts it (any ``drift_detected``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import river
from river import drift

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchlib import cpu_model

from monitor.config import ModelConfig
from monitor.core.detectors import make_detector

CHANGES: list[tuple[float, float]] = [(0.10, 0.20), (0.20, 0.25), (0.20, 0.30), (0.20, 0.40)]


class _RiverTwoSided:
    """River's ADWIN with default settings, as river reports it (both directions)."""

    def __init__(self) -> None:
        self.det = drift.ADWIN()

    def update(self, x: float) -> bool:
        self.det.update(x)
        return bool(self.det.drift_detected)


class _Defaults:
    """The detectors a model runs when its config says nothing (``ModelConfig``'s default
    ``detectors``), side by side on one stream: ``update`` returns how many fired, so a
    false alarm of any of them counts."""

    def __init__(self) -> None:
        factory: Any = ModelConfig.model_fields["detectors"].default_factory
        self.entries = factory()
        self.detectors = [make_detector(entry) for entry in self.entries]

    def update(self, x: float) -> int:
        return sum(bool(d.update(x)) for d in self.detectors)


def _factories(base: float) -> dict[str, Callable[[], Any]]:
    """Detector name -> a fresh detector for a stream whose reference error rate is ``base``."""
    return {
        "defaults (adwin + cusum, any alarm)": _Defaults,
        "river ADWIN (default, two-sided)": _RiverTwoSided,
        "adwin (ours, one-sided)": lambda: make_detector("adwin"),
        "cusum (p0 learned, warmup 10k)": lambda: make_detector("cusum"),
        "cusum (p0 given)": lambda: make_detector({"name": "cusum", "reference_error": base}),
        "page_hinkley (river, up)": lambda: make_detector("page_hinkley"),
        "hddm_a (river)": lambda: make_detector("hddm_a"),
        "ddm (river)": lambda: make_detector("ddm"),
        "eddm (river)": lambda: make_detector("eddm"),
        "hddm_w (river)": lambda: make_detector("hddm_w"),
    }


def _delay(job: tuple[str, float, float, int, int, int]) -> int | None:
    """Events from the change to the first detection at or after it (None: missed)."""
    name, p0, p1, seed, pre, max_delay = job
    det = _factories(p0)[name]()
    rng = np.random.default_rng([seed, int(p0 * 1000), int(p1 * 1000)])
    before = (rng.random(pre) < p0).astype(float).tolist()
    after = (rng.random(max_delay) < p1).astype(float).tolist()
    update = det.update
    for x in before:
        update(x)
    for i, x in enumerate(after):
        if update(x):
            return i + 1
    return None


def _false_alarms(job: tuple[str, float, int, int]) -> int:
    name, p0, seed, events = job
    det = _factories(p0)[name]()
    rng = np.random.default_rng([10_000 + seed, int(p0 * 1000)])
    update = det.update
    n = 0
    chunk = 100_000
    for start in range(0, events, chunk):
        for x in (rng.random(min(chunk, events - start)) < p0).astype(float).tolist():
            n += int(update(x))  # a detector set can raise more than one alarm at once
    return n




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30, help="seeds per change (delays)")
    parser.add_argument("--stationary-seeds", type=int, default=5, help="stationary streams")
    parser.add_argument("--events", type=int, default=200_000, help="events per stationary stream")
    parser.add_argument("--pre", type=int, default=12_000, help="events before the change")
    parser.add_argument("--max-delay", type=int, default=5_000, help="detection must be within")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--only", default="", help="run only the detectors whose name contains this text"
    )
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    names = [name for name in _factories(0.1) if args.only in name]
    delay_jobs = [
        (name, p0, p1, seed, args.pre, args.max_delay)
        for name in names
        for p0, p1 in CHANGES
        for seed in range(args.seeds)
    ]
    bases = sorted({p0 for p0, _ in CHANGES})
    fa_jobs = [
        (name, p0, seed, args.events)
        for name in names
        for p0 in bases
        for seed in range(args.stationary_seeds)
    ]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        delays = list(pool.map(_delay, delay_jobs, chunksize=4))
        alarms = list(pool.map(_false_alarms, fa_jobs))
    elapsed = time.perf_counter() - t0

    by_change: dict[tuple[str, float, float], list[int | None]] = {}
    for job, d in zip(delay_jobs, delays, strict=True):
        by_change.setdefault((job[0], job[1], job[2]), []).append(d)
    by_base: dict[tuple[str, float], int] = {}
    for fjob, n in zip(fa_jobs, alarms, strict=True):
        by_base[(fjob[0], fjob[1])] = by_base.get((fjob[0], fjob[1]), 0) + n
    total = args.events * args.stationary_seeds

    print("## Concept-drift detectors on 0/1 error streams\n")
    print(
        f"{args.seeds} seeds per change, change after {args.pre:,} events, detection within "
        f"{args.max_delay:,} events; false alarms on {args.stationary_seeds} x "
        f"{args.events:,} stationary events per base rate.\n"
    )
    head = "| detector | change | median delay | mean delay | missed | false alarms / 1M at base |"
    print(head)
    print("|---|---|---|---|---|---|")
    for name in names:
        for p0, p1 in CHANGES:
            found = by_change[(name, p0, p1)]
            hit = [d for d in found if d is not None]
            med = f"{statistics.median(hit):,.0f}" if hit else "-"
            mean = f"{statistics.fmean(hit):,.0f}" if hit else "-"
            n = by_base[(name, p0)]
            fa = f"{n * 1e6 / total:.1f}" if n else f"0 (< {3e6 / total:.1f})"
            print(
                f"| {name} | {p0:.2f} -> {p1:.2f} | {med} | {mean} | "
                f"{len(found) - len(hit)}/{len(found)} | {fa} |"
            )
    print(
        f"\nMachine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"river {river.__version__}; {args.jobs} worker processes; {elapsed:.0f} s."
    )


if __name__ == "__main__":
    main()
