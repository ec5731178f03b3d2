"""The join of predictions and labels: order, TTL, caps, duplicates, model checks, delays."""

from __future__ import annotations

import json
from typing import Any

import pytest

from monitor.config import config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.core.report import LABEL_DELAY_BUCKETS
from monitor.events.message import Message

T0 = 1_700_000_000.0  # a multiple of the 10 s pane


def make_engine(lateness: str = "0s", **model: Any) -> Pipeline:
    settings = {"name": "b", "task": "binary", "positive_class": 1, "windows": ["all", "1h"],
                "label_ttl": "30d"}
    settings.update(model)
    other = {"name": "c", "task": "binary", "positive_class": 1, "windows": ["all"],
             "label_ttl": settings["label_ttl"]}
    if "max_early_labels" in model:  # the early-label buffer is shared by the models
        other["max_early_labels"] = model["max_early_labels"]
    return Pipeline(config_from_mapping({"time": {"pane": "10s", "allowed_lateness": lateness},
                                       "models": [settings, other]}))


class Feed:
    """Builds messages with increasing offsets per (topic, partition) and processes them."""

    def __init__(self, engine: Pipeline) -> None:
        self.engine = engine
        self.offsets: dict[tuple[str, int], int] = {}

    def _msg(self, topic: str, part: int, body: dict[str, Any]) -> Message:
        offset = self.offsets.get((topic, part), 0)
        self.offsets[(topic, part)] = offset + 1
        return Message(topic, part, offset, body.get("prediction_id", "").encode(),
                       json.dumps(body).encode())

    def pred(self, pid: str, ts: float, pred: Any = 1, *, model: str = "b", part: int = 0,
             **extra: Any) -> Message:
        body = {"prediction_id": pid, "model": model, "ts": ts, "prediction": pred, **extra}
        return self._msg("predictions", part, body)

    def label(self, pid: str, ts: float, label: Any = 1, *, part: int = 0,
              **extra: Any) -> Message:
        return self._msg("labels", part, {"prediction_id": pid, "ts": ts, "label": label, **extra})

    def __call__(self, *msgs: Message) -> list[tuple[str, str]]:
        return [(r.reason, r.message.topic) for r in self.engine.process(list(msgs))]


def counts(engine: Pipeline, model: str = "b") -> dict[str, float]:
    """Counts now (``summary()`` would show them after closing every open pane)."""
    return engine.report().models[model].counts


def windows(engine: Pipeline, model: str = "b") -> dict[str, dict[str, Any]]:
    return engine.summary()["models"][model]["windows"]


# --------------------------------------------------------------------------- order of arrival
@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("same_batch", [True, False])
def test_label_before_prediction_joins(named: bool, same_batch: bool) -> None:
    engine = make_engine()
    feed = Feed(engine)
    extra = {"model": "b"} if named else {}
    label = feed.label("a", T0 + 30, 0, **extra)
    pred = feed.pred("a", T0 + 10, 1, score=0.8)
    if same_batch:
        assert feed(label, pred) == []
    else:
        assert feed(label) == []
        assert counts(engine)["early_labels_pending"] == 1
        assert counts(engine, "c")["early_labels_pending"] == (0 if named else 1)
        assert feed(pred) == []
    c = counts(engine)
    assert (c["matched"], c["labels"], c["pending"], c["early_labels_pending"]) == (1, 1, 0, 0)
    w = windows(engine)["all"]
    assert w["accuracy"] == 0.0 and w["brier"] == pytest.approx(0.64, rel=1e-12)
    report = engine.report().models["b"]
    assert report.label_delay_sum == 20.0
    assert report.label_delay_buckets[:3] == [0.0, 0.0, 0.0]  # 20 s: the (15, 30] bucket
    assert report.label_delay_buckets[3] == 1.0


def test_early_label_with_a_value_the_model_rejects() -> None:
    """An unnamed early label is checked when its prediction comes: a bad value is a reject
    of the labels topic, and the prediction waits for a valid label."""
    engine = Pipeline(config_from_mapping({"time": {"pane": "10s"}, "models": [
        {"name": "mc", "task": "multiclass", "classes": ["x", "y"], "windows": ["all"]}]}))
    feed = Feed(engine)
    assert feed(feed.label("a", T0, "zebra")) == []
    assert feed(feed.pred("a", T0, "x", model="mc")) == []
    summary = engine.summary()
    assert summary["rejects"] == {"unknown_class": 1}
    c = summary["models"]["mc"]["counts"]
    assert (c["matched"], c["pending"], c["early_labels_pending"]) == (0, 1, 0)
    assert feed(feed.label("a", T0 + 1, "x")) == []
    assert counts(engine, "mc")["matched"] == 1


def test_inline_label_joins_at_once() -> None:
    engine = make_engine()
    feed = Feed(engine)
    assert feed(feed.pred("a", T0, 1, label=1, score=0.9)) == []
    c = counts(engine)
    assert (c["predictions"], c["labels"], c["matched"], c["pending"]) == (1, 1, 1, 0)
    assert windows(engine)["all"]["recall"] == 1.0
    report = engine.report().models["b"]
    assert report.label_delay_buckets[0] == 1.0 and report.label_delay_sum == 0.0
    # Its label cannot come again.
    assert feed(feed.label("a", T0 + 5, 1)) == [("duplicate", "labels")]
    assert counts(engine)["duplicate_labels"] == 1


# --------------------------------------------------------------------------- TTL
def test_prediction_expires_exactly_after_its_ttl() -> None:
    """A prediction at T with a 60 s TTL waits while the closed panes end at or before
    T + 60 (watermark < T + 70 with 10 s panes), then counts as expired."""
    engine = make_engine(label_ttl="60s")
    feed = Feed(engine)
    assert feed(feed.pred("a", T0), feed.pred("b", T0 + 69)) == []
    assert counts(engine)["expired"] == 0
    assert feed(feed.label("b", T0 + 69)) == []  # the labels partition speaks
    assert feed(feed.label("a", T0 + 69)) == []  # still in time
    c = counts(engine)
    assert (c["matched"], c["expired"], c["pending"]) == (2, 0, 0)

    assert feed(feed.pred("late", T0 + 100), feed.pred("z", T0 + 170),
                feed.label("z", T0 + 170)) == []
    c = counts(engine)
    assert (c["expired"], c["pending"], c["matched"]) == (1, 0, 3)
    assert windows(engine)["all"]["prediction_count"] == 4.0  # expired still predicted


def test_label_after_expiry_waits_then_counts_as_orphan() -> None:
    engine = make_engine(label_ttl="60s")
    feed = Feed(engine)
    assert feed(feed.pred("a", T0), feed.pred("tick", T0 + 200), feed.label("tick", T0 + 200)) == []
    assert counts(engine)["expired"] == 1
    # Its label comes too late: it waits as an early label, then expires as an orphan.
    assert feed(feed.label("a", T0 + 205, model="b")) == []
    c = counts(engine)
    assert (c["matched"], c["early_labels_pending"], c["labels"]) == (1, 1, 2)
    assert feed(feed.pred("t2", T0 + 400), feed.label("t2", T0 + 400)) == []
    c = counts(engine)
    assert (c["orphan_labels"], c["early_labels_pending"]) == (1, 0)
    assert counts(engine, "c")["orphan_labels"] == 0


def test_unnamed_orphan_label_is_counted_apart_from_the_models() -> None:
    """A label naming no model cannot be charged to one: when it expires unjoined it is
    counted among the unnamed labels (``monitor_join_total{model=""}``), not per model."""
    engine = make_engine(label_ttl="60s")
    feed = Feed(engine)
    assert feed(feed.label("ghost", T0), feed.pred("p", T0)) == []
    assert counts(engine)["early_labels_pending"] == 1
    assert feed(feed.pred("q", T0 + 300), feed.label("q", T0 + 300)) == []
    c = counts(engine)
    assert (c["early_labels_pending"], c["orphan_labels"]) == (0, 0)
    assert engine.report().unnamed == {"orphan_labels": 1, "early_labels_evicted": 0}
    assert engine.summary()["unnamed_labels"] == {"orphan_labels": 1, "early_labels_evicted": 0}


def test_unnamed_early_labels_evicted_at_the_cap_are_counted() -> None:
    """Labels naming no model evicted at ``max_early_labels`` are counted, never dropped
    silently, and exported with ``model=""``."""
    from prometheus_client import CollectorRegistry

    from monitor.outputs.prometheus import MonitorCollector

    engine = make_engine(max_early_labels=2)
    feed = Feed(engine)
    assert feed(*[feed.label(f"l{i}", T0 + i) for i in range(5)]) == []
    assert counts(engine)["early_labels_evicted"] == 0  # no model's
    assert engine.report().unnamed["early_labels_evicted"] == 3
    registry = CollectorRegistry()
    MonitorCollector(registry).update(engine.report())
    labels = {"model": "", "outcome": "early_label_evicted"}
    assert registry.get_sample_value("monitor_join_total", labels) == 3.0


# --------------------------------------------------------------------------- caps
def test_max_pending_evicts_the_oldest() -> None:
    engine = make_engine(max_pending=3)
    feed = Feed(engine)
    assert feed(*[feed.pred(f"p{i}", T0 + i) for i in range(5)]) == []
    c = counts(engine)
    assert (c["predictions"], c["pending"], c["evicted"]) == (5, 3, 2)
    # p0 and p1 are gone: their labels wait as early labels; p4 joins.
    assert feed(feed.label("p0", T0 + 10, model="b"), feed.label("p4", T0 + 10)) == []
    c = counts(engine)
    assert (c["matched"], c["pending"], c["early_labels_pending"]) == (1, 2, 1)


def test_max_pending_across_partitions_evicts_the_oldest() -> None:
    """The cap is on the model's pending predictions (all partitions): when it is reached
    by predictions of partition 0, a prediction in partition 1 still evicts the oldest
    one and waits for its label itself."""
    engine = make_engine(max_pending=2)
    feed = Feed(engine)
    assert feed(feed.pred("p0", T0), feed.pred("p1", T0 + 1), feed.pred("q0", T0 + 2, part=1)) == []
    c = counts(engine)
    assert (c["pending"], c["evicted"]) == (2, 1)
    assert feed(feed.label("q0", T0 + 3, part=1)) == []
    assert counts(engine)["matched"] == 1, "the newest prediction was dropped, not the oldest"


def test_max_early_labels_evicts_the_oldest() -> None:
    engine = make_engine(max_early_labels=2)
    feed = Feed(engine)
    assert feed(*[feed.label(f"l{i}", T0 + i, model="b") for i in range(3)]) == []
    c = counts(engine)
    assert (c["early_labels_pending"], c["early_labels_evicted"], c["labels"]) == (2, 1, 3)
    assert feed(feed.pred("l0", T0), feed.pred("l2", T0)) == []
    c = counts(engine)
    assert (c["matched"], c["pending"]) == (1, 1)


def test_max_early_labels_holds_across_partitions() -> None:
    engine = make_engine(max_early_labels=2)
    feed = Feed(engine)
    assert feed(feed.label("l0", T0, model="b"), feed.label("l1", T0 + 1, model="b"),
                feed.label("l2", T0 + 2, model="b", part=1)) == []
    c = counts(engine)
    assert c["early_labels_pending"] <= 2, c
    assert c["early_labels_evicted"] == 1


# --------------------------------------------------------------------------- duplicates
def test_duplicate_prediction_is_rejected_and_counted() -> None:
    engine = make_engine()
    feed = Feed(engine)
    assert feed(feed.pred("a", T0, 1, score=0.9)) == []
    # Pending: a second prediction with the same id is a duplicate (even with a label).
    assert feed(feed.pred("a", T0 + 1, 0, score=0.1, label=0)) == [("duplicate", "predictions")]
    assert feed(feed.label("a", T0 + 2, 1)) == []
    # Matched: still a duplicate.
    assert feed(feed.pred("a", T0 + 3, 0)) == [("duplicate", "predictions")]
    summary = engine.summary()
    c = summary["models"]["b"]["counts"]
    assert (c["predictions"], c["duplicate_predictions"], c["matched"]) == (1, 2, 1)
    assert summary["rejects"] == {"duplicate": 2}
    w = summary["models"]["b"]["windows"]["all"]
    assert (w["prediction_count"], w["accuracy"], w["score_mean"]) == (1.0, 1.0, 0.9)
    # Ids are unique per model: the other model may use the same one.
    assert feed(feed.pred("a", T0 + 4, 1, model="c")) == []


def test_duplicate_label_is_rejected_and_counted() -> None:
    engine = make_engine()
    feed = Feed(engine)
    assert feed(feed.pred("a", T0, 1), feed.label("a", T0 + 1, 1)) == []
    assert feed(feed.label("a", T0 + 2, 0)) == [("duplicate", "labels")]
    assert feed(feed.label("a", T0 + 3, 0, model="b")) == [("duplicate", "labels")]
    # Two labels before their prediction: the second is a duplicate.
    assert feed(feed.label("e", T0 + 4, 1)) == []
    assert feed(feed.label("e", T0 + 5, 0)) == [("duplicate", "labels")]
    assert feed(feed.pred("e", T0 + 6, 1)) == []
    summary = engine.summary()
    c = summary["models"]["b"]["counts"]
    # The duplicate of a label naming no model, before its prediction, is charged to no model.
    assert (c["matched"], c["duplicate_labels"], c["labels"]) == (2, 2, 2)
    assert summary["models"]["b"]["windows"]["all"]["accuracy"] == 1.0
    assert summary["rejects"] == {"duplicate": 3}


# --------------------------------------------------------------------------- model checks
def test_label_naming_another_model_is_a_mismatch() -> None:
    engine = make_engine()
    feed = Feed(engine)
    assert feed(feed.pred("a", T0, 1)) == []
    assert feed(feed.label("a", T0 + 1, 0, model="c")) == [("model_mismatch", "labels")]
    assert feed(feed.label("a", T0 + 1, 0, model="nope")) == [("unknown_model", "labels")]
    assert counts(engine)["pending"] == 1
    assert feed(feed.label("a", T0 + 2, 1, model="b")) == []
    summary = engine.summary()
    assert summary["models"]["b"]["counts"]["matched"] == 1
    assert summary["models"]["b"]["windows"]["all"]["accuracy"] == 1.0
    assert summary["models"]["c"]["counts"]["labels"] == 0
    assert summary["rejects"] == {"model_mismatch": 1, "unknown_model": 1}


def test_early_label_for_another_model_does_not_join() -> None:
    engine = make_engine()
    feed = Feed(engine)
    assert feed(feed.label("a", T0, 1, model="c"), feed.pred("a", T0, 1)) == []
    assert counts(engine)["pending"] == 1 and counts(engine)["matched"] == 0
    assert counts(engine, "c")["early_labels_pending"] == 1


# --------------------------------------------------------------------------- label delays
def test_label_delay_histogram() -> None:
    engine = make_engine()
    feed = Feed(engine)
    delays = [0.0, 0.5, 1.0, 1.25, 5.0, 14.75, 15.0, 59.0, 299.5, 3600.0, 7200.0, 86400.0,
              86401.0, 1_000_000.0, -30.0]
    msgs = []
    for i, d in enumerate(delays):
        msgs.append(feed.pred(f"p{i}", T0, 1, part=i % 3))
        msgs.append(feed.label(f"p{i}", T0 + d, 1, part=i % 3))
    # Labels before predictions (negative delay and others) join too.
    msgs += [feed.label("early", T0 + 2.0, 1, part=1), feed.pred("early", T0, 1, part=1)]
    delays.append(2.0)
    for k in range(0, len(msgs), 7):
        assert feed(*msgs[k:k + 7]) == []
    report = engine.report().models["b"]
    clipped = [max(d, 0.0) for d in delays]
    want = [float(sum(d <= edge for d in clipped)) for edge in LABEL_DELAY_BUCKETS]
    want.append(float(len(delays)))
    assert report.label_delay_buckets == want
    assert report.label_delay_sum == pytest.approx(sum(clipped), rel=1e-12)
    assert report.counts["matched"] == len(delays)
