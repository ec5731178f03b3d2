"""The local checkpoint store: atomic, versioned, checksummed; a torn or corrupt newest
file falls back to the previous one with a log line; a SIGKILL at any instant of a write
never leaves the directory without a readable checkpoint that is at least as new as the
last completed write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from monitor.config import MonitorConfig, config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
from monitor.state.checkpoint import MAGIC, CheckpointStore


def _config(windows: tuple[str, ...] = ("all", "1m")) -> MonitorConfig:
    return config_from_mapping(
        {"models": [{"name": "m", "task": "binary", "positive_class": 1, "windows": list(windows)}]}
    )


def _engine(events: int, config: MonitorConfig | None = None) -> Pipeline:
    engine = Pipeline(config or _config())
    msgs = [
        Message("predictions", i % 2, i // 2, b"k", json.dumps(
            {"prediction_id": f"p{i}", "model": "m", "ts": 1_700_000_000 + i,
             "prediction": i % 2, "label": (i // 3) % 2}
        ).encode())
        for i in range(events)
    ]  # fmt: skip
    engine.process(msgs)
    return engine


def _two_checkpoints(tmp_path: Path) -> CheckpointStore:
    store = CheckpointStore(tmp_path)
    store.save(_engine(10))
    store.save(_engine(20))
    assert store.previous.exists() and store.path.exists()
    return store


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for at in (len(data) - 1, len(data) // 2, len(data) - 100):
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def _garbage_header(path: Path) -> None:
    data = path.read_bytes()
    at = len(MAGIC)
    size = int.from_bytes(data[at : at + 4], "big")
    path.write_bytes(data[: at + 4] + b"{" * size + data[at + 4 + size :])


def _wrong_magic(path: Path) -> None:
    path.write_bytes(b"NOT-A-CKPT" + path.read_bytes()[10:])


def _header_without_keys(path: Path) -> None:
    data = path.read_bytes()
    at = len(MAGIC)
    size = int.from_bytes(data[at : at + 4], "big")
    header = b'{"format": 1}'
    path.write_bytes(data[:at] + len(header).to_bytes(4, "big") + header + data[at + 4 + size :])


def _future_format(path: Path) -> None:
    data = path.read_bytes()
    at = len(MAGIC)
    size = int.from_bytes(data[at : at + 4], "big")
    header = json.loads(data[at + 4 : at + 4 + size])
    header["format"] = 99
    raw = json.dumps(header).encode()
    path.write_bytes(data[:at] + len(raw).to_bytes(4, "big") + raw + data[at + 4 + size :])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage",
    [_truncate, _flip, _garbage_header, _wrong_magic, _header_without_keys, _future_format, _empty],
)
def test_damaged_newest_checkpoint_falls_back_to_previous_with_a_log_line(tmp_path, damage):
    store = _two_checkpoints(tmp_path)
    damage(store.path)
    with capture_logs() as logs:
        engine = CheckpointStore(tmp_path).load(_config())
    assert engine is not None and engine.events == 10  # the previous one
    events = [e["event"] for e in logs]
    assert events == ["checkpoint_unreadable", "checkpoint_loaded"], logs
    assert logs[0]["path"] == str(store.path)
    assert logs[1]["fallback"] is True


def test_both_damaged_starts_empty_and_says_so(tmp_path):
    store = _two_checkpoints(tmp_path)
    _truncate(store.path)
    _flip(store.previous)
    with capture_logs() as logs:
        assert CheckpointStore(tmp_path).load(_config()) is None
    assert [e["event"] for e in logs] == ["checkpoint_unreadable"] * 2
    assert "starting empty" in logs[1]["action"]


def test_intact_newest_is_loaded(tmp_path):
    _two_checkpoints(tmp_path)
    loaded = CheckpointStore(tmp_path).load_core(_config())
    assert loaded is not None and loaded[0].events == 20
    assert loaded[0].summary() == _engine(20).summary()


def test_save_after_a_fallback_keeps_the_readable_previous(tmp_path):
    """A corrupt newest file is not rotated into ``previous`` by the next save."""
    store = _two_checkpoints(tmp_path)
    _flip(store.path)
    reopened = CheckpointStore(tmp_path)
    assert reopened.load(_config()).events == 10  # type: ignore[union-attr]
    reopened.save(_engine(30))
    _truncate(reopened.path)  # and the new one is torn too
    engine = CheckpointStore(tmp_path).load(_config())
    assert engine is not None and engine.events == 10


def test_stale_temporary_files_are_removed(tmp_path):
    stale = tmp_path / ".checkpoint.999999.tmp"
    stale.write_bytes(b"half a write")
    CheckpointStore(tmp_path).save(_engine(5))
    assert not stale.exists()


def test_checkpoint_from_another_config_rebuilds_the_changed_model_and_logs_it(tmp_path):
    """A changed window rebuilds that model (empty, at the checkpoint's offsets); more in
    test_adopt.py."""
    saved = _engine(10)
    CheckpointStore(tmp_path).save(saved)
    with capture_logs() as logs:
        loaded = CheckpointStore(tmp_path).load_core(_config(("all", "5m")))
    assert loaded is not None and loaded[0].offsets() == saved.offsets()
    assert loaded[0].summary()["models"]["m"]["counts"]["predictions"] == 0
    assert [e["event"] for e in logs] == ["checkpoint_config_changed", "checkpoint_loaded"]
    assert logs[0]["rebuilt"] == ["m"] and logs[0]["kept"] == []


def test_checkpoint_from_another_pane_is_not_loaded_and_logged(tmp_path):
    CheckpointStore(tmp_path).save(_engine(10))
    other = _config().model_dump()
    other["time"]["pane"] = 30.0
    with capture_logs() as logs:
        assert CheckpointStore(tmp_path).load(config_from_mapping(other)) is None
    assert [e["event"] for e in logs] == ["checkpoint_config_changed"]
    assert "state dropped" in logs[0]["action"]


_WRITER = """
import sys, json
from monitor.config import config_from_mapping
from monitor.core.engine import Engine
from monitor.events.message import Message
from monitor.state.checkpoint import CheckpointStore
cfg = config_from_mapping({"models": [{"name": "m", "task": "binary", "positive_class": 1,
                                       "windows": ["all", "1m"], "label_ttl": "1d"}]})
engine = Engine(cfg)
store = CheckpointStore(sys.argv[1])
i = 0
while True:
    # pending predictions make the state a few MB: a write takes a while
    msgs = [Message("predictions", i % 4, i, b"k", json.dumps(
        {"prediction_id": f"p{i}-{j}", "model": "m", "ts": 1_700_000_000 + i,
         "prediction": 1}).encode()) for j in range(2000)]
    engine.process(msgs)
    store.save(engine)
    i += 1
    print(engine.events, flush=True)
"""


def test_sigkill_during_writes_always_leaves_a_readable_checkpoint(tmp_path):
    """Kill a process that writes checkpoints back to back, 10 times at random instants:
    the newest readable checkpoint is never older than the last write that returned."""
    rng = np.random.default_rng(7)
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for _ in range(10):
        out = tmp_path / "out.txt"
        with open(out, "wb") as fh:
            proc = subprocess.Popen([sys.executable, str(script), str(state)], stdout=fh, env=env)
        # wait for the first write to finish, then kill at a random instant
        deadline = time.monotonic() + 30
        while not out.read_bytes().strip() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.0, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = [int(x) for x in out.read_text().split()]
        assert done, "the writer never finished a checkpoint"
        engine = CheckpointStore(state).load(
            config_from_mapping({"models": [{"name": "m", "task": "binary", "positive_class": 1,
                                             "windows": ["all", "1m"], "label_ttl": "1d"}]})
        )  # fmt: skip
        assert engine is not None
        assert engine.events >= done[-1]
