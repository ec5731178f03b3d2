"""Logging for the daemon: structlog, configured once, one event a line.

:func:`configure_logging` is called once at start by the CLI. It routes *everything*
through the standard library's root handler and :class:`structlog.stdlib.ProcessorFormatter`,
so structlog's own loggers and stdlib loggers (kafka-python's ``kafka.*``) come out the
same way: JSON lines on stdout in a container (stdout is not a TTY), the console renderer
on a TTY. Each line carries ``timestamp`` (ISO 8601, UTC), ``level`` and ``logger``.

Values of keys that look like secrets (``password``, ``secret``, ``token``, ...) are
replaced by ``"***"`` before rendering, as a last line of defence; callers should not
pass secrets to the logger in the first place (config secrets are ``SecretStr``).

Noisy, repetitive events (rejected messages, failing scrapes) go through
:func:`rate_limited` or :class:`RateLimitedLogger`: one line per key per interval, the
next line for that key carrying ``suppressed=N``.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "RateLimitedLogger",
    "RateLimiter",
    "configure_logging",
    "rate_limited",
]

_LEVELS = {"debug", "info", "warning", "error", "critical"}
_HANDLER_MARK = "_monitor_handler"
_SECRET_KEY = re.compile(r"passw(or)?d|secret|token|credential|api_?key|private_key", re.I)


def _redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace the values of secret-looking keys by ``***``."""
    for key in event_dict:
        if key != "event" and _SECRET_KEY.search(key):
            event_dict[key] = "***"
    return event_dict


def configure_logging(
    level: str = "info",
    json: bool | None = None,
    *,
    stream: TextIO | None = None,
    kafka_level: str = "warning",
) -> None:
    """Configure structlog and the standard library's root logger, once, for the whole process.

    Parameters
    ----------
    level
        Lowest level emitted: ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
    json
        JSON lines when true, the console renderer when false; by default JSON unless
        ``stream`` is a TTY.
    stream
        Where lines go; ``sys.stdout`` by default.
    kafka_level
        Lowest level of kafka-python's ``kafka`` loggers, which are chatty at ``info``.

    Calling it again replaces the previous configuration (no duplicated handlers).
    """
    for name, value in (("level", level), ("kafka_level", kafka_level)):
        if value.lower() not in _LEVELS:
            raise ValueError(f"Invalid {name!r}: {value!r}; valid: {sorted(_LEVELS)}")
    out = stream if stream is not None else sys.stdout
    if json is None:
        json = not _isatty(out)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer: list[Processor]
    if json:
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=_isatty(out))]

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("kafka").setLevel(kafka_level.upper())

    # The processor list is refilled in place, never replaced: a logger cached on first use
    # holds the list it was bound with, so a second configuration (the TUI changing the level,
    # a test capturing logs) must reach it through that same list.
    processors = structlog.get_config()["processors"]
    processors[:] = [
        structlog.stdlib.filter_by_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        *shared,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Safe: the level is checked on the stdlib logger at call time and the renderer
        # lives in the handler, so reconfiguring still applies to cached loggers.
        cache_logger_on_first_use=True,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class RateLimiter:
    """Allows one event per key per interval and counts the ones it refused.

    Thread-safe. At most ``max_keys`` keys are remembered; past that the oldest key is
    forgotten (with its suppressed count), so unbounded key sets cannot grow memory.

    >>> now = [0.0]
    >>> limiter = RateLimiter(10.0, clock=lambda: now[0])
    >>> limiter.allow("k"), limiter.allow("k"), limiter.allow("k")
    (0, None, None)
    >>> now[0] = 10.0
    >>> limiter.allow("k")
    2
    """

    def __init__(
        self,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if not interval_s >= 0:
            raise ValueError(f"Invalid 'interval_s': {interval_s!r}; must be >= 0")
        if max_keys < 1:
            raise ValueError(f"Invalid 'max_keys': {max_keys!r}; must be >= 1")
        self.interval_s = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> [time of the last allowed event, events suppressed since]
        self._state: MutableMapping[Hashable, list[float]] = {}

    def allow(self, key: Hashable, interval_s: float | None = None) -> int | None:
        """``None`` when the event must be dropped, else how many were dropped since the last.

        ``interval_s`` overrides the limiter's interval for this call.
        """
        interval = self.interval_s if interval_s is None else interval_s
        now = self._clock()
        with self._lock:
            entry = self._state.get(key)
            if entry is not None and now - entry[0] < interval:
                entry[1] += 1
                return None
            suppressed = 0 if entry is None else int(entry[1])
            if entry is None:
                if len(self._state) >= self._max_keys:
                    del self._state[next(iter(self._state))]
            else:
                del self._state[key]  # re-insert: dict order is least recently allowed first
            self._state[key] = [now, 0.0]
            return suppressed


_GLOBAL_LIMITER = RateLimiter(0.0)


def rate_limited(key: Hashable, interval_s: float) -> int | None:
    """Process-wide rate limit: ``None`` to skip this line, else the count suppressed since.

    Usage::

        if (suppressed := rate_limited(("reject", reason), 10.0)) is not None:
            log.warning("message_rejected", reason=reason, suppressed=suppressed)
    """
    return _GLOBAL_LIMITER.allow(key, interval_s)


class RateLimitedLogger:
    """A logger that emits at most one line per key per interval.

    The first line for a key after some were suppressed carries ``suppressed=N``.

    >>> class Printer:
    ...     def warning(self, event, **fields):
    ...         print(event, fields)
    >>> log = RateLimitedLogger(Printer(), 60.0)
    >>> log.warning("bad_value", "message_rejected", reason="bad_value")
    message_rejected {'reason': 'bad_value'}
    0
    >>> log.warning("bad_value", "message_rejected", reason="bad_value") is None
    True
    """

    def __init__(
        self,
        logger: Any,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._logger = logger
        self._limiter = RateLimiter(interval_s, clock=clock, max_keys=max_keys)

    def enabled(self, level: str) -> bool:
        """Whether a line at ``level`` would be written at all (the level configured), so
        that a caller need not build the fields of a line no one will read (a debug line
        per closed pane, at the default level ``info``). True for a logger that cannot
        tell."""
        check = getattr(self._logger, "isEnabledFor", None)
        return True if check is None else bool(check(logging.getLevelName(level.upper())))

    def log(self, level: str, key: Hashable, event: str, **fields: Any) -> int | None:
        """Log ``event`` at ``level`` unless ``key`` was logged within the interval.

        Returns ``None`` when suppressed, else the number suppressed before this line.
        """
        suppressed = self._limiter.allow(key)
        if suppressed is None:
            return None
        if suppressed:
            fields["suppressed"] = suppressed
        getattr(self._logger, level)(event, **fields)
        return suppressed

    def debug(self, key: Hashable, event: str, **fields: Any) -> int | None:
        """Rate-limited ``debug``."""
        return self.log("debug", key, event, **fields)

    def info(self, key: Hashable, event: str, **fields: Any) -> int | None:
        """Rate-limited ``info``."""
        return self.log("info", key, event, **fields)

    def warning(self, key: Hashable, event: str, **fields: Any) -> int | None:
        """Rate-limited ``warning``."""
        return self.log("warning", key, event, **fields)

    def error(self, key: Hashable, event: str, **fields: Any) -> int | None:
        """Rate-limited ``error``."""
        return self.log("error", key, event, **fields)
