"""The batch path of :meth:`Engine.process`: a poll's ordinary events as columns.

Most of a poll is ordinary: predictions of a known model with a valid time, outputs and
classes, whose id is new, and labels whose prediction is waiting. Those are decoded one
call each, checked, joined and handed to accumulation as numpy columns here, with a few
list comprehensions and set operations per poll instead of a Python function per event.

Everything else (an undecodable or invalid message, a duplicate, a label that came first,
a model still in its warmup, a cap about to be hit, an id that occurs twice in the poll)
is left, by message index, to the per-message path of :class:`~monitor.core.engine.Engine`,
which runs after this one. The split changes no result: an event left out touches no
state the batch path touches (its id occurs once in the poll and is not found in the join
state it would meet), the caps cannot be reached by the batch path, and the pane clock
does not move inside a poll.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from monitor.events.codec import (
    MAX_EVENT_TIME,
    MIN_EVENT_TIME,
    DecodeFailure,
    LabelEvent,
    PredictionEvent,
    parse_event_time,
)
from monitor.events.message import Message

if TYPE_CHECKING:
    from monitor.core.engine import Engine, ModelState, PartitionState

__all__ = ["Chunk", "split_and_join"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_PREDICTION: Final = msgspec.json.Decoder(PredictionEvent)
_LABEL: Final = msgspec.json.Decoder(LabelEvent)
_NUMBERS: Final = frozenset((int, float))
_DECODE_ERRORS: Final = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


class Chunk:
    """Columns of one model's events from one partition, in message order; ``idx`` is each
    event's index in the poll (to merge with the per-message path's events in order)."""

    __slots__ = ("delay", "feats", "idx", "label", "part", "pred", "prob", "score", "slices", "ts")

    def __init__(
        self,
        idx: I64,
        part: int,
        ts: F64,
        pred: F64,
        score: F64,
        slices: I64,
        *,
        feats: list[Any] | None = None,
        prob: list[list[float]] | None = None,
        label: F64 | None = None,
        delay: F64 | None = None,
    ) -> None:
        self.idx = idx
        self.part = np.full(len(idx), part, dtype=np.int64)
        self.ts = ts
        self.pred = pred
        self.score = score
        self.slices = slices
        self.feats = feats
        self.prob = prob
        self.label = label
        self.delay = delay


def _decode_each(
    decoder: msgspec.json.Decoder[Any], values: list[bytes | None], cap: int
) -> list[Any]:
    """Each value decoded, None where it is not a valid event (too large, not JSON, wrong
    shape): the per-message path decodes those again for the reason."""
    try:
        if all(v is not None and len(v) <= cap for v in values):
            return [decoder.decode(v) for v in values]  # type: ignore[arg-type]
    except _DECODE_ERRORS:
        pass
    out: list[Any] = []
    for v in values:
        if v is None or len(v) > cap:
            out.append(None)
            continue
        try:
            out.append(decoder.decode(v))
        except _DECODE_ERRORS:
            out.append(None)
    return out


def _times(raw: list[float | str]) -> F64:
    """Event times in seconds; NaN where a time is unparsable or implausible."""
    if set(map(type, raw)) <= _NUMBERS:
        ts = np.array(raw, dtype=np.float64)
    else:
        ts = np.empty(len(raw))
        for i, value in enumerate(raw):
            try:
                ts[i] = parse_event_time(value)
            except DecodeFailure:
                ts[i] = math.nan
    ts[~((ts >= MIN_EVENT_TIME) & (ts < MAX_EVENT_TIME))] = math.nan
    return ts


def _slices(model: ModelState, events: list[PredictionEvent]) -> I64:
    """Slice ids of ``events`` as ``(events, k)``, registering new ones in the order the
    per-message path would (first appearance; version before segments) and counting
    folded values per event as it does."""
    registry = model.registry
    segments = registry.segments
    versions = [e.model_version for e in events]
    if not segments:
        combos: list[tuple[str, ...]] = [(v,) for v in versions]
    else:
        empty: dict[str, str] = {}
        segs = [e.segment or empty for e in events]
        combos = list(
            zip(versions, *([s.get(name) for s in segs] for name in segments), strict=True)
        )
    seen: dict[tuple[Any, ...], tuple[int, ...]] = {}
    counts: dict[tuple[Any, ...], int] = {}
    for combo in combos:
        counts[combo] = counts.get(combo, 0) + 1
    for combo, n in counts.items():
        before = dict(registry.folded)
        row = [0, registry.lookup("version", combo[0]) if combo[0] else -1]
        for name, value in zip(segments, combo[1:], strict=True):
            row.append(-1 if value is None else registry.lookup(f"segment:{name}", value))
        seen[combo] = tuple(row)
        if n > 1:
            for dim, total in registry.folded.items():
                extra = total - before.get(dim, 0)
                if extra:
                    registry.folded[dim] += extra * (n - 1)
    return np.array([seen[c] for c in combos], dtype=np.int64).reshape(len(combos), -1)


def split_and_join(engine: Engine, messages: list[Message]) -> list[int]:
    """Decode, check and join the ordinary events of ``messages`` into ``engine``'s
    batches as :class:`Chunk`; return the indices of the others, in order, for the
    per-message path. Offsets and event counts are the caller's."""
    kinds = engine.topic_kind
    pred_at: list[int] = []
    label_at: list[int] = []
    slow: list[int] = []
    for i, msg in enumerate(messages):
        kind = kinds.get(msg.topic)
        if kind == "predictions":
            pred_at.append(i)
        elif kind == "labels":
            label_at.append(i)
        else:
            slow.append(i)
    cap = engine.max_bytes
    preds = _decode_each(_PREDICTION, [messages[i].value for i in pred_at], cap)
    labels = _decode_each(_LABEL, [messages[i].value for i in label_at], cap)
    pairs_p = [(i, e) for i, e in zip(pred_at, preds, strict=True) if e is not None]
    pairs_l = [(i, e) for i, e in zip(label_at, labels, strict=True) if e is not None]
    if len(pairs_p) < len(pred_at) or len(pairs_l) < len(label_at):
        slow.extend(i for i, e in zip(pred_at, preds, strict=True) if e is None)
        slow.extend(i for i, e in zip(label_at, labels, strict=True) if e is None)
    ids = [e.prediction_id for _, e in pairs_p] + [e.prediction_id for _, e in pairs_l]
    if len(set(ids)) < len(ids):  # an id twice in the poll: all its events one by one
        counts: dict[str, int] = {}
        for pid in ids:
            counts[pid] = counts.get(pid, 0) + 1
        twice = {pid for pid, n in counts.items() if n > 1}
        slow.extend(i for i, e in pairs_p if e.prediction_id in twice)
        slow.extend(i for i, e in pairs_l if e.prediction_id in twice)
        pairs_p = [(i, e) for i, e in pairs_p if e.prediction_id not in twice]
        pairs_l = [(i, e) for i, e in pairs_l if e.prediction_id not in twice]
    if pairs_p:
        _predictions(engine, messages, pairs_p, slow)
    if pairs_l:
        _labels(engine, messages, pairs_l, slow)
    slow.sort()
    return slow


def _group(parts: list[int], models: list[int]) -> dict[tuple[int, int], list[int]]:
    """Positions per (model, partition), in order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for j, key in enumerate(zip(models, parts, strict=True)):
        groups.setdefault(key, []).append(j)
    return groups


def _predictions(
    engine: Engine,
    messages: list[Message],
    pairs: list[tuple[int, PredictionEvent]],
    slow: list[int],
) -> None:
    index = {m.name: m.index for m in engine.models}
    events = [e for _, e in pairs]
    at = np.array([i for i, _ in pairs], dtype=np.int64)
    model_of = [index.get(e.model, -1) for e in events]
    ts = _times([e.ts for e in events])
    score = np.array([e.score for e in events], dtype=np.float64)  # None -> NaN
    ok = ~np.isnan(ts) & ~((score < 0.0) | (score > 1.0))
    for j, e in enumerate(events):
        if e.probabilities is not None and not all(
            0.0 <= v <= 1.0 for v in e.probabilities.values()
        ):
            ok[j] = False
    parts = [messages[i].partition for i in at.tolist()]
    for (m, number), rows in _group(parts, model_of).items():
        sel = np.array(rows, dtype=np.int64)
        if m < 0 or engine.models[m].warmup_target:
            slow.extend(at[sel].tolist())
            continue
        model = engine.models[m]
        group = [events[j] for j in rows]
        pred, pred_ok = model.codec.code_many([e.prediction for e in group])
        raw_labels = [e.label for e in group]
        has_label = np.array([v is not None for v in raw_labels], dtype=bool)
        label = np.full(len(group), math.nan)
        label_ok = np.ones(len(group), dtype=bool)
        if has_label.any():
            codes, valid = model.codec.code_many([v for v in raw_labels if v is not None])
            label[has_label] = codes
            label_ok[has_label] = valid
        state = engine.partition(number)
        join = state.join
        pids = [e.prediction_id for e in group]
        known = set(pids)
        clash = (known & join.early.keys()) | (known & join.matched[m].keys())
        clash |= known & _keys(join.pending[m])
        good = ok[sel] & pred_ok & label_ok
        if clash:
            good &= np.array([pid not in clash for pid in pids], dtype=bool)
        new = good & ~has_label
        if engine.pending_total[m] + int(new.sum()) > model.config.max_pending:
            good[:] = False  # eviction order matters at the cap: one by one
        if not good.all():
            slow.extend(at[sel[~good]].tolist())
            keep = np.flatnonzero(good)
            group = [group[j] for j in keep.tolist()]
            pids = [pids[j] for j in keep.tolist()]
            sel, pred, label, has_label = sel[keep], pred[keep], label[keep], has_label[keep]
        if not len(sel):
            continue
        _take_predictions(
            engine,
            model,
            state,
            messages[int(at[sel[0]])].topic,
            number,
            at[sel],
            group,
            pids,
            ts[sel],
            pred,
            score[sel],
            label,
            has_label,
        )


def _take_predictions(
    engine: Engine,
    model: ModelState,
    state: PartitionState,
    topic: str,
    number: int,
    idx: I64,
    group: list[PredictionEvent],
    pids: list[str],
    ts: F64,
    pred: F64,
    score: F64,
    label: F64,
    has_label: npt.NDArray[np.bool_],
) -> None:
    """Accept checked predictions of one model and partition: count, join the ones that
    carry their label, keep the others pending, queue all for accumulation."""
    from monitor.core.baseline import probability_row
    from monitor.core.engine import LABELS, MATCHED, PREDICTIONS

    m = model.index
    slices = _slices(model, group)
    counts = state.counts[m]
    counts[PREDICTIONS] += len(group)
    high = float(ts.max())
    if high > state.max_ts.get(topic, -math.inf):
        state.max_ts[topic] = high
    batch = engine.batch_of(m)
    prob = None
    if model.layout.task == "multiclass":
        prob = [probability_row(model.class_index, e.probabilities) for e in group]
    batch.chunks_p.append(
        Chunk(idx, number, ts, pred, score, slices, feats=[e.features for e in group], prob=prob)
    )
    join = state.join
    labelled = np.flatnonzero(has_label)
    if len(labelled):
        counts[LABELS] += len(labelled)
        counts[MATCHED] += len(labelled)
        lt = ts[labelled]
        join.matched[m].update(zip([pids[j] for j in labelled.tolist()], lt.tolist(), strict=True))
        batch.chunks_o.append(
            Chunk(
                idx[labelled],
                number,
                lt,
                pred[labelled],
                score[labelled],
                slices[labelled],
                label=label[labelled],
                delay=np.zeros(len(labelled)),
            )
        )
    waiting = np.flatnonzero(~has_label)
    if len(waiting):
        keep = waiting.tolist()
        _add_pending(
            join.pending[m],
            [pids[j] for j in keep],
            ts[waiting],
            pred[waiting],
            score[waiting],
            slices[waiting],
        )
        engine.pending_total[m] += len(keep)


def _labels(
    engine: Engine, messages: list[Message], pairs: list[tuple[int, LabelEvent]], slow: list[int]
) -> None:
    from monitor.core.engine import LABELS, MATCHED

    index = {m.name: m.index for m in engine.models}
    events = [e for _, e in pairs]
    at = np.array([i for i, _ in pairs], dtype=np.int64)
    named = [-1 if e.model is None else index.get(e.model, -2) for e in events]
    ts = _times([e.ts for e in events])
    parts = [messages[i].partition for i in at.tolist()]
    topic = engine.config.kafka.labels_topic
    for (name, number), rows in _group(parts, named).items():
        sel = np.array(rows, dtype=np.int64)
        if name == -2:
            slow.extend(at[sel].tolist())
            continue
        state = engine.partition(number)
        join = state.join
        pids = [events[j].prediction_id for j in rows]
        # The model whose prediction waits (the named one only; else the first holding it).
        owner = np.full(len(rows), -1, dtype=np.int64)
        for model in engine.models if name < 0 else [engine.models[name]]:
            table = join.pending[model.index]
            if not len(table):
                continue
            free = owner < 0
            hit = np.array([pid in table for pid in pids], dtype=bool) & free
            owner[hit] = model.index
        good = (owner >= 0) & ~np.isnan(ts[sel])
        for m in np.unique(owner[good]).tolist():
            model = engine.models[m]
            mine = np.flatnonzero(good & (owner == m))
            raw = [events[rows[j]].label for j in mine.tolist()]
            codes, valid = model.codec.code_many(raw)
            if not valid.all():
                slow.extend(at[sel[mine[~valid]]].tolist())
                mine, codes = mine[valid], codes[valid]
            if not len(mine):
                continue
            my_pids = [pids[j] for j in mine.tolist()]
            found, p_ts, p_pred, p_score, p_slices = _pop_pending(join.pending[m], my_pids)
            assert found.all()
            engine.pending_total[m] -= len(my_pids)
            lt = ts[sel[mine]]
            counts = state.counts[m]
            counts[LABELS] += len(my_pids)
            counts[MATCHED] += len(my_pids)
            join.matched[m].update(zip(my_pids, lt.tolist(), strict=True))
            high = float(lt.max())
            if high > state.max_ts.get(topic, -math.inf):
                state.max_ts[topic] = high
            engine.batch_of(m).chunks_o.append(
                Chunk(
                    at[sel[mine]],
                    number,
                    lt,
                    p_pred,
                    p_score,
                    p_slices,
                    label=codes,
                    delay=lt - p_ts,
                )
            )
        slow.extend(at[sel[~good]].tolist())


def _keys(table: Any) -> Any:
    """The ids of a pending table as a set-like view."""
    return table.keys()


def _add_pending(table: Any, pids: list[str], ts: F64, pred: F64, score: F64, slices: I64) -> None:
    """Append new waiting predictions to a pending table, in order."""
    from monitor.core.join import Pending

    rows = [tuple(r) for r in slices.tolist()]
    table.update(
        zip(pids, map(Pending, ts.tolist(), pred.tolist(), score.tolist(), rows), strict=True)
    )


def _pop_pending(table: Any, pids: list[str]) -> tuple[Any, F64, F64, F64, I64]:
    """Remove waiting predictions by id; their columns, aligned with ``pids``."""
    got = [table.pop(pid) for pid in pids]
    return (
        np.ones(len(got), dtype=bool),
        np.array([g.ts for g in got]),
        np.array([g.pred for g in got]),
        np.array([g.score for g in got]),
        np.array([g.slices for g in got], dtype=np.int64).reshape(len(got), -1),
    )
