"""Labels read no further ahead of their predictions than ``kafka.label_lead`` of event time.

A daemon that starts behind (a restart after downtime, a first deployment reading from the
earliest offsets, a replica taking over partitions with a backlog) reads both input topics
as fast as the broker hands them out. Label records are smaller than predictions, so each
fetch carries more of them, and a partition's labels soon run ahead of its predictions in
event time: most labels then come before their prediction and wait as early labels, which
costs memory and time, and past ``max_early_labels`` evicts labels whose predictions never
join. A consumer of a backlog should read its inputs in step instead (as Kafka Streams
does with ``max.task.idle.ms`` and Flink with watermark alignment).

:class:`LabelPacer` decides which labels partitions to pause. Partitions of both topics
with the same number hold the same ids (the topics are keyed by ``prediction_id``). While
a predictions partition has a backlog here (more records left to read than one poll
returns), its labels partition is paused once the newest label read from it is more than
``label_lead`` of event time past the newest prediction read from its twin (or while none
is). A predictions partition whose lag is not known yet counts as one with a backlog: the
consumer has not read from it yet. A paused labels partition is resumed when the
predictions come within half of ``label_lead``, when their backlog is read, when the
predictions partition is not assigned here, or when ``label_lead`` is 0. At the head of
both topics labels come after their predictions, and there is no backlog: nothing is
paused, even when the labels' producer has a clock minutes ahead. Nothing is lost either
way, since a paused partition is fetched again from its position when resumed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set

__all__ = ["LabelPacer"]

TP = tuple[str, int]


class LabelPacer:
    """Which labels partitions to pause or resume so that labels stay within ``lead``
    seconds of event time of their predictions while those have a backlog.

    ``held`` is the set of labels partitions this pacer paused and has not resumed; the
    caller applies each decision to its consumer (see :meth:`decide`).
    """

    def __init__(
        self, predictions_topic: str, labels_topic: str, lead: float, backlog: int = 0
    ) -> None:
        self.predictions_topic = predictions_topic
        self.labels_topic = labels_topic
        self.lead = lead
        #: Records left to read above which a predictions partition is catching up (the
        #: daemon passes a poll's worth, ``kafka.max_poll_records``).
        self.backlog = backlog
        self.held: set[TP] = set()

    def decide(
        self,
        event_times: Mapping[int, Mapping[str, float]],
        lag: Mapping[TP, int],
        assigned: Set[TP],
    ) -> tuple[set[TP], set[TP]]:
        """The labels partitions to pause now and those to resume now.

        ``event_times``: per partition number, the newest event time read per topic;
        ``lag``: records left to read per assigned partition (a partition left out has not
        been read from yet); ``assigned``: the partitions assigned here. A held partition that is
        no longer assigned is forgotten (nothing to resume).
        """
        self.held &= assigned
        pause: set[TP] = set()
        resume: set[TP] = set()
        for topic, number in assigned:
            if topic != self.labels_topic:
                continue
            tp = (topic, number)
            twin = (self.predictions_topic, number)
            times = event_times.get(number, {})
            label_ts = times.get(self.labels_topic, -math.inf)
            ahead = -math.inf  # no label read yet: not ahead
            if label_ts > -math.inf:  # no prediction read yet: ahead by any measure
                ahead = label_ts - times.get(self.predictions_topic, -math.inf)
            # An unknown lag is a partition not read from yet (librdkafka may hand out
            # one partition's backlog after another's): its records are still to come.
            backlog = twin in assigned and lag.get(twin, self.backlog + 1) > self.backlog
            if tp in self.held:
                if not backlog or self.lead <= 0 or ahead <= self.lead / 2:
                    resume.add(tp)
            elif backlog and self.lead > 0 and ahead > self.lead:
                pause.add(tp)
        self.held = (self.held - resume) | pause
        return pause, resume
