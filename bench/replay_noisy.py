"""Throughput of ``monitor replay`` on a real-shaped, noisy stream against a bare decode.

Issue 15 measured a production-like stream replayed at 0.02x a decode-only loop: few
predictions per pane (2.8 per second of event time, ~28 per 10 s pane) and the noise of a
real topic, each odd event of which sent its partition's whole poll down the per-message
path. This bench generates such a stream as a kcat ``-J`` capture in a temporary directory:

- ``--events`` predictions of one binary model at 2.8 per second of event time, 4
  partitions, one segment (``region``, 5 values), 4 features (``amount``, ``age``,
  ``ratio`` numeric, ``channel`` categorical), 2 % of ``amount`` missing (null or absent);
- their labels (85 % of them) 30 s to 30 min later, in label-time order;
- 0.5 % of labels sent twice (half at once, as a producer's retry, half minutes later);
- now and then (0.3 %) a label before its prediction, which comes seconds later;
- a few predictions (0.1 %) of a model the config does not know, some labelled;
- 1 % garbage of several kinds: capture lines that are not JSON, null payloads, payloads
  that are not JSON or not an event, out-of-range scores, unknown classes, unparsable or
  implausible times, times far ahead of the record's timestamp.

Then it times, on one core, ``monitor.replay.replay(...)`` over it (windows ``all``,
``1h``, ``ewm30m``, 6 metrics, 10 s pane) and the baseline over the same capture in the same
run: for each line, the envelope parse and ``msgspec.json.decode`` of the payload (lines or
payloads that are not JSON are skipped). The two run one after the other ``--pairs`` times
(3 unless told) and the target is judged on the median pair's ratio. It prints messages per
second of each, their ratio, how many segments the core cut the polls into (and how many
messages it decided alone, see ``split_and_join`` in ``monitor/core/fastpath.py``) and the
target line::

    python bench/replay_noisy.py                  # 150,000 predictions (~285,000 lines)
    python bench/replay_noisy.py --events 50000
    python bench/replay_noisy.py --profile        # and the functions with the most time
"""

from __future__ import annotations

import os

# One core: no BLAS thread pools (set before numpy is imported).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import heapq  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import msgspec  # noqa: E402
from benchlib import (  # noqa: E402
    alternate,
    as_the_cli,
    machine,
    median_pair,
    one_core,
    pairs_line,
    stage_split,
    stage_table,
    top_functions,
)

import monitor.core.engine as engine_module  # noqa: E402
from monitor.config import MonitorConfig  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402
from monitor.replay import Envelope, replay  # noqa: E402

PARTITIONS = 4
RATE = 2.8  # predictions per second of event time
PANE = "10s"
WINDOWS = ["all", "1h", "ewm30m"]
METRICS = ["accuracy", "precision", "recall", "log_loss", "brier", "roc_auc"]
FEATURES = {"amount": "numeric", "age": "numeric", "ratio": "numeric", "channel": "categorical"}
REGIONS = ["eu", "us", "apac", "latam", "mea"]
CHANNELS = ["web", "app", "store", "phone", "partner", "other"]
START_TS = 1_700_000_000.0
LABEL_SHARE = 0.85
GARBAGE = 0.01
DUPLICATE_LABELS = 0.005
MISSING = 0.02
EARLY = 0.003
UNKNOWN_MODEL = 0.001
TARGET = 0.4


def bench_config(max_pending: int | None = None) -> MonitorConfig:
    """The binary model above: its segment, features, windows and 6 metrics, the 10 s pane
    and the defaults otherwise (among them the reference warmup); ``max_pending`` instead
    of the default cap of waiting predictions when given."""
    cap = {} if max_pending is None else {"max_pending": max_pending}
    return MonitorConfig.model_validate({
        "time": {"pane": PANE, "allowed_lateness": "1m"},
        "models": [{
            "name": "m",
            "task": "binary",
            "positive_class": 1,
            "label_ttl": "6h",
            "windows": WINDOWS,
            "metrics": METRICS,
            "segments": ["region"],
            "features": FEATURES,
            **cap,
        }],
    })


def _line(topic: str, partition: int, offset: int, key: str, payload: bytes | None,
          ts_ms: int) -> bytes:
    """One kcat ``-J`` line; the payload is the message text as a JSON string."""
    return json.dumps({
        "topic": topic, "partition": partition, "offset": offset, "tstype": "create",
        "ts": ts_ms, "broker": 1, "key": key,
        "payload": None if payload is None else payload.decode(),
    }, separators=(",", ":")).encode() + b"\n"


class _Writer:
    """Writes capture lines with per-partition offsets; counts lines and garbage."""

    def __init__(self, fh: Any, rng: random.Random) -> None:
        self.fh = fh
        self.rng = rng
        self.offsets = {(t, p): 0 for t in ("predictions", "labels") for p in range(PARTITIONS)}
        self.lines = 0
        self.kinds: dict[str, int] = {}

    def write(self, topic: str, part: int, key: str, payload: bytes | None, ts: float) -> None:
        """A message, or now and then (1 %) a garbage one in its place or beside it."""
        if self.rng.random() < GARBAGE:
            self._garbage(topic, part, key, payload, ts)
        off = self.offsets[topic, part]
        self.offsets[topic, part] = off + 1
        self.fh.write(_line(topic, part, off, key, payload, int(ts * 1000)))
        self.lines += 1

    def _garbage(self, topic: str, part: int, key: str, payload: bytes | None,
                 ts: float) -> None:
        rng = self.rng
        kind = rng.choice(["line", "null", "not_json", "not_event", "bad_value", "bad_time",
                           "future"])
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind == "line":  # a capture line that is not JSON: replay skips it
            self.fh.write(b'{"topic":"predictions","partition":' + str(part).encode() + b",\n")
            self.lines += 1
            return
        body: bytes | None
        if kind == "null":
            body = None
        elif kind == "not_json":
            body = rng.choice(
                [b"{not json", b"<html>502 Bad Gateway</html>", b'{"prediction_id": "x"']
            )
        elif kind == "not_event":
            body = rng.choice([b"[]", b'{"prediction_id": 3}', b'"text"', b"{}"])
        else:
            event = json.loads(payload or b"{}")
            if kind == "bad_value":
                if "score" in event:
                    event["score"] = rng.choice([1.7, -0.2])
                else:
                    event["label"] = rng.choice(["spam", 7])
            elif kind == "bad_time":
                event["ts"] = rng.choice(["yesterday", 12.0, "2023-13-45T00:00:00Z"])
            else:  # a producer with a broken clock
                event["ts"] = ts + 86_400
            event["prediction_id"] = f"g{self.lines}"
            body = json.dumps(event).encode()
        off = self.offsets[topic, part]
        self.offsets[topic, part] = off + 1
        self.fh.write(_line(topic, part, off, key, body, int(ts * 1000)))
        self.lines += 1


def generate(path: Path, events: int, seed: int = 7,
             label_share: float = LABEL_SHARE) -> dict[str, Any]:
    """Write the capture, ``label_share`` of the predictions labelled; return what it holds
    (lines, labels, duplicates, ...)."""
    rng = random.Random(seed)
    queue: list[tuple[float, int, str, int, bytes, str]] = []  # (ts, seq, topic, part, ...)
    seq = 0
    stats = {"predictions": 0, "labels": 0, "duplicate_labels": 0, "early_labels": 0,
             "unknown_model": 0, "missing": 0}

    def push(ts: float, topic: str, part: int, payload: bytes, key: str) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (ts, seq, topic, part, payload, key))

    with open(path, "wb") as fh:
        out = _Writer(fh, rng)

        def flush(upto: float) -> None:
            while queue and queue[0][0] <= upto:
                ts, _, topic, part, payload, key = heapq.heappop(queue)
                out.write(topic, part, key, payload, ts)

        for i in range(events):
            ts = START_TS + i / RATE + rng.uniform(0.0, 0.3)
            flush(ts)
            pid = f"{rng.getrandbits(48):012x}-{i}"
            part = zlib.crc32(pid.encode()) % PARTITIONS
            unknown = rng.random() < UNKNOWN_MODEL
            amount: float | None = round(rng.lognormvariate(3.0, 1.0), 2)
            age = rng.randint(18, 90)
            ratio = round(rng.betavariate(2, 5), 3)
            channel = rng.choice(CHANNELS)
            z = 0.02 * (age - 50) + 2.0 * ratio - 0.6 + rng.gauss(0.0, 0.8)
            score = round(1.0 / (1.0 + math.exp(-z)), 4)
            feats: dict[str, Any] = {"amount": amount, "age": age, "ratio": ratio,
                                     "channel": channel}
            if rng.random() < MISSING:
                stats["missing"] += 1
                if rng.random() < 0.5:
                    feats["amount"] = None
                else:
                    del feats["amount"]
            body = {
                "prediction_id": pid, "model": "m-canary" if unknown else "m", "ts": round(ts, 3),
                "prediction": int(score >= 0.5), "score": score,
                "model_version": "v3", "segment": {"region": rng.choice(REGIONS)},
                "features": feats,
            }
            payload = json.dumps(body, separators=(",", ":")).encode()
            stats["predictions"] += 1
            stats["unknown_model"] += unknown
            label = int(rng.random() < score)
            if not unknown and rng.random() < EARLY:  # the label first, the prediction later
                stats["early_labels"] += 1
                stats["labels"] += 1
                lpay = json.dumps({"prediction_id": pid, "label": label, "ts": round(ts, 3)},
                                  separators=(",", ":")).encode()
                out.write("labels", part, pid, lpay, ts)
                push(ts + rng.uniform(2.0, 60.0), "predictions", part, payload, pid)
                continue
            out.write("predictions", part, pid, payload, ts)
            if rng.random() < label_share and (not unknown or rng.random() < 0.5):
                lts = ts + min(rng.lognormvariate(5.5, 0.8), 1800.0) + 30.0
                lbody: dict[str, Any] = {"prediction_id": pid, "label": label, "ts": round(lts, 3)}
                if rng.random() < 0.2:
                    lbody["model"] = body["model"]
                lpay = json.dumps(lbody, separators=(",", ":")).encode()
                push(lts, "labels", part, lpay, pid)
                stats["labels"] += 1
                if rng.random() < DUPLICATE_LABELS:
                    stats["duplicate_labels"] += 1
                    again = lts + (0.001 if rng.random() < 0.5 else rng.uniform(60.0, 900.0))
                    push(again, "labels", part, lpay, pid)
        flush(math.inf)
    stats["lines"] = out.lines
    stats["garbage"] = sum(out.kinds.values())
    stats["garbage_kinds"] = out.kinds
    return stats


def baseline(path: Path) -> int:
    """Envelope parse and a generic decode of each payload (lines and payloads that are not
    JSON skipped); nothing else. Returns the lines read."""
    decode_envelope = msgspec.json.Decoder(Envelope).decode
    decode = msgspec.json.decode
    errors = (msgspec.DecodeError, UnicodeDecodeError)
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            n += 1
            try:
                env = decode_envelope(line)
                if env.payload is not None:
                    decode(env.payload)
            except errors:
                continue
    return n


def counted_replay(capture: Path, out: Path, profile: bool, max_pending: int | None = None
                   ) -> tuple[dict[str, Any], list[int], Any]:
    """``replay`` over the capture, counting the messages the core saw and those it left to
    the segments it decided them in (a wrapper around the batch path's entry point)."""
    seen = [0, 0, 0.0, 0, 0]  # messages, alone; seconds of decode and join; segments, polls
    split = engine_module.split_and_join
    Engine = engine_module.Engine
    methods = {name: getattr(Engine, name) for name in ("process", "_accumulate", "_advance")}

    def counting(engine: Any, messages: Any) -> Any:
        slow = split(engine, messages)
        seen[0] += len(messages)
        seen[1] += slow.alone
        seen[3] += slow.segments
        seen[4] += 1
        return slow

    def timed(name: str, sign: float) -> Any:
        method = methods[name]

        def run(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return method(*args)
            finally:
                seen[2] += sign * (time.perf_counter() - t0)

        return run

    engine_module.split_and_join = counting  # type: ignore[assignment]
    # decode and join: Engine.process less its accumulation and pane closes
    Engine.process = timed("process", 1.0)  # type: ignore[method-assign]
    Engine._accumulate = timed("_accumulate", -1.0)  # type: ignore[method-assign]
    Engine._advance = timed("_advance", -1.0)  # type: ignore[method-assign]
    prof = None
    try:
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        summary = replay(bench_config(max_pending), [str(capture)], out)
    finally:
        if prof is not None:
            prof.disable()
        engine_module.split_and_join = split
        for name, method in methods.items():
            setattr(Engine, name, method)
    return summary, seen, prof


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000, help="predictions")
    parser.add_argument("--profile", action="store_true",
                        help="profile the replay (a separate run) and list its top functions")
    parser.add_argument("--pairs", type=int, default=3,
                        help="baseline/replay pairs run back to back; the target is judged "
                        "on the median pair's ratio")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--label-share", type=float, default=LABEL_SHARE,
                        help="share of the predictions that get a label (the others wait)")
    parser.add_argument("--max-pending", type=int, default=None,
                        help="the model's max_pending (default: the config's default)")
    args = parser.parse_args()
    configure_logging("error", json=True, stream=sys.stderr)
    one_core()
    as_the_cli()  # as ``monitor replay`` does

    tmp = Path(tempfile.mkdtemp(prefix="monitor-bench-noisy-"))
    capture = tmp / "capture.jsonl"
    t0 = time.perf_counter()
    stats = generate(capture, args.events, label_share=args.label_share)
    gen_s = time.perf_counter() - t0
    lines = stats["lines"]

    pairs = alternate(
        args.pairs,
        lambda: baseline(capture),
        lambda i: counted_replay(capture, tmp / f"out{i}", False, args.max_pending),
    )
    mid = median_pair(pairs)
    summary, seen, _ = mid.result
    base_s, replay_s = mid.base_s, mid.run_s

    counts = summary["models"]["m"]["counts"]
    base_rate = lines / base_s
    replay_rate = lines / replay_s
    ratio = replay_rate / base_rate
    print(f"machine     {machine()}; one core")
    print(f"capture     {lines:,} lines, {capture.stat().st_size / 1e6:.0f} MB, generated in "
          f"{gen_s:.1f} s: {stats['predictions']:,} predictions at {RATE} per s of event time "
          f"+ {stats['labels']:,} labels, {stats['duplicate_labels']:,} labels sent twice, "
          f"{stats['early_labels']:,} labels before their prediction, "
          f"{stats['unknown_model']:,} predictions of an unknown model, "
          f"{stats['missing']:,} missing amounts, {stats['garbage']:,} garbage "
          f"({', '.join(f'{k} {v}' for k, v in sorted(stats['garbage_kinds'].items()))})")
    print(f"config      binary, {len(METRICS)} metrics, 1 segment of {len(REGIONS)} values, "
          f"{len(FEATURES)} features, windows {'/'.join(WINDOWS)}, pane {PANE}, "
          f"{PARTITIONS} partitions")
    rejects = summary["rejects"]
    print(f"replay      {replay_s:8.2f} s  {replay_rate:>12,.0f} messages/s  "
          f"(matched {int(counts['matched']):,}, evicted {int(counts['evicted']):,}, "
          f"rejects {sum(rejects.values()):,})")
    print(f"baseline    {base_s:8.2f} s  {base_rate:>12,.0f} messages/s  "
          "(envelope parse + msgspec.json.decode of the payload)")
    join_rate = seen[0] / seen[2]
    print(
        f"decode+join {seen[2]:8.2f} s  {join_rate:>12,.0f} messages/s  (the core's decode, "
        f"checks and join: {join_rate / base_rate:.2f}x the bare decode; the rest "
        "is reading, accumulation, pane closes and outputs)"
    )
    share = seen[1] / max(seen[0], 1)
    per_poll = seen[3] / max(seen[4], 1)
    print(f"segments    {seen[3]:,} for {seen[4]:,} polls ({per_poll:.2f} a poll); "
          f"{seen[1]:,} of {seen[0]:,} messages ({share:.1%}) decided alone")
    print(pairs_line(pairs))
    print(f"ratio       replay runs at {ratio:.1%} of the bare decode "
          f"({base_rate / replay_rate:.1f}x slower; the median pair)")
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"target replay >= {TARGET}x decode-only on the noisy stream: **{verdict}** "
          f"({ratio:.3f}x, {share:.1%} alone)")
    if args.profile:
        _, _, prof = counted_replay(capture, tmp / "out-profiled", True, args.max_pending)
        import pstats

        stats = pstats.Stats(prof)
        print("\nprofiled run, seconds by stage\n")
        print(stage_table(stage_split(stats)))
        print("\n" + top_functions(stats, 25))
    if args.keep:
        print(f"kept        {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
