"""Running ``monitor run`` as a user would, for end-to-end tests: config, process, topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer


def daemon_config(bootstrap: str, topics: Any, http_port: int, body: str) -> str:
    """A config for ``topics`` on the broker at ``bootstrap`` with group joins of ~3 s,
    checkpoints every 2 s, the HTTP port given, and ``body`` ([time], [[models]], ...)."""
    return f"""
[kafka]
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
checkpoint_interval = "2s"
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


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Up to ``expected`` messages of ``topic`` from the start, read with confluent-kafka."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{os.getpid()}-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg)
    consumer.close()
    return got
