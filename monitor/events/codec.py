"""Bytes to validated events, or a reject with a reason.

Decoding is typed (msgspec) so a message is parsed and shape-checked in one C call;
what msgspec cannot express (event time, score range, classes of the model's task)
is checked here in Python. Nothing in this module raises on bad input: every
failure becomes a reason from :data:`REASONS`.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from monitor.config import ModelConfig
from monitor.events.values import ClassMatcher, canonical

__all__ = [
    "REASONS",
    "DecodeFailure",
    "LabelEvent",
    "PredictionEvent",
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
        raise DecodeFailure("not_json", f"not UTF-8: {exc.reason}") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        failure = _classify(exc)
        if failure.reason == "not_json" and _NON_FINITE.search(data):
            # Python's json.dumps writes these by default: name the value, not the syntax.
            failure = DecodeFailure("bad_value", "NaN and Infinity are not JSON numbers")
        raise failure from None


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
        self._classes = ClassMatcher.for_model(model) if model.task != "regression" else None
        # Raw class value -> code. 1, 1.0 and True hash alike and share a canonical class,
        # so one entry serves them all; invalid values (NaN, unknown classes) never enter.
        self._memo: dict[Value, float] = {}

    def code_many(self, values: list[Value]) -> tuple[F64, npt.NDArray[np.bool_]]:
        """Codes of many values at once and a mask of the valid ones (code NaN where not).

        Equal to :meth:`code` value by value; an invalid value is only flagged here, so the
        caller can take it through :meth:`code` for its reason.
        """
        n = len(values)
        if self.task == "regression":
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
        found = [memo.get(v) for v in values]
        if None in found:
            for i, value in enumerate(values):
                if found[i] is None:
                    try:
                        code = self.code(value, "value")
                    except DecodeFailure:
                        continue
                    found[i] = code
                    if len(memo) < self.MEMO_CAP:
                        memo[value] = code
        codes = np.array(found, dtype=np.float64)  # None (invalid) becomes NaN
        return codes, ~np.isnan(codes)

    def code(self, value: Value, field: str) -> float:
        """The numeric code of a prediction or label value; raise DecodeFailure if invalid."""
        if self.task == "regression":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DecodeFailure("bad_type", f"{field} must be a number for a regression model")
            return _finite(float(value), field)
        if isinstance(value, float) and not math.isfinite(value):
            raise DecodeFailure("bad_value", f"{field} is not finite")
        assert self._classes is not None
        index = self._classes.code(value)
        if index is None:
            name = canonical(value) or repr(value)
            raise DecodeFailure("unknown_class", f"{field} {name[:64]!r} is not a configured class")
        return float(index)


def decode_prediction(data: bytes | None, max_bytes: int) -> PredictionEvent:
    """Decode and shape-check a prediction message; raise DecodeFailure with the reason."""
    event: PredictionEvent = _decode(_PREDICTION_DECODER, data, max_bytes)
    if event.score is not None and not (0.0 <= event.score <= 1.0):
        raise DecodeFailure("bad_value", f"score {event.score!r} outside [0, 1]")
    if event.probabilities is not None:
        for value in event.probabilities.values():
            if not (0.0 <= value <= 1.0):
                raise DecodeFailure("bad_value", "probabilities must lie in [0, 1]")
    # NaN, Infinity (see _decode) and out-of-range numbers are rejected as "bad_value".
    return event


def decode_label(data: bytes | None, max_bytes: int) -> LabelEvent:
    """Decode and shape-check a label message; raise DecodeFailure with the reason."""
    event: LabelEvent = _decode(_LABEL_DECODER, data, max_bytes)
    return event
