"""The record of a closed pane's signals, as ``signals.jsonl`` holds it.

``monitor replay`` and :func:`monitor.evaluate` write one a line; ``monitor run`` logs the
same record (``pane_closed``, at debug level).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from monitor.core.model import PaneSignals

__all__ = ["signal_json", "signal_line"]

_encode = msgspec.json.Encoder(enc_hook=float).encode  # numpy scalars as floats


def _clean(value: float) -> float | None:
    return value if math.isfinite(value) else None


def signal_line(sig: PaneSignals) -> dict[str, Any]:
    """A ``signals.jsonl`` record: model, pane end (Unix seconds), signal values (null = NaN).

    >>> signal_line(PaneSignals("fraud", 60.0, {"f1@1h": 0.9, "psi:amount@1h": float("nan")}))
    {'model': 'fraud', 'ts': 60.0, 'signals': {'f1@1h': 0.9, 'psi:amount@1h': None}}
    """
    return {
        "model": sig.model,
        "ts": sig.pane_end,
        "signals": {k: _clean(v) for k, v in sig.signals.items()},
    }


def signal_json(sig: PaneSignals) -> bytes:
    """:func:`signal_line` as one line of JSON (no newline), as ``signals.jsonl`` holds it:
    msgspec writes a NaN or an infinity as null, so the values need no pass of their own.

    >>> signal_json(PaneSignals("fraud", 60.0, {"f1@1h": 0.9, "psi:amount@1h": float("nan")}))
    b'{"model":"fraud","ts":60.0,"signals":{"f1@1h":0.9,"psi:amount@1h":null}}'
    """
    return _encode({"model": sig.model, "ts": sig.pane_end, "signals": sig.signals})
