"""``monitor run`` and ``monitor replay`` start without the heavy packages they do not use.

Plotting (plotly), TensorBoard (tensorboardX), river's example data sets (and the
scikit-learn and pandas they pull in), pyarrow and pandas load only when a command uses
them: the report, a TensorBoard export, a Parquet reference, the Python API's frames;
scipy's optimizer only when a reference is calibrated. Drift statistics and a CUSUM's
threshold load none of scipy's modules (a fifth of a short replay's time went to loading
its special functions and sparse solver).
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
         "scipy.optimize", "scipy.sparse", "scipy.special", "scipy.linalg")  # fmt: skip


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


#: A pipeline whose pane closes compute drift statistics (numeric and categorical, from a
#: warmup reference) and whose CUSUM leaves its warmup and computes its threshold.
_DRIFT_AND_CUSUM = """
import json
import random
import monitor.replay
from monitor.config import config_from_mapping
from monitor.core.pipeline import Pipeline
from monitor.events.message import Message
cfg = config_from_mapping({"time": {"pane": "10s", "allowed_lateness": "0s"}, "models": [{
    "name": "m", "task": "binary", "positive_class": 1, "windows": ["all"],
    "features": {"x": "numeric", "c": "categorical"}, "reference_warmup": 300,
    "drift_min_samples": 50, "detectors": ["adwin", {"name": "cusum", "warmup": 200}]}]})
engine = Pipeline(cfg)
engine.track([("predictions", 0)])
rng = random.Random(0)
batch = []
for i in range(3000):
    event = {"prediction_id": f"p{i}", "model": "m", "ts": 1.7e9 + i * 0.1, "prediction": 1,
             "label": int(rng.random() < 0.8),
             "features": {"x": rng.gauss(i / 1000, 1), "c": rng.choice("abc")}}
    batch.append(Message("predictions", 0, i, None, json.dumps(event).encode()))
engine.process(batch)
signals = engine.drain_signals() + engine.flushed(keep_signals=True).drain_signals()
names = set().union(*(s.signals for s in signals))
assert "chi2:x@all" in names and "chi2:c@all" in names, sorted(names)[:20]
assert any(0 <= s.signals.get("chi2:x@all", -1) <= 1 for s in signals)
from monitor.core.detectors import calibrate_cusum
assert calibrate_cusum.cache_info().currsize == 1  # the CUSUM left its warmup
"""


def test_drift_statistics_and_a_cusum_threshold_load_no_scipy_module() -> None:
    loaded = _loaded_after(_DRIFT_AND_CUSUM)
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
