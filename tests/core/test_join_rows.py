"""Arrays joined end to end (``fastpath.joined``, ``engine._beside``): the compiled
``join_rows`` against ``np.concatenate`` (the numpy code beside its callers) over random
parts (1-D and 2-D, every plain dtype, empty ones, strided and transposed views, negative
strides, tuples put side by side), and the kernel declining what it does not join (mixed
dtypes, objects, records, non-native byte order, subclasses, other dimensions, unequal
widths), which ``np.concatenate`` then joins (or refuses) as before."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from monitor.core.engine import _beside
from monitor.core.fastpath import joined
from tests.core.test_native_planner import _both, _compiled

_DTYPES = [np.float64, np.int64, np.int32, np.int8, np.uint8, np.bool_, np.float32,
           np.float16, np.uint64, np.int16]  # fmt: skip


def _array(rng: random.Random, dtype: Any, rows: int, width: int | None) -> Any:
    """A random array of ``rows`` (by ``width``) of ``dtype``: sometimes a strided,
    transposed or reversed view of a larger one."""
    shape = (rows,) if width is None else (rows, width)
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    base = nrng.normal(size=(2 * rows + 1, 2 * (width or 1) + 1)) * 100
    how = rng.randrange(5)
    if how == 0:  # a fresh C-contiguous array
        out = base[:rows, : width or 1].astype(dtype).copy()
    elif how == 1:  # every other row and column
        out = base.astype(dtype)[: 2 * rows : 2, : 2 * (width or 1) : 2]
    elif how == 2:  # a transposed (F-ordered) block
        out = np.ascontiguousarray(base.T.astype(dtype)).T[:rows, : width or 1]
    elif how == 3:  # rows reversed
        out = base.astype(dtype)[rows - 1 :: -1, : width or 1] if rows else base.astype(
            dtype)[:0, : width or 1]  # fmt: skip
    else:  # columns reversed
        out = base.astype(dtype)[:rows, (width or 1) - 1 :: -1]
    out = out[:, 0] if width is None else out
    assert out.shape == shape
    return out


def _equal(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def _same(got: Any, want: Any) -> None:
    """``got`` is ``want`` made afresh: the same values, dtype and shape, C-contiguous."""
    _equal(got, want)
    assert got.flags.c_contiguous and got.flags.writeable


@pytest.mark.parametrize("seed", range(60))
def test_join_rows_equals_concatenate(seed: int) -> None:
    kernels = _compiled()
    rng = random.Random(seed)
    dtype = rng.choice(_DTYPES)
    width = rng.choice([None, 1, 3, 13])
    parts = [_array(rng, dtype, rng.choice([0, 1, 2, 5, 55]), width)
             for _ in range(rng.choice([1, 2, 3, 100, 200]))]  # fmt: skip
    got = kernels.join_rows(parts, np.empty)
    _same(got, np.concatenate(parts))
    if len(parts) > 1:
        _same(joined(parts), np.concatenate(parts))
        a, b = _both(lambda: joined(parts))
        _same(a, b)


@pytest.mark.parametrize("seed", range(40))
def test_join_rows_of_sides_equals_beside(seed: int) -> None:
    kernels = _compiled()
    rng = random.Random(seed)
    dtype = rng.choice(_DTYPES)
    left, right = rng.choice([1, 4, 9]), rng.choice([1, 2, 33])
    blocks: list[Any] = []
    for _ in range(rng.choice([1, 2, 7, 100])):
        rows = rng.choice([0, 1, 3, 55])
        if rng.random() < 0.7:
            blocks.append((_array(rng, dtype, rows, left), _array(rng, dtype, rows, right)))
        else:  # a block whole
            blocks.append(_array(rng, dtype, rows, left + right))
    want = np.concatenate([np.concatenate(b, axis=1) if type(b) is tuple else b
                           for b in blocks])  # fmt: skip
    _same(kernels.join_rows(blocks, np.empty), want)
    got, numpy = _both(lambda: _beside(blocks))
    _equal(got, want)  # (one whole block: itself, either way)
    _equal(numpy, want)


def test_join_rows_of_three_sides() -> None:
    kernels = _compiled()
    parts = [(np.arange(6.0).reshape(3, 2), np.ones((3, 1)), np.zeros((3, 3)))] * 2
    want = np.concatenate([np.concatenate(p, axis=1) for p in parts])
    _same(kernels.join_rows(parts, np.empty), want)


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [np.zeros(3), np.zeros(3, dtype=np.int64)],  # mixed dtypes: numpy casts
        [np.zeros(3, dtype=object), np.zeros(2, dtype=object)],
        [np.zeros(3, dtype=[("a", "f8")]), np.zeros(2, dtype=[("a", "f8")])],
        [np.zeros(3, dtype=">f8"), np.zeros(2, dtype=">f8")],
        [np.zeros(3, dtype="U2"), np.zeros(2, dtype="U2")],
        [np.zeros(3, dtype=np.complex128), np.zeros(2, dtype=np.complex128)],
        [np.zeros(3).view(_Sub), np.zeros(2).view(_Sub)],
        [np.zeros(3), np.zeros(2).view(_Sub)],
        [np.zeros((2, 2, 2)), np.zeros((1, 2, 2))],
        [np.float64(1.0), np.float64(2.0)],
        [np.zeros(3), np.zeros((2, 1))],
        [np.zeros((3, 2)), np.zeros((2, 3))],
        [(np.zeros((3, 2)), np.zeros((2, 1)))],  # sides of unequal rows
        [(np.zeros((3, 2)), np.zeros(3))],  # a side not 2-D
        [()],
        [[1.0, 2.0], [3.0]],  # lists, not arrays
        [np.zeros(3), 7],
        # a large transposed view (rows not contiguous): numpy copies it in a better order
        [(np.zeros((5000, 2)), np.zeros((60, 5000)).T)],
        [np.zeros((70, 80)).T, np.zeros((3, 70))],
    ],
)
def test_join_rows_declines(parts: list[Any]) -> None:
    kernels = _compiled()
    assert kernels.join_rows(parts, np.empty) is None


def test_joined_declined_parts_as_numpy_joins_them() -> None:
    _compiled()
    mixed = [np.arange(3), np.linspace(0, 1, 2)]
    a, b = _both(lambda: joined(mixed))
    _same(a, np.concatenate(mixed))
    _same(b, a)
    with pytest.raises(ValueError):
        joined([np.zeros((3, 2)), np.zeros((2, 3))])


def test_joined_of_one_is_itself() -> None:
    one = np.arange(4)
    a, b = _both(lambda: joined([one]))
    assert a is one and b is one
