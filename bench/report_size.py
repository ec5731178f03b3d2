"""Size and render time of ``monitor report`` as the replay grows.

Writes a synthetic ``signals.jsonl`` (one binary model: 11 metrics, the label and
prediction signals, 8 features with their drift and quality signals, ADWIN, windows
``all``, ``1h`` and ``ewm30m``: about 150 signals a pane) for ``--panes`` 10 s panes
(default: a week, 60,480) and for ``MAX_POINTS`` panes (the most drawn without
downsampling), renders both with
:func:`monitor.report_html.render_report`, and prints per run the seconds to render, the
page size, the page size less the inline plotly.js, and the ratios long / short of each.
Series are downsampled to at most ``MAX_POINTS`` points, so the page should not grow with
the replay. No assertions::

    python bench/report_size.py
    python bench/report_size.py --panes 10000
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from plotly.offline import get_plotlyjs

from monitor.report_html import MAX_POINTS, render_report

START_TS = 1_700_000_000.0
PANE_S = 10.0
WINDOWS = ("all", "1h", "ewm30m")
METRICS = ("accuracy", "precision", "recall", "f1", "specificity", "balanced_accuracy", "mcc",
           "log_loss", "brier", "roc_auc", "pr_auc")
FEATURES = tuple(f"f{i}" for i in range(8))
PER_FEATURE = ("psi", "js", "ks", "wasserstein", "missing_rate", "type_mismatch_rate",
               "nan_rate", "out_of_range_rate")
PER_MODEL = ("prediction_count", "positive_rate", "score_mean", "label_coverage",
             "label_count", "problem_rate", "adwin:error")


def signal_names() -> list[str]:
    """Every signal name of a pane, ``<metric>[:<subject>]@<window>``."""
    bases = [*METRICS, *PER_MODEL, *(f"{s}:{f}" for s in PER_FEATURE for f in FEATURES)]
    return [f"{b}@{w}" for b in bases for w in WINDOWS]


def write_signals(path: Path, panes: int, seed: int = 1) -> None:
    """``panes`` lines of random walks in [0, 1] (ADWIN: a detection now and then)."""
    rng = np.random.default_rng(seed)
    names = signal_names()
    walks = np.clip(0.5 + np.cumsum(rng.normal(0, 0.01, (panes, len(names))), axis=0), 0, 1)
    adwin = [i for i, n in enumerate(names) if n.startswith("adwin")]
    walks[:, adwin] = (rng.random((panes, 1)) < 0.001).astype(float)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(panes):
            values = dict(zip(names, np.round(walks[i], 6).tolist(), strict=True))
            fh.write(json.dumps({"model": "m", "ts": START_TS + PANE_S * (i + 1),
                                 "signals": values}) + "\n")


def run(panes: int, base: Path) -> tuple[float, int]:
    src = base / f"replay-{panes}"
    src.mkdir()
    write_signals(src / "signals.jsonl", panes)
    started = time.perf_counter()
    path, _ = render_report(src, src)
    return time.perf_counter() - started, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panes", type=int, default=7 * 24 * 360, help="panes of the long run")
    args = parser.parse_args()
    library = len(get_plotlyjs().encode())
    short_panes = MAX_POINTS
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{len(signal_names())} signals a pane, MAX_POINTS = {MAX_POINTS}, "
          f"inline plotly.js {library / 1e6:.2f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: run(n, Path(tmp)) for n in (short_panes, args.panes)}
    for n, (seconds, size) in results.items():
        print(f"{n:>8,} panes: render {seconds:6.2f} s, page {size / 1e6:6.2f} MB, "
              f"without plotly.js {(size - library) / 1e6:6.2f} MB")
    (s_short, b_short), (s_long, b_long) = results[short_panes], results[args.panes]
    growth = (b_long - library) / (b_short - library)
    print(f"long / short: panes x{args.panes / short_panes:.0f}, render time "
          f"x{s_long / s_short:.1f}, page without plotly.js x{growth:.2f}")


if __name__ == "__main__":
    main()
