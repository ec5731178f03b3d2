"""The predictions a model holds raw for its warmup reference, as columns.

While a model builds its drift reference from its first predictions (``reference_warmup``),
its stage 2 holds every prediction of its open panes raw: which of them the sample takes
is known only when their panes close, and the others are histogrammed once the reference
exists. At a high rate that is many predictions (``allowed_lateness`` + ``pane`` of event
time of them). Held one features mapping each, a prediction with 10 numeric features
costs some 700 bytes of Python objects (and the heap stays that large once they are
freed); a :class:`WarmChunk` holds a delta's predictions as arrays instead: the numeric
features as one float64 block with their codes (as :func:`~monitor.core.layout.
feature_terms` reads them), the other features' values as sent (equal strings shared),
event times, slice rows and scores as arrays, the predictions as sent. About 100 bytes a
prediction with 10 numeric features.

What a chunk gives back is what the mappings gave: the same feature terms
(:meth:`WarmChunk.terms_input`), the same columns for the reference
(:func:`sample_columns`: a number as its float, a missing value as None, a value of the
wrong type as :data:`MISMATCH`) and, for a checkpoint, those columns :func:`split` into
packed floats and the other values by position (:meth:`WarmChunk.splits`), which restore
the same chunk (:meth:`WarmChunk.of_splits`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, repeat
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from monitor.core.layout import (
    _NUMBER_TYPES,
    Layout,
    NumericBlock,
    _numeric_block,
    _numeric_column,
)

__all__ = [
    "MISMATCH",
    "Split",
    "WarmChunk",
    "chunk_of_rows",
    "concat",
    "drop_last",
    "sample_columns",
    "split",
    "unsplit",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: A column of values as ``(floats, at, values)``: the floats packed (NaN where another
#: value is), the other values' positions and those values; or, ``floats`` None, every
#: value in ``values`` (``at`` empty). See :func:`split`.
Split = tuple[F64 | None, I64, list[Any]]

#: What a numeric feature's value of the wrong type (text, a boolean) reads back as: a
#: value the reference and the feature terms count as a type mismatch, as they counted
#: the value sent.
MISMATCH: Final = "<not a number>"

_EMPTY: Final[Mapping[str, Any]] = {}
_NONE: Final = type(None)
#: The kinds of features mappings read by one C loop a feature (see :func:`_values`), and
#: of values whose strings are shared by one (see :func:`_shared`).
_DICTS: Final = frozenset((dict, _NONE))
_STR_NONE: Final = frozenset((str, _NONE))
_DICT_GET: Final[Callable[[Any, str], Any]] = dict.get
#: No positions (a :data:`Split` column without values apart from its floats).
_NOWHERE: Final[I64] = np.zeros(0, dtype=np.int64)


class WarmChunk:
    """Predictions of one model held raw, in input order, as columns.

    ``ts`` event times; ``slices`` ``(rows, k)`` slice rows (-1: none in that position);
    ``codes``/``numbers`` the block of the layout's numeric features ``(features, rows)``
    (codes 0 a number, 1 missing, 2 a mismatch; the number, NaN else); ``others`` each
    other feature's values as sent (None when absent); ``predictions`` as sent;
    ``scores`` the scores (NaN: none)."""

    __slots__ = ("codes", "numbers", "others", "predictions", "scores", "slices", "ts")

    def __init__(
        self,
        ts: F64,
        slices: I64,
        codes: npt.NDArray[np.int8],
        numbers: F64,
        others: dict[str, list[Any]],
        predictions: list[Any],
        scores: F64,
    ) -> None:
        self.ts = ts
        self.slices = slices
        self.codes = codes
        self.numbers = numbers
        self.others = others
        self.predictions = predictions
        self.scores = scores

    @classmethod
    def of(
        cls,
        layout: Layout,
        ts: Sequence[float],
        slices: Sequence[Sequence[int]] | I64,
        features: Sequence[Mapping[str, Any] | None],
        predictions: Sequence[Any],
        scores: Sequence[float],
    ) -> WarmChunk:
        """A chunk of rows given as their parts: ``features`` each prediction's features
        mapping (None: none), ``slices`` each one's slice rows."""
        n = len(ts)
        numeric = layout.numeric
        empty = _EMPTY
        kinds = set(map(type, features))
        if _NONE in kinds:
            filled = [f or empty for f in features]
        else:  # (the mappings themselves)
            filled = cast(list[Mapping[str, Any]], list(features))
        dicts = kinds <= _DICTS  # (the warmup's: decoded features, or none)
        if numeric and n:
            codes, numbers = _numbers(filled, numeric, dicts)
        else:
            codes, numbers = np.zeros((len(numeric), n), dtype=np.int8), np.zeros((len(numeric), n))
        strings: dict[str | None, str | None] = {}
        others = {
            name: _shared(_values(filled, name, dicts), strings)
            for name in layout.features
            if name not in numeric
        }
        k = len(slices[0]) if n else 0
        return cls(
            np.array(ts, dtype=np.float64),
            np.array(slices, dtype=np.int64).reshape(n, k),
            codes,
            numbers,
            others,
            _shared(list(predictions), strings),
            np.array(scores, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.ts)

    def __eq__(self, other: object) -> bool:
        """The same rows, bit for bit (NaN equal to NaN)."""
        if not isinstance(other, WarmChunk):
            return NotImplemented
        arrays = ("ts", "slices", "codes", "numbers", "scores")
        return all(
            getattr(self, a).shape == getattr(other, a).shape
            and getattr(self, a).tobytes() == getattr(other, a).tobytes()
            for a in arrays
        ) and (self.others, self.predictions) == (other.others, other.predictions)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def head(self, n: int) -> WarmChunk:
        """The first ``n`` rows (copies: the rest is freed with this chunk)."""
        return WarmChunk(
            self.ts[:n].copy(),
            self.slices[:n].copy(),
            self.codes[:, :n].copy(),
            self.numbers[:, :n].copy(),
            {name: values[:n] for name, values in self.others.items()},
            self.predictions[:n],
            self.scores[:n].copy(),
        )

    def terms_input(self) -> tuple[dict[str, list[Any]], NumericBlock]:
        """The ``columns`` and ``numeric`` arguments of
        :meth:`~monitor.core.layout.Layout.feature_terms` for these rows."""
        return self.others, (self.codes, self.numbers)

    def columns(self, layout: Layout) -> dict[str, list[Any]]:
        """Each feature's values over the rows, as the reference reads them (see the
        module's docstring)."""
        out: dict[str, list[Any]] = {}
        for i, name in enumerate(layout.numeric):
            values: list[Any] = self.numbers[i].tolist()
            codes = self.codes[i]
            for j in np.flatnonzero(codes).tolist():
                values[j] = None if codes[j] == 1 else MISMATCH
            out[name] = values
        out.update(self.others)
        return {name: out[name] for name in layout.features}

    def splits(self, layout: Layout) -> tuple[dict[str, Split], Split]:
        """Each of the layout's features' values as :meth:`columns` reads them, and the
        predictions, as :func:`split` columns (what a checkpoint stores): a numeric
        feature's numbers packed, its missing values (None) and mismatches
        (:data:`MISMATCH`) by position."""
        out: dict[str, Split] = {}
        for i, name in enumerate(layout.numeric):
            codes = self.codes[i]
            at = np.flatnonzero(codes)
            values = [None if c == 1 else MISMATCH for c in codes[at].tolist()]
            out[name] = (self.numbers[i], at, values)
        for name, others in self.others.items():
            out[name] = split(others)
        return {name: out[name] for name in layout.features}, split(self.predictions)

    @classmethod
    def of_splits(
        cls,
        layout: Layout,
        ts: F64,
        slices: I64,
        features: Mapping[str, Split],
        predictions: Split,
        scores: F64,
    ) -> WarmChunk:
        """The chunk :meth:`of` makes of rows whose features' values and predictions are
        the :func:`split` columns ``features`` (a feature of the layout absent there is
        missing in every row) and ``predictions``, ``slices`` ``(rows, k)``. Numbers are
        not read value by value: a numeric feature's packed floats are its block's row."""
        n = len(ts)
        numeric = layout.numeric
        codes = np.zeros((len(numeric), n), dtype=np.int8)
        numbers = np.empty((len(numeric), n))
        for i, name in enumerate(numeric):
            floats, at, values = features.get(name) or (None, _NOWHERE, [None] * n)
            if floats is None:
                codes[i], numbers[i] = _numeric_column(values)
                continue
            numbers[i] = floats
            if len(at):  # the values that are not floats, read as the mappings' were
                codes[i, at], numbers[i, at] = _numeric_column(values)
        strings: dict[str | None, str | None] = {}
        others = {
            name: _shared(unsplit(features[name]) if name in features else [None] * n, strings)
            for name in layout.features
            if name not in numeric
        }
        return cls(
            np.array(ts, dtype=np.float64),
            np.array(slices, dtype=np.int64),
            codes,
            numbers,
            others,
            _shared(unsplit(predictions), strings),
            np.array(scores, dtype=np.float64),
        )

    def rows(self, layout: Layout) -> list[tuple[Any, ...]]:
        """The rows as ``(ts, slices, features, prediction, score)``, the features as a
        mapping of the layout's features (a checkpoint stored these up to its format 4;
        :func:`chunk_of_rows` makes the same chunk of them)."""
        columns = self.columns(layout)
        names = list(columns)
        maps = [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        if not names:
            maps = [{} for _ in range(len(self))]
        return list(
            zip(
                self.ts.tolist(),
                map(tuple, self.slices.tolist()),
                maps,
                self.predictions,
                self.scores.tolist(),
                strict=True,
            )
        )


def chunk_of_rows(layout: Layout, rows: Sequence[tuple[Any, ...]]) -> WarmChunk:
    """A chunk of ``(ts, slices, features, prediction, score)`` rows."""
    if not rows:
        return WarmChunk.of(layout, [], [], [], [], [])
    ts, slices, features, predictions, scores = (list(c) for c in zip(*rows, strict=True))
    return WarmChunk.of(layout, ts, slices, features, predictions, scores)


def concat(chunks: Sequence[WarmChunk]) -> WarmChunk:
    """The rows of ``chunks`` (at least one) in order, as one chunk."""
    full = [c for c in chunks if len(c)] or list(chunks[:1])
    if len(full) == 1:
        return full[0]
    return WarmChunk(
        np.concatenate([c.ts for c in full]),
        np.concatenate([c.slices for c in full]),
        np.concatenate([c.codes for c in full], axis=1),
        np.concatenate([c.numbers for c in full], axis=1),
        {name: _joined([c.others[name] for c in full]) for name in full[0].others},
        _joined([c.predictions for c in full]),
        np.concatenate([c.scores for c in full]),
    )


def sample_columns(
    chunks: Iterable[WarmChunk], layout: Layout
) -> tuple[dict[str, list[Any]], list[Any], list[float]]:
    """A warmup sample's feature columns (see :meth:`WarmChunk.columns`), predictions and
    scores, the chunks' rows in order."""
    held = [c for c in chunks if len(c)]
    if not held:
        return {name: [] for name in layout.features}, [], []
    # The features of every chunk as one chunk's (their slices, which may differ in
    # width, are not read): each column read in one pass, not chunk by chunk.
    whole = held[0] if len(held) == 1 else WarmChunk(
        held[0].ts, held[0].slices,
        np.concatenate([c.codes for c in held], axis=1),
        np.concatenate([c.numbers for c in held], axis=1),
        {name: _joined([c.others[name] for c in held]) for name in held[0].others},
        [], held[0].scores,
    )  # fmt: skip
    columns = {name: list(values) for name, values in whole.columns(layout).items()}
    predictions = _joined([c.predictions for c in held])
    scores: list[float] = np.concatenate([c.scores for c in held]).tolist()
    return columns, predictions, scores


def split(values: list[Any]) -> Split:
    """``values`` as a :data:`Split` column: all floats (a numeric column) as one packed
    array; floats with some other values (None, strings, booleans, integers) as the packed
    floats and those by position; mostly other values as the values themselves. Each value
    comes back as it was (:func:`unsplit`), its type too."""
    kinds = set(map(type, values))
    if float not in kinds:
        return None, _NOWHERE, list(values)
    if len(kinds) == 1:
        return np.array(values, dtype=np.float64), _NOWHERE, []
    at = [i for i, v in enumerate(values) if v.__class__ is not float]
    if 2 * len(at) > len(values):
        return None, _NOWHERE, list(values)
    floats = np.array([v if v.__class__ is float else math.nan for v in values])
    return floats, np.array(at, dtype=np.int64), [values[i] for i in at]


def unsplit(column: Split) -> list[Any]:
    """The values of a :func:`split` column, as a new list."""
    floats, at, values = column
    if floats is None:
        return list(values)
    out: list[Any] = floats.tolist()
    for i, v in zip(at.tolist(), values, strict=True):
        out[i] = v
    return out


def drop_last(chunks: list[WarmChunk], k: int) -> None:
    """Take the last ``k`` rows off ``chunks`` (a buffer's list, in input order)."""
    while k > 0 and chunks:
        last = chunks[-1]
        if len(last) <= k:
            k -= len(last)
            chunks.pop()
        else:
            chunks[-1] = last.head(len(last) - k)
            k = 0


def _numbers(
    features: list[Mapping[str, Any]], names: list[str], dicts: bool
) -> tuple[npt.NDArray[np.int8], F64]:
    """The block of the numeric features ``names`` over ``features`` (see
    :func:`~monitor.core.layout._numeric_block`): when every mapping has every one of them
    as a number (the usual warmup), read in one pass from C (of dicts, ``dicts``: feature by
    feature, a C loop each, so that a stream with some missing reads them once; else row
    by row); else by feature (see :func:`_values`)."""
    if dicts:
        columns = [_values(features, name, True) for name in names]
        if all(set(map(type, c)) <= _NUMBER_TYPES for c in columns):
            numbers = np.array(columns, dtype=np.float64).reshape(len(names), len(features))
            return np.zeros(numbers.shape, dtype=np.int8), numbers
        return _numeric_block(columns)
    try:
        rows = list(map(operator.itemgetter(*names), features))
    except KeyError:  # a feature absent somewhere
        rows = []
    if rows:
        flat = chain.from_iterable(rows) if len(names) > 1 else rows
        if set(map(type, flat)) <= _NUMBER_TYPES:
            numbers = np.array(rows, dtype=np.float64).reshape(len(rows), len(names)).T.copy()
            return np.zeros(numbers.shape, dtype=np.int8), numbers
    return _numeric_block([_values(features, name, False) for name in names])


def _joined(lists: list[list[Any]]) -> list[Any]:
    """``lists`` end to end, as a new list (one C loop, no bytecode per item)."""
    return list(chain.from_iterable(lists))


def _values(features: list[Mapping[str, Any]], name: str, dicts: bool) -> list[Any]:
    """Each of ``features``' value of ``name`` (None where it has none): by one C loop when
    ``dicts`` (every mapping a dict), else by a ``get`` call each."""
    if dicts:
        return list(map(_DICT_GET, features, repeat(name)))
    return [f.get(name) for f in features]


def _shared(values: list[Any], strings: dict[str | None, str | None]) -> list[Any]:
    """``values`` with equal strings made one object (a feature's few categories, sent as a
    new string each time): by one C loop of ``strings.setdefault`` when they are all str
    or None (None, equal to nothing else, stays itself), else one by one."""
    kinds = set(map(type, values))
    if str not in kinds:
        return values
    if kinds <= _STR_NONE:
        return list(map(strings.setdefault, values, values))
    return [strings.setdefault(v, v) if v.__class__ is str else v for v in values]
