"""The record of a closed pane's signals, as ``signals.jsonl`` holds it.

``monitor replay`` and :func:`monitor.evaluate` write one a line; ``monitor run`` logs the
same record (``pane_closed``, at debug level).
"""

from __future__ import annotations

import math
from typing import Any

from monitor.core.engine import PaneSignals

__all__ = ["signal_line"]


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
