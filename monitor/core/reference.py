"""The reference profile of a model: how its features were distributed in validation.

Built once at start from the model's ``reference`` file (CSV with a header row, or JSON
lines: one object a row, whose ``features`` object, when present, is merged into the row,
so captured prediction events work as is). Every configured feature must be a column;
``prediction``, ``score`` and ``label`` columns are allowed and ignored for now. A file
that is missing, unreadable, empty, or lacks a configured column raises
:class:`~monitor.config.ConfigError` naming the file, the column and the reason, so
``monitor check-config``, ``run`` and ``replay`` stop at start (exit 2).

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

Values are read as the event codec would see them: numbers for numeric features (in a
CSV, empty cells and ``null``/``NaN`` are missing; other text is skipped and counted),
canonical strings (:func:`~monitor.config.canonical_class`) for categorical ones.

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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.config import (
    LABEL_SUBJECT,
    OUTPUT_SUBJECTS,
    PREDICTION_SUBJECT,
    SCORE_SUBJECT,
    ConfigError,
    ModelConfig,
    canonical_class,
)

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
    "bin_numeric",
    "load_profile",
    "profile_from_columns",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_MISSING_TEXT = {"", "null", "none", "nan", "na", "n/a"}

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
        """Reconstruction error of each row of ``x`` (``(n, d)``, finite values)."""
        z = (x - self.mean) / self.scale
        out: F64 = (z * z).sum(axis=1) - ((z @ self.components.T) ** 2).sum(axis=1)
        return np.maximum(out, 0.0)


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


def bin_numeric(edges: F64, x: F64) -> I64:
    """Histogram column of each value: 0 underflow, ``1..B`` interior bins, ``B+1`` overflow.

    >>> bin_numeric(np.array([0.0, 1.0, 2.0]), np.array([-1.0, 0.0, 1.0, 2.0, 3.0])).tolist()
    [0, 1, 2, 2, 3]
    """
    idx = np.searchsorted(edges[1:-1], x, side="right") + 1
    idx[x < edges[0]] = 0
    idx[x > edges[-1]] = len(edges)
    return idx.astype(np.int64)


def _numeric_reference(
    name: str, values: Sequence[Any], bins: int, source: str
) -> NumericReference:
    x = np.array([v for v in values if _is_number(v)], dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        raise ConfigError(source, [f"{source}: column {name!r}: no numeric values"])
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    column = bin_numeric(edges, x)
    counts = np.bincount(column, minlength=len(edges) + 1).astype(np.float64)
    sums = np.bincount(column, weights=x, minlength=len(edges) + 1).astype(np.float64)
    return NumericReference(edges, counts, sums, float(x.mean()), float(x.std()))


def _categorical_reference(
    name: str, values: Sequence[Any], top: int, source: str
) -> CategoricalReference:
    counter = Counter(canonical_class(v) for v in values if v is not None and v == v)
    if not counter:
        raise ConfigError(source, [f"{source}: column {name!r}: no values"])
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    cats = tuple(k for k, _ in ranked[:top])
    counts = [float(counter[c]) for c in cats] + [float(sum(n for _, n in ranked[top:]))]
    index = {c: i for i, c in enumerate(cats)}
    return CategoricalReference(cats, np.array(counts), frozenset(counter), index)


def _is_number(value: Any) -> bool:
    return value.__class__ in (int, float)


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
    rows = max((len(v) for v in columns.values()), default=0)
    for name, kind in features.items():
        if name not in columns:
            raise ConfigError(source, [f"{source}: column {name!r}: missing from the reference"])
        if kind == "numeric":
            numeric[name] = _numeric_reference(name, columns[name], bins, source)
        else:
            categorical[name] = _categorical_reference(name, columns[name], max_categories, source)
    outs = {k: list(v) for k, v in (outputs or {}).items()}
    rows = max([rows, *(len(v) for v in outs.values())])
    output_numeric: dict[str, NumericReference] = {}
    if regression:
        for column, key in (("prediction", PREDICTION), ("label", LABEL)):
            values = [_as_float(v) for v in outs.get(column, [])]
            if any(v is not None for v in values):
                output_numeric[key] = _numeric_reference(column, values, bins, source)
    pca = _pca_reference([n for n, k in features.items() if k == "numeric"], columns)
    return ReferenceProfile(source, rows, numeric, categorical, outs, output_numeric, pca)


def _as_float(value: Any) -> float | None:
    if value.__class__ in (int, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def _pca_reference(names: list[str], columns: Mapping[str, Sequence[Any]]) -> PcaReference | None:
    """The PCA of the rows whose numeric features are all finite (None with < 2 features or
    too few such rows to fit one)."""
    if len(names) < 2:
        return None
    cols = [[_as_float(v) if _is_number(v) else None for v in columns[n]] for n in names]
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
    ref_error = float(partial.errors(x).mean())
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
                values.append(_csv_value(row.get(name), "categorical"))
    return cols


def _csv_value(text: str | None, kind: str) -> Any:
    if text is None or text.strip().lower() in _MISSING_TEXT:
        return None
    if kind == "categorical":
        return text
    try:
        value = float(text)
    except ValueError:
        return text  # not a number: skipped by the numeric profile
    return value if math.isfinite(value) else None


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


def _is_jsonl(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return True
    if suffix == ".csv":
        return False
    with open(path, encoding="utf-8") as fh:
        head = fh.read(4096).lstrip()
    return head.startswith("{")


def load_profile(model: ModelConfig) -> ReferenceProfile | None:
    """The profile of ``model`` from its ``reference`` file (None without one).

    Raises ConfigError naming the file, the column and the reason when the file cannot be
    used.
    """
    if not model.reference:
        return None
    path = Path(model.reference)
    name = str(path)
    features = dict(model.features)
    outputs: dict[str, list[Any]] = {}
    try:
        reader = _jsonl_columns if _is_jsonl(path) else _csv_columns
        cols = reader(path, features, outputs)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(name, [f"{name}: model {model.name!r}: cannot read: {reason}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(name, [f"{name}: not UTF-8 text: {exc.reason}"]) from None
    except csv.Error as exc:
        raise ConfigError(name, [f"{name}: bad CSV: {exc}"]) from None
    if not any(cols.values()) and not any(outputs.values()):
        raise ConfigError(name, [f"{name}: model {model.name!r}: no rows"])
    return profile_from_columns(
        cols,
        features,
        model.drift_bins,
        model.max_categories,
        name,
        outputs,
        regression=model.task == "regression",
    )
