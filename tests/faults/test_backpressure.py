"""Backpressure (issue item 7): when the outputs cannot take writes, the daemon pauses its
input instead of buffering without bound, commits nothing past an undelivered record, and
resumes once the outputs take writes again, delivering everything exactly once.

Two real Tansu brokers: the session broker carries the input topics; the alert and
dead-letter topics live on a second one, which the test freezes (SIGSTOP: it stops taking
writes while the input broker keeps serving reads) and thaws. The daemon is the real
:class:`~monitor.app.App`, run in a thread, with its sink pointed at the second broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient

from monitor.app import App
from monitor.broker import EmbeddedBroker, create_topics
from monitor.config import KafkaConfig, config_from_mapping
from monitor.kafka.sink import KafkaSink
from tests.conftest import Topics
from tests.daemon import read_topic

T0 = 1_700_000_000.0
STALL_S = 2.0


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets, as the broker holds them."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def predictions(start: int, count: int) -> list[Any]:
    return [
        (f"p{i}".encode(), json.dumps({"prediction_id": f"p{i}", "model": "b", "ts": T0 + i,
                                       "prediction": i % 2}).encode(), [], 0)
        for i in range(start, start + count)
    ]  # fmt: skip


def wait_for(check: Callable[[], bool], timeout: float, what: str, app: App) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: ready={app.ready_reason!r} "
                         f"events={app.engine.events} backlog={app.sink.backlog}")


def test_input_pauses_while_the_output_broker_takes_no_writes_and_resumes_after(
    tmp_path: Path,
    broker: EmbeddedBroker,
    make_topics: Callable[..., Topics],
    kafka_config: Callable[..., KafkaConfig],
    produce: Callable[..., None],
) -> None:
    topics = make_topics(1)
    kafka = kafka_config(broker, topics)
    config = config_from_mapping({
        "kafka": kafka.model_dump(mode="python", exclude={"sasl_password"}),
        "http": {"listen": "127.0.0.1:0"},
        "state": {"dir": str(tmp_path / "state"), "checkpoint_interval": "1s"},
        "time": {"pane": "10s", "allowed_lateness": "0s", "idle_timeout": "1h"},
        "models": [{"name": "b", "task": "binary", "positive_class": 1, "windows": ["all"]}],
    })  # fmt: skip
    with EmbeddedBroker() as outputs:
        create_topics(outputs.bootstrap, {topics.alerts: 1, topics.dead_letters: 1})
        app = App(config)
        app.sink = KafkaSink(kafka_config(outputs, topics), stall_s=STALL_S)
        runner = threading.Thread(target=app.run, daemon=True)
        runner.start()
        try:
            # 1. all is well: 10 predictions consumed and committed
            produce(broker.bootstrap, topics.predictions, predictions(0, 10))
            key = (topics.predictions, 0)
            wait_for(lambda: committed(broker.bootstrap, topics.group_id).get(key) == 10, 30,
                     "the first commit", app)  # fmt: skip

            # 2. the output broker stops taking writes; a bad message needs a dead letter
            outputs.freeze()
            produce(broker.bootstrap, topics.predictions,
                    [(b"bad", b"{not json", [("trace", b"t-1")], 0)])  # offset 10
            wait_for(lambda: app.paused, 3 * STALL_S + 10, "the pause", app)
            consumed = app.engine.events
            produce(broker.bootstrap, topics.predictions, predictions(10, 30))  # offsets 11..40
            time.sleep(2.0)  # several loop iterations, retries and checkpoint attempts
            assert app.paused and app.engine.events == consumed == 11  # nothing more read
            assert app.ready_reason.startswith("paused: 1 output records undelivered")
            assert app.sink.backlog == 1
            # nothing committed (group or checkpoint) past the undelivered dead letter
            assert committed(broker.bootstrap, topics.group_id)[key] <= 10
            saved = app.store.load(config)
            assert saved is not None and saved.offsets()[key] <= 10

            # 3. writes work again: the dead letter goes out once, input resumes
            outputs.thaw()
            wait_for(lambda: not app.paused and app.engine.events == 41, 30, "the resume", app)
            wait_for(lambda: committed(broker.bootstrap, topics.group_id).get(key) == 41, 30,
                     "the commit after the resume", app)  # fmt: skip
            assert app.sink.backlog == 0 and app.sink.dropped == 0
        finally:
            app.stop.set()
            runner.join(30)
        assert not runner.is_alive()
        letters = read_topic(outputs.bootstrap, topics.dead_letters, idle_s=1.5)
        assert [(m.key(), m.value()) for m in letters] == [(b"bad", b"{not json")]
        headers = dict(letters[0].headers())
        assert headers["trace"] == b"t-1" and headers["monitor.source.offset"] == b"10"
        assert app.core is not None  # one process (the local store): both stages
        counts = app.core.summary()["models"]["b"]["counts"]
        assert counts["predictions"] == 40  # every valid one, once


def test_a_refused_dead_letter_is_kept_and_nothing_is_committed_past_it(
    tmp_path: Path,
    kafka_config: Callable[..., KafkaConfig],
    produce: Callable[..., None],
) -> None:
    """The broker refuses every write to the dead-letter topic (a schema no record meets).
    The refused dead letter is sent again and again, never dropped; input stays paused and
    no checkpoint or commit passes it, for as long as it lasts. The operator's fix (here: a
    dead-letter topic that takes writes) and a restart deliver it once, from the last
    checkpoint, with every count exact."""
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    topics = Topics("predictions-r", "labels-r", "alerts-r", "dead-letters-r", "group-r", 1, 1)
    (schemas / f"{topics.dead_letters}.json").write_text(json.dumps(
        {"type": "object", "properties": {"value": {"type": "object", "required": ["never"]}}}
    ))  # fmt: skip
    fixed = "dead-letters-fixed"

    def make_config(bootstrap: str, dead_letter_topic: str) -> Any:
        kafka = kafka_config(bootstrap, topics, dead_letter_topic=dead_letter_topic)
        return config_from_mapping({
            "kafka": kafka.model_dump(mode="python", exclude={"sasl_password"}),
            "http": {"listen": "127.0.0.1:0"},
            "state": {"dir": str(tmp_path / "state"), "checkpoint_interval": "1s"},
            "time": {"pane": "10s", "allowed_lateness": "0s", "idle_timeout": "1h"},
            "models": [{"name": "b", "task": "binary", "positive_class": 1, "windows": ["all"]}],
        })  # fmt: skip

    with EmbeddedBroker(schema_dir=schemas) as own:
        create_topics(own.bootstrap, {topics.predictions: 1, topics.labels: 1, topics.alerts: 1,
                                      topics.dead_letters: 1, fixed: 1})  # fmt: skip
        key = (topics.predictions, 0)
        produce(own.bootstrap, topics.predictions,
                [*predictions(0, 10), (b"bad", b"{not json", [], 0), *predictions(10, 10)])
        config = make_config(own.bootstrap, topics.dead_letters)
        app = App(config)
        runner = threading.Thread(target=app.run, daemon=True)
        runner.start()
        try:
            wait_for(lambda: app.paused, 30, "the pause", app)
            failed = app.sink.failed
            time.sleep(2.0)  # retries and checkpoint attempts, all refused
            assert app.paused and app.sink.failed > failed  # sent again, refused again
            assert app.sink.backlog == 1 and app.sink.dropped == 0
            assert committed(own.bootstrap, topics.group_id).get(key, 0) <= 10
        finally:
            app.stop.set()
            runner.join(30)
        assert not runner.is_alive()
        # the final checkpoint was skipped too: the state on disk is from before the batch
        saved = app.store.load(config)
        assert saved is None or saved.offsets().get(key, 0) <= 10
        assert committed(own.bootstrap, topics.group_id).get(key, 0) <= 10

        config = make_config(own.bootstrap, fixed)
        again = App(config)
        runner = threading.Thread(target=again.run, daemon=True)
        runner.start()
        try:
            wait_for(lambda: committed(own.bootstrap, topics.group_id).get(key) == 21, 30,
                     "the commit after the fix", again)  # fmt: skip
            assert not again.paused and again.sink.backlog == 0
        finally:
            again.stop.set()
            runner.join(30)
        letters = read_topic(own.bootstrap, fixed, idle_s=1.5)
        assert [(m.key(), m.value()) for m in letters] == [(b"bad", b"{not json")]
        assert read_topic(own.bootstrap, topics.dead_letters, idle_s=1.0) == []
        assert again.core is not None  # one process (the local store): both stages
        counts = again.core.summary()["models"]["b"]["counts"]
        assert counts["predictions"] == 20
