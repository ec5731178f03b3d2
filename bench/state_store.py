"""Cost of per-partition checkpoints in the Kafka state store, against processing.

Builds an engine from ``--events`` predictions (labels for 80 %, 10 numeric features,
``--partitions`` partitions, a version and a 20-value segment, windows ``all``/``1h``/
``ewm30m``, 10 s pane), then measures in one run:

- processing: the engine's time for all the events (messages per second);
- a checkpoint's encoding: export, encode (``monitor.state.format``) and zlib of every
  partition (bytes raw and
  compressed per partition, seconds), as a share of the processing time of one
  checkpoint interval's worth of events at the measured rate (``--interval``);
- a takeover's decoding: decode and install of every partition into an empty engine;
- with the embedded broker (skip with ``--no-kafka``): ``KafkaStore.save`` of every
  partition and a restore by a second store (fence, read to the end, install).

It prints the figures, their ratios and the machine. No assertions::

    python bench/state_store.py                    # 200,000 predictions, 6 partitions
    python bench/state_store.py --events 50000 --no-kafka
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import zlib  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from monitor.config import MonitorConfig  # noqa: E402
from monitor.core.engine import Engine  # noqa: E402
from monitor.events.message import Message  # noqa: E402
from monitor.state.format import decode_snapshot, encode_snapshot  # noqa: E402

FEATURES = [f"f{i}" for i in range(10)]


def bench_config(bootstrap: str = "127.0.0.1:9092") -> MonitorConfig:
    """One binary model with features, a version and a segment; the Kafka store."""
    return MonitorConfig.model_validate(
        {
            "kafka": {"bootstrap_servers": bootstrap, "group_id": f"bench-{uuid.uuid4().hex[:6]}"},
            "state": {"store": "kafka", "topic": f"bench-state-{uuid.uuid4().hex[:6]}"},
            "time": {"pane": "10s", "allowed_lateness": "1m"},
            "models": [
                {
                    "name": "m",
                    "task": "binary",
                    "positive_class": 1,
                    "label_ttl": "6h",
                    "windows": ["all", "1h", "ewm30m"],
                    "segments": ["shop"],
                    "features": dict.fromkeys(FEATURES, "numeric"),
                }
            ],
        }
    )


def generate(events: int, partitions: int, seed: int = 1) -> list[Message]:
    """Predictions 0.1 s apart in event time; labels for 80 %, 5-600 s later."""
    rng = random.Random(seed)
    rows: list[tuple[float, str, int, bytes]] = []
    t0 = 1_700_000_000.0
    for i in range(events):
        ts = t0 + i * 0.1
        y = rng.random() < 0.3
        body = {
            "prediction_id": f"p{i}",
            "model": "m",
            "ts": ts,
            "prediction": int(rng.random() < 0.3),
            "score": round(rng.random(), 4),
            "model_version": f"v{i % 3}",
            "segment": {"shop": f"s{rng.randrange(20)}"},
            "features": {f: round(rng.gauss(0, 1), 3) for f in FEATURES},
        }
        part = i % partitions
        rows.append((ts, "predictions", part, json.dumps(body).encode()))
        if rng.random() < 0.8:
            lt = ts + rng.uniform(5, 600)
            label = {"prediction_id": f"p{i}", "label": int(y), "ts": lt}
            rows.append((lt, "labels", part, json.dumps(label).encode()))
    rows.sort(key=lambda r: r[0])
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for _, topic, part, value in rows:
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        out.append(Message(topic, part, off, b"k", value))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--interval", type=float, default=10.0, help="checkpoint interval, s")
    parser.add_argument("--no-kafka", action="store_true", help="skip the broker round trip")
    args = parser.parse_args()

    messages = generate(args.events, args.partitions)
    config = bench_config()
    engine = Engine(config)
    started = time.perf_counter()
    for i in range(0, len(messages), 5000):
        engine.process(messages[i : i + 5000])
    processing_s = time.perf_counter() - started
    rate = len(messages) / processing_s

    started = time.perf_counter()
    raw = {n: encode_snapshot(engine.export_partition(n)) for n in engine.partitions}
    packed = {n: zlib.compress(b, 1) for n, b in raw.items()}
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    fresh = Engine(config)
    for blob in packed.values():
        fresh.install_partition(decode_snapshot(zlib.decompress(blob), fresh))
    decode_s = time.perf_counter() - started
    assert fresh.offsets() == engine.offsets()

    per_interval = rate * args.interval
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, Python {platform.python_version()}")
    print(f"events: {len(messages):,} messages over {args.partitions} partitions")
    print(f"processing: {processing_s:.2f} s ({rate:,.0f} messages/s)")
    print(
        f"record per partition: {sum(map(len, raw.values())) / len(raw) / 1e3:,.0f} kB encoded, "
        f"{sum(map(len, packed.values())) / len(packed) / 1e3:,.0f} kB compressed"
    )
    print(
        f"encode all partitions: {encode_s * 1e3:.1f} ms = {encode_s / args.interval:.2%} of a "
        f"{args.interval:g} s interval at full load ({per_interval:,.0f} messages)"
    )
    print(f"decode + install all partitions: {decode_s * 1e3:.1f} ms")

    if not args.no_kafka:
        from monitor.broker import EmbeddedBroker
        from monitor.state.kafka_store import KafkaStore

        with EmbeddedBroker() as broker:
            config = bench_config(broker.bootstrap)
            engine.config = config
            writer, reader = KafkaStore(config), KafkaStore(config)
            stop = threading.Event()
            writer.connect(stop)
            reader.connect(stop)
            started = time.perf_counter()
            size = writer.save(engine)
            save_s = time.perf_counter() - started
            started = time.perf_counter()
            restored = Engine(config)
            reader.restore(restored, engine.partitions)
            restore_s = time.perf_counter() - started
            assert restored.offsets() == engine.offsets()
            writer.close()
            reader.close()
        print(
            f"kafka save (acks=all): {save_s * 1e3:.1f} ms for {size / 1e3:,.0f} kB; "
            f"restore by another store: {restore_s * 1e3:.1f} ms; "
            f"save = {save_s / args.interval:.2%} of the interval"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
