"""Topic layout checks: both input topics exist and are co-partitioned.

A prediction and its label are joined inside one input partition, so the
predictions and labels topics must have the same partition count (both keyed
by ``prediction_id``). The daemon checks this at start and refuses, with a
message naming both topics and their counts, when it does not hold.

The lookups never create a topic: they use ``KafkaAdminClient.describe_topics``
or a consumer built with ``allow_auto_create_topics=False`` (checked against
Tansu, which otherwise creates unknown topics with 4 partitions on a metadata
request).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from kafka import errors as kafka_errors

from monitor.config import KafkaConfig

__all__ = ["TopicLayoutError", "check_copartitioning", "partition_counts"]

_UNKNOWN_TOPIC = kafka_errors.UnknownTopicOrPartitionError.errno


class TopicLayoutError(Exception):
    """The input topics are missing or not co-partitioned: a layout error, not an outage."""


@runtime_checkable
class _Admin(Protocol):
    def describe_topics(self, topics: list[str] | None = None) -> list[dict[str, Any]]: ...


@runtime_checkable
class _Consumer(Protocol):
    def topics(self) -> set[str]: ...

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...


def partition_counts(client: Any, topics: list[str]) -> dict[str, int | None]:
    """Partition count of each topic, ``None`` for a topic that does not exist.

    Parameters
    ----------
    client
        A ``KafkaAdminClient`` or a ``KafkaConsumer`` built with
        ``allow_auto_create_topics=False``; neither creates the topics.
    topics
        Topic names to look up.

    Raises
    ------
    TopicLayoutError
        When the broker refuses to describe a topic (for example, not authorized).
    kafka.errors.KafkaError
        When the broker cannot be reached or answers with a retriable error;
        the caller may retry.
    """
    if isinstance(client, _Admin):
        counts: dict[str, int | None] = {}
        for entry in client.describe_topics(list(dict.fromkeys(topics))):
            name, code = entry["name"], entry.get("error_code", 0)
            if code == _UNKNOWN_TOPIC:
                counts[name] = None
            elif code:
                error = kafka_errors.for_code(code)
                if getattr(error, "retriable", False):
                    raise error(f"describing topic {name!r}")
                raise TopicLayoutError(
                    f"cannot describe topic {name!r}: {error.__name__} (error code {code})"
                )
            else:
                counts[name] = len(entry["partitions"])
        return {topic: counts.get(topic) for topic in topics}
    if isinstance(client, _Consumer):
        client.topics()  # refreshes the metadata of every topic
        result: dict[str, int | None] = {}
        for topic in topics:
            partitions = client.partitions_for_topic(topic)
            result[topic] = len(partitions) if partitions else None
        return result
    raise TypeError(f"expected a KafkaAdminClient or KafkaConsumer, got {type(client).__name__}")


def check_copartitioning(cfg: KafkaConfig, consumer_or_admin: Any) -> int:
    """Check that the predictions and labels topics exist with equal partition counts.

    Parameters
    ----------
    cfg
        The ``[kafka]`` section: names the two input topics.
    consumer_or_admin
        A ``KafkaAdminClient`` or a ``KafkaConsumer`` (built with
        ``allow_auto_create_topics=False``) to look the topics up with.

    Returns
    -------
    int
        The partition count shared by both topics.

    Raises
    ------
    TopicLayoutError
        When a topic does not exist or the counts differ; the message names
        both topics and their counts.
    kafka.errors.KafkaError
        When the broker cannot be reached (an outage: retry).
    """
    pred, labels = cfg.predictions_topic, cfg.labels_topic
    counts = partition_counts(consumer_or_admin, [pred, labels])
    n_pred, n_labels = counts[pred], counts[labels]

    def describe(role: str, topic: str, count: int | None) -> str:
        state = "does not exist" if count is None else f"has {count} partitions"
        return f"{role} topic {topic!r} {state}"

    if n_pred is None or n_labels is None:
        missing = " and ".join(t for t, n in ((pred, n_pred), (labels, n_labels)) if n is None)
        raise TopicLayoutError(
            f"{describe('predictions', pred, n_pred)}; {describe('labels', labels, n_labels)}. "
            f"Create {missing} before starting the monitor (the monitor does not create its "
            f"input topics), with the same partition count for both."
        )
    if n_pred != n_labels:
        raise TopicLayoutError(
            f"{describe('predictions', pred, n_pred)} but {describe('labels', labels, n_labels)}. "
            "Both input topics must have the same partition count and be keyed by "
            "prediction_id, so that a prediction and its label land in the same partition "
            "(co-partitioning); repartition one of them."
        )
    return n_pred
