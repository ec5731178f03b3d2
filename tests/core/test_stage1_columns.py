"""The stage-1 column kernels of ``monitor._native`` (``memo_codes``, ``int64s``) against the numpy
code that stands in for them (``monitor.native.memo_codes``, ``int64_column``, each run
with the compiled kernels and without): the same columns, bit for bit, over random lists;
the kernels declining what they do not take; their argument checks; and a codec's
``code_many`` equal to its ``code`` value by value either way."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.config import ModelConfig
from monitor.events.codec import DecodeFailure, ModelCodec

pytestmark = pytest.mark.usefixtures("kernels")

#: Values a codec's memo is asked for: numbers, bools, strings (1, 1.0 and True alike).
VALUES: list[Any] = [0, 1, 2, -1, 0.0, 1.0, 0.5, True, False, "0", "1", "yes", "", math.nan,
                     math.inf, 2**70, "a" * 40]  # fmt: skip


def _reference_codes(memo: dict[Any, float], values: list[Any]) -> np.ndarray:
    return np.array(list(map(memo.get, values)), dtype=np.float64)


@pytest.mark.parametrize("seed", range(20))
def test_memo_codes_equal_numpy(seed: int) -> None:
    rng = random.Random(seed)
    memo: dict[Any, float] = {}
    for value in rng.sample(VALUES, rng.randrange(len(VALUES))):
        try:
            memo[value] = float(rng.choice([0, 1, 2, 3, 7, -0.0]))
        except TypeError:
            continue
    if rng.random() < 0.3:
        memo[rng.choice(VALUES)] = rng.choice([1, 2])  # an int code: as float() makes it
    values = [rng.choice(VALUES) for _ in range(rng.randrange(0, 300))]
    codes, missing = native.memo_codes(memo, values)
    want = _reference_codes(memo, values)
    assert codes.dtype == np.float64 and codes.shape == (len(values),)
    assert codes.tobytes() == want.tobytes()
    assert missing == sum(1 for v in values if v not in memo)


def test_memo_codes_unhashable() -> None:
    with pytest.raises(TypeError):
        native.memo_codes({1: 1.0}, [1, [2]])


def test_memo_codes_kernel_checks() -> None:
    if not native.available():
        pytest.skip("monitor._native is not built")
    from monitor import _native

    with pytest.raises(ValueError):
        _native.memo_codes({}, [1, 2], np.empty(3))
    with pytest.raises(ValueError):
        _native.memo_codes({}, [1], np.empty(1, dtype=np.int32))
    with pytest.raises(TypeError):
        _native.memo_codes([], [1], np.empty(1))
    with pytest.raises(TypeError):
        _native.memo_codes({1: "x"}, [1], np.empty(1))  # a code that is not a number
    out = np.empty(2)
    assert _native.memo_codes({1: 3.0}, [1, 4], out) == 1
    assert out[0] == 3.0 and math.isnan(out[1])


@pytest.mark.parametrize("seed", range(10))
def test_int64_column_equal_numpy(seed: int) -> None:
    rng = random.Random(seed)
    items = [rng.choice([0, 1, -1, 2**62, -(2**63), 2**63 - 1, rng.randrange(10**6)])
             for _ in range(rng.randrange(0, 200))]  # fmt: skip
    got = native.int64_column(items)
    want = np.fromiter(items, np.int64, len(items))
    assert got.dtype == np.int64 and got.tobytes() == want.tobytes()


def test_int64_column_declines() -> None:
    assert native.int64_column([True, 2]).tolist() == [1, 2]  # numpy converts a bool
    with pytest.raises(OverflowError):
        native.int64_column([2**63])
    if not native.available():
        return
    from monitor import _native

    out = np.zeros(2, dtype=np.int64)
    assert _native.int64s([1, 2], out) is True and out.tolist() == [1, 2]
    assert _native.int64s([1, 2.0], out) is False
    assert _native.int64s([1, 2**64], out) is False
    with pytest.raises(ValueError):
        _native.int64s([1], out)


@pytest.mark.parametrize("extra", [{"task": "binary", "classes": ["no", "yes"],
                                             "positive_class": "yes"},
                                            {"task": "multiclass", "classes": ["a", "b", "c"]},
                                            {"task": "binary", "positive_class": 1}])  # fmt: skip
def test_code_many_equals_code(extra: dict[str, Any]) -> None:
    config = ModelConfig(name="m", **extra)
    rng = random.Random(7)
    pool: list[Any] = [0, 1, 2, 1.0, 0.0, True, False, "a", "b", "c", "no", "yes", "x", 0.5,
                       math.nan, math.inf]  # fmt: skip
    codec = ModelCodec(config)
    for _ in range(4):  # the memo grows from call to call
        values = [rng.choice(pool) for _ in range(rng.randrange(1, 60))]
        codes, valid = codec.code_many(values)
        for value, code, ok in zip(values, codes.tolist(), valid.tolist(), strict=True):
            try:
                want = codec.code(value, "label")
            except DecodeFailure:
                assert not ok and math.isnan(code)
            else:
                assert ok and code == want
