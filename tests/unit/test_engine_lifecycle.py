"""The population lifecycle: totals that are not multiples of the chunk, pruning, padding,
common random numbers, determinism, and the persistent compilation cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optimizer.compile_cache import ProgramCache
from optimizer.config import ACPropConfig
from optimizer.population import PopulationTrainer
from optimizer.tasks import Task, TaskMeta, load_task

CONFIGS = [ACPropConfig(lr, eps_root=1e-8) for lr in (3e-4, 1e-3, 3e-3)]


@pytest.fixture(scope="module")
def digits() -> Task:
    return load_task("mlp-digits", {"widths": [32], "batch_size": 32})


def make(task: Task, k: int = 3, s: int = 2, c: int = 10, **kw: object) -> PopulationTrainer:
    return PopulationTrainer(
        task, n_configs=k, n_seeds=s, chunk_steps=c, persistent_cache=False, **kw
    )


def losses_of(tr: PopulationTrainer, configs, seeds, total):  # type: ignore[no-untyped-def]
    pop = tr.start(configs, seeds, total)
    chunks = [tr.advance(pop) for _ in range(-(-total // tr.chunk_steps))]
    assert pop.done
    return pop, chunks, tr.finish(pop)


def test_total_not_a_multiple_of_the_chunk(digits: Task) -> None:
    tr = make(digits)
    short_pop, short_chunks, short = losses_of(tr, CONFIGS, [0, 1], 23)
    _, long_chunks, _ = losses_of(tr, CONFIGS, [0, 1], 30)
    assert short_pop.step == 23 and [c.step for c in short_chunks] == [10, 20, 23]
    assert (short.last_finite_step == 23).all()
    # Steps past the total are masked, not taken: the first 23 steps are the same program's.
    short_losses = np.concatenate([c.step_losses for c in short_chunks])[:23]
    long_losses = np.concatenate([c.step_losses for c in long_chunks])[:23]
    np.testing.assert_array_equal(short_losses, long_losses)
    assert not short_chunks[-1].step_good[3:].any()
    with pytest.raises(ValueError, match="finished its 23 steps"):
        tr.advance(short_pop)


def test_freeze_stops_pruned_lanes_only(digits: Task) -> None:
    tr = make(digits)
    pop = tr.start(CONFIGS, [0, 1], 30)
    tr.advance(pop)
    tr.freeze(pop, [True, False, False])
    tr.freeze(pop, np.array([[False, False], [False, False], [False, True]]))
    chunk = tr.advance(pop)
    assert not chunk.step_good[:, 0].any() and not chunk.step_good[:, 2, 1].any()
    assert chunk.step_good[:, 1].all() and chunk.step_good[:, 2, 0].all()
    tr.advance(pop)
    final = tr.finish(pop)
    np.testing.assert_array_equal(final.last_finite_step, [[10, 10], [30, 30], [30, 10]])
    np.testing.assert_array_equal(final.pruned, [[True, True], [False, False], [False, True]])
    assert (final.diverged_at == -1).all()
    assert [r["pruned"] for r in final.records()] == [True, False, False]
    with pytest.raises(ValueError, match="lanes must have shape"):
        tr.freeze(pop, [True, False])


def test_fewer_configs_than_lanes_are_padded(digits: Task) -> None:
    tr = make(digits)  # K = 3
    pop, chunks, final = losses_of(tr, CONFIGS[:2], [0, 1], 20)
    assert final.final_loss.shape == (2, 2) and chunks[0].step_losses.shape == (10, 2, 2)
    # The padding lane is frozen and never trains; the real lanes are unaffected by it.
    assert np.asarray(pop.state.frozen)[2:].all()
    _, full_chunks, full = losses_of(tr, CONFIGS, [0, 1], 20)
    np.testing.assert_array_equal(final.final_loss, full.final_loss[:2])
    np.testing.assert_array_equal(chunks[-1].step_losses, full_chunks[-1].step_losses[:, :2])
    with pytest.raises(ValueError, match="need 1 to 3 configurations"):
        tr.start(CONFIGS * 2, [0, 1], 20)
    with pytest.raises(ValueError, match="need exactly 2 seeds"):
        tr.start(CONFIGS, [0], 20)


def test_common_random_numbers(digits: Task) -> None:
    tr = make(digits)
    _, _, final = losses_of(tr, [CONFIGS[1]] * 3, [4, 5], 20)
    # The same seed gives the same start and batches to every configuration ...
    np.testing.assert_allclose(final.initial_loss[0], final.initial_loss[1], rtol=0)
    for k in (1, 2):
        np.testing.assert_allclose(final.final_loss[k], final.final_loss[0], rtol=1e-6)
    # ... and different seeds differ.
    assert final.final_loss[0, 0] != final.final_loss[0, 1]


def test_determinism_is_bitwise(digits: Task) -> None:
    runs = []
    for cache in (None, ProgramCache()):  # the shared programs, and a separate compilation
        tr = make(digits, cache=cache)
        for _ in range(2):
            _, chunks, final = losses_of(tr, CONFIGS, [0, 1], 20)
            runs.append((np.concatenate([c.step_losses for c in chunks]), final))
    reference_losses, reference = runs[0]
    for losses, final in runs[1:]:
        np.testing.assert_array_equal(losses, reference_losses)
        for field in ("final_loss", "last_finite_loss", "validation_loss", "diverged_at"):
            np.testing.assert_array_equal(getattr(final, field), getattr(reference, field))


class _NaNFromTheStart:
    """A task whose loss is NaN everywhere: no finite loss ever exists."""

    meta = TaskMeta("nan-from-the-start", 2, 10, 1)

    def init_params(self, key: jax.Array) -> jax.Array:
        return jnp.ones((2,))

    def batch(self, key: jax.Array, step: jax.Array) -> tuple[()]:
        return ()

    def loss(self, params: jax.Array, batch: tuple[()]) -> jax.Array:
        return jnp.sum(params**2) * jnp.nan

    def validation_loss(self, params: jax.Array) -> jax.Array:
        return self.loss(params, ())


def test_initial_non_finite_loss_is_divergence_at_step_0() -> None:
    tr = make(_NaNFromTheStart(), k=1, s=1)
    _, _, final = losses_of(tr, [CONFIGS[0]], [0], 10)
    assert final.diverged_at[0, 0] == 0
    assert np.isnan(final.final_loss[0, 0])  # no finite value exists: NaN, never a number
    record = final.records()[0]
    assert record["final_losses"] == [None] and record["diverged_at_step"] == [0]


def test_persistent_compilation_cache(tmp_path: Path) -> None:
    code = (
        "from optimizer.config import ACPropConfig;"
        "from optimizer.population import PopulationTrainer;"
        "from optimizer.tasks import load_task;"
        "t = PopulationTrainer(load_task('rosenbrock', {}), n_configs=2, chunk_steps=5);"
        "t.train([ACPropConfig(1e-3)] * 2, [0], 5)"
    )
    env = {**os.environ, "ACPROP_TUNER_JAX_CACHE_DIR": str(tmp_path / "jax")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    entries = list((tmp_path / "jax").iterdir())
    assert len(entries) >= 3, entries  # init, chunk and validation programs
