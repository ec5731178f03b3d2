"""The TLS files of ``[kafka]`` reach the wire: kafka-python, built from the daemon's client
settings, presents the configured client certificate and checks the server's against the
configured CA.

Tansu cannot serve TLS (TANSU.md), so the server here is a loopback TLS listener that
requires a client certificate, records the peer's subject and the first bytes sent after
the handshake (the client's first Kafka request), and hangs up. Certificates come from
``trustme``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from kafka import KafkaConsumer

from monitor.config import KafkaConfig
from monitor.kafka.client_config import consumer_kwargs


class TlsListener:
    """Accepts TLS connections on 127.0.0.1 and records who connected and what they sent."""

    def __init__(self, ca: trustme.CA) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        ca.configure_trust(self.context)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers: list[dict[str, Any]] = []
        self.first_bytes: list[bytes] = []
        self.failures: list[str] = []
        self.handshake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(3)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.peers.append(tls.getpeercert() or {})
                    self.handshake.set()
                    self.first_bytes.append(tls.recv(4096))
            except (ssl.SSLError, OSError) as exc:
                self.failures.append(type(exc).__name__)
                self.handshake.set()
                with contextlib.suppress(OSError):
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def listener(ca: trustme.CA) -> Iterator[TlsListener]:
    server = TlsListener(ca)
    yield server
    server.close()


def _files(tmp_path: Path, ca: trustme.CA, signer: trustme.CA) -> dict[str, str]:
    """A CA file trusting ``ca``, and a client certificate (CN monitor-client) by ``signer``."""
    client = signer.issue_cert("monitor.internal", common_name="monitor-client")
    paths = {name: str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    client.cert_chain_pems[0].write_to_path(paths["cert"])
    client.private_key_pem.write_to_path(paths["key"])
    return paths


def _connect(cfg: KafkaConfig) -> None:
    """Build a consumer from the daemon's settings; it fails to bootstrap (no Kafka here)."""
    with contextlib.suppress(Exception):
        consumer = KafkaConsumer(**consumer_kwargs(cfg), bootstrap_timeout_ms=1000)
        consumer.close()


def _subject(peer: dict[str, Any]) -> dict[str, str]:
    return {k: v for rdn in peer.get("subject", ()) for k, v in rdn}


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_the_configured_client_certificate_and_ca_are_used(
    tmp_path: Path, ca: trustme.CA, listener: TlsListener, protocol: str
) -> None:
    files = _files(tmp_path, ca, ca)
    sasl = ({"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "monitor",
             "sasl_password": "pw"} if protocol == "SASL_SSL" else {})  # fmt: skip
    cfg = KafkaConfig(
        bootstrap_servers=f"127.0.0.1:{listener.port}", security_protocol=protocol,
        ssl_cafile=files["ca"], ssl_certfile=files["cert"], ssl_keyfile=files["key"], **sasl,
    )  # fmt: skip
    _connect(cfg)
    assert listener.handshake.wait(10)
    assert listener.peers, f"no TLS handshake completed: {listener.failures}"
    assert _subject(listener.peers[0])["commonName"] == "monitor-client"
    assert listener.first_bytes[0], "the client sent no request over TLS"


def test_a_server_the_configured_ca_did_not_sign_is_refused(
    tmp_path: Path, ca: trustme.CA, listener: TlsListener
) -> None:
    other = trustme.CA()
    files = _files(tmp_path, other, ca)  # trusts another CA than the server's
    cfg = KafkaConfig(
        bootstrap_servers=f"127.0.0.1:{listener.port}", security_protocol="SSL",
        ssl_cafile=files["ca"], ssl_certfile=files["cert"], ssl_keyfile=files["key"],
    )  # fmt: skip
    _connect(cfg)
    assert listener.handshake.wait(10)
    assert not listener.peers and listener.failures
