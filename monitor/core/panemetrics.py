"""Every signal of a model's windows and slices at a pane close, computed at once.

At a pane close the engine holds, for each window, a ``(slices, width)`` array of sums. It
stacks them into one ``(windows * slices, width)`` array, and :func:`pane_signals` computes
each signal once over all of its rows: one numpy call handles every window and slice, and
signals of the same form go through together (every ratio of two columns in one division,
the realized and the label-free confusion counts and ROC AUCs as one stack, the histograms
of every drift subject side by side in one ``(rows, columns)`` array whose per-subject
sums are one matrix product). Sums along the score bins are matrix products too (numpy's
cumulative sum adds one element at a time). Every signal of a row depends on that row
only, and the products run one pane's rows at a time (:func:`_mm`), so the rows of many
panes computed in one call (a backlog, :mod:`monitor.core.model_stage`) get each pane's
values bit for bit. What depends only on the layout (column
indices, reference proportions and edges, the calibration map, the signal names and their
order) is worked out once per layout and kept in a :class:`PanePlan`, the reference
arrays also repeated for the row count of the last call. A pane close keeps the result as
one array (:class:`WindowValues`): the model's ``signal@window`` values are read from it
in one operation, under names made once per plan, and the per-window dicts of reports
(:class:`WindowMetrics`) are made when read.

The definitions are those of :func:`~monitor.core.metrics.compute_metrics`,
:mod:`monitor.core.drift` and :mod:`monitor.core.estimate`, and the values equal theirs on
each window's array up to the rounding of sums taken in another order (a relative 1e-15
or so; ``tests/core/test_pane_signals.py`` holds them to 1e-12).
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.config import GAP_METRICS
from monitor.core.calibration import midpoint_calibration
from monitor.core.drift import CDF_TOLERANCE, PSI_FLOOR, chi2_sf, mean_bins
from monitor.core.estimate import estimated_metrics
from monitor.core.layout import Layout
from monitor.core.metrics import average_precision, compute_metrics, mcc, task_metrics
from monitor.core.reference import SCORE, NumericReference
from monitor.core.tasks import BinaryTask

__all__ = [
    "PanePlan",
    "WindowMetrics",
    "WindowValues",
    "model_rows",
    "model_signals",
    "pane_signals",
    "plan_for",
    "stacked_plan",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Binary metrics the fused realized/label-free computation gives; the others of the task
#: (``specificity``, ``balanced_accuracy``, ``mcc``, ``pr_auc``) are computed when wanted.
_EXTRA_BINARY = ("specificity", "balanced_accuracy", "mcc", "pr_auc")


#: What a ratio is when its denominator is 0: accuracy (realized, expected) NaN, the
#: precision, recall and F1 0 (scikit-learn's ``zero_division=0``); the realized ROC AUC
#: and its binning error NaN, the expected ROC AUC 0 (as :mod:`monitor.core.estimate`).
#: As fills of the denominator (see :func:`_ratio`): NaN, or infinity for 0.
_EMPTY_RATES = np.array([np.nan, np.inf, np.inf, np.inf])[:, None, None]
_EMPTY_AUC = np.array([np.nan, np.inf, np.nan])[:, None]
#: The pairs each of those is over: realized, expected, realized.
_AUC_PAIRS = np.array([0, 1, 0])


def _ratio(num: F64, den: F64, fill: float | F64) -> F64:
    """``num / den`` where ``den > 0``; elsewhere the denominator is ``fill``: NaN for a
    NaN ratio, infinity for a ratio of 0 (the metrics' ``_div`` with ``empty`` NaN or 0,
    for numerators that are never negative, without a division by zero)."""
    out: F64 = num / np.where(den > 0, den, fill)
    return out


def _mm(a: F64, b: F64, block: int, out: F64 | None = None) -> F64:
    """``a @ b`` as one product per ``block`` rows of ``a`` (its row count is a multiple of
    ``block``), all in one call (numpy's stacked matrix product). BLAS picks its kernel,
    and with it the order of a row's additions, by the shape of the product: in blocks of
    a fixed number of rows a row's value depends on that shape only, so the rows of panes
    stacked together (a backlog closed in one call) get the values, bit for bit, that
    each pane's rows get alone, and a pane's whole-model rows (one block) the same values
    whether its slice rows were computed with them or not.

    ``b`` may also be one matrix per model ``(models, columns, n)`` where ``a`` stacks
    as many models' rows, each model's rows together (a multiple of ``block``; see
    :meth:`PanePlan.stacked`): each block of a model's rows is multiplied by its
    model's matrix, in a product of the same shape."""
    rows, columns = a.shape
    if out is None:
        out = np.empty((rows, b.shape[-1]))
    if b.ndim == 3:
        models = b.shape[0]
        blocks = rows // (models * block)
        np.matmul(a.reshape(models, blocks, block, columns), b[:, None],
                  out=out.reshape(models, blocks, block, -1))  # fmt: skip
    elif rows <= block:
        np.matmul(a, b, out=out)
    else:  # splitting the first axis is a view of both: the products land in ``out``
        blocks = rows // block
        np.matmul(a.reshape(blocks, block, columns), b, out=out.reshape(blocks, block, -1))
    return out


#: The floor of a proportion in the JS ratio ``p / m``: where ``p`` is 0 the ratio only
#: has to be finite (its term is ``0 * log(...)``), and elsewhere it changes neither
#: ``p`` nor ``m`` (a proportion of an accumulator row is far above it).
_JS_FLOOR = 1e-300

#: The smallest positive double: a chi2 column neither side uses has ``dev = 0``, and
#: ``0 / _TINY`` is 0, while every used column's total is above it.
_TINY = float(np.finfo(np.float64).smallest_subnormal)


@dataclass(frozen=True, slots=True)
class _Tiled:
    """The subjects' reference arrays repeated for ``rows`` rows, so that the drift
    statistics' element-wise operations run over whole arrays of one shape."""

    rows: int
    share: F64  # (rows, K)
    floor: F64  # (rows, K)
    share_safe: F64  # (rows, K): the share, 1 where it is 0
    no_share: F64  # (rows, K): 1 where the share is 0
    ref: F64  # (rows, chi2 columns): reference counts
    ref_n_col: F64  # (rows, chi2 columns): reference total of each column's subject

    @classmethod
    def of(cls, sub: _Subjects, rows: int) -> _Tiled:
        """The tiles of ``sub`` for ``rows`` rows."""
        k = sub.chi2_columns

        def tile(a: F64) -> F64:  # per row already in a stacked plan
            return np.ascontiguousarray(np.broadcast_to(a, (rows, a.shape[-1])))

        return cls(
            rows=rows,
            share=tile(sub.share),
            floor=tile(sub.floor),
            share_safe=tile(sub.share_safe),
            no_share=tile((sub.share == 0).astype(np.float64)),
            ref=tile(sub.ref[..., :k]),
            ref_n_col=tile(sub.ref_n_col[..., :k]),
        )

    def first(self, rows: int) -> _Tiled:
        """The first ``rows`` rows of each tile (views), for tiles whose rows are all alike."""
        return _Tiled(rows, self.share[:rows], self.floor[:rows], self.share_safe[:rows],
                      self.no_share[:rows], self.ref[:rows], self.ref_n_col[:rows])  # fmt: skip


def _psi_js(p: F64, tiles: _Tiled, member: F64, block: int) -> tuple[F64, F64]:
    """:func:`~monitor.core.drift.psi` and :func:`~monitor.core.drift.js_distance` of the
    proportions ``p`` (rows, K), every subject's columns side by side, against the
    reference proportions, summed per subject through ``member`` (K, S) in one product.
    The JS terms ``x log(x / m)`` are 0 where ``x`` is 0, as scipy's ``rel_entr``; the
    proportions' and the reference's terms are summed apart, as the definition does.
    ``block``: the rows of one pane (see :func:`_mm`)."""
    rows = p.shape[0]
    terms = np.empty((3, *p.shape))
    pf = np.maximum(p, PSI_FLOOR)
    np.divide(pf, tiles.floor, out=terms[0])
    pt = np.maximum(p, _JS_FLOOR)
    m = pt + tiles.share
    m *= 0.5
    np.divide(pt, m, out=terms[1])
    m += tiles.no_share  # where the share is 0 its term is 0 * log(1 / (m + 1))
    np.divide(tiles.share_safe, m, out=terms[2])
    np.log(terms, out=terms)
    pf -= tiles.floor
    terms[0] *= pf
    terms[1] *= p
    terms[2] *= tiles.share
    sums = _mm(terms.reshape(3 * rows, -1), member, block)
    psi_value: F64 = sums[:rows]
    div = sums[rows : 2 * rows] + sums[2 * rows :]
    div *= 0.5 / np.log(2.0)
    js_value: F64 = np.sqrt(np.maximum(div, 0.0, out=div), out=div)
    return psi_value, js_value


def _size(index: I64 | slice) -> int:
    """How many positions an index of :func:`_index` holds."""
    return index.stop - index.start if isinstance(index, slice) else len(index)


def _chi2(
    counts: F64,
    n: F64,
    sub: _Subjects,
    tiles: _Tiled,
    mask: npt.NDArray[np.bool_],
    block: int,
    mask_n: bool = True,
) -> F64:
    """:func:`~monitor.core.drift.chi2_pvalue` of the chi2 subjects' ``counts`` (rows,
    their columns side by side) with totals ``n`` (rows, subjects) against the reference,
    worked out where ``mask`` holds and ``n > 0`` only (NaN elsewhere; ``mask_n`` False:
    ``mask`` implies ``n > 0``; ``block``: the rows of one pane, see :func:`_mm`).

    In a 2 x C table both cells of a column are off their expected counts by the same
    ``d = (counts * ref_n - n * ref) / total``, so the statistic is
    ``(1 / n + 1 / ref_n) / total * sum((counts * ref_n - n * ref)**2 / col)`` over the
    columns used (``col = counts + ref > 0``): the same value with fewer operations, and
    without the cancellation of ``counts - expected``. With one column used the
    statistic is exactly 0, whose p-value is 1.
    """
    k = sub.chi2_columns
    rows, s = n.shape
    col = counts + tiles.ref
    parts = np.empty((2, rows, k))
    dev = parts[0]
    np.multiply(counts, tiles.ref_n_col, out=dev)
    dev -= n.take(sub.subject[:k], axis=1) * tiles.ref
    dev *= dev
    dev /= np.maximum(col, _TINY)
    np.sign(col, out=parts[1])  # 1 where the column is used
    sums = _mm(parts.reshape(2 * rows, k), sub.member[:k, :s], block)
    ref_n = sub.ref_n[..., :s]
    seen = mask & (n > 0) if mask_n else mask
    safe_n = np.where(seen, n, 1.0)
    stat = (1.0 / safe_n + 1.0 / ref_n) / (safe_n + ref_n) * sums[:rows]
    # Two columns: 1 degree of freedom (or 0 with a statistic of exactly 0, p-value 1).
    out: F64 = np.empty((rows, s))
    many, two = sub.many_columns, sub.two_columns
    if _size(many):
        dof = np.maximum(sums[rows:, many] - 1.0, 1.0)
        out[:, many] = chi2_sf(dof, stat[:, many])
    if _size(two):
        out[:, two] = chi2_sf(1.0, stat[:, two])
    np.copyto(out, np.nan, where=~seen)
    return out


@dataclass(frozen=True, slots=True)
class _ScoreReference:
    """The reference score histogram as the binary score drift reads it."""

    cdf: F64  # (B,): reference CDF after each bin
    sd: float | F64  # Wasserstein divisor: the reference score's standard deviation (or 1)


@dataclass(frozen=True, slots=True)
class _Run:
    """``subjects`` numeric subjects of ``columns`` columns each (see
    :func:`_cdf_differences`): their columns of the proportions, subject after subject (an
    int: consecutive from that one), and the positions of their boundaries (``columns -
    1`` each) among all the subjects' (a slice where consecutive)."""

    columns: int
    subjects: int
    cols: int | I64
    bounds: slice | I64

    def key(self) -> tuple[Any, ...]:
        """What the run is, for :meth:`PanePlan.shape`."""
        cols = self.cols if isinstance(self.cols, int) else self.cols.tobytes()
        bounds = self.bounds if isinstance(self.bounds, slice) else self.bounds.tobytes()
        return (self.columns, self.subjects, cols, str(bounds))


@dataclass(frozen=True, slots=True)
class _Numeric:
    """The window-independent side of :func:`~monitor.core.drift.ks_numeric` and
    :func:`~monitor.core.drift.wasserstein_binned` for the numeric subjects, whose
    histograms are the first ``size`` columns of the subjects' stack.

    The CDF differences at a subject's column boundaries are sums of its proportions plus
    ``offset``, each boundary summed from the side where the reference has less mass
    (``cumsum(p) - cdf_r`` up to the reference median, ``tail_r - tail(p)`` above it), as
    :func:`~monitor.core.drift.cdf_differences` sums them (see :func:`_cdf_differences`)."""

    size: int
    sums: I64  # (size,): the accumulator columns of the value sums
    runs: tuple[_Run, ...]  # the subjects by column count (see _cdf_differences)
    from_left: npt.NDArray[np.bool_]  # (NB,): the boundaries summed from the left
    offset: F64  # (NB,): the reference's side of each
    bounds: I64  # (F,): first boundary of each subject
    left: I64  # (NI,): the boundary at the lower edge of each interior bin
    inner: I64  # (NI,): the column of each interior bin
    upper: F64  # (NI,): upper edge of each interior bin
    width: F64  # (NI,): its width
    width_inf: F64  # (NI,): the same, infinite where too narrow for a mean (drift.mean_bins)
    in_bin: F64  # (NI,): reference mass of each bin left of x, integrated (G_r)
    bins: F64  # (NI, F): 1 where an interior bin belongs to a subject
    inner_starts: I64  # first interior bin of each subject that has one
    with_inner: I64  # the subjects that have one
    all_inner: bool  # every subject has one
    ends: I64  # (2 F,): each subject's underflow column, then each one's overflow column
    edge: F64  # (2 F,): their edges, the first and the last
    scale: F64  # (F,): the Wasserstein divisor


def _cdf_differences(p: F64, ref: _Numeric) -> F64:
    """Each numeric subject's sums of proportions ``p`` (rows, size) at its column
    boundaries: after the boundary's column, the sum of the columns up to it from the
    subject's first (where ``ref.from_left``), else minus the sum of the columns after it
    to the subject's last, each sum taken one column after the other from the left (the
    product of ``p`` with the subject's 0/1/-1 boundary matrix, as a matrix product's
    kernel adds up a row, over the columns that count only). A few numpy calls per
    column count of the subjects, each over every row and every subject of that count
    at once: no ``(size, boundaries)`` matrix (for a hundred models stacked, one per
    model: MBs read at every pane close)."""
    rows = p.shape[0]
    nb = ref.from_left.shape[-1]
    runs = ref.runs
    out: F64 | None = None
    alone = runs[0].bounds if len(runs) == 1 else None
    if not (isinstance(alone, slice) and alone == slice(0, nb)):
        out = np.empty((rows, nb))
    for run in runs:
        c, k = run.columns, run.subjects
        m = c - 1
        if isinstance(run.cols, int):
            g = p[:, run.cols : run.cols + k * c].reshape(rows, k, c)
        else:
            g = p.take(run.cols, axis=1).reshape(rows, k, c)
        # column by column, each column's (rows, subjects) cells one block: every step
        # below is one pass over contiguous cells
        by_col = np.ascontiguousarray(g.transpose(2, 0, 1))
        d = np.zeros((m, rows, k))
        for t in range(m):  # each boundary's next column from the right side, in order
            d[: m - t] -= by_col[1 + t :]
        left = np.empty((m, rows, k))
        left[0] = by_col[0]
        for j in range(1, m):  # the running sums from the left
            np.add(left[j - 1], by_col[j], out=left[j])
        sides = ref.from_left[..., run.bounds]  # per row in a stacked plan, else shared
        each = sides.reshape(-1, k, m).transpose(2, 0, 1)  # (m, rows or 1, k)
        np.copyto(d, left, where=each)
        if out is None:
            return np.ascontiguousarray(d.transpose(1, 2, 0)).reshape(rows, nb)
        out[:, run.bounds] = d.transpose(1, 2, 0).reshape(rows, k * m)
    assert out is not None  # (several runs)
    return out


def _ks_wasserstein(p: F64, p_mean: F64, ref: _Numeric, block: int) -> tuple[F64, F64]:
    """:func:`~monitor.core.drift.ks_numeric` and
    :func:`~monitor.core.drift.wasserstein_binned` (divided by the scale) of the numeric
    subjects' proportions ``p`` and value sums per count ``p_mean`` (rows, size) at once,
    sharing the CDF differences and the in-bin integrals (``block``: see :func:`_mm`)."""
    d = _cdf_differences(p, ref)
    d += ref.offset
    size = np.abs(d)
    np.copyto(d, 0.0, where=size <= CDF_TOLERANCE)  # rounding residue
    ks = np.maximum.reduceat(size, ref.bounds, axis=1)
    np.copyto(ks, 0.0, where=ks <= CDF_TOLERANCE)
    integral = p.take(ref.inner, axis=1)
    integral *= ref.upper
    integral -= p_mean.take(ref.inner, axis=1)
    np.maximum(integral, 0.0, out=integral)  # G_p
    integral += d.take(ref.left, axis=1) * ref.width
    integral -= ref.in_bin
    np.abs(integral, out=integral)
    # below the first edge, the integral of F_p; above the last, that of 1 - F_p
    tails = p.take(ref.ends, axis=1)
    tails *= ref.edge
    tails -= p_mean.take(ref.ends, axis=1)
    f = ref.scale.shape[-1]
    w: F64 = _mm(integral, ref.bins, block)
    w += tails[:, :f] - tails[:, f:]  # each subject's underflow less its overflow
    w /= ref.scale
    if len(ref.with_inner):
        integral /= ref.width_inf  # |mean of F_p - F_r| in each bin, 0 in an empty one
        mean = np.maximum.reduceat(integral, ref.inner_starts, axis=1)
        if ref.all_inner:
            np.maximum(ks, mean, out=ks)
        else:
            ks[:, ref.with_inner] = np.maximum(ks[:, ref.with_inner], mean)
    return ks, w


@dataclass(frozen=True, slots=True)
class _Subjects:
    """The drift subjects of a layout, their histograms side by side: ``K`` columns, the
    numeric subjects first, then the class subjects read from columns, then those
    computed from other columns (binary predicted and true classes, multiclass true
    classes), the score groups last (the one subject without a chi2 signal). The
    histograms are ``acc[:, plain]`` followed by ``acc[:, source] @ combine``."""

    names: tuple[str, ...]
    plain: I64  # accumulator columns of the histograms read as they are
    source: I64  # accumulator columns the other histograms are sums of
    combine: F64  # (len(source), K - len(plain)): those sums
    subject: I64  # (K,): the subject of each column
    member: F64  # (K, S): 1 where a column belongs to a subject
    ref: F64  # (K,): reference counts
    ref_n: F64  # (S,): reference totals
    ref_n_col: F64  # (K,): the reference total of each column's subject
    share: F64  # (K,): reference proportions
    floor: F64  # (K,): the same, at least PSI_FLOOR
    share_safe: F64  # (K,): the same, 1 where it is 0
    chi2_subjects: int  # subjects with a chi2 signal: all but the score
    chi2_columns: int  # their columns
    two_columns: I64 | slice  # the chi2 subjects of two columns (1 degree of freedom at most)
    many_columns: I64 | slice  # the others (both a slice where they are consecutive)
    numeric: _Numeric | None  # the first subjects' numeric side
    numeric_count: int  # how many subjects are numeric
    features: int  # the first ``features`` numeric subjects are features (out of range)


class PanePlan:
    """What :func:`pane_signals` needs of one layout, worked out once: the signal names in
    the order :func:`~monitor.core.metrics.compute_metrics` gives them (those ``keep``
    accepts), and the column indices and reference arrays of every group of signals."""

    def __init__(
        self,
        layout: Layout,
        class_names: tuple[str, ...],
        min_samples: int,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        # The layout itself is not kept (the plan cache is keyed by it, weakly); what it
        # was made from is, so that no other object can take their ids while it lives.
        self._layout = weakref.ref(layout)
        self._sources = (layout.profile, layout.baseline, layout.pca)
        self.class_names = class_names
        self.min_samples = min_samples
        self.key = _layout_key(layout)
        self.width = layout.width
        self._col = {name: start for name, (start, _) in layout.fields.items()}
        self._bins = layout.bins
        self._tiles: _Tiled | None = None  # the subjects' tiles for the last row count
        self._block_rows = 0  # the rows of one block of products in the current compute (_mm)
        self._prefix = _prefix_plan(layout.bins)
        probe = compute_metrics(layout, np.zeros((1, layout.width)), class_names, None, min_samples)
        wanted = [k for k in probe if keep is None or keep(k)]
        self.names: tuple[str, ...] = tuple(wanted)
        self._wanted = frozenset(wanted)
        self._rows: list[str] = []  # the signal of each row of the full result
        self._span: dict[str, slice] = {}  # the rows of each block of the full result
        self._ratios(layout)
        self._subjects = _subjects(layout)
        # The binary task's metrics, estimates and score drift have a fused kernel here
        # (:meth:`_binary`), held equal to BinaryTask's definitions; the other tasks'
        # rows are their own functions' values.
        self._fused = isinstance(layout.kind, BinaryTask)
        self._binary_extras = tuple(m for m in _EXTRA_BINARY if m in self._wanted)
        self._task_rows(layout, class_names)
        self._subject_rows()
        self._gaps(layout)
        where = {name: i for i, name in enumerate(self._rows)}
        missing = [name for name in self.names if name not in where]
        if missing:
            raise RuntimeError(f"pane signals without a row: {missing}")
        self._pick = np.array([where[name] for name in self.names], dtype=np.int64)
        self._labels: dict[
            tuple[tuple[str, ...], tuple[str, ...]], tuple[list[str], dict[str, float]]
        ] = {}
        self._shape: int | None = None  # see :meth:`shape`

    def fits(self, layout: Layout) -> bool:
        """Whether this is still the plan of ``layout`` (made for it, whose profile and
        baseline stayed the same)."""
        return self._layout() is layout and self.key == _layout_key(layout)

    def shape(self) -> int | None:
        """A number shared by the plans that can be computed together
        (:func:`stacked_plan`), those alike in everything but their references' values
        (the signals, the columns, the drift subjects' columns and bins); None when the
        plan computes alone (a task without the fused kernel, whose metrics read the
        layout)."""
        if not self._fused:
            return None
        if self._shape is None:
            sub = self._subjects
            parts: list[Any] = [
                self.names, tuple(self._rows), self.width, self._bins, self.min_samples, self._pca,
                self.class_names, self._binary_extras, tuple(self._col.items()),
                self._score is None, self._expected.shape,
            ]  # fmt: skip
            arrays = [self._ratio_num, self._ratio_den, self._raw, self._confusion,
                      self._gap_src, self._pick]  # fmt: skip
            if sub is not None:
                parts += [sub.names, sub.chi2_subjects, sub.chi2_columns, sub.numeric_count,
                          sub.features, str(sub.two_columns), str(sub.many_columns),
                          sub.combine.shape, sub.member.shape]  # fmt: skip
                arrays += [sub.plain, sub.source, sub.subject, sub.member]
                ref = sub.numeric
                if ref is not None:
                    parts += [ref.size, ref.all_inner, ref.from_left.shape, ref.bins.shape,
                              tuple(run.key() for run in ref.runs)]  # fmt: skip
                    arrays += [ref.sums, ref.bounds, ref.left, ref.inner, ref.bins,
                               ref.inner_starts, ref.with_inner, ref.ends]  # fmt: skip
            parts += [(a.dtype.str, a.shape, a.tobytes()) for a in arrays]
            self._shape = _SHAPES.setdefault(tuple(parts), len(_SHAPES))
        return self._shape

    def labels(self, windows: tuple[str, ...], extra: tuple[str, ...] = ()) -> list[str]:
        """``signal@window`` for every window and, in each, every name then every one of
        ``extra``: the keys of a pane's model-level signals, made once per windows."""
        return self.keyed(windows, extra)[0]

    def keyed(self, windows: tuple[str, ...], extra: tuple[str, ...] = ()
               ) -> tuple[list[str], dict[str, float]]:  # fmt: skip
        """:meth:`labels` and a dict of those keys in that order (values 0.0): a pane's
        signals are a copy of it with the values written in, which is the dict the keys
        zipped with the values make, without the dict growing key by key."""
        key = (windows, extra)
        out = self._labels.get(key)
        if out is None:
            labels = [f"{name}@{window}" for window in windows for name in (*self.names, *extra)]
            out = self._labels[key] = (labels, dict.fromkeys(labels, 0.0))
        return out

    # ------------------------------------------------------------------ plan
    def _ratios(self, layout: Layout) -> None:
        """Signals that are one column over another, NaN when the denominator is 0."""
        col = layout.col
        pairs: list[tuple[str, int, int]] = [("label_coverage", col("n"), col("pred_n"))]
        pairs += layout.kind.ratio_pairs(layout)
        profile = layout.profile
        for name, kind in layout.features.items():
            pairs.append((f"missing_rate:{name}", col(f"missing:{name}"), col("pred_n")))
            pairs.append((f"type_mismatch_rate:{name}", col(f"mismatch:{name}"), col("pred_n")))
            if kind == "numeric":
                pairs.append((f"nan_rate:{name}", col(f"nonfinite:{name}"), col("pred_n")))
            elif profile is not None:
                pairs.append((f"unseen_rate:{name}", col(f"unseen:{name}"), col("pred_n")))
        if layout.features:
            pairs.append(("problem_rate", col("problem_n"), col("pred_n")))
        self._pca = profile is not None and profile.pca is not None
        #: the reference's mean PCA error, what ``pca_error`` is a ratio to
        self._pca_error: float | F64 = 1.0
        if profile is not None and profile.pca is not None:
            self._pca_error = profile.pca.ref_error
            pairs.append(("pca_error", col("pca_err_sum"), col("pca_n")))
        self._ratio_num = np.array([p[1] for p in pairs], dtype=np.int64)
        self._ratio_den = np.array([p[2] for p in pairs], dtype=np.int64)
        self._block("ratio", [p[0] for p in pairs])
        self._raw = np.array([col("pred_n"), col("n")], dtype=np.int64)
        self._block("raw", ["prediction_count", "label_count"])

    @property
    def layout(self) -> Layout:
        """The layout the plan is for."""
        layout = self._layout()
        if layout is None:
            raise RuntimeError("the layout of this plan is gone")
        return layout

    def _block(self, block: str, names: list[str]) -> None:
        """Rows ``names`` of the full result, written together by ``block``."""
        self._span[block] = slice(len(self._rows), len(self._rows) + len(names))
        self._rows += names

    def _task_rows(self, layout: Layout, class_names: tuple[str, ...]) -> None:
        """The task's rows: binary, the realized and label-free rates and ROC AUCs (and
        the other binary metrics wanted); otherwise those of
        :func:`~monitor.core.metrics.task_metrics` and the estimates."""
        if self._fused:
            baseline = layout.baseline
            c = baseline.calibration if baseline is not None else None
            self._calibration = midpoint_calibration(layout.bins) if c is None else c
            self._cc = np.stack([self._calibration, 1.0 - self._calibration], axis=1)
            self._negative = self._cc[:, 1]  # each bin's share of negatives
            # E[TP], E[FP], E[TN], E[FN] from score_hist and pp_hist side by side: the
            # predicted positives (pp) and negatives (score_hist - pp) times c and 1 - c
            self._expected = np.zeros((2 * layout.bins, 4))
            self._expected[: layout.bins, 2] = self._cc[:, 1]
            self._expected[: layout.bins, 3] = self._cc[:, 0]
            self._expected[layout.bins :] = self._cc @ np.array(
                [[1.0, 0.0, 0.0, -1.0], [0.0, 1.0, -1.0, 0.0]]
            )
            self._confusion = np.array([layout.col(c) for c in ("tp", "fp", "tn", "fn")])
            rates = [
                [name, f"estimated_{name}"] for name in ("accuracy", "precision", "recall", "f1")
            ]
            self._block("rates", [name for pair in rates for name in pair])
            self._block("auc", ["roc_auc", "estimated_roc_auc", "roc_auc_bin_error"])
            self._block("extra", list(self._binary_extras))
            return
        zero = np.zeros((1, layout.width))
        self._task_names = tuple(task_metrics(layout, zero, class_names, None))
        self._estimate_names = tuple(estimated_metrics(layout, zero, self.min_samples))
        self._block("task", [n for n in self._task_names if n != "prediction_count"])
        self._block("estimates", list(self._estimate_names))

    def _subject_rows(self) -> None:
        """The drift rows: psi and js of every subject, chi2 of all but the score, ks and
        wasserstein of the numeric ones, the features' out-of-range rates, the binary
        score's ks and wasserstein."""
        self._score = self._score_plan()
        sub = self._subjects
        if sub is None:
            return
        self._block("stats", [f"{stat}:{name}" for stat in ("psi", "js") for name in sub.names])
        self._block("chi2", [f"chi2:{name}" for name in sub.names[: sub.chi2_subjects]])
        numeric = sub.names[: sub.numeric_count]
        self._block(
            "numeric", [f"{stat}:{name}" for stat in ("ks", "wasserstein") for name in numeric]
        )
        self._block("outside", [f"out_of_range_rate:{name}" for name in numeric[: sub.features]])
        if self._score is not None:
            self._block("score", [f"ks:{SCORE}", f"wasserstein:{SCORE}"])

    def _score_plan(self) -> _ScoreReference | None:
        """Binary output drift of the score over its bins (None without a reference
        score): what :func:`~monitor.core.drift.output_drift` derives from the reference."""
        layout = self.layout
        baseline = layout.baseline
        field = layout.kind.score_field
        if not self._fused or field is None or baseline is None:
            return None
        ref_hist = baseline.row[layout.cols(field)]
        if ref_hist.sum() <= 0:
            return None
        r = ref_hist / ref_hist.sum()
        mid = (np.arange(layout.bins) + 0.5) / layout.bins
        sd = float(np.sqrt(max((r * mid * mid).sum() - (r * mid).sum() ** 2, 0.0)))
        cdf = np.cumsum(r)
        return _ScoreReference(cdf=cdf, sd=sd if sd > 0 else 1.0)

    def _gaps(self, layout: Layout) -> None:
        """``gap:<metric>`` rows: the window's value less the reference's."""
        baseline = layout.baseline
        src: list[int] = []
        ref: list[float] = []
        names: list[str] = []
        if baseline is not None:
            rows = {name: i for i, name in enumerate(self._rows)}
            for name, value in baseline.metrics.items():
                if name.split(":")[0] in GAP_METRICS and name in rows:
                    src.append(rows[name])
                    ref.append(value)
                    names.append(f"gap:{name}")
        self._block("gaps", names)
        self._gap_src = np.array(src, dtype=np.int64)
        self._gap_ref = np.array(ref)[:, None]

    # ------------------------------------------------------------------ compute
    def compute(
        self, acc: F64, sample_count: F64 | None = None, block: int | None = None
    ) -> F64:
        """The plan's signals over the rows of ``acc`` (the stacked windows), an array
        ``(len(names), rows)``: each block of signals writes its rows of one result, then
        the wanted rows are picked in the names' order.

        ``block`` (default: every row) is the rows of one pane where ``acc`` stacks the
        rows of several panes (a multiple of it): each row's values are then the same,
        bit for bit, as when its pane's rows are computed alone (see :func:`_mm`). A pane
        close's blocks are as many rows as the model has windows: each pane's whole-model
        rows are one."""
        n_rows = acc.shape[0]
        self._block_rows = n_rows if block is None else block
        full = np.empty((len(self._rows), n_rows))
        span = self._span
        self._ratio_block(acc, full[span["ratio"]])
        full[span["raw"]] = acc.take(self._raw, axis=1).T
        if self._fused:
            self._binary(acc, full)
        else:
            values = task_metrics(self.layout, acc, self.class_names, sample_count)
            values.pop("prediction_count")
            values.update(estimated_metrics(self.layout, acc, self.min_samples))
            full[span["task"].start : span["estimates"].stop] = np.stack(list(values.values()))
        if self._subjects is not None:
            self._drift(acc, self._subjects, full)
        if len(self._gap_src):
            full[span["gaps"]] = full[self._gap_src] - self._gap_ref
        out: F64 = full[self._pick]
        return out

    def _ratio_block(self, acc: F64, out: F64) -> None:
        out[:] = _ratio(
            acc.take(self._ratio_num, axis=1), acc.take(self._ratio_den, axis=1), np.nan
        ).T
        np.minimum(out[0], 1.0, out=out[0])  # label_coverage: a share
        if self._pca:
            count = acc[:, self._ratio_den[-1]]
            out[-1] = np.where(count >= self.min_samples, out[-1] / self._pca_error, np.nan)

    def _binary(self, acc: F64, full: F64) -> None:
        """Realized and label-free (CBPE) binary metrics, as one stack of two, and the
        score's ks and wasserstein (its CDF is a third cumulative sum of the stack)."""
        col = self._col
        n_rows = acc.shape[0]
        bins = self._bins
        start = col["score_hist"]
        hist = acc[:, start : start + bins]
        # confusion counts (tp, fp, tn, fn): realized, and expected from the calibration
        # (score_hist and pp_hist side by side through one matrix)
        conf = np.empty((2, n_rows, 4))
        conf[0] = acc.take(self._confusion, axis=1)
        _mm(acc[:, start : start + 2 * bins], self._expected, self._block_rows, out=conf[1])
        start = col["pos_hist"]
        pos = acc[:, start : start + bins]
        neg = acc[:, start + bins : start + 2 * bins]
        tp, fp, tn, fn = conf[..., 0], conf[..., 1], conf[..., 2], conf[..., 3]
        n = acc[:, col["n"]]
        # accuracy, precision, recall, f1 of both at once
        num = np.empty((4, 2, n_rows))
        den = np.empty((4, 2, n_rows))
        np.add(tp, tn, out=num[0])
        num[1] = num[2] = tp
        np.multiply(tp, 2, out=num[3])
        den[0, 0] = n
        np.add(tp, fp, out=den[1])
        np.add(tp, fn, out=den[2])
        np.add(num[3] + fp, fn, out=den[3])
        # ROC AUC: positives (realized, then expected) against the cumulative negatives;
        # the third block of ``below`` is the score histogram, for the scored count and
        # the score's CDF
        p_hist = np.empty((2 * n_rows, bins))
        below = np.empty((3 * n_rows, bins))
        p_hist[:n_rows] = pos
        np.multiply(hist, self._calibration, out=p_hist[n_rows:])
        below[:n_rows] = neg
        np.multiply(hist, self._negative, out=below[n_rows : 2 * n_rows])
        below[2 * n_rows :] = hist
        ties = np.einsum("ij,ij->i", p_hist, below[: 2 * n_rows])
        prefix = self._prefix
        local, totals, earlier = _prefix(below, prefix, self._block_rows)
        last = earlier[:, -1] + totals[:, -1]  # each row's total
        scored = last[2 * n_rows :]
        den[0, 1] = scored
        invalid = np.empty((2, n_rows), dtype=bool)
        np.less_equal(n, 0, out=invalid[0])
        np.less(scored, self.min_samples, out=invalid[1])
        rates = full[self._span["rates"]].reshape(4, 2, n_rows)
        rates[:] = _ratio(num, den, _EMPTY_RATES)
        np.copyto(rates, np.nan, where=invalid)
        # each positive beats the negatives in lower bins and ties those in its own:
        # sum(p * (cumsum(n) - n / 2)); the realized ties are also its binning error
        auc_num = np.empty((3, n_rows))
        beaten = _dot_prefix(
            p_hist, local[: 2 * n_rows], earlier[: 2 * n_rows], prefix, self._block_rows
        )
        beaten -= 0.5 * ties
        auc_num[:2] = beaten.reshape(2, n_rows)
        np.multiply(ties[:n_rows], 0.5, out=auc_num[2])
        pairs = (p_hist.sum(axis=1) * last[: 2 * n_rows]).reshape(2, n_rows)
        auc = full[self._span["auc"]]
        auc[:] = _ratio(auc_num, pairs.take(_AUC_PAIRS, axis=0), _EMPTY_AUC)
        np.copyto(auc[1], np.nan, where=invalid[1])
        if self._binary_extras:
            full[self._span["extra"]] = self._binary_extra(conf[0], n, pos, neg)
        if self._score is not None:
            cum = local[2 * n_rows :]  # the score histogram's cumulative sums
            if prefix.pieces > 1:
                cum += np.repeat(earlier[2 * n_rows :], prefix.size, axis=1)
            self._score_drift(cum, scored, full[self._span["score"]])

    def _score_drift(self, cum: F64, n: F64, out: F64) -> None:
        """``ks`` and ``wasserstein`` of the binary score over its bins, from the
        cumulative score histogram ``cum`` and its total ``n``."""
        ref = self._score
        assert ref is not None
        cdf = cum / np.where(n > 0, n, np.inf)[:, None]
        cdf -= ref.cdf
        np.abs(cdf, out=cdf)
        out[1] = cdf.sum(axis=1) / self._bins / ref.sd
        out[0] = cdf[:, :-1].max(axis=1)
        np.copyto(out[0], 0.0, where=out[0] <= CDF_TOLERANCE)
        np.copyto(out, np.nan, where=n < self.min_samples)

    def _binary_extra(self, conf: F64, n: F64, pos: F64, neg: F64) -> F64:
        """The binary metrics outside the fused stack, those wanted only."""
        tp, fp, tn, fn = conf[:, 0], conf[:, 1], conf[:, 2], conf[:, 3]
        values: dict[str, F64] = {}
        empty = n <= 0
        wanted = self._binary_extras
        if "specificity" in wanted or "balanced_accuracy" in wanted:
            recall = _ratio(tp, tp + fn, np.inf)
            specificity = _ratio(tn, tn + fp, np.inf)
            values["specificity"] = np.where(empty, np.nan, specificity)
            has_pos, has_neg = tp + fn > 0, tn + fp > 0
            present = has_pos.astype(float) + has_neg.astype(float)
            balanced = _ratio(recall * has_pos + specificity * has_neg, present, np.inf)
            values["balanced_accuracy"] = np.where(empty, np.nan, balanced)
        if "mcc" in wanted:
            matrix = np.stack([np.stack([tn, fp], axis=1), np.stack([fn, tp], axis=1)], axis=1)
            values["mcc"] = np.where(empty, np.nan, mcc(matrix))
        if "pr_auc" in wanted:
            values["pr_auc"] = average_precision(pos, neg, pos.sum(axis=1))
        return np.stack([values[name] for name in wanted])

    def _drift(self, acc: F64, sub: _Subjects, full: F64) -> None:
        """Feature and output drift: every subject of every row at once, their histograms
        side by side."""
        n_rows = acc.shape[0]
        tiles = self._tiles
        if tiles is None or tiles.rows != n_rows:
            if tiles is not None and tiles.rows > n_rows and sub.share.ndim == 1:
                # every row of a plan's own tiles is the same: the first rows of larger ones
                # are the tiles of fewer rows (a batch's row count moves from poll to poll)
                tiles = tiles.first(n_rows)
            else:
                tiles = self._tiles = _Tiled.of(sub, n_rows)
        hist = np.empty((n_rows, len(sub.subject)))
        plain = len(sub.plain)
        hist[:, :plain] = acc.take(sub.plain, axis=1)
        if len(sub.source):
            _mm(acc.take(sub.source, axis=1), sub.combine, self._block_rows, out=hist[:, plain:])
        n = _mm(hist, sub.member, self._block_rows)  # (rows, S)
        enough = n >= self.min_samples
        # a proportion or mean of an empty histogram is 0: divided by infinity
        count = np.where(n > 0, n, np.inf).take(sub.subject, axis=1)
        p = hist / count
        stats = full[self._span["stats"]].reshape(2, -1, n_rows)  # (psi, js) x S
        psi_value, js_value = _psi_js(p, tiles, sub.member, self._block_rows)
        stats[0] = psi_value.T
        stats[1] = js_value.T
        np.copyto(stats, np.nan, where=~enough.T)
        c = sub.chi2_subjects
        chi2 = _chi2(
            hist[:, : sub.chi2_columns],
            n[:, :c],
            sub,
            tiles,
            enough[:, :c],
            self._block_rows,
            self.min_samples <= 0,
        )
        full[self._span["chi2"]] = chi2.T
        ref = sub.numeric
        if ref is not None:
            k = sub.numeric_count
            p_mean = acc.take(ref.sums, axis=1)
            p_mean /= count[:, : ref.size]
            ks, w = _ks_wasserstein(p[:, : ref.size], p_mean, ref, self._block_rows)
            numeric = full[self._span["numeric"]].reshape(2, k, n_rows)
            numeric[0] = ks.T
            numeric[1] = w.T
            np.copyto(numeric, np.nan, where=~enough[:, :k].T)
            if sub.features:
                f = sub.features
                outside = hist.take(ref.ends[:f], axis=1) + hist.take(ref.ends[k : k + f], axis=1)
                pred_n = acc[:, self._col["pred_n"], None]
                full[self._span["outside"]] = _ratio(outside, pred_n, np.nan).T


@dataclass(frozen=True, slots=True)
class WindowValues:
    """Every signal of every window and slice of a model at a pane close, as
    :meth:`PanePlan.compute` gave them: ``values[i, w, r]`` is signal ``plan.names[i]`` of
    window ``windows[w]`` in slice row ``r``."""

    plan: PanePlan
    windows: tuple[str, ...]
    values: F64  # (names, windows, rows)

    def by_window(self) -> dict[str, dict[str, F64]]:
        """``{window: {signal: value per slice row}}`` (views of :attr:`values`)."""
        names = self.plan.names
        return {
            window: dict(zip(names, self.values[:, i], strict=True))
            for i, window in enumerate(self.windows)
        }

    def model_signals(
        self, extra: dict[str, float] | None = None, whole: list[float] | None = None
    ) -> dict[str, float]:
        """The whole model's values (slice row 0) as ``{"signal@window": value}``, window
        by window; ``extra`` whole-model values follow each window's signals. ``whole``:
        those values already read, window after window (see :func:`model_rows`)."""
        if whole is None:
            whole = self.values[:, :, 0].T.ravel().tolist()  # (windows, names)
        return model_signals(self.plan, self.windows, whole, extra)


def model_signals(
    plan: PanePlan,
    windows: tuple[str, ...],
    whole: list[float],
    extra: dict[str, float] | None = None,
) -> dict[str, float]:
    """``{"signal@window": value}`` of the whole model's values ``whole`` of ``plan``'s
    signals in each of ``windows``, window after window; ``extra`` whole-model values
    follow each window's signals."""
    if not extra:
        labels, template = plan.keyed(windows)
        out = template.copy()
        out.update(zip(labels, whole, strict=True))
        return out
    size = len(plan.names)
    more = list(extra.values())
    flat: list[float] = []
    for start in range(0, len(whole), size):
        flat += whole[start : start + size]
        flat += more
    labels, template = plan.keyed(windows, tuple(extra))
    out = template.copy()
    out.update(zip(labels, flat, strict=True))
    return out


def model_rows(values: F64) -> list[list[float]]:
    """The whole model's values (slice row 0) of the panes of ``values`` ``(names, panes,
    windows, rows)``, as :meth:`PanePlan.compute` gives them for a batch: per pane, the
    windows' values window after window (what :meth:`WindowValues.model_signals` takes
    as ``whole``), read in one operation for every pane."""
    names, panes, windows, _ = values.shape
    whole = np.ascontiguousarray(values[:, :, :, 0].transpose(1, 2, 0))
    rows: list[list[float]] = whole.reshape(panes, windows * names).tolist()
    return rows


class WindowMetrics(Mapping[str, dict[str, F64]]):
    """``{window: {signal: value per slice row}}`` of a :class:`WindowValues`, each window
    also with the ``extra`` columns; the dicts are made when first read (a pane close
    keeps them for reports and checkpoints, which read few of them)."""

    __slots__ = ("_dicts", "_extra", "_values")

    def __init__(self, values: WindowValues, extra: dict[str, F64] | None = None) -> None:
        self._values = values
        self._extra = extra or {}
        self._dicts: dict[str, dict[str, F64]] | None = None

    def _built(self) -> dict[str, dict[str, F64]]:
        dicts = self._dicts
        if dicts is None:
            dicts = self._dicts = self._values.by_window()
            if self._extra:
                for metrics in dicts.values():
                    metrics.update(self._extra)
        return dicts

    def __getitem__(self, window: str) -> dict[str, F64]:
        return self._built()[window]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._values.windows)

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, dict[str, F64]]]]:
        """Pickled and copied as the plain dicts (the plan stays with its layout)."""
        return dict, (self._built(),)


def _subjects(layout: Layout) -> _Subjects | None:
    """The drift subjects of ``layout`` (see :class:`_Subjects`), None without any."""
    profile = layout.profile
    numeric: list[tuple[str, int, int, NumericReference]] = []  # hist, bin_sum columns
    plain: list[tuple[str, int, F64]] = []  # first column, reference counts
    computed: list[tuple[str, list[dict[int, float]], F64]] = []  # columns as sums, refs
    features = 0
    if profile is not None:
        for name, kind in layout.features.items():
            if kind == "numeric":
                ref = profile.numeric[name]
                numeric.append(
                    (name, layout.col(f"hist:{name}"), layout.col(f"bin_sum:{name}"), ref)
                )
        features = len(numeric)
    for name, ref in layout.outputs.items():
        numeric.append((name, layout.col(f"hist:{name}"), layout.col(f"bin_sum:{name}"), ref))
    if profile is not None:
        for name, kind in layout.features.items():
            if kind != "numeric":
                cref = profile.categorical[name]
                if cref.counts.sum() > 0:
                    plain.append((name, layout.col(f"hist:{name}"), cref.counts))
    baseline = layout.baseline
    if baseline is not None:
        row = baseline.row
        col = layout.col
        task = layout.kind
        counts = task.class_counts(layout, row[None, :])
        for name, how in task.class_sums(layout).items():
            class_ref = counts[name][0]
            if class_ref.sum() > 0:
                if isinstance(how, int):  # the class counts are K consecutive columns
                    plain.append((name, how, class_ref))
                else:
                    computed.append((name, how, class_ref))
        field = task.score_field
        if field is not None:
            ref_hist = row[layout.cols(field)]
            if ref_hist.sum() > 0:
                gid, group_counts = _grouped_ref(layout, ref_hist)
                start = col(field)
                groups: list[dict[int, float]] = [{} for _ in group_counts]
                for b, g in enumerate(gid.tolist()):  # a group no bin falls in stays empty
                    groups[g][start + b] = 1.0
                computed.append((SCORE, groups, group_counts))
    if not numeric and not plain and not computed:
        return None
    names = [n for n, *_ in numeric] + [n for n, *_ in plain] + [n for n, *_ in computed]
    refs = [ref.counts for *_, ref in numeric] + [r for *_, r in plain]
    refs += [r for *_, r in computed]
    widths = [len(r) for r in refs]
    subject = np.repeat(np.arange(len(names)), widths)
    member = np.zeros((len(subject), len(names)))
    member[np.arange(len(subject)), subject] = 1.0
    ref_counts = np.concatenate(refs).astype(np.float64)
    ref_n = np.array([r.sum() for r in refs], dtype=np.float64)
    share = np.concatenate([r / r.sum() for r in refs])
    plain_cols = [start + j for _, start, _, ref in numeric for j in range(ref.columns)]
    plain_cols += [start + j for _, start, r in plain for j in range(len(r))]
    sums = [column for _, cols, _ in computed for column in cols]
    source = sorted({c for column in sums for c in column})
    combine = np.zeros((len(source), len(sums)))
    where = {c: i for i, c in enumerate(source)}
    for j, column in enumerate(sums):
        for c, weight in column.items():
            combine[where[c], j] = weight
    chi2_subjects = len(names) - (names[-1] == SCORE)
    return _Subjects(
        names=tuple(names),
        plain=np.array(plain_cols, dtype=np.int64),
        source=np.array(source, dtype=np.int64),
        combine=combine,
        subject=subject,
        member=member,
        ref=ref_counts,
        ref_n=ref_n,
        ref_n_col=ref_n[subject],
        share=share,
        floor=np.maximum(share, PSI_FLOOR),
        share_safe=np.where(share > 0, share, 1.0),
        chi2_subjects=chi2_subjects,
        chi2_columns=int(sum(widths[:chi2_subjects])),
        two_columns=_index([i for i in range(chi2_subjects) if widths[i] == 2]),
        many_columns=_index([i for i in range(chi2_subjects) if widths[i] != 2]),
        numeric=_numeric(numeric) if numeric else None,
        numeric_count=len(numeric),
        features=features,
    )


def _index(positions: list[int]) -> I64 | slice:
    """``positions`` as an index: a slice where they are consecutive (a view, not a
    copy), else an array."""
    if positions and positions == list(range(positions[0], positions[-1] + 1)):
        return slice(positions[0], positions[-1] + 1)
    return np.array(positions, dtype=np.int64)


def _numeric(numeric: list[tuple[str, int, int, NumericReference]]) -> _Numeric:
    """The numeric subjects' side of ks and wasserstein (see :class:`_Numeric`)."""
    size = sum(ref.columns for *_, ref in numeric)
    n_bounds = sum(ref.columns - 1 for *_, ref in numeric)
    from_left = np.zeros(n_bounds, dtype=np.bool_)
    offset = np.zeros(n_bounds)
    bounds: list[int] = []
    left: list[int] = []
    inner: list[int] = []
    upper: list[float] = []
    width: list[float] = []
    in_bin: list[float] = []
    inner_starts: list[int] = []
    with_inner: list[int] = []
    first: list[int] = []
    last: list[int] = []
    owner: list[int] = []
    means: list[bool] = []  # the interior bins with an in-bin mean
    col = bound = 0
    for f, (_, _, _, ref) in enumerate(numeric):
        c = ref.columns
        r = ref.counts / ref.counts.sum()
        r_mean = ref.sums / ref.counts.sum()
        cdf = np.cumsum(r)[:-1]
        tail = np.cumsum(r[::-1])[::-1][1:]
        bounds.append(bound)
        for b in range(c - 1):
            if cdf[b] <= 0.5:  # cumsum(p) - cdf_r, summed from the left
                from_left[bound + b] = True
                offset[bound + b] = -cdf[b]
            else:  # tail_r - tail(p), summed from the right
                offset[bound + b] = tail[b]
        if c >= 3:
            inner_starts.append(len(inner))
            with_inner.append(f)
            means.extend(mean_bins(ref.edges).tolist())  # one per interior bin, in order
        for j in range(1, c - 1):
            left.append(bound + j - 1)
            inner.append(col + j)
            upper.append(ref.edges[j])
            width.append(ref.edges[j] - ref.edges[j - 1])
            in_bin.append(max(r[j] * ref.edges[j] - r_mean[j], 0.0))
            owner.append(f)
        first.append(col)
        last.append(col + c - 1)
        col += c
        bound += c - 1
    bins = np.zeros((len(inner), len(numeric)))
    bins[np.arange(len(inner)), owner] = 1.0
    widths = np.array(width, dtype=np.float64)
    wide = np.array(means, dtype=bool).reshape(len(widths))
    return _Numeric(
        size=size,
        sums=np.array(
            [start + j for _, _, start, ref in numeric for j in range(ref.columns)],
            dtype=np.int64,
        ),
        runs=_runs([ref.columns for *_, ref in numeric]),
        from_left=from_left,
        offset=offset,
        bounds=np.array(bounds, dtype=np.int64),
        left=np.array(left, dtype=np.int64),
        inner=np.array(inner, dtype=np.int64),
        upper=np.array(upper, dtype=np.float64),
        width=widths,
        width_inf=np.where(wide, widths, np.inf),
        in_bin=np.array(in_bin, dtype=np.float64),
        bins=bins,
        inner_starts=np.array(inner_starts, dtype=np.int64),
        with_inner=np.array(with_inner, dtype=np.int64),
        all_inner=len(with_inner) == len(numeric),
        ends=np.array(first + last, dtype=np.int64),
        edge=np.array(
            [ref.edges[0] for *_, ref in numeric] + [ref.edges[-1] for *_, ref in numeric]
        ),
        scale=np.array([ref.std if ref.std > 0 else 1.0 for *_, ref in numeric]),
    )


def _runs(columns: list[int]) -> tuple[_Run, ...]:
    """The numeric subjects of ``columns`` columns each by column count, in order of
    first appearance (see :func:`_cdf_differences`); those of one column have no
    boundary.

    >>> [(r.columns, r.subjects, r.cols, r.bounds) for r in _runs([3, 3])]
    [(3, 2, 0, slice(0, 4, None))]
    >>> two, three = _runs([2, 3, 2])
    >>> two.columns, two.subjects, two.cols.tolist(), two.bounds.tolist()
    (2, 2, [0, 1, 5, 6], [0, 3])
    >>> three.columns, three.subjects, three.cols, three.bounds
    (3, 1, 2, slice(1, 3, None))
    """
    starts = np.cumsum([0, *columns])
    bound_starts = np.cumsum([0, *(c - 1 for c in columns)])
    by_count: dict[int, list[int]] = {}
    for f, c in enumerate(columns):
        if c > 1:
            by_count.setdefault(c, []).append(f)
    out = []
    for c, subjects in by_count.items():
        first, last = subjects[0], subjects[-1]
        if subjects == list(range(first, last + 1)):
            cols: int | I64 = int(starts[first])
            at: slice | I64 = slice(int(bound_starts[first]), int(bound_starts[last + 1]))
        else:
            cols = np.concatenate([np.arange(starts[f], starts[f + 1]) for f in subjects])
            at = np.concatenate([np.arange(bound_starts[f], bound_starts[f + 1])
                                 for f in subjects])  # fmt: skip
        out.append(_Run(c, len(subjects), cols, at))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Prefix:
    """Cumulative sums along rows of ``size * pieces`` columns in blocks of ``size``
    columns (see :func:`_prefix`)."""

    size: int
    pieces: int
    running: F64 | None  # (size, size): the running sums inside a block (None: one block)
    before: F64  # (pieces, pieces): the totals of the blocks before each one
    ones: F64  # (size, 1): a block's sum


def _prefix_plan(columns: int) -> _Prefix:
    """What :func:`_prefix` needs for rows of ``columns`` columns, in blocks of a
    divisor of ``columns`` near 8 (the running-sum product is quickest there); one block
    when ``columns`` has no such divisor (``np.cumsum`` then)."""
    sizes = [b for b in range(4, columns // 2 + 1) if columns % b == 0]
    if not sizes:
        return _Prefix(columns, 1, None, np.zeros((1, 1)), np.ones((columns, 1)))
    size = min(sizes, key=lambda b: abs(b - 8))
    pieces = columns // size
    running = np.triu(np.ones((size, size)))
    return _Prefix(size, pieces, running, np.triu(np.ones((pieces, pieces)), 1), np.ones((size, 1)))


def _prefix(x: F64, plan: _Prefix, block: int) -> tuple[F64, F64, F64]:
    """The cumulative sums along each row of the C-contiguous ``x`` (rows, columns) as
    matrix products (numpy's cumulative sum runs one element at a time), in parts: the
    running sums inside each block of columns ``local`` (rows, columns), each block's
    total (rows, pieces) and the total of the blocks before it ``earlier`` (rows,
    pieces). The cumulative sum at column ``j`` is ``local[:, j] + earlier[:, j //
    size]``, equal to ``np.cumsum(x, axis=1)`` up to the order of the additions; a dot
    product with it splits the same way (see :func:`_dot_prefix`). ``block``: the rows
    of one pane (see :func:`_mm`)."""
    rows, columns = x.shape
    size, pieces = plan.size, plan.pieces
    if plan.running is None:
        whole: F64 = np.cumsum(x, axis=1)
        return whole, whole[:, -1:], np.zeros((rows, 1))
    local = _mm(x.reshape(rows * pieces, size), plan.running, block * pieces)
    local = local.reshape(rows, columns)
    totals = np.ascontiguousarray(local[:, size - 1 :: size])
    earlier = _mm(totals, plan.before, block)
    return local, totals, earlier


def _dot_prefix(p: F64, local: F64, earlier: F64, plan: _Prefix, block: int) -> F64:
    """Per row, the dot product of ``p`` (rows, columns) with the cumulative sums
    :func:`_prefix` gave in parts (as many rows): ``p . local`` plus each block's sum
    of ``p`` times the total of the blocks before it (``block``: see :func:`_mm`)."""
    rows = p.shape[0]
    sums = _mm(p.reshape(rows * plan.pieces, plan.size), plan.ones, block * plan.pieces)
    out: F64 = np.einsum("ij,ij->i", p, local)
    out += np.einsum("ij,ij->i", sums.reshape(rows, plan.pieces), earlier)
    return out


def _grouped_ref(layout: Layout, ref_hist: F64) -> tuple[I64, F64]:
    """The group of each score bin, adjacent bins merged into ``drift_bins`` groups of
    about equal reference mass (a bin holding more than a group's share leaves the
    groups it spans empty), and the reference counts per group, as
    :func:`~monitor.core.drift.output_drift` merges them."""
    groups = layout.drift_bins
    cum = np.cumsum(ref_hist) - ref_hist  # reference mass below each bin
    gid = np.minimum((cum / ref_hist.sum() * groups).astype(np.int64), groups - 1)
    k = int(gid.max()) + 1
    counts: F64 = np.bincount(gid, weights=ref_hist, minlength=k).astype(np.float64)
    return gid, counts


def _layout_key(layout: Layout) -> tuple[int, ...]:
    """What a plan depends on that may change in a layout's life (a warmup profile)."""
    return (
        id(layout.profile),
        id(layout.baseline),
        id(layout.pca),
        layout.width,
        layout.drift_bins,
        layout.bins,
    )


_PLANS: weakref.WeakKeyDictionary[Layout, dict[tuple[object, ...], PanePlan]] = (
    weakref.WeakKeyDictionary()
)


def plan_for(
    layout: Layout,
    class_names: tuple[str, ...] = (),
    min_samples: int = 100,
    keep: Callable[[str], bool] | None = None,
    keep_key: Hashable = None,
) -> PanePlan:
    """The :class:`PanePlan` of ``layout``, made on first use and kept while the layout
    lives and its profile and baseline stay the same. ``keep_key`` stands for ``keep``
    in the cache: pass one that changes whenever ``keep`` would answer differently."""
    plans = _PLANS.get(layout)
    if plans is None:
        plans = _PLANS[layout] = {}
    key = (class_names, min_samples, keep_key, keep is None)
    plan = plans.get(key)
    if plan is None or plan.key != _layout_key(layout):
        plan = plans[key] = PanePlan(layout, class_names, min_samples, keep)
    return plan


#: The shapes of plans met so far, numbered (see :meth:`PanePlan.shape`).
_SHAPES: dict[tuple[Any, ...], int] = {}

#: The last plan :func:`stacked_plan` made, with the plans and row count it was made of.
_STACKED: list[tuple[tuple[PanePlan, ...], int, PanePlan]] = []


def stacked_plan(plans: Sequence[PanePlan], rows: int) -> PanePlan:
    """One plan computing the signals of several models at once: ``acc`` stacks ``rows``
    rows of each model, model after model, in the order of ``plans``, which share one
    :meth:`PanePlan.shape`. Each reference array is repeated for its model's rows (the
    element-wise operations see, row by row, the values the model's own plan gives them)
    and each reference matrix is stacked, one per model (see :func:`_mm`): every row's
    values are those of its model's plan, bit for bit, and the numpy calls are made once
    for all models. The last one made is kept (the same models close together pane
    after pane)."""
    key = tuple(plans)
    for held, held_rows, plan in _STACKED:
        if held_rows == rows and len(held) == len(key) and all(
            a is b for a, b in zip(held, key, strict=True)
        ):
            return plan
    first = plans[0]

    def per_row(arrays: list[F64]) -> F64:
        return np.repeat(np.stack(arrays), rows, axis=0)

    out = copy.copy(first)
    out._tiles = None
    out._labels = first._labels
    out._calibration = per_row([p._calibration for p in plans])
    out._negative = per_row([p._negative for p in plans])
    out._pca_error = np.repeat([float(p._pca_error) for p in plans], rows)
    out._expected = np.stack([p._expected for p in plans])
    scores = [p._score for p in plans]
    if all(score is not None for score in scores):
        out._score = _ScoreReference(
            cdf=per_row([score.cdf for score in scores if score is not None]),
            sd=np.repeat([float(score.sd) for score in scores if score is not None], rows),
        )
    out._gap_ref = np.ascontiguousarray(per_row([p._gap_ref[:, 0] for p in plans]).T)
    sub = first._subjects
    if sub is not None:
        subs = [p._subjects for p in plans if p._subjects is not None]
        numeric = sub.numeric
        if numeric is not None:
            refs = [s.numeric for s in subs if s.numeric is not None]
            numeric = dataclasses.replace(
                numeric,
                from_left=np.repeat(np.stack([r.from_left for r in refs]), rows, axis=0),
                offset=per_row([r.offset for r in refs]),
                upper=per_row([r.upper for r in refs]),
                width=per_row([r.width for r in refs]),
                width_inf=per_row([r.width_inf for r in refs]),
                in_bin=per_row([r.in_bin for r in refs]),
                edge=per_row([r.edge for r in refs]),
                scale=per_row([r.scale for r in refs]),
            )
        out._subjects = dataclasses.replace(
            sub,
            combine=np.stack([s.combine for s in subs]),
            ref=per_row([s.ref for s in subs]),
            ref_n=per_row([s.ref_n for s in subs]),
            ref_n_col=per_row([s.ref_n_col for s in subs]),
            share=per_row([s.share for s in subs]),
            floor=per_row([s.floor for s in subs]),
            share_safe=per_row([s.share_safe for s in subs]),
            numeric=numeric,
        )
    _STACKED[:] = [(key, rows, out)]
    return out


def pane_signals(
    layout: Layout,
    acc: F64,
    class_names: tuple[str, ...] = (),
    sample_count: F64 | None = None,
    min_samples: int = 100,
    keep: Callable[[str], bool] | None = None,
    keep_key: Hashable = None,
) -> tuple[tuple[str, ...], F64]:
    """Every signal of :func:`~monitor.core.metrics.compute_metrics` (those ``keep``
    accepts) over every row of ``acc``, the stacked windows of a model: the names, and
    their values as an array ``(names, rows)``.

    ``sample_count`` is each row's event count where ``acc`` holds decayed weights (see
    :func:`~monitor.core.metrics.compute_metrics`); ``keep_key`` as in :func:`plan_for`.

    >>> from monitor.core.layout import Layout
    >>> lay = Layout("regression"); acc = np.zeros((2, lay.width))
    >>> acc[:, lay.col("n")] = [2, 0]; acc[:, lay.col("abs_error_sum")] = [3.0, 0.0]
    >>> names, values = pane_signals(lay, acc)
    >>> values[names.index("mae")].tolist()
    [1.5, nan]
    """
    plan = plan_for(layout, class_names, min_samples, keep, keep_key)
    return plan.names, plan.compute(acc, sample_count)
