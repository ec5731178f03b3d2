"""Running ``monitor run`` as a user would, for end-to-end tests: config, process, topics."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, TopicPartition


def daemon_config(
    bootstrap: str,
    topics: Any,
    http_port: int,
    body: str,
    *,
    checkpoint_interval: str = "2s",
    client: str = "kafka-python",
    state: str = "",
) -> str:
    """A config for ``topics`` on the broker at ``bootstrap`` with group joins of ~3 s,
    the HTTP port, checkpoint interval and input client given, and ``body`` ([time],
    [[models]], ...). ``MONITOR_KAFKA_CLIENT`` in the environment overrides ``client``;
    ``state`` holds more lines of the ``[state]`` table (``store = "kafka"``, ...)."""
    return f"""
[kafka]
client = "{client}"
bootstrap_servers = "{bootstrap}"
group_id = "{topics.group_id}"
predictions_topic = "{topics.predictions}"
labels_topic = "{topics.labels}"
alerts_topic = "{topics.alerts}"
dead_letter_topic = "{topics.dead_letters}"
session_timeout = "6s"
heartbeat_interval = "1s"

[http]
listen = "127.0.0.1:{http_port}"

[state]
dir = "state"
checkpoint_interval = "{checkpoint_interval}"
{state}
{body}"""


class Daemon:
    """``python -m monitor.cli run --config FILE`` with its output in ``daemon.log``."""

    def __init__(self, config: Path) -> None:
        self.log_path = config.parent / "daemon.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the daemon's log, for assertion messages."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def assert_alive(self) -> None:
        """Fail with the log's tail if the daemon has exited."""
        assert self.proc.poll() is None, self.log_tail()

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def read_topic(
    bootstrap: str,
    topic: str,
    expected: int | None = None,
    *,
    timeout: float = 60.0,
    idle_s: float = 3.0,
) -> list[Any]:
    """Messages of ``topic`` from the start, read with confluent-kafka (every partition).

    Stops at ``expected`` messages (or after ``timeout``); with no ``expected``, once the
    topic has been silent for ``idle_s``.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{os.getpid()}-{topic}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    meta = consumer.list_topics(timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        if expected is not None and len(got) >= expected:
            break
        if expected is None and time.monotonic() - idle_since >= idle_s:
            break
        for msg in consumer.consume(10_000, 0.5):
            if not msg.error():
                got.append(msg)
                idle_since = time.monotonic()
    consumer.close()
    return got


def metric_sample(text: str, name: str, **labels: str) -> float | None:
    """The sum of a family's samples in an exposition whose labels include ``labels``."""
    total = None
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def capture(bootstrap: str, topics: list[str], path: Path, expected: int) -> int:
    """Read the topics whole, as ``kcat -C -J`` would, into a capture file."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"capture-{os.getpid()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    meta = consumer.list_topics(timeout=10)
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in meta.topics[t].partitions])
    n, idle_since = 0, time.monotonic()
    with open(path, "w", encoding="utf-8") as out:
        while n < expected and time.monotonic() - idle_since < 10.0:
            batch = consumer.consume(10_000, 0.5)
            for msg in batch:
                if msg.error():
                    continue
                idle_since = time.monotonic()
                payload = msg.value()
                out.write(
                    json.dumps(
                        {
                            "topic": msg.topic(),
                            "partition": msg.partition(),
                            "offset": msg.offset(),
                            "key": None if msg.key() is None else msg.key().decode(),
                            "payload": None
                            if payload is None
                            else payload.decode("utf-8", "replace"),
                        }
                    )
                    + "\n"
                )
                n += 1
    consumer.close()
    return n


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Equal structures; floats within 1e-9 (relative) or 1e-12 (absolute)."""
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        assert a.keys() == b.keys(), (path, sorted(set(a) ^ set(b)))
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)
