"""Command line: monitor run | replay | report | tune | check-config | rules export | demo."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from monitor.config import ConfigError, MonitorConfig, OutputsConfig, load_config
from monitor.extras import MissingExtra, available, require
from monitor.version import __version__

if TYPE_CHECKING:
    from monitor.tui import ProgressBars

__all__ = ["main"]

EXIT_CONFIG = 2
#: Event-time length of ``demo --capture`` without ``--seconds``: the drift (60 s to
#: 180 s) and a minute of recovery after it.
CAPTURE_SECONDS = 300.0
#: Seconds of live demo traffic the drift and its recovery need (see monitor.demo).
DEMO_STORY_S = 240.0


def _load(path: str) -> MonitorConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _with_outputs(
    config: MonitorConfig, tensorboard: str | None, cloudwatch: bool
) -> MonitorConfig:
    """``config`` with replay's ``--tensorboard DIR`` and ``--cloudwatch`` turned on."""
    updates: dict[str, object] = {}
    if tensorboard:
        updates["tensorboard_dir"] = os.path.abspath(tensorboard)
    if cloudwatch:
        updates["cloudwatch"] = True
    if not updates:
        return config
    return config.model_copy(update={"outputs": config.outputs.model_copy(update=updates)})


def _demo_outputs(args: argparse.Namespace) -> OutputsConfig:
    """The demo daemon's exports from ``--tensorboard DIR`` and ``--cloudwatch``."""
    tensorboard = os.path.abspath(args.tensorboard) if args.tensorboard else None
    return OutputsConfig.model_validate(
        {"tensorboard_dir": tensorboard, "cloudwatch": args.cloudwatch}
    )


class _HelpFormatter(argparse.HelpFormatter):
    """Descriptions filled to the terminal's width paragraph by paragraph; every option's
    default shown in its help, except for flags and options without one."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        return "\n\n".join(super(_HelpFormatter, self)._fill_text(p, width, indent)
                           for p in paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


_LOG_LEVELS = ("debug", "info", "warning", "error")

DESCRIPTION = """\
Watch a deployed model from its Kafka event stream: windowed performance metrics, drift
statistics, concept-drift detectors and alert rules, exported to Prometheus and sent as
alerts. Every command takes --config FILE (one TOML file); global options (--log-level)
may come before or after the command. Exit 2 means a bad config, option or input file."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor", description=DESCRIPTION, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    parser.add_argument("--log-level", default="info", choices=_LOG_LEVELS,
                        help="lowest level of the log lines written")
    # The same option on every command, so that it may follow the command's name; SUPPRESS
    # keeps the value given before the command when it is not repeated after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=_LOG_LEVELS,
                        help="lowest level of the log lines written (default: info)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, parents=[common],
                              formatter_class=_HelpFormatter)

    run = command(
        "run", "the daemon: Kafka in, metrics and alerts out",
        "Consume the predictions and labels topics, keep the metrics, send alerts, and "
        "serve /metrics, /healthz and /readyz until SIGTERM or Ctrl-C (then a final "
        "checkpoint).",
    )
    run.add_argument("--config", required=True, metavar="FILE", help="TOML config file")
    run.add_argument(
        "--tui", action="store_true", help="a live view on the terminal (stdout must be one); "
        "logs go to stderr: above the view when it is the terminal, else JSON lines"
    )
    check = command(
        "check-config", "validate a config file (exit 0, or 2)",
        "Load and validate a config file without touching Kafka: print '<file>: ok' and "
        "exit 0, or print every problem (file, key path, reason) and exit 2.",
    )
    check.add_argument("--config", dest="config_option", metavar="FILE",
                       help="TOML config file")
    check.add_argument("config", nargs="?", metavar="FILE",
                       help="the same as --config (kept for existing scripts)")
    replay = command(
        "replay", "the same pipeline over captured messages",
        "Run the pipeline without Kafka over captured messages, as fast as it can, "
        "deterministically, and write alerts.jsonl, signals.jsonl, metrics.prom and "
        "summary.json to --out. An input is kcat -J capture lines (kcat -C -J -t "
        "predictions -t labels) or plain event JSON lines (one prediction or label event "
        "a line); '-' reads standard input. Exit 2 for an unreadable input, 1 when no line "
        "of the input was usable.",
    )
    replay.add_argument("--config", required=True, metavar="FILE", help="TOML config file")
    replay.add_argument("--out", required=True, metavar="DIR", help="output directory")
    replay.add_argument(
        "--format", choices=("auto", "kcat", "events"), default="auto",
        help="input lines: kcat -J envelopes, plain events, or auto (each input's first "
        "line decides)",
    )
    replay.add_argument(
        "--tensorboard", metavar="DIR", help="also write TensorBoard scalars (a run per model)"
    )
    replay.add_argument(
        "--cloudwatch", action="store_true", help="also write cloudwatch.jsonl (CloudWatch EMF)"
    )
    replay.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is one only when stderr is a terminal)")
    replay.add_argument("captures", nargs="+", metavar="INPUT",
                        help="capture or event files (JSON lines); '-' for standard input")
    report = command(
        "report", "a self-contained HTML page of plots from a replay (or captures)",
        "Write OUT/report.html from a replay's output directory (--from), or replay CAPTURE "
        "files with --config into OUT first.",
    )
    report.add_argument("--out", required=True, metavar="DIR", help="output directory")
    report.add_argument("--from", dest="from_dir", metavar="REPLAY_DIR",
                        help="a 'monitor replay' output directory")
    report.add_argument("--config", metavar="FILE",
                        help="TOML config file, to replay CAPTURE files into OUT")
    report.add_argument("captures", nargs="*", metavar="CAPTURE", help="kcat -J capture files")
    rules = command(
        "rules", "alert rules: export as a Prometheus rules file",
        "Alert rules for alerting from Prometheus instead of the alert topic.",
    )
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    export = rules_sub.add_parser(
        "export", help="the config's rules as Prometheus alerting rules", parents=[common],
        formatter_class=_HelpFormatter,
        description="Write the config's alert rules, and a group of rules about the monitor "
        "itself, as a Prometheus rules file (for rule_files; check it with promtool check "
        "rules). Every expression is scoped by [prometheus] rules_selector.",
    )
    export.add_argument("--config", required=True, metavar="FILE", help="TOML config file")
    export.add_argument("--out", metavar="FILE", help="output file (default: standard output)")
    demo = command(
        "demo", "embedded broker, demonstration traffic, live view",
        "Start an embedded Kafka broker, send a demonstration model's traffic with a drift "
        "in it (from 60 s, recovering from 120 s), run the daemon on it and show the live "
        "view.",
    )
    demo.add_argument(
        "--seconds", type=float,
        help="stop after this long (default: until Ctrl-C; with --capture, "
        f"{CAPTURE_SECONDS:g} s of event time, which covers the drift and its recovery)",
    )
    demo.add_argument("--rate", type=float, default=2000.0, help="predictions per second")
    demo.add_argument("--port", type=int, default=9108, help="HTTP port for /metrics")
    demo.add_argument("--no-view", action="store_true", help="log lines instead of the live view")
    demo.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard scalars")
    demo.add_argument(
        "--cloudwatch", action="store_true", help="also print CloudWatch EMF lines (no view)"
    )
    demo.add_argument(
        "--produce-to", metavar="BOOTSTRAP", help="only send the demo traffic to this Kafka"
    )
    demo.add_argument(
        "--capture", metavar="DIR", help="no broker: write --seconds of demo traffic (event "
        "time) to DIR/capture.jsonl, with DIR/reference.csv and DIR/monitor.toml"
    )
    tune = command(
        "tune", "grid-search rule and detector settings on replays",
        "Replay captures under every setting of a grid of rule and detector parameters, "
        "score each against known incidents (missed, median delay, false alerts a day), "
        "and write tune.json, tune.csv and winner.toml to --out.",
    )
    tune.add_argument("--config", required=True, metavar="FILE", help="TOML config file")
    tune.add_argument("--incidents", required=True, metavar="FILE",
                      help="CSV or JSON lines: model,start,end")
    tune.add_argument("--grid", metavar="FILE",
                      help="TOML grid: parameter path = [values] (default: derived from the "
                      "config's rules)")
    tune.add_argument("--folds", type=int, default=3, help="contiguous event-time folds")
    tune.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    tune.add_argument("--out", default="tune-out", metavar="DIR",
                      help="directory for tune.json, tune.csv and winner.toml")
    tune.add_argument("--grace", default="0s", help="detections count until incident end + this")
    tune.add_argument("--max-false-per-day", type=float, default=1.0, help="false-alert budget")
    tune.add_argument("--max-settings", type=int, default=1000, help="refuse larger grids")
    tune.add_argument("--top", type=int, default=20, help="rows of the ranked table printed")
    tune.add_argument("--no-progress", action="store_true",
                      help="no progress bars (there are some only when stderr is a terminal)")
    tune.add_argument("captures", nargs="+", metavar="CAPTURE",
                      help="kcat -J capture files (JSON lines)")
    return parser


def _needs(config: MonitorConfig) -> None:
    """Raise MissingExtra when ``config`` turns on a part whose extra is not installed."""
    if config.outputs.tensorboard_dir:
        require("tensorboard", "[outputs] tensorboard_dir")
    if config.kafka.client == "confluent":
        require("confluent", '[kafka] client = "confluent"')


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``monitor`` console script; returns the exit code (2 for a bad
    config or a missing extra, printed as one line on stderr)."""
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG


def _main(args: argparse.Namespace) -> int:
    from monitor.logs import configure_logging

    if args.command in ("run", "replay", "tune", "demo"):
        from monitor import gc_policy

        gc_policy.tune()

    if args.command == "check-config":
        path = args.config_option or args.config
        if path is None or (args.config_option and args.config):
            print("monitor check-config: give one config file (--config FILE)", file=sys.stderr)
            return EXIT_CONFIG
        config = _load(path)
        if config is None:
            return EXIT_CONFIG
        _needs(config)
        print(f"{path}: ok ({len(config.models)} model(s))")
        from monitor.core.reference import print_summaries

        print_summaries(config.models)
        return 0
    if args.command == "demo" and not args.capture:
        if not args.produce_to:
            require("demo", "monitor demo")  # before any other word: one line if missing
        if args.seconds is not None and 0 < args.seconds < DEMO_STORY_S:
            print(f"monitor demo: the drift runs from 60 s to 180 s; --seconds {args.seconds:g} "
                  "stops before it has resolved", file=sys.stderr)
        args.seconds = args.seconds or 0.0
    if args.command == "demo" and (args.tensorboard or args.cloudwatch) and not args.produce_to:
        view = not (args.no_view or args.cloudwatch)  # EMF lines would tear the live view
        configure_logging(args.log_level, json=None if view else True)
        require("demo", "monitor demo")
        from monitor.demo import run_demo

        return run_demo(seconds=args.seconds, rate=args.rate, port=args.port, view=view,
                        outputs=_demo_outputs(args))
    if args.command == "demo":
        configure_logging(args.log_level, json=True if args.no_view else None)
        from monitor.demo import produce_traffic, run_demo

        if args.capture:
            from monitor.demo import write_capture

            seconds = CAPTURE_SECONDS if args.seconds is None else args.seconds
            if seconds <= 0:
                print("monitor demo: --capture needs --seconds > 0", file=sys.stderr)
                return EXIT_CONFIG
            written = write_capture(args.capture, seconds, args.rate)
            print(f"{args.capture}: capture.jsonl ({written['predictions']} predictions, "
                  f"{written['labels']} labels), reference.csv, monitor.toml")
            return 0
        if args.produce_to:
            return produce_traffic(args.produce_to, args.rate, args.seconds)
        require("demo", "monitor demo")
        return run_demo(seconds=args.seconds, rate=args.rate, port=args.port, view=not args.no_view)
    if args.command == "report":
        configure_logging(args.log_level)
        return _report(args)
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.command == "replay" and args.tensorboard:
        require("tensorboard", "monitor replay --tensorboard")
    if args.command in ("run", "replay"):
        _needs(config)
    if args.command == "rules":
        from monitor.outputs.promrules import export_rules

        text = export_rules(config)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            sys.stdout.write(text)
        return 0
    lock = None
    if args.command == "run" and config.state.store == "local":
        from monitor.state.lock import LockHeld, StateLock

        try:  # before the group join: a second daemon must not disturb the first one's group
            lock = StateLock(config.state.dir).acquire()
        except LockHeld as exc:
            print(f"monitor: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.command == "run" and args.tui:
        require("tui", "monitor run --tui")
        from monitor.tui import run_tui

        return run_tui(config, args.log_level)
    configure_logging(args.log_level)
    if args.command == "tune":
        require("tui", "monitor tune")
        from monitor.tune import run_tune

        return run_tune(args, config)
    if args.command == "replay":
        from monitor.replay import InputError, NoUsableInput, replay

        try:
            with _progress(not args.no_progress) as bars:
                replay(_with_outputs(config, args.tensorboard, args.cloudwatch), args.captures,
                       args.out, progress=bars, fmt=args.format)
        except InputError as exc:
            print(f"monitor replay: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except NoUsableInput as exc:
            print(f"monitor replay: {exc}", file=sys.stderr)
            return 1
        return 0
    from monitor.kafka.topics import TopicLayoutError
    from monitor.startup import Prestart

    # The HTTP port and the group join first: the join's seconds pass while the engine's
    # modules import and the checkpoint loads (see monitor.startup). SIGTERM and SIGINT
    # set the stop flag from the first instant: the run then ends at once, with its
    # final checkpoint, instead of dying before the app installs its own handlers.
    prestart = Prestart(config)

    def early_stop(signum: int, _frame: object) -> None:
        prestart.stop.set()

    signal.signal(signal.SIGTERM, early_stop)
    signal.signal(signal.SIGINT, early_stop)
    prestart.start()
    from monitor.app import App

    app = App(config, prestart=prestart)
    app.install_signal_handlers()
    try:
        return app.run()
    except TopicLayoutError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if lock is not None:
            lock.release()


def _progress(enabled: bool) -> AbstractContextManager[ProgressBars | None]:
    """Replay's progress bars on a terminal; none without the 'tui' extra (rich)."""
    if not available("tui"):
        return nullcontext(None)
    from monitor.tui import ProgressBars

    return ProgressBars.on_stderr(enabled)


def _report(args: argparse.Namespace) -> int:
    """``monitor report``: from ``--from REPLAY_DIR``, or replay ``--config`` captures first."""
    require("report", "monitor report")
    from monitor.report_html import ReportError, render_report

    if args.from_dir is not None and (args.config or args.captures):
        print("monitor report: give --from REPLAY_DIR, or --config FILE with CAPTURE files, "
              "not both", file=sys.stderr)
        return EXIT_CONFIG
    source = args.from_dir
    if source is None:
        if not args.config or not args.captures:
            print("monitor report: give --from REPLAY_DIR, or --config FILE and at least one "
                  "CAPTURE file", file=sys.stderr)
            return EXIT_CONFIG
        missing = [c for c in args.captures if not os.path.isfile(c)]
        if missing:
            print(f"monitor report: no such capture file: {', '.join(missing)}", file=sys.stderr)
            return EXIT_CONFIG
        config = _load(args.config)
        if config is None:
            return EXIT_CONFIG
        from monitor.replay import InputError, NoUsableInput, replay

        try:
            replay(config, args.captures, args.out)
        except (InputError, NoUsableInput) as exc:
            print(f"monitor report: {exc}", file=sys.stderr)
            return EXIT_CONFIG if isinstance(exc, InputError) else 1
        source = args.out
    try:
        path, figures = render_report(source, args.out)
    except ReportError as exc:
        print(f"monitor report: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: {len(figures)} plot(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
