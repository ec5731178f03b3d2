"""The command line: ``check-config`` on good and bad files, ``replay`` outputs and determinism."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example.toml"

GOOD = """\
[time]
pane = "10s"

[[models]]
name = "fraud"
task = "binary"
positive_class = 1
windows = ["all", "1m", "ewm2m"]
"""


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------ check-config


def test_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check(EXAMPLE, capsys)
    assert code == 0, err
    assert out.strip() == f"{EXAMPLE}: ok (2 model(s))"


def test_minimal_config_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    code, out, _ = _check(path, capsys)
    assert code == 0
    assert "ok (1 model(s))" in out


BAD_CONFIGS = {
    "unknown_key": (
        GOOD + 'colour = "blue"\n',
        "models[0](fraud).colour",
        "Extra inputs are not permitted",
    ),
    "unknown_section_key": (
        GOOD.replace('pane = "10s"', 'pane = "10s"\nlatenes = "1m"'),
        "time.latenes",
        "Extra inputs are not permitted",
    ),
    "bad_duration": (
        GOOD.replace('pane = "10s"', 'pane = "10 parsecs"'),
        "time.pane",
        "expected a duration",
    ),
    "window_not_multiple_of_pane": (
        GOOD.replace('"1m"', '"45s"').replace('pane = "10s"', 'pane = "20s"'),
        "(file)",
        "whole number of panes",
    ),
    "binary_without_positive_class": (
        GOOD.replace("positive_class = 1\n", ""),
        "models[0](fraud)",
        "positive_class is required",
    ),
    "duplicate_model_names": (
        GOOD + "\n" + GOOD.split("\n", 3)[3],
        "(file)",
        "model names must be unique",
    ),
    "toml_syntax_error": (
        GOOD.replace('task = "binary"', 'task = "binary'),
        "invalid TOML",
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_naming_file_key_and_reason(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, key_path, reason = BAD_CONFIGS[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    code, out, err = _check(path, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert lines, "no problem printed"
    line = next((ln for ln in lines if key_path in ln and reason in ln), None)
    assert line is not None, f"expected {key_path!r} and {reason!r} in:\n{err}"
    assert line.startswith(f"{path}: ")


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere.toml"
    code, out, err = _check(path, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith(f"{path}: cannot read")


def test_several_problems_are_all_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace('pane = "10s"', 'pane = "soon"') + "max_pending = -1\n")
    code, _, err = _check(path, capsys)
    assert code == 2
    assert "time.pane" in err
    assert "models[0](fraud).max_pending" in err


# ------------------------------------------------------------------------------ replay

REPLAY_CONFIG = """\
[time]
pane = "10s"
allowed_lateness = "5s"

[[models]]
name = "fraud"
task = "binary"
positive_class = 1
label_ttl = "10m"
windows = ["all", "1m", "ewm1m"]
features = { amount = "numeric", country = "categorical" }
segments = ["country"]
"""
T0 = 1_700_000_000.0
MODELS_METRICS = {"accuracy", "f1", "roc_auc", "log_loss"}


def _envelope(topic: str, partition: int, offset: int, key: str, payload: str) -> str:
    return json.dumps({"topic": topic, "partition": partition, "offset": offset,
                       "tstype": "create", "ts": 0, "broker": 0, "key": key,
                       "payload": payload})


def write_capture(path: Path, n: int = 400) -> None:
    """Predictions 1 s apart over 2 partitions, labels 5 s later, a few broken lines."""
    offsets = {(t, p): 0 for t in ("predictions", "labels") for p in (0, 1)}
    rows: list[tuple[float, str, int, str, str]] = []
    for i in range(n):
        pid = f"p{i}"
        part = i % 2
        ts = T0 + i
        score = ((i * 37) % 100) / 100
        label = int((i * 37) % 100 >= 40) if i % 7 else int((i * 37) % 100 < 40)
        pred = {"prediction_id": pid, "model": "fraud", "model_version": f"v{i % 2}",
                "ts": ts, "prediction": int(score >= 0.5), "score": score,
                "features": {"amount": 10.0 + i, "country": "US" if i % 3 else "DE"},
                "segment": {"country": "US" if i % 3 else "DE"}}
        rows.append((ts, "predictions", part, pid, json.dumps(pred)))
        if i % 10 != 9:
            rows.append((ts + 5, "labels", part, pid,
                         json.dumps({"prediction_id": pid, "label": label, "ts": ts + 5})))
    rows.sort(key=lambda r: (r[0], r[1] != "predictions"))
    lines = []
    for _, topic, part, key, payload in rows:
        lines.append(_envelope(topic, part, offsets[topic, part], key, payload))
        offsets[topic, part] += 1
    # A malformed payload (a reject of the decoder) and a line that is no envelope at all.
    lines.insert(50, _envelope("predictions", 0, offsets["predictions", 0], "x", "{not json"))
    lines.insert(60, "this is not a kcat envelope")
    path.write_text("\n".join(lines) + "\n")


def run_replay(config: Path, capture: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "--config", str(config),
         "--out", str(out), str(capture)],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("replay")
    config = base / "monitor.toml"
    config.write_text(REPLAY_CONFIG)
    capture = base / "capture.jsonl"
    write_capture(capture)
    outs = []
    for name in ("out1", "out2"):
        result = run_replay(config, capture, base / name)
        assert result.returncode == 0, result.stderr + result.stdout
        outs.append(base / name)
    return capture, outs[0], outs[1]


def test_replay_writes_the_four_outputs(replayed: tuple[Path, Path, Path]) -> None:
    _, out, _ = replayed
    assert sorted(p.name for p in out.iterdir()) == [
        "alerts.jsonl", "metrics.prom", "signals.jsonl", "summary.json",
    ]
    for line in (out / "alerts.jsonl").read_text().splitlines():
        alert = json.loads(line)
        assert alert["status"] in ("firing", "resolved")


def test_replay_summary_shape(replayed: tuple[Path, Path, Path]) -> None:
    _, out, _ = replayed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"models", "rejects"}
    model = summary["models"]["fraud"]
    assert set(model["windows"]) == {"all", "1m", "ewm1m"}
    for metrics in model["windows"].values():
        assert set(metrics) >= MODELS_METRICS
        for value in metrics.values():
            assert value is None or isinstance(value, int | float)
    counts = model["counts"]
    assert counts["predictions"] == 400
    assert counts["labels"] == 360
    assert counts["matched"] == 360
    accuracy = model["windows"]["all"]["accuracy"]
    assert accuracy is not None and 0.0 <= accuracy <= 1.0
    assert summary["rejects"] == {"bad_envelope": 1, "not_json": 1}


def test_replay_counts_capture_lines_that_are_not_utf8_and_goes_on(
    replayed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A capture line with bytes that are not UTF-8 (inside a string, or raw) is a bad
    envelope like any other broken line: counted, and the lines after it are replayed."""
    capture, out, _ = replayed
    lines = capture.read_bytes().splitlines(keepends=True)
    middle = len(lines) // 2
    broken = [
        b'{"topic": "predictions", "partition": 0, "offset": 1, "payload": "\xff"}\n',
        b"\xff\xfe\x00 not even JSON\n",
    ]
    noisy = tmp_path / "noisy.jsonl"
    noisy.write_bytes(b"".join([*lines[:middle], *broken, *lines[middle:]]))
    config = tmp_path / "monitor.toml"
    config.write_text(REPLAY_CONFIG)
    assert main(["replay", "--no-progress", "--config", str(config), "--out",
                 str(tmp_path / "out"), str(noisy)]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    before = json.loads((out / "summary.json").read_text())
    assert summary["rejects"] == {**before["rejects"], "bad_envelope": 3}
    assert summary["models"] == before["models"]


def test_replay_signals_lines(replayed: tuple[Path, Path, Path]) -> None:
    _, out, _ = replayed
    lines = (out / "signals.jsonl").read_text().splitlines()
    assert lines
    previous = -math.inf
    for line in lines:
        record = json.loads(line)
        assert record["model"] == "fraud"
        assert record["ts"] >= previous
        previous = record["ts"]
        assert "accuracy@all" in record["signals"]
        assert all(v is None or isinstance(v, int | float) for v in record["signals"].values())


def test_replay_is_deterministic(replayed: tuple[Path, Path, Path]) -> None:
    _, out1, out2 = replayed
    for name in ("summary.json", "signals.jsonl", "alerts.jsonl"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name


def test_replay_metrics_pass_promtool(replayed: tuple[Path, Path, Path]) -> None:
    _, out, _ = replayed
    text = (out / "metrics.prom").read_bytes()
    assert b"monitor_model_metric" in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------- conventions


def test_check_config_takes_config_option_and_positional(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", "--config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip() == f"{EXAMPLE}: ok (2 model(s))"
    assert main(["check-config", str(EXAMPLE)]) == 0  # the positional form still works
    assert main(["check-config"]) == 2
    assert "--config" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["check-config", "rules"])
def test_log_level_after_the_command(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["check-config", "--config", str(EXAMPLE)] if command == "check-config" else [
        "rules", "export", "--config", str(EXAMPLE), "--out", str(tmp_path / "r.yml")]
    assert main([*args, "--log-level", "warning"]) == 0
    assert main([args[0], "--log-level", "error", *args[1:]]) == 0
    with pytest.raises(SystemExit) as exc:
        main([*args, "--log-level", "loud"])
    assert exc.value.code == 2
    assert "invalid choice: 'loud'" in capsys.readouterr().err


def _help(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args, "--help"],
        capture_output=True, text=True, check=True, env={"COLUMNS": "100", "PATH": ""},
    )
    return done.stdout


@pytest.mark.parametrize(
    "command", ["run", "check-config", "replay", "report", "rules", "demo", "tune"]
)
def test_every_command_has_a_description_in_plain_text(command: str) -> None:
    text = _help(command)
    _, _, rest = text.partition("\n\n")
    description = rest.split("\n\n", 1)[0]
    assert len(description) > 40, text  # a sentence, not just the usage line
    assert "``" not in text and ":func:" not in text
    assert "--log-level" in text
    assert "``" not in _help()


def test_help_shows_defaults() -> None:
    tune = _help("tune")
    assert re.search(r"--folds FOLDS\s+contiguous event-time folds \(default: 3\)", tune)
    assert "(default: tune-out)" in tune
    assert "(default: None)" not in tune and "(default: False)" not in tune
    replay = _help("replay")
    assert "(default: auto)" in replay
    assert "(default: 9108)" in _help("demo")


# ------------------------------------------------------------------- replay: what users have


def _one_partition_stream(n: int = 300) -> list[tuple[str, str]]:
    """(topic, event JSON) in time order: predictions 1 s apart, most labelled 5 s later."""
    rows: list[tuple[float, str, str]] = []
    for i in range(n):
        pid = f"p{i}"
        score = ((i * 37) % 100) / 100
        label = int((i * 37) % 100 >= 40) if i % 7 else int((i * 37) % 100 < 40)
        pred = {"prediction_id": pid, "model": "fraud", "ts": T0 + i,
                "prediction": int(score >= 0.5), "score": score,
                "features": {"amount": 10.0 + i, "country": "US" if i % 3 else "DE"},
                "segment": {"country": "US" if i % 3 else "DE"}}
        rows.append((T0 + i, "predictions", json.dumps(pred)))
        if i % 10 != 9:
            label_event = {"prediction_id": pid, "label": label, "ts": T0 + i + 5}
            rows.append((T0 + i + 5, "labels", json.dumps(label_event)))
    rows.sort(key=lambda r: (r[0], r[1] != "predictions"))
    return [(topic, payload) for _, topic, payload in rows]


def _replay_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", "--log-level", "warning", "replay", *args],
        capture_output=True, text=True, timeout=120, input=stdin,
    )


def _outputs(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text()
            for name in ("summary.json", "signals.jsonl", "alerts.jsonl", "metrics.prom")}


def test_replay_of_plain_events_equals_the_kcat_capture_of_them(tmp_path: Path) -> None:
    """A file of plain event lines (auto-detected, --format events, or on stdin) gives the
    same outputs as the kcat capture of the same messages on partition 0."""
    config = tmp_path / "monitor.toml"
    config.write_text(REPLAY_CONFIG)
    stream = _one_partition_stream()
    offsets = {"predictions": 0, "labels": 0}
    kcat = []
    for topic, payload in stream:
        kcat.append(_envelope(topic, 0, offsets[topic], json.loads(payload)["prediction_id"],
                              payload))
        offsets[topic] += 1
    (tmp_path / "capture.jsonl").write_text("\n".join(kcat) + "\n")
    events_text = "\n".join(payload for _, payload in stream) + "\n"
    (tmp_path / "events.jsonl").write_text(events_text)

    runs = {
        "kcat": _replay_cli("--config", str(config), "--out", str(tmp_path / "kcat"),
                            str(tmp_path / "capture.jsonl")),
        "auto": _replay_cli("--config", str(config), "--out", str(tmp_path / "auto"),
                            str(tmp_path / "events.jsonl")),
        "events": _replay_cli("--config", str(config), "--out", str(tmp_path / "events"),
                              "--format", "events", str(tmp_path / "events.jsonl")),
        "stdin": _replay_cli("--config", str(config), "--out", str(tmp_path / "stdin"), "-",
                             stdin=events_text),
    }
    for name, result in runs.items():
        assert result.returncode == 0, (name, result.stderr)
    expected = _outputs(tmp_path / "kcat")
    summary = json.loads(expected["summary.json"])
    assert summary["models"]["fraud"]["counts"]["predictions"] == 300
    assert summary["rejects"] == {}
    assert expected["signals.jsonl"].count("\n") > 10
    for name in ("auto", "events", "stdin"):
        assert _outputs(tmp_path / name) == expected, name


def test_replay_of_a_kcat_capture_as_events_is_refused(tmp_path: Path) -> None:
    """Forced to the wrong format, no line is usable: exit 1 and one line saying so."""
    config = tmp_path / "monitor.toml"
    config.write_text(REPLAY_CONFIG)
    capture = tmp_path / "capture.jsonl"
    write_capture(capture, n=50)
    result = _replay_cli("--config", str(config), "--out", str(tmp_path / "out"),
                         "--format", "events", str(capture))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("monitor replay: no usable event in ")
    assert "missing_field" in lines[-1] and "Traceback" not in result.stderr


@pytest.mark.parametrize("content", ["", "\n\n", "hello\nworld\n", '{"a": 1}\n'])
def test_replay_with_no_usable_line_exits_non_zero(content: str, tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(REPLAY_CONFIG)
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    result = _replay_cli("--config", str(config), "--out", str(tmp_path / "out"), str(path))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("monitor replay: no usable event")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["missing", "directory", "unreadable"])
def test_replay_of_an_unreadable_input_exits_2_with_one_line(kind: str, tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(REPLAY_CONFIG)
    path = tmp_path / "in.jsonl"
    if kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        write_capture(path, n=10)
        path.chmod(0)
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who reads every file (root)")
    good = tmp_path / "good.jsonl"
    write_capture(good, n=10)
    result = _replay_cli("--config", str(config), "--out", str(tmp_path / "out"),
                         str(good), str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    reason = {"missing": "no such file", "directory": "is a directory",
              "unreadable": "cannot read"}[kind]
    assert result.stderr.startswith(f"monitor replay: {path}: {reason}")
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_series_cap_from_the_config(tmp_path: Path) -> None:
    """[prometheus] max_series caps monitor_model_metric in the exposition."""
    capture = tmp_path / "capture.jsonl"
    write_capture(capture, n=100)
    counts = {}
    for cap in ("", "[prometheus]\nmax_series = 5\n\n"):
        config = tmp_path / "monitor.toml"
        config.write_text(cap + REPLAY_CONFIG)
        out = tmp_path / f"out{len(counts)}"
        result = _replay_cli("--config", str(config), "--out", str(out), str(capture))
        assert result.returncode == 0, result.stderr
        text = (out / "metrics.prom").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith("monitor_model_metric{")]
        dropped = float(next(ln for ln in text.splitlines()
                             if ln.startswith("monitor_series_dropped ")).split()[1])
        counts[cap] = (len(lines), dropped)
    full, _ = counts[""]
    assert full > 5
    assert counts["[prometheus]\nmax_series = 5\n\n"] == (5, full - 5)
