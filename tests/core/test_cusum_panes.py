"""The compiled ``cusum_panes`` (``monitor._native``, run by
:meth:`monitor.core.detectors.CalibratedCusum.update_panes` past the warmup) against the
Python loop it stands in for: the same alarms per pane and the same state (``S`` an int,
the detection flag) on random panes of 0/1 and real-valued errors (NaN among them), with
calibrated and random integer CUSUMs; and the cases it leaves to the Python loop."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.core.detectors import CalibratedCusum

#: The compiled module, whether its kernels are on or off: these tests call the kernel itself.
_native = pytest.importorskip("monitor._native", reason="not built (see test_native.py)")


def _python(panes: list[Any], cut: float, m: int, r: int, h: int, s: int,
            detected: bool) -> tuple[list[int], int, bool]:  # fmt: skip
    """CalibratedCusum._fed's loop, as it is without the kernel."""
    det = CalibratedCusum(reference_error=0.1)
    det.cut, det._m, det._r, det._h, det._s, det.drift_detected = cut, m, r, h, s, detected
    before = native.use(False)
    try:
        out = det._fed(panes)
    finally:
        native.use(before)
    return out, det._s, det.drift_detected


@pytest.mark.parametrize("seed", range(30))
def test_the_compiled_cusum_is_the_python_loop(seed: int) -> None:
    compiled = _native
    rng = np.random.default_rng(seed)
    if seed % 3 == 0:  # a calibrated CUSUM's numbers
        det = CalibratedCusum(reference_error=float(rng.uniform(0.01, 0.4)),
                              delta=float(rng.uniform(0.01, 0.2)))  # fmt: skip
        m, r, h = det._m, det._r, det._h
    else:
        m, r = int(rng.integers(1, 50)), int(rng.integers(0, 50))
        h = int(rng.integers(0, 200))
    cut = 0.5 if seed % 2 else float(rng.normal())
    panes = []
    for _ in range(int(rng.integers(0, 8))):
        n = int(rng.integers(0, 400))
        x = rng.integers(0, 2, n).astype(float) if seed % 2 else rng.normal(size=n)
        x[rng.random(n) < 0.03] = math.nan
        x[rng.random(n) < 0.03] = cut  # on the cut: not above it
        panes.append(x.tolist())
    s, detected = int(rng.integers(0, h + 1)), bool(rng.integers(0, 2))
    got = compiled.cusum_panes(panes, cut, m, r, h, s, detected)
    want = _python(panes, cut, m, r, h, s, detected)
    assert got == want
    assert type(got[1]) is int and type(got[2]) is bool
    assert all(type(n) is int for n in got[0])


def test_the_python_loop_takes_what_the_kernel_does_not() -> None:
    compiled = _native
    assert compiled.cusum_panes([[1.0, 1]], 0.5, 3, 1, 4, 0, False) is None  # an int error
    assert compiled.cusum_panes([(1.0,)], 0.5, 3, 1, 4, 0, False) is None  # not a list
    assert compiled.cusum_panes(((1.0,),), 0.5, 3, 1, 4, 0, False) is None
    assert compiled.cusum_panes([[1.0]], 0.5, 3.0, 1, 4, 0, False) is None  # a float m
    assert compiled.cusum_panes([[1.0]], 0.5, 3, 1, 1 << 61, 0, False) is None  # too large
    assert compiled.cusum_panes([[1.0]], 0.5, 3, 1, 4, 1 << 70, False) is None
    assert compiled.cusum_panes([], 0.5, 3, 1, 4, 2, True) == ([], 2, True)
    assert compiled.cusum_panes([[]], 0.5, 3, 1, 4, 2, True) == ([0], 2, True)
    # an alarm on the second error: S 0 -> 2 -> 4 > 3, back to 0
    assert compiled.cusum_panes([[1.0, 1.0], [0.0]], 0.5, 3, 1, 3, 0, False) == (
        [1, 0], 0, False)  # fmt: skip


@pytest.mark.usefixtures("kernels")
def test_a_cusum_fed_panes_detects_as_fed_one_by_one() -> None:
    """With the kernel or without (the ``kernels`` fixture), ``update_panes`` past the
    warmup gives what ``update`` of each error gives."""
    rng = np.random.default_rng(7)
    a, b = CalibratedCusum(reference_error=0.05), CalibratedCusum(reference_error=0.05)
    panes = [(rng.random(int(rng.integers(0, 300))) < 0.3).astype(float).tolist()
             for _ in range(20)]  # fmt: skip
    got = a.update_panes(panes)
    want = [sum(b.update(x) for x in values) for values in panes]
    assert got == want and sum(got) > 0
    assert (a._s, a.drift_detected) == (b._s, b.drift_detected)
