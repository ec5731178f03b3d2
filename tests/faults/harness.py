"""Shared pieces of the fault tests: a seeded stream with delayed labels and bad messages,
a paced producer thread, the daemon as a subprocess, /metrics scraping, a kcat-style
capture of the input topics and a summary comparison (floats within 1e-9).

The stream is built so that its results cannot depend on how the daemon batches or
interleaves partitions (which a crash changes): every partition is in event-time order
within less than ``allowed_lateness`` (so no event is ever late), labels arrive within
``label_ttl``, caps are far above the stream's size, and slice values stay under their
caps. Anything that differs between a crashed-and-resumed run and ``monitor replay`` is
then a real bug, not an artefact of ordering.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from tests.daemon import daemon_config, metric_sample

T0 = 1_760_000_000.0
JITTER_S = 4.0  # how far a message may arrive out of event-time order in its partition
LATENESS = "30s"  # > JITTER_S: nothing is ever late, whatever the batching


@dataclass
class Stream:
    """Messages in production order: ``(topic_kind, key, value, partition)``."""

    messages: list[tuple[str, bytes, bytes, int]]
    bad: dict[str, int] = field(default_factory=dict)  # expected rejects by reason
    bad_keys: set[bytes] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.messages)


def _partition(pid: str, partitions: int) -> int:
    return zlib.crc32(pid.encode()) % partitions


def make_stream(n_events: int, partitions: int, seed: int = 11, span_s: float = 4 * 3600) -> Stream:
    """At least about ``n_events`` messages over ``span_s`` of event time.

    Predictions of a binary model ``fraud`` (scores, versions, a country segment) and a
    regression model ``eta``; 85 % of predictions get a label on the labels topic after an
    exponential delay (mean 2 min, below the 30 min TTL: the rest expire); 2 % come with
    the label inline; labels for ids that never had a prediction (orphans); a stretch
    from 40 % to 55 % of the span where ``fraud`` is wrong half the time (so an alert fires
    and resolves); about 0.5 % bad messages of several kinds, and duplicate predictions.
    """
    rng = np.random.default_rng(seed)
    n_pred = max(10, int(n_events / 1.8))  # ~1.86 messages a prediction: >= n_events
    ts = T0 + np.sort(rng.uniform(0, span_s, n_pred))
    arrivals: list[tuple[float, int, str, bytes, bytes, int]] = []
    seq = 0
    bad: dict[str, int] = {}
    bad_keys: set[bytes] = set()

    def add(at: float, kind: str, key: bytes, value: bytes, part: int) -> None:
        nonlocal seq
        arrivals.append((at + float(rng.uniform(0, JITTER_S)), seq, kind, key, value, part))
        seq += 1

    def add_bad(at: float, kind: str, value: bytes, reason: str) -> None:
        key = b"bad-%d" % seq
        add(at, kind, key, value, int(rng.integers(0, partitions)))
        bad[reason] = bad.get(reason, 0) + 1
        bad_keys.add(key)

    drift_lo, drift_hi = T0 + 0.40 * span_s, T0 + 0.55 * span_s
    for i in range(n_pred):
        t = float(ts[i])
        pid = f"p{i}"
        part = _partition(pid, partitions)
        if i % 5 == 4:  # regression model
            y = float(rng.normal(300, 60))
            body: dict[str, Any] = {
                "prediction_id": pid,
                "model": "eta",
                "ts": t,
                "prediction": y + float(rng.normal(0, 20)),
            }
            label: Any = round(y, 3)
        else:
            y_cls = int(rng.integers(0, 2))
            score = float(rng.beta(5, 2) if y_cls else rng.beta(2, 5))
            if drift_lo <= t < drift_hi and rng.random() < 0.5:
                score = 1.0 - score
            body = {
                "prediction_id": pid,
                "model": "fraud",
                "ts": t,
                "prediction": int(score >= 0.5),
                "score": round(score, 6),
                "model_version": "v1" if i % 7 else "v2",
                "segment": {"country": ["DE", "FR", "US", "BR"][i % 4]},
            }
            label = y_cls
        u = rng.random()
        if u < 0.02:
            body["label"] = label
        add(t, "predictions", pid.encode(), json.dumps(body).encode(), part)
        if 0.02 <= u < 0.87:
            delay = min(float(rng.exponential(120.0)) + 1.0, 1500.0)
            lb: dict[str, Any] = {"prediction_id": pid, "label": label, "ts": t + delay}
            if i % 2:
                lb["model"] = body["model"]
            add(t + delay, "labels", pid.encode(), json.dumps(lb).encode(), part)
        if i % 997 == 5:  # the same prediction again, right behind it: a duplicate
            add(t, "predictions", pid.encode(), json.dumps(body).encode(), part)
            bad["duplicate"] = bad.get("duplicate", 0) + 1
        if i % 1009 == 7:  # a label for an id that never had a prediction
            oid = f"orphan{i}"
            orphan = {"prediction_id": oid, "label": 1, "ts": t, "model": "fraud"}
            add(t, "labels", oid.encode(), json.dumps(orphan).encode(), _partition(oid, partitions))
        if i % 211 == 3:
            kinds = [
                ("predictions", b"\xff\xfe not json", "not_json"),
                ("predictions", b"[1, 2]", "not_object"),
                (
                    "predictions",
                    b'{"model": "fraud", "ts": 1760000000, "prediction": 1}',
                    "missing_field",
                ),
                (
                    "predictions",
                    b'{"prediction_id": "u%d", "model": "nope", "ts": 1760000000, '
                    b'"prediction": 1}' % i,
                    "unknown_model",
                ),
                (
                    "predictions",
                    b'{"prediction_id": 5, "model": "fraud", "ts": 1760000000, "prediction": 1}',
                    "bad_type",
                ),
                ("labels", b'{"prediction_id": "x", "ts": 1760000000}', "missing_field"),
            ]
            topic_kind, value, reason = kinds[(i // 211) % len(kinds)]
            add_bad(t, topic_kind, value, reason)
    arrivals.sort()
    return Stream([(k, key, v, p) for _, _, k, key, v, p in arrivals], bad, bad_keys)


MODELS_TOML = """
[[models]]
name = "fraud"
task = "binary"
positive_class = 1
label_ttl = "30m"
max_pending = 10_000_000
max_early_labels = 10_000_000
windows = ["all", "10m", "ewm5m"]
segments = ["country"]

[[models.alerts]]
name = "accuracy-low"
signal = "accuracy@10m"
op = "<"
threshold = 0.7
resolve_threshold = 0.75
for = "2m"
severity = "critical"

[[models]]
name = "eta"
task = "regression"
label_ttl = "30m"
max_pending = 10_000_000
max_early_labels = 10_000_000
windows = ["all", "ewm5m"]
"""


def write_config(
    path: Path,
    bootstrap: str,
    topics: Any,
    http_port: int,
    *,
    checkpoint_interval: str = "1s",
    idle_timeout: str = "5s",
) -> Path:
    """A daemon config for ``topics`` (a ``conftest.Topics``), state in ``path.parent/state``."""
    body = f"""
[time]
pane = "10s"
allowed_lateness = "{LATENESS}"
idle_timeout = "{idle_timeout}"
{MODELS_TOML}"""
    path.write_text(
        daemon_config(bootstrap, topics, http_port, body, checkpoint_interval=checkpoint_interval)
    )
    return path


class PacedProducer(threading.Thread):
    """Produces a stream's messages over about ``seconds`` of wall time (confluent-kafka)."""

    def __init__(self, bootstrap: str, topics: Any, stream: Stream, seconds: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.names = {"predictions": topics.predictions, "labels": topics.labels}
        self.stream = stream
        self.seconds = seconds
        self.sent = 0
        self.errors: list[str] = []

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 20,
                "max.in.flight.requests.per.connection": 1,
                "queue.buffering.max.messages": 1_000_000,
            }
        )

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                self.errors.append(str(err))

        started = time.monotonic()
        total = len(self.stream)
        chunk = max(1, total // 200)
        for n, (kind, key, value, part) in enumerate(self.stream.messages):
            producer.produce(
                self.names[kind], key=key, value=value, partition=part, on_delivery=report
            )
            if n % chunk == 0:
                producer.poll(0)
                ahead = started + self.seconds * n / total - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            self.sent = n + 1
        left = producer.flush(60)
        if left:
            self.errors.append(f"{left} messages not delivered")


class Daemon:
    """``monitor run`` as a subprocess, restartable, its output appended to one log file."""

    def __init__(self, config: Path, http_port: int, log_path: Path) -> None:
        self.config = config
        self.port = http_port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor.cli", "run", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds it took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def ensure_dead(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """HTTP GET on the daemon's port: (status, body); (0, "") when it does not answer."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout
            ) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def sample(self, name: str, **labels: str) -> float | None:
        """Sum of a metric's samples matching ``labels``; None when not scraped."""
        status, text = self.get("/metrics")
        if status != 200:
            return None
        return metric_sample(text, name, **labels)

    def wait_processed(self, total: int, timeout: float) -> float:
        """Wait until ``monitor_events_processed_total`` reaches ``total``; return it."""
        deadline = time.monotonic() + timeout
        seen: float | None = None
        while time.monotonic() < deadline:
            assert self.alive(), self.log_tail()
            seen = self.sample("monitor_events_processed_total")
            if seen is not None and seen >= total:
                return seen
            time.sleep(0.3)
        raise AssertionError(f"daemon processed {seen} of {total} events\n{self.log_tail()}")
