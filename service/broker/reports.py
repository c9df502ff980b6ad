"""Intermediate losses: a worker's batched report after each chunk of steps.

One transaction over all the call's tokens. Fenced (fencing.py): if any token no longer holds
its trial the call raises `LeasesLost` and stores nothing; a report that does not fit its
lease (write_checks.py) is a 422 and stores nothing; a repeated report is a no-op. On
Postgres the common case is one statement (`_REPORTS_FAST_PG`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Table, insert, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from service.broker.fencing import EndReason, HeldLease, LeasesLost, load_leases
from service.broker.lease_endings import end_leases_of_ended_jobs
from service.broker.tokens import hash_token
from service.broker.write_checks import check_reports
from service.broker.writes import ReportIn
from service.db.models import JobStatus, TrialReport

__all__ = ["record_reports"]


def record_reports(
    session: Session, tenant_id: uuid.UUID, reports: Sequence[ReportIn], *, now: datetime
) -> tuple[list[HeldLease], list[str]]:
    """Store intermediate losses (a repeat is a no-op); returns (the live leases reported on,
    the tokens to stop because their job was cancelled or failed) and commits.

    A report for an attempt that already completed is a retried call that arrived late: it is
    acknowledged and ignored, so the stored attempt stays what its completion saw.
    """
    if reports and session.get_bind().dialect.name == "postgresql":
        leases, stored, own_transaction = _record_reports_pg(session, tenant_id, reports, now)
        if stored:
            session.commit()
            return [leases[t] for t in dict.fromkeys(r.token for r in reports)], []
        # Something is not live (lost, another tenant's, a job ended, a repeat after
        # completion) or does not fit its lease: nothing was inserted; the general path
        # below decides, on the rows loaded again if the statement ran as its own
        # transaction (so their locks are gone).
        if own_transaction:
            session.commit()
            leases = load_leases(
                session, [r.token for r in reports], tenant_id=tenant_id, lock=True
            )
    else:
        leases = load_leases(session, [r.token for r in reports], tenant_id=tenant_id, lock=True)
    check_reports(reports, leases)  # a 422 before anything is written (the caller rolls back)
    stop = set(end_leases_of_ended_jobs(session, list(leases.values()), now))
    lost = [
        r.token
        for r in reports
        if r.token not in stop
        and not (r.token in leases and leases[r.token].live(now))
        and not (r.token in leases and leases[r.token].ended_by(EndReason.COMPLETED))
    ]
    if lost:
        session.commit()  # only an ended job's lease endings, which stand on their own
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


# The common case of a report call in one round trip: lock the tokens' leases of this tenant
# (as `load_leases(lock=True)` does) and, only if every token's lease is live, none of their
# jobs has ended, and every report fits its job (one loss per seed, a step of the schedule:
# write_checks.py), insert the reports; the leases come back either way, with whether the
# insert ran. `:hashes` holds each token's hash once; `:r_hashes` one per report.
_REPORTS_FAST_PG = text(
    "WITH l AS ("
    " SELECT le.id, le.token_hash, le.trial_id, le.attempt, le.created_at, le.expires_at,"
    " le.ended_at,"
    " le.end_reason, le.worker_id, t.job_id, j.status, t.state, t.number, j.seeds, j.steps,"
    " j.report_every"
    " FROM acprop_leases le"
    " JOIN acprop_trials t ON t.id = le.trial_id"
    " JOIN acprop_jobs j ON j.id = t.job_id"
    " WHERE le.token_hash = ANY(CAST(:hashes AS text[])) AND j.tenant_id = :tenant"
    " ORDER BY le.id"
    " FOR UPDATE OF le"
    "), r AS ("
    " SELECT * FROM unnest(CAST(:r_hashes AS text[]), CAST(:steps AS int[]),"
    " CAST(:losses AS text[]), CAST(:counts AS int[])) AS r(h, s, l, n)"
    "), ok AS ("
    " SELECT (SELECT count(*) FROM l"
    "  WHERE l.ended_at IS NULL AND l.expires_at > :now"
    "  AND l.status NOT IN (:cancelled, :failed)) = :n_hashes"
    " AND NOT EXISTS (SELECT 1 FROM r JOIN l ON l.token_hash = r.h"
    "  WHERE r.n <> l.seeds OR r.s < 1 OR r.s > l.steps"
    "  OR (r.s % l.report_every <> 0 AND r.s <> l.steps)) AS all_live"
    "), ins AS ("
    " INSERT INTO acprop_trial_reports (trial_id, attempt, step, losses, created_at)"
    " SELECT l.trial_id, l.attempt, r.s, CAST(r.l AS json), :now"
    " FROM r JOIN l ON l.token_hash = r.h"
    " WHERE (SELECT all_live FROM ok)"
    " ON CONFLICT DO NOTHING"
    ") SELECT l.*, (SELECT all_live FROM ok) AS stored FROM l ORDER BY l.id"
)


def _record_reports_pg(
    session: Session, tenant_id: uuid.UUID, reports: Sequence[ReportIn], now: datetime
) -> tuple[dict[str, HeldLease], bool, bool]:
    """The leases of the reports' tokens by token; whether the reports were stored (every
    lease live, no job ended, every report fitting its job); and whether the statement ran
    as its own transaction.

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
        "tenant": tenant_id,
        "now": now,
        "cancelled": JobStatus.CANCELLED.value,
        "failed": JobStatus.FAILED.value,
        "r_hashes": [hash_of[r.token] for r in last.values()],
        "steps": [r.step for r in last.values()],
        "losses": [json.dumps(list(r.losses)) for r in last.values()],
        "counts": [len(r.losses) for r in last.values()],
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
        leases[token] = HeldLease.from_row(token, row)
    return leases, stored, own_transaction


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
