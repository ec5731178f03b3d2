"""Bounded state under a flood: memory, counters and Prometheus series stay at the caps.

Drives the core :class:`~monitor.core.engine.Engine` in-process (the bound is a property
of its state, not of Kafka) with batches of synthetic messages, one binary model with
``max_pending`` / ``max_early_labels`` caps, a ``region`` segment, a categorical feature
with a reference profile, and, mixed into every batch:

- ``--labels`` labels for prediction ids that never come (they wait as early labels);
- ``--predictions`` predictions that never get a label (they wait as pending);
- on each of those, a distinct model version, segment value and category value
  (``--distinct`` distinct values each: versions and segments fold into ``__other__``,
  categories fall in the reference's unseen bucket);
- valid traffic: ``--valid`` predictions with their labels right after them, on two
  versions and two regions, whose metrics must stay exact (its first events come before
  the flood, as a model's own traffic would).

It measures the resident set size (``/proc/self/statm``, after ``gc.collect()``) at 10 %
and at 100 % of the run, and prints one JSON object: the RSS figures, the engine's
counters and fold counts, the number of Prometheus series exported over the engine at
10 % and 100 %, and the valid traffic's outcomes (``y_true``, ``y_pred``, ``score``) with
the monitor's metrics for them, for the caller to compare. No assertions here:
``tests/faults/test_bounds.py`` runs it at a CI size and checks; the full size is::

    PYTHONPATH=. python bench/bounds.py --labels 10000000 --predictions 10000000 \\
        --distinct 1000000 --valid 200000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from monitor.config import config_from_mapping
from monitor.core.alerting import Alerting
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from monitor.outputs.prometheus import MonitorCollector

T0 = 1_700_000_000.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process, after a full garbage collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def series(engine: Pipeline) -> int:
    """How many series the Prometheus exposition of the engine's report has."""
    registry = CollectorRegistry()
    MonitorCollector(registry).update(engine.report())
    text = generate_latest(registry).decode()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def make_config(args: argparse.Namespace, reference: Path) -> Any:
    return config_from_mapping({
        "time": {"pane": "10s", "allowed_lateness": "0s"},
        "models": [{
            "name": "b", "task": "binary", "positive_class": 1, "windows": ["all"],
            "label_ttl": "30d", "segments": ["region"], "features": {"c": "categorical"},
            "reference": str(reference), "max_pending": args.max_pending,
            "max_early_labels": args.max_early_labels, "max_versions": args.max_versions,
            "max_segment_values": args.max_segment_values, "detectors": [],
            # every signal defined from the first value: the series count then depends on
            # the slices alone, which is what the caps bound
            "drift_min_samples": 1,
        }],
    })  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the flood; print and return the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=10_000_000, help="labels of unknown ids")
    parser.add_argument("--predictions", type=int, default=10_000_000, help="never labelled")
    parser.add_argument("--distinct", type=int, default=1_000_000,
                        help="distinct versions, segment values and category values")
    parser.add_argument("--valid", type=int, default=200_000, help="valid prediction+label pairs")
    parser.add_argument("--batch", type=int, default=20_000, help="messages per process() call")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max-pending", type=int, default=50_000)
    parser.add_argument("--max-early-labels", type=int, default=50_000)
    parser.add_argument("--max-versions", type=int, default=20)
    parser.add_argument("--max-segment-values", type=int, default=50)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference.csv"
        reference.write_text("c\n" + "".join(f"{c}\n" for c in "aabbbcde"))
        engine = Pipeline(make_config(args, reference))
        alerting = Alerting(engine.config, engine.models)
    # The floods in the order they arrive: a label of an unknown id ('L'), a prediction that
    # is never labelled ('P'), a valid pair ('V'); spread evenly through the run.
    total = args.labels + args.predictions + args.valid
    # The valid traffic was there first: its first events (every version and region) come
    # before the flood, so its slices are registered before the caps fill up.
    head = min(args.valid, 8)
    kinds = bytearray(b"L" * args.labels + b"P" * args.predictions + b"V" * (args.valid - head))
    rng.shuffle(kinds)  # type: ignore[arg-type]
    kinds[:0] = b"V" * head
    offsets = [[0, 0] for _ in range(args.partitions)]
    y_true: list[int] = []
    y_pred: list[int] = []
    scores: list[float] = []
    versions: list[str] = []
    regions: list[str] = []
    measured: dict[str, Any] = {}
    n_flood = 0  # distinct-value counter over the flood events
    started = time.perf_counter()
    i = 0
    while i < total:
        batch: list[Message] = []
        for kind in kinds[i : i + args.batch]:
            part = i % args.partitions
            ts = T0 + i * 1e-3
            if kind == 76:  # 'L'
                value = (f'{{"prediction_id":"u{i}","model":"b","ts":{ts},"label":1}}').encode()
                batch.append(Message("labels", part, offsets[part][1], None, value))
                offsets[part][1] += 1
            elif kind == 80:  # 'P'
                d = n_flood % args.distinct
                n_flood += 1
                value = (f'{{"prediction_id":"o{i}","model":"b","ts":{ts},"prediction":1,'
                         f'"score":0.5,"model_version":"v-{d}","segment":{{"region":"r-{d}"}},'
                         f'"features":{{"c":"c-{d}"}}}}').encode()
                batch.append(Message("predictions", part, offsets[part][0], None, value))
                offsets[part][0] += 1
            else:
                label = rng.random() < 0.4
                score = round(min(max(rng.gauss(0.65 if label else 0.35, 0.2), 0.0), 1.0), 3)
                pred = int(score >= 0.5)
                j = len(y_true)
                version, region = ("v1", "v2")[j % 2], ("eu", "us")[(j // 2) % 2]
                value = (f'{{"prediction_id":"g{i}","model":"b","ts":{ts},"prediction":{pred},'
                         f'"score":{score},"model_version":"{version}",'
                         f'"segment":{{"region":"{region}"}},"features":{{"c":"a"}}}}').encode()
                batch.append(Message("predictions", part, offsets[part][0], None, value))
                offsets[part][0] += 1
                value = (f'{{"prediction_id":"g{i}","model":"b","ts":{ts},'
                         f'"label":{int(label)}}}').encode()
                batch.append(Message("labels", part, offsets[part][1], None, value))
                offsets[part][1] += 1
                y_true.append(int(label))
                y_pred.append(pred)
                scores.append(score)
                versions.append(version)
                regions.append(region)
            i += 1
        rejects = engine.process(batch)
        if rejects:
            raise SystemExit(f"unexpected rejects: {rejects[:3]}")
        alerting.feed(engine.drain_signals())  # as the run loop does after every batch
        if "rss_10" not in measured and i >= total // 10:
            measured.update(rss_10=rss_bytes(), series_10=series(engine), at_10=i)
    seconds = time.perf_counter() - started
    summary = engine.summary()  # closes every pane
    model = summary["models"]["b"]
    counts = model["counts"]
    out = {
        "events": total,
        "seconds": round(seconds, 2),
        "events_per_s": round(total / seconds),
        "rss_10": measured["rss_10"],
        "rss_100": rss_bytes(),
        "at_10": measured["at_10"],
        "series_10": measured["series_10"],
        "series_100": series(engine),
        "counts": counts,
        # recently matched ids, kept for label_ttl to tell duplicate labels: the state
        # that grows with the valid traffic (not capped; bounded by the TTL)
        "matched_ids": sum(len(t) for p in engine.partitions.values() for t in p.join.matched),
        "folded": model["folded"],
        "slices": sorted(model["slices"]),
        "args": vars(args),
        "windows": model["windows"]["all"],
        "slice_windows": {k: v["all"] for k, v in model["slices"].items()},
        "valid": {"y_true": y_true, "y_pred": y_pred, "score": scores, "version": versions,
                  "region": regions},
    }  # fmt: skip
    text = json.dumps(out, default=lambda v: None)
    sys.stdout.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
