"""One daemon per state directory: an exclusive ``flock`` on ``<dir>/.lock``.

Taken before anything in the directory is read and held until the process ends (the
kernel releases it when the process dies, SIGKILL included, so a stale lock file never
blocks a restart). The file holds the holder's pid, for the message a second daemon
prints before it exits 2. Within one process the lock is re-entrant: ``monitor run`` takes
it before joining the consumer group, and the :class:`~monitor.app.App` it then builds
takes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Final

__all__ = ["LockHeld", "StateLock"]

LOCK_NAME: Final = ".lock"
_HELD: dict[str, tuple[int, int]] = {}  # realpath -> (fd, holders in this process)
_GUARD = threading.Lock()


class LockHeld(Exception):
    """Another process holds the state directory."""

    def __init__(self, directory: str, pid: str) -> None:
        self.directory = directory
        self.pid = pid
        super().__init__(
            f"state directory {directory} is in use by another monitor (pid {pid}); "
            "one daemon per state directory"
        )


class StateLock:
    """The lock of one state directory (created if missing)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self._key: str | None = None

    def acquire(self) -> StateLock:
        """Take the lock; :class:`LockHeld` (naming the holder's pid) when another process
        has it. Re-entrant within a process."""
        if self._key is not None:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.dir)
        with _GUARD:
            held = _HELD.get(key)
            if held is not None:
                _HELD[key] = (held[0], held[1] + 1)
                self._key = key
                return self
            # Held through a read-only descriptor: a lock must not keep the filesystem
            # from being remounted read-only (the daemon then reports that, see docs).
            path = self.dir / LOCK_NAME
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise LockHeld(str(self.dir), pid) from None
            except BaseException:
                os.close(fd)
                raise
            with contextlib.suppress(OSError):  # the pid is for the message only
                path.write_text(f"{os.getpid()}\n")
            _HELD[key] = (fd, 1)
            self._key = key
        return self

    def release(self) -> None:
        """Give the lock up (the last holder in this process unlocks the file)."""
        key, self._key = self._key, None
        if key is None:
            return
        with _GUARD:
            fd, count = _HELD[key]
            if count > 1:
                _HELD[key] = (fd, count - 1)
                return
            del _HELD[key]
            os.close(fd)  # closing the only descriptor releases the flock
