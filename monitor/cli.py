"""Command line: ``monitor run | replay | tune | check-config | rules export | demo``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.config import ConfigError, MonitorConfig, load_config

__all__ = ["main"]

EXIT_CONFIG = 2


def _load(path: str) -> MonitorConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the daemon: Kafka in, metrics and alerts out")
    run.add_argument("--config", required=True, help="TOML config file")
    check = sub.add_parser("check-config", help="validate a config file (exit 0, or 2)")
    check.add_argument("config", help="TOML config file")
    replay = sub.add_parser("replay", help="the same pipeline over captured messages")
    replay.add_argument("--config", required=True, help="TOML config file")
    replay.add_argument("--out", required=True, help="output directory")
    replay.add_argument("captures", nargs="+", help="kcat -J capture files (JSON lines)")
    rules = sub.add_parser("rules", help="alert rules: export as a Prometheus rules file")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    export = rules_sub.add_parser("export", help="the config's rules as Prometheus alerting rules")
    export.add_argument("--config", required=True, help="TOML config file")
    export.add_argument("--out", help="output file (default: stdout)")
    demo = sub.add_parser("demo", help="embedded broker, demonstration traffic, live view")
    demo.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: Ctrl-C)")
    demo.add_argument("--rate", type=float, default=2000.0, help="predictions per second")
    demo.add_argument("--port", type=int, default=9108, help="HTTP port for /metrics")
    demo.add_argument("--no-view", action="store_true", help="log lines instead of the live view")
    demo.add_argument(
        "--produce-to", metavar="BOOTSTRAP", help="only send the demo traffic to this Kafka"
    )
    tune = sub.add_parser("tune", help="grid-search rule and detector settings on replays")
    tune.add_argument("--config", required=True, help="TOML config file")
    tune.add_argument("--incidents", required=True, help="CSV or JSON lines: model,start,end")
    tune.add_argument("--grid", help="TOML grid: parameter path = [values] (default: derived)")
    tune.add_argument("--folds", type=int, default=3, help="contiguous event-time folds")
    tune.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    tune.add_argument("--out", default="tune-out", help="directory for tune.json/.csv, winner.toml")
    tune.add_argument("--grace", default="0s", help="detections count until incident end + this")
    tune.add_argument("--max-false-per-day", type=float, default=1.0, help="false-alert budget")
    tune.add_argument("--max-settings", type=int, default=1000, help="refuse larger grids")
    tune.add_argument("--top", type=int, default=20, help="rows of the ranked table printed")
    tune.add_argument("captures", nargs="+", help="kcat -J capture files (JSON lines)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``monitor`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    from monitor.logs import configure_logging

    if args.command == "check-config":
        config = _load(args.config)
        if config is None:
            return EXIT_CONFIG
        print(f"{args.config}: ok ({len(config.models)} model(s))")
        return 0
    if args.command == "demo":
        configure_logging(args.log_level, json=True if args.no_view else None)
        from monitor.demo import produce_traffic, run_demo

        if args.produce_to:
            return produce_traffic(args.produce_to, args.rate, args.seconds)
        return run_demo(seconds=args.seconds, rate=args.rate, port=args.port, view=not args.no_view)
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.command == "rules":
        from monitor.outputs.promrules import export_rules

        text = export_rules(config)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            sys.stdout.write(text)
        return 0
    configure_logging(args.log_level)
    if args.command == "tune":
        from monitor.tune import run_tune

        return run_tune(args, config)
    if args.command == "replay":
        from monitor.replay import replay

        replay(config, args.captures, args.out)
        return 0
    from monitor.app import App
    from monitor.kafka.topics import TopicLayoutError

    app = App(config)
    app.install_signal_handlers()
    try:
        return app.run()
    except TopicLayoutError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
