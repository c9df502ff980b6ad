"""The task registry: built-in tasks, their option schemas, and how names resolve to tasks.

Three kinds of names resolve to a task:

- a built-in name (see :func:`task_names`), whose options are validated against its schema,
  or a model family that trains on an uploaded data set (:func:`family_names`, see
  optimizer/tasks/dataset_families.py), named in its ``dataset`` option;
- ``package.module:factory``, a factory importable on the worker, called as
  ``factory(**options)``;
- a name registered by an installed distribution in the entry-point group
  ``acprop_tuner.tasks`` (``name = package.module:factory``).

:func:`validate_task_options` never imports JAX or user code, so the API process can check a
job's task before storing it; :func:`load_task` imports the implementation (and JAX) on the
worker.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

from optimizer.datasets import Dataset
from optimizer.tasks.base import Task, TaskMeta
from optimizer.tasks.dataset_families import DATASET_OPTION, FAMILIES, FAMILY_DEFAULT_STEPS
from optimizer.tasks.options import (
    ACTIVATION,
    DatasetOption,
    FloatOption,
    IntListOption,
    IntOption,
    OptionSchema,
    TaskOptionsError,
)
from optimizer.tasks.trust import ALLOWED_MODULES_ENV, TaskNotAllowed, TaskTrust

__all__ = [
    "ENTRY_POINT_GROUP",
    "WORKER_SETTING",
    "TaskNotAllowed",
    "builtin_default_steps",
    "check_task_name",
    "default_steps",
    "family_names",
    "load_task",
    "task_dataset",
    "task_names",
    "task_schema",
    "validate_task_options",
]

ENTRY_POINT_GROUP = "acprop_tuner.tasks"
#: How a worker's operator allows task modules (named in the refusal).
WORKER_SETTING = f"the worker's --allow-task-module PREFIX or {ALLOWED_MODULES_ENV}"

# `package.module:factory`, each part a Python identifier (dotted on the module side).
_FACTORY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

_ACTIVATION = ACTIVATION
_BATCH = IntOption(128, 1, 4096, "minibatch size (examples drawn with replacement per step)")


def _check_char_lm(options: dict[str, Any]) -> None:
    if options["d_model"] % options["n_heads"]:
        raise TaskOptionsError(
            f"option 'n_heads' must divide option 'd_model' ({options['d_model']}), "
            f"got {options['n_heads']}"
        )


class _Builtin(NamedTuple):
    schema: OptionSchema
    #: "module:factory" of the JAX implementation, imported only by load_task.
    factory: str
    #: The task's `TaskMeta.default_steps`, known here without JAX so that the API can give a
    #: job that names no steps the task's own (the implementation reads it from here).
    default_steps: int


_BUILTINS: dict[str, _Builtin] = {
    "rosenbrock": _Builtin(
        OptionSchema(
            {
                "a": FloatOption(1.0, -10.0, 10.0, "minimum at (a, a^2)"),
                "b": FloatOption(100.0, 0.0, 1000.0, "curvature of the valley"),
            },
            help="2-D Rosenbrock from (0, 0), full batch: the optax issue 1132 reproducer",
        ),
        "optimizer.tasks.builtin.rosenbrock:make_rosenbrock",
        500,
    ),
    "mlp-digits": _Builtin(
        OptionSchema(
            {
                "widths": IntListOption((64, 128), 1, 2048, 1, 8, "hidden layer widths"),
                "activation": _ACTIVATION,
                "batch_size": _BATCH,
            },
            help="ReLU MLP on scikit-learn's 8x8 digits (1,797 images, 10 classes)",
        ),
        "optimizer.tasks.builtin.digits:make_mlp_digits",
        300,
    ),
    "cnn-digits": _Builtin(
        OptionSchema(
            {
                "channels": IntListOption((8, 16), 1, 128, 1, 4, "3x3 conv channels per layer"),
                "batch_size": _BATCH,
            },
            help="small ReLU conv net on scikit-learn's 8x8 digits",
        ),
        "optimizer.tasks.builtin.digits:make_cnn_digits",
        300,
    ),
    "mlp-mnist1d": _Builtin(
        OptionSchema(
            {
                "widths": IntListOption((128, 128), 1, 2048, 1, 8, "hidden layer widths"),
                "activation": _ACTIVATION,
                "batch_size": _BATCH,
            },
            help="ReLU MLP on MNIST-1D (generated offline, 4,000 train / 1,000 test)",
        ),
        "optimizer.tasks.builtin.mnist1d:make_mlp_mnist1d",
        1000,
    ),
    "logreg-breast-cancer": _Builtin(
        OptionSchema(
            {"batch_size": IntOption(64, 1, 4096, "minibatch size")},
            help="logistic regression on scikit-learn's breast cancer data (30 features)",
        ),
        "optimizer.tasks.builtin.breast_cancer:make_logreg_breast_cancer",
        200,
    ),
    "char-lm": _Builtin(
        OptionSchema(
            {
                "seq_len": IntOption(32, 4, 256, "characters per training window"),
                "batch_size": IntOption(16, 1, 512, "windows per step"),
                "d_model": IntOption(32, 8, 512, "model width"),
                "n_layers": IntOption(1, 1, 4, "transformer blocks"),
                "n_heads": IntOption(4, 1, 16, "attention heads (must divide d_model)"),
                DATASET_OPTION: DatasetOption(required=False),
            },
            check=_check_char_lm,
            help="tiny causal transformer on the text of Python's pydoc topics, or on your "
            "token or text data set",
        ),
        "optimizer.tasks.builtin.char_lm:make_char_lm",
        500,
    ),
}


def task_names() -> tuple[str, ...]:
    """The built-in task names (tasks with their own data), sorted."""
    return tuple(sorted(_BUILTINS))


def family_names() -> tuple[str, ...]:
    """The model families that train on an uploaded data set, sorted."""
    return tuple(sorted(FAMILIES))


def _schema_and_factory(name: str) -> tuple[OptionSchema, str] | None:
    builtin = _BUILTINS.get(name)
    if builtin is not None:
        return builtin.schema, builtin.factory
    return FAMILIES.get(name)


def default_steps(name: str) -> int | None:
    """A built-in task's or model family's default number of training steps (jax-free);
    None for any other name: the code of a custom task or entry point is not imported to
    find out."""
    builtin = _BUILTINS.get(name)
    if builtin is not None:
        return builtin.default_steps
    return FAMILY_DEFAULT_STEPS.get(name)


def builtin_default_steps(name: str) -> int:
    """A built-in task's or family's default steps, for its implementation (KeyError for
    other names)."""
    steps = default_steps(name)
    if steps is None:
        raise KeyError(name)
    return steps


def task_schema(name: str) -> OptionSchema:
    """The option schema of a built-in task or model family."""
    found = _schema_and_factory(name)
    if found is None:
        raise TaskOptionsError(_unknown(name))
    return found[0]


def task_dataset(name: str, options: Mapping[str, Any]) -> str | None:
    """The data set a (validated) built-in task or family trains on, or None."""
    found = _schema_and_factory(name)
    if found is None or not isinstance(found[0].options.get(DATASET_OPTION), DatasetOption):
        return None
    value = options.get(DATASET_OPTION)
    return value if isinstance(value, str) else None


def _unknown(name: str) -> str:
    return (
        f"unknown task {name!r}: use a built-in task ({', '.join(task_names())}), a model "
        f"family on your data set ({', '.join(family_names())}), "
        f"'package.module:factory', or a name in the entry-point group {ENTRY_POINT_GROUP!r}"
    )


def _entry_point(name: str) -> importlib.metadata.EntryPoint | None:
    # Reading entry points reads distribution metadata only; nothing is imported.
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep
    return None


def _check_json_options(name: str, options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TaskOptionsError(f"options of task {name!r} must be an object with string keys")
    try:
        json.dumps(options, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TaskOptionsError(
            f"options of task {name!r} must be plain JSON (finite numbers): {exc}"
        ) from None
    return dict(options)


def check_task_name(name: str) -> None:
    """Raise :class:`TaskOptionsError` unless ``name`` is a built-in task or family, a
    well-formed ``package.module:factory`` or an installed entry point (nothing imported)."""
    if not isinstance(name, str) or not name:
        raise TaskOptionsError("task name must be a non-empty string")
    if _schema_and_factory(name) is not None:
        return
    if ":" in name:
        if not _FACTORY_RE.match(name):
            raise TaskOptionsError(
                f"custom task {name!r} must have the form 'package.module:factory' "
                "(Python identifiers, dotted)"
            )
        return
    if _entry_point(name) is None:
        raise TaskOptionsError(_unknown(name))


def validate_task_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a task name and its options without importing JAX or user code.

    Returns the options with defaults filled in for built-in tasks; for custom tasks
    (``package.module:factory`` or an entry point) the name's shape is checked and the options,
    which must be plain JSON, are returned unchanged (the factory validates them on the worker).

    Raises:
        TaskOptionsError: naming the task or the option and the allowed values.
    """
    check_task_name(name)
    found = _schema_and_factory(name)
    if found is not None:
        return found[0].validate(name, options)
    return _check_json_options(name, options)


def _resolve(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise TaskOptionsError(f"cannot load task factory {spec!r}: {exc}") from exc
    if not callable(obj):
        raise TaskOptionsError(f"task factory {spec!r} is not callable")
    return cast(Callable[..., Any], obj)


def load_task(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    trust: TaskTrust | None = None,
    dataset: Dataset | None = None,
) -> Task:
    """Build the task ``name`` with ``options`` (imports its implementation, and JAX).

    A custom factory is called as ``factory(**options)`` and must return an object satisfying
    the :class:`~optimizer.tasks.base.Task` protocol. With ``trust`` (a worker passes its
    operator's), a name it does not allow raises :class:`TaskNotAllowed` before anything is
    imported; without it the caller is trusted (a program or notebook naming its own task).
    A task whose options name a data set is given its arrays as ``data=dataset``: the caller
    loads them first (a worker fetches them by hash), and they must be the data set named.
    """
    if trust is not None:
        trust.check(name, where="this worker", setting=WORKER_SETTING)
    validated = validate_task_options(name, options)
    wanted = task_dataset(name, validated)
    if wanted is not None:
        if dataset is None or dataset.sha256 != wanted:
            raise TaskOptionsError(
                f"task {name!r} trains on data set {wanted}: load it and pass it as `dataset`"
            )
        validated = {**validated, "data": dataset}
    found = _schema_and_factory(name)
    if found is not None:
        factory = _resolve(found[1])
    elif ":" in name:
        factory = _resolve(name)
    else:
        ep = _entry_point(name)
        assert ep is not None  # validate_task_options checked it exists
        factory = _resolve(ep.value)
    task = factory(**validated)
    if not isinstance(task, Task) or not isinstance(getattr(task, "meta", None), TaskMeta):
        raise TaskOptionsError(
            f"task factory for {name!r} returned {type(task).__name__}, which does not "
            "implement the Task protocol (init_params, loss, batch, validation_loss, meta)"
        )
    return task
