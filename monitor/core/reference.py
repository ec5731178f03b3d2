"""The reference profile of a model: how its features were distributed in validation.

Built once at start from the model's ``reference`` file: CSV with a header row (as
pandas' ``to_csv`` or Polars' ``write_csv`` write it), Parquet (``.parquet``/``.pq``;
needs ``pyarrow``), or JSON lines (one object a row, whose ``features`` object, when
present, is merged into the row, so captured prediction events work as is). Every
configured feature must be a column; the optional ``prediction``, ``score``, ``label``
(and ``probabilities``) columns give the baseline (:mod:`monitor.core.baseline`). A file
that is missing, unreadable, empty, or lacks a configured column raises
:class:`~monitor.config.ConfigError` naming the file, the column and the reason, so
``monitor check-config``, ``run`` and ``replay`` stop at start (exit 2); so does a
``label`` column that yields no usable label for a model with label metrics.

What the profile holds, per feature:

- numeric: ``edges``, the distinct reference quantiles at ``0, 1/B, ..., 1`` (``B`` =
  ``drift_bins``), so the first edge is the reference minimum and the last its maximum.
  A value falls in *underflow* (``x < edges[0]``), in interior bin ``i``
  (``edges[i] <= x < edges[i+1]``, the last one closed on the right) or in *overflow*
  (``x > edges[-1]``): ``len(edges) + 1`` columns in all. Also the reference counts in
  those columns (under- and overflow are 0 by construction), the sums of the values in
  each column (for the Wasserstein distance), mean and standard deviation.
- categorical: the ``max_categories`` most frequent reference values (ties by name) and an
  ``other`` bucket for the rest, with their reference counts; and the set of every
  reference value (what counts as *unseen*).

Values are read as the event codec would see them, through the rules of
:mod:`monitor.events.values`: numbers for numeric features (a boolean or text is a type
mismatch, an infinity non-finite; a NaN is missing, as pandas writes missing numbers),
canonical text for categorical ones (``True``, ``true`` and ``1`` are the category ``1``;
``1.0`` is ``1``; a number that is not whole is a type mismatch, as in the stream), and
class values matched to the model's classes by :class:`~monitor.events.values.ClassMatcher`.
A CSV cell has no type: it is a number if it parses as one (numeric features), text
otherwise, and empty or ``null``/``none``/``nan``/``na``/``n/a`` (any case) is missing.
Every value that cannot be used is counted by reason in :class:`ReferenceSummary`
(``monitor check-config`` prints it; the engine logs it at start).

Without a ``reference`` there is no profile: drift statistics and the out-of-range and
unseen rates are simply not emitted (missing and type-mismatch rates still are).

>>> p = profile_from_columns({"x": [0.0, 1.0, 2.0, 3.0], "c": ["a", "b", "a", None]},
...                          {"x": "numeric", "c": "categorical"}, bins=2)
>>> p.numeric["x"].edges.tolist(), p.numeric["x"].counts.tolist()
([0.0, 1.5, 3.0], [0.0, 2.0, 2.0, 0.0])
>>> p.categorical["c"].categories, p.categorical["c"].counts.tolist()
(('a', 'b'), [2.0, 1.0, 0.0])
"""

from __future__ import annotations

import csv
import json
import math
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import structlog

from monitor import native
from monitor.catalogue import (
    LABEL_SUBJECT,
    OUTPUT_SUBJECTS,
    PREDICTION_SUBJECT,
    SCORE_SUBJECT,
    TASK_METRICS,
)
from monitor.core.tasks import task_of
from monitor.errors import ConfigError
from monitor.events.values import ClassMatcher, canonical, cell_is_missing, is_whole

if TYPE_CHECKING:
    from monitor.config import ModelConfig

__all__ = [
    "LABEL",
    "OUTPUT_SUBJECTS",
    "PCA_VARIANCE",
    "PREDICTION",
    "SCORE",
    "CategoricalReference",
    "NumericReference",
    "PcaReference",
    "ReferenceProfile",
    "ReferenceSummary",
    "StackedBins",
    "bin_numeric",
    "load_profile",
    "output_codes",
    "print_summaries",
    "profile_from_columns",
    "summarize",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_log = structlog.get_logger(__name__)
#: (model, file) pairs whose unusable values were logged: once a process, though the
#: config check and the engine both load the reference.
_LOGGED: set[tuple[str, str]] = set()

#: Drift subjects of the model's outputs: ``psi:__score__@1h`` and the like. The names
#: cannot clash with a feature's (the config refuses features named like these).
SCORE = SCORE_SUBJECT
PREDICTION = PREDICTION_SUBJECT
LABEL = LABEL_SUBJECT
#: Columns of a reference file read besides the features (all optional).
_OUTPUT_COLUMNS = ("prediction", "score", "label", "probabilities")
#: Share of the reference variance the PCA components keep.
PCA_VARIANCE = 0.9


@dataclass(frozen=True, slots=True)
class NumericReference:
    """Bin edges, reference counts and value sums per column (underflow, bins, overflow),
    mean and sd."""

    edges: F64
    counts: F64
    sums: F64
    mean: float
    std: float

    @property
    def columns(self) -> int:
        """Histogram columns: interior bins plus underflow and overflow."""
        return len(self.edges) + 1


@dataclass(frozen=True, slots=True)
class CategoricalReference:
    """Top categories, reference counts per column (categories, then ``other``), all values."""

    categories: tuple[str, ...]
    counts: F64
    known: frozenset[str]
    index: dict[str, int] = field(default_factory=dict)

    @property
    def columns(self) -> int:
        """Histogram columns: the top categories and ``other``."""
        return len(self.categories) + 1


@dataclass(frozen=True, slots=True)
class PcaReference:
    """A PCA of the standardised numeric features of the reference rows.

    An event's reconstruction error is ``||z - V V^T z||^2`` with ``z`` its standardised
    numeric features and ``V`` the leading components that explain
    :data:`PCA_VARIANCE` of the variance; ``ref_error`` is the mean error over the
    reference rows, so the signal ``pca_error`` (window mean over reference mean) is
    about 1 without drift and grows when the joint distribution changes, even when
    every marginal stays the same (a broken correlation).
    """

    features: tuple[str, ...]
    mean: F64
    scale: F64
    components: F64  # (k, d)
    ref_error: float

    def errors(self, x: F64) -> F64:
        """Reconstruction error of each event of ``x``, given as ``(d, n)`` columns (one row
        per feature, finite values). Columns, not rows: every operation runs along the
        events (rows of ``d`` values each made numpy loop ``n`` times over ``d`` values,
        about six times slower), and an event's error does not depend on the others in
        ``x`` (the sums over features and components run in a fixed order per event)."""
        z = (x - self.mean[:, None]) / self.scale[:, None]
        out: F64 = (z * z).sum(axis=0)
        proj = self.components @ z
        out -= (proj * proj).sum(axis=0)
        return np.maximum(out, 0.0, out=out)


def pca_errors_many(pcas: Sequence[PcaReference], x: F64, sizes: Sequence[int]) -> F64:
    """:meth:`PcaReference.errors` of several models' events at once (a poll of many
    models has a few dozen of each): ``x`` holds ``sizes[i]`` columns of ``pcas[i]``'s
    events, model after model, every PCA of one number of features and of components.
    The standardisation, the sums of squares and the bound run once over every column;
    the projection is a call per model, on its own columns as its own call has them.
    Bit for bit each model's own call: each value and each column's sums are computed
    in the same order whatever the other columns, except numpy's sum over the features
    of a single column (pairwise, not in order), and one component's projection (a
    matrix-vector product): a model with one event, or PCAs of one component, are given
    their own calls."""
    starts = [0, *accumulate(sizes)]
    k = pcas[0].components.shape[0] if pcas else 0
    if k < 2:
        return np.concatenate([np.empty(0)] + [
            p.errors(x[:, a:b]) for p, a, b in zip(pcas, starts, starts[1:], strict=False)
        ])  # fmt: skip
    mean = np.repeat(np.stack([p.mean for p in pcas], axis=1), sizes, axis=1)
    scale = np.repeat(np.stack([p.scale for p in pcas], axis=1), sizes, axis=1)
    z = (x - mean) / scale
    out: F64 = (z * z).sum(axis=0)
    proj = np.zeros((k, x.shape[1]))  # a lone event's column stays 0
    alone: list[int] = []
    for i, p in enumerate(pcas):
        a, b = starts[i], starts[i + 1]
        if b - a == 1:
            alone.append(i)
        elif b > a:  # the model's standardised columns as its own call has them
            proj[:, a:b] = p.components @ np.ascontiguousarray(z[:, a:b])
    out -= (proj * proj).sum(axis=0)
    np.maximum(out, 0.0, out=out)
    for i in alone:
        a = starts[i]
        out[a : a + 1] = pcas[i].errors(x[:, a : a + 1])
    return out


@dataclass(frozen=True, slots=True)
class ReferenceSummary:
    """What was read from a reference file, for ``monitor check-config`` and the start log.

    ``features``: per configured feature, the count of usable values and of the unusable
    ones by reason (``missing``, ``type_mismatch``, ``non_finite``, the reasons the stream
    counts too). ``predictions`` and ``labels``: per class name, the rows whose value is that
    class (classification). ``unusable``: cells of the output columns that could not be
    used, by ``<column>: <reason>``. ``columns``: the output columns the file has.
    """

    source: str
    rows: int
    features: dict[str, dict[str, int]]
    columns: tuple[str, ...] = ()
    predictions: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    usable_labels: int = 0
    unusable: dict[str, int] = field(default_factory=dict)

    def lines(self, model: str) -> list[str]:
        """The summary as text, one line a topic (what ``check-config`` prints)."""
        out = [f"model {model!r}: reference {self.source}: {self.rows} rows"]
        for name, counts in self.features.items():
            bad = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "values" and v)
            bad = f" ({bad})" if bad else ""
            out.append(f"  feature {name}: {counts['values']} values{bad}")
        out.append("  columns: " + (", ".join(self.columns) if self.columns else "(features only)"))
        for title, counts in (("predictions", self.predictions), ("labels", self.labels)):
            if counts:
                out.append(f"  {title}: " + ", ".join(f"{k} = {v}" for k, v in counts.items()))
        if self.unusable:
            out.append(
                "  unusable: " + ", ".join(f"{k} {v}" for k, v in sorted(self.unusable.items()))
            )
        return out


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """The reference of one model; see the module docstring."""

    source: str
    rows: int
    numeric: dict[str, NumericReference]
    categorical: dict[str, CategoricalReference]
    #: Raw ``prediction``, ``score``, ``label`` and ``probabilities`` columns of the
    #: reference rows (None where absent; a column missing from the file is absent here).
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    #: Regression models: quantile references of the prediction and the label, keyed
    #: :data:`PREDICTION` and :data:`LABEL` (binned like numeric features).
    output_numeric: dict[str, NumericReference] = field(default_factory=dict)
    pca: PcaReference | None = None
    #: Per feature: usable values and unusable ones by reason (see :class:`ReferenceSummary`).
    quality: dict[str, dict[str, int]] = field(default_factory=dict)
    summary: ReferenceSummary | None = None


def bin_numeric(edges: F64, x: F64) -> I64:
    """Histogram column of each value: 0 underflow, ``1..B`` interior bins, ``B+1`` overflow.

    >>> bin_numeric(np.array([0.0, 1.0, 2.0]), np.array([-1.0, 0.0, 1.0, 2.0, 3.0])).tolist()
    [0, 1, 2, 2, 3]
    """
    idx = np.searchsorted(edges[1:-1], x, side="right") + 1
    idx[x < edges[0]] = 0
    idx[x > edges[-1]] = len(edges)
    return idx.astype(np.int64)


#: Events per feature up to which :class:`StackedBins` searches all the edges at once.
_STACKED_EVENTS = 256


class StackedBins:
    """:func:`bin_numeric` of several features at once, each over its own edges: row ``f``
    of the values goes over ``edges[f]``. One ``searchsorted`` into all the edges sorted
    together, and a table of how many of each feature's edges lie at or below each place
    of that order, stand for one ``searchsorted`` and its masks per feature (a poll of
    many models bins each model's few events: the calls, not the values, cost).

    Exact: a value's column is a count of edges at or below it, compared, never
    computed. Values must not be NaN (the caller puts unusable values on an edge).

    >>> bins = StackedBins([np.array([0.0, 1.0, 2.0]), np.array([5.0, 5.0])])
    >>> bins(np.array([[-1.0, 0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 5.0, 6.0, 5.0]])).tolist()
    [[0, 1, 2, 2, 3], [0, 1, 1, 2, 1]]
    """

    def __init__(self, edges: Sequence[F64]) -> None:
        #: Each feature's edges.
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges]
        values = np.concatenate(self.edges)
        tags = np.repeat(np.arange(len(edges)), [len(e) for e in edges])
        order = np.argsort(values, kind="stable")
        #: Every feature's edges, ascending.
        self.sorted: F64 = values[order]
        # below[f, p]: feature f's edges among the first p of the sorted edges.
        below = np.zeros((len(edges), len(values) + 1), dtype=np.int64)
        below[tags[order], np.arange(1, len(values) + 1)] = 1
        self.below: I64 = np.cumsum(below, axis=1)
        # A value on a feature's last edge (of two or more) is in the last interior bin,
        # not above it: one less than the edges at or below it.
        self.last: F64 = np.array([e[-1] if len(e) > 1 else math.nan for e in edges])[:, None]
        self.rows: I64 = np.arange(len(edges))[:, None]
        # Where each feature's edges are in ``values`` (the compiled kernel's layout), and
        # the kernel's model slot of each event (all 0: one model), grown as needed.
        self.values: F64 = values
        self.offsets: I64 = np.zeros(len(edges) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in self.edges], out=self.offsets[1:])
        self.slots: I64 = np.zeros(0, dtype=np.int64)

    def __call__(self, x: F64) -> I64:
        """The column of each value of ``x`` (``(features, events)``) in its row's histogram."""
        out: I64
        kernels = native.kernels()
        if kernels is not None and x.shape[0] == len(self.edges):  # one pass, no branches
            events = x.shape[1]
            if len(self.slots) < events:
                self.slots = np.zeros(max(events, 2 * len(self.slots)), dtype=np.int64)
            out = np.empty(x.shape, dtype=np.int64)
            kernels.bin_rows(self.values, self.offsets, self.slots[:events],
                             np.ascontiguousarray(x, np.float64), out)  # fmt: skip
            return out
        if x.shape[1] <= _STACKED_EVENTS:
            out = self.below[self.rows, np.searchsorted(self.sorted, x, side="right")]
        else:  # many events: a search in each feature's own edges takes fewer steps
            out = np.empty(x.shape, dtype=np.int64)
            for f, edges in enumerate(self.edges):
                out[f] = np.searchsorted(edges, x[f], side="right")
        out -= x == self.last
        return out


#: The types of a numeric column read as one array (not bool, an int's subclass).
_NUMBER_TYPES: Final = frozenset((int, float))


def _numeric_value(value: Any) -> tuple[float | None, str | None]:
    """A numeric feature's value and why it cannot be used (None when it can), as the
    stream's accumulators judge it: a number; None or NaN is missing; an infinity is
    non-finite; anything else (a boolean, text) a type mismatch."""
    cls = value.__class__
    if cls is float or cls is int or (isinstance(value, int | float) and cls is not bool):
        x = float(value)
        if math.isfinite(x):
            return x, None
        return None, "missing" if x != x else "non_finite"
    return None, "missing" if value is None else "type_mismatch"


def _category_value(value: Any) -> tuple[str | None, str | None]:
    """A categorical feature's canonical value and why it cannot be used (None when it can):
    None or NaN is missing; a number that is not whole is a type mismatch (as in the
    stream); text, booleans and whole numbers follow :func:`~monitor.events.values.canonical`."""
    if value is None:
        return None, "missing"
    if isinstance(value, float) and not isinstance(value, bool):
        if value != value:
            return None, "missing"
        if not is_whole(value):
            return None, "type_mismatch"
    key = canonical(value)
    return (key, None) if key is not None else (None, "type_mismatch")


def _count(reasons: Counter[str | None], total: int) -> dict[str, int]:
    out = {"values": int(reasons.get(None, 0))}
    for reason in ("missing", "type_mismatch", "non_finite"):
        out[reason] = int(reasons.get(reason, 0))
    out["missing"] += total - sum(reasons.values())  # rows shorter than the others
    return out


def _snap(edges: F64, sorted_x: F64) -> F64:
    """Distinct quantile edges, each replaced by the nearest reference value when it is
    that value up to rounding (interpolating between two equal values can give
    -1.9999999999999996 for -2, a bin of width 4e-16)."""
    i = np.clip(np.searchsorted(sorted_x, edges), 1, len(sorted_x) - 1)
    lo, hi = sorted_x[i - 1], sorted_x[i] if len(sorted_x) > 1 else sorted_x[i - 1]
    near = np.where(np.abs(edges - lo) <= np.abs(hi - edges), lo, hi)
    close = np.abs(edges - near) <= 8 * np.finfo(np.float64).eps * np.abs(near)
    out: F64 = np.unique(np.where(close, near, edges))
    return out


def _number_array(values: Sequence[Any]) -> F64 | None:
    """``values`` as float64 when every one is an int or a float (the usual column, a
    warmup's above all), else None: then each is judged by :func:`_numeric_value`."""
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return None
    return np.array(values, dtype=np.float64).reshape(len(values))


def _numbers(values: Sequence[Any]) -> F64:
    """``values`` as float64, each one :func:`_numeric_value` finds usable as its number
    and every other one not finite (a column of numbers only in one call, another one value
    by value)."""
    x = _number_array(values)
    if x is None:
        parsed = (_numeric_value(v)[0] for v in values)
        x = np.array([math.nan if u is None else u for u in parsed], dtype=np.float64)
    return x


def _numeric_parts(values: Sequence[Any]) -> tuple[F64, Counter[str | None]]:
    """A numeric column's usable numbers, in order, and how many values each reason
    counts (None: usable), as :func:`_numeric_value` judges each value."""
    x = _number_array(values)
    if x is None:
        parsed = [_numeric_value(v) for v in values]
        reasons = Counter(r for _, r in parsed)
        return np.array([v for v, r in parsed if r is None], dtype=np.float64), reasons
    usable = np.isfinite(x)
    n, missing = int(usable.sum()), int(np.isnan(x).sum())
    # ``+`` keeps the reasons that occur, as counting value by value does
    return x[usable], +Counter({None: n, "missing": missing, "non_finite": len(x) - n - missing})


def _numeric_reference(
    name: str, values: Sequence[Any], bins: int, source: str
) -> tuple[NumericReference, Counter[str | None]]:
    x, reasons = _numeric_parts(values)
    if len(x) == 0:
        raise ConfigError(source, [f"{source}: column {name!r}: no numeric values"])
    edges = _snap(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)), np.sort(x))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    column = bin_numeric(edges, x)
    counts = np.bincount(column, minlength=len(edges) + 1).astype(np.float64)
    sums = np.bincount(column, weights=x, minlength=len(edges) + 1).astype(np.float64)
    ref = NumericReference(edges, counts, sums, float(x.mean()), float(x.std()))
    return ref, reasons


def _categorical_reference(
    name: str, values: Sequence[Any], top: int, source: str
) -> tuple[CategoricalReference, Counter[str | None]]:
    reasons: Counter[str | None] = Counter()
    counter: Counter[str] = Counter()
    if set(map(type, values)) <= {str}:  # (the usual column) each distinct text judged once
        for value, n in Counter(values).items():
            key, reason = _category_value(value)
            reasons[reason] += n
            if key is not None:
                counter[key] += n
    else:
        parsed = [_category_value(v) for v in values]
        reasons = Counter(r for _, r in parsed)
        counter = Counter(k for k, _ in parsed if k is not None)
    if not counter:
        raise ConfigError(source, [f"{source}: column {name!r}: no values"])
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    cats = tuple(k for k, _ in ranked[:top])
    counts = [float(counter[c]) for c in cats] + [float(sum(n for _, n in ranked[top:]))]
    index = {c: i for i, c in enumerate(cats)}
    ref = CategoricalReference(cats, np.array(counts), frozenset(counter), index)
    return ref, reasons


def profile_from_columns(
    columns: Mapping[str, Sequence[Any]],
    features: Mapping[str, str],
    bins: int = 20,
    max_categories: int = 20,
    source: str = "<reference>",
    outputs: Mapping[str, Sequence[Any]] | None = None,
    regression: bool = False,
) -> ReferenceProfile:
    """A profile from column values (None = missing); raise ConfigError on an unusable one.

    ``outputs`` holds the optional ``prediction``/``score``/``label``/``probabilities``
    columns; for a ``regression`` model the prediction and label also get quantile
    references (:data:`PREDICTION`, :data:`LABEL`).
    """
    numeric: dict[str, NumericReference] = {}
    categorical: dict[str, CategoricalReference] = {}
    quality: dict[str, dict[str, int]] = {}
    outs = {k: list(v) for k, v in (outputs or {}).items()}
    rows = max([*(len(v) for v in columns.values()), *(len(v) for v in outs.values())], default=0)
    for name, kind in features.items():
        if name not in columns:
            raise ConfigError(source, [f"{source}: column {name!r}: missing from the reference"])
        if kind == "numeric":
            numeric[name], reasons = _numeric_reference(name, columns[name], bins, source)
        else:
            categorical[name], reasons = _categorical_reference(
                name, columns[name], max_categories, source
            )
        quality[name] = _count(reasons, rows)
    output_numeric: dict[str, NumericReference] = {}
    if regression:
        for column, key in (("prediction", PREDICTION), ("label", LABEL)):
            values = [_as_float(v) for v in outs.get(column, [])]
            if any(v is not None for v in values):
                output_numeric[key] = _numeric_reference(column, values, bins, source)[0]
    pca = _pca_reference([n for n, k in features.items() if k == "numeric"], columns)
    return ReferenceProfile(source, rows, numeric, categorical, outs, output_numeric, pca, quality)


def _as_float(value: Any) -> float | None:
    """A regression output as a float: a number, or text that parses as one (CSV)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return _numeric_value(value)[0]


def output_codes(
    model: ModelConfig, values: Sequence[Any]
) -> tuple[list[float | None], Counter[str]]:
    """Accumulator codes of a reference ``prediction`` or ``label`` column (None where a
    value cannot be used) and the count of unusable values by reason: ``missing``,
    ``unknown_class`` (a class the model does not list) or ``bad_value`` (regression:
    not a finite number)."""
    reasons: Counter[str] = Counter()
    codes: list[float | None] = []
    matcher = ClassMatcher.for_model(model) if task_of(model.task).has_classes else None
    for value in values:
        if value is None or (isinstance(value, float) and value != value):
            reasons["missing"] += 1
            codes.append(None)
            continue
        if matcher is None:
            x = _as_float(value) if not isinstance(value, bool) else None
            if x is None:
                reasons["bad_value"] += 1
            codes.append(x)
            continue
        code = matcher.code(value)
        if code is None:
            reasons["unknown_class"] += 1
        codes.append(None if code is None else float(code))
    return codes, reasons


def _is_score(value: Any) -> bool:
    x = None if isinstance(value, bool) else _as_float(value)
    return x is not None and 0.0 <= x <= 1.0


def has_label_metrics(model: ModelConfig) -> bool:
    """Whether the model computes metrics that need labels (its task's labelled ones)."""
    if model.metrics is None:
        return True
    return any(m in TASK_METRICS[model.task] for m in model.metrics)


def summarize(model: ModelConfig, profile: ReferenceProfile) -> ReferenceSummary:
    """The summary of ``model``'s reference (see :class:`ReferenceSummary`)."""
    outputs = profile.outputs
    columns = tuple(c for c in _OUTPUT_COLUMNS if c in outputs)
    unusable: dict[str, int] = {}
    per_class: dict[str, dict[str, int]] = {}
    usable_labels = 0
    for column in ("prediction", "label"):
        if column not in outputs:
            continue
        codes, reasons = output_codes(model, outputs[column])
        for reason, n in reasons.items():
            if not (column == "label" and reason == "missing"):  # unlabelled rows are fine
                unusable[f"{column}: {reason}"] = n
        if column == "label":
            usable_labels = sum(c is not None for c in codes)
        if task_of(model.task).has_classes:
            names = model.class_names
            counts = Counter(int(c) for c in codes if c is not None)
            shown = ["(other)" if n == "__negative__" else n for n in names]
            per_class[column] = {shown[i]: counts.get(i, 0) for i in range(len(names))}
            missing = reasons.get("missing", 0)
            if column == "label" and missing:
                per_class[column]["(none)"] = missing
    if "score" in outputs:
        bad = sum(_numeric_value(v)[1] != "missing" and not _is_score(v) for v in outputs["score"])
        if bad:
            unusable["score: bad_value"] = bad
    return ReferenceSummary(
        profile.source,
        profile.rows,
        dict(profile.quality),
        columns,
        per_class.get("prediction", {}),
        per_class.get("label", {}),
        usable_labels,
        unusable,
    )


def _pca_reference(names: list[str], columns: Mapping[str, Sequence[Any]]) -> PcaReference | None:
    """The PCA of the rows whose numeric features are all finite (None with < 2 features or
    too few such rows to fit one)."""
    if len(names) < 2:
        return None
    arrays = [_numbers(columns[n]) for n in names]
    if len({len(a) for a in arrays}) == 1:
        block = np.column_stack(arrays)
        x = block[np.isfinite(block).all(axis=1)]
    else:
        cols = [[_numeric_value(v)[0] for v in columns[n]] for n in names]
        x = np.array(
            [row for row in zip(*cols, strict=True) if all(v is not None for v in row)],
            dtype=np.float64,
        ).reshape(-1, len(names))
    if len(x) < max(20, 4 * len(names)):
        return None
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale <= 0] = 1.0
    z = (x - mean) / scale
    _, sv, vt = np.linalg.svd(z, full_matrices=False)
    var = sv * sv
    share = np.cumsum(var) / var.sum() if var.sum() > 0 else np.ones(len(var))
    k = min(int(np.searchsorted(share, PCA_VARIANCE) + 1), len(names) - 1)
    partial = PcaReference(tuple(names), mean, scale, vt[:k].copy(), 1.0)
    ref_error = float(partial.errors(np.ascontiguousarray(x.T)).mean())
    if ref_error <= 0:
        return None  # the features are exactly collinear: no error to compare against
    return PcaReference(tuple(names), mean, scale, vt[:k].copy(), ref_error)


def _csv_columns(
    path: Path, features: Mapping[str, str], outputs: dict[str, list[Any]]
) -> dict[str, list[Any]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for name in features:
            if name not in header:
                raise ConfigError(
                    str(path), [f"{path}: column {name!r}: not in the CSV header {header[:20]}"]
                )
        cols: dict[str, list[Any]] = {name: [] for name in features}
        outs: dict[str, list[Any]] = {
            name: [] for name in _OUTPUT_COLUMNS if name in header and name not in features
        }
        outputs.update(outs)
        for row in reader:
            for name, kind in features.items():
                cols[name].append(_csv_value(row.get(name), kind))
            for name, values in outs.items():
                values.append(_csv_value(row.get(name), "text"))
    return cols


def _csv_value(text: str | None, kind: str) -> Any:
    """A CSV cell as a typed value: None when missing, a float when a numeric feature's
    cell parses as a number, the text otherwise."""
    if text is None or cell_is_missing(text):
        return None
    if kind != "numeric":
        return text
    try:
        return float(text)
    except ValueError:
        return text  # not a number: a type mismatch


def _jsonl_columns(
    path: Path, features: Mapping[str, str], outputs: dict[str, list[Any]]
) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [] for name in features}
    outs: dict[str, list[Any]] = {name: [] for name in _OUTPUT_COLUMNS}
    present: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    str(path), [f"{path}: line {number}: not JSON: {exc.msg}"]
                ) from None
            if not isinstance(row, dict):
                raise ConfigError(str(path), [f"{path}: line {number}: not a JSON object"])
            nested = row.get("features")
            if isinstance(nested, dict):
                row = {**row, **nested}
            for name in features:
                if name in row:
                    present.add(name)
                cols[name].append(row.get(name))
            for name, values in outs.items():
                if name in row:
                    present.add(name)
                values.append(row.get(name))
    outputs.update({k: v for k, v in outs.items() if k in present})
    for name in features:
        if name not in present:
            raise ConfigError(str(path), [f"{path}: column {name!r}: in no row of the reference"])
    return cols


_PARQUET_MAGIC = b"PAR1"


def _parquet_columns(
    path: Path, features: Mapping[str, str], outputs: dict[str, list[Any]]
) -> dict[str, list[Any]]:
    """Columns of a Parquet file as Python values (pyarrow: None for nulls)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigError(
            str(path), [f"{path}: reading Parquet needs pyarrow (pip install pyarrow)"]
        ) from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), [f"{path}: bad Parquet: {exc}"]) from None
    header = table.column_names
    for name in features:
        if name not in header:
            raise ConfigError(
                str(path), [f"{path}: column {name!r}: not in the Parquet columns {header[:20]}"]
            )
    outs = [n for n in _OUTPUT_COLUMNS if n in header and n not in features]
    outputs.update({n: table.column(n).to_pylist() for n in outs})
    return {name: table.column(name).to_pylist() for name in features}


def _reader(path: Path) -> Any:
    """The column reader of a reference file, by suffix, else by its first bytes."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _parquet_columns
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl_columns
    if suffix == ".csv":
        return _csv_columns
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(_PARQUET_MAGIC):
        return _parquet_columns
    return _jsonl_columns if head.lstrip().startswith(b"{") else _csv_columns


#: Profiles read so far, by the file (path, size, CRC-32 of its bytes) and the model's
#: settings: ``monitor run`` and ``replay`` read a reference to check the config, then
#: again to build the engine, and the second read is free. Unusable files are not kept.
_PROFILES: dict[tuple[str, int, int, str], ReferenceProfile] = {}
#: Most profiles kept (``monitor tune`` builds engines for many settings).
PROFILES_KEPT = 16


def load_profile(model: ModelConfig) -> ReferenceProfile | None:
    """The profile of ``model`` from its ``reference`` file (None without one), with its
    :class:`ReferenceSummary`; unusable values are logged by reason.

    Raises ConfigError naming the file, the column and the reason when the file cannot be
    used, or when its ``label`` column yields no usable label for a model with label
    metrics (the baseline, the ``gap:*`` signals and the calibration would be empty).
    The same file, unchanged, for the same model settings gives an equal profile without
    being read again.
    """
    if not model.reference:
        return None
    try:
        content = Path(model.reference).read_bytes()  # far cheaper than parsing it
    except OSError:
        return _read_profile(model)  # raises the ConfigError that says why
    key = (
        str(Path(model.reference).resolve()),
        len(content),
        zlib.crc32(content),
        model.model_dump_json(exclude={"alerts"}),
    )
    found = _PROFILES.get(key)
    if found is None:
        found = _read_profile(model)
        assert found is not None
        while len(_PROFILES) >= PROFILES_KEPT:
            _PROFILES.pop(next(iter(_PROFILES)))
        _PROFILES[key] = found
    # each caller owns its copy's ``outputs`` (the engine clears them once used)
    return replace(found, outputs=dict(found.outputs))


def _read_profile(model: ModelConfig) -> ReferenceProfile | None:
    if not model.reference:
        return None
    path = Path(model.reference)
    name = str(path)
    features = dict(model.features)
    outputs: dict[str, list[Any]] = {}
    try:
        cols = _reader(path)(path, features, outputs)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(name, [f"{name}: model {model.name!r}: cannot read: {reason}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(name, [f"{name}: not UTF-8 text: {exc.reason}"]) from None
    except csv.Error as exc:
        raise ConfigError(name, [f"{name}: bad CSV: {exc}"]) from None
    if not any(cols.values()) and not any(outputs.values()):
        raise ConfigError(name, [f"{name}: model {model.name!r}: no rows"])
    profile = profile_from_columns(
        cols,
        features,
        model.drift_bins,
        model.max_categories,
        name,
        outputs,
        regression=not task_of(model.task).has_classes,
    )
    summary = summarize(model, profile)
    if "label" in outputs and summary.usable_labels == 0 and has_label_metrics(model):
        reasons = ", ".join(
            f"{k.split(': ')[1]} {v}" for k, v in summary.unusable.items() if k.startswith("label")
        )
        classes = ", ".join(repr(c) for c in model.class_names if not c.startswith("__"))
        raise ConfigError(
            name,
            [
                f"{name}: model {model.name!r}: column 'label': no usable label in "
                f"{summary.rows} rows ({reasons or 'all missing'}); classes: {classes or 'numbers'}"
            ],
        )
    problems = {
        f"{feature}: {reason}": n
        for feature, counts in summary.features.items()
        for reason, n in counts.items()
        if reason != "values" and n
    }
    problems.update(summary.unusable)
    if problems and (model.name, name) not in _LOGGED:
        _LOGGED.add((model.name, name))
        _log.warning(
            "reference_unusable_values",
            model=model.name,
            source=name,
            rows=summary.rows,
            counts=problems,
        )
    return replace(profile, summary=summary)


def print_summaries(models: Sequence[ModelConfig]) -> None:
    """Print the reference summary of every model with a reference file (``check-config``)."""
    for model in models:
        profile = load_profile(model)
        if profile is not None and profile.summary is not None:
            print("\n".join(profile.summary.lines(model.name)))
