"""Drift on by default: without a reference file the first 5,000 predictions become the
reference, as with an explicit ``reference_warmup = 5000``; ``0`` turns it off; replicas
(``state.store = "kafka"``) without a file have none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from monitor.config import (
    DEFAULT_REFERENCE_WARMUP,
    ConfigError,
    config_from_mapping,
    load_config,
)
from monitor.replay import replay

T0 = 1_767_225_600.0


def _events(path: Path, n: int = 20_000) -> None:
    """Predictions 0.05 s apart with features x (shifted by 2 sd after the first half) and
    y (stationary), each labelled in the same second."""
    rng = np.random.default_rng(5)
    lines = []
    for i in range(n):
        t = T0 + 0.05 * i
        x = rng.normal(2.0 if i >= n // 2 else 0.0, 1.0)
        pred = {"prediction_id": f"p{i}", "model": "m", "ts": t, "prediction": int(x > 0),
                "score": float(1 / (1 + np.exp(-x))),
                "features": {"x": float(x), "y": float(rng.normal())}}
        lines.append(json.dumps(pred))
        lines.append(json.dumps({"prediction_id": f"p{i}", "ts": t, "label": int(x > 0.3)}))
    path.write_text("\n".join(lines) + "\n")


def _raw(**model: Any) -> dict[str, Any]:
    """The test config as a TOML document's tables (``model``: more keys of the model)."""
    return {
        "time": {"pane": "10s", "allowed_lateness": "0s"},
        "models": [{"name": "m", "task": "binary", "positive_class": 1,
                    "windows": ["all", "1m"], "features": {"x": "numeric", "y": "numeric"},
                    **model}],
    }


def _config(**model: Any) -> Any:
    return config_from_mapping(_raw(**model))


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drift") / "events.jsonl"
    _events(path)
    return path


def _last_signals(out: Path) -> dict[str, float]:
    lines = (out / "signals.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["signals"]


def test_default_config_has_drift_and_logs_its_reference(events: Path, tmp_path: Path) -> None:
    """``monitor replay`` of a config without a reference: the start-up line says where
    the reference comes from, a line says when it is built, and drift is computed."""
    config = tmp_path / "monitor.toml"
    config.write_text(tomli_w.dumps(_raw()))
    assert load_config(config).models[0].reference_warmup == DEFAULT_REFERENCE_WARMUP == 5_000
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "--config", str(config), "--out",
         str(tmp_path / "default"), "--no-progress", str(events)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    logs = [json.loads(line) for line in (done.stdout + done.stderr).splitlines()
            if line.startswith("{")]
    started = [(x["model"], x["reference"]) for x in logs if x["event"] == "drift_reference"]
    assert started == [("m", "its first 5000 predictions (reference_warmup)")]
    built = [x for x in logs if x["event"] == "warmup_profile_built"]
    assert len(built) == 1 and built[0]["predictions"] >= 5_000
    signals = _last_signals(tmp_path / "default")
    assert signals["psi:x@1m"] > 1.0  # the 2-sd shift
    assert signals["psi:y@1m"] < 0.1
    replay(_config(reference_warmup=5_000), [str(events)], tmp_path / "explicit")
    for name in ("signals.jsonl", "summary.json"):
        assert (tmp_path / "default" / name).read_text() == (
            tmp_path / "explicit" / name).read_text()


def test_reference_warmup_zero_turns_drift_off(events: Path, tmp_path: Path) -> None:
    replay(_config(reference_warmup=0), [str(events)], tmp_path / "off")
    signals = _last_signals(tmp_path / "off")
    assert not [k for k in signals if k.startswith(("psi:", "js:", "ks:"))]
    assert "accuracy@1m" in signals


def test_replicas_warm_up_by_default_too() -> None:
    """With replicas the model's owner builds the warmup reference (stage 2): drift is on
    out of the box there as well, and an explicit warmup is taken."""
    raw = {"state": {"store": "kafka"}, "models": [
        {"name": "m", "task": "binary", "positive_class": 1, "features": {"x": "numeric"}}]}
    assert config_from_mapping(raw).models[0].reference_warmup == DEFAULT_REFERENCE_WARMUP
    raw["models"][0]["reference_warmup"] = 100  # type: ignore[index]
    assert config_from_mapping(raw).models[0].reference_warmup == 100


def test_a_reference_file_is_the_reference(tmp_path: Path) -> None:
    ref = tmp_path / "ref.csv"
    ref.write_text("x,y\n" + "\n".join(f"{i % 7},{i % 5}" for i in range(100)) + "\n")
    assert _config(reference=str(ref)).models[0].reference_warmup == 0
    with pytest.raises(ConfigError, match="not both"):
        _config(reference=str(ref), reference_warmup=10)
