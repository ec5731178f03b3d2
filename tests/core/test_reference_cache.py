"""A reference file is read once per start, not once per reader (config check, engine)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitor.config import config_from_mapping
from monitor.core import reference
from monitor.core.pipeline import Pipeline


def _config(path: Path) -> object:
    return config_from_mapping({"models": [{
        "name": "m", "task": "binary", "positive_class": 1,
        "features": {"amount": "numeric"}, "reference": str(path),
    }]}, "t")


def _write(path: Path, rows: int, mtime: int, first: int = 0) -> None:
    lines = ["amount,prediction,score,label"]
    lines += [f"{first + i},{i % 2},{0.9 if i % 2 else 0.1},{(i // 2) % 2}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, ns=(mtime, mtime))


def test_an_unchanged_file_is_read_once_and_each_engine_gets_its_own_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ref.csv"
    _write(path, 200, 1_000_000_000_000_000_000)
    config = _config(path)
    model = config.models[0]  # type: ignore[attr-defined]
    reads = []
    real = reference._read_profile
    monkeypatch.setattr(reference, "_read_profile", lambda m: reads.append(m) or real(m))
    first, second = reference.load_profile(model), reference.load_profile(model)
    assert len(reads) == 1
    assert first is not None and second is not None and first.rows == second.rows == 200
    a, b = Pipeline(config), Pipeline(config)  # type: ignore[arg-type]
    assert len(reads) == 1
    # the engine clears the raw columns it used: the next one still gets them
    assert a.models[0].layout.baseline is not None and b.models[0].layout.baseline is not None
    assert second.outputs["label"] and first.outputs is not second.outputs


def test_a_changed_file_is_read_again_even_with_the_same_size_and_time(tmp_path: Path) -> None:
    path = tmp_path / "ref.csv"
    _write(path, 200, 1_000_000_000_000_000_000)
    model = _config(path).models[0]  # type: ignore[attr-defined]
    before = reference.load_profile(model)
    assert before is not None and before.rows == 200
    _write(path, 300, 1_000_000_001_000_000_000)
    assert reference.load_profile(model).rows == 300  # type: ignore[union-attr]
    _write(path, 300, 1_000_000_001_000_000_000, first=100)  # amounts 100..399
    size = path.stat().st_size
    assert reference.load_profile(model).numeric["amount"].edges[0] == 100.0  # type: ignore[union-attr]
    _write(path, 300, 1_000_000_001_000_000_000, first=200)  # 200..499: same size and time
    assert path.stat().st_size == size
    after = reference.load_profile(model)
    assert after is not None and after.numeric["amount"].edges[0] == 200.0
