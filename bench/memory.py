"""Memory: RSS per pending prediction, and the daemon's RSS at rest (issue item 4).

1. In a fresh subprocess: a one-model engine (binary, 10 numeric features, windows
   ``all``/``1h``/``ewm30m``, ``max_pending`` 2M so that nothing is evicted, label TTL 1 d
   so that nothing expires, lateness 5 s) warmed up with 30,000 labelled predictions (30 s
   of event time: its drift warmup ends, checked); RSS after a full collection and a heap
   trim is the baseline. Then ``--pending`` predictions that never get a label, fed
   in polls of 10,000 generated on the fly (so the input does not stay in memory); RSS
   again; the delta divided by the number pending is the cost of one pending prediction.
   Target: <= 150 bytes.
2. ``monitor run`` with 100 models (10 features, 3 windows each) against an idle Tansu
   broker: VmRSS of the process 5 s after ``/readyz`` first answers 200.
3. The drift warmup's sample (``reference_warmup``, no reference file): in two fresh
   subprocesses, one model fed ``--warmup-seconds`` of event time at ``--warmup-rate``
   predictions a second (80 % labelled, default lateness of 1 m), once with the default
   warmup and once with none; RSS of each at the end, its difference per prediction then
   held raw, and the same once the profile is built (twice as long a stream);
4. A long sliding window's ring: in a fresh subprocess, one model (10 numeric features,
   windows ``all``/``1d``, 10 s panes) fed ``--ring-hours`` of event time at 2 predictions
   a second (80 % labelled), with no segment and with a segment of 50 values: the bytes
   its ring of closed panes holds, against what the panes take as arrays, and the RSS::

    python bench/memory.py                    # 1,000,000 pending
    python bench/memory.py --pending 100000 --models 10
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib

from monitor.broker import EmbeddedBroker
from monitor.config import MonitorConfig
from monitor.core.pipeline import Pipeline
from monitor.logs import configure_logging

TARGET = 150


def pending_count(engine: Pipeline) -> int:
    """Predictions waiting for a label, over every partition and model."""
    return sum(len(t) for s in engine.partitions.values() for t in s.join.pending)


def _trim() -> bool:
    """Give the free heap malloc keeps back to the kernel (glibc's ``malloc_trim``);
    whether it could."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def measure_pending(pending: int) -> dict[str, float]:
    """Part 1, in this process: baseline RSS, RSS with ``pending`` predictions waiting."""
    cfg = benchlib.config(1, lateness="5s",
                          extra={"max_pending": 2_000_000, "label_ttl": "1d"})
    engine = Pipeline(cfg)
    engine.track(benchlib.all_partitions())
    # Warmed up: the drift warmup (reference_warmup, 5,000 predictions by default) is over,
    # its reference built. It ends at a pane close, so the labelled prefix (30 s of event
    # time) runs the clock (5 s behind: allowed_lateness) past a few panes; afterwards no
    # label comes, the clock stops, and a model still warming up would hold every later
    # prediction raw in its open panes.
    for batch in benchlib.batches(benchlib.stream(30_000, label_share=1.0, max_delay=5.0)):
        engine.process(batch)
    warming = [m.name for m in engine.engine.models if m.warmup_target]
    if warming:
        raise SystemExit(f"memory: the warmup of {warming} is not over after the prefix")
    held = pending_count(engine)
    _trim()  # the baseline without the free heap the prefix's processing left (its raw
    before = benchlib.settled_rss()  # warmup sample above all)
    source = benchlib.stream(pending, label_share=0.0, start=30_000)
    while batch := list(islice(source, 10_000)):
        engine.process(batch)
        engine.drain_signals()
    del batch
    after = benchlib.settled_rss()
    waiting = pending_count(engine) - held
    parts: dict[str, float] = {}
    for state in engine.partitions.values():
        for table in state.join.pending:
            for part, size in table.footprint().items():
                parts[part] = parts.get(part, 0.0) + size
    total = pending_count(engine)
    trimmed = benchlib.settled_rss() if _trim() else after
    return {"before": before, "after": after, "pending": waiting,
            "per_pending": (after - before) / max(waiting, 1),
            "per_pending_trimmed": (trimmed - before) / max(waiting, 1),
            **{f"part:{k}": v / max(total, 1) for k, v in parts.items()}}


def measure_warmup(warmup: int, rate: float, seconds: float) -> dict[str, float]:
    """Part 3, in this process: RSS after ``seconds`` of event time at ``rate`` predictions
    a second for one model whose ``reference_warmup`` is ``warmup``, after a heap trim."""
    cfg = benchlib.config(1, extra={"reference_warmup": warmup})
    engine = Pipeline(cfg)
    engine.track(benchlib.all_partitions())
    source = benchlib.stream(int(rate * seconds), rate=rate, max_delay=5.0)
    while batch := list(islice(source, 10_000)):
        engine.process(batch)
        engine.drain_signals()
    del batch
    _trim()
    warming = any(m.warmup_target for m in engine.engine.models)
    return {"rss": benchlib.settled_rss(), "warming": float(warming)}


def measure_ring(hours: float, segments: int) -> dict[str, float]:
    """Part 4, in this process: the ring of a ``1d`` window after ``hours`` of event time
    at 2 predictions a second, the model with ``segments`` segment keys of 50 values."""
    model = benchlib.model_dict("m0", segments=segments, extra={"reference_warmup": 500})
    model["windows"] = ["all", "1d"]
    cfg = MonitorConfig.model_validate({"time": {"pane": "10s", "allowed_lateness": "10s"},
                                        "models": [model]})  # fmt: skip
    engine = Pipeline(cfg)
    engine.track(benchlib.all_partitions())
    rate = 2.0
    source = benchlib.stream(int(rate * hours * 3600), rate=rate, segments=segments)
    while batch := list(islice(source, 10_000)):
        engine.process(batch)
        engine.drain_signals()
    del batch
    _trim()
    w = engine.stages["m0"].windows
    held = sum(a.nbytes if isinstance(a, np.ndarray) else a.at.nbytes + a.values.nbytes
               for a in w.ring.values())  # fmt: skip
    return {"panes": len(w.ring), "held": held, "rows": w.rows, "width": w.width,
            "arrays": len(w.ring) * w.rows * w.width * 8, "rss": benchlib.settled_rss()}


def _child(*args: str) -> dict[str, float]:
    """The JSON a ``--child`` run of this script printed last."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args],
                          capture_output=True, text=True, check=True)  # fmt: skip
    out: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def daemon_at_rest(models: int) -> dict[str, float]:
    """Part 2: VmRSS of ``monitor run`` with ``models`` models, idle broker."""
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        body = {"models": [benchlib.model_dict(f"m{i}") for i in range(models)]}
        daemon = benchlib.Daemon(Path(tmp), broker.bootstrap, body, topics="mem")
        daemon.create_topics()
        daemon.start()
        try:
            ready = daemon.wait_ready()
            time.sleep(5.0)
            rss = benchlib.rss_bytes(daemon.proc.pid)
            hwm = 0
            for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
        finally:
            daemon.stop()
    return {"rss": rss, "hwm": hwm, "ready_s": ready}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=100, help="models of the daemon at rest")
    parser.add_argument("--warmup-rate", type=float, default=10_000.0,
                        help="predictions per second of event time in part 3")
    parser.add_argument("--warmup-seconds", type=float, default=30.0,
                        help="event time of part 3's stream while the sample is held")
    parser.add_argument("--ring-hours", type=float, default=6.0,
                        help="event time of part 4's stream")
    parser.add_argument("--child", action="store_true", help="(internal) one part's child")
    parser.add_argument("--ring-segments", type=int, default=None,
                        help="(internal) part 4's child")
    parser.add_argument("--warmup", type=int, default=None, help="(internal) part 3's child")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    if args.child:
        if args.ring_segments is not None:
            print(json.dumps(measure_ring(args.ring_hours, args.ring_segments)))
        elif args.warmup is None:
            print(json.dumps(measure_pending(args.pending)))
        else:
            print(json.dumps(measure_warmup(args.warmup, args.warmup_rate, args.warmup_seconds)))
        return 0
    p = _child("--pending", str(args.pending))
    rate, span = args.warmup_rate, args.warmup_seconds
    warm: dict[tuple[int, float], dict[str, float]] = {}
    for warmup in (5_000, 0):
        for seconds in (span, 4 * span):
            warm[warmup, seconds] = _child("--warmup", str(warmup), "--warmup-rate", str(rate),
                                           "--warmup-seconds", str(seconds))  # fmt: skip
    ring = {n: _child("--ring-segments", str(n), "--ring-hours", str(args.ring_hours))
            for n in (0, 1)}  # fmt: skip
    d = daemon_at_rest(args.models)
    print("## Memory (item 4)\n")
    print(f"machine: {benchlib.machine()}\n")
    print("| measurement | value |")
    print("| --- | ---: |")
    print(f"| engine RSS before (1 model, 10 features, 3 windows, warmed up) | "
          f"{p['before'] / 1e6:.1f} MB |")
    print(f"| engine RSS with {int(p['pending']):,} pending predictions | "
          f"{p['after'] / 1e6:.1f} MB |")
    print(f"| **RSS per pending prediction** | **{p['per_pending']:.0f} B** |")
    print(f"| `monitor run`, {args.models} models, idle broker, 5 s after ready: VmRSS | "
          f"{d['rss'] / 1e6:.1f} MB |")
    print(f"| same, peak (VmHWM) | {d['hwm'] / 1e6:.1f} MB |")
    parts = {k[5:]: v for k, v in p.items() if k.startswith("part:")}
    if parts:
        print("\nWhere the bytes of one pending prediction are (`PendingTable.footprint()` "
              "summed over every table, divided by the pending count):\n")
        print("| part | bytes per pending |")
        print("| --- | ---: |")
        held = 0.0
        for part, size in parts.items():
            print(f"| {part} | {size:.1f} |")
            held += 0.0 if part.startswith("spare") else size
        print(f"| sum of the written parts | {held:.1f} |")
        print(f"| RSS per pending less that sum | {p['per_pending'] - held:.1f} |")
        print(f"| of which free heap malloc keeps (RSS given back by `malloc_trim(0)` "
              f"after the measurement) | {p['per_pending'] - p['per_pending_trimmed']:.1f} |")
    held = warm[5_000, span]["rss"] - warm[0, span]["rss"]
    after = warm[5_000, 4 * span]["rss"] - warm[0, 4 * span]["rss"]
    print(f"\nThe drift warmup's sample (`reference_warmup` 5,000 against 0), one model at "
          f"{rate:,.0f} predictions/s of event time, lateness 1 m, after a heap trim:\n")
    print("| stream | warmup over | RSS, warmup 5,000 | RSS, no warmup | difference |")
    print("| --- | --- | ---: | ---: | ---: |")
    for seconds in (span, 4 * span):
        a, b = warm[5_000, seconds], warm[0, seconds]
        print(f"| {seconds:g} s ({rate * seconds:,.0f} predictions) | "
              f"{'no' if a['warming'] else 'yes'} | {a['rss'] / 1e6:.1f} MB | "
              f"{b['rss'] / 1e6:.1f} MB | {(a['rss'] - b['rss']) / 1e6:.1f} MB |")
    print(f"\nwhile held: {held / (rate * span):.0f} B per prediction of the open panes; "
          f"after the profile is built: {after / 1e6:.0f} MB still resident")
    print(f"\nA `1d` sliding window's ring after {args.ring_hours:g} h of event time at 2 "
          "predictions/s (one model, 10 numeric features, windows all/1d, 10 s panes; a closed "
          "pane kept as the cells that hold a value where that is smaller than its array):\n")
    print("| segment | panes | slice rows x columns | ring held | as arrays | RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n, r in ring.items():
        print(f"| {'one of 50 values' if n else 'none'} | {r['panes']:,.0f} | "
              f"{r['rows']:.0f} x {r['width']:.0f} | {r['held'] / 1e6:.1f} MB | "
              f"{r['arrays'] / 1e6:.0f} MB | {r['rss'] / 1e6:.0f} MB |")
    verdict = "met" if p["per_pending"] <= TARGET else "NOT met"
    print(f"\ntarget <= {TARGET} B per pending prediction: **{verdict}** "
          f"({p['per_pending'] / TARGET:.1f}x the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
