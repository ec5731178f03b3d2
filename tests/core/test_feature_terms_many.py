"""Several models' numeric feature terms made at once
(:func:`~monitor.core.layout.feature_terms_many`, behind
:meth:`~monitor.core.engine.Engine._feature_terms`), with the compiled bins and with each
model's :class:`~monitor.core.reference.StackedBins`: each model's terms are, bit for bit,
those of its own :meth:`~monitor.core.layout.Layout.feature_terms` call, and a poll of
many models gives every model the pane sums, signals and counters of one call each."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.config import config_from_mapping
from monitor.core.layout import Layout, feature_terms_many
from monitor.core.pipeline import Pipeline
from monitor.core.reference import (
    PcaReference,
    StackedBins,
    pca_errors_many,
    profile_from_columns,
)
from monitor.events.message import Message

pytestmark = pytest.mark.usefixtures("kernels")

NAMES = ["a", "b", "c"]


def _layout(rng: np.random.Generator, pca: bool) -> Layout:
    """A model's layout over :data:`NAMES` with a reference of its own (most of them of
    distinct values: one histogram width; some rounded: fewer, tied edges)."""
    columns = {n: rng.normal(size=200).tolist() for n in NAMES}
    if rng.random() < 0.3:
        columns["c"] = rng.normal(size=200).round(1).tolist()
    profile = profile_from_columns(columns, dict.fromkeys(NAMES, "numeric"))
    if not pca:
        profile = replace(profile, pca=None)
    return Layout("binary", features=dict.fromkeys(NAMES, "numeric"), profile=profile)


def _block(rng: np.random.Generator, layout: Layout, events: int) -> tuple[Any, Any]:
    """A clean numeric block, some values on the layout's own edges, a -0.0."""
    x = rng.normal(size=(len(NAMES), events)).round(1)
    assert layout.profile is not None
    for f, name in enumerate(NAMES):
        edges = layout.profile.numeric[name].edges
        hit = rng.random(events) < 0.3
        x[f, hit] = rng.choice(edges, size=int(hit.sum()))
    if events:
        x[0, 0] = -0.0
    return np.zeros(x.shape, dtype=np.int8), x


@pytest.mark.parametrize("pca", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_terms_made_together_are_each_models_own(pca: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layouts = [_layout(rng, pca) for _ in range(8)]
    blocks = [_block(rng, layout, int(rng.choice([1, 3, 60, 300]))) for layout in layouts]
    shapes: dict[Any, list[int]] = {}
    for i, layout in enumerate(layouts):
        shapes.setdefault(layout.numeric_shape(), []).append(i)
    assert max(len(members) for members in shapes.values()) >= 2
    for members in shapes.values():
        got = feature_terms_many([layouts[i] for i in members], [blocks[i] for i in members])
        assert got is not None
        for i, (cols, vals) in zip(members, got, strict=True):
            want_cols, want_vals = layouts[i].feature_terms(None, None, numeric=blocks[i])
            assert cols.dtype == want_cols.dtype and cols.shape == want_cols.shape
            assert cols.tobytes() == np.ascontiguousarray(want_cols).tobytes()
            assert vals.shape == want_vals.shape
            assert (np.ascontiguousarray(vals).tobytes()
                    == np.ascontiguousarray(want_vals).tobytes())  # fmt: skip


def test_a_value_not_a_finite_number_leaves_each_model_its_own_call() -> None:
    rng = np.random.default_rng(9)
    layout = _layout(rng, True)
    blocks = [_block(rng, layout, 4), _block(rng, layout, 4)]
    blocks[1][1][2, 3] = np.inf
    assert feature_terms_many([layout, layout], blocks) is None
    codes = blocks[1][0].copy()
    codes[0, 1] = 1  # a missing value
    assert feature_terms_many([layout, layout], [blocks[0], (codes, blocks[0][1])]) is None


def test_compiled_bins_equal_stacked_bins() -> None:
    """bin_rows over several models' edges (ties, a single edge, none) equals each model's
    StackedBins, values on edges, infinities and signed zeros included."""
    if native.kernels() is None:
        pytest.skip("the numpy code has no kernel to call")
    kernels = native.kernels()
    assert kernels is not None
    rng = np.random.default_rng(4)
    for _ in range(50):
        features = int(rng.integers(1, 4))
        models = [[np.sort(rng.integers(-4, 5, size=int(rng.integers(0, 7))) / 2.0)
                   for _ in range(features)] for _ in range(int(rng.integers(1, 5)))]  # fmt: skip
        sizes = [int(rng.integers(0, 9)) for _ in models]
        x = rng.integers(-10, 11, size=(features, sum(sizes))) / 4.0
        x[rng.random(x.shape) < 0.05] = np.inf
        x[rng.random(x.shape) < 0.05] = -np.inf
        x[rng.random(x.shape) < 0.1] = -0.0
        want = np.empty(x.shape, dtype=np.int64)
        start = 0
        for edges, n in zip(models, sizes, strict=True):
            want[:, start : start + n] = StackedBins(edges)(x[:, start : start + n])
            start += n
        counts = np.array([len(e) for edges in models for e in edges], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = np.concatenate([e for edges in models for e in edges] + [np.zeros(0)])
        slots = np.repeat(np.arange(len(models), dtype=np.int64), sizes)
        got = np.empty(x.shape, dtype=np.int64)
        kernels.bin_rows(flat.astype(np.float64), offsets, slots, np.ascontiguousarray(x), got)
        assert np.array_equal(got, want)
    with pytest.raises(ValueError):
        kernels.bin_rows(np.zeros(2), np.array([0, 3]), np.zeros(1, dtype=np.int64),
                         np.zeros(1), np.zeros(1, dtype=np.int64))  # fmt: skip
    with pytest.raises(ValueError):
        kernels.bin_rows(np.zeros(2), np.array([0, 2]), np.ones(1, dtype=np.int64),
                         np.zeros(1), np.zeros(1, dtype=np.int64))  # fmt: skip


def _config() -> Any:
    """Alike models with three numeric features and a warmup reference, and one with a
    categorical feature besides (its own call)."""
    model: dict[str, Any] = {
        "task": "binary", "positive_class": 1, "label_ttl": "10m", "windows": ["all", "ewm1m"],
        "features": dict.fromkeys(NAMES, "numeric"), "reference_warmup": 150,
    }  # fmt: skip
    models = [{**model, "name": f"m{i}"} for i in range(4)]
    models.append({**model, "name": "cat", "features": {"a": "numeric", "k": "categorical"}})
    return config_from_mapping({
        "kafka": {"predictions_topic": "predictions", "labels_topic": "labels"},
        "time": {"pane": "10s", "allowed_lateness": "5s"},
        "models": models,
    })  # fmt: skip


def _stream(n: int, seed: int) -> list[Message]:
    rng = random.Random(seed)
    names = ["m0", "m1", "m2", "m3", "cat"]
    out: list[tuple[float, int, str, bytes]] = []
    for i in range(n):
        t = 1_700_000_000.0 + i * 0.1
        features: dict[str, Any] = {f: round(rng.gauss(0, 1), 1) for f in NAMES}
        features["k"] = rng.choice("pq")
        if rng.random() < 0.01:
            features["b"] = None  # a missing value: that poll goes model by model
        body = {"prediction_id": f"p{i}", "model": names[i % len(names)], "ts": t,
                "prediction": int(rng.random() < 0.4), "score": round(rng.random(), 3),
                "features": features}  # fmt: skip
        part = rng.randrange(2)
        out.append((t, part, "predictions", json.dumps(body).encode()))
        if rng.random() < 0.8:
            lt = t + rng.uniform(2, 30)
            label = {"prediction_id": f"p{i}", "ts": lt, "label": int(rng.random() < 0.5)}
            out.append((lt, part, "labels", json.dumps(label).encode()))
    out.sort(key=lambda x: x[0])
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for t, part, topic, value in out:
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        messages.append(Message(topic, part, off, None, value, timestamp_ms=int(t * 1000)))
    return messages


def _run(messages: list[Message], poll: int) -> tuple[list[str], list[bytes], Any]:
    core = Pipeline(_config())
    core.track([(t, p) for t in ("predictions", "labels") for p in range(2)])
    signals: list[str] = []
    for start in range(0, len(messages), poll):
        core.process(messages[start : start + poll])
        signals += [repr(s) for s in core.drain_signals()]
    arrays: list[bytes] = []
    for stage in core.stages.values():
        w = stage.windows
        arrays += [a.tobytes() for a in (w.cum, *w.sliding, *w.decay, stage.counts)]
        for pane in sorted(w.open):
            arrays += [a.tobytes() for a in (w.open[pane], *w.open_decay[pane])]
    return signals, arrays, core.summary()


@pytest.mark.parametrize("poll", [120, 1500])
def test_a_poll_of_many_models_is_each_models_own_call(
    poll: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = _stream(5000, seed=poll)
    together = _run(messages, poll)
    monkeypatch.setattr(Layout, "numeric_shape", lambda self: None)  # one call each
    alone = _run(messages, poll)
    assert together == alone
    assert len(together[0]) > 20


@pytest.mark.parametrize("seed", range(4))
def test_pca_errors_of_many_models_are_each_models_own(seed: int) -> None:
    """:func:`pca_errors_many` gives each model's :meth:`PcaReference.errors` bit for bit:
    one component or several, no event, one (summed as its own call sums it) or many."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        d = int(rng.integers(1, 16))
        k = int(rng.integers(1, d + 1))
        pcas = [
            PcaReference(tuple(f"f{j}" for j in range(d)), rng.normal(size=d) * 10,
                         rng.uniform(0.1, 5.0, d),
                         np.linalg.qr(rng.normal(size=(d, d)))[0][:k], 1.0)
            for _ in range(int(rng.integers(1, 9)))
        ]  # fmt: skip
        sizes = [int(rng.choice([0, 1, 2, 3, 17, 60])) for _ in pcas]
        x = rng.normal(size=(d, sum(sizes))) * 10 ** rng.uniform(-2, 3)
        got = pca_errors_many(pcas, x, sizes)
        a = 0
        for pca, n in zip(pcas, sizes, strict=True):
            assert got[a : a + n].tobytes() == pca.errors(x[:, a : a + n].copy()).tobytes()
            a += n
