"""Which task names may run: task code is trusted code that operators install.

A user key names a task; it must never make a worker import or call anything its operator did
not install for that purpose. So a task name resolves to code only if it is

- a built-in task (part of this package),
- a name in the ``acprop_tuner.tasks`` entry-point group of a distribution installed on that
  machine (installing it is the operator's act), or
- ``package.module:factory`` whose module lies under a prefix the operator allowed, on the
  command line (``--allow-task-module PREFIX``) or in ``ACPROP_TUNER_ALLOWED_TASK_MODULES``
  (comma-separated). A prefix ``mytasks`` allows ``mytasks`` and ``mytasks.vision``, never
  ``mytasks_evil``.

The server applies the same rule with its own setting when a job is submitted (a 422 that says
which setting allows the name), and each worker again before it imports anything, so a job the
server let through still cannot make a worker run code that worker's operator did not allow.
jax-free: nothing is imported to decide.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from optimizer.tasks.options import TaskOptionsError

__all__ = [
    "ALLOWED_MODULES_ENV",
    "TaskNotAllowed",
    "TaskTrust",
]

#: The environment variable both the server and the worker read (comma-separated prefixes).
ALLOWED_MODULES_ENV = "ACPROP_TUNER_ALLOWED_TASK_MODULES"
_PREFIX = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class TaskNotAllowed(TaskOptionsError):
    """A task name that this machine's operator did not allow (nothing was imported)."""


@dataclass(frozen=True)
class TaskTrust:
    """The module prefixes an operator allowed for ``package.module:factory`` task names."""

    modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for prefix in self.modules:
            if not _PREFIX.match(prefix):
                raise ValueError(
                    f"allowed task module {prefix!r} must be a dotted Python module name"
                )

    @classmethod
    def of(cls, prefixes: Iterable[str] = (), *, environ: bool = True) -> TaskTrust:
        """The prefixes given, plus those in ``ACPROP_TUNER_ALLOWED_TASK_MODULES`` (if
        ``environ``); empty items are ignored, duplicates dropped."""
        found = [p.strip() for p in prefixes]
        if environ:
            found += [p.strip() for p in os.environ.get(ALLOWED_MODULES_ENV, "").split(",")]
        return cls(tuple(dict.fromkeys(p for p in found if p)))

    def allows_module(self, module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in self.modules)

    def check(self, name: str, *, where: str, setting: str) -> None:
        """Raise :class:`TaskNotAllowed` unless ``name`` is a built-in, an installed entry
        point, or a factory under an allowed module. ``where`` names this machine ("this
        server", "this worker") and ``setting`` the switch that would allow it."""
        if ":" not in name:
            return  # a built-in or an installed entry point, or unknown: nothing to import
        if self.allows_module(name.partition(":")[0]):
            return
        raise TaskNotAllowed(
            f"task {name!r} is not allowed on {where}: task code is trusted code, so only "
            "built-in tasks, tasks installed in the 'acprop_tuner.tasks' entry-point group, and "
            f"factories under module prefixes its operator allowed ({setting}) can run; "
            + (
                f"allowed now: {', '.join(self.modules)}"
                if self.modules
                else "no module prefix is allowed now"
            )
        )
