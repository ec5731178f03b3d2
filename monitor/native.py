"""Which implementation of the compiled kernels runs: ``monitor._native`` (C, built by
``pip install`` when a C compiler and Python's headers are there) or the numpy code beside
each kernel's caller, which gives the same results.

``MONITOR_NATIVE=0`` in the environment turns the compiled kernels off (the tests run both
ways); :func:`use` does the same in a process.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["available", "kernels", "use"]


def _load() -> ModuleType | None:
    try:
        from monitor import _native
    except ImportError:
        return None
    return _native


_MODULE = _load()
_ON = os.environ.get("MONITOR_NATIVE", "1") != "0"


def available() -> bool:
    """Whether the compiled module is built and importable."""
    return _MODULE is not None


def kernels() -> ModuleType | None:
    """The compiled module when it is built and on, else None (callers run their numpy code)."""
    return _MODULE if _ON else None


def use(on: bool) -> bool:
    """Turn the compiled kernels on or off in this process; returns the previous setting."""
    global _ON
    before = _ON
    _ON = on
    return before
