"""Security basics: secrets never leave the process in logs, messages or ``/metrics``;
the HTTP port binds the configured address only.

Tansu offers neither SASL nor TLS (see TANSU.md), so the daemon runs with SASL_PLAINTEXT
against it: the client's authentication fails, which exercises the error and retry
paths that are the likeliest to print a credential. The settings that reach kafka-python
are checked in ``tests/kafka/test_kafka_client_config.py``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.broker import EmbeddedBroker, free_port
from monitor.cli import main
from monitor.http import HttpServer
from tests.conftest import Topics
from tests.daemon import daemon_config

FILE_SECRET = "file-Secret-7f3a9c"
ENV_SECRET = "env-Secret-51be02"
MODEL = """
[[models]]
name = "b"
task = "binary"
positive_class = 1
windows = ["all"]
"""


def _sasl_config(tmp_path: Path, bootstrap: str, topics: Topics, port: int) -> Path:
    text = daemon_config(bootstrap, topics, port, MODEL).replace(
        "[kafka]\n",
        '[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
        f'sasl_username = "monitor"\nsasl_password = "{FILE_SECRET}"\n',
    )
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return path


def test_secrets_stay_out_of_check_config_and_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = Topics("p", "l", "a", "d", "g", 1, 1)
    good = _sasl_config(tmp_path, "127.0.0.1:1", topics, 0)
    monkeypatch.setenv("MONITOR_KAFKA_SASL_PASSWORD", ENV_SECRET)
    assert main(["check-config", str(good)]) == 0
    # a bad value next to the secret, and a secret of the wrong type: the errors name the
    # keys, never the values
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('session_timeout = "6s"', 'session_timeout = "x"'))
    assert main(["check-config", str(bad)]) == 2
    monkeypatch.delenv("MONITOR_KAFKA_SASL_PASSWORD")
    typed = tmp_path / "typed.toml"
    typed.write_text(good.read_text().replace(f'"{FILE_SECRET}"', "[\"" + FILE_SECRET + "\"]"))
    assert main(["check-config", str(typed)]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert "session_timeout" in text and "sasl_password" in text  # the keys are named
    assert FILE_SECRET not in text and ENV_SECRET not in text


def test_secrets_stay_out_of_the_daemon_logs_and_metrics(
    tmp_path: Path,
    broker: EmbeddedBroker,
    make_topics: Callable[..., Topics],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon whose SASL login fails, with the password in the file and (overriding it)
    in the environment, at debug level: neither value shows in its output or ``/metrics``."""
    topics = make_topics(1)
    port = free_port()
    path = _sasl_config(tmp_path, broker.bootstrap, topics, port)
    monkeypatch.setenv("MONITOR_KAFKA_SASL_PASSWORD", ENV_SECRET)
    exposition = ""
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "--log-level", "debug", "run", "--config",
             str(path)], stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    exposition = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(2.5)  # a few connection attempts, failed logins and retries
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            exposition += r.read().decode()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "monitor_" in exposition
    assert "http_listening" in log  # the daemon did run and log
    assert ENV_SECRET not in log and FILE_SECRET not in log, log[-3000:]
    assert ENV_SECRET not in exposition and FILE_SECRET not in exposition


def _refused(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect((host, port))
        except ConnectionRefusedError:
            return True
        return False


def test_http_port_binds_only_the_configured_address() -> None:
    """Listening on 127.0.0.1, the port answers there and refuses 127.0.0.2 (also
    loopback on Linux: no test traffic leaves the machine)."""
    server = HttpServer("127.0.0.1", 0, CollectorRegistry(), heartbeat=time.time,
                        readiness=lambda: (True, "ok"))  # fmt: skip
    server.start()
    try:
        port = server.port
        assert not _refused("127.0.0.1", port)
        assert _refused("127.0.0.2", port)
    finally:
        server.stop()
    other = HttpServer("127.0.0.2", 0, CollectorRegistry(), heartbeat=time.time,
                       readiness=lambda: (True, "ok"))  # fmt: skip
    other.start()
    try:
        assert not _refused("127.0.0.2", other.port)
        assert _refused("127.0.0.1", other.port)
    finally:
        other.stop()
