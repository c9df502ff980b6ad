"""Engine benchmark: tuning trials per second on ``mlp-digits``, naive Optuna objective versus
the population trainer, in the same run on the same machine.

Workload (issue #2): ACProp on the MLP 64-128-10 on scikit-learn digits, minibatch 128, 300
steps per trial, 20 loss reports per trial (one every 15 steps), one seed per trial.

- ``naive``: what an Optuna user writes: an objective that builds
  ``optax.contrib.acprop(lr, ...)`` from the trial's Python floats, jits a fresh training step
  (the floats are compile-time constants, so every trial compiles), trains step by step and
  calls ``trial.report`` 20 times.
- ``population K``: the same trials asked from the same kind of study, K at a time, trained by
  :class:`optimizer.population.PopulationTrainer` (one compiled chunk of 15 steps, reused by
  every population), with 20 batched reports per trial. Compile time is measured apart (the
  first population of each K) and steady-state throughput over the following populations,
  during which every JAX trace and XLA compilation is counted.

Throughput is the median over trials (naive) or populations, because the benchmark machine may
be shared: a median ignores the moments another process had the cores.

Achieved GFLOP/s use XLA's cost analysis of one training step (forward, backward, update),
times the steps run, against the machine's measured float32 matmul ceiling.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optuna

from optimizer.compile_cache import CompileCounter
from optimizer.config import ACPropConfig
from optimizer.population import PopulationTrainer, seed_keys
from optimizer.tasks import Task, load_task

NAME = "engine"
TITLE = "Engine: trials per second, naive Optuna objective vs population trainer"
STEPS = 300
REPORTS = 20
CHUNK = STEPS // REPORTS
POPULATION_SIZES = (1, 8, 32, 128)
NAIVE_TRIALS = 8
# Steady-state populations after the first (compiling) one: at least this many trials and
# this many populations per K, so small K are timed over more than a fraction of a second.
MIN_TRIALS, MIN_POPULATIONS = 128, 2


def _space(trial: optuna.Trial) -> ACPropConfig:
    # A tuning job's search space; eps_root in the safe range so throughput is measured on
    # trials that train to the end (divergence would only make the population faster).
    return ACPropConfig(
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        b1=trial.suggest_float("b1", 0.8, 0.95),
        b2=trial.suggest_float("b2", 0.99, 0.9999),
        eps_root=trial.suggest_float("eps_root", 1e-10, 1e-6, log=True),
    )


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def _naive(task: Task) -> dict[str, Any]:
    init_key, data_key = seed_keys(0)

    def objective(trial: optuna.Trial) -> float:
        config = _space(trial)
        opt = optax.contrib.acprop(**config.to_dict())  # Python floats: constants in the step

        @jax.jit
        def step(params: Any, state: Any, t: jax.Array) -> tuple[Any, Any, jax.Array]:
            loss, grads = jax.value_and_grad(task.loss)(params, task.batch(data_key, t))
            updates, state = opt.update(grads, state, params)
            return optax.apply_updates(params, updates), state, loss

        params = task.init_params(init_key)
        state = opt.init(params)
        loss = jnp.nan
        for t in range(1, STEPS + 1):
            params, state, loss = step(params, state, jnp.int32(t))
            if t % CHUNK == 0:
                trial.report(float(loss), t)
        return float(loss)

    study = _study()
    study.optimize(objective, n_trials=1)  # warm-up: data on device, first-use costs
    walls = []
    with CompileCounter() as counter:
        for _ in range(NAIVE_TRIALS):
            started = time.perf_counter()
            study.optimize(objective, n_trials=1)
            walls.append(time.perf_counter() - started)
    return {
        "variant": "naive",
        "trials": NAIVE_TRIALS,
        "wall_s": sum(walls),
        "median_trial_wall_s": float(np.median(walls)),
        # Medians, here and for populations: the machine is shared, and a median ignores the
        # moments another process took the cores.
        "trials_per_s": 1.0 / float(np.median(walls)),
        "backend_compiles": counter.backend_compiles,
    }


def _population(task: Task, k: int) -> dict[str, Any]:
    trainer = PopulationTrainer(task, n_configs=k, n_seeds=1, chunk_steps=CHUNK)
    study = _study()

    def run_population() -> None:
        trials = [study.ask() for _ in range(k)]
        configs = [_space(trial) for trial in trials]
        pop = trainer.start(configs, [0], STEPS)
        while not pop.done:
            chunk = trainer.advance(pop)
            for trial, loss in zip(trials, chunk.loss[:, 0].tolist(), strict=True):
                trial.report(loss, chunk.step)
        final = trainer.finish(pop)
        for trial, loss in zip(trials, final.last_finite_loss[:, 0].tolist(), strict=True):
            study.tell(trial, loss)

    started = time.perf_counter()
    run_population()
    first_wall = time.perf_counter() - started
    compile_s = trainer.compile_s
    n_populations = max(MIN_POPULATIONS, math.ceil(MIN_TRIALS / k))
    walls = []
    with CompileCounter() as counter:
        for _ in range(n_populations):
            started = time.perf_counter()
            run_population()
            walls.append(time.perf_counter() - started)
    return {
        "variant": f"population K={k}",
        "k": k,
        "trials": k * n_populations,
        "populations": n_populations,
        "wall_s": sum(walls),
        "median_population_wall_s": float(np.median(walls)),
        "trials_per_s": k / float(np.median(walls)),
        "compile_s": compile_s,
        "first_population_wall_s": first_wall,
        "backend_compiles": counter.backend_compiles,
        "traces": counter.traces,
    }


def _step_flops(task: Task) -> float:
    """XLA's FLOP count of one training step of one lane (batch, forward, backward, update)."""
    opt = optax.inject_hyperparams(optax.contrib.acprop)(learning_rate=1e-3)
    init_key, data_key = seed_keys(0)
    params = task.init_params(init_key)

    def step(params: Any, state: Any, t: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(task.loss)(params, task.batch(data_key, t))
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    compiled = jax.jit(step).lower(params, opt.init(params), jnp.int32(1)).compile()
    analysis: Any = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX returned one dict per device
        analysis = analysis[0]
    if not analysis or "flops" not in analysis:
        raise RuntimeError("XLA's cost analysis reports no FLOP count on this backend")
    return float(analysis["flops"])


def _matmul_ceiling(n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul GFLOP/s: the best of a few n x n products."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def run() -> dict[str, Any]:
    task = load_task("mlp-digits", {"widths": [64, 128], "batch_size": 128})
    flops_per_step = _step_flops(task)
    ceiling = _matmul_ceiling()
    naive = _naive(task)
    variants = [naive] + [_population(task, k) for k in POPULATION_SIZES]
    for v in variants:
        gflops = v["trials_per_s"] * STEPS * flops_per_step / 1e9
        v["gflop_per_s"] = gflops
        v["fraction_of_matmul_ceiling"] = gflops / ceiling
    populations = variants[1:]
    best = max(populations, key=lambda v: v["trials_per_s"])
    return {
        "name": NAME,
        "title": TITLE,
        "workload": {
            "task": "mlp-digits",
            "task_options": dict(task.meta.options),
            "n_params": task.meta.n_params,
            "steps_per_trial": STEPS,
            "reports_per_trial": REPORTS,
            "seeds_per_trial": 1,
            "flops_per_step": flops_per_step,
        },
        "matmul_ceiling_gflop_per_s": ceiling,
        "variants": variants,
        "summary": {
            "naive_trials_per_s": naive["trials_per_s"],
            "best_population": best["variant"],
            "best_population_trials_per_s": best["trials_per_s"],
            "speedup_vs_naive": best["trials_per_s"] / naive["trials_per_s"],
            "recompiles_after_first": sum(v["backend_compiles"] for v in populations),
            "traces_after_first": sum(v["traces"] for v in populations),
            "target_speedup": 15,
        },
    }


def markdown(result: dict[str, Any]) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    s, w = result["summary"], result["workload"]
    lines = [
        f"## {result['title']}",
        "",
        f"ACProp on `{w['task']}` {w['task_options']} ({w['n_params']:,} parameters), "
        f"{w['steps_per_trial']} steps per trial, {w['reports_per_trial']} loss reports per "
        "trial, one seed. The naive variant is an Optuna objective that builds "
        "`optax.contrib.acprop` from the trial's floats and jits a fresh step per trial; the "
        "population variants train K trials at once in one compiled program reused by every "
        "population (compile time apart, throughput over the populations after the first).",
        "",
        "| variant | trials/s | compile (s, once) | GFLOP/s | of matmul ceiling | XLA compiles while timed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for v in result["variants"]:
        compile_s = f"{v['compile_s']:.2f}" if "compile_s" in v else "every trial"
        lines.append(
            f"| {v['variant']} | {v['trials_per_s']:.2f} | {compile_s} | "
            f"{v['gflop_per_s']:.2f} | {100 * v['fraction_of_matmul_ceiling']:.1f} % | "
            f"{v['backend_compiles']} |"
        )
    lines += [
        "",
        f"- **Speedup vs naive: {s['speedup_vs_naive']:.1f}x** ({s['best_population']}, "
        f"{s['best_population_trials_per_s']:.1f} vs {s['naive_trials_per_s']:.2f} trials/s; "
        f"target {s['target_speedup']}x).",
        f"- Recompiles after the first population: {s['recompiles_after_first']} "
        f"(JAX traces: {s['traces_after_first']}).",
        f"- Measured float32 matmul ceiling: {result['matmul_ceiling_gflop_per_s']:.1f} GFLOP/s; "
        f"one training step is {w['flops_per_step'] / 1e6:.2f} MFLOP (XLA cost analysis).",
        "",
    ]
    return "\n".join(lines)
