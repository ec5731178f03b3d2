"""At the close that builds a model's warmup reference, stage 2 histograms the raw
predictions its open panes hold with one feature-terms call and one scatter of every
(pane, partition) group and one pass of row blocks (``ModelStage._add_warm``): the open
panes' sums, every signal and the reference are those of each group histogrammed in turn
and added to its pane (``_merge`` of ``_warm_blocks``), bit for bit, with the compiled
kernels and without. One ``Layout.feature_terms`` call over many groups of events gives
each group the terms of its own call (``groups``: the PCA errors of each group as its own
call computes them)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from monitor import native
from monitor.config import config_from_mapping
from monitor.core.layout import Layout
from monitor.core.model_stage import ModelStage
from monitor.core.pipeline import Pipeline
from monitor.core.reference import profile_from_columns
from tests.core.test_warm_chunks import _polls


def _group_by_group(self: ModelStage, groups: list[tuple[int, list[Any]]]) -> None:
    """What ``_add_warm`` stands for: each group's blocks made and added in turn."""
    for pane, chunks in groups:
        got = self._warm_blocks(pane, chunks)
        if got is not None:
            self._merge(pane, got[0], got[1], 1.0)


def _run(monkeypatch: pytest.MonkeyPatch, batched: bool, groups: list[int]) -> list[Any]:
    """The open panes' sums right after the reference is built, and every signal."""
    if not batched:
        monkeypatch.setattr(ModelStage, "_add_warm", _group_by_group)
    else:
        add = ModelStage._add_warm

        def counted(self: ModelStage, held: list[tuple[int, list[Any]]]) -> None:
            groups.append(len(held))
            add(self, held)

        monkeypatch.setattr(ModelStage, "_add_warm", counted)
    cfg = config_from_mapping({
        "time": {"pane": "10s", "allowed_lateness": "30s"},
        "models": [{"name": "m", "task": "binary", "positive_class": 1, "segments": ["region"],
                    "windows": ["all", "1m", "ewm5m"], "reference_warmup": 300,
                    "features": {"x": "numeric", "c": "categorical", "y": "numeric",
                                 "z": "numeric"}}],
    })  # fmt: skip
    core = Pipeline(cfg)
    out: list[Any] = []
    built = False
    for msgs in _polls(11, 10, 90, categories="abcd", partitions=3, with_z=True):
        core.process(msgs)
        stage = core.stages["m"]
        if stage.model.profile is not None and not built:
            built = True
            w = stage.windows
            for pane in sorted(w.open):
                out.append(
                    (pane, w.open[pane].tobytes(), [d.tobytes() for d in w.open_decay[pane]])
                )
        for s in core.drain_signals():
            out.append((s.pane_end, {k: np.float64(v).tobytes() for k, v in s.signals.items()}))
    assert built  # the reference was built, in the middle of the polls
    out.append(core.stages["m"].model.profile_pane)
    return out


@pytest.mark.parametrize("compiled", [True, False])
def test_warm_groups_added_at_once_are_those_added_one_by_one(
    monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    if compiled and not native.available():
        pytest.skip("the compiled module is not built")
    before = native.use(compiled)
    try:
        groups: list[int] = []
        with monkeypatch.context() as m:
            one_by_one = _run(m, False, [])
        got = _run(monkeypatch, True, groups)
    finally:
        native.use(before)
    assert max(groups) > 1  # many (pane, partition) groups held raw predictions
    assert got == one_by_one


def _groups(rng: np.random.Generator, sizes: list[int], names: list[str]) -> list[Any]:
    """Blocks of numeric features, some values missing or not finite, some groups clean."""
    out = []
    for size in sizes:
        x = rng.normal(size=(len(names), size)) * 3
        codes = np.zeros(x.shape, dtype=np.int8)
        if rng.random() < 0.5:
            bad = rng.random(x.shape) < 0.15
            codes[bad] = 1
            x[bad] = np.nan
            x[rng.random(x.shape) < 0.05] = np.inf
        out.append((codes, x))
    return out


@pytest.mark.parametrize("pca", [True, False])
def test_feature_terms_of_groups_are_each_groups_own(pca: bool) -> None:
    rng = np.random.default_rng(3)
    names = ["a", "b", "c", "d"]
    columns = {n: rng.normal(size=300).tolist() for n in names}
    profile = profile_from_columns(columns, dict.fromkeys(names, "numeric"))
    layout = Layout("binary", features=dict.fromkeys(names, "numeric"), profile=profile)
    if pca:
        assert layout.pca is not None
    else:
        layout.pca = None
    for _ in range(20):
        sizes = [int(n) for n in rng.choice([0, 1, 1, 2, 3, 7, 30], size=8)]
        blocks = _groups(rng, sizes, names)
        own = [layout.feature_terms(None, profile_only=True, columns={}, numeric=b)
               for b in blocks]  # fmt: skip
        whole = (np.concatenate([b[0] for b in blocks], axis=1),
                 np.concatenate([b[1] for b in blocks], axis=1))  # fmt: skip
        cols, vals = layout.feature_terms(None, profile_only=True, columns={}, numeric=whole,
                                          groups=sizes)  # fmt: skip
        assert cols.tobytes() == np.concatenate([c for c, _ in own]).tobytes()
        assert vals.tobytes() == np.concatenate([v for _, v in own]).tobytes()
