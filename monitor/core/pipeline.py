"""One process's core: stage 1 (:class:`~monitor.core.engine.Engine`, per input
partition) and every model's stage 2 (:class:`~monitor.core.model_stage.ModelStage`),
joined by a direct call.

After each poll, stage 1's pane deltas of every partition it holds go straight into each
model's stage 2 (no record is encoded, and nothing is kept to undo: in one process a
restart restores both stages from the same checkpoint). The pane clock is the one of the
partitions this process reads (:meth:`Engine.track <monitor.core.engine.Engine.track>`,
:meth:`~monitor.core.engine.Engine.set_idle`): the smallest largest event time, less
``allowed_lateness``, which is what each model's stage 2 would work out from the deltas'
progress; every model's stage closes its panes through it.

>>> from monitor.config import config_from_mapping
>>> from monitor.events.message import Message
>>> cfg = config_from_mapping({"models": [{"name": "m", "task": "binary", "positive_class": 1,
...                                        "windows": ["all"]}]})
>>> core = Pipeline(cfg)
>>> msgs = [Message("predictions", 0, 0, b"a", b'{"prediction_id": "a", "model": "m", '
...                 b'"ts": 1700000000, "prediction": 1, "label": 1}')]
>>> core.process(msgs)
[]
>>> core.summary()["models"]["m"]["windows"]["all"]["accuracy"]
1.0
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from monitor.config import MonitorConfig
from monitor.core.deltas import DeltaBook
from monitor.core.engine import Engine, PartitionState
from monitor.core.model import ModelState, PaneSignals
from monitor.core.model_stage import ModelStage, flush_together, hand_over
from monitor.core.report import ModelReport, Report
from monitor.events.message import Message, Reject

__all__ = ["Pipeline"]

#: Counts a model's stage 2 reports for replicas' own health, not shown by one process.
_REPLICA_COUNTS = ("stale_deltas", "panes_closed")


class Pipeline:
    """Both stages of one process over all configured models; see the module docstring.

    Offers what the run loop, ``replay``, ``tune`` and the Python API use: :meth:`process`,
    :meth:`drain_signals`, :meth:`report`, :meth:`flushed`, :meth:`summary`."""

    def __init__(self, config: MonitorConfig, engine: Engine | None = None,
                 stages: dict[str, ModelStage] | None = None) -> None:  # fmt: skip
        self.config = config
        self.pane = config.time.pane
        #: Stage 1: decode, join, rejects, offsets and each partition's pane partials.
        self.engine = engine if engine is not None else Engine(config)
        self.book = DeltaBook(self.engine)
        for number in self.engine.partitions:
            self.book.restart(number)
        #: Stage 2 of every model, in config order.
        self.stages: dict[str, ModelStage] = (
            stages
            if stages is not None
            else {m.name: ModelStage(config, m.name, 0) for m in config.models}
        )
        #: Panes below this index are closed (every model's stage starts there).
        self.closed_upto: int | None = next(
            (s.closed_upto for s in self.stages.values() if s.closed_upto is not None), None
        )
        for stage in self.stages.values():
            for number, state in self.engine.partitions.items():
                stage.resume(number, state.offsets)  # restored with stage 1: goes on

    # ------------------------------------------------------------------ stage 1's
    @property
    def models(self) -> list[ModelState]:
        """Each model's stage-2 state (reference, baseline, registry), in config order."""
        return [s.model for s in self.stages.values()]

    @property
    def partitions(self) -> dict[int, PartitionState]:
        """Stage 1's state per input partition number."""
        return self.engine.partitions

    @property
    def events(self) -> int:
        """Messages processed so far."""
        return self.engine.events

    @property
    def watermark(self) -> float:
        """The pane clock's watermark (-inf before every partition spoke)."""
        return self.engine.watermark

    @property
    def tracked(self) -> set[tuple[str, int]]:
        """The input partitions that make the watermark."""
        return self.engine.tracked

    @property
    def idle(self) -> set[tuple[str, int]]:
        """The input partitions that stopped holding the watermark back."""
        return self.engine.idle

    @property
    def panes_closed(self) -> int:
        """Panes closed so far (every model's stage closes the same ones)."""
        return max((s.panes_closed for s in self.stages.values()), default=0)

    def track(self, partitions: Iterable[tuple[str, int]]) -> None:
        """See :meth:`Engine.track <monitor.core.engine.Engine.track>`."""
        self.engine.track(partitions)

    def set_idle(self, partitions: Iterable[tuple[str, int]]) -> None:
        """See :meth:`Engine.set_idle <monitor.core.engine.Engine.set_idle>`."""
        self.engine.set_idle(partitions)

    def offsets(self) -> dict[tuple[str, int], int]:
        """Next offset to read per (topic, partition), as reflected by the state."""
        return self.engine.offsets()

    # ------------------------------------------------------------------ processing
    def process(self, messages: Sequence[Message]) -> list[Reject]:
        """Stage 1 takes the poll; its deltas go to every model's stage 2, which closes
        the panes the watermark passed. Returns the rejects (for the dead-letter topic)."""
        rejects = self.engine.process(messages)
        self._hand_over()
        if math.isfinite(self.engine.watermark):
            self._close(math.floor(self.engine.watermark / self.pane))
        return rejects

    def close_through(self, upto: int) -> None:
        """Close every pane with index below ``upto``, in order, in both stages."""
        self.engine.close_through(upto)
        self._hand_over()
        self._close(upto)

    def _hand_over(self) -> None:
        """Every partition's delta since the last into every model's stage 2."""
        deltas, left = [], []
        for number in sorted(self.engine.partitions):
            # In one process each delta is final: nothing before it is ever undone.
            self.book.checkpointed(number, self.engine.partitions[number].offsets)
            delta, quiet = self.book.take_handed(number)  # never encoded
            deltas.append(delta)
            left.append(quiet)
        hand_over(list(self.stages.values()), deltas, left)

    def _close(self, upto: int) -> None:
        stages = self.stages.values()
        if self.closed_upto is None:
            firsts = [min(s.windows.open) for s in stages if s.windows.open]
            if not firsts:
                return
            # Before any pane closed, only panes below the watermark's are closed: data for
            # a pane ahead of it that arrived first must not make earlier events late.
            self.closed_upto = min(min(firsts), upto)
        pending = []  # the last panes' signals of every model, computed together
        for stage in stages:
            if stage.closed_upto is None:  # a model added to a running process too
                stage.closed_upto = self.closed_upto
            stage.watermark = max(stage.watermark, self.engine.watermark)
            batch = stage.close_through(upto, defer=True)
            if batch is not None:
                pending.append((stage, batch))
        flush_together(pending)
        self.closed_upto = max(self.closed_upto, upto)
        for name, stage in self.stages.items():
            self._learn(name, stage)

    def _learn(self, name: str, stage: ModelStage) -> None:
        """Tell stage 1 the warmup reference its model's stage 2 just built (or that the
        warmup failed): it histograms the predictions itself from now on."""
        if not self.engine.by_name[name].warmup_target or not stage.warmed_up():
            return
        model = stage.model
        if model.profile is None or model.profile_pane is None:
            self.engine.learn_profile(name, None, -1)
        else:
            self.engine.learn_profile(name, model.profile, model.profile_pane, model.baseline)

    def learn_profile(self, name: str, *args: Any) -> bool:
        """See :meth:`Engine.learn_profile <monitor.core.engine.Engine.learn_profile>`."""
        return self.engine.learn_profile(name, *args)

    def drain_signals(self) -> list[PaneSignals]:
        """Signals of the panes closed since the last call, in pane order (models in
        config order within a pane)."""
        out = [s for stage in self.stages.values() for s in stage.drain_signals()]
        out.sort(key=lambda s: s.pane_end)  # stable: models stay in config order
        # Signals restored undrained from a checkpoint wait in stage 1's list: first.
        return self.engine.drain_signals() + out

    def pending_signals(self) -> list[PaneSignals]:
        """The signals :meth:`drain_signals` would give now, left in place (a checkpoint
        stores them)."""
        out = [s for stage in self.stages.values() for s in stage.signals_out]
        out.sort(key=lambda s: s.pane_end)
        return self.engine.signals_out + out

    # ------------------------------------------------------------------ reports
    def flushed(self, keep_signals: bool = False) -> Pipeline:
        """A copy with every open pane closed, as at the end of input; its undrained
        signals are those of the panes this closed when ``keep_signals`` is true, else none.
        """
        # The join tables hold only immutable values (ids, times, NamedTuples): a shallow
        # copy of each is a deep one, and far cheaper than deepcopy's walk of 1M entries.
        memo: dict[int, Any] = {}
        for state in self.engine.partitions.values():
            join = state.join
            for table in (*join.pending, *join.matched, join.early):
                memo[id(table)] = copy.copy(table)
        clone = copy.deepcopy(self, memo)
        for stage in clone.stages.values():
            stage.signals_out = []
        clone.engine.signals_out = []
        clone.flush(keep_signals)
        return clone

    def flush(self, keep_signals: bool = False) -> None:
        """Close every open pane, as at the end of input, in place: what :meth:`flushed`
        does to its copy, for a caller done with this pipeline (the end of a replay). The
        signals of the panes this closes are left undrained when ``keep_signals`` is
        true, else dropped."""
        last = [max(s.windows.open) for s in self.stages.values() if s.windows.open]
        if not last:
            return
        before = {name: len(stage.signals_out) for name, stage in self.stages.items()}
        self.close_through(max(last) + 1)
        if not keep_signals:
            for name, stage in self.stages.items():
                del stage.signals_out[before[name] :]

    @property
    def is_flushed(self) -> bool:
        """True when no pane is open (nothing for :meth:`flush` to close)."""
        return not any(stage.windows.open for stage in self.stages.values())

    def report(self) -> Report:
        """The current picture: metrics per window as of the last pane close; counters now."""
        report = Report(
            watermark=self.engine.watermark, panes_closed=self.panes_closed,
            events=self.engine.events,
        )  # fmt: skip
        for state in self.engine.partitions.values():
            for key, n in state.rejects.items():
                report.rejects[key] = report.rejects.get(key, 0) + n
        report.unnamed = self.engine.unnamed_labels()
        for name, stage in self.stages.items():
            report.models[name] = self._model_report(stage)
        return report

    @staticmethod
    def _model_report(stage: ModelStage) -> ModelReport:
        out = stage.report()
        for name in _REPLICA_COUNTS:
            out.counts.pop(name, None)
        return out

    def summary(self) -> dict[str, Any]:
        """``summary.json``: every window's metrics as at the end of input, counts, rejects."""
        # Computing and reporting leave a pipeline as it was: no copy when nothing is open.
        final = self if self.is_flushed else self.flushed()
        out: dict[str, Any] = {"models": {}, "rejects": {}}
        for stage in final.stages.values():
            model = stage.model
            computed = stage.compute(final=True)
            if model.detectors is not None:
                for name in model.detectors.detectors:
                    found = float(model.last_detections.get(name, 0))
                    column = np.full(len(model.registry.keys), np.nan)
                    column[0] = found
                    for metrics in computed.values():
                        metrics[f"{name}:{model.detectors.stream}"] = column
            report = final._model_report(stage)
            slices = {}
            for row, (dimension, value) in enumerate(model.registry.keys[1:], start=1):
                slices[f"{dimension}={value}"] = {
                    w: {k: _json_float(v[row]) for k, v in metrics.items()}
                    for w, metrics in computed.items()
                }
            out["models"][model.name] = {
                "windows": {
                    w: {k: _json_float(v[0]) for k, v in metrics.items()}
                    for w, metrics in computed.items()
                },
                "counts": report.counts,
                "counters": report.overall.counters,
                "slices": slices,
                "folded": dict(model.registry.folded),
            }
        rejects: Counter[str] = Counter()
        for state in final.engine.partitions.values():
            for (_topic, reason), n in state.rejects.items():
                rejects[reason] += n
        out["rejects"] = dict(sorted(rejects.items()))
        out["unnamed_labels"] = final.engine.unnamed_labels()
        return out


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
