"""How trials end with a result: a worker's batched completion, or its report that the trial's
task could not be built or trained (a failure).

One transaction over all the call's tokens, under the jobs' row locks (the lock order every
writer of a job's trials follows: job rows, lease rows, trial rows), committed at once.
Fenced (fencing.py): a token that no longer holds its trial makes the call raise `LeasesLost`
and change nothing; a repeat answers as the first did. A result that does not fit its lease
(write_checks.py) is a 422 and changes nothing. The newly finished trials go into the job's
Optuna study afterwards (study_sink.py), which finishes the job once all are there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from optimizer.tuning.outcome import TrialResult
from service.broker.fencing import EndReason, HeldLease, LeasesLost, load_leases
from service.broker.lease_endings import end_leases, end_leases_of_ended_jobs
from service.broker.workers import Finished, record_finished
from service.broker.write_checks import check_results
from service.broker.writes import FailureIn, ResultIn
from service.db.models import MAX_ERROR, Job, JobStatus, Trial, TrialState
from service.job_status import transition

__all__ = ["complete", "fail"]


def _fenced(
    session: Session,
    tenant_id: uuid.UUID,
    tokens: Sequence[str],
    repeat_reason: EndReason,
    now: datetime,
) -> tuple[dict[str, HeldLease], set[str]]:
    """The live or already-`repeat_reason`-ended leases of `tokens`, under the jobs' and the
    leases' locks, and the tokens whose lease ended that way (repeats). Raises `LeasesLost`
    (after committing the endings of ended jobs' leases, which stand on their own)."""
    job_ids = {le.job_id for le in load_leases(session, tokens, tenant_id=tenant_id).values()}
    if job_ids:
        session.execute(
            select(Job.id).where(Job.id.in_(job_ids)).order_by(Job.id).with_for_update()
        ).all()
    leases = load_leases(session, tokens, tenant_id=tenant_id, lock=True)
    ended = set(end_leases_of_ended_jobs(session, list(leases.values()), now))
    repeated = {t for t, le in leases.items() if le.ended_by(repeat_reason)}
    lost = [
        t
        for t in tokens
        if t in ended or (t not in repeated and not (t in leases and leases[t].live(now)))
    ]
    if lost:
        session.commit()
        raise LeasesLost(lost)
    return leases, repeated


def complete(
    session: Session, tenant_id: uuid.UUID, results: Sequence[ResultIn], *, now: datetime
) -> tuple[list[str], list[int]]:
    """Record final results; returns (accepted tokens, trial ids newly finished) and commits.
    The job becomes finished when its trials are also in its Optuna study (study_sink.py)."""
    tokens = [r.token for r in results]
    leases, repeated = _fenced(session, tenant_id, tokens, EndReason.COMPLETED, now)
    check_results(results, leases, now)  # a 422 before anything is written (the caller rolls back)
    fresh: dict[str, ResultIn] = {r.token: r for r in results if r.token not in repeated}
    updates = []
    for token, r in fresh.items():
        lease = leases[token]
        outcome = TrialResult.judge(
            final_losses=r.final_losses,
            validation_losses=r.validation_losses,
            last_finite_losses=r.last_finite_losses,
            diverged_at_step=r.diverged_at_step,
            steps=lease.job_steps,
        )
        state = outcome.state
        if r.pruned and state == "complete":
            state = TrialState.PRUNED.value
        updates.append(
            {
                "id": lease.trial_id,
                "state": state,
                "value": outcome.value,
                "final_losses": list(r.final_losses),
                "validation_losses": list(r.validation_losses or []),
                "last_finite_loss": outcome.last_finite_loss,
                "diverged_at_step": outcome.diverged_at_step,
                "seeds_diverged_at": list(outcome.seeds_diverged_at),
                "wall_s": r.wall_s,
                "compile_s": r.compile_s,
                "versions": dict(r.versions) if r.versions else None,
                "finished_at": now,
            }
        )
    if updates:
        session.execute(update(Trial), updates)
        end_leases(session, [leases[t].lease_id for t in fresh], EndReason.COMPLETED, now)
        record_finished(session, tenant_id, _by_worker(fresh.values(), leases), now)
    session.commit()
    return list(dict.fromkeys(tokens)), [leases[t].trial_id for t in fresh]


def _by_worker(results: Iterable[ResultIn], leases: Mapping[str, HeldLease]) -> dict[str, Finished]:
    """What each worker (the one its lease was granted to) finished in this call."""
    grouped: dict[str, list[ResultIn]] = {}
    for r in results:
        grouped.setdefault(leases[r.token].worker_id, []).append(r)
    return {
        worker_id: Finished(
            trials=len(rs),
            wall_s=[r.wall_s for r in rs],
            compile_s=[r.compile_s for r in rs],
            versions=next((r.versions for r in reversed(rs) if r.versions), None),
        )
        for worker_id, rs in grouped.items()
    }


def fail(
    session: Session, tenant_id: uuid.UUID, failures: Sequence[FailureIn], *, now: datetime
) -> tuple[list[str], list[int]]:
    """Fail trials whose task their worker could not build or train; returns (accepted
    tokens, trial ids newly failed) and commits.

    A failed trial is not retried: the same task code with the same options fails the same
    way on every worker. A job none of whose trials has produced a result yet fails with the
    reason (its task cannot run), so its user learns it at once instead of from a job that
    "finished" with every trial failed.
    """
    tokens = [f.token for f in failures]
    leases, repeated = _fenced(session, tenant_id, tokens, EndReason.FAILED, now)
    fresh = {f.token: f for f in failures if f.token not in repeated}
    if fresh:
        session.execute(
            update(Trial),
            [
                {
                    "id": leases[t].trial_id,
                    "state": TrialState.FAILED.value,
                    "error": f.error[:MAX_ERROR],
                    "finished_at": now,
                }
                for t, f in fresh.items()
            ],
        )
        end_leases(session, [leases[t].lease_id for t in fresh], EndReason.FAILED, now)
        failed_by: dict[str, int] = {}
        for t in fresh:
            failed_by[leases[t].worker_id] = failed_by.get(leases[t].worker_id, 0) + 1
        record_finished(
            session, tenant_id, {w: Finished(failed=n) for w, n in failed_by.items()}, now
        )
        for job_id in sorted({leases[t].job_id for t in fresh}):
            first = next(t for t in fresh if leases[t].job_id == job_id)
            _fail_job_without_results(session, job_id, leases[first], fresh[first].error, now)
    session.commit()
    return list(dict.fromkeys(tokens)), [leases[t].trial_id for t in fresh]


def _fail_job_without_results(
    session: Session, job_id: uuid.UUID, lease: HeldLease, error: str, now: datetime
) -> None:
    """The job fails, naming the reason, if none of its trials has a result (complete,
    pruned or diverged): then it is clear that its task cannot run."""
    produced = session.scalar(
        select(func.count())
        .select_from(Trial)
        .where(
            Trial.job_id == job_id,
            Trial.state.in_(
                [TrialState.COMPLETE.value, TrialState.PRUNED.value, TrialState.DIVERGED.value]
            ),
        )
    )
    if produced:
        return
    job = session.get_one(Job, job_id, populate_existing=True)
    if job.status in JobStatus.active():
        reason = (
            f"the task cannot run: {error} (trial {lease.trial_number}, "
            f"reported by worker {lease.worker_id})"
        )
        transition(job, JobStatus.FAILED, error=reason[: 2 * MAX_ERROR], now=now)
