"""Engine on an accelerator: how the population trainer scales with K where vmap pays, and
whether its numerics hold there. Run on a GPU machine with ``python -m bench engine_gpu``
(not part of the default ``make bench``: on a CPU it would only repeat ``engine`` slowly).

Same workload as ``engine`` (ACProp on mlp-digits 64-128-10, minibatch 128, 300 steps, 20
loss reports per trial, one seed), without Optuna (the per-trial storage cost is the broker
benchmark's subject):

- ``naive``: per trial, ``optax.contrib.acprop`` from Python floats, a freshly jitted step,
  300 dispatches and 20 host reads of the loss;
- ``population K``: K trials per population, K up to 2048; compile time apart, median over
  three populations after the first, with every XLA compilation counted.

Checks beside the figures: a single lane against a plain optax loop over 50 steps on the
built-in tasks at JAX's default float32 matmul precision and at ``"highest"`` (on NVIDIA GPUs
the default lets XLA use TF32), the rosenbrock divergence step, and bitwise repeatability.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optimizer.compile_cache import CompileCounter
from optimizer.config import ACPropConfig
from optimizer.population import PopulationTrainer, seed_keys
from optimizer.tasks import Task, load_task

NAME = "engine_gpu"
TITLE = "Engine on an accelerator: population size K up to 2048"
STEPS, CHUNK = 300, 15
POPULATION_SIZES = (1, 8, 32, 128, 512, 2048)
MATCH_TASKS: dict[str, dict[str, Any]] = {
    "rosenbrock": {},
    "mlp-digits": {},
    "cnn-digits": {"channels": [4], "batch_size": 32},
    "logreg-breast-cancer": {},
    "char-lm": {"d_model": 16, "n_heads": 2, "seq_len": 8, "batch_size": 4},
}
MATCH_CONFIG = ACPropConfig(learning_rate=1e-3, b2=0.99, eps_root=1e-8, weight_decay=1e-4)


def _naive_trial(task: Task, config: ACPropConfig, steps: int, report_every: int) -> list[float]:
    """A plain optax loop of ``steps`` updates; returns every ``report_every``-th loss (the
    loss before that update, as an Optuna objective would report it)."""
    opt = optax.contrib.acprop(**config.to_dict())
    init_key, data_key = seed_keys(3)

    @jax.jit
    def step(params: Any, state: Any, t: jax.Array) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(task.loss)(params, task.batch(data_key, t))
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params = task.init_params(init_key)
    state = opt.init(params)
    losses = []
    for t in range(1, steps + 1):
        params, state, loss = step(params, state, jnp.int32(t))
        if t % report_every == 0:
            losses.append(float(loss))
    return losses


def _match(precision: str) -> dict[str, float]:
    worst = {}
    with jax.default_matmul_precision(precision):
        for name, options in MATCH_TASKS.items():
            task = load_task(name, options)
            # The trainer's step t loss is the loss before update t + 1 of the plain loop.
            expected = np.asarray(_naive_trial(task, MATCH_CONFIG, 51, 1)[1:])
            trainer = PopulationTrainer(task, n_configs=1, n_seeds=1, chunk_steps=25)
            pop = trainer.start([MATCH_CONFIG], [3], 50)
            chunks = [trainer.advance(pop).step_losses[:, 0, 0] for _ in range(2)]
            got = np.concatenate(chunks)
            worst[name] = float(np.max(np.abs(got - expected) / np.abs(expected)))
    return worst


def _population(task: Task, k: int, rng: np.random.Generator) -> dict[str, Any]:
    trainer = PopulationTrainer(task, n_configs=k, n_seeds=1, chunk_steps=CHUNK)

    def configs() -> list[ACPropConfig]:
        return [ACPropConfig(float(lr), eps_root=1e-8) for lr in 10 ** rng.uniform(-4, -2, k)]

    def run_one() -> None:
        pop = trainer.start(configs(), [0], STEPS)
        while not pop.done:
            trainer.advance(pop)  # the host reads the chunk's losses, as a worker does
        trainer.finish(pop)

    started = time.perf_counter()
    run_one()
    first = time.perf_counter() - started
    walls = []
    with CompileCounter() as counter:
        for _ in range(3):
            started = time.perf_counter()
            run_one()
            walls.append(time.perf_counter() - started)
    return {
        "variant": f"population K={k}",
        "k": k,
        "compile_s": trainer.compile_s,
        "first_population_wall_s": first,
        "trials_per_s": k / float(np.median(walls)),
        "backend_compiles": counter.backend_compiles,
    }


def run() -> dict[str, Any]:
    task = load_task("mlp-digits", {})
    _naive_trial(task, ACPropConfig(1e-3, eps_root=1e-8), STEPS, CHUNK)  # warm-up
    walls = []
    for lr in np.geomspace(1e-4, 1e-2, 5):
        started = time.perf_counter()
        _naive_trial(task, ACPropConfig(float(lr), eps_root=1e-8), STEPS, CHUNK)
        walls.append(time.perf_counter() - started)
    naive = {"variant": "naive", "trials_per_s": 1 / float(np.median(walls))}
    rng = np.random.default_rng(0)
    populations = [_population(task, k, rng) for k in POPULATION_SIZES]
    best = max(populations, key=lambda v: v["trials_per_s"])

    rosenbrock = PopulationTrainer(load_task("rosenbrock", {}), n_configs=2, chunk_steps=10)
    diverged = rosenbrock.train(
        [ACPropConfig(1e-4), ACPropConfig(1e-4, eps_root=1e-8)], [0], 100
    ).diverged_at[:, 0]
    repeat = PopulationTrainer(task, n_configs=8, n_seeds=2, chunk_steps=CHUNK)
    grid = [ACPropConfig(float(lr), eps_root=1e-8) for lr in np.geomspace(1e-4, 1e-2, 8)]
    a, b = repeat.train(grid, [0, 1], 60), repeat.train(grid, [0, 1], 60)
    return {
        "name": NAME,
        "title": TITLE,
        "variants": [naive, *populations],
        "checks": {
            "max_rel_loss_diff_vs_plain_optax_default_precision": _match("default"),
            "max_rel_loss_diff_vs_plain_optax_highest_precision": _match("highest"),
            "rosenbrock_diverged_at": {
                "eps_root=1e-16": int(diverged[0]),
                "eps_root=1e-8": int(diverged[1]),
            },
            "bitwise_repeatable": bool(
                np.array_equal(a.final_loss, b.final_loss)
                and np.array_equal(a.validation_loss, b.validation_loss)
            ),
        },
        "summary": {
            "naive_trials_per_s": naive["trials_per_s"],
            "best_population": best["variant"],
            "best_population_trials_per_s": best["trials_per_s"],
            "speedup_vs_naive": best["trials_per_s"] / naive["trials_per_s"],
            "recompiles_after_first": sum(v["backend_compiles"] for v in populations),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    s, c = result["summary"], result["checks"]
    lines = [
        f"## {result['title']}",
        "",
        "The `engine` workload (mlp-digits, 300 steps, 20 reports per trial) on an accelerator, "
        "without Optuna; `python -m bench engine_gpu` on a GPU machine.",
        "",
        "| variant | trials/s | compile (s, once) | XLA compiles while timed |",
        "|---|---:|---:|---:|",
    ]
    for v in result["variants"]:
        compile_s = f"{v['compile_s']:.2f}" if "compile_s" in v else "every trial"
        lines.append(
            f"| {v['variant']} | {v['trials_per_s']:.1f} | {compile_s} | "
            f"{v.get('backend_compiles', '-')} |"
        )

    def worst(d: dict[str, float]) -> str:
        name = max(d, key=lambda n: d[n])
        return f"{d[name]:.1e} ({name})"

    lines += [
        "",
        f"- **Speedup vs naive: {s['speedup_vs_naive']:.0f}x** ({s['best_population']}); "
        f"recompiles after the first population: {s['recompiles_after_first']}.",
        "- Single lane vs a plain optax loop, worst relative loss difference over 50 steps: "
        f"{worst(c['max_rel_loss_diff_vs_plain_optax_default_precision'])} at JAX's default "
        f"float32 matmul precision (TF32 allowed), "
        f"{worst(c['max_rel_loss_diff_vs_plain_optax_highest_precision'])} at `highest`. "
        "Set `jax_default_matmul_precision=highest` where agreement to 1e-4 matters.",
        f"- Rosenbrock divergence step: {c['rosenbrock_diverged_at']}; bitwise repeatable: "
        f"{c['bitwise_repeatable']}.",
        "",
    ]
    return "\n".join(lines)
