"""The cumulative sums along the score bins that the binary signals read
(:func:`monitor.core.panemetrics._prefix`, in blocks of bins, and the dot products
:func:`~monitor.core.panemetrics._dot_prefix` takes with them) equal numpy's cumulative
sum to rounding, for bin counts with and without a divisor to block by, and give every
pane's rows the same values, bit for bit, alone or stacked with other panes'."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.panemetrics import _dot_prefix, _prefix, _prefix_plan


@pytest.mark.parametrize("columns", [200, 50, 20, 13, 8, 4])
def test_blocked_cumulative_sums_equal_numpys(columns: int) -> None:
    rng = np.random.default_rng(columns)
    block, panes = 5, 4
    x = rng.poisson(3.0, (block * panes, columns)) * rng.uniform(0.2, 1.0, (1, columns))
    x[rng.random(x.shape) < 0.3] = 0.0
    p = rng.uniform(0.0, 5.0, x.shape)
    plan = _prefix_plan(columns)
    assert plan.size * plan.pieces == columns
    local, totals, earlier = _prefix(x, plan, block)
    full = local + np.repeat(earlier, plan.size, axis=1)
    want = np.cumsum(x, axis=1)
    np.testing.assert_allclose(full, want, rtol=1e-13, atol=0.0)
    np.testing.assert_allclose(earlier[:, -1] + totals[:, -1], want[:, -1], rtol=1e-13)
    dot = _dot_prefix(p, local, earlier, plan, block)
    np.testing.assert_allclose(dot, np.einsum("ij,ij->i", p, want), rtol=1e-13)
    # each pane's rows alone give the same bits as all the panes stacked
    for k in range(panes):
        rows = slice(k * block, (k + 1) * block)
        alone = _prefix(np.ascontiguousarray(x[rows]), plan, block)
        for part, whole in zip(alone, (local, totals, earlier), strict=True):
            assert part.tobytes() == np.ascontiguousarray(whole[rows]).tobytes()
        one = _dot_prefix(np.ascontiguousarray(p[rows]), alone[0], alone[2], plan, block)
        assert one.tobytes() == dot[rows].tobytes()
