"""The optional signal exports of ``[outputs]``, driven the same way by ``run`` and ``replay``.

Each batch of closed panes (the :class:`~monitor.core.model.PaneSignals` and
:class:`~monitor.core.rules.AlertEvent` s drained together) goes to every export that is
turned on: TensorBoard scalars (:mod:`monitor.outputs.tensorboard`) and CloudWatch
embedded-metric-format lines (:mod:`monitor.outputs.cloudwatch`).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TextIO

from monitor.config import OutputsConfig
from monitor.core.model import PaneSignals
from monitor.core.rules import AlertEvent
from monitor.outputs.cloudwatch import EmfWriter, stdout_lock
from monitor.outputs.tensorboard import TensorBoardWriter

__all__ = ["CLOUDWATCH_FILE", "Exports"]

#: The file of EMF lines in ``replay``'s output directory.
CLOUDWATCH_FILE = "cloudwatch.jsonl"


class Exports:
    """The exports ``config`` turns on; :meth:`write` sends a batch to each of them.

    Parameters
    ----------
    config
        The ``[outputs]`` table.
    emf_stream
        Where CloudWatch lines go (only used when ``config.cloudwatch``).
    emf_lock
        Held while a batch of lines is written (see
        :func:`~monitor.outputs.cloudwatch.stdout_lock`).
    """

    def __init__(
        self,
        config: OutputsConfig,
        emf_stream: TextIO | None = None,
        emf_lock: threading.Lock | threading.RLock | None = None,
    ) -> None:
        self.tensorboard = (
            TensorBoardWriter(config.tensorboard_dir) if config.tensorboard_dir else None
        )
        self.cloudwatch = (
            EmfWriter(emf_stream, config.cloudwatch_namespace, lock=emf_lock)
            if config.cloudwatch and emf_stream is not None
            else None
        )
        self._owned: TextIO | None = None

    @classmethod
    def for_run(cls, config: OutputsConfig) -> Exports:
        """``monitor run``: EMF lines on stdout, under the stdout log handler's lock."""
        return cls(config, sys.stdout, stdout_lock())

    @classmethod
    def for_replay(cls, config: OutputsConfig, out_dir: str | os.PathLike[str]) -> Exports:
        """``monitor replay``: EMF lines in ``<out_dir>/cloudwatch.jsonl``, closed by
        :meth:`close`."""
        if not config.cloudwatch:
            return cls(config)
        stream = open(Path(out_dir) / CLOUDWATCH_FILE, "w", encoding="utf-8")  # noqa: SIM115
        exports = cls(config, stream)
        exports._owned = stream
        return exports

    @property
    def enabled(self) -> bool:
        """Whether any export is on."""
        return self.tensorboard is not None or self.cloudwatch is not None

    def write(self, signals: Sequence[PaneSignals], alerts: Sequence[AlertEvent] = ()) -> None:
        """Send one batch to every export (each flushes once per batch)."""
        if self.tensorboard is not None:
            self.tensorboard.write(signals, alerts)
        if self.cloudwatch is not None:
            self.cloudwatch.write(signals, alerts)

    def close(self) -> None:
        """Close the TensorBoard files and the EMF file this opened."""
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> Exports:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
