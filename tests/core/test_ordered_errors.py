"""The compiled ``ordered_errors`` (``monitor._native``, run by
:func:`monitor.core.model.ordered_panes`) against :func:`~monitor.core.model.ordered_errors`
and numpy's stable argsort: the same errors (the same objects) in the same order, on random
panes of no error, one, a few and many (the insertion and the merge sorts), times with ties,
signed zeros, infinities and NaN; and its checks of what it is given."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor import native
from monitor.core.model import ordered_errors, ordered_panes

#: The compiled module, whether its kernels are on or off: these tests call the kernel itself.
_native = pytest.importorskip("monitor._native", reason="not built (see test_native.py)")


def _panes(seed: int) -> list[tuple[list[float], list[float]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(rng.integers(0, 12))):
        n = int(rng.choice([0, 1, 2, 3, 15, 16, 17, 40, int(rng.integers(0, 3000))]))
        # few distinct times (ties), or any
        ts = rng.integers(0, 5, n).astype(float) if rng.random() < 0.5 else rng.normal(size=n)
        if rng.random() < 0.3:  # already in order, or in reverse order
            ts = np.sort(ts) if rng.random() < 0.5 else np.sort(ts)[::-1].copy()
        for special in (math.nan, math.inf, -math.inf, -0.0, 0.0):
            ts[rng.random(n) < 0.05] = special
        out.append((ts.tolist(), rng.random(n).tolist()))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_the_compiled_order_is_numpy_s_stable_order(seed: int) -> None:
    compiled = _native
    taken = _panes(seed)
    got = compiled.ordered_errors(taken)
    assert len(got) == len(taken)
    for (ts, errors), mine in zip(taken, got, strict=True):
        want = ordered_errors(ts, errors)
        by_numpy = [errors[i] for i in np.argsort(np.array(ts), kind="stable").tolist()]
        assert len(mine) == len(want) == len(by_numpy)
        assert all(a is b for a, b in zip(mine, want, strict=True))
        assert all(a is b for a, b in zip(mine, by_numpy, strict=True))
        if len(ts) < 2:
            assert mine is errors  # as ordered_errors: the list itself


def test_ordered_panes_with_and_without_the_kernel() -> None:
    compiled = _native
    taken = [([3.0, 1.0, 2.0], [0.3, 0.1, 0.2]), ([1, 0], [0.5, 0.25]), ([], [])]
    assert compiled.ordered_errors(taken) is None  # an int time: the Python code takes it
    assert compiled.ordered_errors([([2.0, 1.0], [0.5])]) is None  # errors too short
    before = native.use(True)
    try:
        on = ordered_panes(taken)
    finally:
        native.use(False)
    try:
        off = ordered_panes(taken)
    finally:
        native.use(before)
    assert on == off == [[0.1, 0.2, 0.3], [0.25, 0.5], []]
    assert compiled.ordered_errors(taken[:1]) == [[0.1, 0.2, 0.3]]
    assert compiled.ordered_errors([]) == []


def test_the_python_code_takes_what_the_kernel_does_not() -> None:
    compiled = _native
    assert compiled.ordered_errors([([1.0], [1.0], [1.0])]) is None  # not a pair
    assert compiled.ordered_errors([((2.0, 1.0), [1.0, 2.0])]) is None  # not lists
    assert compiled.ordered_errors([[[2.0, 1.0], [1.0, 2.0]]]) is None  # not a tuple
    assert compiled.ordered_errors((([2.0, 1.0], [1.0, 2.0]),)) is None  # not a list
    taken = (([2.0, 1.0], [1.0, 2.0]), ([1.0], [5.0]))
    assert ordered_panes(taken) == [[2.0, 1.0], [5.0]]  # type: ignore[arg-type]
