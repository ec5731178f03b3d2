"""Feature drift signals through the real engine: detection delay, misses, false alarms.

    python bench/feature_drift.py                 # ~2-4 minutes on 2 cores
    python bench/feature_drift.py --seeds 3 --stationary 200000

Each stream is prediction events at 10 per second of event time (pane 10 s, one sliding
window of 5 min = 3,000 events) with three features: ``x`` (numeric, N(0, 1)), ``y``
(numeric, 0.9 x + noise, so the pair has a correlation the PCA learns) and ``c``
(categorical, five values). The reference is 20,000 rows of the same distribution. After
``--pre`` events one thing changes: the mean of ``x`` by 0.25 or 0.5 sd, the sd of ``x``
by a factor 1.5, the mix of ``c``, or the correlation of ``x`` and ``y`` (marginals
kept). A signal raises an alarm at a pane close when it crosses its bound (the bounds the
README suggests):

    chi2 < 1e-6    psi > 0.1    js > 0.1    wasserstein > 0.1    ks > 0.1    pca_error > 1.5

The delay is the number of events from the change to the end of the first pane whose
signal is past its bound (only alarms after the change count; a change not caught within
``--max-delay`` events is missed). False alarms are rising crossings on stationary
streams, per 1M events (rule of three when there are none). ``drift_min_samples`` is
1,500 (half the window): below that the effect sizes' noise floor reaches their bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from monitor.config import load_config
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

RATE = 10.0  # events per second of event time
T0 = 1_700_000_000.0
CATS = ["a", "b", "c", "d", "e"]
MIX = [0.4, 0.3, 0.15, 0.1, 0.05]
SCENARIOS = {
    "mean x +0.25 sd": {"shift": 0.25},
    "mean x +0.5 sd": {"shift": 0.5},
    "sd x x1.5": {"scale": 1.5},
    "mix of c": {"mix": [0.3, 0.3, 0.2, 0.1, 0.1]},
    "x-y correlation broken": {"broken": True},
}
#: signal -> (is past the bound)
BOUNDS = {
    "chi2": lambda v: v < 1e-6,
    "psi": lambda v: v > 0.1,
    "js": lambda v: v > 0.1,
    "wasserstein": lambda v: v > 0.1,
    "ks": lambda v: v > 0.1,
    "pca_error": lambda v: v > 1.5,
}


def _rows(rng: np.random.Generator, n: int, change: dict | None = None) -> list[dict]:
    change = change or {}
    x = rng.normal(change.get("shift", 0.0), change.get("scale", 1.0), n)
    noise = rng.normal(0.0, 0.45, n)
    # broken: the same marginal, no relation to x
    y = 0.9 * (rng.normal(0.0, 1.0, n) if change.get("broken") else x) + noise
    c = rng.choice(CATS, n, p=change.get("mix", MIX))
    return [{"x": float(a), "y": float(b), "c": str(k)} for a, b, k in zip(x, y, c, strict=True)]


def _setup(tmp: Path) -> Path:
    rng = np.random.default_rng(12345)
    lines = ["x,y,c"] + [f"{r['x']!r},{r['y']!r},{r['c']}" for r in _rows(rng, 20_000)]
    (tmp / "ref.csv").write_text("\n".join(lines) + "\n")
    path = tmp / "bench.toml"
    path.write_text(
        """
[time]
pane = "10s"
allowed_lateness = "0s"
[[models]]
name = "m"
task = "binary"
positive_class = 1
windows = ["5m"]
features = { x = "numeric", y = "numeric", c = "categorical" }
reference = "ref.csv"
detectors = []
drift_min_samples = 1500
"""
    )
    return path


def _signals_over(config: Path, features: list[dict]) -> list[tuple[float, dict[str, float]]]:
    """(pane end, signals) of every pane closed over the stream."""
    engine = Pipeline(load_config(config))
    out: list[tuple[float, dict[str, float]]] = []
    batch = 5000
    for start in range(0, len(features), batch):
        msgs = []
        for i in range(start, min(start + batch, len(features))):
            event = {
                "prediction_id": f"p{i}",
                "model": "m",
                "ts": T0 + i / RATE,
                "prediction": 1,
                "features": features[i],
            }
            msgs.append(Message("predictions", 0, i, None, json.dumps(event).encode()))
        engine.process(msgs)
        out.extend((s.pane_end, s.signals) for s in engine.drain_signals())
    return out


def _alarms(signals: list[tuple[float, dict[str, float]]]) -> dict[str, list[float]]:
    """Signal name (``psi:x``...) -> pane ends where it crossed its bound (rising edges)."""
    out: dict[str, list[float]] = {}
    was: dict[str, bool] = {}
    for end, values in signals:
        for key, value in values.items():
            method = key.split("@")[0].split(":")[0]
            if method not in BOUNDS or not np.isfinite(value):
                continue
            name = key.split("@")[0]
            now = bool(BOUNDS[method](value))
            if now and not was.get(name, False):
                out.setdefault(name, []).append(end)
            was[name] = now
    return out


def _delay_job(job: tuple[str, str, int, int, int]) -> dict[str, int | None]:
    config, scenario, seed, pre, max_delay = job
    rng = np.random.default_rng([seed, len(scenario)])
    features = _rows(rng, pre) + _rows(rng, max_delay, SCENARIOS[scenario])
    alarms = _alarms(_signals_over(Path(config), features))
    change = T0 + pre / RATE
    out: dict[str, int | None] = {}
    for name, ends in alarms.items():
        after = [e for e in ends if e > change]
        out[name] = round((after[0] - change) * RATE) if after else None
    return out


def _stationary_job(job: tuple[str, int, int]) -> dict[str, int]:
    config, seed, events = job
    rng = np.random.default_rng([99, seed])
    alarms = _alarms(_signals_over(Path(config), _rows(rng, events)))
    return {name: len(ends) for name, ends in alarms.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="streams per change")
    parser.add_argument(
        "--stationary", type=int, default=500_000, help="events per stationary stream"
    )
    parser.add_argument("--stationary-seeds", type=int, default=2)
    parser.add_argument("--pre", type=int, default=6_000, help="events before the change")
    parser.add_argument("--max-delay", type=int, default=9_000, help="detection must be within")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = str(_setup(Path(tmp)))
        delay_jobs = [
            (config, scenario, seed, args.pre, args.max_delay)
            for scenario in SCENARIOS
            for seed in range(args.seeds)
        ]
        fa_jobs = [(config, seed, args.stationary) for seed in range(args.stationary_seeds)]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            delays = list(pool.map(_delay_job, delay_jobs))
            false = list(pool.map(_stationary_job, fa_jobs))
    elapsed = time.perf_counter() - t0
    total = args.stationary * args.stationary_seeds
    fa: dict[str, int] = {}
    for counts in false:
        for name, n in counts.items():
            fa[name] = fa.get(name, 0) + n
    names = sorted({n for d in delays for n in d} | set(fa))
    print("## Feature drift signals (engine, sliding 5 min window = 3,000 events)\n")
    print(
        f"{args.seeds} streams per change, change after {args.pre:,} events, detection within "
        f"{args.max_delay:,}; false alarms on {args.stationary_seeds} x {args.stationary:,} "
        "stationary events. Cells: median delay in events (missed/streams).\n"
    )
    print("| signal | " + " | ".join(SCENARIOS) + " | false alarms / 1M |")
    print("|---|" + "---|" * (len(SCENARIOS) + 1))
    for name in names:
        cells = []
        for scenario in SCENARIOS:
            found = [d.get(name) for job, d in zip(delay_jobs, delays, strict=True)
                     if job[1] == scenario]
            hit = [x for x in found if x is not None]
            med = f"{statistics.median(hit):,.0f}" if hit else "-"
            cells.append(f"{med} ({len(found) - len(hit)}/{len(found)})")
        n = fa.get(name, 0)
        rate = f"{n * 1e6 / total:.1f}" if n else f"0 (< {3e6 / total:.1f})"
        print(f"| {name} | " + " | ".join(cells) + f" | {rate} |")
    any_alarm = sum(fa.values())
    print(
        f"\nAll signals of the model together: {any_alarm} false alarms in {total:,} "
        f"stationary events ({any_alarm * 1e6 / total:.2f} per 1M)."
    )
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, numpy {np.__version__}; {elapsed:.0f} s."
    )


if __name__ == "__main__":
    main()
