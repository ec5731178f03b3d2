"""How ``before_format_5.msgpack.zlib`` was written: run with the version before format 5
(commit 591d6e4) on the path, ``python tests/state/data/make_before_format_5.py OUT``.

It holds, as plain MessagePack values, bodies of format 4 whose models are warming up, so
that they hold predictions raw, a record a row (``WarmupRec``): one process's checkpoint
(``core4@<cut>``: stage 1 and each model's stage 2, with its warmup buffer and warmup
sample) after ``cut`` messages of :mod:`tests.state.streams`, with its alert rules fed the
core's undrained signals; and model ``b``'s stage 2 fed stage 1's deltas of the first 40
messages in four polls, none confirmed (``stage4@40``: with the raw rows of its delta
pieces too)."""

import sys
import zlib

import msgspec

from monitor.core.alerting import Alerting
from monitor.core.deltas import DeltaBook
from monitor.core.engine import Engine
from monitor.core.model_stage import ModelStage
from monitor.core.pipeline import Pipeline
from monitor.state import format as fmt
from tests.state.streams import PARTS, messages, run, stream_config


def stage_fed(cut: int) -> ModelStage:
    """Model ``b``'s stage 2 fed stage 1's deltas of messages 0 to ``cut``, ten a poll."""
    config = stream_config()
    engine = Engine(config)
    book = DeltaBook(engine)
    stage = ModelStage(config, "b", PARTS)
    for i in range(0, cut, 10):
        engine.process(messages(i, min(cut, i + 10)))
        engine.drain_signals()
        for n in sorted(engine.partitions):
            stage.apply(book.take(n), advance=False)
        stage.advance()
    return stage


def main(out: str) -> None:
    assert fmt.FORMAT == 4
    config = stream_config()
    bodies = {}
    for cut in (40, 80):
        core = run(Pipeline(config), 0, cut)  # type: ignore[arg-type]
        rules = Alerting(config, core.models)
        rules.alerts_out = rules.feed(core.pending_signals())
        bodies[f"core4@{cut}"] = msgspec.msgpack.decode(
            fmt.encode_engine(core.engine, rules, core.stages)
        )
    bodies["stage4@40"] = msgspec.msgpack.decode(fmt.encode_stage(stage_fed(40), 7))
    data = zlib.compress(msgspec.msgpack.encode(bodies), 9)
    with open(out, "wb") as fh:
        fh.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
