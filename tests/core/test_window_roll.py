"""A run of pane closes in one compiled call (:meth:`WindowSet.roll`,
``monitor._native.window_roll``) is the closes one by one, bit for bit:

- after random sequences of panes queued as row blocks (of some columns or of every
  cell), held as arrays, left empty, late sums, growth, copies and pickles, a set whose
  runs of panes roll leaves the windows, the ring (its cells, -0.0 included), the counts
  of non-zero terms and the scratch as :meth:`WindowSet.close` of each pane does with the
  compiled kernels and with numpy, and copies the same whole-model rows, panes and
  predictions seen; with one sliding and one decay window, several of each, or a sliding
  window only; values of every magnitude (large terms that leave small remainders, so that
  windows are summed again), NaN and inf;
- ``monitor replay`` of the noisy stream writes the same signals, metrics and summary with
  the runs rolled, closed one by one, and closed by numpy (its first polls roll the panes
  of the model's warmup up to the one whose close builds the reference).
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.config import WindowSpec
from monitor.core.windows import RowMerges, WindowSet
from tests.core.test_window_close import _canonical
from tests.core.test_window_close_one import _cells

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf is NaN

needs_native = pytest.mark.skipif(not native.available(), reason="monitor._native is not built")

ALL = WindowSpec(name="all", kind="all", seconds=0.0)
SETS = {
    "one_each": (ALL, WindowSpec(name="7p", kind="sliding", seconds=70.0),
                 WindowSpec(name="ewm", kind="decay", seconds=40.0)),
    "short": (ALL, WindowSpec(name="ewm", kind="decay", seconds=40.0),
              WindowSpec(name="2p", kind="sliding", seconds=20.0)),
    "several": (ALL, WindowSpec(name="4p", kind="sliding", seconds=40.0),
                WindowSpec(name="ewm", kind="decay", seconds=40.0),
                WindowSpec(name="9p", kind="sliding", seconds=90.0),
                WindowSpec(name="ewm2", kind="decay", seconds=15.0)),
    "sliding": (ALL, WindowSpec(name="6p", kind="sliding", seconds=60.0)),
}  # fmt: skip


def _sources(specs: tuple[WindowSpec, ...]) -> list[int]:
    """The windows' sums in the specs' order, as :meth:`WindowSet.roll` numbers them."""
    sliding = sum(s.kind == "sliding" for s in specs)
    out, i, j = [], 0, 0
    for spec in specs:
        if spec.kind == "all":
            out.append(0)
        elif spec.kind == "sliding":
            i += 1
            out.append(i)
        else:
            j += 1
            out.append(sliding + j)
    return out


def _copy(w: WindowSet, sources: list[int], sums: np.ndarray, at: int) -> None:
    """The first rows of the windows' sums into ``sums`` from row ``at`` (what a pane's
    copy in ``ModelStage._take`` writes)."""
    arrays = [w.cum, *w.sliding, *w.decay]
    for j, code in enumerate(sources):
        sums[at + j] = arrays[code][0]


def _state(w: WindowSet) -> Any:
    scratch = w.scratch()
    assert not scratch[0].view(np.int64).any()  # (+0.0 in every cell: bits, not values)
    assert not any(d.view(np.int64).any() for d in scratch[1])
    names = ("cum", "late_n", "ring", "sliding", "decay", "closes", "rows", "_nz")
    state = {name: _canonical(getattr(w, name)) for name in names}
    state["kinds"] = [(p, type(v).__name__) for p, v in w.ring.items()]  # (the ring's order)
    return state


def _run(kind: str, seed: int, compiled: bool, rolled: bool) -> list[Any]:
    """The states of a set after each run of closes of a random sequence, the rows copied
    and the panes closed; ``rolled``: each run closed by :meth:`WindowSet.roll` (and the
    panes it does not close by :meth:`WindowSet.close`), else pane by pane."""
    before = native.use(compiled)
    try:
        rng = np.random.default_rng(seed)
        specs = SETS[kind]
        sources = _sources(specs)
        windows = len(sources)
        rows, width = int(rng.integers(1, 5)), int(rng.integers(1, 9))
        odd = bool(rng.random() < 0.5)
        sparse = float(rng.choice([0.05, 0.3, 0.9]))
        w = WindowSet(specs, 10.0, width, rows)
        states: list[Any] = []
        pane = int(rng.integers(0, 12))
        for _ in range(int(rng.integers(3, 14))):
            span = int(rng.integers(1, 12))
            merges = RowMerges()
            for _ in range(int(rng.integers(0, 3 * span + 1))):
                at = pane + int(rng.integers(0, span + 2))
                k = int(rng.integers(1, rows + 1))
                where: Any = slice(0, k) if rng.random() < 0.5 else np.sort(
                    rng.choice(rows, size=k, replace=False)).astype(np.int64)  # fmt: skip
                cols = np.flatnonzero(rng.random(width) < 0.5)
                if not len(cols) or rng.random() < 0.3:
                    cols = None
                cells = k * (width if cols is None else len(cols))
                blocks = [_cells(rng, cells, odd, sparse).reshape(k, -1)
                          for _ in range(1 + len(w.decay_rates))]  # fmt: skip
                if rng.random() < 0.9:
                    merges.add(w, at, where, blocks[0], blocks[1:], cols)
                    continue
                merges.run()  # (a pane held as arrays)
                wide = [np.zeros((k, width)) for _ in blocks]
                for out, block in zip(wide, blocks, strict=True):
                    out[:, slice(None) if cols is None else cols] = block
                w.add_rows(at, where, wide[0], wide[1:])
            merges.run()
            if rng.random() < 0.3 and pane > 2:  # late sums
                plain, decay, decay2 = (_cells(rng, rows * width, odd).reshape(rows, width)
                                        for _ in range(3))  # fmt: skip
                w.add_sums(pane - int(rng.integers(1, 4)), pane, plain,
                           [decay, decay2][: len(w.decay_rates)])  # fmt: skip
            if rng.random() < 0.08:
                w = pickle.loads(pickle.dumps(w))
            if rng.random() < 0.08:
                w = copy.deepcopy(w)
            if rng.random() < 0.1:
                rows += 1
                w.grow(rows)
            sums = np.full((span * windows, width), 7.0)
            panes: list[int] = []
            seen: list[float] = []
            col = int(rng.integers(0, width))
            last = pane + span
            while pane < last:
                if rolled:
                    closed, taken = w.roll(pane, last, sums, len(panes) * windows, sources,
                                           panes, seen, col)  # fmt: skip
                    pane += closed
                    if closed:
                        if taken < closed:
                            _copy(w, sources, sums, len(panes) * windows)
                            panes.append(pane - 1)
                            seen.append(w.cum.item(0, col))
                        continue
                w.close(pane)
                _copy(w, sources, sums, len(panes) * windows)
                panes.append(pane)
                seen.append(w.cum.item(0, col))
                pane += 1
            if rng.random() < 0.7:
                w.recycle()
            states += [_state(w), _canonical(sums), panes, _canonical(np.array(seen))]
        states.append(_canonical(w.open))  # (made arrays now: the queued ones too)
        states.append(_canonical(w.open_decay))
        states.append(_state(w))
        return states
    finally:
        native.use(before)


@needs_native
@pytest.mark.parametrize("kind", sorted(SETS))
@pytest.mark.parametrize("seed", range(40))
def test_a_rolled_run_of_closes_is_the_closes_one_by_one(kind: str, seed: int) -> None:
    want = _run(kind, seed, False, False)
    assert _run(kind, seed, True, False) == want
    assert _run(kind, seed, True, True) == want


@needs_native
def test_a_roll_stops_where_the_closes_one_by_one_take_over() -> None:
    """At a pane where the windows are summed again; after
    a close that leaves a window to sum again (summed then, not copied); and nothing
    before the first close has counted the windows' terms."""
    w = WindowSet(SETS["one_each"], 10.0, 2, 1)
    sums = np.zeros((40, 2))
    panes: list[int] = []
    seen: list[float] = []
    assert w.roll(0, 5, sums, 0, [0, 1, 2], panes, seen, 0) == (0, 0)
    merges = RowMerges()
    for pane, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]):
        merges.add(w, pane, slice(0, 1), np.array([[value, 0.0]]), [np.array([[value, 0.0]])])
    merges.run()
    w.close(0)
    w.settle(3)  # (held as arrays: closed alike)
    assert w.roll(1, 5, sums, 0, [0, 1, 2], panes, seen, 0) == (4, 4)
    assert panes == [1, 2, 3, 4] and seen == [3.0, 6.0, 10.0, 15.0]
    assert sums[:6, 0].tolist()[:2] == [3.0, 3.0] and 3 not in w.arrays()[0]
    assert w.roll(5, 9, sums, 12, [0, 1, 2], panes, seen, 0) == (2, 2)
    assert panes == [1, 2, 3, 4, 5, 6]  # (pane 7: a multiple of the ring's 7 panes)
    w = WindowSet(SETS["short"], 10.0, 1, 1)
    for pane, value in enumerate([1.0, 1e20, 1.5, 0.25]):
        merges.add(w, pane, slice(0, 1), np.array([[value]]), [np.array([[value]])])
    merges.run()
    w.close(0)
    sums = np.zeros((10, 1))
    assert w.roll(1, 4, sums, 0, [0, 2, 1], [], [], 0) == (1, 1)
    w.close(2)
    assert w.roll(3, 4, sums, 0, [0, 2, 1], [], [], 0) == (1, 0)  # 1e20 left 1.75 behind
    assert w.sliding[0].tolist() == [[1.75]] and w.closes == 4 and 1 not in w.ring


def _replay_digest(events: int, tmp: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        import replay_noisy
    finally:
        sys.path.pop(0)
    from monitor.replay import replay

    capture = tmp / "capture.jsonl"
    if not capture.exists():
        replay_noisy.generate(capture, events)
    out = tmp / mode
    before = native.use(mode != "numpy")
    try:
        with monkeypatch.context() as patch:
            if mode == "by_pane":
                patch.setattr(WindowSet, "roll", lambda self, *args: (0, 0))
            replay(replay_noisy.bench_config(), [str(capture)], out)
    finally:
        native.use(before)
    digest = hashlib.sha256()
    for path in sorted(out.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@needs_native
def test_the_noisy_replay_is_the_same_rolled_and_closed_pane_by_pane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rolled = _replay_digest(6000, tmp_path, "rolled", monkeypatch)
    assert _replay_digest(6000, tmp_path, "by_pane", monkeypatch) == rolled
    assert _replay_digest(6000, tmp_path, "numpy", monkeypatch) == rolled
