"""The compiled kernel that reads numbers straight from the decoded structs
(``monitor._native.read_numbers``) against the Python code that stands in for it:
the same numeric block and the same other columns from ``fastpath._feature_columns``
over random groups of structs, dicts (messages decoded the general way) and None, with
floats, ints about 2**53 and beyond, None, absent features, bools, strings, NaN and
infinities; the same event times and scores; the kernel declining what it does not
take; its argument checks; and the same terms from ``Layout.feature_terms`` whether
given the block or the columns."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest

from monitor import native
from monitor.core.fastpath import (
    _all_features,
    _feature_columns,
    _read_numbers,
    _times,
    _typed,
)
from monitor.core.layout import Layout
from monitor.core.reference import profile_from_columns
from monitor.events.codec import DEFAULT_LIMITS

pytestmark = pytest.mark.usefixtures("kernels")

FEATURES = {"a": "numeric", "b": "categorical", "c": "numeric", "d": "numeric"}
NAMES = tuple(FEATURES)

#: Values of every kind a feature may hold, the kernel's and the others.
NUMBERS: list[Any] = [0.0, -0.0, 1.5, -2.25, 1e300, -1e-300, 5e-324]
ODD_NUMBERS: list[Any] = [math.nan, math.inf, -math.inf]
INTS: list[Any] = [0, 1, -7, 2**53, -(2**53), 2**53 - 1, 123456789]
BIG_INTS: list[Any] = [2**53 + 1, -(2**53) - 1, 2**63, -(2**63) - 1, 2**70, 10**400]
OTHERS: list[Any] = [True, False, "x", "", "1.5", [1.0], {"k": 1}]


class _Engine:
    """What ``_feature_columns`` reads of an engine: its models' features and limits."""

    def __init__(self) -> None:
        self.models = [SimpleNamespace(config=SimpleNamespace(features=FEATURES))]
        self.limits = DEFAULT_LIMITS


def _struct(values: dict[str, Any]) -> Any:
    """The features struct of the typed decoder with these values (the others None)."""
    _, empty, attrs = _typed(NAMES, DEFAULT_LIMITS)
    return type(empty)(**{attrs[n]: v for n, v in values.items()})


def _value(rng: random.Random, kinds: list[list[Any]]) -> Any:
    pool = rng.choice(kinds)
    return rng.choice(pool) if pool else None


def _group(rng: random.Random, n: int, kinds: list[list[Any]], dicts: float) -> list[Any]:
    """n events with a features struct, a dict (some features absent) or None."""
    group = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            features: Any = None
        else:
            values = {name: _value(rng, kinds) for name in NAMES if rng.random() < 0.9}
            values["b"] = rng.choice(["u", "v", None, 3.0])
            features = values if r < 0.1 + dicts else _struct(values)
        group.append(SimpleNamespace(features=features))
    return group


def _columns(group: list[Any], compiled: bool) -> tuple[dict[str, list[Any]], Any]:
    engine = _Engine()
    assert _all_features(engine) == NAMES
    model = SimpleNamespace(index=0, layout=Layout("binary", features=FEATURES))
    before = native.use(compiled)
    try:
        return _feature_columns(engine, model, group)  # type: ignore[arg-type]
    finally:
        native.use(before)


def _same(got: tuple[dict[str, list[Any]], Any], want: tuple[dict[str, list[Any]], Any]) -> None:
    assert got[0] == want[0]
    codes, x = got[1]
    want_codes, want_x = want[1]
    assert codes.dtype == np.int8 and x.dtype == np.float64
    assert codes.shape == x.shape == want_x.shape
    assert np.array_equal(codes, want_codes)
    assert np.array_equal(x.view(np.uint64), want_x.view(np.uint64))  # bit for bit


SETS = {
    "numbers": [NUMBERS, []],
    "with ints": [NUMBERS, INTS, []],
    "odd numbers": [NUMBERS, ODD_NUMBERS, []],
    "big ints": [NUMBERS, INTS, BIG_INTS],
    "anything": [NUMBERS, ODD_NUMBERS, INTS, BIG_INTS, OTHERS, []],
}


@pytest.mark.parametrize("kinds", list(SETS))
@pytest.mark.parametrize("dicts", [0.0, 0.05])
def test_the_kernel_reads_what_python_reads(kinds: str, dicts: float) -> None:
    rng = random.Random(f"{kinds}/{dicts}")
    for n in [0, 1, 2, 5, 30, 200]:
        for _ in range(20):
            group = _group(rng, n, SETS[kinds], dicts)
            try:
                want = _columns(group, compiled=False)
            except OverflowError:  # 10**400: numpy cannot make it a float, nor the kernel
                with pytest.raises(OverflowError):
                    _columns(group, compiled=True)
                continue
            _same(_columns(group, compiled=True), want)


def _block(feats: list[Any], names: tuple[str, ...] = ("f0", "f2")) -> Any:
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("the numpy code has no kernel to call")
    _, empty, _ = _typed(NAMES, DEFAULT_LIMITS)
    codes = np.full((len(names), len(feats)), -1, dtype=np.int8)
    x = np.zeros((len(names), len(feats)))
    return kernels.read_numbers(feats, type(empty), names, codes, x), codes, x


def test_the_kernel_takes_floats_exact_ints_and_none() -> None:
    feats = [_struct({"a": 1.5, "c": None}), None, _struct({"a": 2**53, "c": -(2**53)}),
             _struct({"a": -0.0, "c": math.inf})]  # fmt: skip
    ok, codes, x = _block(feats)
    assert ok
    assert codes.tolist() == [[0, 1, 0, 0], [1, 1, 0, 0]]
    assert x[0, [0, 2]].tolist() == [1.5, 2.0**53] and np.signbit(x[0, 3])
    assert np.isnan(x[:, 1]).all() and np.isnan(x[1, 0]) and x[1, 3] == math.inf
    assert x[1, 2] == -(2.0**53)


@pytest.mark.parametrize(
    "value", [True, False, "1", 2**53 + 1, -(2**53) - 1, 2**64, 1.5 + 0j, [1.0]]
)
def test_the_kernel_declines_any_other_value(value: Any) -> None:
    ok, _, _ = _block([_struct({"a": 1.0}), _struct({"c": value})])
    assert not ok


def test_the_kernel_declines_dicts_and_other_structs() -> None:
    assert not _block([_struct({"a": 1.0}), {"a": 1.0}])[0]
    other = type(_typed(("z",), DEFAULT_LIMITS)[1])
    assert not _block([other(f0=1.0)], ("f0",))[0]
    assert _block([])[0]  # no events: nothing to decline


def test_the_kernel_marks_what_it_does_not_take_when_asked() -> None:
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("the numpy code has no kernel to call")
    _, empty, _ = _typed(NAMES, DEFAULT_LIMITS)
    feats = [_struct({"a": "x", "c": 2.5}), None, {"a": 1.0}, _struct({"a": 2**53 + 1, "c": 3}),
             _struct({"a": True, "c": None})]  # fmt: skip
    codes = np.full((2, len(feats)), -1, dtype=np.int8)
    x = np.zeros((2, len(feats)))
    assert kernels.read_numbers(feats, type(empty), ("f0", "f2"), codes, x, True) is True
    assert codes.tolist() == [[2, 1, 2, 2, 2], [0, 1, 2, 0, 1]]
    assert x[1, [0, 3]].tolist() == [2.5, 3.0]
    assert np.isnan(x[0]).all() and np.isnan(x[1, [1, 2, 4]]).all()
    # not a slot of the struct: declined all the same
    assert kernels.read_numbers(feats, type(empty), ("nope",), codes[:1], x[:1], True) is False


def test_the_kernel_checks_its_arguments() -> None:
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("the numpy code has no kernel to call")
    kind = type(_typed(NAMES, DEFAULT_LIMITS)[1])
    feats = [_struct({"a": 1.0}), None]
    codes, x = np.zeros((2, 2), np.int8), np.zeros((2, 2))
    with pytest.raises(TypeError):
        kernels.read_numbers(tuple(feats), kind, ("f0", "f1"), codes, x)
    with pytest.raises(TypeError):
        kernels.read_numbers(feats, kind, ["f0", "f1"], codes, x)
    # not a slot of the struct: declined, for the caller to read
    assert kernels.read_numbers(feats, kind, ("f0", "__init__"), codes, x) is False
    assert kernels.read_numbers(feats, kind, ("f0", "nope"), codes, x) is False
    assert kernels.read_numbers([SimpleNamespace(f0=1.0)], SimpleNamespace, ("f0",),
                                codes[:1, :1], x[:1, :1]) is False  # fmt: skip
    with pytest.raises(TypeError):
        kernels.read_numbers(feats, kind, ("f0", 1), codes, x)
    with pytest.raises(TypeError):
        kernels.read_numbers(feats, 1.0, ("f0", "f1"), codes, x)
    with pytest.raises(TypeError):  # item sizes
        kernels.read_numbers(feats, kind, ("f0", "f1"), x, x)
    with pytest.raises(TypeError):
        kernels.read_numbers(feats, kind, ("f0", "f1"), codes, codes)
    with pytest.raises(ValueError):  # lengths
        kernels.read_numbers(feats, kind, ("f0",), codes, x)
    with pytest.raises(ValueError):
        kernels.read_numbers(feats, kind, ("f0", "f1"), codes, np.zeros((2, 3)))
    assert kernels.read_numbers(feats, kind, ("f0", "f1"), codes, x) is True
    x.setflags(write=False)
    with pytest.raises(ValueError):  # a read-only output
        kernels.read_numbers(feats, kind, ("f0", "f1"), codes, x)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the PCA of values about 1e300
@pytest.mark.parametrize("events", [3, 250])
def test_feature_terms_from_the_block_equal_them_from_the_columns(events: int) -> None:
    rng = random.Random(events)
    numeric = [n for n, k in FEATURES.items() if k == "numeric"]
    reference = {n: [rng.gauss(0, 1) for _ in range(200)] for n in numeric}
    reference["b"] = [rng.choice("uvw") for _ in range(200)]
    profile = profile_from_columns(reference, FEATURES)
    layout = Layout("binary", features=FEATURES, profile=profile)
    group = _group(rng, events, SETS["anything"], 0.05)
    group = [g for g in group if not _has(g.features, 10**400)]
    other, block = _columns(group, compiled=native.kernels() is not None)
    want_columns, _ = _columns(group, compiled=False)
    _, empty, attrs = _typed(NAMES, DEFAULT_LIMITS)
    full = {
        n: [f.get(n) if type(f) is dict else getattr(f or empty, attrs[n]) for f in
            (g.features for g in group)]
        for n in NAMES
    }  # fmt: skip
    assert {n: full[n] for n in want_columns} == want_columns
    use = np.array([rng.random() < 0.8 for _ in group], dtype=bool)
    got = layout.feature_terms(None, use, columns=other, numeric=block)
    want = layout.feature_terms(None, use, columns=full)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1].view(np.uint64), want[1].view(np.uint64))  # NaN where 1e300s
    assert block[0].min(initial=0) >= 0 and not (block[0] == 3).any()  # not changed


def _has(features: Any, value: Any) -> bool:
    if features is None:
        return False
    values = features.values() if type(features) is dict else [
        getattr(features, f"f{i}") for i in range(len(NAMES))
    ]  # fmt: skip
    return any(type(v) is int and v == value for v in values)


def _events(rng: random.Random, n: int, label: bool, odd: float) -> list[Any]:
    """n decoded predictions (or labels), times and scores of every kind (a share ``odd``
    of them), and as often one decoded the general way (another struct type)."""
    typed = _typed(NAMES, DEFAULT_LIMITS)[0]
    labels = DEFAULT_LIMITS.label_decoder()
    general = DEFAULT_LIMITS.prediction_decoder()
    times: list[Any] = [1.7e9, 1_700_000_001, 1.7e9 + 0.25, -0.0, 1e300, 2**53, 2**53 + 1,
                        2**70, "2024-01-02T03:04:05Z", "nope", True, None]  # fmt: skip
    scores: list[Any] = [0.5, 0, 1, -0.0, 2**53, 2**53 + 1, None, math.inf]
    out = []
    for i in range(n):
        ts = rng.choice(times) if rng.random() < odd else 1.7e9 + i
        score = rng.choice(scores) if rng.random() < 2 * odd else rng.random()
        body: dict[str, Any] = {"prediction_id": f"p{i}", "ts": ts}
        if label:
            body["label"] = 1
            decoder: Any = labels
        else:
            body.update(model="m", prediction=1, score=score)
            decoder = general if rng.random() < odd / 2 else typed
        try:
            out.append(decoder.decode(json.dumps(body)))
        except msgspec.DecodeError:  # a time or score it does not take; Infinity
            continue
    return out


@pytest.mark.parametrize("label", [False, True])
def test_times_and_scores_read_by_the_kernel_equal_python(label: bool) -> None:
    rng = random.Random(label)
    read = 0
    for n in [1, 2, 10, 100, 500]:
        for i in range(30):
            events = _events(rng, n, label, [0.0, 0.003, 0.1][i % 3])
            read += _read_numbers(events, "ts", missing=False) is not None
            latest = np.full(len(events), 2e9)
            got, want = [], []
            for compiled, into in ((True, got), (False, want)):
                before = native.use(compiled)
                try:
                    into.append(_times(events, latest))
                    if not label:
                        score = _read_numbers(events, "score", missing=True)
                        into.append(score if score is not None else
                                    np.array([e.score for e in events], dtype=np.float64))
                finally:
                    native.use(before)
            for a, b in zip(got, want, strict=True):
                assert a.dtype == b.dtype == np.float64
                assert np.array_equal(a.view(np.uint64), b.view(np.uint64))
    assert read > 50 or native.kernels() is None  # the kernel took many of them
