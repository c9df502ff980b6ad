"""Tasks: the training problems a tuning job runs on.

The registry and the option schemas are jax-free so the API process can validate a job's
``task`` block; the implementations in :mod:`optimizer.tasks.builtin` import JAX and are loaded
only by :func:`load_task`. See ``docs/tasks.md`` for the protocol and a custom task.
"""

from optimizer.tasks.base import Task, TaskMeta
from optimizer.tasks.options import OptionSchema, TaskOptionsError
from optimizer.tasks.registry import (
    ENTRY_POINT_GROUP,
    default_steps,
    load_task,
    task_names,
    task_schema,
    validate_task_options,
)
from optimizer.tasks.trust import ALLOWED_MODULES_ENV, TaskNotAllowed, TaskTrust

__all__ = [
    "ALLOWED_MODULES_ENV",
    "ENTRY_POINT_GROUP",
    "OptionSchema",
    "Task",
    "TaskMeta",
    "TaskNotAllowed",
    "TaskOptionsError",
    "TaskTrust",
    "default_steps",
    "load_task",
    "task_names",
    "task_schema",
    "validate_task_options",
]
