"""engine._group_sums, each (model, partition) group's sum of its label delays, gives what
``np.add.reduce`` of each group's slice gives, bit for bit (numpy's pairwise summation:
groups of fewer than 8 values, of up to 128, of more; negative zeros, huge and tiny
values), with the compiled kernel (``monitor._native.group_sums``) and with the numpy
code; the kernel refuses bounds it cannot take."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from monitor import native
from monitor.core.engine import _group_sums


def _values(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    if kind == 0:  # every magnitude: the order of the additions shows
        return rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 16, n)
    if kind == 1:  # label delays as they come (seconds, to the millisecond)
        return np.round(rng.exponential(300.0, n), 3)
    return rng.choice(np.array([-0.0, 0.0, 1e16, 1.0, -1e16, 3.3]), n)


def _bounds(rng: np.random.Generator, n: int) -> list[int]:
    cuts = sorted(rng.integers(0, n + 1, int(rng.integers(0, 8))).tolist()) if n else []
    return [0, *cuts, n]


@pytest.mark.parametrize("compiled", [True, False])
def test_group_sums_are_numpys_sums(compiled: bool) -> None:
    if compiled and not native.available():
        pytest.skip("monitor._native is not built")
    rng = np.random.default_rng(41)
    before = native.use(compiled)
    try:
        for trial in range(600):
            n = int(rng.integers(0, 300)) if trial < 500 else int(rng.integers(300, 20_000))
            values = _values(rng, n, trial % 3)
            bounds = _bounds(rng, n)
            got = _group_sums(values, bounds)
            want = np.array([np.add.reduce(values[a:b]) for a, b in pairwise(bounds)])
            assert got.dtype == np.float64
            assert got.tobytes() == want.tobytes(), (n, bounds)
    finally:
        native.use(before)


def test_group_sums_kernel_checks_its_arguments() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built")
    from monitor import _native  # type: ignore[attr-defined]

    values, out = np.arange(5.0), np.empty(2)
    _native.group_sums(values, [0, 2, 5], out)
    assert out.tolist() == [1.0, 9.0]
    with pytest.raises(ValueError):  # out of another length
        _native.group_sums(values, [0, 5], out)
    with pytest.raises(ValueError):  # bounds past the values
        _native.group_sums(values, [0, 2, 6], out)
    with pytest.raises(ValueError):  # bounds not ascending
        _native.group_sums(values, [0, 3, 2], out)
    with pytest.raises(ValueError):  # not float64
        _native.group_sums(np.arange(5, dtype=np.int32), [0, 2, 5], out)
    with pytest.raises(TypeError):  # bounds not a list
        _native.group_sums(values, (0, 2, 5), out)
