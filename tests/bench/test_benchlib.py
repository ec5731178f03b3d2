"""The benchmark helpers: the profiler's stage split, the synthetic streams, the README
writer. (Benchmarks measure; nothing here times anything.)"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402
import run_all  # noqa: E402
import scaling  # noqa: E402

from monitor.core.pipeline import Pipeline  # noqa: E402

ENGINE = str(BENCH.parent / "monitor" / "core" / "engine.py")
JOIN = str(BENCH.parent / "monitor" / "core" / "join.py")


class FakeStats:
    """What ``stage_split`` reads of ``pstats.Stats``: ``stats[func] = (cc, nc, tt, ct,
    callers)`` with ``callers[caller] = (cc, nc, tt, ct)`` of that call edge."""

    def __init__(self, stats: dict[Any, Any]) -> None:
        self.stats = stats


def test_library_time_is_charged_to_callers_in_proportion() -> None:
    on_prediction = (ENGINE, 423, "process")
    scatter = (ENGINE, 640, "_scatter")
    helper = ("/site-packages/numpy/core.py", 10, "helper")  # library, called by both
    builtin = ("~", 0, "<built-in method numpy.add>")  # called by the library helper
    pending = (JOIN, 50, "take")
    stats = FakeStats({
        on_prediction: (1, 1, 1.0, 9.0, {}),
        scatter: (1, 1, 0.5, 3.0, {}),
        helper: (3, 3, 3.0, 6.0, {on_prediction: (2, 2, 2.0, 4.0), scatter: (1, 1, 1.0, 2.0)}),
        builtin: (3, 3, 3.0, 3.0, {helper: (3, 3, 3.0, 3.0)}),
        pending: (1, 1, 0.25, 0.25, {on_prediction: (1, 1, 0.25, 0.25)}),
    })
    split = benchlib.stage_split(stats)  # type: ignore[arg-type]
    # decode: 1.0 own + 2/3 of helper (3.0) + 2/3 of builtin (3.0) = 5.0
    assert split["decode"] == pytest.approx(5.0)
    # accumulate: 0.5 own + 1/3 of 3.0 + 1/3 of 3.0 = 2.5
    assert split["accumulate"] == pytest.approx(2.5)
    assert split["join"] == pytest.approx(0.25)  # by module, whoever calls it
    assert sum(split.values()) == pytest.approx(1.0 + 0.5 + 3.0 + 3.0 + 0.25)


def test_mutual_recursion_goes_to_the_stage_that_entered_it() -> None:
    close = (ENGINE, 697, "close_through")
    a = ("/lib/a.py", 1, "a")
    b = ("/lib/b.py", 1, "b")
    stats = FakeStats({
        close: (1, 1, 0.1, 1.0, {}),
        a: (2, 2, 0.4, 0.9, {close: (1, 1, 0.2, 0.5), b: (1, 1, 0.2, 0.4)}),
        b: (1, 1, 0.5, 0.5, {a: (1, 1, 0.5, 0.5)}),
    })
    split = benchlib.stage_split(stats)  # type: ignore[arg-type]
    # a and b call each other (as deepcopy and _reconstruct do); the recursion enters only
    # from close_through, so all of it is that stage's
    assert split["pane close"] == pytest.approx(1.0)
    assert split["other"] == 0


def test_real_profile_of_the_engine_names_the_core_stages() -> None:
    cfg = benchlib.config(1, lateness="10s")
    engine = Pipeline(cfg)
    engine.track(benchlib.all_partitions())
    polls = benchlib.batches(benchlib.stream(3_000, rate=100.0), 1_000)

    def feed() -> None:
        for batch in polls:
            engine.process(batch)

    split, _ = benchlib.profile_stages(feed)
    for stage in ("decode", "join", "accumulate", "pane close", "signals"):
        assert split[stage] > 0, (stage, split)


def test_stream_is_in_event_time_order_with_the_share_of_labels() -> None:
    messages = list(benchlib.stream(2_000, models=3, label_share=0.5, max_delay=5.0))
    predictions = [m for m in messages if m.topic == "predictions"]
    labels = [m for m in messages if m.topic == "labels"]
    assert len(predictions) == 2_000
    assert 850 < len(labels) < 1_150
    assert {m.partition for m in messages} == set(range(benchlib.PARTITIONS))
    for topic in ("predictions", "labels"):
        for p in range(benchlib.PARTITIONS):
            offs = [m.offset for m in messages if m.topic == topic and m.partition == p]
            assert offs == list(range(len(offs)))
    cfg = benchlib.config(3)
    engine = Pipeline(cfg)
    engine.track(benchlib.all_partitions())
    assert engine.process(messages) == []  # every message is a valid event
    assert sum(engine.summary()["models"][f"m{i}"]["counts"]["matched"] for i in range(3)) \
        == len(labels)


def test_scaling_grid_varies_one_axis_at_a_time() -> None:
    points = scaling.grid()
    assert points[0] == scaling.BASE
    assert len(points) == len(set(points)) == 9
    for p in points:
        assert sum(a != b for a, b in zip(p, scaling.BASE, strict=True)) <= 1


def test_readme_summary_and_sections(tmp_path: Path) -> None:
    sections = {"memory": "### Memory\n\ntarget <= 150 B: **NOT met**\n",
                "scrape": "### Scrape\n\nno target line here\n"}
    text = run_all.summary(sections)
    assert "| memory | target <= 150 B: **NOT met** |" in text
    assert "scrape" not in text
    readme = "".join(f"<!-- bench:{n} -->\n{t}<!-- /bench:{n} -->\n" for n, t in
                     sections.items())
    found = {m.group(1): m.group(2) for m in run_all._SECTION.finditer(readme)}
    assert found == sections


def test_alternate_runs_each_pair_back_to_back_and_the_median_pair_is_the_middle_ratio() -> None:
    calls: list[str] = []

    def run(i: int) -> int:
        calls.append(f"run{i}")
        return i

    pairs = benchlib.alternate(3, lambda: calls.append("base"), run)
    assert calls == ["base", "run0", "base", "run1", "base", "run2"]
    assert [p.result for p in pairs] == [0, 1, 2]
    made = [benchlib.Pair(1.0, 1.0, run, run, run) for run in (2.0, 4.0, 1.0, 5.0)]
    assert benchlib.median_pair(made[:3]).result == 2.0  # ratios 0.5, 0.25, 1.0
    assert benchlib.median_pair(made).result == 4.0  # the lower middle of 0.2, 0.25, 0.5, 1.0
    assert "median 0.250" in benchlib.pairs_line(made)
