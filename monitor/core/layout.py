"""What each column of a model's accumulator row holds, and how a batch of events adds to it.

Every quantity the monitor keeps is a sum, so a window, a partition or a replica is a
float64 array of shape ``(slices, width)`` and they merge by addition. A batch adds to
such an array through one ``np.bincount`` over ``(slice, column)`` pairs: each event
contributes a fixed number of ``(column, value)`` pairs (see :meth:`Layout.prediction_terms`
and :meth:`Layout.outcome_terms`), repeated for each slice it belongs to.

The first columns are the task's (the model's :class:`~monitor.core.tasks.base.Task`,
``layout.kind``, see :mod:`monitor.core.tasks.binary`, :mod:`~monitor.core.tasks.multiclass`
and :mod:`~monitor.core.tasks.regression`), which also turns events into their terms.
A regression model with a reference gets the histograms ``hist:__prediction__`` and
``hist:__label__`` of its outputs at the reference's quantiles, with their bin sums.

Models with ``features`` also get, per feature ``f``, the data-quality counts
``missing:f`` (absent or null), ``mismatch:f`` (wrong JSON type) and, numeric only,
``nonfinite:f`` (an infinite number), plus ``problem_n`` (predictions with any feature
problem). With a reference profile (:mod:`monitor.core.reference`) each feature adds its
histogram ``hist:f`` over the reference's columns: for a numeric feature underflow,
``B`` quantile bins and overflow, with ``bin_sum:f``, the sums of the values in each of
those columns (for the Wasserstein distance); for a categorical
one the top reference categories and ``other``, with ``unseen:f`` (values never seen in
the reference). :meth:`Layout.feature_terms` turns a batch's raw feature values into
terms with numpy (one ``searchsorted`` per numeric feature, one ``np.unique`` per
categorical one).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, pairwise
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from monitor import native
from monitor.core.reference import (
    LABEL,
    PREDICTION,
    ReferenceProfile,
    StackedBins,
    bin_numeric,
    pca_errors_many,
)
from monitor.core.tasks import Task, task_of
from monitor.core.tasks.binary import EPS, score_bin
from monitor.events.values import canonical, is_whole

if TYPE_CHECKING:
    from monitor.core.baseline import Baseline

__all__ = [
    "EPS",
    "GroupBlocks",
    "Layout",
    "NumericBlock",
    "Terms",
    "feature_terms_many",
    "scatter_add",
    "scatter_groups",
    "scatter_pane",
    "scatter_panes",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: The numeric features' values over a batch of events, ``(features, events)`` blocks: the
#: codes (0 number, 1 missing, 2 mismatch, see :func:`_numeric_column`) and the numbers
#: (NaN where none).
NumericBlock = tuple[npt.NDArray[np.int8], F64]

class Layout:
    """The columns of one model's accumulator rows; see the module docstring."""

    def __init__(
        self,
        task: str,
        n_classes: int = 2,
        score_bins: int = 200,
        features: Mapping[str, str] | None = None,
        profile: ReferenceProfile | None = None,
        reserve: tuple[int, int] | None = None,
    ) -> None:
        #: What the model predicts: the columns and terms of :attr:`kind` come first.
        self.kind: Task = task_of(task)
        self.task = task
        self.n_classes = n_classes
        self.bins = score_bins
        self.fields: dict[str, tuple[int, int]] = {}
        self._add(*self.kind.columns(n_classes, score_bins))
        self.features: dict[str, str] = dict(features or {})
        self.profile = profile
        #: Regression outputs with a quantile reference: ``__prediction__``, ``__label__``.
        self.outputs: dict[str, Any] = dict(profile.output_numeric) if profile else {}
        for name, ref in self.outputs.items():
            self._add((f"hist:{name}", ref.columns), (f"bin_sum:{name}", ref.columns))
        self.pca = profile.pca if profile is not None else None
        numeric = [n for n, k in self.features.items() if k == "numeric"]
        #: The numeric features, in order: the rows of a :data:`NumericBlock`.
        self.numeric = numeric
        if self.pca is not None or (reserve is not None and profile is None and len(numeric) > 1):
            self._add("pca_n", "pca_err_sum")
        #: Set by the engine once the layout exists (see :mod:`monitor.core.baseline`).
        self.baseline: Baseline | None = None
        #: Groups of equal reference mass the score histogram is merged into for PSI/JS.
        self.drift_bins = 20
        #: (drift_bins, max_categories) when a warmup profile will arrive later: the
        #: histogram columns are reserved at their largest widths now.
        self.reserve = reserve
        #: Each feature's data-quality columns (see :meth:`_quality_columns`), made once.
        self._quality: dict[str, I64] = {}
        for name, kind in self.features.items():
            self._add(f"missing:{name}", f"mismatch:{name}")
            if kind == "numeric":
                self._add(f"nonfinite:{name}")
            if profile is None and reserve is None:
                continue
            if kind == "numeric":
                width = profile.numeric[name].columns if profile else reserve[0] + 2  # type: ignore[index]
                self._add((f"hist:{name}", width), (f"bin_sum:{name}", width))
            else:
                width = profile.categorical[name].columns if profile else reserve[1] + 1  # type: ignore[index]
                self._add((f"hist:{name}", width), f"unseen:{name}")
        if self.features:
            self._add("problem_n")
        self.width = sum(w for _, w in self.fields.values())

    def _add(self, *names: str | tuple[str, int]) -> None:
        for item in names:
            name, width = (item, 1) if isinstance(item, str) else item
            start = sum(w for _, w in self.fields.values())
            self.fields[name] = (start, width)

    def col(self, name: str) -> int:
        """First column of a field."""
        return self.fields[name][0]

    def cols(self, name: str) -> slice:
        """All columns of a field, as a slice."""
        start, width = self.fields[name]
        return slice(start, start + width)

    def _bin(self, score: F64) -> I64:
        """Score bin of each score (see :func:`~monitor.core.tasks.binary.score_bin`).

        >>> Layout("binary", score_bins=100)._bin(np.array([0.29, 0.57, 0.58, 1.0])).tolist()
        [29, 57, 58, 99]
        """
        return score_bin(score, self.bins)

    def prediction_terms(
        self, pred: F64, score: F64, probs: F64 | None = None
    ) -> tuple[I64, F64]:
        """Columns and values that predictions add, each of shape ``(events, terms)``.

        ``pred`` holds class codes (binary 0/1, multiclass index) or regression values;
        ``score`` the positive-class probability, NaN where absent; ``probs`` (multiclass)
        the class probabilities, ``(events, K)``, rows of NaN where absent (each row is
        normalised to sum 1 over the configured classes, then calibrated by the baseline's
        per-class maps when it has them: :func:`~monitor.core.calibration.calibrate_probabilities`).
        """
        cols, vals = self.kind.prediction_terms(self, pred, score, probs)
        if PREDICTION in self.outputs:
            h_cols, h_vals = self._numeric_hist(PREDICTION, pred)
            cols, vals = np.hstack([cols, h_cols]), np.hstack([vals, h_vals])
        return cols, vals

    def _numeric_hist(self, name: str, x: F64) -> tuple[I64, F64]:
        """Histogram and bin-sum terms of finite values ``x`` over a numeric reference."""
        ref = self.outputs[name] if name in self.outputs else self.profile.numeric[name]  # type: ignore[union-attr]
        b = bin_numeric(ref.edges, x)
        cols = np.column_stack([self.col(f"hist:{name}") + b, self.col(f"bin_sum:{name}") + b])
        return cols.astype(np.int64), np.column_stack([np.ones(len(x)), x])

    def feature_terms(
        self,
        raw: Sequence[Mapping[str, Any] | None] | None,
        use: npt.NDArray[np.bool_] | None = None,
        profile_only: bool = False,
        *,
        columns: Mapping[str, Sequence[Any]] | None = None,
        numeric: NumericBlock | None = None,
        groups: Sequence[int] | None = None,
    ) -> tuple[I64, F64]:
        """Columns and values that predictions' feature objects add, ``(events, terms)``.

        ``raw`` holds each prediction's ``features`` object (None when it has none). Per
        feature: a data-quality term (missing / mismatch / non-finite, value 0 when the
        value is fine; none when every feature is numeric and every value fine, see
        :func:`_fine`) and, with a profile, a histogram term and a value-sum term (numeric)
        or an unseen count (categorical); then the PCA terms and one ``problem_n`` term.

        ``use`` (a mask over the events) limits the profile's terms (histograms, unseen,
        out-of-range, PCA) to some events: a warmup profile is built from the first panes,
        whose events it does not histogram. ``profile_only`` leaves out what does not
        depend on the profile, for events already added without one: their ``problem_n``
        term then counts only the problems the profile adds. ``columns`` (each feature's
        values over the events, see :func:`feature_columns`) may stand in for ``raw``;
        ``numeric`` (the block of the features :attr:`numeric`, see :func:`_numeric_block`)
        for the numeric features' columns.

        Every term of an event depends on that event only, but for the PCA's
        reconstruction error, which a call computes over the events it is given (one
        event's is a matrix-vector product, other numbers of them another product):
        ``groups`` (the sizes of consecutive groups of the events) gives each group's
        errors as that group's own call computes them, so that one call over many groups
        gives each group's own terms, bit for bit.

        >>> lay = Layout("regression", features={"x": "numeric"})
        >>> cols, vals = lay.feature_terms([{"x": 1.0}, {"x": "a"}, None])
        >>> [lay.fields_at(c) for c in cols[:, 0]], vals[:, 0].tolist()
        (['missing:x', 'mismatch:x', 'missing:x'], [0.0, 1.0, 1.0])
        """
        if columns is None:
            columns = feature_columns(raw or [], self.features)
        if raw is not None:
            e = len(raw)
        elif numeric is not None:
            e = numeric[1].shape[1]
        else:
            e = len(next(iter(columns.values()), ()))
        plan = self._numeric_plan()
        x = np.zeros((0, e))
        bad = np.zeros((0, e), dtype=np.int8)
        clean = False  # every numeric value a finite number (the usual poll)
        if plan.names:  # every numeric feature at once: (features, events) blocks
            if numeric is None:
                bad, x = _numeric_block([columns[n] for n in plan.names])
            else:
                bad, x = numeric
            # A finite sum: no NaN nor infinity among the values (a sum that overflows
            # takes the general path, which finds them all finite).
            clean = not bad.any() and math.isfinite(float(x.sum()))
        quality = not profile_only and not _fine(clean, plan, self.features)
        per_feature = (1 if quality else 0) + (2 if self.profile is not None else 0)
        terms = len(self.features) * per_feature + (2 if self.pca is not None else 0)
        terms += 1 if self.features else 0
        # One row per term, filled in place: (terms, events), handed back transposed.
        cols: I64 = np.empty((terms, e), dtype=np.int64)
        vals: F64 = np.empty((terms, e), dtype=np.float64)
        problem = np.zeros(e, dtype=bool)
        seen_problem = np.zeros(e, dtype=bool)  # without the profile
        every = use is None or bool(use.all())  # no event left out of the profile's terms
        if use is None:
            use = np.ones(e, dtype=bool)
        if plan.names:
            term = plan.term_rows(per_feature)
            if clean:  # nothing flagged: the same terms, with fewer passes over the block
                if quality:
                    cols[term(0)] = plan.quality[plan.quality_at]
                    vals[term(0)] = 0.0
                ok = use if every else np.broadcast_to(use, x.shape)
            else:
                bad = bad.copy()
                bad[(bad == 0) & ~np.isfinite(x)] = 3
                flagged = bad > 0
                seen_problem |= flagged.any(axis=0)
                if quality:
                    cols[term(0)] = np.take(plan.quality, bad + plan.quality_at)
                    vals[term(0)] = flagged
                ok = ~flagged & use
            if plan.bins is not None:
                all_in = clean and every  # every value binned as it is
                b = plan.bins(x if all_in else np.where(ok, x, plan.first_edge))
                edge = (b == 0) | (b == plan.top)
                problem |= edge.any(axis=0) if all_in else (ok & edge).any(axis=0)
                h = per_feature - 2
                cols[term(h)] = b + plan.hist
                vals[term(h)] = ok
                cols[term(h + 1)] = b + plan.bin_sum
                vals[term(h + 1)] = x if all_in else np.where(ok, x, 0.0)
        for i, (name, kind) in enumerate(self.features.items()):
            if kind == "numeric":
                continue
            j = i * per_feature
            bad, strings = _categorical_column(columns[name])
            flagged = bad > 0
            if quality:
                np.take(self._quality_columns(name, kind), bad, out=cols[j])
                vals[j] = flagged
                j += 1
            seen_problem |= flagged
            if self.profile is None:
                continue
            ok = ~flagged & use
            cref = self.profile.categorical[name]
            code = np.full(e, len(cref.categories), dtype=np.int64)
            unseen = np.zeros(e, dtype=bool)
            if ok.any():
                uniq, inverse = _distinct(strings if ok.all() else strings[ok])
                other = len(cref.categories)
                keys = [canonical(u) or u for u in uniq]  # the reference rules, per value
                lut = np.array([cref.index.get(k, other) for k in keys], dtype=np.int64)
                new = np.array([k not in cref.known for k in keys], dtype=bool)
                code[ok] = lut[inverse]
                unseen[ok] = new[inverse]
            np.add(code, self.col(f"hist:{name}"), out=cols[j])
            vals[j] = ok
            cols[j + 1] = self.col(f"unseen:{name}")
            vals[j + 1] = unseen
            problem |= unseen
        j = len(self.features) * per_feature
        if self.pca is not None:
            pca_x = x if plan.pca is None else x[plan.pca]  # (features, events)
            err: F64 = np.zeros(e)
            if clean and every:  # every event finite and used: no gather
                whole = use
                if e and groups is None:
                    err = self.pca.errors(pca_x)
            else:
                whole = np.isfinite(pca_x).all(axis=0) & use
                if whole.any() and groups is None:
                    err[whole] = self.pca.errors(pca_x[:, whole])
            if groups is not None:  # each group's own call
                start = 0
                for size in groups:
                    end = start + size
                    mine = whole[start:end]
                    if mine.all():
                        if size:
                            err[start:end] = self.pca.errors(pca_x[:, start:end])
                    elif mine.any():
                        err[start:end][mine] = self.pca.errors(pca_x[:, start:end][:, mine])
                    start = end
            cols[j] = self.col("pca_n")
            vals[j] = whole
            cols[j + 1] = self.col("pca_err_sum")
            vals[j + 1] = err
            j += 2
        if self.features:
            cols[j] = self.col("problem_n")
            vals[j] = problem & ~seen_problem if profile_only else problem | seen_problem
            j += 1
        assert j == terms
        return cols.T, vals.T

    def numeric_shape(self) -> tuple[Any, ...] | None:
        """What :func:`feature_terms_many` needs equal in layouts it takes together: the
        features, the columns their terms go to and the terms each has (None: a layout it
        does not take: no profile, or a feature not numeric). Made once per profile."""
        plan = self._numeric_plan()
        kept = self.__dict__.get("_numeric_shape")
        if kept is not None and kept[0] is plan:
            shape: tuple[Any, ...] | None = kept[1]
            return shape
        shape = None
        if (
            self.profile is not None
            and plan.bins is not None
            and len(plan.names) == len(self.features)
        ):
            pca = (self.col("pca_n"), self.col("pca_err_sum")) if self.pca is not None else None
            shape = (tuple(self.features), plan.quality.tobytes(), plan.hist.tobytes(),
                     plan.bin_sum.tobytes(), plan.top.tobytes(), plan._whole, pca,
                     self.col("problem_n"))  # fmt: skip
        self.__dict__["_numeric_shape"] = (plan, shape)
        return shape

    def _numeric_plan(self) -> _NumericPlan:
        """Where the numeric features' terms go (see :class:`_NumericPlan`), made once per
        profile: a warmup profile installed later makes it again."""
        kept = self.__dict__.get("_numeric")
        if kept is None or kept[0] is not self.profile:
            plan = _NumericPlan(self)
            kept = self.__dict__["_numeric"] = (self.profile, plan)
        return kept[1]

    def _quality_columns(self, name: str, kind: str) -> I64:
        """The data-quality column of each code of feature ``name``'s values (0 fine, 1
        missing, 2 mismatch, 3 non-finite; a fine value's term, of value 0, in the missing
        column), kept per layout: its columns never change."""
        dq = self._quality.get(name)
        if dq is None:
            dq = self._quality[name] = np.array(
                [
                    self.col(f"missing:{name}"),
                    self.col(f"missing:{name}"),
                    self.col(f"mismatch:{name}"),
                    self.col(f"nonfinite:{name}") if kind == "numeric" else 0,
                ],
                dtype=np.int64,
            )
        return dq

    def fields_at(self, column: int) -> str:
        """The name of the field that holds ``column`` (for messages and tests)."""
        for name, (start, width) in self.fields.items():
            if start <= column < start + width:
                return name
        raise IndexError(column)

    def outcome_terms(self, pred: F64, score: F64, label: F64) -> tuple[I64, F64]:
        """Columns and values that joined (prediction, label) pairs add, ``(events, terms)``."""
        cols, vals = self.kind.outcome_terms(self, pred, score, label)
        if LABEL in self.outputs:
            h_cols, h_vals = self._numeric_hist(LABEL, label)
            cols, vals = np.hstack([cols, h_cols]), np.hstack([vals, h_vals])
        return cols, vals


# Codes of a feature value: 0 fine, 1 missing (null or absent), 2 type mismatch, 3 non-finite.
_NUMERIC_KIND: dict[type, int] = {int: 0, float: 0, type(None): 1}
_CATEGORICAL_KIND: dict[type, int] = {str: 0, int: 0, bool: 0, type(None): 1}
_NUMBER = (int, float)
_NUMBER_TYPES = frozenset(_NUMBER)


def feature_terms_many(
    layouts: Sequence[Layout], blocks: Sequence[NumericBlock]
) -> list[tuple[I64, F64]] | None:
    """:meth:`Layout.feature_terms` of several models' predictions at once (``blocks``: each
    model's numeric block, every event used), for layouts of one
    :meth:`Layout.numeric_shape`: the same terms for each, made by one numpy call per kind
    of term over all the events instead of one per model (a poll of many models has a few
    dozen predictions of each). The histogram columns are every model's at once (each
    value over its own model's edges, in one compiled call when :mod:`monitor.native`
    runs); the PCA errors of every model at once when their PCAs have one shape over the
    same features (:func:`~monitor.core.reference.pca_errors_many`, each model's own
    errors), else model by model. None, with nothing made, unless every value is a finite number
    (the usual poll): each model's own call then takes its events."""
    plan = layouts[0]._numeric_plan()
    bad = np.concatenate([b[0] for b in blocks], axis=1)
    x = np.concatenate([b[1] for b in blocks], axis=1)
    # A finite sum: every value a finite number, so each model's block is clean (its own
    # call takes its events as they are: a model's sum that overflows takes the general
    # path there, which finds them all finite and makes the same terms).
    if bad.any() or not math.isfinite(float(x.sum())):
        return None
    sizes = [b[1].shape[1] for b in blocks]
    ends = list(accumulate(sizes))
    e = ends[-1]
    per_feature = 2  # every value fine: no quality term (see _fine)
    pca = layouts[0].pca is not None
    terms = len(plan.names) * per_feature + (2 if pca else 0) + 1
    cols: I64 = np.empty((terms, e), dtype=np.int64)
    vals: F64 = np.empty((terms, e), dtype=np.float64)
    term = plan.term_rows(per_feature)
    b = np.empty(x.shape, dtype=np.int64)
    kernels = native.kernels()
    if kernels is not None:  # every model's bins in one call, each value over its own edges
        plans = [layout._numeric_plan() for layout in layouts]
        counts = np.concatenate([p.edge_counts for p in plans])
        offsets = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        slots = np.repeat(np.arange(len(layouts), dtype=np.int64), sizes)
        kernels.bin_rows(np.concatenate([p.edges for p in plans]), offsets, slots, x, b)
    else:
        for layout, start, end in zip(layouts, [0, *ends[:-1]], ends, strict=True):
            bins = layout._numeric_plan().bins
            assert bins is not None  # numeric_shape: a profile
            b[:, start:end] = bins(x[:, start:end])
    problem = ((b == 0) | (b == plan.top)).any(axis=0)
    cols[term(0)] = b + plan.hist
    vals[term(0)] = 1.0
    cols[term(1)] = b + plan.bin_sum
    vals[term(1)] = x
    j = len(plan.names) * per_feature
    if pca:
        pcas = [layout.pca for layout in layouts if layout.pca is not None]
        rows = plan.pca
        if len(pcas) == len(layouts) and all(
            p.components.shape == pcas[0].components.shape and layout._numeric_plan().pca == rows
            for p, layout in zip(pcas, layouts, strict=True)
        ):  # one PCA shape over the same features: every model's errors at once
            err = pca_errors_many(pcas, x if rows is None else x[rows], sizes)
        else:
            err = np.empty(e)
            for layout, start, end in zip(layouts, [0, *ends[:-1]], ends, strict=True):
                assert layout.pca is not None  # numeric_shape: one of the shape
                mine = x[:, start:end]
                mine_rows = layout._numeric_plan().pca
                # (features, events), as the model's own call gives its PCA
                err[start:end] = layout.pca.errors(mine if mine_rows is None else mine[mine_rows])
        cols[j] = layouts[0].col("pca_n")
        vals[j] = 1.0
        cols[j + 1] = layouts[0].col("pca_err_sum")
        vals[j + 1] = err
        j += 2
    cols[j] = layouts[0].col("problem_n")
    vals[j] = problem
    cols_t, vals_t = cols.T, vals.T
    return [
        (cols_t[start:end], vals_t[start:end])
        for start, end in zip([0, *ends[:-1]], ends, strict=True)
    ]


def _fine(clean: bool, plan: _NumericPlan, features: Mapping[str, str]) -> bool:
    """Whether :meth:`Layout.feature_terms` leaves out the data-quality terms of events:
    when every feature is numeric and every value a finite number (``clean``), each such
    term adds 0.0 to its feature's ``missing`` column, which only ever holds a count
    (never -0.0): the sums are the same without them, with about a quarter fewer terms
    to scatter (the columns a pane touches are fewer, not its values)."""
    return clean and len(plan.names) == len(features)


def feature_columns(
    raw: Sequence[Mapping[str, Any] | None], names: Iterable[str]
) -> dict[str, list[Any]]:
    """Each named feature's values over events' ``features`` objects (None: absent)."""
    empty: Mapping[str, Any] = {}
    return {name: [(f or empty).get(name) for f in raw] for name in names}


def _numeric_column(values: Sequence[Any]) -> tuple[npt.NDArray[np.int8], F64]:
    """Codes (0 number, 1 missing, 2 mismatch: bool, string, ...) and the numbers (NaN else)."""
    n = len(values)
    if set(map(type, values)) <= _NUMBER_TYPES:  # the usual case: all numbers, one C pass
        return np.zeros(n, dtype=np.int8), np.array(values, dtype=np.float64)
    code = np.fromiter((_NUMERIC_KIND.get(v.__class__, 2) for v in values), np.int8, n)
    x = np.fromiter((v if v.__class__ in _NUMBER else math.nan for v in values), np.float64, n)
    return code, x


def _numeric_block(columns: Sequence[Sequence[Any]]) -> tuple[npt.NDArray[np.int8], F64]:
    """:func:`_numeric_column` of several features' values, as ``(features, events)``
    blocks: the usual all-numbers case in one conversion."""
    if all(set(map(type, values)) <= _NUMBER_TYPES for values in columns):
        x = np.array(columns, dtype=np.float64).reshape(len(columns), -1)
        return np.zeros(x.shape, dtype=np.int8), x
    codes, values = zip(*map(_numeric_column, columns), strict=True)
    return np.stack(codes), np.stack(values)


class _NumericPlan:
    """A layout's numeric features and where their terms go, as columns over the features
    (each ``(features, 1)``) for :meth:`Layout.feature_terms` to fill every numeric
    feature's terms with one numpy call per kind of term."""

    def __init__(self, layout: Layout) -> None:
        features = list(layout.features.items())
        #: The numeric features, in the layout's order.
        self.names = [n for n, k in features if k == "numeric"]
        #: Each numeric feature's place among all the features.
        self.at: I64 = np.array([i for i, (_, k) in enumerate(features) if k == "numeric"],
                                dtype=np.int64)  # fmt: skip
        #: The data-quality column of each code (see :meth:`Layout._quality_columns`), all
        #: features' in one table; ``quality_at`` the start of each feature's codes.
        self.quality: I64 = np.concatenate(
            [layout._quality_columns(n, "numeric") for n in self.names] or [np.zeros(0, np.int64)]
        )
        self.quality_at: I64 = 4 * np.arange(len(self.names), dtype=np.int64)[:, None]
        profile = layout.profile
        refs = [profile.numeric[n] for n in self.names] if profile is not None else []
        #: The histograms' bins (None without a profile), their first edges, top columns
        #: (overflow), and where each histogram and bin sum starts.
        self.bins = StackedBins([r.edges for r in refs]) if refs else None
        #: Every feature's edges end to end, and how many each has (the compiled bins of
        #: :func:`feature_terms_many`).
        self.edges: F64 = np.concatenate([np.asarray(r.edges, dtype=np.float64) for r in refs]
                                         or [np.zeros(0)])  # fmt: skip
        self.edge_counts: I64 = np.array([len(r.edges) for r in refs], dtype=np.int64)
        self.first_edge: F64 = np.array([r.edges[0] for r in refs])[:, None]
        self.top: I64 = np.array([r.columns - 1 for r in refs], dtype=np.int64)[:, None]
        self.hist: I64 = np.array([layout.col(f"hist:{n}") for n in self.names if refs],
                                  dtype=np.int64)[:, None]  # fmt: skip
        self.bin_sum: I64 = np.array([layout.col(f"bin_sum:{n}") for n in self.names if refs],
                                     dtype=np.int64)[:, None]  # fmt: skip
        self._whole = bool(np.array_equal(self.at, np.arange(len(self.names))))
        pca = layout.pca.features if layout.pca is not None else self.names
        #: The PCA's features among the numeric ones (None: all of them, in order).
        self.pca = None if list(pca) == self.names else [self.names.index(n) for n in pca]

    def term_rows(self, per_feature: int) -> Callable[[int], slice | I64]:
        """The term rows of each numeric feature's ``k``-th term, given the terms each
        feature has: a strided slice when the numeric features come first (no gather)."""
        n = len(self.names)
        if self._whole:
            return lambda k: slice(k, n * per_feature, per_feature)
        first = self.at * per_feature
        return lambda k: first + k


def _distinct(strings: npt.NDArray[Any]) -> tuple[list[str], I64]:
    """The distinct values of an object array of strings, in the order they first come
    (not sorted: a few categories over many events are found by hashing, not by a sort of
    the strings), and the place of each value among them: what ``np.unique(strings,
    return_inverse=True)`` tells, up to the order of the values.

    >>> _distinct(np.array(["b", "a", "b"], dtype=object))
    (['b', 'a'], array([0, 1, 0]))
    """
    values = strings.tolist()
    place: dict[str, int] = dict.fromkeys(values, 0)
    uniq = list(place)
    for i, value in enumerate(uniq):
        place[value] = i
    inverse = np.fromiter(map(place.__getitem__, values), np.int64, len(values))
    return uniq, inverse


def _categorical_column(values: Sequence[Any]) -> tuple[npt.NDArray[np.int8], npt.NDArray[Any]]:
    """Codes (0 value, 1 missing, 2 mismatch: a number that is not whole, a container) and
    the values as text ("" where not a value): strings as given, numbers and booleans in
    their canonical form (:func:`~monitor.events.values.canonical`)."""
    if set(map(type, values)) == {str}:  # the usual case: every value a string, one C pass
        return np.zeros(len(values), dtype=np.int8), np.array(values, dtype=object)
    kinds = [
        0 if v.__class__ is float and is_whole(v) else _CATEGORICAL_KIND.get(v.__class__, 2)
        for v in values
    ]
    strings = np.array(
        [
            v if v.__class__ is str else (canonical(v) or "") if k == 0 else ""
            for v, k in zip(values, kinds, strict=True)
        ],
        dtype=object,
    )
    code = np.array(kinds, dtype=np.int8)
    return code, strings


def scatter_pane(plain: F64, decay: Sequence[F64], rates: Sequence[float], end: float,
                 slices: I64, cols: I64, vals: F64, ts: F64) -> None:  # fmt: skip
    """Add events of one pane (``ts`` their event times) to its plain sums and to one
    decay block per rate, each event weighted ``exp(-rate * (end - t))`` with ``end`` the
    end of the pane: the sums an open pane holds, wherever they are kept."""
    scatter_add(plain, slices, cols, vals)
    if decay:
        age = end - ts
        for rate, target in zip(rates, decay, strict=True):
            scatter_add(target, slices, cols, vals, np.exp(-rate * age))


#: Cells of the (groups, slices, width) block :func:`_numpy_panes` fills at most at once.
_BLOCK_CELLS = 1 << 20


class Terms(NamedTuple):
    """Events' terms for :func:`scatter_panes`: each event's group, slice ids ``(events,
    k)``, columns and values ``(events, terms)`` and event time."""

    group: I64
    slices: I64
    cols: I64
    vals: F64
    ts: F64

    def of_groups(self, first: int, last: int) -> Terms:
        """The events of groups ``first`` to ``last - 1``, numbered from 0."""
        mine = (self.group >= first) & (self.group < last)
        return Terms(self.group[mine] - first, self.slices[mine], self.cols[mine],
                     self.vals[mine], self.ts[mine])  # fmt: skip


def scatter_panes(
    shape: tuple[int, int],
    rates: Sequence[float],
    pane: float,
    panes: I64,
    sets: Sequence[Terms],
) -> Iterator[tuple[int, I64, I64 | None, F64, list[F64]]]:
    """The open-pane sums of many (partition, pane) groups of events at once: for each
    group ``g`` (of pane ``panes[g]``), the slice rows the events of ``sets`` touch in it
    (ascending), the columns they touch (ascending; None when they touch every column of
    the width: the blocks are whole rows), and the sums of those cells, plain and
    one decay block per rate (each ``(len(rows), len(cols))``): bit for bit what
    :func:`scatter_pane` of each set in turn adds into zeros, on those rows and columns
    (every other cell stays zero). One pass over every group (over a block of groups at a
    time in numpy) instead of one per group, over the cells touched only: a poll of a
    sparse stream holds hundreds of groups of a few events each, each touching a few of
    the layout's columns. The compiled kernels (``monitor._native``, see
    :mod:`monitor.native`) make the pass, else :func:`_numpy_panes` (one ``bincount`` per
    block, per set too when two sets share a column), with the same sums. The blocks are
    fresh arrays (views of a few per call) that nothing else writes to: the caller may
    keep them.

    >>> terms = Terms(np.array([0, 0]), np.array([[0, 2], [0, -1]]), np.array([[1], [1]]),
    ...               np.array([[1.0], [3.0]]), np.array([1.0, 2.0]))
    >>> _, rows, cols, plain, _ = next(scatter_panes((4, 50), [], 10.0, np.array([0]), [terms]))
    >>> rows.tolist(), cols.tolist(), plain.tolist()
    ([0, 2], [1], [[4.0], [1.0]])
    """
    blocks = scatter_groups(shape, rates, pane, panes, sets)
    for g, one in enumerate(zip(*blocks, strict=True)):
        yield g, *one


class GroupBlocks(NamedTuple):
    """Groups' sums as :func:`scatter_groups` gives them: one item per group in each list,
    the groups in order (each list's items are what :func:`scatter_panes` gives a group)."""

    rows: list[I64]
    cols: list[I64 | None]
    plain: list[F64]
    decay: list[list[F64]]


def scatter_groups(shape: tuple[int, int], rates: Sequence[float], pane: float, panes: I64,
                   sets: Sequence[Terms]) -> GroupBlocks:  # fmt: skip
    """:func:`scatter_panes` of every group at once: each group's rows, columns and blocks
    in lists, in group order (a poll's hundreds of groups handed on as a few lists, not
    one tuple each)."""
    kernels = native.kernels()
    if kernels is not None:
        return _compiled_panes(kernels, shape, rates, pane, panes, sets)
    parts = list(_numpy_panes(shape, rates, pane, panes, sets))
    if len(parts) == 1:
        return parts[0]
    return GroupBlocks([x for p in parts for x in p.rows], [x for p in parts for x in p.cols],
                       [x for p in parts for x in p.plain], [x for p in parts for x in p.decay])


def _compiled_panes(
    kernels: ModuleType,
    shape: tuple[int, int],
    rates: Sequence[float],
    pane: float,
    panes: I64,
    sets: Sequence[Terms],
) -> GroupBlocks:
    """:func:`scatter_groups` by the compiled kernels (``pane_rows`` numbers the groups'
    rows, ``pane_columns`` their columns, ``pane_sums`` adds the terms in bincount's
    order, ``group_blocks`` makes :func:`_group_blocks`' lists of their views): numpy
    computes only each event's decay factor per rate, as :func:`_numpy_panes` does.
    Every group in one pass of each kernel: they hold no ``(groups, rows, width)`` block
    (the sums go in pieces of :data:`_PIECE_CELLS`), so the groups are not cut in blocks
    of :data:`_BLOCK_CELLS`, each a pass over every event (a sparse poll's 390 groups of
    a 7 x 980 layout were three: 2.1 against 1.7 ms a poll)."""
    rows, width = shape
    count = len(panes)
    sets = [Terms(np.ascontiguousarray(t.group, np.int64), np.ascontiguousarray(t.slices, np.int64),
                  np.ascontiguousarray(t.cols, np.int64), np.ascontiguousarray(t.vals, np.float64),
                  t.ts) for t in sets]  # fmt: skip
    if rates and sets:
        ages = np.concatenate([(panes[t.group] + 1) * pane - t.ts for t in sets])
        factors: F64 = np.exp(np.array([-rate for rate in rates])[:, None] * ages)
    else:
        factors = np.empty((len(rates), 0))
    terms = sum(t.cols.size for t in sets)
    number = np.empty(count * rows, dtype=np.int64)
    row = np.empty(count * rows, dtype=np.int64)
    cuts = np.empty(count + 1, dtype=np.int64)
    n = kernels.pane_rows(sets, rows, 0, count, number, row, cuts)
    cols: I64 | None = None
    if _sparse(terms, n * width):
        local = [np.empty_like(t.cols) for t in sets]  # each term's place among its group's
        cols = np.empty(min(terms, count * width), dtype=np.int64)
        ccuts = np.empty(count + 1, dtype=np.int64)
        kernels.pane_columns(sets, width, 0, count, local, cols, ccuts)
    else:  # whole rows: a term's place is its column
        local = [t.cols for t in sets]
        ccuts = np.arange(0, (count + 1) * width, width, dtype=np.int64)
    bounds, cbounds = cuts.tolist(), ccuts.tolist()
    at = _offsets(cuts, ccuts, 1 + len(rates))
    starts = _pieces(at, _PIECE_CELLS)
    # Blocks of the columns their groups touch (a sparse stream's poll: hundreds of small
    # blocks) are zeroed by pane_sums, each right before its terms are added; whole rows (a
    # dense stream's few large blocks) are numpy's zeros, fresh pages as often as not.
    sparse = cols is not None
    outs = [(np.empty if sparse else np.zeros)(b - a) for a, b in pairwise(starts)]
    kernels.pane_sums(sets, local, factors, number, cuts, ccuts, rows, width, 0, count, outs,
                      sparse)
    # the groups' views in one C loop (the lists :func:`_group_blocks` makes)
    return GroupBlocks(*kernels.group_blocks(row, bounds, cols, cbounds, at, starts, outs,
                                             1 + len(rates), width))  # fmt: skip


#: Cells of one array the compiled :func:`scatter_panes` fills at most (but a group's block
#: goes in one): a few hundred kB, which the allocator hands out again without the fresh
#: pages (and their faults) that a block of many MB gets each time.
_PIECE_CELLS = 1 << 16


#: A call's groups (a block's, in numpy) are summed over the columns each touches when their
#: terms are fewer than this share of the cells of their rows (else over whole rows: finding
#: the columns costs per term, and where the terms are that many, more than the zeros it
#: saves). At 0.1 a poll
#: of 100 models (800 groups of ~300 terms, ~265 distinct of 1,285 columns) was summed over
#: whole rows: five times the cells zeroed, written, scanned and handed on, memory traffic
#: that cost twice the time of the sparse sums (13 against 6 ms a poll, natively).
_SPARSE = 0.5


def _sparse(terms: int, cells: int) -> bool:
    """Whether :func:`scatter_panes` sums groups (a call's, or a block's in numpy) of
    ``terms`` terms (events by terms per event) and ``cells`` cells (the rows they touch by
    the width) over the columns each group touches (see :data:`_SPARSE`).

    >>> _sparse(30 * 200, 7 * 1000 * 100), _sparse(30 * 200, 1000 * 10)
    (True, False)
    """
    return terms < _SPARSE * cells


def _offsets(cuts: I64, ccuts: I64, kinds: int) -> list[int]:
    """Where each group's block starts among a call's cells (``cuts``, ``ccuts``: each
    group's first block row and first column, then how many), and how many cells there
    are: ``kinds`` (plain, then a decay per rate) of its rows by its columns each (numpy's
    loop: a poll of many models has hundreds of groups).

    >>> _offsets(np.array([0, 2, 3]), np.array([0, 4, 5]), 2)
    [0, 16, 18]
    """
    at = np.zeros(len(cuts), dtype=np.int64)
    np.cumsum(np.diff(cuts) * np.diff(ccuts) * kinds, out=at[1:])
    out: list[int] = at.tolist()
    return out


def _pieces(at: list[int], most: int) -> list[int]:
    """The first cell of each piece of whole groups' blocks (``at``: where each group's
    block starts, then how many cells there are) of at most ``most`` cells (a larger
    block has a piece of its own), and the number of cells: a piece ends before the first
    block that would take it past ``most`` cells (found by bisection, not group by group).

    >>> _pieces([0, 3, 3, 7, 8], 4)
    [0, 3, 7, 8]
    >>> _pieces([0, 9, 10, 11, 20], 4)
    [0, 9, 11, 20]
    """
    n = at[-1]
    starts = [0]
    if n > most:
        last = len(at) - 1  # groups
        s, i = 0, 0  # the piece's first cell, and a group at or before its first block
        while True:
            # the first group whose block ends past s + most
            i = bisect_right(at, s + most, i) - 1
            if i >= last:
                break
            if at[i] > s:  # the blocks before it are the piece
                s = at[i]
            elif i + 1 < last:  # a block of more than ``most`` cells alone
                s = at[i + 1]
                i += 1
            else:
                break
            starts.append(s)
    starts.append(n)
    return starts


def _group_blocks(
    row: I64,
    bounds: list[int],
    cols: I64 | None,
    cbounds: list[int],
    at: list[int],
    starts: list[int],
    outs: list[F64],
    rates: int,
    width: int,
) -> GroupBlocks:
    """A block of groups' rows, columns (None: all ``width`` of them, as every group's when
    ``cols`` is None) and blocks (views of ``outs``, the pieces that begin at cells
    ``starts``: a group's ``(1 + rates, rows, columns)`` block at cell ``at[i]``), as
    lists (group ``i``'s rows are ``row[bounds[i]:bounds[i + 1]]``, its columns
    ``cols[cbounds[i]:cbounds[i + 1]]``)."""
    kinds = 1 + rates
    rows = [row[a:b] for a, b in pairwise(bounds)]
    if cols is None:
        some: list[I64 | None] = [None] * len(rows)
    else:
        some = [None if d - c == width else cols[c:d] for c, d in pairwise(cbounds)]
    plain: list[F64] = []
    decay: list[list[F64]] = []
    keep, keep_decay = plain.append, decay.append
    spans = zip(bounds, bounds[1:], cbounds, cbounds[1:], at, at[1:], strict=False)  # (n + 1)
    if len(outs) == 1:  # one piece (the usual case): a block's cells are where it starts
        out = outs[0]
        for a, b, c, d, o, end in spans:
            block = out[o:end].reshape(kinds, b - a, d - c)
            keep(block[0])
            keep_decay([block[1]] if kinds == 2 else list(block[1:]))
        return GroupBlocks(rows, some, plain, decay)
    j, top = 0, len(outs) - 1
    out, base = outs[0], starts[0]
    for a, b, c, d, o, end in spans:
        if j < top and starts[j + 1] <= o < end:  # a block in a later piece
            while j < top and starts[j + 1] <= o:
                j += 1
            out, base = outs[j], starts[j]
        block = out[o - base : end - base].reshape(kinds, b - a, d - c)
        keep(block[0])
        keep_decay([block[1]] if kinds == 2 else list(block[1:]))
    return GroupBlocks(rows, some, plain, decay)


def _numpy_panes(
    shape: tuple[int, int],
    rates: Sequence[float],
    pane: float,
    panes: I64,
    sets: Sequence[Terms],
) -> Iterator[GroupBlocks]:
    """:func:`scatter_groups` in numpy, a block of groups at a time (the compiled kernels
    off or not built)."""
    rows, width = shape
    size = rows * width
    kinds = 1 + len(rates)
    per_block = max(1, _BLOCK_CELLS // max(size, 1))
    # Sets whose columns are disjoint (a poll's predictions and pairs: each column is one
    # or the other's) are summed in one bincount: a cell's terms all come from one set, in
    # its order, as in that set's own sum.
    seen = np.zeros(width, dtype=np.bool_)
    disjoint = True
    for t in sets:
        if seen[t.cols].any():
            disjoint = False
            break
        seen[t.cols] = True
    for first in range(0, len(panes), per_block):
        last = min(first + per_block, len(panes))
        count = last - first
        if first == 0 and last == len(panes):  # one block (the usual case): no gather
            parts = list(sets)
        else:
            parts = [t.of_groups(first, last) for t in sets]
        # The (group, row) pairs the events touch, numbered in order: a block row each.
        touched = np.zeros(count * rows + 1, dtype=np.bool_)  # the last: slices of -1
        pairs: list[tuple[I64, npt.NDArray[np.bool_] | None]] = []
        for t in parts:
            slices = t.slices
            present = slices >= 0
            whole = bool(present.all())  # every event in every slice position: no mask
            if not whole:
                held = present.any(axis=0)
                if not held.all():  # a position no event of the set has (no version): out
                    slices, present = slices[:, held], present[:, held]
                    whole = bool(present.all())
            pair = slices + (t.group * rows)[:, None]
            touched[pair if whole else np.where(present, pair, -1)] = True
            pairs.append((pair, None if whole else present))
        touched[-1] = False
        used = np.flatnonzero(touched)
        number = np.cumsum(touched) - 1
        owner, row = np.divmod(used, rows)
        cuts = np.searchsorted(owner, np.arange(count + 1))
        sparse = _sparse(sum(t.cols.size for t in parts), used.size * width)
        # The (group, column) pairs the events touch, in order: each group's columns
        # (every column of each group when they are not summed sparse).
        keys = [t.group[:, None] * width + t.cols for t in parts]
        if sparse:
            distinct = np.unique(np.concatenate([k.reshape(-1) for k in keys] or [number[:0]]))
        else:
            distinct = np.arange(count * width, dtype=np.int64)
        ccuts = np.searchsorted(distinct // width, np.arange(count + 1))
        bounds, cbounds = cuts.tolist(), ccuts.tolist()
        at = _offsets(cuts, ccuts, kinds)
        heights, widths = np.diff(cuts), np.diff(ccuts)
        start, span = np.array(at[:-1], dtype=np.int64), heights * widths
        spots: list[_Spots] = []
        for t, k, (pair, keep) in zip(parts, keys, pairs, strict=True):
            local = np.searchsorted(distinct, k) - ccuts[t.group][:, None]
            g = t.group
            base = start[g][:, None] + (number[pair] - cuts[g][:, None]) * widths[g][:, None]
            idx = base[:, :, None] + local[:, None, :]
            kept = None if keep is None else np.broadcast_to(keep[:, :, None], idx.shape)
            spots.append(_Spots(idx.reshape(-1) if kept is None else idx[kept], kept, idx.shape,
                                span[g]))  # fmt: skip
        # each set's values, then those weighted by each rate's decay (each kind's cells
        # ``span`` further on in its group's block)
        scaled: list[list[F64]] = []
        for t in parts:
            scaled.append([t.vals])
            if rates:
                age = (panes[t.group + first] + 1) * pane - t.ts
                scaled[-1] += [t.vals * np.exp(-rate * age)[:, None] for rate in rates]
        if not parts:
            out = np.zeros(at[-1])
        elif disjoint:
            out = _summed(spots, scaled, at[-1])
        else:
            out = _summed(spots[:1], scaled[:1], at[-1])
            for spot, vals in zip(spots[1:], scaled[1:], strict=True):
                out += _summed([spot], [vals], at[-1])
        yield _group_blocks(row, bounds, distinct % width if sparse else None, cbounds, at,
                            [0, at[-1]], [out], len(rates), width)  # fmt: skip


class _Spots(NamedTuple):
    """Where a set's terms go in a block: the cell of each plain term taken (``at``), which
    (event, slice position, term) places are taken (None: all), their shape, and how far
    each event's decayed terms are from its plain ones (``span``: its group's rows by
    columns)."""

    at: I64
    kept: npt.NDArray[np.bool_] | None
    shape: tuple[int, ...]
    span: I64


def _summed(spots: Sequence[_Spots], values: Sequence[list[F64]], cells: int) -> F64:
    """The sums of sets' terms ``values`` (per set, each kind's ``(events, terms)``, one
    per slice position) at their ``spots``, as ``cells`` flat cells: one bincount."""
    at, weights = [], []
    for spot, kinds in zip(spots, values, strict=True):
        for q, v in enumerate(kinds):
            spread = np.broadcast_to(v[:, None, :], spot.shape)
            weights.append(spread.reshape(-1) if spot.kept is None else spread[spot.kept])
            if q == 0:
                at.append(spot.at)
            else:
                shift = np.broadcast_to((q * spot.span)[:, None, None], spot.shape)
                at.append(spot.at + (shift.reshape(-1) if spot.kept is None else shift[spot.kept]))
    summed = np.bincount(np.concatenate(at), weights=np.concatenate(weights), minlength=cells)
    return summed.astype(np.float64, copy=False)


def scatter_add(target: F64, slices: I64, cols: I64, vals: F64, weights: F64 | None = None) -> None:
    """Add events' terms into ``target`` (shape ``(S, width)``) for every slice they belong to.

    ``slices`` is ``(events, k)`` with -1 where an event has no slice in that position;
    ``cols``/``vals`` are ``(events, terms)``; ``weights`` (``(events,)``) scales each event.

    >>> t = np.zeros((2, 3)); scatter_add(t, np.array([[0, 1], [0, -1]]),
    ...     np.array([[0, 2], [0, 2]]), np.array([[1.0, 5.0], [1.0, 7.0]])); t.tolist()
    [[2.0, 0.0, 12.0], [1.0, 0.0, 5.0]]
    """
    s_count, width = target.shape
    if weights is not None:
        vals = vals * weights[:, None]
    idx = slices[:, :, None] * width + cols[:, None, :]
    v = np.broadcast_to(vals[:, None, :], idx.shape)
    keep = np.broadcast_to((slices >= 0)[:, :, None], idx.shape)
    added = np.bincount(idx[keep], weights=v[keep], minlength=s_count * width)
    target += added.reshape(s_count, width)
