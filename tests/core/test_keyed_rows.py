"""The signals of a batch of panes made together (``batch_signals``, ``pane_signals``,
``keyed_rows`` and its compiled kernel, ``ErrorDetectors.feed_panes``) against what one
``close_signals`` per pane makes: the same dicts (keys in the same order, values of the
same bits), the same detector states and totals, the same ``model.last``."""

from __future__ import annotations

import copy
import math
import random
import struct
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.core.detectors import ErrorDetectors
from monitor.core.model import (
    PaneSignals,
    SignalBlock,
    batch_signals,
    close_signals,
    keyed_rows,
    ordered_errors,
    pane_signals,
    take_errors,
)
from monitor.core.panemetrics import model_signals
from tests.core.test_native_planner import _both


def _bits(d: dict[str, float]) -> list[tuple[str, type, bytes]]:
    return [(k, type(v), struct.pack("<d", v)) for k, v in d.items()]


def _values(rng: np.random.Generator, rows: int, width: int) -> Any:
    values = rng.normal(size=(rows, width))
    specials = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, 1e308]
    for _ in range(rng.integers(0, rows * width + 1)):
        values[rng.integers(rows), rng.integers(width)] = rng.choice(specials)
    return values


@pytest.mark.parametrize("seed", range(20))
def test_keyed_rows_are_the_template_with_each_row_written_in(seed: int) -> None:
    rng = np.random.default_rng(seed)
    width = int(rng.integers(1, 40))
    rows = int(rng.integers(0, 12))
    labels = [f"s{i}@w{i % 3}" for i in range(width)]
    template = dict.fromkeys(labels, 0.0)
    values = _values(rng, rows, width)
    got, want = _both(lambda: keyed_rows(template, labels, values))
    plain = []
    for row in values.tolist():
        out = template.copy()
        out.update(zip(labels, row, strict=True))
        plain.append(out)
    assert [_bits(d) for d in got] == [_bits(d) for d in want] == [_bits(d) for d in plain]
    assert template == dict.fromkeys(labels, 0.0)  # not written to
    # a view that is not contiguous reads the same
    wide = np.zeros((rows, 2 * width))
    wide[:, ::2] = values
    got, _ = _both(lambda: keyed_rows(template, labels, wide[:, ::2]))
    assert [_bits(d) for d in got] == [_bits(d) for d in plain]


def test_keyed_rows_labels_outside_the_template_are_added_after_it() -> None:
    template = {"a": 0.0, "b": 0.0}
    got, want = _both(lambda: keyed_rows(template, ["b", "c", "a"], np.array([[1.0, 2.0, 3.0]])))
    assert got == want == [{"a": 3.0, "b": 1.0, "c": 2.0}]
    assert list(got[0]) == list(want[0]) == ["a", "b", "c"]


def test_keyed_rows_checks_its_arguments() -> None:
    for on in (True, False):
        before = native.use(on)
        try:
            with pytest.raises(ValueError):
                keyed_rows({"a": 0.0}, ["a", "b"], np.zeros((2, 3)))
            with pytest.raises(ValueError):
                keyed_rows({"a": 0.0}, ["a"], np.zeros(3))
            assert keyed_rows({"a": 0.0}, [], np.zeros((2, 0))) == [{"a": 0.0}, {"a": 0.0}]
        finally:
            native.use(before)
    kernels = native.kernels()
    if kernels is None:
        return
    with pytest.raises(ValueError):
        kernels.keyed_rows({}, ["a", "b"], np.zeros(3))
    with pytest.raises(ValueError):
        kernels.keyed_rows({}, [], np.zeros(0))
    with pytest.raises(TypeError):
        kernels.keyed_rows({}, ["a", 1], np.zeros(2))
    with pytest.raises(TypeError):
        kernels.keyed_rows([], ["a"], np.zeros(1))
    with pytest.raises(ValueError):  # not C-contiguous
        kernels.keyed_rows({}, ["a"], np.zeros((2, 2))[:, :1])


class _Plan:
    def __init__(self, size: int) -> None:
        self.names = tuple(f"m{i}" for i in range(size))

    def keyed(self, windows: tuple[str, ...], extra: tuple[str, ...] = ()
              ) -> tuple[list[str], dict[str, float]]:  # fmt: skip
        labels = [f"{n}@{w}" for w in windows for n in (*self.names, *extra)]
        return labels, dict.fromkeys(labels, 0.0)


class _Values:
    """A stand-in for the last pane's WindowValues (only passed along)."""


def _model(detectors: list[Any] | None, rows: int) -> Any:
    return SimpleNamespace(
        detectors=ErrorDetectors(detectors, "error") if detectors else None,
        name="m",
        registry=SimpleNamespace(keys=list(range(rows))),
        last={},
        last_rows=0,
        last_detections={},
    )


def _errors(rng: random.Random, panes: list[int], nan: bool
            ) -> dict[int, dict[int, tuple[list[float], list[float]]]]:  # fmt: skip
    out: dict[int, dict[int, tuple[list[float], list[float]]]] = {}
    for pane in panes:
        if rng.random() < 0.2:
            continue  # a pane without errors
        for number in rng.sample(range(4), rng.randrange(1, 5)):
            k = rng.randrange(0, 60)
            ts = [pane * 10.0 + rng.randrange(4) * 2.5 for _ in range(k)]
            if nan and k and rng.random() < 0.3:
                ts[0] = math.nan
            out.setdefault(pane, {})[number] = (ts, [float(rng.random() < 0.4) for _ in ts])
    return out


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("detectors", [None, ["adwin", "cusum"], ["ddm", "page_hinkley"]])
def test_batch_signals_are_those_of_one_close_per_pane(seed: int, detectors: Any) -> None:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    windows = ("all", "1h", "ewm30m")[: rng.randrange(1, 4)]
    plan = _Plan(rng.randrange(1, 9))
    k = rng.randrange(1, 8)
    first = rng.randrange(0, 50)
    panes = list(range(first, first + k))
    whole = _values(nrng, k, len(windows) * len(plan.names))
    rows = rng.randrange(1, 4)
    last: Any = _Values() if rng.random() < 0.7 else None
    # many panes of errors first, so that the detectors have warmed up
    warm = list(range(first))
    errors = _errors(rng, warm + panes, nan=rng.random() < 0.5)
    one = _model(detectors, rows)
    for pane in warm:
        held = take_errors(errors, [pane])
        if one.detectors is not None:
            one.detectors.feed(ordered_errors(*held))
    together = copy.deepcopy(one)
    for on in (True, False):
        before = native.use(on)
        try:
            a, b = copy.deepcopy(one), copy.deepcopy(together)
            buffered_a = copy.deepcopy(errors)
            buffered_b = copy.deepcopy(errors)
            want = []
            for j, pane in enumerate(panes):
                values = last if j == k - 1 else None
                model_plan: Any = plan
                signals = close_signals(a, model_plan, windows, whole[j].tolist(), buffered_a,
                                        pane, values)  # fmt: skip
                want.append(signals)
            taken = None
            if b.detectors is not None:
                taken = [take_errors(buffered_b, [pane]) for pane in panes]
            e, buffered_e = copy.deepcopy(together), copy.deepcopy(errors)
            got = batch_signals(b, model_plan, windows, whole, taken, last)
            # pane_signals: the same dicts, each pane with the same values in its block's row
            if e.detectors is not None:
                taken = [take_errors(buffered_e, [pane]) for pane in panes]
            ends = [10.0 * (pane + 1) for pane in panes]
            made = pane_signals(e, model_plan, windows, whole, taken, last, ends, [1.0] * k)
            # the signals as the panes' values and each detector's own count make them,
            # with no batch_signals nor keyed_rows (close_signals is one pane of it)
            c, buffered_c, apart = copy.deepcopy(one), copy.deepcopy(errors), []
            for j, pane in enumerate(panes):
                found: dict[str, float] = {}
                if c.detectors is not None:
                    items = ordered_errors(*take_errors(buffered_c, [pane]))
                    for name, det in c.detectors.detectors.items():
                        n = det.update_many(list(items)) if items else 0
                        found[f"{name}:{c.detectors.stream}"] = float(n)
                apart.append(model_signals(model_plan, windows, whole[j].tolist(), found))
        finally:
            native.use(before)
        assert [_bits(d) for d in want] == [_bits(d) for d in apart]
        assert [list(d) for d in want] == [list(d) for d in apart]
        assert [_bits(d) for d in got] == [_bits(d) for d in want]
        assert [_bits(sig.signals) for sig in made] == [_bits(d) for d in want]
        assert [(sig.model, sig.pane_end, sig.predictions_total) for sig in made] == [
            ("m", end, 1.0) for end in ends
        ]
        for i, sig in enumerate(made):
            assert sig.row is not None and sig.row[1] == i
            block = sig.row[0]
            assert block is made[0].row[0]  # type: ignore[index]
            assert not np.shares_memory(block.values, whole)  # not a view of reused arrays
            row = dict(zip(block.labels, block.values[i].tolist(), strict=True))
            assert _bits(row) == _bits(sig.signals)
        assert e.last_detections == a.last_detections
        assert b.last_detections == a.last_detections
        if last is not None:
            assert b.last_rows == a.last_rows == rows
            assert b.last._values is a.last._values is last
            assert list(b.last._extra) == list(a.last._extra)
            for name, column in a.last._extra.items():
                np.testing.assert_array_equal(b.last._extra[name], column)
        else:
            assert b.last == a.last == {}
        if a.detectors is not None:
            assert b.detectors.totals == a.detectors.totals
            for name, det in a.detectors.detectors.items():  # the same state: the same future
                probe = [float(rng.random() < 0.6) for _ in range(400)]
                other = b.detectors.detectors[name]
                assert other.update_many(list(probe)) == det.update_many(list(probe))


def test_a_pane_made_from_its_row_is_the_pane_made_with_its_dict() -> None:
    """PaneSignals.of_row: its signals made when first read, the same dict (keys in order,
    values of the same bits); equal to the pane made with that dict, the same repr, and
    pickled and copied with its signals, before and after they were read."""
    import pickle

    labels = ["a@all", "b@all", "a@1h", "b@1h"]
    template = dict.fromkeys(labels, 0.0)
    values = _values(np.random.default_rng(7), 3, len(labels))
    values[np.isnan(values)] = 0.25  # NaN == NaN is False: the dicts would not compare equal
    block = SignalBlock(template, labels, values)
    for i, row in enumerate(values.tolist()):
        eager = PaneSignals("m", 10.0 * i, dict(zip(labels, row, strict=True)), 5.0)
        for read_first in (False, True):
            lazy = PaneSignals.of_row("m", 10.0 * i, 5.0, (block, i))
            if read_first:
                assert _bits(lazy.signals) == _bits(eager.signals)
            copied = copy.deepcopy(lazy)
            loaded = pickle.loads(pickle.dumps(lazy))
            assert lazy == eager
            assert repr(lazy) == repr(eager)
            assert _bits(lazy.signals) == _bits(eager.signals)
            assert _bits(copied.signals) == _bits(loaded.signals) == _bits(eager.signals)
            with pytest.raises(AttributeError):
                lazy.nothing  # type: ignore[attr-defined]  # noqa: B018
    bare = PaneSignals.__new__(PaneSignals)  # no row: no signals to make
    with pytest.raises(AttributeError):
        bare.signals  # noqa: B018

