"""Storage faults are an outage of one output, not of the daemon.

- A real small filesystem (a tmpfs, mounted as root; skipped with the reason where the
  machine does not allow it): the state directory fills up, then turns read-only, while a
  stream is produced. The daemon stays up throughout, ``/healthz`` answers, ``/readyz``
  says why it is not ready, ``monitor_checkpoint_failures_total{reason}`` rises, consuming
  goes on; when the disk comes back the next checkpoint is written. Then SIGKILL and a
  restart: every event counter equals ``monitor replay`` of what was produced.
- The same with an injected ENOSPC and EROFS in the in-process :class:`~monitor.app.App`:
  nothing is committed to the group past the last written checkpoint, each outage is
  logged once per change of reason, and a failing shutdown step does not stop the others.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.app import App
from monitor.broker import EmbeddedBroker, free_port
from monitor.config import KafkaConfig, config_from_mapping, load_config
from monitor.replay import replay
from monitor.state import lock as state_lock
from tests.conftest import Topics
from tests.daemon import assert_same, capture
from tests.faults.harness import Daemon, PacedProducer, make_stream, write_config
from tests.faults.test_backpressure import committed, predictions, wait_for

EVENTS = 30_000
PRODUCE_S = 40.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs at ``tmp_path/state`` (skipped where mounting is not permitted)."""
    where = tmp_path / "state"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; return the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left to flush
        for size in (1 << 20, 4096, 1):
            try:
                while fh.write(b"\0" * size):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def _wait(check: Callable[[], bool], timeout: float, what: str, daemon: Daemon) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.alive(), daemon.log_tail()
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{daemon.log_tail()}")


def _outage(daemon: Daemon, reason: str) -> None:
    """Through an outage: failures of ``reason`` rise, the daemon answers and consumes."""
    fails = lambda: daemon.sample("monitor_checkpoint_failures_total", reason=reason) or 0  # noqa: E731
    _wait(lambda: fails() >= 1, 30, f"a {reason} failure", daemon)
    events = daemon.sample("monitor_events_processed_total") or 0
    checkpoints = daemon.sample("monitor_checkpoints_total")
    _wait(lambda: fails() >= 3, 30, f"{reason} failures retried", daemon)
    status, _ = daemon.get("/healthz")
    assert status == 200
    status, body = daemon.get("/readyz")
    assert status == 503 and f"checkpoints failing: {reason}" in body, body
    assert daemon.sample("monitor_checkpoints_total") == checkpoints  # none written
    _wait(lambda: (daemon.sample("monitor_events_processed_total") or 0) > events, 30,
          "consuming during the outage", daemon)  # fmt: skip


def _recovered(daemon: Daemon) -> None:
    before = daemon.sample("monitor_checkpoints_total") or 0
    _wait(lambda: (daemon.sample("monitor_checkpoints_total") or 0) > before, 30,
          "a checkpoint after the disk came back", daemon)  # fmt: skip


def _remount_read_only(disk: Path) -> None:
    """Remount the state disk read-only. The daemon checkpoints every second, and a
    remount while a save has its temporary file open for writing fails as busy: try again
    between saves, as an operator would."""
    deadline = time.monotonic() + 30.0
    while True:
        done = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(done.stderr.decode(errors="replace"))
        time.sleep(0.05)


def test_full_then_read_only_state_disk_is_an_outage_of_checkpoints_only(
    broker: EmbeddedBroker, make_topics: Callable[..., Topics], tmp_path: Path, small_disk: Path
) -> None:
    topics = make_topics(2, 2)
    stream = make_stream(EVENTS, 2, seed=17, span_s=3600)
    total = len(stream)
    port = free_port()
    config = write_config(tmp_path / "monitor.toml", broker.bootstrap, topics, port)
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    producer = PacedProducer(broker.bootstrap, topics, stream, PRODUCE_S)
    try:
        daemon.start()
        producer.start()
        _wait(lambda: (daemon.sample("monitor_checkpoints_total") or 0) >= 1, 60,
              "the first checkpoint", daemon)  # fmt: skip
        filler = _fill(small_disk)
        _outage(daemon, "no_space")
        filler.unlink()
        _recovered(daemon)
        _remount_read_only(small_disk)
        _outage(daemon, "read_only")
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        _recovered(daemon)
        assert "checkpoints failing" not in daemon.get("/readyz")[1]
        log = daemon.log_path.read_text(errors="replace")
        assert log.count('"checkpoint_failed"') + log.count(" checkpoint_failed ") <= 4, log[-3000:]
        assert "checkpoint_recovered" in log
        # SIGKILL mid-stream, restart: the restored state plus what is re-read is exact.
        daemon.kill()
        daemon.start()
        producer.join(timeout=PRODUCE_S + 60)
        assert not producer.errors, producer.errors[:3]
        assert daemon.wait_processed(total, timeout=120) == total
        time.sleep(1.5)
        assert daemon.sample("monitor_events_processed_total") == total
        code, _ = daemon.terminate()
        assert code == 0, daemon.log_tail()
    finally:
        daemon.ensure_dead()
        producer.join(timeout=5)
    run_summary = json.loads((small_disk / "summary.json").read_text())
    cap = tmp_path / "capture.jsonl"
    assert capture(broker.bootstrap, [topics.predictions, topics.labels], cap, total) == total
    replayed = replay(load_config(config), [str(cap)], tmp_path / "replay")
    assert_same(json.loads(json.dumps(replayed)), run_summary)
    assert run_summary["rejects"] == stream.bad


def _app_config(kafka: KafkaConfig, state: Path) -> Any:
    return config_from_mapping({
        "kafka": kafka.model_dump(mode="python", exclude={"sasl_password"}),
        "http": {"listen": "127.0.0.1:0"},
        "state": {"dir": str(state), "checkpoint_interval": "1s"},
        "time": {"pane": "10s", "allowed_lateness": "0s", "idle_timeout": "1h"},
        "models": [{"name": "b", "task": "binary", "positive_class": 1, "windows": ["all"]}],
    })  # fmt: skip


def test_injected_enospc_and_erofs_commit_nothing_and_log_once_per_change(
    tmp_path: Path,
    broker: EmbeddedBroker,
    make_topics: Callable[..., Topics],
    kafka_config: Callable[..., KafkaConfig],
    produce: Callable[..., None],
) -> None:
    topics = make_topics(1)
    config = _app_config(kafka_config(broker, topics), tmp_path / "state")
    key = (topics.predictions, 0)
    produce(broker.bootstrap, topics.predictions, predictions(0, 10))
    app = App(config)
    real_save = app.store.save
    fault: list[OSError | None] = [None]

    def save(*args: Any, **kwargs: Any) -> int:
        if fault[0] is not None:
            raise fault[0]
        return real_save(*args, **kwargs)

    app.store.save = save  # type: ignore[method-assign]
    runner = threading.Thread(target=app.run, daemon=True)
    with capture_logs() as logs:
        runner.start()
        try:
            wait_for(lambda: committed(broker.bootstrap, topics.group_id).get(key) == 10, 30,
                     "the first commit", app)  # fmt: skip
            for code, reason in ((errno.ENOSPC, "no_space"), (errno.EROFS, "read_only")):
                fault[0] = OSError(code, os.strerror(code))
                n = app.checkpoint_failures[reason]
                produce(broker.bootstrap, topics.predictions, predictions(10 + n, 5))
                wait_for(lambda r=reason: app.checkpoint_failures[r] >= 3, 30, reason, app)
                assert runner.is_alive() and app.checkpoint_failing == reason
                assert app.engine.events > 10  # consuming went on
                assert committed(broker.bootstrap, topics.group_id).get(key) == 10
                assert not app._judge_readiness() and reason in app.ready_reason
            fault[0] = None
            wait_for(lambda: committed(broker.bootstrap, topics.group_id).get(key) == 20, 30,
                     "the commit after the disk came back", app)  # fmt: skip
            assert app.checkpoint_failing is None and app.last_checkpoint is not None
        finally:
            app.write_summary = lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))  # type: ignore[method-assign]
            app.stop.set()
            runner.join(30)
    assert not runner.is_alive()
    failed = [e for e in logs if e["event"] == "checkpoint_failed"]
    assert [e["reason"] for e in failed] == ["no_space", "read_only"], failed
    assert [e["event"] for e in logs].count("checkpoint_recovered") == 1
    steps = [e["step"] for e in logs if e["event"] == "shutdown_step_failed"]
    assert steps == ["summary"]  # the one failing step; the lock release after it ran:
    assert os.path.realpath(tmp_path / "state") not in state_lock._HELD
    assert app.store.load(config).events == 20  # type: ignore[union-attr]
