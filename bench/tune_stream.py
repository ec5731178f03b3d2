"""A stream with injected incidents, for ``monitor tune``: capture, incidents, config, grid.

    python bench/tune_stream.py --out tune-demo                 # 12 h at 2 predictions/s
    python bench/tune_stream.py --out tune-demo --hours 24 --rate 5
    monitor tune --config tune-demo/config.toml --incidents tune-demo/incidents.csv \\
        --grid tune-demo/grid.toml --out tune-demo/result tune-demo/capture.jsonl

Writes into ``--out``:

- ``capture.jsonl``: a kcat ``-J`` capture of the ``predictions`` and ``labels`` topics
  (2 partitions each, interleaved in event-time order as one consumer would read them) of
  a binary fraud model, event time from 2026-01-05T00:00Z. Labels come 30 s to 5 min after
  their prediction; 5 % never come. The labels' noise wanders slowly (a 5 h sine), so the
  model's accuracy drifts by about ±2 points without any incident: a tight threshold pays
  in false alerts.
- ``incidents.csv``: the injected incidents (``model,start,end``, ISO-8601): abrupt
  accuracy drops (a share of the labels flipped: 1:30-2:15 +15 %, 7:00-8:00 +8 %,
  9:30-10:00 +25 %, for 12 h; scaled with ``--hours``) and feature shifts (every
  amount multiplied by e^1 at 4:30-5:30 and by e^0.6 at 10:45-11:30; labels follow the
  same relation, so the accuracy moves little).
- ``reference.csv``: 5,000 rows of the undisturbed feature distribution (drift profile).
- ``config.toml``: the model with three rules: ``accuracy-low`` (``accuracy@ewm10m <
  0.86`` for 5 min), ``amount-shift`` (``psi:amount@30m > 0.2`` for 5 min) and
  ``error-drift`` (a ``cusum`` detection on the error stream).
- ``grid.toml``: 72 settings: the accuracy threshold, ``for`` and half-life (window),
  the PSI threshold, and the CUSUM's false-alarm budget.
"""

from __future__ import annotations

import argparse
import csv
import os
from datetime import UTC, datetime

import msgspec
import numpy as np

START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
MODEL = "fraud"
COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN"])
_SHARE = np.array([0.35, 0.15, 0.15, 0.12, 0.13, 0.10])
_BIAS = np.array([0.0, -0.3, -0.5, -0.2, 0.8, 0.5])
#: (kind, start hour, duration hours, magnitude) on a 12 h stream; scaled to ``--hours``.
INCIDENTS_12H = (
    ("accuracy", 1.5, 0.75, 0.15),
    ("shift", 4.5, 1.0, 1.0),
    ("accuracy", 7.0, 1.0, 0.08),
    ("accuracy", 9.5, 0.5, 0.25),
    ("shift", 10.75, 0.75, 0.6),
)
PARTITIONS = 2

CONFIG = """\
# monitor tune example: made by bench/tune_stream.py
[time]
pane = "1m"
allowed_lateness = "1m"

[[models]]
name = "fraud"
task = "binary"
positive_class = 1
label_ttl = "30m"
windows = ["all", "30m", "ewm10m", "ewm30m"]
features = { amount = "numeric", country = "categorical" }
reference = "reference.csv"
detectors = ["adwin", { name = "cusum", false_alarm_budget = 1e5, warmup = 5000 }]

[[models.alerts]]
name = "accuracy-low"
signal = "accuracy@ewm10m"
op = "<"
threshold = 0.86
for = "5m"
min_samples = 200

[[models.alerts]]
name = "amount-shift"
signal = "psi:amount@30m"
op = ">"
threshold = 0.2
for = "5m"

[[models.alerts]]
name = "error-drift"
kind = "detector"
signal = "cusum:error@all"
"""

GRID = """\
# monitor tune example grid: 3 x 2 x 2 x 2 x 3 = 72 settings, 3 engine replays
"models.fraud.alerts.accuracy-low.threshold" = [0.84, 0.86, 0.88]
"models.fraud.alerts.accuracy-low.for" = ["0s", "10m"]
"models.fraud.alerts.accuracy-low.window" = ["ewm10m", "ewm30m"]
"models.fraud.alerts.amount-shift.threshold" = [0.1, 0.3]
"models.fraud.detectors.cusum.false_alarm_budget" = [1e4, 1e6, 1e8]
"""


def _features(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.choice(len(COUNTRIES), n, p=_SHARE), rng.normal(0.0, 1.0, n)


def generate(
    hours: float, rate: float, seed: int
) -> tuple[list[bytes], list[tuple[str, float, float]]]:
    """Capture lines (event-time order) and the incidents ``(model, start, end)``."""
    rng = np.random.default_rng(seed)
    span = hours * 3600.0
    n = int(span * rate)
    ts = START + np.sort(rng.uniform(0.0, span, n))
    rel = ts - START
    country, log_amount = _features(rng, n)
    scale = hours / 12.0
    incidents = []
    flip = 0.03 + 0.02 * np.sin(2 * np.pi * rel / (5 * 3600.0))
    for kind, at, length, size in INCIDENTS_12H:
        lo, hi = at * 3600.0 * scale, (at + length) * 3600.0 * scale
        inside = (rel >= lo) & (rel < hi)
        if kind == "accuracy":
            flip = flip + np.where(inside, size, 0.0)
        else:
            log_amount = np.where(inside, log_amount + size, log_amount)
        incidents.append((MODEL, START + lo, START + hi))
    logit = -1.0 + 2.5 * log_amount + _BIAS[country]
    score = 1.0 / (1.0 + np.exp(-(logit + rng.normal(0.0, 0.3, n))))
    truth = rng.random(n) < 1.0 / (1.0 + np.exp(-3.0 * logit))
    label = np.where(rng.random(n) < flip, ~truth, truth)
    delay = rng.uniform(30.0, 300.0, n)
    labelled = rng.random(n) >= 0.05
    amount = np.round(np.exp(4.0 + log_amount), 2)
    encode = msgspec.json.Encoder().encode
    rows: list[tuple[float, int, bytes]] = []
    offsets = [[0] * PARTITIONS for _ in range(2)]
    for i in range(n):
        pid = f"p-{i:09d}"
        part = i % PARTITIONS
        s = round(float(score[i]), 4)
        event = {
            "prediction_id": pid, "model": MODEL, "ts": round(float(ts[i]), 3),
            "prediction": int(s >= 0.5), "score": s,
            "features": {"amount": float(amount[i]), "country": str(COUNTRIES[country[i]])},
        }
        rows.append((float(ts[i]), 0, _envelope("predictions", part, offsets[0], pid,
                                                encode(event))))
        if labelled[i]:
            when = round(float(ts[i] + delay[i]), 3)
            value = {"prediction_id": pid, "model": MODEL, "label": int(label[i]), "ts": when}
            rows.append((when, 1, _envelope("labels", part, offsets[1], pid,
                                            encode(value))))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows], incidents


def _envelope(topic: str, part: int, offsets: list[int], key: str, payload: bytes) -> bytes:
    offset = offsets[part]
    offsets[part] += 1
    return msgspec.json.encode(
        {"topic": topic, "partition": part, "offset": offset, "key": key,
         "payload": payload.decode()}
    )


def write(out: str, hours: float, rate: float, seed: int) -> dict[str, int]:
    """Write the five files into ``out``; return counts."""
    os.makedirs(out, exist_ok=True)
    lines, incidents = generate(hours, rate, seed)
    with open(os.path.join(out, "capture.jsonl"), "wb") as fh:
        for line in lines:
            fh.write(line + b"\n")
    with open(os.path.join(out, "incidents.csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "start", "end"])
        for model, lo, hi in incidents:
            writer.writerow([model, _iso(lo), _iso(hi)])
    rng = np.random.default_rng(seed + 1)
    country, log_amount = _features(rng, 5000)
    with open(os.path.join(out, "reference.csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["amount", "country"])
        for c, a in zip(country, log_amount, strict=True):
            writer.writerow([round(float(np.exp(4.0 + a)), 2), COUNTRIES[c]])
    with open(os.path.join(out, "config.toml"), "w", encoding="utf-8") as fh:
        fh.write(CONFIG)
    with open(os.path.join(out, "grid.toml"), "w", encoding="utf-8") as fh:
        fh.write(GRID)
    return {"messages": len(lines), "incidents": len(incidents)}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for the five files")
    parser.add_argument("--hours", type=float, default=12.0, help="event time covered")
    parser.add_argument("--rate", type=float, default=2.0, help="predictions per second")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    counts = write(args.out, args.hours, args.rate, args.seed)
    print(f"{args.out}: {counts['messages']} messages, {counts['incidents']} incidents")


if __name__ == "__main__":
    main()
