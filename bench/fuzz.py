"""A long fuzz run of the decoder and the config loader (the suite runs a small budget).

Runs ``tests/fuzz`` with ``MONITOR_FUZZ_EXAMPLES`` set, so every property there draws
``--examples`` inputs instead of the suite's hundred or so. Prints what pytest prints;
the exit code is pytest's (a failure shows the shrunk input that broke the property)::

    PYTHONPATH=. python bench/fuzz.py                  # 20,000 examples per property
    PYTHONPATH=. python bench/fuzz.py --examples 2000 -k config
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Run the fuzz tests with a larger budget; return pytest's exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000, help="inputs per property")
    parser.add_argument("-k", default="", help="pytest -k expression (e.g. decoder, config)")
    args = parser.parse_args()
    env = {**os.environ, "MONITOR_FUZZ_EXAMPLES": str(args.examples)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--timeout=0", "--hypothesis-show-statistics", str(ROOT / "tests" / "fuzz")]
    if args.k:
        command += ["-k", args.k]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
