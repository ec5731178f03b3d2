"""Stage 2 fed by stage 1's pane deltas gives the model exactly what one engine holding
every partition gives: the same signals at every pane close, with deltas cut at any
point, a stage 1 that restarts from its checkpoint and re-reads (its chain restarts at an
earlier point), duplicated and stale deltas, and records that went through the wire
format."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import msgspec
import numpy as np
import pytest

from monitor.config import config_from_mapping
from monitor.core.alerting import Alerting
from monitor.core.deltas import DeltaBook
from monitor.core.engine import Engine
from monitor.core.model import PaneSignals
from monitor.core.model_stage import ModelStage
from monitor.core.partials import PartitionDelta, decode_delta, encode_delta
from monitor.core.pipeline import Pipeline
from monitor.core.rules import AlertEvent
from monitor.events.message import Message
from monitor.state.format import decode_snapshot, decode_stage, encode_snapshot, encode_stage

T0 = 1_700_000_000.0
TOPICS = ("predictions", "labels")
PARTS = 3


def config(warmup: int = 0, **extra: Any) -> Any:
    model = {
        "name": "m", "task": "binary", "positive_class": 1, "label_ttl": "10m",
        "windows": ["all", "2m", "ewm1m"], "detectors": ["adwin", "cusum"],
        "segments": ["region"], "reference_warmup": warmup,
        "alerts": [{"name": "acc", "signal": "accuracy@2m", "op": "<", "threshold": 0.55}],
    }
    if warmup:
        model |= {"features": {"x": "numeric", "c": "categorical"}, "drift_min_samples": 20}
    other = {"name": "r", "task": "regression", "windows": ["all", "ewm30s"],
             "label_ttl": "10m", "reference_warmup": 0}
    return config_from_mapping({
        "kafka": {"predictions_topic": TOPICS[0], "labels_topic": TOPICS[1]},
        "time": {"pane": "10s", "allowed_lateness": "5s"},
        "models": [model, other], **extra,
    })


def stream(n: int, seed: int, shuffle: float = 0.0) -> list[Message]:
    """Predictions of two models over PARTS partitions, labels 5-40 s later, garbage and
    duplicate labels; ``shuffle`` moves that share of messages a few places (out of order
    within the allowed lateness, and some beyond it: late)."""
    rng = random.Random(seed)
    out: list[tuple[float, int, str, bytes]] = []
    for i in range(n):
        t = T0 + i * 0.37
        part = rng.randrange(PARTS)
        pid = f"p{i}"
        if i % 5 == 4:
            body = {"prediction_id": pid, "model": "r", "ts": t, "prediction": rng.gauss(3, 1)}
            label: Any = rng.gauss(3, 1.2)
        else:
            shift = 1.5 if i > n // 2 else 0.0  # drift in the second half
            x: Any = None if rng.random() < 0.03 else round(rng.gauss(shift, 1), 4)
            body = {"prediction_id": pid, "model": "m", "ts": t,
                    "prediction": int(rng.random() < 0.4), "score": round(rng.random(), 3),
                    "segment": {"region": rng.choice("abc")},
                    "features": {"x": x, "c": rng.choice("pqrs" if shift else "pqr")}}
            label = int(rng.random() < 0.45)
        out.append((t, part, "predictions", json.dumps(body).encode()))
        lt = t + rng.uniform(5, 40)
        lab = json.dumps({"prediction_id": pid, "ts": lt, "label": label}).encode()
        out.append((lt, part, "labels", lab))
        if rng.random() < 0.01:
            out.append((lt + 1, part, "labels", lab))  # duplicate
        if rng.random() < 0.01:
            out.append((t, part, "predictions", b"{not json"))
    out.sort(key=lambda x: x[0])
    for i in range(len(out)):
        if rng.random() < shuffle:
            j = min(len(out) - 1, i + rng.randrange(1, 250))
            out[i], out[j] = out[j], out[i]
    return as_messages(out)


def as_messages(records: list[tuple[float, int, str, bytes]]) -> list[Message]:
    """Records ``(time, partition, topic, value)`` as the messages a consumer reads, in
    their order: each (topic, partition) numbered from offset 0, stamped with the time."""
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for t, part, topic, value in records:
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        messages.append(Message(topic, part, off, None, value, timestamp_ms=int(t * 1000)))
    return messages


def polls(messages: list[Message], seed: int, most: int = 300) -> list[list[Message]]:
    """``messages`` cut into polls of 1 to ``most`` - 1 messages, at random."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(messages):
        k = rng.randrange(1, most)
        out.append(messages[i:i + k])
        i += k
    return out


def oracle(cfg: Any, batches: list[list[Message]], keep: list[Pipeline] | None = None,
           ) -> dict[str, list[PaneSignals]]:
    engine = Pipeline(cfg)
    if keep is not None:
        keep.append(engine)
    engine.track([(t, p) for t in TOPICS for p in range(PARTS)])
    out: dict[str, list[PaneSignals]] = {"m": [], "r": []}
    for batch in batches:
        engine.process(batch)
        for s in engine.drain_signals():
            out[s.model].append(s)
    return out


def same(want: list[PaneSignals], got: list[PaneSignals]) -> None:
    assert [s.pane_end for s in got] == [s.pane_end for s in want]
    for w, g in zip(want, got, strict=True):
        assert set(g.signals) == set(w.signals), w.pane_end
        for key, value in w.signals.items():
            other = g.signals[key]
            if math.isnan(value):
                assert math.isnan(other), (w.pane_end, key, other)
            else:
                assert other == pytest.approx(value, rel=1e-9, abs=1e-12), (w.pane_end, key)


def staged(cfg: Any, batches: list[list[Message]], *, wire: bool = True,
           crash_at: set[int] = frozenset(), checkpoint_every: int = 7,
           duplicate: float = 0.0, lose: float = 0.0, seed: int = 0,
           stored_every: int = 0, learn_after: int | None = None,
           alerting: Alerting | None = None, sent_alerts: list[AlertEvent] | None = None,
           ) -> tuple[dict[str, ModelStage], Engine]:
    """Stage 1 (one engine) publishing deltas after every poll to both models' stage 2;
    at a poll in ``crash_at``, stage 1 loses everything since its last checkpoint and
    re-reads from there. ``learn_after``: that many polls after stage 2 built a warmup
    reference, stage 1 learns it (and stops sending predictions raw). The stages' new
    signals are fed to ``alerting`` after every poll (its transitions appended to
    ``sent_alerts``), and left in the stages for the caller to compare."""
    rng = random.Random(seed)
    alerting = alerting if alerting is not None else Alerting(cfg)
    sent_alerts = sent_alerts if sent_alerts is not None else []
    fed = {m.name: 0 for m in cfg.models}  # signals of each stage fed to the rules
    engine = Engine(cfg)
    engine.track([(t, p) for t in TOPICS for p in range(PARTS)])
    book = DeltaBook(engine)
    stages = {m.name: ModelStage(cfg, m.name, PARTS) for m in cfg.models}
    sent: list[PartitionDelta] = []
    unconfirmed: list[PartitionDelta] = []
    lost = [0]

    def deliver(d: PartitionDelta) -> None:
        for stage in stages.values():
            stage.apply(d, advance=False)
            if rng.random() < duplicate:  # delivered twice, or an old one again
                stage.apply(d, advance=False)
                stage.apply(rng.choice(sent), advance=False)

    def publish(numbers: list[int], flush: bool = False) -> None:
        deltas = [book.take(n) for n in numbers]
        for d in deltas:
            if wire:
                d = decode_delta(encode_delta(d))
            sent.append(d)
            unconfirmed.append(d)
            if rng.random() < lose:  # the broker never got it: the flush will say so
                lost[0] += 1
            else:
                deliver(d)
        if flush:  # as ReplicaStages.flush: a failed flush sends everything again
            if lost[0]:
                for d in unconfirmed:
                    deliver(d)
                lost[0] = 0
            unconfirmed.clear()
        for stage in stages.values():
            stage.advance()

    checkpoint: dict[int, bytes] = {}
    i = 0
    done_crash: set[int] = set()
    built: dict[str, int] = {}

    def learn() -> None:
        for name, stage in stages.items():
            model = stage.model
            if model.profile_pane is not None and model.profile is not None:
                built.setdefault(name, i)
                if learn_after is not None and i - built[name] >= learn_after:
                    engine.learn_profile(name, model.profile, model.profile_pane)

    while i < len(batches):
        learn()
        batch = batches[i]
        engine.process(batch)
        engine.drain_signals()
        numbers = sorted(engine.partitions)
        publish(numbers, flush=i % checkpoint_every == 0)
        for name, stage in stages.items():
            sent_alerts += alerting.feed(stage.signals_out[fed[name]:])
            fed[name] = len(stage.signals_out)
        if stored_every and i % stored_every == 0:  # stage 2 moves: stored, then read back
            for name, stage in list(stages.items()):
                signals = stage.drain_signals()
                body = encode_stage(stage, i, alerting.models[name])
                stages[name], offset, rules = decode_stage(body, cfg)
                assert offset == i
                alerting.install(name, rules)
                stages[name].signals_out = signals
        if i % checkpoint_every == 0:
            for n in numbers:  # the delta just taken ends exactly here
                checkpoint[n] = encode_snapshot(engine.export_partition(n))
                book.checkpointed(n, dict(engine.partitions[n].offsets))
        if i in crash_at and i not in done_crash and checkpoint:
            done_crash.add(i)
            # Stage 1 dies: a new engine restores each partition's checkpoint and reads
            # again from its offsets (the polls are rebuilt from those offsets).
            engine = Engine(cfg)
            engine.track([(t, p) for t in TOPICS for p in range(PARTS)])
            book = DeltaBook(engine)
            for n, body in sorted(checkpoint.items()):
                engine.install_partition(decode_snapshot(body, engine))
                book.restart(n)
            resume = {(t, n): o for n in engine.partitions
                      for t, o in engine.partitions[n].offsets.items()}
            seen = [m for b in batches[: i + 1] for m in b]
            again = [m for m in seen if m.offset >= resume.get((m.topic, m.partition), 0)]
            for k in range(0, len(again), 97):
                engine.process(again[k:k + 97])
                engine.drain_signals()
                publish(sorted(engine.partitions))
        i += 1
    return stages, engine


@pytest.mark.parametrize("seed", [1, 2])
def test_stage_two_equals_one_engine(seed: int) -> None:
    cfg = config()
    batches = polls(stream(4000, seed, shuffle=0.02), seed)
    engines: list[Pipeline] = []
    want = oracle(cfg, batches, engines)
    mine_rules = Alerting(cfg)
    stages, _ = staged(cfg, batches, alerting=mine_rules)
    one = Alerting(cfg)  # the rules fed the one engine's signals
    one.feed(want["m"] + want["r"])
    report = one.fill(engines[0].report())
    for name, stage in stages.items():
        assert stage.stale == 0
        same(want[name], stage.drain_signals())
        mine, theirs = stage.report(), report.models[name]
        mine.alerts = mine_rules.report(name)
        assert mine.counts.pop("stale_deltas") == stage.stale  # replicas' own health
        assert mine.counts.pop("panes_closed") == engines[0].panes_closed  # the same clock
        assert mine.counts == pytest.approx(theirs.counts)
        assert mine.label_delay_buckets == pytest.approx(theirs.label_delay_buckets)
        assert [(s.dimension, s.value, s.counters) for s in mine.slices] == [
            (s.dimension, s.value, pytest.approx(s.counters)) for s in theirs.slices
        ]
        assert [a.transitions for a in mine.alerts] == [a.transitions for a in theirs.alerts]
    assert report.models["m"].counts["late"] > 0  # some were late, and counted alike
    assert sum(len(v) for v in want.values()) > 200


def test_the_same_through_stage_one_crashes_and_duplicated_deltas() -> None:
    cfg = config()
    batches = polls(stream(4000, 7, shuffle=0.0), 7)
    want = oracle(cfg, batches)
    stages, _ = staged(cfg, batches, crash_at={9, 30, 31, 55}, duplicate=0.2, seed=3)
    for name, stage in stages.items():
        assert stage.stale > 0  # the stale ones were seen, and dropped
        same(want[name], stage.drain_signals())


def test_lost_deltas_sent_again_at_the_next_flush_leave_the_sums_exact() -> None:
    cfg = config()
    batches = polls(stream(3000, 13, shuffle=0.0), 13)
    want = oracle(cfg, batches)
    stages, _ = staged(cfg, batches, lose=0.1, checkpoint_every=3, seed=5)
    for name, stage in stages.items():
        assert stage.stale > 0
        same(want[name], stage.drain_signals())


def test_stage_two_stored_and_read_back_mid_stream_goes_on_the_same() -> None:
    """A new owner resumes a model's stage 2 from its record (windows, clock, chains with
    their undo history, detectors, rules) and ends exactly where the old owner would."""
    cfg = config()
    batches = polls(stream(3000, 17, shuffle=0.02), 17)
    want = oracle(cfg, batches)
    alerting = Alerting(cfg)
    sent: list[AlertEvent] = []
    stages, _ = staged(cfg, batches, crash_at={20}, duplicate=0.1, stored_every=4, seed=9,
                       alerting=alerting, sent_alerts=sent)
    for name, stage in stages.items():
        same(want[name], stage.drain_signals())
    # What the new owner re-posts to Alertmanager: the alerts firing now, with the ids
    # they were sent with when they fired.
    sent = [e for e in sent if e.model == "m"]
    open_ids = {e.alert_id for e in sent if e.status == "firing"} - {
        e.alert_id for e in sent if e.status == "resolved"
    }
    assert open_ids, "the stream must leave an alert firing"
    again = alerting.firing_events("m")
    assert {e.alert_id for e in again} == open_ids
    assert all(e.status == "firing" for e in again)


def test_a_restart_that_is_not_undone_counts_twice() -> None:
    """The undo is what keeps the sums exact: with stage 2 taking every delta as new,
    the crash re-adds what was applied after the checkpoint."""
    cfg = config()
    batches = polls(stream(3000, 11), 11)
    want = oracle(cfg, batches)
    stages, _ = staged(cfg, batches, crash_at={12})
    same(want["m"], stages["m"].drain_signals())

    class Naive(ModelStage):
        def apply(self, delta: PartitionDelta, advance: bool = True) -> bool:
            chain = self.chains.get(delta.number)
            if chain is not None:
                chain.end = dict(delta.base)  # pretend it follows on
                chain.history.clear()
            return super().apply(delta, advance)

    import monitor.core.model_stage as ms
    original = ms.ModelStage
    try:
        ms.ModelStage = Naive  # type: ignore[misc]
        globals()["ModelStage"] = Naive
        naive, _ = staged(cfg, batches, crash_at={12})
    finally:
        ms.ModelStage = original  # type: ignore[misc]
        globals()["ModelStage"] = original
    got = naive["m"].drain_signals()
    counts = [s.signals["prediction_count@all"] for s in got]
    assert counts[-1] > [s.signals["prediction_count@all"] for s in want["m"]][-1]


def test_records_refuse_bad_blocks() -> None:
    cfg = config()
    batches = polls(stream(300, 5), 5)
    engine = Engine(cfg)
    book = DeltaBook(engine)
    for b in batches:
        engine.process(b)
    delta = book.take(0)
    body = encode_delta(delta)
    assert decode_delta(body) == delta
    with pytest.raises(ValueError):
        decode_delta(body[:-3])
    with pytest.raises(ValueError):
        decode_delta(b"\x00" * 40)
    model = delta.models[0]
    pane = model.panes[0]
    broken = type(delta)(delta.format, delta.number, delta.session, delta.seq, delta.base,
                         delta.end, delta.progress, delta.idle, delta.confirmed,
                         [type(model)(model.model, model.width, model.slice_keys,
                                      [type(pane)(pane.pane, pane.rows, pane.plain[:-8],
                                                  pane.decay, pane.err_ts, pane.err)],
                                      model.counts, model.delay, model.delay_sum,
                                      model.folded, model.pending, model.early)])
    with pytest.raises(ValueError, match="wrong size"):
        decode_delta(encode_delta(broken))
    assert np.isfinite(np.frombuffer(pane.plain, "<f8")).all()


@pytest.mark.parametrize("learn_after", [None, 0, 5])
def test_a_warmup_reference_is_built_once_by_stage_two_as_one_engine_builds_it(
    learn_after: int | None,
) -> None:
    """Stage 1 sends predictions raw until it knows the reference; stage 2 takes them into
    the warmup sample, builds the reference at the same pane close as one engine, and
    histograms what comes raw after it: the drift signals are the engine's, through
    stage 1 crashes, duplicated deltas and stage 2 moving between owners, and whether or
    when stage 1 learns the reference."""
    cfg = config(warmup=800)
    batches = polls(stream(4000, 21, shuffle=0.02), 21)
    engines: list[Pipeline] = []
    want = oracle(cfg, batches, engines)
    drift = [k for k in want["m"][-1].signals if k.startswith("psi:x@")]
    assert drift and want["m"][-1].signals[drift[0]] > 0.1  # the shift shows
    stages, engine = staged(cfg, batches, crash_at={5, 9, 40}, duplicate=0.1, stored_every=6,
                            seed=4, learn_after=learn_after)  # fmt: skip
    stage = stages["m"]
    assert stage.model.profile is not None and stage.model.profile_pane is not None
    assert stage.model.profile_pane == engines[0].models[0].profile_pane
    same(want["m"], stage.drain_signals())
    learnt = engine.models[0].profile is not None
    assert learnt == (learn_after is not None)
    assert not hasattr(engine.partitions[0], "warmup")  # stage 1 keeps no warmup of its own


def test_warmup_rows_survive_the_wire_and_bad_ones_are_refused() -> None:
    cfg = config(warmup=50)
    engine = Engine(cfg)
    book = DeltaBook(engine)
    engine.process(stream(40, 3)[:40])
    delta = decode_delta(encode_delta(book.take(0)))
    warm = [w for md in delta.models for pd in md.panes for w in pd.warm]
    assert warm and all(w.features is None or "x" in w.features for w in warm)
    md = next(md for md in delta.models if md.panes and md.panes[0].warm)
    pd = md.panes[0]
    bad_row = msgspec.structs.replace(pd.warm[0], slices=[99])
    bad_md = msgspec.structs.replace(md, panes=[msgspec.structs.replace(pd, warm=[bad_row])])
    bad = msgspec.structs.replace(delta, models=[bad_md])
    with pytest.raises(ValueError, match="warmup slice"):
        decode_delta(encode_delta(bad))


def test_a_failed_warmup_is_published_too_and_stage_one_stops_sending_raw() -> None:
    """A warmup that cannot build a reference (a feature never has a value) ends on stage
    2; the outcome goes through the store's record to stage 1, which then sends nothing
    raw any more (else it would take the model's predictions one by one for good)."""
    from monitor.state.format import decode_reference, encode_reference

    cfg = config(warmup=50)
    broken = [
        Message(m.topic, m.partition, m.offset, m.key,
                m.value.replace(b'"x": ', b'"gone": ') if m.topic == "predictions" else m.value,
                timestamp_ms=m.timestamp_ms)
        for m in stream(1500, 5)
    ]
    stages, engine = staged(cfg, polls(broken, 5))
    stage = stages["m"]
    assert stage.warmed_up() and stage.model.profile is None
    assert engine.models[0].warmup_target  # stage 1 still waits to hear
    profile, baseline, _ = decode_reference(encode_reference(stage.model), engine.models[0])
    assert profile is None and baseline is None
    assert engine.learn_profile("m", profile, -1)
    assert not engine.models[0].warmup_target
    assert not stages["r"].warmed_up()  # no warmup asked for: nothing to publish


def test_warmup_rows_take_the_batch_path_and_keep_arrival_order() -> None:
    """Stage 1 sends a poll's warmup predictions raw from the batch path; one that goes
    one by one (its label comes twice in the poll) keeps its place among them."""
    cfg = config(warmup=50)
    engine = Engine(cfg)
    book = DeltaBook(engine)
    out = []
    for i in range(12):
        body = {"prediction_id": f"p{i}", "model": "m", "ts": T0 + i, "prediction": 1,
                "score": 0.5, "segment": {"region": "a"}, "features": {"x": i, "c": "p"}}
        out.append(("predictions", json.dumps(body).encode()))
        if i == 3:  # the id occurs three times in the poll: its messages go one by one
            label = json.dumps({"prediction_id": "p3", "ts": T0 + 3.5, "label": 1}).encode()
            out += [("labels", label), ("labels", label)]
    offsets: dict[str, int] = {}
    messages = []
    for topic, value in out:
        offsets[topic] = offsets.get(topic, -1) + 1
        messages.append(Message(topic, 0, offsets[topic], None, value))
    engine.process(messages)
    delta = decode_delta(encode_delta(book.take(0)))
    warm = [w for md in delta.models if md.model == "m" for pd in md.panes for w in pd.warm]
    assert [w.ts for w in warm] == [T0 + i for i in range(12)]
    assert [w.features["x"] if w.features else None for w in warm] == list(range(12))
    assert all(w.prediction == 1 and w.score == 0.5 for w in warm)
