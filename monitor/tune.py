"""``monitor tune``: grid search of detector and alert-rule settings, scored on replays.

How a search runs:

1. The capture is decoded once into :class:`~monitor.events.message.Message` objects
   (``monitor.replay``'s loader), kept in this process and shared with the workers by
   ``fork`` (copy-on-write).
2. Settings that differ only in their alert rules make the same engine state (rules read
   the signals, they never feed back), so settings are grouped by their config less the
   rules. Each group replays the capture once through the engine, recording at every pane
   close the signals its rules read; groups run in parallel (``--jobs`` processes).
3. Every setting's rules are then evaluated on its group's recorded panes, as
   ``monitor replay`` would evaluate them (same alerts, same ``alert_id``), again in
   parallel. A full replay per setting would give the same alerts, only slower.
4. Each setting is scored against the known incidents per time fold; see :func:`score`.

Scoring. An incident ``(model, start, end)`` is *detected* when a firing alert of that
model is raised (the pane end at which it went to ``firing``, i.e. after its ``for``)
within ``[start, end + grace]``; its *delay* is the first such raise minus ``start``, in
event-time seconds and in the model's predictions in between. The raise time is used, not
``starts_at`` (when the condition began to hold): ``starts_at`` would hide what a longer
``for`` costs. A *false alert* is a firing whose span ``[starts_at, ends_at]`` (open spans
end with the data) overlaps no incident window of its model; false alerts per day are
counted over the event time a fold covers.

Ranking (lexicographic, best first): fewest missed incidents; then the false alerts per
day above the ``--max-false-per-day`` budget (0 when within it); then the median delay;
then false alerts per day; then the mean delay; then grid order.

Cross-validation: the capture's event-time span is cut into ``--folds`` contiguous folds;
for each fold ``i >= 1`` the best setting on folds ``0..i-1`` is chosen and scored on
fold ``i`` (forward chaining, so the score is out of fold); the recommended setting is the
best on all folds. The Pareto front is the settings that no other setting beats on missed
incidents, median delay and false alerts per day at once (missed counts so that a
setting cannot reach the front by staying silent on the hard incidents).
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from monitor.config import MonitorConfig
from monitor.core.pipeline import Pipeline
from monitor.core.rules import ModelRules, RuleBook
from monitor.events.message import Message
from monitor.replay import capture_partitions, iter_capture, poll_size
from monitor.tui import ProgressBars
from monitor.tune_grid import Setting, setting_label

__all__ = [
    "Firing",
    "Incident",
    "IncidentError",
    "Score",
    "TuneResult",
    "load_incidents",
    "run_settings",
    "score",
    "tune",
]

DAY = 86_400.0

_Pane = tuple[str, float, dict[str, float], float]  # model, pane end, signals, predictions
# The decoded capture and the recorded panes, set before the worker pools fork.
_MESSAGES: list[Message] = []
_PARTITIONS: list[tuple[str, int]] = []
_PANES: dict[str, list[_Pane]] = {}


class IncidentError(Exception):
    """An incidents file that cannot be used; ``problems`` names the file and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True, slots=True)
class Incident:
    """A known incident of a model, in event time (Unix seconds)."""

    model: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Firing:
    """One firing alert: raised at the pane end ``raised``; ``ends_at`` None while open."""

    model: str
    rule: str
    starts_at: float
    raised: float
    ends_at: float | None


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def load_incidents(path: str | os.PathLike[str], models: Sequence[str]) -> list[Incident]:
    """Incidents from CSV (header ``model,start,end``) or JSON lines (``{"model": ...,
    "start": ..., "end": ...}``); times ISO-8601 (UTC unless an offset is given) or Unix
    seconds. Raise IncidentError naming the file and line of every bad record."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise IncidentError([f"{name}: cannot read: {exc}"]) from None
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    if text.lstrip().startswith("{"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{name}:{number}: not JSON: {exc.msg}")
                continue
            if not isinstance(record, dict):
                problems.append(f"{name}:{number}: expected an object with model, start, end")
                continue
            rows.append((number, record))
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = {"model", "start", "end"} - set(reader.fieldnames or [])
        if missing:
            raise IncidentError([f"{name}:1: the header lacks {sorted(missing)}"])
        rows = [(n, dict(r)) for n, r in enumerate(reader, start=2)]
    incidents: list[Incident] = []
    for number, record in rows:
        try:
            model = record["model"]
            start, end = _time(str(record["start"])), _time(str(record["end"]))
        except KeyError as exc:
            problems.append(f"{name}:{number}: missing {exc.args[0]!r}")
            continue
        except ValueError as exc:
            problems.append(f"{name}:{number}: bad time: {exc}")
            continue
        if model not in models:
            problems.append(f"{name}:{number}: unknown model {model!r}; models: {list(models)}")
        elif not (math.isfinite(start) and math.isfinite(end)) or end < start:
            problems.append(f"{name}:{number}: end must not be before start")
        else:
            incidents.append(Incident(str(model), start, end))
    if problems:
        raise IncidentError(problems)
    if not incidents:
        raise IncidentError([f"{name}: no incidents"])
    return sorted(incidents, key=lambda i: (i.start, i.model))


# ---------------------------------------------------------------------------- replays


#: The signal that gives a pane's prediction count (what absence rules and the delays in
#: predictions read): the cumulative window's count is the predictions of every closed pane.
_SEEN = "prediction_count@all"


def _recording_config(config: MonitorConfig) -> MonitorConfig:
    """``config`` without alert rules, each model with an ``all`` window (for :data:`_SEEN`;
    a window adds signals of its own and changes no other)."""
    models = [
        m.model_copy(update={
            "alerts": [], "windows": m.windows if "all" in m.windows else [*m.windows, "all"],
        })
        for m in config.models
    ]
    return config.model_copy(update={"models": models})


def _record(engine: Pipeline, keep: dict[str, set[str]], panes: list[_Pane]) -> None:
    """Append to ``panes`` the panes ``engine`` closed since the last drain: per pane, the
    signals of ``keep`` and the model's predictions in closed panes so far (the count
    alert rules are evaluated with)."""
    for pane in engine.drain_signals():
        wanted = keep.get(pane.model, set())
        picked = {k: v for k, v in pane.signals.items() if k in wanted}
        panes.append((pane.model, pane.pane_end, picked, pane.signals[_SEEN]))


def _engine_key(config: MonitorConfig) -> str:
    """Settings with the same key make the same engine state (the config less the rules)."""
    bare = config.model_copy(
        update={"models": [m.model_copy(update={"alerts": []}) for m in config.models]}
    )
    return bare.model_dump_json()


def _signals_read(config: MonitorConfig) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for model in config.models:
        rules = ModelRules(model, config.time.pane)
        wanted = out.setdefault(model.name, set())
        for rule in rules.rules.values():
            wanted.add(rule.signal)
            if rule.samples_signal:
                wanted.add(rule.samples_signal)
    return out


def _replay_group(task: tuple[str, MonitorConfig, dict[str, set[str]]]) -> tuple[str, list[_Pane]]:
    """Replay the shared capture once for one engine group; its recorded panes."""
    key, config, keep = task
    engine = Pipeline(_recording_config(config))
    engine.track(_PARTITIONS)
    panes: list[_Pane] = []
    size = poll_size(config)  # (polls as a replay's)
    for i in range(0, len(_MESSAGES), size):
        engine.process(_MESSAGES[i : i + size])
        _record(engine, keep, panes)
    engine.flush(keep_signals=True)
    _record(engine, keep, panes)
    return key, panes


def _evaluate(task: tuple[str, MonitorConfig]) -> list[Firing]:
    """A setting's firings: its rules over its group's recorded panes."""
    key, config = task
    book = RuleBook(config)
    firings: dict[str, Firing] = {}
    for model, end, signals, seen in _PANES[key]:
        for event in book.evaluate(model, end, signals, seen):
            if event.status == "firing":
                firings[event.alert_id] = Firing(
                    event.model, event.rule, event.starts_at, event.ts, None
                )
            elif event.alert_id in firings:
                old = firings[event.alert_id]
                firings[event.alert_id] = Firing(
                    old.model, old.rule, old.starts_at, old.raised, event.ends_at
                )
    return sorted(firings.values(), key=lambda f: (f.raised, f.model, f.rule))


def _pool(jobs: int, tasks: int) -> ProcessPoolExecutor | None:
    workers = min(jobs, tasks)
    if workers <= 1:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


@dataclass
class Replayed:
    """Every setting's firings, the event-time timeline and how long each stage took."""

    firings: list[list[Firing]]
    timeline: dict[str, tuple[np.ndarray, np.ndarray]]  # model -> (pane ends, predictions)
    span: tuple[float, float]
    groups: int
    messages: int
    decode_s: float
    replay_s: float
    rules_s: float


def run_settings(
    captures: list[str], settings: list[Setting], jobs: int = 1,
    progress: ProgressBars | None = None,
) -> Replayed:
    """Decode ``captures`` once, replay once per engine group, evaluate every setting's
    rules; serial when ``jobs`` is 1, else ``jobs`` forked worker processes. With
    ``progress``, bars count the replays and the settings done."""
    global _MESSAGES, _PARTITIONS, _PANES
    started = time.perf_counter()
    config = settings[0].config
    inputs = {config.kafka.predictions_topic, config.kafka.labels_topic}
    bad: dict[str, int] = {}
    _MESSAGES = list(iter_capture(captures, bad))
    _PARTITIONS = sorted(tp for tp in capture_partitions(captures) if tp[0] in inputs)
    decoded = time.perf_counter()
    groups: dict[str, tuple[MonitorConfig, dict[str, set[str]]]] = {}
    keys = []
    for setting in settings:
        key = _engine_key(setting.config)
        keys.append(key)
        _, keep = groups.setdefault(key, (setting.config, {}))
        for model, names in _signals_read(setting.config).items():
            keep.setdefault(model, set()).update(names)
    tasks = [(key, cfg, keep) for key, (cfg, keep) in groups.items()]
    try:
        bars = progress if progress is not None else ProgressBars(None)
        replays = bars.add("replays", total=len(tasks), unit="replays")
        pool = _pool(jobs, len(tasks))
        results = []
        if pool is None:
            for t in tasks:
                results.append(_replay_group(t))
                bars.advance(replays)
        else:
            with pool:
                for result in pool.map(_replay_group, tasks):
                    results.append(result)
                    bars.advance(replays)
        _PANES = dict(results)
        replayed = time.perf_counter()
        rule_tasks = [(key, s.config) for key, s in zip(keys, settings, strict=True)]
        evaluated = bars.add("settings", total=len(rule_tasks), unit="settings")
        pool = _pool(jobs, len(rule_tasks))
        firings = []
        if pool is None:
            for rule_task in rule_tasks:
                firings.append(_evaluate(rule_task))
                bars.advance(evaluated)
        else:
            chunk = max(1, len(rule_tasks) // (4 * jobs))
            with pool:
                for found in pool.map(_evaluate, rule_tasks, chunksize=chunk):
                    firings.append(found)
                    bars.advance(evaluated)
        panes = results[0][1]
    finally:
        n_messages = len(_MESSAGES)
        _MESSAGES, _PANES = [], {}
    done = time.perf_counter()
    timeline: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for watched in config.models:
        mine = [(end, seen) for name, end, _, seen in panes if name == watched.name]
        arr = np.array(mine, dtype=float).reshape(-1, 2)
        timeline[watched.name] = (arr[:, 0], arr[:, 1])
    ends = [end for _, end, _, _ in panes]
    span = (min(ends) - config.time.pane, max(ends)) if ends else (0.0, 0.0)
    return Replayed(
        firings, timeline, span, len(tasks), n_messages,
        decoded - started, replayed - decoded, done - replayed,
    )


# ---------------------------------------------------------------------------- scoring


@dataclass
class Score:
    """A setting's result over some event time: incidents, misses, false alerts, delays."""

    incidents: int = 0
    missed: int = 0
    false_alerts: int = 0
    days: float = 0.0
    delays_s: list[float] = field(default_factory=list)
    delays_events: list[float] = field(default_factory=list)
    #: rule -> false alerts it raised; rule -> incidents it was the first to detect
    false_by_rule: Counter[str] = field(default_factory=Counter)
    first_by_rule: Counter[str] = field(default_factory=Counter)

    def __add__(self, other: Score) -> Score:
        return Score(
            self.incidents + other.incidents,
            self.missed + other.missed,
            self.false_alerts + other.false_alerts,
            self.days + other.days,
            self.delays_s + other.delays_s,
            self.delays_events + other.delays_events,
            self.false_by_rule + other.false_by_rule,
            self.first_by_rule + other.first_by_rule,
        )

    @property
    def false_per_day(self) -> float:
        """False alerts per day of event time."""
        return self.false_alerts / self.days if self.days > 0 else 0.0

    @property
    def median_delay_s(self) -> float:
        """Median detection delay in event-time seconds (NaN when nothing was detected)."""
        return statistics.median(self.delays_s) if self.delays_s else math.nan

    @property
    def median_delay_events(self) -> float:
        """Median detection delay in the model's predictions (NaN when nothing detected)."""
        return statistics.median(self.delays_events) if self.delays_events else math.nan

    def rank_key(self, budget: float) -> tuple[float, float, float, float, float]:
        """Smaller is better; see the module docstring."""
        delay = self.median_delay_s
        return (
            float(self.missed),
            max(0.0, self.false_per_day - budget),
            math.inf if math.isnan(delay) else delay,
            self.false_per_day,
            statistics.fmean(self.delays_s) if self.delays_s else math.inf,
        )

    def as_json(self) -> dict[str, Any]:
        """The score as plain JSON (NaN as null)."""
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {
            "incidents": self.incidents,
            "missed": self.missed,
            "false_alerts": self.false_alerts,
            "days": round(self.days, 6),
            "false_per_day": round(self.false_per_day, 6),
            "median_delay_s": clean(self.median_delay_s),
            "median_delay_events": clean(self.median_delay_events),
            "delays_s": self.delays_s,
            "delays_events": self.delays_events,
            "false_by_rule": dict(sorted(self.false_by_rule.items())),
            "first_by_rule": dict(sorted(self.first_by_rule.items())),
        }


def _seen_at(timeline: tuple[np.ndarray, np.ndarray], t: float) -> float:
    ends, seen = timeline
    i = int(np.searchsorted(ends, t, side="right")) - 1
    return float(seen[i]) if i >= 0 else 0.0


def score(
    firings: list[Firing],
    incidents: list[Incident],
    lo: float,
    hi: float,
    grace: float = 0.0,
    timeline: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    end_of_data: float = math.inf,
    last: bool = False,
) -> Score:
    """Score firings on the fold ``[lo, hi)`` (``[lo, hi]`` when ``last``): incidents
    starting in it, false alerts raised in it; see the module docstring."""

    def inside(t: float) -> bool:
        return lo <= t < hi or (last and t == hi)

    result = Score(days=(hi - lo) / DAY)
    for incident in incidents:
        if not inside(incident.start):
            continue
        result.incidents += 1
        raised = [
            (f.raised, f.rule) for f in firings
            if f.model == incident.model and incident.start <= f.raised <= incident.end + grace
        ]
        if not raised:
            result.missed += 1
            continue
        first, rule = min(raised)
        result.first_by_rule[rule] += 1
        result.delays_s.append(first - incident.start)
        if timeline is not None and incident.model in timeline:
            line = timeline[incident.model]
            result.delays_events.append(
                _seen_at(line, first) - _seen_at(line, incident.start)
            )
    for f in firings:
        if not inside(f.raised):
            continue
        ends = f.ends_at if f.ends_at is not None else end_of_data
        if not any(
            i.model == f.model and f.starts_at <= i.end + grace and ends >= i.start
            for i in incidents
        ):
            result.false_alerts += 1
            result.false_by_rule[f.rule] += 1
    return result


# ---------------------------------------------------------------------------- the search


@dataclass
class TuneResult:
    """Everything ``monitor tune`` reports; :meth:`as_json` is ``tune.json``."""

    settings: list[Setting]
    folds: list[tuple[float, float]]
    fold_scores: list[list[Score]]  # [setting][fold]
    totals: list[Score]
    order: list[int]  # setting indexes, best first
    pareto: list[int]
    cv: list[dict[str, Any]]
    out_of_fold: Score
    winner: int
    replayed: Replayed
    runtime_s: float
    budget: float

    def row(self, index: int) -> dict[str, Any]:
        """One line of the ranked table (``tune.csv``)."""
        total = self.totals[index]
        return {
            "rank": self.order.index(index) + 1,
            "setting": index,
            **{k: _show(v) for k, v in setting_label(self.settings[index]).items()},
            "incidents": total.incidents,
            "missed": total.missed,
            "false_alerts": total.false_alerts,
            "false_per_day": round(total.false_per_day, 3),
            "median_delay_s": _num(total.median_delay_s),
            "median_delay_events": _num(total.median_delay_events),
            "pareto": index in self.pareto,
            "false_by_rule": " ".join(f"{k}:{v}" for k, v in sorted(total.false_by_rule.items())),
        }

    def as_json(self) -> dict[str, Any]:
        """The whole result as plain JSON."""
        return {
            "settings": len(self.settings),
            "engine_groups": self.replayed.groups,
            "messages": self.replayed.messages,
            "runtime_s": round(self.runtime_s, 3),
            "stages_s": {
                "decode": round(self.replayed.decode_s, 3),
                "replay": round(self.replayed.replay_s, 3),
                "rules": round(self.replayed.rules_s, 3),
            },
            "max_false_per_day": self.budget,
            "folds": [{"start": a, "end": b} for a, b in self.folds],
            "ranked": [
                {
                    **self.row(i),
                    "values": dict(self.settings[i].values),
                    "folds": [s.as_json() for s in self.fold_scores[i]],
                    "total": self.totals[i].as_json(),
                }
                for i in self.order
            ],
            "pareto": self.pareto,
            "cross_validation": self.cv,
            "out_of_fold": self.out_of_fold.as_json(),
            "winner": {"setting": self.winner, "values": dict(self.settings[self.winner].values)},
        }


def _show(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str | int | bool) else json.dumps(value)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 1)


def _best(scores: list[Score], budget: float) -> int:
    return min(range(len(scores)), key=lambda i: (*scores[i].rank_key(budget), i))


def pareto_front(scores: list[Score]) -> list[int]:
    """Settings no other setting beats on (missed, median delay, false alerts/day)."""
    points = []
    for s in scores:
        delay = s.median_delay_s
        points.append((s.missed, math.inf if math.isnan(delay) else delay, s.false_per_day))
    front = []
    for i, p in enumerate(points):
        dominated = any(
            all(a <= b for a, b in zip(q, p, strict=True)) and q != p for q in points
        )
        if not dominated:
            front.append(i)
    return front


def tune(
    captures: list[str],
    settings: list[Setting],
    incidents: list[Incident],
    folds: int = 3,
    jobs: int = 1,
    grace: float = 0.0,
    max_false_per_day: float = 1.0,
    progress: ProgressBars | None = None,
) -> TuneResult:
    """Replay, score per fold, cross-validate and rank ``settings``; see the module docs."""
    started = time.perf_counter()
    replayed = run_settings(captures, settings, jobs, progress)
    if not replayed.timeline or all(len(t[0]) == 0 for t in replayed.timeline.values()):
        raise ValueError("the capture closed no pane (no usable prediction or label events)")
    lo, hi = replayed.span
    edges = np.linspace(lo, hi, folds + 1)
    fold_spans = [(float(edges[i]), float(edges[i + 1])) for i in range(folds)]
    fold_scores = [
        [
            score(
                firings, incidents, a, b, grace, replayed.timeline, hi, last=(k == folds - 1)
            )
            for k, (a, b) in enumerate(fold_spans)
        ]
        for firings in replayed.firings
    ]
    totals = [sum(per_fold[1:], per_fold[0]) for per_fold in fold_scores]
    order = sorted(range(len(settings)), key=lambda i: (*totals[i].rank_key(max_false_per_day), i))
    cv = []
    out_of_fold = Score()
    for k in range(1, folds):
        train = [sum(s[1:k], s[0]) for s in fold_scores]
        chosen = _best(train, max_false_per_day)
        in_fold = _best([s[k] for s in fold_scores], max_false_per_day)
        held_out = fold_scores[chosen][k]
        out_of_fold = out_of_fold + held_out
        cv.append(
            {
                "fold": k,
                "start": fold_spans[k][0],
                "end": fold_spans[k][1],
                "chosen_on_folds": list(range(k)),
                "chosen": chosen,
                "score": held_out.as_json(),
                "best_in_fold": in_fold,
                "best_in_fold_score": fold_scores[in_fold][k].as_json(),
            }
        )
    return TuneResult(
        settings, fold_spans, fold_scores, totals, order, pareto_front(totals), cv,
        out_of_fold, order[0], replayed, time.perf_counter() - started, max_false_per_day,
    )


# ---------------------------------------------------------------------------- outputs


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


_DURATION_KEYS = ("for", "resolve_for", "cooldown", "half_life", "label_ttl")


def _duration_text(seconds: float) -> str:
    """Durations in the fragment as the config is written.

    >>> _duration_text(300.0), _duration_text(90.0), _duration_text(0.0)
    ('5m', '90s', '0s')
    """
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _durations(table: dict[str, Any]) -> dict[str, Any]:
    out = dict(table)
    for key in _DURATION_KEYS:
        if isinstance(out.get(key), float):
            out[key] = _duration_text(out[key])
    if isinstance(out.get("alerts"), list):
        out["alerts"] = [_durations(rule) for rule in out["alerts"]]
    return out


def _value_text(path: str, value: Any) -> str:
    """A tuned value as the config writes it: durations as ``"5m"``, the rest as TOML/JSON.

    >>> _value_text("models.m.alerts.acc.for", 0.0), _value_text("models.m.alerts.a.k", 3)
    ('"0s"', '3')
    """
    if path.rpartition(".")[2] in _DURATION_KEYS and isinstance(value, int | float):
        return json.dumps(_duration_text(float(value)))
    return json.dumps(value)


def _delay_text(seconds: float | None) -> str:
    """A median delay for people: ``"180 s"``, or ``"n/a"`` when nothing was detected."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    return f"{seconds:g} s"


def _raw_references(config_path: str | os.PathLike[str] | None) -> dict[str, str]:
    """``{model: reference}`` as written in the config file (the loader makes relative
    paths absolute; the fragment is pasted back into the same file, so it keeps them as
    written)."""
    if config_path is None:
        return {}
    try:
        with open(config_path, "rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return {
        str(m.get("name")): m["reference"]
        for m in raw.get("models", [])
        if isinstance(m, dict) and isinstance(m.get("reference"), str)
    }


def winner_toml(result: TuneResult, config_path: str | os.PathLike[str] | None = None) -> str:
    """The winning setting's tuned models as ``[[models]]`` tables, ready to paste over the
    same models' tables of the config (non-default keys only). With ``config_path``, a
    model's ``reference`` is written as that file has it (relative paths stay relative)."""
    setting = result.settings[result.winner]
    written = _raw_references(config_path)
    touched = {
        m.name for m in setting.config.models
        for path, _ in setting.values if path.startswith(f"models.{m.name}.")
    }
    models = [
        _durations(_strip_none(m.model_dump(by_alias=True, exclude_defaults=True)))
        for m in setting.config.models if m.name in touched
    ]
    for table in models:
        if table.get("name") in written and "reference" in table:
            table["reference"] = written[table["name"]]
        if "reference" in table and table.get("reference_warmup") == 0:
            del table["reference_warmup"]  # implied by the file
    lines = [f"# monitor tune: setting {setting.index}, best of {len(result.settings)}"]
    lines += [f"#   {path} = {_value_text(path, value)}" for path, value in setting.values]
    lines.append("# Replace these models' [[models]] tables in the config with:")
    return "\n".join(lines) + "\n" + tomli_w.dumps({"models": models})


def write_outputs(result: TuneResult, out_dir: str | os.PathLike[str],
                  config_path: str | os.PathLike[str] | None = None) -> None:
    """``tune.json``, ``tune.csv`` (ranked) and ``winner.toml`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.json").write_text(
        json.dumps(result.as_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    rows = [result.row(i) for i in result.order]
    with open(out / "tune.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "winner.toml").write_text(winner_toml(result, config_path), encoding="utf-8")


def _fmt_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


_SHORT = {
    "incidents": "inc",
    "false_alerts": "false",
    "false_per_day": "false\n/day",
    "median_delay_s": "median\ndelay s",
    "median_delay_events": "median\ndelay ev",
    "false_by_rule": "false by rule",
}


def print_result(result: TuneResult, top: int = 20,
                 config_path: str | os.PathLike[str] | None = None) -> None:
    """The ranked table, the Pareto front, the cross-validation and the winner, with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 180)
    rows = [result.row(i) for i in result.order]
    table = Table(title=f"monitor tune: {len(rows)} settings (top {min(top, len(rows))})")
    for name in rows[0]:
        shown = _SHORT.get(name) or name.removeprefix("alerts.").replace(".", "\n")
        table.add_column(shown, justify="right", no_wrap=name == "false_by_rule")
    for row in rows[:top]:
        table.add_row(*("*" if v is True else "" if v is False or v is None else str(v)
                        for v in row.values()))
    console.print(table)
    points: dict[tuple[int, float | None, float], list[int]] = {}
    for i in sorted(result.pareto, key=lambda i: result.order.index(i)):
        total = result.totals[i]
        point = (total.missed, _num(total.median_delay_s), round(total.false_per_day, 2))
        points.setdefault(point, []).append(i)
    console.print("Pareto front (missed, median delay s, false alerts/day: settings):")
    for (missed, delay, fpd), members in points.items():
        shown = ", ".join(f"#{i}" for i in members[:8]) + (" ..." if len(members) > 8 else "")
        shown_delay = "n/a" if delay is None else delay
        console.print(f"  ({missed}, {shown_delay}, {fpd:.2f}): {len(members)} setting(s): "
                      f"{shown}")
    cv = Table(title="forward-chaining cross-validation (chosen on earlier folds)")
    for name in ("fold", "span (UTC)", "chosen", "missed", "false/day", "median delay s",
                 "best in fold", "its missed", "its false/day"):
        cv.add_column(name, justify="right")
    for entry in result.cv:
        s, b = entry["score"], entry["best_in_fold_score"]
        cv.add_row(
            str(entry["fold"]),
            f"{_fmt_time(entry['start'])} .. {_fmt_time(entry['end'])}",
            f"#{entry['chosen']}", f"{s['missed']}/{s['incidents']}",
            f"{s['false_per_day']:.2f}", _delay_text(s["median_delay_s"]),
            f"#{entry['best_in_fold']}", f"{b['missed']}/{b['incidents']}",
            f"{b['false_per_day']:.2f}",
        )
    console.print(cv)
    oof = result.out_of_fold
    console.print(
        f"out of fold: missed {oof.missed}/{oof.incidents}, {oof.false_per_day:.2f} false "
        f"alerts/day, median delay {_delay_text(oof.median_delay_s)}"
    )
    console.print(winner_toml(result, config_path), markup=False, highlight=False)
    r = result.replayed
    console.print(
        f"{len(result.settings)} settings, {r.groups} engine replay(s) of {r.messages} "
        f"messages in {result.runtime_s:.1f} s (decode {r.decode_s:.1f} s, replay "
        f"{r.replay_s:.1f} s, rules {r.rules_s:.1f} s)"
    )


def run_tune(args: Any, config: MonitorConfig) -> int:
    """``monitor tune`` from parsed arguments; the exit code (2 for a bad grid, incidents
    file or option)."""
    from monitor.config import parse_duration
    from monitor.tune_grid import GridError, default_grid, expand_grid, load_grid

    try:
        if args.folds < 2:
            raise GridError([f"--folds: at least 2 (forward-chaining needs one earlier fold), "
                             f"got {args.folds}"])
        if args.jobs < 1:
            raise GridError([f"--jobs: at least 1, got {args.jobs}"])
        try:
            grace = parse_duration(args.grace)
        except ValueError as exc:
            raise GridError([f"--grace: {exc}"]) from None
        grid = load_grid(args.grid) if args.grid else default_grid(config)
        if not grid:
            raise GridError([f"{args.config}: no rule or detector parameter to tune; give --grid"])
        settings = expand_grid(config, grid, args.grid or "default grid", args.max_settings)
        incidents = load_incidents(args.incidents, [m.name for m in config.models])
    except (GridError, IncidentError) as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        with ProgressBars.on_stderr(not getattr(args, "no_progress", False)) as bars:
            result = tune(
                args.captures, settings, incidents, folds=args.folds, jobs=args.jobs,
                grace=grace, max_false_per_day=args.max_false_per_day, progress=bars,
            )
    except (OSError, ValueError) as exc:
        print(f"monitor tune: {exc}", file=sys.stderr)
        return 2
    write_outputs(result, args.out, args.config)
    print_result(result, top=args.top, config_path=args.config)
    lo, hi = result.folds[0][0], result.folds[-1][1]
    outside = [i for i in incidents if not lo <= i.start <= hi]
    if outside:
        print(
            f"monitor tune: {len(outside)} incident(s) start outside the capture's event time "
            f"({_fmt_time(lo)} .. {_fmt_time(hi)} UTC) and were not scored",
            file=sys.stderr,
        )
    return 0
