"""Per-task modules: what depends on whether a model is binary, multiclass or regression.

Each task is one module holding one :class:`~monitor.core.tasks.base.Task` subclass
(:mod:`~monitor.core.tasks.binary`, :mod:`~monitor.core.tasks.multiclass`,
:mod:`~monitor.core.tasks.regression`): its pane-sum columns, the terms an event adds to
them, its metrics, label-free estimates, class drift subjects, baseline calibration,
error stream and slice counters. :func:`task_of` gives a model's task; the generic
modules of :mod:`monitor.core` call it instead of switching on the task's name. The
package imports none of them (a layout is only a type here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.core.tasks.base import Task
from monitor.core.tasks.binary import BinaryTask
from monitor.core.tasks.multiclass import MulticlassTask
from monitor.core.tasks.regression import RegressionTask

if TYPE_CHECKING:
    from monitor.core.layout import Layout

__all__ = ["TASKS", "BinaryTask", "MulticlassTask", "RegressionTask", "Task", "task_of"]

#: The one instance of each task, by name.
TASKS: dict[str, Task] = {t.name: t for t in (BinaryTask(), MulticlassTask(), RegressionTask())}


def task_of(name_or_layout: str | Layout) -> Task:
    """The task of a name (``"binary"``, ...) or of a layout.

    >>> task_of("regression").error_stream
    'abs_error'
    """
    if isinstance(name_or_layout, str):
        try:
            return TASKS[name_or_layout]
        except KeyError:
            valid = ", ".join(TASKS)
            raise ValueError(f"Invalid 'task': {name_or_layout!r}; valid: {valid}") from None
    return name_or_layout.kind
