"""Bytes to validated events, or a reject with a reason.

Decoding is typed (msgspec) so a message is parsed and shape-checked in one C call;
what msgspec cannot express (event time, score range, classes of the model's task)
is checked here in Python. Nothing in this module raises on bad input: every
failure becomes a reason from :data:`REASONS`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import compress
from typing import TYPE_CHECKING, Annotated, Any, Final, cast

import msgspec
import numpy as np
import numpy.typing as npt

from monitor import native
from monitor.config import ModelConfig
from monitor.core.tasks import task_of
from monitor.events.values import ClassMatcher, canonical

if TYPE_CHECKING:
    from monitor.config import MonitorConfig

__all__ = [
    "DECODE_ERRORS",
    "DEFAULT_LIMITS",
    "REASONS",
    "DecodeFailure",
    "LabelEvent",
    "Limits",
    "PredictionEvent",
    "decode_all",
    "decode_label",
    "decode_prediction",
    "parse_event_time",
]

#: Every reason a message can be rejected for.
REASONS: Final = (
    "not_json",  # not UTF-8 JSON text
    "not_object",  # JSON, but not an object
    "missing_field",  # a required field is absent
    "bad_type",  # a field has the wrong JSON type
    "bad_value",  # right type, value out of range (NaN/inf, score outside [0, 1], bad ts...)
    "too_large",  # larger than kafka.max_message_bytes
    "too_deep",  # nested deeper than the decoder allows
    "unknown_model",  # names no model of the config
    "unknown_class",  # a class the model's config does not list
    "model_mismatch",  # a label whose model differs from its prediction's
    "duplicate",  # a prediction_id already pending, or a label already waiting
    "unknown_topic",  # read from a topic that is neither input topic
    "future",  # event time beyond its record's timestamp + time.max_future (a broken clock)
    "too_long",  # a string longer than its [limits] length (id, class, segment, category)
)

# Event times outside [2000-01-01, 2100-01-01) are taken for unit mistakes (ms for s).
MIN_EVENT_TIME: Final = 946_684_800.0
MAX_EVENT_TIME: Final = 4_102_444_800.0

Value = str | int | float | bool
F64 = npt.NDArray[np.float64]
_NUMBER_TYPES = frozenset((int, float))


class PredictionEvent(msgspec.Struct, frozen=True, gc=False):
    """A prediction as the model server publishes it (DESIGN section 2)."""

    prediction_id: str
    model: str
    ts: float | str
    prediction: Value
    model_version: str = ""
    score: float | None = None
    probabilities: dict[str, float] | None = None
    features: dict[str, float | str | bool | None] | None = None
    segment: dict[str, str] | None = None
    label: Value | None = None


class LabelEvent(msgspec.Struct, frozen=True, gc=False):
    """A ground-truth label arriving later for a prediction (DESIGN section 2)."""

    prediction_id: str
    label: Value
    ts: float | str
    model: str | None = None


class DecodeFailure(Exception):
    """Raised inside this module only; carries the reject reason and a short detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_NON_FINITE = re.compile(rb"[:\[,]\s*-?(?:NaN|Infinity)\s*[,}\]]")
_PREDICTION_DECODER = msgspec.json.Decoder(PredictionEvent)
_LABEL_DECODER = msgspec.json.Decoder(LabelEvent)


#: What a msgspec decoder raises on bytes that are not what it decodes: not JSON, the wrong
#: shape, nested too deeply, invalid UTF-8 inside a string.
DECODE_ERRORS: Final = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


def decode_all(
    decoder: msgspec.json.Decoder[Any], values: Sequence[bytes | None], cap: int | None = None
) -> list[Any]:
    """Each of ``values`` decoded, None where it does not decode (:data:`DECODE_ERRORS`),
    is None (a tombstone) or is longer than ``cap`` bytes: one ``decode`` call a value from
    C (``map``), resumed after a value that fails, so each value is decoded once. The values
    it passes over are found by C loops too (``list.count``, ``list.index``, ``len`` through
    ``map``), so a tombstone or an overlong value in a batch costs no Python per value.
    The compiled kernel (``decode_each``) does all of it in one loop, with the same
    results."""
    kernels = native.kernels()
    if kernels is not None and type(values) is list:
        out: list[Any] = kernels.decode_each(decoder.decode, values, cap, DECODE_ERRORS)
        return out
    unfit = _unfit(values, cap)
    fit = cast("Sequence[bytes]", values if not unfit else _without(values, unfit))
    out = []
    rest = iter(fit)
    while len(out) < len(fit):
        try:  # extend keeps what it took before a failure; map consumed the failing value
            out.extend(map(decoder.decode, rest))
        except DECODE_ERRORS:
            out.append(None)
    for i in unfit:  # ascending: each goes where it was, the ones before it in place
        out.insert(i, None)
    return out


def _unfit(values: Sequence[bytes | None], cap: int | None) -> list[int]:
    """Positions of the values that are None or longer than ``cap``, ascending."""
    nulls: list[int] = []
    if None in values:
        at = -1
        for _ in range(values.count(None)):
            at = values.index(None, at + 1)
            nulls.append(at)
    if cap is None:
        return nulls
    fit = cast("Sequence[bytes]", values if not nulls else _without(values, nulls))
    if not fit or max(map(len, fit)) <= cap:
        return nulls
    long = np.flatnonzero(np.fromiter(map(len, fit), np.int64, len(fit)) > cap)
    if nulls:
        # a value left after the nulls is at its place among them plus the nulls before it
        # (null k has nulls[k] - k values before it)
        before = np.array(nulls, dtype=np.int64) - np.arange(len(nulls), dtype=np.int64)
        long += np.searchsorted(before, long, side="right")
    return sorted(nulls + long.tolist())


def _without(values: Sequence[Any], drop: list[int]) -> list[Any]:
    """``values`` less the items at ``drop`` (ascending positions)."""
    keep = [True] * len(values)
    for i in drop:
        keep[i] = False
    return list(compress(values, keep))


def _classify(exc: Exception) -> DecodeFailure:
    text = str(exc)
    if isinstance(exc, RecursionError):
        return DecodeFailure("too_deep", "nested too deeply")
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return DecodeFailure("not_json", text)
    if text.startswith("Object missing required field"):
        return DecodeFailure("missing_field", text)
    if text.startswith("Expected `object`") and " - at " not in text:
        return DecodeFailure("not_object", text)
    if " of length <= " in text:  # a length constraint of Limits
        return DecodeFailure("too_long", text)
    if text.startswith("Number out of range"):
        return DecodeFailure("bad_value", text)
    return DecodeFailure("bad_type", text)


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes | None, max_bytes: int) -> Any:
    if data is None:
        raise DecodeFailure("not_json", "null message value (tombstone)")
    if len(data) > max_bytes:
        raise DecodeFailure("too_large", f"{len(data)} bytes > {max_bytes}")
    try:
        return decoder.decode(data)
    except UnicodeDecodeError as exc:  # invalid UTF-8 inside a string value
        reason, detail = "not_json", f"not UTF-8: {exc.reason}"
    except (msgspec.DecodeError, RecursionError) as exc:
        failure = _classify(exc)
        reason, detail = failure.reason, failure.detail
        if reason == "not_json" and _NON_FINITE.search(data):
            # Python's json.dumps writes these by default: name the value, not the syntax.
            reason, detail = "bad_value", "NaN and Infinity are not JSON numbers"
        del failure
    # Raised outside the handler and with no local naming it or the message: the
    # exception's traceback then makes no reference cycle through this frame, and a
    # rejected message (up to max_message_bytes) is freed at once, not at the next
    # collection of cycles (which run rarely here: see gc_policy).
    del data
    raise DecodeFailure(reason, detail)


def parse_event_time(value: float | str) -> float:
    """Unix seconds from a number or an RFC 3339 string; raise DecodeFailure if implausible.

    >>> parse_event_time("2024-05-01T12:00:00Z")
    1714564800.0
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise DecodeFailure("bad_value", f"ts is not RFC 3339: {value[:64]!r}") from None
        if parsed.tzinfo is None:
            raise DecodeFailure("bad_value", "ts has no time zone offset")
        ts = parsed.timestamp()
    else:
        ts = float(value)
    if not (MIN_EVENT_TIME <= ts < MAX_EVENT_TIME):
        raise DecodeFailure("bad_value", f"ts {ts!r} outside 2000..2100 (seconds expected)")
    return ts


def _finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise DecodeFailure("bad_value", f"{field} is not finite")
    return value


class ModelCodec:
    """Turns a model's prediction and label values into the codes its accumulators use.

    Binary: 1 for the positive class, 0 for the other; multiclass: the index of the class
    in ``classes``; regression: the finite float.
    """

    __slots__ = ("_classes", "_memo", "task")

    #: Most distinct valid class values remembered by :meth:`code_many`.
    MEMO_CAP: Final = 10_000

    def __init__(self, model: ModelConfig) -> None:
        self.task = model.task
        # class values compare through the rules of monitor.events.values
        # None: the values are numbers (regression)
        classes = task_of(model.task).has_classes
        self._classes = ClassMatcher.for_model(model) if classes else None
        # Raw class value -> code. 1, 1.0 and True hash alike and share a canonical class,
        # so one entry serves them all; invalid values (NaN, unknown classes) never enter.
        self._memo: dict[Value, float] = {}

    @property
    def key(self) -> tuple[tuple[str, ...], bool] | None:
        """What the codes depend on: the configured classes and whether their set is closed
        (:attr:`ClassMatcher.key`), None for numbers (regression). Codecs of equal keys give
        every value the same code and validity, so one :meth:`code_many` codes the values of
        all their models."""
        return None if self._classes is None else self._classes.key

    def code_many(self, values: list[Value]) -> tuple[F64, npt.NDArray[np.bool_]]:
        """Codes of many values at once and a mask of the valid ones (code NaN where not).

        Equal to :meth:`code` value by value; an invalid value is only flagged here, so the
        caller can take it through :meth:`code` for its reason.
        """
        n = len(values)
        if self._classes is None:
            if set(map(type, values)) <= _NUMBER_TYPES:
                codes = np.array(values, dtype=np.float64)
                return codes, np.isfinite(codes)
            codes = np.fromiter(
                (float(v) if v.__class__ in _NUMBER_TYPES else math.nan for v in values),
                np.float64,
                n,
            )
            return codes, np.isfinite(codes)
        memo = self._memo
        # None (not remembered) becomes NaN: a code is never NaN, so the NaNs are the values
        # to code here (found by numpy, not by comparing each item with None); the compiled
        # kernel writes the codes with no list between (see native.memo_codes).
        codes, missing = native.memo_codes(memo, values)
        if not missing:
            return codes, np.ones(n, dtype=np.bool_)
        unknown = np.isnan(codes)
        if unknown.any():
            # Each value the memo lacks is coded once per call (NaN: invalid), not once per
            # occurrence: a first poll's values are all new to the memo.
            fresh: dict[Value, float] = {}
            for i in np.flatnonzero(unknown).tolist():
                value = values[i]
                code = fresh.get(value)
                if code is None:
                    try:
                        code = self.code(value, "value")
                    except DecodeFailure:
                        code = math.nan
                    fresh[value] = code
                    if code == code and len(memo) < self.MEMO_CAP:
                        memo[value] = code
                codes[i] = code
            unknown = np.isnan(codes)
        return codes, ~unknown

    def code(self, value: Value, field: str) -> float:
        """The numeric code of a prediction or label value; raise DecodeFailure if invalid."""
        if self._classes is None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DecodeFailure("bad_type", f"{field} must be a number for a regression model")
            return _finite(float(value), field)
        if isinstance(value, float) and not math.isfinite(value):
            raise DecodeFailure("bad_value", f"{field} is not finite")
        index = self._classes.code(value)
        if index is None:
            name = canonical(value) or repr(value)
            raise DecodeFailure("unknown_class", f"{field} {name[:64]!r} is not a configured class")
        return float(index)


def decode_prediction(
    data: bytes | None, max_bytes: int, limits: Limits | None = None
) -> PredictionEvent:
    """Decode and shape-check a prediction message; raise DecodeFailure with the reason.

    With ``limits`` (the engine passes its config's), strings longer than their limit are
    rejected as ``too_long``; without, only the message size bounds them.
    """
    if limits is None:
        event: PredictionEvent = _decode(_PREDICTION_DECODER, data, max_bytes)
    else:
        event = _decode(limits.prediction_decoder(), data, max_bytes)
        long_feature = limits.long_feature(event.features)
        if long_feature is not None:
            raise DecodeFailure(
                "too_long",
                f"feature {long_feature[:64]!r} longer than {limits.max_category_length}",
            )
    if event.score is not None and not (0.0 <= event.score <= 1.0):
        raise DecodeFailure("bad_value", f"score {event.score!r} outside [0, 1]")
    if event.probabilities is not None:
        for value in event.probabilities.values():
            if not (0.0 <= value <= 1.0):
                raise DecodeFailure("bad_value", "probabilities must lie in [0, 1]")
    # NaN, Infinity (see _decode) and out-of-range numbers are rejected as "bad_value".
    return event


def decode_label(data: bytes | None, max_bytes: int, limits: Limits | None = None) -> LabelEvent:
    """Decode and shape-check a label message; raise DecodeFailure with the reason
    (``too_long`` for an id or label value longer than ``limits`` allow)."""
    decoder = _LABEL_DECODER if limits is None else limits.label_decoder()
    event: LabelEvent = _decode(decoder, data, max_bytes)
    return event


@dataclass(frozen=True)
class Limits:
    """Length limits on an event's strings, in characters (Unicode code points), so that
    what an event leaves in memory and in checkpoints is bounded whatever its producer
    sends (``[limits]`` of the config). A longer string makes its event a ``too_long``
    reject.

    ``max_id_length`` bounds ``prediction_id`` (predictions and labels);
    ``max_value_length`` string prediction and label values (classes);
    ``max_segment_length`` segment values and ``model_version`` (slice values);
    ``max_category_length`` string values of the features named in ``features`` (the
    features some model of the config watches; other features are never kept).

    The checks run inside msgspec's decoder (a constraint of the event's type), so they
    cost nothing on the batch path, which decodes with the same constraints
    (:meth:`typed_fields`).

    >>> limits = Limits(max_id_length=4)
    >>> decode_prediction(b'{"prediction_id": "12345", "model": "m", "ts": 1e9, '
    ...                   b'"prediction": 1}', 1000, limits)
    Traceback (most recent call last):
    ...
    monitor.events.codec.DecodeFailure: Expected `str` of length <= 4 - at `$.prediction_id`
    """

    max_id_length: int = 256
    max_value_length: int = 256
    max_segment_length: int = 256
    max_category_length: int = 256
    features: frozenset[str] = frozenset()

    @classmethod
    def of(cls, config: MonitorConfig) -> Limits:
        """The limits of ``config``: its ``[limits]`` and every model's feature names."""
        lim = config.limits
        return cls(
            lim.max_id_length,
            lim.max_value_length,
            lim.max_segment_length,
            lim.max_category_length,
            frozenset(name for model in config.models for name in model.features),
        )

    def typed_fields(self) -> dict[str, Any]:
        """Field name -> constrained type, for the event structs (and the batch path's)."""
        return _typed_fields(self.max_id_length, self.max_value_length, self.max_segment_length)

    def category_type(self) -> Any:
        """The type of a watched feature's value, its strings constrained."""
        text = Annotated[str, msgspec.Meta(max_length=self.max_category_length)]
        return float | text | bool | None

    def prediction_decoder(self) -> msgspec.json.Decoder[PredictionEvent]:
        """A decoder of :class:`PredictionEvent` (a subclass) with these limits."""
        return _decoders(self)[0]

    def label_decoder(self) -> msgspec.json.Decoder[LabelEvent]:
        """A decoder of :class:`LabelEvent` (a subclass) with these limits."""
        return _decoders(self)[1]

    def long_feature(self, features: Any) -> str | None:
        """The first watched feature whose string value is too long, or None; for
        features decoded as a dict (constrained structs check while decoding)."""
        if type(features) is not dict or not self.features:
            return None
        limit = self.max_category_length
        for name in self.features:
            value = features.get(name)
            if type(value) is str and len(value) > limit:
                return name
        return None


DEFAULT_LIMITS: Final = Limits()


@functools.lru_cache(maxsize=8)
def _typed_fields(max_id: int, max_value: int, max_segment: int) -> dict[str, Any]:
    pid = Annotated[str, msgspec.Meta(max_length=max_id)]
    value = Annotated[str, msgspec.Meta(max_length=max_value)] | int | float | bool
    segment = Annotated[str, msgspec.Meta(max_length=max_segment)]
    return {
        "prediction_id": pid,
        "model_version": segment,
        "prediction": value,
        "label": value | None,
        "segment": dict[str, segment] | None,
    }


@functools.lru_cache(maxsize=8)
def _decoders(
    limits: Limits,
) -> tuple[msgspec.json.Decoder[PredictionEvent], msgspec.json.Decoder[LabelEvent]]:
    types = limits.typed_fields()
    structs = []
    for base in (PredictionEvent, LabelEvent):
        fields: list[Any] = []
        for f in msgspec.structs.fields(base):
            if f.name in types:
                kind = types[f.name]
                if base is LabelEvent and f.name == "label":
                    kind = types["prediction"]  # required in a label
                fields.append((f.name, kind) if f.required else (f.name, kind, f.default))
        name = f"Limited{base.__name__}"
        structs.append(msgspec.defstruct(name, fields, bases=(base,), frozen=True, gc=False))
    return msgspec.json.Decoder(structs[0]), msgspec.json.Decoder(structs[1])
