"""The package's version, in a module of its own so that any module can read it without
importing the package's public facade (:mod:`monitor`, which loads :mod:`monitor.api` on
first use)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
