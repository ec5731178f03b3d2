"""The state format: the engine's state as named plain records and numpy arrays, never pickle.

Every piece of state the engine holds is written by code that names each field, as a
:mod:`msgspec` record (MessagePack), with numpy arrays as ``(dtype, shape, bytes)`` from a
short list of dtypes. What the config determines (layouts, baselines, the reference
profile of a ``reference`` file, compiled rules, caps) is not stored: decoding starts from
a fresh :class:`~monitor.core.engine.Engine` for the config and fills in the stored state,
so decoding constructs no object whose class the data names. A reference profile built by
a warmup is state (it came from the stream) and is stored.

Detectors are rebuilt from the config (``detectors = [...]`` names the classes, from the
allow-list :data:`DETECTOR_CLASSES`), then their stored plain data (numbers, lists, and
the serialised bucket list of river's ADWIN) is set into them attribute by attribute.

Versions: :data:`FORMAT` is written into every file and record. A body of this format is
decoded straight into the records below, one part (``engine``, ``stages``, ...) at a time.
An older body is first decoded to plain MessagePack values; :data:`MIGRATIONS` then
upgrades it one version at a time, and only then is it checked against the records. Format
1 was a pickle of the live objects: it is never decoded (see ``docs/state.md`` for the
upgrade path).

A sealed value (:func:`seal`) is ``magic``, a 4-byte header length, a JSON header (format,
kind, config fingerprint, offsets, body length and SHA-256), the body and, with a
configured key, an HMAC-SHA256 of everything before it (32 bytes). :func:`unseal` checks
the HMAC first when a key is configured, and refuses a value without one.

The ``*_FIELDS`` tables name, per class, the attributes that are stored and those that are
rebuilt from the config or are transient; ``tests/state/test_format.py`` fails when an
object has an attribute in neither, so a field added to the engine is not forgotten.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MethodType
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
from river import drift, stats
from river._river_rust.drift import AdaptiveWindowing
from river._river_rust.stats import RsEWMean
from river.drift.binary.hddm_w import SampleInfo

from monitor.config import AlertRuleConfig, ModelConfig, MonitorConfig, TimeConfig
from monitor.core.alerting import Alerting
from monitor.core.baseline import Baseline
from monitor.core.counts import COUNT_NAMES, UNNAMED_COUNTS
from monitor.core.detectors import (
    CalibratedCusum,
    ErrorDetectors,
    KswinUp,
    RiverUp,
)
from monitor.core.engine import Engine, PartitionSnapshot, PartitionState
from monitor.core.join import EarlyLabel, JoinBuffer, MatchedTable, PendingTable
from monitor.core.layout import Layout
from monitor.core.model import ModelState, PaneSignals, SliceRegistry
from monitor.core.model_stage import ModelStage
from monitor.core.pipeline import Pipeline
from monitor.core.reference import (
    CategoricalReference,
    NumericReference,
    PcaReference,
    ReferenceProfile,
)
from monitor.core.report import LABEL_DELAY_BUCKETS
from monitor.core.rules import AlertEvent, ModelRules, RuleBook, RuleState
from monitor.core.warmup_buffer import Split, WarmChunk, concat, split
from monitor.core.windows import (
    RingPane,
    WindowSet,
    ring_array,
    ring_listed,
    ring_pane,
    ring_sparse,
)

__all__ = [
    "DETECTOR_CLASSES",
    "FORMAT",
    "MIGRATIONS",
    "FormatError",
    "check_envelope",
    "decode_core",
    "decode_engine",
    "decode_reference",
    "decode_snapshot",
    "decode_stage",
    "decode_stages",
    "encode_core",
    "encode_engine",
    "encode_reference",
    "encode_snapshot",
    "encode_stage",
    "seal",
    "stages_from_engine",
    "unseal",
]

#: The version of the format written. 1 was a pickle (never read); 2 is this module's;
#: 3 adds each model's stage 2 to the local checkpoint (``stages``, see
#: :func:`_stages_added`); 4 leaves stage 1's windows out (see :func:`_stage_one_only`); 5
#: stores the predictions held raw for a warmup as columns (see :func:`_warm_columns`).
FORMAT: Final = 5
MAC_SIZE: Final = 32
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: No positions (a warmup column whose values are all floats).
_NOWHERE: Final = np.zeros(0, dtype=np.int64)

#: Version n -> the function that turns a plain body of version n into version n + 1.
#: A change of a record below adds one entry here (and bumps :data:`FORMAT`).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _stages_added(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 2 -> 3: an engine body of format 2 holds no stage records (``stages``
    None): one process's engine kept each partition's windows and the pane clock itself,
    and :func:`decode_stages` builds every model's stage 2 from them
    (:func:`stages_from_engine`). Other bodies are unchanged."""
    if "engine" in raw and "stages" not in raw:
        raw["stages"] = None
    return raw


MIGRATIONS[2] = _stages_added


def _stage_one_only(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 3 -> 4: stage 1 keeps no windows, no warmup rows, no detectors' buffers and
    no clock of its own per partition (each model's stage 2 holds them). A partition
    record loses ``windows`` and ``warmup``, an engine body ``ahead``, a snapshot
    ``error_panes``. An engine body of format 2 (``stages`` None) still needs them to build
    every model's stage 2: they move to ``legacy`` (partition number -> ``windows``,
    ``warmup``), which :func:`decode_stages` reads."""
    engine = raw.get("engine")
    if isinstance(engine, dict):
        engine.pop("ahead", None)
        parts = engine.get("partitions")
        legacy: dict[Any, Any] = {}
        if isinstance(parts, dict):
            for number, part in parts.items():
                if isinstance(part, dict):
                    legacy[number] = {
                        "windows": part.pop("windows", []),
                        "warmup": part.pop("warmup", {}),
                    }
        if raw.get("stages") is None:
            raw["legacy"] = legacy
    snapshot = raw.get("snapshot")
    if isinstance(snapshot, dict):
        snapshot.pop("error_panes", None)
        part = snapshot.get("state")
        if isinstance(part, dict):
            part.pop("windows", None)
            part.pop("warmup", None)
    return raw


MIGRATIONS[3] = _stage_one_only


def _warm_columns(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 4 -> 5: the predictions held raw for a warmup, a record a row
    (:class:`WarmupRec`, its features a mapping), become one record of columns
    (:class:`WarmColumnsRec`, in place of the list: None for none) wherever they are kept:
    a model's warmup sample (``warmup_rows``, of an engine's models and of a stage's), a
    stage's ``warm`` buffer and its delta pieces' ``warm``, and the ``legacy`` warmup rows
    of a format-2 engine body. FormatError when rows are not valid."""
    engine = raw.get("engine")
    models = _dicts(engine.get("models") if isinstance(engine, dict) else None)
    stages = _dicts(raw.get("stages")) + _dicts([raw.get("stage")])
    for model in models + _dicts([stage.get("model") for stage in stages]):
        if "warmup_rows" in model:
            model["warmup_rows"] = _columns_of_rows(model["warmup_rows"], sample=True)
    for stage in stages:
        for parts in _dicts(_values_of(stage.get("warm"))):
            for number, rows in parts.items():
                parts[number] = _columns_of_rows(rows)
        for chain in _dicts(_values_of(stage.get("chains"))):
            for applied in _dicts(chain.get("history")):
                for piece in _dicts(applied.get("pieces")):
                    if "warm" in piece:
                        piece["warm"] = _columns_of_rows(piece["warm"])
    for part in _dicts(_values_of(raw.get("legacy"))):
        for panes in _dicts(_values_of(part.get("warmup"))):
            for pane, rows in panes.items():
                panes[pane] = _columns_of_rows(rows)
    return raw


MIGRATIONS[4] = _warm_columns


def _dicts(items: Any) -> list[dict[Any, Any]]:
    """The mappings among ``items`` (a list; anything else: none), for a migration to walk
    a plain body whatever it holds (what is not valid fails when it is checked)."""
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []


def _values_of(mapping: Any) -> list[Any]:
    """The values of ``mapping`` when it is one, as a list (else none)."""
    return list(mapping.values()) if isinstance(mapping, dict) else []


class FormatError(ValueError):
    """A value or body that is not valid state of this format (torn, forged, foreign)."""


# ---------------------------------------------------------------------- sealing
def seal(
    magic: bytes, header: Mapping[str, Any], body: bytes, key: bytes | None = None
) -> bytes:
    """``magic``, header length, JSON header (``header`` plus format, length, SHA-256 and
    whether a MAC follows), ``body``, then the HMAC-SHA256 with ``key`` (when given)."""
    fields = {
        **header,
        "format": FORMAT,
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "mac": "hmac-sha256" if key else None,
    }
    raw = json.dumps(fields, sort_keys=True).encode()
    value = magic + len(raw).to_bytes(4, "big") + raw + body
    if key:
        value += hmac.new(key, value, hashlib.sha256).digest()
    return value


def unseal(magic: bytes, value: bytes, key: bytes | None = None) -> tuple[dict[str, Any], bytes]:
    """The header and body of a sealed value; :class:`FormatError` when it is torn, forged
    (HMAC), of an unknown format (neither :data:`FORMAT` nor one :data:`MIGRATIONS`
    upgrades: the body is migrated when decoded) or unsigned while a key is configured."""
    if key:
        if len(value) < len(magic) + MAC_SIZE:
            raise FormatError("too short to carry an HMAC")
        value, tag = value[:-MAC_SIZE], value[-MAC_SIZE:]
        if not hmac.compare_digest(hmac.new(key, value, hashlib.sha256).digest(), tag):
            raise FormatError("HMAC verification failed (unsigned, forged or another key)")
    if not value.startswith(magic):
        raise FormatError("not a monitor state value (magic)")
    at = len(magic)
    size = int.from_bytes(value[at : at + 4], "big")
    if len(value) < at + 4 + size:
        raise FormatError("header is torn (shorter than its header)")
    try:
        header = json.loads(value[at + 4 : at + 4 + size])
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not {"format", "length", "sha256"} <= header.keys():
        raise FormatError(f"header is not valid: {str(header)[:100]}")
    version = header["format"]
    if type(version) is not int or not (version == FORMAT or version in MIGRATIONS):
        raise FormatError(
            f"format {version!r} is not one this version reads ({min(MIGRATIONS)} to {FORMAT})"
            + (" (format 1 was a pickle: never read; see docs/state.md)"
               if version == 1 else "")
        )  # fmt: skip
    body = value[at + 4 + size :]
    if not key and header.get("mac"):
        body = body[:-MAC_SIZE]  # signed, but no key configured to check it: checksum only
    if len(body) != header["length"] or hashlib.sha256(body).hexdigest() != header["sha256"]:
        raise FormatError("body is torn or corrupt (checksum mismatch)")
    return header, body


# ---------------------------------------------------------------------- arrays
_DTYPES: Final = frozenset({"<f8", "<i8", "<i4", "<u4"})


class Arr(msgspec.Struct, frozen=True):
    """A numpy array: dtype (little-endian, one of a few), shape, C-order bytes."""

    dtype: str
    shape: list[int]
    data: bytes


class Sparse(msgspec.Struct, frozen=True):
    """A float64 array by its non-zero entries (pane arrays are mostly zeros)."""

    shape: list[int]
    index: Arr
    values: Arr


def _arr(a: Any, dtype: Any = np.float64) -> Arr:
    out = np.ascontiguousarray(a, dtype=dtype)
    return Arr(out.dtype.str, list(out.shape), out.tobytes())


def _unarr(r: Arr, dtype: str = "<f8", ndim: int | None = None) -> Any:
    if r.dtype != dtype or r.dtype not in _DTYPES:
        raise FormatError(f"array of dtype {r.dtype!r}, expected {dtype!r}")
    if ndim is not None and len(r.shape) != ndim:
        raise FormatError(f"array of {len(r.shape)} dimensions, expected {ndim}")
    if any(n < 0 for n in r.shape):
        raise FormatError("negative array dimension")
    size = math.prod(r.shape) * np.dtype(dtype).itemsize
    if size != len(r.data):
        raise FormatError(f"array of shape {r.shape} needs {size} bytes, has {len(r.data)}")
    return np.frombuffer(r.data, dtype=dtype).reshape(r.shape).copy()


def _sparse(a: F64) -> Sparse:
    flat = a.reshape(-1)
    index = np.flatnonzero(flat)
    return Sparse(list(a.shape), _arr(index, np.int64), _arr(flat[index]))


def _ring_sparse(pane: RingPane, rows: int, width: int) -> Sparse:
    """A pane of a window's ring as :func:`_sparse` packs its array."""
    index, values = ring_sparse(pane, rows, width)
    return Sparse([rows, width], _arr(index, np.int64), _arr(values))


def _sparse_cells(s: Sparse, shape: tuple[int, int]) -> tuple[I64, F64]:
    """A pane array's listed cells, checked: flat indices in range and their values."""
    if tuple(s.shape) != shape:
        raise FormatError(f"pane array of shape {s.shape}, expected {list(shape)}")
    index = _unarr(s.index, "<i8", 1)
    values = _unarr(s.values, "<f8", 1)
    size = shape[0] * shape[1]
    if len(index) != len(values) or (len(index) and (index.min() < 0 or index.max() >= size)):
        raise FormatError("sparse array indices out of range")
    return index, values


def _unsparse(s: Sparse, shape: tuple[int, int]) -> F64:
    index, values = _sparse_cells(s, shape)
    out = np.zeros(shape[0] * shape[1])
    out[index] = values
    return out.reshape(shape)


def _ring_unsparse(s: Sparse, shape: tuple[int, int]) -> RingPane:
    """A pane of a window's ring from its :class:`Sparse`: ``ring_pane(_unsparse(s,
    shape))``, made from the cells as listed when they are ascending and distinct (as
    :func:`_ring_sparse` writes them), without the array in between."""
    index, values = _sparse_cells(s, shape)
    if len(index) > 1 and not bool((index[1:] > index[:-1]).all()):
        return ring_pane(_unsparse(s, shape))
    return ring_listed(index, values, shape)


def _matrix(r: Arr, shape: tuple[int, ...]) -> F64:
    out: F64 = _unarr(r, "<f8")
    if out.shape != shape:
        raise FormatError(f"array of shape {list(out.shape)}, expected {list(shape)}")
    return out


# ---------------------------------------------------------------------- records
Value = str | int | float | bool


class WindowRec(msgspec.Struct):
    """:class:`~monitor.core.windows.WindowSet` (pane arrays sparse)."""

    rows: int
    width: int
    open: dict[int, Sparse]
    open_decay: dict[int, list[Sparse]]
    cum: Arr
    late_n: Arr
    ring: dict[int, Sparse]
    sliding: list[Arr]
    decay: list[Arr]
    closes: int


class PendingRec(msgspec.Struct):
    """:class:`~monitor.core.join.PendingTable`: its live rows in arrival order."""

    k: int
    id_bytes: bytes
    id_lengths: Arr
    crc32: Arr
    ts: Arr
    pred: Arr
    score: Arr
    slices: Arr


class EarlyRec(msgspec.Struct):
    """Early labels of a partition in arrival order (:class:`~monitor.core.join.EarlyLabel`)."""

    ids: list[str]
    ts: list[float]
    labels: list[Value]
    models: list[int]


class MatchedRec(msgspec.Struct):
    """Recently matched ids of one model with their label times, in arrival order."""

    ids: list[str]
    ts: Arr


class WarmupRec(msgspec.Struct):
    """A prediction kept for a warmup profile, as formats 2 to 4 stored it (event time and
    slices only while its pane is open in a partition); read by :func:`_warm_columns`."""

    features: dict[str, float | str | bool | None] | None
    prediction: Value
    score: float
    ts: float = 0.0
    slices: list[int] = []


class ColumnRec(msgspec.Struct, omit_defaults=True):
    """One column of predictions held raw (a feature's values, the predictions), each
    value as it was (see :func:`~monitor.core.warmup_buffer.split`): ``floats`` every float
    packed (NaN where another value is), the other values (None, strings, booleans,
    integers) in ``values`` at the positions ``at``; or, without ``floats``, every value
    in ``values``."""

    floats: Arr | None = None
    at: Arr | None = None
    values: list[Value | None] = []


class WarmColumnsRec(msgspec.Struct):
    """Predictions held raw for a warmup (a :class:`~monitor.core.warmup_buffer.WarmChunk`),
    as columns: each of the model's features' values and the predictions
    (:class:`ColumnRec`), the scores (NaN: none), event times and slice rows ``(rows,
    k)``; a model's warmup sample has neither of the last two (they were read)."""

    rows: int
    features: dict[str, ColumnRec]
    predictions: ColumnRec
    scores: Arr
    ts: Arr | None = None
    slices: Arr | None = None


class PartitionRec(msgspec.Struct):
    """:class:`~monitor.core.engine.PartitionState` (lists are per model, in config order)."""

    pending: list[PendingRec]
    early: EarlyRec
    matched: list[MatchedRec]
    counts: list[list[float]]
    delay: Arr
    delay_sum: Arr
    offsets: dict[str, int]
    max_ts: dict[str, float]
    rejects: list[tuple[str, str, int]]
    #: Labels naming no model that left unjoined, by count name (absent before it was kept).
    unnamed: dict[str, float] = {}


class LegacyRec(msgspec.Struct):
    """What a partition of a format-2 engine body held for stage 2 (see
    :func:`_stage_one_only`): its windows and warmup rows, per model."""

    windows: list[WindowRec]
    warmup: dict[int, dict[int, WarmColumnsRec | None]]


class ErrorsRec(msgspec.Struct):
    """Errors of joined pairs of one (pane, partition) not yet fed to the detectors."""

    ts: Arr
    errors: Arr


class NumericRec(msgspec.Struct):
    """:class:`~monitor.core.reference.NumericReference`."""

    edges: Arr
    counts: Arr
    sums: Arr
    mean: float
    std: float


class CategoricalRec(msgspec.Struct):
    """:class:`~monitor.core.reference.CategoricalReference` (``index`` is rebuilt)."""

    categories: list[str]
    counts: Arr
    known: list[str]


class PcaRec(msgspec.Struct):
    """:class:`~monitor.core.reference.PcaReference`."""

    features: list[str]
    mean: Arr
    scale: Arr
    components: Arr
    ref_error: float


class ProfileRec(msgspec.Struct):
    """A reference profile built by a warmup (raw ``outputs`` columns are never kept)."""

    source: str
    rows: int
    numeric: dict[str, NumericRec]
    categorical: dict[str, CategoricalRec]
    output_numeric: dict[str, NumericRec]
    pca: PcaRec | None


class BaselineRec(msgspec.Struct):
    """:class:`~monitor.core.baseline.Baseline` of a warmup profile (it was built from the
    warmup's predictions and scores, which are not kept)."""

    row: Arr
    metrics: dict[str, float]
    calibration: Arr | None
    rows: int
    skipped: int
    calibrated_from: int
    #: per-class isotonic maps of a multiclass reference: (edges, values) per class
    class_calibration: list[tuple[Arr, Arr]] | None = None


class DetectorsRec(msgspec.Struct):
    """:class:`~monitor.core.detectors.ErrorDetectors`: totals and each detector's plain
    data (see :func:`_plain`)."""

    totals: dict[str, int]
    detectors: dict[str, Any]


class RuleStateRec(msgspec.Struct):
    """:class:`~monitor.core.rules.RuleState`, with the rule's config it was kept under."""

    rule: str  # the rule's config (JSON): a changed rule starts afresh
    phase: str
    since: float | None
    clear_since: float | None
    quiet_until: float
    value: float | None
    bound: float | None
    evaluated_at: float | None
    ewm_mean: float
    ewm_var: float
    ewm_n: int
    transitions: dict[str, int]


class RulesRec(msgspec.Struct):
    """:class:`~monitor.core.rules.ModelRules`' state."""

    states: dict[str, RuleStateRec]
    last_active: float | None
    predictions_seen: float


class ModelRec(msgspec.Struct):
    """:class:`~monitor.core.model.ModelState`'s state, and its rules' (from the
    :class:`~monitor.core.alerting.Alerting` checkpointed with the engine or stage)."""

    name: str
    registry_keys: list[tuple[str, str]]
    registry_used: dict[str, int]
    registry_folded: dict[str, int]
    profile: ProfileRec | None
    baseline: BaselineRec | None  # with ``profile`` only
    warmup_target: int
    warmup_rows: WarmColumnsRec | None
    profile_pane: int | None
    detectors: DetectorsRec | None
    error_panes: dict[int, dict[int, ErrorsRec]]
    last_detections: dict[str, int]
    last: dict[str, dict[str, Arr]]
    last_rows: int
    rules: RulesRec | None


class SignalRec(msgspec.Struct):
    """:class:`~monitor.core.model.PaneSignals`."""

    model: str
    pane_end: float
    signals: dict[str, float]
    predictions_total: float = math.nan  # not in bodies written before it was kept


class AlertRec(msgspec.Struct):
    """:class:`~monitor.core.rules.AlertEvent`."""

    alert_id: str
    status: str
    rule: str
    severity: str
    model: str
    model_version: str
    signal: str
    value: float | None
    threshold: float | None
    starts_at: float
    ends_at: float | None
    ts: float
    labels: dict[str, str]
    annotations: dict[str, str]


class EngineRec(msgspec.Struct):
    """The whole engine (the local store's checkpoint), with the config parts its state
    depends on (to carry it over to a changed config)."""

    config_models: list[dict[str, Any]]
    config_time: dict[str, Any]
    config_topics: tuple[str, str]
    watermark: float
    closed_upto: int | None
    tracked: list[tuple[str, int]]
    idle: list[tuple[str, int]]
    panes_closed: int
    events: int
    pending_total: list[int]
    early_total: int
    signals_out: list[SignalRec]
    alerts_out: list[AlertRec]  # the Alerting's unsent transitions
    models: list[ModelRec]
    partitions: dict[int, PartitionRec]
    #: Stage 1 with its stage 2 elsewhere, before its clock started: the first pane an
    #: event went to (its windows are empty, so they cannot say).
    first_pane: int | None = None


class SnapshotRec(msgspec.Struct):
    """:class:`~monitor.core.engine.PartitionSnapshot` (a Kafka store partition record)."""

    number: int
    state: PartitionRec
    slice_keys: dict[str, list[tuple[str, str]]]
    closed_upto: int | None
    watermark: float


class PieceRec(msgspec.Struct):
    """One pane of a delta stage 2 applied, kept to undo it (``_Piece``)."""

    pane: int
    plain: Arr
    decay: list[Arr]
    errors: int
    warm: WarmColumnsRec | None = None


class AppliedRec(msgspec.Struct):
    """A delta stage 2 applied since its partition's confirmed checkpoint (``_Applied``)."""

    base: dict[str, int]
    end: dict[str, int]
    progress_before: dict[str, float]
    idle_before: list[str]
    pieces: list[PieceRec]
    counts: Arr
    delay: Arr
    delay_sum: float
    waiting_before: tuple[int, int] | None


class ChainRec(msgspec.Struct):
    """Where an input partition's chain of deltas stands in stage 2 (``_Chain``)."""

    end: dict[str, int]
    history: list[AppliedRec]
    session: str | None
    seq: int
    retired: list[str]


class StageRec(msgspec.Struct):
    """A model's stage 2 (:class:`~monitor.core.model_stage.ModelStage`) with the offset of
    the partials topic's partition it reflects (the next record to read)."""

    name: str
    partitions: int
    next_offset: int
    model: ModelRec
    window: WindowRec
    progress: dict[int, dict[str, float]]
    idle: dict[int, list[str]]
    released: list[int]
    chains: dict[int, ChainRec]
    watermark: float
    closed_upto: int | None
    panes_closed: int
    error_panes: dict[int, dict[int, ErrorsRec]]
    counts: Arr
    delay: Arr
    delay_sum: float
    waiting: dict[int, tuple[int, int]]
    stale: int
    warm: dict[int, dict[int, WarmColumnsRec | None]] = {}


# ---------------------------------------------------------------------- field tables
@dataclass(frozen=True)
class Fields:
    """Attributes of a state class: stored (by the record named), or rebuilt from the
    config / transient (``derived``)."""

    stored: frozenset[str]
    derived: frozenset[str]


def _f(stored: Any, derived: str = "", record_only: str = "") -> Fields:
    """Fields from a record's (less ``record_only``) or a list of names."""
    names = getattr(stored, "__struct_fields__", None) or stored.split()
    return Fields(frozenset(names) - set(record_only.split()), frozenset(derived.split()))


#: Per state class, what is stored and what is not (see the module docstring).
STATE_FIELDS: dict[type, Fields] = {
    Engine: _f(
        "watermark closed_upto tracked idle panes_closed events pending_total "
        "early_total signals_out models partitions first_pane",
        "config pane lateness by_name topic_kind max_bytes max_future early_cap _batches "
        "_latest _limits _feature_names _task_keys ledgers",
    ),
    ModelState: _f(
        "registry profile warmup_target warmup_rows profile_pane detectors error_panes "
        "last_detections last last_rows",
        "index config name codec class_names layout baseline class_index windows pane metrics",
    ),
    PartitionState: _f(
        "join counts delay delay_sum offsets max_ts rejects unnamed",
    ),
    JoinBuffer: _f("pending early matched", "_owners _bound"),
    WindowSet: _f(
        WindowRec, "pane sliding_panes decay_rates ring_len _nz spent spare queued _scratch",
    ),
    PendingTable: _f(
        "_k _blob _ts _pred _score _hash _ends _slices _used _live",
        "_head _cv _ev _hv _pv _sv _tv _slots _shift _memo _id_bytes _owner",
    ),
    MatchedTable: _f(
        "_blob _ts _hash _ends _used _live _head",
        "_ev _hv _sv _tv _slots _shift _memo _id_bytes front_ts",
    ),
    ErrorDetectors: _f("totals detectors", "stream"),
    Alerting: _f("alerts_out book", "config"),
    RuleBook: _f("models", "pane _config_id"),
    ModelRules: _f("states last_active predictions_seen", "model rules references"),
    RuleState: _f(RuleStateRec, record_only="rule"),
    PaneSignals: _f(SignalRec, derived="row"),
    AlertEvent: _f(AlertRec),
    PartitionSnapshot: _f(SnapshotRec),
    SliceRegistry: _f("keys used folded", "index caps segments"),
    ReferenceProfile: _f(ProfileRec, "outputs quality summary"),
    NumericReference: _f(NumericRec),
    CategoricalReference: _f(CategoricalRec, "index"),
    PcaReference: _f(PcaRec),
    Baseline: _f(BaselineRec),
}
#: The keys of ``PendingTable.__getstate__``, all stored by :class:`PendingRec`.
PENDING_KEYS: Final = frozenset(PendingRec.__struct_fields__)


# ---------------------------------------------------------------------- detectors
#: The only classes whose plain data a detector's state may hold. Decoding sets data into
#: objects the config built (:class:`ErrorDetectors`), never into a class the data names.
DETECTOR_CLASSES: Final[frozenset[type]] = frozenset({
    CalibratedCusum, RiverUp, KswinUp,
    drift.ADWIN, drift.PageHinkley, drift.KSWIN,
    drift.binary.DDM, drift.binary.EDDM, drift.binary.HDDMA, drift.binary.HDDMW,
    stats.Mean, stats.Var, stats.EWMean, SampleInfo, AdaptiveWindowing, RsEWMean,
})  # fmt: skip
#: Allowed classes implemented in river's Rust code: their state is river's own bytes.
_RUST: Final[frozenset[type]] = frozenset({AdaptiveWindowing, RsEWMean})
_SCALARS: Final = (type(None), bool, int, float, str)
#: numpy scalars a detector may hold, stored as ``{name: value}`` (a name with a dot is
#: never an attribute's, so it cannot be mistaken for an object's fields).
_NUMPY: Final[dict[str, type]] = {"np.float64": np.float64, "np.int64": np.int64,
                                  "np.bool": np.bool_}  # fmt: skip
_NUMPY_NAMES: Final = {v: k for k, v in _NUMPY.items()}


def _plain(obj: Any) -> Any:
    """The plain data of a detector's state: numbers, strings, lists, dicts, bytes."""
    if type(obj) in _SCALARS or type(obj) is bytes:
        return obj
    if type(obj) in _NUMPY_NAMES:
        return {_NUMPY_NAMES[type(obj)]: obj.item()}
    if type(obj) in (list, tuple, collections.deque):
        return [_plain(x) for x in obj]
    if type(obj) is dict:
        return {str(k): _plain(v) for k, v in obj.items()}
    if type(obj) is random.Random:
        version, internal, gauss = obj.getstate()
        return [version, list(internal), gauss]
    if type(obj) not in DETECTOR_CLASSES:
        raise TypeError(f"detector state holds a {type(obj).__qualname__}: not in the allow-list")
    if type(obj) in _RUST:  # river's Rust objects: their own serialisation (plain bytes)
        state = obj.__getstate__()
        if not isinstance(state, bytes):
            raise TypeError(f"river's {type(obj).__qualname__} state is not bytes")
        return state
    return {k: _plain(v) for k, v in vars(obj).items() if not isinstance(v, MethodType)}


def _restore(template: Any, data: Any, where: str) -> Any:
    """``template`` (an object the config built) with ``data`` from :func:`_plain` set
    into it; the classes are the template's. FormatError when the shapes disagree."""
    kind = type(template)
    if kind in _SCALARS or kind in _NUMPY_NAMES:
        return _scalar(data, where)
    if kind in (list, tuple, collections.deque):
        if type(data) is not list:
            raise FormatError(f"{where}: expected a list of numbers")
        items = [_scalar(x, where) for x in data]
        if kind is collections.deque:
            return collections.deque(items, maxlen=template.maxlen)
        return kind(items)
    if kind is dict:
        if type(data) is not dict:
            raise FormatError(f"{where}: expected a mapping of numbers")
        return {k: _scalar(v, where) for k, v in data.items()}
    if kind is random.Random:
        try:
            version, internal, gauss = data
            template.setstate((int(version), tuple(int(x) for x in internal), gauss))
        except (TypeError, ValueError, OverflowError) as exc:
            raise FormatError(f"{where}: not a random state: {exc}") from None
        return template
    if kind in _RUST:
        if type(data) is not bytes:
            raise FormatError(f"{where}: expected bytes")
        try:
            template.__setstate__(data)
        except BaseException as exc:  # a Rust panic is a BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise FormatError(f"{where}: river state not readable: {exc}") from None
        return template
    if kind not in DETECTOR_CLASSES:
        raise FormatError(f"{where}: {kind.__qualname__} is not in the allow-list")
    fields = {k: v for k, v in vars(template).items() if not isinstance(v, MethodType)}
    if type(data) is not dict or set(data) != set(fields):
        raise FormatError(f"{where}: fields differ from {kind.__qualname__}'s")
    for name, value in fields.items():
        setattr(template, name, _restore(value, data[name], f"{where}.{name}"))
    return template


def _scalar(data: Any, where: str) -> Any:
    """A stored number or string (a numpy scalar from its ``{name: value}``)."""
    if type(data) in _SCALARS:
        return data
    if type(data) is dict and len(data) == 1:
        (name, value), = data.items()
        if name in _NUMPY and type(value) in (bool, int, float):
            return _NUMPY[name](value)
    raise FormatError(f"{where}: expected a number or string")


def _detectors(det: ErrorDetectors | None) -> DetectorsRec | None:
    if det is None:
        return None
    return DetectorsRec(dict(det.totals), {n: _plain(d) for n, d in det.detectors.items()})


def _set_detectors(det: ErrorDetectors | None, rec: DetectorsRec | None, model: str) -> None:
    if rec is None or det is None:
        if rec is not None or det is not None:
            raise FormatError(f"model {model!r}: detectors configured and stored differ")
        return
    if set(rec.detectors) != set(det.detectors) or set(rec.totals) != set(det.detectors):
        raise FormatError(f"model {model!r}: stored detectors {sorted(rec.detectors)} differ")
    for name, template in det.detectors.items():
        _restore(template, rec.detectors[name], f"{model}.{name}")
    det.totals = {n: int(rec.totals[n]) for n in det.detectors}


# ---------------------------------------------------------------------- partitions
def _window(w: WindowSet) -> WindowRec:
    return WindowRec(
        rows=w.rows,
        width=w.width,
        open={p: _sparse(a) for p, a in w.open.items()},
        open_decay={p: [_sparse(a) for a in arrs] for p, arrs in w.open_decay.items()},
        cum=_arr(w.cum),
        late_n=_arr(w.late_n),
        ring={p: _ring_sparse(a, w.rows, w.width) for p, a in w.ring.items()},
        sliding=[_arr(a) for a in w.sliding],
        decay=[_arr(a) for a in w.decay],
        closes=w.closes,
    )


def _set_window(w: WindowSet, r: WindowRec) -> None:
    if r.width != w.width or not 0 < r.rows <= w.rows:
        raise FormatError(f"window of {r.rows}x{r.width}, the model has {w.rows}x{w.width}")
    rows = w.rows
    if len(r.sliding) != len(w.sliding) or len(r.decay) != len(w.decay):
        raise FormatError("windows of another kind than the model's")
    shape = (r.rows, r.width)
    n_decay = len(w.decay_rates)
    if set(r.open_decay) != set(r.open) or any(len(v) != n_decay for v in r.open_decay.values()):
        raise FormatError("open panes and their decayed sums differ")
    w.rows = r.rows
    w.open = {int(p): _unsparse(a, shape) for p, a in r.open.items()}
    w.open_decay = {int(p): [_unsparse(a, shape) for a in v] for p, v in r.open_decay.items()}
    w.cum = _matrix(r.cum, shape)
    w.late_n = _matrix(r.late_n, (r.rows,))
    w.ring = {int(p): _ring_unsparse(a, shape) for p, a in r.ring.items()}
    w.sliding = [_matrix(a, shape) for a in r.sliding]
    w.decay = [_matrix(a, shape) for a in r.decay]
    w.closes = int(r.closes)
    w._nz = None  # derived from the ring at the next close
    w.grow(rows)  # slices registered after it was stored


def _pending(t: PendingTable) -> PendingRec:
    s = t.__getstate__()
    if set(s) != PENDING_KEYS:
        raise TypeError(f"PendingTable state has keys {sorted(s)}: name them in PendingRec")
    return PendingRec(
        k=int(s["k"]),
        id_bytes=bytes(s["id_bytes"]),
        id_lengths=_arr(s["id_lengths"], np.int32),
        crc32=_arr(s["crc32"], np.uint32),
        ts=_arr(s["ts"]),
        pred=_arr(s["pred"]),
        score=_arr(s["score"]),
        slices=_arr(s["slices"], np.int32),
    )


def _matched(t: MatchedTable) -> MatchedRec:
    return MatchedRec(t.ids(), _arr(t.times()))


def _set_matched(r: MatchedRec) -> MatchedTable:
    ts = _unarr(r.ts, "<f8", 1)
    if len(ts) != len(r.ids):
        raise FormatError("matched ids and times of different lengths")
    if np.isnan(ts).any():
        raise FormatError("a matched id without its label's event time")
    return MatchedTable.from_items(r.ids, ts)


def _set_pending(r: PendingRec, rows: int) -> PendingTable:
    ts = _unarr(r.ts, "<f8", 1)
    n = len(ts)
    lengths = _unarr(r.id_lengths, "<i4", 1)
    slices = _unarr(r.slices, "<i4")
    k = max(r.k, 0)
    columns = (_unarr(r.pred, "<f8", 1), _unarr(r.score, "<f8", 1), _unarr(r.crc32, "<u4", 1))
    if len(lengths) != n or any(len(c) != n for c in columns) or slices.size != n * k:
        raise FormatError("pending columns of different lengths")
    if (lengths < 0).any() or int(lengths.sum()) != len(r.id_bytes) or np.isnan(ts).any():
        raise FormatError("pending ids or event times are not valid")
    if slices.size and (slices.min() < -1 or slices.max() >= rows):
        raise FormatError("pending slice ids out of range")
    table = PendingTable()
    table.__setstate__(
        {"k": r.k, "id_bytes": r.id_bytes, "id_lengths": lengths, "crc32": columns[2], "ts": ts,
         "pred": columns[0], "score": columns[1], "slices": slices.reshape(n, k)}
    )  # fmt: skip
    return table


def _warm_rec(layout: Layout, chunks: list[WarmChunk], sample: bool = False
              ) -> WarmColumnsRec | None:  # fmt: skip
    """The rows of a warmup buffer's ``chunks`` as one record (None: no rows); ``sample``:
    a model's warmup sample (event times and slices not kept)."""
    if sample:  # (its chunks' slices may differ in width: restored ones have none)
        chunks = [WarmChunk(c.ts, c.slices[:, :0], c.codes, c.numbers, c.others,
                            c.predictions, c.scores) for c in chunks]  # fmt: skip
    held = [c for c in chunks if len(c)]
    if not held:
        return None
    chunk = concat(held)
    features, predictions = chunk.splits(layout)
    return WarmColumnsRec(
        rows=len(chunk),
        features={name: _column(c) for name, c in features.items()},
        predictions=_column(predictions),
        scores=_arr(chunk.scores),
        ts=None if sample else _arr(chunk.ts),
        slices=None if sample else _arr(chunk.slices, np.int32),
    )


def _column(column: Split) -> ColumnRec:
    """A :func:`~monitor.core.warmup_buffer.split` column as a record."""
    floats, at, values = column
    if floats is None:
        return ColumnRec(values=values)
    return ColumnRec(_arr(floats), _arr(at, np.int64) if len(at) else None, values)


def _set_column(r: ColumnRec, n: int) -> Split:
    """A :class:`ColumnRec` of ``n`` values as a split column; FormatError when it does not
    hold ``n`` values."""
    if r.floats is None:
        if r.at is not None or len(r.values) != n:
            raise FormatError(f"a warmup column of {len(r.values)} values, expected {n}")
        return None, _NOWHERE, r.values
    floats: F64 = _unarr(r.floats, "<f8", 1)
    at = _NOWHERE if r.at is None else _unarr(r.at, "<i8", 1)
    if len(floats) != n or len(at) != len(r.values):
        raise FormatError("a warmup column of inconsistent sizes")
    if len(at) and (at[0] < 0 or at[-1] >= n or (np.diff(at) <= 0).any()):
        raise FormatError("a warmup column's positions out of range or order")
    return floats, at, r.values


def _set_warm(layout: Layout, r: WarmColumnsRec, k: int | None, rows: int = 0) -> WarmChunk:
    """The chunk of a :class:`WarmColumnsRec`: of a buffer, ``k`` slices a row (ids below
    ``rows``); of a warmup sample (``k`` None), without event times or slices."""
    n = r.rows
    if n < 0:
        raise FormatError("a warmup record of a negative number of rows")
    scores: F64 = _unarr(r.scores, "<f8", 1)
    if k is None:
        if r.ts is not None or r.slices is not None:
            raise FormatError("a warmup sample with event times or slices")
        ts: F64 = np.zeros(n)
        slices = np.zeros((n, 0), dtype=np.int64)
    else:
        if r.ts is None or r.slices is None:
            raise FormatError("warmup rows without event times or slices")
        ts = _unarr(r.ts, "<f8", 1)
        slices = _unarr(r.slices, "<i4", 2)
        if slices.shape[1:] != (k,) or (slices.size and (slices.min() < -1
                                                         or slices.max() >= rows)):
            raise FormatError("warmup rows with slices that do not fit the model")
    if len(ts) != n or len(scores) != n or len(slices) != n:
        raise FormatError("warmup columns of different lengths")
    features = {str(name): _set_column(c, n) for name, c in r.features.items()}
    return WarmChunk.of_splits(layout, ts, slices, features, _set_column(r.predictions, n),
                               scores)  # fmt: skip


def _columns_of_rows(rows: Any, sample: bool = False) -> WarmColumnsRec | None:
    """Warmup rows of format 4 or before (:class:`WarmupRec` records, plain) as one record
    of columns (None: no rows); ``sample``: a model's warmup sample, whose rows' event
    times and slices were never read. A feature absent from a row is None there, as the
    chunk the rows made read it. FormatError when they are not valid."""
    try:
        recs = msgspec.convert(rows, list[WarmupRec])
    except (msgspec.ValidationError, RecursionError) as exc:
        raise FormatError(f"warmup rows not valid: {str(exc)[:200]}") from None
    if not recs:
        return None
    maps = [w.features or {} for w in recs]
    names = list(dict.fromkeys(name for f in maps for name in f))
    ts = slices = None
    if not sample:
        k = len(recs[0].slices)
        if any(len(w.slices) != k for w in recs):
            raise FormatError("warmup rows with slices of another length")
        ids = [i for w in recs for i in w.slices]
        if ids and (min(ids) < -1 or max(ids) >= 2**31):
            raise FormatError("warmup rows with slices out of range")
        ts = _arr([w.ts for w in recs])
        slices = _arr(np.array(ids, dtype=np.int64).reshape(len(recs), k), np.int32)
    return WarmColumnsRec(
        rows=len(recs),
        features={name: _column(split([f.get(name) for f in maps])) for name in names},
        predictions=_column(split([w.prediction for w in recs])),
        scores=_arr([w.score for w in recs]),
        ts=ts,
        slices=slices,
    )


def _partition(state: PartitionState) -> PartitionRec:
    join = state.join
    early = list(join.early.items())
    return PartitionRec(
        pending=[_pending(t) for t in join.pending],
        early=EarlyRec(
            ids=[pid for pid, _ in early],
            ts=[float(e.ts) for _, e in early],
            labels=[e.label for _, e in early],  # type: ignore[misc]
            models=[int(e.model) for _, e in early],
        ),
        matched=[_matched(m) for m in join.matched],
        counts=[[float(x) for x in row] for row in state.counts],
        delay=_arr(state.delay),
        delay_sum=_arr(state.delay_sum),
        offsets=dict(state.offsets),
        max_ts=dict(state.max_ts),
        rejects=[(t, r, int(n)) for (t, r), n in state.rejects.items()],
        unnamed={name: float(n) for name, n in state.unnamed.items()},
    )


def _check_clock(w: WindowSet, closed_upto: int | None, where: str) -> None:
    """A pane ring holds the panes closed last: those in ``[closed_upto - ring_len,
    closed_upto)``. A record whose ring lies elsewhere came from no clock (a pane index
    or clock altered in a resealed body) and would make the engine close, with a signal
    each, every pane in between: refused like any other malformed record."""
    if not w.ring:
        return
    low, high = min(w.ring), max(w.ring)
    if closed_upto is None or high >= closed_upto or low < closed_upto - w.ring_len:
        raise FormatError(f"{where}: pane ring {low}..{high} does not end at the clock's "
                          f"{closed_upto}")


def _set_partition(
    engine: Engine, state: PartitionState, r: PartitionRec, rows: list[int] | None = None
) -> None:
    """Fill ``state`` (fresh, for ``engine``'s models) from ``r``; ``rows``: the slice
    rows per model its ids refer to (default: the engine's registries)."""
    n = len(engine.models)
    if not (len(r.pending) == len(r.matched) == len(r.counts) == n):
        raise FormatError(f"partition state for {len(r.counts)} models, the config has {n}")
    buckets = state.delay.shape[1]
    if rows is None:
        rows = [len(m.registry.keys) for m in engine.models]
    join = state.join
    join.pending = [_set_pending(p, rows[i]) for i, p in enumerate(r.pending)]
    e = r.early
    if not len(e.ids) == len(e.ts) == len(e.labels) == len(e.models):
        raise FormatError("early label columns of different lengths")
    if any(not -1 <= m < n for m in e.models):
        raise FormatError("early label of an unknown model")
    join.early = {
        pid: EarlyLabel(float(ts), label, int(m))
        for pid, ts, label, m in zip(e.ids, e.ts, e.labels, e.models, strict=True)
    }
    join.matched = [_set_matched(m) for m in r.matched]
    if any(len(row) != len(state.counts[0]) for row in r.counts):
        raise FormatError("counts of another length")
    state.counts = [[float(x) for x in row] for row in r.counts]
    state.delay = _matrix(r.delay, (n, buckets))
    state.delay_sum = _matrix(r.delay_sum, (n,))
    state.offsets = {str(t): int(o) for t, o in r.offsets.items()}
    state.max_ts = {str(t): float(x) for t, x in r.max_ts.items()}
    state.rejects = Counter({(t, reason): int(c) for t, reason, c in r.rejects})
    if not set(r.unnamed) <= set(UNNAMED_COUNTS) or not all(
        math.isfinite(n) and n >= 0 for n in r.unnamed.values()
    ):
        raise FormatError("unnamed label counts of an unknown name or an invalid value")
    state.unnamed = Counter({str(name): float(n) for name, n in r.unnamed.items()})


def _legacy_warmup(engine: Engine, r: LegacyRec) -> dict[int, dict[int, list[WarmChunk]]]:
    """A format-2 partition's warmup rows: model -> pane -> the rows as chunks (none or
    one)."""
    n = len(engine.models)
    out: dict[int, dict[int, list[WarmChunk]]] = {}
    for m, panes in r.warmup.items():
        if not 0 <= m < n:
            raise FormatError("warmup rows of an unknown model")
        model = engine.models[m]
        k, rows = 2 + len(model.registry.segments), len(model.registry.keys)
        out[int(m)] = {int(p): [_set_warm(model.layout, rec, k, rows)] if rec is not None else []
                       for p, rec in panes.items()}  # fmt: skip
    return out


# ---------------------------------------------------------------------- models
def _errors(panes: Mapping[int, Any]) -> Any:
    return {
        p: {n: ErrorsRec(_arr(ts), _arr(err)) for n, (ts, err) in parts.items()}
        for p, parts in panes.items()
    }


def _set_errors(panes: Mapping[int, Mapping[int, ErrorsRec]]) -> Any:
    out: dict[int, dict[int, tuple[list[float], list[float]]]] = {}
    for p, parts in panes.items():
        for n, rec in parts.items():
            ts, err = _unarr(rec.ts, "<f8", 1), _unarr(rec.errors, "<f8", 1)
            if len(ts) != len(err):
                raise FormatError("detector buffers of different lengths")
            out.setdefault(int(p), {})[int(n)] = (ts.tolist(), err.tolist())
    return out


def _numeric(r: NumericReference) -> NumericRec:
    return NumericRec(_arr(r.edges), _arr(r.counts), _arr(r.sums), float(r.mean), float(r.std))


def _set_numeric(r: NumericRec) -> NumericReference:
    edges = _unarr(r.edges, "<f8", 1)
    counts, sums = _unarr(r.counts, "<f8", 1), _unarr(r.sums, "<f8", 1)
    if len(edges) < 2 or len(counts) != len(edges) + 1 or len(sums) != len(counts):
        raise FormatError("numeric reference of inconsistent sizes")
    return NumericReference(edges, counts, sums, r.mean, r.std)


def _profile(p: ReferenceProfile) -> ProfileRec:
    return ProfileRec(
        source=p.source,
        rows=p.rows,
        numeric={n: _numeric(r) for n, r in p.numeric.items()},
        categorical={
            n: CategoricalRec(list(r.categories), _arr(r.counts), sorted(r.known))
            for n, r in p.categorical.items()
        },
        output_numeric={n: _numeric(r) for n, r in p.output_numeric.items()},
        pca=None if p.pca is None else PcaRec(
            list(p.pca.features), _arr(p.pca.mean), _arr(p.pca.scale), _arr(p.pca.components),
            float(p.pca.ref_error),
        ),
    )


def _baseline(b: Baseline | None) -> BaselineRec | None:
    if b is None:
        return None
    calibration = None if b.calibration is None else _arr(b.calibration)
    classes = (None if b.class_calibration is None
               else [(_arr(x), _arr(y)) for x, y in b.class_calibration])
    return BaselineRec(_arr(b.row), dict(b.metrics), calibration, b.rows, b.skipped,
                       b.calibrated_from, classes)  # fmt: skip


def _set_baseline(r: BaselineRec | None, width: int) -> Baseline | None:
    if r is None:
        return None
    calibration = None if r.calibration is None else _unarr(r.calibration, "<f8", 1)
    classes = (None if r.class_calibration is None else tuple(
        (_unarr(x, "<f8", 1), _unarr(y, "<f8", 1)) for x, y in r.class_calibration))
    return Baseline(_matrix(r.row, (width,)), dict(r.metrics), calibration, r.rows, r.skipped,
                    r.calibrated_from, classes)  # fmt: skip


def _set_profile(model: ModelState, r: ProfileRec, baseline: BaselineRec | None) -> None:
    """Install a warmup-built profile and its baseline as :meth:`Engine._install_profile`
    does (before any partition is restored, so there is nothing to histogram again)."""
    profile = _profile_of(model, r)
    layout = model.layout
    layout.profile = model.profile = profile
    layout.pca = profile.pca if "pca_n" in layout.fields else None
    model.baseline = layout.baseline = _set_baseline(baseline, layout.width)


def _profile_of(model: ModelState, r: ProfileRec) -> ReferenceProfile:
    """The warmup-built profile a record holds, checked against ``model``'s config."""
    layout = model.layout
    if model.config.reference or layout.reserve is None:
        raise FormatError(f"model {model.name!r}: a stored warmup profile, but no warmup")
    if set(r.numeric) | set(r.categorical) != set(model.config.features):
        raise FormatError(f"model {model.name!r}: profile of other features")
    categorical = {}
    for name, c in r.categorical.items():
        counts = _unarr(c.counts, "<f8", 1)
        if len(counts) != len(c.categories) + 1:
            raise FormatError("categorical reference of inconsistent sizes")
        index = {v: i for i, v in enumerate(c.categories)}
        categorical[name] = CategoricalReference(
            tuple(c.categories), counts, frozenset(c.known), index
        )
    pca = None
    if r.pca is not None:
        d = len(r.pca.features)
        components = _unarr(r.pca.components, "<f8", 2)
        if components.shape[1] != d:
            raise FormatError("PCA components of another width")
        mean, scale = _unarr(r.pca.mean, "<f8", 1), _unarr(r.pca.scale, "<f8", 1)
        if len(mean) != d or len(scale) != d:
            raise FormatError("PCA of inconsistent sizes")
        pca = PcaReference(tuple(r.pca.features), mean, scale, components, r.pca.ref_error)
    return ReferenceProfile(
        r.source, r.rows, {n: _set_numeric(x) for n, x in r.numeric.items()}, categorical,
        {}, {n: _set_numeric(x) for n, x in r.output_numeric.items()}, pca,
    )  # fmt: skip


class ReferenceRec(msgspec.Struct):
    """A model's warmup reference as its stage 2 built it, for every stage 1 (replicas):
    the profile, its baseline and the last pane of the sample it was built from; no
    profile when the warmup failed (the model has no drift statistics)."""

    model: str
    profile: ProfileRec | None
    baseline: BaselineRec | None
    pane: int


def encode_reference(model: ModelState) -> bytes:
    """The outcome of ``model``'s warmup: the reference it built (``profile_pane`` set),
    or none when it failed (``warmup_target`` 0 without a profile)."""
    if model.profile is not None and model.profile_pane is not None:
        rec = ReferenceRec(model.name, _profile(model.profile), _baseline(model.baseline),
                           int(model.profile_pane))  # fmt: skip
    elif model.profile is None and not model.warmup_target:
        rec = ReferenceRec(model.name, None, None, -1)
    else:
        raise ValueError(f"model {model.name!r} is still warming up")
    return _ENCODER.encode({"format": FORMAT, "reference": rec})


def decode_reference(
    body: bytes, model: ModelState
) -> tuple[ReferenceProfile | None, Baseline | None, int]:
    """The warmup outcome of ``model`` in a body: (profile, baseline, last pane of its
    sample), the profile None when the warmup failed. FormatError when it is not one, or
    not of this model and config."""
    rec = _typed(body, "reference", ReferenceRec)
    if rec.model != model.name:
        raise FormatError(f"reference of model {rec.model!r} under {model.name!r}")
    if rec.profile is None:
        return None, None, int(rec.pane)
    baseline = _set_baseline(rec.baseline, model.layout.width)
    return _profile_of(model, rec.profile), baseline, int(rec.pane)


def _rule_config(cfg: AlertRuleConfig) -> str:
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)


def _rules(rules: ModelRules | None) -> RulesRec | None:
    if rules is None:
        return None
    states = {}
    for name, s in rules.states.items():
        states[name] = RuleStateRec(
            rule=_rule_config(rules.rules[name].cfg), phase=s.phase, since=s.since,
            clear_since=s.clear_since, quiet_until=s.quiet_until, value=s.value, bound=s.bound,
            evaluated_at=s.evaluated_at, ewm_mean=s.ewm_mean, ewm_var=s.ewm_var, ewm_n=s.ewm_n,
            transitions=dict(s.transitions),
        )  # fmt: skip
    return RulesRec(states, rules.last_active, float(rules.predictions_seen))


def _set_rules(rules: ModelRules, r: RulesRec) -> None:
    """Rule states into the rules the config compiled: a rule renamed, added or changed
    since starts afresh (as :meth:`ModelRules.reconcile` does)."""
    for name, rule in rules.rules.items():
        s = r.states.get(name)
        if s is None or s.rule != _rule_config(rule.cfg):
            continue
        if s.phase not in ("inactive", "pending", "firing"):
            raise FormatError(f"rule {name!r}: phase {s.phase!r}")
        rules.states[name] = RuleState(
            s.phase, s.since, s.clear_since, s.quiet_until, s.value, s.bound,  # type: ignore[arg-type]
            s.evaluated_at, s.ewm_mean, s.ewm_var, s.ewm_n, Counter(s.transitions),
        )  # fmt: skip
    rules.last_active = r.last_active
    rules.predictions_seen = r.predictions_seen


def _model(model: ModelState, rules: ModelRules | None) -> ModelRec:
    warmup_built = model.profile is not None and not model.config.reference
    return ModelRec(
        name=model.name,
        registry_keys=list(model.registry.keys),
        registry_used=dict(model.registry.used),
        registry_folded=dict(model.registry.folded),
        profile=_profile(model.profile) if warmup_built and model.profile else None,
        baseline=_baseline(model.baseline) if warmup_built else None,
        warmup_target=int(model.warmup_target),
        warmup_rows=_warm_rec(model.layout, model.warmup_rows, sample=True),
        profile_pane=model.profile_pane,
        detectors=_detectors(model.detectors),
        error_panes=_errors(model.error_panes),
        last_detections=dict(model.last_detections),
        last={w: {k: _arr(v) for k, v in m.items()} for w, m in model.last.items()},
        last_rows=int(model.last_rows),
        rules=_rules(rules),
    )


def _set_model(model: ModelState, r: ModelRec) -> None:
    if r.name != model.name:
        raise FormatError(f"state of model {r.name!r} where the config has {model.name!r}")
    reg = model.registry
    keys = [(str(d), str(v)) for d, v in r.registry_keys]
    if not keys or keys[0] != ("model", "") or len(set(keys)) != len(keys):
        raise FormatError(f"model {model.name!r}: slice registry not valid")
    if any(d not in reg.caps for d, _ in keys[1:]):
        raise FormatError(f"model {model.name!r}: slice of an unknown dimension")
    reg.keys = keys
    reg.index = {k: i for i, k in enumerate(keys)}
    reg.used = Counter(r.registry_used)
    reg.folded = Counter(r.registry_folded)
    if r.profile is not None:
        _set_profile(model, r.profile, r.baseline)
    model.warmup_target = int(r.warmup_target)
    sample = r.warmup_rows
    model.warmup_rows = [_set_warm(model.layout, sample, None)] if sample is not None else []
    model.profile_pane = r.profile_pane
    _set_detectors(model.detectors, r.detectors, model.name)
    model.error_panes = _set_errors(r.error_panes)
    model.last_detections = {str(k): int(v) for k, v in r.last_detections.items()}
    model.last = {w: {k: _unarr(v, "<f8", 1) for k, v in m.items()} for w, m in r.last.items()}
    model.last_rows = int(r.last_rows)


def _alert(a: AlertEvent) -> AlertRec:
    return AlertRec(**{name: getattr(a, name) for name in AlertRec.__struct_fields__})


def _set_alert(r: AlertRec) -> AlertEvent:
    if r.status not in ("firing", "resolved"):
        raise FormatError(f"alert status {r.status!r}")
    return AlertEvent(**{name: getattr(r, name) for name in AlertRec.__struct_fields__})


# ---------------------------------------------------------------------- engine
def _config_parts(config: MonitorConfig) -> dict[str, Any]:
    return {
        "config_models": [m.model_dump(mode="json") for m in config.models],
        "config_time": config.time.model_dump(mode="json"),
        "config_topics": (config.kafka.predictions_topic, config.kafka.labels_topic),
    }


def _less_alerts(model: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model.items() if k != "alerts"}


def stored_config(rec: EngineRec, config: MonitorConfig) -> MonitorConfig:
    """``config`` with the models, ``[time]`` and input topics of a stored engine: the
    config its state was made under (to carry it over to ``config``)."""
    try:
        models = [ModelConfig.model_validate(m) for m in rec.config_models]
        kafka = config.kafka.model_copy(
            update={"predictions_topic": rec.config_topics[0], "labels_topic": rec.config_topics[1]}
        )
        return config.model_copy(
            update={"models": models, "time": TimeConfig.model_validate(rec.config_time),
                    "kafka": kafka}
        )  # fmt: skip
    except ValueError as exc:
        raise FormatError(f"stored config not valid here: {str(exc)[:200]}") from None


def encode_engine(engine: Engine, alerting: Alerting | None = None,
                  stages: Mapping[str, ModelStage] | None = None) -> bytes:  # fmt: skip
    """The whole engine as a body (MessagePack), with the state of the ``alerting`` its
    signals feed (None: rules with no state) and, in one process, every model's
    ``stages`` (their rules' state is in the engine's model records)."""
    rules = alerting.models if alerting is not None else {}
    # the stages' signals not drained yet: read back into stage 1's list (drained first)
    undrained = sorted((s for st in (stages or {}).values() for s in st.signals_out),
                       key=lambda s: s.pane_end)  # fmt: skip
    rec = EngineRec(
        **_config_parts(engine.config),
        watermark=float(engine.watermark),
        closed_upto=engine.closed_upto,
        tracked=sorted(engine.tracked),
        idle=sorted(engine.idle),
        panes_closed=int(engine.panes_closed),
        events=int(engine.events),
        pending_total=[int(x) for x in engine.pending_total],
        early_total=int(engine.early_total),
        signals_out=[
            SignalRec(s.model, s.pane_end, dict(s.signals), float(s.predictions_total))
            for s in engine.signals_out + undrained
        ],
        alerts_out=[_alert(a) for a in alerting.alerts_out] if alerting is not None else [],
        models=[_model(m, rules.get(m.name)) for m in engine.models],
        partitions={n: _partition(s) for n, s in engine.partitions.items()},
        first_pane=engine.first_pane,
    )
    out: dict[str, Any] = {"format": FORMAT, "engine": rec}
    if stages is not None:
        out["stages"] = [_stage_rec(stage, 0) for stage in stages.values()]
    return _ENCODER.encode(out)


def decode_engine(
    body: bytes, config: MonitorConfig
) -> tuple[Engine, Alerting, MonitorConfig]:
    """The engine and the alerting of a body from :func:`encode_engine`, built for the
    config it was made under (``config`` itself when the models, ``[time]`` and topics are
    the same), and that config. FormatError when the body is not valid state."""
    rec = _typed(body, "engine", EngineRec)
    shape = _config_parts(config)
    same = (
        [_less_alerts(m) for m in rec.config_models]
        == [_less_alerts(m) for m in shape["config_models"]]
        and rec.config_time == shape["config_time"]
        and tuple(rec.config_topics) == shape["config_topics"]
    )
    made_under = config if same else stored_config(rec, config)
    try:
        engine = Engine(made_under)
    except ValueError as exc:  # e.g. a reference file that no longer loads
        raise FormatError(f"engine for the stored config: {str(exc)[:200]}") from None
    if [m.name for m in engine.models] != [m.name for m in rec.models]:
        raise FormatError("models stored and configured differ")
    alerting = Alerting(made_under, engine.models)
    for model, mr in zip(engine.models, rec.models, strict=True):
        _set_model(model, mr)
        if mr.rules is not None:
            _set_rules(alerting.models[model.name], mr.rules)
    for number, pr in rec.partitions.items():
        _set_partition(engine, engine.partition(int(number)), pr)
    n = len(engine.models)
    if len(rec.pending_total) != n:
        raise FormatError("pending totals of another number of models")
    engine.watermark = rec.watermark
    engine.closed_upto = rec.closed_upto
    engine.tracked = {(t, int(p)) for t, p in rec.tracked}
    engine.idle = {(t, int(p)) for t, p in rec.idle}
    engine.panes_closed = rec.panes_closed
    engine.events = rec.events
    engine.pending_total = list(rec.pending_total)
    engine.early_total = rec.early_total
    engine.first_pane = rec.first_pane
    engine.signals_out = [PaneSignals(s.model, s.pane_end, dict(s.signals), s.predictions_total)
                          for s in rec.signals_out]  # fmt: skip
    alerting.alerts_out = [_set_alert(a) for a in rec.alerts_out]
    return engine, alerting, made_under


def encode_core(core: Pipeline, alerting: Alerting | None = None) -> bytes:
    """One process's core (both stages) as an engine body, with its ``alerting``'s state
    (see :func:`encode_engine`)."""
    return encode_engine(core.engine, alerting, core.stages)


def decode_core(body: bytes, config: MonitorConfig) -> tuple[Pipeline, Alerting, MonitorConfig]:
    """One process's core and alerting of a body from :func:`encode_core` (or of an
    engine body of format 2), built for the config it was made under, and that config
    (see :func:`decode_engine`). FormatError when the body is not valid state."""
    engine, alerting, made_under = decode_engine(body, config)
    stages = decode_stages(body, made_under, engine)
    return Pipeline(made_under, engine, stages), alerting, made_under


def encode_snapshot(snap: PartitionSnapshot) -> bytes:
    """A partition's snapshot (:meth:`Engine.export_partition`) as a body."""
    rec = SnapshotRec(
        number=snap.number,
        state=_partition(snap.state),
        slice_keys={m: list(keys) for m, keys in snap.slice_keys.items()},
        closed_upto=snap.closed_upto,
        watermark=float(snap.watermark),
    )
    return _ENCODER.encode({"format": FORMAT, "snapshot": rec})


def decode_snapshot(body: bytes, engine: Engine) -> PartitionSnapshot:
    """The partition snapshot of a body from :func:`encode_snapshot`, for ``engine``'s
    config (its slice ids refer to the snapshot's own ``slice_keys``)."""
    rec = _typed(body, "snapshot", SnapshotRec)
    if set(rec.slice_keys) != set(engine.by_name):
        raise FormatError("snapshot of other models than the config's")
    keys = {}
    for name, stored in rec.slice_keys.items():
        keys[name] = [(str(d), str(v)) for d, v in stored]
        if not keys[name] or keys[name][0] != ("model", ""):
            raise FormatError("snapshot slice keys not valid")
    n = len(engine.models)
    rows = [len(keys[m.name]) for m in engine.models]
    state = PartitionState(
        join=JoinBuffer(n),
        counts=[[0.0] * len(COUNT_NAMES) for _ in range(n)],
        delay=np.zeros((n, len(LABEL_DELAY_BUCKETS) + 1)),
        delay_sum=np.zeros(n),
    )
    _set_partition(engine, state, rec.state, rows)
    return PartitionSnapshot(
        number=rec.number,
        state=state,
        slice_keys=keys,
        closed_upto=rec.closed_upto,
        watermark=rec.watermark,
    )


def encode_stage(stage: ModelStage, next_offset: int, rules: ModelRules | None = None) -> bytes:
    """A model's stage 2 as a body, with the next offset of its partials partition and the
    model's ``rules`` with their state (those its signals feed; None: no state)."""
    return _ENCODER.encode({"format": FORMAT, "stage": _stage_rec(stage, next_offset, rules)})


def _stage_rec(stage: ModelStage, next_offset: int, rules: ModelRules | None = None) -> StageRec:
    layout = stage.model.layout
    return StageRec(
        name=stage.name,
        partitions=stage.partitions,
        next_offset=next_offset,
        model=_model(stage.model, rules),
        window=_window(stage.windows),
        progress={n: dict(v) for n, v in stage.progress.items()},
        idle={n: sorted(v) for n, v in stage.idle.items()},
        released=sorted(stage.released),
        chains={
            n: ChainRec(
                end=dict(c.end),
                history=[
                    AppliedRec(
                        base=dict(a.base),
                        end=dict(a.end),
                        progress_before=dict(a.progress_before),
                        idle_before=sorted(a.idle_before),
                        pieces=[
                            PieceRec(
                                pc.pane, _arr(pc.plain), [_arr(d) for d in pc.decay], pc.errors,
                                _warm_rec(layout, [pc.warm] if pc.warm else []),
                            )
                            for pc in a.pieces
                        ],
                        counts=_arr(a.counts),
                        delay=_arr(a.delay),
                        delay_sum=float(a.delay_sum),
                        waiting_before=a.waiting_before,
                    )
                    for a in c.history
                ],
                session=c.session,
                seq=c.seq,
                retired=sorted(c.retired),
            )
            for n, c in stage.chains.items()
        },
        watermark=float(stage.watermark),
        closed_upto=stage.closed_upto,
        panes_closed=stage.panes_closed,
        error_panes=_errors(stage.error_panes),
        counts=_arr(stage.counts),
        delay=_arr(stage.delay),
        delay_sum=float(stage.delay_sum),
        waiting={n: (int(p), int(e)) for n, (p, e) in stage.waiting.items()},
        stale=stage.stale,
        warm={
            p: {n: _warm_rec(layout, chunks) for n, chunks in parts.items()}
            for p, parts in stage.warm.items()
        },
    )


def decode_stage(
    body: bytes, config: MonitorConfig
) -> tuple[ModelStage, int, ModelRules | None]:
    """A model's stage 2 from a body (built from ``config``, holding the stored state), the
    next offset of its partials partition and the model's rules with their stored state
    (None when none was stored; see :meth:`Alerting.install
    <monitor.core.alerting.Alerting.install>`). FormatError when it is not valid."""
    rec = _typed(body, "stage", StageRec)
    if rec.partitions < 1:
        raise FormatError("stage with no input partitions")
    stage, rules = _set_stage(rec, config)
    return stage, int(rec.next_offset), rules


def _set_stage(rec: StageRec, config: MonitorConfig) -> tuple[ModelStage, ModelRules | None]:
    """A model's stage 2 from its record, and its rules with their state (None: none
    stored)."""
    from monitor.core.model_stage import _Applied, _Chain, _Piece

    if rec.name not in {m.name for m in config.models}:
        raise FormatError(f"stage of model {rec.name!r}, which the config does not have")
    if rec.partitions < 0 or rec.next_offset < 0:
        raise FormatError("stage with a negative partition count or offset")
    stage = ModelStage(config, rec.name, rec.partitions)
    _set_model(stage.model, rec.model)
    rules = None
    if rec.model.rules is not None:
        rules = ModelRules(stage.model.config, config.time.pane)
        _set_rules(rules, rec.model.rules)
    stage.windows.grow(len(stage.model.registry.keys))
    _set_window(stage.windows, rec.window)
    width = stage.windows.width
    n_decay = len(stage.windows.decay_rates)

    def block(r: Arr) -> F64:
        out: F64 = _unarr(r, "<f8", 2)
        if out.shape[1] != width:
            raise FormatError("a delta block of another width than the model's")
        return out

    k = 2 + len(stage.model.registry.segments)
    rows = len(stage.model.registry.keys)

    def warm(rec: WarmColumnsRec) -> WarmChunk:
        return _set_warm(stage.model.layout, rec, k, rows)

    def piece(r: PieceRec) -> _Piece:
        if len(r.decay) != n_decay or r.errors < 0:
            raise FormatError("a delta piece that does not fit the model")
        return _Piece(int(r.pane), block(r.plain), [block(d) for d in r.decay], int(r.errors),
                      warm(r.warm) if r.warm is not None else None)  # fmt: skip

    stage.progress = {int(n): {str(t): float(v) for t, v in m.items()}
                      for n, m in rec.progress.items()}  # fmt: skip
    stage.idle = {int(n): frozenset(map(str, v)) for n, v in rec.idle.items()}
    stage.released = {int(n) for n in rec.released}
    stage.chains = {
        int(n): _Chain(
            end=dict(c.end),
            history=[
                _Applied(
                    dict(a.base), dict(a.end), dict(a.progress_before),
                    frozenset(a.idle_before), [piece(pc) for pc in a.pieces],
                    _matrix(a.counts, (len(COUNT_NAMES),)),
                    _matrix(a.delay, (len(LABEL_DELAY_BUCKETS) + 1,)),
                    float(a.delay_sum), a.waiting_before,
                )
                for a in c.history
            ],
            session=c.session,
            seq=int(c.seq),
            retired=set(c.retired),
        )
        for n, c in rec.chains.items()
    }
    stage.watermark = float(rec.watermark)
    stage.closed_upto = rec.closed_upto
    _check_clock(stage.windows, rec.closed_upto, f"stage of {stage.name}")
    stage.panes_closed = int(rec.panes_closed)
    stage.error_panes = _set_errors(rec.error_panes)
    stage.counts = _matrix(rec.counts, (len(COUNT_NAMES),))
    stage.delay = _matrix(rec.delay, (len(LABEL_DELAY_BUCKETS) + 1,))
    stage.delay_sum = float(rec.delay_sum)
    stage.waiting = {int(n): (int(p), int(e)) for n, (p, e) in rec.waiting.items()}
    stage.stale = int(rec.stale)
    stage.warm = {int(p): {int(n): [warm(r)] if r is not None else [] for n, r in parts.items()}
                  for p, parts in rec.warm.items()}  # fmt: skip
    return stage, rules


def decode_stages(body: bytes, config: MonitorConfig, engine: Engine) -> dict[str, ModelStage]:
    """Every model's stage 2 of one process from an engine body (:func:`encode_engine`
    with ``stages``), for ``config`` (the config the body was made under, as
    :func:`decode_engine` gave it) and the ``engine`` decoded from the same body. A body
    written before one process ran stage 2 (format 2) has none: they are built from the
    windows its engine kept (:func:`stages_from_engine`). FormatError when not valid."""
    keys, parts = _parts(body, {"stages": list[StageRec] | None,
                                "legacy": dict[int, LegacyRec] | None})  # fmt: skip
    if "engine" not in keys:
        raise FormatError("not an engine body")
    recs = parts.get("stages")
    if recs is None:
        legacy = parts.get("legacy") or {}
        if set(legacy) != set(engine.partitions):
            raise FormatError("windows of other partitions than the engine's")
        return stages_from_engine(engine, legacy)
    if [r.name for r in recs] != [m.name for m in config.models]:
        raise FormatError("stages stored and models configured differ")
    return {r.name: _set_stage(r, config)[0] for r in recs}


def stages_from_engine(engine: Engine, legacy: Mapping[int, LegacyRec]) -> dict[str, ModelStage]:
    """Every model's stage 2 as one process's engine held it before stage 2 was a stage of
    its own (format 2): the model's registry, reference, detectors and last values, the
    windows of every partition (``legacy``) summed, the engine's pane clock, counters,
    label delays, the detectors' buffered errors and the warmup rows of open panes. Each
    partition's chain of deltas starts at its offsets, where the engine's stage 1 goes on."""
    n = len(engine.models)
    windows: dict[int, list[WindowSet]] = {}
    warmups: dict[int, dict[int, dict[int, list[WarmChunk]]]] = {}
    for number, rec in legacy.items():
        if len(rec.windows) != n:
            raise FormatError(f"windows for {len(rec.windows)} models, the config has {n}")
        windows[number] = []
        for model, wr in zip(engine.models, rec.windows, strict=True):
            w = model.new_windows()
            _set_window(w, wr)
            _check_clock(w, engine.closed_upto, f"partition {number}")
            windows[number].append(w)
        warmups[number] = _legacy_warmup(engine, rec)
    stages: dict[str, ModelStage] = {}
    early: dict[int, Counter[int]] = {
        n: Counter(e.model for e in s.join.early.values()) for n, s in engine.partitions.items()
    }
    for model in engine.models:
        m = model.index
        stage = ModelStage(engine.config, model.name, 0)
        _set_model(stage.model, _model(model, None))
        stage.error_panes, stage.model.error_panes = stage.model.error_panes, {}
        w = stage.windows
        w.grow(len(stage.model.registry.keys))
        for number in sorted(engine.partitions):
            state = engine.partitions[number]
            part = windows[number][m]
            part.grow(w.rows)
            for p, a in part.open.items():
                w.add_sums(p, None, a, part.open_decay[p])
            w.cum += part.cum
            w.late_n += part.late_n
            for p, kept in part.ring.items():
                w.ring[p] = (ring_pane(ring_array(w.ring[p], w.rows, w.width)
                                       + ring_array(kept, part.rows, part.width))
                             if p in w.ring else kept)  # fmt: skip
            for mine, theirs in zip(w.sliding, part.sliding, strict=True):
                mine += theirs
            for mine, theirs in zip(w.decay, part.decay, strict=True):
                mine += theirs
            w.closes = max(w.closes, part.closes)
            stage.counts += np.asarray(state.counts[m])
            stage.delay += state.delay[m]
            stage.delay_sum += float(state.delay_sum[m])
            stage.waiting[number] = (len(state.join.pending[m]),
                                     early[number][-1] + early[number][m])  # fmt: skip
            for p, chunks in warmups[number].get(m, {}).items():
                stage.warm.setdefault(p, {})[number] = chunks
            stage.progress[number] = dict(state.max_ts)
            stage.resume(number, state.offsets)
        w._nz = None
        stage.watermark = engine.watermark
        stage.closed_upto = engine.closed_upto
        stage.panes_closed = engine.panes_closed
        stages[model.name] = stage
    return stages


# ---------------------------------------------------------------------- plumbing
def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise TypeError(f"not state data: {type(obj).__qualname__}")


_ENCODER: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def check_envelope(body: bytes, kind: str) -> None:
    """Check, without decoding it whole, that ``body`` is a ``kind`` body (``engine``,
    ``snapshot``, ``stage``, ``reference``) of a known format; FormatError otherwise."""
    try:
        top = msgspec.msgpack.decode(body, type=dict[str, msgspec.Raw])
        version = msgspec.msgpack.decode(top["format"], type=int)
    except (msgspec.DecodeError, KeyError) as exc:
        raise FormatError(f"not a state body: {str(exc)[:100]}") from None
    if kind not in top or not (version == FORMAT or version in MIGRATIONS):
        raise FormatError(f"not a {kind} body of a known format")


def _typed(body: bytes, kind: str, record: Any) -> Any:
    """The ``kind`` part of a body as a ``record`` (see :func:`_parts`); FormatError when
    the body has none or is not valid."""
    keys, parts = _parts(body, {kind: record})
    if kind not in keys:
        raise FormatError(f"not a {kind} body of format {FORMAT}")
    return parts[kind]


def _parts(body: bytes, types: Mapping[str, Any]) -> tuple[frozenset[str], dict[str, Any]]:
    """The names of a body's parts, and those of them named in ``types`` decoded to their
    type. A body of :data:`FORMAT` is decoded straight from its bytes, each part asked for
    alone (the others are skipped); an older one is decoded to plain values, migrated
    (:data:`MIGRATIONS`) and then converted. FormatError when it is not valid."""
    try:
        top = msgspec.msgpack.decode(body, type=dict[str, msgspec.Raw])
        version = msgspec.msgpack.decode(top["format"], type=int)
    except (msgspec.DecodeError, KeyError, RecursionError):
        version = None  # not one of this format: what _migrated says of it
    try:
        if version == FORMAT:
            parts = {name: msgspec.msgpack.decode(top[name], type=kind)
                     for name, kind in types.items() if name in top}  # fmt: skip
            return frozenset(top), parts
        raw = _migrated(body)
        parts = {name: msgspec.convert(raw[name], kind)
                 for name, kind in types.items() if name in raw}  # fmt: skip
        return frozenset(raw), parts
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise FormatError(f"{'/'.join(types)} body not valid: {str(exc)[:200]}") from None


def _migrated(body: bytes) -> dict[str, Any]:
    """A body decoded to plain values and, when older, migrated to :data:`FORMAT`;
    FormatError when it is not one."""
    try:
        raw = msgspec.msgpack.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise FormatError(f"body is not MessagePack: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("format"), int):
        raise FormatError("body has no format version")
    version = raw["format"]
    while version < FORMAT:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise FormatError(f"no migration from format {version}")
        raw = migrate(raw)
        version = raw["format"] = version + 1
    if version != FORMAT:
        raise FormatError(f"not a body of format {FORMAT}")
    return raw
