"""The error a configuration that cannot be used raises, in a module of its own.

:mod:`monitor.config` raises it for the file and :mod:`monitor.core.reference` for a
reference file the config names; both import it from here (``monitor.config`` re-exports
it), so neither depends on the other to report a problem.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))
