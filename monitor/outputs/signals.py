"""The record of a closed pane's signals, as ``signals.jsonl`` holds it.

``monitor replay`` and :func:`monitor.evaluate` write one a line; ``monitor run`` logs the
same record (``pane_closed``, at debug level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
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
    :func:`signal_json` writes), laid between the lines' fixed pieces by one call
    (``monitor._native.signal_lines``, else :func:`_lay`), not a dict encoded per pane.

    >>> sig = PaneSignals("fraud", 60.0, {"f1@1h": 0.9, "psi:amount@1h": float("nan")})
    >>> signal_lines([sig, sig]) == 2 * (signal_json(sig) + b"\\n")
    True
    """
    out: list[bytes] = []
    i, n = 0, len(sigs)
    while i < n:
        sig = sigs[i]
        row = sig.row
        if row is None or type(sig.pane_end) is not float:
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
        out.append(_lines(pieces, _encode(numbers.ravel().tolist()), len(picked)))
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


def _lines(pieces: list[bytes], numbers: bytes, rows: int) -> bytes:
    """``rows`` lines of ``pieces`` with the items of the JSON array ``numbers`` between
    them (see :func:`_lay`), by the compiled kernel when it is on."""
    compiled = native.kernels()
    if compiled is not None:
        out: bytes = compiled.signal_lines(pieces, numbers, rows)
        return out
    return _lay(pieces, numbers, rows)


def _lay(pieces: list[bytes], numbers: bytes, rows: int) -> bytes:
    """``rows`` lines, each ``pieces[0] n0 pieces[1] n1 ... pieces[m]`` with the next ``m``
    items of ``numbers``, a JSON array of ``rows * m`` numbers or nulls (what the compiled
    ``signal_lines`` makes)."""
    m = len(pieces) - 1
    if m < 1 or rows < 0:
        raise ValueError("pieces: at least two expected, rows >= 0")
    if numbers[:1] != b"[" or numbers[-1:] != b"]":
        raise ValueError("numbers: a JSON array expected")
    items = numbers[1:-1].split(b",") if len(numbers) > 2 else []
    if len(items) != rows * m or b"" in items:
        raise ValueError("numbers: not an array of rows * m numbers")
    head, last = pieces[:m], pieces[m]
    return b"".join(
        chain.from_iterable(
            (*chain.from_iterable(zip(head, items[r * m : (r + 1) * m], strict=True)), last)
            for r in range(rows)
        )
    )
