"""``signal_lines`` (the lines of ``signals.jsonl`` of many panes at once, from the blocks of
values their pane closes made, by the compiled ``signal_lines``) against one
``signal_json`` per pane (what it writes without the kernel): the same bytes."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from monitor.core.model import PaneSignals, SignalBlock
from monitor.outputs.signals import signal_json, signal_lines
from tests.core.test_native_planner import _both, _compiled

NAMES = ["f1@1h", "psi:amount@all", 'quote"d@1h', "back\\slash@ewm30m", "ünïcode@1h",
         "tab\tand\nnewline@all", "\x01ctl@all", "emoji🙂@1h", "", "n"]  # fmt: skip
SPECIALS = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, 1e308, -1e-300, 28.0,
            1e16, 1e-5, 123456789.125, 0.1]  # fmt: skip


def _values(rng: random.Random, rows: int, width: int) -> Any:
    values = np.array([[rng.gauss(0, 10 ** rng.randrange(-8, 9)) for _ in range(width)]
                       for _ in range(rows)]).reshape(rows, width)  # fmt: skip
    for _ in range(rng.randrange(rows * width + 1)):
        values[rng.randrange(rows), rng.randrange(width)] = rng.choice(SPECIALS)
    return values


def _block(rng: random.Random, model: str, start: float) -> list[PaneSignals]:
    """The panes of one batch, as pane_signals makes them: rows of a block, with their
    dicts or without."""
    labels = rng.sample(NAMES, rng.randrange(len(NAMES) + 1))
    rows = rng.randrange(1, 6)
    values = _values(rng, rows, len(labels))
    block = SignalBlock(dict.fromkeys(labels, 0.0), labels, values)
    ends = [start + 10.0 * i for i in range(rows)]
    if rng.random() < 0.5:  # the dicts not made (yet), as a pane close leaves them
        return [PaneSignals.of_row(model, ends[i], float(i), (block, i)) for i in range(rows)]
    dicts = [dict(zip(labels, row, strict=True)) for row in values.tolist()]
    return [PaneSignals(model, ends[i], d, float(i), (block, i)) for i, d in enumerate(dicts)]


@pytest.mark.parametrize("seed", range(40))
def test_lines_are_one_signal_json_per_pane(seed: int) -> None:
    """Blocks of several models, runs of a block cut by panes of another or by panes with
    no block, a pane end of another type, labels that JSON escapes: the bytes of one
    signal_json and a newline per pane, with the compiled kernel and without."""
    rng = random.Random(seed)
    sigs: list[PaneSignals] = []
    for _ in range(rng.randrange(0, 5)):
        sigs += _block(rng, rng.choice(["m", "fraud \"eu\"", "ü"]), rng.uniform(0, 2e9))
    for _ in range(rng.randrange(0, 3)):  # a pane made elsewhere (restored, by hand)
        end: Any = rng.choice([60.0, 60, 1e300])
        sigs.insert(rng.randrange(len(sigs) + 1), PaneSignals("x", end, {"a@1h": 0.5}))
    if sigs and rng.random() < 0.3:  # the same block's panes out of order, one twice
        rng.shuffle(sigs)
        sigs.append(sigs[0])
    got, fallback = _both(lambda: signal_lines(sigs))
    want = b"".join(signal_json(sig) + b"\n" for sig in sigs)  # makes the dicts
    assert got == want
    assert fallback == want


def test_no_pane_no_line() -> None:
    got, fallback = _both(lambda: signal_lines([]))
    assert got == fallback == b""


@pytest.mark.parametrize(
    ("pieces", "numbers", "rows"),
    [
        ([b"a", b"b"], b"[1,2]", 1),  # more items than rows * m
        ([b"a", b"b"], b"[1]", 2),  # fewer
        ([b"a", b"b"], b"[1,,2]", 3),  # an empty item
        ([b"a", b"b"], b"[]", 1),
        ([b"a", b"b"], b"1,2", 2),  # not an array
        ([b"a", b"b"], b"[1,2", 2),
        ([b"a", b"b"], b"", 0),
        ([b"a"], b"[]", 0),  # no number between pieces
        ([b"a", b"b"], b"[1]", -1),
    ],
)
def test_what_is_not_rows_of_numbers_is_refused(pieces: list[bytes], numbers: bytes,
                                                 rows: int) -> None:  # fmt: skip
    with pytest.raises(ValueError):
        _compiled().signal_lines(pieces, numbers, rows)


def test_no_row_no_line() -> None:
    assert _compiled().signal_lines([b"a", b"b"], b"[]", 0) == b""


def test_pieces_that_are_not_bytes_are_refused() -> None:
    with pytest.raises(TypeError):
        _compiled().signal_lines([b"a", "b"], b"[1]", 1)
