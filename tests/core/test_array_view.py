"""The compiled kernels' view of a numpy array (``np_view`` in ``monitor/_native.c``): read
from the array's own fields for an exact ndarray, it must be the buffer numpy's getbuffer
gives for the same request, field for field, and refuse what numpy refuses."""

from __future__ import annotations

import array
import ctypes
import sys
from typing import Any

import numpy as np
import pytest

from monitor import native

kernels = native.kernels()
pytestmark = pytest.mark.skipif(kernels is None, reason="the compiled module is not built")

SIMPLE, WRITABLE, FORMAT, ND = 0, 0x1, 0x4, 0x8
STRIDES = 0x10 | ND
C_CONTIGUOUS, F_CONTIGUOUS, ANY_CONTIGUOUS = 0x20 | STRIDES, 0x40 | STRIDES, 0x80 | STRIDES
REQUESTS = [
    base | extra
    for base in (SIMPLE, ND, STRIDES, C_CONTIGUOUS, F_CONTIGUOUS, ANY_CONTIGUOUS)
    for extra in (0, WRITABLE, FORMAT, WRITABLE | FORMAT)
]


class _Buffer(ctypes.Structure):
    """CPython's ``Py_buffer``."""

    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),  # (a raw pointer: PyBuffer_Release owns its reference)
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.POINTER(ctypes.c_ssize_t)),
        ("strides", ctypes.POINTER(ctypes.c_ssize_t)),
        ("suboffsets", ctypes.POINTER(ctypes.c_ssize_t)),
        ("internal", ctypes.c_void_p),
    ]


_get = ctypes.pythonapi.PyObject_GetBuffer
_get.argtypes = [ctypes.py_object, ctypes.POINTER(_Buffer), ctypes.c_int]
_get.restype = ctypes.c_int
_release = ctypes.pythonapi.PyBuffer_Release
_release.argtypes = [ctypes.POINTER(_Buffer)]
_release.restype = None


def _theirs(obj: Any, flags: int) -> tuple[Any, ...] | type[BaseException]:
    """What the object's own getbuffer answers: the view's fields as ``array_view`` gives
    them (without its first, whether the shortcut ran), or the error's type."""
    view = _Buffer()
    try:
        _get(obj, ctypes.byref(view), flags)
    except Exception as exc:  # (ctypes raises the error the call set)
        return type(exc)
    try:
        n = view.ndim
        shape = tuple(view.shape[d] for d in range(n)) if view.shape else None
        strides = tuple(view.strides[d] for d in range(n)) if view.strides else None
        return (view.buf or 0, view.len, view.itemsize, view.readonly, n, shape, strides)
    finally:
        _release(ctypes.byref(view))


def _mine(obj: Any, flags: int) -> tuple[bool, tuple[Any, ...] | type[BaseException]]:
    assert kernels is not None
    try:
        direct, *fields = kernels.array_view(obj, flags)
    except Exception as exc:
        return False, type(exc)
    return bool(direct), tuple(fields)


def _arrays() -> list[tuple[str, Any]]:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    frozen = np.arange(6, dtype=np.int64)
    frozen.setflags(write=False)

    class Sub(np.ndarray):
        pass

    return [
        ("float64 1-d", np.linspace(0.0, 1.0, 7)),
        ("float64 2-d", base),
        ("int64", np.arange(5, dtype=np.int64)),
        ("int32", np.arange(5, dtype=np.int32)),
        ("uint32", np.arange(5, dtype=np.uint32)),
        ("bool", np.array([True, False, True])),
        ("uint8", np.frombuffer(b"abc", dtype=np.uint8).copy()),
        ("big-endian float64", np.arange(3, dtype=">f8")),
        ("complex", np.arange(3, dtype=np.complex128)),
        ("0-d", np.array(2.5)),
        ("empty", np.empty(0)),
        ("empty 2-d", np.empty((3, 0))),
        ("one row", base[1:2]),
        ("a new axis (stride 0)", np.arange(6.0)[None, :]),
        ("broadcast", np.broadcast_to(np.arange(3.0), (2, 3))),
        ("every other", np.arange(10.0)[::2]),
        ("columns", base[:, 1:3]),
        ("transposed", base.T),
        ("Fortran", np.asfortranarray(base)),
        ("read-only", frozen),
        ("read-only view of bytes", np.frombuffer(b"12345678" * 2, dtype=np.float64)),
        ("subclass", np.arange(4.0).view(Sub)),
        ("bytes", b"abcdef"),
        ("bytearray", bytearray(b"abcdef")),
        ("array.array", array.array("d", [1.0, 2.0])),
    ]


@pytest.mark.parametrize("flags", REQUESTS)
@pytest.mark.parametrize(("name", "obj"), _arrays(), ids=[n for n, _ in _arrays()])
def test_the_view_is_numpys(name: str, obj: Any, flags: int) -> None:
    direct, mine = _mine(obj, flags)
    assert mine == _theirs(obj, flags)
    # The shortcut runs for every exact ndarray whose request it answers: numpy's answer
    # aside from a format string, Fortran order, an array contiguous only in Fortran order
    # asked to be contiguous, and a C-contiguous array's strides numpy would pack. So a
    # numpy laying the array out otherwise is seen here (the shortcut turns itself off).
    packed = True
    if isinstance(obj, np.ndarray) and obj.flags.c_contiguous and flags & STRIDES == STRIDES:
        step, own = obj.itemsize, []
        for n in reversed(obj.shape):
            own.append(step)
            step *= n
        packed = tuple(reversed(own)) == obj.strides
    answers = (
        type(obj) is np.ndarray
        and not isinstance(mine, type)
        and not flags & FORMAT
        and flags & F_CONTIGUOUS != F_CONTIGUOUS
        and packed
        and (obj.flags.c_contiguous or not flags & (C_CONTIGUOUS | ANY_CONTIGUOUS) & ~STRIDES)
    )
    assert direct == answers, (name, flags)


def test_a_view_holds_the_array_until_released() -> None:
    """The view takes a reference to the array and its release gives it back, as numpy's
    does (a view without one would let go of a reference it never took)."""
    assert kernels is not None
    a = np.arange(8.0)
    before = sys.getrefcount(a)
    for _ in range(3):
        kernels.array_view(a, C_CONTIGUOUS)  # taken and released
    assert sys.getrefcount(a) == before
