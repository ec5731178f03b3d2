"""The per-pane work of a sparse stream made cheaper, held to what it replaced:

- ``window_close1`` (compiled, and its numpy twin in :mod:`monitor.native`) is
  ``window_close`` of one decay and one sliding window, bit for bit, -0.0, NaN, inf and
  large terms that leave small remainders included; a WindowSet of ``all``, one sliding
  and one decay window closes alike with the compiled kernels and with numpy;
- ``first_rows`` copies each source's first row into a batch's rows, as numpy's
  assignments do;
- :func:`~monitor.core.model.take_errors_each` takes each pane's errors as
  ``ModelStage._errors_through`` of each pane in turn does;
- a plan computes the same values, bit for bit, with the first rows of the drift tiles of
  a larger batch as with tiles made for its own row count.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.config import MonitorConfig, WindowSpec
from monitor.core.model import ModelState, take_errors, take_errors_each
from monitor.core.panemetrics import PanePlan
from monitor.core.windows import RowMerges, WindowSet
from tests.core.test_window_close import _canonical

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf is NaN

needs_native = pytest.mark.skipif(not native.available(), reason="monitor._native is not built")

SPECS = (
    WindowSpec(name="all", kind="all", seconds=0.0),
    WindowSpec(name="3p", kind="sliding", seconds=30.0),
    WindowSpec(name="ewm", kind="decay", seconds=40.0),
)


def _cells(rng: np.random.Generator, n: int, odd: bool, density: float = 0.4) -> np.ndarray:
    """Sparse values of any magnitude, -0.0 among them; with ``odd``, NaN and inf too."""
    out = np.zeros(n)
    cells = rng.random(n) < density
    out[cells] = rng.normal(size=cells.sum()) * 10.0 ** rng.integers(-3, 20, size=cells.sum())
    out[rng.random(n) < 0.1] = -0.0
    if odd:
        out[rng.random(n) < 0.02] = np.nan
        out[rng.random(n) < 0.02] = np.inf
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit, every NaN taken as one value (numpy does not keep their payloads)."""
    return bool(
        np.where(np.isnan(a), np.nan, a).tobytes() == np.where(np.isnan(b), np.nan, b).tobytes()
    )


def _arrays(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 70))
    odd = bool(rng.random() < 0.5)
    cum, acc, decay, decayed, sliding, leaving = (_cells(rng, n, odd) for _ in range(6))
    if rng.random() < 0.5:  # the pane that leaves is much of the window: cells empty out
        sliding = leaving + _cells(rng, n, odd, 0.2)
    # counts of non-zero terms: at least the leaving pane's where it has one
    nz = rng.integers(0, 3, size=n).astype(np.float64) + (leaving != 0)
    return [cum, acc, decay, decayed, sliding, nz, leaving]


def _close1(kernel: Any, arrays: list[np.ndarray], factor: float) -> tuple[int, list[np.ndarray]]:
    cum, acc, decay, decayed, sliding, nz, leaving = (a.copy() for a in arrays)
    lost = kernel(cum, acc, decay, factor, decayed, sliding, nz, leaving)
    return int(lost), [cum, decay, sliding, nz]


def _close_many(arrays: list[np.ndarray], factor: float) -> tuple[int, list[np.ndarray]]:
    from monitor import _native  # type: ignore[attr-defined]

    cum, acc, decay, decayed, sliding, nz, leaving = (a.copy() for a in arrays)
    lost = _native.window_close(cum, acc, [decay], [factor], [decayed], [sliding], [nz],
                                [leaving])  # fmt: skip
    return int(lost), [cum, decay, sliding, nz]


@pytest.mark.parametrize("seed", range(80))
def test_numpy_window_close1_is_window_close(seed: int) -> None:
    """The numpy twin against the numpy close (the compiled one where it is built)."""
    arrays = _arrays(seed)
    factor = float(np.exp(-np.log(2) / 4.0))
    lost, got = _close1(native.window_close1, arrays, factor)
    if native.available():
        want_lost, want = _close_many(arrays, factor)
        assert lost == want_lost
        assert all(_same(a, b) for a, b in zip(got, want, strict=True))
    # by hand: the cells where nothing arrives or leaves keep their sums
    cum, acc, decay, decayed, sliding, nz, leaving = arrays
    quiet = (acc == 0) & (leaving == 0) & (nz != 0)
    assert _same(got[2][quiet], (sliding + acc - leaving)[quiet])
    assert _same(got[0], cum + acc)
    assert _same(got[1], decay * factor + decayed)


@needs_native
@pytest.mark.parametrize("seed", range(80))
def test_compiled_window_close1_is_window_close(seed: int) -> None:
    from monitor import _native  # type: ignore[attr-defined]

    arrays = _arrays(seed)
    factor = float(np.exp(-np.log(2) / 3.0))
    lost, got = _close1(_native.window_close1, arrays, factor)
    want_lost, want = _close_many(arrays, factor)
    assert lost == want_lost
    assert all(_same(a, b) for a, b in zip(got, want, strict=True))
    numpy_lost, by_numpy = _close1(native.window_close1, arrays, factor)
    assert lost == numpy_lost
    assert all(_same(a, b) for a, b in zip(got, by_numpy, strict=True))


@needs_native
def test_window_close1_checks_its_arguments_before_writing() -> None:
    from monitor import _native  # type: ignore[attr-defined]

    arrays = [np.zeros(4) for _ in range(7)]
    arrays[1][:] = 1.0
    for at in range(1, 7):  # one array of another size: refused, nothing written
        bad = [a.copy() for a in arrays]
        bad[at] = np.zeros(5)
        with pytest.raises(ValueError):
            _native.window_close1(bad[0], bad[1], bad[2], 0.5, *bad[3:])
        assert not bad[0].any()
    with pytest.raises(TypeError):
        _native.window_close1(*arrays[:3], 0.5, *arrays[3:6], None)


def _run(seed: int, compiled: bool, spare: str | None = None) -> list[Any]:
    """The states of a set of all, one sliding and one decay window after each step of a
    random sequence of additions (open, late, taken back), copies, growths and closes.

    ``spare`` (None: neither, nor any block queued): what is done with the arrays the
    closes let go of, "fresh" dropped (every pane opens on new zeros), "recycle" kept for
    the panes opened next after most closes (:meth:`WindowSet.recycle`); some blocks are
    then queued (:class:`RowMerges`, whose new panes take spare arrays too), and the
    states leave those arrays out."""
    before = native.use(compiled)
    try:
        rng = np.random.default_rng(seed)
        rows, width = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        odd = bool(rng.random() < 0.5)
        w = WindowSet(SPECS, 10.0, width, rows)
        states: list[Any] = []
        pane = int(rng.integers(0, 12))
        for _ in range(int(rng.integers(5, 40))):
            merges = RowMerges()
            for _ in range(int(rng.integers(0, 3))):
                at = pane + int(rng.integers(0, 3))
                blocks = [_cells(rng, rows * width, odd).reshape(rows, width) for _ in range(2)]
                if spare is not None and rng.random() < 0.5:  # queued: of some columns, or all
                    cols = np.flatnonzero(rng.random(width) < 0.5)
                    if 0 < len(cols) < width:
                        plain, decay = (np.ascontiguousarray(b[:, cols]) for b in blocks)
                        merges.add(w, at, np.arange(rows), plain, [decay], cols)
                    elif len(cols):  # (a new pane's arrays written whole)
                        merges.add(w, at, slice(0, rows), blocks[0], blocks[1:])
                    continue
                merges.run()
                w.add_rows(at, slice(0, rows), blocks[0], blocks[1:])
                if rng.random() < 0.2:  # taken back: cells that cancel to 0
                    w.add_rows(at, slice(0, rows), blocks[0], blocks[1:], -1.0)
            merges.run()
            if rng.random() < 0.3 and pane > 2:
                late = pane - int(rng.integers(1, 4))
                plain = _cells(rng, rows * width, odd).reshape(rows, width)
                w.add_sums(late, pane, plain, [_cells(rng, rows * width, odd).reshape(rows, width)])
            if rng.random() < 0.1:
                w = pickle.loads(pickle.dumps(w))
            if rng.random() < 0.1:
                w = copy.deepcopy(w)
            if rng.random() < 0.1:
                rows += 1
                w.grow(rows)
            states.append(w.close(pane))
            pane += 1
            if spare is None:
                states.append({k: _canonical(v) for k, v in vars(w).items()})
                continue
            if rng.random() < 0.7:  # (drawn either way: the same sequence)
                if spare == "fresh":
                    w.spent = []
                else:
                    w.recycle()
                    assert all(a.shape == (w.rows, w.width) for a in w.spare)
            kept = ("spent", "spare")
            states.append({k: _canonical(v) for k, v in vars(w).items() if k not in kept})
        return states
    finally:
        native.use(before)


@needs_native
@pytest.mark.parametrize("seed", range(60))
def test_compiled_close_of_one_sliding_and_one_decay_window_is_the_numpy_close(seed: int) -> None:
    assert _run(seed, True) == _run(seed, False)


@needs_native
def test_one_pass_close_sums_again_where_a_large_term_left() -> None:
    """A term of 1e20 leaving 1.5 behind: the window is summed again from its panes."""
    got = []
    for compiled in (True, False):
        before = native.use(compiled)
        try:
            w = WindowSet(SPECS, 10.0, 1, 1)
            for pane, value in enumerate([1e20, 1.5, 0.25, 0.0, 0.0, 0.0]):
                w.add_rows(pane, slice(0, 1), np.array([[value]]), [np.array([[value]])])
                w.close(pane)
            got.append((w.sliding[0].tobytes(), w.decay[0].tobytes(), w.cum.tobytes()))
        finally:
            native.use(before)
    assert got[0] == got[1]


def _first_rows_cases() -> list[tuple[np.ndarray, int, list[np.ndarray]]]:
    rng = np.random.default_rng(3)
    cases = []
    for rows in (1, 3, 7):
        for width in (1, 5, 980):
            sources = [rng.normal(size=(rows, width)) for _ in range(3)]
            cases.append((np.zeros((8, width)), 2, sources))
    return cases


def test_numpy_first_rows_is_the_rows_assigned() -> None:
    for dst, at, sources in _first_rows_cases():
        want = dst.copy()
        for i, src in enumerate(sources):
            want[at + i] = src[0]
        native.first_rows(dst, at, sources)
        assert dst.tobytes() == want.tobytes()
    with pytest.raises(ValueError):
        native.first_rows(np.zeros((2, 3)), 1, [np.zeros((1, 3))] * 2)


@needs_native
def test_compiled_first_rows_is_numpy_first_rows() -> None:
    from monitor import _native  # type: ignore[attr-defined]

    for dst, at, sources in _first_rows_cases():
        want = dst.copy()
        native.first_rows(want, at, sources)
        _native.first_rows(dst, at, sources)
        assert dst.tobytes() == want.tobytes()
    dst = np.zeros((2, 3))
    with pytest.raises(ValueError):  # past the last row: nothing written
        _native.first_rows(dst, 1, [np.ones((1, 3))] * 2)
    with pytest.raises(ValueError):  # a source shorter than a row
        _native.first_rows(dst, 0, [np.ones((1, 3)), np.ones(2)])
    with pytest.raises(ValueError):
        _native.first_rows(np.zeros(3), 0, [np.ones(3)])
    assert not dst.any()


def _buffer(seed: int) -> dict[int, dict[int, tuple[list[float], list[float]]]]:
    rng = np.random.default_rng(seed)
    out: dict[int, dict[int, tuple[list[float], list[float]]]] = {}
    for pane in sorted(set(rng.integers(0, 30, size=int(rng.integers(0, 20))).tolist())):
        parts = out[pane] = {}
        for number in rng.permutation(4)[: int(rng.integers(1, 5))].tolist():
            k = int(rng.integers(0, 4))
            parts[number] = (rng.normal(size=k).tolist(), rng.random(k).tolist())
    return out


@pytest.mark.parametrize("seed", range(40))
def test_take_errors_each_is_each_pane_taken_in_turn(seed: int) -> None:
    """As ModelStage._errors_through of each pane: a pane right after the last one taken
    alone, any other with the panes at or below it."""
    rng = np.random.default_rng(seed + 100)
    panes = sorted(set(rng.integers(0, 32, size=int(rng.integers(1, 12))).tolist()))
    low_given = None if rng.random() < 0.3 else int(rng.integers(0, 32))
    got_buffer, want_buffer = _buffer(seed), _buffer(seed)
    want = []
    low = low_given
    for pane in panes:
        if low is not None and low >= pane:
            want.append(take_errors(want_buffer, [pane]))
        else:
            want.append(take_errors(want_buffer, pane))
        low = pane + 1
    assert take_errors_each(got_buffer, panes, low_given) == want
    assert got_buffer == want_buffer


def _binary_model(tmp_path: Path) -> ModelState:
    """A binary model with a reference (feature and output drift), as the bench's."""
    rng = np.random.default_rng(5)
    rows = 600
    x = rng.normal(0.0, 1.0, (rows, 2))
    kind = rng.choice(["a", "b", "c", "d"], rows)
    score = np.round(rng.random(rows), 3)
    pred, label = (score >= 0.5).astype(int), (rng.random(rows) < score).astype(int)
    lines = ["x0,x1,kind,prediction,label,score"]
    lines += [f"{x[i, 0]:.4f},{x[i, 1]:.4f},{kind[i]},{pred[i]},{label[i]},{score[i]}"
              for i in range(rows)]  # fmt: skip
    (tmp_path / "ref.csv").write_text("\n".join(lines) + "\n")
    config = MonitorConfig.model_validate({"time": {"pane": "10s"}, "models": [{
        "name": "m", "task": "binary", "positive_class": 1,
        "windows": ["all", "1h", "ewm30m"],
        "features": {"x0": "numeric", "x1": "numeric", "kind": "categorical"},
        "segments": ["region"], "drift_min_samples": 40, "score_bins": 50,
        "detectors": [], "reference": str(tmp_path / "ref.csv"),
    }]})  # fmt: skip
    return ModelState(0, config.models[0], 10.0)


def test_drift_tiles_of_fewer_rows_are_the_first_rows_of_larger_ones(tmp_path: Path) -> None:
    """A plan's values over k rows are the same, bit for bit, after a computation over more
    rows (the first rows of its tiles used) as with tiles made for k rows; the tiles are
    made again only for more rows than they have."""
    model = _binary_model(tmp_path)
    layout = model.layout
    rng = np.random.default_rng(11)

    def sums(rows: int) -> np.ndarray:
        acc = rng.poisson(20.0, (rows, layout.width)).astype(np.float64)
        acc[rng.random((rows, layout.width)) < 1 / 3] = 0.0
        pos, pred_n = layout.col("pred_pos"), layout.col("pred_n")
        acc[:, pos] = np.minimum(acc[:, pos], acc[:, pred_n])
        return acc

    kept = PanePlan(layout, (), 40)
    assert kept._subjects is not None
    kept.compute(sums(3 * 20), None, 3)
    made = kept._tiles
    for rows in (3 * 4, 3 * 19, 3, 3 * 20):
        acc = sums(rows)
        fresh = PanePlan(layout, (), 40)
        want = fresh.compute(acc, None, 3)
        assert fresh._tiles is not None and fresh._tiles.rows == rows
        got = kept.compute(acc, None, 3)
        assert np.where(np.isnan(got), 7.5, got).tobytes() == np.where(
            np.isnan(want), 7.5, want
        ).tobytes()
        assert kept._tiles is made  # not made again
    kept.compute(sums(3 * 21), None, 3)
    assert kept._tiles is not made and kept._tiles is not None and kept._tiles.rows == 63
