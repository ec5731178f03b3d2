"""The HTTP port: /metrics, /healthz, /readyz and 404, on a real loopback socket."""

from __future__ import annotations

import gzip
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from monitor.core.report import Report
from monitor.http import HttpServer
from monitor.outputs.prometheus import MonitorCollector


class Loop:
    """Stands in for the run loop: a heartbeat and a readiness state set by the test."""

    def __init__(self) -> None:
        self.last_beat = time.time()
        self.state: tuple[bool, str] = (False, "restoring partitions [0, 1]")

    def heartbeat(self) -> float:
        return self.last_beat

    def readiness(self) -> tuple[bool, str]:
        return self.state


@pytest.fixture
def loop() -> Loop:
    return Loop()


@pytest.fixture
def server(loop: Loop) -> Iterator[HttpServer]:
    registry = CollectorRegistry()
    MonitorCollector(registry).update(Report(events=42))
    srv = HttpServer(
        "127.0.0.1", 0, registry,
        heartbeat=loop.heartbeat, readiness=loop.readiness, stale_after=30.0,
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def get(server: HttpServer, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


def test_port_zero_picks_a_free_port(server):
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_metrics_serves_the_registry_in_text_format(server):
    status, headers, body = get(server, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert b"monitor_events_processed_total 42.0" in body


def test_metrics_honours_accept_openmetrics(server):
    status, headers, body = get(
        server, "/metrics", Accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_metrics_gzip_when_accepted(server):
    status, headers, body = get(server, "/metrics", **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert b"monitor_events_processed_total 42.0" in gzip.decompress(body)


def test_metrics_name_filter(server):
    _, _, body = get(server, "/metrics?name[]=monitor_events_processed_total")
    assert b"monitor_events_processed_total" in body
    assert b"monitor_build_info" not in body


def test_healthz_ok_while_heartbeat_is_fresh(server, loop):
    loop.last_beat = time.time() - 5
    assert get(server, "/healthz")[::2] == (200, b"ok\n")


def test_healthz_turns_503_when_heartbeat_goes_stale(server, loop):
    loop.last_beat = time.time() - 45
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert body.startswith(b"stale: last loop heartbeat 45") and b"limit 30s" in body
    loop.last_beat = time.time()
    assert get(server, "/healthz")[0] == 200


def test_healthz_503_before_first_heartbeat(server, loop):
    loop.last_beat = 0.0
    assert get(server, "/healthz")[::2] == (503, b"no heartbeat yet\n")


def test_healthz_503_when_heartbeat_callable_fails(loop):
    def broken() -> float:
        raise RuntimeError("boom")

    with HttpServer("127.0.0.1", 0, CollectorRegistry(), heartbeat=broken,
                    readiness=loop.readiness) as srv:
        status, _, body = get(srv, "/healthz")
    assert status == 503 and b"boom" in body


def test_readyz_reflects_the_readiness_callable(server, loop):
    assert get(server, "/readyz")[::2] == (503, b"restoring partitions [0, 1]\n")
    loop.state = (True, "")
    assert get(server, "/readyz")[::2] == (200, b"ready\n")
    loop.state = (False, "lagging: 12000 messages behind")
    assert get(server, "/readyz")[::2] == (503, b"lagging: 12000 messages behind\n")


def test_unknown_path_is_404(server):
    assert get(server, "/")[0] == 404
    assert get(server, "/metrics/extra")[0] == 404


def test_head_request_has_no_body(server):
    request = urllib.request.Request(server.url + "/healthz", method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == "3"
        assert response.read() == b""


def test_metrics_500_when_a_collector_fails(loop):
    class Broken:
        def collect(self):
            raise RuntimeError("collector bug")

    registry = CollectorRegistry()
    registry.register(Broken())
    with HttpServer("127.0.0.1", 0, registry, heartbeat=loop.heartbeat,
                    readiness=loop.readiness) as srv:
        assert get(srv, "/metrics")[0] == 500
        assert get(srv, "/healthz")[0] == 200  # the server survives


def test_stop_releases_the_port_and_is_idempotent(loop):
    srv = HttpServer("127.0.0.1", 0, CollectorRegistry(), heartbeat=loop.heartbeat,
                     readiness=loop.readiness)
    srv.start()
    port = srv.port
    srv.stop()
    srv.stop()
    again = HttpServer("127.0.0.1", port, CollectorRegistry(), heartbeat=loop.heartbeat,
                       readiness=loop.readiness)
    again.start()
    try:
        assert again.port == port
    finally:
        again.stop()


def test_start_twice_is_refused(server):
    with pytest.raises(RuntimeError):
        server.start()


def test_ipv6_loopback(loop):
    try:
        srv = HttpServer("::1", 0, CollectorRegistry(), heartbeat=loop.heartbeat,
                         readiness=loop.readiness)
        srv.start()
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        assert srv.url.startswith("http://[::1]:")
        assert get(srv, "/healthz")[0] == 200
    finally:
        srv.stop()


# Under load: bounded threads, probes apart from /metrics, shared renders, timeouts.

class Gate:
    """A collector whose render waits until the test opens the gate; counts renders."""

    def __init__(self, delay: float = 0.0) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.renders = 0
        self.delay = delay

    def collect(self):
        self.renders += 1
        self.entered.set()
        if self.delay:
            time.sleep(self.delay)
        else:
            self.open.wait(30)
        yield GaugeMetricFamily("gate_value", "one series", value=1.0)

    def describe(self):  # the name, for name[] filters, without a render
        yield GaugeMetricFamily("gate_value", "one series")


def raw(srv: HttpServer, text: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as sock:
        sock.sendall(text)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    return bytes(data)


def test_probes_answer_while_every_metrics_thread_is_stuck_rendering(loop):
    gate = Gate()
    registry = CollectorRegistry()
    registry.register(gate)
    with HttpServer("127.0.0.1", 0, registry, heartbeat=loop.heartbeat,
                    readiness=loop.readiness, threads=2) as srv:
        stuck = [threading.Thread(target=get, args=(srv, f"/metrics?name[]=gate_value&name[]=x{i}"))
                 for i in range(2)]  # two distinct filters: two renders, both threads busy
        for t in stuck:
            t.start()
        assert gate.entered.wait(5)
        try:
            assert get(srv, "/healthz")[0] == 200
            loop.state = (True, "")
            assert get(srv, "/readyz")[0] == 200
        finally:
            gate.open.set()
        for t in stuck:
            t.join(10)


def test_concurrent_scrapes_share_one_render_and_later_ones_render_again(loop):
    gate = Gate(delay=0.3)
    registry = CollectorRegistry()
    registry.register(gate)
    with HttpServer("127.0.0.1", 0, registry, heartbeat=loop.heartbeat,
                    readiness=loop.readiness, threads=4, render_interval=3.0) as srv:
        bodies: list[bytes] = []
        scrapes = [threading.Thread(target=lambda: bodies.append(get(srv, "/metrics")[2]))
                   for _ in range(8)]
        for t in scrapes:
            t.start()
        for t in scrapes:
            t.join(10)
        assert len(bodies) == 8 and len(set(bodies)) == 1
        assert b"gate_value 1.0" in bodies[0]
        assert gate.renders == 1
        time.sleep(3.1)  # past the interval: a scrape gets a fresh render
        assert get(srv, "/metrics")[0] == 200
        assert gate.renders == 2


def test_clients_that_send_nothing_hold_no_thread_and_are_closed(loop):
    registry = CollectorRegistry()
    with HttpServer("127.0.0.1", 0, registry, heartbeat=loop.heartbeat,
                    readiness=loop.readiness, threads=1, probe_threads=1,
                    request_timeout=0.5) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                for _ in range(20)]
        try:
            idle[0].sendall(b"GET /metr")  # half a request line
            assert get(srv, "/healthz")[0] == 200
            assert get(srv, "/metrics")[0] == 200
            for sock in idle:  # the server hangs up on each once its timeout passes
                assert sock.recv(1) == b""
        finally:
            for sock in idle:
                sock.close()


def test_requests_beyond_the_queue_are_refused_at_once_with_503(loop):
    gate = Gate()
    registry = CollectorRegistry()
    registry.register(gate)
    with HttpServer("127.0.0.1", 0, registry, heartbeat=loop.heartbeat,
                    readiness=loop.readiness, threads=1, max_queued=1) as srv:
        stuck = threading.Thread(target=get, args=(srv, "/metrics"))
        stuck.start()
        try:
            assert gate.entered.wait(5)
            status, headers, _ = get(srv, "/metrics")
            assert status == 503 and headers["Retry-After"] == "1"
            assert get(srv, "/healthz")[0] == 200  # probes are not queued there
        finally:
            gate.open.set()
        stuck.join(10)


def test_connections_past_the_cap_are_closed_and_responses_close_theirs(loop):
    with HttpServer("127.0.0.1", 0, CollectorRegistry(), heartbeat=loop.heartbeat,
                    readiness=loop.readiness, max_connections=2) as srv:
        reply = raw(srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200") and b"Connection: close" in reply
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(2)]
        try:
            time.sleep(0.3)  # both accepted
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as third:
                assert third.recv(1) == b""
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10  # the cap frees as the server sees them close
        while True:
            try:
                status = get(srv, "/healthz")[0]
            except OSError:
                status = 0
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200


def test_the_listen_backlog_is_at_least_128(loop):
    with HttpServer("127.0.0.1", 0, CollectorRegistry(), heartbeat=loop.heartbeat,
                    readiness=loop.readiness) as srv:
        # ss shows a listening socket's backlog as its Send-Q
        shown = subprocess.run(["ss", "-ltnH", f"sport = :{srv.port}"], capture_output=True,
                               text=True, check=False).stdout.split()
        if not shown:
            pytest.skip("ss unavailable")
        assert int(shown[2]) >= 128
