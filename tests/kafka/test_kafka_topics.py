"""The co-partitioning check against a real broker, with an admin client and a consumer."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer

from monitor.kafka.client_config import admin_kwargs, consumer_kwargs
from monitor.kafka.topics import TopicLayoutError, check_copartitioning, partition_counts


@pytest.fixture(params=["admin", "consumer"])
def lookup_client(request, broker, topics, kafka_config):
    """Each way of looking topics up: an admin client, and the daemon's own consumer settings."""
    cfg = kafka_config(broker, topics)
    if request.param == "admin":
        client = KafkaAdminClient(**admin_kwargs(cfg))
    else:
        client = KafkaConsumer(**consumer_kwargs(cfg))
    yield client
    client.close()


def test_equal_partition_counts_pass_and_return_the_count(
    broker, make_topics, kafka_config, lookup_client
):
    topics = make_topics(6, 6)
    assert check_copartitioning(kafka_config(broker, topics), lookup_client) == 6


def test_different_partition_counts_name_both_topics_and_counts(
    broker, make_topics, kafka_config, lookup_client
):
    topics = make_topics(4, 6)
    with pytest.raises(TopicLayoutError) as caught:
        check_copartitioning(kafka_config(broker, topics), lookup_client)
    message = str(caught.value)
    assert f"predictions topic {topics.predictions!r} has 4 partitions" in message
    assert f"labels topic {topics.labels!r} has 6 partitions" in message
    assert "co-partitioning" in message


def test_missing_topic_is_reported_and_not_created(broker, topics, kafka_config, lookup_client):
    missing = topics.labels + "-missing"
    cfg = kafka_config(broker, topics, labels_topic=missing)
    with pytest.raises(TopicLayoutError, match=f"labels topic {missing!r} does not exist"):
        check_copartitioning(cfg, lookup_client)
    with pytest.raises(TopicLayoutError, match="does not exist"):
        check_copartitioning(cfg, lookup_client)  # still missing: the lookup created nothing
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert missing not in admin.list_topics()
        assert partition_counts(admin, [topics.predictions, missing]) == {
            topics.predictions: 4,
            missing: None,
        }
    finally:
        admin.close()


def test_other_clients_are_refused(topics, kafka_config, broker):
    with pytest.raises(TypeError, match="KafkaAdminClient or KafkaConsumer"):
        check_copartitioning(kafka_config(broker, topics), object())
