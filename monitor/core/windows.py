"""Event-time panes and the three kinds of window over them, for one partition and model.

A pane is ``[p * pane, (p + 1) * pane)`` in event time. Events add to their open pane;
when the watermark passes a pane's end the pane closes and its sums move into:

- ``all``: the cumulative sums;
- sliding windows of N panes: a running sum of the last N closed panes, kept exact by
  re-summing the ring every N panes so that add-then-subtract rounding cannot drift. Each
  window also counts, per cell, the panes in it with a non-zero term: a cell whose last
  term leaves is set to exactly 0 (on a sparse stream most cells empty out this way), and
  only a cell that keeps terms but lost most of its magnitude is summed again. The ring
  keeps a closed pane as its cells that hold a value (:class:`Cells`) when that takes
  less memory than the array, which it does for the panes of a sparse stream and of
  slices few events reach: a window of a day over 10 s panes holds 8,640 of them;
- decay windows with half-life h: sums of ``x * exp(-(T - t) * ln2 / h)`` where t is each
  event's own time and T the end of the last closed pane.

An event whose pane has closed (late) is merged into every window that still holds its
pane (:meth:`WindowSet.add_late`). All arrays are ``(slices, width)`` float64; they grow
in rows when the model's slice registry grows (:meth:`WindowSet.grow`).

An open pane that only blocks of rows (:class:`RowMerges`, what stage 1 hands over) have
added to is held as those blocks, queued, not as arrays: they are added, in order, into
two arrays the set keeps zero (its scratch) when the pane closes, and the scratch is
cleared again after it. A poll of a sparse stream spans dozens of panes of a few events
each; so they write into and clear no arrays of their own, which would be out of the
processor's cache by the time they close, and the scratch stays in it. Anything else
done to the pane (any other addition, a copy, a checkpoint reading
:attr:`WindowSet.open`) first makes its arrays from its blocks, as they would have been
(:meth:`WindowSet.settle`).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Generic, NamedTuple, TypeVar, cast

import numpy as np
import numpy.typing as npt

from monitor import native
from monitor.config import WindowSpec
from monitor.core.layout import scatter_add, scatter_pane

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

__all__ = [
    "Cells",
    "RingPane",
    "RowMerges",
    "WindowSet",
    "ring_array",
    "ring_cells",
    "ring_listed",
    "ring_pane",
    "ring_sparse",
]

# After ``total -= leaving``, a result below |leaving| / _CANCEL has lost more than
# log2(_CANCEL) bits to rounding: the window is summed again from its panes.
_CANCEL = 4096.0

#: The decay windows' factor per pane, ``exp(-rate * pane)`` per rate, by the pane width and
#: the rates (a few distinct keys in a process): made once, not at every close.
_FACTORS: dict[tuple[float, ...], list[float]] = {}


def _sparse(arr: F64) -> tuple[tuple[int, ...], I64, F64]:
    """An array as (shape, flat indices, values) of its non-zero entries (NaN included)."""
    flat = arr.reshape(-1)
    index = np.flatnonzero(flat)
    return arr.shape, index, flat[index]


def _dense(packed: F64 | tuple[tuple[int, ...], I64, F64]) -> F64:
    """The array :func:`_sparse` packed (an array passes through: older pickles)."""
    if isinstance(packed, np.ndarray):
        return packed
    shape, index, values = packed
    out = np.zeros(shape)
    out.reshape(-1)[index] = values
    return out


class Cells(NamedTuple):
    """A closed pane's sums in the ring as the cells that hold a value: flat indices into
    its ``(rows, width)`` array (ascending; int32 below 2**31 cells) and their values.
    Rows added at the end (:meth:`WindowSet.grow`) leave the indices as they are."""

    at: npt.NDArray[np.int32] | I64
    values: F64


#: A closed pane in the ring: its array, or its :class:`Cells` when they take less memory.
RingPane = F64 | Cells


def _cells_smaller(count: int, size: int) -> bool:
    """Whether ``count`` cells (12 bytes each: an index and a value) of an array of
    ``size`` take less memory than the array (8 bytes a cell): the ring's one rule."""
    return 3 * count < 2 * size


def _index_kind(size: int) -> type[np.int32] | type[np.int64]:
    """The integer type of :attr:`Cells.at` for an array of ``size`` cells."""
    return np.int32 if size < 2**31 else np.int64


def ring_cells(acc: F64) -> Cells | None:
    """``acc``'s cells whose bits are not all zero (a -0.0 too: the pane closes with the
    same float operations as its array), None when 12 bytes a cell (index and value)
    take no less memory than the array's 8 a cell. Counted and written by the compiled
    ``cells_count`` and ``cells_fill`` when they run (numpy's ``flatnonzero`` takes
    several times as long), else by numpy: the same cells."""
    flat = acc.reshape(-1)
    size = len(flat)
    kind = _index_kind(size)
    compiled = native.kernels()
    if compiled is not None and flat.flags.c_contiguous:
        count = compiled.cells_count(flat)
        if not _cells_smaller(count, size):
            return None
        index = np.empty(count + 1, dtype=kind)  # (one more: see cells_fill)
        values = np.empty(count + 1)
        compiled.cells_fill(flat, index, values)
        return Cells(index[:count], values[:count])
    at = np.flatnonzero(flat.view(np.int64))
    if not _cells_smaller(len(at), size):
        return None
    return Cells(cast(npt.NDArray[np.int32] | I64, at.astype(kind)), flat[at])


def ring_pane(acc: F64) -> RingPane:
    """What the ring keeps of closed sums ``acc``: its cells, or itself."""
    cells = ring_cells(acc)
    return acc if cells is None else cells


def ring_listed(at: I64, values: F64, shape: tuple[int, int]) -> RingPane:
    """:func:`ring_pane` of the array of ``shape`` whose cells at flat indices ``at``
    (ascending and distinct, in range: as a checkpoint lists them) hold ``values`` and
    the others +0.0, made without that array when the ring keeps its cells (a restore of
    a day-long window would otherwise make thousands of arrays only to drop them)."""
    keep = values.view(np.int64) != 0  # (the cells ring_cells keeps: bits not all zero)
    if not keep.all():
        at, values = at[keep], values[keep]
    size = shape[0] * shape[1]
    if not _cells_smaller(len(at), size):
        out = np.zeros(size)
        out[at] = values
        return out.reshape(shape)
    return Cells(cast(npt.NDArray[np.int32] | I64, at.astype(_index_kind(size))), values)


def _copied(pane: RingPane) -> RingPane:
    """A copy of a ring pane equal to a pickled and restored one: every zero +0.0 (so a
    -0.0 cell is left out), every other value's bits kept."""
    if isinstance(pane, np.ndarray):
        return ring_pane(pane + 0.0)
    keep = pane.values != 0
    return Cells(pane.at[keep], pane.values[keep])


def ring_array(pane: RingPane, rows: int, width: int) -> F64:
    """A ring pane as its ``(rows, width)`` array (the array itself when it is one)."""
    if isinstance(pane, np.ndarray):
        return pane
    out = np.zeros((rows, width))
    out.reshape(-1)[pane.at] = pane.values
    return out


def ring_sparse(pane: RingPane, rows: int, width: int) -> tuple[I64, F64]:
    """A ring pane's non-zero entries (NaN included; not -0.0) as flat indices and values:
    what :func:`_sparse` keeps of its array."""
    if isinstance(pane, np.ndarray):
        _, index, values = _sparse(pane)
        return index, values
    keep = pane.values != 0
    return pane.at[keep].astype(np.int64), pane.values[keep]


def _add_ring(total: F64, pane: RingPane) -> None:
    """``total += pane``'s array, the same floats: a cell it does not list would add 0.0,
    which leaves a sum that starts at +0.0 as it is."""
    if isinstance(pane, np.ndarray):
        total += pane
        return
    compiled = native.kernels()
    if compiled is not None:  # (numpy's indexed addition costs ten times as much)
        compiled.cells_add(total.reshape(-1), pane.at, pane.values)
        return
    total.reshape(-1)[pane.at] += pane.values


def _count_ring(count: F64, pane: RingPane) -> None:
    """``count += pane != 0`` of the pane's array."""
    if isinstance(pane, np.ndarray):
        count += pane != 0
        return
    count.reshape(-1)[pane.at] += pane.values != 0


#: The attributes not pickled (made again: :meth:`WindowSet.__getstate__` makes the queued
#: panes arrays first).
_UNSTORED = ("queued", "_scratch")

#: A queued addition of row blocks (see :class:`RowMerges`): (pane sums, decay sums, block,
#: decay blocks, rows, width, mode, columns).
_Op = tuple[F64, list[F64], F64, list[F64], Any, int, int, Any]

#: The type of the ring's :attr:`Cells.at` that the compiled roll makes (it takes sets of
#: fewer than 2**31 cells: :func:`_index_kind`).
_INDEX = np.dtype(np.int32)

#: The most blocks a pane holds queued: with one more it is made arrays (a long pane of a
#: live stream gets a block every poll; its arrays then take them, as before queueing).
QUEUED_MAX = 32


def pad_rows(arr: F64, rows: int) -> F64:
    """``arr`` with zero rows added up to ``rows`` (itself when it has as many)."""
    if arr.shape[0] >= rows:
        return arr
    out = np.zeros((rows, arr.shape[1]))
    out[: arr.shape[0]] = arr
    return out


_T = TypeVar("_T")


class _Settled(Generic[_T]):
    """An attribute of the open panes' arrays, kept in the instance's ``__dict__`` under
    its own name (so stored and copied as any attribute), read after the panes held as
    queued blocks are made arrays (:meth:`WindowSet.settle`); assigned, it replaces the
    open panes (the queued ones dropped)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: WindowSet, owner: type | None = None) -> _T:
        attrs = obj.__dict__
        if attrs.get("queued"):
            obj.settle()
        value: _T = attrs[self.name]
        return value

    def __set__(self, obj: WindowSet, value: _T) -> None:
        attrs = obj.__dict__
        queued = attrs.get("queued")
        if queued:
            queued.clear()
        attrs[self.name] = value


class WindowSet:
    """Open panes and closed-window sums of one model in one partition."""

    open: _Settled[dict[int, F64]] = _Settled()
    open_decay: _Settled[dict[int, list[F64]]] = _Settled()

    def __init__(self, specs: tuple[WindowSpec, ...], pane: float, width: int, rows: int) -> None:
        self.pane = pane
        self.width = width
        self.rows = rows
        self.sliding_panes = [round(s.seconds / pane) for s in specs if s.kind == "sliding"]
        self.decay_rates = [math.log(2) / s.seconds for s in specs if s.kind == "decay"]
        self.ring_len = max(self.sliding_panes, default=0)
        #: The open panes' plain sums and sums per decay window (weighted to the pane's
        #: end), ``(slices, width)`` each, and the panes held as the blocks queued for them
        #: (:class:`RowMerges` ops into :attr:`_scratch`), which reading either of the first
        #: two makes arrays first (:meth:`settle`; :meth:`arrays` does not). A pane is held
        #: as arrays or as blocks, never both.
        self.open = {}
        self.open_decay = {}
        self.queued: dict[int, list[_Op]] = {}
        self.cum = np.zeros((rows, width))
        #: Joined events per slice in ``cum`` but in no decay window: late events of states
        #: written before late events were merged into every window.
        self.late_n = np.zeros(rows)
        self.ring: dict[int, RingPane] = {}
        self.sliding = [np.zeros((rows, width)) for _ in self.sliding_panes]
        self.decay = [np.zeros((rows, width)) for _ in self.decay_rates]
        self.closes = 0
        #: Per sliding window, per cell, how many of its panes hold a non-zero term (exact
        #: small integers). Derived from the ring: None until the next close rebuilds it.
        self._nz: list[F64] | None = None
        #: Arrays of the panes closed since :meth:`recycle` that no window reads any more
        #: (an open pane's decay sums, a pane that left every sliding window), and those
        #: the last closes let go of, to be cleared for the panes opened next (see
        #: :meth:`zeros`). Neither is pickled.
        self.spent: list[F64] = []
        self.spare: list[F64] = []
        #: The plain and decay arrays a queued pane's blocks are added into when it closes,
        #: zero between closes (made when first needed; not pickled).
        self._scratch: tuple[F64, list[F64]] | None = None

    def arrays(self) -> tuple[dict[int, F64], dict[int, list[F64]]]:
        """:attr:`open` and :attr:`open_decay` as they are: the panes held as arrays only
        (none made arrays of its queued blocks)."""
        attrs = self.__dict__
        return attrs["open"], attrs["open_decay"]

    def settle(self, pane: int | None = None) -> None:
        """Make the arrays of ``pane`` (None: of every pane held as queued blocks) from its
        blocks, added in order into zeros, as they would have been added on arrival."""
        panes = list(self.queued) if pane is None else [pane]
        ops: list[_Op] = []
        for p in panes:
            blocks = self.queued.pop(p, None)
            if blocks is None:
                continue
            held, held_decay = self.arrays()
            acc = held[p] = self.zeros()
            decayed = held_decay[p] = [self.zeros() for _ in self.decay_rates]
            ops += [(acc, decayed, *op[2:]) for op in blocks]
        _apply(ops)

    def queue(self, pane: int, plain: F64, decay: list[F64], rows: int | I64,
              cols: I64 | None) -> None:  # fmt: skip
        """Queue blocks of ``pane``, which is not held as arrays: ``rows``, the first of
        consecutive rows (an int) or distinct rows, and ``cols`` as a :class:`RowMerges`
        op takes them."""
        blocks = self.queued.get(pane)
        if blocks is None:
            acc, decayed = self.scratch()
            self.queued[pane] = [(acc, decayed, plain, decay, rows, self.width, 0, cols)]
        else:
            first = blocks[0]
            blocks.append((first[0], first[1], plain, decay, rows, self.width, 1, cols))
            if len(blocks) > QUEUED_MAX:
                self.settle(pane)

    def scratch(self) -> tuple[F64, list[F64]]:
        """The arrays a queued pane's blocks are added into at its close (zero)."""
        arrays = self._scratch
        if arrays is None:
            shape = (self.rows, self.width)
            arrays = self._scratch = (np.zeros(shape), [np.zeros(shape) for _ in self.decay_rates])
        return arrays

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the per-pane arrays (open panes, the sliding ring) sparse: a ring
        of hundreds of panes is mostly zeros, and checkpoints carry it."""
        self.settle()
        state = {k: v for k, v in self.__dict__.items() if k not in _UNSTORED}
        state["open"] = {p: _sparse(a) for p, a in self.open.items()}
        state["open_decay"] = {p: [_sparse(a) for a in arrs] for p, arrs in self.open_decay.items()}
        shape = (self.rows, self.width)
        state["ring"] = {p: (shape, *ring_sparse(a, *shape)) for p, a in self.ring.items()}
        state["_nz"] = None
        del state["spent"], state["spare"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ordered: dict[str, Any] = {}  # (the attributes in their order, queued after the arrays)
        for name, value in state.items():
            if name == "open":
                ordered["open"] = {p: _dense(a) for p, a in value.items()}
            elif name == "open_decay":
                ordered["open_decay"] = {p: [_dense(a) for a in arrs] for p, arrs in value.items()}
                ordered["queued"] = {}
            else:
                ordered[name] = value
        state = ordered
        state["ring"] = {p: ring_pane(_dense(a)) for p, a in state["ring"].items()}
        state["_nz"] = None
        state["spent"] = []
        state["spare"] = []
        state["_scratch"] = None
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict[int, Any]) -> WindowSet:
        """A copy equal to a pickled and restored one (a report's flushed copy of the
        pipeline), made without packing the per-pane arrays sparse: each is copied as
        ``a + 0.0``, which is what :func:`_sparse` then :func:`_dense` give (a zero of
        either sign becomes +0.0, every other value keeps its bits) in one pass."""
        out = WindowSet.__new__(WindowSet)
        memo[id(self)] = out
        self.settle()
        state = self.__dict__.copy()
        packed = {"open", "open_decay", "ring", "_nz", "spent", "spare", *_UNSTORED}
        copied = copy.deepcopy({k: v for k, v in state.items() if k not in packed}, memo)
        copied["open"] = {p: a + 0.0 for p, a in self.open.items()}
        copied["open_decay"] = {p: [a + 0.0 for a in arrs] for p, arrs in self.open_decay.items()}
        copied["queued"] = {}
        copied["ring"] = {p: _copied(a) for p, a in self.ring.items()}
        copied["_nz"] = None
        copied["spent"] = []
        copied["spare"] = []
        copied["_scratch"] = None
        out.__dict__.update({k: copied[k] for k in state})  # the attributes' order kept
        return out

    def grow(self, rows: int) -> None:
        """Make room for ``rows`` slices in every array."""
        if rows <= self.rows:
            return
        self.settle()
        self.rows = rows
        self.open = {p: pad_rows(a, rows) for p, a in self.open.items()}
        self.open_decay = {
            p: [pad_rows(a, rows) for a in arrs] for p, arrs in self.open_decay.items()
        }
        self.cum = pad_rows(self.cum, rows)
        self.late_n = np.concatenate([self.late_n, np.zeros(rows - len(self.late_n))])
        self.ring = {p: pad_rows(a, rows) if isinstance(a, np.ndarray) else a
                     for p, a in self.ring.items()}  # fmt: skip
        self.sliding = [pad_rows(a, rows) for a in self.sliding]
        self.decay = [pad_rows(a, rows) for a in self.decay]
        self._nz = None
        self.spent = []  # (of the old shape)
        self.spare = []
        self._scratch = None

    def remap(self, mapping: I64, rows: int) -> None:
        """Renumber the slices: old row ``i`` adds into row ``mapping[i]`` of ``rows`` rows.

        Used when a partition's state moves to an engine whose slice registry numbered the
        same slices differently (several old rows may fold into one)."""

        def move(arr: F64) -> F64:
            out = np.zeros((rows, arr.shape[1]))
            np.add.at(out, mapping[: arr.shape[0]], arr)
            return out

        self.settle()
        self.open = {p: move(a) for p, a in self.open.items()}
        self.open_decay = {p: [move(a) for a in arrs] for p, arrs in self.open_decay.items()}
        self.cum = move(self.cum)
        late = np.zeros(rows)
        np.add.at(late, mapping[: len(self.late_n)], self.late_n)
        self.late_n = late
        self.ring = {p: ring_pane(move(ring_array(a, self.rows, self.width)))
                     for p, a in self.ring.items()}  # fmt: skip
        self.sliding = [move(a) for a in self.sliding]
        self.decay = [move(a) for a in self.decay]
        self.rows = rows
        self._nz = None
        self.spent = []  # (of the old shape)
        self.spare = []
        self._scratch = None

    def add(self, pane: int, slices: I64, cols: I64, vals: F64, ts: F64) -> None:
        """Add events of one open pane (``ts`` are their event times)."""
        acc = self.open.get(pane)
        if acc is None:
            acc = self.open[pane] = self.zeros()
            self.open_decay[pane] = [self.zeros() for _ in self.decay_rates]
        scatter_pane(acc, self.open_decay[pane], self.decay_rates, (pane + 1) * self.pane,
                     slices, cols, vals, ts)  # fmt: skip

    def add_late(
        self,
        pane: int,
        upto: int,
        slices: I64,
        cols: I64,
        vals: F64,
        ts: F64,
    ) -> None:
        """Add events of ``pane``, which has closed already (every pane below ``upto`` has).

        They are merged where the pane still counts, so that no window depends on when a
        partition's events were read: ``all`` always; the sliding windows whose span still
        holds the pane (and the ring, for when it leaves them); the decay windows with the
        weight the events would have had, ``exp(-(T - t) * ln2 / h)`` with ``T`` the end of
        the last closed pane. Signals emitted before stay as they were.
        """
        acc = np.zeros((self.rows, self.width))
        scatter_add(acc, slices, cols, vals)
        self._add_closed(pane, upto, acc)
        if self.decay_rates:
            age = upto * self.pane - ts
            for rate, target in zip(self.decay_rates, self.decay, strict=True):
                scatter_add(target, slices, cols, vals, np.exp(-rate * age))

    def add_sums(self, pane: int, upto: int | None, plain: F64, decay: list[F64]) -> None:
        """Add a pane's sums made elsewhere (stage 1): ``plain`` and, per decay window,
        the sums weighted to the pane's own end. ``upto`` is None while the pane is open,
        else the first pane not closed (as for :meth:`add_late`)."""
        if upto is None:
            acc = self.open.get(pane)
            if acc is None:
                self.open[pane] = plain.copy()
                self.open_decay[pane] = [d.copy() for d in decay]
                return
            acc += plain
            for target, add in zip(self.open_decay[pane], decay, strict=True):
                target += add
            return
        self._add_closed(pane, upto, plain.copy())
        for rate, target, add in zip(self.decay_rates, self.decay, decay, strict=True):
            target += add * math.exp(-rate * (upto - pane - 1) * self.pane)

    def add_rows(self, pane: int, rows: I64 | slice, plain: F64, decay: list[F64],
                 sign: float = 1.0) -> None:  # fmt: skip
        """Add (``sign`` 1) or take back (-1) sums of the distinct slice ``rows`` (an array,
        or a slice of consecutive rows) of the open ``pane`` made elsewhere (as
        :meth:`add_sums`, its blocks of those rows only). The compiled kernel
        (``monitor._native.rows_add``) writes or adds each block row into its row in one
        pass, the numpy code gathers and scatters them, with the same results."""
        acc = self.open.get(pane)
        compiled = native.kernels()
        if compiled is not None:
            first = rows.start if isinstance(rows, slice) else rows
            if acc is None:
                opened = self._open_for_rows(pane, plain, decay, sign, rows)
                if opened is None:
                    return
                acc, decayed = opened
                mode = 0 if sign == 1.0 else -1
            else:
                decayed = self.open_decay[pane]
                mode = 1 if sign == 1.0 else -1
            compiled.rows_add([acc, *decayed], [plain, *decay], first, self.width, mode)
            return
        at: I64 | slice = rows
        if not isinstance(rows, slice) and len(rows):
            first = int(rows[0])
            if rows.tolist() == list(range(first, first + len(rows))):
                at = slice(first, first + len(rows))  # a view: no gather and scatter
        if acc is None:
            opened = self._open_for_rows(pane, plain, decay, sign, at)
            if opened is None:
                return
            acc, decayed = opened
            if sign == 1.0:
                acc[at] = plain
                for target, add in zip(decayed, decay, strict=True):
                    target[at] = add
                return
        if sign == 1.0:
            acc[at] += plain
            for target, add in zip(self.open_decay[pane], decay, strict=True):
                target[at] += add
        else:
            acc[at] -= plain
            for target, add in zip(self.open_decay[pane], decay, strict=True):
                target[at] -= add

    def _open_for_rows(
        self, pane: int, plain: F64, decay: list[F64], sign: float, at: I64 | slice
    ) -> tuple[F64, list[F64]] | None:
        """Open ``pane`` for blocks of the rows ``at`` added (``sign`` 1) or taken back:
        blocks of every row added become the pane (copies of them, not zeros written
        over: None); else its sums start at zero (returned, plain and decay)."""
        if sign == 1.0 and isinstance(at, slice) and at == slice(0, self.rows):
            self.open[pane] = plain.copy()
            self.open_decay[pane] = [d.copy() for d in decay]
            return None
        acc = self.open[pane] = self.zeros()
        decayed = self.open_decay[pane] = [self.zeros() for _ in self.decay_rates]
        return acc, decayed

    def _add_closed(self, pane: int, upto: int, acc: F64) -> None:
        """The plain part of a late addition: ``all``, the ring and the sliding windows."""
        self.cum += acc
        if self.ring_len and pane >= upto - self.ring_len:
            kept = self.ring.get(pane)
            held = None if kept is None else ring_array(kept, self.rows, self.width)
            now = acc.copy() if held is None else held + acc
            self.ring[pane] = ring_pane(now)
            gained = (now != 0) * 1.0 if held is None else (now != 0) * 1.0 - (held != 0)
            for i, (total, n) in enumerate(zip(self.sliding, self.sliding_panes, strict=True)):
                if pane >= upto - n:
                    total += acc
                    if self._nz is not None:
                        self._nz[i] += gained

    def close(self, pane: int) -> bool:
        """Close ``pane`` (the next pane in order); return whether any window changed contents."""
        blocks = self.queued.pop(pane, None)
        compiled = native.kernels()
        if blocks is not None:
            # its blocks added into the scratch arrays, the pane closed from them (the
            # ring keeps a copy), and the scratch cleared again (arrays in the processor's
            # cache: one pass over them costs less than clearing each block's cells)
            scratch, scratch_decay = blocks[0][0], blocks[0][1]
            _apply(blocks)
            if compiled is not None:
                changed = self._close_compiled(compiled, pane, scratch, scratch_decay, True)
            else:
                changed = self._close_numpy(pane, scratch, scratch_decay, True)
            _clear([scratch, *scratch_decay])
            return changed
        held, held_decay = self.arrays()
        acc = held.pop(pane, None)
        decayed = held_decay.pop(pane, None)
        if decayed is not None:  # (added into the decay windows below: read no more)
            self.spent += decayed
        if compiled is not None:
            return self._close_compiled(compiled, pane, acc, decayed)
        return self._close_numpy(pane, acc, decayed)

    def roll(self, first: int, last: int, sums: F64, at: int, sources: list[int],
             panes: list[int], seen: list[float], seen_col: int) -> tuple[int, int]:  # fmt: skip
        """Close the panes ``first``, ``first + 1``, ... below ``last`` as :meth:`close` of
        each in turn does, and copy after each close the first row (the whole model's) of
        each window's sums into the next rows of ``sums`` from row ``at`` (``sources``, per
        row: 0 ``all``, ``1 + i`` sliding window i, ``1 + len(sliding) + j`` decay window j),
        the pane into ``panes`` and ``cum[0, seen_col]`` into ``seen``: in one call of the
        compiled kernel (``monitor._native.window_roll``) for a run of panes, where a close
        is a dozen calls. Returns the panes closed and those of them copied: it stops
        before a pane at which the windows are summed again, or once the ring is empty (the
        caller closes it with :meth:`close`), and after a pane whose close summed a window
        again, which it does not copy. Closes nothing (0, 0) without the compiled kernels
        or a sliding window, or before the first close after a restore or growth (see
        :meth:`_count_terms`)."""
        compiled = native.kernels()
        nz = self._nz
        if (compiled is None or nz is None or not self.ring_len
                or _index_kind(self.rows * self.width) is not np.int32):  # fmt: skip
            return 0, 0
        closed, taken, lost = compiled.window_roll(
            self.ring, self.queued, *self.arrays(), self.cum, self.decay, self._factors(),
            self.sliding, nz, self.sliding_panes, self.ring_len, self.spare, self.spent,
            np.empty, _INDEX, Cells, first, last, sums, at, sources, panes, seen, seen_col,
        )  # fmt: skip
        self.closes += taken
        if closed > taken:  # its close left windows to sum again: as _close_compiled does
            self._resum_lost(first + taken, lost)
            self._closed(first + taken)
        return closed, taken

    def _close_numpy(self, pane: int, acc: F64 | None, decayed: list[F64] | None,
                     scratch: bool = False) -> bool:  # fmt: skip
        """:meth:`close` of ``pane``, its sums ``acc`` and ``decayed`` taken out of the
        open panes (``scratch``: the scratch arrays, which the ring keeps a copy of), by
        numpy."""
        changed = acc is not None
        if acc is not None:
            self.cum += acc
        for target, rate in zip(self.decay, self.decay_rates, strict=True):
            target *= math.exp(-rate * self.pane)
        if decayed is not None:
            for target, add in zip(self.decay, decayed, strict=True):
                target += add
        if self.ring_len:
            nz = self._nz if self._nz is not None else self._count_terms(pane)
            arrived = acc != 0 if acc is not None else None
            if acc is not None:
                self._keep(pane, acc, scratch)
            for i, (total, n) in enumerate(zip(self.sliding, self.sliding_panes, strict=True)):
                if acc is not None and arrived is not None:
                    total += acc
                    nz[i] += arrived
                left = self.ring.get(pane - n)
                leaving = None if left is None else ring_array(left, self.rows, self.width)
                if leaving is not None:
                    total -= leaving
                    nz[i] -= leaving != 0
                    changed = True
                    empty = nz[i] == 0
                    np.copyto(total, 0.0, where=empty)  # its last term left: exactly nothing
                    bound = np.abs(total)
                    bound *= _CANCEL
                    np.copyto(bound, np.inf, where=empty)  # nothing left to lose there
                    if (np.abs(leaving) > bound).any():
                        # A large term left a small remainder: rounding may dominate it.
                        self._resum_one(i, pane, n)
            self._closed(pane)
        return changed

    def _close_compiled(self, compiled: Any, pane: int, acc: F64 | None,
                        decayed: list[F64] | None, scratch: bool = False) -> bool:  # fmt: skip
        """:meth:`close` of ``pane`` (as :meth:`_close_numpy` takes it) by the compiled
        kernel (``monitor._native.window_close``): one pass per window over the cells, each
        cell through the numpy code's operations in its order."""
        factors = self._factors()
        ring_len = self.ring_len
        if not ring_len:
            compiled.window_close(self.cum, acc, self.decay, factors, decayed, [], [], [])
            return acc is not None
        nz = self._nz if self._nz is not None else self._count_terms(pane)
        ring = self.ring
        if acc is not None:
            self._keep(pane, acc, scratch)
        spans = self.sliding_panes
        if len(spans) == 1:  # (one sliding window: no list made per window)
            leaving: list[Any] = [ring.get(pane - spans[0])]
        else:
            leaving = [ring.get(pane - n) for n in spans]
        decay, sliding = self.decay, self.sliding
        if (len(factors) == 1 and len(sliding) == 1 and acc is not None and decayed is not None
                and leaving[0] is not None):  # fmt: skip
            # the usual close of one decay and one sliding window: one pass over the cells
            # (then one over the leaving pane's, when the ring keeps it as cells)
            out = leaving[0]
            if type(out) is Cells:
                resum = compiled.window_close1_cells(self.cum, acc, decay[0], factors[0],
                                                     decayed[0], sliding[0], nz[0], out.at,
                                                     out.values)  # fmt: skip
            else:
                resum = compiled.window_close1(self.cum, acc, decay[0], factors[0], decayed[0],
                                               sliding[0], nz[0], out)  # fmt: skip
        else:
            arrays = [None if out is None else ring_array(out, self.rows, self.width)
                      for out in leaving]  # fmt: skip
            resum = compiled.window_close(self.cum, acc, decay, factors, decayed, sliding, nz,
                                          arrays)  # fmt: skip
        if resum:
            self._resum_lost(pane, resum)
        self._closed(pane)
        # (leaving[0] first: any() of a generator costs a frame per close)
        return acc is not None or leaving[0] is not None or any(
            out is not None for out in leaving
        )

    def _factors(self) -> list[float]:
        """The decay windows' factors per pane (see :data:`_FACTORS`)."""
        rates = self.decay_rates
        key = (self.pane, *rates)
        factors = _FACTORS.get(key)
        if factors is None:  # the same floats for every set of this pane and these windows
            factors = _FACTORS[key] = [math.exp(-rate * self.pane) for rate in rates]
        return factors

    def _resum_lost(self, pane: int, lost: int) -> None:
        """Sum again, after the close of ``pane``, the sliding windows of ``lost``'s bits
        (bit i: window i), where a large term left a small remainder."""
        for i, n in enumerate(self.sliding_panes):
            if lost >> i & 1:
                self._resum_one(i, pane, n)

    def _keep(self, pane: int, acc: F64, scratch: bool) -> None:
        """Keep closed ``pane``'s sums ``acc`` in the ring: as its cells (see
        :func:`ring_cells`), else as an array (``scratch``: ``acc`` is the scratch, copied
        into a spare array, see :meth:`recycle`, or a new one; else ``acc`` itself). An
        array the ring does not take is let go of for the panes opened next."""
        cells = ring_cells(acc)
        if cells is not None:
            self.ring[pane] = cells
            if not scratch:
                self.spent.append(acc)
            return
        if not scratch:
            self.ring[pane] = acc
            return
        spare = self.spare
        if not spare:
            self.ring[pane] = acc.copy()
            return
        arr = spare.pop()
        np.copyto(arr, acc)
        self.ring[pane] = arr

    def _closed(self, pane: int) -> None:
        """What follows a close of ``pane`` with sliding windows: the ring lets go of the
        pane no window holds any more, and every ``ring_len`` panes the windows are summed
        again from the ring."""
        gone = self.ring.pop(pane - self.ring_len, None)
        if isinstance(gone, np.ndarray):
            self.spent.append(gone)
        self.closes += 1
        if pane % self.ring_len == 0:
            # At panes fixed in event time, not counted from when this set was made:
            # two sets that hold the same panes (a replica's, a restarted model's) agree.
            self._resum(pane)

    def skip_empty(self, panes: int) -> None:
        """Close ``panes`` empty panes at once, once the ring holds nothing: only decay moves."""
        for target, rate in zip(self.decay, self.decay_rates, strict=True):
            target *= math.exp(-rate * self.pane * panes)

    def recycle(self) -> None:
        """Keep the arrays of the panes closed since the last call (:attr:`spent`) for the
        panes opened next, in place of those kept before: what is kept is at most what the
        last closes let go of. They are cleared when taken, only those taken."""
        if self.spent:
            self.spare = self.spent
            self.spent = []

    def zeros(self) -> F64:
        """A ``(rows, width)`` array of zeros for a pane opened: a spare one (see
        :meth:`recycle`) cleared, else a new one."""
        spare = self.spare
        if not spare:
            return np.zeros((self.rows, self.width))
        arr = spare.pop()
        _clear([arr])
        return arr

    def ring_empty(self) -> bool:
        """Whether no closed pane is inside any sliding window."""
        return not self.ring

    def _count_terms(self, pane: int) -> list[F64]:
        """Rebuild :attr:`_nz` from the ring, for the windows as they are before ``pane``
        closes (each holds the panes after ``pane - 1 - n``)."""
        self._nz = []
        for n in self.sliding_panes:
            count = np.zeros((self.rows, self.width))
            for p, arr in self.ring.items():
                if p > pane - 1 - n:
                    _count_ring(count, arr)
            self._nz.append(count)
        return self._nz

    def _resum_one(self, i: int, last: int, n: int) -> None:
        total = self.sliding[i]
        total[...] = 0.0
        for p, arr in self.ring.items():
            if p > last - n:
                _add_ring(total, arr)

    def _resum(self, last: int) -> None:
        for i, n in enumerate(self.sliding_panes):
            total = np.zeros((self.rows, self.width))
            for p, arr in self.ring.items():
                if p > last - n:
                    _add_ring(total, arr)
            self.sliding[i] = total

    def lowest_open(self) -> int | None:
        """The lowest open pane (None: none is open)."""
        held, queued = self.arrays()[0], self.queued
        if not queued:
            return min(held) if held else None
        low = min(queued)
        return min(low, min(held)) if held else low

    def open_total(self) -> F64:
        """Sum of the open panes (for the cumulative picture between closes)."""
        total = np.zeros((self.rows, self.width))
        for acc in self.open.values():
            total += acc
        return total


def _clear(arrays: list[F64]) -> None:
    """Set every item of each of ``arrays`` to 0.0: one compiled call for them all
    (``monitor._native.clear_arrays``), else numpy's ``fill``, with the same zeros."""
    compiled = native.kernels()
    if compiled is not None:
        compiled.clear_arrays(arrays)
        return
    for arr in arrays:
        arr.fill(0.0)


def _apply(ops: list[_Op]) -> None:
    """Add each op's blocks into its arrays, in order (see :class:`RowMerges`): one call of
    the compiled kernel (``monitor._native.rows_add_many``), else numpy's gathers and
    scatters, with the same results."""
    if not ops:
        return
    compiled = native.kernels()
    if compiled is not None:
        compiled.rows_add_many(ops)
        return
    for acc, decayed, plain, decay, first, _, mode, cols in ops:
        if acc.ndim == 1:  # RowMerges.add_to (and the targets after it, in order)
            acc += plain
            for target, add in zip(decayed, decay, strict=True):
                target += add
            continue
        at: Any = slice(first, first + len(plain)) if isinstance(first, int) else first
        if cols is not None:  # those cells of the rows (rows and columns distinct)
            at = (at, cols) if isinstance(at, slice) else np.ix_(at, cols)
        if mode == 0:
            acc[at] = plain
            for target, add in zip(decayed, decay, strict=True):
                target[at] = add
        else:
            acc[at] += plain
            for target, add in zip(decayed, decay, strict=True):
                target[at] += add


class RowMerges:
    """Row blocks of the open panes of many window sets, queued and then added in one pass
    (:meth:`run`): what :meth:`WindowSet.add_rows` (``sign`` 1) of each block, in the order
    queued, does, with one compiled call (``monitor._native.rows_add_many``) for all of
    them, not one call per block (a poll's deltas of a hundred models over four partitions
    hold hundreds of blocks). A block of a pane that a set does not hold as arrays is
    queued with the set's pane instead (:meth:`WindowSet.queue`), and added when the pane
    closes; a set's arrays must not be read or replaced (:meth:`WindowSet.grow`) while
    blocks of it wait here."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        #: (pane sums, decay sums, block, decay blocks, rows, width, mode, columns) per block
        self.ops: list[_Op] = []

    def add(self, w: WindowSet, pane: int, rows: I64 | slice, plain: F64,
            decay: list[F64], cols: I64 | None = None) -> None:  # fmt: skip
        """Add the blocks of the distinct slice ``rows`` (an array, or a slice of
        consecutive rows) of the open ``pane`` of ``w``, as :meth:`WindowSet.add_rows`
        takes them; with ``cols`` (distinct columns), blocks of those columns only (the
        other cells of the rows take nothing: adding a block's zeros would leave them as
        they are, as none holds -0.0)."""
        first = rows.start if isinstance(rows, slice) else rows
        held, held_decay = w.arrays()
        acc = held.get(pane)
        if acc is None:
            w.queue(pane, plain, decay, first, cols)
            return
        self.ops.append((acc, held_decay[pane], plain, decay, first, w.width, 1, cols))

    def add_to(self, target: F64, add: F64) -> None:
        """Queue ``target += add`` (one-dimensional float64 arrays of one length, ``add``
        C-contiguous), in order with the blocks."""
        self.ops.append((target, [], add, [], 0, len(target), 1, None))

    def add_each_to(self, target: F64, adds: list[F64]) -> None:
        """Queue :meth:`add_to` of each of ``adds`` (at least one) in turn, as one op."""
        self.ops.append((target, [target] * (len(adds) - 1), adds[0], adds[1:], 0, len(target),
                         1, None))  # fmt: skip

    def run(self) -> None:
        """Add the blocks queued, in order, and forget them."""
        ops = self.ops
        if ops:
            self.ops = []
            _apply(ops)
