"""With the Kafka store, ``/readyz`` answers 503 while assigned partitions are being
restored from the store, and the restore happens before their first fetch: the daemon
(in-process, real broker) resumes from the offsets another replica's snapshot recorded."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

from monitor.app import App
from monitor.config import config_from_mapping
from monitor.core.counts import COUNT_NAMES
from monitor.core.engine import Engine
from monitor.events.message import Message
from monitor.state.kafka_store import KafkaStore
from tests.conftest import http_get, prediction_json, produce_records


def test_readyz_is_false_until_assigned_partitions_are_restored(
    broker: Any, make_topics: Any, tmp_path: Path
) -> None:
    topics = make_topics(2, 2)
    config = config_from_mapping(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap,
                "group_id": topics.group_id,
                "predictions_topic": topics.predictions,
                "labels_topic": topics.labels,
                "alerts_topic": topics.alerts,
                "dead_letter_topic": topics.dead_letters,
                "session_timeout": 6,
                "heartbeat_interval": 1,
            },
            "http": {"listen": "127.0.0.1:0"},
            "state": {
                "store": "kafka",
                "topic": f"state-{uuid.uuid4().hex[:8]}",
                "dir": str(tmp_path),
                "checkpoint_interval": 1,
            },
            "models": [{"name": "m", "task": "binary", "positive_class": 1}],
        }
    )
    # Another replica processed the first 5 predictions of partition 0 and saved them (as
    # it saw them: with inline labels, which the copies on the topic lack); the group has
    # no committed offset, so a daemon that skipped the restore would read them again.
    produce_records(
        broker.bootstrap, topics.predictions, [(b"k", prediction_json(i), [], 0) for i in range(8)]
    )
    earlier = Engine(config)
    earlier.process(
        [Message(topics.predictions, 0, i, b"k", prediction_json(i, label=1)) for i in range(5)]
    )
    writer = KafkaStore(config)
    writer.connect(threading.Event())
    writer.save(earlier)
    writer.close()

    app = App(config)
    seen: list[tuple[int, str]] = []
    original = app.store.restore

    def restore(engine: Engine, numbers: Any) -> dict[int, str]:
        seen.append(http_get(f"{app.http.url}/readyz"))
        return original(engine, numbers)

    app.store.restore = restore  # type: ignore[method-assign]
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not app.ready:
            time.sleep(0.2)
        assert app.ready, app.ready_reason
        assert seen and seen[0][0] == 503 and "restoring" in seen[0][1], seen
        assert http_get(f"{app.http.url}/readyz")[0] == 200
        counts = {  # stage 1's, restored per partition (the model's stage 2 sums them)
            name: sum(s.counts[0][i] for s in app.engine.partitions.values())
            for i, name in enumerate(COUNT_NAMES)
        }
        # 5 restored (joined through their inline labels) + 3 read after the snapshot
        assert counts["predictions"] == 8 and counts["matched"] == 5, counts
    finally:
        app.stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
