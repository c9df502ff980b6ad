"""What `acprop-tuner tune` and `acprop_tuner.tune` are asked to tune, made into a task name a
worker process can load, and the facts the job needs from it (its default steps).

A worker is another process: it builds the task again from its name. So a task is named by

- a built-in name or an installed entry point (``mlp-digits``),
- ``package.module:factory``, importable by the worker, or
- the factory itself (a module-level function of an importable module), named for the worker
  as ``module:qualname``.

A function defined in ``__main__`` (a notebook cell, the script being run) or inside another
function cannot be imported by another process: :func:`task_ref` says so and how to fix it.
A custom task's code is only ever imported in a child process of its own (:func:`probe`),
pinned to the run's device, so this process (a notebook, maybe) never starts JAX on a GPU the
worker needs. Run ``python -m acprop_tuner.cli.task_ref NAME OPTIONS_JSON DEVICE`` to see
what the probe sees.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TaskProblem", "TaskRef", "probe", "task_ref"]


class TaskProblem(ValueError):
    """The task cannot be tuned as given; the message says why and what to do."""


@dataclass(frozen=True)
class TaskRef:
    """A task as a worker will load it.

    Attributes:
        name: what the job names (built-in, entry point or ``module:factory``).
        module: the module a local run allows for itself (``module:factory`` only), through
            the trust mechanism of ``optimizer/tasks/trust.py``.
        path: a directory the worker needs on its ``sys.path`` to import ``module``.
    """

    name: str
    module: str | None = None
    path: str | None = None


def _module_root(module: str) -> str | None:
    """The directory from which ``module`` is imported here (found without importing it)."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package: its parent directory
        return str(Path(next(iter(spec.submodule_search_locations))).parent)
    return str(Path(spec.origin).parent) if spec.origin else None


def _of_callable(factory: Callable[..., Any]) -> TaskRef:
    module = str(getattr(factory, "__module__", None) or "__main__")
    qualname = str(getattr(factory, "__qualname__", None) or getattr(factory, "__name__", ""))
    what = f"{qualname or factory!r}"
    if module in ("__main__", "__mp_main__"):
        raise TaskProblem(
            f"the task factory {what} is defined in __main__ (a notebook cell or the script "
            "you ran); the worker is another process and cannot import it. Put the factory in "
            "a module file (say my_task.py beside the notebook), then "
            "`from my_task import make_task; tune(make_task)` or tune('my_task:make_task')"
        )
    if "<" in qualname:  # <lambda>, <locals>
        raise TaskProblem(
            f"the task factory {what} of {module} is not a module-level function, so a worker "
            "process cannot import it by name; define it at the top level of a module"
        )
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not factory:
        raise TaskProblem(
            f"{module}:{qualname} does not name this factory (was it redefined or wrapped?); "
            "a worker process imports it by that name"
        )
    return TaskRef(f"{module}:{qualname}", module, _module_root(module))


def task_ref(task: str | Callable[..., Any]) -> TaskRef:
    """The task ``task`` names, as a worker will load it.

    Raises:
        TaskProblem: a name that cannot be a task here, or a factory a worker cannot import.
    """
    from optimizer.tasks import TaskOptionsError, validate_task_options

    if isinstance(task, str):
        try:
            validate_task_options(task, None)  # the name's shape; nothing imported
        except TaskOptionsError as exc:
            raise TaskProblem(str(exc)) from None
        if ":" not in task:
            return TaskRef(task)
        module = task.partition(":")[0]
        root = _module_root(module)
        if root is None:
            raise TaskProblem(
                f"cannot find the module {module!r} of task {task!r} from {os.getcwd()}: "
                "install it, or run from the directory that holds it"
            )
        return TaskRef(task, module, root)
    if hasattr(task, "meta") and hasattr(task, "init_params"):
        raise TaskProblem(
            "pass the factory that builds the task (or its 'module:factory' name), not the "
            "task object: the worker is another process and builds the task again from its "
            "module path"
        )
    if callable(task):
        return _of_callable(task)
    raise TaskProblem(f"a task is a name or a factory function, not {type(task).__name__}")


@dataclass(frozen=True)
class TaskInfo:
    """What the job needs to know about a task."""

    default_steps: int
    n_params: int | None = None


def probe(
    ref: TaskRef, options: Mapping[str, Any], *, device: str = "cpu", timeout_s: float = 600
) -> TaskInfo:
    """Check that ``ref`` builds with ``options`` on ``device`` and read its default steps.

    A built-in on the CPU needs no JAX (its options and default steps are known jax-free);
    anything else is built in a child process pinned to ``device``.

    Raises:
        TaskProblem: the options, the device or the task's own code said no (its message).
    """
    from optimizer.tasks import TaskOptionsError, default_steps, validate_task_options

    try:
        validate_task_options(ref.name, dict(options))
    except TaskOptionsError as exc:
        raise TaskProblem(str(exc)) from None
    steps = default_steps(ref.name)
    if steps is not None and device == "cpu":
        return TaskInfo(steps)
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if ref.path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ref.path, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", __name__, ref.name, json.dumps(dict(options)), device],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise TaskProblem(lines[-1])
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    return TaskInfo(int(facts["default_steps"]), int(facts["n_params"]))


def _main(argv: list[str]) -> int:
    """The probe's child: pin the device, build the task, print its facts as JSON."""
    name, options, device = argv[0], json.loads(argv[1]), argv[2]
    from worker.commands import DeviceError, check_device, pin_device

    try:
        pin_device(device)
    except DeviceError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    problem = check_device(device)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    from optimizer.tasks import load_task

    try:
        task = load_task(name, options)  # the user named this code: no trust check here
    except Exception as exc:  # the task's own code: its class and message, no traceback
        print(f"task {name!r} cannot be built: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    meta = task.meta
    print(json.dumps({"default_steps": meta.default_steps, "n_params": meta.n_params}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
