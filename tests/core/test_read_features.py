"""The compiled kernel that reads a prediction's features from their JSON
(``monitor._native.read_features``) against msgspec's features struct, which decides what
a features object is: every row the kernel reads holds, bit for bit, what msgspec decodes
(numbers of every form, -0, nulls, absent names, strings), and it declines the rest (bools,
escapes, unknown or repeated names, numbers it cannot convert exactly in one step, strings
too long, not an object); and stage 1's decode of a segment's predictions
(``fastpath._decode_predictions``) gives the same events and feature columns with the
kernel as with msgspec's struct alone."""

from __future__ import annotations

import contextlib
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
    _attrs,
    _decode_predictions,
    _feature_columns,
    _feature_reads,
    _inline_features,
    _raw_typed,
    _table_columns,
    _typed,
)
from monitor.core.layout import Layout
from monitor.events.codec import Limits

pytestmark = pytest.mark.usefixtures("kernels")

NAMES = ("a", "b", "c")

#: Numbers of every form: exact in one step (read), and not (declined to msgspec).
NUMBER_TEXTS = [
    "0", "-0", "0.0", "-0.0", "1", "-7", "1.5", "-2.25", "0.000001", "12.50e-1", "1e5",
    "1E-5", "-2.5e+3", "1e22", "1e-22", "123456789012345", "0.1", "3.14159", "-0e0",
    "1234567890123456", "9007199254740993", "1e23", "5e-23", "0.30000000000000004",
    "1e400", "-1e400", "1e-400", "123456789012345678901234567890", "0e500",
    "1.7976931348623157e308",
]  # fmt: skip
OTHER_TEXTS = [
    "null", "true", "false", '"x"', '""', '"caf\u00e9"', '"\u20ac"', '"a\\nb"', '"\\u00e9"',
    '"' + "y" * 300 + '"', "[1]", "{}", '{"k": 1}',
]  # fmt: skip


class _Raw(msgspec.Struct):
    features: msgspec.Raw = None


def _raw(text: str) -> Any:
    return msgspec.json.decode(b'{"features":' + text.encode() + b"}", type=_Raw).features


def _objects(rng: random.Random, count: int) -> list[str]:
    """Features objects as JSON text: names known and not, repeated, in any order, with
    whitespace, and now and then not an object at all."""
    out = []
    while len(out) < count:
        if rng.random() < 0.05:
            out.append(rng.choice(["null", " null ", "[]", "1", '"s"', "{}", " { } ", "true"]))
            continue
        keys = rng.sample(["a", "b", "c", "d", "a", "c"], rng.randint(0, 4))
        ws = lambda: rng.choice(["", "", " ", "\n", "\t "])  # noqa: E731
        values = []
        for _ in keys:
            r = rng.random()
            if r < 0.4:
                values.append(rng.choice(NUMBER_TEXTS))
            elif r < 0.7:
                values.append(repr(round(rng.gauss(0.0, 100.0), rng.randint(0, 17))))
            else:
                values.append(rng.choice(OTHER_TEXTS))
        pairs = zip(keys, values, strict=True)
        members = ",".join(f'{ws()}"{k}"{ws()}:{ws()}{v}{ws()}' for k, v in pairs)
        out.append(ws() + "{" + members + ws() + "}" + ws())
    return out


def _read(raws: list[Any], limit: int = 256) -> tuple[Any, Any, list[int], list[str]]:
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("the numpy code has no kernel to call")
    codes = np.full((len(NAMES), len(raws)), -1, dtype=np.int8)
    x = np.zeros((len(NAMES), len(raws)), dtype=np.float64)
    declined, strs = kernels.read_features(raws, NAMES, limit, codes, x)
    return codes, x, declined, strs


@pytest.mark.parametrize("seed", range(4))
def test_a_row_read_holds_what_msgspec_decodes(seed: int) -> None:
    rng = random.Random(seed)
    texts = _objects(rng, 3000)
    valid = []
    for text in texts:
        # not JSON: the message fails before features are read
        with contextlib.suppress(msgspec.DecodeError):
            valid.append((text, _raw(text)))
    raws = [r for _, r in valid] + [None]
    codes, x, declined, strs = _read(raws, limit=256)
    decoder = _raw_typed(NAMES, Limits(max_category_length=256))[1]
    attrs = _typed(NAMES, Limits(max_category_length=256))[2]
    assert declined == sorted(set(declined))
    skipped = set(declined)
    read = 0
    for i, raw in enumerate(raws):
        if i in skipped:
            assert (codes[:, i] == 3).all() and np.isnan(x[:, i]).all()
            continue
        read += 1
        struct = None if raw is None else decoder.decode(raw)  # read: msgspec decodes it
        for j, name in enumerate(NAMES):
            want = None if struct is None else getattr(struct, attrs[name])
            if want is None:
                assert codes[j, i] == 1 and math.isnan(x[j, i])
            elif type(want) is str:
                assert codes[j, i] == 2 and strs[int(x[j, i])] == want
            else:
                assert type(want) is float and codes[j, i] == 0
                assert np.float64(want).view(np.uint64) == x[j, i].view(np.uint64)
    assert read > len(raws) // 4  # most of the usual rows are read


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ('{"a": 1.5, "b": null}', True),
        ('{"c": "x", "a": -0}', True),
        ("null", True),
        ("{}", True),
        ('{"a": true}', False),  # a bool: msgspec's
        ('{"a": "a\\nb"}', False),  # an escape
        ('{"d": 1}', False),  # an unknown name: the message is decoded the general way
        ('{"a": 1, "a": 2}', False),  # repeated: msgspec takes the last
        ('{"a": 1e400}', False),  # out of range: msgspec rejects it
        ('{"a": 0.30000000000000004}', False),  # 17 digits
        ('{"a": "' + "y" * 11 + '"}', False),  # longer than the limit
        ('{"a": "' + "y" * 10 + '"}', True),
        ("[1]", False),
    ],
)
def test_what_is_read_and_what_is_declined(text: str, read: bool) -> None:
    codes, _, declined, _ = _read([_raw(text)], limit=10)
    assert declined == ([] if read else [0])
    assert ((codes != 3).all()) == read


def test_its_arguments_are_checked() -> None:
    kernels = native.kernels()
    if kernels is None:
        pytest.skip("the numpy code has no kernel to call")
    raws = [_raw('{"a": 1}')]
    with pytest.raises(ValueError, match="len"):
        kernels.read_features(raws, NAMES, 10, np.zeros(2, np.int8), np.zeros(2))
    with pytest.raises(TypeError):
        kernels.read_features(raws, (1, 2, 3), 10, np.zeros(3, np.int8), np.zeros(3))
    with pytest.raises(TypeError):
        kernels.read_features([b"x", 5], NAMES, 10, np.zeros(6, np.int8), np.zeros(6))


FEATURES = {"a": "numeric", "b": "categorical", "c": "numeric"}


class _Engine:
    """What the decode and ``_feature_columns`` read of an engine."""

    def __init__(self, limits: Limits) -> None:
        self.models = [
            SimpleNamespace(config=SimpleNamespace(features=FEATURES), warmup_target=0)
        ]
        self.limits = limits
        self.max_bytes = 10_000


def _payload(i: int, features: str | None) -> bytes:
    head = f'{{"prediction_id":"p{i}","model":"m","ts":1700000000,"prediction":1'
    return (head + ("" if features is None else f',"features":{features}') + "}").encode()


@pytest.mark.parametrize("seed", range(3))
def test_a_segment_decodes_to_the_same_events_and_columns_either_way(seed: int) -> None:
    if native.kernels() is None:
        pytest.skip("the numpy code has no kernel to call")
    rng = random.Random(seed)
    limits = Limits(max_category_length=8, features=frozenset(FEATURES))
    texts = _objects(rng, 400)
    values: list[bytes | None] = [_payload(i, t) for i, t in enumerate(texts)]
    values += [_payload(10_000, None), None, b"not json", _payload(10_001, "[1,")]
    at = list(range(3, 3 + 2 * len(values), 2))  # poll indices, with labels between
    engine = _Engine(limits)
    assert _all_features(engine) == NAMES
    model = SimpleNamespace(index=0, layout=Layout("binary", features=FEATURES))
    got, table = _decode_predictions(engine, values, 1, at)  # type: ignore[arg-type]
    assert table is not None
    before = native.use(False)
    try:
        want, none = _decode_predictions(engine, values, 1, at)  # type: ignore[arg-type]
    finally:
        native.use(before)
    assert none is None
    assert [e is None for e in got] == [e is None for e in want]
    keep = [i for i, e in enumerate(want) if e is not None]
    for i in keep:
        g, w = got[i], want[i]
        assert type(g.features) in (msgspec.Raw, type(w.features), type(None))
        assert (g.prediction_id, g.ts) == (w.prediction_id, w.ts)
    # every row, and the rows the table holds (their numeric features no string): the
    # latter taken from it
    codes = table.codes[:, table.pos[np.array(at) - 1]]
    held = [i for i in keep if (codes[:, i] != 3).all() and (codes[[0, 2], i] < 2).all()]
    assert len(held) > 50
    reads = _feature_reads(engine, model)  # type: ignore[arg-type]
    rows = np.array([at[i] for i in held], dtype=np.int64)
    assert _table_columns(reads, rows, table) is not None
    _same_columns(engine, model, [got[i] for i in held], [want[i] for i in held], rows, table)
    _same_columns(engine, model, [got[i] for i in keep], [want[i] for i in keep],
                  np.array([at[i] for i in keep], dtype=np.int64), table)  # fmt: skip


def _same_columns(engine: Any, model: Any, group_g: list[Any], group_w: list[Any], idx: Any,
                  table: Any) -> None:  # fmt: skip
    columns, block = _feature_columns(engine, model, group_g, idx, table)  # type: ignore[arg-type]
    before = native.use(False)
    try:
        want_columns, want_block = _feature_columns(engine, model, group_w)  # type: ignore[arg-type]
    finally:
        native.use(before)
    assert columns == want_columns
    assert block is not None and want_block is not None
    assert np.array_equal(block[0], want_block[0])
    assert np.array_equal(block[1].view(np.uint64), want_block[1].view(np.uint64))
    # and from the events (the table's rows fall back on msgspec's struct), those read
    # straight from their JSON, whose events hold no features, made again from the table
    feats = _attrs(group_g, ("features",))[0]
    if table.inline is not None:
        feats = _inline_features(engine, feats, idx, table)  # type: ignore[arg-type]
    events = [msgspec.structs.replace(e, features=f) for e, f in zip(group_g, feats, strict=True)]
    again = _feature_columns(engine, model, events)  # type: ignore[arg-type]
    assert again[0] == want_columns
    assert np.array_equal(again[1][1].view(np.uint64), want_block[1].view(np.uint64))


def test_a_categorical_column_of_strings_is_taken_from_the_table() -> None:
    if native.kernels() is None:
        pytest.skip("the numpy code has no kernel to call")
    engine = _Engine(Limits(max_category_length=8, features=frozenset(FEATURES)))
    model = SimpleNamespace(index=0, layout=Layout("binary", features=FEATURES))
    texts = [f'{{"a": {i / 4}, "b": "{"uvw"[i % 3]}", "c": null}}' for i in range(40)]
    values: list[bytes | None] = [_payload(i, t) for i, t in enumerate(texts)]
    at = list(range(len(values)))
    got, table = _decode_predictions(engine, values, 0, at)  # type: ignore[arg-type]
    assert table is not None and not (table.codes == 3).any()
    idx = np.array(at, dtype=np.int64)
    reads = _feature_reads(engine, model)  # type: ignore[arg-type]
    taken = _table_columns(reads, idx, table)
    assert taken is not None
    assert taken[0] == {"b": ["uvw"[i % 3] for i in range(40)]}
    before = native.use(False)
    try:
        want, _ = _decode_predictions(engine, values, 0, at)  # type: ignore[arg-type]
    finally:
        native.use(before)
    _same_columns(engine, model, got, want, idx, table)


def test_models_of_one_set_of_features_take_the_rows_of_the_table_once() -> None:
    """Models of the same numeric features share their rows of the table (``_rows_first``):
    the first model's columns are taken alone, the rows taken once at the second and each
    model's columns read from them after; every model's block is the one its own columns
    of the whole table give, bit for bit, and a group whose numeric feature holds a string
    is still refused."""
    if native.kernels() is None:
        pytest.skip("the numpy code has no kernel to call")
    engine = _Engine(Limits(max_category_length=8, features=frozenset(FEATURES)))
    texts = [f'{{"a": {i - 30}, "b": "{"uvw"[i % 3]}", "c": {i * 0.5}}}' for i in range(60)]
    texts[45] = '{"a": "s", "b": "u", "c": 1}'  # a string in a numeric feature
    values: list[bytes | None] = [_payload(i, t) for i, t in enumerate(texts)]
    at = list(range(len(values)))
    _, table = _decode_predictions(engine, values, 0, at)  # type: ignore[arg-type]
    assert table is not None and table.firsts == {}
    layout = Layout("binary", features=FEATURES)
    models = [SimpleNamespace(index=m, layout=layout) for m in range(4)]
    reads = [_feature_reads(engine, model) for model in models]  # type: ignore[arg-type]
    assert len({id(r.numeric_rows) for r in reads}) == 1  # one array for all of them
    groups = [np.arange(0, 15), np.arange(15, 30)[::-1], np.arange(30, 42), np.arange(40, 50)]
    for n, (r, idx) in enumerate(zip(reads, groups, strict=True)):
        taken = _table_columns(r, idx.astype(np.int64), table)
        held = table.firsts[id(r.numeric_rows)][1]
        assert (held is None) == (n == 0)
        cols = table.pos[idx]
        codes = table.codes[:, cols][r.numeric_rows]
        if (codes >= 2).any():  # the group holding the string
            assert n == 3 and taken is None
            continue
        assert taken is not None and taken[1] is not None
        assert taken[1][0].flags.c_contiguous and taken[1][1].flags.c_contiguous
        assert np.array_equal(taken[1][0], codes)
        want = table.x[:, cols][r.numeric_rows]
        assert np.array_equal(taken[1][1].view(np.uint64), want.view(np.uint64))
        assert taken[0] == {"b": ["uvw"[i % 3] for i in idx.tolist()]}
