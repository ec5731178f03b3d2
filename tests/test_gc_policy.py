"""The memory policy of ``run``: the allocator keeps freed blocks of a few hundred KiB for
reuse (the mmap threshold pinned at 4 MiB), and :func:`monitor.gc_policy.release` gives
them back after a poll of large messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import gc_policy

ROOT = Path(__file__).resolve().parents[1]

#: 500 blocks of 200 KB freed but one in 25, which stay spread through the heap (so that
#: trimming the heap's top alone would give little back); RSS growth in bytes, measured
#: after the free and after what the argument asks for.
_SCRIPT = """
import json, sys
from monitor import gc_policy
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
gc_policy.tune()
base = rss()
held = [bytes(200_000) for _ in range(500)]
keep = held[::25]
del held
freed = rss() - base
released = gc_policy.release() if sys.argv[1] == "release" else False
print(json.dumps([freed, rss() - base, released]))
"""


def _run(what: str) -> tuple[int, int, bool]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, what], cwd=ROOT, capture_output=True, check=True,
        env={"PATH": "/usr/bin:/bin"},  # no MALLOC_MMAP_THRESHOLD_: the policy's own
    )  # fmt: skip
    freed, after, released = json.loads(out.stdout)
    return freed, after, released


@pytest.mark.usefixtures("kernels")
def test_large_messages_are_told_apart() -> None:
    large = gc_policy.LARGE_MESSAGE
    assert not gc_policy.holds_large([])
    assert not gc_policy.holds_large((None, None))
    assert not gc_policy.holds_large([None, b"", b"x" * (large - 1)])
    assert gc_policy.holds_large([None, b"x", b"x" * large])
    assert gc_policy.holds_large((b"x" * (large + 1), None))
    # values of another type than bytes are measured too
    assert gc_policy.holds_large([b"x", bytearray(large)])
    assert not gc_policy.holds_large([memoryview(b"x" * 10)])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_freed_blocks_stay_for_reuse_until_released() -> None:
    freed, kept, _ = _run("keep")
    # 100 MB allocated, 96 MB freed: the heap keeps most of it (the blocks reuse it) ...
    assert kept > 60e6 and freed > 60e6, (freed, kept)
    freed, after, released = _run("release")
    if not released:
        pytest.skip("this libc has no malloc_trim")
    # ... until it is released: what is left is about the 4 MB still held.
    assert freed > 60e6 and after < 20e6, (freed, after)
