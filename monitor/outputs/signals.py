"""The record of a closed pane's signals, as ``signals.jsonl`` holds it.

``monitor replay`` and :func:`monitor.evaluate` write one a line; ``monitor run`` logs the
same record (``pane_closed``, at debug level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from monitor import native
from monitor.core.model import PaneSignals

__all__ = ["signal_json", "signal_line", "signal_lines"]

_encode = msgspec.json.Encoder(enc_hook=float).encode  # numpy scalars as floats

#: id of a block's labels -> (the labels, their keys' pieces of a line; see _key_pieces)
_KEYS: dict[int, tuple[list[str], list[bytes]]] = {}


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


def signal_lines(sigs: Sequence[PaneSignals]) -> bytes:
    """:func:`signal_json` of each of ``sigs``, each followed by a newline, as one bytes.

    The panes closed together (their :attr:`~monitor.core.model.PaneSignals.row` in one
    :class:`~monitor.core.model.SignalBlock`) are written together: their pane ends and
    values, a row a pane, encoded by msgspec as one array of numbers (the floats and nulls
    :func:`signal_json` writes), laid between the lines' fixed pieces by one call of the
    compiled kernel (``monitor._native.signal_lines``), without their dicts. Without the
    kernel, or a pane without its row, :func:`signal_json` of each pane.

    >>> sig = PaneSignals("fraud", 60.0, {"f1@1h": 0.9, "psi:amount@1h": float("nan")})
    >>> signal_lines([sig, sig]) == 2 * (signal_json(sig) + b"\\n")
    True
    """
    compiled = native.kernels()
    out: list[bytes] = []
    i, n = 0, len(sigs)
    while i < n:
        sig = sigs[i]
        row = sig.row
        if compiled is None or row is None or type(sig.pane_end) is not float:
            out += (signal_json(sig), b"\n")
            i += 1
            continue
        block, model = row[0], sig.model
        picked = [row[1]]
        ends = [sig.pane_end]
        i += 1
        while i < n:  # the run of panes of the same block
            sig = sigs[i]
            row = sig.row
            if row is None or row[0] is not block or sig.model != model:
                break
            if type(sig.pane_end) is not float:
                break
            picked.append(row[1])
            ends.append(sig.pane_end)
            i += 1
        values = block.values
        numbers = np.empty((len(picked), values.shape[1] + 1))
        numbers[:, 0] = ends
        numbers[:, 1:] = values[picked]
        pieces = [b'{"model":' + _encode(model) + b',"ts":', *_key_pieces(block.labels)]
        out.append(compiled.signal_lines(pieces, _encode(numbers.ravel().tolist()), len(picked)))
    return b"".join(out)


def _key_pieces(labels: list[str]) -> list[bytes]:
    """The pieces of a line after its pane end: each signal's key (the first opening the
    signals' object), then the closing braces and the newline (kept per labels list)."""
    held = _KEYS.get(id(labels))
    if held is not None and held[0] is labels:
        return held[1]
    keys = [b"," + _encode(label) + b":" for label in labels]
    if keys:
        keys[0] = b',"signals":{' + keys[0][1:]
        keys.append(b"}}\n")
    else:
        keys.append(b',"signals":{}}\n')
    if len(_KEYS) >= 64:  # plans made afresh (a profile installed, a config reloaded)
        _KEYS.clear()
    _KEYS[id(labels)] = (labels, keys)
    return keys
