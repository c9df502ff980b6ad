"""The task registry, option validation, the built-in tasks' contract and custom tasks
(``package.module:factory`` and the ``acprop_tuner.tasks`` entry-point group)."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optimizer.tasks import (
    ENTRY_POINT_GROUP,
    Task,
    TaskOptionsError,
    load_task,
    task_names,
    task_schema,
    validate_task_options,
)
from optimizer.tasks.options import DatasetOption

BUILTINS = (
    "char-lm",
    "cnn-digits",
    "logreg-breast-cancer",
    "mlp-digits",
    "mlp-mnist1d",
    "rosenbrock",
)
EXAMPLE = "optimizer.tasks.examples.quadratic:make_quadratic"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "tasks.md"


def test_task_names() -> None:
    assert task_names() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_defaults_are_filled_and_valid(name: str) -> None:
    options = validate_task_options(name, None)
    # A data set (char-lm can take one) has no default: left out unless given.
    schema = task_schema(name).options
    assert set(options) == {n for n, spec in schema.items() if not isinstance(spec, DatasetOption)}
    assert validate_task_options(name, options) == options


def test_given_options_are_kept() -> None:
    options = validate_task_options("mlp-digits", {"widths": [16], "batch_size": 32})
    assert options == {"widths": [16], "activation": "relu", "batch_size": 32}


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        (
            "mlp-digits",
            {"widths": [0]},
            r"option 'widths' must be a list of 1 to 8 integers, each in \[1, 2048\]",
        ),
        ("mlp-digits", {"widths": [64] * 9}, r"'widths' must be a list of 1 to 8 integers"),
        ("mlp-digits", {"widths": 64}, r"'widths' must be a list"),
        ("mlp-digits", {"batch_size": 0}, r"'batch_size' must be an integer in \[1, 4096\]"),
        ("mlp-digits", {"batch_size": 10**6}, r"'batch_size' must be an integer in \[1, 4096\]"),
        ("mlp-digits", {"batch_size": 12.5}, r"'batch_size' must be an integer"),
        ("mlp-digits", {"batch_size": True}, r"'batch_size' must be an integer"),
        (
            "mlp-digits",
            {"activation": "sigmoid"},
            r"'activation' must be one of 'relu', 'tanh', 'gelu'",
        ),
        (
            "mlp-digits",
            {"depth": 3},
            r"task 'mlp-digits' has no option 'depth'; allowed options: widths",
        ),
        ("mlp-mnist1d", {"widths": [4096]}, r"'widths' .* each in \[1, 2048\]"),
        (
            "cnn-digits",
            {"channels": [8] * 5},
            r"'channels' must be a list of 1 to 4 integers, each in \[1, 128\]",
        ),
        (
            "logreg-breast-cancer",
            {"batch_size": -1},
            r"'batch_size' must be an integer in \[1, 4096\]",
        ),
        ("char-lm", {"seq_len": 1024}, r"'seq_len' must be an integer in \[4, 256\]"),
        ("char-lm", {"n_layers": 5}, r"'n_layers' must be an integer in \[1, 4\]"),
        ("char-lm", {"n_heads": 3}, r"'n_heads' must divide option 'd_model' \(32\)"),
        ("rosenbrock", {"b": float("nan")}, r"'b' must be a finite number in \[0, 1000\]"),
        ("rosenbrock", {"a": 1e9}, r"'a' must be a finite number in \[-10, 10\]"),
        ("rosenbrock", [1, 2], r"options of task 'rosenbrock' must be an object"),
        ("resnet", {}, r"unknown task 'resnet': use a built-in task \(char-lm, "),
        ("not a module:f", {}, r"must have the form 'package.module:factory'"),
        ("pkg.mod:", {}, r"must have the form 'package.module:factory'"),
        ("pkg.mod:f", {"x": float("inf")}, r"plain JSON \(finite numbers\)"),
    ],
)
def test_bad_options_name_the_option_and_range(name: str, options: Any, expected: str) -> None:
    with pytest.raises(TaskOptionsError, match=expected):
        validate_task_options(name, options)


def test_custom_factory_names_are_not_imported_when_validated() -> None:
    name = "surely_not_installed_pkg.models:make"
    assert validate_task_options(name, {"width": 3}) == {"width": 3}
    assert "surely_not_installed_pkg" not in sys.modules
    with pytest.raises(TaskOptionsError, match="cannot load task factory"):
        load_task(name, {})


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {name: load_task(name, {}) for name in BUILTINS}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_task_contract(tasks: dict[str, Task], name: str) -> None:
    task = tasks[name]
    assert isinstance(task, Task)
    meta = task.meta
    assert meta.name == name
    assert meta.options == validate_task_options(name, {})
    assert meta.default_steps > 0 and meta.default_batch_size > 0

    params = task.init_params(jax.random.key(0))
    leaves = jax.tree_util.tree_leaves(params)
    assert sum(leaf.size for leaf in leaves) == meta.n_params
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)

    key = jax.random.key(1)
    batch = jax.jit(task.batch)(key, jnp.int32(3))
    # A batch is a pure function of (key, step).
    for a, b in zip(
        jax.tree_util.tree_leaves(batch),
        jax.tree_util.tree_leaves(task.batch(key, jnp.int32(3))),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    if name not in ("rosenbrock",):  # full batch: every step has the same (empty) batch
        other = task.batch(key, jnp.int32(4))
        assert any(
            not np.array_equal(a, b)
            for a, b in zip(
                jax.tree_util.tree_leaves(batch), jax.tree_util.tree_leaves(other), strict=True
            )
        )
    loss = jax.jit(task.loss)(params, batch)
    assert loss.shape == () and np.isfinite(loss)
    validation = jax.jit(task.validation_loss)(params)
    assert validation.shape == () and np.isfinite(validation)


def test_seeds_change_initial_parameters(tasks: dict[str, Task]) -> None:
    task = tasks["mlp-digits"]
    a = task.init_params(jax.random.key(0))
    b = task.init_params(jax.random.key(1))
    assert not np.array_equal(a[0]["w"], b[0]["w"])


def test_rosenbrock_is_the_issue_1132_reproducer(tasks: dict[str, Task]) -> None:
    task = tasks["rosenbrock"]
    params = task.init_params(jax.random.key(5))
    np.testing.assert_array_equal(params, np.zeros(2))
    assert float(task.loss(params, task.batch(jax.random.key(0), 1))) == 1.0
    assert float(task.loss(jnp.array([1.0, 1.0]), ())) == 0.0


def test_cnn_digits_matches_lax_conv() -> None:
    # The conv net computes its convolutions as im2col matmuls (fast when vmapped over
    # lanes); it must be the same network as lax.conv_general_dilated with 'SAME' padding.
    from optimizer.tasks.builtin._common import mlp_apply
    from optimizer.tasks.builtin.digits import _conv_apply, _conv_init

    params = _conv_init(jax.random.key(0), [3, 5])
    params["convs"][0]["b"] = jnp.arange(3, dtype=jnp.float32) * 0.1
    x = jax.random.normal(jax.random.key(1), (7, 64))
    h = x.reshape(7, 8, 8, 1)
    for conv in params["convs"]:
        h = jax.lax.conv_general_dilated(
            h, conv["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        h = jax.nn.relu(h + conv["b"])
    expected = mlp_apply(params["head"], h.reshape(7, -1), jax.nn.relu)
    np.testing.assert_allclose(_conv_apply(params, x), expected, rtol=1e-5, atol=1e-5)


def test_options_change_the_model() -> None:
    small = load_task("mlp-digits", {"widths": [8]})
    assert small.meta.n_params == 64 * 8 + 8 + 8 * 10 + 10
    lm = load_task("char-lm", {"d_model": 16, "n_heads": 2, "seq_len": 8, "batch_size": 4})
    assert lm.batch(jax.random.key(0), 1).shape == (4, 9)


# -- custom tasks ------------------------------------------------------------------------


def test_custom_factory_task() -> None:
    task = load_task(EXAMPLE, {"dim": 4, "batch_size": 8})
    assert task.meta.n_params == 4
    params = task.init_params(jax.random.key(0))
    assert np.isfinite(task.loss(params, task.batch(jax.random.key(0), 1)))


def test_factory_that_is_not_a_task_is_refused() -> None:
    with pytest.raises(TaskOptionsError, match="does not implement the Task protocol"):
        load_task("collections:OrderedDict", {})


@pytest.fixture
def entry_point_dist(tmp_path: Path) -> Iterator[str]:
    """An installed-looking distribution that registers the example task by entry point."""
    dist = tmp_path / "acprop_example_tasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acprop-example-tasks\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nexample-quadratic = {EXAMPLE}\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield "example-quadratic"
    finally:
        sys.path.remove(str(tmp_path))


def test_entry_point_task(entry_point_dist: str) -> None:
    assert validate_task_options(entry_point_dist, {"dim": 3}) == {"dim": 3}
    task = load_task(entry_point_dist, {"dim": 3})
    assert task.meta.n_params == 3


def test_entry_point_names_are_unknown_without_the_distribution() -> None:
    with pytest.raises(TaskOptionsError, match="unknown task 'example-quadratic'"):
        validate_task_options("example-quadratic", {})


def test_docs_show_the_tested_example() -> None:
    text = DOCS.read_text()
    module = importlib.import_module("optimizer.tasks.examples.quadratic")
    source = Path(module.__file__ or "").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert source in blocks, (
        "docs/tasks.md must show optimizer/tasks/examples/quadratic.py verbatim"
    )
    assert EXAMPLE in text and ENTRY_POINT_GROUP in text


def test_docs_training_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The snippet turns on the persistent compilation cache: keep it out of the user's home.
    monkeypatch.setenv("ACPROP_TUNER_JAX_CACHE_DIR", str(tmp_path / "jax"))
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    snippet = next(b for b in blocks if "PopulationTrainer(" in b)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOCS), "exec"), namespace)
    result = namespace["result"]
    assert result.final_loss.shape == (4, 2)
    assert np.isfinite(result.final_loss).all()
    # Least squares from a small init: training reduces the loss for the sane learning rates.
    assert (
        result.validation_loss[:2]
        < namespace["task"].validation_loss(namespace["task"].init_params(jax.random.key(0)))
    ).all()
