"""Every signal of a model's windows and slices at a pane close, computed at once.

At a pane close the engine holds, for each window, a ``(slices, width)`` array of sums. It
stacks them into one ``(windows * slices, width)`` array, and :func:`pane_signals` computes
each signal once over all of its rows: one numpy call handles every window and slice, and
signals of the same form go through together (every ratio of two columns in one division,
the realized and the label-free confusion counts and ROC AUCs as one stack, every drift
subject as one padded ``(rows, subjects, columns)`` array). What depends only on the
layout (column indices, reference proportions and edges, the calibration map, the signal
names and their order) is worked out once per layout and kept in a :class:`PanePlan`.

The definitions are those of :func:`~monitor.core.metrics.compute_metrics`,
:mod:`monitor.core.drift` and :mod:`monitor.core.estimate`, and the values equal theirs on
each window's array up to the rounding of sums taken in another order (a relative 1e-15
or so; ``tests/core/test_pane_signals.py`` holds them to 1e-12).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from monitor.config import GAP_METRICS
from monitor.core.calibration import midpoint_calibration
from monitor.core.drift import CDF_TOLERANCE, PSI_FLOOR
from monitor.core.estimate import estimated_metrics
from monitor.core.layout import Layout
from monitor.core.metrics import average_precision, compute_metrics, mcc, task_metrics
from monitor.core.reference import LABEL, PREDICTION, SCORE, NumericReference

__all__ = ["PanePlan", "pane_signals", "plan_for"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_T = TypeVar("_T")

#: Binary metrics the fused realized/label-free computation gives; the others of the task
#: (``specificity``, ``balanced_accuracy``, ``mcc``, ``pr_auc``) are computed when wanted.
_EXTRA_BINARY = ("specificity", "balanced_accuracy", "mcc", "pr_auc")


#: What a ratio is when its denominator is 0: accuracy (realized, expected) NaN, the
#: precision, recall and F1 0 (scikit-learn's ``zero_division=0``); the realized ROC AUC
#: and its binning error NaN, the expected ROC AUC 0 (as :mod:`monitor.core.estimate`).
_EMPTY_RATES = np.array([np.nan, 0.0, 0.0, 0.0])[:, None, None]
_EMPTY_AUC = np.array([np.nan, 0.0, np.nan])[:, None]


def _ratio(num: F64, den: F64, empty: float | F64) -> F64:
    """``num / den`` where ``den > 0``, else ``empty`` (the metrics' ``_div``, without the
    division by zero it had to silence)."""
    ok = den > 0
    out: F64 = np.where(ok, num / np.where(ok, den, 1.0), empty)
    return out


def _psi_js(p: F64, r: F64, r_floor: F64) -> tuple[F64, F64]:
    """:func:`~monitor.core.drift.psi` and :func:`~monitor.core.drift.js_distance` of
    proportions ``p`` (..., C) against ``r`` (its floored copy ``r_floor``), computed
    without scipy's per-element ``rel_entr`` (``x log(x / y)``, 0 where ``x`` is 0)."""
    pf = np.maximum(p, PSI_FLOOR)
    psi_value: F64 = ((pf - r_floor) * np.log(pf / r_floor)).sum(axis=-1)
    m = 0.5 * (p + r)
    ratio_p = np.divide(p, m, out=np.ones_like(p), where=p > 0)
    ratio_r = np.divide(r, m, out=np.ones_like(p), where=r > 0)
    div = 0.5 * ((p * np.log(ratio_p)).sum(axis=-1) + (r * np.log(ratio_r)).sum(axis=-1))
    js_value: F64 = np.sqrt(np.maximum(div / np.log(2.0), 0.0))
    return psi_value, js_value


def _chi2(counts: F64, n: F64, ref: F64, ref_n: F64, mask: npt.NDArray[np.bool_]) -> F64:
    """:func:`~monitor.core.drift.chi2_pvalue` of ``counts`` (..., C) with totals ``n``
    against ``ref`` (totals ``ref_n``), worked out where ``mask`` holds only (NaN
    elsewhere).

    In a 2 x C table both cells of a column are off their expected counts by the same
    ``d = (counts * ref_n - n * ref) / total``, so the statistic is
    ``(1 / n + 1 / ref_n) / total * sum((counts * ref_n - n * ref)**2 / col)`` over the
    columns used (``col = counts + ref > 0``): the same value with fewer operations, and
    without the cancellation of ``counts - expected``.
    """
    col = counts + ref
    used = col > 0
    dev = counts * ref_n[:, None] - n[..., None] * ref
    terms = dev * dev / np.where(used, col, 1.0)  # an unused column has dev = 0
    dof = used.sum(axis=-1) - 1
    seen = mask & (n > 0)
    safe_n = np.where(seen, n, 1.0)
    stat = (1.0 / safe_n + 1.0 / ref_n) / (safe_n + ref_n) * terms.sum(axis=-1)
    from scipy import special  # imported at the first drift statistic, not at start

    p_value = special.chdtrc(np.maximum(dof, 1), stat)  # used where dof > 0 only
    out: F64 = np.where(seen, np.where(dof > 0, p_value, np.where(dof == 0, 1.0, np.nan)), np.nan)
    return out


@dataclass(frozen=True, slots=True)
class _ScoreReference:
    """The reference score histogram as the binary score drift reads it."""

    cdf: F64  # (B,): reference CDF after each bin
    tail: F64  # (B - 1,): reference mass after each boundary
    left: int  # boundaries where the reference CDF is at most 0.5
    sd: float  # Wasserstein divisor: the reference score's standard deviation (or 1)


@dataclass(frozen=True, slots=True)
class _NumericReferences:
    """The reference side of :func:`~monitor.core.drift.ks_numeric` and
    :func:`~monitor.core.drift.wasserstein_binned` for the numeric subjects, (F, ...)
    each: the parts that do not depend on the window."""

    cdf: F64  # (F, C - 1): reference CDF at the column boundaries
    tail: F64  # (F, C - 1): reference mass after each boundary
    left: npt.NDArray[np.bool_]  # (F, C - 1): boundaries summed from the left
    upper: F64  # (F, C - 2): upper edge of each interior bin
    width: F64  # (F, C - 2): interior bin widths
    wide: npt.NDArray[np.bool_]  # (F, C - 2): bins of non-zero width
    in_bin: F64  # (F, C - 2): reference mass of each bin left of x, integrated (G_r)
    low: F64  # (F,): first edge
    high: F64  # (F,): last edge

    @classmethod
    def of(cls, share: F64, edges: F64, mean: F64) -> _NumericReferences:
        """From the reference proportions and value sums per count (F, C), edges (F, C-1)."""
        cdf = np.cumsum(share, axis=1)[:, :-1]
        width = np.diff(edges, axis=1)
        upper = edges[:, 1:]
        return cls(
            cdf=cdf,
            tail=np.cumsum(share[:, ::-1], axis=1)[:, ::-1][:, 1:],
            left=cdf <= 0.5,
            upper=upper,
            width=width,
            wide=width > 0,
            in_bin=np.maximum(share[:, 1:-1] * upper - mean[:, 1:-1], 0.0),
            low=edges[:, 0],
            high=edges[:, -1],
        )


def _ks_wasserstein(p: F64, p_mean: F64, ref: _NumericReferences) -> tuple[F64, F64]:
    """:func:`~monitor.core.drift.ks_numeric` and
    :func:`~monitor.core.drift.wasserstein_binned` of proportions ``p`` and value sums per
    count ``p_mean`` (rows, F, C) at once, sharing the CDF differences and the in-bin
    integrals; padded bins (zero width, nothing in them) add nothing to either."""
    tail = np.cumsum(p[..., :0:-1], axis=-1)[..., ::-1]  # mass after each boundary
    d = np.where(ref.left, np.cumsum(p, axis=-1)[..., :-1] - ref.cdf, ref.tail - tail)
    size = np.abs(d)
    np.copyto(d, 0.0, where=size <= CDF_TOLERANCE)  # rounding residue
    ks = size.max(axis=-1)
    ks = np.where(ks <= CDF_TOLERANCE, 0.0, ks)
    g_p = np.maximum(p[..., 1:-1] * ref.upper - p_mean[..., 1:-1], 0.0)
    integral = ref.width * d[..., :-1] + g_p - ref.in_bin
    under = p[..., 0] * ref.low - p_mean[..., 0]
    over = p_mean[..., -1] - p[..., -1] * ref.high
    w: F64 = np.abs(integral).sum(axis=-1) + under + over
    if p.shape[-1] >= 3:
        mean = np.divide(integral, ref.width, out=np.zeros_like(integral), where=ref.wide)
        ks = np.maximum(ks, np.abs(mean).max(axis=-1))
    return ks, w


@dataclass(frozen=True, slots=True)
class _Subjects:
    """The drift subjects of a layout as one padded stack: ``index`` (S, C) gathers each
    subject's histogram from the accumulator row (``width``: a zero column), ``ref`` (S, C)
    holds the reference counts. Numeric subjects come first, their columns padded just
    before the overflow column (``edges`` repeat the last edge there)."""

    names: tuple[str, ...]
    index: I64
    ref: F64
    numeric: int  # the first ``numeric`` subjects are numeric
    sum_index: I64  # (numeric, C): their value-sum columns
    edges: F64  # (numeric, C - 1)
    ref_mean: F64  # (numeric, C): reference value sums / reference count
    scale: F64  # (numeric,): the Wasserstein divisor
    features: int  # the first ``features`` numeric subjects are features (out of range)
    computed: tuple[int, ...]  # subjects whose histogram is not a set of columns
    ref_n: F64  # (S,): reference totals
    ref_share: F64  # (S, C): reference proportions
    ref_floor: F64  # (S, C): the same, at least PSI_FLOOR
    numeric_ref: _NumericReferences | None  # the numeric subjects' reference parts
    has_chi2: npt.NDArray[np.bool_]  # (S,): subjects with a chi2 signal (not the score)


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
        probe = compute_metrics(layout, np.zeros((1, layout.width)), class_names, None, min_samples)
        wanted = [k for k in probe if keep is None or keep(k)]
        self.names: tuple[str, ...] = tuple(wanted)
        self._wanted = frozenset(wanted)
        self._rows: list[str] = []  # the signal of each row of the full result
        self._span: dict[str, slice] = {}  # the rows of each block of the full result
        self._ratios(layout)
        self._subjects = _subjects(layout)
        self._binary_extras = tuple(m for m in _EXTRA_BINARY if m in self._wanted)
        self._task_rows(layout, class_names)
        self._subject_rows()
        self._gaps(layout)
        where = {name: i for i, name in enumerate(self._rows)}
        missing = [name for name in self.names if name not in where]
        if missing:
            raise RuntimeError(f"pane signals without a row: {missing}")
        self._pick = np.array([where[name] for name in self.names], dtype=np.int64)

    # ------------------------------------------------------------------ plan
    def _ratios(self, layout: Layout) -> None:
        """Signals that are one column over another, NaN when the denominator is 0."""
        col = layout.col
        pairs: list[tuple[str, int, int]] = [("label_coverage", col("n"), col("pred_n"))]
        if layout.task == "binary":
            pairs += [
                ("log_loss", col("log_loss_sum"), col("scored_n")),
                ("brier", col("brier_sum"), col("scored_n")),
                ("positive_rate", col("pred_pos"), col("pred_n")),
                ("score_mean", col("score_sum"), col("score_n")),
            ]
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
        if self._pca:
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
        if layout.task == "binary":
            baseline = layout.baseline
            c = baseline.calibration if baseline is not None else None
            self._calibration = midpoint_calibration(layout.bins) if c is None else c
            self._cc = np.stack([self._calibration, 1.0 - self._calibration], axis=1)
            self._confusion = [layout.col(c) for c in ("tp", "fp", "tn", "fn")]
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
        """The drift rows: psi, js and chi2 of every subject, ks and wasserstein of the
        numeric ones, the features' out-of-range rates, the binary score's ks and
        wasserstein."""
        self._score = None
        sub = self._subjects
        if sub is None:
            return
        self._block(
            "stats", [f"{stat}:{name}" for stat in ("psi", "js", "chi2") for name in sub.names]
        )
        numeric = sub.names[: sub.numeric]
        self._block(
            "numeric", [f"{stat}:{name}" for stat in ("ks", "wasserstein") for name in numeric]
        )
        self._block("outside", [f"out_of_range_rate:{name}" for name in numeric[: sub.features]])
        self._computed = sub.computed
        self._subject_names = sub.names
        baseline = self.layout.baseline
        if SCORE in sub.names and baseline is not None:
            ref_hist = baseline.row[self.layout.cols("score_hist")]
            self._groups = _grouped_ref(self.layout, ref_hist)[0]
        self._score = self._score_plan()
        if self._score is not None:
            self._block("score", [f"ks:{SCORE}", f"wasserstein:{SCORE}"])

    def _score_plan(self) -> _ScoreReference | None:
        """Binary output drift of the score over its bins (None without a reference
        score): what :func:`~monitor.core.drift.output_drift` derives from the reference."""
        layout = self.layout
        baseline = layout.baseline
        if layout.task != "binary" or baseline is None:
            return None
        ref_hist = baseline.row[layout.cols("score_hist")]
        if ref_hist.sum() <= 0:
            return None
        r = ref_hist / ref_hist.sum()
        mid = (np.arange(layout.bins) + 0.5) / layout.bins
        sd = float(np.sqrt(max((r * mid * mid).sum() - (r * mid).sum() ** 2, 0.0)))
        cdf = np.cumsum(r)
        return _ScoreReference(
            cdf=cdf,
            tail=np.cumsum(r[::-1])[::-1][1:],
            left=int((cdf[:-1] <= 0.5).sum()),
            sd=sd if sd > 0 else 1.0,
        )

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
    def compute(self, acc: F64, sample_count: F64 | None = None) -> F64:
        """The plan's signals over the rows of ``acc`` (the stacked windows), an array
        ``(len(names), rows)``: each block of signals writes its rows of one result, then
        the wanted rows are picked in the names' order."""
        n_rows = acc.shape[0]
        ext = np.zeros((n_rows, self.width + 1))
        ext[:, : self.width] = acc
        full = np.empty((len(self._rows), n_rows))
        span = self._span
        self._ratio_block(ext, full[span["ratio"]])
        full[span["raw"]] = ext[:, self._raw].T
        if self.layout.task == "binary":
            self._binary(acc, full)
        else:
            values = task_metrics(self.layout, acc, self.class_names, sample_count)
            values.pop("prediction_count")
            values.update(estimated_metrics(self.layout, acc, self.min_samples))
            full[span["task"].start : span["estimates"].stop] = np.stack(list(values.values()))
        if self._subjects is not None:
            self._drift(acc, ext, self._subjects, full)
        if len(self._gap_src):
            full[span["gaps"]] = full[self._gap_src] - self._gap_ref
        out: F64 = full[self._pick]
        return out

    def _ratio_block(self, ext: F64, out: F64) -> None:
        out[:] = _ratio(ext[:, self._ratio_num], ext[:, self._ratio_den], np.nan).T
        np.minimum(out[0], 1.0, out=out[0])  # label_coverage: a share
        if self._pca:
            profile = self.layout.profile
            assert profile is not None and profile.pca is not None
            count = ext[:, self._ratio_den[-1]]
            out[-1] = np.where(count >= self.min_samples, out[-1] / profile.pca.ref_error, np.nan)

    def _binary(self, acc: F64, full: F64) -> None:
        """Realized and label-free (CBPE) binary metrics, as one stack of two."""
        layout = self.layout
        col = layout.col
        n_rows = acc.shape[0]
        bins = layout.bins
        start = col("score_hist")
        hists = acc[:, start : start + 2 * bins].reshape(n_rows, 2, bins)
        hist, pp = hists[:, 0], hists[:, 1]
        start = col("pos_hist")
        labelled = acc[:, start : start + 2 * bins].reshape(n_rows, 2, bins)
        pos, neg = labelled[:, 0], labelled[:, 1]
        # confusion counts (tp, fp, tn, fn): realized, and expected from the calibration
        conf = np.empty((2, n_rows, 4))
        conf[0] = acc[:, self._confusion]
        conf[1, :, :2] = pp @ self._cc  # E[TP], E[FP]
        conf[1, :, 3:1:-1] = (hist - pp) @ self._cc  # E[FN], E[TN]
        tp, fp, tn, fn = conf[..., 0], conf[..., 1], conf[..., 2], conf[..., 3]
        n = acc[:, col("n")]
        # accuracy, precision, recall, f1 of both at once
        num = np.empty((4, 2, n_rows))
        den = np.empty((4, 2, n_rows))
        np.add(tp, tn, out=num[0])
        num[1] = num[2] = tp
        np.multiply(tp, 2, out=num[3])
        den[0, 0] = n
        hist.sum(axis=1, out=den[0, 1])
        np.add(tp, fp, out=den[1])
        np.add(tp, fn, out=den[2])
        np.add(num[3] + fp, fn, out=den[3])
        invalid = np.empty((2, n_rows), dtype=bool)
        np.less_equal(n, 0, out=invalid[0])
        np.less(den[0, 1], self.min_samples, out=invalid[1])
        rates = full[self._span["rates"]].reshape(4, 2, n_rows)
        rates[:] = _ratio(num, den, _EMPTY_RATES)
        np.copyto(rates, np.nan, where=invalid)
        # ROC AUC: realized from the labelled histograms, expected from score_hist * c
        p_hist = np.empty((2, n_rows, bins))
        n_hist = np.empty((2, n_rows, bins))
        p_hist[0], n_hist[0] = pos, neg
        np.multiply(hist, self._calibration, out=p_hist[1])
        np.multiply(hist, self._cc[:, 1], out=n_hist[1])
        neg_below = np.cumsum(n_hist, axis=2) - n_hist
        pairs = p_hist.sum(axis=2) * n_hist.sum(axis=2)
        # realized and expected ROC AUC, and the realized one's binning error
        num = np.empty((3, n_rows))
        (p_hist * (neg_below + 0.5 * n_hist)).sum(axis=2, out=num[:2])
        np.multiply((pos * neg).sum(axis=1), 0.5, out=num[2])
        auc = full[self._span["auc"]]
        auc[:] = _ratio(num, pairs[[0, 1, 0]], _EMPTY_AUC)
        np.copyto(auc[1], np.nan, where=invalid[1])
        if self._binary_extras:
            full[self._span["extra"]] = self._binary_extra(conf[0], n, pos, neg)

    def _binary_extra(self, conf: F64, n: F64, pos: F64, neg: F64) -> F64:
        """The binary metrics outside the fused stack, those wanted only."""
        tp, fp, tn, fn = conf[:, 0], conf[:, 1], conf[:, 2], conf[:, 3]
        values: dict[str, F64] = {}
        empty = n <= 0
        wanted = self._binary_extras
        if "specificity" in wanted or "balanced_accuracy" in wanted:
            recall = _ratio(tp, tp + fn, 0.0)
            specificity = _ratio(tn, tn + fp, 0.0)
            values["specificity"] = np.where(empty, np.nan, specificity)
            has_pos, has_neg = tp + fn > 0, tn + fp > 0
            present = has_pos.astype(float) + has_neg.astype(float)
            balanced = _ratio(recall * has_pos + specificity * has_neg, present, 0.0)
            values["balanced_accuracy"] = np.where(empty, np.nan, balanced)
        if "mcc" in wanted:
            matrix = np.stack([np.stack([tn, fp], axis=1), np.stack([fn, tp], axis=1)], axis=1)
            values["mcc"] = np.where(empty, np.nan, mcc(matrix))
        if "pr_auc" in wanted:
            values["pr_auc"] = average_precision(pos, neg, pos.sum(axis=1))
        return np.stack([values[name] for name in wanted])

    def _drift(self, acc: F64, ext: F64, sub: _Subjects, full: F64) -> None:
        """Feature and output drift: every subject of every row in one padded stack."""
        n_rows = acc.shape[0]
        hist = ext[:, sub.index]  # (rows, S, C)
        self._fill_outputs(acc, hist)
        n = hist.sum(axis=2)
        enough = n >= self.min_samples
        has = n > 0
        count = np.where(has, n, 1.0)
        p = np.where(has[..., None], hist / count[..., None], 0.0)
        stats = full[self._span["stats"]].reshape(3, -1, n_rows)  # (psi, js, chi2) x S
        psi_value, js_value = _psi_js(p, sub.ref_share, sub.ref_floor)
        stats[0] = psi_value.T
        stats[1] = js_value.T
        np.copyto(stats[:2], np.nan, where=~enough.T)
        stats[2] = _chi2(hist, n, sub.ref, sub.ref_n, enough & sub.has_chi2).T
        k = sub.numeric
        if k:
            assert sub.numeric_ref is not None
            p_mean = np.where(has[:, :k, None], ext[:, sub.sum_index] / count[:, :k, None], 0.0)
            ks, w = _ks_wasserstein(p[:, :k], p_mean, sub.numeric_ref)
            numeric = full[self._span["numeric"]].reshape(2, k, n_rows)
            numeric[0] = ks.T
            numeric[1] = (w / sub.scale).T
            np.copyto(numeric, np.nan, where=~enough[:, :k].T)
        if sub.features:
            f = sub.features
            outside = hist[:, :f, 0] + hist[:, :f, -1]
            pred_n = acc[:, self.layout.col("pred_n"), None]
            full[self._span["outside"]] = _ratio(outside, pred_n, np.nan).T
        if self._score is not None:
            self._score_drift(acc, full[self._span["score"]])

    def _fill_outputs(self, acc: F64, hist: F64) -> None:
        """The subjects that are not plain columns: the binary score (bins merged into
        groups of equal reference mass), binary predicted and true classes, multiclass
        true classes."""
        layout = self.layout
        col = layout.col
        for s in self._computed:
            name = self._subject_names[s]
            if name == SCORE:
                groups = np.add.reduceat(acc[:, layout.cols("score_hist")], self._groups, axis=1)
                hist[:, s, : groups.shape[1]] = groups
            elif layout.task == "multiclass":
                k = layout.n_classes
                hist[:, s, :k] = acc[:, layout.cols("confusion")].reshape(-1, k, k).sum(axis=2)
            elif name == PREDICTION:
                pred_n, pos = acc[:, col("pred_n")], acc[:, col("pred_pos")]
                hist[:, s, 0] = pred_n - pos
                hist[:, s, 1] = pos
            else:
                hist[:, s, 0] = acc[:, col("tn")] + acc[:, col("fp")]
                hist[:, s, 1] = acc[:, col("tp")] + acc[:, col("fn")]

    def _score_drift(self, acc: F64, out: F64) -> None:
        """``ks`` and ``wasserstein`` of the binary score over its bins."""
        ref = self._score
        assert ref is not None
        bins = self.layout.bins
        hist = acc[:, self.layout.cols("score_hist")]
        n = hist.sum(axis=1)
        p = _ratio(hist, n[:, None], 0.0)
        cdf = np.cumsum(p, axis=1)
        w = np.abs(cdf - ref.cdf).sum(axis=1) / bins
        # F_p - F_r at the bin boundaries, each summed from the side where the reference
        # has less mass (see cdf_differences): the left part for the first ``left``
        m = ref.left
        d = np.empty((acc.shape[0], bins - 1))
        d[:, :m] = cdf[:, :m] - ref.cdf[:m]
        d[:, m:] = ref.tail[m:] - np.cumsum(p[:, :m:-1], axis=1)[:, ::-1]
        ks = np.abs(d).max(axis=1)
        out[0] = np.where(ks <= CDF_TOLERANCE, 0.0, ks)
        out[1] = w / ref.sd
        np.copyto(out, np.nan, where=n < self.min_samples)


def _numeric_row(values: Sequence[_T], pad: _T, size: int) -> list[_T]:
    """A numeric histogram's columns (or reference values) padded to ``size`` with
    ``pad`` just before the overflow column."""
    return [*values[:-1], *([pad] * (size - len(values))), values[-1]]


def _subjects(layout: Layout) -> _Subjects | None:
    """The drift subjects of ``layout`` (see :class:`_Subjects`), None without any."""
    width = layout.width
    profile = layout.profile
    numeric: list[tuple[str, range, range, NumericReference]] = []
    classes: list[tuple[str, list[int], F64]] = []  # columns ([]: computed), ref counts
    features = 0
    if profile is not None:
        for name, kind in layout.features.items():
            if kind != "numeric":
                continue
            ref = profile.numeric[name]
            start = layout.col(f"hist:{name}")
            sums = layout.col(f"bin_sum:{name}")
            numeric.append(
                (name, range(start, start + ref.columns), range(sums, sums + ref.columns), ref)
            )
        features = len(numeric)
    for name, ref in layout.outputs.items():
        h, b = layout.cols(f"hist:{name}"), layout.cols(f"bin_sum:{name}")
        numeric.append((name, range(h.start, h.stop), range(b.start, b.stop), ref))
    if profile is not None:
        for name, kind in layout.features.items():
            if kind == "numeric":
                continue
            cref = profile.categorical[name]
            if cref.counts.sum() > 0:
                start = layout.col(f"hist:{name}")
                classes.append((name, list(range(start, start + cref.columns)), cref.counts))
    baseline = layout.baseline
    if baseline is not None:
        row = baseline.row
        if layout.task == "binary":
            ref_hist = row[layout.cols("score_hist")]
            if ref_hist.sum() > 0:
                classes.append((SCORE, [], _grouped_ref(layout, ref_hist)[1]))
            pred_n, pos = row[layout.col("pred_n")], row[layout.col("pred_pos")]
            tp, fp, tn, fn = (row[layout.col(c)] for c in ("tp", "fp", "tn", "fn"))
            for name, counts in ((PREDICTION, [pred_n - pos, pos]), (LABEL, [tn + fp, tp + fn])):
                if sum(counts) > 0:
                    classes.append((name, [], np.array(counts)))
        elif layout.task == "multiclass":
            k = layout.n_classes
            pred = layout.cols("pred_class")
            pred_ref = row[pred]
            if pred_ref.sum() > 0:
                classes.append((PREDICTION, list(range(pred.start, pred.stop)), pred_ref))
            label_ref = row[layout.cols("confusion")].reshape(k, k).sum(axis=1)
            if label_ref.sum() > 0:
                classes.append((LABEL, [], label_ref))
    if not numeric and not classes:
        return None
    size = max([ref.columns for _, _, _, ref in numeric] + [len(c) for _, _, c in classes])
    index = [_numeric_row(cols, width, size) for _, cols, _, _ in numeric]
    index += [cols + [width] * (size - len(cols)) for _, cols, _ in classes]
    refs = [
        np.array(_numeric_row(ref.counts.tolist(), 0.0, size), dtype=np.float64)
        for _, _, _, ref in numeric
    ]
    refs += [np.concatenate([counts, np.zeros(size - len(counts))]) for _, _, counts in classes]
    ref_mean = [
        np.array(_numeric_row((ref.sums / ref.counts.sum()).tolist(), 0.0, size), dtype=np.float64)
        for _, _, _, ref in numeric
    ]
    edges = [
        np.concatenate([ref.edges, np.full(size - ref.columns, ref.edges[-1])])
        for _, _, _, ref in numeric
    ]
    ref_counts = np.array(refs)
    ref_n = ref_counts.sum(axis=1)
    ref_share = ref_counts / ref_n[:, None]
    k = len(numeric)
    numeric_ref = None
    if k:
        numeric_ref = _NumericReferences.of(
            ref_share[:k], np.array(edges).reshape(k, size - 1), np.array(ref_mean)
        )
    names = tuple(n for n, *_ in numeric) + tuple(n for n, *_ in classes)
    return _Subjects(
        numeric_ref=numeric_ref,
        has_chi2=np.array([name != SCORE for name in names]),
        ref_n=ref_n,
        ref_share=ref_share,
        ref_floor=np.maximum(ref_share, PSI_FLOOR),
        names=names,
        index=np.array(index, dtype=np.int64),
        ref=ref_counts,
        numeric=len(numeric),
        sum_index=np.array(
            [_numeric_row(s, width, size) for _, _, s, _ in numeric], dtype=np.int64
        ).reshape(len(numeric), size),
        edges=np.array(edges).reshape(len(numeric), size - 1),
        ref_mean=np.array(ref_mean).reshape(len(numeric), size),
        scale=np.array([ref.std if ref.std > 0 else 1.0 for *_, ref in numeric]),
        features=features,
        computed=tuple(i + len(numeric) for i, (_, c, _) in enumerate(classes) if not c),
    )


def _grouped_ref(layout: Layout, ref_hist: F64) -> tuple[I64, F64]:
    """The first bin of each group of adjacent score bins of about equal reference mass
    (``drift_bins`` groups), and the reference counts per group."""
    groups = layout.drift_bins
    cum = np.cumsum(ref_hist) - ref_hist  # reference mass below each bin
    gid = np.minimum((cum / ref_hist.sum() * groups).astype(np.int64), groups - 1)
    k = int(gid.max()) + 1
    counts: F64 = np.bincount(gid, weights=ref_hist, minlength=k).astype(np.float64)
    return np.flatnonzero(np.diff(gid, prepend=-1)), counts


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
    plans = _PLANS.setdefault(layout, {})
    key = (class_names, min_samples, keep_key, keep is None)
    plan = plans.get(key)
    if plan is None or plan.key != _layout_key(layout):
        plan = plans[key] = PanePlan(layout, class_names, min_samples, keep)
    return plan


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
