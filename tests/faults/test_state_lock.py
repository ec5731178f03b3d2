"""One daemon per state directory: a second ``monitor run`` on the directory of a running
one exits 2 within a few seconds, with one line naming the directory and the holder's pid,
before it joins the consumer group (the first sees no rebalance and goes on). A SIGKILLed
holder does not block a restart (the kernel drops its lock)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.broker import EmbeddedBroker, free_port
from monitor.state.lock import LockHeld, StateLock
from tests.conftest import Topics
from tests.faults.harness import Daemon, PacedProducer, make_stream, write_config


def test_a_second_daemon_on_the_same_state_directory_exits_2_and_the_first_goes_on(
    broker: EmbeddedBroker, make_topics: Callable[..., Topics], tmp_path: Path
) -> None:
    topics = make_topics(2, 2)
    stream = make_stream(6000, 2, seed=3, span_s=1800)
    port = free_port()
    config = write_config(tmp_path / "monitor.toml", broker.bootstrap, topics, port)
    # a copied unit file: the same state directory, another HTTP port
    other = tmp_path / "copy.toml"
    other.write_text(config.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"))
    first = Daemon(config, port, tmp_path / "daemon.log")
    producer = PacedProducer(broker.bootstrap, topics, stream, 10.0)
    try:
        first.start()
        producer.start()
        deadline = time.monotonic() + 60
        # Running with its partitions: a checkpoint may come before the assignment.
        while (first.sample("monitor_checkpoints_total") or 0) < 1 or (
            "assignment_changed" not in first.log_path.read_text()
        ):
            assert first.alive() and time.monotonic() < deadline, first.log_tail()
            time.sleep(0.3)
        assigned = first.log_path.read_text().count("assignment_changed")
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(other)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        took = time.monotonic() - started
        assert second.returncode == 2, second.stdout + second.stderr
        assert took < 10, took
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert str(tmp_path / "state") in lines[0] and f"pid {first.proc.pid}" in lines[0]  # type: ignore[union-attr]
        # The first is unaffected: no rebalance, and it takes the whole stream.
        assert first.wait_processed(len(stream), timeout=90) == len(stream)
        assert first.log_path.read_text().count("assignment_changed") == assigned
        first.kill()  # SIGKILL: the lock goes with the process
        first.start()
        assert first.wait_processed(len(stream), timeout=90) == len(stream)
        code, _ = first.terminate()
        assert code == 0, first.log_tail()
    finally:
        first.ensure_dead()
        producer.join(timeout=5)


def test_lock_is_reentrant_in_a_process_and_exclusive_across_processes(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    held = StateLock(directory).acquire()
    again = StateLock(directory).acquire()  # monitor run, then its App: the same process
    probe = (
        "import sys\nfrom monitor.state.lock import LockHeld, StateLock\n"
        "try:\n    StateLock(sys.argv[1]).acquire()\nexcept LockHeld as exc:\n"
        "    print(exc.pid); sys.exit(3)\n"
    )
    other = subprocess.run([sys.executable, "-c", probe, str(directory)],
                           capture_output=True, text=True)  # fmt: skip
    assert other.returncode == 3 and other.stdout.strip() == str(os.getpid())
    again.release()
    other = subprocess.run([sys.executable, "-c", probe, str(directory)], capture_output=True)
    assert other.returncode == 3  # still held by the first holder
    held.release()
    other = subprocess.run([sys.executable, "-c", probe, str(directory)], capture_output=True)
    assert other.returncode == 0
    with pytest.raises(LockHeld, match="in use by another monitor") as info:
        script = (
            "import time\nfrom monitor.state.lock import StateLock\n"
            f"StateLock({str(directory)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(30)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
            StateLock(directory).acquire()
        finally:
            proc.kill()
            proc.wait()
    assert info.value.pid == str(proc.pid)
