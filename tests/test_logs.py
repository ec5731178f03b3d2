"""Logging: JSON lines for structlog and stdlib loggers; rate limiting that counts."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from monitor.logs import RateLimitedLogger, RateLimiter, configure_logging, rate_limited


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    yield out
    configure_logging("info", json=True, stream=io.StringIO())


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_structlog_lines_are_json_with_timestamp_level_and_logger(stream):
    structlog.get_logger("monitor.test").info("checkpoint_written", partitions=4)
    (line,) = lines(stream)
    assert line["event"] == "checkpoint_written"
    assert line["partitions"] == 4
    assert line["level"] == "info"
    assert line["logger"] == "monitor.test"
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]


def test_stdlib_loggers_come_out_as_json_lines(stream):
    logging.getLogger("somelib").warning("disk %s is %d%% full", "/data", 93)
    (line,) = lines(stream)
    assert line["event"] == "disk /data is 93% full"
    assert line["level"] == "warning"
    assert line["logger"] == "somelib"


def test_kafka_loggers_below_warning_are_dropped(stream):
    logging.getLogger("kafka.conn").info("connecting to broker")
    logging.getLogger("kafka.conn").warning("broker unreachable")
    assert [line["event"] for line in lines(stream)] == ["broker unreachable"]


def test_level_filters_structlog_and_stdlib(stream):
    configure_logging("warning", json=True, stream=stream)
    structlog.get_logger("monitor.test").info("hidden")
    logging.getLogger("x").info("hidden too")
    structlog.get_logger("monitor.test").warning("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]


def test_exceptions_are_rendered_inside_the_json_line(stream):
    try:
        raise ValueError("bad offset")
    except ValueError:
        structlog.get_logger("monitor.test").exception("commit_failed")
    (line,) = lines(stream)
    assert "ValueError: bad offset" in line["exception"]


def test_secret_looking_keys_are_redacted(stream):
    structlog.get_logger("monitor.test").info(
        "connecting", sasl_password="hunter2", api_key="k", user="bob"
    )
    (line,) = lines(stream)
    assert line["sasl_password"] == "***" and line["api_key"] == "***"
    assert line["user"] == "bob"
    assert "hunter2" not in stream.getvalue()


def test_reconfiguring_does_not_duplicate_handlers(stream):
    configure_logging("info", json=True, stream=stream)
    configure_logging("info", json=True, stream=stream)
    structlog.get_logger("monitor.test").info("once")
    assert len(lines(stream)) == 1


def test_console_renderer_when_not_json():
    out = io.StringIO()
    try:
        configure_logging("info", json=False, stream=out)
        structlog.get_logger("monitor.test").info("hello", n=1)
        text = out.getvalue()
        assert "hello" in text and "n=1" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    finally:
        configure_logging("info", json=True, stream=io.StringIO())


def test_default_is_json_when_stream_is_not_a_tty(stream):
    out = io.StringIO()
    configure_logging(stream=out)
    structlog.get_logger("monitor.test").info("auto")
    assert json.loads(out.getvalue())["event"] == "auto"


def test_invalid_level_is_refused():
    with pytest.raises(ValueError, match="level"):
        configure_logging("loud")


def test_rate_limited_logger_suppresses_and_reports_the_count(stream):
    now = [100.0]
    log = RateLimitedLogger(structlog.get_logger("monitor.test"), 10.0, clock=lambda: now[0])
    for _ in range(5):
        log.warning("not_json", "message_rejected", reason="not_json")
    log.warning("bad_type", "message_rejected", reason="bad_type")  # other key: own budget
    now[0] = 110.0
    log.warning("not_json", "message_rejected", reason="not_json")
    log.warning("not_json", "message_rejected", reason="not_json")
    got = [(line["reason"], line.get("suppressed")) for line in lines(stream)]
    assert got == [("not_json", None), ("bad_type", None), ("not_json", 4)]


def test_rate_limiter_forgets_oldest_keys_past_max_keys():
    now = [0.0]
    limiter = RateLimiter(60.0, clock=lambda: now[0], max_keys=2)
    assert limiter.allow("a") == 0
    assert limiter.allow("b") == 0
    assert limiter.allow("c") == 0  # "a" forgotten
    assert limiter.allow("a") == 0
    assert limiter.allow("c") is None


def test_rate_limited_helper_counts_per_key():
    key = ("test_rate_limited_helper", object())
    assert rate_limited(key, 3600.0) == 0
    assert rate_limited(key, 3600.0) is None
    assert rate_limited(key, 3600.0) is None
    assert rate_limited(key, 0.0) == 2


def test_a_logger_cached_before_a_reconfiguration_follows_it_and_can_be_captured():
    # The daemon's loggers are bound once and cached; configuring again (the TUI changing
    # the level, a test capturing logs after an in-process CLI run) must still reach them.
    from structlog.testing import capture_logs

    configure_logging("info", json=True, stream=io.StringIO())
    cached = structlog.get_logger("monitor.test.cached")
    cached.info("bound_and_cached")
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    with capture_logs() as captured:
        cached.warning("captured")
    cached.warning("rendered")
    assert [e["event"] for e in captured] == ["captured"]
    assert [e["event"] for e in lines(out)] == ["rendered"]


def test_enabled_says_whether_a_level_is_written(stream):
    log = RateLimitedLogger(structlog.get_logger("monitor.test"), 10.0)
    assert not log.enabled("debug") and log.enabled("info") and log.enabled("error")
    configure_logging("debug", json=True, stream=stream)
    assert log.enabled("debug")
    configure_logging("error", json=True, stream=stream)
    assert not log.enabled("warning") and log.enabled("error")


def test_a_closed_panes_record_is_logged_at_debug_and_not_made_above(stream, monkeypatch):
    """``monitor run`` logs each closed pane's signals (``pane_closed``) at debug level; at
    the default level the record (a dict of every signal) is not made at all."""
    from types import SimpleNamespace

    import monitor.app as app_module
    from monitor.app import App
    from monitor.core.model import PaneSignals

    made: list[str] = []
    real = app_module.signal_line

    def counted(sig: PaneSignals) -> dict:
        made.append(sig.model)
        return real(sig)

    monkeypatch.setattr(app_module, "signal_line", counted)
    app = SimpleNamespace(rl=RateLimitedLogger(structlog.get_logger("monitor.app"), 10.0),
                          exports=SimpleNamespace(enabled=False))  # fmt: skip
    closed = [PaneSignals("fraud", 60.0, {"f1@1h": 0.9, "psi:amount@1h": float("nan")})]
    App._send_alerts(app, closed, [])  # type: ignore[arg-type]
    assert made == [] and lines(stream) == []
    configure_logging("debug", json=True, stream=stream)
    App._send_alerts(app, closed, [])  # type: ignore[arg-type]
    (line,) = lines(stream)
    assert made == ["fraud"]
    assert (line["event"], line["model"], line["signals"]) == (
        "pane_closed", "fraud", {"f1@1h": 0.9, "psi:amount@1h": None})
