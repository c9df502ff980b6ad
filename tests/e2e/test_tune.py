"""`acprop-tuner tune` and `acprop_tuner.tune` end to end (issue 17): the real command in a
real process (its API in a thread, a real worker process, the SQLite file in the data dir).

- The example custom task and a task made with the adapter end with a finite recommendation
  inside the searched range; the adapter task, named without steps, trains its own
  ``default_steps``.
- SIGINT mid-run cancels the job and leaves the database consistent (read with sqlite3
  afterwards): no trial running, no lease live, every finished trial in the Optuna study, the
  run's keys revoked, the worker gone and the API's port closed, exit code 130.
- The Python ``tune`` gives the same answer as a job on a server (Postgres, `acprop-tuner
  serve` and `acprop-tuner worker` processes) with the same seed, task, budget and worker
  capacity: the same trials in the same order, the same recommendation.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from acprop_tuner.client import TunerClient
from tests.support.processes import REPO, wait_until
from tests.support.stack import Stack

EXAMPLE = "optimizer.tasks.examples.quadratic:make_quadratic"
ADAPTED = "optimizer.tasks.examples.wine_mlp:make_wine_mlp"
LR_RANGE = (1e-5, 1.0)  # the default search range of the learning rate


@pytest.fixture
def tune_env(tmp_path: Path, jax_cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACPROP_TUNER_")}
    env.update(
        ACPROP_TUNER_DATA_DIR=str(tmp_path / "data"),
        ACPROP_TUNER_JAX_CACHE_DIR=str(jax_cache_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


def _tune(
    env: dict[str, str], *args: str, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acprop_tuner", "tune", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def _db(env: dict[str, str]) -> sqlite3.Connection:
    path = Path(env["ACPROP_TUNER_DATA_DIR"]) / "acprop-tuner.sqlite"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def _one(conn: sqlite3.Connection, sql: str) -> Any:
    return conn.execute(sql).fetchone()[0]


def _assert_consistent(conn: sqlite3.Connection) -> None:
    """No trial running, no lease live, every finished trial in the study, keys revoked."""
    assert _one(conn, "PRAGMA integrity_check") == "ok"
    assert _one(conn, "SELECT count(*) FROM acprop_trials WHERE state = 'running'") == 0
    assert _one(conn, "SELECT count(*) FROM acprop_leases WHERE ended_at IS NULL") == 0
    finished = "('complete', 'pruned', 'diverged', 'failed')"
    assert _one(
        conn, f"SELECT count(*) FROM acprop_trials WHERE state IN {finished} "
        "AND optuna_trial_id IS NULL",
    ) == 0  # fmt: skip
    assert _one(conn, f"SELECT count(*) FROM acprop_trials WHERE state IN {finished}") == _one(
        conn, "SELECT count(*) FROM trials"
    )
    assert _one(conn, "SELECT count(*) FROM acprop_api_keys WHERE revoked_at IS NULL") == 0


@pytest.mark.slow
def test_tune_the_example_custom_task(tune_env: dict[str, str]) -> None:
    done = _tune(
        tune_env, EXAMPLE, "--options", '{"dim": 4}', "--trials", "6", "--steps", "30",
        "--seeds", "1", "--capacity", "4", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rec = json.loads(done.stdout)
    assert rec["status"] == "final"
    assert math.isfinite(rec["learning_rate"]) and LR_RANGE[0] <= rec["learning_rate"] <= 1.0
    assert LR_RANGE[0] <= rec["lr_interval"][0] <= rec["lr_interval"][1] <= LR_RANGE[1]
    assert math.isfinite(rec["expected_loss"]["mean"])
    assert "task module optimizer.tasks.examples.quadratic allowed for this run" in done.stderr
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/dashboard#/jobs/", done.stderr)
    with _db(tune_env) as conn:
        job = conn.execute("SELECT status, steps, n_trials FROM acprop_jobs").fetchone()
        assert tuple(job) == ("finished", 30, 6)
        _assert_consistent(conn)


@pytest.mark.slow
def test_tune_a_task_made_with_the_adapter(tune_env: dict[str, str]) -> None:
    # No --steps: the job trains the task's own default_steps (150), read from the task.
    done = _tune(tune_env, ADAPTED, "--trials", "6", "--seeds", "1", "--capacity", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"optax\.contrib\.acprop\(learning_rate=([0-9.e+-]+),", done.stdout)
    assert match, done.stdout
    assert math.isfinite(float(match.group(1)))
    assert LR_RANGE[0] <= float(match.group(1)) <= LR_RANGE[1]
    assert "Recommended initial configuration for ACProp (final)" in done.stdout
    assert "best loss" in done.stderr and "diverged" in done.stderr  # the progress lines
    with _db(tune_env) as conn:
        assert tuple(conn.execute("SELECT status, steps FROM acprop_jobs").fetchone()) == (
            "finished",
            150,
        )


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.slow
def test_sigint_mid_run_cancels_the_job_and_leaves_the_database_consistent(
    tune_env: dict[str, str], tmp_path: Path
) -> None:
    # Long enough that the job is still running when the signal comes.
    log = (tmp_path / "tune.log").open("w+")
    # Ctrl-C's KeyboardInterrupt even where this test's process tree ignores SIGINT (a shell
    # without job control starts background commands so; Python then installs no handler).
    argv = ["-m", "acprop_tuner", "tune", "rosenbrock", "--trials", "64", "--steps", "20000",
            "--capacity", "8"]  # fmt: skip
    with_ctrl_c = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = ['acprop-tuner', *{argv[2:]!r}]; "
        "runpy.run_module('acprop_tuner', run_name='__main__', alter_sys=True)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", with_ctrl_c],
        env=tune_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        db = Path(tune_env["ACPROP_TUNER_DATA_DIR"]) / "acprop-tuner.sqlite"

        def leased() -> bool:
            if not db.exists():
                return False
            try:
                with _db(tune_env) as conn:
                    return bool(_one(conn, "SELECT count(*) FROM acprop_leases"))
            except sqlite3.OperationalError:  # not migrated yet
                return False

        wait_until(leased, 180, 0.2, "the worker to lease trials")
        time.sleep(1.0)  # training, mid-chunk
        workers = _children(proc.pid)
        assert workers, "the worker process"
        url = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+)", Path(log.name).read_text())
        assert url, Path(log.name).read_text()
        proc.send_signal(signal.SIGINT)
        # A liveness bound, not a timing: the workers finish their chunk (up to 60 s before
        # they are killed), then the server stops; a loaded 2-core machine once needed > 120 s.
        code = proc.wait(timeout=240)
        assert code == 130, Path(log.name).read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    out = Path(log.name).read_text()
    assert "Traceback" not in out, out
    assert "cancelled" in out
    for pid in workers:  # the worker exited (and was reaped)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url.group(1)}/healthz", timeout=2)
    with _db(tune_env) as conn:
        assert _one(conn, "SELECT status FROM acprop_jobs") == "cancelled"
        assert _one(conn, "SELECT count(*) FROM acprop_trials") > 0
        _assert_consistent(conn)
        ended = dict(conn.execute("SELECT end_reason, count(*) FROM acprop_leases GROUP BY 1"))
        assert ended and set(ended) <= {"completed", "released", "cancelled"}, ended


def _trials(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    ordered = sorted(rows, key=lambda r: r["number"])
    return [(r["number"], r["state"], r["params"], r["value"]) for r in ordered]


@pytest.mark.slow
def test_python_tune_gives_the_same_answer_as_a_server_job_with_the_same_seed(
    make_stack: Any, tune_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import acprop_tuner
    from optimizer.tasks.examples.quadratic import make_quadratic

    # What must match besides the seed: the task and its options, the budget, the search
    # space, and the worker's capacity (it decides how many trials are asked for at once).
    budget = {"n_trials": 12, "steps": 30, "seeds": 1}
    # The example test's task and shapes: the workers load its compiled programs from the
    # session's persistent cache.
    seed, capacity, options = 20_26, 4, {"dim": 4}
    for key, value in tune_env.items():
        if key.startswith("ACPROP_TUNER_"):
            monkeypatch.setenv(key, value)
    local = acprop_tuner.tune(
        make_quadratic, options=options, trials=budget["n_trials"], steps=budget["steps"],
        seeds=budget["seeds"], seed=seed, capacity=capacity, progress=False, timeout=300,
    )  # fmt: skip

    stack: Stack = make_stack(lease_ttl_s=60, allowed_task_modules="optimizer.tasks.examples")
    stack.worker(
        "w", "--capacity", str(capacity), "--allow-task-module", "optimizer.tasks.examples"
    ).start()
    with TunerClient(stack.server.url, token=stack.user_key) as client:
        job = client.submit(EXAMPLE, options=options, budget=budget, seed=seed)
        client.wait(job.id, timeout=300, poll_s=0.25)
        served = client.recommendation(job.id, missing_ok=False)
        served_trials = [t.raw for t in client.trials(job.id)]
    assert served is not None

    with _db(tune_env) as conn:
        local_trials = [
            {**dict(r), "params": json.loads(r["params"])}
            for r in conn.execute("SELECT number, state, params, value FROM acprop_trials")
        ]
    assert _trials(local_trials) == _trials(served_trials)
    assert local.config == served.config
    assert local.lr_interval == served.lr_interval
    assert local.bounded_by == served.bounded_by
    assert local.expected_loss == served.expected_loss
    assert local.optax == served.optax
    assert LR_RANGE[0] <= local.learning_rate <= LR_RANGE[1]
