"""The batch path of :meth:`Engine.process`: a poll's events as columns.

Most of a poll is ordinary: predictions of a known model with a valid time, outputs and
classes, whose id is new, and labels whose prediction is waiting. Those are decoded one
call each, checked, joined and handed to accumulation as numpy columns here, with a few
list comprehensions and set operations per poll instead of a Python function per event.
Much of the noise is decided here too, with the per-message path's outcome: a prediction
and its label in the same poll (in either order), a label that came first (kept as an
early label, or joined by its prediction in a later poll), a duplicate of a waiting or
matched id, an unknown model, an invalid value, time or class (a reject), a model in its
warmup (its rows kept for the reference).

A prediction or a label sent again in the poll stays too: the first is decided here and
the retries, duplicates of it, are left to the per-message path as rejects.

The rest is left, by message index, to the per-message path of
:class:`~monitor.core.engine.Engine`, which runs after this one: a message that is not a
valid event (it is rejected: no state touched), and every message of an id repeated in
another way (a prediction sent twice with its label), which go one by one *alone*: their
ids occur in no message the batch path took, so neither path's decisions depend on the
other's, and the per-message path's inserts into the join state and the warmup rows,
which come after the batch path's, are put back in arrival order afterwards
(:class:`OneByOne`), as expiry and eviction go by it.

At a cap (a model's waiting predictions, entries or bytes; the early labels) the
evictions are decided over the poll's inserts and removals in poll order by
:mod:`monitor.core.caps`, the rules the per-message path uses, and applied once the poll's
inserts are in. A label whose prediction an earlier message evicts (or a prediction whose
early label is) goes one by one alone. When the evictions cannot be placed so (an evicted
entry named by a later message otherwise; a message left one by one that may change a
table at its cap), and when a slice registry may reach its cap (which value is folded
depends on the order of every prediction), the partitions concerned go one by one whole
(:attr:`OneByOne.at_caps` counts those messages). The pane clock does not move inside a
poll.
"""

from __future__ import annotations

import functools
import math
import operator
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from monitor.core.caps import Conflict, EarlyCaps, PendingCaps
from monitor.core.counts import LABELS, MATCHED, PREDICTIONS
from monitor.core.join import PendingTable, id_keys
from monitor.core.partials import WarmRow
from monitor.events.codec import (
    DEFAULT_LIMITS,
    MAX_EVENT_TIME,
    MIN_EVENT_TIME,
    DecodeFailure,
    LabelEvent,
    Limits,
    PredictionEvent,
    parse_event_time,
)
from monitor.events.message import MessageBatch

if TYPE_CHECKING:
    from monitor.core.engine import Engine, PartitionState
    from monitor.core.join import JoinBuffer
    from monitor.core.model import ModelState

__all__ = ["Chunk", "split_and_join"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

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
        feats: list[Any] | dict[str, list[Any]] | None = None,
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


@functools.lru_cache(maxsize=16)
def _typed(
    names: tuple[str, ...], limits: Limits = DEFAULT_LIMITS
) -> tuple[msgspec.json.Decoder[Any], Any, dict[str, str]]:
    """A prediction decoder whose ``features`` is a struct of ``names`` (a message with
    any other feature fails it, and is decoded again the general way), the struct with
    every feature absent, and each name's attribute. Building no dict per event, it
    decodes faster, and a feature's values are one attribute read away. Strings are
    constrained by ``limits`` as in the per-message path."""
    attrs = {name: f"f{i}" for i, name in enumerate(names)}
    limited = limits.typed_fields()
    features = msgspec.defstruct(
        "Features",
        [(a, limits.category_type(), None) for a in attrs.values()],
        rename={a: name for name, a in attrs.items()},
        forbid_unknown_fields=True,
        frozen=True,
        gc=False,
    )
    fields: list[Any] = []
    for f in msgspec.structs.fields(PredictionEvent):
        kind = features | None if f.name == "features" else limited.get(f.name, f.type)
        fields.append((f.name, kind) if f.required else (f.name, kind, f.default))
    event = msgspec.defstruct("TypedPrediction", fields, frozen=True, gc=False)
    return msgspec.json.Decoder(event), features(), attrs


def _all_features(engine: Engine) -> tuple[str, ...]:
    """Every feature name of the config, in order of first appearance (kept on the
    engine: its config does not change)."""
    names: tuple[str, ...] | None = engine.__dict__.get("_feature_names")
    if names is None:
        names = tuple(dict.fromkeys(n for m in engine.models for n in m.config.features))
        engine.__dict__["_feature_names"] = names
    return names


def _decode_predictions(engine: Engine, values: list[bytes | None]) -> list[Any]:
    """Prediction messages decoded, features as a struct when the config names some and
    the message has no other; None where a message is not a valid prediction."""
    names = _all_features(engine)
    general = engine.limits.prediction_decoder()
    if not names:
        return _decode_each(general, values, engine.max_bytes)
    typed = _typed(names, engine.limits)[0]
    try:
        if all(v is not None and len(v) <= engine.max_bytes for v in values):
            return [typed.decode(v) for v in values]  # type: ignore[arg-type]
    except _DECODE_ERRORS:
        pass
    out = _decode_each(typed, values, engine.max_bytes)
    again = [i for i, e in enumerate(out) if e is None]
    if again:
        events = _decode_each(general, [values[i] for i in again], engine.max_bytes)
        for i, event in zip(again, events, strict=True):
            # a watched feature's string too long: the per-message path rejects it
            if event is None or engine.limits.long_feature(event.features) is None:
                out[i] = event
    return out


def _feature_columns(engine: Engine, model: ModelState, group: list[Any]) -> dict[str, list[Any]]:
    """The model's features over a group of decoded predictions, as columns (None where
    a feature is absent)."""
    names = list(model.layout.features)
    if not names:
        return {}
    _, empty, attrs = _typed(_all_features(engine), engine.limits)
    feats = [e.features for e in group]
    if dict in set(map(type, feats)):  # some decoded the general way: read by name
        return {
            name: [
                f.get(name) if type(f) is dict else getattr(f or empty, attrs[name]) for f in feats
            ]
            for name in names
        }
    filled = [f or empty for f in feats]
    return {name: list(map(operator.attrgetter(attrs[name]), filled)) for name in names}


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


def _times(raw: list[float | str], latest: F64) -> F64:
    """Event times in seconds; NaN where a time is unparsable, implausible, or later than
    ``latest`` (each message's record timestamp plus ``time.max_future``): the
    per-message path gives those their reject."""
    if set(map(type, raw)) <= _NUMBERS:
        ts = np.array(raw, dtype=np.float64)
    else:
        ts = np.empty(len(raw))
        for i, value in enumerate(raw):
            try:
                ts[i] = parse_event_time(value)
            except DecodeFailure:
                ts[i] = math.nan
    ts[~((ts >= MIN_EVENT_TIME) & (ts < MAX_EVENT_TIME) & (ts <= latest))] = math.nan
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


def split_and_join(engine: Engine, messages: MessageBatch) -> OneByOne:
    """Decode, check and join the ordinary events of ``messages`` into ``engine``'s
    batches as :class:`Chunk`; return the indices of the others, in order, for the
    per-message path (with what it needs to keep the join state's arrival order, see
    :class:`OneByOne`). Offsets and event counts are the caller's."""
    kinds = engine.topic_kind
    pred_at: list[int] = []
    label_at: list[int] = []
    slow: list[int] = []
    partition_of = messages.partitions
    for i, topic in enumerate(messages.topics):
        kind = kinds.get(topic)
        if kind == "predictions":
            pred_at.append(i)
        elif kind == "labels":
            label_at.append(i)
        else:
            slow.append(i)
    cap = engine.max_bytes
    values = messages.values
    preds = _decode_predictions(engine, [values[i] for i in pred_at])
    labels = _decode_each(engine.limits.label_decoder(), [values[i] for i in label_at], cap)
    pairs_p = [(i, e) for i, e in zip(pred_at, preds, strict=True) if e is not None]
    pairs_l = [(i, e) for i, e in zip(label_at, labels, strict=True) if e is not None]
    if len(pairs_p) < len(pred_at) or len(pairs_l) < len(label_at):
        slow.extend(i for i, e in zip(pred_at, preds, strict=True) if e is None)
        slow.extend(i for i, e in zip(label_at, labels, strict=True) if e is None)
    twice_at: set[int] = set()
    fused: dict[str, tuple[int, LabelEvent]] = {}
    again: dict[str, _Retries] = {}
    decoded = (pairs_p, pairs_l)
    ids = [e.prediction_id for _, e in pairs_p] + [e.prediction_id for _, e in pairs_l]
    if len(set(ids)) < len(ids):
        counts = Counter(ids)
        twice = {pid for pid, n in counts.items() if n > 1}
        # The usual repeat: a prediction and its label, in either order.
        first = {e.prediction_id: i for i, e in pairs_p if counts[e.prediction_id] == 2}
        for j, lab in pairs_l:
            i = first.get(lab.prediction_id, -1)
            if i >= 0 and partition_of[i] == partition_of[j]:
                fused[lab.prediction_id] = (j, lab)
        if len(fused) < len(twice):
            more, again = _repeats(pairs_p, pairs_l, twice - fused.keys(), partition_of)
            fused.update(more)
        twice -= fused.keys() | again.keys()
        retries = {i for r in again.values() for i in r.idx}
        twice_at.update(i for i, e in pairs_p if e.prediction_id in twice)
        twice_at.update(i for i, e in pairs_l if e.prediction_id in twice)
        slow.extend(twice_at)
        pairs_p = [
            (i, e) for i, e in pairs_p if e.prediction_id not in twice and i not in retries
        ]
        pairs_l = [
            (i, e)
            for i, e in pairs_l
            if e.prediction_id not in twice and e.prediction_id not in fused and i not in retries
        ]
    every = [e for _, e in decoded[0]]  # the caps count the predictions left one by one too
    index = {m.name: m.index for m in engine.models}
    model_of = [index.get(e.model, -1) for e in every]
    registry = _crossing_caps(engine, every, model_of)
    pressed = _pending_pressure(engine, every, model_of)
    early_pressed = engine.early_total + len(label_at) > engine.early_cap
    plan = partial(_plan, engine, messages, pairs_p, pairs_l, fused, twice_at, again, slow)
    split = plan(registry, early_room=True, record=bool(pressed) or early_pressed)
    caps: list[PendingCaps | EarlyCaps] = []
    whole = -1  # the messages left one by one had the caps been placed, if they were not
    if pressed or early_pressed:
        found = _caps(engine, messages, split, decoded, pressed, early_pressed)
        if found is None:  # evictions the batch path cannot place: the old way, one by one
            whole = len(split.slow) + sum(len(idx) for n, idx, _ in split.plans if n in split.dirty)
            split = plan(registry | pressed, early_room=not early_pressed)
            split.dirty |= split.ordered
        else:
            caps = found
    elif registry:
        # A slice registry may reach a cap: which value is folded depends on the order of
        # every prediction of the model, so its partitions go one by one whole.
        split.dirty |= split.ordered
    split.ordered -= split.dirty
    slow = split.slow
    for number, idx, apply in split.plans:
        if number in split.dirty:
            slow.extend(idx.tolist())
        else:
            apply()
    for (m, number), parts in split.matched.items():  # matched ids in arrival order
        idx = np.concatenate([p[0] for p in parts])
        order = np.argsort(idx, kind="stable").tolist()
        pids = [pid for p in parts for pid in p[1]]
        times = np.concatenate([p[2] for p in parts]).tolist()
        engine.partitions[number].join.matched[m].update((pids[k], times[k]) for k in order)
    for number, parts_e in split.early.items():
        idx = np.concatenate([p[0] for p in parts_e])
        order = np.argsort(idx, kind="stable").tolist()
        pids = [pid for p in parts_e for pid in p[1]]
        labels_e = [label for p in parts_e for label in p[2]]
        engine.partitions[number].join.early.update((pids[k], labels_e[k]) for k in order)
    for evictions in caps:  # now that every insert of the poll is in
        evictions.apply(engine)
    slow.sort()
    out = OneByOne(slow)
    out.at_caps = max(len(slow) - whole, 0) if whole >= 0 else 0
    out.evicted = sum(c.evicted for c in caps)
    if split.ordered:
        out.order = _Order(engine, split)
    return out


class _Retries(NamedTuple):
    """The messages of an id that repeat an earlier one of the poll: duplicates of it when
    the first (``lead``, its poll index) is taken by the batch path and ``same`` holds
    (each names the model the first was joined or kept for, or none), and no model but
    the one the first joins holds the id waiting (``holders``: how many may)."""

    lead: int
    idx: list[int]
    same: bool
    holders: int


def _repeats(
    pairs_p: list[tuple[int, PredictionEvent]],
    pairs_l: list[tuple[int, LabelEvent]],
    twice: set[str],
    partition_of: list[int],
) -> tuple[dict[str, tuple[int, LabelEvent]], dict[str, _Retries]]:
    """How the batch path takes the ids named more than once in the poll (``twice``), all
    their messages in one partition: a prediction and its first label, in either order, are
    joined here as the per-message path would (``fused``: id -> the label); the labels sent
    again after both, and the messages of a prediction or a label sent again with no message
    of the other topic, are retries of the first (see :class:`_Retries`). Any other repeat
    (a prediction sent twice with its label, a retry between a label and its prediction) is
    left one by one."""
    preds: dict[str, list[tuple[int, Any]]] = {}
    labels: dict[str, list[tuple[int, Any]]] = {}
    for i, p in pairs_p:
        if p.prediction_id in twice:
            preds.setdefault(p.prediction_id, []).append((i, p))
    for i, lab in pairs_l:
        if lab.prediction_id in twice:
            labels.setdefault(lab.prediction_id, []).append((i, lab))
    fused: dict[str, tuple[int, LabelEvent]] = {}
    again: dict[str, _Retries] = {}
    for pid in twice:
        mine_p = preds.get(pid, [])
        mine_l = labels.get(pid, [])
        every = mine_p + mine_l
        if any(partition_of[i] != partition_of[every[0][0]] for i, _ in every):
            continue
        if len(mine_p) == 1 and mine_l:
            (i, pred), (j, label) = mine_p[0], mine_l[0]
            rest = mine_l[1:]
            if any(k < max(i, j) for k, _ in rest):
                continue
            fused[pid] = (j, label)
            if rest:
                same = all(r.model in (None, pred.model) for _, r in rest)
                again[pid] = _Retries(i, [k for k, _ in rest], same, 0)
        elif not mine_p or not mine_l:
            (i, first), rest = every[0], every[1:]
            if mine_l:
                same = all(r.model in (None, first.model) for _, r in rest)
            else:
                same = all(r.model == first.model for _, r in rest)
            again[pid] = _Retries(i, [k for k, _ in rest], same, 1 if mine_l else -1)
    return fused, again


def _plan(
    engine: Engine,
    messages: MessageBatch,
    pairs_p: list[tuple[int, PredictionEvent]],
    pairs_l: list[tuple[int, LabelEvent]],
    fused: dict[str, tuple[int, LabelEvent]],
    twice_at: set[int],
    again: dict[str, _Retries],
    slow: list[int],
    crossing: set[int],
    *,
    early_room: bool,
    record: bool = False,
) -> _Split:
    """Decide the poll's checked events (see :func:`split_and_join`): the models in
    ``crossing`` and, without ``early_room``, the labels that wait for their prediction,
    go one by one with their partitions."""
    split = _Split(list(slow))
    split.record = record
    # Ids seen twice change the join state one by one, of their own ids only.
    split.ordered.update(messages.partitions[i] for i in twice_at)
    split.loose.extend(twice_at)
    if pairs_p:
        _predictions(engine, messages, pairs_p, split, fused, early_room, crossing)
    if pairs_l:
        _labels(engine, messages, pairs_l, split, crossing, early_room)
    if again:
        _followers(engine, messages, again, split)
    return split


def _followers(
    engine: Engine, messages: MessageBatch, again: dict[str, _Retries], split: _Split
) -> None:
    """The retries of the poll (see :class:`_Retries`): rejects as duplicates, their id
    matched, waiting or early by then and named by no other message of the poll, when
    their first message is taken by the batch path; else one by one after it, in order."""
    if not split.plans:
        taken: set[int] = set()
    else:
        taken = set(np.concatenate([idx for _, idx, _ in split.plans]).tolist())
    for pid, retries in again.items():
        idx = np.array(retries.idx, dtype=np.int64)
        number = messages.partitions[retries.lead]
        holders = 0
        if retries.holders >= 0:
            holders = sum(pid in table for table in engine.partition(number).join.pending)
        if retries.same and retries.lead in taken and holders <= retries.holders:
            split.reject(idx)
            split.retries[retries.lead] = retries.idx
        else:
            split.one_by_one(idx, number)


#: What a message does to a capped table (:attr:`_Split.ops`): a prediction starts waiting,
#: a label joins one that waited from before the poll or one that started in it, a label
#: starts waiting for its prediction, a prediction joins a label that waited from before
#: the poll or one that started in it.
_P_ADD, _P_HELD, _P_NEW, _E_ADD, _E_HELD, _E_DEL = range(6)


def _caps(
    engine: Engine,
    messages: MessageBatch,
    split: _Split,
    decoded: tuple[list[tuple[int, PredictionEvent]], list[tuple[int, LabelEvent]]],
    pressed: set[int],
    early: bool,
) -> list[PendingCaps | EarlyCaps] | None:
    """The evictions at the caps that the plans of ``split`` reach (models ``pressed`` at
    their pending caps, the early labels if ``early``), replayed over the plans' inserts and
    removals in poll order with the per-message path's rules (:mod:`monitor.core.caps`).
    None if they cannot be placed in the batch path: a partition goes one by one whole
    already, a message left one by one may change a capped table, or a message uses an
    entry after its eviction."""
    if split.dirty:
        return None
    partition_of = messages.partitions
    preds = dict(decoded[0])
    labels = dict(decoded[1])
    index = {m.name: m.index for m in engine.models}
    for i in split.loose:  # those of the per-message path would evict out of poll order
        join = engine.partition(partition_of[i]).join
        pred = preds.get(i)
        if pred is not None:
            if index.get(pred.model, -1) in pressed or (early and pred.prediction_id in join.early):
                return None
        elif early or any(labels[i].prediction_id in join.pending[m] for m in pressed):
            return None
    pending = {m: PendingCaps(engine, m) for m in sorted(pressed)}
    early_caps = EarlyCaps(engine) if early else None
    kinds: list[I64] = []
    models: list[I64] = []
    parts: list[I64] = []
    idx: list[I64] = []
    pids: list[str] = []
    for kind, m, number, at, ids in split.ops:
        if (m in pending) if kind <= _P_NEW else early:
            if kind == _P_HELD:
                pending[m].hold(number, ids)
            kinds.append(np.full(len(ids), kind, dtype=np.int64))
            models.append(np.full(len(ids), m, dtype=np.int64))
            parts.append(np.full(len(ids), number, dtype=np.int64))
            idx.append(at)
            pids.extend(ids)
    if not pids:
        return []
    at_all = np.concatenate(idx)
    order = np.argsort(at_all, kind="stable")
    kind_l = np.concatenate(kinds)[order].tolist()
    model_l = np.concatenate(models)[order].tolist()
    part_l = np.concatenate(parts)[order].tolist()
    at_l = at_all[order].tolist()
    widths = {m: 2 + len(engine.models[m].registry.segments) for m in pending}
    entry_bytes = PendingTable.entry_bytes
    # Labels whose waiting prediction an earlier message of the poll evicts: not joined
    # here, they go one by one (as an early label, most likely: no cap is near for those).
    moved: dict[int, list[int]] = {}
    model_of = {i: index.get(e.model, -1) for i, e in decoded[0]}
    try:
        for kind, m, number, at, pid in zip(
            kind_l, model_l, part_l, at_l, [pids[j] for j in order.tolist()], strict=True
        ):
            if kind == _P_ADD:
                pending[m].insert(number, pid, entry_bytes(pid, widths[m]), at)
            elif kind == _P_HELD and not early:
                try:
                    pending[m].remove(number, pid)
                except Conflict:  # its prediction was evicted: the label goes one by one
                    moved.setdefault(number, []).append(at)
            elif kind <= _P_NEW:
                pending[m].remove(number, pid)
            elif kind == _E_ADD:
                assert early_caps is not None
                early_caps.insert(number, pid, at)
            elif kind == _E_HELD and model_of[at] not in pending:
                assert early_caps is not None
                try:
                    early_caps.remove(number, pid)
                except Conflict:  # its label was evicted: the prediction goes one by one
                    moved.setdefault(number, []).append(at)
            else:
                assert early_caps is not None
                early_caps.remove(number, pid)
    except Conflict:
        return None
    caps: list[PendingCaps | EarlyCaps] = [c for c in pending.values() if c.evicted]
    if early_caps is not None and early_caps.evicted:
        caps.append(early_caps)
    gone = {i for idx_m in moved.values() for i in idx_m}
    if caps:
        # Messages the batch path takes see the join state in poll order; those left to
        # the per-message path see it once the evictions are applied, and would decide
        # otherwise than at their turn if an entry of their id left (a duplicate is one
        # only while its id is held); but for the retries of a message that goes one by
        # one for that reason, which follow it there in order.
        after = {k for i in gone for k in split.retries.get(i, [])}
        later = set(split.slow) | gone
        named: dict[int, dict[str, int]] = {}
        deferred: set[tuple[int, str]] = set()
        for pairs in decoded:
            for i, e in pairs:
                if i in gone or i in after:
                    continue
                number = partition_of[i]
                pid = e.prediction_id
                if i in later:
                    deferred.add((number, pid))
                    continue
                last = named.setdefault(number, {})
                if last.get(pid, -1) < i:
                    last[pid] = i
        if any(c.conflicts(named, deferred) for c in caps):
            return None
    for number, idx_m in moved.items():
        split.moved.update(idx_m)
        split.one_by_one(np.array(idx_m, dtype=np.int64), number)
    return caps


class OneByOne(list[int]):
    """The poll indices of the messages left to the per-message path, in order.

    Those of a partition that the batch path also took part of (:attr:`order` is not
    None) insert into its join state after the batch path's inserts, which came first; as
    expiry and eviction go by arrival order, the per-message path calls :meth:`after`
    after each such message and :meth:`settle` after the last one, which put this poll's
    new entries back in poll order."""

    order: _Order | None = None
    #: of them, messages the batch path had taken but left because a cap was reached in a
    #: way it could not place (their partitions went one by one whole)
    at_caps: int = 0
    #: entries the batch path evicted at the caps
    evicted: int = 0

    def after(self, i: int, number: int) -> None:
        """Message ``i`` of partition ``number`` went through the per-message path."""
        if self.order is not None:
            self.order.after(i, number)

    def settle(self) -> None:
        """All messages went through: entries of the poll into poll order."""
        if self.order is not None:
            self.order.settle()


class _Order:
    """The poll indices of the join-state entries added by this poll in the partitions
    where both paths took messages, and the reordering of those entries (see
    :class:`OneByOne`).

    The ids of the messages left one by one there occur in no message the batch path took
    (an id seen twice goes one by one in all its messages, but for the retries the batch
    path rejects), and none of them changes a table at its cap in such a poll (the batch
    path decided that table's evictions, see :func:`_caps`), so the per-message path's
    inserts are exactly those of the reference, but later. One message adds at most one
    entry to each table (pending of a model, matched of a model, early labels) and removes
    no entry it did not add before, except pending predictions and early labels of its own
    id; so when a table grew, its newest entry is the message's."""

    __slots__ = ("added", "engine", "first", "lens", "stamps", "warm", "warm_lens", "warm_stamps")

    def __init__(self, engine: Engine, split: _Split) -> None:
        self.engine = engine
        #: (table, model, partition) -> id -> poll index of its insert, batch path's first
        self.added: dict[tuple[str, int, int], dict[str, int]] = {}
        for (m, number), parts in split.matched.items():
            if number in split.ordered:
                into = self.added.setdefault(("matched", m, number), {})
                for idx, pids, _ in parts:
                    into.update(zip(pids, idx.tolist(), strict=True))
        for number, parts_e in split.early.items():
            if number in split.ordered:
                into = self.added.setdefault(("early", -1, number), {})
                for idx, pids, _ in parts_e:
                    into.update(zip(pids, idx.tolist(), strict=True))
        for (m, number), parts_p in split.pending.items():
            if number in split.ordered:
                into = self.added.setdefault(("pending", m, number), {})
                for rows, pids in parts_p:
                    into.update(zip(pids, rows, strict=True))
        self.lens = {n: self._lens(engine.partitions[n].join) for n in split.ordered}
        #: tables the per-message path added to: only those need reordering
        self.stamps: set[tuple[str, int, int]] = set()
        #: the poll index of the per-message path's first insert into each of them: the
        #: batch path's entries before it are in place already
        self.first: dict[tuple[str, int, int], int] = {}
        #: warmup rows per (model, partition, pane): rows of each pane list, and the poll
        #: index of each row added by this poll, the batch path's first
        self.warm_lens = {n: self._warm_lens(n) for n in split.ordered}
        self.warm: dict[tuple[int, int, int], list[int]] = {
            key: list(at) for key, at in split.warm.items() if key[1] in split.ordered
        }
        self.warm_stamps: set[tuple[int, int, int]] = set()

    @staticmethod
    def _lens(join: JoinBuffer) -> list[int]:
        return [len(join.early), *map(len, join.matched), *map(len, join.pending)]

    def _warm_lens(self, number: int) -> dict[tuple[int, int], int]:
        return {key: len(rows) for key, rows in _warm_lists(self.engine, number).items()}

    def after(self, i: int, number: int) -> None:
        """Stamp the entries message ``i`` of partition ``number`` added with ``i``."""
        lens = self.lens.get(number)
        if lens is None:
            return
        state = self.engine.partitions[number]
        if self.warm_lens[number] or _has_warm(self.engine, number):
            # a prediction kept for a model's reference: one row, at the end of its pane's
            before = self.warm_lens[number]
            warm = self._warm_lens(number)
            if warm != before:
                for (m, pane), n in warm.items():
                    if n > before.get((m, pane), 0):
                        self.warm.setdefault((m, number, pane), []).append(i)
                        self.warm_stamps.add((m, number, pane))
                self.warm_lens[number] = warm
        join = state.join
        now = self._lens(join)
        if now == lens:
            return
        n = len(join.matched)
        grew: list[tuple[str, int, str | None]] = []
        if now[0] > lens[0]:
            grew.append(("early", -1, next(reversed(join.early))))
        for m in range(n):
            if now[1 + m] > lens[1 + m]:
                grew.append(("matched", m, next(reversed(join.matched[m]))))
            if now[1 + n + m] > lens[1 + n + m]:
                grew.append(("pending", m, join.pending[m].newest()))
        for table, m, pid in grew:
            assert pid is not None
            key = (table, m, number)
            self.added.setdefault(key, {})[pid] = i
            self.first.setdefault(key, i)
            self.stamps.add(key)
        self.lens[number] = now

    def settle(self) -> None:
        """Put the entries added by this poll, in each table the per-message path added
        to, in the order of their inserts (they are the newest of their table); and so the
        warmup rows of each pane."""
        for m, number, pane in self.warm_stamps:
            at = self.warm[(m, number, pane)]
            rows = _warm_lists(self.engine, number)[(m, pane)]
            tail = rows[-len(at) :]
            order = sorted(range(len(at)), key=at.__getitem__)
            rows[-len(at) :] = [tail[k] for k in order]
        for key in sorted(self.stamps):
            table, m, number = key
            cut = self.first[key]
            added = {p: i for p, i in self.added[key].items() if i >= cut}  # those to move
            join = self.engine.partitions[number].join
            if table == "pending":
                pending = join.pending[m]
                pids = list(added)
                live = pending.contains_many(pids).tolist()
                pids = [p for p, h in zip(pids, live, strict=True) if h]
                pids.sort(key=added.__getitem__)
                found, ts, pred, score, slices = pending.pop_many(pids)
                assert found.all()
                pending.add_many(pids, ts, pred, score, slices, checked=True)
                continue
            entries: dict[str, Any] = join.early if table == "early" else join.matched[m]
            pids = sorted((p for p in added if p in entries), key=added.__getitem__)
            values = [entries.pop(p) for p in pids]
            entries.update(zip(pids, values, strict=True))


class _Split:
    """What the batch path decided for a poll: the messages left one by one; the
    partitions where one of those may insert into the join state (``ordered``: their
    inserts are put in poll order afterwards, see :class:`OneByOne`) or evict from it at a
    cap (``dirty``: every message of theirs then goes one by one); and the batch path's
    work for the other partitions, applied once all is decided."""

    __slots__ = ("dirty", "early", "loose", "matched", "moved", "ops", "ordered", "pending",
                 "plans", "record", "retries", "slow", "warm")

    def __init__(self, slow: list[int]) -> None:
        self.slow = slow
        #: the messages left one by one that may change the join state
        self.loose: list[int] = []
        #: what the plans do to the capped tables (:data:`_P_ADD`, ...): (kind, model,
        #: partition, poll index of each message, its id), kept if ``record`` (a cap is near)
        self.ops: list[tuple[int, int, int, I64, list[str]]] = []
        self.record = True
        #: labels taken out of the plans: their prediction is evicted before them
        self.moved: set[int] = set()
        #: poll index of a message taken -> its retries, left as duplicates (_followers)
        self.retries: dict[int, list[int]] = {}
        self.dirty: set[int] = set()
        self.ordered: set[int] = set()
        self.plans: list[tuple[int, I64, Callable[[], None]]] = []
        #: (model, partition) -> ids matched by the plans, with their label's poll index
        #: and time; entered into the matched table in poll order once all are applied.
        self.matched: dict[tuple[int, int], list[tuple[I64, list[str], F64]]] = {}
        #: partition -> labels that came first, entered in poll order once all is applied
        self.early: dict[int, list[tuple[I64, list[str], list[Any]]]] = {}
        #: (model, partition) -> predictions the plans left waiting, with their poll index
        self.pending: dict[tuple[int, int], list[tuple[list[int], list[str]]]] = {}
        #: (model, partition, pane) -> poll index of each warmup row the plans kept
        self.warm: dict[tuple[int, int, int], list[int]] = {}

    def reject(self, idx: I64) -> None:
        """Messages that the per-message path will reject without touching join state."""
        self.slow.extend(idx.tolist())

    def one_by_one(self, idx: I64, number: int, *, evicts: bool = False) -> None:
        """Messages of partition ``number`` that may insert into its join state one by one
        (of ids no other message of the poll has); ``evicts``: and may evict at a cap."""
        if len(idx):
            self.slow.extend(idx.tolist())
            self.loose.extend(idx.tolist())
            (self.dirty if evicts else self.ordered).add(number)

    def op(self, kind: int, m: int, number: int, idx: I64, pids: list[str]) -> None:
        """Messages ``idx`` of partition ``number`` change a capped table (see :attr:`ops`)."""
        if self.record and len(pids):
            self.ops.append((kind, m, number, idx, pids))


def _group(parts: list[int], models: list[int]) -> dict[tuple[int, int], list[int]]:
    """Positions per (model, partition), each group in order."""
    model = np.array(models, dtype=np.int64)
    part = np.array(parts, dtype=np.int64)
    key = (model + 2) * (int(part.max()) + 1) + part  # models may be -1, -2 (unknown)
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    ends = [*starts[1:].tolist(), len(order)]
    groups: dict[tuple[int, int], list[int]] = {}
    for first, end in zip(starts.tolist(), ends, strict=True):
        j = int(order[first])
        groups[(models[j], parts[j])] = order[first:end].tolist()
    del keys
    return groups


def _pending_pressure(
    engine: Engine, events: list[PredictionEvent], model_of: list[int]
) -> set[int]:
    """Models that may reach a pending cap (entries or bytes) within this poll: those that
    would if every prediction of theirs in the poll waited."""
    out: set[int] = set()
    for m, n in Counter(model_of).items():
        if m < 0:
            continue
        config = engine.models[m].config
        # bytes: at most 4 per character of an id, and the row's columns
        most = 4 * engine.limits.max_id_length + PendingTable.ROW_BYTES
        most += 4 * (2 + len(config.segments))
        queued = sum(p.join.pending[m].nbytes for p in engine.partitions.values())
        if (
            engine.pending_total[m] + n > config.max_pending
            or queued + n * most > config.max_pending_bytes
        ):
            out.add(m)
    return out


def _crossing_caps(engine: Engine, events: list[PredictionEvent], model_of: list[int]) -> set[int]:
    """Models whose slice registry may reach a cap within this poll. Which value is folded
    at a cap depends on the order values arrive in, so their predictions go one by one;
    a registry below its caps after the poll, or already full, does not depend on it."""
    out: set[int] = set()
    by_model: dict[int, list[PredictionEvent]] = {}
    for e, m in zip(events, model_of, strict=True):
        by_model.setdefault(m, []).append(e)
    for index, mine in by_model.items():
        if index < 0:
            continue
        model = engine.models[index]
        registry = model.registry
        room = {d: registry.caps[d] - registry.used[d] for d in registry.caps}
        if all(r <= 0 for r in room.values()):
            continue
        values = {("version", e.model_version) for e in mine if e.model_version}
        for name in registry.segments:
            values |= {
                (f"segment:{name}", e.segment[name])
                for e in mine
                if e.segment and name in e.segment
            }
        new: dict[str, int] = {}
        for dim, value in values:
            if (dim, value) not in registry.index:
                new[dim] = new.get(dim, 0) + 1
        if any(0 < room[d] < n for d, n in new.items()):
            out.add(model.index)
    return out


def _predictions(
    engine: Engine,
    messages: MessageBatch,
    pairs: list[tuple[int, PredictionEvent]],
    split: _Split,
    fused: dict[str, tuple[int, LabelEvent]],
    early_room: bool,
    crossing: set[int],
) -> None:
    """Take the ordinary predictions. Those of a model in ``crossing`` go one by one with
    their partitions; a label before its prediction in the poll waits for it as an early
    label in the batch path only with ``early_room``."""
    index = {m.name: m.index for m in engine.models}
    events = [e for _, e in pairs]
    at = np.array([i for i, _ in pairs], dtype=np.int64)
    model_of = [index.get(e.model, -1) for e in events]
    ts = _times([e.ts for e in events], engine.latest_times(at))
    score = np.array([e.score for e in events], dtype=np.float64)  # None -> NaN
    ok = ~np.isnan(ts) & ~((score < 0.0) | (score > 1.0))
    for j, e in enumerate(events):
        if e.probabilities is not None and not all(
            0.0 <= v <= 1.0 for v in e.probabilities.values()
        ):
            ok[j] = False
    parts = [messages.partitions[i] for i in at.tolist()]
    found_before = _found_before(engine, events, model_of, parts, at, fused) if fused else set()
    for (m, number), rows in _group(parts, model_of).items():
        sel = np.array(rows, dtype=np.int64)
        group = [events[j] for j in rows]
        pids = [e.prediction_id for e in group]
        # The label message that follows each prediction in this poll, if any.
        later = [fused.get(pid) for pid in pids] if fused else []
        if m < 0 or m in crossing:
            evicts = m in crossing
            if m < 0:
                split.reject(at[sel])  # unknown model
            else:
                split.one_by_one(at[sel], number, evicts=evicts)
            follow_at = np.array([f[0] for f in later if f], dtype=np.int64)
            split.one_by_one(follow_at, number, evicts=evicts)
            continue
        model = engine.models[m]
        pred, pred_ok = model.codec.code_many([e.prediction for e in group])
        raw_labels = [e.label for e in group]
        has_label = np.array([v is not None for v in raw_labels], dtype=bool)
        label = np.full(len(group), math.nan)
        label_ok = np.ones(len(group), dtype=bool)
        if has_label.any():
            codes, valid = model.codec.code_many([v for v in raw_labels if v is not None])
            label[has_label] = codes
            label_ok[has_label] = valid
        label_ts = ts[sel].copy()
        label_at = at[sel].copy()
        pair_ok = np.ones(len(group), dtype=bool)
        has_later = np.zeros(len(group), dtype=bool)
        label_msg = np.zeros(0, dtype=np.int64)  # poll index of each label message
        if any(later):
            has_later = np.array([f is not None for f in later], dtype=bool)
            follow = [f[1] for f in later if f]
            label_msg = np.array([f[0] for f in later if f], dtype=np.int64)
            codes, valid = model.codec.code_many([e.label for e in follow])
            f_ts = _times([e.ts for e in follow], engine.latest_times(label_msg))
            named = np.array([e.model in (None, model.name) for e in follow], dtype=bool)
            came_first = label_msg < at[sel[has_later]]
            # A label naming no model joins the first model (by index) holding the id; a
            # label that came first must find nothing (no waiting, early or matched id)
            # and room among the early labels.
            reached = np.array([lab.prediction_id in found_before for lab in follow], dtype=bool)
            named &= ~reached & (~came_first | early_room)
            label[has_later] = codes
            label_ts[has_later] = f_ts
            # The pair is joined at the second of the two messages.
            label_at[has_later] = np.maximum(label_msg, at[sel[has_later]])
            # Both the prediction's own label and a label message, or a label that the
            # per-message path would reject or keep apart: both one by one.
            pair_ok[has_later] = valid & ~np.isnan(f_ts) & named & ~has_label[has_later]
            has_label = has_label | has_later
        state = engine.partition(number)
        join = state.join
        known = set(pids)
        dup = known & join.matched[m].keys()
        held = join.pending[m].contains_many(pids)
        if held.any():
            dup |= {pid for pid, h in zip(pids, held.tolist(), strict=True) if h}
        first = known & join.early.keys()
        valid = ok[sel] & pred_ok & label_ok
        good = valid & pair_ok
        alone = valid & ~pair_ok  # with a label message the per-message path keeps apart
        counted = has_label.copy()  # labels counted now (early ones naming a model: at arrival)
        from_early = np.zeros(len(group), dtype=bool)
        if dup:  # a duplicate is rejected, unless its label message would then join
            repeat = np.array([pid in dup for pid in pids], dtype=bool)
            alone |= good & repeat & has_later
            good &= ~repeat
        if first:
            joins: list[int] = []
            waiting: list[Any] = []
            for j in np.flatnonzero(good).tolist():
                early = join.early.get(pids[j])
                if early is None or early.model not in (-1, m):
                    continue  # its label names another model: it waits
                if has_label[j]:
                    if has_later[j]:  # joined by its own label; the later one is a duplicate
                        good[j] = False
                        alone[j] = True
                    continue  # its own label field joins it; the early label stays
                joins.append(j)
                waiting.append(early)
            if joins:
                code, usable = model.codec.code_many([e.label for e in waiting])
                at_j = np.array(joins, dtype=np.int64)
                # An early label now rejected: the prediction waits, one by one.
                good[at_j[~usable]] = False
                alone[at_j[~usable]] = True
                take = at_j[usable]
                label[take] = code[usable]
                label_ts[take] = [e.ts for e, u in zip(waiting, usable, strict=True) if u]
                has_label[take] = True
                counted[take] = [e.model < 0 for e, u in zip(waiting, usable, strict=True) if u]
                from_early[take] = True
        split.reject(at[sel[valid & ~good & ~alone]])
        split.reject(at[sel[~valid]])
        split.one_by_one(at[sel[alone]], number)
        split.one_by_one(label_msg[~good[has_later]], number)
        label_msg = label_msg[good[has_later]]
        if not good.all():
            keep = np.flatnonzero(good)
            group = [group[j] for j in keep.tolist()]
            pids = [pids[j] for j in keep.tolist()]
            sel, pred, label, has_label = sel[keep], pred[keep], label[keep], has_label[keep]
            label_ts, label_at, has_later = label_ts[keep], label_at[keep], has_later[keep]
            counted, from_early = counted[keep], from_early[keep]
        if not len(sel):
            continue
        if split.record:
            _prediction_ops(split, m, number, at[sel], pids, has_label, has_later, label_msg,
                            from_early)
        apply = partial(
            _take_predictions,
            engine,
            split,
            model,
            number,
            at[sel],
            group,
            pids,
            ts[sel],
            pred,
            score[sel],
            _Labels(label, has_label, label_ts, label_at, has_later, counted, from_early),
        )
        split.plans.append((number, np.concatenate([at[sel], label_msg]), apply))


def _prediction_ops(
    split: _Split,
    m: int,
    number: int,
    at: I64,
    pids: list[str],
    has_label: npt.NDArray[np.bool_],
    has_later: npt.NDArray[np.bool_],
    label_msg: I64,
    from_early: npt.NDArray[np.bool_],
) -> None:
    """What the checked predictions of model ``m`` in partition ``number`` do to the capped
    tables, in the per-message path's terms: one without a label waits; one whose label
    message follows in the poll waits until it comes; a label message before it waits as an
    early label until it comes; an early label of an earlier poll leaves."""
    waiting = np.flatnonzero(~has_label)
    if waiting.size:
        split.op(_P_ADD, m, number, at[waiting], [pids[j] for j in waiting.tolist()])
    if has_later.any():
        rows = np.flatnonzero(has_later)
        mine = [pids[j] for j in rows.tolist()]
        first = label_msg > at[rows]  # the prediction first
        if first.any():
            ids = [p for p, f in zip(mine, first.tolist(), strict=True) if f]
            split.op(_P_ADD, m, number, at[rows[first]], ids)
            split.op(_P_NEW, m, number, label_msg[first], ids)
        if not first.all():
            ids = [p for p, f in zip(mine, first.tolist(), strict=True) if not f]
            split.op(_E_ADD, -1, number, label_msg[~first], ids)
            split.op(_E_DEL, -1, number, at[rows[~first]], ids)
    if from_early.any():
        rows = np.flatnonzero(from_early)
        split.op(_E_HELD, -1, number, at[rows], [pids[j] for j in rows.tolist()])


class _Labels(NamedTuple):
    """The labels a poll's predictions are joined with at once: their own ``label`` field
    the label message that follows them in the poll (``later``), or a label that came
    before them (``early``)."""

    code: F64
    has: npt.NDArray[np.bool_]
    ts: F64
    at: I64  # poll index of the label (the prediction's own, for a label field)
    later: npt.NDArray[np.bool_]
    counted: npt.NDArray[np.bool_]  # counted as a label now (not at its arrival)
    early: npt.NDArray[np.bool_]  # an early label (waiting from an earlier poll)


def _take_predictions(
    engine: Engine,
    split: _Split,
    model: ModelState,
    number: int,
    idx: I64,
    group: list[PredictionEvent],
    pids: list[str],
    ts: F64,
    pred: F64,
    score: F64,
    labels: _Labels,
) -> None:
    """Accept checked predictions of one model and partition: count, join the ones whose
    label is known already, keep the others pending, queue all for accumulation."""
    from monitor.core.baseline import probability_row

    m = model.index
    if split.moved:  # predictions whose early label is evicted first: one by one (_caps)
        kept = ~np.isin(idx, np.array(sorted(split.moved), dtype=np.int64))
        if not kept.all():
            rows = np.flatnonzero(kept)
            picked = rows.tolist()
            idx, ts, pred, score = idx[rows], ts[rows], pred[rows], score[rows]
            group = [group[j] for j in picked]
            pids = [pids[j] for j in picked]
            labels = _Labels(labels.code[rows], labels.has[rows], labels.ts[rows],
                             labels.at[rows], labels.later[rows], labels.counted[rows],
                             labels.early[rows])
            if not len(idx):
                return
    state = engine.partitions[number]
    slices = _slices(model, group)
    counts = state.counts[m]
    counts[PREDICTIONS] += len(group)
    _note(state, engine.config.kafka.predictions_topic, ts)
    if model.warmup_target:
        _warmup_rows(engine, split, model, number, idx, group, ts, score, slices)
    batch = engine.batch_of(m)
    prob = None
    if model.layout.kind.uses_probabilities:
        prob = [probability_row(model.class_index, e.probabilities) for e in group]
    batch.chunks_p.append(
        Chunk(
            idx,
            number,
            ts,
            pred,
            score,
            slices,
            feats=_feature_columns(engine, model, group),
            prob=prob,
        )
    )
    labelled = np.flatnonzero(labels.has)
    if len(labelled):
        counts[LABELS] += int(labels.counted.sum())
        counts[MATCHED] += len(labelled)
        if labels.early.any():
            early = state.join.early
            for j in np.flatnonzero(labels.early).tolist():
                del early[pids[j]]
            engine.early_total -= int(labels.early.sum())
        if labels.later.any():
            _note(state, engine.config.kafka.labels_topic, labels.ts[labels.later])
        lt = labels.ts[labelled]
        split.matched.setdefault((m, number), []).append(
            (labels.at[labelled], [pids[j] for j in labelled.tolist()], lt)
        )
        batch.chunks_o.append(
            Chunk(
                labels.at[labelled],
                number,
                lt,
                pred[labelled],
                score[labelled],
                slices[labelled],
                label=labels.code[labelled],
                delay=lt - ts[labelled],
            )
        )
    waiting = np.flatnonzero(~labels.has)
    if len(waiting):
        keep = waiting.tolist()
        split.pending.setdefault((m, number), []).append(
            (idx[waiting].tolist(), [pids[j] for j in keep])
        )
        state.join.pending[m].add_many(  # ids checked: new, and distinct in the poll
            [pids[j] for j in keep],
            ts[waiting],
            pred[waiting],
            score[waiting],
            slices[waiting],
            checked=True,
        )
        engine.pending_total[m] += len(keep)


def _warmup_rows(
    engine: Engine,
    split: _Split,
    model: ModelState,
    number: int,
    idx: I64,
    group: list[PredictionEvent],
    ts: F64,
    score: F64,
    slices: I64,
) -> None:
    """Send the predictions of a model in its warmup raw to its stage 2 (the partition's
    ledger) as :class:`WarmRow`, every pane (stage 2 decides what is on time), as the
    per-message path does (features as a mapping, the prediction as sent)."""
    ledger = engine.ledgers[number]
    _, _, attrs = _typed(_all_features(engine), engine.limits)
    times = ts.tolist()
    rows = slices.tolist()
    scores = score.tolist()
    at = idx.tolist()
    width = len(model.registry.keys)
    for j, e in enumerate(group):
        pane = math.floor(times[j] / engine.pane)
        feats = e.features
        if feats is not None and type(feats) is not dict:  # the typed struct: by name
            feats = {name: getattr(feats, a) for name, a in attrs.items()}
        ledger.add_warm(model.index, pane, width,
                        WarmRow(times[j], rows[j], feats, e.prediction, scores[j]))  # fmt: skip
        split.warm.setdefault((model.index, number, pane), []).append(at[j])


def _warm_lists(engine: Engine, number: int) -> dict[tuple[int, int], list[Any]]:
    """The warmup rows partition ``number`` holds, per (model, pane), in arrival order,
    to be sent raw to stage 2."""
    ledger = engine.ledgers.get(number)
    if ledger is None:
        return {}
    return {(m, p): acc.warm for m, panes in enumerate(ledger.panes)
            for p, acc in panes.items() if acc.warm}  # fmt: skip


def _has_warm(engine: Engine, number: int) -> bool:
    """Whether partition ``number`` holds any warmup row (see :func:`_warm_lists`)."""
    ledger = engine.ledgers.get(number)
    return ledger is not None and any(acc.warm for panes in ledger.panes for acc in panes.values())


def _note(state: PartitionState, topic: str, ts: F64) -> None:
    """Raise the partition's largest event time of ``topic`` to the largest of ``ts``."""
    high = float(ts.max())
    if high > state.max_ts.get(topic, -math.inf):
        state.max_ts[topic] = high


def _labels(
    engine: Engine,
    messages: MessageBatch,
    pairs: list[tuple[int, LabelEvent]],
    split: _Split,
    one_by_one: set[int],
    early_room: bool,
) -> None:
    """Plan the joins of labels whose prediction is waiting, per model and partition; the
    labels of a model in ``one_by_one`` go one by one with their partitions, and so the
    labels that come first unless there is ``early_room``."""
    index = {m.name: m.index for m in engine.models}
    events = [e for _, e in pairs]
    at = np.array([i for i, _ in pairs], dtype=np.int64)
    named = [-1 if e.model is None else index.get(e.model, -2) for e in events]
    ts = _times([e.ts for e in events], engine.latest_times(at))
    parts = [messages.partitions[i] for i in at.tolist()]
    for (name, number), rows in _group(parts, named).items():
        sel = np.array(rows, dtype=np.int64)
        if name == -2:
            split.reject(at[sel])  # unknown model
            continue
        timely = ~np.isnan(ts[sel])
        split.reject(at[sel[~timely]])
        join = engine.partition(number).join
        pids = [events[j].prediction_id for j in rows]
        # The model whose prediction waits (the named one only; else the first holding it).
        ids = id_keys(pids)
        if name < 0:  # the first model holding it: one probe of the join's owner index
            owner = join.owners(ids)
        else:
            owner = np.where(join.pending[name].contains_many(ids), name, -1)
        good = (owner >= 0) & timely
        if one_by_one:
            good &= ~np.isin(owner, sorted(one_by_one))
            split.one_by_one(at[sel[timely & (owner >= 0) & ~good]], number, evicts=True)
        first = timely & (owner < 0)
        if first.any():
            _plan_early(
                engine,
                split,
                join,
                number,
                name,
                at[sel],
                pids,
                ts[sel],
                events,
                rows,
                first,
                early_room,
            )
        for m in np.unique(owner[good]).tolist():
            mine = np.flatnonzero(good & (owner == m))
            codes, valid = engine.models[m].codec.code_many(
                [events[rows[j]].label for j in mine.tolist()]
            )
            if not valid.all():
                split.reject(at[sel[mine[~valid]]])
                mine, codes = mine[valid], codes[valid]
            if len(mine):
                apply = partial(
                    _take_labels,
                    engine,
                    split,
                    m,
                    number,
                    at[sel[mine]],
                    [pids[j] for j in mine.tolist()],
                    ts[sel[mine]],
                    codes,
                )
                if split.record:
                    split.op(_P_HELD, m, number, at[sel[mine]],
                             [pids[j] for j in mine.tolist()])
                split.plans.append((number, at[sel[mine]], apply))


def _plan_early(
    engine: Engine,
    split: _Split,
    join: JoinBuffer,
    number: int,
    name: int,
    at: I64,
    pids: list[str],
    ts: F64,
    events: list[LabelEvent],
    rows: list[int],
    first: npt.NDArray[np.bool_],
    early_room: bool,
) -> None:
    """Plan labels whose prediction is not waiting in partition ``number``: those that name
    a model holding it (mismatch), repeat a waiting or matched id (duplicate) or carry an
    invalid class are rejects; the others wait as early labels, in poll order."""
    from monitor.core.join import EarlyLabel

    candidates = np.flatnonzero(first)
    elsewhere = np.zeros(len(pids), dtype=bool)  # waiting for another model
    if name >= 0:
        asked = [pids[j] for j in candidates.tolist()]
        for table in join.pending:
            if len(table):
                elsewhere[candidates] |= table.contains_many(asked)
    take: list[int] = []
    for j in candidates.tolist():
        pid = pids[j]
        if elsewhere[j]:
            split.reject(at[j : j + 1])  # model_mismatch
        elif pid in join.early or join.was_matched(pid, name):
            split.reject(at[j : j + 1])  # duplicate
        else:
            take.append(j)
    if not take:
        return
    keep = np.array(take, dtype=np.int64)
    if name >= 0:
        _, valid = engine.models[name].codec.code_many([events[rows[j]].label for j in take])
        split.reject(at[keep[~valid]])  # unknown_class, bad_type, ...
        keep = keep[valid]
    if not len(keep):
        return
    if not early_room:  # evictions: one by one
        split.one_by_one(at[keep], number, evicts=True)
        return
    chosen = keep.tolist()
    labels = [EarlyLabel(float(ts[j]), events[rows[j]].label, name) for j in chosen]
    apply = partial(
        _take_early, engine, split, number, name, at[keep], [pids[j] for j in chosen], labels
    )
    split.op(_E_ADD, -1, number, at[keep], [pids[j] for j in chosen])
    split.plans.append((number, at[keep], apply))


def _take_early(
    engine: Engine,
    split: _Split,
    number: int,
    name: int,
    idx: I64,
    pids: list[str],
    labels: list[Any],
) -> None:
    """Keep labels that came before their prediction (entered in poll order later)."""

    state = engine.partitions[number]
    engine.early_total += len(pids)
    if name >= 0:
        state.counts[name][LABELS] += len(pids)
    _note(state, engine.config.kafka.labels_topic, np.array([e.ts for e in labels]))
    split.early.setdefault(number, []).append((idx, pids, labels))


def _take_labels(
    engine: Engine,
    split: _Split,
    m: int,
    number: int,
    idx: I64,
    pids: list[str],
    ts: F64,
    codes: F64,
) -> None:
    """Join checked labels of model ``m`` in partition ``number`` with their waiting
    predictions: count, remember the ids as matched, queue the pairs for accumulation."""

    if split.moved:  # labels whose prediction is evicted first: one by one (see _caps)
        keep = ~np.isin(idx, np.array(sorted(split.moved), dtype=np.int64))
        if not keep.all():
            idx, ts, codes = idx[keep], ts[keep], codes[keep]
            pids = [pid for pid, k in zip(pids, keep.tolist(), strict=True) if k]
            if not len(idx):
                return
    state = engine.partitions[number]
    join = state.join
    found, p_ts, p_pred, p_score, p_slices = join.pending[m].pop_many(pids)
    assert found.all()
    engine.pending_total[m] -= len(pids)
    counts = state.counts[m]
    counts[LABELS] += len(pids)
    counts[MATCHED] += len(pids)
    split.matched.setdefault((m, number), []).append((idx, pids, ts))
    _note(state, engine.config.kafka.labels_topic, ts)
    engine.batch_of(m).chunks_o.append(
        Chunk(idx, number, ts, p_pred, p_score, p_slices, label=codes, delay=ts - p_ts)
    )


def _found_before(
    engine: Engine,
    events: list[PredictionEvent],
    model_of: list[int],
    parts: list[int],
    at: I64,
    fused: dict[str, tuple[int, LabelEvent]],
) -> set[str]:
    """Ids of predictions joined with a label message of the same poll that the label
    would not reach first: one that came before its prediction and finds the id in the
    join state already (waiting, early or matched), or one naming no model that finds it
    waiting for a model of a lower index. Asked once per pending table of a partition."""
    asked: dict[int, list[tuple[str, int, bool]]] = {}  # partition -> (id, model, first)
    for e, m, number, i in zip(events, model_of, parts, at.tolist(), strict=True):
        pair = fused.get(e.prediction_id)
        if pair is not None and m >= 0:
            first = pair[0] < i
            if first or (pair[1].model is None and m > 0):
                asked.setdefault(number, []).append((e.prediction_id, m, first))
    out: set[str] = set()
    for number, rows in asked.items():
        join = engine.partition(number).join
        pids = [r[0] for r in rows]
        model = np.array([r[1] for r in rows], dtype=np.int64)
        first = np.array([r[2] for r in rows], dtype=bool)
        owner = join.owners(id_keys(pids))  # the first model holding each, -1: none
        hit = (owner >= 0) & (first | (owner < model))
        tables: list[dict[str, Any]] = [join.early, *join.matched]
        for known in tables:
            if known and first.any():
                inside = np.fromiter((p in known for p in pids), dtype=np.bool_, count=len(pids))
                hit |= first & inside
        out.update(pid for pid, h in zip(pids, hit.tolist(), strict=True) if h)
    return out
