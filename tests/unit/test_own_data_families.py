"""The model families on a user's data set (optimizer/tasks/builtin/own_data.py and the char
LM's ``dataset`` option): each satisfies the task contract on the data it accepts, uses the data
set's own validation split or holds out a fixed one, standardises what the module says, and the
generalised conv net is the network ``lax.conv_general_dilated`` computes. (Training against a
plain optax loop: tests/unit/test_population.py.)"""

from __future__ import annotations

import io
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optimizer.datasets import Dataset, Limits, load_dataset, prepare_upload
from optimizer.tasks import Task, load_task
from tests.support.datasets import images, npz, tabular, tokens


def dataset(**arrays: Any) -> Dataset:
    upload = prepare_upload(io.BytesIO(npz(**arrays)), Limits())
    return load_dataset(upload.blob, upload.sha256)


def build(name: str, data: Dataset, **options: Any) -> Task:
    return load_task(name, {"dataset": data.sha256, **options}, dataset=data)


CASES = [
    ("logreg", tabular(), {}, 4 * 3 + 3),
    ("logreg", images(side=4, channels=2), {}, 32 * 2 + 2),
    ("mlp", tabular(), {"widths": [5]}, 4 * 5 + 5 + 5 * 3 + 3),
    ("mlp", {"x": tabular()["x"], "y": np.linspace(-1, 1, 60)}, {"widths": [5]}, 20 + 5 + 5 + 1),
    ("cnn", images(side=5), {"channels": [2]}, 9 * 2 + 2 + 50 * 2 + 2),
    ("char-lm", tokens(vocab=20), {"seq_len": 8, "d_model": 8, "n_heads": 2}, None),
]


@pytest.mark.parametrize(("name", "arrays", "options", "n_params"), CASES)
def test_each_family_meets_the_task_contract(
    name: str, arrays: dict[str, Any], options: dict[str, Any], n_params: int | None
) -> None:
    data = dataset(**arrays)
    task = build(name, data, **options)
    assert isinstance(task, Task) and task.meta.name == name
    assert task.meta.options["dataset"] == data.sha256  # part of the compile-cache key
    params = jax.jit(task.init_params)(jax.random.key(0))  # one compile, not one per op
    counted = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    assert counted == task.meta.n_params
    if n_params is not None:
        assert counted == n_params
    batch = jax.jit(task.batch)(jax.random.key(1), jnp.int32(3))
    loss, grads = jax.jit(jax.value_and_grad(task.loss))(params, batch)
    assert np.isfinite(loss) and np.isfinite(jax.jit(task.validation_loss)(params))
    assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree_util.tree_leaves(grads))


def test_the_data_sets_own_split_is_used_and_inputs_standardised_on_training_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(40, 3))
    x_val = rng.normal(5.0, 3.0, size=(7, 3))
    y = np.linspace(10, 20, 40)
    task: Any = build("mlp", dataset(x=x, y=y, x_val=x_val, y_val=np.linspace(10, 20, 7)))
    assert task.x_train.shape == (40, 3) and task.x_val.shape == (7, 3)
    np.testing.assert_allclose(np.asarray(task.x_train).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(task.x_train).std(0), 1, atol=1e-5)
    expected = (x_val - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(np.asarray(task.x_val), expected, rtol=1e-5)
    # Float targets in the data's units become standardised ones (the tuned learning rate
    # should not depend on the units): the training targets' mean 0 and spread 1.
    assert abs(float(task.y_train.mean())) < 1e-5 and abs(float(task.y_train.std()) - 1) < 1e-5
    assert task.loss_name == "mse"
    # Without x_val: a fixed 20 % held out, the same every time.
    held: Any = build("logreg", dataset(**tabular()))
    again: Any = build("logreg", dataset(**tabular()))
    assert held.x_train.shape == (48, 4) and held.x_val.shape == (12, 4)
    np.testing.assert_array_equal(held.y_val, again.y_val)


def test_the_char_lm_reads_tokens_as_ids_and_text_as_characters() -> None:
    small = {"seq_len": 8, "d_model": 8, "n_heads": 2}
    toks: Any = build("char-lm", dataset(**tokens(length=300, vocab=20)), **small)
    assert toks.vocab == 20 and toks.train_ids.shape == (270,)
    assert int(toks.train_ids.max()) < 20
    words: Any = build(
        "char-lm", dataset(x=np.array(["ab\n"] * 30), x_val=np.array("cab " * 5)), **small
    )
    assert words.vocab == 97 and words.train_ids.shape == (90,)
    np.testing.assert_array_equal(words.train_ids[:3], [ord("a") - 32, ord("b") - 32, 95])
    # The pydoc text stays the default.
    assert load_task("char-lm", small).meta.options == {**small, "batch_size": 16, "n_layers": 1}


def test_the_conv_net_on_non_square_colour_images_matches_lax_conv() -> None:
    from optimizer.tasks.builtin._common import mlp_apply
    from optimizer.tasks.builtin._conv import conv_apply, conv_init

    params = conv_init(jax.random.key(0), (5, 7, 3), [4, 2], 6)
    params["convs"][0]["b"] = jnp.arange(4, dtype=jnp.float32) * 0.1
    x = jax.random.normal(jax.random.key(1), (3, 5, 7, 3))

    @jax.jit
    def reference(params: Any, x: jax.Array) -> jax.Array:
        h = x
        for conv in params["convs"]:
            h = jax.lax.conv_general_dilated(
                h, conv["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            h = jax.nn.relu(h + conv["b"])
        return mlp_apply(params["head"], h.reshape(3, -1), jax.nn.relu)

    np.testing.assert_allclose(
        jax.jit(conv_apply)(params, x), reference(params, x), rtol=1e-5, atol=1e-5
    )
