"""Reference files as pandas and Polars write them mean what the same rows mean in the stream.

The same rows are written three ways: by hand as JSON lines whose values have the types an
event would carry (the yardstick), and by pandas (``to_csv``, ``to_parquet``,
``to_json(lines=True)``) and Polars (``write_csv``, ``write_parquet``, ``write_ndjson``).
Each file goes through the real loader (``load_config`` and ``load_profile``) and the
baseline; the profile (bins, categories, counts), the baseline row (the reference
predictions and labels accumulated) and the summary's class counts must be the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.cli import main
from monitor.config import ConfigError, ModelConfig, load_config
from monitor.core.baseline import build_baseline
from monitor.core.layout import Layout
from monitor.core.reference import load_profile, output_codes
from monitor.events.codec import DecodeFailure, ModelCodec
from tests.core.test_drift import _run, _signals, _write_config

N = 400
FEATURES = ", ".join(
    f'{name} = "{kind}"'
    for name, kind in (
        ("amount", "numeric"),
        ("count", "numeric"),
        ("flag", "categorical"),
        ("city", "categorical"),
        ("zone", "categorical"),
    )
)

#: Label columns: (the model's class settings, values per row as an event would carry them).
LABELS: dict[str, tuple[str, Any]] = {
    "int": ("positive_class = 1", lambda y: int(y)),
    "int_classes": ("positive_class = 1\nclasses = [0, 1]", lambda y: int(y)),
    "bool": ("positive_class = true", lambda y: bool(y)),
    "string": ('positive_class = "yes"\nclasses = ["no", "yes"]', lambda y: "yes" if y else "no"),
}


def _rows(missing_label: bool) -> list[dict[str, Any]]:
    """Rows with a float, an int, a bool, a string and an int category, and the outputs."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(N):
        y = int(rng.random() < 0.3)
        score = float(np.round(rng.beta(2 + 3 * y, 4), 3))
        out.append(
            {
                "amount": float(np.round(rng.normal(50, 10), 2)),
                "count": int(rng.integers(0, 9)),
                "flag": bool(rng.random() < 0.4),
                "city": str(rng.choice(["Oslo", "Lima", "Pune"])),
                "zone": int(rng.integers(1, 5)),
                "score": score,
                "y": None if missing_label and i % 7 == 0 else y,
                "p": int(score > 0.5),
            }
        )
    return out


def _config(tmp: Path, reference: Path, classes: str) -> ModelConfig:
    path = tmp / "monitor.toml"
    path.write_text(
        f"""
[[models]]
name = "m"
task = "binary"
{classes}
features = {{ {FEATURES} }}
reference = "{reference.name}"
drift_bins = 8
score_bins = 100
detectors = []
"""
    )
    return load_config(path).models[0]


def _typed(rows: list[dict[str, Any]], label: Any) -> list[dict[str, Any]]:
    """The rows with the prediction and label as the model's class values."""
    return [
        {
            **{k: v for k, v in r.items() if k not in ("y", "p")},
            "prediction": label(r["p"]),
            "label": None if r["y"] is None else label(r["y"]),
        }
        for r in rows
    ]


def _fingerprint(model: ModelConfig) -> dict[str, Any]:
    profile = load_profile(model)
    assert profile is not None and profile.summary is not None
    layout = Layout("binary", 2, model.score_bins, features=model.features, profile=profile)
    baseline = build_baseline(model, layout, profile)
    assert baseline is not None
    return {
        "numeric": {
            n: (r.edges.tolist(), r.counts.tolist(), r.sums.tolist())
            for n, r in profile.numeric.items()
        },
        "categorical": {
            n: (r.categories, r.counts.tolist(), sorted(r.known))
            for n, r in profile.categorical.items()
        },
        "row": baseline.row.tolist(),
        "calibration": None if baseline.calibration is None else baseline.calibration.tolist(),
        "metrics": baseline.metrics,
        "labels": profile.summary.labels,
        "predictions": profile.summary.predictions,
        "features": profile.summary.features,
    }


def _write(frame_rows: list[dict[str, Any]], how: str, path: Path) -> Path:
    if how.startswith("pandas"):
        df = pd.DataFrame(frame_rows)
        if how == "pandas_csv":
            df.to_csv(path, index=False)
        elif how == "pandas_parquet":
            df.to_parquet(path, index=False)
        else:
            df.to_json(path, orient="records", lines=True)
        return path
    pf = pl.DataFrame(frame_rows, infer_schema_length=None)
    if how == "polars_csv":
        pf.write_csv(path)
    elif how == "polars_parquet":
        pf.write_parquet(path)
    else:
        pf.write_ndjson(path)
    return path


WRITERS = {
    "pandas_csv": "ref.csv",
    "pandas_parquet": "ref.parquet",
    "pandas_jsonl": "ref.jsonl",
    "polars_csv": "ref.csv",
    "polars_parquet": "ref.parquet",
    "polars_jsonl": "ref.jsonl",
}


@pytest.mark.parametrize("missing_label", [False, True], ids=["labelled", "some_unlabelled"])
@pytest.mark.parametrize("label_kind", sorted(LABELS))
@pytest.mark.parametrize("how", sorted(WRITERS))
def test_a_written_reference_gives_the_profile_of_the_same_rows_written_by_hand(
    tmp_path: Path, how: str, label_kind: str, missing_label: bool
) -> None:
    classes, label = LABELS[label_kind]
    rows = _typed(_rows(missing_label), label)
    hand = tmp_path / "hand.jsonl"
    hand.write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = _fingerprint(_config(tmp_path, hand, classes))
    assert sum(expected["labels"].values()) == N  # every row counted: a class or "(none)"
    assert expected["labels"].get("(none)", 0) == (N // 7 + 1 if missing_label else 0)
    written = _write(rows, how, tmp_path / WRITERS[how])
    got = _fingerprint(_config(tmp_path, written, classes))
    assert got == expected


def test_the_minimal_pandas_case_matches_stream_values(tmp_path: Path) -> None:
    """Reference labels 1.0/0.0 and a boolean category True/False (pandas' to_csv); the
    stream sends 1/0 and true/false: identical data, so no drift and the labels count."""
    rng = np.random.default_rng(9)
    n = 600
    flag = rng.random(n) < 0.5
    amount = rng.normal(0, 1, n)
    label = (rng.random(n) < 0.4).astype(float)
    label[::10] = np.nan  # a missing label turns pandas' int column into floats
    pd.DataFrame(
        {"amount": amount, "country": flag, "prediction": 1, "score": 0.5, "label": label}
    ).to_csv(tmp_path / "ref.csv", index=False)
    text = (tmp_path / "ref.csv").read_text()
    assert "1.0" in text and "True" in text  # what pandas writes
    config = _write_config(tmp_path)
    feats = [{"amount": float(a), "country": bool(f)} for a, f in zip(amount, flag, strict=True)]
    engine = _run(config, feats)
    got = _signals(engine)
    assert got["unseen_rate:country"] == 0.0
    assert got["js:country"] == pytest.approx(0.0, abs=1e-12)
    assert got["psi:country"] == pytest.approx(0.0, abs=1e-12)
    baseline = engine.models[0].baseline
    assert baseline is not None  # every reference prediction is 1: precision = label mean
    assert baseline.metrics["precision"] == pytest.approx(float(np.nanmean(label)), rel=1e-12)
    model = load_config(config).models[0]
    codes, reasons = output_codes(model, pd.read_csv(tmp_path / "ref.csv")["label"].tolist())
    assert sum(c == 1.0 for c in codes) == int(np.nansum(label))
    assert reasons == {"missing": int(np.isnan(label).sum())}


@given(
    st.one_of(
        st.integers(-3, 3),
        st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5]),
        st.booleans(),
        st.sampled_from(["1", "0", "1.0", "0.0", "True", "true", "FALSE", "yes", "2", " 1"]),
    )
)
def test_the_codec_and_the_reference_read_a_class_value_alike(value: Any) -> None:
    """What a value means as a stream label is what it means as a reference label, and
    what pandas writes for it in a CSV (``str``) means the same again."""
    for settings in (
        {"positive_class": 1},
        {"positive_class": 1, "classes": [0, 1]},
        {"positive_class": "True", "classes": ["False", "True"]},
    ):
        model = ModelConfig(name="m", task="binary", **settings)  # type: ignore[arg-type]
        codec = ModelCodec(model)
        try:
            stream: float | None = codec.code(value, "label")
        except DecodeFailure:
            stream = None
        assert output_codes(model, [value])[0] == [stream]
        assert output_codes(model, [str(value)])[0] == [stream]


def test_check_config_prints_the_reference_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _typed(_rows(True), LABELS["int"][1])
    rows[0]["amount"] = None
    rows[1]["amount"] = "n/a"
    rows[2]["amount"] = "twelve"
    rows[3]["prediction"] = None
    pd.DataFrame(rows).to_csv(tmp_path / "ref.csv", index=False)
    _config(tmp_path, tmp_path / "ref.csv", LABELS["int_classes"][0])
    assert main(["check-config", str(tmp_path / "monitor.toml")]) == 0
    out = capsys.readouterr().out
    labels = [r["label"] for r in rows]
    ones, zeros = labels.count(1), labels.count(0)
    assert f"{N} rows" in out
    assert "feature amount: 397 values (missing 2, type_mismatch 1)" in out
    assert f"labels: 0 = {zeros}, 1 = {ones}, (none) = {labels.count(None)}" in out
    assert "unusable: prediction: missing 1" in out


def test_a_label_column_with_no_usable_label_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _typed(_rows(False), lambda y: "cat" if y else "dog")
    for r in rows:
        r["prediction"] = 1
    pd.DataFrame(rows).to_csv(tmp_path / "ref.csv", index=False)
    model = tmp_path / "monitor.toml"
    with pytest.raises(ConfigError, match="no usable label"):
        _config(tmp_path, tmp_path / "ref.csv", LABELS["int_classes"][0])
    assert main(["check-config", str(model)]) == 2
    err = capsys.readouterr()
    assert "column 'label': no usable label in 400 rows (unknown_class 400)" in err.err + err.out
    # without label metrics the same file is fine: its features and predictions are used
    model.write_text(model.read_text().replace("detectors = []", "detectors = []\nmetrics = []"))
    assert main(["check-config", str(model)]) == 0


def test_integer_categories_written_as_floats_match_stream_integers(tmp_path: Path) -> None:
    """An integer category column with a missing value is written by pandas as floats
    (``3.0``); the stream sends ``3`` (which the JSON decoder reads as a float too): the
    same category, while ``3.5`` stays a type mismatch in both."""
    rng = np.random.default_rng(4)
    n = 500
    zone = rng.integers(1, 4, n).astype(float)
    zone[::25] = np.nan
    amount = rng.normal(0, 1, n)
    frame = pd.DataFrame({"amount": amount, "country": zone, "prediction": 1, "score": 0.5})
    frame.to_csv(tmp_path / "ref.csv", index=False)
    assert "3.0" in (tmp_path / "ref.csv").read_text()
    feats: list[dict[str, Any]] = [
        {"amount": float(a), "country": None if np.isnan(z) else int(z)}
        for a, z in zip(amount, zone, strict=True)
    ]
    feats[1]["country"] = 3.5
    engine = _run(_write_config(tmp_path), feats)
    got = _signals(engine)
    assert got["unseen_rate:country"] == 0.0
    assert got["type_mismatch_rate:country"] == 1 / n
    assert got["missing_rate:country"] == np.isnan(zone).sum() / n
    profile = engine.models[0].profile
    assert profile is not None and profile.summary is not None
    assert profile.summary.features["country"] == {
        "values": int((~np.isnan(zone)).sum()),
        "missing": int(np.isnan(zone).sum()),
        "type_mismatch": 0,
        "non_finite": 0,
    }
    assert set(profile.categorical["country"].categories) == {"1", "2", "3"}
