"""Every model's joined pairs of a poll put in poll order together
(:func:`monitor.core.engine._outcomes`): each model's chunk is, bit for bit, what its
own :meth:`~monitor.core.engine._Batch.outcomes` gives."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.engine import _Batch, _outcomes
from monitor.core.fastpath import Chunk

FIELDS = ("idx", "part", "ts", "pred", "score", "slices", "label", "delay")


def _chunk(rng: np.random.Generator, idx: np.ndarray, k: int) -> Chunk:
    n = len(idx)
    return Chunk(idx, rng.integers(0, 4, size=n), rng.normal(size=n), rng.normal(size=n),
                 rng.random(n), rng.integers(-1, 9, size=(n, k)), label=rng.normal(size=n),
                 delay=rng.normal(size=n))  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_pairs_put_in_order_together_are_each_models_own(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(12):
        batch = _Batch()
        k = int(rng.choice([2, 3]))  # models of two widths of slice ids
        free = rng.permutation(500)  # a poll index is one message's: one pair at most
        at = 0
        for _ in range(int(rng.integers(0, 4))):
            n = int(rng.integers(1, 30))
            batch.chunks_o.append(_chunk(rng, np.sort(free[at : at + n]), k))
            at += n
        batches.append(batch)
    got = _outcomes(batches)
    for batch, mine in zip(batches, got, strict=True):
        want = batch.outcomes(0)
        if want is None:
            assert mine is None
            continue
        assert mine is not None
        for name in FIELDS:
            a, b = getattr(mine, name), getattr(want, name)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
