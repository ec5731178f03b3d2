"""The daemon's one HTTP port: ``/metrics``, ``/healthz`` and ``/readyz``.

The stdlib's :class:`~http.server.BaseHTTPRequestHandler` parses requests and writes
responses; it was chosen over prometheus_client's ``start_http_server``, which serves the
registry on every path and has no way to add routes; the exposition itself still comes
from prometheus_client (:func:`~prometheus_client.exposition.choose_encoder`), so
``Accept`` negotiation (OpenMetrics for Prometheus, the text format otherwise), ``name[]``
filtering and gzip behave as in the official exporters.

Built to hold under a scrape storm (many clients scraping at once, slow or stuck
clients), with every resource bounded:

- one acceptor thread listens with a backlog of ``backlog`` (128) and reads each
  connection's request head itself, without blocking (a selector), for at most
  ``request_timeout`` seconds (10) and 64 KiB: a client that sends nothing or trickles
  holds no handler thread, and the kernel's listen queue is drained at once;
- a complete head goes to one of two bounded pools: ``/healthz`` and ``/readyz`` to the
  probe pool (``probe_threads``, 2), everything else to the main pool (``threads``, 4),
  so probes never wait behind ``/metrics``; at most ``max_queued`` (64) requests wait
  for the main pool, more are answered 503 at once; at most ``max_connections`` (1024)
  connections are open, more are closed at once;
- a handler writes with a socket timeout of ``request_timeout``; every response closes
  its connection (``Connection: close``), so no idle keep-alive connection holds a thread;
- renders of ``/metrics`` are shared: scrapes that ask for the same exposition within
  ``render_interval`` seconds (1) of a render get its bytes, and scrapes arriving while
  it renders wait for it instead of rendering again.

Server threads never touch the core: they read the registry (whose collector holds an
immutable report, swapped in by the run loop) and call the two callables given, which
must be cheap and thread-safe (e.g. read an attribute).

Given the daemon's :class:`~monitor.outputs.prometheus.MonitorCollector` (the registry's
only collector), ``/metrics`` serves the bytes it rendered when the run loop published
its snapshot: any number of scrapes of a snapshot cost a lookup and a socket write
(plus one gzip per snapshot, outside the interpreter lock), never a render on the server
thread, which would take the interpreter lock from the run loop for as long as it lasts.
Requests the cached text cannot answer as prometheus_client would (``name[]`` filters,
name escapings other than ``underscores``/``allow-utf-8``, a failed render) and servers
built without the collector render from the registry, shared as above.

- ``/metrics``: the exposition; 500 if a collector fails.
- ``/healthz``: liveness. 200 ``ok`` while the run loop's heartbeat is younger than
  ``stale_after`` seconds, else 503 with its age: a wedged loop gets the pod restarted,
  unlike an always-"ok" check.
- ``/readyz``: readiness. 200 when ``readiness()`` says so, else 503 with its reason
  (e.g. ``"restoring partitions [3, 7]"``).
- anything else: 404.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_format
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.openmetrics import exposition as openmetrics_format

from monitor.logs import RateLimitedLogger

if TYPE_CHECKING:
    from monitor.outputs.prometheus import MonitorCollector

__all__ = ["HttpServer"]

_log = structlog.get_logger(__name__)
_errors = RateLimitedLogger(_log, 60.0)
_TEXT = "text/plain; charset=utf-8"
#: Name escapings (Accept ``escaping=``) under which prometheus_client exports the monitor's
#: names, all in the legacy character set, unchanged: the pre-rendered text serves them.
_FAST_ESCAPINGS = frozenset({"underscores", "allow-utf-8"})
#: Most bytes of a request head read (the request line alone may take 64 KiB, as in
#: :class:`~http.server.BaseHTTPRequestHandler`, which answers 414 beyond).
_MAX_HEAD = 65_536 + 8_192
_PROBES = frozenset({"/healthz", "/readyz"})
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n"
)
#: Distinct ``/metrics`` requests whose shared render is remembered.
_RENDERS_KEPT = 32


class HttpServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` from daemon threads.

    Parameters
    ----------
    host, port
        Where to listen; port 0 picks a free port, readable from :attr:`port` after
        :meth:`start`.
    registry
        The registry exposed on ``/metrics``.
    heartbeat
        Returns the Unix time (``clock``'s time) of the run loop's last iteration.
    readiness
        Returns ``(ready, reason)``.
    stale_after
        Seconds without a heartbeat after which ``/healthz`` answers 503.
    clock
        Current time, comparable with ``heartbeat()``; ``time.time`` by default.
    collector
        The registry's collector, whose pre-rendered exposition ``/metrics`` serves; without
        it, scrapes render the registry (shared, see ``render_interval``).
    backlog
        The listen queue's length (the kernel caps it at ``net.core.somaxconn``).
    threads, probe_threads
        Handler threads of the main pool and of the probe pool (``/healthz``, ``/readyz``).
    max_queued
        Requests that may wait for the main pool; more are answered 503 at once.
    max_connections
        Connections open at once (reading their head or being served); more are closed.
    request_timeout
        Seconds a client has to send its request head, and a handler to write a chunk.
    render_interval
        Seconds for which a render of ``/metrics`` serves every scrape asking the same.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        *,
        heartbeat: Callable[[], float],
        readiness: Callable[[], tuple[bool, str]],
        stale_after: float = 30.0,
        clock: Callable[[], float] = time.time,
        collector: MonitorCollector | None = None,
        backlog: int = 128,
        threads: int = 4,
        probe_threads: int = 2,
        max_queued: int = 64,
        max_connections: int = 1024,
        request_timeout: float = 10.0,
        render_interval: float = 1.0,
    ) -> None:
        if not stale_after > 0:
            raise ValueError(f"Invalid 'stale_after': {stale_after!r}; must be > 0")
        if not 0 <= port <= 65535:
            raise ValueError(f"Invalid 'port': {port!r}; valid: 0..65535")
        for name, value in (("backlog", backlog), ("threads", threads),
                            ("probe_threads", probe_threads), ("max_queued", max_queued),
                            ("max_connections", max_connections)):  # fmt: skip
            if value < 1:
                raise ValueError(f"Invalid {name!r}: {value!r}; must be >= 1")
        if not request_timeout > 0 or not render_interval >= 0:
            raise ValueError("request_timeout must be > 0 and render_interval >= 0")
        self.host = host
        self._requested_port = port
        self.registry = registry
        self.heartbeat = heartbeat
        self.readiness = readiness
        self.stale_after = stale_after
        self.clock = clock
        self.collector = collector
        self.backlog = backlog
        self.threads = threads
        self.probe_threads = probe_threads
        self.max_queued = max_queued
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.render_interval = render_interval
        #: Requests answered, and requests refused (503 busy, or connections closed at
        #: the connection cap or the head timeout), for tests and logs.
        self.served = 0
        self.refused = 0
        self.renders = 0
        self._acceptor: _Acceptor | None = None
        self._renders: dict[Any, tuple[float, _Response]] = {}
        self._render_locks: dict[Any, threading.Lock] = {}
        self._renders_lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the OS once started with port 0)."""
        if self._acceptor is not None:
            return int(self._acceptor.listener.getsockname()[1])
        return self._requested_port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9108``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve from daemon threads; raises ``OSError`` if the port is taken."""
        if self._acceptor is not None:
            raise RuntimeError("HttpServer already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self._requested_port))
            listener.listen(self.backlog)
        except OSError:
            listener.close()
            raise
        self._acceptor = _Acceptor(self, listener)
        self._acceptor.start()
        _log.info("http_listening", url=self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket; safe to call twice or before start."""
        acceptor = self._acceptor
        if acceptor is None:
            return
        acceptor.stop(timeout)
        self._acceptor = None

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _shared(self, key: Any, render: Callable[[], _Response]) -> _Response:
        """``render()``'s response, shared by every request of the same ``key`` within
        :attr:`render_interval` of it; concurrent requests wait for one render."""
        with self._renders_lock:
            kept = self._renders.get(key)
            if kept is not None and kept[0] > time.monotonic():
                return kept[1]
            if len(self._render_locks) > 4 * _RENDERS_KEPT:  # many distinct filters
                self._render_locks.clear()  # a lock dropped while held costs a render
            lock = self._render_locks.setdefault(key, threading.Lock())
        with lock:
            kept = self._renders.get(key)
            if kept is not None and kept[0] > time.monotonic():
                return kept[1]
            response = render()
            self.renders += 1
            if response[0] == 200 and self.render_interval > 0:
                with self._renders_lock:
                    now = time.monotonic()
                    if len(self._renders) >= _RENDERS_KEPT:
                        for old in [k for k, v in self._renders.items() if v[0] <= now]:
                            del self._renders[old]
                            self._render_locks.pop(old, None)
                        if len(self._renders) >= _RENDERS_KEPT:
                            self._renders.clear()
                    self._renders[key] = (now + self.render_interval, response)
            return response

    # Route bodies: (status, content type, headers, body). Run on server threads.

    def _metrics(self, query: str, accept: str, accept_encoding: str) -> _Response:
        encoder, content_type = choose_encoder(accept)
        params = parse_qs(query)
        cached = self._cached_metrics(encoder, params, accept_encoding)
        if cached is not None:
            return 200, content_type, *cached
        names = tuple(sorted(set(params["name[]"]))) if "name[]" in params else None
        gzipped = gzip_accepted(accept_encoding)
        function = getattr(encoder, "func", encoder)
        options = tuple(sorted(getattr(encoder, "keywords", {}).items()))
        key = (function, options, content_type, names, gzipped)
        return self._shared(key, lambda: self._render(encoder, content_type, names, gzipped))

    def _render(
        self, encoder: Callable[..., bytes], content_type: str, names: tuple[str, ...] | None,
        gzipped: bool,
    ) -> _Response:  # fmt: skip
        source: Any = self.registry
        if names is not None:
            source = self.registry.restricted_registry(list(names))
        try:
            body = encoder(source)
        except Exception as exc:
            _errors.error("metrics", "metrics_collect_failed", error=repr(exc), exc_info=True)
            return 500, _TEXT, {}, b"metrics collection failed\n"
        headers = {}
        if gzipped:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return 200, content_type, headers, body

    def _cached_metrics(self, encoder: Callable[..., bytes], params: dict[str, list[str]],
                        accept_encoding: str) -> tuple[dict[str, str], bytes] | None:
        """Headers and body from the collector's rendered snapshot; ``None`` when the
        request needs a render of its own."""
        if self.collector is None or "name[]" in params:
            return None
        function = getattr(encoder, "func", encoder)
        escaping = getattr(encoder, "keywords", {}).get("escaping", "underscores")
        if escaping not in _FAST_ESCAPINGS:
            return None
        if function is openmetrics_format.generate_latest:
            openmetrics = True
        elif function is text_format.generate_latest:
            openmetrics = False
        else:
            return None
        exposition = self.collector.exposition()
        if exposition is None:
            return None
        gzipped = gzip_accepted(accept_encoding)
        body = exposition.body(openmetrics=openmetrics, gzipped=gzipped)
        return ({"Content-Encoding": "gzip"} if gzipped else {}), body

    def _healthz(self) -> _Response:
        try:
            last = float(self.heartbeat())
        except Exception as exc:
            return 503, _TEXT, {}, f"heartbeat unavailable: {exc!r}\n".encode()
        if last <= 0:
            return 503, _TEXT, {}, b"no heartbeat yet\n"
        age = self.clock() - last
        if age <= self.stale_after:
            return 200, _TEXT, {}, b"ok\n"
        text = f"stale: last loop heartbeat {age:.1f}s ago (limit {self.stale_after:g}s)\n"
        return 503, _TEXT, {}, text.encode()

    def _readyz(self) -> _Response:
        try:
            ready, reason = self.readiness()
        except Exception as exc:
            return 503, _TEXT, {}, f"readiness unavailable: {exc!r}\n".encode()
        if ready:
            return 200, _TEXT, {}, f"{reason or 'ready'}\n".encode()
        return 503, _TEXT, {}, f"{reason or 'not ready'}\n".encode()


_Response = tuple[int, str, dict[str, str], bytes]


class _Pending:
    """A connection whose request head is being read by the acceptor."""

    __slots__ = ("address", "deadline", "head", "sock")

    def __init__(self, sock: socket.socket, address: Any, deadline: float) -> None:
        self.sock = sock
        self.address = address
        self.deadline = deadline
        self.head = bytearray()


class _Acceptor:
    """The listening socket's thread: accepts, reads request heads without blocking, and
    hands complete ones to the probe pool or the main pool (see the module docstring)."""

    def __init__(self, app: HttpServer, listener: socket.socket) -> None:
        self.app = app
        self.listener = listener
        listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self.pending: dict[int, _Pending] = {}
        self.open = 0  # connections accepted and not yet closed (read here or served)
        self.queued = 0  # requests given to the main pool and not yet finished
        self.lock = threading.Lock()
        self.main = _Pool(app.threads, "monitor-http")
        self.probes = _Pool(app.probe_threads, "monitor-probe")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="monitor-http-accept", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.thread.join(timeout)
        self.main.stop()
        self.probes.stop()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                for key, _ in self.selector.select(timeout=0.1):
                    if key.data is None:
                        self._accept()
                    else:
                        self._read(key.data)
                self._expire()
        except Exception:  # never expected: logged, and the port closed below
            _log.error("http_acceptor_failed", exc_info=True)
        finally:
            for conn in list(self.pending.values()):
                self._close(conn)
            self.selector.close()
            self.listener.close()

    def _accept(self) -> None:
        """Accept every connection waiting in the listen queue."""
        while True:
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave the rest queued, retry soon
                _errors.warning("accept", "http_accept_failed", error=repr(exc))
                return
            with self.lock:
                full = self.open >= self.app.max_connections
                if not full:
                    self.open += 1
            if full:
                self.app.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Pending(sock, address, time.monotonic() + self.app.request_timeout)
            self.pending[sock.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Pending) -> None:
        try:
            data = conn.sock.recv(16_384)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before a whole head
            self._close(conn)
            return
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0 and b"\n\n" not in conn.head and len(conn.head) < _MAX_HEAD:
            return
        self.selector.unregister(conn.sock)
        del self.pending[conn.sock.fileno()]
        line = bytes(conn.head[: conn.head.find(b"\n")]).split()
        path = urlsplit(line[1].decode("latin-1")).path if len(line) >= 2 else ""
        if path in _PROBES:
            self.probes.submit(self._serve, conn, False)
            return
        with self.lock:
            busy = self.queued >= self.app.max_queued
            if not busy:
                self.queued += 1
        if busy:
            self.app.refused += 1
            with contextlib.suppress(OSError):
                conn.sock.send(_BUSY)
            self._done(conn.sock)
            return
        self.main.submit(self._serve, conn, True)

    def _expire(self) -> None:
        """Close the connections whose head did not come within the request timeout."""
        now = time.monotonic()
        for conn in [c for c in self.pending.values() if c.deadline <= now]:
            self.app.refused += 1
            self._close(conn)

    def _close(self, conn: _Pending) -> None:
        self.selector.unregister(conn.sock)
        del self.pending[conn.sock.fileno()]
        self._done(conn.sock)

    def _done(self, sock: socket.socket) -> None:
        try:
            sock.close()
        finally:
            with self.lock:
                self.open -= 1

    def _serve(self, conn: _Pending, main: bool) -> None:
        """On a pool thread: answer the request whose head ``conn`` holds, then close."""
        try:
            conn.sock.settimeout(self.app.request_timeout)
            _Handler((conn.sock, bytes(conn.head)), conn.address, self.app)
            self.app.served += 1
        except Exception:  # a client hanging up mid-response is routine
            _log.debug("http_connection_error", client=str(conn.address), exc_info=True)
        finally:
            # Freed before the client can see the end of the response, so a client that
            # connects again at once finds the room it left.
            with self.lock:
                self.open -= 1
                if main:
                    self.queued -= 1
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)  # the response ends; nothing is unread
            conn.sock.close()


class _Pool:
    """A fixed number of daemon threads running submitted calls in order (daemons, unlike
    :class:`~concurrent.futures.ThreadPoolExecutor`'s, do not hold up the process's exit)."""

    def __init__(self, size: int, name: str) -> None:
        self.tasks: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None]
        self.tasks = queue.SimpleQueue()
        self.size = size
        for i in range(size):
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True).start()

    def submit(self, call: Callable[..., None], *args: Any) -> None:
        self.tasks.put((call, args))

    def stop(self) -> None:
        for _ in range(self.size):
            self.tasks.put(None)

    def _work(self) -> None:
        while (task := self.tasks.get()) is not None:
            task[0](*task[1])


class _Writer(io.BufferedIOBase):
    """The response stream: every write sent whole (``socket.sendall``)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        return len(data)


class _Handler(BaseHTTPRequestHandler):
    """One request, whose head was read already, answered and the connection closed."""

    protocol_version = "HTTP/1.1"
    app: HttpServer

    def __init__(self, request: tuple[socket.socket, bytes], address: Any,
                 app: HttpServer) -> None:  # fmt: skip
        self.app = app
        super().__init__(request, address, None)  # type: ignore[arg-type]

    def setup(self) -> None:
        sock, head = self.request
        self.connection = sock
        self.rfile = io.BytesIO(head)
        self.wfile = _Writer(sock)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def finish(self) -> None:
        self.wfile.close()
        self.rfile.close()

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        app = self.app
        parts = urlsplit(self.path)
        if parts.path == "/metrics":
            response = app._metrics(
                parts.query,
                self.headers.get("Accept", ""),
                self.headers.get("Accept-Encoding", ""),
            )
        elif parts.path == "/healthz":
            response = app._healthz()
        elif parts.path == "/readyz":
            response = app._readyz()
        else:
            response = 404, _TEXT, {}, b"not found; try /metrics, /healthz or /readyz\n"
        status, content_type, headers, payload = response
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("http_request", client=self.client_address[0], line=format % args)
