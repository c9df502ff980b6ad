"""The reference optimizers a job trains beside its trials (optimizer/references.py, issue
#18, "Must show"): each matches a plain optax loop on a built-in task (the first 50 losses
within 1e-4 relative, from the same initial parameters and batches as a trial of that seed),
and a seed that diverges is detected (at the step a plain loop shows it) and reported by the
worker like a trial's."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optimizer.baselines import CHECK_OPTIMIZER, OPTIMIZERS, Baseline, BaselineError
from optimizer.compile_cache import ProgramCache
from optimizer.population import seed_keys
from optimizer.references import make_reference, train_reference
from optimizer.tasks import Task, load_task
from tests.support.fake_broker import FakeBroker, serve
from worker.client import RetryPolicy, WorkerClient
from worker.loop import WorkerLoop, WorkerOptions

STEPS = 50
LOSS_RTOL = 1e-4
SEEDS = (0, 3)

# Settings away from the defaults where an optimizer has any worth changing, so that the test
# also shows the settings reach optax.
SETTINGS: dict[str, dict[str, float]] = {
    "adam": {"learning_rate": 3e-3, "b2": 0.99},
    "adamw": {"learning_rate": 2e-3, "weight_decay": 1e-2},
    "prodigy": {},
    "dadapt_adamw": {"weight_decay": 1e-3},
    "schedule_free_adamw": {"learning_rate": 5e-3, "warmup_steps": 10},
    CHECK_OPTIMIZER: {"learning_rate": 1e-3, "eps_root": 1e-8},
}


@functools.cache
def task(name: str) -> Task:
    return load_task(name, {})


def plain_loop(
    t: Task, tx: Any, seed: int, steps: int, schedule_free: bool, step: Any = None
) -> tuple[Any, Any]:
    """A hand-written optax loop, one jitted step at a time: ``losses[i]`` is the loss of
    the parameters after ``i`` updates on the batch of update ``i + 1`` (a trial's loss of
    step ``i``), and the final validation loss (at schedule-free's averaged parameters for
    it)."""
    init_key, data_key = seed_keys(seed)
    params = t.init_params(init_key)
    state = tx.init(params)
    step = step or plain_step(t, tx)
    losses = []
    for i in range(1, steps + 2):
        # Step steps + 1 only measures the loss of the last update's parameters.
        new_params, new_state, loss = step(params, state, data_key, jnp.int32(i))
        losses.append(float(loss))
        if i <= steps:
            params, state = new_params, new_state
    if schedule_free:
        params = optax.contrib.schedule_free_eval_params(state, params)
    return np.asarray(losses), float(t.validation_loss(params))


def plain_step(t: Task, tx: Any) -> Any:
    """One jitted step of the plain loop (built once per optimizer, for every seed)."""

    @jax.jit
    def step(params, state, data_key, i):  # type: ignore[no-untyped-def]
        loss, grads = jax.value_and_grad(t.loss)(params, t.batch(data_key, i))
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return step


@pytest.mark.parametrize("name", [*OPTIMIZERS, CHECK_OPTIMIZER])
def test_each_reference_matches_a_plain_optax_loop(name: str) -> None:
    t = task("logreg-breast-cancer")  # minibatches: the batches of each step must line up
    settings = SETTINGS[name]
    result = train_reference(t, name, SEEDS, STEPS, settings=settings, cache=ProgramCache())
    assert result.losses.shape == (STEPS, len(SEEDS))
    assert (result.diverged_at == -1).all()
    tx = make_reference(name, settings)
    step = plain_step(t, tx)
    for s, seed in enumerate(SEEDS):
        expected, validation = plain_loop(
            t, tx, seed, STEPS, name == "schedule_free_adamw", step=step
        )
        np.testing.assert_allclose(result.losses[:, s], expected[1:], rtol=LOSS_RTOL)
        np.testing.assert_allclose(result.final_loss[s], expected[-1], rtol=LOSS_RTOL)
        np.testing.assert_allclose(result.validation_loss[s], validation, rtol=LOSS_RTOL)
    # Two seeds are two different runs (different batches), not one run twice.
    assert not np.allclose(result.losses[:, 0], result.losses[:, 1])


def test_the_settings_change_the_run() -> None:
    t = task("rosenbrock")
    cache = ProgramCache()
    default = train_reference(t, "adam", [0], 20, cache=cache)
    faster = train_reference(t, "adam", [0], 20, settings={"learning_rate": 3e-2}, cache=cache)
    assert cache.misses == 2 and not np.allclose(default.losses, faster.losses)
    again = train_reference(t, "adam", [0], 20, cache=cache)
    assert cache.misses == 2 and again.compile_s == 0.0  # the same program, not compiled again
    np.testing.assert_array_equal(again.losses, default.losses)


def test_a_diverging_seed_stops_where_a_plain_loop_shows_it() -> None:
    """Adam at 0.3 on Rosenbrock jumps to a loss of about 5 at step 2: with a divergence
    factor of 3 that step diverged; the run keeps the parameters of step 1."""
    t = task("rosenbrock")
    settings = {"learning_rate": 0.3}
    expected, _ = plain_loop(t, make_reference("adam", settings), 0, 10, False)
    initial = expected[0]
    bad = [i for i in range(1, 11) if not expected[i] <= initial + 2.0 * abs(initial)]
    assert bad, "the plain loop must leave the bound for this test to mean anything"
    result = train_reference(t, "adam", [0], 10, settings=settings, divergence_factor=3.0)
    assert int(result.diverged_at[0]) == bad[0]
    # The last good parameters: their training loss, and their validation loss.
    np.testing.assert_allclose(result.final_loss[0], expected[bad[0] - 1], rtol=LOSS_RTOL)
    good = train_reference(t, "adam", [0], bad[0] - 1, settings=settings)
    np.testing.assert_allclose(result.validation_loss[0], good.validation_loss[0], rtol=LOSS_RTOL)


def test_invalid_settings_are_refused_before_anything_compiles() -> None:
    t = task("rosenbrock")
    with pytest.raises(BaselineError, match="learning_rate must be a finite number in"):
        train_reference(t, "adam", [0], 5, settings={"learning_rate": -1.0})
    with pytest.raises(BaselineError, match="takes learning_rate, weight_decay, not 'beta'"):
        train_reference(t, "prodigy", [0], 5, settings={"beta": 0.5})
    with pytest.raises(BaselineError, match="unknown baseline optimizer 'sgd'"):
        Baseline("sgd")


def test_the_worker_reports_a_diverged_reference_like_a_trial() -> None:
    """A worker leases baseline runs (no trial left), trains each, and completes it with the
    step each seed diverged at; a run it cannot build is failed with the reason."""
    fb = FakeBroker(
        [],
        task={"name": "rosenbrock", "options": {}},
        steps=10,
        report_every=5,
        seeds=[0, 1],
        baselines=[
            ("adam", {"learning_rate": 2.0}),  # Rosenbrock's loss 1 -> 1601 at step 1
            ("prodigy", {}),
            ("adam", {"learning_rate": -1.0}),  # never sent by the service; must not kill us
        ],
    )
    with serve(fb) as url:
        client = WorkerClient(url, "wk_test", retry=RetryPolicy(attempts=2, base_s=0.01))
        loop = WorkerLoop(client, WorkerOptions("w-test", capacity=4, idle_exit_s=0.2))
        assert loop.run() == 0
    diverged, fine, broken = fb.runs
    assert diverged.state == "finished" and diverged.result is not None
    assert diverged.result["diverged_at_step"] == [1, 1]
    assert diverged.result["validation_losses"] == pytest.approx([1.0, 1.0])  # step 0's params
    assert fine.result is not None and fine.result["diverged_at_step"] == [None, None]
    assert all(v is not None for v in fine.result["validation_losses"])
    assert broken.state == "failed" and broken.error is not None
    assert "learning_rate must be a finite number in (0, 10]" in broken.error
    assert fb.calls_to("/api/v1/leases/report") == []  # baseline runs send no reports
    assert [len(b["results"]) for b in fb.calls_to("/api/v1/leases/complete")] == [1, 1]
    assert loop.stats.baselines == 2


def test_the_check_trains_as_a_trial_of_its_configuration() -> None:
    """ACProp at the recommendation on the baselines' seeds (the check) runs in the program
    of the job's trials: its results are those of a trial of that configuration, exactly,
    and it compiles nothing more."""
    config = {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-16, "eps_root": 1e-8}
    fb = FakeBroker(
        [config, {**config, "learning_rate": 3e-3}],
        task={"name": "rosenbrock", "options": {}},
        steps=10,
        report_every=5,
        seeds=[0, 1],
        baselines=[(CHECK_OPTIMIZER, {**config, "weight_decay": 0.0})],
    )
    with serve(fb) as url:
        client = WorkerClient(url, "wk_test", retry=RetryPolicy(attempts=2, base_s=0.01))
        loop = WorkerLoop(client, WorkerOptions("w-test", capacity=4, idle_exit_s=0.2))
        assert loop.run() == 0
    (check,) = fb.runs
    trial = fb.trials[0]
    assert check.result is not None and trial.result is not None
    for name in ("final_losses", "validation_losses", "diverged_at_step"):
        assert check.result[name] == trial.result[name]
    assert check.result["compile_s"] == 0.0
