"""monitor: a streaming drift and performance monitor for deployed ML models.

The daemon is the ``monitor`` command; :func:`evaluate` runs the same core over tables
from Python (see :mod:`monitor.api`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor import deferred as _deferred
from monitor.version import __version__

_deferred.install()  # before any module of the package imports river

__all__ = ["Result", "__version__", "evaluate"]

if TYPE_CHECKING:
    from monitor.api import Result, evaluate


def __getattr__(name: str) -> Any:
    # The API loads on first use, so ``monitor --version`` and the daemon's start stay fast.
    if name in ("Result", "evaluate"):
        from monitor import api

        return getattr(api, name)
    raise AttributeError(f"module 'monitor' has no attribute {name!r}")
