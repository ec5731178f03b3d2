"""Synthetic labelled streams and reference files for the output-drift and estimate tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.config import load_config
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message

T0 = 1_700_000_000.0


@dataclass
class Rows:
    """One synthetic sample: two correlated numeric features, score, label, prediction."""

    x1: np.ndarray
    x2: np.ndarray
    score: np.ndarray
    label: np.ndarray
    pred: np.ndarray


def binary_rows(
    rng: np.random.Generator,
    n: int,
    shift: float = 0.0,
    sharpen: float = 1.0,
    correlated: bool = True,
) -> Rows:
    """Labels drawn from the true probability ``sigmoid(1.5 x1 - 1)``; the model's score is
    ``sigmoid(sharpen * logit)`` (calibrated when ``sharpen`` is 1, overconfident above)."""
    x1 = rng.normal(shift, 1.0, n)
    x2 = 0.9 * x1 + rng.normal(0.0, 0.45, n) if correlated else rng.normal(0.9 * shift, 1.0, n)
    logit = 1.5 * x1 - 1.0
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    score = 1.0 / (1.0 + np.exp(-sharpen * logit))
    return Rows(x1, x2, score, label, (score > 0.5).astype(int))


def write_reference(path: Path, rows: Rows, outputs: bool = True) -> Path:
    """A CSV reference of the rows (with prediction, score and label columns if asked)."""
    head = "x1,x2,prediction,score,label" if outputs else "x1,x2"
    lines = [head]
    for i in range(len(rows.x1)):
        cells = [repr(float(rows.x1[i])), repr(float(rows.x2[i]))]
        if outputs:
            cells += [str(int(rows.pred[i])), repr(float(rows.score[i])), str(int(rows.label[i]))]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(tmp: Path, reference: str | None, task: str = "binary", extra: str = "") -> Path:
    """A one-model config over x1, x2 with windows all and 1h."""
    head = {
        "binary": 'task = "binary"\npositive_class = 1',
        "multiclass": 'task = "multiclass"\nclasses = ["a", "b", "c"]',
        "regression": 'task = "regression"',
    }[task]
    ref = f'reference = "{reference}"' if reference else ""
    path = tmp / "monitor.toml"
    path.write_text(
        f"""
[time]
pane = "10s"
[[models]]
name = "m"
{head}
windows = ["all", "1h"]
features = {{ x1 = "numeric", x2 = "numeric" }}
{ref}
detectors = []
{extra}
"""
    )
    return path


def run(config: Path, events: list[dict[str, Any]], partitions: int = 1) -> dict[str, Any]:
    """The ``all`` window of model ``m`` in ``summary()`` after the events (``ts`` 0.01 s
    apart, labels inline)."""
    engine = Pipeline(load_config(config))
    msgs = []
    for i, event in enumerate(events):
        body = {"prediction_id": f"p{i}", "model": "m", "ts": T0 + i * 0.01, **event}
        msgs.append(Message("predictions", i % partitions, i, None, json.dumps(body).encode()))
    for start in range(0, len(msgs), 5000):
        engine.process(msgs[start : start + 5000])
    windows: dict[str, Any] = engine.summary()["models"]["m"]["windows"]["all"]
    return windows


def binary_events(rows: Rows, labelled: bool = True) -> list[dict[str, Any]]:
    """Prediction events of the rows (labels inline when ``labelled``)."""
    out = []
    for i in range(len(rows.x1)):
        event: dict[str, Any] = {
            "prediction": int(rows.pred[i]),
            "score": float(rows.score[i]),
            "features": {"x1": float(rows.x1[i]), "x2": float(rows.x2[i])},
        }
        if labelled:
            event["label"] = int(rows.label[i])
        out.append(event)
    return out
