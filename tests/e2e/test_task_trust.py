"""Task code is trusted code (issue 14): no user key makes a worker run code its operator did
not install, and a task that cannot run fails its trials and its job, never the worker.

Real processes on Postgres: the API server (its allow-list from ACPROP_TUNER_ALLOWED_TASK_
MODULES) and `acprop-tuner worker` subprocesses (theirs from --allow-task-module and the same
variable). The job's reason reaches the API; the dashboard's is tested in
tests/e2e/test_dashboard_page.py.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.support.stack import LEASE_TTL_S, Stack

BUDGET = {"n_trials": 4, "steps": 10, "seeds": 1, "report_every": 5}
EXAMPLE = "optimizer.tasks.examples.quadratic:make_quadratic"
DANGEROUS = ("subprocess:run", "os:system", "builtins:eval")


def _count_jobs(stack: Stack) -> int:
    return int(stack.db.rows("SELECT count(*) AS n FROM acprop_jobs")[0]["n"])


def test_code_names_are_refused_at_submission_by_default(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack()
    before = _count_jobs(stack)
    with stack.http() as http:
        for name in (*DANGEROUS, EXAMPLE):
            body = {"task": {"name": name, "options": {"args": "id", "shell": True}}}
            r = http.post("/api/v1/jobs", json=body)
            assert r.status_code == 422, (name, r.text)
            [problem] = r.json()["detail"]
            assert problem["loc"] == ["body", "task", "name"]
            assert "not allowed on this server" in problem["msg"]
            assert "ACPROP_TUNER_ALLOWED_TASK_MODULES" in problem["msg"]
    assert _count_jobs(stack) == before


@pytest.mark.slow
def test_a_worker_never_calls_what_its_operator_did_not_allow(
    make_stack,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """The server lets `subprocess:run` through (its operator allowed `subprocess`), the
    worker's operator did not: the command never runs, the job fails saying why; an allowed
    module trains on the same worker."""
    marker = tmp_path / "marker.txt"
    stack: Stack = make_stack(allowed_task_modules="subprocess,optimizer.tasks.examples")
    job_id = stack.submit(
        {"name": "subprocess:run", "options": {"args": f"touch {marker}", "shell": True}},
        budget=BUDGET,
        warm_start=False,
    )
    worker = stack.worker(
        "w",
        "--capacity", "4", "--idle-exit", "30", "--allow-task-module", "optimizer.tasks.examples",
        env={"ACPROP_TUNER_ALLOWED_TASK_MODULES": ""},
    )  # fmt: skip
    worker.start()
    job = stack.wait_finished(job_id, timeout_s=60)
    assert job["status"] == "failed", job
    assert "not allowed on this worker" in job["error"]
    assert "--allow-task-module" in job["error"]
    assert not marker.exists()

    allowed = stack.submit({"name": EXAMPLE, "options": {"dim": 4}}, budget=BUDGET)
    job = stack.wait_finished(allowed, timeout_s=120)
    assert job["status"] == "finished", stack.diagnostics(allowed)
    assert job["progress"]["complete"] + job["progress"]["diverged"] == BUDGET["n_trials"]
    assert worker.alive()
    assert not marker.exists()


BROKEN = [
    (
        "import",
        {"name": "optimizer.tasks.examples.quadratc:make_quadratic"},
        "No module named 'optimizer.tasks.examples.quadratc'",
    ),
    ("value", {"name": EXAMPLE, "options": {"dim": 0}}, "ValueError: need 1 <= dim"),
    ("type", {"name": EXAMPLE, "options": {"colour": "red"}}, "TypeError"),
    ("traced", {"name": "tests.support.broken_tasks:make_branching"}, "TracerBoolConversionError"),
]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.slow
def test_one_worker_survives_four_broken_tasks_and_each_job_fails_with_its_reason(
    make_stack,  # type: ignore[no-untyped-def]
) -> None:
    stack: Stack = make_stack(allowed_task_modules="optimizer.tasks.examples,tests.support")
    worker = stack.worker(
        "w", "--capacity", "4", "--idle-exit", "60",
        env={"ACPROP_TUNER_ALLOWED_TASK_MODULES": "optimizer.tasks.examples,tests.support"},
    )  # fmt: skip
    worker.start()
    pid = worker.pid
    for kind, task, reason in BROKEN:
        job_id = stack.submit(task, budget=BUDGET)
        job = stack.wait_finished(job_id, timeout_s=90)
        assert job["status"] == "failed", (kind, job)
        assert job["error"].startswith("the task cannot run: "), (kind, job["error"])
        assert reason in job["error"], (kind, job["error"])
        assert "Traceback" not in job["error"] and 'File "' not in job["error"]
        with stack.http() as http:
            trials = http.get(f"/api/v1/jobs/{job_id}/trials").json()["trials"]
        failed = [t for t in trials if t["state"] == "failed"]
        assert failed and all(reason in t["error"] for t in failed), (kind, trials)
        first_failure = min(_time(t["finished_at"]) for t in failed)
        assert (_time(job["finished_at"]) - first_failure).total_seconds() <= LEASE_TTL_S
        assert worker.alive() and worker.pid == pid, worker.logs()[-3000:]
    # And it still trains what can be trained.
    good = stack.submit({"name": EXAMPLE, "options": {"dim": 4}}, budget=BUDGET)
    assert stack.wait_finished(good, timeout_s=120)["status"] == "finished"
    assert worker.alive() and worker.pid == pid
