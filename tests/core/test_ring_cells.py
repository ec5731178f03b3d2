"""The sliding windows' ring keeps a closed pane as its cells that hold a value when that
takes less memory than its array (a sparse stream's panes, slices few events reach):

- ``window_close1_cells`` (compiled) is ``window_close1`` with the leaving pane's array,
  bit for bit, -0.0 (also where no other term is counted), NaN, inf and large terms that
  leave small remainders included, with int32 and int64 indices; a bad index is refused;
- a window set whose ring keeps cells gives, close after close, the sums of one that keeps
  arrays, compiled and in numpy, through pickles, copies, growth, late additions and the
  periodic re-sums;
- a pane that holds a value in most cells stays an array (never more memory than before);
- a model with a segment and a day-long window keeps a ring a fraction of the arrays' size.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.config import MonitorConfig, WindowSpec
from monitor.core import windows as windows_module
from monitor.core.pipeline import Pipeline
from monitor.core.windows import Cells, WindowSet, ring_array, ring_cells, ring_pane
from monitor.events.message import Message
from monitor.state.format import FormatError, Sparse, _arr, _ring_unsparse, _unsparse
from tests.core.test_window_close_one import _arrays, _cells, _same

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf is NaN

needs_native = pytest.mark.skipif(not native.available(), reason="monitor._native is not built")


def _as_cells(leaving: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    index = np.flatnonzero(leaving.view(np.int64))
    return index.astype(dtype), leaving[index]


@needs_native
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("seed", range(80))
def test_compiled_close_with_leaving_cells_is_the_close_with_its_array(
    seed: int, dtype: type
) -> None:
    from monitor import _native  # type: ignore[attr-defined]

    arrays = _arrays(seed)
    factor = float(np.exp(-np.log(2) / 3.0))
    want = [a.copy() for a in arrays]
    want_lost = _native.window_close1(want[0], want[1], want[2], factor, *want[3:])
    got = [a.copy() for a in arrays[:6]]
    index, values = _as_cells(arrays[6], dtype)
    lost = _native.window_close1_cells(got[0], got[1], got[2], factor, got[3], got[4], got[5],
                                       index, values)  # fmt: skip
    assert lost == want_lost
    for i in (0, 2, 4, 5):  # cum, decay, sliding, nz
        assert _same(got[i], want[i])


@needs_native
def test_close_with_leaving_cells_refuses_a_bad_index() -> None:
    from monitor import _native  # type: ignore[attr-defined]

    arrays = [np.zeros(4) for _ in range(6)]
    for index in (np.array([4], dtype=np.int32), np.array([-1], dtype=np.int64)):
        with pytest.raises(IndexError):
            _native.window_close1_cells(*arrays[:3], 0.5, *arrays[3:], index, np.ones(1))
    with pytest.raises(ValueError):  # not 4- or 8-byte indices
        _native.window_close1_cells(*arrays[:3], 0.5, *arrays[3:], np.zeros(2, np.int16),
                                    np.ones(2))  # fmt: skip
    with pytest.raises(ValueError):  # as many values as indices
        _native.window_close1_cells(*arrays[:3], 0.5, *arrays[3:], np.zeros(2, np.int32),
                                    np.ones(3))  # fmt: skip


def test_ring_cells_are_kept_only_where_they_take_less_memory() -> None:
    sparse = np.zeros((4, 30))
    sparse[1, 3] = 2.0
    sparse[2, 7] = -0.0  # its bits are not zero: a cell the pane closes with
    cells = ring_cells(sparse)
    assert isinstance(cells, Cells)
    assert cells.at.dtype == np.int32
    assert cells.at.tolist() == [33, 67]
    assert np.array_equal(ring_array(cells, 4, 30), sparse)
    full = np.ones((4, 30))
    full[0, :20] = 0.0  # 100 of 120 cells hold a value
    assert ring_cells(full) is None


@needs_native
@pytest.mark.parametrize("seed", range(40))
def test_compiled_cells_are_numpys(seed: int) -> None:
    """``ring_cells`` and the indexed addition of the re-sums, compiled and in numpy."""
    from monitor import _native  # type: ignore[attr-defined]

    rng = np.random.default_rng(seed)
    rows, width = int(rng.integers(1, 6)), int(rng.integers(1, 40))
    acc = _cells(rng, rows * width, bool(rng.random() < 0.5), float(rng.random()) * 0.7)
    acc = acc.reshape(rows, width)
    native.use(False)
    try:
        want = ring_cells(acc)
    finally:
        native.use(True)
    got = ring_cells(acc)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert got.at.dtype == want.at.dtype == np.int32
    assert got.at.tobytes() == want.at.tobytes()
    assert got.values.tobytes() == want.values.tobytes()
    total = _cells(rng, rows * width, False)
    by_numpy = total.copy()
    by_numpy[want.at] += want.values
    _native.cells_add(total, got.at.astype(np.int64), got.values)
    assert _same(total, by_numpy)


@needs_native
def test_compiled_cells_refuse_what_does_not_fit() -> None:
    from monitor import _native  # type: ignore[attr-defined]

    acc = np.array([0.0, 1.0, -0.0, 0.0])
    assert _native.cells_count(acc) == 2
    index, values = np.empty(3, np.int32), np.empty(3)
    _native.cells_fill(acc, index, values)
    assert index[:2].tolist() == [1, 2]
    assert values[:2].tobytes() == np.array([1.0, -0.0]).tobytes()
    with pytest.raises(ValueError):  # no room for the one item more
        _native.cells_fill(acc, np.empty(2, np.int32), np.empty(2))
    with pytest.raises(ValueError):  # values and index of different lengths
        _native.cells_fill(acc, np.empty(3, np.int32), np.empty(4))
    total = np.zeros(4)
    with pytest.raises(IndexError):
        _native.cells_add(total, np.array([1, 4], np.int32), np.ones(2))
    assert not total.any()  # checked before anything is written


SPECS = (
    WindowSpec(name="all", kind="all", seconds=0.0),
    WindowSpec(name="6p", kind="sliding", seconds=60.0),
    WindowSpec(name="ewm", kind="decay", seconds=40.0),
)
SPECS_TWO = (*SPECS, WindowSpec(name="2p", kind="sliding", seconds=20.0))


def _sums(w: WindowSet) -> list[bytes]:
    ring = {p: ring_array(a, w.rows, w.width) for p, a in w.ring.items()}
    out = [w.cum.tobytes(), *(a.tobytes() for a in w.sliding), *(a.tobytes() for a in w.decay)]
    return out + [repr(sorted(ring)).encode()] + [ring[p].tobytes() for p in sorted(ring)]


def _run(seed: int, compiled: bool, specs: tuple[WindowSpec, ...]) -> list[Any]:
    """The sums of a window set after each close of a random sparse sequence (additions
    to open panes, of every row or some, and late ones, some taken back; pickles, copies,
    growth; closed arrays reused for the panes opened next, as the stage reuses them),
    and how many ring panes were kept as cells."""
    before = native.use(compiled)
    try:
        rng = np.random.default_rng(seed)
        rows, width = int(rng.integers(1, 4)), int(rng.integers(4, 12))
        odd = bool(rng.random() < 0.3)
        w = WindowSet(specs, 10.0, width, rows)
        states: list[Any] = []
        pane = int(rng.integers(0, 20))
        kept_cells = 0
        for step in range(int(rng.integers(20, 70))):
            density = 0.05 if step % 3 else 0.9  # mostly sparse panes, some nearly full
            for _ in range(int(rng.integers(0, 3))):
                # every row, or some (a pane opened by them starts from a spare array)
                some = rows > 1 and rng.random() < 0.5
                at = (np.sort(rng.choice(rows, int(rng.integers(1, rows)), replace=False))
                      if some else slice(0, rows))  # fmt: skip
                n = len(at) if isinstance(at, np.ndarray) else rows
                blocks = [_cells(rng, n * width, odd, density).reshape(n, width)
                          for _ in range(2)]  # fmt: skip
                w.add_rows(pane, at, blocks[0], blocks[1:])
                if rng.random() < 0.15:  # taken back: cells that cancel to 0
                    w.add_rows(pane, at, blocks[0], blocks[1:], -1.0)
            if rng.random() < 0.3:  # into a pane held as arrays (open, or ahead)
                plain = _cells(rng, rows * width, odd, 0.05).reshape(rows, width)
                decay = _cells(rng, rows * width, odd, 0.05).reshape(rows, width)
                w.add_sums(pane + int(rng.integers(0, 3)), None, plain, [decay])
            if rng.random() < 0.3 and pane > 3:
                late = pane - int(rng.integers(1, 5))
                plain = _cells(rng, rows * width, odd, 0.1).reshape(rows, width)
                decay = _cells(rng, rows * width, odd, 0.1).reshape(rows, width)
                w.add_sums(late, pane, plain, [decay])
            if rng.random() < 0.08:
                w = pickle.loads(pickle.dumps(w))
            if rng.random() < 0.08:
                w = copy.deepcopy(w)
            if rng.random() < 0.08:
                rows += 1
                w.grow(rows)
            states.append(w.close(pane))
            pane += 1
            if rng.random() < 0.7:  # as the stage does: closed arrays reused for new panes
                w.recycle()
            kept_cells += sum(type(a) is Cells for a in w.ring.values())
            states.append(_sums(w))
        return [kept_cells, states]
    finally:
        native.use(before)


@pytest.mark.parametrize("specs", [SPECS, SPECS_TWO], ids=["one-sliding", "two-sliding"])
@pytest.mark.parametrize("seed", range(25))
def test_a_ring_of_cells_closes_as_a_ring_of_arrays(
    seed: int, specs: tuple[WindowSpec, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    ways = [False, True] if native.available() else [False]
    runs = [_run(seed, compiled, specs) for compiled in ways]
    assert all(kept > 0 for kept, _ in runs)  # (the test's panes are mostly sparse)
    monkeypatch.setattr(windows_module, "ring_cells", lambda acc: None)
    arrays = [_run(seed, compiled, specs) for compiled in ways]
    assert all(kept == 0 for kept, _ in arrays)
    want = arrays[0][1]
    for _, states in runs + arrays[1:]:
        assert len(states) == len(want)
        for got, expected in zip(states, want, strict=True):
            if isinstance(expected, list):
                assert [_canon(b) for b in got] == [_canon(b) for b in expected]
            else:
                assert got == expected


def _canon(raw: bytes) -> bytes:
    """Bytes of float64 cells with every NaN the one NaN (numpy keeps no payloads)."""
    if len(raw) % 8:
        return raw
    a = np.frombuffer(raw, dtype=np.float64)
    return np.where(np.isnan(a), np.nan, a).tobytes()


def test_a_segmented_model_keeps_a_day_long_ring_small() -> None:
    """2 predictions a second over 50 values of a segment, a day-long window of 10 s
    panes: each closed pane holds a few dozen of its 52 rows' cells. Its ring keeps them
    as cells: a tenth of the arrays' size or less."""
    config = MonitorConfig.model_validate({
        "time": {"pane": "10s", "allowed_lateness": "10s"},
        "models": [{
            "name": "m", "task": "binary", "positive_class": 1,
            "windows": ["all", "1d", "ewm1h"], "segments": ["region"],
            "features": {"x": "numeric", "c": "categorical"}, "reference_warmup": 0,
        }],
    })  # fmt: skip
    pipeline = Pipeline(config)
    pipeline.track([("predictions", 0), ("labels", 0)])
    rng = np.random.default_rng(5)
    start, batch = 1_700_000_000.0, []
    for i in range(2 * 1800):  # half an hour
        ts = start + i / 2.0
        pid = f"p{i}"
        score = rng.random()
        body = (f'{{"prediction_id":"{pid}","model":"m","ts":{ts},"score":{score:.3f},'
                f'"prediction":{int(score > 0.5)},'
                f'"segment":{{"region":"r{rng.integers(50)}"}},'
                f'"features":{{"x":{rng.normal():.3f},"c":"v{rng.integers(4)}"}}}}')  # fmt: skip
        batch.append(Message("predictions", 0, i, pid.encode(), body.encode()))
        batch.append(Message("labels", 0, i, pid.encode(),
                             f'{{"prediction_id":"{pid}","label":{int(rng.random() < 0.5)},'
                             f'"ts":{ts + 1.0}}}'.encode()))  # fmt: skip
        if len(batch) >= 200:
            assert not pipeline.process(batch)  # no reject
            batch = []
    assert not pipeline.process(batch)
    w = pipeline.stages["m"].windows
    assert len(w.ring) > 150
    assert all(type(a) is Cells for a in w.ring.values())
    held = sum(a.at.nbytes + a.values.nbytes for a in w.ring.values())  # type: ignore[union-attr]
    dense = len(w.ring) * w.rows * w.width * 8
    assert held * 10 <= dense, (held, dense)


def _pane_bytes(pane: Any, shape: tuple[int, int]) -> tuple[str, bytes]:
    return type(pane).__name__, ring_array(pane, *shape).tobytes()


@pytest.mark.parametrize("seed", range(30))
def test_a_restored_ring_pane_is_the_one_its_array_would_give(seed: int) -> None:
    """A checkpoint's ring pane made from its listed cells (``_ring_unsparse``) is what
    ``ring_pane`` of the array they fill gives, kind and bits: cells listed with +0.0 or
    -0.0 or NaN, panes nearly empty and nearly full, lists out of order or repeated."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 6)), int(rng.integers(1, 40)))
    size = shape[0] * shape[1]
    count = int(rng.integers(0, size + 1))
    index = np.sort(rng.choice(size, count, replace=False)).astype(np.int64)
    values = rng.normal(size=count)
    odd = rng.random(count)
    values[odd < 0.1] = 0.0
    values[(odd >= 0.1) & (odd < 0.2)] = -0.0
    values[(odd >= 0.2) & (odd < 0.25)] = np.nan
    if seed % 5 == 4 and count > 1:  # not as written: out of order, one index twice
        index[[0, -1]] = index[[-1, 0]]
        index[1] = index[0]
    listed = Sparse(list(shape), _arr(index, np.int64), _arr(values))
    got = _ring_unsparse(listed, shape)
    want = ring_pane(_unsparse(listed, shape))
    assert _pane_bytes(got, shape) == _pane_bytes(want, shape)
    if isinstance(want, Cells):
        assert isinstance(got, Cells)
        assert got.at.dtype == want.at.dtype
        assert got.at.tolist() == want.at.tolist()
        assert got.values.tobytes() == want.values.tobytes()


def test_a_restored_ring_pane_with_cells_out_of_range_is_refused() -> None:
    listed = Sparse([2, 3], _arr(np.array([1, 6]), np.int64), _arr(np.array([1.0, 2.0])))
    with pytest.raises(FormatError, match="out of range"):
        _ring_unsparse(listed, (2, 3))
