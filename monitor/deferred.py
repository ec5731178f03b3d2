"""Submodules of third-party packages that load with the parts ``monitor`` uses but that
``monitor`` never uses itself: their import is deferred to their first use.

``river.drift`` imports its example data sets (``river.drift.datasets``) as it loads, and
they pull in ``river.datasets``, ``river.stream``, scikit-learn and pandas: over a second
of ``monitor run``'s start for modules nothing here reads. :func:`install` puts a stand-in
in :data:`sys.modules` that loads the real module on the first access to one of its
attributes, so a program that does use those data sets still gets them, only later.

:mod:`monitor` calls :func:`install` as it is imported, before any of its modules imports
river.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
from typing import Any

__all__ = ["DEFERRED", "Deferred", "install"]

_LOCK = threading.RLock()  # one load at a time, whichever thread touches a stand-in first

#: The submodules deferred, by their full name.
DEFERRED: tuple[str, ...] = ("river.drift.datasets", "scipy.stats")


class Deferred(types.ModuleType):
    """A module whose code runs at the first access to an attribute it does not have yet.

    It carries the real module's ``__spec__``, ``__path__`` and ``__file__``, so the import
    system (which reads those) does not trigger the load; anything else does.
    """

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        with _LOCK:
            loaded = sys.modules.get(name)
            if loaded is not None and loaded is not self:  # another thread loaded it
                return getattr(loaded, attr)
            spec = self.__spec__
            if spec is None or spec.loader is None or loaded is None:
                raise AttributeError(f"module {name!r} has no attribute {attr!r}")
            real = importlib.util.module_from_spec(spec)
            sys.modules[name] = real
            try:
                spec.loader.exec_module(real)
            except BaseException:
                sys.modules[name] = self
                raise
            parent, _, leaf = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], leaf, real)
            self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def _defer(name: str) -> None:
    """Put a :class:`Deferred` stand-in for ``name`` in :data:`sys.modules`, unless its
    package is loaded already or not installed. Nothing of the package runs but its top
    level ``__init__`` (to find where it lives)."""
    parent, _, _leaf = name.rpartition(".")
    if name in sys.modules or parent in sys.modules:
        return
    top = importlib.util.find_spec(name.split(".")[0])
    if top is None or not top.submodule_search_locations:
        return
    where = os.path.join(next(iter(top.submodule_search_locations)), *parent.split(".")[1:])
    spec = importlib.machinery.PathFinder.find_spec(name, [where])
    if spec is None or spec.loader is None:
        return
    module = Deferred(name)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    if spec.submodule_search_locations is not None:
        module.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = module


def install() -> None:
    """Defer every module of :data:`DEFERRED` that is not loaded yet."""
    for name in DEFERRED:
        _defer(name)
