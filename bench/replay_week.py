"""How long ``monitor replay`` takes over a long history: one model's week at 30 messages/s.

A model that receives 30 messages a second (predictions and their labels: 16.7
predictions a second, 80 % of them labelled 1 s to 10 min later) sends about 18.1M
messages a week. This bench writes ``--days`` days of that traffic as a kcat ``-J``
capture (the stream of ``replay_throughput.py``: 10 numeric features, 4 partitions, a
binary model with every binary metric, windows ``all``/``1h``/``ewm30m``, pane 10 s) and
times ``monitor.replay.replay`` over it on one core, after a bare decode of the same
capture. With fewer than 7 days it also states the week's time at the rate it measured
(replay's cost is linear in the messages and the panes, both proportional to the days),
plus what a replay pays once whatever its length (lazy imports, the first calibrations):
an hour of the same traffic is replayed first, in the same process, and what it took beyond
the hour's share at the measured rate is that one-off cost::

    python bench/replay_week.py             # the whole week: 18.1M messages, about 3.7 GB
    python bench/replay_week.py --days 1    # one day, the week extrapolated
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
from replay_throughput import LABEL_SHARE, baseline, bench_config, generate  # noqa: E402

from monitor.logs import configure_logging  # noqa: E402
from monitor.replay import replay  # noqa: E402

MESSAGES_PER_S = 30.0
WEEK_S = 7 * 86_400
TARGET_S = 120.0
HOUR_S = 3_600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0, help="days of traffic")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    benchlib.one_core()
    benchlib.as_the_cli()  # as ``monitor replay`` does

    rate = MESSAGES_PER_S / (1.0 + LABEL_SHARE)  # predictions per second of event time
    events = int(args.days * 86_400 * rate)
    tmp = tempfile.mkdtemp(prefix="monitor-week-")
    try:
        capture = Path(tmp) / "capture.jsonl"
        t0 = time.perf_counter()
        lines, _ = generate(capture, events, rate=rate)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        baseline(capture)
        base_s = time.perf_counter() - t0
        first_s = 0.0
        if args.days < 7:  # the one-off costs, paid here, measured apart
            hour = Path(tmp) / "hour.jsonl"
            generate(hour, int(HOUR_S * rate), rate=rate)
            t0 = time.perf_counter()
            replay(bench_config(), [str(hour)], Path(tmp) / "out-hour")
            first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        replay(bench_config(), [str(capture)], Path(tmp) / "out")
        replay_s = time.perf_counter() - t0
        size = capture.stat().st_size
    finally:
        if args.keep:
            print(f"kept        {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    per_s = replay_s / (args.days * 86_400)  # seconds of replay per second of traffic
    once = max(0.0, first_s - per_s * HOUR_S)
    week = replay_s if args.days >= 7 else per_s * WEEK_S + once
    print(f"machine     {benchlib.machine()}; one core")
    print(f"capture     {args.days:g} days at {MESSAGES_PER_S:g} messages/s: {events:,} "
          f"predictions + {lines - events:,} labels = {lines:,} messages, {size / 1e9:.2f} GB, "
          f"{args.days * 86_400 / 10:,.0f} panes of 10 s; generated in {gen_s:.0f} s")
    print(f"replay      {replay_s:8.1f} s  {lines / replay_s:>10,.0f} messages/s")
    if first_s:
        print(f"one-off     {once:8.1f} s  (an hour replayed first took {first_s:.1f} s; "
              f"{per_s * HOUR_S:.1f} s of it is the hour at the rate above)")
    print(f"baseline    {base_s:8.1f} s  {lines / base_s:>10,.0f} messages/s  (envelope parse "
          "+ msgspec.json.decode of the payload)")
    measured = (
        "measured" if args.days >= 7
        else f"extrapolated from {args.days:g} days, plus the one-off {once:.1f} s"
    )
    verdict = "met" if week < TARGET_S else "NOT met"
    print(f"target a week's replay < {TARGET_S:.0f} s on one core: **{verdict}** "
          f"({week:.0f} s, {measured})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
