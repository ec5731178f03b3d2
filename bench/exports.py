"""Cost of the ``[outputs]`` exports (TensorBoard scalars, CloudWatch EMF lines) in ``replay``.

Generates the capture of ``bench/replay_throughput.py`` (``--events`` predictions, 10
numeric features, labels for 80 %), then, on one core, alternately times
``monitor.replay.replay`` with no export and with both exports on, ``--repeat`` times
each, and keeps the fastest of each. It also times the two writers alone over the
signals of every closed pane (one batch of 50 panes at a time), per pane, and prints
their share of the replay's time: the figure that stays put on a busy machine. No
assertions::

    python bench/exports.py                  # 100,000 predictions
    python bench/exports.py --events 300000 --repeat 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from replay_throughput import bench_config, cpu_model, generate  # noqa: E402

from monitor.core.model import PaneSignals  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402
from monitor.outputs.cloudwatch import EmfWriter  # noqa: E402
from monitor.outputs.tensorboard import TensorBoardWriter  # noqa: E402
from monitor.replay import replay  # noqa: E402

BATCH = 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="prediction events")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each replay")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    tmp = Path(tempfile.mkdtemp(prefix="monitor-bench-exports-"))
    try:
        capture = tmp / "capture.jsonl"
        lines, _ = generate(capture, args.events)
        plain = bench_config()
        outputs = plain.outputs.model_copy(
            update={"tensorboard_dir": str(tmp / "tb"), "cloudwatch": True}
        )
        exported = plain.model_copy(update={"outputs": outputs})
        best = {"plain": float("inf"), "exports": float("inf")}
        for i in range(args.repeat):
            for name, config in (("plain", plain), ("exports", exported)):
                shutil.rmtree(tmp / "tb", ignore_errors=True)
                t0 = time.perf_counter()
                replay(config, [str(capture)], tmp / f"out-{name}-{i}")
                best[name] = min(best[name], time.perf_counter() - t0)

        out = tmp / "out-exports-0"
        panes = [
            PaneSignals(r["model"], r["ts"], {k: float("nan") if v is None else v
                                              for k, v in r["signals"].items()})
            for r in map(json.loads, (out / "signals.jsonl").read_text().splitlines())
        ]  # fmt: skip
        batches = [panes[i : i + BATCH] for i in range(0, len(panes), BATCH)]
        tb = TensorBoardWriter(tmp / "tb-alone")
        t0 = time.perf_counter()
        for batch in batches:
            tb.write(batch)
        tb.close()
        tb_us = (time.perf_counter() - t0) / len(panes) * 1e6
        sink = io.StringIO()
        emf = EmfWriter(sink)
        t0 = time.perf_counter()
        for batch in batches:
            emf.write(batch)
        emf_us = (time.perf_counter() - t0) / len(panes) * 1e6
        emf_lines = sum(1 for _ in (out / "cloudwatch.jsonl").open())

        print(f"machine     {platform.platform()}; {cpu_model()}; "
              f"Python {platform.python_version()}; one core")
        print(f"capture     {lines:,} messages; {len(panes)} closed panes, "
              f"{len(panes[0].signals)} signals each; {emf_lines:,} EMF lines")
        print(f"replay      {best['plain']:7.2f} s  {lines / best['plain']:>10,.0f} messages/s  "
              "(no export)")
        print(f"replay+exp  {best['exports']:7.2f} s  {lines / best['exports']:>10,.0f} "
              "messages/s  (TensorBoard + CloudWatch)")
        print(f"end to end  with exports: {best['plain'] / best['exports']:.1%} of the "
              "throughput without (best of each; a difference this small is machine noise)")
        print(f"per pane    TensorBoard {tb_us:,.0f} us, CloudWatch {emf_us:,.0f} us "
              f"(batches of {BATCH} panes)")
        share = (tb_us + emf_us) * 1e-6 * len(panes) / best["plain"]
        print(f"ratio       the two writers' own time is {share:.1%} of the replay without "
              "exports")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
