"""Stage 1's output: what one input partition adds to each model's panes, as records.

Stage 1 (decode, validate, join, per input partition) does not close panes. For each
model and pane it adds, per slice row, the same additive terms the windows hold: the
plain sums, and for every decay window the sums weighted by ``exp(-(end - t) * ln2 / h)``
with ``end`` the end of the event's own pane (stage 2 scales them to its clock). It also
keeps the joined pairs' errors (event time, error) for the detectors, and the model's
counters and label-delay histogram.

A :class:`PartitionDelta` is everything one partition added between two points of its
input, named by the input offsets at both ends (``base`` and ``end``, per input topic),
with the partition's event-time progress at ``end``. Successive deltas of a partition form
a chain: each one's ``base`` is the previous one's ``end``. After a crash the partition
resumes from its last checkpoint, which is always the ``end`` of a delta already
published (a checkpoint is written right after the delta that ends at it), so a chain
that restarts at an earlier ``end`` tells stage 2 to undo what it applied after that point
and take the new chain: the sums come out exact with no transactions from the broker
(see :class:`~monitor.core.model_stage.ModelStage`). Each run of stage 1 over a partition
(from a restore on) is a *session* with its own id and numbers its deltas: a restart is a
new session, a delta delivered twice repeats a number, and a delta of an older session
(a member that has not noticed it lost the partition) is known for what it is.
``confirmed`` names the partition's last durable checkpoint: stage 2 never needs to undo
past it.

A model that builds its drift reference from its first predictions (``reference_warmup``)
has it built once, by its stage 2: until stage 1 has that reference, it sends each
prediction's features raw with its pane (:class:`WarmRow`), and stage 2 takes them into
the warmup sample or, once it has the reference, histograms them itself.

Records are msgspec structs, encoded with msgspec's MessagePack and compressed with zlib;
arrays travel as little-endian float64 bytes. Nothing in a record is executed.
"""

from __future__ import annotations

import zlib
from itertools import chain
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from monitor import native
from monitor.core.layout import scatter_pane

__all__ = [
    "DeltaLedger",
    "HandedPaneDelta",
    "ModelDelta",
    "PaneDelta",
    "PartitionDelta",
    "WarmRow",
    "decode_delta",
    "encode_delta",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: How arrays travel (little-endian float64), and whether that is this machine's float64
#: (a block is then read in place).
_WIRE: Final = np.dtype("<f8")
_NATIVE: Final = _WIRE.isnative

#: The version of the record format; a reader refuses any other.
FORMAT: Final = 1
#: The largest body a record may inflate to (a bound on a hostile zlib stream).
MAX_BODY: Final = 1 << 28


class WarmRow(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A prediction whose features stage 1 could not histogram (the model's warmup
    reference was not built yet, or not known here): what stage 2 needs to take it into
    the warmup sample or histogram it. ``slices`` index the message's ``slice_keys`` (-1:
    none in that position); the features' data-quality terms are in the pane's sums."""

    ts: float
    slices: list[int]
    features: dict[str, float | str | bool | None] | None
    prediction: float | int | str | bool | None
    score: float


class PaneDelta(msgspec.Struct, array_like=True, frozen=True):
    """What a partition added to one pane of one model.

    ``rows`` are the indices, in the message's ``slice_keys``, of the slice rows present;
    ``plain`` is ``(len(rows), width)`` float64 bytes; ``decay`` one such block per decay
    window of the model, weighted to the pane's end; ``err_ts``/``err`` the joined pairs'
    event times and errors in input order (detectors); ``warm`` the predictions sent raw
    for the model's warmup reference, in input order."""

    pane: int
    rows: list[int]
    plain: bytes
    decay: list[bytes]
    err_ts: list[float]
    err: list[float]
    warm: list[WarmRow] = []


class HandedPaneDelta(PaneDelta, frozen=True):
    """A :class:`PaneDelta` handed over in one process (never encoded): its ``plain`` and
    ``decay`` arrays hold the cells of the columns ``cols`` only (int64, ascending; the
    other cells of their rows are zero), as the ledger summed them (see
    :meth:`PartitionDelta.row_blocks`); ``at``, its ``rows`` as an int64 array (None: not
    given), as the ledger held them."""

    cols: npt.NDArray[np.int64] | None = None
    at: npt.NDArray[np.int64] | None = None


class ModelDelta(msgspec.Struct, array_like=True, frozen=True):
    """What a partition added to one model: its panes and its counters' increments."""

    model: str
    width: int
    slice_keys: list[tuple[str, str]]
    panes: list[PaneDelta]
    counts: list[float]  # COUNT_NAMES order
    delay: list[float]  # label-delay histogram buckets, +Inf last
    delay_sum: float
    folded: dict[str, int]
    pending: int  # predictions waiting for a label in the partition, at ``end``
    early: int  # labels waiting for their prediction (this model or unnamed), at ``end``


class PartitionDelta(msgspec.Struct, frozen=True):
    """What input partition ``number`` added between offsets ``base`` and ``end``."""

    format: int
    number: int
    session: str  # one per run of stage 1 over this partition (from a restore on)
    seq: int  # 1, 2, ... within the session
    base: dict[str, int]  # topic -> next offset at the start (empty: the very start)
    end: dict[str, int]  # topic -> next offset at the end
    progress: dict[str, float]  # topic -> largest event time read, at ``end``
    idle: list[str]  # input topics of this partition caught up and silent at ``end``
    confirmed: dict[str, int] | None  # offsets of the last durable checkpoint
    models: list[ModelDelta]

    def array(self, model: ModelDelta, block: bytes) -> F64:
        """A ``plain`` or ``decay`` block of ``model`` as a ``(rows, width)`` array (a
        block of a delta handed over in one process is that array already)."""
        if isinstance(block, np.ndarray):
            return block
        out: F64 = np.frombuffer(block, dtype=_WIRE).reshape(-1, model.width)
        return out if _NATIVE else out.astype(np.float64)

    def blocks(self, model: ModelDelta, pane: PaneDelta) -> tuple[F64, list[F64]]:
        """A pane's ``plain`` and ``decay`` blocks as ``(rows, width)`` arrays, as
        :meth:`array` gives each (a delta handed over in one process holds them as arrays
        already, of the columns its events touched: spread over the width here)."""
        plain, decay, cols = self.row_blocks(model, pane)
        if cols is None:
            return plain, decay
        return _spread(plain, cols, model.width), [_spread(d, cols, model.width) for d in decay]

    def row_blocks(self, model: ModelDelta, pane: PaneDelta
                   ) -> tuple[F64, list[F64], npt.NDArray[np.int64] | None]:  # fmt: skip
        """A pane's ``plain`` and ``decay`` blocks as arrays of the columns ``cols`` (None:
        of every column, as :meth:`blocks` gives them): those of a delta handed over in one
        process (:class:`HandedPaneDelta`) as they are."""
        if isinstance(pane.plain, np.ndarray):
            cols = pane.cols if isinstance(pane, HandedPaneDelta) else None
            return pane.plain, pane.decay, cols  # (arrays, handed over in the process)
        return self.array(model, pane.plain), [self.array(model, d) for d in pane.decay], None


def _spread(block: F64, cols: npt.NDArray[np.int64], width: int) -> F64:
    """A block of the columns ``cols`` as one of every column of ``width`` (zeros else)."""
    out = np.zeros((block.shape[0], width))
    out[:, cols] = block
    return out


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PartitionDelta)


def encode_delta(delta: PartitionDelta) -> bytes:
    """The record value of ``delta``: MessagePack, zlib-compressed (pane blocks are mostly
    zeros: a block of a few slices and a 200-bin score histogram shrinks ~40 times)."""
    return zlib.compress(_encoder.encode(delta), 1)


def decode_delta(value: bytes) -> PartitionDelta:
    """A delta from its record value; ValueError when it is not one of this format."""
    try:
        inflate = zlib.decompressobj()
        body = inflate.decompress(value, MAX_BODY)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("a pane delta larger than 256 MiB, or cut short")
        delta = _decoder.decode(body)
    except (msgspec.DecodeError, zlib.error) as exc:
        raise ValueError(f"not a pane delta: {exc}") from exc
    if delta.format != FORMAT:
        raise ValueError(f"pane delta format {delta.format}, expected {FORMAT}")
    for model in delta.models:
        for pane in model.panes:
            size = len(pane.rows) * model.width * 8
            if len(pane.plain) != size or any(len(d) != size for d in pane.decay):
                raise ValueError(f"pane delta of {model.model!r}: blocks of the wrong size")
            if len(pane.err_ts) != len(pane.err):
                raise ValueError(f"pane delta of {model.model!r}: error lists differ in length")
            if any(r < 0 or r >= len(model.slice_keys) for r in pane.rows):
                raise ValueError(f"pane delta of {model.model!r}: a row outside slice_keys")
            if pane.warm:
                flat = list(chain.from_iterable([w.slices for w in pane.warm]))
                if flat and (min(flat) < -1 or max(flat) >= len(model.slice_keys)):
                    raise ValueError(
                        f"pane delta of {model.model!r}: warmup slice outside slice_keys"
                    )
    return delta


class _Pane(msgspec.Struct, gc=False):
    """One pane's additions: the sums of the slice ``rows`` it holds (ascending) and of
    the columns ``cols`` (ascending; None: every column), one ``(len(rows), len(cols))``
    block each (every other cell is zero), the errors and the predictions sent raw. (A
    struct: a poll of a sparse stream makes hundreds, each made in C, not by an
    ``__init__``.)"""

    rows: I64
    plain: F64
    decay: list[F64]
    cols: I64 | None = None
    err_ts: list[float] = []
    err: list[float] = []
    warm: list[WarmRow] = []


_NO_ROWS: Final = np.zeros(0, dtype=np.int64)
#: Per width, a block of no rows (no cells, nothing is written to it: a pane that holds
#: errors or raw predictions only shares it).
_EMPTY_BLOCKS: dict[int, F64] = {}


def _empty(width: int) -> F64:
    """A ``(0, width)`` block, one per width."""
    block = _EMPTY_BLOCKS.get(width)
    if block is None:
        block = _EMPTY_BLOCKS[width] = np.zeros((0, width))
    return block


class DeltaLedger:
    """One input partition's additions since its last delta, per model and pane.

    ``decay_rates[m]`` are model ``m``'s decay windows' rates (ln 2 / half-life); ``width``
    its accumulator width. A pane holds the rows of the stage-1 engine's slice registry
    that events touched, nothing for the others (a sparse stream's pane touches a few).
    """

    def __init__(self, pane: float, widths: list[int], decay_rates: list[list[float]]) -> None:
        self.pane = pane
        self.widths = widths
        self.decay_rates = decay_rates
        self.panes: list[dict[int, _Pane]] = [{} for _ in widths]
        #: Per model, cells found nonzero in its one-row panes before (see :meth:`_zero`).
        self.probes: list[list[int]] = [[] for _ in widths]

    def add(self, m: int, pane: int, rows: int, slices: I64, cols: I64, vals: F64, ts: F64) -> None:
        """Add events of model ``m`` in ``pane`` (``ts`` their event times)."""
        width = self.widths[m]
        plain = np.zeros((rows, width))
        decay = [np.zeros((rows, width)) for _ in self.decay_rates[m]]
        scatter_pane(plain, decay, self.decay_rates[m], (pane + 1) * self.pane,
                     slices, cols, vals, ts)  # fmt: skip
        self.add_sums(m, pane, plain, decay)

    def add_sums(self, m: int, pane: int, plain: F64, decay: list[F64],
                 rows: I64 | None = None, cols: I64 | None = None) -> None:  # fmt: skip
        """Add the sums of events of model ``m`` in ``pane`` made elsewhere (as
        :func:`~monitor.core.layout.scatter_panes` makes them): ``plain`` and one block per
        decay window, weighted to the pane's end, of the slice ``rows`` (ascending; None:
        rows 0, 1, ...) and the columns ``cols`` (ascending; None: every column). The
        ledger keeps the arrays given (the caller no longer writes to them) when the pane
        holds nothing yet."""
        if rows is None:
            rows = np.arange(plain.shape[0], dtype=np.int64)
        acc = self.panes[m].get(pane)
        if acc is None:
            self.panes[m][pane] = _Pane(rows, plain, list(decay), cols)
            return
        if not len(acc.rows):  # errors or warmup rows only so far
            acc.rows, acc.cols, acc.plain, acc.decay = rows, cols, plain, list(decay)
            return
        same_cols = (acc.cols is None and cols is None) or (
            acc.cols is not None and cols is not None and len(acc.cols) == len(cols)
            and bool((acc.cols == cols).all())
        )  # fmt: skip
        if same_cols and len(acc.rows) == len(rows) and (acc.rows == rows).all():
            acc.plain = acc.plain + plain
            acc.decay = [t + d for t, d in zip(acc.decay, decay, strict=True)]
            return
        # the union of both's rows and columns, each cell what it holds plus what is added
        union = np.union1d(acc.rows, rows)
        old, new = np.searchsorted(union, acc.rows), np.searchsorted(union, rows)
        width = self.widths[m]
        columns: I64 | None = None  # every column
        if acc.cols is None or cols is None:  # a column's place is the column
            held_at = np.arange(width, dtype=np.int64) if acc.cols is None else acc.cols
            new_at = np.arange(width, dtype=np.int64) if cols is None else cols
        else:
            columns = np.union1d(acc.cols, cols)
            held_at, new_at = np.searchsorted(columns, acc.cols), np.searchsorted(columns, cols)
        size = (len(union), width if columns is None else len(columns))
        blocks = []
        for held, add in zip([acc.plain, *acc.decay], [plain, *decay], strict=True):
            out = np.zeros(size)
            out[np.ix_(old, held_at)] = held
            out[np.ix_(new, new_at)] += add
            blocks.append(out)
        acc.rows, acc.cols, acc.plain, acc.decay = union, columns, blocks[0], blocks[1:]

    def add_sums_many(self, models: list[int], panes: list[int], rows: list[I64],
                      cols: list[I64 | None], plain: list[F64], decay: list[list[F64]]
                      ) -> None:  # fmt: skip
        """:meth:`add_sums` of the sums of each of several (model, pane) pairs (distinct)
        in turn, item ``i`` of each list pair ``(models[i], panes[i])``'s (the ledger keeps
        the arrays and the lists of decay blocks given): a pane the model holds nothing of
        yet takes a new record, made with the others in one pass."""
        held = self.panes
        for m, pane, acc in zip(models, panes, map(_Pane, rows, plain, decay, cols),
                                strict=True):  # fmt: skip
            mine = held[m]
            if pane in mine:
                self.add_sums(m, pane, acc.plain, acc.decay, acc.rows, acc.cols)
            else:
                mine[pane] = acc

    def _pane(self, m: int, pane: int) -> _Pane:
        acc = self.panes[m].get(pane)
        if acc is None:
            empty = _empty(self.widths[m])  # (no cells: nothing writes to them)
            acc = self.panes[m][pane] = _Pane(_NO_ROWS, empty, [empty for _ in self.decay_rates[m]])
        return acc

    def add_errors(self, m: int, pane: int, rows: int, ts: list[float], err: list[float],
                   own: bool = False) -> None:  # fmt: skip
        """Keep joined pairs' errors of model ``m`` in ``pane``, in input order (``rows``,
        the registry's rows, is not needed: kept for the callers); with ``own``, the lists
        given are the caller's no longer (the pane keeps them when it holds no errors)."""
        acc = self.panes[m].get(pane)
        if acc is None:
            acc = self._pane(m, pane)
        if own and not acc.err_ts:
            acc.err_ts, acc.err = ts, err
            return
        acc.err_ts.extend(ts)
        acc.err.extend(err)

    def add_errors_many(self, models: list[int], panes: list[int], ts: list[list[float]],
                        err: list[list[float]]) -> None:  # fmt: skip
        """:meth:`add_errors` (with ``own``) of the errors of each of several (model, pane)
        pairs (distinct) in turn: item ``i`` of ``ts`` and ``err`` those of
        ``(models[i], panes[i])``."""
        held = self.panes
        for m, pane, t, e in zip(models, panes, ts, err, strict=True):
            acc = held[m].get(pane)
            if acc is None:
                acc = self._pane(m, pane)
            if not acc.err_ts:
                acc.err_ts, acc.err = t, e
            else:
                acc.err_ts.extend(t)
                acc.err.extend(e)

    def add_warm(self, m: int, pane: int, rows: int, row: WarmRow) -> None:
        """Keep a prediction of model ``m`` in ``pane`` sent raw for the warmup reference."""
        self._pane(m, pane).warm.append(row)

    def add_warm_many(self, m: int, pane: int, rows: list[WarmRow]) -> None:
        """Keep predictions of model ``m`` in ``pane`` sent raw, in order (as
        :meth:`add_warm` of each)."""
        self._pane(m, pane).warm.extend(rows)

    def take(self, m: int, arrays: bool = False) -> list[PaneDelta]:
        """Model ``m``'s pane additions as records, forgetting them (rows that are all zero
        are left out). The blocks are views of the ledger's arrays, which it no longer
        holds (encoded, they are the bytes of those arrays spread over the width); with
        ``arrays``, for a delta that is handed over in the process and never encoded, the
        arrays themselves, of the columns its events touched (:class:`HandedPaneDelta`:
        :meth:`PartitionDelta.row_blocks` gives them back as they are)."""
        return self.take_all(arrays, [m])[0]

    def take_all(self, arrays: bool = False, models: list[int] | None = None
                 ) -> list[list[PaneDelta]]:  # fmt: skip
        """:meth:`take` of each model (``models``: of those, in that order), with one
        search of every model's blocks for their empty rows (one compiled call for a
        hundred models, not one each)."""
        chosen = range(len(self.panes)) if models is None else models
        taken: list[tuple[int, dict[int, _Pane], list[int]]] = []
        for m in chosen:
            panes = self.panes[m]
            if panes:
                self.panes[m] = {}
                taken.append((m, panes, sorted(panes)))
        out: list[list[PaneDelta]] = [[] for _ in chosen]
        if not taken:
            return out
        # every model's panes in pane order, one list of all (the ledger holds them no
        # longer: rows that are all zero are cut off them in place)
        flat = [panes[pane] for _, panes, order in taken for pane in order]
        compiled = native.kernels()
        if compiled is not None:
            # (a block's columns, every column or those its events touched, its width)
            held = compiled.nonzero_rows([acc.plain for acc in flat],
                                         [acc.plain.shape[1] for acc in flat])  # fmt: skip
            for i in [i for i, kept in enumerate(held) if kept is not None]:
                _keep_rows(flat[i], np.array(held[i], dtype=np.int64))
        else:
            m_of = [m for m, _, order in taken for _ in order]
            for m, acc in zip(m_of, flat, strict=True):
                self._cut_zero_rows(m, acc)
        slot = {m: i for i, m in enumerate(chosen)} if models is not None else None
        at = 0
        if arrays:  # read as buffers, as the bytes would be
            handed: Any = HandedPaneDelta  # (its blocks arrays, not bytes)
            numbers = [pane for _, _, order in taken for pane in order]
            made: list[Any] = [handed(pane, acc.rows.tolist(), acc.plain, acc.decay, acc.err_ts,
                                      acc.err, acc.warm, acc.cols, acc.rows)
                               if len(acc.rows) or acc.err or acc.warm else None
                               for pane, acc in zip(numbers, flat, strict=True)]  # fmt: skip
            empty = None in made  # (a pane all of whose rows were zero, with nothing else)
            for m, _, order in taken:
                mine = out[m if slot is None else slot[m]]
                mine += made[at : at + len(order)]
                at += len(order)
                if empty:
                    mine[:] = [pd for pd in mine if pd is not None]
            return out
        for m, _, order in taken:
            mine = out[m if slot is None else slot[m]]
            for pane, acc in zip(order, flat[at : at + len(order)], strict=True):
                rows, plain, decay = acc.rows, acc.plain, acc.decay
                if len(rows) == 0 and not acc.err and not acc.warm:
                    continue
                if acc.cols is not None:  # the wire's blocks hold every column
                    width_m = self.widths[m]
                    plain = _spread(plain, acc.cols, width_m)
                    decay = [_spread(d, acc.cols, width_m) for d in decay]
                blocks_ = (_block(plain), [_block(d) for d in decay])
                mine.append(PaneDelta(pane, rows.tolist(), *blocks_, acc.err_ts, acc.err, acc.warm))
            at += len(order)
        return out

    def _cut_zero_rows(self, m: int, acc: _Pane) -> None:
        """Leave out of a pane of model ``m`` taken from the ledger its rows that are all
        zero (the numpy search of :meth:`take_all`)."""
        rows, plain = acc.rows, acc.plain
        if len(rows) == 1:  # one row (a model without slices): kept unless all 0
            # (a block of the columns its events touched is small: searched whole)
            empty = self._zero(m, plain) if acc.cols is None else not plain.any()
            if empty:
                acc.rows, acc.plain, acc.decay = rows[:0], plain[:0], [d[:0] for d in acc.decay]
        elif len(rows):
            nonzero = (plain != 0).any(axis=1)
            if not nonzero.all():
                _keep_rows(acc, np.flatnonzero(nonzero))

    def _zero(self, m: int, plain: F64) -> bool:
        """Whether a one-row block of model ``m`` is all zeros (-0.0 and 0.0), as
        ``not plain.any()``: the cells found nonzero in its earlier blocks (its count
        columns, as a rule) are read first, and only a block that has none of them
        nonzero is searched whole (its first nonzero cell is then remembered)."""
        probes = self.probes[m]
        for cell in probes:
            if plain.item(cell) != 0:  # NaN too, as any() counts it
                return False
        found = np.flatnonzero(plain)
        if not len(found):
            return True
        if len(probes) < _PROBES:
            probes.append(int(found[0]))
        return False


def _keep_rows(acc: _Pane, used: I64) -> None:
    """Keep the rows ``used`` (places among its rows, ascending) of a pane taken from a
    ledger, its blocks' too."""
    acc.rows, acc.plain, acc.decay = acc.rows[used], acc.plain[used], [d[used] for d in acc.decay]


#: The most cells :meth:`DeltaLedger._zero` remembers per model.
_PROBES: Final = 4


def _block(a: F64) -> bytes:
    """A float64 block as a record's bytes: a read-only view of its little-endian data
    (encoded exactly as its ``tobytes()``), no copy."""
    if not a.size:  # (a memoryview of no items cannot be cast)
        return b""
    data = np.ascontiguousarray(a, dtype="<f8").data.cast("B")
    return data.toreadonly()  # type: ignore[return-value]  # a bytes-like view, not bytes
