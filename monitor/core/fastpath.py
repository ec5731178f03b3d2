"""The batch path of :meth:`Engine.process`: every message of a poll, decided as columns.

This is the one implementation of stage 1's decisions on a message: decode and checks
(known topic and model, valid values, time, class, not ``future``), the join (duplicate
prediction or label, a label joining its waiting prediction, an early label kept or
joined, a model mismatch, a label value checked against the model's codec), the slice
registry, warmup rows and the evictions at the caps (replayed in arrival order by
:mod:`monitor.core.caps`). Most of a poll is decoded one call each, checked, joined and
handed to accumulation as numpy columns, with a few list comprehensions and set
operations per poll instead of a Python function per event. A message that is not a valid
event becomes a reject here (:func:`_reject` names its reason, in the codec's order, once
the segment's entries are in).

The planner decides a *segment* of the poll at once: a prediction and its label in it (in
either order), a label that came first (kept as an early label, or joined by its
prediction in a later poll), a duplicate of a waiting or matched id, the retries of a
message (a label sent again, a prediction sent again), rejects, a model in its warmup.
What it cannot decide in one pass with the messages before it (an id repeated in an odd
way, such as a prediction sent twice with its label; a label whose prediction an earlier
message evicts; an eviction of an entry a later message names; a slice registry that may
reach its cap over predictions of several partitions) is where it cuts the poll: the
prefix is decided, and the rest planned again (:func:`split_and_join`). A message alone in
its segment has no message of the poll to interact with, so it is always decided; a poll
costs at worst one segment per message, and a bounded number of plans per message. The
join state's tables get each segment's entries in poll order, so the state is the same
whatever the cuts (``MAX_SEGMENT = 1``, test-only, decides every message alone). The pane
clock does not move inside a poll.
"""

from __future__ import annotations

import functools
import math
import operator
import weakref
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from functools import partial
from itertools import accumulate, chain, compress, repeat
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

import msgspec
import numpy as np
import numpy.typing as npt

from monitor import native
from monitor.core.caps import Conflict, EarlyCaps, PendingCaps
from monitor.core.counts import (
    DUPLICATE_LABELS,
    DUPLICATE_PREDICTIONS,
    LABELS,
    MATCHED,
    PREDICTIONS,
)
from monitor.core.join import (
    EarlyLabel,
    JoinBuffer,
    PendingTable,
    add_groups,
    add_matched_groups,
    id_keys,
    pop_groups,
)  # fmt: skip
from monitor.core.layout import Layout, NumericBlock, _numeric_block
from monitor.core.partials import WarmRow
from monitor.events.codec import (
    DECODE_ERRORS,
    DEFAULT_LIMITS,
    MAX_EVENT_TIME,
    MIN_EVENT_TIME,
    DecodeFailure,
    LabelEvent,
    Limits,
    PredictionEvent,
    decode_all,
    decode_label,
    decode_prediction,
    parse_event_time,
)
from monitor.events.message import MessageBatch, Reject

if TYPE_CHECKING:
    from monitor.core.engine import Engine, PartitionState
    from monitor.core.model import ModelState

__all__ = ["MAX_SEGMENT", "Chunk", "Decided", "joined", "split_and_join"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_NUMBERS: Final = frozenset((int, float))

# The two halves of (poll index, event) pairs: ``list(map(_AT, pairs))`` is one C loop,
# some 40 % cheaper than a list comprehension (an attribute, on the other hand, is read
# fastest by a comprehension: ``operator.attrgetter`` through ``map`` takes twice as long).
_AT: Final = operator.itemgetter(0)
_EVENT: Final = operator.itemgetter(1)
# An early label's time and model; and an early label made of a (ts, label, model) tuple
# with no Python call (what ``EarlyLabel._make`` does, through a bytecode frame).
_E_TS: Final = operator.itemgetter(0)
_E_MODEL: Final = operator.itemgetter(2)
_NEW_EARLY: Final = partial(tuple.__new__, EarlyLabel)


class Chunk:
    """Columns of one model's events, in message order; ``idx`` is each event's index in
    the poll (to merge the chunks of several segments in poll order), ``part`` its
    partition (given as one number for all, or as a column).
    ``feats`` holds features' values (a list of features objects, or columns by name) and
    ``numeric`` the block of the model's numeric features (see
    :data:`~monitor.core.layout.NumericBlock`) when ``feats`` leaves them out."""

    __slots__ = (
        "delay",
        "feats",
        "idx",
        "label",
        "numeric",
        "part",
        "pred",
        "prob",
        "score",
        "slices",
        "ts",
    )

    def __init__(
        self,
        idx: I64,
        part: int | I64,
        ts: F64,
        pred: F64,
        score: F64,
        slices: I64,
        *,
        feats: list[Any] | dict[str, list[Any]] | None = None,
        numeric: NumericBlock | None = None,
        prob: list[list[float]] | None = None,
        label: F64 | None = None,
        delay: F64 | None = None,
    ) -> None:
        self.idx = idx
        self.part = np.full(len(idx), part, dtype=np.int64) if isinstance(part, int) else part
        self.ts = ts
        self.pred = pred
        self.score = score
        self.slices = slices
        self.feats = feats
        self.numeric = numeric
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
    constrained by ``limits`` as in :func:`~monitor.events.codec.decode_prediction`."""
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


@functools.lru_cache(maxsize=16)
def _raw_typed(
    names: tuple[str, ...], limits: Limits = DEFAULT_LIMITS
) -> tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]:
    """:func:`_typed`'s prediction decoder with ``features`` left as JSON (``msgspec.Raw``;
    None where absent), for the compiled ``read_features`` to read into a
    :class:`_FeatureTable`, and the decoder of :func:`_typed`'s features struct (or null)
    for the rows it declines: msgspec's struct is what a features object is, the kernel
    reads only what that struct decodes to the same values."""
    decoder, empty, _ = _typed(names, limits)
    fields: list[Any] = []
    for f in msgspec.structs.fields(decoder.type):
        kind = msgspec.Raw if f.name == "features" else f.type
        fields.append((f.name, kind) if f.required else (f.name, kind, f.default))
    event = msgspec.defstruct("RawFeaturesPrediction", fields, frozen=True, gc=False)
    return msgspec.json.Decoder(event), msgspec.json.Decoder(type(empty) | None)


#: Whether the compiled kernel reads the usual predictions straight from their JSON (see
#: :func:`_made_inline`); the tests turn it off to hold both ways to the same results.
FAST_PREDICTIONS = True

#: The fields of a prediction struct, in order, as ``monitor._native.decode_predictions``
#: makes one.
_INLINE_FIELDS: Final = ("prediction_id", "model", "ts", "prediction", "model_version",
                         "score", "probabilities", "features", "segment", "label")  # fmt: skip


@functools.lru_cache(maxsize=16)
def _made_inline(decoder: msgspec.json.Decoder[Any]) -> type | None:
    """The struct ``decoder`` decodes (:func:`_raw_typed`'s), which the compiled
    ``decode_predictions`` makes itself for a prediction of the usual shape: an object of
    the struct's keys, each once, every string ASCII with no escape within its limit, each
    number one that ``read_features`` reads exactly, no probabilities, features that it
    reads. The struct is what msgspec decodes but for its features, left None (they are
    in the segment's :class:`_FeatureTable`, and made again from there where the events'
    features are read, see :func:`_inline_features`). None if its fields are not those
    the kernel gives. (Labels stay msgspec's: for so small a struct, making it from C
    costs more than msgspec's whole decoding.)"""
    kind = decoder.type
    fields = tuple(f.name for f in msgspec.structs.fields(kind))
    return kind if fields == _INLINE_FIELDS else None


class _FeatureTable(NamedTuple):
    """Every feature of the config (:func:`_all_features`) of a segment's predictions, read
    by the compiled ``read_features`` from their JSON: ``codes`` (int8, (features,
    predictions): 0 a number in ``x``, 1 null or absent, 2 a string, ``strs[int(x)]``, 3 not
    read: the event holds its features, a struct or a dict) and ``x`` (float64, NaN where
    null or absent); ``pos`` the column of each poll index from ``a`` (-1: no prediction)."""

    a: int
    pos: I64
    codes: npt.NDArray[np.int8]
    x: F64
    strs: list[str]
    #: the rows of numeric features of the models that read them, taken out of ``codes``
    #: and ``x`` once for every model that reads them (see :func:`_rows_first`), by the
    #: ``id`` of the models' shared ``numeric_rows`` (None: not kept)
    firsts: dict[int, Any] | None = None
    #: the columns of the predictions read straight from their JSON (see
    #: :func:`_made_inline`), whose events hold no features (None: there is none)
    inline: npt.NDArray[np.bool_] | None = None


def _warming(engine: Engine) -> bool:
    """Whether some model of ``engine`` is in its warmup (it ends at a pane close, never
    within a poll)."""
    return any(m.warmup_target for m in engine.models)


class _Undecoded:
    """Stands for a message that did not decode among decoded predictions, whose features
    are read by :func:`_attrs` (none)."""

    __slots__ = ()
    features = None


_UNDECODED: Final = _Undecoded()


def _decode_predictions(
    engine: Engine, values: list[bytes | None], a: int = 0, at: list[int] | None = None
) -> tuple[list[Any], _FeatureTable | None]:
    """Prediction messages decoded, features as a struct when the config names some and
    the message has no other; None where a message is not a valid prediction. With the
    compiled kernels and no model in its warmup, the features are read from their JSON
    into a :class:`_FeatureTable` of the messages (at poll indices ``at``, from ``a``)
    instead, the events holding them as JSON (``msgspec.Raw``), but where the kernel
    declines: those are decoded by msgspec's struct, as without. The usual predictions
    are read straight from their JSON, struct and features (see :func:`_made_inline`)."""
    names = _all_features(engine)
    general = engine.limits.prediction_decoder()
    if not names:
        return _decode_each(general, values, engine.max_bytes), None
    kernels = native.kernels()
    table: _FeatureTable | None = None
    # (a model in its warmup sends its rows' features on as mappings: of structs)
    if kernels is None or at is None or len(names) > 64 or _warming(engine):
        typed = _typed(names, engine.limits)[0]
        out = _decode_each(typed, values, engine.max_bytes)
        again = _none_at(out)
    else:
        typed, features = _raw_typed(names, engine.limits)
        n = len(values)
        codes = np.empty((len(names), n), dtype=np.int8)
        x = np.empty((len(names), n), dtype=np.float64)
        made = _made_inline(typed) if FAST_PREDICTIONS else None
        if made is not None:  # the usual predictions read straight from their JSON
            limits = engine.limits
            inline = np.empty(n, dtype=bool)
            out, declined, strs = kernels.decode_predictions(
                typed.decode, values, engine.max_bytes, DECODE_ERRORS, made, names,
                limits.max_category_length,
                (limits.max_id_length, limits.max_value_length, limits.max_segment_length),
                codes, x, inline,
            )  # fmt: skip
            again = _none_at(out)
        else:
            inline = None
            out = _decode_each(typed, values, engine.max_bytes)
            again = _none_at(out)
            present = out
            if again:  # (the features of a message that did not decode: none)
                present = list(out)
                for i in again:
                    present[i] = _UNDECODED
            (raws,) = _attrs(present, ("features",))
            declined, strs = kernels.read_features(raws, names,
                                                   engine.limits.max_category_length, codes,
                                                   x)  # fmt: skip
        wrong: list[int] = []
        for i in declined:  # msgspec decides: a struct, or the message decoded again below
            try:
                msgspec.structs.force_setattr(out[i], "features",
                                              features.decode(out[i].features))  # fmt: skip
            except DECODE_ERRORS:
                wrong.append(i)
        if again:
            codes[:, again] = 3
        if wrong:
            again = sorted(again + wrong)
            for i in wrong:
                out[i] = None
        pos = np.full(len(values) and max(at) - a + 1, -1, dtype=np.int64)
        pos[native.int64_column(at) - a] = np.arange(n, dtype=np.int64)  # one C loop
        table = _FeatureTable(a, pos, codes, x, strs, {},
                              inline if inline is not None and inline.any() else None)
    if again:
        general = engine.limits.prediction_decoder()
        events = _decode_each(general, [values[i] for i in again], engine.max_bytes)
        for i, event in zip(again, events, strict=True):
            # a watched feature's string too long: a reject (too_long)
            if event is None or engine.limits.long_feature(event.features) is None:
                out[i] = event
    return out, table


class _FeatureReads(NamedTuple):
    """How a model's features are read from the typed decoder's structs (see
    :func:`_typed`): its layout, the struct with every feature absent and its type, each
    feature's attribute, the numeric features' attributes (the rows of the numeric block)
    and the other features; and the rows of the numeric ones and of the others in a
    :class:`_FeatureTable`."""

    layout: Layout
    empty: Any
    kind: type
    attrs: dict[str, str]
    numeric: tuple[str, ...]
    others: list[str]
    numeric_rows: I64
    other_rows: list[int]


#: Each engine's :class:`_FeatureReads` by model index, made at the model's first batch
#: (kept beside the engine: the struct types do not pickle with it).
_READS: weakref.WeakKeyDictionary[Engine, dict[int, _FeatureReads]] = (
    weakref.WeakKeyDictionary()
)


def _feature_reads(engine: Engine, model: ModelState) -> _FeatureReads:
    """The model's :class:`_FeatureReads` (its engine's config does not change)."""
    kept = _READS.get(engine)
    if kept is None:
        kept = _READS[engine] = {}
    reads = kept.get(model.index)
    layout = model.layout
    if reads is None or reads.layout is not layout:
        names = _all_features(engine)
        _, empty, attrs = _typed(names, engine.limits)
        others = [n for n in layout.features if n not in layout.numeric]
        slots = tuple(attrs[n] for n in layout.numeric)
        row = {name: j for j, name in enumerate(names)}
        numbers = tuple(row[n] for n in layout.numeric)
        rows = _SHARED_ROWS.get(numbers)  # one array for the models of these features
        if rows is None:
            rows = _SHARED_ROWS[numbers] = np.array(numbers, dtype=np.int64)
            rows.flags.writeable = False
        reads = kept[model.index] = _FeatureReads(layout, empty, type(empty), attrs, slots,
                                                  others, rows, [row[n] for n in others]
                                                  )  # fmt: skip
    return reads


#: The rows of :attr:`_FeatureReads.numeric_rows` by their numbers: one array for every
#: model (of any engine) whose numeric features are those rows of a segment's table.
_SHARED_ROWS: dict[tuple[int, ...], I64] = {}


def _rows_first(table: _FeatureTable, rows: I64) -> tuple[Any, F64, bool] | None:
    """The ``rows`` of the table's ``codes`` and ``x`` (C order), and whether any of those
    codes is not 0, taken once for all the models that read them: None at the first model
    that asks (its own few columns are taken then, with no copy of the whole table for a
    model alone), the rows taken at the second and kept with the table (a segment of many
    models of one set of features reads them a hundred times)."""
    firsts = table.firsts
    if firsts is None:
        return None
    got = firsts.get(id(rows))
    if got is None:
        firsts[id(rows)] = (rows, None)  # (the array held: its id stays its own)
        return None
    if got[1] is None:
        codes = table.codes.take(rows, 0)
        got = firsts[id(rows)] = (rows, (codes, table.x.take(rows, 0), bool(codes.any())))
    out: tuple[Any, F64, bool] = got[1]
    return out


def _table_columns(
    reads: _FeatureReads, idx: I64, table: _FeatureTable
) -> tuple[dict[str, list[Any]], NumericBlock | None] | None:
    """What :func:`_feature_columns` gives, from the segment's :class:`_FeatureTable` (the
    predictions at poll indices ``idx``); None where a row was not read there, or a numeric
    feature holds a string (the events are read then)."""
    cols = table.pos[idx - table.a]
    block: NumericBlock | None = None
    rows = reads.numeric_rows
    if len(rows):
        first = _rows_first(table, rows)
        if first is not None:  # the rows of every model's, then the model's columns
            codes_r, x_r, coded = first
            codes = codes_r.take(cols, 1)
            if coded and codes.any() and (codes >= 2).any():
                return None
            block = (codes, x_r.take(cols, 1))
        else:
            # the group's columns first (a model's few of a segment's predictions), then
            # its rows: C order, and no copy of the whole table per model
            codes = table.codes.take(cols, 1).take(rows, 0)
            if codes.any() and (codes >= 2).any():
                return None
            block = (codes, table.x.take(cols, 1).take(rows, 0))
    columns: dict[str, list[Any]] = {}
    strs = table.strs
    for name, j in zip(reads.others, reads.other_rows, strict=True):
        codes_j = table.codes[j, cols]
        x_j = table.x[j, cols]
        values: list[Any]
        if not codes_j.any():  # numbers
            values = x_j.tolist()
        elif (codes_j == 2).all():  # strings (a categorical feature's usual column)
            values = _pick(strs, x_j.astype(np.int64))
        else:
            kinds = codes_j.tolist()
            if 3 in kinds:
                return None
            values = [v if c == 0 else None if c == 1 else strs[int(v)]
                      for c, v in zip(kinds, x_j.tolist(), strict=True)]  # fmt: skip
        columns[name] = values
    return columns, block


def _inline_features(engine: Engine, feats: list[Any], idx: I64, table: _FeatureTable
                     ) -> list[Any]:  # fmt: skip
    """``feats`` (the features of the predictions at poll indices ``idx``) with those of
    the predictions read straight from their JSON (:func:`_made_inline`: None in the
    event) made from the table: the struct msgspec decodes the features object to
    (:func:`_typed`'s), its values those the table holds (a number, None where null or
    absent, a string), as the kernel read them."""
    cols = table.pos[idx - table.a]
    assert table.inline is not None
    made = np.flatnonzero(table.inline[cols]).tolist()
    if not made:
        return feats
    kind = type(_typed(_all_features(engine), engine.limits)[1])
    strs = table.strs
    feats = list(feats)
    for j in made:
        c = int(cols[j])
        values = [
            x if code == 0 else None if code == 1 else strs[int(x)]
            for code, x in zip(table.codes[:, c].tolist(), table.x[:, c].tolist(), strict=True)
        ]  # fmt: skip
        feats[j] = kind(*values)
    return feats


def _materialized(engine: Engine, feats: list[Any]) -> list[Any]:
    """``feats`` (each event's features) with those left as JSON (``msgspec.Raw``, read
    into a :class:`_FeatureTable`) decoded by msgspec as the struct of :func:`_typed`."""
    if msgspec.Raw not in set(map(type, feats)):
        return feats
    decode = _raw_typed(_all_features(engine), engine.limits)[1].decode
    return [decode(f) if type(f) is msgspec.Raw else f for f in feats]


def _feature_columns(
    engine: Engine,
    model: ModelState,
    group: list[Any],
    idx: I64 | None = None,
    table: _FeatureTable | None = None,
) -> tuple[dict[str, list[Any]], NumericBlock | None]:
    """The model's features over a group of decoded predictions (at poll indices ``idx``):
    the numeric ones as a block (None without any), the others as columns (None where a
    feature is absent). Taken from the segment's :class:`_FeatureTable` when it has them;
    else the compiled kernel reads the numeric ones straight from the structs when it can."""
    if not model.layout.features:
        return {}, None
    reads = _feature_reads(engine, model)
    if table is not None and idx is not None:
        got = _table_columns(reads, idx, table)
        if got is not None:
            return got
    (feats,) = _attrs(group, ("features",))
    if table is not None and idx is not None and table.inline is not None:
        feats = _inline_features(engine, feats, idx, table)
    feats = _materialized(engine, feats)
    block: NumericBlock | None = None
    kernels = native.kernels()
    if reads.numeric and kernels is not None:
        shape = (len(reads.numeric), len(feats))
        block = (np.empty(shape, dtype=np.int8), np.empty(shape, dtype=np.float64))
        if not kernels.read_numbers(feats, reads.kind, reads.numeric, *block):
            block = None  # a value it does not take: all read below
    names = reads.others if block is not None else list(model.layout.features)
    empty, attrs = reads.empty, reads.attrs
    columns: dict[str, list[Any]] = {}
    if names and dict in set(map(type, feats)):  # some decoded the general way: by name
        columns = {
            name: [
                f.get(name) if type(f) is dict else getattr(f or empty, attrs[name]) for f in feats
            ]
            for name in names
        }
    elif names:
        filled = [f or empty for f in feats]
        columns = {name: list(map(operator.attrgetter(attrs[name]), filled)) for name in names}
    if block is None and reads.numeric:
        block = _numeric_block([columns.pop(n) for n in model.layout.numeric])
    return columns, block


def _none_at(items: list[Any]) -> list[int]:
    """The places of the items that are None (by identity in the compiled kernel: ``None in
    items`` compares each item with None)."""
    kernels = native.kernels()
    if kernels is not None:
        out: list[int] = kernels.none_at(items)
        return out
    return [i for i, e in enumerate(items) if e is None] if None in items else []


def _decode_each(
    decoder: msgspec.json.Decoder[Any], values: list[bytes | None], cap: int
) -> list[Any]:
    """Each value decoded, None where it is not a valid event (a tombstone, too large, not
    JSON, wrong shape): :func:`_reject` decodes those again for the reason. Each value is
    decoded once, the whole batch from C whatever values it holds (see
    :func:`~monitor.events.codec.decode_all`)."""
    return decode_all(decoder, values, cap)


def _attrs(events: list[Any], names: tuple[str, ...]) -> tuple[list[Any], ...]:
    """Attributes ``names`` of each of ``events`` (decoded structs) as a list each, in one
    pass by the compiled kernel (a C loop per attribute without it, or where it declines);
    AttributeError where an event is None."""
    kernels = native.kernels()
    if kernels is not None:
        got: tuple[list[Any], ...] | None = kernels.attr_lists(events, names)
        if got is not None:
            return got
    return tuple(list(map(operator.attrgetter(name), events)) for name in names)


def _pick(items: list[Any], places: list[int] | I64) -> list[Any]:
    """The items at ``places`` (ints, or an int64 array), in order: by the compiled kernel
    (one C loop, the list made at its size), else by ``map`` of ``items.__getitem__``
    (also where the kernel declines: places of another kind)."""
    kernels = native.kernels()
    if kernels is not None and type(items) is list:
        got: list[Any] | None = kernels.take_items(items, places)
        if got is not None:
            return got
    return list(map(items.__getitem__, places))


def _unpaired(pairs: list[tuple[int, Any]]) -> tuple[list[int], list[Any]]:
    """The poll indices and the events of ``pairs`` ((poll index, event) tuples), each a
    list in order: by the compiled kernel (one C loop, each list made at its size), else
    by ``map`` of :data:`_AT` and :data:`_EVENT` (also where the kernel declines)."""
    kernels = native.kernels()
    if kernels is not None and type(pairs) is list:
        got: tuple[list[int], list[Any]] | None = kernels.pair_columns(pairs)
        if got is not None:
            return got
    return list(map(_AT, pairs)), list(map(_EVENT, pairs))


def _contained_at(items: list[Any], container: Collection[Any], want: bool = True) -> list[int]:
    """The places of the ``items`` that are in ``container`` (``want``), or that are not,
    in order: by the compiled kernel (one C loop), else by ``compress`` over ``map`` of
    the container's ``__contains__`` (also where the kernel declines)."""
    kernels = native.kernels()
    if kernels is not None and type(items) is list:
        got: list[int] | None = kernels.contained_at(items, container, want)
        if got is not None:
            return got
    found: Iterator[bool] = map(container.__contains__, items)
    return list(compress(range(len(items)), found if want else map(operator.not_, found)))


def _marked(n: int, places: list[int]) -> npt.NDArray[np.bool_]:
    """A bool column of ``n`` rows, true at ``places`` (made an int64 array by one C loop
    first: numpy reads a list index through its general conversion, some hundreds of
    instructions per item)."""
    out = np.zeros(n, dtype=bool)
    out[native.int64_column(places)] = True
    return out


def _read_numbers(events: list[Any], name: str, *, missing: bool) -> F64 | None:
    """Attribute ``name`` of each of ``events`` (decoded structs) as float64, NaN where it
    is None if ``missing``, read by the compiled kernel (see :func:`_feature_columns`);
    None when it does not run or declines (events of several types; a value neither a
    float, an int of at most 2**53 nor, if ``missing``, None): the caller reads them."""
    kernels = native.kernels()
    if kernels is None or not events:
        return None
    codes = np.empty(len(events), dtype=np.int8)
    x = np.empty(len(events), dtype=np.float64)
    if not kernels.read_numbers(events, type(events[0]), (name,), codes, x):
        return None
    if not missing and codes.any():
        return None
    return x


def _times(events: list[Any], latest: F64) -> F64:
    """Event times in seconds (``ts`` of each of ``events``); NaN where a time is
    unparsable, implausible, or later than ``latest`` (each message's record timestamp
    plus ``time.max_future``): the plan makes those rejects (:func:`_reject` names the
    reason). The compiled kernel reads the numbers and marks the rest (strings), which
    alone are parsed."""
    kernels = native.kernels()
    ts: F64 | None = None
    if kernels is not None and events:
        codes = np.empty(len(events), dtype=np.int8)
        ts = np.empty(len(events), dtype=np.float64)
        if kernels.read_numbers(events, type(events[0]), ("ts",), codes, ts, True):
            for i in np.flatnonzero(codes).tolist():
                ts[i] = _parsed(events[i].ts)
        else:
            ts = None
    if ts is None:
        raw = [e.ts for e in events]
        if set(map(type, raw)) <= _NUMBERS:
            ts = np.array(raw, dtype=np.float64)
        else:
            ts = np.fromiter(map(_parsed, raw), np.float64, len(raw))
    ts[~((ts >= MIN_EVENT_TIME) & (ts < MAX_EVENT_TIME) & (ts <= latest))] = math.nan
    return ts


def _parsed(value: float | str) -> float:
    """An event time in seconds (see :func:`~monitor.events.codec.parse_event_time`), NaN
    where it is unparsable or implausible."""
    try:
        return parse_event_time(value)
    except DecodeFailure:
        return math.nan


class _SliceIds(NamedTuple):
    """The slice ids of a segment's checked predictions, all of model ``m``, when every
    slice value they name is registered already (see :func:`_crossing_caps`): the
    ``(predictions, k)`` rows ``ids``, and ``pos``, the row of each poll index from ``a``."""

    m: int
    a: int
    pos: I64
    ids: I64


def _slices(
    model: ModelState, events: list[PredictionEvent], idx: I64, read: _SliceIds | None
) -> I64:
    """Slice ids of ``events`` (at poll indices ``idx``) as ``(events, k)``, registering new
    ones in the order the events would one at a time (first appearance; version before
    segments) and counting folded values per event as it does; taken from ``read`` (the
    segment's, see :class:`_SliceIds`) when they are the model's."""
    if read is not None and read.m == model.index:
        rows: I64 = read.ids[read.pos[idx - read.a]]
        return rows
    registry = model.registry
    segments = registry.segments
    versions, columns = _slice_columns(events, segments)
    known = _registered_slices(model, versions, columns)
    if known is not None:
        return known
    combos: list[Any] = versions  # without segments, a version stands for its combination
    if segments:
        combos = list(zip(versions, *columns, strict=True))
    seen: dict[Any, tuple[int, ...]] = {}
    counts = Counter(combos)  # in order of first appearance
    for key, n in counts.items():
        combo = key if segments else (key,)
        before = dict(registry.folded) if n > 1 else {}
        row = [0, registry.lookup("version", combo[0]) if combo[0] else -1]
        for name, value in zip(segments, combo[1:], strict=True):
            row.append(-1 if value is None else registry.lookup(f"segment:{name}", value))
        seen[key] = tuple(row)
        if n > 1:
            for dim, total in registry.folded.items():
                extra = total - before.get(dim, 0)
                if extra:
                    registry.folded[dim] += extra * (n - 1)
    rows = np.array(list(seen.values()), dtype=np.int64)
    if len(seen) == 1:  # one version and segment values for all
        return np.tile(rows[0], (len(combos), 1))
    # each event's combination as its row's number (C loops), then the rows by those
    number = dict(zip(seen, range(len(seen)), strict=True))
    return rows[np.fromiter(map(number.__getitem__, combos), np.int64, len(combos))]


#: The slice dimensions of a model without segments (see :func:`_registered_slices`).
_VERSION: Final = ("version",)


def _registered_slices(
    model: ModelState, versions: list[str], columns: list[list[str | None]]
) -> I64 | None:
    """The slice ids :func:`_slices` gives ``events`` (their ``versions`` and segment
    ``columns``) when every value they name is registered already (the usual poll: each
    one's look-up finds it, nothing is registered or folded), a column at a time by C loops
    over its few values; None when some value is new (or there is no event)."""
    n = len(versions)
    if not n:
        return None
    registry = model.registry
    index = registry.index
    out = np.zeros((n, 2 + len(columns)), dtype=np.int64)
    segments = registry.segments
    dims = ("version", *(f"segment:{name}" for name in segments)) if segments else _VERSION
    every: list[list[Any]] = [versions, *columns]
    for k, (dim, column) in enumerate(zip(dims, every, strict=True)):
        ids: dict[str | None, int] = {}
        for value in set(column):
            sid = _registered_id(index, dim, value)
            if sid is None:
                return None
            ids[value] = sid
        if len(ids) == 1:
            out[:, k + 1] = next(iter(ids.values()))
        else:
            out[:, k + 1] = native.int64_column(list(map(ids.__getitem__, column)))
    return out


def _registered_id(index: dict[tuple[str, str], int], dim: str, value: str | None
                   ) -> int | None:  # fmt: skip
    """The slice id of ``value`` in dimension ``dim`` (``"version"`` or a segment's) when
    it is registered, -1 for no value (None, or an empty version), None when it is new."""
    if value is None or (dim == "version" and not value):
        return -1
    return index.get((dim, value))


def _slice_columns(
    events: list[PredictionEvent], segments: Sequence[str]
) -> tuple[list[str], list[list[str | None]]]:
    """The ``model_version`` of each of ``events``, and each of ``segments``' value of each
    (None where it has none): one pass of the compiled kernel over the events, then C
    loops."""
    if not segments:
        (versions,) = _attrs(events, ("model_version",))
        return versions, []
    versions, segs = _attrs(events, ("model_version", "segment"))
    nones = _none_at(segs)
    if nones:
        empty: dict[str, str] = {}
        for i in nones:
            segs[i] = empty
    return versions, [list(map(dict.get, segs, repeat(name))) for name in segments]


#: Up to this many ids, a segment's matched ids of a (model, partition) are put in poll
#: order in Python (numpy's cost per call is more than the sort of a few).
_ORDER_IN_PYTHON: Final = 64
#: Test-only: the longest segment the planner is given (None: the whole poll). With 1,
#: every message is decided in a segment of its own, which the differential tests hold
#: equal to the poll decided whole.
MAX_SEGMENT: int | None = None
#: The smallest window planned after a cut (see :func:`split_and_join`).
_MIN_WINDOW: Final = 64
#: How many times a cut prefix is planned again before its first message goes alone.
_REPLANS: Final = 3


class Decided:
    """What :func:`split_and_join` decided for a poll, besides the join state and the
    engine's batches: the rejects in poll order, and how the poll was cut."""

    __slots__ = ("alone", "evicted", "messages", "rejects", "segments")

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.rejects: list[Reject] = []
        #: segments the poll was decided in (1 for a poll the planner took whole)
        self.segments = 0
        #: messages decided in a segment of their own because the planner could not decide
        #: them with their neighbours (an id repeated in the poll in an odd way, a label whose
        #: prediction an earlier message evicts, ...)
        self.alone = 0
        #: entries evicted at the caps
        self.evicted = 0


def split_and_join(engine: Engine, messages: MessageBatch) -> Decided:
    """Decide every message of ``messages`` into ``engine``: decode, check and join them
    into its batches as :class:`Chunk` (the join state, counts and warmup rows updated),
    or reject them (:attr:`Decided.rejects`). Offsets, event counts and the pane clock
    are the caller's.

    The poll is decided in consecutive segments: the planner is given a window of the
    messages not yet decided and decides all of it, or says where to cut (the first
    message it cannot decide with the ones before it); the prefix before the cut is
    planned again on its own (up to :data:`_REPLANS` times while the cut moves), and
    failing that, the window's first message is decided alone (a message alone has no
    message of the poll to interact with). A window halves after a cut (down to
    :data:`_MIN_WINDOW`) and doubles after a window decided whole, so a poll costs at
    worst a bounded number of plans per message, each of at most a window."""
    n = len(messages)
    out = Decided(n)
    limit = n if MAX_SEGMENT is None else max(1, MAX_SEGMENT)
    window = limit
    a = 0
    while a < n:
        b = min(n, a + window)
        cut = _segment(engine, messages, a, b, out)
        if cut == b:
            window = min(limit, 2 * window)
            a = b
            continue
        window = min(limit, max(_MIN_WINDOW, window // 2))
        done = a
        for _ in range(_REPLANS):
            if cut <= a:
                break
            end, cut = cut, _segment(engine, messages, a, cut, out)
            if cut == end:
                done = end
                break
        if done > a:
            a = done
            continue
        if _segment(engine, messages, a, a + 1, out) != a + 1:
            raise AssertionError(f"message {a} alone in its segment was not decided")
        out.alone += 1
        a += 1
    return out


def _segment(engine: Engine, messages: MessageBatch, a: int, b: int, out: Decided) -> int:
    """Plan messages ``a`` to ``b`` (poll indices) and, when every one of them can be
    decided in one pass, apply the plan and return ``b``; else change nothing and return
    where to cut (the first message, at or after ``a``, the plan cannot decide with the
    ones before it). The join state's tables get this segment's entries in poll order."""
    kinds = engine.topic_kind
    topic_of = {kind: topic for topic, kind in kinds.items()}
    pt, lt = topic_of.get("predictions"), topic_of.get("labels")
    partition_of = messages.partitions
    # The positions of each input topic's messages, in poll order: by the compiled kernel
    # (the same topic object, else equal), or by numpy's loop over the references (no
    # bytecode per message).
    kernels = native.kernels()
    if kernels is not None and type(messages.topics) is list:
        pred_at, label_at = kernels.topic_at(messages.topics, a, b, pt, lt)
    else:
        names = np.array(messages.topics[a:b], dtype=object)
        pred_at = [] if pt is None else (np.flatnonzero(names == pt) + a).tolist()
        label_at = [] if lt is None else (np.flatnonzero(names == lt) + a).tolist()
    slow: list[int] = []
    if len(pred_at) + len(label_at) < b - a:  # messages of no input topic: rejects
        topics = messages.topics[a:b]
        slow = [i for i, t in zip(range(a, b), topics, strict=True) if t not in kinds]
    cap = engine.max_bytes
    values = messages.values
    preds, table = _decode_predictions(engine, _pick(values, pred_at), a, pred_at)
    labels = _decode_each(engine.limits.label_decoder(), _pick(values, label_at), cap)
    # Not valid events, whatever the join holds: not decoded, of an unknown model.
    every, ids_p, kept_p, dropped_p, names_p = _checked(engine, preds, pred_at, labels=False)
    good_l, ids_l, kept_l, dropped_l, _ = _checked(engine, labels, label_at, labels=True)
    slow += dropped_p
    slow += dropped_l
    twice_at: set[int] = set()
    fused: dict[str, tuple[int, LabelEvent]] = {}
    fused_at_p: list[int] | None = None  # the places in ids_p of fused's ids, when known
    again: dict[str, _Retries] = {}
    # The checked labels as (poll index, event) pairs; the predictions' pairs are made only
    # where a rare case needs them (ids repeated in an odd way, a cap near): the plan reads
    # the usual segment's predictions as the columns above (:class:`_Known`).
    pairs_l = all_l = list(zip(kept_l, good_l, strict=True))
    pairs_p: list[tuple[int, PredictionEvent]] | None = None  # all of them, once made
    planned_p: list[int] | I64 | None = None  # the places of those left to plan, if not all
    # Each id once per topic (the usual poll): named twice, it has a prediction and a
    # label, each once. An id that repeats within a topic is named more than twice or twice
    # in one topic, so no prediction of its is the one a label fuses with below.
    twice, again_p, again_l, places = _shared_ids(ids_p, ids_l)
    repeated: set[str] = set()  # ids named more than once in one topic
    if again_p or again_l:
        repeated = again_p | again_l
        twice |= repeated
    if twice:
        # each such id's prediction's poll index (a set and a dict of the few: cheaper than
        # a dict of every prediction), none for an id repeated within a topic; each id once
        # per topic (the usual poll): the places _shared_ids found them at
        at_twice = _contained_at(ids_p, twice) if places is None else places[0]
        first = dict(zip(_pick(ids_p, at_twice), _pick(kept_p, at_twice), strict=True))
        for pid in repeated:
            first.pop(pid, None)
        # The usual repeat: a prediction and its label, in either order, in one partition;
        # by C loops (each such label named once: an id repeated in a topic is in none).
        rows = _contained_at(ids_l, first) if places is None else places[1]  # (as above)
        pids = _pick(ids_l, rows)
        same = list(map(operator.eq, _pick(partition_of, list(map(first.__getitem__, pids))),
                        _pick(partition_of, _pick(kept_l, rows))))  # fmt: skip
        fused = dict(zip(compress(pids, same), compress(_pick(pairs_l, rows), same),
                         strict=True))  # fmt: skip
        if len(fused) < len(twice):
            more, again = _repeats((kept_p, every), pairs_l, (ids_p, ids_l),
                                   twice - fused.keys(), partition_of)  # fmt: skip
            fused.update(more)
        twice.difference_update(fused.keys(), again.keys())  # (no union of them made)
        retries = {i for r in again.values() for i in r.idx}
        # The first message of such an id is decided in a segment that ends before the
        # second: the cut is at the second.
        if twice:
            pairs_p = _pairs(kept_p, every) if pairs_p is None else pairs_p
            named = [(i, e.prediction_id) for i, e in pairs_p if e.prediction_id in twice]
            named += [(i, e.prediction_id) for i, e in pairs_l if e.prediction_id in twice]
            seen: set[str] = set()
            for i, pid in sorted(named):
                if pid in seen:
                    twice_at.add(i)
                seen.add(pid)
        if twice or retries:  # by C loops: no bytecode per event
            gone = twice | fused.keys()
            if retries:
                planned_p = _kept_places(ids_p, twice, kept_p, retries)
                pairs_l = _pick(pairs_l, _kept_places(ids_l, gone, kept_l, retries))
            else:
                planned_p = _contained_at(ids_p, twice, False)
                pairs_l = _pick(pairs_l, _contained_at(ids_l, gone, False))
        else:  # every repeat a prediction and its label: the label goes with it
            if places is not None and len(fused) == len(places[1]):
                # every shared id fused, each named once: the labels of no shared id; the
                # predictions the labels fuse with are the shared ones (see _Known)
                pairs_l = _pick(pairs_l, places[2])
                fused_at_p = places[0]
            else:
                pairs_l = _pick(pairs_l, _contained_at(ids_l, fused, False))
    model_of = _model_indices(engine, names_p)
    pressed = _pending_pressure(engine, every, model_of)
    early_pressed = engine.early_total + len(label_at) > engine.early_cap
    known_p = (_Known(ids_p, model_of, every, kept_p, fused_at_p) if planned_p is None else
               _Known(_pick(ids_p, planned_p), _pick(model_of, planned_p),
                      _pick(every, planned_p), _pick(kept_p, planned_p)))  # fmt: skip
    split = _plan(engine, messages, known_p, pairs_l, fused, twice_at, again, slow,
                  record=bool(pressed) or early_pressed)  # fmt: skip
    split.features = table
    cut = min(split.loose, default=b)
    crossing, slice_ids = _crossing_caps(engine, every, model_of)
    if slice_ids is not None:  # the one model's slice ids, by poll index
        pos = np.full(b - a, -1, dtype=np.int64)
        pos[native.int64_column(kept_p) - a] = np.arange(len(kept_p), dtype=np.int64)
        split.slices = _SliceIds(model_of[0], a, pos, slice_ids)
    if crossing:
        pairs_p = _pairs(kept_p, every) if pairs_p is None else pairs_p
        cut = min(cut, _registry_cut(pairs_p, model_of, crossing, partition_of, b))
    caps: list[PendingCaps | EarlyCaps] = []
    if cut == b and (pressed or early_pressed):
        pairs_p = _pairs(kept_p, every) if pairs_p is None else pairs_p
        found = _caps(engine, messages, split, (pairs_p, all_l), pressed, early_pressed)
        if isinstance(found, int):
            cut = found
        else:
            caps = found
    if cut < b:
        split.plans.clear()  # the plans refer to the split: no cycle left to the collector
        return max(cut, a)
    for _, _, apply in split.plans:
        apply()
    split.plans.clear()
    if split.matched:  # matched ids in arrival order
        _enter_matched(engine, split.matched)
    for number, parts_e in split.early.items():
        join = engine.partitions[number].join
        if len(parts_e) == 1:  # one plan's labels: in poll order already
            _, pids, labels_e, name = parts_e[0]
            join.add_early(pids, labels_e, name)
            continue
        idx = np.concatenate([p[0] for p in parts_e])
        order = np.argsort(idx, kind="stable").tolist()
        pids = [pid for p in parts_e for pid in p[1]]
        labels_e = [label for p in parts_e for label in p[2]]
        join.add_early(_pick(pids, order), _pick(labels_e, order))
    for evictions in caps:  # now that every insert of the segment is in
        evictions.apply(engine)
        out.evicted += evictions.evicted
    # The rejects touch no join state but their counts: decided once the segment's entries
    # are in, they see each id as at their turn (the caps' replay made sure no entry of an
    # id they name was evicted).
    if split.slow:  # each one's latest event time by one numpy call
        at_slow = sorted(split.slow)
        latest = engine.latest_times(np.array(at_slow, dtype=np.int64)).tolist()
        out.rejects.extend(map(partial(_reject, engine, messages), at_slow, latest))
    out.segments += 1
    return b


def _enter_matched(
    engine: Engine, runs: list[tuple[list[tuple[int, int]], list[int], I64, list[str], F64]]
) -> None:
    """Enter the ids the plans of a segment matched (``runs``, see :meth:`_Split.match`)
    into their (model, partition) matched tables, each table's in poll order (a stable sort
    by poll index: ids of one message index keep the order the plans gave them), the
    tables in order of their first run: every group's order found by one sort of all of
    them (a poll of many models has hundreds of groups of a few ids each)."""
    place: dict[tuple[int, int], int] = {}  # each group's number, in order of first run
    for groups, _, _, _, _ in runs:
        for key in groups:
            place.setdefault(key, len(place))
    if len(runs) == 1:
        groups, sizes, idx, pids, at_ts = runs[0]
    else:
        groups = [key for run in runs for key in run[0]]
        sizes = [n for run in runs for n in run[1]]
        idx = np.concatenate([run[2] for run in runs])
        pids = list(chain.from_iterable(run[3] for run in runs))
        at_ts = np.concatenate([run[4] for run in runs])
    slots = list(map(place.__getitem__, groups))
    if len(pids) <= _ORDER_IN_PYTHON:  # a few: no numpy call but the times' pick
        group = [s for s, n in zip(slots, sizes, strict=True) for _ in range(n)]
        at_l = idx.tolist()
        order = sorted(range(len(pids)), key=lambda r: (group[r], at_l[r]))
        pids = _pick(pids, order)
        at_ts = at_ts[order]
        counts = [0] * len(place)
        for s in group:
            counts[s] += 1
    else:
        group_a = np.repeat(np.array(slots, dtype=np.int64), sizes)
        by = group_a * (int(idx.max()) + 1) + idx
        if not bool((by[1:] >= by[:-1]).all()):
            order_a = np.argsort(by, kind="stable")
            pids = _pick(pids, order_a.tolist())
            at_ts = at_ts[order_a]
        counts = np.bincount(group_a, minlength=len(place)).tolist()
    partitions = engine.partitions
    tables = [partitions[number].join.matched[m] for m, number in place]
    add_matched_groups(tables, counts, pids, at_ts)


def _checked(
    engine: Engine, events: list[Any], at: list[int], *, labels: bool
) -> tuple[list[Any], list[str], list[int], list[int], list[str | None]]:
    """A topic's decoded ``events`` (at poll indices ``at``) that are valid events whatever
    the join holds, with their ids and poll indices; the poll indices of the others
    (rejects): not decoded (None), or of a model the config does not know (a label may name
    none); and the valid ones' model names. All in one pass of the compiled kernel
    (``checked_events``), else (or where it declines) by C loops, with no bytecode per
    event: the usual poll has a few such messages among thousands."""
    known = engine.by_name
    kernels = native.kernels()
    if kernels is not None and type(events) is list and type(at) is list:
        got: tuple[list[Any], list[str], list[int], list[int], list[str | None]] | None = (
            kernels.checked_events(events, at, known, labels)
        )
        if got is not None:
            return got
    nones = _none_at(events)
    keep: list[bool] | None = None
    good = events
    if nones:
        keep = [True] * len(events)
        for k in nones:
            keep[k] = False
        good = list(compress(events, keep))
    models, ids = _attrs(good, ("model", "prediction_id"))
    # one name for all (the usual poll): an equality test each, cheaper than hashing each
    # (the last asked first: with several models, seldom the first one's)
    one = bool(models) and models[-1] == models[0] and models.count(models[0]) == len(models)
    unknown = {models[0]} if one else set(models)
    if labels:
        unknown.discard(None)
    unknown.difference_update(known.keys())
    if unknown:  # the good ones of a known model (a label naming none is one)
        fine = list(map(operator.not_, map(unknown.__contains__, models)))
        ids = list(compress(ids, fine))
        models = list(compress(models, fine))
        if keep is None:
            keep = fine
        else:  # the good ones' places among all, those of an unknown model dropped
            for k in compress(compress(range(len(events)), keep), map(operator.not_, fine)):
                keep[k] = False
    if keep is None:  # every event decoded, of a configured model (the usual poll)
        return events, ids, at, [], models
    return (list(compress(events, keep)), ids, list(compress(at, keep)),
            list(compress(at, map(operator.not_, keep))), models)  # fmt: skip


def _pairs(at: list[int], events: list[Any]) -> list[tuple[int, Any]]:
    """(poll index, event) pairs of the ``events`` at poll indices ``at``."""
    return list(zip(at, events, strict=True))


# the places of a segment's shared ids in its predictions' and labels' ids, and of the labels'
# other ids (see _shared_ids)
_Places = tuple[list[int], list[int], list[int]]


def _kept_places(ids: list[str], named: Collection[str], at: list[int], left: set[int]) -> I64:
    """The places of the ``ids`` that are not in ``named`` and whose poll index (``at``, in
    ascending order) is not one of ``left`` (a few): a C loop over the ids, and a bisection
    for each of ``left``."""
    keep = np.ones(len(ids), dtype=bool)
    keep[native.int64_column(_contained_at(ids, named))] = False
    n = len(at)
    for i in left:
        k = bisect_left(at, i)
        if k < n and at[k] == i:
            keep[k] = False
    return np.flatnonzero(keep)


def _shared_ids(
    ids_p: list[str], ids_l: list[str]
) -> tuple[set[str], set[str], set[str], _Places | None]:
    """The ids both ``ids_p`` and ``ids_l`` name, those each names more than once, and where
    neither names an id more than once and they share some (the usual segment), the places
    of the shared ids in ``ids_p``, those in ``ids_l`` and the places of the others in
    ``ids_l`` (else None): by the compiled kernel (one table per list, made at its size,
    that holds each id's place), else (or where it declines) by sets of each list's ids and
    ``compress``, with no bytecode per id."""
    kernels = native.kernels()
    if kernels is not None and type(ids_p) is list and type(ids_l) is list:
        got: tuple[set[str], set[str], set[str], _Places | None] | None = kernels.shared_ids(
            ids_p, ids_l
        )
        if got is not None:
            return got
    named_p = set(ids_p)
    named_l = set(ids_l)
    again_p = _repeated(ids_p) if len(named_p) < len(ids_p) else set()
    again_l = _repeated(ids_l) if len(named_l) < len(ids_l) else set()
    common = named_l.intersection(named_p)
    if not common or again_p or again_l:
        return common, again_p, again_l, None
    in_l = list(map(common.__contains__, ids_l))
    places = (list(compress(range(len(ids_p)), map(common.__contains__, ids_p))),
              list(compress(range(len(ids_l)), in_l)),
              list(compress(range(len(ids_l)), map(operator.not_, in_l))))  # fmt: skip
    return common, again_p, again_l, places


def _repeated(ids: list[str]) -> set[str]:
    """The ids named more than once in ``ids``: each one's earlier places are not its last
    (the C loops of dict, map and compress; no bytecode per id)."""
    last = dict(zip(ids, range(len(ids)), strict=True))
    return set(compress(ids, map(operator.ne, map(last.__getitem__, ids), range(len(ids)))))


def _model_indices(engine: Engine, names: list[str | None]) -> list[int]:
    """The index of the model of each of a segment's checked predictions (of configured
    models: :func:`_segment` keeps no other), by their model ``names``, with no look-up per
    event when there is one model."""
    if len(engine.models) == 1:
        return [0] * len(names)
    return list(map(_model_index(engine).__getitem__, names))


#: Each engine's model index by model name (see :func:`_model_index`).
_INDEX: weakref.WeakKeyDictionary[Engine, dict[str | None, int]] = weakref.WeakKeyDictionary()


def _model_index(engine: Engine) -> dict[str | None, int]:
    """Each model's index by its name (kept beside the engine: its models do not change)."""
    index = _INDEX.get(engine)
    if index is None:
        index = _INDEX[engine] = {m.name: m.index for m in engine.models}
    return index


def _registry_cut(
    decoded: list[tuple[int, PredictionEvent]],
    model_of: list[int],
    crossing: set[int],
    partition_of: list[int],
    b: int,
) -> int:
    """Where to cut a segment in which a slice registry may reach its cap: which value is
    folded depends on the order values arrive in, and the plan registers a model's values
    partition by partition; so a segment may hold that model's predictions of one
    partition only (cut at the first of another)."""
    cut = b
    first: dict[int, int] = {}
    for (i, _), m in zip(decoded, model_of, strict=True):
        if m in crossing:
            number = first.setdefault(m, partition_of[i])
            if partition_of[i] != number:
                cut = min(cut, i)
    return cut


def _reject(engine: Engine, messages: MessageBatch, i: int, latest: float) -> Reject:
    """The reject of message ``i``, which the plan found not to be a valid event: its
    reason (the first check it fails, in the codec's order: decode, model, time, values,
    then the join's duplicate and model mismatch), counted in its partition's rejects and,
    for a duplicate, in the model's duplicate count. ``latest``: the message's latest
    acceptable event time (:meth:`Engine.latest_times`). Decided from the batch's columns:
    the whole :class:`Message` is built only when the reject's is read."""
    topic = messages.topics[i]
    state = engine.partitions[messages.partitions[i]]
    try:
        kind = engine.topic_kind.get(topic)
        if kind == "predictions":
            _prediction_reject(engine, messages.values[i], state, latest)
        elif kind == "labels":
            _label_reject(engine, messages.values[i], state, latest)
        else:
            raise DecodeFailure("unknown_topic", f"not an input topic: {topic}")
    except DecodeFailure as exc:
        state.rejects[(topic, exc.reason)] += 1
        return Reject.of_batch(messages.__getitem__, i, exc.reason, exc.detail)
    raise AssertionError(f"message {i} was planned as a reject but is a valid event")


def _timely(engine: Engine, value: float | str, latest: float) -> float:
    """The event time ``value`` in seconds, unless it is implausible or lies more than
    ``time.max_future`` ahead of its record's timestamp (``latest`` less that): a producer
    with a broken clock must not move the event-time clock."""
    ts = parse_event_time(value)
    if ts > latest:
        ahead = ts - (latest - engine.max_future)
        raise DecodeFailure(
            "future",
            f"event time {ts:.0f} is {ahead:.0f} s ahead of its record's timestamp "
            f"(time.max_future is {engine.max_future:.0f} s)",
        )
    return ts


def _prediction_reject(engine: Engine, value: bytes | None, state: PartitionState, latest: float
                       ) -> None:  # fmt: skip
    """Raise the :class:`DecodeFailure` of a rejected prediction, the message's ``value``
    (see :func:`_reject`)."""
    event = decode_prediction(value, engine.max_bytes, engine.limits)
    model = engine.by_name.get(event.model)
    if model is None:
        raise DecodeFailure("unknown_model", f"model {event.model[:64]!r} is not configured")
    _timely(engine, event.ts, latest)
    model.codec.code(event.prediction, "prediction")
    if event.label is not None:
        model.codec.code(event.label, "label")
    join = state.join
    pid = event.prediction_id
    m = model.index
    if pid in join.pending[m] or join.was_matched(pid, m):
        state.counts[m][DUPLICATE_PREDICTIONS] += 1
        raise DecodeFailure("duplicate", f"prediction_id {pid[:64]!r} seen already")


def _label_reject(engine: Engine, value: bytes | None, state: PartitionState, latest: float
                  ) -> None:  # fmt: skip
    """Raise the :class:`DecodeFailure` of a rejected label, the message's ``value`` (see
    :func:`_reject`)."""
    event = decode_label(value, engine.max_bytes, engine.limits)
    named = -1
    if event.model is not None:
        model = engine.by_name.get(event.model)
        if model is None:
            raise DecodeFailure("unknown_model", f"model {event.model[:64]!r} is not configured")
        named = model.index
    _timely(engine, event.ts, latest)
    join = state.join
    pid = event.prediction_id
    m, pending = join.find_pending(pid, named)
    if pending is None and named >= 0:
        other, found = join.find_pending(pid, -1)
        if found is not None:
            raise DecodeFailure(
                "model_mismatch",
                f"label names {event.model!r}, prediction is {engine.models[other].name!r}",
            )
    if pending is not None:
        engine.models[m].codec.code(event.label, "label")
        return
    if pid in join.early or join.was_matched(pid, named):
        counted = named if named >= 0 else _matched_model(join, pid)
        if counted >= 0:
            state.counts[counted][DUPLICATE_LABELS] += 1
        raise DecodeFailure("duplicate", f"label for {pid[:64]!r} seen already")
    if named >= 0:
        engine.models[named].codec.code(event.label, "label")


def _matched_model(join: JoinBuffer, pid: str) -> int:
    """The model a duplicate label naming none is counted for: the first that joined its
    id, else the one its early label names (-1: none)."""
    for index, table in enumerate(join.matched):
        if pid in table:
            return index
    early = join.early.get(pid)
    return early.model if early is not None else -1


class _Retries(NamedTuple):
    """The messages of an id that repeat an earlier one of the poll: duplicates of it when
    the first (``lead``, its poll index) is taken by a plan and ``same`` holds
    (each names the model the first was joined or kept for, or none), and no model but
    the one the first joins holds the id waiting (``holders``: how many may; -1 for a
    prediction sent again, a duplicate of the first whatever other models hold)."""

    lead: int
    idx: list[int]
    same: bool
    holders: int


def _repeats(
    preds: tuple[list[int], list[PredictionEvent]],
    pairs_l: list[tuple[int, LabelEvent]],
    ids: tuple[list[str], list[str]],
    twice: set[str],
    partition_of: list[int],
) -> tuple[dict[str, tuple[int, LabelEvent]], dict[str, _Retries]]:
    """How the planner takes the ids named more than once in the segment (``twice``), all
    their messages in one partition: a prediction and its first label, in either order, are
    joined here as one message after the other would be (``fused``: id -> the label); the
    labels sent again after the first, and the messages of a prediction or a label sent
    again with no message of the other topic, are retries of the first (see
    :class:`_Retries`). Any other repeat (a prediction sent twice with its label) is left
    to a later segment. ``preds``: the predictions' poll indices and events; ``ids``: the
    ids of the predictions and of ``pairs_l``, in order (the few of ``twice`` are found
    among them by C loops)."""
    by_id: dict[str, list[tuple[int, Any]]] = {}
    labels: dict[str, list[tuple[int, Any]]] = {}
    at_p, events_p = preds
    for k in _contained_at(ids[0], twice):
        by_id.setdefault(ids[0][k], []).append((at_p[k], events_p[k]))
    for k in _contained_at(ids[1], twice):
        labels.setdefault(ids[1][k], []).append(pairs_l[k])
    fused: dict[str, tuple[int, LabelEvent]] = {}
    again: dict[str, _Retries] = {}
    for pid in twice:
        mine_p = by_id.get(pid, [])
        mine_l = labels.get(pid, [])
        every = mine_p + mine_l
        if any(partition_of[i] != partition_of[every[0][0]] for i, _ in every):
            continue
        if len(mine_p) == 1 and mine_l:
            (i, pred), (j, label) = mine_p[0], mine_l[0]
            rest = mine_l[1:]
            fused[pid] = (j, label)
            if rest:
                # A retry before the prediction finds the first label waiting: a duplicate
                # counted for the model that label names, which must be the prediction's.
                same = all(
                    r.model in (None, pred.model)
                    and (k > i or pred.model in (r.model, label.model))
                    for k, r in rest
                )
                again[pid] = _Retries(i, [k for k, _ in rest], same, 0)
        elif not mine_p or not mine_l:
            (i, first), rest = every[0], every[1:]
            if mine_l:
                same = all(r.model in (None, first.model) for _, r in rest)
            else:
                same = all(r.model == first.model for _, r in rest)
            again[pid] = _Retries(i, [k for k, _ in rest], same, 1 if mine_l else -1)
    return fused, again


class _Known(NamedTuple):
    """A segment's checked predictions left to plan, as :func:`_segment` has read them: their
    ids, their models' indices, the events and their poll indices, and the places among them
    of the ids of the labels they fuse with, when it has them (None: :func:`_predictions`
    finds them)."""

    ids: list[str]
    models: list[int]
    events: list[PredictionEvent]
    at: list[int]
    fused_at: list[int] | None = None


def _plan(
    engine: Engine,
    messages: MessageBatch,
    known_p: _Known,
    pairs_l: list[tuple[int, LabelEvent]],
    fused: dict[str, tuple[int, LabelEvent]],
    twice_at: set[int],
    again: dict[str, _Retries],
    slow: list[int],
    *,
    record: bool = False,
) -> _Split:
    """Decide a segment's checked events (see :func:`_segment`): the predictions left to
    plan (``known_p``) and the labels; ``record``: keep what the plans do to the capped
    tables (a cap is near)."""
    split = _Split(list(slow))
    split.record = record
    # Ids seen twice in a way the plan does not decide: the segment is cut before them.
    split.loose.extend(twice_at)
    if known_p.events:
        _predictions(engine, messages, known_p, split, fused, again.keys())
    if pairs_l:
        _labels(engine, messages, pairs_l, split)
    if again:
        _followers(engine, messages, again, split)
    return split


def _followers(
    engine: Engine, messages: MessageBatch, again: dict[str, _Retries], split: _Split
) -> None:
    """The retries of the segment (see :class:`_Retries`): rejects as duplicates, their id
    matched, waiting or early by then and named by no other message of the segment, when
    their first message is taken by a plan; else the segment is cut before them."""
    taken: set[int] = set()
    if split.plans:  # which of the first messages the plans take (a few among thousands)
        planned = np.concatenate([a for _, idx, _ in split.plans
                                  for a in (idx if isinstance(idx, list) else (idx,))])
        leads = [retries.lead for retries in again.values()]
        taken.update(compress(leads, np.isin(leads, planned).tolist()))
    for pid, retries in again.items():
        idx = np.array(retries.idx, dtype=np.int64)
        number = messages.partitions[retries.lead]
        alone = True
        if retries.holders >= 0:  # labels: the model their first joins holds the id alone
            held = sum(pid in table for table in engine.partition(number).join.pending)
            alone = held <= retries.holders
        if retries.same and retries.lead in taken and alone:
            split.reject(idx)
        else:
            split.cut_before(idx)


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
) -> list[PendingCaps | EarlyCaps] | int:
    """The evictions at the caps that the plans of ``split`` reach (models ``pressed`` at
    their pending caps, the early labels if ``early``), replayed over the plans' inserts and
    removals in poll order with the rules of :mod:`monitor.core.caps`. Where the plans
    assumed an entry that an earlier message evicts (a label joining an evicted
    prediction, a message naming an evicted id after its eviction, a reject naming one),
    the poll index to cut the segment at instead."""
    partition_of = messages.partitions
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
    for kind, m, number, at, pid in zip(
        kind_l, model_l, part_l, at_l, [pids[j] for j in order.tolist()], strict=True
    ):
        try:
            if kind == _P_ADD:
                pending[m].insert(number, pid, entry_bytes(pid, widths[m]), at)
            elif kind <= _P_NEW:
                pending[m].remove(number, pid)
            elif kind == _E_ADD:
                assert early_caps is not None
                early_caps.insert(number, pid, at)
            else:
                assert early_caps is not None
                early_caps.remove(number, pid)
        except Conflict:  # the entry it uses was evicted before it: cut before it
            return int(at)
    caps: list[PendingCaps | EarlyCaps] = [c for c in pending.values() if c.evicted]
    if early_caps is not None and early_caps.evicted:
        caps.append(early_caps)
    if caps:
        # The rejects are decided once the evictions are applied, and would decide
        # otherwise than at their turn if an entry of their id left (a duplicate is one only
        # while its id is held); a message after an eviction must not name its id.
        rejects = set(split.slow)
        named: dict[int, dict[str, int]] = {}
        deferred: set[tuple[int, str]] = set()
        for pairs in decoded:
            for i, e in pairs:
                number = partition_of[i]
                pid = e.prediction_id
                if i in rejects:
                    deferred.add((number, pid))
                    continue
                last = named.setdefault(number, {})
                if last.get(pid, -1) < i:
                    last[pid] = i
        cuts = [c.conflicts(named, deferred) for c in caps]
        found = [c for c in cuts if c is not None]
        if found:
            return min(found)
    return caps


class _Split:
    """What the planner decided for a segment: the rejects, the messages it cannot decide
    with the ones before them (``loose``: the segment is cut before the first), and the
    plans, applied once all is decided."""

    __slots__ = ("early", "features", "loose", "matched", "ops", "plans", "record", "slices",
                 "slow")

    def __init__(self, slow: list[int]) -> None:
        #: the rejects (decode failures and unknown topics to start with)
        self.slow = slow
        #: the messages the plans cannot decide in this segment
        self.loose: list[int] = []
        #: what the plans do to the capped tables (:data:`_P_ADD`, ...): (kind, model,
        #: partition, poll index of each message, its id), kept if ``record`` (a cap is near)
        self.ops: list[tuple[int, int, int, I64, list[str]]] = []
        self.record = True
        #: (first partition, the poll indices of its messages (an array, or arrays end to
        #: end), apply)
        self.plans: list[tuple[int, I64 | list[I64], Callable[[], None]]] = []
        #: ids matched by the plans, with their label's poll index and time, in runs of
        #: (model, partition) groups (see :meth:`match`); entered into the matched tables
        #: in poll order once all are applied (:func:`_enter_matched`).
        self.matched: list[tuple[list[tuple[int, int]], list[int], I64, list[str], F64]] = []
        #: partition -> labels that came first (poll index, id, label, and the model they
        #: all name), entered in poll order once all is applied
        self.early: dict[int, list[tuple[I64, list[str], list[EarlyLabel], int]]] = {}
        #: the features of the segment's predictions, when read from their JSON
        self.features: _FeatureTable | None = None
        #: the slice ids of the segment's predictions, when known before the plans apply
        self.slices: _SliceIds | None = None

    def reject(self, idx: I64) -> None:
        """Messages that are not valid events: rejects (see :func:`_reject`)."""
        self.slow.extend(idx.tolist())

    def cut_before(self, idx: I64) -> None:
        """Messages the plan cannot decide with the ones before them in the segment."""
        if len(idx):
            self.loose.extend(idx.tolist())

    def match(self, groups: list[tuple[int, int]], sizes: list[int], idx: I64, pids: list[str],
              ts: F64) -> None:  # fmt: skip
        """Ids ``pids`` matched by a plan, ``sizes`` of each (model, partition) of ``groups``
        in that order, with their label's poll index and time (see :attr:`matched`)."""
        self.matched.append((groups, sizes, idx, pids, ts))

    def op(self, kind: int, m: int, number: int, idx: I64, pids: list[str]) -> None:
        """Messages ``idx`` of partition ``number`` change a capped table (see :attr:`ops`)."""
        if self.record and len(pids):
            self.ops.append((kind, m, number, idx, pids))


def _group(parts: list[int], models: list[int]) -> dict[tuple[int, int], tuple[list[int], I64]]:
    """Positions per (model, partition), each group in order, as a list and as an array."""
    part = native.int64_column(parts)
    if models.count(models[0]) == len(models):  # one model (the usual poll): by partition
        key = part
    else:
        model = np.array(models, dtype=np.int64)
        key = (model + 2) * (int(part.max()) + 1) + part  # models may be -1, -2 (unknown)
    # numpy's stable sort of keys of 16 bits or fewer is a radix sort (a poll of 10,000:
    # 28 against 86 us with 4 keys, 44 against 363 us with 400); the keys are >= 0
    small = key.astype(np.uint16) if int(key.max()) < 1 << 16 else key
    order = np.argsort(small, kind="stable").astype(np.int64, copy=False)
    # each run of one key among the sorted keys: where it starts (np.unique would sort
    # them again)
    ranked = key[order]
    starts = (ranked[1:] != ranked[:-1]).nonzero()[0] + 1
    ends = [*starts.tolist(), len(order)]
    starts_l = [0, *ends[:-1]]
    groups: dict[tuple[int, int], tuple[list[int], I64]] = {}
    listed = order.tolist()
    for first, end in zip(starts_l, ends, strict=True):
        j = listed[first]
        groups[(models[j], parts[j])] = (listed[first:end], order[first:end])
    return groups


def _pending_pressure(
    engine: Engine, events: list[PredictionEvent], model_of: list[int]
) -> set[int]:
    """Models that may reach a pending cap (entries or bytes) within this poll: those that
    would if every prediction of theirs in the poll waited."""
    out: set[int] = set()
    # one model: every index is 0 (``_model_indices``), the count is the poll's length
    counts = Counter(model_of) if len(engine.models) > 1 else {0: len(model_of)}
    pending = [p.join.pending for p in engine.partitions.values()]
    # bytes: at most 4 per character of an id, and the row's columns
    id_most = 4 * engine.limits.max_id_length + PendingTable.ROW_BYTES
    for m, n in counts.items():
        if m < 0 or n == 0:
            continue
        config = engine.models[m].config
        most = id_most + 4 * (2 + len(config.segments))
        queued = sum([tables[m].nbytes for tables in pending])
        if (
            engine.pending_total[m] + n > config.max_pending
            or queued + n * most > config.max_pending_bytes
        ):
            out.add(m)
    return out


def _crossing_caps(
    engine: Engine, events: list[PredictionEvent], model_of: list[int]
) -> tuple[set[int], I64 | None]:
    """Models whose slice registry may reach a cap within this poll. Which value is folded
    at a cap depends on the order values arrive in (see :func:`_registry_cut`);
    a registry below its caps after the poll, or already full, does not depend on it.
    And the events' slice ids (as :func:`_slices` gives them) when they are of one model
    whose registry was read here (not full, with less room than the poll has predictions)
    and holds every value they name: then no value is new, and their ids are the same
    whatever order the plans take them in (else None)."""
    out: set[int] = set()
    models = engine.models
    if not any(m.registry.segments for m in models) and not any(
        _attrs(events, ("model_version",))[0]
    ):  # no slice value at all (no version, no segment): nothing to register
        return out, None
    known: I64 | None = None
    by_model: dict[int, list[PredictionEvent]] = {}
    if len(set(model_of)) == 1:
        by_model[model_of[0]] = events
    else:
        for e, m in zip(events, model_of, strict=True):
            by_model.setdefault(m, []).append(e)
    for index, mine in by_model.items():
        if index < 0:
            continue
        model = models[index]
        registry = model.registry
        room = {d: registry.caps[d] - registry.used[d] for d in registry.caps}
        # full, or with room for as many new values as it has predictions here: no cap met
        if all(r <= 0 or r >= len(mine) for r in room.values()):
            continue
        versions, columns = _slice_columns(mine, registry.segments)
        if len(by_model) == 1:  # every value registered (the usual poll): no value is new
            known = _registered_slices(model, versions, columns)
            if known is not None:
                continue
        values = {("version", v) for v in set(versions) if v}
        for name, column in zip(registry.segments, columns, strict=True):
            found: set[Any] = set(column)
            found.discard(None)
            values.update(zip(repeat(f"segment:{name}", len(found)), found, strict=True))
        new: dict[str, int] = {}
        for dim, value in values:
            if (dim, value) not in registry.index:
                new[dim] = new.get(dim, 0) + 1
        if any(0 < room[d] < n for d, n in new.items()):
            out.add(model.index)
    return out, known


def _predictions(
    engine: Engine,
    messages: MessageBatch,
    known: _Known,
    split: _Split,
    fused: dict[str, tuple[int, LabelEvent]],
    retried: Collection[str],
) -> None:
    """Plan the checked predictions per model and partition: rejects (unknown model,
    invalid values, duplicates), joins with their own label, the label message that
    follows them in the segment (or came before it) or an early label of an earlier poll,
    and the others left waiting. ``known``: their ids, models' indices, events and poll
    indices (and the places of those a label of the segment fuses with, when the caller
    has them)."""
    ids, model_of, events, at_l, fused_at = known
    at = native.int64_column(at_l)  # one C loop (numpy: a pack call per int)
    ts = _times(events, engine.latest_times(at))
    score = _read_numbers(events, "score", missing=True)
    if score is None:
        score = np.array([e.score for e in events], dtype=np.float64)  # None -> NaN
    ok = ~np.isnan(ts) & ~((score < 0.0) | (score > 1.0))
    probabilities, labels = _attrs(events, ("probabilities", "label"))
    if probabilities.count(None) < len(probabilities):
        for j, probs in enumerate(probabilities):
            if probs is not None and not all(0.0 <= v <= 1.0 for v in probs.values()):
                ok[j] = False
    parts = _pick(messages.partitions, at_l)
    # The predictions a label message of the segment follows (positions).
    if fused_at is None:
        fused_at = _contained_at(ids, fused) if fused else []
    found_before = (
        _found_before(engine, ids, fused_at, model_of, parts, at, fused) if fused else set()
    )
    groups = _group(parts, model_of)
    plain: dict[int, _PlainGroups] = {}
    followed = _marked(len(ids), fused_at) if fused_at else None
    if any(m >= 0 for m, _ in groups):
        odd_ids = found_before | set(retried) if retried else found_before
        plain = _plain_models(engine, groups, events, ids, labels, at_l, parts, model_of,
                              fused, fused_at, odd_ids)  # fmt: skip
    takes: list[_PlainTake] = []
    if plain:
        _plan_plains(engine, split, plain, events, ids, at, ts, score, ok, fused, followed, takes)
    if takes:  # every model's plain predictions taken by one plan: see _take_plains
        split.plans.append((takes[0].number, [i for take in takes for i in take.idx],
                            partial(_take_plains, engine, takes)))  # fmt: skip
    taken = {(m, number) for m, mine in plain.items() for number, _, _ in mine}
    for (m, number), (rows, sel) in groups.items():
        if (m, number) in taken:
            continue
        group = _pick(events, rows)
        pids = _pick(ids, rows)
        # The rows of the predictions a label message of this poll follows, and those (poll
        # index, label) pairs.
        later = followed[sel].nonzero()[0].tolist() if followed is not None else []
        hits = list(map(fused.__getitem__, _pick(pids, later))) if later else []
        if m < 0:
            split.reject(at[sel])  # unknown model
            split.cut_before(np.array([f[0] for f in hits], dtype=np.int64))
            continue
        model = engine.models[m]
        join = engine.partition(number).join
        matched = join.matched[m]
        # the rows whose id the model has joined already, where a label message follows some
        # (one probe of the table, once for the duplicates and the lone labels)
        matched_at = matched.held(pids) if later else None
        raw_preds, raw_labels = _attrs(group, ("prediction", "label"))
        pred, pred_ok = model.codec.code_many(raw_preds)
        none = raw_labels.count(None)
        has_label = np.zeros(len(group), dtype=bool)
        if none < len(raw_labels):
            has_label = np.array([v is not None for v in raw_labels], dtype=bool)
        label = np.full(len(group), math.nan)
        label_ok = np.ones(len(group), dtype=bool)
        if none < len(raw_labels):
            codes, valid = model.codec.code_many([v for v in raw_labels if v is not None])
            label[has_label] = codes
            label_ok[has_label] = valid
        label_ts = ts[sel].copy()
        label_at = at[sel].copy()
        pair_ok = np.ones(len(group), dtype=bool)
        has_later = np.zeros(len(group), dtype=bool)
        label_msg = np.zeros(0, dtype=np.int64)  # poll index of each label message
        if matched_at is not None:  # (a label message follows some)
            has_later[native.int64_column(later)] = True
            hit_at, follow = _unpaired(hits)
            label_msg = native.int64_column(hit_at)
            follow_models, follow_ids, follow_labels = _attrs(follow, ("model", "prediction_id",
                                                                       "label"))  # fmt: skip
            codes, valid = model.codec.code_many(follow_labels)
            f_ts = _times(follow, engine.latest_times(label_msg))
            named = _marked(len(follow), _contained_at(follow_models, {None, model.name}))
            # A label naming no model joins the first model (by index) holding the id; a
            # label that came first must find nothing (no waiting, early or matched id)
            # and room among the early labels.
            reached = _marked(len(follow), _contained_at(follow_ids, found_before))
            lone = _lone_labels(join, follow_ids, follow_models, label_msg, at[sel[has_later]],
                                valid, f_ts, named, reached,
                                (ok[sel] & pred_ok & label_ok)[has_later],
                                has_label[has_later], _marked(len(pids), matched_at)[has_later],
                                retried)  # fmt: skip
            if lone.any():  # rejects whatever the prediction does: it goes alone
                split.reject(label_msg[lone])
                keep_l = ~lone
                has_later[np.flatnonzero(has_later)[lone]] = False
                label_msg, codes, valid = label_msg[keep_l], codes[keep_l], valid[keep_l]
                f_ts, named, reached = f_ts[keep_l], named[keep_l], reached[keep_l]
            named &= ~reached
            label[has_later] = codes
            label_ts[has_later] = f_ts
            # The pair is joined at the second of the two messages.
            label_at[has_later] = np.maximum(label_msg, at[sel[has_later]])
            # Both the prediction's own label and a label message, or a label that the
            # plan would reject or keep apart: the segment is cut before them.
            pair_ok[has_later] = valid & ~np.isnan(f_ts) & named & ~has_label[has_later]
            has_label = has_label | has_later
        if matched_at is None:  # the model's waiting and matched ids in one probe
            owner = native.pending_owners([join.pending[m], matched], pids)
            dup = set(_pick(pids, np.flatnonzero(owner >= 0).tolist()))
        else:
            dup = set(_pick(pids, matched_at))
            held = join.pending[m].contains_many(pids)
            if held.any():
                dup.update(_pick(pids, held.nonzero()[0]))
        got = list(map(join.early.get, pids)) if join.early else []  # each id's early label
        valid = ok[sel] & pred_ok & label_ok
        good = valid & pair_ok
        alone = valid & ~pair_ok  # with a label message the plan cannot take with it
        counted = has_label.copy()  # labels counted now (early ones naming a model: at arrival)
        from_early = np.zeros(len(group), dtype=bool)
        dropped: list[tuple[int, str]] = []  # early labels rejected now: (row, reason)
        if dup:  # a duplicate is rejected, unless its label message would then join
            repeat = _marked(len(pids), _contained_at(pids, dup))
            alone |= good & repeat & has_later
            good &= ~repeat
        if got and got.count(None) < len(got):  # the rows with an early label, and those
            rows_e = np.array(list(compress(range(len(pids)), got)), dtype=np.int64)
            found = cast(list[EarlyLabel], list(compress(got, got)))
            named_e = np.fromiter(map(_E_MODEL, found), np.int64, len(found))
            # A label naming another model leaves its prediction waiting.
            fits = good[rows_e] & ((named_e == -1) | (named_e == m))
            own = fits & has_label[rows_e]  # its own label field joins it; the early one stays
            twice = rows_e[own & has_later[rows_e]]
            good[twice] = False  # joined by its own label; the later one is a duplicate
            alone[twice] = True
            pick = fits & ~own
            if pick.any():
                joins = rows_e[pick]
                waiting: list[Any] = list(compress(found, pick.tolist()))
                code, usable = model.codec.code_many([e.label for e in waiting])
                if not usable.all():
                    # An early label naming no model could only be checked now: rejected
                    # (as a message of the labels topic), it leaves, and the prediction waits.
                    for j, e, u in zip(joins.tolist(), waiting, usable.tolist(), strict=True):
                        if not u:
                            dropped.append((j, _label_failure(model, e.label)))
                take = joins[usable]
                label[take] = code[usable]
                label_ts[take] = np.fromiter(map(_E_TS, waiting), np.float64, len(waiting))[usable]
                has_label[take] = True
                counted[take] = named_e[pick][usable] < 0
                from_early[take] = True
        split.reject(at[sel[valid & ~good & ~alone]])
        split.reject(at[sel[~valid]])
        # A pair the plan does not take together: the first of its two messages is decided
        # in a segment that ends before the second (alone rows all have a label message).
        split.cut_before(label_at[~good & has_later])
        label_msg = label_msg[good[has_later]]
        drop = np.zeros(len(group), dtype=bool)
        reasons = [""] * len(group)
        for j, reason in dropped:
            drop[j] = True
            reasons[j] = reason
        if not good.all():
            keep = np.flatnonzero(good)
            group = _pick(group, keep)
            pids = _pick(pids, keep)
            sel, pred, label, has_label = sel[keep], pred[keep], label[keep], has_label[keep]
            label_ts, label_at, has_later = label_ts[keep], label_at[keep], has_later[keep]
            counted, from_early = counted[keep], from_early[keep]
            drop = drop[keep]
            reasons = _pick(reasons, keep)
        if not len(sel):
            continue
        if split.record:
            _prediction_ops(split, m, number, at[sel], pids, has_label, has_later, label_msg,
                            from_early | drop)
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
            _Labels(label, has_label, label_ts, label_at, has_later, counted, from_early,
                    drop, reasons),
        )
        split.plans.append((number, np.concatenate([at[sel], label_msg]), apply))


#: A model's plain predictions of a segment, per partition in order: (partition, their
#: positions among the segment's predictions, as a list and as an array).
_PlainGroups = list[tuple[int, list[int], I64]]


def _plain_models(
    engine: Engine,
    groups: dict[tuple[int, int], tuple[list[int], I64]],
    events: list[PredictionEvent],
    ids: list[str],
    labels: list[Any],
    at_l: list[int],
    parts: list[int],
    model_of: list[int],
    fused: dict[str, tuple[int, LabelEvent]],
    fused_at: list[int],
    odd_ids: Collection[str],
) -> dict[int, _PlainGroups]:
    """The plain groups of predictions of the segment, per model: a configured model (in
    its warmup too: :func:`_take_plain` sends its raw rows), no prediction carrying a
    label field, no id the partition holds already
    (waiting for any model, matched for the model, or an early label), and a label
    message of the segment joining a prediction only after it and naming its model or
    none (none of ``odd_ids``: retried, or finding the id in the join state first). Such
    a prediction is a reject for an invalid value, joins its label message, or waits,
    whatever the others do; so :func:`_plan_plain` plans a model's plain groups of every
    partition at once, and the other groups are planned one by one. The slice registry
    sees a model's plain groups in the order it would one by one when they are all its
    groups; a model with other groups too has plain ones only if their every slice value
    is registered already (then their slice ids do not depend on the order). ``labels``:
    the predictions' label fields."""
    odd: set[tuple[int, int]] = set()
    if labels.count(None) < len(labels):
        odd.update((model_of[k], parts[k]) for k, v in enumerate(labels) if v is not None)
    models = engine.models
    if fused_at:  # the predictions a label message of the segment follows
        for k in fused_at:
            pid = ids[k]
            j, label = fused[pid]
            m = model_of[k]
            if (
                m < 0
                or j < at_l[k]
                or pid in odd_ids
                or (label.model is not None and label.model != models[m].name)
            ):
                odd.add((m, parts[k]))
    out: dict[int, _PlainGroups] = {}
    named: dict[tuple[int, int], list[str]] = {}  # each plain group's ids
    # With a few models, a group's matched ids are probed with the waiting ones below (each
    # id's key found once); with more, every group's in one call here, and the waiting ones
    # through the owner index.
    few = len(models) <= JoinBuffer.INDEXED_FROM
    cand: list[tuple[int, int, list[int], I64, list[str], JoinBuffer]] = []
    joins: dict[int, JoinBuffer] = {}  # each partition's, looked up once
    for (m, number), (rows, sel) in groups.items():
        if m < 0 or (m, number) in odd:
            continue
        join = joins.get(number)
        if join is None:
            join = joins[number] = engine.partition(number).join
        early = join.early
        pids = _pick(ids, sel)  # (the int64 array: no int read per place)
        if early and not early.keys().isdisjoint(pids):
            continue
        cand.append((m, number, rows, sel, pids, join))
    if not few and cand:
        held = native.held_groups([c[5].matched[c[0]] for c in cand], [c[4] for c in cand])
        if held.any():
            cand = [c for c, h in zip(cand, held.tolist(), strict=True) if not h]
    for m, number, rows, sel, pids, _ in cand:
        out.setdefault(m, []).append((number, rows, sel))
        named[m, number] = pids
    asked: dict[int, list[tuple[int, int]]] = {}  # partition -> (model, place in out[model])
    for m, mine in out.items():
        for j, (number, _, _) in enumerate(mine):
            asked.setdefault(number, []).append((m, j))
    dropped: set[tuple[int, int]] = set()
    for number, entries in asked.items():
        join = engine.partitions[number].join
        if few:  # each group's ids against every waiting table and its model's matched one
            for m, j in entries:
                owner = native.pending_owners([*join.pending, join.matched[m]], named[m, number])
                if (owner >= 0).any():
                    dropped.add((m, j))
            continue
        if not any(join.pending):
            continue
        chosen = [out[m][j][1] for m, j in entries]
        if len(entries) == 1:  # one model's group (the usual poll)
            asked_ids = named[entries[0][0], number]
        else:
            asked_ids = list(chain.from_iterable(named[m, number] for m, _ in entries))
        held = join.owners_of(asked_ids) >= 0
        if held.any():  # those groups go one by one
            a = 0
            for entry, rows in zip(entries, chosen, strict=True):
                if held[a : a + len(rows)].any():
                    dropped.add(entry)
                a += len(rows)
    # A model whose groups are all plain takes them in the order they would be taken one
    # by one (by partition); one with others too must register no slice value.
    total = Counter(m for m, _ in groups)
    for m in list(out):
        mine = out[m]
        if dropped:
            mine = [g for j, g in enumerate(mine) if (m, j) not in dropped]
        if not mine or (len(mine) < total[m] and not _registered(models[m], events, mine)):
            del out[m]
        else:
            out[m] = mine
    return out


def _registered(model: ModelState, events: list[PredictionEvent], mine: _PlainGroups) -> bool:
    """Whether every slice value of the predictions of ``mine`` is in the model's registry
    already (then their slice ids are the same in whatever order they are taken)."""
    registry = model.registry
    index = registry.index
    versions = {events[r].model_version for _, rows, _ in mine for r in rows}
    if any(v and ("version", v) not in index for v in versions):
        return False
    if registry.segments:
        segs = [events[r].segment for _, rows, _ in mine for r in rows]
        for name in registry.segments:
            dim = f"segment:{name}"
            values = {s.get(name) for s in segs if s}
            if any(v is not None and (dim, v) not in index for v in values):
                return False
    return True


class _Joined(NamedTuple):
    """The plain predictions of a model that their label message of the segment joins
    (see :func:`_plan_plain`): which (a mask over the predictions), and per such
    prediction, in order, the label's poll index, code and event time."""

    has: npt.NDArray[np.bool_]
    at: I64
    code: F64
    ts: F64


def _plan_plains(
    engine: Engine,
    split: _Split,
    plain: dict[int, _PlainGroups],
    events: list[PredictionEvent],
    ids: list[str],
    at: I64,
    ts: F64,
    score: F64,
    ok: npt.NDArray[np.bool_],
    fused: dict[str, tuple[int, LabelEvent]],
    followed: npt.NDArray[np.bool_] | None,
    takes: list[_PlainTake],
) -> None:
    """Plan the plain predictions of every model of ``plain`` (see :func:`_plain_models`),
    each model's every partition at once (:func:`_plan_plain`): their values coded and
    their label messages checked for all the models together (one ``code_many`` per
    codec, see :func:`_codec_groups`; one read of the labels' times), not model by model.
    A model whose label message would not join (its prediction or its value invalid, its
    time not usable) is left out of ``plain``, with nothing planned: its groups are then
    planned one by one."""
    models = engine.models
    order = list(plain)
    sels = [s for m in order for _, _, s in plain[m]]
    sel_all = sels[0] if len(sels) == 1 else np.concatenate(sels)
    sizes_m = [sum(len(rows) for _, rows, _ in plain[m]) for m in order]
    bounds = list(accumulate(sizes_m, initial=0))
    pids_all = _pick(ids, sel_all)
    group_all = _pick(events, sel_all)
    groups = _codec_groups(models, order)
    pred_all, valid_all = _coded(models, order, groups, bounds,
                                 _attrs(group_all, ("prediction",))[0])  # fmt: skip
    valid_all &= ok[sel_all]
    has_all: npt.NDArray[np.bool_] | None = None
    where: list[int] = []
    failed: set[int] = set()  # places in order of the models whose label would not join
    if followed is not None:
        has_all = followed[sel_all]
        where = np.flatnonzero(has_all).tolist()
        if where:
            hits = [fused[pids_all[j]] for j in where]
            hit_at, follow = _unpaired(hits)
            label_at = native.int64_column(hit_at)
            # each hit's model's place, and where each model's hits start
            hit_bounds = [bisect_left(where, a) for a in bounds]
            codes, usable = _coded(models, order, groups, hit_bounds, [e.label for e in follow])
            f_ts = _times(follow, engine.latest_times(label_at))
            bad = ~usable | ~valid_all[where] | np.isnan(f_ts)
            if bad.any():
                for j in np.flatnonzero(bad).tolist():
                    failed.add(bisect_left(hit_bounds, j + 1) - 1)
    # every model's rows' poll indices, times and scores, and whether all are valid, at once
    at_all, ts_all, score_all = at[sel_all], ts[sel_all], score[sel_all]
    every_valid = bool(valid_all.all())
    for j, m in enumerate(order):
        if j in failed:
            del plain[m]
            continue
        a, b = bounds[j], bounds[j + 1]
        joined: _Joined | None = None
        if has_all is not None and where:
            h0, h1 = hit_bounds[j], hit_bounds[j + 1]
            if h1 > h0:
                joined = _Joined(has_all[a:b], label_at[h0:h1], codes[h0:h1], f_ts[h0:h1])
        _plan_plain(engine, split, models[m], plain[m], pids_all[a:b], group_all[a:b],
                    pred_all[a:b], None if every_valid else valid_all[a:b], at_all[a:b],
                    ts_all[a:b], score_all[a:b], joined, takes)  # fmt: skip


def _coded(
    models: list[ModelState],
    order: list[int],
    groups: list[list[int]],
    bounds: list[int],
    values: list[Any],
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Codes and validity of ``values``, model ``order[j]``'s from ``bounds[j]`` to
    ``bounds[j + 1]``, by one ``code_many`` per group of models of one codec
    (``groups``: places in ``order``, see :func:`_codec_groups`)."""
    if len(groups) == 1:
        return models[order[0]].codec.code_many(values)
    codes = np.empty(len(values))
    valid = np.empty(len(values), dtype=np.bool_)
    for chosen in groups:
        rows = [r for j in chosen for r in range(bounds[j], bounds[j + 1])]
        c, v = models[order[chosen[0]]].codec.code_many([values[r] for r in rows])
        codes[rows], valid[rows] = c, v
    return codes, valid


def _plan_plain(
    engine: Engine,
    split: _Split,
    model: ModelState,
    mine: _PlainGroups,
    pids: list[str],
    group: list[PredictionEvent],
    pred: F64,
    valid: npt.NDArray[np.bool_] | None,
    idx: I64,
    ts: F64,
    score: F64,
    joined: _Joined | None,
    takes: list[_PlainTake],
) -> None:
    """Plan the plain predictions of one model (see :func:`_plain_models`), every
    partition's at once (their ids, events, codes and validity (None: all valid), poll
    indices, times and scores; ``joined``: those their label message of the segment
    joins, checked by :func:`_plan_plains`): the invalid ones are rejects, those joined
    join their label, the others wait. The plan goes to ``takes`` (see :class:`_PlainTake`)."""
    numbers = [number for number, _, _ in mine]
    sizes = [len(rows) for _, rows, _ in mine]
    if valid is not None and not valid.all():
        split.reject(idx[~valid])
        keep = np.flatnonzero(valid)
        sizes = _sizes_kept(sizes, keep)
        kept = keep.tolist()
        pids = _pick(pids, kept)
        group = _pick(group, kept)
        idx, ts, score, pred = idx[keep], ts[keep], score[keep], pred[keep]
        if joined is not None:  # every joined prediction is valid
            joined = joined._replace(has=joined.has[keep])
        if not kept:
            return
    if split.record:
        a = 0
        for number, n in zip(numbers, sizes, strict=True):
            part_ids = pids[a : a + n]
            if joined is None:
                split.op(_P_ADD, model.index, number, idx[a : a + n], part_ids)
            else:
                has = joined.has[a : a + n]
                split.op(_P_ADD, model.index, number, idx[a : a + n][~has],
                         list(compress(part_ids, (~has).tolist())))  # fmt: skip
                first = int(np.count_nonzero(joined.has[:a]))
                last = first + int(np.count_nonzero(has))
                both = list(compress(part_ids, has.tolist()))
                split.op(_P_ADD, model.index, number, idx[a : a + n][has], both)
                split.op(_P_NEW, model.index, number, joined.at[first:last], both)
            a += n
    apply = partial(_take_plain, engine, split, model, numbers, sizes, idx, group, pids,
                    ts, pred, score, joined)  # fmt: skip
    takes.append(_PlainTake(numbers[0], [idx] if joined is None else [idx, joined.at], model,
                            group, apply))  # fmt: skip


class _PlainTake(NamedTuple):
    """A model's plain plan (see :func:`_plan_plain`): its first partition, the poll
    indices of its messages, the model, its predictions to take, and its
    :func:`_take_plain` (given the :class:`_Waiting` and the predictions' slice ids when
    :func:`_plain_slices` found them, else None)."""

    number: int
    idx: list[I64]
    model: ModelState
    group: list[PredictionEvent]
    apply: Callable[[_Waiting, I64 | None], None]


class _Waiting:
    """The predictions that the plain plans of a segment leave waiting, (model,
    partition) table after table: put into their tables by :func:`add_groups` once every
    model's are known (see :func:`_take_plains`)."""

    __slots__ = ("highs", "ids", "models", "pairs", "parts", "pred", "rest", "score", "sizes",
                 "slices", "tables", "ts")  # fmt: skip

    def __init__(self) -> None:
        #: the event times of the predictions taken, then of the labels joined, each model's
        #: in runs of a partition (the times, the partitions, the runs' sizes): the
        #: partitions' latest times are raised once for all (see _raise_highs)
        self.highs: tuple[tuple[list[F64], list[int], list[int]], ...] = (
            ([], [], []), ([], [], [])
        )
        self.tables: list[PendingTable] = []
        self.sizes: list[int] = []
        #: each model's rows of its tables, in order
        self.ids: list[str] = []
        self.ts: list[F64] = []
        self.pred: list[F64] = []
        self.score: list[F64] = []
        self.slices: list[I64] = []
        #: which of each model's rows above wait (None: all of them); :attr:`ts`,
        #: :attr:`pred`, :attr:`score` and :attr:`slices` hold all its rows, those that
        #: wait picked out for every model at once
        self.rest: list[npt.NDArray[np.bool_] | None] = []
        #: where each model's tables end in :attr:`tables`
        self.models: list[int] = []
        #: the models whose label messages of the segment join some of their plain
        #: predictions: (batch, the joins, the partitions they are in and how many in each,
        #: and the model's rows' values, times and slice ids), made into a chunk each at once
        self.pairs: list[tuple[Any, _Joined, list[int], list[int], F64, F64, I64, F64]] = []
        #: the chunks of models whose rows are in several partitions (``sizes`` of each of
        #: ``numbers``, in that order), given their partition column at once
        self.parts: list[tuple[Chunk, list[int], list[int]]] = []


def _take_plains(engine: Engine, takes: list[_PlainTake]) -> None:
    """Apply the plain plans of every model of a segment (:func:`_take_plain` each, with
    the slice ids of every model's predictions found at once where they can be), and
    put the predictions they leave waiting into their (model, partition) tables with one
    :func:`add_groups` per run of models of as many slice ids a row (the usual segment:
    one): the tables, and the owner indexes, changed in the order each model's plan
    would change them in its turn (no other plan reads them in between). The partitions'
    latest event times (as :func:`_note`) are raised once for every model's events."""
    waiting = _Waiting()
    for take, slices in zip(takes, _plain_slices(takes), strict=True):
        take.apply(waiting, slices)
    if waiting.parts:  # each chunk's partition of each row: one repeat for all
        spans = waiting.parts
        part = np.repeat(np.array([n for _, numbers, _ in spans for n in numbers],
                                  dtype=np.int64),
                         [n for _, _, sizes in spans for n in sizes])  # fmt: skip
        a = 0
        for chunk, _, sizes in spans:
            b = a + sum(sizes)
            chunk.part = part[a:b]
            a = b
    kafka = engine.config.kafka
    for topic, (ts, numbers, sizes) in zip((kafka.predictions_topic, kafka.labels_topic),
                                           waiting.highs, strict=True):  # fmt: skip
        if ts:
            _raise_highs(engine, topic, joined(ts), numbers, sizes)
    widths: dict[int, list[Any]] = {}  # the pairs by width of slice ids (the model's)
    for pair in waiting.pairs:
        widths.setdefault(pair[6].shape[1], []).append(pair)
    for pairs in widths.values():
        _take_pairs(pairs)
    if not waiting.tables:
        return
    ks = [s.shape[1] for s in waiting.slices]
    first = 0  # the run's first model
    for j in range(1, len(ks) + 1):
        if j < len(ks) and ks[j] == ks[first]:
            continue
        t0 = waiting.models[first - 1] if first else 0
        t1 = waiting.models[j - 1]
        sizes = waiting.sizes[t0:t1]
        r0 = sum(waiting.sizes[:t0])
        columns = [joined(waiting.ts[first:j]), joined(waiting.pred[first:j]),
                   joined(waiting.score[first:j]), joined(waiting.slices[first:j])]  # fmt: skip
        masks = waiting.rest[first:j]
        if any(r is not None for r in masks):  # the rows that wait, every model's at once
            rest = joined([np.ones(len(t), dtype=np.bool_) if r is None else r
                           for r, t in zip(masks, waiting.ts[first:j], strict=True)])  # fmt: skip
            columns = [c[rest] for c in columns]
        add_groups(waiting.tables[t0:t1], sizes, waiting.ids[r0 : r0 + sum(sizes)], *columns)
        first = j


def _plain_slices(takes: list[_PlainTake]) -> list[I64 | None]:
    """The slice ids :func:`_slices` gives each plan's predictions, found for every model
    at once where it has no segments and its predictions name one version, registered
    already, or none (the usual poll: then they are a look-up each, nothing registered or
    folded, and the same whatever order the plans are taken in); None for the others
    (:func:`_slices` finds theirs in turn). A model's ids are its rows of one array for
    all (a poll of many models has a few predictions a model, where numpy's cost per call
    is most of the work)."""
    out: list[I64 | None] = [None] * len(takes)
    chosen = [j for j, take in enumerate(takes) if not take.model.registry.segments]
    if not chosen:
        return out
    groups = [takes[j].group for j in chosen]
    sizes = list(map(len, groups))
    (versions,) = _attrs(groups[0] if len(groups) == 1 else list(chain.from_iterable(groups)),
                         ("model_version",))  # fmt: skip
    ids: list[int] = []
    if any(versions):  # each model's one version (else its ids are found in turn)
        kept: list[int] = []  # places in chosen
        a = 0
        for place, (j, n) in enumerate(zip(chosen, sizes, strict=True)):
            found = set(versions[a : a + n])
            a += n
            if len(found) != 1:
                continue
            (value,) = found
            sid = _registered_id(takes[j].model.registry.index, "version", value)
            if sid is not None:
                kept.append(place)
                ids.append(sid)
        if len(kept) < len(chosen):
            chosen = _pick(chosen, kept)
            sizes = _pick(sizes, kept)
        if not chosen:
            return out
    block = np.zeros((sum(sizes), 2), dtype=np.int64)
    block[:, 1] = np.repeat(np.array(ids, dtype=np.int64), sizes) if ids else -1
    a = 0
    for j, n in zip(chosen, sizes, strict=True):
        out[j] = block[a : a + n]
        a += n
    return out


def _take_pairs(pairs: list[tuple[Any, _Joined, list[int], list[int], F64, F64, I64, F64]]
                ) -> None:  # fmt: skip
    """Queue each model's plain predictions joined by their label message of the segment
    (``pairs``, see :attr:`_Waiting.pairs`; models of one width of slice ids) for
    accumulation as one chunk in poll order (of a model whose pairs are in one partition:
    in the order of its rows), every model's picked and ordered at once: the values of
    :func:`_take_plain`'s chunk of each."""
    has = joined([p[1].has for p in pairs])
    pred, score, slices, ts = (joined([p[i] for p in pairs])[has] for i in (4, 5, 6, 7))
    at = joined([p[1].at for p in pairs])
    lt = joined([p[1].ts for p in pairs])
    code = joined([p[1].code for p in pairs])
    sizes = [len(p[1].at) for p in pairs]
    part = np.repeat(np.array([n for p in pairs for n in p[2]], dtype=np.int64),
                     [n for p in pairs for n in p[3]])  # fmt: skip
    # each model's pairs in poll order when they are in several partitions (a stable sort
    # of each by poll index), else as they are: one stable sort of all by (model, key)
    several = [len(p[2]) > 1 for p in pairs]
    if any(several):
        slot = np.repeat(np.arange(len(pairs), dtype=np.int64), sizes)
        mine = at
        if not all(several):  # the others' by their place among the model's pairs
            starts = np.array(list(accumulate(sizes, initial=0))[:-1], dtype=np.int64)
            place = np.arange(len(at), dtype=np.int64) - np.repeat(starts, sizes)
            mine = np.where(np.repeat(np.array(several), sizes), at, place)
        order = np.argsort(slot * (int(max(int(at.max()), len(at))) + 1) + mine, kind="stable")
        pred, score, slices, ts = pred[order], score[order], slices[order], ts[order]
        at, lt, code, part = at[order], lt[order], code[order], part[order]
    delay = lt - ts
    a = 0
    for p, n in zip(pairs, sizes, strict=True):
        b = a + n
        p[0].chunks_o.append(Chunk(at[a:b], part[a:b], lt[a:b], pred[a:b], score[a:b],
                                   slices[a:b], label=code[a:b], delay=delay[a:b]))  # fmt: skip
        a = b


def _raise_highs(engine: Engine, topic: str, ts: F64, numbers: list[int], sizes: list[int]
                 ) -> None:  # fmt: skip
    """Raise each partition's latest event time of ``topic`` to the largest of ``ts`` in
    it (runs of ``sizes`` times of partitions ``numbers``), as :func:`_note` of each run."""
    best: dict[int, float] = {}
    for number, high in zip(numbers, _run_maxima(ts, sizes), strict=True):
        if high > best.get(number, -math.inf):
            best[number] = high
    partitions = engine.partitions
    for number, high in best.items():
        max_ts = partitions[number].max_ts
        if high > max_ts.get(topic, -math.inf):
            max_ts[topic] = high


def joined(arrays: Sequence[Any]) -> Any:
    """``arrays`` end to end (one of them: itself, not a copy); the engine's too. By the
    compiled ``join_rows`` when :mod:`monitor.native` runs (a poll of many models joins
    thousands of per-model arrays, and ``np.concatenate`` costs more a part than their
    copy), else by ``np.concatenate``: the same array."""
    if len(arrays) == 1:
        return arrays[0]
    kernels = native.kernels()
    if kernels is not None:
        out = kernels.join_rows(arrays, np.empty)
        if out is not None:
            return out
    return np.concatenate(arrays)


def _take_plain(
    engine: Engine,
    split: _Split,
    model: ModelState,
    numbers: list[int],
    sizes: list[int],
    idx: I64,
    group: list[PredictionEvent],
    pids: list[str],
    ts: F64,
    pred: F64,
    score: F64,
    joined: _Joined | None,
    waiting: _Waiting,
    known: I64 | None,
) -> None:
    """Accept a model's plain predictions of a segment (see :func:`_plan_plain`): count,
    join those whose label message follows, leave the others to ``waiting`` (for their
    pending tables), queue them for accumulation as one chunk over their partitions
    (``sizes`` predictions of each of ``numbers``, in that order) and the joined pairs as
    another: what :func:`_take_predictions` does to each partition's group, the slice
    registry and the features taken over the groups one after the other. ``known``: their
    slice ids, when :func:`_plain_slices` found them."""
    m = model.index
    slices = _slices(model, group, idx, split.slices) if known is None else known
    if model.warmup_target:  # its predictions raw to its stage 2, each partition's run
        a = 0
        for number, n in zip(numbers, sizes, strict=True):
            if n:
                b = a + n
                _warmup_rows(engine, model, number, group[a:b], ts[a:b], score[a:b],
                             slices[a:b])  # fmt: skip
                a = b
    feats, numeric = _feature_columns(engine, model, group, idx, split.features)
    prob = None
    if model.layout.kind.uses_probabilities:
        from monitor.core.baseline import probability_row

        prob = [probability_row(model.class_index, e.probabilities) for e in group]
    # the partitions of a model's rows in several: made for every model's at once
    chunk = Chunk(idx, numbers[0] if len(numbers) == 1 else idx, ts, pred, score, slices,
                  feats=feats, numeric=numeric, prob=prob)  # fmt: skip
    if len(numbers) > 1:
        waiting.parts.append((chunk, numbers, sizes))
    batch = engine.batch_of(m)
    batch.chunks_p.append(chunk)
    # The rows that wait taken once: a few rows a partition, where numpy's cost per call is
    # most of the work; the partitions' latest times raised by _take_plains.
    high_ts, high_numbers, high_sizes = waiting.highs[0]
    high_ts.append(ts)
    high_numbers += numbers
    high_sizes += sizes
    gots = [0] * len(sizes)
    where: list[int] = []  # the joined rows
    rest: npt.NDArray[np.bool_] | None = None
    waits = pids
    if joined is not None:
        # (the method: np.flatnonzero's Python wrappers cost more than a model's few rows)
        where = joined.has.nonzero()[0].tolist()
        if len(sizes) == 1:
            gots[0] = len(where)
        else:
            a = 0
            for i, n in enumerate(sizes):
                gots[i] = bisect_left(where, a + n) - bisect_left(where, a)
                a += n
        rest = ~joined.has
        waits = _pick(pids, rest.nonzero()[0])
    joined_in: list[int] = []  # the partitions the joined pairs are in, each once
    joined_n: list[int] = []  # and how many in each
    for i, (number, n) in enumerate(zip(numbers, sizes, strict=True)):
        if not n:
            continue
        state = engine.partitions[number]
        counts = state.counts[m]
        counts[PREDICTIONS] += n
        got = gots[i]
        if got:
            assert joined is not None
            counts[LABELS] += got
            counts[MATCHED] += got
            joined_in.append(number)
            joined_n.append(got)
        if n > got:  # ids checked: new, and distinct in the poll
            waiting.tables.append(state.join.pending[m])
            waiting.sizes.append(n - got)
            engine.pending_total[m] += n - got
    if waits:  # the rows of the tables above, in their order (picked by _take_plains)
        waiting.ids += waits
        waiting.ts.append(ts)
        waiting.pred.append(pred)
        waiting.score.append(score)
        waiting.slices.append(slices)
        waiting.rest.append(rest)
        waiting.models.append(len(waiting.tables))
    if joined is not None and joined_in:
        split.match([(m, number) for number in joined_in], joined_n, joined.at,
                    _pick(pids, where), joined.ts)  # fmt: skip
        # its chunk in poll order, as the chunks of the groups would be merged (_take_pairs)
        waiting.pairs.append((batch, joined, joined_in, joined_n, pred, score, slices, ts))
        high_ts, high_numbers, high_sizes = waiting.highs[1]
        high_ts.append(joined.ts)  # in runs of a partition, as gots
        high_numbers += numbers
        high_sizes += gots


def _lone_labels(
    join: JoinBuffer,
    ids: list[str],
    names: list[str | None],
    label_msg: I64,
    pred_at: I64,
    valid: npt.NDArray[np.bool_],
    f_ts: F64,
    named: npt.NDArray[np.bool_],
    reached: npt.NDArray[np.bool_],
    checked: npt.NDArray[np.bool_],
    own: npt.NDArray[np.bool_],
    joined: npt.NDArray[np.bool_],
    retried: Collection[str],
) -> npt.NDArray[np.bool_]:
    """Which label messages of a prediction in the segment (their ids and the models they
    name, in the partition's ``join``) are rejects whatever else: an invalid time; a
    duplicate of an id joined for the model (``joined``) and waiting nowhere (the
    prediction is one too); and, after a valid prediction (``checked``) of an id the
    partition holds nowhere, a label naming another model (model mismatch), a label value
    the model's codec refuses, or any label of a prediction that carried its own (a
    duplicate). The prediction is then planned as if alone, and the segment need not be
    cut before the label. Not for an id with more messages in the segment (``retried``:
    they were planned as retries of a pair joined)."""
    lone = np.isnan(f_ts)  # invalid or future: rejects in either order
    if retried:  # (the places found by a C loop: numpy's fromiter packs each bool by a call)
        again_at = _contained_at(ids, set(retried))
        lone &= ~_marked(len(ids), again_at)
        if not lone.any() and len(again_at) == len(ids):
            return lone
    maybe = ~lone & (label_msg > pred_at) & ~reached & checked
    again = ~lone & named & joined
    if not (maybe | again).any():
        return lone
    other = ~named & ~_marked(len(names), _none_at(names))
    odd = maybe & ((other & ~own) | (named & (~valid | own)))
    # Where the partition holds the id is asked only of the labels it decides: a label
    # after its valid prediction, naming the model, valid and not a second label (the
    # usual case) is never lone.
    ask = np.flatnonzero(again | odd)
    if not ask.size:
        return lone
    pids = _pick(ids, ask)
    held = join.owners(id_keys(pids)) >= 0
    # An id joined for the model and waiting nowhere: the prediction and the label (naming
    # the model or none) are both duplicates, in either order.
    seen = join.seen(pids, -1)
    fresh = ~held
    if seen:
        fresh &= ~np.fromiter(map(seen.__contains__, pids), bool, len(pids))
    alone = np.zeros(len(ids), dtype=bool)
    alone[ask] = (again[ask] & ~held) | (odd[ask] & fresh)
    if retried:
        alone[ask] &= np.array([p not in retried for p in pids], dtype=bool)
    return lone | alone


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
    tables, message by message: one without a label waits; one whose label
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
    dropped: npt.NDArray[np.bool_]  # an early label rejected now: the prediction waits
    reasons: list[str]  # the reject reason of each dropped early label


def _label_failure(model: ModelState, label: Any) -> str:
    """The reject reason of a label value ``model``'s codec refuses."""
    try:
        model.codec.code(label, "label")
    except DecodeFailure as exc:
        return exc.reason
    raise AssertionError("a label value refused in bulk is accepted alone")


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
    state = engine.partitions[number]
    slices = _slices(model, group, idx, split.slices)
    counts = state.counts[m]
    counts[PREDICTIONS] += len(group)
    _note(state, engine.config.kafka.predictions_topic, ts)
    if model.warmup_target:
        _warmup_rows(engine, model, number, group, ts, score, slices)
    batch = engine.batch_of(m)
    feats, numeric = _feature_columns(engine, model, group, idx, split.features)
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
            feats=feats,
            numeric=numeric,
            prob=prob,
        )
    )
    labelled = np.flatnonzero(labels.has)
    if len(labelled):
        counts[LABELS] += int(labels.counted.sum())
        counts[MATCHED] += len(labelled)
        if labels.early.any():
            gone = state.join.pop_early(_pick(pids, np.flatnonzero(labels.early)))
            engine.early_total -= len(gone)
        if labels.later.any():
            _note(state, engine.config.kafka.labels_topic, labels.ts[labels.later])
        lt = labels.ts[labelled]
        split.match([(m, number)], [len(labelled)], labels.at[labelled],
                    _pick(pids, labelled), lt)  # fmt: skip
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
    if labels.dropped.any():  # early labels rejected now (see _predictions)
        topic = engine.config.kafka.labels_topic
        rows = np.flatnonzero(labels.dropped).tolist()
        state.join.pop_early(_pick(pids, rows))
        for j in rows:
            state.rejects[(topic, labels.reasons[j])] += 1
        engine.early_total -= len(rows)
    waiting = np.flatnonzero(~labels.has)
    if len(waiting):
        kept = _pick(pids, waiting)
        state.join.pending[m].add_many(  # ids checked: new, and distinct in the poll
            kept,
            ts[waiting],
            pred[waiting],
            score[waiting],
            slices[waiting],
            checked=True,
        )
        engine.pending_total[m] += len(kept)


def _warmup_rows(
    engine: Engine,
    model: ModelState,
    number: int,
    group: list[PredictionEvent],
    ts: F64,
    score: F64,
    slices: I64,
) -> None:
    """Send the predictions of a model in its warmup raw to its stage 2 (the partition's
    ledger) as :class:`WarmRow`, every pane (stage 2 decides what is on time): the
    prediction as sent, features as a mapping."""
    ledger = engine.ledgers[number]
    feats: list[Any] = _materialized(engine, [e.features for e in group])
    if dict in set(map(type, feats)):  # some decoded the general way: the structs by name
        _, _, attrs = _typed(_all_features(engine), engine.limits)
        names = list(attrs)
        values = operator.attrgetter(*attrs.values()) if attrs else None
        for j, f in enumerate(feats):
            if f is not None and type(f) is not dict:
                got = values(f)  # type: ignore[misc]  # a struct means some feature names
                feats[j] = dict(zip(names, got if len(names) > 1 else (got,), strict=True))
    else:  # typed structs (or None): each as a mapping by name, in one call
        feats = msgspec.to_builtins(feats)
    times = ts.tolist()
    out = list(map(WarmRow, times, slices.tolist(), feats, [e.prediction for e in group],
                   score.tolist()))  # fmt: skip
    # Each run of rows of one pane (a sparse stream's poll spans many panes) found by numpy:
    # the floors of the (finite, checked) times, as floats, differ where math.floor's do.
    pane = engine.pane
    floors = np.floor(ts / pane)
    cuts = (floors[1:] != floors[:-1]).nonzero()[0]
    if not cuts.size:  # one pane (the usual case)
        ledger.add_warm_many(model.index, math.floor(times[0] / pane), out)
        return
    start = 0
    for end in [*(cuts + 1).tolist(), len(out)]:
        ledger.add_warm_many(model.index, math.floor(times[start] / pane), out[start:end])
        start = end


def _run_maxima(ts: F64, sizes: list[int]) -> list[float]:
    """The largest of each run of ``ts`` (consecutive runs of ``sizes``, covering it; -inf
    for an empty one), as :func:`_note` takes each, in one numpy call."""
    starts = [end - n for end, n in zip(accumulate(sizes), sizes, strict=True) if n]
    if not starts:
        return [-math.inf] * len(sizes)
    found = iter(np.maximum.reduceat(ts, starts).tolist())
    return [next(found) if n else -math.inf for n in sizes]


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
) -> None:
    """Plan the labels per named model and partition: joins with their waiting
    predictions, early labels (:func:`_plan_early`) and rejects."""
    index = _model_index(engine)
    at_l, events = _unpaired(pairs)
    at = native.int64_column(at_l)  # one C loop (numpy: a pack call per int)
    names, every_id, values = _attrs(events, ("model", "prediction_id", "label"))
    if names.count(None) == len(names):  # no label names its model (the usual stream)
        named = [-1] * len(names)
    elif index.keys() >= set(names).difference((None,)):  # each a model's, or none: C loop
        named = list(map(index.get, names, repeat(-1)))
    else:
        named = [-1 if name is None else index.get(name, -2) for name in names]
    ts = _times(events, engine.latest_times(at))
    parts = _pick(messages.partitions, at_l)
    # the labels joining predictions that wait from before the segment: per partition
    # group, their positions among the segment's labels and their models (see _plan_joins)
    joining: list[tuple[int, I64, I64]] = []
    for (name, number), (rows, sel) in _group(parts, named).items():
        if name == -2:
            split.reject(at[sel])  # unknown model
            continue
        timely = ~np.isnan(ts[sel])
        split.reject(at[sel[~timely]])
        join = engine.partition(number).join
        pids = every_id if len(rows) == len(every_id) else _pick(every_id, sel)
        # The model whose prediction waits (the named one only; else the first holding it).
        if name < 0:  # the first model holding it: one probe of the join's owner index
            owner = join.owners_of(pids)
        else:
            owner = np.where(native.pending_owners([join.pending[name]], pids) >= 0, name, -1)
        good = (owner >= 0) & timely
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
            )
        if good.any():
            joining.append((number, sel[good], owner[good]))
    joins = _plan_joins(engine, split, joining, every_id, values, at, ts) if joining else []
    if joins:  # every model's in one plan
        idx = joins[0].idx if len(joins) == 1 else np.concatenate([p.idx for p in joins])
        split.plans.append((joins[0].numbers[0], idx, partial(_take_joins, engine, split, joins)))


class _Joins(NamedTuple):
    """Labels of the segment that join predictions of model ``m`` waiting from before it,
    checked (see :func:`_plan_joins`): ``sizes`` of each partition of ``numbers``, in that
    order, with their poll indices, ids, event times and label codes."""

    m: int
    numbers: list[int]
    sizes: list[int]
    idx: I64
    pids: list[str]
    ts: F64
    codes: F64


def _plan_joins(
    engine: Engine,
    split: _Split,
    runs: list[tuple[int, I64, I64]],
    every_id: list[str],
    values: list[Any],
    at: I64,
    ts: F64,
) -> list[_Joins]:
    """Check the labels of the segment that join predictions waiting from before it
    (``runs``: per partition, in order, their positions among the segment's labels and
    the model each joins; ``every_id`` and ``values``: every label's id and value): a
    label value its model's codec refuses is a reject; the others join, every model's in
    one plan (:func:`_take_joins`), each model's in the order of ``runs``. The labels of
    every model are taken together (one sort, one code per codec, see
    :func:`_codec_groups`), not model by model: a poll of many models has hundreds of
    (model, partition) groups of a few labels each."""
    if len(runs) == 1:
        number, pos, owner = runs[0]
        part = np.full(len(pos), number, dtype=np.int64)
    else:
        pos = np.concatenate([p for _, p, _ in runs])
        owner = np.concatenate([o for _, _, o in runs])
        part = np.repeat(np.array([n for n, _, _ in runs], dtype=np.int64),
                         [len(p) for _, p, _ in runs])  # fmt: skip
    models = engine.models
    # by model, then partition, then poll order (a partition's labels naming the model
    # and those naming none are two runs of one group)
    step = int(part.max()) + 1
    key = (owner * step + part) * len(values) + pos
    if not bool((key[1:] > key[:-1]).all()):  # (one model's labels are in order already)
        order = np.argsort(key, kind="stable")
        pos, owner, part = pos[order], owner[order], part[order]
    # (the labels' places picked by the int64 array itself: no list of ints made)
    codes = np.empty(len(pos))
    valid = np.empty(len(pos), dtype=np.bool_)
    starts = np.flatnonzero(np.diff(owner, prepend=-1))  # each model's first label
    bounds = [*starts.tolist(), len(pos)]
    ms = owner[starts].tolist()
    for chosen in _codec_groups(models, ms):
        if len(chosen) == len(ms):  # one codec for all (the usual poll)
            codes, valid = models[ms[0]].codec.code_many(_pick(values, pos))
            break
        rows = np.concatenate([np.arange(bounds[j], bounds[j + 1]) for j in chosen])
        c, v = models[ms[chosen[0]]].codec.code_many(_pick(values, pos[rows]))
        codes[rows], valid[rows] = c, v
    if not valid.all():
        split.reject(at[pos[~valid]])
        keep = np.flatnonzero(valid)
        pos, owner, part, codes = pos[keep], owner[keep], part[keep], codes[keep]
        if not len(pos):
            return []
        starts = np.flatnonzero(np.diff(owner, prepend=-1))
        bounds = [*starts.tolist(), len(pos)]
        ms = owner[starts].tolist()
    pids = _pick(every_id, pos)
    idx, times = at[pos], ts[pos]
    # each (model, partition) run: where it starts, and its partition
    cuts = np.diff(owner * step + part, prepend=-1).nonzero()[0]
    part_l = part[cuts].tolist()
    run_sizes = np.diff(cuts, append=len(pos)).tolist()
    # each model's first run (a model's first label starts a run), and the end
    first_run = np.searchsorted(cuts, bounds).tolist()
    out: list[_Joins] = []
    record = split.record
    for j, m in enumerate(ms):
        a, b = bounds[j], bounds[j + 1]
        r0, r1 = first_run[j], first_run[j + 1]
        numbers = part_l[r0:r1]
        sizes = run_sizes[r0:r1]
        mine = pids[a:b]
        if record:
            c = a
            for number, n in zip(numbers, sizes, strict=True):
                split.op(_P_HELD, m, number, idx[c : c + n], pids[c : c + n])
                c += n
        out.append(_Joins(m, numbers, sizes, idx[a:b], mine, times[a:b], codes[a:b]))
    return out


def _codec_groups(models: list[ModelState], ms: list[int]) -> list[list[int]]:
    """The places in ``ms`` (model indices) of models whose codecs code every value alike
    (see :attr:`~monitor.events.codec.ModelCodec.key`), each group in order, the groups in
    order of their first."""
    keys = [models[m].codec.key for m in ms]
    if keys.count(keys[0]) == len(keys):
        return [list(range(len(ms)))]
    groups: dict[Any, list[int]] = {}
    for j, key in enumerate(keys):
        groups.setdefault(key, []).append(j)
    return list(groups.values())


def _sizes_kept(sizes: list[int], keep: I64) -> list[int]:
    """How many of each partition's rows stay (``sizes``: the partitions' runs of rows, in
    order) when only the rows at ``keep`` (ascending) do."""
    out: list[int] = np.diff(np.searchsorted(keep, np.cumsum(sizes)), prepend=0).tolist()
    return out


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
) -> None:
    """Plan labels whose prediction is not waiting in partition ``number``: those that name
    a model holding it (mismatch), repeat a waiting or matched id (duplicate) or carry an
    invalid class are rejects; the others wait as early labels, in poll order."""
    keep = np.flatnonzero(first)
    chosen = keep.tolist()
    asked = pids if len(chosen) == len(pids) else _pick(pids, chosen)
    out = np.zeros(len(chosen), dtype=bool)
    if name >= 0:  # waiting for another model: model_mismatch (every table in one call)
        tables = [table for table in join.pending if len(table)]
        if tables:
            out |= native.pending_owners(tables, asked) >= 0
    seen = join.seen(asked, name)  # an early label, or matched: duplicate
    if seen:
        out |= np.fromiter(map(seen.__contains__, asked), bool, len(asked))
    if out.any():
        split.reject(at[keep[out]])
        keep = keep[~out]
        chosen = keep.tolist()
        asked = list(compress(asked, (~out).tolist()))
    if not chosen:
        return
    values = [events[rows[j]].label for j in chosen]
    if name >= 0:
        _, valid = engine.models[name].codec.code_many(values)
        if not valid.all():
            split.reject(at[keep[~valid]])  # unknown_class, bad_type, ...
            keep = keep[valid]
            kept = valid.tolist()
            asked = list(compress(asked, kept))
            values = list(compress(values, kept))
            if not asked:
                return
    times = ts[keep]
    labels = list(map(_NEW_EARLY, zip(times.tolist(), values, repeat(name))))
    idx = at[keep]
    split.op(_E_ADD, -1, number, idx, asked)
    split.plans.append((number, idx, partial(_take_early, engine, split, number, name, idx,
                                             asked, labels, times)))  # fmt: skip


def _take_early(
    engine: Engine,
    split: _Split,
    number: int,
    name: int,
    idx: I64,
    pids: list[str],
    labels: list[EarlyLabel],
    ts: F64,
) -> None:
    """Keep labels that came before their prediction (entered in poll order later)."""

    state = engine.partitions[number]
    engine.early_total += len(pids)
    if name >= 0:
        state.counts[name][LABELS] += len(pids)
    _note(state, engine.config.kafka.labels_topic, ts)
    split.early.setdefault(number, []).append((idx, pids, labels, name))


def _take_joins(engine: Engine, split: _Split, joins: list[_Joins]) -> None:
    """Join checked labels with their waiting predictions, every model's of the segment
    together (``joins``: a model's labels each): count, remember the ids as matched, queue
    each model's pairs for accumulation as one chunk in poll order. The waiting
    predictions leave their tables in one :func:`~monitor.core.join.pop_groups` call per
    width of slice ids (a poll of many models has hundreds of (model, partition) groups)."""
    topic = engine.config.kafka.labels_topic
    partitions = engine.partitions
    # each group's table, by the slice ids its rows hold (the model's: one width a model)
    widths: dict[int, list[int]] = {}
    tables: list[PendingTable] = []
    sizes: list[int] = []
    for j, joined in enumerate(joins):
        m = joined.m
        k = -1
        for number, n in zip(joined.numbers, joined.sizes, strict=True):
            table = partitions[number].join.pending[m]
            tables.append(table)
            sizes.append(n)
            if table.k > k:
                k = table.k
        widths.setdefault(k, []).append(j)
    if len(widths) > 1:  # models of several widths: a call each, in order
        for chosen in widths.values():
            _take_joins(engine, split, [joins[j] for j in chosen])
        return
    (k,) = widths
    pids = joins[0].pids if len(joins) == 1 else [pid for j in joins for pid in j.pids]
    found, p_ts, p_pred, p_score, p_slices = pop_groups(tables, sizes, pids, k)
    assert found.all()
    ts = joins[0].ts if len(joins) == 1 else np.concatenate([j.ts for j in joins])
    highs = _run_maxima(ts, sizes)  # as _note, in one call
    idx = joins[0].idx if len(joins) == 1 else np.concatenate([j.idx for j in joins])
    matched: list[tuple[int, int]] = []  # the (model, partition) groups, and their sizes
    matched_n: list[int] = []
    g = 0
    for joined in joins:
        m = joined.m
        for number, n in zip(joined.numbers, joined.sizes, strict=True):
            high = highs[g]
            g += 1
            if not n:
                continue
            state = partitions[number]
            counts = state.counts[m]
            counts[LABELS] += n
            counts[MATCHED] += n
            matched.append((m, number))
            matched_n.append(n)
            if high > state.max_ts.get(topic, -math.inf):
                state.max_ts[topic] = high
        engine.pending_total[m] -= len(joined.pids)
    split.match(matched, matched_n, idx, pids, ts)
    # Each model's pairs in poll order (the detectors see event order): one sort of all.
    lens = [len(j.pids) for j in joins]
    part = np.repeat(np.array([n for j in joins for n in j.numbers], dtype=np.int64), sizes)
    codes = joins[0].codes if len(joins) == 1 else np.concatenate([j.codes for j in joins])
    delay = ts - p_ts
    if all(len(j.numbers) == 1 for j in joins):  # each model's labels of one partition
        order = None
    else:
        slot = np.repeat(np.arange(len(joins), dtype=np.int64), lens)
        order = np.argsort(slot * (int(idx.max()) + 1) + idx, kind="stable")
        idx, ts, p_pred, p_score = idx[order], ts[order], p_pred[order], p_score[order]
        p_slices, codes, delay, part = p_slices[order], codes[order], delay[order], part[order]
    a = 0
    for joined, n in zip(joins, lens, strict=True):
        b = a + n
        chunk = Chunk(idx[a:b], part[a:b], ts[a:b], p_pred[a:b], p_score[a:b], p_slices[a:b],
                      label=codes[a:b], delay=delay[a:b])  # fmt: skip
        engine.batch_of(joined.m).chunks_o.append(chunk)
        a = b


def _found_before(
    engine: Engine,
    ids: list[str],
    fused_at: list[int],
    model_of: list[int],
    parts: list[int],
    at: I64,
    fused: dict[str, tuple[int, LabelEvent]],
) -> set[str]:
    """Ids of predictions joined with a label message of the same poll that the label
    would not reach first: one that came before its prediction and finds the id in the
    join state already (waiting, early or matched), or one naming no model that finds it
    waiting for a model of a lower index. Asked once per partition (through its id-to-model
    index when there are many models). ``fused_at``: the places among the events (``ids``)
    of the predictions of ``fused`` (a fused id has one prediction in the segment)."""
    asked: dict[int, list[tuple[str, int, bool]]] = {}  # partition -> (id, model, first)
    # Which label came first, by C loops (no bytecode per event); with one model (index 0)
    # only those can be asked.
    pids_f = _pick(ids, fused_at)
    found = list(map(fused.__getitem__, pids_f))
    firsts = list(map(operator.lt, map(_AT, found), at[native.int64_column(fused_at)].tolist()))
    rows_f: Iterable[tuple[int, str, tuple[int, LabelEvent], bool]]
    rows_f = zip(fused_at, pids_f, found, firsts, strict=True)
    if len(engine.models) == 1:
        rows_f = compress(rows_f, firsts)
    for k, pid, (_, label), before in rows_f:
        m = model_of[k]
        if m < 0:
            continue
        if before or (label.model is None and m > 0):
            asked.setdefault(parts[k], []).append((pid, m, before))
    out: set[str] = set()
    for number, rows in asked.items():
        join = engine.partition(number).join
        pids = [r[0] for r in rows]
        model = np.array([r[1] for r in rows], dtype=np.int64)
        first = np.array([r[2] for r in rows], dtype=bool)
        owner = join.owners_of(pids)  # the first model holding each, -1: none
        hit = (owner >= 0) & (first | (owner < model))
        if first.any():  # a label that came first: any early or matched id of any model
            seen = join.seen(list(compress(pids, first.tolist())), -1)
            if seen:
                hit |= first & np.fromiter(map(seen.__contains__, pids), bool, len(pids))
        out.update(pid for pid, h in zip(pids, hit.tolist(), strict=True) if h)
    return out
