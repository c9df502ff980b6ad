"""kill -9 of workers holding leases (issue #4): nothing is lost, nothing counted twice.

Three real workers (capacity 1, so a kill hits exactly one trial) train a 30-trial job; a killer
sends SIGKILL, at random points, to whichever worker holds the lease of a trial not killed
before, 10 times; a supervisor restarts killed workers. The job must end with exactly 30
finished trials, every killed attempt must be retried with identical parameters, and every
killed trial must leave `running` (its lease ended by the reaper) within
TTL + reaper period + 1 s of the kill.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from datetime import UTC, datetime

import pytest

from tests.support.processes import Supervisor, wait_until
from tests.support.stack import LEASE_TTL_S, REAPER_PERIOD_S, Stack
from worker import journal

N_TRIALS, N_KILLS, N_WORKERS = 30, 10, 3
# Rosenbrock is tiny: a trial is mostly its 40 report round trips, long enough (a fraction of a
# second or more) to be killed in the middle, and the job outlasts the 10 kills.
TASK = {"name": "rosenbrock", "options": {}}
# A safe region (facts.md: eps_root 1e-8 removes the early blow-up), so trials train to the end.
SPACE = {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}, "eps_root": {"value": 1e-8}}
BUDGET = {"n_trials": N_TRIALS, "steps": 4000, "seeds": 1, "report_every": 100, "max_attempts": 5}


def pid_of(worker_id: str) -> int:
    # worker ids are "<host>-<pid>-<random>" (worker/commands.py)
    return int(worker_id.rsplit("-", 2)[1])


@pytest.mark.slow
def test_kill_9_workers_holding_leases(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack()
    rng = random.Random(4)
    job_id = stack.submit(TASK, space=SPACE, budget=BUDGET, sampler="random", warm_start=False)
    workers = [
        stack.worker(f"w{i}", "--capacity", "1", "--idle-exit", "8") for i in range(N_WORKERS)
    ]
    for w in workers:
        w.start()
    kills: list[tuple[int, int, float]] = []  # (trial id, attempt, wall time of the kill)

    def lease_end(trial_id: int, attempt: int) -> dict | None:
        rows = stack.db.rows(
            "SELECT ended_at, end_reason FROM acprop_leases "
            "WHERE trial_id = :t AND attempt = :a AND ended_at IS NOT NULL",
            t=trial_id,
            a=attempt,
        )
        return rows[0] if rows else None

    def effective() -> tuple[int, int]:
        """(kills that hit a held lease, kills not yet resolved)."""
        ends = [lease_end(t, a) for t, a, _ in kills]
        hit = sum(1 for e in ends if e is not None and e["end_reason"] != "completed")
        return hit, sum(1 for e in ends if e is None)

    with Supervisor(workers) as supervisor:
        while sum(effective()) < N_KILLS:
            time.sleep(rng.uniform(0.05, 0.4))  # a random point in some trial's life
            with supervisor.locked():
                alive = {w.pid: w for w in workers if w.alive()}
                killed_trials = {t for t, _, _ in kills}
                candidates = [
                    lease
                    for lease in stack.live_leases()
                    if lease["trial_id"] not in killed_trials
                    and pid_of(lease["worker_id"]) in alive
                ]
                if not candidates:
                    if stack.job(job_id)["status"] == "finished":
                        break
                    continue
                victim = rng.choice(candidates)
                target = alive[pid_of(victim["worker_id"])]
                # Freeze it first, then make sure it still holds the lease (it may have just
                # completed the trial): only then is the kill one "of a worker holding leases".
                target.signal(signal.SIGSTOP)
                if lease_end(victim["trial_id"], victim["attempt"]) is not None:
                    target.signal(signal.SIGCONT)
                    continue
                target.signal(signal.SIGKILL)
                kills.append((victim["trial_id"], victim["attempt"], time.time()))
                target.wait(timeout_s=10)  # reaped here, so the restart cannot race this loop
        job = stack.wait_finished(job_id, timeout_s=120)
        # A completion already in flight when the worker was frozen may still have landed:
        # such a kill did not hit a held lease and is not counted.
        killed = [(t, a, k) for t, a, k in kills if lease_end(t, a)["end_reason"] != "completed"]
        assert len(killed) == N_KILLS, "the job finished before every kill was made"
        assert supervisor.restarts == len(kills)

    # Exactly N_TRIALS finished trials, numbered 0..N-1.
    assert job["status"] == "finished"
    assert job["progress"]["finished"] == N_TRIALS
    trials = stack.db.rows(
        "SELECT id, number, state, attempt, params FROM acprop_trials WHERE job_id = :j",
        j=uuid.UUID(job_id),
    )
    assert sorted(t["number"] for t in trials) == list(range(N_TRIALS))
    assert {t["state"] for t in trials} <= {"complete", "pruned", "diverged"}

    # The Optuna study holds exactly one trial per finished trial.
    optuna_trials = stack.db.rows(
        "SELECT count(*) AS n FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "WHERE s.study_name = :name",
        name=job["study_name"],
    )
    assert optuna_trials[0]["n"] == N_TRIALS

    events = [e for w in workers for e in journal.read(str(w.journal))]
    leased = {}
    for e in events:
        if e["event"] == "lease":
            leased.setdefault(e["trial_id"], {})[e["attempt"]] = e["config"]
    by_id = {t["id"]: t for t in trials}
    for trial_id, attempt, killed_at in killed:
        trial = by_id[trial_id]
        # Retried: a later attempt finished the trial, with the parameters of the killed one.
        assert trial["attempt"] > attempt
        # Every attempt trained the trial's own parameters. The attempt that finished it
        # journaled its lease; a killed one may not have (SIGKILL between the lease's answer
        # and the journal's write), so it is compared where it did.
        configs = leased[trial_id]
        assert trial["attempt"] in configs, trial_id
        for config in configs.values():
            assert config == trial["params"], trial_id
        # The killed attempt's lease was taken back by the reaper in time.
        (lease,) = stack.db.rows(
            "SELECT ended_at, end_reason FROM acprop_leases WHERE trial_id = :t AND attempt = :a",
            t=trial_id,
            a=attempt,
        )
        assert lease["end_reason"] == "expired"
        ended = lease["ended_at"]
        if ended.tzinfo is None:
            ended = ended.replace(tzinfo=UTC)
        delay = ended.timestamp() - killed_at
        print(f"trial {trial_id} attempt {attempt}: lease ended {delay:.2f}s after the kill")
        assert delay <= LEASE_TTL_S + REAPER_PERIOD_S + 1.0, (trial_id, delay)
        assert datetime.fromtimestamp(killed_at, UTC) < ended
    # Nothing killed was completed by the killed attempt.
    completed = {(e["trial_id"], e["attempt"]) for e in events if e["event"] == "complete"}
    assert not completed & {(t, a) for t, a, _ in killed}
    assert wait_until(lambda: not stack.live_leases(), 5, what="no live lease")
