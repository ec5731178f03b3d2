"""Shared fixtures: a real Kafka-compatible broker (Tansu) and fresh topics per test.

- ``broker`` (session): an :class:`~monitor.broker.EmbeddedBroker` on a free
  loopback port. Tests that stop, restart or freeze a broker start their own.
- ``make_topics(partitions_pred=4, partitions_labels=None)`` (function): a
  factory creating a uniquely named predictions/labels pair (plus alert and
  dead-letter topics with 1 partition each) and a fresh group id. Topics are
  created before any client touches them: Tansu would otherwise auto-create
  them with 4 partitions.
- ``topics``: ``make_topics(4, 4)``.
- ``kafka_config``: the helper ``kafka_config(broker, topics, **overrides)``
  returning a :class:`~monitor.config.KafkaConfig` for them, with a short
  session timeout so that a group join takes ~3 s instead of ~23 s.
- ``produce``: the helper ``produce(bootstrap, topic, records)``, which writes
  ``(key, value, headers, partition)`` records with confluent-kafka,
  a client independent of the one under test.

The suite runs on two xdist workers, a module at a time each (pyproject's addopts); the
modules are handed out longest first (``SLOW_MODULES``, ``pytest_collection_modifyitems``).
Each worker has its own session broker; tests share it through unique topic and group
names, so nothing here may rely on being the only test running.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Producer
from hypothesis import settings

from monitor import native
from monitor.broker import EmbeddedBroker, create_topics
from monitor.config import KafkaConfig

#: Seconds the slowest test modules took (two workers on a shared 2-core machine), for the
#: order of the run only (:func:`pytest_collection_modifyitems`); a module not listed
#: counts as quick. Refresh from ``./dev test --durations=0`` when a module outgrows the
#: last ones here.
SLOW_MODULES = {
    "tests/kafka/test_kafka_source.py": 134,
    "tests/faults/test_replica_crashes.py": 104,
    "tests/faults/test_crash_resume.py": 86,
    "tests/faults/test_readiness_outage.py": 73,
    "tests/core/test_fastpath.py": 71,
    "tests/faults/test_replica_exactness.py": 71,
    "tests/faults/test_replicas.py": 64,
    "tests/faults/test_disk_full.py": 57,
    "tests/faults/test_broker_faults.py": 53,
    "tests/faults/test_future_event.py": 41,
    "tests/test_packaging.py": 40,
    "tests/faults/test_partial_assignment.py": 37,
    "tests/test_cli.py": 32,
    "tests/test_end_to_end.py": 32,
    "tests/faults/test_oversized_ids.py": 29,
    "tests/faults/test_backpressure.py": 29,
    "tests/kafka/test_partials_topic.py": 29,
    "tests/core/test_exactness.py": 29,
    "tests/test_demo.py": 27,
    "tests/events/test_rejects.py": 24,
    "tests/state/test_pipeline_state.py": 24,
    "tests/faults/test_state_lock.py": 20,
    "tests/state/test_format.py": 18,
    "tests/core/test_pending_table.py": 18,
    "tests/test_startup.py": 16,
    "tests/test_report.py": 15,
    "tests/core/test_model_stage.py": 15,
    "tests/core/test_owner_index.py": 15,
    "tests/core/test_windows.py": 12,
    "tests/security/test_secrets_and_binding.py": 11,
    "tests/faults/test_scrape_storm.py": 11,
    "tests/outputs/test_cloudwatch.py": 10,
}

# What the properties test is results, not speed: hypothesis' per-example deadline
# (200 ms) fails an example that a loaded machine (the suite on two workers beside other
# work) happens to run slowly. Each test's own @settings keep their other choices.
settings.register_profile("monitor", deadline=None)
settings.load_profile("monitor")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest modules first. The suite runs on two xdist workers with ``--dist loadfile``
    (a module is one unit of work, handed out in this order), so a long module started
    last cannot keep one worker busy while the other has nothing left. The sort is
    stable: each module's tests stay together and in their own order."""
    items.sort(key=lambda item: -SLOW_MODULES.get(item.nodeid.split("::", 1)[0], 0))


@dataclass(frozen=True)
class Topics:
    """Names made for one test: input topics, output topics and a consumer group."""

    predictions: str
    labels: str
    alerts: str
    dead_letters: str
    group_id: str
    partitions_pred: int
    partitions_labels: int


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the whole session; fails loudly when tansu is missing."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def make_topics(broker: EmbeddedBroker) -> Callable[..., Topics]:
    """Factory: ``make_topics(partitions_pred=4, partitions_labels=None) -> Topics``."""

    def make(partitions_pred: int = 4, partitions_labels: int | None = None) -> Topics:
        labels_n = partitions_pred if partitions_labels is None else partitions_labels
        tag = uuid.uuid4().hex[:10]
        made = Topics(
            predictions=f"predictions-{tag}",
            labels=f"labels-{tag}",
            alerts=f"alerts-{tag}",
            dead_letters=f"dead-letters-{tag}",
            group_id=f"group-{tag}",
            partitions_pred=partitions_pred,
            partitions_labels=labels_n,
        )
        create_topics(
            broker.bootstrap,
            {made.predictions: partitions_pred, made.labels: labels_n,
             made.alerts: 1, made.dead_letters: 1},
        )  # fmt: skip
        return made

    return make


@pytest.fixture
def topics(make_topics: Callable[..., Topics]) -> Topics:
    """A fresh predictions/labels pair with 4 partitions each, and a fresh group id."""
    return make_topics(4, 4)


def make_kafka_config(
    broker: EmbeddedBroker | str, topics: Topics, **overrides: Any
) -> KafkaConfig:
    """A KafkaConfig for ``topics`` on ``broker`` (or a bootstrap string), joins in ~3 s."""
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": topics.group_id,
        "client_id": "monitor-test",
        "predictions_topic": topics.predictions,
        "labels_topic": topics.labels,
        "alerts_topic": topics.alerts,
        "dead_letter_topic": topics.dead_letters,
        "session_timeout": 6,
        "heartbeat_interval": 1,
    }
    settings.update(overrides)
    return KafkaConfig(**settings)


@pytest.fixture
def kafka_config() -> Callable[..., KafkaConfig]:
    """The helper ``kafka_config(broker, topics, **overrides) -> KafkaConfig``."""
    return make_kafka_config


Record = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]], int | None]


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET on the daemon's HTTP port (an error status is returned)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def prediction_json(i: int, **extra: Any) -> bytes:
    """Prediction ``p<i>`` of model ``m`` (class 1, at 1_700_000_000 + i) as message bytes."""
    body = {"prediction_id": f"p{i}", "model": "m", "ts": 1_700_000_000 + i, "prediction": 1}
    return json.dumps({**body, **extra}).encode()


def produce_records(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    """Write ``(key, value, headers, partition)`` records with confluent-kafka and wait for acks."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "message.max.bytes": 64 << 20, "linger.ms": 5}
    )
    errors: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value, headers, partition in records:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": report}
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(topic, **kwargs)
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0 and not errors, f"produce failed: {remaining} left, {errors[:3]}"


@pytest.fixture
def produce() -> Callable[[str, str, Sequence[Record]], None]:
    """The helper ``produce(bootstrap, topic, records)``."""
    return produce_records


@pytest.fixture(params=["compiled", "numpy"])
def kernels(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test with the compiled kernels (``monitor._native``), then with the numpy and
    Python code that stands in for them (a module uses it for all its tests with
    ``pytestmark = pytest.mark.usefixtures("kernels")``)."""
    compiled = request.param == "compiled"
    if compiled and not native.available():
        pytest.fail("monitor._native is not built (tests/core/test_native.py says why)")
    before = native.use(compiled)
    yield request.param
    native.use(before)
