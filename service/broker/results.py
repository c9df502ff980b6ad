"""What workers send back under their leases: heartbeats, reports, completions, releases.

Each call is one transaction over all its tokens (batched reads and writes, one commit).
Writes are fenced (fencing.py): if any token no longer holds its trial the call raises
`LeasesLost` and changes nothing, and a repeat of a write that already happened answers as
the first time did. A cancelled job's leases end at the next heartbeat or report.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from optimizer.trial_outcome import judge_outcome
from service.broker.fencing import EndReason, HeldLease, LeasesLost, load_leases
from service.broker.tokens import hash_token
from service.db.models import Job, JobStatus, Lease, Trial, TrialReport, TrialState
from service.job_status import transition

__all__ = [
    "ReportIn",
    "ResultIn",
    "complete",
    "end_cancelled",
    "heartbeat",
    "maybe_finish_jobs",
    "record_reports",
    "release",
    "seeds_diverged_at",
]


@dataclass(frozen=True, slots=True)
class ReportIn:
    token: str
    step: int
    losses: Sequence[float | None]


@dataclass(frozen=True, slots=True)
class ResultIn:
    token: str
    final_losses: Sequence[float | None]
    validation_losses: Sequence[float | None] | None
    last_finite_losses: Sequence[float | None] | None
    diverged_at_step: Sequence[int | None] | None
    pruned: bool
    wall_s: float | None
    compile_s: float | None


def end_cancelled(session: Session, leases: Sequence[HeldLease], now: datetime) -> list[str]:
    """End the live leases of cancelled jobs (their trials go back to waiting, unfinished);
    returns their tokens. Leases already ended by a cancel are included, so a repeated call
    answers the same."""
    out: list[str] = []
    ending: list[HeldLease] = []
    for lease in leases:
        if lease.job_status != JobStatus.CANCELLED.value:
            continue
        if lease.ended_at is None:
            ending.append(lease)
            out.append(lease.token)
        elif lease.ended_by(EndReason.CANCELLED):
            out.append(lease.token)
    if ending:
        _end(session, [le.lease_id for le in ending], EndReason.CANCELLED, now)
        session.execute(
            update(Trial)
            .where(Trial.id.in_([le.trial_id for le in ending]), Trial.state == "running")
            .values(state=TrialState.WAITING.value, attempt=Trial.attempt + 1)
        )
    return out


def heartbeat(
    session: Session, tokens: Sequence[str], *, ttl_s: float, now: datetime
) -> tuple[list[str], list[str], datetime]:
    """Renew the live leases among `tokens`; returns (held, lost, new expiry) and commits."""
    leases = load_leases(session, tokens, lock=True)
    cancelled = set(end_cancelled(session, list(leases.values()), now))
    held = [t for t, le in leases.items() if t not in cancelled and le.live(now)]
    expires_at = now + timedelta(seconds=ttl_s)
    if held:
        session.execute(
            update(Lease)
            .where(Lease.id.in_([leases[t].lease_id for t in held]))
            .values(expires_at=expires_at)
        )
    session.commit()
    held_set = set(held)
    return held, [t for t in dict.fromkeys(tokens) if t not in held_set], expires_at


def record_reports(
    session: Session, reports: Sequence[ReportIn], *, now: datetime
) -> tuple[list[HeldLease], list[str]]:
    """Store intermediate losses (a repeat is a no-op); returns (the live leases reported on,
    the tokens to stop because their job was cancelled) and commits.

    A report for an attempt that already completed is a retried call that arrived late: it is
    acknowledged and ignored, so the stored attempt stays what its completion saw.
    """
    if reports and session.get_bind().dialect.name == "postgresql":
        leases, stored, own_transaction = _record_reports_pg(session, reports, now)
        if stored:
            session.commit()
            return [leases[t] for t in dict.fromkeys(r.token for r in reports)], []
        # Something is not live (lost, cancelled, or a repeat after completion): nothing was
        # inserted; the general path below decides, on the rows loaded again if the
        # statement ran as its own transaction (so their locks are gone).
        if own_transaction:
            session.commit()
            leases = load_leases(session, [r.token for r in reports], lock=True)
    else:
        leases = load_leases(session, [r.token for r in reports], lock=True)
    stop = set(end_cancelled(session, list(leases.values()), now))
    lost = [
        r.token
        for r in reports
        if r.token not in stop
        and not (r.token in leases and leases[r.token].live(now))
        and not (r.token in leases and leases[r.token].ended_by(EndReason.COMPLETED))
    ]
    if lost:
        session.commit()  # only a cancel's lease endings, which stand on their own
        raise LeasesLost(lost)
    rows = {}
    for r in reports:
        lease = leases[r.token]
        if r.token in stop or not lease.live(now):
            continue
        rows[(lease.trial_id, lease.attempt, r.step)] = {
            "trial_id": lease.trial_id,
            "attempt": lease.attempt,
            "step": r.step,
            "losses": list(r.losses),
            "created_at": now,
        }
    if rows:
        _insert_reports(session, list(rows.values()))
    session.commit()
    live = {r.token: leases[r.token] for r in reports if r.token not in stop}
    return [le for le in live.values() if le.live(now)], sorted(stop)


# The common case of a report call in one round trip: lock the tokens' leases (as
# `load_leases(lock=True)` does) and, only if every token's lease is live and none of their
# jobs is cancelled, insert the reports; the leases come back either way, with whether the
# insert ran. `:hashes` holds each token's hash once; `:r_hashes` one per report.
_REPORTS_FAST_PG = text(
    "WITH l AS ("
    " SELECT le.id, le.token_hash, le.trial_id, le.attempt, le.expires_at, le.ended_at,"
    " le.end_reason, t.job_id, j.status, t.state"
    " FROM acprop_leases le"
    " JOIN acprop_trials t ON t.id = le.trial_id"
    " JOIN acprop_jobs j ON j.id = t.job_id"
    " WHERE le.token_hash = ANY(CAST(:hashes AS text[]))"
    " ORDER BY le.id"
    " FOR UPDATE OF le"
    "), ok AS ("
    " SELECT count(*) = :n_hashes AS all_live FROM l"
    " WHERE l.ended_at IS NULL AND l.expires_at > :now AND l.status <> :cancelled"
    "), ins AS ("
    " INSERT INTO acprop_trial_reports (trial_id, attempt, step, losses, created_at)"
    " SELECT l.trial_id, l.attempt, r.s, CAST(r.l AS json), :now"
    " FROM unnest(CAST(:r_hashes AS text[]), CAST(:steps AS int[]), CAST(:losses AS text[]))"
    " AS r(h, s, l) JOIN l ON l.token_hash = r.h"
    " WHERE (SELECT all_live FROM ok)"
    " ON CONFLICT DO NOTHING"
    ") SELECT l.*, (SELECT all_live FROM ok) AS stored FROM l ORDER BY l.id"
)


def _record_reports_pg(
    session: Session, reports: Sequence[ReportIn], now: datetime
) -> tuple[dict[str, HeldLease], bool, bool]:
    """The leases of the reports' tokens by token; whether the reports were stored (every
    lease live, no job cancelled); and whether the statement ran as its own transaction.

    Where the session has no transaction open, the one statement runs in autocommit: it is
    atomic by itself, and that spares the BEGIN and COMMIT round trips (two of a report
    call's three). Otherwise it runs in the open transaction and the leases stay locked.
    Rows repeating a (token, step) keep the last one's losses, as the general path does."""
    by_hash = {hash_token(r.token): r.token for r in reports}
    last = {(r.token, r.step): r for r in reports}
    hash_of = {t: h for h, t in by_hash.items()}
    params = {
        "hashes": list(by_hash),
        "n_hashes": len(by_hash),
        "now": now,
        "cancelled": JobStatus.CANCELLED.value,
        "r_hashes": [hash_of[r.token] for r in last.values()],
        "steps": [r.step for r in last.values()],
        "losses": [json.dumps(list(r.losses)) for r in last.values()],
    }
    fresh = not session.in_transaction()
    driver = session.connection().connection.driver_connection
    own_transaction = (
        fresh
        and isinstance(driver, psycopg.Connection)
        and driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )
    if own_transaction and isinstance(driver, psycopg.Connection):  # (narrows for mypy)
        # psycopg switches autocommit on the client alone while no transaction is open; it
        # is switched back before the connection can be used for anything else.
        driver.autocommit = True
        try:
            rows = session.execute(_REPORTS_FAST_PG, params).all()
        finally:
            driver.autocommit = False
    else:
        rows = session.execute(_REPORTS_FAST_PG, params).all()
    leases: dict[str, HeldLease] = {}
    stored = False
    for row in rows:
        token = by_hash[row.token_hash]
        stored = bool(row.stored)
        leases[token] = HeldLease(
            token=token,
            lease_id=row.id,
            trial_id=row.trial_id,
            attempt=row.attempt,
            expires_at=row.expires_at,
            ended_at=row.ended_at,
            end_reason=row.end_reason,
            job_id=row.job_id,
            job_status=row.status,
            trial_state=row.state,
        )
    return leases, stored, own_transaction


def complete(
    session: Session,
    results: Sequence[ResultIn],
    *,
    steps_of: Callable[[set[uuid.UUID]], Mapping[uuid.UUID, int]],
    now: datetime,
) -> tuple[list[str], list[int]]:
    """Record final results; returns (accepted tokens, trial ids newly finished) and commits.

    Locks the jobs' rows first: the lock order every writer of a job's trials follows. The
    job becomes finished when its trials are also in its Optuna study (study_sink.py).
    """
    tokens = [r.token for r in results]
    job_ids = {le.job_id for le in load_leases(session, tokens).values()}
    steps = steps_of(job_ids)
    if job_ids:
        session.execute(
            select(Job.id).where(Job.id.in_(job_ids)).order_by(Job.id).with_for_update()
        ).all()
    leases = load_leases(session, tokens, lock=True)
    cancelled = set(end_cancelled(session, list(leases.values()), now))
    repeated = {t for t, le in leases.items() if le.ended_by(EndReason.COMPLETED)}
    lost = [
        t
        for t in tokens
        if t in cancelled or (t not in repeated and not (t in leases and leases[t].live(now)))
    ]
    if lost:
        session.commit()
        raise LeasesLost(lost)
    fresh: dict[str, ResultIn] = {r.token: r for r in results if r.token not in repeated}
    updates = []
    for token, r in fresh.items():
        lease = leases[token]
        job_steps = steps.get(lease.job_id, 0)
        outcome = judge_outcome(
            final_losses=r.final_losses,
            validation_losses=r.validation_losses,
            last_finite_losses=r.last_finite_losses,
            diverged_at_step=r.diverged_at_step,
            steps=job_steps,
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
                "seeds_diverged_at": seeds_diverged_at(r, job_steps),
                "wall_s": r.wall_s,
                "compile_s": r.compile_s,
                "finished_at": now,
            }
        )
    if updates:
        session.execute(update(Trial), updates)
        _end(session, [leases[t].lease_id for t in fresh], EndReason.COMPLETED, now)
    session.commit()
    return list(dict.fromkeys(tokens)), [leases[t].trial_id for t in fresh]


def seeds_diverged_at(result: ResultIn, steps: int) -> list[int | None]:
    """Per seed, the step it diverged at, or None where it did not diverge.

    The worker's flag where it sent one; a seed with a missing or non-finite final loss that
    the worker did not flag diverged at the last step, as `judge_outcome` counts it. So the
    list has a step exactly where the judged trial saw a diverged seed: a trial is `diverged`
    if and only if some entry is not None. It has one entry per final loss (or per flag, if a
    worker sent more flags than losses).
    """
    flagged = list(result.diverged_at_step or [])
    out: list[int | None] = []
    for i in range(max(len(result.final_losses), len(flagged))):
        step = flagged[i] if i < len(flagged) else None
        loss = result.final_losses[i] if i < len(result.final_losses) else 0.0
        if step is None and (loss is None or not math.isfinite(loss)):
            step = steps
        out.append(None if step is None else int(step))
    return out


def release(session: Session, tokens: Sequence[str], *, now: datetime) -> list[str]:
    """Give trials back unfinished (a stopping worker): they return to waiting with the same
    parameters; the attempt is not counted against max_attempts. Commits."""
    leases = load_leases(session, tokens, lock=True)
    repeated = {t for t, le in leases.items() if le.ended_by(EndReason.RELEASED)}
    lost = [t for t in tokens if t not in repeated and not (t in leases and leases[t].live(now))]
    if lost:
        session.rollback()
        raise LeasesLost(lost)
    fresh = [leases[t] for t in dict.fromkeys(tokens) if t not in repeated]
    if fresh:
        _end(session, [le.lease_id for le in fresh], EndReason.RELEASED, now)
        # attempt + 1 keeps (trial, attempt) unique per lease; only expired leases count
        # against max_attempts (reaper.py), so a release costs the trial nothing.
        session.execute(
            update(Trial)
            .where(Trial.id.in_([le.trial_id for le in fresh]))
            .values(state=TrialState.WAITING.value, attempt=Trial.attempt + 1, started_at=None)
        )
    session.commit()
    return list(dict.fromkeys(tokens))


def maybe_finish_jobs(session: Session, job_ids: set[uuid.UUID], now: datetime) -> None:
    """Mark active jobs finished once n_trials of their trials are finished *and* written
    into the job's Optuna study, so a finished job's study is complete. Called by the Optuna
    writer (study_sink.py) after each write; it locks the jobs' rows, so of two concurrent
    writers the later one sees the other's trials."""
    if not job_ids:
        return
    jobs = session.scalars(
        select(Job)
        .where(Job.id.in_(job_ids))
        .order_by(Job.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for job in jobs:
        if job.status not in JobStatus.active():
            continue
        done = session.scalar(
            select(func.count())
            .select_from(Trial)
            .where(
                Trial.job_id == job.id,
                Trial.state.in_([s.value for s in TrialState.finished()]),
                Trial.optuna_trial_id.is_not(None),
            )
        )
        if job.n_trials <= (done or 0):
            # A job with finished trials has had a trial leased, so it is running.
            transition(job, JobStatus.FINISHED, now=now)


def _end(session: Session, lease_ids: Sequence[int], reason: EndReason, now: datetime) -> None:
    session.execute(
        update(Lease)
        .where(Lease.id.in_(list(lease_ids)), Lease.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason.value)
    )


# One statement of fixed shape for any number of reports: the rows travel as arrays, so the
# statement is parsed and planned once, where a multi-row VALUES list is compiled anew for
# every batch size (about 0.15 ms per row in SQLAlchemy) and executemany pays per row.
_INSERT_REPORTS_PG = text(
    "INSERT INTO acprop_trial_reports (trial_id, attempt, step, losses, created_at) "
    "SELECT t, a, s, CAST(l AS json), :created_at "
    "FROM unnest(CAST(:trial_ids AS bigint[]), CAST(:attempts AS int[]), "
    "CAST(:steps AS int[]), CAST(:losses AS text[])) AS r(t, a, s, l) "
    "ON CONFLICT DO NOTHING"
)


def _insert_reports(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert reports, ignoring those already stored (a repeated call)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            _INSERT_REPORTS_PG,
            {
                "trial_ids": [r["trial_id"] for r in rows],
                "attempts": [r["attempt"] for r in rows],
                "steps": [r["step"] for r in rows],
                "losses": [json.dumps(r["losses"]) for r in rows],
                "created_at": rows[0]["created_at"],
            },
        )
        return
    table = TrialReport.__table__
    assert isinstance(table, Table)
    stmt = (
        sqlite.insert(table).on_conflict_do_nothing()
        if dialect == "sqlite"
        else insert(table).prefix_with("IGNORE")
    )
    session.execute(stmt, rows)
