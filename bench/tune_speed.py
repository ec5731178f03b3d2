"""How much faster ``monitor tune`` is than one ``monitor replay`` per setting.

    python bench/tune_speed.py                       # 12 h at 2 predictions/s, 72 settings
    python bench/tune_speed.py --hours 24 --rate 4 --jobs 2

Generates the stream of ``bench/tune_stream.py`` (capture, incidents, config, grid) in a
temporary directory, then times, in this one run:

- one ``monitor replay`` of the capture with the base config (what each setting would
  cost if every setting were replayed on its own, decoding included);
- ``monitor tune`` over the whole grid serially (``--jobs 1``) and with ``--jobs`` workers.

It prints the times, the per-setting cost of each and the ratio of the naive cost
(settings x one replay) to the tune's.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from tune_stream import write

from monitor.config import load_config
from monitor.logs import configure_logging
from monitor.replay import replay
from monitor.tune import load_incidents, tune
from monitor.tune_grid import expand_grid, load_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    configure_logging("warning", json=True)
    benchlib.as_the_cli()  # as ``monitor tune`` does
    with tempfile.TemporaryDirectory() as tmp:
        counts = write(tmp, args.hours, args.rate, seed=11)
        config = load_config(os.path.join(tmp, "config.toml"))
        settings = expand_grid(config, load_grid(os.path.join(tmp, "grid.toml")))
        incidents = load_incidents(os.path.join(tmp, "incidents.csv"), ["fraud"])
        capture = [os.path.join(tmp, "capture.jsonl")]
        started = time.perf_counter()
        replay(config, capture, os.path.join(tmp, "replay"))
        one = time.perf_counter() - started
        runs = {}
        for jobs in sorted({1, args.jobs}):
            started = time.perf_counter()
            result = tune(capture, settings, incidents, folds=3, jobs=jobs)
            runs[jobs] = (time.perf_counter() - started, result.replayed.groups)
    n = len(settings)
    print(f"{counts['messages']} messages, {n} settings; Python {platform.python_version()}, "
          f"{os.cpu_count()} cores")
    print("| | seconds | per setting | naive / this |\n| --- | ---: | ---: | ---: |")
    print(f"| one `monitor replay` (naive: x {n} = {one * n:.0f} s) | {one:.1f} | {one:.2f} "
          f"| 1.0 |")
    for jobs, (seconds, groups) in runs.items():
        print(f"| `monitor tune --jobs {jobs}` ({groups} engine replays) | {seconds:.1f} | "
              f"{seconds / n:.3f} | {one * n / seconds:.1f} |")


if __name__ == "__main__":
    main()
