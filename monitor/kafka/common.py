"""What the two input sources share: how they name a partition, the start-offset
callback, the fetch wait and the background connect.

:mod:`monitor.kafka.source` (kafka-python, and the :class:`~monitor.kafka.source.Source`
protocol with its factory) and :mod:`monitor.kafka.confluent_source` (confluent-kafka)
both build on this module; neither imports the other's module at import time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["FETCH_MAX_WAIT_MS", "TP", "BackgroundConnect", "StartOffsets"]

#: A topic partition as the rest of the daemon names it: ``(topic, partition)``.
TP = tuple[str, int]
#: ``start_offsets(topic, partition)``: the next offset to read per the checkpoint, or None.
StartOffsets = Callable[[str, int], "int | None"]

#: How long the broker may hold a fetch that finds nothing to return. Besides the idle
#: fetch rate, it is how long the first fetch of an empty partition takes to tell its high
#: watermark (and so the lag ``/readyz`` waits for) after an assignment: the clients'
#: default of 500 ms costs librdkafka about a second there (bench/recovery.py).
FETCH_MAX_WAIT_MS = 100


class BackgroundConnect:
    """Runs a source's connect on a daemon thread; :meth:`wait` re-raises its exception.

    ``handoff`` is set when the caller's thread takes the client over: work the thread
    does after the connect itself (kafka-python's join polls) stops there.
    """

    def __init__(self, target: Callable[[threading.Event], None]) -> None:
        self.handoff = threading.Event()
        self.error: BaseException | None = None
        self._target = target
        self._thread = threading.Thread(target=self._run, name="monitor-kafka-connect", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target(self.handoff)
        except BaseException as exc:  # handed to the thread that takes over
            self.error = exc

    def wait(self, timeout_s: float | None = None) -> bool:
        """Hand over and wait for the thread; raise its exception. False: still running."""
        self.handoff.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            return False
        error, self.error = self.error, None
        if error is not None:
            raise error
        return True
