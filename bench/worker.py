"""Worker benchmark: trials per second of real worker processes against a real server, beside
the naive one-trial-at-a-time Optuna objective, on `mlp-digits`, in the same run.

Workload: the MLP 64-128-10 on scikit-learn's digits (the `mlp-digits` task with its default
options), 300 ACProp steps per trial, one seed, a loss report every 15 steps (20 per trial),
TPE over the learning rate (log, [1e-4, 3e-3]) with `eps_root = 1e-8`, a region where no trial
diverges, so both paths train every step of every trial.

- ``service``: a fresh Postgres database, `acprop-tuner serve` as a process, keys made with
  `acprop-tuner keys create`, the job submitted over HTTP, and `acprop-tuner worker` processes
  (capacity K, a cold JAX compilation cache). Trials/s is measured from submission to the
  job's end (everything included: worker start-up, compilation, HTTP, the database), and in
  steady state (after the first population of each worker finished).
- ``naive``: `optuna.create_study(storage=RDBStorage on Postgres, sampler=TPE)` and
  `study.optimize(objective)`, where the objective builds `optax.contrib.acprop(lr, ...)`,
  jits a fresh training step (so every trial compiles), trains the same task with the same
  batches and calls `trial.report` every 15 steps: what a plain Optuna script does.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from acprop_tuner.cli.local import CLI, ServerProcess
from bench._postgres import fresh_database

NAME = "worker"
TITLE = "Worker: trials/s of real worker processes vs a naive Optuna objective (mlp-digits)"
ROOT = Path(__file__).resolve().parents[1]
STEPS, REPORT_EVERY = 300, 15
SERVICE_TRIALS = 96
NAIVE_TRIALS = 16
CONFIGS = ({"workers": 1, "capacity": 8}, {"workers": 1, "capacity": 16})
SPACE = {"learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}, "eps_root": {"value": 1e-8}}


def _cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"acprop-tuner {args[0]} failed: {done.stderr[-1000:]}")
    return done.stdout.strip()


@contextmanager
def _server(env: dict[str, str]) -> Iterator[str]:
    server = ServerProcess(env, cwd=ROOT, quiet=True).start(timeout_s=120)
    try:
        yield server.url
    finally:
        server.stop(timeout_s=30)


def _bench_service(workers: int, capacity: int) -> dict[str, Any]:
    with fresh_database() as url, tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACPROP_TUNER_")}
        env.update(
            {
                "ACPROP_TUNER_DATABASE_URL": url,
                "ACPROP_TUNER_LEASE_RETRY_AFTER_S": "0.2",
                "ACPROP_TUNER_LOG_LEVEL": "warning",
            }
        )
        _cli(["migrate"], env)
        user = _cli(["keys", "create", "--tenant", "bench", "--scope", "user"], env)
        worker_key = _cli(["keys", "create", "--tenant", "bench", "--scope", "worker"], env)
        with (
            _server(env) as base,
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {user}"}, timeout=60
            ) as client,
        ):
            wenv = {k: v for k, v in env.items() if k != "ACPROP_TUNER_DATABASE_URL"}
            wenv.update(
                {"ACPROP_TUNER_WORKER_TOKEN": worker_key, "ACPROP_TUNER_JAX_CACHE_DIR": cache}
            )
            submitted = time.time()
            r = client.post(
                "/api/v1/jobs",
                json={
                    "task": {"name": "mlp-digits", "options": {}},
                    "space": SPACE,
                    "budget": {
                        "n_trials": SERVICE_TRIALS,
                        "steps": STEPS,
                        "seeds": 1,
                        "report_every": REPORT_EVERY,
                    },
                    "sampler": "tpe",
                    "warm_start": False,
                },
            )
            r.raise_for_status()
            job_id = r.json()["id"]
            procs = [
                subprocess.Popen(
                    [
                        *CLI,
                        "worker",
                        "--server",
                        base,
                        "--capacity",
                        str(capacity),
                        "--idle-exit",
                        "2",
                    ],
                    env=wenv,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(workers)
            ]
            try:
                while client.get(f"/api/v1/jobs/{job_id}").json()["status"] != "finished":
                    time.sleep(0.2)
                ended = time.time()
            finally:
                for p in procs:
                    p.wait(60)
        engine = create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT extract(epoch from finished_at) AS finished_s, compile_s, state "
                    "FROM acprop_trials ORDER BY finished_at"
                )
            ).all()
        engine.dispose()
    finished = sorted(float(r.finished_s) for r in rows)
    # Steady state: after each worker's first population (which includes its compilation).
    skip = workers * capacity
    steady = (len(finished) - skip) / (finished[-1] - finished[skip - 1])
    return {
        "workers": workers,
        "capacity": capacity,
        "trials": len(rows),
        "states": sorted({r.state for r in rows}),
        "wall_s": ended - submitted,
        "trials_per_s": len(rows) / (ended - submitted),
        "steady_trials_per_s": steady,
        "max_compile_s": max(float(r.compile_s or 0) for r in rows),
    }


def _bench_naive() -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax
    import optuna

    from optimizer.tasks import load_task

    task = load_task("mlp-digits", {})
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True)
        tx = optax.contrib.acprop(learning_rate=lr, eps_root=1e-8)
        key = jax.random.key(0)
        params = task.init_params(jax.random.fold_in(key, 0))
        data_key = jax.random.fold_in(key, 1)
        state = tx.init(params)

        @jax.jit  # a fresh function per trial: the naive script compiles every trial
        def step(params: Any, state: Any, t: Any) -> tuple[Any, Any, Any]:
            loss, grads = jax.value_and_grad(task.loss)(params, task.batch(data_key, t))
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state, loss

        loss = jnp.nan
        for t in range(1, STEPS + 1):
            params, state, loss = step(params, state, jnp.int32(t))
            if t % REPORT_EVERY == 0:
                trial.report(float(loss), t)
        return float(loss)

    with fresh_database() as url:
        storage = optuna.storages.RDBStorage(url)
        study = optuna.create_study(storage=storage, sampler=optuna.samplers.TPESampler(seed=0))
        study.optimize(objective, n_trials=1)  # warm-up: imports, first XLA initialisation
        started = time.perf_counter()
        study.optimize(objective, n_trials=NAIVE_TRIALS)
        elapsed = time.perf_counter() - started
        storage.remove_session()
        storage.engine.dispose()
    return {"trials": NAIVE_TRIALS, "wall_s": elapsed, "trials_per_s": NAIVE_TRIALS / elapsed}


def run() -> dict[str, Any]:
    naive = _bench_naive()
    service = [_bench_service(c["workers"], c["capacity"]) for c in CONFIGS]
    best = max(service, key=lambda s: s["trials_per_s"])
    return {
        "title": TITLE,
        "workload": {
            "task": "mlp-digits",
            "steps": STEPS,
            "report_every": REPORT_EVERY,
            "seeds": 1,
            "space": SPACE,
            "sampler": "tpe",
            "database": "postgresql",
            "service_trials": SERVICE_TRIALS,
        },
        "naive": naive,
        "service": service,
        "summary": {
            "naive_trials_per_s": round(naive["trials_per_s"], 2),
            "service_trials_per_s": round(best["trials_per_s"], 2),
            "service_steady_trials_per_s": round(best["steady_trials_per_s"], 2),
            "capacity": best["capacity"],
            "workers": best["workers"],
            "speedup_vs_naive": round(best["trials_per_s"] / naive["trials_per_s"], 1),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    s, w, n = result["summary"], result["workload"], result["naive"]
    lines = [
        f"## {result['title']}",
        "",
        f"`mlp-digits` (MLP 64-128-10), {w['steps']} steps per trial, a report every "
        f"{w['report_every']} steps, one seed, TPE, Postgres. The service path is real "
        "processes end to end (`acprop-tuner serve`, `acprop-tuner worker` with a cold "
        "compilation cache, the job submitted over HTTP), timed from submission to the job's "
        "end; steady state excludes each worker's first population (start-up and compilation). "
        "The naive path is `study.optimize` on Optuna's `RDBStorage` with an objective that "
        "jits a fresh ACProp step per trial.",
        "",
        "| path | trials | wall s | trials/s | steady trials/s | compile s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| naive Optuna objective | {n['trials']} | {n['wall_s']:.1f} | "
        f"{n['trials_per_s']:.2f} | | every trial |",
    ]
    for v in result["service"]:
        lines.append(
            f"| {v['workers']} worker(s), K={v['capacity']} | {v['trials']} | {v['wall_s']:.1f} | "
            f"{v['trials_per_s']:.2f} | {v['steady_trials_per_s']:.2f} | "
            f"{v['max_compile_s']:.1f} once |"
        )
    lines += [
        "",
        f"- **{s['speedup_vs_naive']}x the naive objective's trials/s** "
        f"({s['service_trials_per_s']} vs {s['naive_trials_per_s']}, K={s['capacity']}, "
        "start-up and compilation included).",
        "",
    ]
    return "\n".join(lines)
