"""Stage 2's bookkeeping shortcuts give what the general code gives: the detector errors a
pane close takes (the pane looked up while the lowest pane buffered is known, every pane
at or below it searched otherwise), and an applied piece held as a block of the columns
its events touched (spread over the width when read)."""

from __future__ import annotations

from typing import Any

import numpy as np

from monitor.config import config_from_mapping
from monitor.core.model import take_errors
from monitor.core.model_stage import ModelStage, _Piece

Buffer = dict[int, dict[int, tuple[list[float], list[float]]]]


def _stage() -> ModelStage:
    model = {"name": "m", "task": "binary", "positive_class": 1, "windows": ["all"],
             "detectors": ["adwin"]}
    cfg = config_from_mapping({"models": [model]})
    return ModelStage(cfg, "m", 1)


def _buffer(stage: ModelStage, pane: int, number: int, ts: list[float]) -> None:
    pd: Any = type("PD", (), {"pane": pane, "err_ts": ts, "err": [t / 100 for t in ts]})()
    stage._buffer_errors(number, pd)


def _copy(buffer: Buffer) -> Buffer:
    return {p: {n: (list(a), list(b)) for n, (a, b) in parts.items()}
            for p, parts in buffer.items()}  # fmt: skip


def test_errors_through_a_pane_are_those_of_every_pane_at_or_below_it() -> None:
    stage = _stage()
    rng = np.random.default_rng(0)
    for pane in range(4, 12):  # a backlog's open panes, partitions in any order
        for number in rng.permutation(3).tolist():
            _buffer(stage, pane, number, (pane * 10 + rng.random(3)).tolist())
    for pane in range(4, 8):  # closed in order: looked up
        want = take_errors(_copy(stage.error_panes), pane)
        assert stage._errors_through(pane) == want
    _buffer(stage, 6, 1, [61.0])  # below the lowest pane left: the next close searches
    _buffer(stage, 2, 0, [21.0])
    before = _copy(stage.error_panes)
    got = stage._errors_through(8)
    assert got == take_errors(before, 8)
    assert got[0][:2] == [21.0, 61.0]  # panes 2 and 6 first, then pane 8's
    assert min(stage.error_panes) == 9
    stage.error_panes = {9: {0: ([95.0], [0.5])}, 3: {1: ([31.0], [0.2])}}  # restored
    assert stage._errors_through(9) == ([31.0, 95.0], [0.2, 0.5])
    assert stage.error_panes == {}
    assert stage._errors_through(10) == ([], [])


def test_a_piece_of_some_columns_reads_as_the_whole_rows() -> None:
    rng = np.random.default_rng(1)
    cols = np.array([1, 4, 5], dtype=np.int64)
    plain, decay = rng.random((2, 3)), [rng.random((2, 3))]
    rows = np.array([0, 2], dtype=np.int64)
    piece = _Piece(7, plain, decay, 0, None, rows, 3, cols, 6)
    wide = np.zeros((2, 6))
    wide[:, cols] = plain
    whole = np.zeros((3, 6))
    whole[rows] = wide
    assert np.array_equal(piece.blocks()[0], wide)
    assert np.array_equal(piece.plain, whole)
    whole_decay = np.zeros((3, 6))
    whole_decay[np.ix_(rows, cols)] = decay[0]
    assert np.array_equal(piece.decay[0], whole_decay)
    more = rng.random((3, 6))
    piece.add(more, [more])
    assert piece.rows is None and piece.cols is None
    assert np.array_equal(piece.plain, whole + more)
    assert np.array_equal(piece.decay[0], whole_decay + more)


def test_a_warmup_sample_reads_as_its_chunks_one_by_one() -> None:
    """Chunks of different slice widths (messages with and without a version), missing
    values and values of the wrong type: the sample's columns are each chunk's in order."""
    from monitor.core.layout import Layout
    from monitor.core.warmup_buffer import WarmChunk, sample_columns

    layout = Layout("binary", 2, 10, features={"x": "numeric", "c": "categorical"})
    chunks = [
        WarmChunk.of(layout, [1.0, 2.0], [[0, 1], [0, -1]],
                     [{"x": 1.5, "c": "a"}, {"x": None}], [1, 0], [0.2, 0.7]),
        WarmChunk.of(layout, [], [], [], [], []),
        WarmChunk.of(layout, [3.0], [[0]], [{"x": "oops", "c": "b"}], [1], [float("nan")]),
        WarmChunk.of(layout, [4.0], [[0, 2, 3]], [None], [0], [0.9]),
    ]  # fmt: skip
    columns, predictions, scores = sample_columns(chunks, layout)
    want: dict[str, list[Any]] = {"x": [], "c": []}
    for chunk in chunks:
        for name, values in chunk.columns(layout).items():
            want[name].extend(values)
    assert columns == want
    assert predictions == [1, 0, 1, 0]
    assert np.array_equal(scores, [0.2, 0.7, np.nan, 0.9], equal_nan=True)
    assert sample_columns([], layout) == ({"x": [], "c": []}, [], [])
