"""Local-directory checkpoints: the whole core state with the input offsets it reflects.

A checkpoint is one file, written atomically (temporary file, fsync, rename, fsync of the
directory): a sealed value (:func:`monitor.state.format.seal`) whose header names the
format version and a fingerprint of the config parts the state depends on, and whose body
is the engine's state, and its alert rules' (:class:`~monitor.core.alerting.Alerting`),
in the explicit format of :mod:`monitor.state.format` (never a
pickle), with an HMAC-SHA256 when ``[state] hmac_key`` is set. The previous checkpoint is
kept beside it, so a torn, corrupt, forged or foreign newest file falls back to the one
before, with a log line saying so. A failed write (full or read-only disk) removes its
temporary file and raises: the files already there are untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Final

import structlog

from monitor.config import MonitorConfig
from monitor.core.alerting import Alerting
from monitor.core.engine import Engine, same_time_and_topics
from monitor.core.model_stage import ModelStage
from monitor.core.pipeline import Pipeline
from monitor.state.format import (
    decode_engine,
    decode_stages,
    encode_engine,
    seal,
    unseal,
)

__all__ = ["CheckpointStore", "config_fingerprint"]

MAGIC: Final = b"MONITOR-CKPT"
log = structlog.get_logger(__name__)
_STATUSES: Final = ("kept", "rebuilt", "added", "removed")
#: A checkpoint as read: stage 1's engine, the alerting, and (when asked for) every
#: model's stage 2.
_Loaded = tuple[Engine, Alerting, dict[str, ModelStage] | None]


def config_fingerprint(config: MonitorConfig) -> str:
    """A hash of what the state's shape depends on: models (less alert rules) and time.

    A checkpoint with another fingerprint is not loaded as is: :func:`_adopt` keeps the
    models whose part is unchanged and rebuilds the rest, or drops all of it when the
    pane, the allowed lateness or the input topics changed."""
    models = [m.model_dump(mode="json", exclude={"alerts"}) for m in config.models]
    topics = [config.kafka.predictions_topic, config.kafka.labels_topic]
    blob = json.dumps([models, config.time.model_dump(mode="json"), topics], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CheckpointStore:
    """Checkpoints of one replica in a local directory (the embedded default store).

    ``key``: the HMAC key (``[state] hmac_key``); with one, files without a valid HMAC are
    refused."""

    def __init__(self, directory: str | os.PathLike[str], key: bytes | None = None) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "checkpoint.bin"
        self.previous = self.dir / "checkpoint.prev.bin"
        self.key = key
        #: Whether the newest file is known to be readable (written or loaded by this
        #: process). A newest file that failed to load is not rotated into ``previous``
        #: on the next save: the readable previous one stays the fallback.
        self._newest_ok = False

    def save(self, engine: Engine | Pipeline, alerting: Alerting | None = None) -> int:
        """Write the engine's state (one process's: both stages, each model's stage 2 with
        stage 1's engine), with that of the ``alerting`` its signals feed (None: rules
        without state), atomically; return the number of bytes written.

        Raises OSError (ENOSPC, EROFS, ...) when the file cannot be written; the
        temporary file is removed and the checkpoints already there stay as they were."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if isinstance(engine, Pipeline):
            body = encode_engine(engine.engine, alerting, engine.stages)
        else:
            body = encode_engine(engine, alerting)
        value = seal(MAGIC, {"kind": "engine", "fingerprint": config_fingerprint(engine.config)},
                     body, self.key)  # fmt: skip
        tmp = self.dir / f".checkpoint.{os.getpid()}.tmp"
        for stale in self.dir.glob(".checkpoint.*.tmp"):  # left by a crash mid-write
            if stale != tmp:
                stale.unlink(missing_ok=True)
        try:
            with open(tmp, "wb") as fh:
                fh.write(value)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk: give back what the attempt took
            raise
        # A crash between the two renames leaves only ``previous``, which load() falls
        # back to; at no instant is there no readable checkpoint once one was written.
        if self.path.exists():
            if self._newest_ok or not self.previous.exists():
                os.replace(self.path, self.previous)
            else:
                self.path.unlink()  # unreadable: keep the readable previous one instead
        os.replace(tmp, self.path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._newest_ok = True
        return len(value)

    def load(self, config: MonitorConfig) -> Engine | None:
        """The engine of :meth:`load_state` (its alert rules' state left out)."""
        loaded = self.load_state(config)
        return None if loaded is None else loaded[0]

    def load_state(self, config: MonitorConfig) -> tuple[Engine, Alerting] | None:
        """The engine and alerting of the newest readable checkpoint, carried over to
        ``config`` if that changed (models kept, rebuilt, added or removed, with a log
        line), else None."""
        loaded = self._load(config, stages=False)
        return None if loaded is None else (loaded[0], loaded[1])

    def load_core(self, config: MonitorConfig) -> tuple[Pipeline, Alerting] | None:
        """One process's core (both stages) and alerting of the newest readable
        checkpoint, as :meth:`load_state` carries it over; None: start empty."""
        loaded = self._load(config, stages=True)
        if loaded is None:
            return None
        engine, alerting, stages = loaded
        return Pipeline(config, engine, stages), alerting

    def _load(self, config: MonitorConfig, stages: bool) -> _Loaded | None:
        self._newest_ok = False
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                loaded = self._read(path, config, stages)
            except Exception as exc:  # torn, corrupt, forged, foreign or an older format
                log.warning(
                    "checkpoint_unreadable",
                    path=str(path),
                    error=f"{type(exc).__name__}: {exc}"[:300],
                    action="trying the previous checkpoint"
                    if path == self.path
                    else "no checkpoint left: starting empty",
                )
                continue
            self._newest_ok = path == self.path
            if loaded is None:
                return None
            engine = loaded[0]
            log.info(
                "checkpoint_loaded",
                path=str(path),
                fallback=path != self.path,
                offsets=len(engine.offsets()),
                events=engine.events,
            )
            return loaded
        return None

    def _read(self, path: Path, config: MonitorConfig, stages: bool) -> _Loaded | None:
        header, body = unseal(MAGIC, path.read_bytes(), self.key)
        if header.get("kind") != "engine" or not isinstance(header.get("fingerprint"), str):
            raise ValueError("checkpoint does not hold engine state")
        engine, alerting, made_under = decode_engine(body, config)
        stored = decode_stages(body, made_under, engine) if stages else None
        if made_under is not config:
            adopted = _adopt(path, engine, alerting, config)
            if adopted is None:
                return None
            kept = {n for n, s in adopted[2].items() if s == "kept"}
            if stored is not None:  # the kept models' stage 2 goes on; the others start empty
                stored = {
                    m.name: stored[m.name] if m.name in kept else ModelStage(config, m.name, 0)
                    for m in config.models
                }
            return adopted[0], adopted[1], stored
        return engine, alerting, stored


def _adopt(
    path: Path, old: Engine, old_alerting: Alerting, config: MonitorConfig
) -> tuple[Engine, Alerting, dict[str, str]] | None:
    """The state of a checkpoint made under another config, carried into an engine and
    alerting for ``config`` where it still fits (see :meth:`Engine.adopt`,
    :meth:`Alerting.adopt`), with one log line saying what was kept, rebuilt, added and
    removed; None (state dropped) when the pane, the allowed lateness or the input topics
    changed."""
    if not same_time_and_topics(old.config, config):
        log.warning(
            "checkpoint_config_changed",
            path=str(path),
            reason="[time] pane/allowed_lateness or the input topics changed",
            dropped=sorted(m.name for m in old.models),
            action="state dropped; starting from the group's committed offsets",
        )
        return None
    engine = Engine(config)
    status = engine.adopt(old)
    alerting = Alerting(config, engine.models)
    alerting.adopt(old_alerting, [name for name, s in status.items() if s == "kept"])
    by = {s: sorted(m for m, v in status.items() if v == s) for s in _STATUSES}
    log.warning(
        "checkpoint_config_changed",
        path=str(path),
        kept=by["kept"],
        rebuilt=by["rebuilt"],
        added=by["added"],
        removed=by["removed"],
        action="kept models resume with their state; rebuilt and added models start empty "
        "at the checkpoint's offsets (events before them are not counted); removed models' "
        "state dropped",
        offsets=len(engine.offsets()),
    )
    return engine, alerting, status
