"""A read-only picture of the core's state, for the Prometheus exporter, summary.json and views.

The core builds a :class:`Report` on demand (per tick, at shutdown, at the end of a
replay); exporters read it and never touch the core's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Upper bounds (seconds) of the label-delay histogram buckets; +Inf is implied.
LABEL_DELAY_BUCKETS: tuple[float, ...] = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    86400.0,
)


@dataclass(slots=True)
class SliceReport:
    """One slice of a model's traffic: the whole model, one version, or one segment value.

    ``dimension`` is ``"model"``, ``"version"`` or ``"segment:<key>"``; ``value`` is ``""``
    for the whole model, else the version or segment value (``"__other__"`` past the cap).
    ``windows`` maps window name -> metric name -> value (NaN when undefined, e.g. no labels).
    ``counters`` are cumulative additive sums (window ``all``), safe to sum across replicas:
    ``predictions``, ``joined``, ``tp``/``fp``/``tn``/``fn`` (binary), ``confusion:<true>:<pred>``
    (multiclass), ``error_sum``/``abs_error_sum``/``squared_error_sum`` (regression), ...
    """

    dimension: str
    value: str
    windows: dict[str, dict[str, float]] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class AlertReport:
    """The state of one alert rule: ``state`` is ``inactive``, ``pending`` or ``firing``;
    ``value``/``threshold`` as last evaluated; ``since`` when it became pending (or started
    firing); ``transitions`` counts ``pending``/``firing``/``resolved`` since the start."""

    rule: str
    severity: str
    kind: str
    signal: str
    state: str
    value: float | None = None
    threshold: float | None = None
    since: float | None = None
    transitions: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class ModelReport:
    """Everything known of one model.

    ``counts`` holds the model's event counters (cumulative, additive): ``predictions``,
    ``labels``, ``matched``, ``expired``, ``evicted``, ``orphan_labels``, ``duplicate_labels``,
    ``duplicate_predictions``, ``early_labels_evicted``, ``late``; and the gauges ``pending``
    and ``early_labels_pending``. ``label_delay_buckets`` are cumulative counts per bucket of
    :data:`LABEL_DELAY_BUCKETS` followed by the +Inf bucket; ``label_delay_sum`` their sum.
    """

    name: str
    task: str
    slices: list[SliceReport] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)
    label_delay_buckets: list[float] = field(default_factory=list)
    label_delay_sum: float = 0.0
    alerts: list[AlertReport] = field(default_factory=list)

    @property
    def overall(self) -> SliceReport:
        """The whole-model slice."""
        return self.slices[0]


@dataclass(slots=True)
class Report:
    """The core's state across all models, with reject counts keyed by (topic, reason)."""

    models: dict[str, ModelReport] = field(default_factory=dict)
    rejects: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Labels that named no model and left the join unjoined, by ``COUNT_NAMES`` name
    #: (``orphan_labels``, ``early_labels_evicted``): exported with ``model=""``.
    unnamed: dict[str, float] = field(default_factory=dict)
    watermark: float = float("-inf")
    panes_closed: int = 0
    events: int = 0
