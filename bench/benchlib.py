"""Shared pieces of the benchmarks: the machine line, synthetic event streams, configs,
RSS readings and the profiler's split of time by pipeline stage.

Not a benchmark itself; the ``bench/*.py`` scripts import it (they put this directory
on ``sys.path``).
"""

from __future__ import annotations

import cProfile
import gc
import heapq
import os
import platform
import pstats
import random
import resource
import socket
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitor.config import MonitorConfig  # noqa: E402
from monitor.events.message import Message  # noqa: E402

PARTITIONS = 4
START_TS = 1_700_000_000.0
WINDOW_SETS: dict[int, list[str]] = {
    1: ["all"],
    3: ["all", "1h", "ewm30m"],
    6: ["all", "5m", "1h", "1d", "ewm5m", "ewm30m"],
}
SEGMENT_VALUES = 50


# --------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gb() -> float:
    """Physical memory in GB (MemTotal)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return float("nan")


def versions(*names: str) -> str:
    """``name version`` of the installed distributions named (absent ones are skipped)."""
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(out)


def machine() -> str:
    """One line: OS, CPU model, cores, memory, Python."""
    return (
        f"{platform.platform()}; {cpu_model()}; {os.cpu_count()} cores; "
        f"{mem_total_gb():.0f} GB; Python {platform.python_version()}"
    )


def one_core() -> None:
    """Pin this process to its first allowed CPU (the measurements are per core)."""
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})


def as_the_cli() -> None:
    """Apply the interpreter settings ``monitor run``, ``replay`` and ``tune`` apply before
    they start (:func:`monitor.gc_policy.tune`: the cyclic collector runs far less
    often), for benches that call the library directly in their place."""
    from monitor import gc_policy

    gc_policy.tune()


# --------------------------------------------------------------------------- memory
def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size (VmRSS) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def peak_rss_bytes() -> int:
    """Peak RSS of this process so far (ru_maxrss, KiB on Linux), in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def settled_rss() -> int:
    """RSS after a full garbage collection."""
    gc.collect()
    return rss_bytes()


# --------------------------------------------------------------------------- configs
def model_dict(
    name: str,
    *,
    features: int = 10,
    segments: int = 0,
    windows: int = 3,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A binary model with every binary metric, ``features`` numeric features,
    ``segments`` segment keys (50 values each) and the window set of that size."""
    model: dict[str, Any] = {
        "name": name,
        "task": "binary",
        "positive_class": 1,
        "label_ttl": "6h",
        "windows": WINDOW_SETS[windows],
        "features": {f"f{i}": "numeric" for i in range(features)},
        "segments": [f"s{i}" for i in range(segments)],
        "max_segment_values": SEGMENT_VALUES,
    }
    model.update(extra or {})
    return model


def config(
    models: int = 1,
    *,
    features: int = 10,
    segments: int = 0,
    windows: int = 3,
    pane: str = "10s",
    lateness: str = "1m",
    extra: dict[str, Any] | None = None,
) -> MonitorConfig:
    """A config of ``models`` identical models ``m0``, ``m1``, ..."""
    return MonitorConfig.model_validate({
        "time": {"pane": pane, "allowed_lateness": lateness},
        "models": [
            model_dict(f"m{i}", features=features, segments=segments, windows=windows,
                       extra=extra)
            for i in range(models)
        ],
    })


# --------------------------------------------------------------------------- streams
def prediction_payload(
    pid: str, model: str, ts: float, rng: random.Random, features: int, segments: int
) -> tuple[bytes, float]:
    """A prediction event's JSON and its score."""
    x = [round(rng.gauss(0.0, 1.0), 2) for _ in range(features)]
    z = (x[0] if x else 0.0) + rng.gauss(0.0, 1.0)
    score = round(1.0 / (1.0 + 2.718281828 ** -z), 3)
    feats = ",".join(f'"f{i}":{v}' for i, v in enumerate(x))
    seg = ",".join(f'"s{i}":"v{rng.randrange(SEGMENT_VALUES)}"' for i in range(segments))
    text = (
        f'{{"prediction_id":"{pid}","model":"{model}","ts":{ts:.3f},'
        f'"prediction":{int(score >= 0.5)},"score":{score},"features":{{{feats}}}'
        + (f',"segment":{{{seg}}}' if segments else "")
        + "}"
    )
    return text.encode(), score


def stream(
    events: int,
    *,
    models: int = 1,
    features: int = 10,
    segments: int = 0,
    label_share: float = 0.8,
    rate: float = 1000.0,
    max_delay: float = 60.0,
    seed: int = 1,
    start: int = 0,
    predictions_topic: str = "predictions",
    labels_topic: str = "labels",
) -> Iterator[Message]:
    """``events`` predictions (``rate`` per second of event time, round-robin over the
    models, 4 partitions by key) and labels for ``label_share`` of them, each arriving
    1..``max_delay`` s of event time later, in event-time order, as :class:`Message`."""
    rng = random.Random(seed + start)
    offsets: dict[tuple[str, int], int] = {}
    pending: list[tuple[float, str, int, bytes]] = []

    def msg(topic: str, part: int, key: str, value: bytes) -> Message:
        off = offsets.get((topic, part), start)
        offsets[topic, part] = off + 1
        return Message(topic, part, off, key.encode(), value)

    for i in range(start, start + events):
        ts = START_TS + i / rate
        while pending and pending[0][0] <= ts:
            _, key, part, value = heapq.heappop(pending)
            yield msg(labels_topic, part, key, value)
        pid = f"p{i:09d}"
        part = zlib.crc32(pid.encode()) % PARTITIONS
        payload, score = prediction_payload(pid, f"m{i % models}", ts, rng, features, segments)
        yield msg(predictions_topic, part, pid, payload)
        if rng.random() < label_share:
            lts = ts + rng.uniform(1.0, max_delay)
            label = int(rng.random() < score)
            heapq.heappush(
                pending,
                (lts, pid, part, f'{{"prediction_id":"{pid}","label":{label},"ts":{lts:.3f}}}'
                 .encode()),
            )
    while pending:
        _, key, part, value = heapq.heappop(pending)
        yield msg(labels_topic, part, key, value)


def batches(messages: Iterator[Message], size: int = 10_000) -> list[list[Message]]:
    """The messages cut into lists of ``size`` (one poll each, as in ``run``)."""
    out: list[list[Message]] = []
    batch: list[Message] = []
    for m in messages:
        batch.append(m)
        if len(batch) == size:
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return out


#: The drift profile's warmup of each model in the steady-state benches (predictions): small
#: enough that 100 models all learn theirs in a short untimed prefix of the stream.
STEADY_WARMUP = 500


def steady_polls(
    models: int, events: int, *, features: int = 10, segments: int = 0
) -> tuple[list[list[Message]], list[list[Message]]]:
    """:func:`stream`'s polls for a steady-state measurement: an untimed prefix long
    enough for every model to learn its drift profile (``STEADY_WARMUP`` predictions
    each, and the panes that close them), then the polls of the next ``events``
    predictions and the labels among them, continuing the same stream. The stream goes
    on past them (its labels come up to a minute after their prediction): the timed
    polls are the stream's middle, not the labels left at its end."""
    prefix = models * STEADY_WARMUP + 30_000
    rate = 1000.0  # stream()'s default: predictions per second of event time
    past = int(70 * rate)  # beyond the last timed prediction: more than the latest label
    polls = batches(stream(prefix + events + past, models=models, features=features,
                           segments=segments, rate=rate))  # fmt: skip
    share = 1.0 + 0.8  # stream()'s messages per prediction (80 % labelled)
    lead, end = int(prefix * share), int((prefix + events) * share)
    cuts = [0]
    for batch in polls:
        cuts.append(cuts[-1] + len(batch))
    first = next(i for i, at in enumerate(cuts) if at >= lead)
    last = next((i for i, at in enumerate(cuts) if at >= end), len(polls))
    return polls[:first], polls[first:last]


def warm_up(pipeline: Any, alerting: Any, polls: list[list[Message]]) -> None:
    """Feed ``polls`` (see :func:`steady_polls`) and check that every model learnt its
    drift profile, so that the timed part measures the steady state."""
    for batch in polls:
        pipeline.process(batch)
        alerting.feed(pipeline.drain_signals())
    cold = [name for name, stage in pipeline.stages.items() if not stage.warmed_up()]
    if cold:
        raise RuntimeError(f"models still warming up after the prefix: {cold[:5]}")


def all_partitions(predictions: str = "predictions", labels: str = "labels") -> set[
        tuple[str, int]]:
    """Every input partition of the synthetic streams (what ``Engine.track`` is given)."""
    return {(t, p) for t in (predictions, labels) for p in range(PARTITIONS)}


# --------------------------------------------------------------------------- stages
STAGES = ("read", "kafka consume", "decode", "join", "accumulate", "pane close", "signals",
          "rules", "final flush", "report", "outputs", "checkpoint", "idle wait", "other")
#: Builtins that block (the selector, sleeps, lock waits): "idle wait", whoever calls them.
_WAITS = ("select.epoll", "select.poll", "select.select", "time.sleep", "_thread.lock",
          "_thread.RLock", "selectors")
_ENGINE_STAGE = {
    "process": "decode",
    "partition": "decode",
    "_accumulate": "accumulate", "_scatter": "accumulate", "_buffer_errors": "accumulate",
    "_label_delays": "accumulate", "predictions": "accumulate", "outcomes": "accumulate",
    "batch_of": "join",
    "close_through": "pane close", "_advance": "pane close", "_watermark": "pane close",
    "_first_open": "pane close", "_expire": "pane close", "_emit": "pane close",
    "_compute": "signals", "_window_sums": "signals", "_closed_counts": "signals",
    "_stacked": "signals", "_window_stack": "signals",
    "_warm_up": "signals", "_install_profile": "signals", "_detect": "signals",
    "report": "report", "_model_report": "report", "_counters": "report", "summary": "report",
    "flushed": "final flush", "drain_signals": "outputs",
}
#: A model's stage 2 (``monitor/core/model_stage.py``): taking deltas in is accumulation.
_MODEL_STAGE = {
    "close_through": "pane close", "advance": "pane close", "_watermark": "pane close",
    "compute": "signals", "_take": "signals", "_flush": "signals", "_stacked": "signals",
    "_window_sums": "signals", "_closed_counts": "signals", "_warm_up": "signals",
    "_warm_blocks": "signals", "_values": "signals", "_stack": "signals",
    "_pane_stack": "signals", "_sources": "signals", "_start": "signals", "_plan": "signals",
    "_used": "signals", "flush_together": "signals",
    "report": "report", "drain_signals": "outputs",
}
#: The batch path: decoding and checking columns, then the join proper.
_FASTPATH_STAGE = {
    "split_and_join": "decode", "_decode_each": "decode", "_times": "decode",
    "_predictions": "decode", "_slices": "decode", "_group": "decode", "__init__": "join",
    "_decode_predictions": "decode", "_typed": "decode", "_all_features": "decode",
    "_feature_columns": "accumulate",
}
_MODULE_STAGE = {
    "monitor/events/codec.py": "decode",
    "monitor/events/message.py": "decode",
    "monitor/core/join.py": "join",
    "monitor/core/caps.py": "join",
    "monitor/core/layout.py": "accumulate",
    "monitor/core/partials.py": "accumulate",
    "monitor/core/deltas.py": "accumulate",
    "monitor/core/windows.py": "pane close",
    "monitor/core/metrics.py": "signals",
    "monitor/core/panemetrics.py": "signals",
    "monitor/core/calibration.py": "signals",
    "monitor/core/drift.py": "signals",
    "monitor/core/estimate.py": "signals",
    "monitor/core/detectors.py": "signals",
    "monitor/core/reference.py": "signals",
    "monitor/core/baseline.py": "signals",
    "monitor/core/rules.py": "rules",
    "monitor/core/alerting.py": "rules",
    "monitor/core/report.py": "report",
    "monitor/outputs/": "outputs",
    "monitor/kafka/source.py": "kafka consume",
    "monitor/kafka/sink.py": "outputs",
    "monitor/state/": "checkpoint",
    "monitor/http.py": "outputs",
    "monitor/replay.py": "read",
}


def _stage_of(filename: str, func: str) -> str | None:
    if filename == "~" and any(w in func for w in _WAITS):
        return "idle wait"
    name = filename.replace(os.sep, "/")
    if name.endswith("monitor/core/engine.py"):
        return _ENGINE_STAGE.get(func, "other")
    if name.endswith("monitor/core/pipeline.py"):  # one process's two stages
        return {"_hand_over": "accumulate", "_close": "pane close"}.get(
            func, _ENGINE_STAGE.get(func, "other"))
    if name.endswith("monitor/core/model_stage.py"):  # a model's stage 2
        return _MODEL_STAGE.get(func, "accumulate")
    if name.endswith("monitor/core/fastpath.py"):
        return _FASTPATH_STAGE.get(func, "join")
    if name.endswith("monitor/app.py"):
        return {"_tick": "report", "_publish": "report", "checkpoint": "checkpoint",
                "_send_alerts": "outputs"}.get(func, "other")
    if name.endswith("monitor/replay.py"):
        return "read" if func in ("iter_capture", "_headers", "capture_partitions",
                                  "read_batches", "batch", "_message", "<listcomp>",
                                  "_bad_line", "_payloads", "<genexpr>", "_kcat_partitions",
                                  "_add_pairs", "_line_starts", "_chunks", "add_chunk",
                                  "add_lines", "_extend", "_decode_others", "take", "line",
                                  "add", "_events_envelopes", "_utf8") \
            else "outputs"
    for suffix, stage in _MODULE_STAGE.items():
        if suffix in name:
            return stage
    return None  # a library or builtin function: charged to its callers' stages


def stage_split(stats: pstats.Stats) -> dict[str, float]:
    """Self time of every profiled function charged to a stage: functions of the monitor
    package by module and name (:data:`_ENGINE_STAGE`, :data:`_MODULE_STAGE`); library and
    builtin functions (numpy, msgspec, ...) to the stages of their callers, in proportion
    to the time spent under each caller."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Any, dict[str, float]] = {}

    def dist(func: Any, stack: frozenset[Any] = frozenset()) -> dict[str, float]:
        if func in memo:
            return memo[func]
        filename, _, name = func
        stage = _stage_of(filename, name)
        if stage is not None:
            return memo.setdefault(func, {stage: 1.0})
        # Callers on the stack are this function's own recursion: they share its stage.
        callers = {c: e for c, e in raw.get(func, (0, 0, 0, 0, {}))[4].items()
                   if c not in stack and c != func}
        out: dict[str, float] = {}
        weight = 0.0  # of the callers that lead somewhere off the current path
        if len(stack) < 60:
            for caller, edge in callers.items():
                sub = dist(caller, stack | {func})
                if sub and edge[2] > 0:
                    weight += edge[2]
                    for s, f in sub.items():
                        out[s] = out.get(s, 0.0) + edge[2] * f
        if weight <= 0:
            # Only called from the current path (its own recursion): no share of its own.
            return {} if stack else {"other": 1.0}
        out = {s: f / weight for s, f in out.items()}
        # Kept even when found with the current path excluded (an approximation that only
        # affects recursion); without this the walk is exponential on large call graphs.
        memo[func] = out
        return out

    seconds = dict.fromkeys(STAGES, 0.0)
    for func, (_cc, _nc, tt, _ct, _callers) in raw.items():
        for s, f in dist(func).items():
            seconds[s] = seconds.get(s, 0.0) + tt * f
    return seconds


def profile_stages(fn: Callable[[], Any]) -> tuple[dict[str, float], pstats.Stats]:
    """Run ``fn`` under cProfile; its stage split (seconds) and the raw stats."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    stats = pstats.Stats(prof)
    return stage_split(stats), stats


def stage_table(seconds: dict[str, float], title: str = "stage") -> str:
    """A table of seconds and share per stage (stages with no time are left out)."""
    total = sum(seconds.values()) or 1.0
    lines = [f"| {title} | seconds | share |", "| --- | ---: | ---: |"]
    for stage in STAGES:
        s = seconds.get(stage, 0.0)
        if s > 0.0005:
            lines.append(f"| {stage} | {s:.3f} | {s / total:.1%} |")
    lines.append(f"| total (profiled) | {total:.3f} | 100% |")
    return "\n".join(lines)


def top_functions(stats: pstats.Stats, n: int = 12) -> str:
    """The ``n`` functions with the most self time, as table rows."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:n]
    lines = ["| function | calls | self s | stage |", "| --- | ---: | ---: | --- |"]
    for (filename, line, name), (_cc, nc, tt, _ct, _callers) in rows:
        short = filename.replace(str(ROOT) + os.sep, "")
        stage = _stage_of(filename, name) or "(callers)"
        lines.append(f"| `{short}:{line}({name})` | {nc:,} | {tt:.3f} | {stage} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- misc
def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Pair(NamedTuple):
    """One baseline run and one run under test, timed one after the other: wall and CPU
    seconds of each, and what the run under test returned."""

    base_s: float
    base_cpu: float
    run_s: float
    run_cpu: float
    result: Any

    @property
    def ratio(self) -> float:
        """The run's rate over the baseline's, for the same messages (wall seconds)."""
        return self.base_s / self.run_s

    @property
    def cpu_ratio(self) -> float:
        """The same per CPU second of this process."""
        return self.base_cpu / self.run_cpu


def alternate(pairs: int, base: Callable[[], Any], run: Callable[[int], Any]) -> list[Pair]:
    """``base()`` and ``run(i)`` timed one after the other, ``pairs`` times: a ratio of two
    runs minutes apart moves by a tenth or more on a shared machine, the median of pairs
    made back to back much less."""
    out = []
    for i in range(pairs):
        w0, c0 = time.perf_counter(), time.process_time()
        base()
        w1, c1 = time.perf_counter(), time.process_time()
        result = run(i)
        w2, c2 = time.perf_counter(), time.process_time()
        out.append(Pair(w1 - w0, c1 - c0, w2 - w1, c2 - c1, result))
    return out


def median_pair(pairs: list[Pair]) -> Pair:
    """The pair whose ratio is the median (the lower middle one of an even count)."""
    ordered = sorted(pairs, key=lambda p: p.ratio)
    return ordered[(len(ordered) - 1) // 2]


def pairs_line(pairs: list[Pair]) -> str:
    """Each pair's ratio in order, by wall and by CPU seconds, and the median's."""
    mid = median_pair(pairs)
    return (f"pairs       {len(pairs)} baseline/replay pairs back to back, ratios "
            f"{', '.join(f'{p.ratio:.3f}' for p in pairs)} (per CPU second "
            f"{', '.join(f'{p.cpu_ratio:.3f}' for p in pairs)}); median {mid.ratio:.3f}")


# --------------------------------------------------------------------------- daemon
#: Log events that mark the phases of a daemon's start.
PHASES = ("checkpoint_loaded", "http_listening", "kafka_source_subscribed",
          "assignment_changed")

class Daemon:
    """``monitor run`` as a subprocess over a config written into ``workdir``, its log in
    ``workdir/daemon.log``; the HTTP port is a free loopback one."""

    def __init__(self, workdir: Path, bootstrap: str, body: dict[str, Any],
                 *, topics: str = "bench", checkpoint_interval: str = "60s") -> None:
        import tomli_w

        self.workdir = workdir
        self.port = free_port()
        self.topics = {
            "predictions": f"{topics}.predictions",
            "labels": f"{topics}.labels",
            "alerts": f"{topics}.alerts",
            "dead_letters": f"{topics}.dead-letters",
        }
        cfg: dict[str, Any] = {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"{topics}-monitor",
                "predictions_topic": self.topics["predictions"],
                "labels_topic": self.topics["labels"],
                "alerts_topic": self.topics["alerts"],
                "dead_letter_topic": self.topics["dead_letters"],
                "session_timeout": "6s",
                "heartbeat_interval": "1s",
            },
            "http": {"listen": f"127.0.0.1:{self.port}"},
            "state": {"dir": str(workdir / "state"), "checkpoint_interval": checkpoint_interval},
        }
        cfg.update(body)
        self.config_path = workdir / "monitor.toml"
        self.config_path.write_text(tomli_w.dumps(cfg))
        self.proc: Any = None
        self.started = 0.0

    def create_topics(self, partitions: int = PARTITIONS) -> None:
        """Create the four topics (before any client touches them: Tansu auto-creates 4)."""
        from monitor.broker import create_topics

        bootstrap = self._bootstrap()
        create_topics(bootstrap, {self.topics["predictions"]: partitions,
                                  self.topics["labels"]: partitions,
                                  self.topics["alerts"]: 1, self.topics["dead_letters"]: 1})

    def _bootstrap(self) -> str:
        import tomllib

        cfg = tomllib.loads(self.config_path.read_text())
        return str(cfg["kafka"]["bootstrap_servers"])

    def start(self, profile_to: Path | None = None) -> None:
        """Start the daemon (under cProfile writing ``profile_to`` at exit, if given);
        ``started`` is the monotonic time just before the spawn."""
        import subprocess

        log = (self.workdir / "daemon.log").open("ab")
        self.started = time.monotonic()
        self.started_wall = time.time()
        prefix = ["-m", "cProfile", "-o", str(profile_to)] if profile_to else []
        self.proc = subprocess.Popen(
            [sys.executable, *prefix, "-m", "monitor.cli", "run", "--config",
             str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """Status and body of a GET on the daemon's HTTP port (0 when it does not answer)."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except OSError:
            return 0, b""

    def wait_ready(self, timeout: float = 120.0, step: float = 0.02) -> float:
        """Seconds from :meth:`start` until ``/readyz`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log_tail()}")
            if self.get("/readyz", timeout=1.0)[0] == 200:
                return time.monotonic() - self.started
            time.sleep(step)
        raise RuntimeError(f"daemon not ready after {timeout} s: {self.log_tail()}")

    def phases(self, events: tuple[str, ...] = PHASES) -> dict[str, float]:
        """Seconds from the spawn to the first log record of each of ``events``."""
        from datetime import datetime

        import msgspec

        found: dict[str, float] = {}
        path = self.workdir / "daemon.log"
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue
            event = record.get("event") if isinstance(record, dict) else None
            if event in events and event not in found and "timestamp" in record:
                ts = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
                found[event] = ts.timestamp() - self.started_wall
        return found

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the daemon's log."""
        path = self.workdir / "daemon.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
