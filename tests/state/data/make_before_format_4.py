"""How ``before_format_4.msgpack.zlib`` was written: run with the version before format 4
(commit 7c0570c) on the path, ``python tests/state/data/make_before_format_4.py OUT``.

It holds, as plain MessagePack values: one process's engine body as the engine alone wrote
it (``engine2@<cut>``, format 2: windows per partition, no stages) after ``cut`` messages of
:mod:`tests.state.streams`, with its alert rules fed the engine's undrained signals; one
process's checkpoint of format 3 (``core3@420``: stage 1 without windows and each model's
stage 2); and replicas' partition snapshots of format 3 (``snapshot3@420/<partition>``,
stage 1 with deltas)."""

import sys
import zlib

import msgspec

from monitor.core.alerting import Alerting
from monitor.core.deltas import DeltaBook
from monitor.core.engine import Engine
from monitor.core.pipeline import Pipeline
from monitor.state import format as fmt
from tests.state.streams import run, stream_config


def main(out: str) -> None:
    config = stream_config()
    bodies = {}
    for cut in (0, 130, 420, 700):
        engine = run(Engine(config), 0, cut)
        rules = Alerting(config, engine.models)
        rules.alerts_out = rules.feed(engine.signals_out)
        body = msgspec.msgpack.decode(fmt.encode_engine(engine, rules))
        body["format"] = 2
        bodies[f"engine2@{cut}"] = body
    core = run(Pipeline(config), 0, 420)  # type: ignore[arg-type]
    rules = Alerting(config, core.models)
    rules.alerts_out = rules.feed(core.pending_signals())
    bodies["core3@420"] = msgspec.msgpack.decode(
        fmt.encode_engine(core.engine, rules, core.stages)
    )
    engine = Engine(config)
    DeltaBook(engine)
    run(engine, 0, 420)
    for n in sorted(engine.partitions):
        bodies[f"snapshot3@420/{n}"] = msgspec.msgpack.decode(
            fmt.encode_snapshot(engine.export_partition(n))
        )
    data = zlib.compress(msgspec.msgpack.encode(bodies), 9)
    with open(out, "wb") as fh:
        fh.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
