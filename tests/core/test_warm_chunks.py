"""Stage 2 takes the predictions a delta sends raw for the warmup reference as one chunk of
all its panes' rows, cut pane by pane (``ModelStage._warm_chunks``): the chunks buffered,
the warmup sample, the reference built from it and every signal are those of a chunk made
pane by pane."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from monitor.config import config_from_mapping
from monitor.core.model_stage import ModelStage
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message


def _message(
    rng: np.random.Generator,
    offset: int,
    t: float,
    *,
    categories: str = "abc",
    partitions: int = 2,
    with_z: bool = False,
) -> Message:
    """A prediction of model ``m`` (segment ``region``; features ``x`` numeric, missing one
    time in ten, ``c`` one of ``categories``, ``y`` numeric and, ``with_z``, ``z`` numeric)
    on one of ``partitions`` partitions."""
    score = float(rng.random())
    x = "null" if rng.random() < 0.1 else repr(float(rng.normal() * 10))
    label = int(rng.random() < score)
    region = int(rng.integers(0, 3))
    c = categories[int(rng.integers(0, len(categories)))]
    z = f', "z": {float(rng.normal())}' if with_z else ""
    body = (
        f'{{"prediction_id": "p{offset}", "model": "m", "ts": {t}, "score": {score}, '
        f'"prediction": {int(score > 0.5)}, "label": {label}, '
        f'"segment": {{"region": "r{region}"}}, '
        f'"features": {{"x": {x}, "c": "{c}", "y": {offset % 7}{z}}}}}'
    )
    return Message("predictions", int(rng.integers(0, partitions)), offset, b"k", body.encode())


def _polls(seed: int, polls: int, size: int, **shape: Any) -> Iterator[list[Message]]:
    """``polls`` polls of ``size`` predictions (:func:`_message` of ``shape``), about 1.5 s
    apart and up to 20 s out of order."""
    rng = np.random.default_rng(seed)
    offset, t = 0, 1_700_000_000.0
    for _ in range(polls):
        msgs = []
        for _ in range(size):
            t += float(rng.exponential(1.5))
            msgs.append(_message(rng, offset, t - float(rng.random()) * 20, **shape))
            offset += 1
        yield msgs


def _run(monkeypatch: pytest.MonkeyPatch, batched: bool) -> list[Any]:
    """What a model warming up over many panes per poll buffers, samples and signals."""
    if not batched:
        monkeypatch.setattr(ModelStage, "_warm_chunks", lambda self, md, remap: None)
    cfg = config_from_mapping({
        "time": {"pane": "10s", "allowed_lateness": "30s"},
        "models": [{"name": "m", "task": "binary", "positive_class": 1, "segments": ["region"],
                    "windows": ["all", "1m"], "reference_warmup": 300,
                    "features": {"x": "numeric", "c": "categorical", "y": "numeric"}}],
    })  # fmt: skip
    core = Pipeline(cfg)
    out: list[Any] = []
    for msgs in _polls(5, 12, 80):
        core.process(msgs)
        stage = core.stages["m"]
        out.append({p: {n: list(c) for n, c in parts.items()} for p, parts in stage.warm.items()})
        out.append(list(stage.model.warmup_rows))
        for s in core.drain_signals():
            out.append((s.pane_end, {k: np.float64(v).tobytes() for k, v in s.signals.items()}))
    model = core.stages["m"].model
    assert model.profile is not None  # the reference was built, in the middle of the polls
    out.append(model.profile_pane)
    return out


def test_warm_chunks_cut_pane_by_pane_are_those_made_pane_by_pane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    cut = ModelStage._warm_chunks

    def counted(self: ModelStage, md: Any, remap: list[int]) -> Any:
        got = cut(self, md, remap)
        calls.append(got is not None and len(got) > 1)
        return got

    with monkeypatch.context() as m:
        one_by_one = _run(m, False)
    monkeypatch.setattr(ModelStage, "_warm_chunks", counted)
    got = _run(monkeypatch, True)
    assert any(calls)  # deltas of several panes' raw predictions were cut
    assert got == one_by_one
