"""JSON decoders for a poll of prediction events: one call per message against columnar readers.

Decodes the prediction payloads of ``bench/e2e_throughput.py`` (about 200 bytes, 10
numeric features) in polls of ``--poll`` messages, each way in turn, on one core:

- **msgspec, per message**: ``msgspec.json.Decoder(Struct).decode`` once per payload,
  with the features as a struct of their names (the daemon's batch path);
- **msgspec, whole poll**: the poll's payloads joined into one JSON array, decoded in one
  call as ``list[Struct]``;
- **pyarrow.json**: the poll as newline-delimited JSON read into an Arrow table with an
  explicit schema, single-threaded, then the columns as numpy arrays;
- **polars.read_ndjson**: the same with Polars, then the columns as numpy arrays.

Each reading is the best of ``--repeat`` runs over the same polls, microseconds per
message, and its ratio to msgspec per message (above 1: slower). It tells whether a
columnar reader library would take the decode out of Python's way: it would, only if it
decoded faster than the per-message call it replaces. No assertions::

    python bench/decoders.py
    python bench/decoders.py --events 20000 --repeat 3
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "POLARS_MAX_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
import msgspec  # noqa: E402
from e2e_throughput import FEATURES, generate  # noqa: E402


def _struct_decoders() -> tuple[Any, Any]:
    features = msgspec.defstruct(
        "Features", [(n, float | None, None) for n in FEATURES], frozen=True, gc=False
    )
    event = msgspec.defstruct(
        "Prediction",
        [("prediction_id", str), ("model", str), ("ts", float), ("prediction", int),
         ("score", float | None, None), ("features", features | None, None)],
        frozen=True, gc=False,
    )
    return msgspec.json.Decoder(event), msgspec.json.Decoder(list[event])  # type: ignore[valid-type]


def ways(polls: list[list[bytes]]) -> dict[str, Callable[[list[bytes]], int]]:
    """Each decoder as a function of one poll that returns the rows it decoded."""
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.json as pj

    one, many = _struct_decoders()
    feature_type = pa.struct([(n, pa.float64()) for n in FEATURES])
    schema = pa.schema([("prediction_id", pa.string()), ("model", pa.string()),
                        ("ts", pa.float64()), ("prediction", pa.int64()),
                        ("score", pa.float64()), ("features", feature_type)])
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    read = pj.ReadOptions(use_threads=False, block_size=1 << 26)
    pl_schema: dict[str, Any] = {"prediction_id": pl.String, "model": pl.String, "ts": pl.Float64,
                 "prediction": pl.Int64, "score": pl.Float64,
                 "features": pl.Struct({n: pl.Float64 for n in FEATURES})}

    def msgspec_each(poll: list[bytes]) -> int:
        events = [one.decode(v) for v in poll]
        ts = np.fromiter((e.ts for e in events), dtype=np.float64, count=len(events))
        return int(ts.size)

    def msgspec_poll(poll: list[bytes]) -> int:
        events = many.decode(b"[" + b",".join(poll) + b"]")
        ts = np.fromiter((e.ts for e in events), dtype=np.float64, count=len(events))
        return int(ts.size)

    def arrow(poll: list[bytes]) -> int:
        table = pj.read_json(pa.BufferReader(b"\n".join(poll)), read_options=read,
                             parse_options=parse)
        feats = table.column("features").combine_chunks()
        for i in range(len(FEATURES)):
            feats.field(i).to_numpy(zero_copy_only=False)
        return int(table.column("ts").to_numpy().size)

    def polars(poll: list[bytes]) -> int:
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(poll)), schema=pl_schema)
        frame.unnest("features").to_numpy()
        return int(frame["ts"].to_numpy().size)

    return {"msgspec, per message": msgspec_each, "msgspec, whole poll": msgspec_poll,
            "pyarrow.json": arrow, "polars.read_ndjson": polars}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="prediction payloads")
    parser.add_argument("--poll", type=int, default=10_000, help="messages per poll")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; the best counts")
    args = parser.parse_args()
    benchlib.one_core()
    messages, mean = generate(args.events)
    payloads = [value for kind, _key, value, _part in messages if kind == "predictions"]
    polls = [payloads[i:i + args.poll] for i in range(0, len(payloads), args.poll)]
    print(benchlib.machine())
    print(f"{len(payloads):,} prediction payloads, {mean:.0f} B mean, polls of {args.poll:,}")
    best: dict[str, float] = {}
    decoders = ways(polls)
    for _ in range(args.repeat):  # interleaved, so that a busy moment hits every way
        for name, fn in decoders.items():
            t0 = time.process_time()
            rows = sum(fn(poll) for poll in polls)
            took = time.process_time() - t0
            assert rows == len(payloads), (name, rows)
            best[name] = min(best.get(name, float("inf")), took)
    base = best["msgspec, per message"]
    print("| decoder | us per message (CPU) | over msgspec per message |")
    print("| --- | ---: | ---: |")
    for name, took in best.items():
        print(f"| {name} | {took / len(payloads) * 1e6:.2f} | {took / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
