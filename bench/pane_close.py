"""One model's stage-2 pane close: the window roll, every metric of every window and
slice, the detectors and the signals' assembly, in real time and in a backlog.

Builds one process's core (:class:`~monitor.core.pipeline.Pipeline`: stage 1, then the
model's :class:`~monitor.core.model_stage.ModelStage`) for a binary model on a low-rate
stream (``--rate`` predictions per 10 s pane, labels for 80 % of them), with windows
``all``/``1h``/``ewm30m``, slices for the model, one version and the 5 values of one
segment (7 slice rows), 6 metrics (accuracy, precision, recall, f1, roc_auc, log_loss) and
4 features with drift against a reference file (3 numeric, 1 categorical; the file also
has predictions, scores and labels, so the output drift, label-free estimates and
``gap:`` signals are on). After ``--hours`` of event time it times, on one core, what
:meth:`ModelStage.close_through` takes per model per pane while the next ``--tail``
minutes of the stream are read, each round from the same saved core:

- **real time**: the stream read pane by pane, so that each call closes one pane (its
  roll into every window, its metrics computed alone, its signals);
- **backlog**: the ``--tail`` minutes read with the model's stage closing nothing (as a
  replay, a restart catching up or a sparse stream read in one poll), then every pane
  closed in one call: the windows roll pane by pane, the metrics of all the panes are
  computed in one stacked computation (the whole-model rows of every pane, which its
  signals are, and the slice rows of the last pane, which reports read). This is the
  figure the target judges;
- **metrics, per window** (the computation before the windows were stacked): each
  window's sums through :func:`~monitor.core.metrics.compute_metrics`, one call per
  window, then the model's metric filter;
- **metrics, stacked**: one pane's ``ModelStage._stacked`` (every window and slice in
  one computation, :mod:`monitor.core.panemetrics`).

Reading and joining the events (stage 1) is not timed. The two metric computations are
timed in the same run, interleaved, and must agree to 1e-12; the backlog's signals must
equal the real-time ones bit for bit (the script fails otherwise). The target is 0.2 ms
per model per pane::

    python bench/pane_close.py
    python bench/pane_close.py --repeat 200
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402

from monitor.config import MonitorConfig  # noqa: E402
from monitor.core.metrics import compute_metrics  # noqa: E402
from monitor.core.model import ModelState, PaneSignals  # noqa: E402
from monitor.core.model_stage import ModelStage  # noqa: E402
from monitor.core.pipeline import Pipeline  # noqa: E402
from monitor.events.message import Message  # noqa: E402

F64 = npt.NDArray[np.float64]
TARGET_MS = 0.2
PANE = 10.0
METRICS = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
SEGMENT_VALUES = ("north", "south", "east", "west", "centre")
CATEGORIES = ("a", "b", "c", "d", "e", "f")


def write_reference(path: Path, rows: int, rng: np.random.Generator) -> None:
    """A reference CSV: 3 numeric features, 1 categorical, prediction, score and label."""
    x = rng.normal(0.0, 1.0, (rows, 3))
    cat = rng.choice(CATEGORIES, rows)
    score = np.round(1.0 / (1.0 + np.exp(-(x[:, 0] + rng.normal(0.0, 1.0, rows)))), 3)
    label = (rng.random(rows) < score).astype(int)
    lines = ["x0,x1,x2,kind,prediction,score,label"]
    lines += [
        f"{a:.4f},{b:.4f},{c:.4f},{k},{int(s >= 0.5)},{s},{y}"
        for (a, b, c), k, s, y in zip(x.tolist(), cat.tolist(), score.tolist(), label.tolist(),
                                      strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def bench_config(reference: Path) -> MonitorConfig:
    """The model of the module docstring."""
    return MonitorConfig.model_validate({
        "time": {"pane": f"{PANE:g}s", "allowed_lateness": "30s"},
        "models": [{
            "name": "m",
            "task": "binary",
            "positive_class": 1,
            "windows": ["all", "1h", "ewm30m"],
            "metrics": METRICS,
            "features": {"x0": "numeric", "x1": "numeric", "x2": "numeric",
                         "kind": "categorical"},
            "segments": ["region"],
            "reference": str(reference),
            "drift_min_samples": 100,
            "detectors": [],
        }],
    })


def messages(
    hours: float, rate: int, rng: np.random.Generator
) -> tuple[list[Message], list[float]]:
    """``rate`` predictions per pane for ``hours`` of event time, labels 5 s later for 80 %
    of them, in event-time order (one partition per topic), and their event times."""
    n = int(hours * 3600 / PANE * rate)
    ts = benchlib.START_TS + np.sort(rng.uniform(0.0, hours * 3600, n))
    x = rng.normal(0.2, 1.1, (n, 3))
    score = np.round(1.0 / (1.0 + np.exp(-(x[:, 0] + rng.normal(0.0, 1.0, n)))), 3)
    label = (rng.random(n) < score).astype(int)
    labelled = rng.random(n) < 0.8
    kinds = rng.choice(CATEGORIES, n)
    regions = rng.choice(SEGMENT_VALUES, n)
    events: list[tuple[float, str, bytes]] = []
    for i in range(n):
        pid = f"p{i}"
        event: dict[str, Any] = {
            "prediction_id": pid, "model": "m", "model_version": "v1", "ts": ts[i],
            "prediction": int(score[i] >= 0.5), "score": float(score[i]),
            "features": {"x0": x[i, 0], "x1": x[i, 1], "x2": x[i, 2], "kind": kinds[i]},
            "segment": {"region": regions[i]},
        }
        events.append((float(ts[i]), "predictions", json.dumps(event).encode()))
        if labelled[i]:
            lab = {"prediction_id": pid, "label": int(label[i]), "ts": ts[i] + 5.0}
            events.append((float(ts[i]) + 5.0, "labels", json.dumps(lab).encode()))
    events.sort(key=lambda e: e[0])
    offsets = {"predictions": 0, "labels": 0}
    out = []
    for _, topic, value in events:
        out.append(Message(topic, 0, offsets[topic], None, value))
        offsets[topic] += 1
    return out, [e[0] for e in events]


def per_window(stage: ModelStage) -> dict[str, dict[str, F64]]:
    """A pane close's signals the way they were computed before the windows were
    stacked: one :func:`compute_metrics` call per window, then the metric filter."""
    from monitor.catalogue import ALWAYS_COMPUTED, base_metric

    model: ModelState = stage.model
    rows = len(model.registry.keys)
    sums = np.empty((len(model.windows) * rows, model.layout.width))
    stage._window_sums(sums)
    closed = stage._closed_counts()[:rows]
    out = {}
    for i, spec in enumerate(model.windows):
        count = closed if spec.kind == "decay" else None
        values = compute_metrics(model.layout, sums[i * rows : (i + 1) * rows],
                                 model.class_names, count, model.config.drift_min_samples)
        if model.metrics is not None:
            keep = set(model.metrics)
            values = {k: v for k, v in values.items()
                      if base_metric(k) in keep or base_metric(k) in ALWAYS_COMPUTED}
        out[spec.name] = values
    return out


def largest_difference(a: dict[str, dict[str, F64]], b: dict[str, dict[str, F64]]) -> float:
    """The largest absolute difference between two pane computations (inf when they
    differ in names, shapes or where the NaNs are)."""
    worst = 0.0
    if a.keys() != b.keys():
        return float("inf")
    for window in a:
        if a[window].keys() != b[window].keys():
            return float("inf")
        for name, x in a[window].items():
            y = b[window][name]
            if x.shape != y.shape or not np.array_equal(np.isnan(x), np.isnan(y)):
                return float("inf")
            finite = ~np.isnan(x)
            if finite.any():
                worst = max(worst, float(np.max(np.abs(x[finite] - y[finite]))))
    return worst


def timing(fn: Any, repeat: int) -> tuple[float, float]:
    """Median wall and CPU (this thread's) ms of ``fn()`` over ``repeat`` rounds of 10
    calls."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(10):
            fn()
        wall.append((time.perf_counter() - t0) / 10 * 1000)
        cpu.append((time.thread_time() - c0) / 10 * 1000)
    return float(np.median(wall)), float(np.median(cpu))


def by_pane(messages: list[Message]) -> list[list[Message]]:
    """``messages`` cut where their event time enters the next pane (one poll per pane)."""
    polls: list[list[Message]] = []
    current = None
    for m in messages:
        pane = int(json.loads(m.value)["ts"] // PANE)
        if pane != current:
            polls.append([])
            current = pane
        polls[-1].append(m)
    return polls


def stage_close(saved: Pipeline, polls: list[list[Message]], rounds: int, backlog: bool,
                ) -> tuple[float, float, int, int, list[PaneSignals]]:
    """Median wall and CPU (this thread's) ms per pane that model ``m``'s
    :meth:`ModelStage.close_through` takes while ``polls`` are read, over ``rounds``
    rounds each from a copy of the core ``saved`` (its signal plans made before, as a
    running process has them); the panes a round closes, the calls that closed them and
    the signals of the last round. ``backlog``: the stage closes nothing while the polls
    are read, then every pane in one call."""
    wall, cpu = [], []
    panes = calls = 0
    signals: list[PaneSignals] = []
    for _ in range(rounds):
        core = copy.deepcopy(saved)
        stage = core.stages["m"]
        stage._stacked()  # a copied layout's plan is made at its first close
        close = stage.close_through
        spent = [0.0, 0.0]
        held: list[int] = []
        made = [0]

        def timed(upto: int, defer: bool = False, close: Any = close,
                  spent: list[float] = spent, made: list[int] = made,
                  stage: ModelStage = stage) -> None:  # fmt: skip
            # the model's own close, its signals computed here (``defer`` is not taken)
            closed = stage.panes_closed
            t0, c0 = time.perf_counter(), time.thread_time()
            close(upto)
            spent[0] += time.perf_counter() - t0
            spent[1] += time.thread_time() - c0
            made[0] += stage.panes_closed > closed

        def hold(upto: int, defer: bool = False, held: list[int] = held) -> None:
            held.append(upto)

        stage.close_through = hold if backlog else timed  # type: ignore[method-assign]
        before = stage.panes_closed
        for poll in polls:
            core.process(poll)
        if backlog:
            timed(max(held))
        panes = stage.panes_closed - before
        calls = made[0]
        signals = stage.drain_signals()
        wall.append(spent[0] / panes * 1000)
        cpu.append(spent[1] / panes * 1000)
    return float(np.median(wall)), float(np.median(cpu)), panes, calls, signals


def identical(a: list[PaneSignals], b: list[PaneSignals]) -> bool:
    """Whether two runs' signals are the same, bit for bit (NaN where NaN)."""
    if [s.pane_end for s in a] != [s.pane_end for s in b]:
        return False
    for x, y in zip(a, b, strict=True):
        if list(x.signals) != list(y.signals):
            return False
        u = np.array(list(x.signals.values()))
        v = np.array(list(y.signals.values()))
        if u.tobytes() != v.tobytes():
            return False
    return True


def load_average() -> str:
    """The 1-minute load average (other jobs sharing the cores), or "unknown"."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="event time to fill windows")
    parser.add_argument("--rate", type=int, default=28, help="predictions per 10 s pane")
    parser.add_argument("--tail", type=float, default=20.0,
                        help="minutes of stream whose pane closes are timed")
    parser.add_argument("--repeat", type=int, default=100,
                        help="timing rounds (metrics: 10 calls each; stage close: a tenth as "
                             "many rounds of --tail minutes)")
    args = parser.parse_args()
    benchlib.one_core()
    rng = np.random.default_rng(15)
    tmp = Path(tempfile.mkdtemp(prefix="monitor-bench-pane-"))
    try:
        reference = tmp / "reference.csv"
        write_reference(reference, 5000, rng)
        core = Pipeline(bench_config(reference))
        msgs, ts = messages(args.hours + args.tail / 60, args.rate, rng)
        split = int(np.searchsorted(ts, benchlib.START_TS + args.hours * 3600))
        for start in range(0, split, 1000):
            core.process(msgs[start:min(start + 1000, split)])
        stage = core.stages["m"]
        model = stage.model
        before = per_window(stage)
        after = stage.compute()
        diff = largest_difference(before, after)
        rows = len(model.registry.keys)
        signals = sum(len(v) for v in after.values())
        metrics_before = metrics_after = (0.0, 0.0)
        saved = core
        load = load_average()
        for _ in range(2):  # interleaved, so that both see the same machine load
            metrics_before = timing(lambda: per_window(stage), args.repeat)
            metrics_after = timing(lambda: stage._stacked(), args.repeat)
        polls = by_pane(msgs[split:])
        rounds = max(args.repeat // 10, 3)
        live = backlog = (0.0, 0.0, 0, 0, list[PaneSignals]())
        for _ in range(2):  # interleaved, as above
            live = stage_close(saved, polls, rounds, backlog=False)
            backlog = stage_close(saved, polls, rounds, backlog=True)
        same = identical(live[4], backlog[4])
        print("## Pane close\n")
        print(f"machine: {benchlib.machine()}; pinned to one core; load average {load} "
              f"when the timing started\n")
        print(f"model: binary, windows all/1h/ewm30m, {rows} slice rows, metrics "
              f"{', '.join(METRICS)}, 3 numeric + 1 categorical features with drift, output "
              f"drift and estimates; {split:,} messages over {args.hours:g} h at "
              f"{args.rate} predictions per {PANE:g} s pane; {signals} signal arrays per "
              f"pane. Metrics: median of {args.repeat} rounds of 10 calls; stage close: "
              f"median of {rounds} rounds of the next {args.tail:g} min "
              f"({len(msgs) - split:,} messages, {backlog[2]} panes closed: in real time "
              f"in {live[3]} calls, in the backlog in {backlog[3]})\n")
        print("| computation | ms per model per pane (wall) | ms (CPU) |")
        print("| --- | ---: | ---: |")
        print(f"| stage close, backlog (`ModelStage.close_through`, {backlog[2]} panes in one "
              f"call) | {backlog[0]:.3f} | {backlog[1]:.3f} |")
        print(f"| stage close, real time (`ModelStage.close_through`, one pane per call) | "
              f"{live[0]:.3f} | {live[1]:.3f} |")
        print(f"| metrics, per window (`compute_metrics` per window) | "
              f"{metrics_before[0]:.3f} | {metrics_before[1]:.3f} |")
        print(f"| metrics, stacked (`ModelStage._stacked`, one pane) | {metrics_after[0]:.3f} | "
              f"{metrics_after[1]:.3f} |")
        print(f"\nmetrics speed-up: {metrics_before[0] / metrics_after[0]:.1f}x (wall), "
              f"{metrics_before[1] / metrics_after[1]:.1f}x (CPU); largest difference between "
              f"the two: {diff:.1e}; backlog signals equal the real-time ones bit for bit: "
              f"{'yes' if same else 'NO'}\n")
        verdict = "met" if backlog[0] <= TARGET_MS else "NOT met"
        print(f"target pane close <= {TARGET_MS} ms per model per pane (a backlog's stage "
              f"close: window roll, metrics, detectors, signals): **{verdict}** "
              f"({backlog[0]:.3f} ms wall, {backlog[1]:.3f} ms CPU; in real time "
              f"{live[0]:.3f} ms wall, {live[1]:.3f} ms CPU)")
        if not diff <= 1e-12:
            print(f"the stacked values differ from the per-window ones by {diff}",
                  file=sys.stderr)
            return 1
        if not same:
            print("the backlog's signals differ from the real-time ones", file=sys.stderr)
            return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
