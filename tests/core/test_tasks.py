"""The per-task modules (:mod:`monitor.core.tasks`): one task object per name, the columns
each gives a layout (what stored states' sums are laid out by), and the package's place
at the bottom of the core's imports."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.layout import Layout
from monitor.core.tasks import TASKS, BinaryTask, MulticlassTask, RegressionTask, Task, task_of
from tests.test_import_graph import import_graph


def test_task_of_a_name_and_of_a_layout() -> None:
    assert isinstance(task_of("binary"), BinaryTask)
    assert isinstance(task_of("multiclass"), MulticlassTask)
    assert isinstance(task_of("regression"), RegressionTask)
    lay = Layout("multiclass", n_classes=3)
    assert task_of(lay) is lay.kind is task_of("multiclass")
    assert {name: t.name for name, t in TASKS.items()} == {n: n for n in TASKS}


def test_an_unknown_task_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="Invalid 'task': 'ranking'; valid: binary, multiclass"):
        Layout("ranking")


#: The task's columns of each layout, as they were before the tasks had their modules:
#: stored sums are read back into layouts rebuilt from the config, so they must not move.
COLUMNS = {
    "binary": [
        ("pred_n", 0, 1), ("pred_pos", 1, 1), ("score_n", 2, 1), ("score_sum", 3, 1),
        ("score_hist", 4, 4), ("pp_hist", 8, 4), ("n", 12, 1), ("tp", 13, 1), ("fp", 14, 1),
        ("tn", 15, 1), ("fn", 16, 1), ("scored_n", 17, 1), ("log_loss_sum", 18, 1),
        ("brier_sum", 19, 1), ("pos_hist", 20, 4), ("neg_hist", 24, 4),
    ],
    "multiclass": [
        ("pred_n", 0, 1), ("pred_class", 1, 3), ("n", 4, 1), ("confusion", 5, 9),
        ("prob_n", 14, 1), ("e_confusion", 15, 9),
    ],
    "regression": [
        ("pred_n", 0, 1), ("pred_sum", 1, 1), ("n", 2, 1), ("error_sum", 3, 1),
        ("abs_error_sum", 4, 1), ("squared_error_sum", 5, 1), ("ape_sum", 6, 1),
        ("label_sum", 7, 1), ("label_sq_sum", 8, 1),
    ],
}  # fmt: skip


@pytest.mark.parametrize("task", sorted(COLUMNS))
def test_each_task_lays_out_the_columns_it_always_had(task: str) -> None:
    lay = Layout(task, n_classes=3, score_bins=4, features={"x": "numeric"}, reserve=(5, 3))
    fields = [(name, start, width) for name, (start, width) in lay.fields.items()]
    own = COLUMNS[task]
    assert fields[: len(own)] == own
    start = own[-1][1] + own[-1][2]  # the features' columns follow the task's
    assert fields[len(own)] == ("missing:x", start, 1)


@pytest.mark.parametrize("task", sorted(COLUMNS))
def test_every_term_lands_in_a_column_of_its_task(task: str) -> None:
    lay = Layout(task, n_classes=3, score_bins=4)
    rng = np.random.default_rng(0)
    e = 50
    pred = rng.integers(0, 2, e).astype(float)
    label = rng.integers(0, 2, e).astype(float)
    score = rng.random(e)
    probs = rng.random((e, 3))
    for cols, _ in (
        lay.prediction_terms(pred, score, probs),
        lay.outcome_terms(pred, score, label),
    ):
        assert cols.min() >= 0 and cols.max() < lay.width


def test_the_error_streams_and_their_values() -> None:
    pred, label = np.array([1.0, 0.0, 2.5]), np.array([1.0, 1.0, 0.5])
    assert task_of("binary").error_stream == task_of("multiclass").error_stream == "error"
    assert task_of("binary").errors(pred, label).tolist() == [0.0, 1.0, 1.0]
    assert task_of("regression").error_stream == "abs_error"
    assert task_of("regression").errors(pred, label).tolist() == [0.0, 1.0, 2.0]


#: The generic modules that ask a task; the tasks must import none of them.
CALLERS = (
    "monitor.core.layout", "monitor.core.metrics", "monitor.core.panemetrics",
    "monitor.core.estimate", "monitor.core.drift", "monitor.core.baseline",
    "monitor.core.engine", "monitor.core.fastpath", "monitor.core.reference",
    "monitor.core.detectors", "monitor.events.codec", "monitor.events.values",
)  # fmt: skip


def test_the_tasks_import_none_of_their_callers() -> None:
    graph = import_graph()
    tasks = [name for name in graph if name.startswith("monitor.core.tasks")]
    assert len(tasks) == 6
    reached: set[str] = set()
    stack = list(tasks)
    while stack:
        for name in graph[stack.pop()]:
            if name not in reached:
                reached.add(name)
                stack.append(name)
    assert not reached & set(CALLERS), sorted(reached & set(CALLERS))
    assert reached <= {*tasks, "monitor.catalogue", "monitor.core.calibration", "monitor.core"}


def test_a_task_is_stateless_and_one_per_name() -> None:
    for task in TASKS.values():
        assert isinstance(task, Task)
        assert vars(task) == {}
