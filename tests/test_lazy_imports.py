"""``monitor run`` and ``monitor replay`` start without the heavy packages they do not use.

Plotting (plotly), TensorBoard (tensorboardX), river's example data sets (and the
scikit-learn and pandas they pull in), pyarrow and pandas load only when a command uses
them: the report, a TensorBoard export, a Parquet reference, the Python API's frames;
scipy's optimizer and sparse solver only when a reference is calibrated or a CUSUM
threshold computed, its special functions at the first drift statistic.
Each check runs in a fresh interpreter, so what earlier tests imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Packages the daemon's and the replay's start must not load.
HEAVY = ("plotly", "tensorboardX", "sklearn", "river.datasets", "pyarrow", "pandas",
         "scipy.optimize", "scipy.sparse", "scipy.special")  # fmt: skip


def _loaded_after(code: str) -> dict[str, bool]:
    report = f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    probe = f"{code}\nimport json, sys\n{report}"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["monitor.app", "monitor.replay", "monitor.cli"])
def test_importing_the_entry_points_loads_no_heavy_package(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert not any(loaded.values()), {m for m, yes in loaded.items() if yes}


def test_a_detector_and_the_deferred_data_sets_still_work_when_used() -> None:
    loaded = _loaded_after(
        "import monitor.app\n"
        "import sys\n"
        "from river.drift import KSWIN\n"
        "assert type(sys.modules['scipy.stats']).__name__ == 'Deferred'\n"
        "k = KSWIN(seed=1)\n"
        "hits = 0\n"
        "for i in range(400): k.update(float(i >= 200)); hits += k.drift_detected\n"
        "assert hits, 'KSWIN saw no drift'\n"
        "assert type(sys.modules['scipy.stats']).__name__ == 'module'\n"
        "from river.drift.datasets import AirlinePassengers\n"
        "assert AirlinePassengers.__name__ == 'AirlinePassengers'\n"
    )
    assert loaded["river.datasets"]  # loaded once asked for, not before


def test_the_probe_sees_a_heavy_import() -> None:
    assert _loaded_after("import pandas")["pandas"]


def test_a_deferred_module_runs_once_at_its_first_attribute_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor import deferred

    root = tmp_path
    (root / "deferpkg").mkdir()
    (root / "deferpkg" / "__init__.py").write_text("from . import heavy\n")
    (root / "deferpkg" / "heavy.py").write_text(
        "import sys\nsys.modules[__name__].__dict__.setdefault('runs', 0)\n"
        "runs = runs + 1\nVALUE = 42\n"
    )
    monkeypatch.syspath_prepend(str(root))
    for name in ("deferpkg", "deferpkg.heavy"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(deferred, "DEFERRED", ("deferpkg.heavy",))
    deferred.install()
    import deferpkg

    stand_in = sys.modules["deferpkg.heavy"]
    assert isinstance(stand_in, deferred.Deferred)
    assert "VALUE" not in vars(stand_in)  # the package's ``from . import heavy`` ran nothing
    assert deferpkg.heavy.VALUE == 42
    real = sys.modules["deferpkg.heavy"]
    assert real is not stand_in and real.runs == 1
    assert deferpkg.heavy.VALUE == stand_in.VALUE == 42 and real.runs == 1
