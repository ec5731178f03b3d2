"""The planner codes many models' values together (``fastpath._codec_groups`` and
``_coded``): one ``code_many`` per group of models whose codecs code every value alike,
each value with the same code and validity as its own model's codec gives it."""

from __future__ import annotations

from typing import Any

import numpy as np

import monitor.core.fastpath as fastpath
from monitor.config import config_from_mapping
from monitor.core.engine import Engine


def _engine() -> Engine:
    def model(name: str, **more: Any) -> dict[str, Any]:
        return {"name": name, "windows": ["all"], "reference_warmup": 0, **more}

    return Engine(config_from_mapping({"models": [
        model("b0", task="binary", positive_class=1),
        model("k0", task="multiclass", classes=["a", "b", "c"]),
        model("b1", task="binary", positive_class=1),
        model("r0", task="regression"),
        model("k1", task="multiclass", classes=["a", "b", "x"]),
        model("k2", task="multiclass", classes=["a", "b", "c"]),
        model("y0", task="binary", positive_class="yes", classes=["no", "yes"]),
        model("r1", task="regression"),
    ]}))  # fmt: skip


VALUES = [1, 0, "1", True, "a", "b", "c", "x", "yes", "no", 2.5, float("nan"), None, "0", 0.0]


def test_codec_groups_gather_the_models_whose_codecs_code_alike() -> None:
    models = _engine().models
    order = [m.index for m in models]
    groups = fastpath._codec_groups(models, order)
    names = [[models[order[j]].name for j in g] for g in groups]
    assert names == [["b0", "b1"], ["k0", "k2"], ["r0", "r1"], ["k1"], ["y0"]]
    assert fastpath._codec_groups(models, [0, 2]) == [[0, 1]]


def test_values_coded_together_equal_each_models_own_codes() -> None:
    models = _engine().models
    rng = np.random.default_rng(7)
    for _ in range(20):
        order = [int(m) for m in rng.permutation(len(models))[: rng.integers(1, len(models) + 1)]]
        sizes = [int(s) for s in rng.integers(0, 6, len(order))]
        bounds = [0, *np.cumsum(sizes).tolist()]
        values = [VALUES[int(i)] for i in rng.integers(0, len(VALUES), bounds[-1])]
        groups = fastpath._codec_groups(models, order)
        codes, valid = fastpath._coded(models, order, groups, bounds, values)
        for j, m in enumerate(order):
            a, b = bounds[j], bounds[j + 1]
            own, own_valid = models[m].codec.code_many(values[a:b])
            assert valid[a:b].tolist() == own_valid.tolist()
            np.testing.assert_array_equal(codes[a:b], own)
