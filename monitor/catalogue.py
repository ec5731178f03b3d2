"""The catalogue of signals: every name a model's signals can take, in one place.

A signal is ``<name>[:<subject>]@<window>`` (``f1@1h``, ``psi:amount@ewm30m``). This module
says, for each ``<name>``, what it is (:class:`Signal`): its kind, its unit, the tasks that
have it, which direction is worse, the bound an alert on it usually uses, what its subject
is and a line of description. Everything else reads it from here: the validation of a
model's ``metrics`` and of alert-rule signals (:mod:`monitor.config`), the rules
(:mod:`monitor.core.rules`, :mod:`monitor.outputs.promrules`), which signals the engine
computes whatever ``metrics`` says, the report's colour scales and axes
(:mod:`monitor.report_html`), the live view (:mod:`monitor.tui`) and the generated
reference page ``docs/metrics.md`` (:mod:`monitor.docgen`).

This module imports nothing of the package, so any module may read it.

>>> SIGNALS["psi"].kind, SIGNALS["psi"].higher_is, SIGNALS["psi"].threshold
('drift', 'worse', 0.25)
>>> "mae" in task_metrics("regression"), "mae" in task_metrics("binary")
(True, False)
>>> base_metric("gap:f1"), base_metric("roc_auc_bin_error"), base_metric("class_recall:cat")
('f1', 'roc_auc', 'class_recall')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ALWAYS_COMPUTED",
    "CLASS_SUBJECT_METRICS",
    "COVERAGE_SIGNALS",
    "DETECTOR_SIGNALS",
    "DETECTOR_STREAMS",
    "DRIFT_SIGNALS",
    "DRIFT_STATISTICS",
    "ESTIMATED_SIGNALS",
    "GAP_METRICS",
    "KINDS",
    "LABEL_SUBJECT",
    "MODEL_QUALITY_SIGNALS",
    "OUTPUT_SUBJECTS",
    "PREDICTION_SUBJECT",
    "SCORE_SUBJECT",
    "SIGNALS",
    "TASKS",
    "TASK_METRICS",
    "TASK_UNLABELLED",
    "UNLABELLED_METRICS",
    "Signal",
    "base_metric",
    "computed_signals",
    "task_metrics",
]

Task = Literal["binary", "multiclass", "regression"]
#: What a signal is:
#:
#: - ``metric``: a performance metric; needs labels, and a model's ``metrics`` selects it;
#: - ``prediction``: a statistic of the predictions alone (counts, rates, means);
#: - ``coverage``: how many predictions have been joined with their label;
#: - ``drift``: a drift statistic against the reference profile;
#: - ``quality``: a data-quality rate of the features (needs no reference);
#: - ``estimate``: a label-free estimate of a performance metric (CBPE);
#: - ``gap``: a metric's window value minus its value on the reference rows;
#: - ``detector``: a concept-drift detector's detections in the pane.
Kind = Literal[
    "metric", "prediction", "coverage", "drift", "quality", "estimate", "gap", "detector"
]
#: The unit of a signal's values:
#:
#: - ``share``: a fraction of events, 0..1 (shown as a percentage);
#: - ``unit_interval``: a score in 0..1 that is not a share of events (accuracy, AUC, ...);
#: - ``correlation``: -1..1;
#: - ``count``: a number of events (or detections);
#: - ``p_value``: a test's p-value, 0..1;
#: - ``label_units``: the unit of the regression label;
#: - ``number``: another dimensionless number (PSI, log loss, R2, ...).
Unit = Literal["share", "unit_interval", "correlation", "count", "p_value", "label_units",
               "number"]
#: Which way a change is bad: ``worse`` (a higher value is worse), ``better``, or
#: ``neither`` (a move either way can matter: counts, means, signed errors).
Direction = Literal["better", "worse", "neither"]
#: What the ``:<subject>`` part names, if the signal has one.
Subject = Literal["", "class", "feature", "metric", "stream"]

TASKS: Final[tuple[Task, ...]] = ("binary", "multiclass", "regression")
KINDS: Final[tuple[Kind, ...]] = (
    "metric", "prediction", "coverage", "drift", "quality", "estimate", "gap", "detector"
)
_ALL: Final = frozenset(TASKS)
_BINARY: Final = frozenset({"binary"})
_MULTICLASS: Final = frozenset({"multiclass"})
_REGRESSION: Final = frozenset({"regression"})
_CLASSIFICATION: Final = frozenset({"binary", "multiclass"})

#: Drift subjects of a model's outputs (``psi:__score__@1h``): the score (binary), the
#: prediction and the label (prior shift). No feature may take these names.
SCORE_SUBJECT: Final = "__score__"
PREDICTION_SUBJECT: Final = "__prediction__"
LABEL_SUBJECT: Final = "__label__"
OUTPUT_SUBJECTS: Final = (SCORE_SUBJECT, PREDICTION_SUBJECT, LABEL_SUBJECT)
#: Streams a detector may watch.
DETECTOR_STREAMS: Final[list[str]] = ["error", "abs_error", "squared_error"]


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal name of the catalogue.

    ``tasks`` are the model tasks that have it; ``higher_is`` which way is bad;
    ``threshold`` the bound an alert on it usually uses (``None``: none that fits every
    model); ``subject`` what ``:<subject>`` names; ``part_of`` the metric whose entry in a
    model's ``metrics`` turns it on, when that is not its own name.
    """

    name: str
    kind: Kind
    unit: Unit
    tasks: frozenset[str]
    higher_is: Direction
    description: str
    threshold: float | None = None
    subject: Subject = ""
    part_of: str = ""

    @property
    def labelled(self) -> bool:
        """Whether the signal needs labels (a performance metric or part of one)."""
        return self.kind == "metric"


def _metric(name: str, tasks: frozenset[str], unit: Unit, higher_is: Direction,
            description: str, subject: Subject = "", part_of: str = "") -> Signal:
    return Signal(name, "metric", unit, tasks, higher_is, description, subject=subject,
                  part_of=part_of)


_CATALOGUE: Final[tuple[Signal, ...]] = (
    # ------------------------------------------------------------ binary metrics
    _metric("accuracy", _CLASSIFICATION, "unit_interval", "better",
            "share of joined predictions whose class is the label's"),
    _metric("precision", _BINARY, "unit_interval", "better",
            "TP / (TP + FP); 0 with no predicted positive"),
    _metric("recall", _BINARY, "unit_interval", "better", "TP / (TP + FN)"),
    _metric("f1", _BINARY, "unit_interval", "better", "harmonic mean of precision and recall"),
    _metric("specificity", _BINARY, "unit_interval", "better", "TN / (TN + FP)"),
    _metric("balanced_accuracy", _BINARY, "unit_interval", "better",
            "mean of recall and specificity"),
    _metric("mcc", _CLASSIFICATION, "correlation", "better",
            "Matthews correlation coefficient"),
    _metric("log_loss", _BINARY, "number", "worse",
            "mean log loss of the scores of joined predictions"),
    _metric("brier", _BINARY, "unit_interval", "worse",
            "mean squared difference between score and label"),
    _metric("roc_auc", _BINARY, "unit_interval", "better",
            "ROC AUC from the score histograms (`score_bins` bins)"),
    _metric("roc_auc_bin_error", _BINARY, "unit_interval", "worse",
            "largest error the binning of the scores can cause in roc_auc", part_of="roc_auc"),
    _metric("pr_auc", _BINARY, "unit_interval", "better",
            "average precision from the score histograms"),
    # -------------------------------------------------------- multiclass metrics
    _metric("macro_precision", _MULTICLASS, "unit_interval", "better",
            "precision per class, averaged"),
    _metric("macro_recall", _MULTICLASS, "unit_interval", "better", "recall per class, averaged"),
    _metric("macro_f1", _MULTICLASS, "unit_interval", "better", "F1 per class, averaged"),
    _metric("micro_precision", _MULTICLASS, "unit_interval", "better",
            "precision over all classes' counts together"),
    _metric("micro_recall", _MULTICLASS, "unit_interval", "better",
            "recall over all classes' counts together"),
    _metric("micro_f1", _MULTICLASS, "unit_interval", "better",
            "F1 over all classes' counts together"),
    _metric("weighted_precision", _MULTICLASS, "unit_interval", "better",
            "precision per class, weighted by the class's labels"),
    _metric("weighted_recall", _MULTICLASS, "unit_interval", "better",
            "recall per class, weighted by the class's labels"),
    _metric("weighted_f1", _MULTICLASS, "unit_interval", "better",
            "F1 per class, weighted by the class's labels"),
    _metric("class_recall", _MULTICLASS, "unit_interval", "better",
            "recall of one class (subject: the class)", subject="class"),
    # -------------------------------------------------------- regression metrics
    _metric("mae", _REGRESSION, "label_units", "worse", "mean absolute error"),
    _metric("rmse", _REGRESSION, "label_units", "worse", "root mean squared error"),
    _metric("mape", _REGRESSION, "unit_interval", "worse",
            "mean absolute percentage error, as a fraction"),
    _metric("r2", _REGRESSION, "number", "better", "coefficient of determination"),
    _metric("mean_error", _REGRESSION, "label_units", "neither",
            "mean signed error (prediction minus label)"),
    # ------------------------------------------------- prediction statistics
    Signal("prediction_count", "prediction", "count", _ALL, "neither",
           "predictions in the window (no labels needed)"),
    Signal("positive_rate", "prediction", "share", _BINARY, "neither",
           "share of predictions of the positive class"),
    Signal("class_share", "prediction", "share", _MULTICLASS, "neither",
           "share of predictions of one class (subject: the class)", subject="class"),
    Signal("score_mean", "prediction", "unit_interval", _BINARY, "neither",
           "mean score of the predictions"),
    Signal("prediction_mean", "prediction", "label_units", _REGRESSION, "neither",
           "mean predicted value"),
    # ---------------------------------------------------------------- coverage
    Signal("label_coverage", "coverage", "share", _ALL, "better",
           "joined pairs / predictions in the window"),
    Signal("label_count", "coverage", "count", _ALL, "better", "joined pairs in the window"),
    # --------------------------------------------------------------- estimates
    Signal("estimated_accuracy", "estimate", "unit_interval", _CLASSIFICATION, "better",
           "label-free estimate (CBPE) of accuracy from calibrated scores"),
    Signal("estimated_precision", "estimate", "unit_interval", _CLASSIFICATION, "better",
           "label-free estimate of precision"),
    Signal("estimated_recall", "estimate", "unit_interval", _CLASSIFICATION, "better",
           "label-free estimate of recall"),
    Signal("estimated_f1", "estimate", "unit_interval", _CLASSIFICATION, "better",
           "label-free estimate of F1"),
    Signal("estimated_roc_auc", "estimate", "unit_interval", _BINARY, "better",
           "label-free estimate of ROC AUC (binary)"),
    # ------------------------------------------- drift statistics (per subject)
    Signal("psi", "drift", "number", _ALL, "worse",
           "population stability index against the reference profile",
           threshold=0.25, subject="feature"),
    Signal("js", "drift", "unit_interval", _ALL, "worse",
           "Jensen-Shannon distance (base 2, in [0, 1]) against the reference",
           threshold=0.1, subject="feature"),
    Signal("wasserstein", "drift", "number", _ALL, "worse",
           "numeric: 1-Wasserstein distance over the reference standard deviation",
           threshold=0.1, subject="feature"),
    Signal("ks", "drift", "unit_interval", _ALL, "worse",
           "numeric: largest CDF difference at the bucket boundaries",
           threshold=0.1, subject="feature"),
    Signal("chi2", "drift", "p_value", _ALL, "better",
           "p-value of the chi-square test of homogeneity with the reference (small: drift)",
           threshold=0.05, subject="feature"),
    # ------------------------------------------ data-quality rates (per feature)
    Signal("missing_rate", "quality", "share", _ALL, "worse",
           "share of predictions without the feature (absent or null)", subject="feature"),
    Signal("type_mismatch_rate", "quality", "share", _ALL, "worse",
           "share with the wrong JSON type for the feature", subject="feature"),
    Signal("nan_rate", "quality", "share", _ALL, "worse",
           "numeric: share with a non-finite number", subject="feature"),
    Signal("out_of_range_rate", "quality", "share", _ALL, "worse",
           "numeric: share outside the reference's [min, max]", subject="feature"),
    Signal("unseen_rate", "quality", "share", _ALL, "worse",
           "categorical: share with a value the reference never had", subject="feature"),
    # ----------------------------------------------- per-model data quality, drift
    Signal("problem_rate", "quality", "share", _ALL, "worse",
           "share of predictions with any feature problem above"),
    Signal("pca_error", "drift", "number", _ALL, "worse",
           "reconstruction error of the numeric features by the reference's PCA, "
           "over the reference's own (1: no drift)"),
    # ---------------------------------------------------------------------- gap
    Signal("gap", "gap", "number", _ALL, "neither",
           "the window's metric minus its value on the reference rows (subject: the metric)",
           subject="metric"),
    # ---------------------------------------------------------------- detectors
    *(
        Signal(name, "detector", "count", _ALL, "worse", text, threshold=0.0, subject="stream")
        for name, text in (
            ("adwin", "detections of river's ADWIN in the pane (subject: the error stream)"),
            ("page_hinkley", "detections of the Page-Hinkley test in the pane"),
            ("cusum", "detections of the calibrated one-sided CUSUM in the pane"),
            ("ddm", "detections of DDM in the pane"),
            ("eddm", "detections of EDDM in the pane"),
            ("hddm_a", "detections of HDDM-A in the pane"),
            ("hddm_w", "detections of HDDM-W in the pane"),
            ("fhddm", "detections of FHDDM in the pane"),
            ("kswin", "detections of KSWIN in the pane"),
        )
    ),
)

#: Every signal name, in catalogue order.
SIGNALS: Final[dict[str, Signal]] = {s.name: s for s in _CATALOGUE}


def _names(kinds: Iterable[str], task: str | None = None, subject: str | None = None,
           selectable: bool = False) -> tuple[str, ...]:
    kinds = set(kinds)
    return tuple(
        s.name for s in _CATALOGUE
        if s.kind in kinds
        and (task is None or task in s.tasks)
        and (subject is None or s.subject == subject)
        and not (selectable and s.part_of)
    )


def task_metrics(task: str) -> tuple[str, ...]:
    """The performance metrics a model of ``task`` may list in ``metrics``."""
    return _names(["metric"], task, selectable=True)


def computed_signals(task: str, features: bool) -> tuple[str, ...]:
    """The signal names a model of ``task`` computes besides the per-feature, gap and
    detector ones (whose subjects come from its configuration): its performance metrics
    (those per class included), prediction statistics, coverage and estimates, and with
    ``features`` the per-model quality and drift signals.

    >>> computed_signals("regression", features=True)[-2:]
    ('problem_rate', 'pca_error')
    """
    kinds = ["metric", "prediction", "coverage", "estimate"]
    names = _names(kinds, task)
    if features:
        names += _names(["drift", "quality"], task, subject="")
    return names


#: Performance metrics per task (what a model's ``metrics`` may list, besides
#: :data:`UNLABELLED_METRICS`).
TASK_METRICS: Final[dict[str, tuple[str, ...]]] = {t: task_metrics(t) for t in TASKS}
#: Label-free statistics of the predictions, per task: computed for every model whatever
#: its ``metrics``.
TASK_UNLABELLED: Final[dict[str, tuple[str, ...]]] = {
    t: _names(["prediction"], t) for t in TASKS
}
#: Prediction statistics a model's ``metrics`` may list (they are computed anyway).
UNLABELLED_METRICS: Final[tuple[str, ...]] = _names(["prediction"])
#: Signals of every model: joined / predictions in the window, and joined in the window.
COVERAGE_SIGNALS: Final[tuple[str, ...]] = _names(["coverage"])
#: Signals whose subject is a class (``class_recall:cat@1h``).
CLASS_SUBJECT_METRICS: Final[tuple[str, ...]] = tuple(
    s.name for s in _CATALOGUE if s.subject == "class"
)
#: Feature drift and data-quality signals, ``<name>:<feature>@<window>`` for a configured
#: feature or an output subject (see :mod:`monitor.core.drift`). The drift statistics need
#: a reference profile; the rates of missing values and type mismatches do not.
DRIFT_SIGNALS: Final[list[str]] = list(_names(["drift", "quality"], subject="feature"))
#: The drift statistics proper (no data-quality rates), in catalogue order.
DRIFT_STATISTICS: Final[tuple[str, ...]] = _names(["drift"], subject="feature")
#: Per-model data-quality and drift signals without a subject.
MODEL_QUALITY_SIGNALS: Final[list[str]] = list(_names(["drift", "quality"], subject=""))
#: Metrics with a ``gap:<metric>`` signal (window value minus the reference value): the
#: performance metrics that are not per class.
GAP_METRICS: Final[frozenset[str]] = frozenset(
    s.name for s in _CATALOGUE if s.kind == "metric" and not s.subject and not s.part_of
    # a micro average over all classes is the accuracy, whose gap is there already
    and s.name not in ("micro_precision", "micro_recall", "micro_f1")
)
#: Label-free estimates of performance (CBPE), ``estimated_f1@1h``.
ESTIMATED_SIGNALS: Final[list[str]] = list(_names(["estimate"]))
#: Concept-drift detector signals, ``<name>:<stream>@<window>`` (e.g. ``adwin:error@all``):
#: per pane, the detections the detector made in it (0 when none).
DETECTOR_SIGNALS: Final[list[str]] = list(_names(["detector"]))
#: Signals the engine computes and keeps whatever a model's ``metrics`` lists: everything
#: that needs no label (a ``metrics`` list selects among the performance metrics only).
ALWAYS_COMPUTED: Final[frozenset[str]] = frozenset(
    _names(["prediction", "coverage", "drift", "quality", "estimate"])
)


def base_metric(name: str) -> str:
    """The catalogue name a computed value belongs to, as a model's ``metrics`` selects it:
    ``gap:f1`` -> ``f1``, ``class_recall:cat`` -> ``class_recall``, ``roc_auc_bin_error``
    -> ``roc_auc``."""
    parts = name.split(":")
    head = parts[1] if parts[0] == "gap" and len(parts) > 1 else parts[0]
    found = SIGNALS.get(head)
    return found.part_of or head if found is not None else head
