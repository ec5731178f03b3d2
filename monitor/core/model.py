"""What the core knows of one model, and what both stages compute from it.

:class:`ModelState` holds a model's config-derived constants (codec, layout, windows,
baseline, detectors) and its slice registry; stage 1 (:mod:`monitor.core.engine`) keeps one
per model to decode and accumulate, each model's stage 2 (:mod:`monitor.core.model_stage`)
one to close panes. :func:`close_signals` turns a model's values at a pane close into its
signals (:class:`PaneSignals`); :func:`warmup_profile` and
:func:`install_profile` make the warmup reference.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import structlog

from monitor import native
from monitor.catalogue import ALWAYS_COMPUTED, base_metric
from monitor.config import ConfigError, ModelConfig
from monitor.core.baseline import Baseline, build_baseline
from monitor.core.detectors import ErrorDetectors, error_stream
from monitor.core.layout import Layout
from monitor.core.panemetrics import PanePlan, WindowMetrics, WindowValues
from monitor.core.reference import ReferenceProfile, load_profile, profile_from_columns
from monitor.core.warmup_buffer import WarmChunk, sample_columns
from monitor.core.windows import WindowSet
from monitor.events.codec import ModelCodec, PredictionEvent

__all__ = [
    "ModelState",
    "PaneSignals",
    "SignalBlock",
    "SliceRegistry",
    "batch_signals",
    "close_signals",
    "install_profile",
    "keyed_rows",
    "pane_signals",
    "slice_counters",
    "warmup_profile",
]

F64 = npt.NDArray[np.float64]
_log = structlog.get_logger(__name__)
OTHER = "__other__"

class SignalBlock:
    """The signal values of a batch of panes closed together, a row a pane, in the order of
    ``labels`` (a pane's signals are ``template``, the labels' dict, with its row written
    in; see :func:`keyed_rows`): what a pane's dict is made from when it is first read,
    and what :func:`~monitor.outputs.signals.signal_lines` writes the panes' lines from
    in one pass, without their dicts."""

    __slots__ = ("labels", "template", "values")

    def __init__(self, template: dict[str, float], labels: list[str], values: F64) -> None:
        self.template = template
        self.labels = labels
        self.values = values


@dataclass(slots=True)
class PaneSignals:
    """The model-level signal values when a pane closed: ``{"f1@1h": 0.93, ...}``, and the
    model's predictions in closed panes so far (what absence rules judge silence by; NaN
    when not known). ``row``: the block of its batch that holds the same values, and its
    row there (None: not made by a pane close; see :func:`pane_signals`); neither
    compared nor stored, and ``signals`` is not to be changed while it is set. A pane
    made from its row (:meth:`of_row`) makes its ``signals`` when they are first read."""

    model: str
    pane_end: float
    signals: dict[str, float]
    predictions_total: float = math.nan
    row: tuple[SignalBlock, int] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_row(cls, model: str, pane_end: float, predictions_total: float,
               row: tuple[SignalBlock, int]) -> PaneSignals:  # fmt: skip
        """A pane whose signals are row ``row[1]`` of the block ``row[0]``, their dict not
        made until it is read (a replay without alert rules, nor exports, never reads it)."""
        sig = cls.__new__(cls)
        sig.model = model
        sig.pane_end = pane_end
        sig.predictions_total = predictions_total
        sig.row = row
        return sig

    def __getattr__(self, name: str) -> dict[str, float]:
        """``signals`` not made yet (see :meth:`of_row`): made from the pane's row, kept."""
        row = None if name != "signals" else self.row
        if row is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        block, i = row
        self.signals = keyed_rows(block.template, block.labels, block.values[i : i + 1])[0]
        return self.signals


class SliceRegistry:
    """Slice ids of one model: 0 is the whole model, then versions and segment values as
    they appear, each dimension capped (values past the cap share ``__other__``)."""

    def __init__(self, model: ModelConfig) -> None:
        self.keys: list[tuple[str, str]] = [("model", "")]
        self.index: dict[tuple[str, str], int] = {("model", ""): 0}
        self.caps = {"version": model.max_versions}
        self.caps.update({f"segment:{s}": model.max_segment_values for s in model.segments})
        self.used: Counter[str] = Counter()
        self.segments = tuple(model.segments)
        self.folded: Counter[str] = Counter()

    def lookup(self, dimension: str, value: str) -> int:
        """The slice id of ``dimension=value``, registering it (or folding it) if new."""
        key = (dimension, value)
        found = self.index.get(key)
        if found is not None:
            return found
        if self.used[dimension] >= self.caps[dimension]:
            self.folded[dimension] += 1
            key = (dimension, OTHER)
            found = self.index.get(key)
            if found is not None:
                return found
        else:
            self.used[dimension] += 1
        self.index[key] = len(self.keys)
        self.keys.append(key)
        return self.index[key]

    def slices_of(self, event: PredictionEvent) -> tuple[int, ...]:
        """Slice ids of a prediction: model, version (-1 if none), each segment (-1 if absent)."""
        out = [0, self.lookup("version", event.model_version) if event.model_version else -1]
        seg = event.segment or {}
        for name in self.segments:
            value = seg.get(name)
            out.append(-1 if value is None else self.lookup(f"segment:{name}", value))
        return tuple(out)


class ModelState:
    """What the engine knows of one model: config-derived constants and the slice registry."""

    def __init__(self, index: int, model: ModelConfig, pane: float) -> None:
        self.index = index
        self.config = model
        self.name = model.name
        self.codec = ModelCodec(model)
        self.class_names = model.class_names
        self.profile = load_profile(model)  # ConfigError when the reference is unusable
        #: Predictions still wanted for a warmup profile (0: none wanted, or built).
        self.warmup_target = model.reference_warmup if self.profile is None else 0
        #: The warmup sample so far, in order (see :mod:`monitor.core.warmup_buffer`).
        self.warmup_rows: list[WarmChunk] = []
        #: The last pane of the warmup sample: events up to it are not histogrammed.
        self.profile_pane: int | None = None
        reserve = (model.drift_bins, model.max_categories) if self.warmup_target else None
        self.layout = Layout(
            model.task,
            max(len(self.class_names), 2),
            model.score_bins,
            features=model.features,
            profile=self.profile,
            reserve=reserve,
        )
        self.layout.drift_bins = model.drift_bins
        self.baseline = build_baseline(model, self.layout, self.profile)
        self.layout.baseline = self.baseline
        if self.profile is not None:
            self.profile.outputs.clear()  # raw reference columns: used, not kept in state
        self.class_index = {name: i for i, name in enumerate(self.class_names)}
        self.windows = model.window_specs
        self.registry = SliceRegistry(model)
        self.pane = pane
        wanted = model.metrics
        self.metrics: tuple[str, ...] | None = tuple(wanted) if wanted is not None else None
        self.detectors = (
            ErrorDetectors(model.detectors, error_stream(model.task)) if model.detectors else None
        )
        #: pane -> partition -> (event times, errors) of joined pairs, fed at the pane's close
        self.error_panes: dict[int, dict[int, tuple[list[float], list[float]]]] = {}
        self.last_detections: dict[str, int] = {}  # detections in the last closed pane
        self.last: Mapping[str, Mapping[str, F64]] = {}
        self.last_rows = 0

    def new_windows(self) -> WindowSet:
        """Empty windows of the model (its stage 2's)."""
        return WindowSet(self.windows, self.pane, self.layout.width, len(self.registry.keys))



def close_signals(
    model: ModelState,
    plan: PanePlan,
    windows: tuple[str, ...],
    whole: list[float],
    error_panes: dict[int, dict[int, tuple[list[float], list[float]]]],
    pane: int,
    values: WindowValues | None = None,
    taken: tuple[list[float], list[float]] | None = None,
) -> dict[str, float]:
    """The model-level signals of the pane ``pane`` that just closed, from ``whole``, the
    whole model's values of ``plan``'s signals in each of ``windows``, window after window
    (see :meth:`WindowValues.model_signals
    <monitor.core.panemetrics.WindowValues.model_signals>`): :func:`batch_signals` of that
    pane alone. The detectors are fed the buffered errors of the panes through ``pane``
    (taken out of ``error_panes``; ``taken``: already taken out, event times and errors,
    partition after partition, each in input order). ``values``, every window's values of
    every slice, go to ``model.last`` for reports."""
    if model.detectors is not None and taken is None:
        taken = take_errors(error_panes, pane)
    rows = np.asarray([whole], dtype=np.float64)
    return batch_signals(model, plan, windows, rows, None if taken is None else [taken],
                         values)[0]  # fmt: skip


def ordered_errors(ts: list[float], errors: list[float]) -> list[float]:
    """``errors`` in the stable order of their event times ``ts`` (numpy's stable argsort:
    ties kept in input order, a NaN time last), the order the detectors are fed in."""
    if len(ts) > 1:
        if math.isnan(sum(ts)):  # numpy's stable order (NaN last)
            order = np.argsort(np.asarray(ts), kind="stable").tolist()
        else:  # the same stable order of a pane's few errors, without numpy's calls
            order = sorted(range(len(ts)), key=ts.__getitem__)
        errors = [errors[i] for i in order]
    return errors


def ordered_panes(taken: list[tuple[list[float], list[float]]]) -> list[list[float]]:
    """:func:`ordered_errors` of each pane's (event times, errors) of ``taken``: by one call
    of the compiled kernel (``monitor._native.ordered_errors``, the same orders) when
    :mod:`monitor.native` runs and every time is a float, else pane by pane."""
    compiled = native.kernels()
    if compiled is not None:
        done: list[list[float]] | None = compiled.ordered_errors(taken)
        if done is not None:
            return done
    return [ordered_errors(ts, errors) for ts, errors in taken]


def batch_signals(
    model: ModelState,
    plan: PanePlan,
    windows: tuple[str, ...],
    whole: F64,
    taken: list[tuple[list[float], list[float]]] | None,
    values: WindowValues | None = None,
) -> list[dict[str, float]]:
    """:func:`close_signals` of consecutive panes, in order, at once: the dicts of
    :func:`pane_signals`' panes."""
    unknown = [math.nan] * whole.shape[0]
    made = pane_signals(model, plan, windows, whole, taken, values, unknown, unknown)
    return [sig.signals for sig in made]


def pane_signals(
    model: ModelState,
    plan: PanePlan,
    windows: tuple[str, ...],
    whole: F64,
    taken: list[tuple[list[float], list[float]]] | None,
    values: WindowValues | None,
    ends: list[float],
    seen: list[float],
) -> list[PaneSignals]:
    """The :class:`PaneSignals` of consecutive panes closed together, in order, ending at
    ``ends`` with ``seen`` predictions in closed panes: ``whole`` ``(panes, windows *
    signals)`` holds each pane's whole-model values window after window, ``taken`` each
    pane's buffered errors (event times, errors; None without detectors), ``values``
    every window's values of the last pane. The detectors are fed pane after pane
    (:meth:`~monitor.core.detectors.ErrorDetectors.feed_panes`) and each pane's
    detections written in after each window's signals with one numpy assignment for
    every pane: the same signals, in the same order, as one :func:`close_signals` per
    pane. Each pane keeps its row of the batch's :class:`SignalBlock` (the values as
    one matrix of their own, not a view of ``whole``), its dict made when first read
    (see :meth:`PaneSignals.of_row`)."""
    columns: dict[str, F64] = {}
    detectors = model.detectors
    if detectors is None:
        labels, template = plan.keyed(windows)
        rows = np.array(whole, dtype=np.float64, order="C")
    else:
        assert taken is not None
        counts = detectors.feed_panes(ordered_panes(taken))
        stream = detectors.stream
        names = list(detectors.detectors)
        model.last_detections = detections = dict(zip(names, counts[-1], strict=True))
        if values is not None and detections:
            block = np.full((len(detections), len(model.registry.keys)), np.nan)
            block[:, 0] = counts[-1]  # whole model only
            for i, name in enumerate(detections):
                columns[f"{name}:{stream}"] = block[i]
        k = whole.shape[0]
        size = len(plan.names)
        extra = len(names)
        both = np.empty((k, len(windows), size + extra))
        both[:, :, :size] = whole.reshape(k, len(windows), size)
        both[:, :, size:] = np.array(counts, dtype=np.float64).reshape(k, 1, extra)
        rows = both.reshape(k, -1)
        labels, template = plan.keyed(windows, tuple(f"{name}:{stream}" for name in names))
    if values is not None:
        model.last = WindowMetrics(values, columns)
        model.last_rows = len(model.registry.keys)
    name = model.name
    if len(template) != len(labels):  # a label twice: the dicts hold fewer keys
        signals = keyed_rows(template, labels, rows)
        return list(map(PaneSignals, [name] * len(signals), ends, signals, seen))
    made = SignalBlock(template, labels, rows)
    of_row = PaneSignals.of_row
    return [
        of_row(name, end, total, (made, i))
        for i, (end, total) in enumerate(zip(ends, seen, strict=True))
    ]


def keyed_rows(template: dict[str, float], labels: list[str],
               values: F64) -> list[dict[str, float]]:  # fmt: skip
    """Per row of ``values`` ``(rows, len(labels))``, a copy of ``template`` (keys
    ``labels``, in order: the dict the labels zipped with the values make, without the
    dict growing key by key) with the row's values written in. The compiled kernel
    (``monitor._native.keyed_rows``) makes the same dicts without a list of floats per
    row."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(labels):
        raise ValueError(f"values: (rows, {len(labels)}) expected, got {values.shape}")
    compiled = native.kernels()
    if compiled is not None and labels:
        out: list[dict[str, float]] = compiled.keyed_rows(template, labels, values)
        return out
    out = []
    for row in values.tolist():
        keyed = template.copy()
        keyed.update(zip(labels, row, strict=True))
        out.append(keyed)
    return out


def take_errors(error_panes: dict[int, dict[int, tuple[list[float], list[float]]]],
                panes: int | list[int]) -> tuple[list[float], list[float]]:
    """The buffered errors (event times, errors) of the panes through ``panes`` (or of
    the panes listed, ascending), taken out of ``error_panes``: pane after pane, partition
    after partition, each partition's in input order."""
    if isinstance(panes, int):
        upto = panes
        panes = sorted(k for k in error_panes if k <= upto)
    ts: list[float] = []
    errors: list[float] = []
    for p in panes:
        parts = error_panes.pop(p, None)
        if parts is None:
            continue
        for number in sorted(parts):
            held_ts, held = parts[number]
            ts.extend(held_ts)
            errors.extend(held)
    return ts, errors


def take_errors_each(
    error_panes: dict[int, dict[int, tuple[list[float], list[float]]]],
    panes: list[int],
    low: int | None,
) -> list[tuple[list[float], list[float]]]:
    """:func:`take_errors` of each of ``panes`` (ascending) in turn, as a pane close of each
    takes them: the buffered errors of the panes through it, taken out. ``low``: a pane
    at or below which no pane is buffered (None: not known); each pane taken makes the
    next one that, so that only a pane right after the one before it is looked up alone,
    any other searches the buffer for the panes at or below it, as
    :meth:`ModelStage._errors_through <monitor.core.model_stage.ModelStage._errors_through>`
    does pane by pane."""
    out: list[tuple[list[float], list[float]]] = []
    append = out.append
    pop = error_panes.pop
    for pane in panes:
        if low is None or low < pane:
            append(take_errors(error_panes, pane))
        else:
            parts = pop(pane, None)
            if parts is None:
                append(([], []))
            else:  # partition after partition (take_errors of [pane], inlined)
                ts: list[float] = []
                errors: list[float] = []
                for number in sorted(parts):
                    held_ts, held = parts[number]
                    ts += held_ts
                    errors += held
                append((ts, errors))
        low = pane + 1
    return out


def slice_counters(model: ModelState, row: F64) -> dict[str, float]:
    """The additive counters of one slice row of the cumulative sums (a SliceReport's)."""
    lay = model.layout
    out = {"predictions": float(row[lay.col("pred_n")]), "joined": float(row[lay.col("n")])}
    out.update(lay.kind.counters(lay, row, model.class_names))
    return out


#: Signals kept whatever a model's ``metrics`` lists (see :mod:`monitor.catalogue`).
_ALWAYS = ALWAYS_COMPUTED


def _base(metric: str) -> str:
    """The configurable metric a computed value belongs to (``class_recall:cat`` -> ...)."""
    return base_metric(metric)


def warmup_profile(model: ModelState, rows: int | None = None) -> ReferenceProfile | None:
    """The warmup profile of ``model`` from its sample (``model.warmup_rows``) once that
    holds ``reference_warmup`` predictions, else None. A sample that stays unusable at four
    times that size ends the warmup (logged; ``warmup_target`` becomes 0). ``rows``: the
    sample's size, when the caller keeps count of it (None: counted here)."""
    target = model.warmup_target
    if rows is None:
        rows = sum(map(len, model.warmup_rows))
    if not target or rows < target:
        return None
    columns, predictions, scores = sample_columns(model.warmup_rows, model.layout)
    config = model.config
    try:
        return profile_from_columns(
            columns,
            config.features,
            config.drift_bins,
            config.max_categories,
            f"the warmup of model {model.name!r} ({rows} predictions)",
            {"prediction": predictions, "score": scores},
        )
    except ConfigError as exc:
        if rows < 4 * target:
            return None  # a feature had no usable value yet: wait for more
        _log.error("warmup_failed", model=model.name, predictions=rows, error=str(exc))
        model.warmup_target = 0
        model.warmup_rows = []
        return None


def install_profile(model: ModelState, profile: ReferenceProfile, pane: int,
                    baseline: Baseline | None = None) -> None:  # fmt: skip
    """Make a warmup ``profile`` (built from the panes through ``pane``) the model's
    reference: its layout histograms against it, its baseline comes from it (or is
    ``baseline``, built with it elsewhere), and the predictions of panes up to ``pane``
    (the sample's) are never histogrammed."""
    layout = model.layout
    layout.profile = model.profile = profile
    layout.pca = profile.pca if "pca_n" in layout.fields else None
    if baseline is None:
        baseline = build_baseline(model.config, layout, profile)
    model.baseline = layout.baseline = baseline
    profile.outputs.clear()
    model.profile_pane = pane
    model.warmup_target = 0
    model.warmup_rows = []
