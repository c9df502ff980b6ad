"""The adapter (optimizer/tasks/adapter.py): a model's ``init``/``apply`` and arrays as a task.

Each example task made with it trains in the population trainer exactly as a hand-written
optax loop on the same functions; Equinox (the ``examples`` extra, installed by ``make
test``) is the model library it is tested with. Bad inputs are refused before training with
a message that names the problem.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optimizer.config import ACPropConfig
from optimizer.population import PopulationTrainer, seed_keys
from optimizer.tasks import load_task
from optimizer.tasks.adapter import FunctionTask, task_from_functions

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tasks.md"
WINE = "optimizer.tasks.examples.wine_mlp:make_wine_mlp"
EQUINOX = "optimizer.tasks.examples.equinox_mlp:make_equinox_mlp"
CONFIG = ACPropConfig(learning_rate=3e-3, eps_root=1e-8)
STEPS = 20


def plain_loop(task: Any, config: ACPropConfig, seed: int, steps: int) -> np.ndarray:
    """optax.contrib.acprop from Python floats on the task's own functions: the loss after
    each update on the next batch, as the trainer reports per step."""
    opt = optax.contrib.acprop(**config.to_dict())
    init_key, data_key = seed_keys(seed)
    params = task.init_params(init_key)
    state = opt.init(params)

    @jax.jit
    def step(params, state, i):  # type: ignore[no-untyped-def]
        loss, grads = jax.value_and_grad(task.loss)(params, task.batch(data_key, i))
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for i in range(1, steps + 2):
        params, state, loss = step(params, state, jnp.int32(i))
        losses.append(float(loss))
    return np.asarray(losses)[1:]


def trained(task: Any, configs: list[ACPropConfig], steps: int = STEPS) -> np.ndarray:
    trainer = PopulationTrainer(
        task, n_configs=len(configs), n_seeds=1, chunk_steps=10, persistent_cache=False
    )
    pop = trainer.start(configs, [0], steps)
    chunks = []
    while not pop.done:
        chunks.append(trainer.advance(pop).step_losses)
    return np.concatenate(chunks)[:steps]  # [steps, K, S]


@pytest.mark.parametrize("name", [WINE, EQUINOX])
def test_example_tasks_train_as_a_plain_optax_loop(name: str) -> None:
    task = load_task(name, {})
    assert isinstance(task, FunctionTask) and task.meta.n_params > 0
    losses = trained(task, [CONFIG])[:, 0, 0]
    expected = plain_loop(task, CONFIG, 0, STEPS)
    np.testing.assert_allclose(losses, expected, rtol=1e-4)
    assert expected[-1] < expected[0]  # it learns
    assert np.isfinite(task.validation_loss(task.init_params(jax.random.key(0))))


def test_the_equinox_example_is_an_equinox_model() -> None:
    import equinox as eqx

    task = load_task(EQUINOX, {"width": 8, "depth": 1})
    params = task.init_params(jax.random.key(1))
    linears = [leaf for leaf in jax.tree.leaves(params) if leaf.ndim == 2]
    assert [w.shape for w in linears] == [(8, 64), (10, 8)]  # Equinox's [out, in] layout
    assert task.meta.n_params == 64 * 8 + 8 + 8 * 10 + 10
    assert eqx.__version__


def test_two_tasks_of_one_name_never_share_a_compiled_program() -> None:
    """Programs are cached per (class, name, options) in a process; two adapter tasks with
    the same name and options but different code train as themselves."""
    x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    y = (3 * x[:, 0]).astype(np.float32)

    def make(activation: Any) -> FunctionTask:
        return task_from_functions(
            lambda key: {"w": jax.random.normal(key, (1, 4)), "v": jnp.ones((4, 1))},
            lambda p, x: activation(x @ p["w"]) @ p["v"],
            x, y, loss="mean_squared_error", batch_size=16, name="same",
        )  # fmt: skip

    first, second = make(jnp.tanh), make(jax.nn.relu)
    assert first.meta.options["instance"] != second.meta.options["instance"]
    for task in (first, second):
        np.testing.assert_allclose(
            trained(task, [CONFIG])[:, 0, 0], plain_loop(task, CONFIG, 0, STEPS), rtol=1e-4
        )


def test_batches_are_jittable_pure_and_pytrees_work() -> None:
    rng = np.random.RandomState(0)
    x = {"a": rng.randn(50, 3).astype(np.float32), "b": rng.randn(50, 2).astype(np.float32)}
    y = rng.randint(0, 2, 50).astype(np.float32)
    task = task_from_functions(
        lambda key: {"w": jnp.zeros(3), "u": jnp.zeros(2)},
        lambda p, x: x["a"] @ p["w"] + x["b"] @ p["u"],
        x, y, loss="logistic", batch_size=8, validation_fraction=0.2,
    )  # fmt: skip
    key = jax.random.key(5)
    eager = task.batch(key, jnp.int32(3))
    jitted = jax.jit(task.batch)(key, jnp.int32(3))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), eager, jitted))
    other = task.batch(key, jnp.int32(4))
    assert not bool((eager[1] == other[1]).all() and (eager[0]["a"] == other[0]["a"]).all())
    assert task.meta.options["n_train"] == 40 and task.meta.options["n_val"] == 10
    # Zero parameters: the logistic loss of logit 0 is log 2 on any data.
    np.testing.assert_allclose(task.validation_loss(task.init_params(key)), np.log(2), rtol=1e-6)


def test_mean_squared_error_and_the_validation_arrays_given() -> None:
    x = np.arange(10, dtype=np.float32)[:, None]
    task = task_from_functions(
        lambda key: jnp.zeros((1,)),
        lambda w, x: x @ w,
        x, 2 * x[:, 0], x_val=x[:2], y_val=np.array([1.0, 3.0]),
        loss="mean_squared_error", batch_size=4, default_steps=77,
    )  # fmt: skip
    assert task.meta.default_steps == 77 and task.meta.n_params == 1
    # Predictions 0 against targets 1 and 3: (1 + 9) / 2.
    assert float(task.validation_loss(jnp.zeros((1,)))) == pytest.approx(5.0)
    same = task_from_functions(
        lambda key: jnp.zeros((1,)), lambda w, x: x @ w, x, 2 * x[:, 0],
        loss="mse", validation_fraction=0,
    )  # fmt: skip
    assert same.x_val.shape == same.x_train.shape == (10, 1)


def _linear(n_out: int) -> tuple[Any, Any]:
    return (lambda key: jnp.zeros((4, n_out)), lambda w, x: x @ w)


X = np.ones((20, 4), np.float32)
LABELS = np.arange(20, dtype=np.int32) % 3

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("loss", {"loss": "hinge"}, "loss must be one of cross_entropy, mean_squared_error"),
    ("lengths", {"y": LABELS[:19]}, "x has 20 examples but y has 19"),
    ("nan", {"x": np.where(np.eye(20, 4) > 0, np.nan, 1.0)}, "x holds NaN or infinite"),
    ("float labels", {"y": LABELS.astype(np.float32)}, "must be integer class labels"),
    ("logistic", {"loss": "logistic", "fns": _linear(1)}, "must be 0 or 1 for the 'logistic'"),
    ("logits", {"fns": _linear(2)}, "apply returns 2 logits, but the labels go up to 2"),
    ("mse shape", {"loss": "mse", "y": X, "fns": _linear(1)}, "one prediction per target"),
    ("val pair", {"x_val": X}, "pass both x_val and y_val, or neither"),
    ("batch", {"batch_size": 0}, "batch_size must be an integer >= 1"),
    ("fraction", {"validation_fraction": 1.0}, "validation_fraction must be in [0, 1)"),
    ("ragged", {"x": {"a": X, "b": X[:5]}}, "needs the same first axis"),
    ("init", {"fns": (lambda key: 1 / 0, lambda w, x: x)}, "init(key) then apply"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_are_refused_with_a_reason(
    case: str, change: dict[str, Any], message: str
) -> None:
    args = {"x": X, "y": LABELS, "fns": _linear(3), "batch_size": 4, **change}
    init, apply = args.pop("fns")
    with pytest.raises(ValueError, match=re.escape(message)):
        task_from_functions(init, apply, args.pop("x"), args.pop("y"), **args)


def test_the_adapter_is_also_acprop_tuner_task_from_functions() -> None:
    import acprop_tuner

    assert acprop_tuner.task_from_functions is task_from_functions


@pytest.mark.parametrize("module", ["wine_mlp", "equinox_mlp"])
def test_docs_show_the_tested_examples(module: str) -> None:
    source = Path(
        importlib.import_module(f"optimizer.tasks.examples.{module}").__file__ or ""
    ).read_text()
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert source in blocks, f"docs/tasks.md must show optimizer/tasks/examples/{module}.py"
