"""``monitor demo``: an embedded broker, a demonstration model's traffic, the daemon, a live view.

What runs, all in this process except the broker:

- an :class:`~monitor.broker.EmbeddedBroker` (Tansu, memory storage) on a free loopback
  port, with ``predictions`` and ``labels`` (4 partitions each), ``monitor.alerts`` and
  ``monitor.dead-letters`` created before any client touches them;
- a producer thread streaming a fraud model's traffic at ``rate`` predictions per second,
  event time = wall time: two model versions (``v1`` and a ``v2`` canary), calibrated
  scores, labels on the labels topic 2-20 s after their prediction (3 % never labelled,
  so they expire), ~0.5 % malformed messages (garbage bytes, missing fields, a score out
  of range, an unknown model) that become rejects and dead letters, and, after
  :data:`DRIFT_AFTER_S` seconds, a concept drift: a fraud ring (mostly in two countries) makes
  small-amount transactions fraudulent, so the positive rate rises and the model's
  accuracy, F1 and ROC AUC fall while its log loss rises; it lasts :data:`DRIFT_FOR_S`
  seconds, so the demo's alert rule (``accuracy@ewm1m < 0.8``) fires, then resolves;
- the daemon (:class:`~monitor.app.App`) in a background thread, with its HTTP port on
  ``127.0.0.1:<port>`` (``/metrics``, ``/healthz``, ``/readyz``);
- the main thread: the live view of :mod:`monitor.tui` refreshed twice a second (or, without a
  terminal, a one-line summary logged every 5 s), and Ctrl-C / SIGTERM handling.

On Ctrl-C, SIGTERM or after ``seconds``: the producer stops, the daemon's stop event is
set (it finishes its batch and writes a final checkpoint), the threads are joined and
the broker is stopped.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import msgspec
import numpy as np
import structlog

from monitor.broker import BrokerError, EmbeddedBroker, create_topics
from monitor.config import MonitorConfig, OutputsConfig
from monitor.core.report import Report
from monitor.outputs.prometheus import RuntimeStats

__all__ = ["DRIFT_AFTER_S", "DRIFT_FOR_S", "DemoTraffic", "demo_config", "produce_traffic",
           "run_demo"]

log = structlog.get_logger(__name__)

MODEL = "fraud"
PREDICTIONS = "predictions"
LABELS = "labels"
ALERTS = "monitor.alerts"
DEAD_LETTERS = "monitor.dead-letters"
PARTITIONS = 4
#: Seconds after the traffic starts when the concept drift sets in.
DRIFT_AFTER_S = 60.0
#: How long the drift lasts: the alert it raises resolves after it.
DRIFT_FOR_S = 120.0
WINDOWS = ("all", "5m", "ewm1m")
STATUS_EVERY_S = 5.0
#: Predictions of the first panes that make the live demo's drift profile.
WARMUP_ROWS = 5_000
#: Longest wait for the daemon thread after its stop event is set.
APP_JOIN_S = 20.0


def demo_config(bootstrap: str, port: int, state_dir: str) -> MonitorConfig:
    """The daemon's configuration for the demo, built in code (no file, no env overrides)."""
    return MonitorConfig.model_validate(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": "monitor-demo",
                "client_id": "monitor-demo",
                "predictions_topic": PREDICTIONS,
                "labels_topic": LABELS,
                "alerts_topic": ALERTS,
                "dead_letter_topic": DEAD_LETTERS,
                # A group join takes ~3 s with these (~23 s with the defaults on Tansu).
                "session_timeout": "6s",
                "heartbeat_interval": "1s",
            },
            "http": {"listen": f"127.0.0.1:{port}"},
            "state": {"dir": state_dir, "checkpoint_interval": "10s"},
            "time": {"pane": "5s", "allowed_lateness": "10s", "idle_timeout": "30s"},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "positive_class": 1,
                    "label_ttl": "30s",
                    "windows": list(WINDOWS),
                    "features": {"amount": "numeric", "country": "categorical"},
                    "segments": ["country"],
                    "alerts": [
                        {
                            "name": "accuracy-low",
                            "signal": "accuracy@ewm1m",
                            "op": "<",
                            "threshold": 0.8,
                            "for": "30s",
                            "severity": "warning",
                        }
                    ],
                }
            ],
        }
    )


# ---------------------------------------------------------------------------- traffic

COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN")
_COUNTRY_SHARE = np.array([0.35, 0.15, 0.15, 0.12, 0.13, 0.10])
_COUNTRY_BIAS = np.array([0.0, -0.3, -0.5, -0.2, 0.8, 0.5])
_RING_COUNTRIES = np.array([False, False, False, False, True, True])
#: (version, share of traffic, noise of its score around the true log-odds)
_VERSIONS = (("v1", 0.7, 0.9), ("v2", 0.3, 0.3))
MALFORMED_RATE = 0.005
UNLABELLED_RATE = 0.03
LABEL_DELAY_S = (2.0, 20.0)

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class DemoTraffic:
    """The demonstration model's events; pure (no I/O), seeded, so it can be tested alone.

    :meth:`predictions` returns the records to send now and schedules their labels;
    :meth:`due_labels` returns the labels whose time has come. Records are
    ``(topic, key, value)`` with bytes key and value.
    """

    seed: int = 7
    drift_after: float = DRIFT_AFTER_S
    drift_for: float = DRIFT_FOR_S
    start: float = field(default_factory=time.time)
    sent: int = 0
    malformed: int = 0
    _rng: np.random.Generator = field(init=False)
    _labels: list[tuple[float, int, bytes, bytes]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def drifted(self, now: float) -> bool:
        """True while the drift lasts (from ``drift_after`` for ``drift_for`` seconds)."""
        return self.drift_after <= now - self.start < self.drift_after + self.drift_for

    def predictions(self, n: int, now: float) -> list[tuple[str, bytes, bytes]]:
        """``n`` prediction records with event time ``now``; their labels are scheduled."""
        if n <= 0:
            return []
        rng = self._rng
        drift = self.drifted(now)
        country = rng.choice(len(COUNTRIES), n, p=_COUNTRY_SHARE)
        log_amount = rng.normal(0.0, 1.0, n)
        # The model's view of the world: fraud rises with the amount and by country.
        model_logit = -2.5 + 3.0 * log_amount + _COUNTRY_BIAS[country]
        true_logit = model_logit + rng.normal(0.0, 0.5, n)
        if drift:
            # A fraud ring: small amounts, mostly fraud; 60 % of the traffic of two
            # countries, 10 % elsewhere. The model scores small amounts as safe.
            ring = rng.random(n) < np.where(_RING_COUNTRIES[country], 0.6, 0.1)
            log_amount = np.where(ring, rng.normal(-1.0, 0.6, n), log_amount)
            model_logit = -2.5 + 3.0 * log_amount + _COUNTRY_BIAS[country]
            true_logit = np.where(ring, 1.0 - log_amount, true_logit) + 0.6
        label = rng.random(n) < 1.0 / (1.0 + np.exp(-true_logit))
        which = rng.random(n) < _VERSIONS[0][1]
        noise = np.where(which, _VERSIONS[0][2], _VERSIONS[1][2])
        score = 1.0 / (1.0 + np.exp(-(model_logit + rng.normal(0.0, 1.0, n) * noise)))
        amount = np.round(np.exp(4.0 + log_amount), 2)
        delay = rng.uniform(*LABEL_DELAY_S, n)
        labelled = rng.random(n) >= UNLABELLED_RATE
        bad = rng.random(n) < MALFORMED_RATE
        ts = round(now, 3)
        out: list[tuple[str, bytes, bytes]] = []
        for i in range(n):
            seq = self.sent
            self.sent += 1
            pid = f"p-{seq:010d}"
            key = pid.encode()
            if bad[i]:
                out.append(self._malformed(seq, ts))
                continue
            c = COUNTRIES[country[i]]
            s = round(float(score[i]), 4)
            event = {
                "prediction_id": pid,
                "model": MODEL,
                "model_version": _VERSIONS[0][0] if which[i] else _VERSIONS[1][0],
                "ts": ts,
                "prediction": 1 if s >= 0.5 else 0,
                "score": s,
                "features": {"amount": float(amount[i]), "country": c},
                "segment": {"country": c},
            }
            out.append((PREDICTIONS, key, _encode(event)))
            if labelled[i]:
                due = now + float(delay[i])
                value = {"prediction_id": pid, "model": MODEL, "label": int(label[i])}
                heapq.heappush(self._labels, (due, seq, key, _encode(value)))
        return out

    def due_labels(self, now: float) -> list[tuple[str, bytes, bytes]]:
        """Label records whose time has come, with event time ``now``."""
        out: list[tuple[str, bytes, bytes]] = []
        ts = round(now, 3)
        while self._labels and self._labels[0][0] <= now:
            _, _, key, partial = heapq.heappop(self._labels)
            # ``partial`` lacks ts: splice it in rather than decode and re-encode.
            out.append((LABELS, key, partial[:-1] + b',"ts":' + repr(ts).encode() + b"}"))
        return out

    @property
    def labels_waiting(self) -> int:
        """Labels scheduled but not yet due."""
        return len(self._labels)

    def _malformed(self, seq: int, ts: float) -> tuple[str, bytes, bytes]:
        """One of several kinds of broken message (each a distinct reject reason)."""
        self.malformed += 1
        kind = seq % 6
        key = f"bad-{seq}".encode()
        if kind == 0:
            return PREDICTIONS, key, b"\x00\x9f garbage " + os.urandom(8)
        if kind == 1:  # no ts
            return PREDICTIONS, key, _encode({"prediction_id": f"bad-{seq}", "model": MODEL,
                                              "prediction": 1})
        if kind == 2:  # score out of [0, 1]
            return PREDICTIONS, key, _encode({"prediction_id": f"bad-{seq}", "model": MODEL,
                                              "ts": ts, "prediction": 1, "score": 1.7})
        if kind == 3:  # a model nobody configured
            return PREDICTIONS, key, _encode({"prediction_id": f"bad-{seq}", "model": "frod",
                                              "ts": ts, "prediction": 0})
        if kind == 4:  # a label without its label
            return LABELS, key, _encode({"prediction_id": f"bad-{seq}", "ts": ts})
        return LABELS, key, b"[1, 2, 3]"  # JSON, but not an object


class Producer(threading.Thread):
    """Sends :class:`DemoTraffic` at ``rate`` predictions per second until stopped."""

    def __init__(self, bootstrap: str, rate: float, traffic: DemoTraffic) -> None:
        super().__init__(name="demo-producer", daemon=True)
        self.bootstrap = bootstrap
        self.rate = rate
        self.traffic = traffic
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.sent_messages = 0

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(
                bootstrap_servers=[self.bootstrap],
                client_id="demo-traffic",
                acks=1,
                enable_idempotence=False,
                linger_ms=20,
                batch_size=256 << 10,
                # Tansu's memory storage: keep retries short, a lost demo record is harmless.
                retries=3,
            )
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            return
        try:
            self._stream(producer)
        except BaseException as exc:
            self.error = exc
        finally:
            with contextlib.suppress(Exception):
                producer.flush(timeout=3.0)
            with contextlib.suppress(Exception):
                producer.close(timeout=3.0)

    def _stream(self, producer: Any) -> None:
        traffic = self.traffic
        start = traffic.start = time.time()
        while not self.halt.is_set():
            now = time.time()
            due = int((now - start) * self.rate) - traffic.sent
            # After a stall (a paused terminal, a slow broker) do not burst more than 1 s.
            if due > self.rate:
                start += (due - self.rate) / self.rate
                due = int(self.rate)
            for topic, key, value in (*traffic.predictions(due, now), *traffic.due_labels(now)):
                producer.send(topic, key=key, value=value)
                self.sent_messages += 1
            self.halt.wait(0.02)


# ------------------------------------------------------------------------------- view


@dataclass(slots=True)
class ViewState:
    """What the demo shows beyond the daemon's report (the view's header, the log lines)."""

    started: float
    rate: float
    traffic: DemoTraffic
    metrics_url: str
    broker: str

    def header(self) -> str:
        """The view's first line: elapsed time, traffic rate, the drift's schedule, broker."""
        now = time.time()
        elapsed = now - self.started
        return (
            f"[bold]demo[/] model [cyan]{MODEL}[/] · {int(elapsed) // 60}:"
            f"{int(elapsed) % 60:02d} elapsed · {self.rate:,.0f} predictions/s · "
            f"{_drift_text(self, now)} · broker {self.broker}"
        )


def _metric(report: Report, window: str, metric: str, dimension: str = "model",
            value: str = "") -> float | None:
    model = report.models.get(MODEL)
    if model is None:
        return None
    for s in model.slices:
        if s.dimension == dimension and s.value == value:
            v = s.windows.get(window, {}).get(metric)
            return v if v is not None and math.isfinite(v) else None
    return None


def _count(report: Report, name: str) -> int:
    model = report.models.get(MODEL)
    return 0 if model is None else int(model.counts.get(name, 0.0))


def _lag(runtime: RuntimeStats) -> int:
    return int(sum(runtime.lag.values()))


def _drift_text(state: ViewState, now: float) -> str:
    left = state.traffic.start + state.traffic.drift_after - now
    if left > 0:
        return f"drift in {left:.0f} s"
    if state.traffic.drifted(now):
        return f"[bold red]drift active[/] ({left + state.traffic.drift_for:.0f} s left)"
    return "[green]drift over[/]"


def status_fields(state: ViewState, latest: tuple[Report, RuntimeStats] | None) -> dict[str, Any]:
    """The one-line summary logged every few seconds without a terminal."""
    if latest is None:
        return {"starting": True}
    report, runtime = latest
    fields: dict[str, Any] = {
        "elapsed_s": round(time.time() - state.started, 1),
        "drift": state.traffic.drifted(time.time()),
        **{n: _count(report, n) for n in ("predictions", "labels", "matched", "pending",
                                           "expired", "late")},
        "rejects": sum(report.rejects.values()),
        "consumer_lag": _lag(runtime),
        "ready": runtime.ready,
        "metrics": state.metrics_url,
    }
    if math.isfinite(report.watermark):
        fields["watermark_lag_s"] = round(time.time() - report.watermark, 1)
    for window in WINDOWS:
        for metric in ("accuracy", "roc_auc"):
            value = _metric(report, window, metric)
            if value is not None:
                fields[f"{metric}@{window}"] = round(value, 4)
    return fields


# -------------------------------------------------------------------------------- run


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Signals:
    """SIGINT/SIGTERM set ``stop`` (main thread only); a second one interrupts at once."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def run_demo(
    seconds: float, rate: float, port: int, view: bool, outputs: OutputsConfig | None = None
) -> int:
    """Run the demonstration; return the exit code (0 on a clean stop).

    Parameters
    ----------
    seconds
        Stop after this long; 0 (or less) runs until Ctrl-C or SIGTERM.
    rate
        Predictions per second.
    port
        HTTP port of ``/metrics`` on 127.0.0.1; 0 picks a free one.
    view
        A live view when stdout is a terminal; otherwise (or when false) a summary line
        is logged every 5 s.
    outputs
        The daemon's ``[outputs]`` exports (TensorBoard, CloudWatch lines); none by default.
    """
    if rate <= 0:
        print("monitor demo: --rate must be positive", file=sys.stderr)
        return 2
    if port and not _port_free(port):
        print(f"monitor demo: port {port} on 127.0.0.1 is in use; pick another with --port "
              "(0 picks a free one)", file=sys.stderr)
        return 1
    live_view = view and sys.stdout.isatty()
    stop = threading.Event()
    started = time.time()
    with contextlib.ExitStack() as stack, _Signals(stop):
        try:
            broker = stack.enter_context(EmbeddedBroker())
            create_topics(broker.bootstrap, {PREDICTIONS: PARTITIONS, LABELS: PARTITIONS})
            create_topics(broker.bootstrap, {ALERTS: 1, DEAD_LETTERS: 1})
        except BrokerError as exc:
            print(f"monitor demo: cannot start the embedded broker: {exc}", file=sys.stderr)
            return 1
        log.info("demo_broker_started", bootstrap=broker.bootstrap, pid=broker.pid)
        state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="monitor-demo-"))
        from monitor.app import App

        config = demo_config(broker.bootstrap, port, state_dir)
        # The view's drift signals need a profile, and the demo has no reference file: the
        # first panes' predictions (before the drift) become one.
        model = config.models[0].model_copy(update={"reference_warmup": WARMUP_ROWS})
        config = config.model_copy(update={"models": [model]})
        if outputs is not None:
            config = config.model_copy(update={"outputs": outputs})
        app = App(config, stop=stop)
        outcome: dict[str, Any] = {}

        def run_app() -> None:
            try:
                outcome["code"] = app.run()
            except BaseException as exc:  # reported by the main thread
                outcome["error"] = exc
            finally:
                stop.set()

        app_thread = threading.Thread(target=run_app, name="monitor-app", daemon=True)
        app_thread.start()
        traffic = DemoTraffic()
        producer = Producer(broker.bootstrap, rate, traffic)
        producer.start()
        try:
            while app.http.port == 0 and app_thread.is_alive():  # --port 0: wait for the bind
                time.sleep(0.05)
            state = ViewState(started, rate, traffic, f"{app.http.url}/metrics", broker.bootstrap)
            deadline = started + seconds if seconds > 0 else math.inf
            if live_view:
                _live(state, app, stop, deadline)
            else:
                _log_lines(state, app, stop, deadline)
        except KeyboardInterrupt:
            log.warning("demo_interrupted")
            return 130
        finally:
            producer.halt.set()
            stop.set()
            producer.join(5.0)
            app_thread.join(APP_JOIN_S)
        if app_thread.is_alive():
            log.error("demo_app_did_not_stop", waited_s=APP_JOIN_S)
            return 1
        if "error" in outcome:
            print(f"monitor demo: the daemon failed: {outcome['error']!r}", file=sys.stderr)
            return 1
        if producer.error is not None:
            print(f"monitor demo: the producer failed: {producer.error!r}", file=sys.stderr)
            return 1
        latest = getattr(app, "latest", None)
        log.info("demo_stopped", **status_fields(state, latest),
                 produced=producer.sent_messages, malformed=traffic.malformed)
        return int(outcome.get("code", 0))


def produce_traffic(bootstrap: str, rate: float, seconds: float = 0.0) -> int:
    """Only the demonstration traffic, into an existing Kafka (compose's generator).

    Writes to the ``predictions`` and ``labels`` topics until Ctrl-C / SIGTERM or for
    ``seconds``; returns the exit code.
    """
    stop = threading.Event()
    producer = Producer(bootstrap, rate, DemoTraffic())
    with _Signals(stop):
        producer.start()
        deadline = time.time() + seconds if seconds > 0 else math.inf
        while not stop.is_set() and producer.is_alive() and time.time() < deadline:
            stop.wait(min(1.0, max(0.0, deadline - time.time())))
        producer.halt.set()
        producer.join(10.0)
    if producer.error is not None:
        print(f"monitor demo: the producer failed: {producer.error!r}", file=sys.stderr)
        return 1
    log.info("demo_traffic_stopped", sent=producer.sent_messages)
    return 0


def _should_stop(stop: threading.Event, deadline: float) -> bool:
    return stop.is_set() or time.time() >= deadline


def _log_lines(state: ViewState, app: Any, stop: threading.Event, deadline: float) -> None:
    next_line = time.time() + STATUS_EVERY_S
    while not _should_stop(stop, deadline):
        stop.wait(min(0.5, max(0.0, deadline - time.time())))
        latest = getattr(app, "latest", None)
        if time.time() >= next_line:
            next_line += STATUS_EVERY_S
            log.info("demo_status", **status_fields(state, latest))


def _live(state: ViewState, app: Any, stop: threading.Event, deadline: float) -> None:
    """The live view (:class:`~monitor.tui.LiveView`) in this thread until stop or deadline."""
    from monitor.tui import LiveView, current_level, live_session, run_view

    view = LiveView("monitor demo", header=state.header,
                    footer=f"/metrics: {state.metrics_url} · Ctrl-C stops")
    with live_session(view, current_level()) as live:
        run_view(view, app, live, lambda: _should_stop(stop, deadline))
        log.info("demo_stopping")


# ---------------------------------------------------------------------------- capture

#: Event time of the first prediction of a written capture (2026-01-01T00:00:00Z).
CAPTURE_START = 1_767_225_600.0
#: Reference rows written beside a capture (the traffic's features before the drift).
REFERENCE_ROWS = 5_000
_CAPTURE_STEP_S = 0.1


def _demo_toml(reference: str) -> str:
    """The demo model's configuration as TOML for ``monitor replay`` (no Kafka, no state)."""
    model = demo_config("127.0.0.1:9092", 0, ".").models[0]
    rule = model.alerts[0]
    windows = ", ".join(f'"{w}"' for w in model.windows)
    return f"""\
# The demonstration model of `monitor demo`, for `monitor replay` / `monitor report`.
[time]
pane = "5s"
allowed_lateness = "10s"

[[models]]
name = "{model.name}"
task = "{model.task}"
positive_class = {model.positive_class}
label_ttl = "30s"
windows = [{windows}]
features = {{ amount = "numeric", country = "categorical" }}
segments = ["country"]
reference = "{reference}"

[[models.alerts]]
name = "{rule.name}"
signal = "{rule.signal}"
op = "{rule.op}"
threshold = {rule.threshold}
for = "30s"
severity = "{rule.severity}"
"""


def write_capture(directory: str | os.PathLike[str], seconds: float, rate: float,
                  seed: int = 7) -> dict[str, int]:
    """Write the demo traffic of ``seconds`` of event time, without a broker, into ``directory``.

    Files: ``capture.jsonl`` (kcat ``-J`` envelopes; partitions by key as a producer would
    spread them, labels until the last one is due), ``reference.csv`` (:data:`REFERENCE_ROWS`
    rows of the features before any drift, another seed) and ``monitor.toml`` (the demo
    model with that reference). Event time starts at :data:`CAPTURE_START`, so the capture
    does not depend on the wall clock (only the bytes of the garbage messages are random).
    Returns the number of messages written per topic.
    """
    import csv
    import json
    import zlib
    from pathlib import Path

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    traffic = DemoTraffic(seed=seed, start=CAPTURE_START)
    offsets: dict[tuple[str, int], int] = {}
    written = {PREDICTIONS: 0, LABELS: 0}
    with open(out / "capture.jsonl", "w", encoding="utf-8") as fh:

        def emit(records: list[tuple[str, bytes, bytes]], now: float) -> None:
            for topic, key, value in records:
                partition = zlib.crc32(key) % PARTITIONS
                offset = offsets.get((topic, partition), 0)
                offsets[topic, partition] = offset + 1
                written[topic] += 1
                fh.write(json.dumps({
                    "topic": topic, "partition": partition, "offset": offset,
                    "tstype": "create", "ts": int(now * 1000), "broker": 0,
                    "key": key.decode(), "payload": value.decode("utf-8", "replace"),
                }) + "\n")

        steps = round(seconds / _CAPTURE_STEP_S)
        for step in range(1, steps + 1):
            now = CAPTURE_START + step * _CAPTURE_STEP_S
            due = int(step * _CAPTURE_STEP_S * rate) - traffic.sent
            emit(traffic.predictions(due, now), now)
            emit(traffic.due_labels(now), now)
        now = CAPTURE_START + steps * _CAPTURE_STEP_S
        while traffic.labels_waiting:
            now += _CAPTURE_STEP_S
            emit(traffic.due_labels(now), now)
    calm = DemoTraffic(seed=seed + 1, start=CAPTURE_START, drift_after=math.inf)
    with open(out / "reference.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["amount", "country"])
        for topic, _, value in calm.predictions(REFERENCE_ROWS, CAPTURE_START):
            if topic == PREDICTIONS:
                try:
                    event = msgspec.json.decode(value)
                except msgspec.DecodeError:  # one of the malformed messages
                    continue
                features = event.get("features") if isinstance(event, dict) else None
                if isinstance(features, dict):
                    writer.writerow([features["amount"], features["country"]])
    (out / "monitor.toml").write_text(_demo_toml("reference.csv"), encoding="utf-8")
    return written
