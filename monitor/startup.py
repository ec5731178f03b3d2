"""What ``monitor run`` starts before it loads its state: the HTTP port and the group join.

A restarted daemon spends its first seconds on three things that do not depend on one
another: importing the engine's modules (scipy, river: about a second), loading the
checkpoint (seconds with a million pending predictions) and joining the consumer group
(the coordinator holds the first join while members gather: Kafka's
``group.initial.rebalance.delay.ms``, 3 s by default; Tansu waits half the session
timeout). :class:`Prestart` starts the last one, and the HTTP port, before the first two,
using only light modules, so that they overlap::

    prestart = Prestart(config).start()    # listening; the group join under way
    from monitor.app import App            # the heavy imports
    app = App(config, prestart=prestart)   # loads the checkpoint, adopts port and source
    app.run()                              # takes the consumer over, joined or nearly

Until the :class:`~monitor.app.App` adopts them, ``/readyz`` answers 503 ("starting:
loading the state"), ``/healthz`` 200 and ``/metrics`` no series.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry

from monitor.config import MonitorConfig
from monitor.http import HttpServer
from monitor.kafka.source import Source, StartOffsets, make_source

__all__ = ["Prestart"]

STARTING = "starting: loading the state"


class Prestart:
    """The HTTP server and the input source of a daemon whose state is still loading.

    Parameters
    ----------
    config
        The daemon's configuration.
    stop
        The daemon's stop flag (ends a connect that waits for the broker).
    """

    def __init__(self, config: MonitorConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.registry = CollectorRegistry()
        self._since = time.time()
        self._start_offsets: StartOffsets | None = None
        self.http = HttpServer(
            config.http.host,
            config.http.port,
            self.registry,
            heartbeat=lambda: self._since,
            readiness=lambda: (False, STARTING),
        )
        self.source: Source = make_source(config.kafka, start_offsets=self._start_offset)

    def _start_offset(self, topic: str, partition: int) -> int | None:
        if self._start_offsets is None:  # the source asks only once the app has taken over
            raise RuntimeError("start offsets asked before the state was loaded")
        return self._start_offsets(topic, partition)

    def start(self) -> Prestart:
        """Listen on the HTTP port, then begin the connect and the group join."""
        self.http.start()
        self.source.start_connect(self.stop)
        return self

    def adopt(self, start_offsets: StartOffsets) -> None:
        """The loaded state answers the source's start offsets from now on."""
        self._start_offsets = start_offsets
