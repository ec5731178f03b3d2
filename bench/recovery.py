"""Recovery: time from start to ready with 1M pending predictions in the checkpoint
(issue item 6).

Builds the checkpoint in this process: the config ``monitor run`` will read (one binary
model, 10 numeric features, windows ``all``/``1h``/``ewm30m``, ``max_pending`` 2M, label
TTL 1 d), an engine fed ``--pending`` predictions that never get a label, saved with
``CheckpointStore``. Then, against a fresh Tansu broker with the input topics created:

- ``monitor run`` with that state directory: seconds from the spawn to ``/readyz`` 200;
- the same with an empty state directory (the start-up and group join alone);
- ``CheckpointStore.load`` of the checkpoint in this process (the part the state adds).

Target: ready <= 5 s with 1M pending::

    python bench/recovery.py
    python bench/recovery.py --pending 100000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib

from monitor.broker import EmbeddedBroker
from monitor.config import load_config
from monitor.core.engine import Engine
from monitor.logs import configure_logging
from monitor.state.checkpoint import MAGIC, CheckpointStore

TARGET = 5.0
#: Seconds of the parts of a checkpoint load, measured in-process.
PARTS: dict[str, float] = {}


def build_checkpoint(daemon: benchlib.Daemon, pending: int) -> tuple[int, float]:
    """Save a checkpoint of ``pending`` waiting predictions where ``daemon`` will look;
    return its size in bytes and the seconds one ``CheckpointStore.load`` takes."""
    cfg = load_config(daemon.config_path)
    engine = Engine(cfg)
    topics = daemon.topics
    engine.track(benchlib.all_partitions(topics["predictions"], topics["labels"]))
    source = benchlib.stream(pending, label_share=0.0, predictions_topic=topics["predictions"],
                             labels_topic=topics["labels"])
    while batch := list(islice(source, 10_000)):
        engine.process(batch)
        engine.drain_signals()
    store = CheckpointStore(cfg.state.dir)
    size = store.save(engine)
    del engine
    t0 = time.perf_counter()
    loaded = CheckpointStore(cfg.state.dir).load(cfg)
    load_s = time.perf_counter() - t0
    assert loaded is not None
    raw = store.path.read_bytes()
    header_len = int.from_bytes(raw[len(MAGIC):len(MAGIC) + 4], "big")
    body = raw[len(MAGIC) + 4 + header_len:]
    t0 = time.perf_counter()
    hashlib.sha256(body).hexdigest()
    PARTS["sha256 of the body"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pickle.loads(body)
    PARTS["pickle.loads of the body (the engine)"] = time.perf_counter() - t0
    waiting = sum(len(t) for s in loaded.partitions.values() for t in s.join.pending)
    if waiting != pending:
        raise RuntimeError(f"checkpoint holds {waiting} pending, not {pending}")
    return size, load_s


def loaded_line(daemon: benchlib.Daemon) -> dict[str, object] | None:
    """The daemon's ``checkpoint_loaded`` log record, if it logged one."""
    for line in (daemon.workdir / "daemon.log").read_text(errors="replace").splitlines():
        if "checkpoint_loaded" in line:
            try:
                record: dict[str, object] = json.loads(line)
                return record
            except json.JSONDecodeError:
                continue
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    body = {"models": [benchlib.model_dict("m0", extra={"max_pending": 2_000_000,
                                                         "label_ttl": "1d"})]}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        empty_dir, full_dir = Path(tmp) / "empty", Path(tmp) / "full"
        empty_dir.mkdir()
        full_dir.mkdir()
        empty = benchlib.Daemon(empty_dir, broker.bootstrap, body, topics="rec")
        empty.create_topics()
        empty.start()
        try:
            empty_s = empty.wait_ready()
            empty_phases = empty.phases()
        finally:
            empty.stop()
        full = benchlib.Daemon(full_dir, broker.bootstrap, body, topics="rec")
        t0 = time.perf_counter()
        size, load_s = build_checkpoint(full, args.pending)
        build_s = time.perf_counter() - t0
        full.start()
        try:
            full_s = full.wait_ready()
            record = loaded_line(full)
            full_phases = full.phases()
        finally:
            full.stop()
        if record is None:
            raise RuntimeError(f"the daemon did not load the checkpoint: {full.log_tail()}")
        shutil.rmtree(full_dir / "state", ignore_errors=True)
    print("## Recovery (item 6)\n")
    print(f"machine: {benchlib.machine()}\n")
    print(f"checkpoint: {args.pending:,} pending predictions, {size / 1e6:.0f} MB, built in "
          f"{build_s:.0f} s; the daemon logged `checkpoint_loaded` with "
          f"events={record.get('events')}\n")
    print("| measurement | seconds |")
    print("| --- | ---: |")
    print(f"| `monitor run` start to `/readyz` 200, empty state | {empty_s:.2f} |")
    print(f"| **`monitor run` start to `/readyz` 200, {args.pending:,} pending** | "
          f"**{full_s:.2f}** |")
    print(f"| `CheckpointStore.load` of that checkpoint, in-process | {load_s:.2f} |")
    for part, seconds in PARTS.items():
        print(f"| of which {part} | {seconds:.2f} |")
    print("\nPhases, seconds from the spawn to the first log record of each (ready: the "
          "first `/readyz` 200, polled every 20 ms):\n")
    print("| phase | empty state | with the checkpoint |")
    print("| --- | ---: | ---: |")
    for phase in benchlib.PHASES:
        a, b = empty_phases.get(phase), full_phases.get(phase)
        print(f"| {phase} | {'' if a is None else f'{a:.2f}'} | "
              f"{'' if b is None else f'{b:.2f}'} |")
    print(f"| ready | {empty_s:.2f} | {full_s:.2f} |")
    verdict = "met" if full_s <= TARGET else "NOT met"
    load_phase = full_phases.get("http_listening", 0.0) - empty_phases.get("http_listening", 0.0)
    join = {n: p.get("assignment_changed", 0.0) - p.get("kafka_source_subscribed", 0.0)
            for n, p in (("empty", empty_phases), ("full", full_phases))}
    print(f"\ntarget ready <= {TARGET:.0f} s with the checkpoint: **{verdict}**; loading the "
          f"checkpoint delays the start by {load_phase:.2f} s (http_listening), the group "
          f"join takes {join['full']:.2f} s (empty state: {join['empty']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
