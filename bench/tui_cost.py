"""What the live view costs the daemon: one frame's time, and processing with a view beside it.

    python bench/tui_cost.py              # ~1 minute
    python bench/tui_cost.py --seconds 600 --rate 200 --width 200

The stream is the demo's (``monitor demo --capture``: one binary model, 6 segments, 2
versions, a drift profile, an alert that fires). It is processed by an
:class:`~monitor.core.engine.Engine` in batches, a report built after each batch, as the
run loop does each tick.

1. Frame cost: :meth:`LiveView.update` + :meth:`LiveView.render` + writing the frame to
   a string terminal of ``--width`` columns, at the end of the stream (every sparkline
   full); median of ``--frames`` frames. At the view's rate (one frame per published
   report, once a second) this is the share of a core the view takes.
2. Processing with a view: the whole stream processed alone, then again with a thread
   redrawing a view of the latest report at 2 Hz (the view thread of ``run --tui``); the
   ratio of the two throughputs, each the best of ``--repeat`` runs, all measured in this
   run.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rich.console import Console

from monitor.config import load_config
from monitor.core.alerting import Alerting
from monitor.core.pipeline import Pipeline
from monitor.core.report import Report
from monitor.demo import write_capture
from monitor.events.message import Message
from monitor.outputs.prometheus import RuntimeStats
from monitor.replay import capture_partitions, iter_capture
from monitor.tui import LiveView

BATCH = 2_000


def _process(config_path: str, capture: str, messages: list[Message],
             on_report: list[Report] | None = None) -> float:
    """Seconds to process ``messages``; the latest report put in ``on_report[0]``."""
    engine = Pipeline(load_config(config_path))
    alerting = Alerting(engine.config, engine.models)
    engine.track(capture_partitions([capture]))
    started = time.perf_counter()
    for i in range(0, len(messages), BATCH):
        engine.process(messages[i : i + BATCH])
        alerting.feed(engine.drain_signals())
        report = alerting.fill(engine.report())
        if on_report is not None:
            on_report[0] = report
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="event time of the stream")
    parser.add_argument("--rate", type=float, default=100.0, help="predictions per second")
    parser.add_argument("--width", type=int, default=140, help="terminal columns")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        write_capture(tmp, args.seconds, args.rate)
        config_path = os.path.join(tmp, "monitor.toml")
        capture = os.path.join(tmp, "capture.jsonl")
        messages = list(iter_capture([capture], {}))

        # 1. frame cost, with every ring filled by a report per batch
        engine = Pipeline(load_config(config_path))
        alerting = Alerting(engine.config, engine.models)
        engine.track(capture_partitions([capture]))
        view = LiveView("bench")
        runtime = RuntimeStats(ready=True, lag={("predictions", 0): 3, ("labels", 0): 1})
        for i in range(0, len(messages), BATCH):
            engine.process(messages[i : i + BATCH])
            events = alerting.feed(engine.drain_signals())
            view.update(alerting.fill(engine.report()), runtime, events)
        report = engine.report()
        frames = []
        for _ in range(args.frames):
            console = Console(file=io.StringIO(), width=args.width, force_terminal=True)
            started = time.perf_counter()
            view.update(report, runtime)
            console.print(view.render())
            frames.append(time.perf_counter() - started)
        frame = statistics.median(frames)

        # 2. processing alone, and beside a view thread at 2 Hz
        alone = min(_process(config_path, capture, messages) for _ in range(args.repeat))
        beside = []
        for _ in range(args.repeat):
            latest: list[Report] = [Report()]
            stop = threading.Event()
            def draw(latest: list[Report] = latest, stop: threading.Event = stop) -> None:
                shown = LiveView("bench")
                while not stop.is_set():
                    console = Console(file=io.StringIO(), width=args.width, force_terminal=True)
                    shown.update(latest[0], runtime)
                    console.print(shown.render())
                    stop.wait(0.5)

            thread = threading.Thread(target=draw)
            thread.start()
            try:
                beside.append(_process(config_path, capture, messages, latest))
            finally:
                stop.set()
                thread.join()
        with_view = min(beside)

    n = len(messages)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores; stream: "
          f"{args.seconds:.0f} s at {args.rate:.0f} predictions/s, {n:,} messages; "
          f"terminal {args.width} columns")
    print(f"frame (update + render + write): median {frame * 1e3:.1f} ms of {args.frames}; "
          f"at 1 frame/s: {frame:.1%} of a core")
    print(f"processing alone:          {n / alone:,.0f} messages/s (best of {args.repeat})")
    print(f"processing beside a view:  {n / with_view:,.0f} messages/s "
          f"(best of {args.repeat}, view at 2 Hz)")
    print(f"ratio beside / alone: {alone / with_view:.3f}")


if __name__ == "__main__":
    main()
