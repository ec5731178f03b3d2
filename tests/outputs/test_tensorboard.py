"""TensorBoard scalars, read back with TensorBoard's own reader (``EventMultiplexer`` /
``EventAccumulator``): one run per model, step = pane end, values = ``signals.jsonl``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from monitor.config import ConfigError, load_config
from monitor.core.model import PaneSignals
from monitor.outputs.tensorboard import TensorBoardWriter, scalar_tag
from tests.outputs.export_stream import alert_lines, finite_signals, run_replay, signal_lines

KEEP_ALL = {"scalars": 0}  # no reservoir sampling: every event is kept


def _read(run_dir: Path) -> dict[str, list[tuple[int, float, float]]]:
    """tag -> [(step, wall_time, value)] of one run, as TensorBoard loads it."""
    acc = EventAccumulator(str(run_dir), size_guidance=KEEP_ALL)
    acc.Reload()
    return {
        tag: [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tb")
    out = run_replay(base, "--tensorboard", str(base / "tb"))
    return out, base / "tb"


def test_replay_writes_one_run_per_model_with_the_signals_exactly(
    replayed: tuple[Path, Path],
) -> None:
    out, logdir = replayed
    records = signal_lines(out)
    multiplexer = EventMultiplexer(size_guidance=KEEP_ALL).AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    assert set(multiplexer.Runs()) == {r["model"] for r in records} == {"fraud", "intent"}

    skipped = 0
    for model in ("fraud", "intent"):
        expected: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        for record in records:
            if record["model"] != model:
                continue
            values = finite_signals(record)
            skipped += len(record["signals"]) - len(values)
            for name, value in values.items():
                # TensorBoard keeps 32-bit floats: the value must be the signal, rounded once.
                point = (int(record["ts"]), record["ts"], float(np.float32(value)))
                expected[scalar_tag(name)].append(point)
        got = _read(logdir / model)
        alert_tags = {tag for tag in got if tag.startswith("alert/")}
        assert {tag: got[tag] for tag in got if tag not in alert_tags} == expected
        steps = [step for tag in expected for step, _, _ in expected[tag]]
        assert min(steps) > 1_700_000_000  # event time, in whole seconds
    assert skipped > 0  # the capture has undefined values (no labels yet, too few samples)
    assert "psi/amount/1m" in _read(logdir / "fraud")
    assert "class_recall/billing/all" in _read(logdir / "intent")


def test_alert_transitions_are_scalars_at_their_pane(replayed: tuple[Path, Path]) -> None:
    out, logdir = replayed
    alerts = alert_lines(out)
    assert [(a["rule"], a["status"]) for a in alerts] == [
        ("acc-low", "firing"), ("acc-low", "resolved")
    ]
    got = _read(logdir / "fraud")["alert/acc-low"]
    assert got == [(int(a["ts"]), a["ts"], 1.0 if a["status"] == "firing" else 0.0)
                   for a in alerts]  # fmt: skip
    assert not any(tag.startswith("alert/") for tag in _read(logdir / "intent"))


def test_each_batch_is_on_disk_when_write_returns(tmp_path: Path) -> None:
    tb = TensorBoardWriter(tmp_path)
    tb.write([PaneSignals("m", 1_700_000_010.0, {"f1@1h": 0.25, "psi:x@1h": float("nan")})])
    assert _read(tmp_path / "m") == {"f1/1h": [(1_700_000_010, 1_700_000_010.0, 0.25)]}
    tb.write([PaneSignals("m", 1_700_000_020.5, {"f1@1h": 0.5, "psi:x@1h": 1.5})])
    assert _read(tmp_path / "m") == {
        "f1/1h": [(1_700_000_010, 1_700_000_010.0, 0.25), (1_700_000_020, 1_700_000_020.5, 0.5)],
        "psi/x/1h": [(1_700_000_020, 1_700_000_020.5, 1.5)],
    }
    tb.close()


def test_signals_that_sanitise_to_one_tag_stay_apart(tmp_path: Path) -> None:
    tb = TensorBoardWriter(tmp_path)
    tb.write([PaneSignals("m", 100.0, {"class_recall:a b@1h": 0.25, "class_recall:a_b@1h": 0.75})])
    tb.close()
    got = _read(tmp_path / "m")
    assert len(got) == 2 and got["class_recall/a_b/1h"] == [(100, 100.0, 0.25)]
    (other,) = set(got) - {"class_recall/a_b/1h"}
    assert other.startswith("class_recall/a_b/1h_") and got[other] == [(100, 100.0, 0.75)]


def test_a_second_writer_in_the_same_directory_does_not_clobber_the_first(tmp_path: Path) -> None:
    # A restart within the same second: the first file must survive, the re-emitted pane
    # replaces its older copy when TensorBoard reads the run.
    first = TensorBoardWriter(tmp_path)
    first.write([PaneSignals("m", 10.0, {"f1@1h": 0.25}), PaneSignals("m", 20.0, {"f1@1h": 0.5})])
    first.close()
    second = TensorBoardWriter(tmp_path)
    second.write([PaneSignals("m", 20.0, {"f1@1h": 0.5}), PaneSignals("m", 30.0, {"f1@1h": 1.0})])
    second.close()
    assert len(list((tmp_path / "m").iterdir())) == 2
    assert _read(tmp_path / "m") == {"f1/1h": [(10, 10.0, 0.25), (20, 20.0, 0.5), (30, 30.0, 1.0)]}


def test_a_failing_directory_is_logged_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    tb = TensorBoardWriter(blocker)
    tb.write([PaneSignals("m", 10.0, {"f1@1h": 0.25})])
    assert tb.failures == 1
    tb.close()


def test_relative_tensorboard_dir_is_resolved_against_the_config(tmp_path: Path) -> None:
    path = tmp_path / "monitor.toml"
    path.write_text('[outputs]\ntensorboard_dir = "tb"\ncloudwatch = true\n\n'
                    '[[models]]\nname = "m"\ntask = "regression"\n')  # fmt: skip
    config = load_config(path)
    assert config.outputs.tensorboard_dir == str(tmp_path / "tb")
    assert config.outputs.cloudwatch and config.outputs.cloudwatch_namespace == "monitor"
    path.write_text('[outputs]\ntensorboard_dir = ""\n\n[[models]]\nname = "m"\n'
                    'task = "regression"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"outputs\.tensorboard_dir"):
        load_config(path)
