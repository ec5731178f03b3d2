"""How the core's throughput and memory scale with models, features, segments and windows
(issue item 3).

Each point runs in its own subprocess (so that its peak RSS is its own): a config of
``models`` binary models (every binary metric), ``features`` numeric features each,
``segments`` segment keys of 50 values each, and ``windows`` windows (1: ``all``;
3: ``all``/``1h``/``ewm30m``; 6: ``all``/``5m``/``1h``/``1d``/``ewm5m``/``ewm30m``), a 10 s
pane and 10 s of allowed lateness; a synthetic stream of ``--events`` predictions (1,000
per second of event time, round-robin over the models) and labels for 80 % of them,
generated before the clock starts and fed to ``Engine.process`` in polls of 10,000
messages on one core. Each point measures the steady state: an untimed prefix of the same
stream runs first, until every model has learnt its drift profile (``reference_warmup``
of 500 predictions each; with the default 5,000, 100 models would still be warming up,
histogramming no feature, at the end of the timed stream).

The grid varies one axis at a time from the base point (1 model, 10 features, no
segments, 3 windows). For the largest point of each axis a cProfile run splits the time
by stage (see ``benchlib.stage_split``), which says which stage grows with what. The
many-model target is judged on the median of ``--pairs`` (3) ratios of the base point and
the 100-model point run back to back (the grid's run is the first pair): one point's rate
moves by a tenth or more between runs minutes apart on a shared machine::

    python bench/scaling.py                # 200,000 predictions per point
    python bench/scaling.py --events 20000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402

from monitor.core.alerting import Alerting  # noqa: E402
from monitor.core.pipeline import Pipeline  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402

BASE = (1, 10, 0, 3)
#: The many-models point's rate over the base point's (the same stream, spread over
#: ``AXES["models"][-1]`` models).
MANY_MODELS_TARGET = 0.5
AXES: dict[str, list[int]] = {
    "models": [1, 10, 100],
    "features": [1, 10, 100],
    "segments": [0, 1, 3],
    "windows": [1, 3, 6],
}


def grid() -> list[tuple[int, int, int, int]]:
    """The base point and, per axis, its other values with the rest at the base."""
    points = [BASE]
    for i, values in enumerate(AXES.values()):
        for v in values:
            p = list(BASE)
            p[i] = v
            if tuple(p) not in points:
                points.append((p[0], p[1], p[2], p[3]))
    return points


def run_point(point: tuple[int, int, int, int], events: int, profile: bool) -> dict[str, Any]:
    """Measure one point in this process (called in the subprocess)."""
    models, features, segments, windows = point
    benchlib.one_core()
    benchlib.as_the_cli()  # as ``monitor run`` does
    cfg = benchlib.config(models, features=features, segments=segments, windows=windows,
                          lateness="10s", extra={"reference_warmup": benchlib.STEADY_WARMUP})
    prefix, polls = benchlib.steady_polls(models, events, features=features, segments=segments)
    messages = sum(len(b) for b in polls)
    engine = Pipeline(cfg)
    alerting = Alerting(cfg, engine.models)
    engine.track(benchlib.all_partitions())
    before = benchlib.settled_rss()
    benchlib.warm_up(engine, alerting, prefix)

    def feed() -> None:
        for batch in polls:
            engine.process(batch)
            alerting.feed(engine.drain_signals())

    out: dict[str, Any] = {"point": point, "messages": messages}
    if profile:
        seconds, _ = benchlib.profile_stages(feed)
        out["stages"] = seconds
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        feed()
        out["seconds"] = time.perf_counter() - t0
        out["cpu"] = time.process_time() - c0
        out["rate"] = messages / out["cpu"]
    out["engine_rss"] = benchlib.settled_rss() - before
    out["peak_rss"] = benchlib.peak_rss_bytes()
    return out


def spawn(point: tuple[int, int, int, int], events: int, profile: bool) -> dict[str, Any]:
    """Run one point in a fresh interpreter; its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--point", ",".join(map(str, point)),
           "--events", str(events)] + (["--profile"] if profile else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="predictions per point")
    parser.add_argument("--point", help="(internal) models,features,segments,windows")
    parser.add_argument("--profile", action="store_true", help="(internal) cProfile split")
    parser.add_argument("--pairs", type=int, default=3,
                        help="the base point and the many-model point measured back to back "
                        "this many times (the grid's run is the first); the target is judged "
                        "on the median pair's ratio")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    if args.point:
        m, f, s, w = (int(x) for x in args.point.split(","))
        print(json.dumps(run_point((m, f, s, w), args.events, args.profile)))
        return 0

    print("## Scaling (item 3)\n")
    print(f"machine: {benchlib.machine()}; each point a subprocess pinned to one core; "
          f"{args.events:,} predictions + ~80 % labels per point\n")
    print("Rates are messages per second of the process's CPU time (on a shared machine "
          "less noisy than wall time; the wall-clock rate is beside it).\n")
    print("| models | features | segments | windows | messages/CPU s | vs base | "
          "messages/wall s | engine RSS growth MB | peak RSS MB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base_rate = None
    rates: dict[tuple[int, int, int, int], float] = {}
    for point in grid():
        r = spawn(point, args.events, False)
        base_rate = base_rate or r["rate"]
        rates[point] = r["rate"]
        m, f, s, w = point
        print(f"| {m} | {f} | {s} | {w} | {r['rate']:,.0f} | {r['rate'] / base_rate:.2f} | "
              f"{r['messages'] / r['seconds']:,.0f} | {r['engine_rss'] / 1e6:.1f} | "
              f"{r['peak_rss'] / 1e6:.0f} |", flush=True)
    many = (AXES["models"][-1], *BASE[1:])
    pairs = [(rates[BASE], rates[many])]
    for _ in range(args.pairs - 1):  # the two points again, back to back
        pairs.append((spawn(BASE, args.events, False)["rate"],
                      spawn(many, args.events, False)["rate"]))
    one, hundred = sorted(pairs, key=lambda p: p[1] / p[0])[(len(pairs) - 1) // 2]
    ratio = hundred / one
    verdict = "met" if ratio >= MANY_MODELS_TARGET else "NOT met"
    print(f"\npairs of the base point and the {many[0]}-model point: "
          f"{', '.join(f'{h / o:.2f}' for o, h in pairs)} (the grid's first; median "
          f"{ratio:.2f})")
    print(f"\ntarget {many[0]} models >= {MANY_MODELS_TARGET}x the single-model rate: "
          f"**{verdict}** ({ratio:.2f}x: {hundred:,.0f} against {one:,.0f} "
          f"messages per CPU s, the median of {len(pairs)} pairs)")

    largest = {name: tuple(values[-1] if j == i else BASE[j] for j in range(4))
               for i, (name, values) in enumerate(AXES.items())}
    profiles = {"base": spawn(BASE, args.events, True)["stages"]}
    for name, point in largest.items():
        profiles[f"{name}={point[list(AXES).index(name)]}"] = spawn(
            point, args.events, True)["stages"]  # type: ignore[arg-type]
    print("\nStage split (cProfile self time, library calls charged to callers), seconds "
          "for the same number of messages; the columns are the base point and the "
          "largest value of each axis:\n")
    names = list(profiles)
    print("| stage | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for stage in benchlib.STAGES:
        vals = [profiles[n].get(stage, 0.0) for n in names]
        if max(vals) > 0.0005:
            print(f"| {stage} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    print("| total | " + " | ".join(f"{sum(profiles[n].values()):.2f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
