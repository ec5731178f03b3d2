"""Instructions a workload of the core runs, counted by valgrind (load does not move them).

Timings on a shared machine move by up to 15 % between runs of the same tree, more than
most single changes gain; an instruction count moves by well under 1 %. This bench runs a
workload twice under valgrind's ``cachegrind`` (no cache simulation): once whole and once
stopped before the part under test (after the imports and the stream's generation), and
prints the difference, the instructions of the processing alone. Workloads:

- ``week``: ``monitor.replay.replay`` over ``--days`` of ``replay_week.py``'s traffic (one
  binary model, 10 features, 30 messages/s; the capture is written first);
- ``noisy``: ``monitor.replay.replay`` over ``--events`` predictions of ``replay_noisy.py``'s
  sparse, noisy stream (28 predictions per 10 s pane, garbage, duplicates; the capture is
  written first), with its config;
- ``early``: ``monitor.replay.replay`` over ``--days`` of the ``week`` traffic read as a
  consumer catching up a backlog of both topics reads it: each partition's labels
  :data:`LABELS_FASTER` times as fast as its predictions (label records are about a third
  of the size, and a fetch is by bytes), so most labels come before their prediction and
  wait as early labels (it prints how many labels come before their prediction, and how
  many of those in an earlier poll). The daemon paces its labels partitions (``[kafka]
  label_lead``), so this is what ``monitor replay`` of such a capture, or a daemon with
  ``label_lead = "0s"``, meets;
- ``scaling``: ``Pipeline.process`` over ``scaling.py``'s stream spread over ``--models``
  models (polls of ``--poll`` messages, 10,000 unless told), in the steady state as
  ``scaling.py`` measures it
  (the untimed prefix that warms every model up runs once, natively, and both valgrind
  runs load the pipeline it left; the first timed poll runs in both). A pipeline loaded
  from its pickle runs a little more than one built in the process, as ``scaling.py``
  times it: at 100 models about 2.5 % more (reallocations of lists grown afresh, and
  attribute reads CPython has not specialised yet), at one model nothing to speak of; the
  100-model point's ratio here is that much above the timed one's. With ``--warmup``,
  every model is still in its drift warmup (the default ``reference_warmup``), as a
  freshly deployed model at a trickle stays for hours: its predictions are also sent raw
  to its stage 2.

Compare two trees by running each one's copy of this script, or the same tree with and
without its compiled module (``--native 0``)::

    python bench/instructions.py week --days 0.03
    python bench/instructions.py noisy --events 20000
    python bench/instructions.py early --days 0.03
    python bench/instructions.py scaling --models 100 --native 0
    python bench/instructions.py scaling --models 1 --functions 25   # where they go
    python bench/instructions.py scaling --poll 90 --events 4000 --warmup   # a trickle

Counts see neither cache misses nor the memory traffic of numpy's kernels: a change that
moves data around is timed natively as well (``docs/benchmarks.md``, "Measuring a change").
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")

#: ``early``: how many times as many label messages as prediction messages of a partition
#: the consumer reads in the same time.
LABELS_FASTER = 3.0


def _early_capture(path: Path, events: int, rate: float) -> str:
    """Write ``replay_throughput.py``'s capture of ``events`` predictions (``rate`` a
    second) to ``path`` in the order a consumer reading every partition of both topics
    from the start reads it, each partition's labels :data:`LABELS_FASTER` times as fast
    as its predictions (by offset); say how many labels come before their prediction."""
    import msgspec
    from replay_throughput import generate

    from monitor.replay import BATCH

    class Line(msgspec.Struct):
        topic: str
        partition: int
        offset: int
        key: str

    raw = path.with_suffix(".topics")
    generate(raw, events, rate=rate)
    lines = raw.read_bytes().splitlines(keepends=True)
    raw.unlink()
    heads = msgspec.json.Decoder(list[Line]).decode(b"[" + b",".join(lines) + b"]")
    read_at = [h.offset / LABELS_FASTER if h.topic == "labels" else float(h.offset)
               for h in heads]  # fmt: skip
    order = sorted(range(len(lines)), key=lambda k: (read_at[k], heads[k].partition,
                                                     heads[k].topic, k))  # fmt: skip
    path.write_bytes(b"".join(lines[k] for k in order))
    where = {heads[k].key: n for n, k in enumerate(order) if heads[k].topic == "predictions"}
    labels = [(n, where[heads[k].key]) for n, k in enumerate(order) if heads[k].topic == "labels"]
    before = sum(n < p for n, p in labels)
    polls = sum(n // BATCH < p // BATCH for n, p in labels)
    return (
        f"labels      {len(labels):,}, {before:,} before their prediction "
        f"({polls:,} in an earlier poll)"
    )


def _inner(args: argparse.Namespace) -> None:
    """The workload itself (run under valgrind); stops before processing if ``--setup-only``."""
    import benchlib

    from monitor.logs import configure_logging

    configure_logging("warning", json=True, stream=sys.stderr)
    benchlib.as_the_cli()
    if args.workload in ("week", "early"):
        from replay_throughput import LABEL_SHARE, bench_config, generate

        from monitor.replay import replay

        tmp = Path(tempfile.mkdtemp(prefix="monitor-instr-"))
        try:
            capture = tmp / "capture.jsonl"
            rate = 30.0 / (1.0 + LABEL_SHARE)
            events = int(args.days * 86_400 * rate)
            if args.workload == "early":
                print(_early_capture(capture, events, rate))
            else:
                generate(capture, events, rate=rate)
            config = bench_config()
            if not args.setup_only:
                replay(config, [str(capture)], tmp / "out")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    if args.workload == "noisy":
        import replay_noisy

        from monitor.replay import replay

        tmp = Path(tempfile.mkdtemp(prefix="monitor-instr-"))
        try:
            capture = tmp / "capture.jsonl"
            replay_noisy.generate(capture, args.events)
            config = replay_noisy.bench_config()
            if not args.setup_only:
                replay(config, [str(capture)], tmp / "out")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    import pickle

    with open(args.state, "rb") as f:  # the pipeline warmed up by _warmed_state
        engine, alerting, polls = pickle.load(f)
    # A loaded pipeline makes again, at each model's first pane close, what it made once
    # before (the model's signal plan): the polls up to the one in which every model has
    # closed a pane run in both runs, so that the difference is the steady state's.
    start = {name: stage.closed_upto for name, stage in engine.stages.items()}
    rest = iter(polls)
    for batch in rest:
        engine.process(batch)
        alerting.feed(engine.drain_signals())
        if all(s.closed_upto != start[n] for n, s in engine.stages.items()):
            break
    else:
        raise SystemExit("no pane closed for every model: give more --events")
    if not args.setup_only:
        for batch in rest:
            engine.process(batch)
            alerting.feed(engine.drain_signals())


def _warmed_state(args: argparse.Namespace, path: Path) -> None:
    """The scaling workload's pipeline after its untimed prefix (every model's drift profile
    learnt) and the polls to time, pickled to ``path``: made once, natively, outside
    valgrind."""
    import pickle

    import benchlib

    from monitor.core.alerting import Alerting
    from monitor.core.pipeline import Pipeline
    from monitor.logs import configure_logging

    configure_logging("warning", json=True, stream=sys.stderr)
    benchlib.as_the_cli()
    extra = {} if args.warmup else {"reference_warmup": benchlib.STEADY_WARMUP}
    cfg = benchlib.config(args.models, features=10, segments=0, windows=3, lateness="10s",
                          extra=extra)  # fmt: skip
    prefix, polls = benchlib.steady_polls(args.models, args.events)
    if args.poll != 10_000:  # the same messages in polls of another size
        messages = [m for batch in polls for m in batch]
        polls = [messages[i : i + args.poll] for i in range(0, len(messages), args.poll)]
    engine = Pipeline(cfg)
    alerting = Alerting(cfg, engine.models)
    engine.track(benchlib.all_partitions())
    if args.warmup:  # the prefix read, every model still in its warmup after it
        for batch in prefix:
            engine.process(batch)
            alerting.feed(engine.drain_signals())
        if any(stage.warmed_up() or not stage.model.warmup_target
               for stage in engine.stages.values()):  # fmt: skip
            each = sum(len(batch) for batch in prefix) // len(engine.stages)
            raise SystemExit(
                f"--warmup: a model left its drift warmup in the untimed prefix (about "
                f"{each:,} messages a model with {len(engine.stages)} models): give more "
                "--models"
            )
    else:
        benchlib.warm_up(engine, alerting, prefix)
    with open(path, "wb") as f:
        pickle.dump((engine, alerting, polls), f, protocol=pickle.HIGHEST_PROTOCOL)


def _count(argv: list[str], native: str, out: Path | None = None) -> tuple[int, str]:
    """Instructions of this script run with ``argv`` under cachegrind, and what it printed;
    cachegrind's counts per source line written to ``out`` when given."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "MONITOR_NATIVE": native}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no",
         f"--cachegrind-out-file={out if out is not None else '/dev/null'}",
         sys.executable, os.path.abspath(__file__), *argv, "--inner"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", "")), done.stdout


def _per_function(path: Path) -> dict[str, int]:
    """Instructions per compiled function (``file:function``, the build directory left
    out) of a cachegrind output file (its ``fl=``/``fn=`` headers, then ``line count``
    lines)."""
    counts: dict[str, int] = {}
    where = function = ""
    with path.open() as f:
        for line in f:
            if line.startswith("fl="):
                where = re.sub(r"^.*?/Python-\d+\.\d+\.\d+/", "", line[3:].strip())
            elif line.startswith("fn="):
                function = f"{where}:{line[3:].strip()}"
            elif line[:1].isdigit():
                count = int(line.split()[1])
                counts[function] = counts.get(function, 0) + count
    return counts


def _top_functions(whole: Path, setup: Path, total: int, top: int) -> list[str]:
    """The ``top`` compiled functions by their instructions in the processing (the whole
    run's less the setup run's), each with its share of ``total``: where the processing's
    instructions go, load-independent (interpreted Python shows as the interpreter's own
    functions, ``_PyEval_EvalFrameDefault`` and the object and dict code it calls)."""
    after, before = _per_function(whole), _per_function(setup)
    spent = {name: n - before.get(name, 0) for name, n in after.items()}
    ranked = sorted(spent.items(), key=lambda item: -item[1])[:top]
    return [f"{n / total:7.1%} {n:>14,}  {name}" for name, n in ranked]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=("week", "noisy", "early", "scaling"))
    parser.add_argument("--days", type=float, default=0.03, help="week, early: days of traffic")
    parser.add_argument("--models", type=int, default=100, help="scaling: models")
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="scaling: predictions after the warmup (each model closes panes; "
        "default 40,000); noisy: predictions of the stream (default 20,000)",
    )
    parser.add_argument(
        "--poll",
        type=int,
        default=10_000,
        help="scaling: messages a poll (a trickle: a few dozen, where a poll's fixed cost "
        "per model is most of the work)",
    )
    parser.add_argument(
        "--warmup",
        action="store_true",
        help="scaling: every model still in its drift warmup (the default "
        "reference_warmup, as a freshly deployed model at a trickle stays for hours): its "
        "predictions also sent raw to its stage 2",
    )
    parser.add_argument(
        "--native",
        choices=("0", "1"),
        default="1",
        help="1: the compiled module when it is built; 0: the numpy code",
    )
    parser.add_argument(
        "--functions",
        type=int,
        default=0,
        metavar="N",
        help="also print the N compiled functions that run the most of the processing's "
        "instructions",
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--make-state", help=argparse.SUPPRESS)
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.events is None:
        args.events = 20_000 if args.workload == "noisy" else 40_000
    if args.inner:
        _inner(args)
        return 0
    if args.make_state:
        _warmed_state(args, Path(args.make_state))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    argv = [args.workload, "--days", str(args.days), "--models", str(args.models),
            "--events", str(args.events), "--poll", str(args.poll),
            *(["--warmup"] if args.warmup else [])]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="monitor-instr-") as tmp:
        if args.workload == "scaling":  # warmed natively, with the same hash seed
            state = Path(tmp) / "warmed.pickle"
            env = {**os.environ, "PYTHONHASHSEED": "0", "MONITOR_NATIVE": args.native}
            subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--make-state",
                            str(state)], env=env, check=True)  # fmt: skip
            argv += ["--state", str(state)]
        keep = args.functions > 0
        outs = (Path(tmp) / "whole.cg", Path(tmp) / "setup.cg") if keep else (None, None)
        whole, said = _count(argv, args.native, outs[0])
        setup, _ = _count([*argv, "--setup-only"], args.native, outs[1])
        top = (_top_functions(outs[0], outs[1], whole - setup, args.functions)
               if outs[0] is not None and outs[1] is not None else [])  # fmt: skip
    from monitor import native

    what = {
        "week": f"{args.days:g} days of replay_week.py's traffic",
        "noisy": f"{args.events:,} predictions of replay_noisy.py's stream",
        "early": f"{args.days:g} days of replay_week.py's traffic, labels read ahead",
        "scaling": f"{args.events:,} predictions over {args.models} models, polls of "
        f"{args.poll:,} messages" + (", every model in its warmup" if args.warmup else ""),
    }[args.workload]
    compiled = "on" if args.native == "1" and native.available() else "off"
    print(f"workload    {args.workload}: {what}; compiled module {compiled}")
    if said:
        print(said, end="")
    print(f"whole       {whole:>16,} instructions")
    print(f"setup       {setup:>16,} instructions (imports, the stream, the start)")
    print(f"processing  {whole - setup:>16,} instructions")
    if top:
        print("functions   the processing's instructions by compiled function (share, count):")
        print("\n".join(top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
