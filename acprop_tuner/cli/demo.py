"""``acprop-tuner demo``: the main job end to end on the embedded database (SQLite).

What a user does by hand, in one command, with real processes:

1. a fresh data directory and SQLite database, migrated (``acprop-tuner migrate``);
2. a user key and a worker key (``acprop-tuner keys create``);
3. the API server (``acprop-tuner serve``) on a free local port;
4. worker processes (``acprop-tuner worker``) that lease trials and train them as one
   compiled JAX population each;
5. a tuning job over REST (ACProp on ``mlp-digits`` by default, the default search space:
   learning rate and eps_root, a warm-start sweep first, then TPE), followed live;
6. the recommendation with its evidence, and the line of optax to paste.

``acprop-tuner demo --sweep`` runs only the engine: a learning-rate sweep of ACProp with
``eps_root`` 1e-16 against 1e-8, as one population, with no server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from acprop_tuner.cli.local import CLI, ServerProcess

DEMO_DIR_ENV = "ACPROP_TUNER_DEMO_DIR"


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo: `acprop-tuner {' '.join(args)}` failed:\n{done.stderr}")
    return done.stdout.strip()


def _progress_line(job: dict[str, Any], started: float) -> str:
    p = job.get("progress") or {}
    best = job.get("best_value")
    best_text = f"{best:.4f}" if isinstance(best, int | float) else "-"
    runs = job.get("baselines") or []
    done = sum(b["state"] in ("complete", "diverged", "failed") for b in runs)
    return (
        f"  {time.perf_counter() - started:6.1f}s  {job['status']:<9} "
        f"finished {p.get('finished', 0):>3}/{p.get('n_trials', '?')}  "
        f"complete {p.get('complete', 0):>3}  diverged {p.get('diverged', 0):>3}  "
        f"running {p.get('running', 0):>3}  best loss {best_text}"
        + (f"  baselines {done}/{len(runs)}" if runs else "")
    )


def run_service_demo(args: argparse.Namespace) -> int:
    import httpx

    task = args.task
    n_trials = args.trials or 48
    root = Path(os.environ.get(DEMO_DIR_ENV) or Path.cwd() / ".acprop-demo")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = {
        **os.environ,
        "ACPROP_TUNER_DATA_DIR": str(root),
        "ACPROP_TUNER_DATABASE_URL": f"sqlite:///{root / 'acprop-tuner.sqlite'}",
        "ACPROP_TUNER_LOG_LEVEL": "warning",
        "ACPROP_TUNER_WORKER_LOG_LEVEL": "WARNING",
        "ACPROP_TUNER_LEASE_RETRY_AFTER_S": "0.5",
    }
    env.setdefault("JAX_PLATFORMS", "cpu")
    print(f"acprop-tuner demo: data in {root} (SQLite)")
    _cli(env, "migrate")
    user_key = _cli(env, "keys", "create", "--tenant", "demo", "--scope", "user")
    worker_key = _cli(env, "keys", "create", "--tenant", "demo", "--scope", "worker")

    server = ServerProcess(env)
    url = server.url
    processes: list[subprocess.Popen[bytes]] = []
    try:
        try:
            server.start(timeout_s=60)
        except (TimeoutError, RuntimeError) as exc:
            raise SystemExit(f"demo: the API server did not start: {exc}") from None
        assert server.proc is not None
        processes.append(server.proc)
        print(f"API server at {url} (OpenAPI docs at {url}/docs, dashboard at {url}/dashboard)")
        worker_env = {**env, "ACPROP_TUNER_WORKER_TOKEN": worker_key}
        for _ in range(args.workers):
            processes.append(
                subprocess.Popen(
                    [*CLI, "worker", "--server", url, "--capacity", "16"], env=worker_env
                )
            )
        print(f"{args.workers} worker process(es), 16 trials per compiled population")

        headers = {"Authorization": f"Bearer {user_key}"}
        client = httpx.Client(base_url=url, headers=headers, timeout=30)
        body = {
            "name": f"demo-{task}",
            "task": {"name": task},
            "budget": {"n_trials": n_trials, "steps": 300, "seeds": 2, "report_every": 25},
            "sampler": "tpe",
        }
        if args.no_baselines:
            body["baselines"] = []
        r = client.post("/api/v1/jobs", json=body)
        if r.status_code != 201:
            raise SystemExit(f"demo: job submission failed: {r.status_code} {r.text}")
        job = r.json()
        job_id = job["id"]
        print(
            f"\nJob {job_id}: ACProp on {task}, {n_trials} trials x 2 seeds x 300 steps; "
            "learning rate in [1e-5, 1] and eps_root in [1e-16, 1e-6] (log), "
            "a warm-start sweep first, then TPE"
            + ("" if args.no_baselines else "; Adam 1e-3 and Prodigy trained beside it")
        )
        started = time.perf_counter()
        last = ""
        while job["status"] in ("queued", "running"):
            time.sleep(1.0)
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            line = _progress_line(job, started)
            if line.split("s ", 1)[1] != last:
                print(line, flush=True)
                last = line.split("s ", 1)[1]
            if time.perf_counter() - started > args.timeout:
                raise SystemExit(f"demo: the job did not finish within {args.timeout:g} s")
        print(f"Job {job['status']} in {time.perf_counter() - started:.1f} s")
        r = client.get(f"/api/v1/jobs/{job_id}/recommendation")
        if r.status_code != 200:
            print(f"No recommendation: {r.json().get('detail')}")
            return 1
        from optimizer.recommendation.text import describe

        print()
        print(describe(r.json()))
        print(
            f"\nThe same, from the command line: ACPROP_TUNER_DATA_DIR={root} "
            f"acprop-tuner recommend {job_id}"
        )
        if args.serve:
            # A throwaway local database: showing its demo key is what lets you log in.
            print(
                f"\nDashboard: {url}/dashboard#/jobs/{job_id}\n"
                f"User key of this demo database: {user_key}\nCtrl-C stops the server."
            )
            with contextlib.suppress(KeyboardInterrupt):
                server.proc.wait()
        return 0
    finally:
        for proc in reversed(processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(processes):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_sweep_demo(args: argparse.Namespace) -> int:
    from optimizer.sweep import format_table, grid, log_spaced, run_sweep
    from optimizer.tasks import load_task

    seeds, eps_roots = (0, 1, 2), (1e-16, 1e-8)
    n_lrs = max(2, (args.trials or 16) // len(eps_roots))
    task = load_task(args.task, {})
    steps = min(task.meta.default_steps, 300)
    configs = grid(log_spaced(1e-4, 1e-1, n_lrs), eps_roots)
    print(
        f"ACProp learning-rate sweep on {args.task} ({task.meta.n_params:,} parameters): "
        f"{len(configs)} configurations x {len(seeds)} seeds, {steps} steps, "
        "trained as one population"
    )
    started = time.perf_counter()
    rows, _, trainer = run_sweep(task, configs, seeds, steps)
    wall = time.perf_counter() - started
    print(format_table(rows))
    print(
        f"\n{len(configs) * len(seeds)} runs in {wall:.1f} s "
        f"(compile {trainer.compile_s:.1f} s). Losses are medians over seeds; '*' marks the "
        "best validation loss per eps_root among configurations where no seed diverged."
    )
    return 0


def main(args: argparse.Namespace) -> int:
    if getattr(args, "sweep", False):
        return run_sweep_demo(args)
    return run_service_demo(args)
