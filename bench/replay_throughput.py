"""Throughput of ``monitor replay`` against a bare decode of the same capture.

Generates ``--events`` prediction events (about 200 bytes each: 10 numeric features, 4
partitions) and labels for 80 % of them, as a kcat ``-J`` capture in a
temporary directory; then times, on one core:

- ``monitor.replay.replay(...)`` over it: the whole pipeline (envelope, typed decode, join,
  accumulators, panes, windows, metrics at every pane close, the four output files), with
  a binary model, every binary metric, windows ``all``, ``1h``, ``ewm30m`` and a 10 s pane;
- the baseline: for each line, the envelope parse and ``msgspec.json.decode`` of the
  payload, nothing else.

The two run one after the other ``--pairs`` times (3 unless told), and the target is judged
on the median pair's ratio: a ratio of two runs a minute apart moves by a tenth or more on
this shared machine. It prints messages per second of each (the median pair), every
pair's ratio by wall and CPU seconds, and the machine. No assertions::

    python bench/replay_throughput.py                 # 500,000 predictions + 400,000 labels
    python bench/replay_throughput.py --events 100000
"""

from __future__ import annotations

import os

# One core: no BLAS thread pools (set before numpy is imported).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import heapq  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import msgspec  # noqa: E402
from benchlib import alternate, as_the_cli, cpu_model, median_pair, pairs_line  # noqa: E402

from monitor.config import MonitorConfig  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402
from monitor.replay import Envelope, replay  # noqa: E402

PARTITIONS = 4
FEATURES = [f"f{i}" for i in range(10)]
WINDOWS = ["all", "1h", "ewm30m"]
PANE = "10s"
START_TS = 1_700_000_000.0
EVENTS_PER_S = 200.0  # event-time rate of the generated traffic
LABEL_SHARE = 0.8
TARGET = 0.4  # replay's rate over the bare decode's


def bench_config() -> MonitorConfig:
    """Binary model, every binary metric (metrics unset), the windows and pane above."""
    return MonitorConfig.model_validate({
        "time": {"pane": PANE, "allowed_lateness": "1m"},
        "models": [{
            "name": "m",
            "task": "binary",
            "positive_class": 1,
            "label_ttl": "6h",
            "windows": WINDOWS,
            "features": dict.fromkeys(FEATURES, "numeric"),
        }],
    })


def _envelope(topic: str, partition: int, offset: int, key: str, payload: bytes,
              ts_ms: int) -> bytes:
    # kcat -J shape: the payload is the message text as a JSON string.
    return b"".join((
        b'{"topic":"', topic.encode(), b'","partition":', str(partition).encode(),
        b',"offset":', str(offset).encode(), b',"tstype":"create","ts":', str(ts_ms).encode(),
        b',"broker":1,"key":"', key.encode(),
        b'","payload":', json.dumps(payload.decode()).encode(),
        b"}\n",
    ))


def generate(path: Path, events: int, seed: int = 1,
             rate: float = EVENTS_PER_S) -> tuple[int, float]:
    """Write the capture, ``rate`` predictions per second of event time; return (lines,
    mean prediction payload bytes)."""
    rng = random.Random(seed)
    offsets = {(t, p): 0 for t in ("predictions", "labels") for p in range(PARTITIONS)}
    labels: list[tuple[float, str, int, bytes]] = []
    lines = 0
    payload_bytes = 0

    def write(fh, topic: str, key: str, part: int, payload: bytes, ts: float) -> None:  # type: ignore[no-untyped-def]
        nonlocal lines
        off = offsets[topic, part]
        offsets[topic, part] = off + 1
        fh.write(_envelope(topic, part, off, key, payload, int(ts * 1000)))
        lines += 1

    with open(path, "wb") as fh:
        for i in range(events):
            ts = START_TS + i / rate
            while labels and labels[0][0] <= ts:
                lts, key, part, payload = heapq.heappop(labels)
                write(fh, "labels", key, part, payload, lts)
            pid = f"p{i:08d}"
            part = zlib.crc32(pid.encode()) % PARTITIONS
            x = [round(rng.gauss(0.0, 1.0), 1) for _ in FEATURES]
            score = round(1.0 / (1.0 + 2.718281828 ** -(x[0] + 0.5 * x[1])), 3)
            feats = ",".join(f'"{n}":{v}' for n, v in zip(FEATURES, x, strict=True))
            payload = (
                f'{{"prediction_id":"{pid}","model":"m",'
                f'"ts":{ts:.2f},"prediction":{int(score >= 0.5)},"score":{score},'
                f'"features":{{{feats}}}}}'
            ).encode()
            payload_bytes += len(payload)
            write(fh, "predictions", pid, part, payload, ts)
            if rng.random() < LABEL_SHARE:
                lts = ts + rng.uniform(1.0, 600.0)
                label = int(rng.random() < score)
                lpay = f'{{"prediction_id":"{pid}","label":{label},"ts":{lts:.2f}}}'.encode()
                heapq.heappush(labels, (lts, pid, part, lpay))
        while labels:
            lts, key, part, payload = heapq.heappop(labels)
            write(fh, "labels", key, part, payload, lts)
    return lines, payload_bytes / max(events, 1)


def baseline(path: Path) -> int:
    """Envelope parse and a generic decode of each payload; nothing else."""
    decode_envelope = msgspec.json.Decoder(Envelope).decode
    decode = msgspec.json.decode
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            env = decode_envelope(line)
            if env.payload is not None:
                decode(env.payload)
            n += 1
    return n




def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000, help="prediction events")
    parser.add_argument("--pairs", type=int, default=3,
                        help="baseline/replay pairs run back to back; the target is judged "
                        "on the median pair's ratio")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
    as_the_cli()  # as ``monitor replay`` does

    tmp = tempfile.mkdtemp(prefix="monitor-bench-")
    capture = Path(tmp) / "capture.jsonl"
    t0 = time.perf_counter()
    lines, mean_bytes = generate(capture, args.events)
    gen_s = time.perf_counter() - t0

    pairs = alternate(
        args.pairs,
        lambda: baseline(capture),
        lambda i: replay(bench_config(), [str(capture)], Path(tmp) / f"out{i}"),
    )
    mid = median_pair(pairs)
    summary = mid.result

    counts = summary["models"]["m"]["counts"]
    base_rate = lines / mid.base_s
    replay_rate = lines / mid.run_s
    print(f"machine     {platform.platform()}; {cpu_model()}; "
          f"Python {platform.python_version()} ({platform.python_implementation()}); one core")
    print(f"capture     {args.events:,} predictions + {lines - args.events:,} labels = "
          f"{lines:,} messages, {capture.stat().st_size / 1e6:.0f} MB, "
          f"prediction payload {mean_bytes:.0f} B mean; generated in {gen_s:.1f} s")
    print(f"config      binary, every binary metric, {len(FEATURES)} numeric features, "
          f"windows {'/'.join(WINDOWS)}, pane {PANE}, {PARTITIONS} partitions")
    print(f"replay      {mid.run_s:8.2f} s  {replay_rate:>12,.0f} messages/s  "
          f"(matched {int(counts['matched']):,}, rejects {sum(summary['rejects'].values())})")
    print(f"baseline    {mid.base_s:8.2f} s  {base_rate:>12,.0f} messages/s  "
          "(envelope parse + msgspec.json.decode of the payload)")
    print(pairs_line(pairs))
    print(f"ratio       replay runs at {replay_rate / base_rate:.1%} of the bare decode "
          f"({base_rate / replay_rate:.1f}x slower; the median pair)")
    ratio = replay_rate / base_rate
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"target replay >= {TARGET}x decode-only on the high-rate stream: **{verdict}** "
          f"({ratio:.3f}x)")
    if args.keep:
        print(f"kept        {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
