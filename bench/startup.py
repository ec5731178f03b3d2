"""Start-up: seconds from a command's spawn to its first message.

    python bench/startup.py               # 5 runs of each command
    python bench/startup.py --runs 11

Each run is a fresh interpreter (``python -m monitor.cli``) on this checkout, with the
example config and capture of ``examples/``:

- ``replay``: ``monitor replay --config examples/monitor.toml --out DIR
  examples/sample-capture.jsonl``, from the spawn to the first batch of messages read
  from the capture (``monitor.replay.read_batches`` yields it), where the replay stops;
- ``run``: ``monitor run --config examples/monitor.toml`` with an empty state directory,
  from the spawn to the run loop's start (``App.run``: its first poll comes next), where
  it stops. No broker is needed for that: the group join runs in the background from the
  spawn on and overlaps these seconds (``monitor/startup.py``);
- ``check-config``: ``monitor check-config examples/monitor.toml``, from the spawn to its
  exit.

The hook that reads the time is installed by a small wrapper before ``monitor.cli`` runs,
and imports nothing of the package itself, so each command imports what it would alone.
Prints the median and the best run of each, the median CPU seconds (user + system: less
sensitive than the wall time to other jobs on the machine) and, per command, whether any
of the packages that only some commands use (plotly, tensorboardX, scikit-learn, river's
data sets, pyarrow, pandas) was loaded by then. Target: every median within 1 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.0
HEAVY = ("plotly", "tensorboardX", "sklearn", "river.datasets", "pyarrow", "pandas")
CONFIG = ROOT / "examples" / "monitor.toml"
CAPTURE = ROOT / "examples" / "sample-capture.jsonl"

#: Runs ``monitor.cli`` with ``argv[4:]``; when module ``argv[1]`` has loaded, wraps its
#: callable ``argv[2]`` (``Class.method`` or a function; a generator function when
#: ``argv[3]`` is ``gen``) to print the wall time of its first call (first item), the
#: heavy packages loaded then, and exit at once.
WRAPPER = r"""
import importlib.abc, importlib.machinery, os, sys, time

MODULE, TARGET, KIND, HEAVY = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")


def stop():
    loaded = [m for m in HEAVY if m in sys.modules
              and type(sys.modules[m]).__name__ != "Deferred"]
    print(f"STARTUP {time.time():.6f} {','.join(loaded) or '-'}", file=sys.stderr, flush=True)
    os._exit(0)


def patch(module):
    owner_name, _, attr = TARGET.rpartition(".")
    owner = getattr(module, owner_name) if owner_name else module
    original = getattr(owner, attr)
    if KIND == "gen":
        def first(*args, **kwargs):
            for _ in original(*args, **kwargs):
                stop()
            yield from ()
    else:
        def first(*args, **kwargs):
            stop()
    setattr(owner, attr, first)


class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Hook())
sys.argv = ["monitor", *sys.argv[5:]]
from monitor.cli import main

sys.exit(main())
"""


def _env(state: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MONITOR__STATE__DIR"] = state
    env["MONITOR__HTTP__LISTEN"] = "127.0.0.1:0"
    env["MONITOR_KAFKA_BOOTSTRAP"] = "127.0.0.1:9"  # nothing listens: the join never ends
    return env


def _cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def hooked(module: str, target: str, kind: str, args: list[str]) -> tuple[float, float, str]:
    """Seconds from the spawn to the hook, the CPU seconds the process used (it exits at
    the hook), and the heavy packages loaded by then."""
    with tempfile.TemporaryDirectory(prefix="monitor-startup-") as tmp:
        command = [sys.executable, "-c", WRAPPER, module, target, kind, ",".join(HEAVY),
                   *[a.replace("{tmp}", tmp) for a in args]]
        cpu = _cpu()
        started = time.time()
        done = subprocess.run(command, capture_output=True, text=True, env=_env(tmp),
                              cwd=ROOT, timeout=120)
        cpu = _cpu() - cpu
    for line in done.stderr.splitlines():
        if line.startswith("STARTUP "):
            _, at, loaded = line.split()
            return float(at) - started, cpu, loaded
    raise RuntimeError(f"{module}.{target} was never reached:\n{done.stderr[-2000:]}")


def whole(args: list[str]) -> tuple[float, float, str]:
    """Seconds from the spawn to the exit of ``python -m monitor.cli ARGS`` (exit 0), and
    the CPU seconds it used."""
    with tempfile.TemporaryDirectory(prefix="monitor-startup-") as tmp:
        cpu = _cpu()
        started = time.time()
        subprocess.run([sys.executable, "-m", "monitor.cli", *args], check=True,
                       capture_output=True, env=_env(tmp), cwd=ROOT, timeout=120)
        return time.time() - started, _cpu() - cpu, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command")
    args = parser.parse_args()
    commands = {
        "replay (to the first message)": lambda: hooked(
            "monitor.replay", "read_batches", "gen",
            ["replay", "--config", str(CONFIG), "--out", "{tmp}/out", str(CAPTURE)]),
        "run (to the run loop, first poll next)": lambda: hooked(
            "monitor.app", "App.run", "call", ["run", "--config", str(CONFIG)]),
        "check-config (to its exit)": lambda: whole(["check-config", str(CONFIG)]),
    }
    load = os.getloadavg()[0]
    print(f"Seconds from the spawn, {args.runs} runs each; load average {load:.2f} on "
          f"{os.cpu_count()} cores at the start.\n")
    print("| command | median s | best s | median CPU s | heavy packages loaded |")
    print("| --- | ---: | ---: | ---: | --- |")
    medians = {}
    for name, measure in commands.items():
        results = [measure() for _ in range(args.runs)]
        times = [t for t, _, _ in results]
        cpu = statistics.median(c for _, c, _ in results)
        loaded = sorted({m for *_, found in results for m in found.split(",") if m and m != "-"})
        medians[name] = statistics.median(times)
        print(f"| {name} | {medians[name]:.2f} | {min(times):.2f} | {cpu:.2f} | "
              f"{', '.join(loaded) or 'none'} |")
    worst = max(medians, key=lambda n: medians[n])
    verdict = "met" if medians[worst] <= TARGET else "NOT met"
    print(f"\ntarget first message within {TARGET:.0f} s: **{verdict}** (slowest median: "
          f"{worst}, {medians[worst]:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
