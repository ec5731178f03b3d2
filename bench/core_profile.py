"""Core throughput without Kafka, and where its time goes (issue item 2).

Generates a kcat ``-J`` capture with ``replay_throughput.py``'s generator (``--events``
predictions, 10 numeric features, labels for 80 %), then, on one core:

1. times a bare decode of it (envelope parse + ``msgspec.json.decode`` of each payload);
2. times ``monitor.replay.replay`` over it (binary model, every binary metric, windows
   ``all``/``1h``/``ewm30m``, 10 s pane): the target is 500,000 messages/s;
3. replays it again under cProfile and charges every function's self time to a stage
   (read, decode, join, accumulate, pane close, signals, rules, outputs; library and
   builtin calls go to their callers' stage), printing seconds and share per stage and
   the functions with the most self time.

cProfile slows per-call Python code more than C calls, so the split overstates the
stages with many small calls; the events/s figures come from the unprofiled run::

    python bench/core_profile.py                 # 1,000,000 predictions
    python bench/core_profile.py --events 50000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
import replay_throughput as rt  # noqa: E402

from monitor import gc_policy  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402
from monitor.replay import replay  # noqa: E402

TARGET = 500_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="prediction events")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    benchlib.one_core()
    gc_policy.tune()  # as ``monitor replay`` does
    tmp = Path(tempfile.mkdtemp(prefix="monitor-bench-core-"))
    try:
        capture = tmp / "capture.jsonl"
        lines, _ = rt.generate(capture, args.events)
        t0, c0 = time.perf_counter(), time.process_time()
        rt.baseline(capture)
        base_s, base_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        summary = replay(rt.bench_config(), [str(capture)], tmp / "out")
        replay_s, replay_cpu = time.perf_counter() - t0, time.process_time() - c0
        matched = int(summary["models"]["m"]["counts"]["matched"])
        rate, base_rate = lines / replay_s, lines / base_s
        print("## Core replay (item 2)\n")
        print(f"machine: {benchlib.machine()}; pinned to one core\n")
        print(f"capture: {args.events:,} predictions + {lines - args.events:,} labels = "
              f"{lines:,} messages; binary, every binary metric, {len(rt.FEATURES)} numeric "
              f"features, windows {'/'.join(rt.WINDOWS)}, pane {rt.PANE}\n")
        print("| run | wall s | messages/s (wall) | CPU s | messages/CPU s | "
              "ratio to bare decode (CPU) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        print(f"| bare decode (envelope + msgspec) | {base_s:.2f} | {base_rate:,.0f} | "
              f"{base_cpu:.2f} | {lines / base_cpu:,.0f} | 1.00 |")
        print(f"| `replay` (whole pipeline) | {replay_s:.2f} | {rate:,.0f} | "
              f"{replay_cpu:.2f} | {lines / replay_cpu:,.0f} | "
              f"{base_cpu / replay_cpu:.3f} |")
        cpu_rate = lines / replay_cpu
        verdict = "met" if cpu_rate >= TARGET else "NOT met"
        print(f"\ntarget >= {TARGET:,} messages/s on one core: **{verdict}**: "
              f"{cpu_rate:,.0f} per CPU second ({cpu_rate / TARGET:.0%} of it), {rate:,.0f} "
              f"per wall second; matched pairs {matched:,}\n")
        if not args.no_profile:
            seconds, stats = benchlib.profile_stages(
                lambda: replay(rt.bench_config(), [str(capture)], tmp / "out-profiled"))
            print("Stage split of a cProfile run of the same replay (self time; library "
                  "calls charged to their callers):\n")
            print(benchlib.stage_table(seconds))
            print("\nFunctions with the most self time:\n")
            print(benchlib.top_functions(stats, 15))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
