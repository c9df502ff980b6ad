"""SIGSTOP a worker past its lease TTL, then SIGCONT (issue #4).

Worker A leases the job's only trial and is paused mid-training for longer than the lease TTL;
the reaper takes the lease back and worker B trains the trial again (attempt 2). When A resumes,
the server tells it that its lease is gone (its heartbeat answers `lost`, its report a 409):
A must stop that trial within one heartbeat, never complete it, and the job must keep B's result.
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.support.processes import wait_until
from tests.support.stack import LEASE_TTL_S, Stack
from worker import journal

TASK = {"name": "rosenbrock", "options": {}}
# About 200 report round trips: a few seconds of training, so A is paused mid-trial and B is
# still training when A resumes.
SPACE = {"learning_rate": {"value": 1e-3}, "eps_root": {"value": 1e-8}}
BUDGET = {"n_trials": 1, "steps": 20_000, "seeds": 1, "report_every": 100, "max_attempts": 3}
HEARTBEAT_S = LEASE_TTL_S / 3  # the worker heartbeats at a third of the lease's TTL


def events_of(path: str, kind: str, attempt: int) -> list[dict]:
    return [e for e in journal.read(path) if e["event"] == kind and e["attempt"] == attempt]


@pytest.mark.slow
def test_paused_worker_loses_its_lease_and_the_job_keeps_the_other_result(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack()
    job_id = stack.submit(TASK, space=SPACE, budget=BUDGET, sampler="random", warm_start=False)
    a = stack.worker("a", "--capacity", "1", "--idle-exit", "3")
    a.start()
    wait_until(lambda: len(events_of(str(a.journal), "report", 1)) >= 3, 60, what="A training")
    b = stack.worker("b", "--capacity", "1", "--idle-exit", "20")
    b.start()

    a.signal(signal.SIGSTOP)
    stopped_at = time.time()
    # The reaper takes A's lease back after the TTL; B leases attempt 2 and trains it.
    wait_until(lambda: events_of(str(b.journal), "report", 2), 60, what="B training attempt 2")
    # Paused past its TTL (the lease may expire sooner: it ran from the last renewal).
    time.sleep(max(0.0, stopped_at + LEASE_TTL_S + 0.1 - time.time()))
    a.signal(signal.SIGCONT)
    resumed_at = time.time()

    job = stack.wait_finished(job_id, timeout_s=60)
    assert job["status"] == "finished"
    assert job["progress"]["complete"] == 1

    # A: told its lease is gone, it stopped within one heartbeat and never completed.
    a_events = journal.read(str(a.journal))
    lost = [e for e in a_events if e["event"] == "lost" and e["attempt"] == 1]
    assert len(lost) == 1, a.logs()[-3000:]
    assert lost[0]["via"] in ("heartbeat", "report 409")
    assert lost[0]["t"] - resumed_at <= HEARTBEAT_S
    after_loss = a_events[a_events.index(lost[0]) + 1 :]
    assert not [e for e in after_loss if e["event"] == "report" and e["attempt"] == 1]
    assert not [e for e in a_events if e["event"] == "complete"]
    print(
        f"A learnt of the loss {lost[0]['t'] - resumed_at:.3f}s after SIGCONT via {lost[0]['via']}"
    )

    # The job kept B's result: attempt 2, completed by B's lease.
    (trial,) = stack.db.rows(
        "SELECT id, state, attempt, value FROM acprop_trials WHERE job_id = :j",
        j=uuid.UUID(job_id),
    )
    assert trial["state"] == "complete" and trial["attempt"] == 2
    leases = stack.db.rows(
        "SELECT attempt, worker_id, end_reason FROM acprop_leases WHERE trial_id = :t "
        "ORDER BY attempt",
        t=trial["id"],
    )
    assert [(r["attempt"], r["end_reason"]) for r in leases] == [(1, "expired"), (2, "completed")]
    assert [e["pid"] for e in events_of(str(b.journal), "complete", 2)] == [b.pid]
    assert leases[1]["worker_id"] == events_of(str(b.journal), "complete", 2)[0]["worker"]
    # Every report A got a 2xx for (before the pause) is kept, under attempt 1.
    kept = {
        (r["attempt"], r["step"])
        for r in stack.db.rows(
            "SELECT attempt, step FROM acprop_trial_reports WHERE trial_id = :t", t=trial["id"]
        )
    }
    assert {(1, e["step"]) for e in events_of(str(a.journal), "report", 1)} <= kept
    assert a.wait(timeout_s=60) == 0  # A goes on and exits cleanly when idle
