"""What `acprop-tuner tune` and `acprop_tuner.tune` accept as a task, before anything starts
(acprop_tuner/cli/task_ref.py): names and factories a worker process can import, refused
with a reason otherwise; the probe that reads a custom task's default steps and checks the
device in a child process; and the command line's refusals (exit code 2, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from acprop_tuner.cli.task_ref import TaskProblem, TaskRef, probe, task_ref
from optimizer.tasks.examples.quadratic import make_quadratic
from optimizer.tasks.examples.wine_mlp import make_wine_mlp

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = "optimizer.tasks.examples.quadratic:make_quadratic"


def test_names_and_importable_factories() -> None:
    assert task_ref("mlp-digits") == TaskRef("mlp-digits")
    ref = task_ref(EXAMPLE)
    assert ref.name == EXAMPLE and ref.module == "optimizer.tasks.examples.quadratic"
    assert ref.path == str(REPO)  # where the worker imports it from
    assert task_ref(make_quadratic) == ref
    assert task_ref(make_wine_mlp).name == "optimizer.tasks.examples.wine_mlp:make_wine_mlp"


def _in_main() -> Any:
    def factory() -> None: ...

    factory.__module__ = "__main__"
    factory.__qualname__ = "factory"
    return factory


def _nested() -> Any:
    def factory() -> None: ...

    return factory


REFUSED: list[tuple[str, Any, str]] = [
    ("notebook cell", _in_main(), "is defined in __main__ (a notebook cell"),
    ("nested", _nested(), "not a module-level function"),
    ("lambda", (lambda: None), "not a module-level function"),
    ("task object", None, "pass the factory that builds the task"),
    ("unknown", "no-such-task", "unknown task 'no-such-task'"),
    ("bad shape", "a b:c", "must have the form 'package.module:factory'"),
    ("missing module", "no_such_module_xyz:make", "cannot find the module 'no_such_module_xyz'"),
    ("not a task", 42, "a task is a name or a factory function, not int"),
]


@pytest.mark.parametrize(("case", "task", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_what_a_worker_cannot_load_is_refused_saying_why(
    case: str, task: Any, message: str
) -> None:
    if case == "task object":
        task = make_quadratic(dim=2)
    with pytest.raises(TaskProblem, match=message.replace("(", r"\(")):
        task_ref(task)


def test_a_redefined_factory_is_refused() -> None:
    def make_quadratic(**options: Any) -> Any: ...

    make_quadratic.__module__ = "optimizer.tasks.examples.quadratic"
    make_quadratic.__qualname__ = "make_quadratic"
    with pytest.raises(TaskProblem, match="does not name this factory"):
        task_ref(make_quadratic)


def test_the_probe_reads_default_steps_and_checks_options() -> None:
    # A built-in on the CPU: known without JAX or a child process.
    assert probe(task_ref("logreg-breast-cancer"), {}).default_steps == 200
    with pytest.raises(TaskProblem, match="option 'batch_size' must be"):
        probe(task_ref("logreg-breast-cancer"), {"batch_size": 0})
    # A custom task is built in a child process: its default steps, and its own refusal.
    info = probe(task_ref(EXAMPLE), {"dim": 3})
    assert (info.default_steps, info.n_params) == (200, 3)
    with pytest.raises(TaskProblem, match="cannot be built: ValueError: need 1 <= dim"):
        probe(task_ref(EXAMPLE), {"dim": 0})


def test_a_device_that_is_not_there_is_refused_before_anything_starts() -> None:
    # No machine has GPU 99; on a CPU-only machine any GPU index says the same.
    with pytest.raises(TaskProblem, match=r"--device gpu:99: JAX cannot use that GPU"):
        probe(task_ref("rosenbrock"), {}, device="gpu:99")
    with pytest.raises(TaskProblem, match="--device must be 'cpu' or 'gpu:N'"):
        probe(task_ref("rosenbrock"), {}, device="tpu")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rosenbrock", "--options", "{nope"], "--options is not valid JSON"),
        (["rosenbrock", "--options", "[1]"], "--options must be a JSON object"),
        (["rosenbrock", "--trials", "0"], "trials must be an integer >= 1"),
        (["rosenbrock", "--options", '{"a": 99}'], "option 'a' must be a finite number"),
        (["no-such-task"], "unknown task 'no-such-task'"),
        (["rosenbrock", "--device", "gpu:99"], "--device gpu:99: JAX cannot use that GPU"),
    ],
)
def test_the_command_refuses_bad_input_with_exit_code_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    env = {**os.environ, "ACPROP_TUNER_DATA_DIR": str(tmp_path / "data")}
    env.pop("ACPROP_TUNER_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "acprop_tuner", "tune", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # nothing was started or written
