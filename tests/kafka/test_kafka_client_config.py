"""Client settings from KafkaConfig: no broker needed (Tansu cannot do SASL or TLS)."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from monitor.config import KafkaConfig
from monitor.kafka.client_config import (
    LogLimiter,
    admin_kwargs,
    build_admin,
    build_consumer,
    confluent_consumer_config,
    consumer_kwargs,
    producer_kwargs,
)

SECURE = KafkaConfig(
    bootstrap_servers="kafka-1.internal:9093, kafka-2.internal:9093",
    client_id="monitor-prod",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="monitor",
    sasl_password="s3cret",
    ssl_cafile="/etc/kafka/ca.pem",
    ssl_certfile="/etc/kafka/client.pem",
    ssl_keyfile="/etc/kafka/client.key",
)


@pytest.mark.parametrize("make", [consumer_kwargs, producer_kwargs, admin_kwargs])
def test_sasl_and_ssl_settings_pass_through_to_every_client(make):
    kwargs = make(SECURE)
    assert kwargs["bootstrap_servers"] == ["kafka-1.internal:9093", "kafka-2.internal:9093"]
    assert kwargs["client_id"] == "monitor-prod"
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "monitor"
    assert kwargs["sasl_plain_password"] == "s3cret"  # the secret's value, not its mask
    assert kwargs["ssl_cafile"] == "/etc/kafka/ca.pem"
    assert kwargs["ssl_certfile"] == "/etc/kafka/client.pem"
    assert kwargs["ssl_keyfile"] == "/etc/kafka/client.key"
    assert kwargs["reconnect_backoff_ms"] > 0 and kwargs["reconnect_backoff_max_ms"] >= 10_000


def test_plaintext_leaves_security_settings_unset():
    kwargs = consumer_kwargs(KafkaConfig())
    assert kwargs["security_protocol"] == "PLAINTEXT"
    assert not {k for k in kwargs if k.startswith(("sasl_", "ssl_"))}


@pytest.mark.parametrize(
    ("make", "client"),
    [(consumer_kwargs, KafkaConsumer), (producer_kwargs, KafkaProducer),
     (admin_kwargs, KafkaAdminClient)],
)  # fmt: skip
def test_every_setting_is_one_kafka_python_accepts(make, client):
    unknown = set(make(SECURE)) - set(client.DEFAULT_CONFIG)
    assert not unknown, f"kafka-python 3.0.12 would reject {unknown}"


def test_consumer_never_auto_commits_or_auto_creates_and_uses_the_group_timeouts():
    cfg = KafkaConfig(group_id="g", session_timeout="6s", heartbeat_interval="1s",
                      max_poll_records=123)  # fmt: skip
    kwargs = consumer_kwargs(cfg)
    assert kwargs["group_id"] == "g"
    assert kwargs["enable_auto_commit"] is False
    assert kwargs["auto_offset_reset"] == "earliest"
    assert kwargs["allow_auto_create_topics"] is False
    assert (kwargs["session_timeout_ms"], kwargs["heartbeat_interval_ms"]) == (6000, 1000)
    assert kwargs["max_poll_records"] == 123


@pytest.mark.parametrize("max_message", [1_048_576, 10 * 1_048_576])
def test_a_partition_fetch_holds_the_largest_accepted_message(max_message):
    kwargs = consumer_kwargs(KafkaConfig(max_message_bytes=max_message, fetch_max_bytes=2_000_000))
    assert kwargs["max_partition_fetch_bytes"] > max_message
    assert kwargs["fetch_max_bytes"] >= kwargs["max_partition_fetch_bytes"]


def test_producer_waits_for_all_replicas_and_sends_large_requests():
    kwargs = producer_kwargs(KafkaConfig())
    assert kwargs["acks"] == "all"
    assert kwargs["max_request_size"] >= 64 * 1024 * 1024
    assert kwargs["compression_type"] is None


def test_failed_construction_leaves_no_thread_behind():
    import threading

    before = threading.active_count()
    for build in (build_consumer, build_admin):
        with pytest.raises(Exception, match="bootstrap"):
            build(bootstrap_servers=["127.0.0.1:1"], bootstrap_timeout_ms=200)
    assert threading.active_count() == before


def test_log_limiter_lets_one_line_through_per_interval():
    limiter = LogLimiter(interval_s=3600)
    lines = []

    class Logger:
        def warning(self, event, **fields):
            lines.append((event, fields))

    for _ in range(5):
        limiter.log(Logger(), "warning", "poll", "kafka_poll_failed", error="down")
    assert lines == [("kafka_poll_failed", {"error": "down", "suppressed": 0})]
    assert limiter.suppressed("poll") == 4


def test_sasl_and_ssl_settings_map_to_librdkafka_keys():
    conf = confluent_consumer_config(SECURE)
    assert conf["bootstrap.servers"] == "kafka-1.internal:9093,kafka-2.internal:9093"
    assert conf["client.id"] == "monitor-prod"
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "monitor"
    assert conf["sasl.password"] == "s3cret"
    assert conf["ssl.ca.location"] == "/etc/kafka/ca.pem"
    assert conf["ssl.certificate.location"] == "/etc/kafka/client.pem"
    assert conf["ssl.key.location"] == "/etc/kafka/client.key"
    plain = confluent_consumer_config(KafkaConfig())
    assert plain["security.protocol"] == "plaintext"
    assert not [key for key in plain if key.startswith(("sasl.", "ssl."))]


def test_confluent_consumer_settings_are_ones_librdkafka_accepts():
    # librdkafka checks every property name and value when the client is created (no
    # connection yet); the TLS files do not exist, so check SASL over plaintext.
    cfg = SECURE.model_copy(
        update={"security_protocol": "SASL_PLAINTEXT", "ssl_cafile": None,
                "ssl_certfile": None, "ssl_keyfile": None, "fetch_queue_backoff": 0.02}
    )  # fmt: skip
    conf = confluent_consumer_config(cfg)
    assert conf["enable.auto.commit"] is False and conf["auto.offset.reset"] == "earliest"
    assert conf["fetch.queue.backoff.ms"] == 20
    assert conf["session.timeout.ms"] == 10_000 and conf["heartbeat.interval.ms"] == 3_000
    assert conf["max.partition.fetch.bytes"] >= cfg.max_message_bytes
    Consumer(conf).close()
    with pytest.raises(KafkaException):
        Consumer({**conf, "fetch.queue.backoff.ms": "soon"})
