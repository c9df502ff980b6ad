"""SIGTERM to a training worker (issue #4): it finishes its chunk, gives its leases back with
`release`, and exits 0; the trials return to `waiting` with the same parameters, a release
costs no attempt (with `max_attempts` 1, one expiry would fail a trial), and another worker
finishes them."""

from __future__ import annotations

import signal
import uuid

import pytest

from tests.support.processes import wait_until
from tests.support.stack import Stack
from worker import journal

TASK = {"name": "rosenbrock", "options": {}}
SPACE = {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}, "eps_root": {"value": 1e-8}}
BUDGET = {"n_trials": 3, "steps": 5_000, "seeds": 1, "report_every": 100, "max_attempts": 1}


@pytest.mark.slow
def test_sigterm_releases_leases_and_exits_0(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack()
    job_id = stack.submit(TASK, space=SPACE, budget=BUDGET, sampler="random", warm_start=False)
    first = stack.worker("first", "--capacity", "4", "--idle-exit", "10")
    first.start()
    reports = lambda: [e for e in journal.read(str(first.journal)) if e["event"] == "report"]  # noqa: E731
    wait_until(lambda: len(reports()) >= 6, 60, what="the worker training")
    first.signal(signal.SIGTERM)
    assert first.wait(timeout_s=30) == 0

    events = journal.read(str(first.journal))
    leased = {e["trial_id"]: e for e in events if e["event"] == "lease"}
    assert len(leased) == 3
    assert [e["count"] for e in events if e["event"] == "release"] == [3]
    assert not [e for e in events if e["event"] == "complete"]
    # Released, not expired: the trials wait again.
    trials = stack.db.rows(
        "SELECT id, state FROM acprop_trials WHERE job_id = :j", j=uuid.UUID(job_id)
    )
    assert {t["state"] for t in trials} == {"waiting"}
    ends = stack.db.rows("SELECT end_reason FROM acprop_leases")
    assert [e["end_reason"] for e in ends] == ["released"] * 3

    second = stack.worker("second", "--capacity", "4", "--idle-exit", "2")
    second.start()
    job = stack.wait_finished(job_id, timeout_s=60)
    # All three complete although max_attempts is 1: the release cost no attempt.
    assert job["status"] == "finished" and job["progress"]["complete"] == 3
    again = {e["trial_id"]: e for e in journal.read(str(second.journal)) if e["event"] == "lease"}
    assert set(again) == set(leased)
    for trial_id, lease in again.items():
        assert lease["config"] == leased[trial_id]["config"]
