"""The per-model event counters each input partition keeps, by name and by index.

A partition's ``counts[model]`` is a list of floats in :data:`COUNT_NAMES` order; the
constants below index it. Both decode paths (the per-message one in
:mod:`monitor.core.engine` and the batch one in :mod:`monitor.core.fastpath`) count with
them.
"""

from __future__ import annotations

__all__ = [
    "COUNT_NAMES",
    "DUPLICATE_LABELS",
    "DUPLICATE_PREDICTIONS",
    "EARLY_LABELS_EVICTED",
    "EVICTED",
    "EXPIRED",
    "LABELS",
    "LATE",
    "MATCHED",
    "ORPHAN_LABELS",
    "PREDICTIONS",
    "UNNAMED_COUNTS",
]

COUNT_NAMES = (
    "predictions",
    "labels",
    "matched",
    "expired",
    "evicted",
    "orphan_labels",
    "duplicate_labels",
    "duplicate_predictions",
    "early_labels_evicted",
    "late",
)
# Indices into a partition's per-model counts, in COUNT_NAMES order.
PREDICTIONS = 0
LABELS = 1
MATCHED = 2
EXPIRED = 3
EVICTED = 4
ORPHAN_LABELS = 5
DUPLICATE_LABELS = 6
DUPLICATE_PREDICTIONS = 7
EARLY_LABELS_EVICTED = 8
LATE = 9

#: How a label that names no model can leave the join without joining: a partition counts
#: these apart (``PartitionState.unnamed``), since no model's counts can hold them.
UNNAMED_COUNTS = ("orphan_labels", "early_labels_evicted")
