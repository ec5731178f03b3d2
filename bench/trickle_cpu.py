"""CPU of ``monitor run`` while its input trickles in, polling again at once against
polls spaced by ``kafka.min_poll_interval``.

A Tansu broker and ``monitor run`` (subprocess) with the binary models of each row of
:data:`SCENARIOS` (10 numeric features, every binary metric, windows ``all``/``1h``/
``ewm30m``, a 10 s pane, the default drift warmup: at these rates every model is still
learning its drift profile, as a freshly deployed low-rate model does for its first
hours). A confluent-kafka producer paces predictions (round-robin over the models, event
time = the wall clock) and a label for 80 % of them, each sent on its own, for
``--seconds``. The daemon's CPU (user + system, all its threads: the Kafka client's too)
is read from ``/proc`` over the second half of that (past the first panes' closes, where
each model makes its signal plan once), once with ``min_poll_interval = "0s"`` (the next
poll at once) and once with the default, back to back on the same broker; the ratio is
the second over the first.

Each poll costs the core a fixed amount per model whatever it holds, so polling at once
at a few hundred events a second processes them one or two at a time and keeps a core
busy::

    python bench/trickle_cpu.py                    # 50 s per run
    python bench/trickle_cpu.py --seconds 20
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib

from monitor.broker import EmbeddedBroker
from monitor.logs import configure_logging

#: (models, predictions a second in all, input client) of each row.
SCENARIOS: tuple[tuple[int, float, str], ...] = (
    (1, 200.0, "kafka-python"),
    (1, 200.0, "confluent"),
    (100, 500.0, "confluent"),
)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(bootstrap: str, models: int, rate: float, client: str, interval: str,
        seconds: float, tag: str) -> float:  # fmt: skip
    """The daemon's CPU share (of one core) while the trickle runs, past its first
    seconds."""
    from confluent_kafka import Producer

    body: dict[str, Any] = {
        "models": [benchlib.model_dict(f"m{i}") for i in range(models)],
        "time": {"pane": "10s", "allowed_lateness": "10s", "idle_timeout": "5s"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        daemon = benchlib.Daemon(Path(tmp), bootstrap, body, topics=tag)
        import tomllib

        import tomli_w

        cfg = tomllib.loads(daemon.config_path.read_text())
        cfg["kafka"].update({"client": client, "min_poll_interval": interval})
        daemon.config_path.write_text(tomli_w.dumps(cfg))
        daemon.create_topics()
        daemon.start()
        try:
            daemon.wait_ready()
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
            rng = random.Random(7)
            sent, start = 0, time.monotonic()
            mark: tuple[float, float] | None = None
            while (now := time.monotonic()) - start < seconds:
                while sent < (now - start) * rate:
                    pid, model = f"p{sent}", f"m{sent % models}"
                    value, score = benchlib.prediction_payload(pid, model, time.time(), rng,
                                                               10, 0)  # fmt: skip
                    producer.produce(daemon.topics["predictions"], value, pid.encode())
                    if rng.random() < 0.8:
                        label = (f'{{"prediction_id":"{pid}","model":"{model}",'
                                 f'"ts":{time.time():.3f},'
                                 f'"label":{int(rng.random() < score)}}}')  # fmt: skip
                        producer.produce(daemon.topics["labels"], label.encode(), pid.encode())
                    sent += 1
                producer.poll(0)
                if mark is None and now - start >= seconds / 2:
                    mark = (time.monotonic(), _cpu_seconds(daemon.proc.pid))
                time.sleep(0.002)
            end = (time.monotonic(), _cpu_seconds(daemon.proc.pid))
            producer.flush(10)
            assert mark is not None
            return (end[1] - mark[1]) / (end[0] - mark[0])
        finally:
            daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=50.0, help="trickle per run")
    args = parser.parse_args()
    configure_logging("warning", json=True, stream=sys.stderr)
    default = "100ms"
    rows = []
    with EmbeddedBroker() as broker:
        for i, (models, rate, client) in enumerate(SCENARIOS):
            at_once = run(broker.bootstrap, models, rate, client, "0s", args.seconds, f"a{i}")
            spaced = run(broker.bootstrap, models, rate, client, default, args.seconds,
                         f"b{i}")  # fmt: skip
            rows.append((models, rate, client, at_once, spaced))
    print(f"machine     {benchlib.machine()}; broker, daemon and producer share it")
    print(f"config      binary models, 10 numeric features, windows all/1h/ewm30m, 10 s "
          f"pane, drift warmup (default); labels for 80 %; {args.seconds:.0f} s a run, "
          "CPU over its second half")
    print()
    print("| models | predictions/s | client | CPU, next poll at once | CPU, polls "
          f"{default} apart | ratio |")
    print("|---:|---:|---|---:|---:|---:|")
    for models, rate, client, at_once, spaced in rows:
        print(f"| {models} | {rate:,.0f} | {client} | {at_once:.0%} | {spaced:.0%} | "
              f"{spaced / at_once:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
