"""Tasks: the training problems a tuning job runs on.

The registry and the option schemas are jax-free so the API process can validate a job's
``task`` block; the implementations in :mod:`optimizer.tasks.builtin` import JAX and are loaded
only by :func:`load_task`. See ``docs/tasks.md`` for the protocol and a custom task.
"""

from optimizer.tasks.base import Task, TaskMeta
from optimizer.tasks.options import OptionSchema, TaskOptionsError
from optimizer.tasks.registry import (
    ENTRY_POINT_GROUP,
    load_task,
    task_names,
    task_schema,
    validate_task_options,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "OptionSchema",
    "Task",
    "TaskMeta",
    "TaskOptionsError",
    "load_task",
    "task_names",
    "task_schema",
    "validate_task_options",
]
