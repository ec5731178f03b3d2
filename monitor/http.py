"""The daemon's one HTTP port: ``/metrics``, ``/healthz`` and ``/readyz``.

A stdlib :class:`~http.server.ThreadingHTTPServer` runs in a daemon thread. It was chosen
over prometheus_client's ``start_http_server``, which serves the registry on every path
and has no way to add routes; the exposition itself still comes from prometheus_client
(:func:`~prometheus_client.exposition.choose_encoder`), so ``Accept`` negotiation
(OpenMetrics for Prometheus, the text format otherwise), ``name[]`` filtering and gzip
behave as in the official exporters.

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
built without the collector render from the registry per request, as before.

- ``/metrics``: the exposition; 500 if a collector fails.
- ``/healthz``: liveness. 200 ``ok`` while the run loop's heartbeat is younger than
  ``stale_after`` seconds, else 503 with its age: a wedged loop gets the pod restarted,
  unlike an always-"ok" check.
- ``/readyz``: readiness. 200 when ``readiness()`` says so, else 503 with its reason
  (e.g. ``"restoring partitions [3, 7]"``).
- anything else: 404.
"""

from __future__ import annotations

import gzip
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class HttpServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` from a daemon thread.

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
        it, every scrape renders the registry.
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
    ) -> None:
        if not stale_after > 0:
            raise ValueError(f"Invalid 'stale_after': {stale_after!r}; must be > 0")
        if not 0 <= port <= 65535:
            raise ValueError(f"Invalid 'port': {port!r}; valid: 0..65535")
        self.host = host
        self._requested_port = port
        self.registry = registry
        self.heartbeat = heartbeat
        self.readiness = readiness
        self.stale_after = stale_after
        self.clock = clock
        self.collector = collector
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the OS once started with port 0)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9108``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread; raises ``OSError`` if the port is taken."""
        if self._server is not None:
            raise RuntimeError("HttpServer already started")
        cls = _Server6 if ":" in self.host else _Server
        server = cls((self.host, self._requested_port), _Handler)
        server.app = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="monitor-http",
            daemon=True,
        )
        self._thread.start()
        _log.info("http_listening", url=self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket; safe to call twice or before start."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Route bodies: (status, content type, headers, body). Run on server threads.

    def _metrics(self, query: str, accept: str, accept_encoding: str) -> _Response:
        encoder, content_type = choose_encoder(accept)
        params = parse_qs(query)
        cached = self._cached_metrics(encoder, params, accept_encoding)
        if cached is not None:
            return 200, content_type, *cached
        source: Any = self.registry
        if "name[]" in params:
            source = self.registry.restricted_registry(params["name[]"])
        try:
            body = encoder(source)
        except Exception as exc:
            _errors.error("metrics", "metrics_collect_failed", error=repr(exc), exc_info=True)
            return 500, _TEXT, {}, b"metrics collection failed\n"
        headers = {}
        if gzip_accepted(accept_encoding):
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: HttpServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response are routine; keep them out of stderr.
        _log.debug("http_connection_error", client=str(client_address), exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this many seconds

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        app = self.server.app
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
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("http_request", client=self.client_address[0], line=format % args)
