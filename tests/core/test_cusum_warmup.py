"""CalibratedCusum.update_many takes the warmup's values in one piece: the same state and
detections, bit for bit, as update() one value at a time, wherever the pieces cut the
stream (before, across and after the end of the warmup; 0/1 errors and absolute ones)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from monitor.core.detectors import CalibratedCusum


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_warmup_in_pieces_is_the_warmup_one_value_at_a_time(binary: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    warmup = int(rng.integers(1, 300))
    values = (rng.random(900) < 0.2).astype(float) if binary else rng.exponential(size=900)
    values[600:] = (rng.random(300) < 0.6) if binary else rng.exponential(3.0, size=300)
    one = CalibratedCusum(warmup=warmup, binary=binary, false_alarm_budget=1000)
    many = CalibratedCusum(warmup=warmup, binary=binary, false_alarm_budget=1000)
    at = 0
    while at < len(values):
        size = int(rng.integers(0, 120))
        piece = values[at : at + size].tolist()
        assert many.update_many(piece) == sum(one.update(x) for x in piece)
        assert pickle.dumps(vars(many)) == pickle.dumps(vars(one))
        at += size
